//! Shared set-up for the benches and the allocation audit: group configurations
//! that always admit or never admit, and clock conversions.
//!
//! The benches themselves live in `benches/` (run them with
//! `cargo bench -p upbit-limiter-benches`); the numbers and how to read them
//! are in `BENCHMARKS.md` at the repository root.

use upbit_limiter_core::limiter::{Limits, Policy};
use upbit_limiter_core::{Duration, GroupConfig, Instant, LimiterConfig, Preset, Quota, ServerLimit};

/// Emission interval of [`always_admits`]: the finest the core stores (1 µs).
pub const ADMIT_INTERVAL: Duration = Duration::from_micros(1);

/// Burst of [`always_admits`]: how many decisions a fresh group admits at one
/// fixed instant. Far more than one criterion sample makes.
pub const ADMIT_BURST: u32 = 4_000_000_000;

/// Emission interval of [`never_admits`] after its single admission.
pub const DENY_INTERVAL: Duration = Duration::from_secs(3_600);

/// A start instant away from the epoch, so that `now - x` never saturates by accident.
pub const START: Instant = Instant::from_nanos(1_000_000_000);

/// A group that admits every decision (the GCRA policy): one request per microsecond with a
/// burst of [`ADMIT_BURST`], checked safe against a server limit of
/// `u32::MAX` per second. A fresh group admits [`ADMIT_BURST`] decisions at
/// one fixed instant; a clock that advances by [`ADMIT_INTERVAL`] per decision
/// keeps it admitting for ever.
pub fn always_admits() -> GroupConfig {
    let mut config = GroupConfig::preset(Preset::Korea, upbit_limiter_core::Group::Default);
    // One window: the constructor only refuses empty or over-long lists.
    if let Some(limits) = Limits::new(&[ServerLimit::new(u32::MAX, Duration::from_secs(1))]) {
        config.limits = limits;
    }
    config.margin = Duration::from_nanos(1);
    config.quota = Quota::new(ADMIT_INTERVAL, ADMIT_BURST).ok();
    config.policy = Policy::Gcra;
    config
}

/// A group that admits once and then refuses for [`DENY_INTERVAL`] (the GCRA policy): one
/// request per hour, burst 1, with a two-hour waiter deadline so that an
/// async waiter sleeps instead of timing out at once.
pub fn never_admits() -> GroupConfig {
    let mut config = GroupConfig::preset(Preset::Korea, upbit_limiter_core::Group::Default);
    // One per (hour − 2 ns): with the 1 ns margin and the 1 ns for a closed
    // window, the derived interval is the hour.
    if let Some(limits) = Limits::new(&[ServerLimit::new(1, DENY_INTERVAL - Duration::from_nanos(2))]) {
        config.limits = limits;
    }
    config.margin = Duration::from_nanos(1);
    config.burst = 1;
    config.quota = None;
    config.waiter_timeout = DENY_INTERVAL.saturating_mul(2);
    config.policy = Policy::Gcra;
    config
}

/// A configuration in which every group is `group`.
pub fn every_group(group: GroupConfig) -> LimiterConfig {
    let mut config = LimiterConfig::preset(Preset::Korea);
    for g in config.groups.iter_mut() {
        *g = group;
    }
    config
}

/// `std::time::Instant` as core time, measured from `epoch`.
#[inline]
pub fn from_std(epoch: std::time::Instant, now: std::time::Instant) -> Instant {
    let d = now.saturating_duration_since(epoch);
    Instant::from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The `(method, path)` pairs the classified benches cycle through: one per
/// kind of rule in `classify` (quotation prefix, exchange method + path,
/// unknown `/v1` path, a full URL, outside the API).
pub const REQUESTS: [(&str, &str); 8] = [
    ("GET", "/v1/ticker"),
    ("GET", "/v1/candles/minutes/1"),
    ("GET", "/v1/orderbook"),
    ("POST", "/v1/orders"),
    ("DELETE", "/v1/orders/open"),
    ("GET", "/v1/accounts"),
    ("GET", "https://api.upbit.com/v1/trades/ticks?market=KRW-BTC"),
    ("GET", "/v2/unknown"),
];

/// `Remaining-Req` values the header bench cycles through.
pub const HEADERS: [&str; 4] = [
    "group=default; min=1800; sec=29",
    "group=order; min=480; sec=7",
    "group=market; min=573; sec=9",
    "group=candles; sec=9",
];

#[cfg(test)]
mod tests {
    use super::*;
    use upbit_limiter_core::limiter::Denied;
    use upbit_limiter_core::{Group, GroupLimiter};

    #[test]
    fn always_admits_is_valid_and_admits_at_one_instant() {
        let g = GroupLimiter::new(Group::Default, always_admits()).expect("valid configuration");
        for _ in 0..100_000 {
            assert!(g.try_acquire(START).is_ok());
        }
        let mut now = START;
        for _ in 0..100_000 {
            now += ADMIT_INTERVAL;
            assert!(g.try_acquire(now).is_ok());
        }
        assert_eq!(g.status(now).counters.denied, 0);
    }

    #[test]
    fn never_admits_admits_once_then_denies_for_an_hour() {
        let g = GroupLimiter::new(Group::Default, never_admits()).expect("valid configuration");
        assert!(g.try_acquire(START).is_ok());
        for _ in 0..1_000 {
            assert_eq!(
                g.try_acquire(START),
                Err(Denied::NotYet {
                    earliest: START + DENY_INTERVAL
                })
            );
        }
        assert!(g.try_acquire(START + DENY_INTERVAL).is_ok());
    }

    #[test]
    fn every_group_configures_all_thirteen() {
        let config = every_group(never_admits());
        for g in Group::ALL {
            assert_eq!(*config.group(g), never_admits());
        }
    }

    #[test]
    fn std_instants_convert_to_nanoseconds_since_the_epoch() {
        let epoch = std::time::Instant::now();
        let later = epoch + std::time::Duration::from_micros(1_500);
        assert_eq!(from_std(epoch, later), Instant::from_nanos(1_500_000));
        assert_eq!(from_std(later, epoch), Instant::ZERO);
    }
}
