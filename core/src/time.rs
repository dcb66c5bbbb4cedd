//! Time as the core sees it: `u64` nanoseconds, saturating, never panicking.
//!
//! The core never reads a system clock. Callers pass `now: Instant` into every
//! state change; a [`Clock`] is only a convenience for the layers above. An
//! [`Instant`] is nanoseconds since an arbitrary epoch chosen by the clock
//! (the tokio adapter uses the instant the limiter was built, [`ManualClock`]
//! starts at zero).
//!
//! All arithmetic saturates: `Instant::MAX` means "never" and absorbs further
//! additions, and a subtraction that would go negative gives zero. A clock
//! that goes backwards therefore reads as "no time passed".

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A span of time in nanoseconds. Saturating; cannot be negative.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Duration(u64);

/// A point in time: nanoseconds since the clock's epoch. Saturating.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Instant(u64);

/// Why a floating-point number of seconds is not a [`Duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// The value was NaN.
    NotANumber,
    /// The value was negative (including negative infinity).
    Negative,
    /// The value does not fit in `u64` nanoseconds (about 584 years), or is infinite.
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotANumber => "duration is NaN",
            Self::Negative => "duration is negative",
            Self::Overflow => "duration does not fit in 64-bit nanoseconds",
        })
    }
}

impl core::error::Error for DurationError {}

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Duration {
    /// No time.
    pub const ZERO: Self = Self(0);
    /// The longest representable span (about 584 years); saturating results end here.
    pub const MAX: Self = Self(u64::MAX);

    /// `n` nanoseconds.
    pub const fn from_nanos(n: u64) -> Self {
        Self(n)
    }
    /// `n` microseconds, saturating.
    pub const fn from_micros(n: u64) -> Self {
        Self(n.saturating_mul(1_000))
    }
    /// `n` milliseconds, saturating.
    pub const fn from_millis(n: u64) -> Self {
        Self(n.saturating_mul(1_000_000))
    }
    /// `n` seconds, saturating.
    pub const fn from_secs(n: u64) -> Self {
        Self(n.saturating_mul(NANOS_PER_SEC))
    }
    /// Seconds as a float; rejects NaN, negative and overflowing values.
    pub fn try_from_secs_f64(secs: f64) -> Result<Self, DurationError> {
        if secs.is_nan() {
            return Err(DurationError::NotANumber);
        }
        if secs < 0.0 {
            return Err(DurationError::Negative);
        }
        let nanos = secs * NANOS_PER_SEC as f64;
        // `u64::MAX as f64` rounds up to 2^64, so `>=` rejects everything that cannot fit.
        if nanos >= u64::MAX as f64 {
            return Err(DurationError::Overflow);
        }
        Ok(Self(nanos as u64))
    }
    /// Whole nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// Whole milliseconds (truncated).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }
    /// Seconds as a float (for reports; never used in decisions).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }
    /// `self + rhs`, saturating at [`Duration::MAX`].
    pub const fn saturating_add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }
    /// `self - rhs`, saturating at zero.
    pub const fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }
    /// `self * n`, saturating at [`Duration::MAX`].
    pub const fn saturating_mul(self, n: u64) -> Self {
        Self(self.0.saturating_mul(n))
    }
    /// `self + rhs`, or `None` on overflow.
    pub const fn checked_add(self, rhs: Self) -> Option<Self> {
        match self.0.checked_add(rhs.0) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }
    /// `self * n`, or `None` on overflow.
    pub const fn checked_mul(self, n: u64) -> Option<Self> {
        match self.0.checked_mul(n) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }
    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Instant {
    /// The clock's epoch.
    pub const ZERO: Self = Self(0);
    /// "Never": later than every reachable instant. Saturating sums end here.
    pub const MAX: Self = Self(u64::MAX);

    /// The instant `n` nanoseconds after the epoch.
    pub const fn from_nanos(n: u64) -> Self {
        Self(n)
    }
    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// Time from `earlier` to `self`; zero if `earlier` is later (time went backwards).
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
    /// `self + d`, saturating at [`Instant::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.0))
    }
    /// `self - d`, saturating at the epoch.
    pub const fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.0))
    }
    /// `self + d`, or `None` on overflow.
    pub const fn checked_add(self, d: Duration) -> Option<Self> {
        match self.0.checked_add(d.0) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }
}

impl Add<Duration> for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        self.saturating_add(rhs)
    }
}

impl Sub<Duration> for Duration {
    type Output = Duration;
    fn sub(self, rhs: Duration) -> Duration {
        self.saturating_sub(rhs)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = self.saturating_add(rhs);
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        self.saturating_sub(rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: an `rhs` later than `self` gives zero.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl From<core::time::Duration> for Duration {
    /// Saturates at [`Duration::MAX`].
    fn from(d: core::time::Duration) -> Self {
        Self(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_nanos(d.0)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&core::time::Duration::from_nanos(self.0), f)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::MAX {
            f.write_str("Instant(never)")
        } else {
            write!(f, "Instant(+{:?})", core::time::Duration::from_nanos(self.0))
        }
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A source of "now". Implementations must be cheap; the core calls none of them.
pub trait Clock {
    /// The current instant.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// Virtual time: a shared counter that only moves when told to.
///
/// Clones share the same time, so a test can hand one clone to the limiter and
/// keep another to drive it. `set` may move time backwards; the limiter reads
/// that as "no time passed" and counts it.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: alloc::sync::Arc<crate::sync::AtomicU64>,
}

#[cfg(feature = "alloc")]
impl ManualClock {
    /// A clock at the epoch.
    pub fn new() -> Self {
        Self::default()
    }
    /// A clock at `start`.
    pub fn starting_at(start: Instant) -> Self {
        let c = Self::default();
        c.set(start);
        c
    }
    /// Moves time forward by `d`, saturating at [`Instant::MAX`].
    pub fn advance(&self, d: Duration) {
        let mut cur = self.nanos.load(crate::sync::Ordering::Acquire);
        loop {
            let next = cur.saturating_add(d.as_nanos());
            match self.nanos.compare_exchange_weak(
                cur,
                next,
                crate::sync::Ordering::AcqRel,
                crate::sync::Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }
    /// Sets the time to `t` (which may be earlier than now).
    pub fn set(&self, t: Instant) {
        self.nanos.store(t.as_nanos(), crate::sync::Ordering::Release);
    }
}

#[cfg(feature = "alloc")]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(self.nanos.load(crate::sync::Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Duration::MAX + Duration::from_nanos(1), Duration::MAX);
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(Duration::from_millis(3).saturating_mul(u64::MAX), Duration::MAX);
        assert_eq!(Duration::from_nanos(1).checked_add(Duration::MAX), None);
        assert_eq!(Instant::MAX.checked_add(Duration::from_nanos(1)), None);
    }

    #[test]
    fn backwards_time_reads_as_no_time_passed() {
        let early = Instant::from_nanos(10);
        let late = Instant::from_nanos(20);
        assert_eq!(early - late, Duration::ZERO);
        assert_eq!(late - early, Duration::from_nanos(10));
    }

    #[test]
    fn float_seconds_are_validated() {
        assert_eq!(
            Duration::try_from_secs_f64(f64::NAN),
            Err(DurationError::NotANumber)
        );
        assert_eq!(Duration::try_from_secs_f64(-0.5), Err(DurationError::Negative));
        assert_eq!(
            Duration::try_from_secs_f64(f64::NEG_INFINITY),
            Err(DurationError::Negative)
        );
        assert_eq!(
            Duration::try_from_secs_f64(f64::INFINITY),
            Err(DurationError::Overflow)
        );
        assert_eq!(Duration::try_from_secs_f64(1e12), Err(DurationError::Overflow));
        assert_eq!(Duration::try_from_secs_f64(1.5), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn std_duration_conversion_saturates() {
        let huge = core::time::Duration::from_secs(u64::MAX);
        assert_eq!(Duration::from(huge), Duration::MAX);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn manual_clock_is_shared_between_clones() {
        let a = ManualClock::new();
        let b = a.clone();
        a.advance(Duration::from_millis(5));
        assert_eq!(b.now(), Instant::from_nanos(5_000_000));
        b.set(Instant::from_nanos(1));
        assert_eq!(a.now(), Instant::from_nanos(1));
        a.set(Instant::MAX);
        a.advance(Duration::from_secs(1));
        assert_eq!(b.now(), Instant::MAX);
    }
}
