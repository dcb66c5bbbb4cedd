//! Per-group counters and a fixed-bucket wait histogram: atomics only, no allocation.

use crate::sync::{AtomicU64, Ordering};
use crate::time::Duration;

/// Upper bounds (inclusive) of the wait histogram's buckets, in milliseconds.
/// A last, open bucket catches everything longer.
pub const WAIT_BUCKETS_MS: [u64; 15] = [
    0, 1, 2, 5, 10, 25, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000,
];

/// Number of histogram buckets, the open one included.
pub const WAIT_BUCKET_COUNT: usize = WAIT_BUCKETS_MS.len() + 1;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// The atomic counters of one group.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
            pub(crate) wait_buckets: [AtomicU64; WAIT_BUCKET_COUNT],
            pub(crate) wait_total_ns: AtomicU64,
            pub(crate) wait_max_ns: AtomicU64,
        }

        /// A copy of one group's counters at one instant.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub struct CounterSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> CounterSnapshot {
                let mut s = CounterSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* };
                // `admitted` hands out the sequence numbers, withdrawn claims included.
                s.admitted = s.admitted.saturating_sub(s.withdrawn);
                s
            }
        }
    };
}

counters! {
    /// Requests admitted.
    admitted,
    /// Decisions taken under the group's lock that said "not yet" (for waiters,
    /// behind a queue, in half-open). A denial on the lock-free fast path
    /// writes nothing, so only its caller sees it.
    denied,
    /// Acquisitions that had to wait before admission.
    waits,
    /// Acquisitions that failed because their deadline could not be met.
    timeouts,
    /// Acquisitions refused because the circuit breaker was open.
    circuit_rejections,
    /// Acquisitions refused because the group was banned (HTTP 418).
    ban_rejections,
    /// Waiters dropped before admission.
    cancelled,
    /// HTTP 429 responses reported.
    status_429,
    /// HTTP 418 responses reported.
    status_418,
    /// Responses reported as failures for the breaker (5xx, transport errors, timeouts).
    failures,
    /// Responses reported in total.
    responses,
    /// `Remaining-Req` headers that made the limiter stricter.
    header_tightenings,
    /// `Remaining-Req` headers that could not be parsed or named an unknown group.
    header_rejects,
    /// Times the clock was seen going backwards: a reading earlier than an
    /// instant seen before the reading was taken (a reading that only lost a
    /// race with another thread is not counted). Treated as no time passed.
    clock_regressions,
    /// Lock-free claims withdrawn because the group's parameters changed while
    /// they claimed: the slot stayed taken, the request decided again under
    /// the lock. Not counted in `admitted`.
    withdrawn,
    /// Permits dropped without a report (their interval ended at the drop;
    /// the status and headers were lost).
    unreported,
    /// GCRA policy: reported round trips longer than the jitter margin (the
    /// margin's assumption may not hold: consider the interval log).
    round_trips_over_margin,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_wait(&self, waited: Duration) {
        if waited.is_zero() {
            // The common case, one read-modify-write: the sum and the maximum stay as they are.
            self.wait_buckets[0].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ms = waited.as_millis();
        let bucket = WAIT_BUCKETS_MS
            .iter()
            .position(|&upper| ms <= upper && !(upper == 0 && waited.as_nanos() > 0))
            .unwrap_or(WAIT_BUCKET_COUNT - 1);
        self.wait_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.wait_total_ns.fetch_add(waited.as_nanos(), Ordering::Relaxed);
        self.wait_max_ns.fetch_max(waited.as_nanos(), Ordering::Relaxed);
    }

    pub(crate) fn histogram(&self) -> WaitHistogram {
        let mut counts = [0; WAIT_BUCKET_COUNT];
        for (c, b) in counts.iter_mut().zip(&self.wait_buckets) {
            *c = b.load(Ordering::Relaxed);
        }
        WaitHistogram {
            counts,
            total: Duration::from_nanos(self.wait_total_ns.load(Ordering::Relaxed)),
            max: Duration::from_nanos(self.wait_max_ns.load(Ordering::Relaxed)),
        }
    }
}

/// How long admitted requests waited, in fixed buckets ([`WAIT_BUCKETS_MS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WaitHistogram {
    /// Count per bucket; the last bucket is open-ended.
    pub counts: [u64; WAIT_BUCKET_COUNT],
    /// Sum of all waits.
    pub total: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl WaitHistogram {
    /// Number of recorded waits.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q`-quantile (`q` in `[0, 1]`, clamped) as the upper bound of the
    /// bucket that holds it; the open bucket reports the maximum seen. Zero
    /// when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let x = q * n as f64;
        let rank = (x as u64 + u64::from(((x as u64) as f64) < x)).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return match WAIT_BUCKETS_MS.get(i) {
                    Some(&ms) => Duration::from_millis(ms).min(self.max),
                    None => self.max,
                };
            }
        }
        self.max
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let c = Counters::default();
        c.record_wait(Duration::ZERO);
        c.record_wait(Duration::from_nanos(1));
        c.record_wait(Duration::from_millis(40));
        c.record_wait(Duration::from_secs(100));
        let h = c.histogram();
        assert_eq!(h.count(), 4);
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[6], 1);
        assert_eq!(h.counts[WAIT_BUCKET_COUNT - 1], 1);
        assert_eq!(h.quantile(0.25), Duration::ZERO);
        assert_eq!(h.quantile(0.5), Duration::from_millis(1));
        assert_eq!(h.quantile(0.75), Duration::from_millis(50));
        assert_eq!(h.quantile(1.0), Duration::from_secs(100));
        assert_eq!(h.quantile(f64::NAN), Duration::from_secs(100));
        assert_eq!(h.max, Duration::from_secs(100));
        assert_eq!(WaitHistogram::default().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn counters_snapshot() {
        let c = Counters::default();
        Counters::bump(&c.admitted);
        Counters::bump(&c.admitted);
        Counters::bump(&c.status_429);
        let s = c.snapshot();
        assert_eq!((s.admitted, s.status_429, s.denied), (2, 1, 0));
    }
}
