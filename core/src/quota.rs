//! From a server's limit to a GCRA quota that cannot exceed it.
//!
//! # The bound
//!
//! A GCRA with emission interval `T` and burst `b` (tolerance `τ = (b-1)·T`)
//! admits a request at `t` only if `t >= TAT - τ`, and each admission moves
//! `TAT` to `max(TAT, t) + T`. So between two admissions `i < j` the TAT grew
//! by at least `(j-i)·T`, and `t_j >= t_i + (j-i)·T - τ`. If `n` admissions lie
//! in a half-open window of length `L` then `t_last - t_first < L`, hence
//! `(n - b)·T < L`, i.e.
//!
//! ```text
//! n <= b + ceil(L / T) - 1            (Quota::max_admissions_in)
//! ```
//!
//! and a full burst followed by one request every `T` reaches it, so it is tight.
//!
//! # Why `W + J`
//!
//! Requests leave the client at send instants `s_i` and reach the server at
//! `s_i + d_i` with `d_i` in `[d, d + J]`. Arrivals inside a server window of
//! length `W` were sent inside a window of length `W + J`. So if no send window
//! of length `W + J` holds more than `N`, no server window of length `W` does,
//! whatever the server's window model (sliding, calendar, anchored at the first
//! request, or a token bucket of capacity `N`, which never holds more than the
//! sliding bound). A server that counts both ends of its window (a closed
//! `[t, t + W]`) sees the arrivals of a half-open window of length `W + 1 ns`,
//! so the quota is checked against `W + J + 1 ns`. [`Quota::derive`] picks the
//! fastest `T` with `b + ceil((W + J + 1 ns) / T) - 1 <= N` for every window
//! of the group: `T = ceil((W + J + 1 ns) / (N - b + 1))`.
//!
//! Slowing down never breaks the bound: the rate ratio only lengthens `T`
//! (the tolerance stays the quota's), and penalties only move the TAT forward.

use core::fmt;

use crate::time::Duration;

/// What the server allows: at most `max_requests` in any window of length `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServerLimit {
    /// Requests allowed per window.
    pub max_requests: u32,
    /// The window length.
    pub window: Duration,
}

impl ServerLimit {
    /// `max_requests` per `window`.
    pub const fn new(max_requests: u32, window: Duration) -> Self {
        Self { max_requests, window }
    }
    /// `max_requests` per second.
    pub const fn per_second(max_requests: u32) -> Self {
        Self::new(max_requests, Duration::from_secs(1))
    }
}

/// The longest emission interval a quota may have (one hour). Longer intervals
/// are refused rather than rounded, so that no stored value can be faster
/// than what was asked for.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3_600);

/// A GCRA quota: one request per `interval`, bursts of up to `burst`.
///
/// Construct it with [`Quota::derive`] (safe by construction) or with
/// [`Quota::new`] followed by [`Quota::check_against`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Quota {
    interval: Duration,
    burst: u32,
}

/// Why a quota was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    /// The emission interval was zero: that would be "unlimited".
    ZeroInterval,
    /// The emission interval was longer than [`MAX_INTERVAL`].
    IntervalTooLong {
        /// The interval asked for.
        interval: Duration,
    },
    /// A burst of zero admits nothing, ever.
    ZeroBurst,
    /// A server limit of zero requests, or with a zero-length window.
    EmptyServerLimit,
    /// No server limit was given to derive from or check against.
    NoServerLimit,
    /// The burst alone exceeds what the server allows in one window.
    BurstExceedsLimit {
        /// The burst asked for.
        burst: u32,
        /// The server's limit for the window.
        limit: ServerLimit,
    },
    /// The quota can admit more than the server allows in one window.
    Unsafe {
        /// The offending server limit.
        limit: ServerLimit,
        /// The window that was checked: the server's window plus the jitter margin.
        checked_window: Duration,
        /// How many admissions the quota allows in that window at most.
        admits: u64,
    },
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroInterval => f.write_str("emission interval is zero (that would be unlimited)"),
            Self::IntervalTooLong { interval } => write!(
                f,
                "emission interval {interval:?} is longer than the maximum {MAX_INTERVAL:?}"
            ),
            Self::ZeroBurst => f.write_str("burst is zero (nothing would ever be admitted)"),
            Self::EmptyServerLimit => {
                f.write_str("server limit allows zero requests or has a zero-length window")
            }
            Self::NoServerLimit => f.write_str("no server limit to derive or check the quota against"),
            Self::BurstExceedsLimit { burst, limit } => write!(
                f,
                "burst {burst} exceeds the server limit of {} per {:?}",
                limit.max_requests, limit.window
            ),
            Self::Unsafe {
                limit,
                checked_window,
                admits,
            } => write!(
                f,
                "quota admits up to {admits} requests in {:?} counting both ends (server window {:?} plus jitter margin), \
                 but the server allows {}: it could receive HTTP 429",
                checked_window.saturating_sub(Duration::from_nanos(1)),
                limit.window,
                limit.max_requests
            ),
        }
    }
}

impl core::error::Error for QuotaError {}

/// The half-open window a quota is checked against for a server window `W`
/// and jitter margin `J`: `W + J + 1 ns`, so that a server counting both ends
/// of its window (a closed `[t, t + W]`) is covered too.
fn checked_window(window: Duration, margin: Duration) -> Duration {
    window
        .saturating_add(margin)
        .saturating_add(Duration::from_nanos(1))
}

fn div_ceil(a: u64, b: u64) -> u64 {
    // Validated intervals are never zero; an unchecked zero one reads as 1 ns.
    a.div_ceil(b.max(1))
}

impl Quota {
    /// A quota of one request per `interval` with bursts of `burst`, checked
    /// only for sanity. Check it with [`Quota::check_against`] before use.
    pub fn new(interval: Duration, burst: u32) -> Result<Self, QuotaError> {
        if interval.is_zero() {
            return Err(QuotaError::ZeroInterval);
        }
        if interval > MAX_INTERVAL {
            return Err(QuotaError::IntervalTooLong { interval });
        }
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        Ok(Self { interval, burst })
    }

    /// A quota of `rate` requests per second (fractional rates allowed) and
    /// bursts of `burst`; rejects NaN, zero, negative and absurd rates.
    /// The interval is rounded up to whole nanoseconds, never down.
    pub fn per_second(rate: f64, burst: u32) -> Result<Self, QuotaError> {
        if rate.is_nan() || rate <= 0.0 || !rate.is_finite() {
            return Err(QuotaError::ZeroInterval);
        }
        let nanos = 1e9 / rate;
        // Float-to-integer casts saturate: an absurdly slow rate becomes
        // `u64::MAX` nanoseconds, which `new` refuses as too long.
        let floor = nanos as u64;
        let ceil = floor.saturating_add(u64::from((floor as f64) < nanos));
        Self::new(Duration::from_nanos(ceil.max(1)), burst)
    }

    /// The fastest quota with burst `burst` such that no window of length
    /// `window + margin` holds more than the server allows, for every limit
    /// in `limits` (a group may have several windows, e.g. 5/s and 100/min).
    pub fn derive(limits: &[ServerLimit], margin: Duration, burst: u32) -> Result<Self, QuotaError> {
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        if limits.is_empty() {
            return Err(QuotaError::NoServerLimit);
        }
        let mut interval = Duration::ZERO;
        for limit in limits {
            if limit.max_requests == 0 || limit.window.is_zero() {
                return Err(QuotaError::EmptyServerLimit);
            }
            if burst > limit.max_requests {
                return Err(QuotaError::BurstExceedsLimit { burst, limit: *limit });
            }
            let span = checked_window(limit.window, margin).as_nanos();
            let slots = u64::from(limit.max_requests - burst + 1);
            interval = interval.max(Duration::from_nanos(div_ceil(span, slots)));
        }
        let quota = Self::new(interval, burst)?;
        quota.check_against(limits, margin)?;
        Ok(quota)
    }

    /// The emission interval `T`.
    pub const fn interval(&self) -> Duration {
        self.interval
    }

    /// The burst `b`.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// The tolerance `τ = (b - 1)·T`.
    pub const fn tolerance(&self) -> Duration {
        self.interval
            .saturating_mul((self.burst as u64).saturating_sub(1))
    }

    /// The most admissions this quota allows in any half-open window of length
    /// `window`: `b + ceil(window / T) - 1`, and zero for an empty window.
    pub fn max_admissions_in(&self, window: Duration) -> u64 {
        if window.is_zero() {
            return 0;
        }
        u64::from(self.burst)
            .saturating_add(div_ceil(window.as_nanos(), self.interval.as_nanos()))
            .saturating_sub(1)
    }

    /// Refuses the quota if any window of a server limit, widened by `margin`,
    /// could hold more admissions than the server allows.
    pub fn check_against(&self, limits: &[ServerLimit], margin: Duration) -> Result<(), QuotaError> {
        if limits.is_empty() {
            return Err(QuotaError::NoServerLimit);
        }
        for limit in limits {
            if limit.max_requests == 0 || limit.window.is_zero() {
                return Err(QuotaError::EmptyServerLimit);
            }
            let checked_window = checked_window(limit.window, margin);
            let admits = self.max_admissions_in(checked_window);
            if admits > u64::from(limit.max_requests) {
                return Err(QuotaError::Unsafe {
                    limit: *limit,
                    checked_window,
                    admits,
                });
            }
        }
        Ok(())
    }

    /// The same quota with half the rate and half the burst (rounded up, at
    /// least one): what emergency mode runs on. Always at least as safe.
    pub fn halved(&self) -> Self {
        Self {
            interval: self
                .interval
                .saturating_mul(2)
                .min(MAX_INTERVAL.max(self.interval)),
            burst: self.burst.div_ceil(2),
        }
    }

    /// Builds a quota without any check. Only for demonstrating what the
    /// checks prevent (tests, the simulator's baselines); never for real traffic.
    #[doc(hidden)]
    pub const fn new_unchecked(interval: Duration, burst: u32) -> Self {
        Self { interval, burst }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn ten_rps_with_burst_ten_is_refused() {
        let quota = Quota::per_second(10.0, 10).unwrap();
        let limit = ServerLimit::per_second(10);
        // Even with no jitter margin at all it admits 19 in one half-open
        // second, and 20 in a closed one (both ends counted).
        assert_eq!(quota.max_admissions_in(Duration::from_secs(1)), 19);
        let err = quota.check_against(&[limit], Duration::ZERO).unwrap_err();
        assert_eq!(
            err,
            QuotaError::Unsafe {
                limit,
                checked_window: Duration::from_nanos(1_000_000_001),
                admits: 20
            }
        );
        let text = std::format!("{err}");
        assert!(text.contains("20") && text.contains("429"), "{text}");
    }

    #[test]
    fn derived_quota_respects_every_window_and_is_the_fastest_that_does() {
        let margin = Duration::from_millis(100);
        for n in 1..=40u32 {
            for burst in 1..=n {
                let limit = ServerLimit::per_second(n);
                let q = Quota::derive(&[limit], margin, burst).unwrap();
                // The closed window `[t, t + 1.1 s]`: half-open, 1 ns longer.
                let window = Duration::from_nanos(1_100_000_001);
                assert!(q.max_admissions_in(window) <= u64::from(n), "n={n} b={burst}");
                // One nanosecond faster would break the bound.
                let faster = Quota::new(Duration::from_nanos(q.interval().as_nanos() - 1), burst).unwrap();
                assert!(
                    faster.max_admissions_in(window) > u64::from(n),
                    "n={n} b={burst} not tight"
                );
            }
        }
    }

    #[test]
    fn per_second_rounds_up_never_down() {
        // 1 s / 3 = 333 333 333.3.. ns: up to the next nanosecond.
        assert_eq!(
            Quota::per_second(3.0, 1).unwrap().interval(),
            Duration::from_nanos(333_333_334)
        );
        // A whole number of nanoseconds stays as it is.
        assert_eq!(
            Quota::per_second(4.0, 1).unwrap().interval(),
            Duration::from_nanos(250_000_000)
        );
        // Faster than a nanosecond is one nanosecond; slower than an hour is refused.
        assert_eq!(
            Quota::per_second(1e12, 1).unwrap().interval(),
            Duration::from_nanos(1)
        );
        assert_eq!(
            Quota::per_second(1.0 / 7_200.0, 1),
            Err(QuotaError::IntervalTooLong {
                interval: Duration::from_secs(7_200)
            })
        );
        assert!(matches!(
            Quota::per_second(1e-300, 1),
            Err(QuotaError::IntervalTooLong { .. })
        ));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Quota::per_second(bad, 1), Err(QuotaError::ZeroInterval), "{bad}");
        }
    }

    #[test]
    fn an_empty_server_limit_is_refused_whichever_half_is_empty() {
        let q = Quota::new(Duration::from_millis(100), 1).unwrap();
        for limit in [
            ServerLimit::new(0, Duration::from_secs(1)),
            ServerLimit::new(5, Duration::ZERO),
        ] {
            assert_eq!(
                q.check_against(&[limit], Duration::ZERO),
                Err(QuotaError::EmptyServerLimit)
            );
            assert_eq!(
                Quota::derive(&[limit], Duration::ZERO, 1),
                Err(QuotaError::EmptyServerLimit)
            );
        }
        assert_eq!(
            q.check_against(&[], Duration::ZERO),
            Err(QuotaError::NoServerLimit)
        );
    }

    #[test]
    fn upbit_order_group_numbers() {
        let q = Quota::derive(&[ServerLimit::per_second(12)], Duration::from_millis(150), 1).unwrap();
        // (1.15 s + 1 ns) / 12 = 95.833.. ms, rounded up to the nanosecond.
        assert_eq!(q.interval(), Duration::from_nanos(95_833_334));
        assert_eq!(q.max_admissions_in(Duration::from_nanos(1_150_000_001)), 12);
    }

    #[test]
    fn multi_window_groups_take_the_strictest_window() {
        let limits = [
            ServerLimit::per_second(5),
            ServerLimit::new(100, Duration::from_secs(60)),
        ];
        let q = Quota::derive(&limits, Duration::from_millis(100), 1).unwrap();
        assert!(q.max_admissions_in(Duration::from_millis(1_100)) <= 5);
        assert!(q.max_admissions_in(Duration::from_millis(60_100)) <= 100);
        // The minute window dominates: 60.1 s (+ 1 ns) over 100 slots, not 1.1 s over 5.
        assert_eq!(q.interval(), Duration::from_nanos(div_ceil(60_100 * MS + 1, 100)));
        // With a full burst of 5 the second window dominates instead.
        let bursty = Quota::derive(&limits, Duration::from_millis(100), 5).unwrap();
        assert_eq!(bursty.interval(), Duration::from_nanos(1_100_000_001));
        // A quota fine for the second but not the minute is refused, naming the minute.
        let fast = Quota::derive(&limits[..1], Duration::from_millis(100), 1).unwrap();
        match fast.check_against(&limits, Duration::from_millis(100)) {
            Err(QuotaError::Unsafe { limit, .. }) => assert_eq!(limit, limits[1]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nonsense_is_refused_not_made_unlimited() {
        assert_eq!(Quota::new(Duration::ZERO, 1), Err(QuotaError::ZeroInterval));
        assert_eq!(Quota::new(Duration::from_secs(1), 0), Err(QuotaError::ZeroBurst));
        assert!(matches!(
            Quota::new(Duration::MAX, 1),
            Err(QuotaError::IntervalTooLong { .. })
        ));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(Quota::per_second(bad, 1), Err(QuotaError::ZeroInterval), "{bad}");
        }
        assert!(matches!(
            Quota::per_second(1e-12, 1),
            Err(QuotaError::IntervalTooLong { .. })
        ));
        let one = ServerLimit::per_second(1);
        assert_eq!(
            Quota::derive(&[ServerLimit::per_second(0)], Duration::ZERO, 1),
            Err(QuotaError::EmptyServerLimit)
        );
        assert_eq!(
            Quota::derive(&[ServerLimit::new(5, Duration::ZERO)], Duration::ZERO, 1),
            Err(QuotaError::EmptyServerLimit)
        );
        assert_eq!(
            Quota::derive(&[], Duration::ZERO, 1),
            Err(QuotaError::NoServerLimit)
        );
        assert_eq!(
            Quota::derive(&[one], Duration::ZERO, 2),
            Err(QuotaError::BurstExceedsLimit { burst: 2, limit: one })
        );
        // An overflowing margin saturates to a very slow, still finite quota or is refused.
        match Quota::derive(&[one], Duration::MAX, 1) {
            Err(QuotaError::IntervalTooLong { .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bound_edge_cases() {
        let q = Quota::new(Duration::from_millis(100), 3).unwrap();
        assert_eq!(q.max_admissions_in(Duration::ZERO), 0);
        assert_eq!(q.max_admissions_in(Duration::from_nanos(1)), 3);
        assert_eq!(q.max_admissions_in(Duration::from_millis(100)), 3);
        assert_eq!(q.max_admissions_in(Duration::from_nanos(100 * MS + 1)), 4);
        assert_eq!(q.max_admissions_in(Duration::MAX), u64::MAX / (100 * MS) + 3);
        assert_eq!(q.tolerance(), Duration::from_millis(200));
    }

    #[test]
    fn halving_never_loosens() {
        let q = Quota::derive(&[ServerLimit::per_second(10)], Duration::from_millis(100), 4).unwrap();
        let h = q.halved();
        assert_eq!(h.burst(), 2);
        assert_eq!(h.interval(), q.interval().saturating_mul(2));
        for ms in [1u64, 100, 1_000, 1_100, 60_000] {
            let w = Duration::from_millis(ms);
            assert!(h.max_admissions_in(w) <= q.max_admissions_in(w));
        }
    }
}
