//! A group's recent admissions, for the recent statistics: a ring written by
//! every admission without a lock (each admission owns the slot its sequence
//! number names) and read, slot by slot, under a per-slot version check.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::OnceLock;

use upbit_limiter_core::{Duration, Instant};

/// The most admissions kept per group for the recent statistics; beyond it
/// the oldest are overwritten (and the window effectively shortens).
pub const MAX_SAMPLES: usize = 4096;

/// One admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub at: Instant,
    pub waited: Duration,
    /// How late a waited admission came after it conformed.
    pub drift: Option<Duration>,
}

/// `drift` of a sample that did not wait.
const NO_DRIFT: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Slot {
    /// 0: never written; `2·seq + 1`: admission `seq` is being written;
    /// `2·seq + 2`: admission `seq` is complete.
    version: AtomicU64,
    at: AtomicU64,
    waited: AtomicU64,
    drift: AtomicU64,
}

/// The ring; its [`MAX_SAMPLES`] slots are allocated at the first admission.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    slots: OnceLock<Box<[Slot]>>,
}

impl Ring {
    fn slots(&self) -> &[Slot] {
        self.slots
            .get_or_init(|| (0..MAX_SAMPLES).map(|_| Slot::default()).collect())
    }

    /// Records admission number `seq` of the group. Two admissions share a
    /// slot only [`MAX_SAMPLES`] apart, so writers never meet in one.
    pub fn record(&self, seq: u64, sample: Sample) {
        let slots = self.slots();
        let slot = &slots[(seq % MAX_SAMPLES as u64) as usize];
        let version = seq.wrapping_mul(2);
        slot.version.store(version | 1, Ordering::Relaxed);
        // The odd version is visible before any field changes.
        fence(Ordering::Release);
        slot.at.store(sample.at.as_nanos(), Ordering::Relaxed);
        slot.waited.store(sample.waited.as_nanos(), Ordering::Relaxed);
        let drift = sample.drift.map_or(NO_DRIFT, |d| d.as_nanos().min(NO_DRIFT - 1));
        slot.drift.store(drift, Ordering::Relaxed);
        slot.version.store(version.wrapping_add(2), Ordering::Release);
    }

    /// Every complete sample with `after < at <= until`; a slot being
    /// rewritten while it is read is skipped.
    pub fn between(&self, after: Option<Instant>, until: Instant) -> Vec<Sample> {
        let Some(slots) = self.slots.get() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for slot in slots.iter() {
            let v1 = slot.version.load(Ordering::Acquire);
            if v1 == 0 || v1 & 1 == 1 {
                continue;
            }
            let at = slot.at.load(Ordering::Relaxed);
            let waited = slot.waited.load(Ordering::Relaxed);
            let drift = slot.drift.load(Ordering::Relaxed);
            // The fields are read before the version is read again.
            fence(Ordering::Acquire);
            if slot.version.load(Ordering::Relaxed) != v1 {
                continue;
            }
            let at = Instant::from_nanos(at);
            if after.is_some_and(|a| at <= a) || at > until {
                continue;
            }
            out.push(Sample {
                at,
                waited: Duration::from_nanos(waited),
                drift: (drift != NO_DRIFT).then(|| Duration::from_nanos(drift)),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64) -> Sample {
        Sample {
            at: Instant::from_nanos(ms * 1_000_000),
            waited: Duration::from_millis(ms % 7),
            drift: (ms % 2 == 0).then(|| Duration::from_millis(1)),
        }
    }

    #[test]
    fn keeps_the_last_max_samples_in_the_window() {
        let ring = Ring::default();
        assert!(ring.between(None, Instant::MAX).is_empty());
        for seq in 0..(MAX_SAMPLES as u64 + 10) {
            ring.record(seq, sample(seq + 1));
        }
        let mut all = ring.between(None, Instant::MAX);
        all.sort_by_key(|s| s.at);
        assert_eq!(all.len(), MAX_SAMPLES);
        assert_eq!(all[0], sample(11));
        assert_eq!(all[MAX_SAMPLES - 1], sample(MAX_SAMPLES as u64 + 10));
        let recent = ring.between(
            Some(Instant::from_nanos(4000 * 1_000_000)),
            Instant::from_nanos(4005 * 1_000_000),
        );
        assert_eq!(recent.len(), 5);
    }

    #[test]
    fn concurrent_writers_and_a_reader_see_only_whole_samples() {
        let ring = Ring::default();
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let ring = &ring;
                s.spawn(move || {
                    for i in 0..20_000u64 {
                        let seq = i * 2 + t;
                        ring.record(seq, sample(seq + 1));
                    }
                });
            }
            for _ in 0..50 {
                for x in ring.between(None, Instant::MAX) {
                    let ms = x.at.as_nanos() / 1_000_000;
                    assert_eq!(x, sample(ms), "a torn sample");
                }
            }
        });
    }
}
