//! Property 5: the circuit breaker and the adaptive ratio behave exactly like
//! small reference models written from their documentation, on random event
//! sequences with random valid configurations, time standing still, going
//! backwards, jumping by hours or to the end of time.
//!
//! `UPBIT_PROPTEST_CASES` overrides the case count (default: 5 000 in release
//! builds, 300 in debug builds).
#![cfg(not(loom))]

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use upbit_limiter_core::adaptive::{Adaptive, AdaptiveConfig, Ratio};
use upbit_limiter_core::breaker::{Breaker, BreakerConfig, BreakerOpen};
use upbit_limiter_core::{Duration, Instant};
use upbit_limiter_verification::cases;
use upbit_limiter_verification::reference::{RefAdaptive, RefBreaker};

/// How the caller's `now` moves before an event.
#[derive(Clone, Copy, Debug)]
enum Step {
    Same,
    Nanos(u64),
    Millis(u64),
    Secs(u64),
    /// Hours to centuries.
    Huge(u64),
    /// Back by this many milliseconds (saturating at zero).
    Back(u64),
    /// To `Instant::MAX`, "never".
    End,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Same),
        2 => (0u64..1_000).prop_map(Step::Nanos),
        6 => (0u64..5_000).prop_map(Step::Millis),
        4 => (0u64..1_000).prop_map(Step::Secs),
        1 => (0u64..u64::MAX / 4).prop_map(Step::Huge),
        2 => (0u64..100_000).prop_map(Step::Back),
        1 => Just(Step::End),
    ]
}

fn apply(now: Instant, step: Step) -> Instant {
    match step {
        Step::Same => now,
        Step::Nanos(n) => now + Duration::from_nanos(n),
        Step::Millis(n) => now + Duration::from_millis(n),
        Step::Secs(n) => now + Duration::from_secs(n),
        Step::Huge(n) => now + Duration::from_nanos(n),
        Step::Back(ms) => now.saturating_sub(Duration::from_millis(ms)),
        Step::End => Instant::MAX,
    }
}

fn ms(lo: u64, hi: u64) -> impl Strategy<Value = Duration> {
    (lo..hi).prop_map(Duration::from_millis)
}

fn breaker_config() -> impl Strategy<Value = BreakerConfig> {
    let random = (
        1u32..8,
        1u32..=1_000_000,
        1u8..=64,
        any::<u8>(),
        ms(1, 60_000),
        ms(0, 120_000),
        1u32..5,
        1u32..6,
        any::<u32>(),
        ms(1, 120_000),
    )
        .prop_map(
            |(consecutive, rate, window, min_pick, open_wait, extra, mult, probes, succ_pick, max_wait)| {
                BreakerConfig {
                    consecutive_failures: consecutive,
                    failure_rate_ppm: rate,
                    window,
                    minimum_calls: 1 + min_pick % window,
                    open_wait,
                    open_wait_max: open_wait + extra,
                    open_wait_multiplier: mult,
                    half_open_probes: probes,
                    half_open_successes: 1 + succ_pick % probes,
                    half_open_max_wait: max_wait,
                }
            },
        );
    prop_oneof![1 => Just(BreakerConfig::default()), 3 => random]
}

#[derive(Clone, Copy, Debug)]
enum BreakerOp {
    Acquire,
    Success,
    Failure,
    Ignored,
    ForceOpen,
    Disable,
    Reset,
    HandleTimeout,
}

fn breaker_op() -> impl Strategy<Value = BreakerOp> {
    prop_oneof![
        8 => Just(BreakerOp::Acquire),
        6 => Just(BreakerOp::Success),
        7 => Just(BreakerOp::Failure),
        2 => Just(BreakerOp::Ignored),
        1 => Just(BreakerOp::ForceOpen),
        1 => Just(BreakerOp::Disable),
        1 => Just(BreakerOp::Reset),
        2 => Just(BreakerOp::HandleTimeout),
    ]
}

fn adaptive_config() -> impl Strategy<Value = AdaptiveConfig> {
    let random = (
        1u32..4,
        1u32..1_000_000,
        1u32..=1_000_000,
        (1u64..600_000_000_000).prop_map(Duration::from_nanos),
        (1u64..60_000_000_000).prop_map(Duration::from_nanos),
        1u32..=1_000_000,
        ms(1, 120_000),
        ms(0, 4_000_000),
    )
        .prop_map(
            |(threshold, reduction, min_ratio, delay, interval, step, ban, extra)| AdaptiveConfig {
                error_threshold: threshold,
                reduction: Ratio::from_ppm(reduction).unwrap_or(Ratio::ONE),
                min_ratio: Ratio::from_ppm(min_ratio).unwrap_or(Ratio::ONE),
                recovery_delay: delay,
                recovery_interval: interval,
                recovery_step_ppm: step,
                ban_default: ban,
                ban_max: ban + extra,
            },
        );
    prop_oneof![
        1 => Just(AdaptiveConfig::conservative()),
        1 => Just(AdaptiveConfig::balanced()),
        1 => Just(AdaptiveConfig::aggressive()),
        3 => random,
    ]
}

#[derive(Clone, Copy, Debug)]
enum AdaptiveOp {
    TooMany,
    Banned(Option<Duration>),
    Success,
}

fn adaptive_op() -> impl Strategy<Value = AdaptiveOp> {
    let ban = prop_oneof![
        Just(None),
        ms(0, 600_000).prop_map(Some),
        Just(Some(Duration::MAX)),
    ];
    prop_oneof![
        5 => Just(AdaptiveOp::TooMany),
        2 => ban.prop_map(AdaptiveOp::Banned),
        5 => Just(AdaptiveOp::Success),
    ]
}

fn open(e: BreakerOpen) -> (Instant, bool) {
    (e.retry_at, e.forced)
}

proptest! {
    #![proptest_config(Config {
        cases: cases(5_000, 300),
        max_shrink_iters: 5_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/prop_state_machines.txt"))),
        ..Config::default()
    })]

    #[test]
    fn breaker_matches_its_reference_model(
        config in breaker_config(),
        events in proptest::collection::vec((step(), breaker_op()), 1..200),
        probe in step(),
    ) {
        prop_assert_eq!(config.validate(), Ok(()));
        let mut real = Breaker::new(config);
        let mut model = RefBreaker::new(config);
        let mut now = Instant::ZERO;
        for (i, &(step, op)) in events.iter().enumerate() {
            now = apply(now, step);
            match op {
                BreakerOp::Acquire => {
                    prop_assert_eq!(real.try_acquire(now).map_err(open), model.try_acquire(now), "event {} {:?}", i, op);
                }
                BreakerOp::Success => prop_assert_eq!(real.on_success(now), model.on_success(now), "event {} {:?}", i, op),
                BreakerOp::Failure => prop_assert_eq!(real.on_failure(now), model.on_failure(now), "event {} {:?}", i, op),
                BreakerOp::Ignored => {
                    real.on_ignored(now);
                    model.on_ignored(now);
                }
                BreakerOp::ForceOpen => prop_assert_eq!(real.force_open(now), model.force_open(now), "event {} {:?}", i, op),
                BreakerOp::Disable => prop_assert_eq!(real.disable(now), model.disable(now), "event {} {:?}", i, op),
                BreakerOp::Reset => prop_assert_eq!(real.reset(now), model.reset(now), "event {} {:?}", i, op),
                BreakerOp::HandleTimeout => {
                    prop_assert_eq!(real.handle_timeout(now), model.handle_timeout(now), "event {} {:?}", i, op);
                }
            }
            let later = apply(now, probe);
            for at in [now, later] {
                prop_assert_eq!(real.state(at), model.state(at), "state after event {} at {:?}", i, at);
                prop_assert_eq!(real.next_change(at), model.next_change(at), "next change after event {} at {:?}", i, at);
            }
            prop_assert_eq!(real.transitions(), model.transitions(), "transitions after event {}", i);
            if let Some(at) = real.next_change(now) {
                prop_assert!(at > now, "the next change {:?} is not after {:?}", at, now);
            }
        }
    }

    #[test]
    fn adaptive_matches_its_reference_model(
        config in adaptive_config(),
        events in proptest::collection::vec((step(), adaptive_op()), 1..200),
        probes in proptest::collection::vec(step(), 3),
    ) {
        prop_assert_eq!(config.validate(), Ok(()));
        let mut real = Adaptive::new(config).expect("validated");
        let mut model = RefAdaptive::new(config);
        let mut now = Instant::ZERO;
        for (i, &(step, op)) in events.iter().enumerate() {
            now = apply(now, step);
            match op {
                AdaptiveOp::TooMany => prop_assert_eq!(real.on_429(now).ppm(), model.on_429(now), "event {} {:?}", i, op),
                AdaptiveOp::Banned(ban) => {
                    prop_assert_eq!(real.on_418(now, ban), model.on_418(now, ban), "event {} {:?}", i, op);
                }
                AdaptiveOp::Success => {
                    real.on_success(now);
                    model.on_success(now);
                }
            }
            prop_assert_eq!(real.consecutive_429(), model.consecutive_429(), "count after event {}", i);
            prop_assert_eq!(real.banned_until(), model.banned_until(), "ban after event {}", i);
            let mut at = now;
            for &p in std::iter::once(&Step::Same).chain(&probes) {
                at = apply(at, p);
                let ratio = real.ratio(at).ppm();
                prop_assert_eq!(ratio, model.ratio_ppm(at), "ratio after event {} at {:?}", i, at);
                prop_assert!((1..=Ratio::SCALE).contains(&ratio));
                prop_assert_eq!(real.next_change(at), model.next_change(at), "next change after event {} at {:?}", i, at);
            }
        }
    }
}
