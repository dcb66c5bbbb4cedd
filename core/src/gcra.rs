//! GCRA: the decision as a pure function, and the lock-free atomic TAT cell.
//!
//! The theoretical arrival time (TAT) is the instant at which the group would
//! be idle again if every admitted request had been spaced exactly one emission
//! interval apart. A request at `now` conforms when `now >= TAT - τ`.
//!
//! The cell holds the TAT in one atomic word. A decision reads one consistent
//! [`Params`] snapshot (emission interval already scaled by the rate ratio, and
//! the tolerance), then compare-and-swaps the TAT. On a lost race it recomputes
//! from the value it observed; a denial writes nothing. Penalties and header
//! sync move the TAT forward with a CAS max, never backwards.

use crate::sync::{AtomicU64, Ordering};
use crate::time::{Duration, Instant};

const MICROS: u64 = 1_000;

/// The inputs of one decision, packed into one word so that a decision sees
/// the interval and the tolerance of the same configuration.
///
/// Both are kept in whole microseconds: the interval is rounded **up** and the
/// tolerance **down**, so packing can only make the quota stricter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    interval_us: u32,
    tolerance_us: u32,
}

impl Params {
    /// Parameters for emission interval `interval` and tolerance `tolerance`.
    /// The interval saturates at `u32::MAX` microseconds (71 minutes), above
    /// any quota's interval, so saturation never speeds a group up past its quota.
    pub fn new(interval: Duration, tolerance: Duration) -> Self {
        let up = interval.as_nanos().div_ceil(MICROS).max(1);
        let down = tolerance.as_nanos() / MICROS;
        Self {
            interval_us: u32::try_from(up).unwrap_or(u32::MAX),
            tolerance_us: u32::try_from(down).unwrap_or(u32::MAX),
        }
    }
    /// Parameters for `quota` running at emission interval `interval` (the
    /// quota's, or slower). The tolerance is `(b - 1)` times the quota's own
    /// interval rounded up to the microsecond, so a full burst is available
    /// at one instant and the bound `b + ceil(W / T) - 1` still holds (with
    /// the rounded-up `T`, which is only slower).
    pub fn for_quota(quota: &crate::quota::Quota, interval: Duration) -> Self {
        let base = Self::new(quota.interval(), Duration::ZERO).interval_us;
        let tolerance = u64::from(base).saturating_mul(u64::from(quota.burst()).saturating_sub(1));
        Self {
            tolerance_us: u32::try_from(tolerance).unwrap_or(u32::MAX),
            ..Self::new(interval, Duration::ZERO)
        }
    }
    /// The loosest of `self` and `other`: the smaller interval and the larger
    /// tolerance. Every request that conformed to either conforms to it.
    pub fn loosest(self, other: Self) -> Self {
        Self {
            interval_us: self.interval_us.min(other.interval_us),
            tolerance_us: self.tolerance_us.max(other.tolerance_us),
        }
    }
    /// The emission interval (microsecond resolution).
    pub fn interval(self) -> Duration {
        Duration::from_micros(u64::from(self.interval_us))
    }
    /// The tolerance `τ` (microsecond resolution).
    pub fn tolerance(self) -> Duration {
        Duration::from_micros(u64::from(self.tolerance_us))
    }
    pub(crate) fn pack(self) -> u64 {
        (u64::from(self.interval_us) << 32) | u64::from(self.tolerance_us)
    }
    pub(crate) fn unpack(word: u64) -> Self {
        Self {
            interval_us: (word >> 32) as u32,
            tolerance_us: word as u32,
        }
    }
}

/// The GCRA decision: `Ok(new TAT)` to admit, or `Err(earliest)`, the first
/// instant at which a request would conform. Pure; saturating; never panics.
#[inline]
pub fn decide(tat: Instant, now: Instant, params: Params) -> Result<Instant, Instant> {
    let earliest = tat.saturating_sub(params.tolerance());
    if now < earliest {
        return Err(earliest);
    }
    Ok(tat.max(now).saturating_add(params.interval()))
}

/// The atomic TAT of one group.
#[derive(Debug)]
pub struct TatCell {
    tat: AtomicU64,
}

impl Default for TatCell {
    fn default() -> Self {
        Self::new(Instant::ZERO)
    }
}

impl TatCell {
    /// A cell whose TAT is `tat`.
    pub fn new(tat: Instant) -> Self {
        Self {
            tat: AtomicU64::new(tat.as_nanos()),
        }
    }

    /// The current TAT.
    pub fn load(&self) -> Instant {
        Instant::from_nanos(self.tat.load(Ordering::Acquire))
    }

    /// Tries to admit one request at `now`. On success returns the new TAT; on
    /// denial returns the earliest conforming instant and writes nothing.
    #[inline]
    pub fn try_claim(&self, now: Instant, params: Params) -> Result<Instant, Instant> {
        let mut seen = self.tat.load(Ordering::Acquire);
        loop {
            let next = decide(Instant::from_nanos(seen), now, params)?;
            match self
                .tat
                .compare_exchange_weak(seen, next.as_nanos(), Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(next),
                Err(actual) => seen = actual,
            }
        }
    }

    /// Moves the TAT forward to at least `at_least` (a CAS max); never backwards.
    /// Returns the TAT after the call.
    pub fn push_to(&self, at_least: Instant) -> Instant {
        let prev = self.tat.fetch_max(at_least.as_nanos(), Ordering::AcqRel);
        Instant::from_nanos(prev.max(at_least.as_nanos()))
    }

    /// Applies `f` to the TAT atomically, keeping the result only if it does not
    /// move the TAT backwards. Returns the TAT after the call.
    pub fn advance_with(&self, mut f: impl FnMut(Instant) -> Instant) -> Instant {
        let mut seen = self.tat.load(Ordering::Acquire);
        loop {
            let next = f(Instant::from_nanos(seen)).as_nanos().max(seen);
            // Always a read-modify-write, even when nothing changes: it puts
            // this call in the TAT's modification order, so every claim's CAS
            // either comes before it (and is seen here) or after it (and
            // synchronises with it, seeing whatever the caller published
            // before calling). A plain load would let both miss each other.
            match self
                .tat
                .compare_exchange_weak(seen, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Instant::from_nanos(next),
                Err(actual) => seen = actual,
            }
        }
    }
}

/// The instant until which admissions must stop so that at most `allowed`
/// more requests start in `[now, until)`: the TAT that a GCRA with `params`
/// must have at least.
///
/// With TAT `X` the first conforming instant is `X - τ` and then one every `T`;
/// starting the schedule at `until - allowed·T` leaves exactly `allowed` slots
/// before `until`.
pub fn tat_allowing(now: Instant, until: Instant, allowed: u64, params: Params) -> Instant {
    let room = params.interval().saturating_mul(allowed);
    let start = until.saturating_sub(room).max(now);
    start.saturating_add(params.tolerance())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn p(interval_ms: u64, burst: u64) -> Params {
        let t = Duration::from_millis(interval_ms);
        Params::new(t, t.saturating_mul(burst - 1))
    }

    #[test]
    fn burst_then_one_per_interval() {
        let cell = TatCell::default();
        let params = p(100, 3);
        let t0 = Instant::from_nanos(1_000_000_000);
        for _ in 0..3 {
            assert!(cell.try_claim(t0, params).is_ok());
        }
        let earliest = cell.try_claim(t0, params).unwrap_err();
        assert_eq!(earliest, t0 + Duration::from_millis(100));
        // A denial wrote nothing.
        assert_eq!(cell.load(), t0 + Duration::from_millis(300));
        assert!(cell.try_claim(earliest, params).is_ok());
        assert!(cell.try_claim(earliest, params).is_err());
    }

    #[test]
    fn packing_only_makes_the_quota_stricter() {
        let params = Params::new(Duration::from_nanos(91_666_667), Duration::from_nanos(999_999));
        assert_eq!(params.interval(), Duration::from_micros(91_667));
        assert_eq!(params.tolerance(), Duration::from_micros(999));
        assert_eq!(Params::unpack(params.pack()), params);
        let huge = Params::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.interval(), Duration::from_micros(u64::from(u32::MAX)));
        assert_eq!(
            Params::new(Duration::from_nanos(1), Duration::ZERO).interval(),
            Duration::from_micros(1)
        );
    }

    #[test]
    fn saturates_at_the_end_of_time() {
        let cell = TatCell::new(Instant::MAX);
        assert_eq!(cell.try_claim(Instant::MAX, p(100, 1)), Ok(Instant::MAX));
        let cell = TatCell::new(Instant::MAX);
        assert!(cell.try_claim(Instant::ZERO, p(100, 1)).is_err());
    }

    #[test]
    fn time_going_backwards_only_denies() {
        let cell = TatCell::default();
        let params = p(100, 1);
        let t = Instant::from_nanos(5_000_000_000);
        cell.try_claim(t, params).unwrap();
        // An earlier "now" sees the group as busier, never freer.
        assert_eq!(
            cell.try_claim(Instant::from_nanos(1), params),
            Err(t + Duration::from_millis(100))
        );
    }

    #[test]
    fn push_and_advance_never_move_backwards() {
        let cell = TatCell::new(Instant::from_nanos(100));
        assert_eq!(cell.push_to(Instant::from_nanos(50)), Instant::from_nanos(100));
        assert_eq!(cell.push_to(Instant::from_nanos(150)), Instant::from_nanos(150));
        assert_eq!(
            cell.advance_with(|t| t - Duration::from_nanos(10)),
            Instant::from_nanos(150)
        );
        assert_eq!(
            cell.advance_with(|t| t + Duration::from_nanos(10)),
            Instant::from_nanos(160)
        );
    }

    #[test]
    fn tat_allowing_leaves_exactly_the_allowed_slots() {
        let params = p(100, 2);
        let now = Instant::from_nanos(10_000_000_000);
        let until = now + Duration::from_millis(1_000);
        for allowed in 0..12u64 {
            let cell = TatCell::new(tat_allowing(now, until, allowed, params));
            let mut admitted = 0;
            let mut t = now;
            while t < until {
                match cell.try_claim(t, params) {
                    Ok(_) => admitted += 1,
                    Err(at) => t = at,
                }
            }
            let most = allowed.min(2 + 10 - 1);
            assert!(admitted <= allowed, "allowed {allowed}, admitted {admitted}");
            assert!(admitted >= most.min(10), "allowed {allowed}, admitted {admitted}");
        }
    }
}
