//! Properties 1 and 2: Zero-429 for every Upbit preset quota, and the bound
//! is tight.
//!
//! Property 1 drives the real `SyncLimiter` with arbitrary arrival sequences
//! (bursts, idle gaps, long runs, several groups interleaved), a network delay
//! per request anywhere in `[d, d + J]` and responses carrying the server's own
//! `Remaining-Req`, and checks that none of the four server models of any of
//! the group's windows ever answers 429.
//!
//! `UPBIT_PROPTEST_CASES` overrides the case count (default: 20 000 in
//! release builds, 300 in debug builds).
#![cfg(not(loom))]

mod common;

use common::{any_groups, build, case, Case, Replies};
use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use upbit_limiter_core::limiter::GroupConfig;
use upbit_limiter_core::{Duration, Group, Instant, Preset, Quota, ServerLimit};
use upbit_limiter_verification::cases;
use upbit_limiter_verification::models::{max_in_window, spacing_violation, ModelKind};
use upbit_limiter_verification::sim::{self, GroupSetup, Intent, Reply, Setup};

/// Property 1 for one case.
fn zero_429(case: &Case, force: Option<Quota>) -> Result<(), TestCaseError> {
    check(case, force, true)
}

/// Property 1's checks; `all` adds the send-side ones to the server models.
fn check(case: &Case, force: Option<Quota>, all: bool) -> Result<(), TestCaseError> {
    let (setup, intents, quotas) = build(case, force, Replies::Realistic);
    let out = sim::run(&setup, &intents, 2_000_000);
    prop_assert!(
        out.not_admitted.is_empty(),
        "never admitted: {:?}",
        out.not_admitted
    );
    let rejections = out.rejections();
    prop_assert!(
        rejections.is_empty(),
        "server models answered 429: {rejections:?}"
    );
    if !all {
        return Ok(());
    }
    for ((g, setup), quota) in out.groups.iter().zip(&setup.groups).zip(&quotas) {
        for limit in setup.config.limits.as_slice() {
            let widened = limit.window + setup.config.margin;
            let most = max_in_window(&g.sends, widened);
            prop_assert!(
                most as u64 <= u64::from(limit.max_requests),
                "{}: {most} sends in one window of {widened:?}, limit {limit:?}",
                g.group
            );
        }
        prop_assert_eq!(
            spacing_violation(&g.sends, quota.interval(), quota.tolerance()),
            None
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: cases(20_000, 300),
        max_shrink_iters: 2_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/prop_zero429.txt"))),
        ..Config::default()
    })]

    /// Property 1: the limiter's admissions never draw a 429 from any of the
    /// four server models, for every preset group, burst and jitter.
    #[test]
    fn zero_429_on_every_model(case in case(any_groups(), 120, 0)) {
        zero_429(&case, None)?;
    }
}

/// A runner for the tests that show the checker's power: a fixed seed (no
/// flakiness) and no regression file (a failure is the expected outcome).
fn power_runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// The checker's power: "10 rps, burst 10" forced through the
/// unchecked constructor onto a 10/s group is caught by property 1.
#[test]
fn property_1_catches_ten_rps_burst_ten() {
    let at_limit = Quota::new_unchecked(Duration::from_millis(100), 10);
    assert!(
        at_limit
            .check_against(&[ServerLimit::per_second(10)], Duration::ZERO)
            .is_err(),
        "the checked path refuses it"
    );
    let mut runner = power_runner(2_000);
    let market_only = Just(vec![Group::Market.index()]).boxed();
    // The server models alone must see it.
    let result = runner.run(&case(market_only, 60, 0), |case| {
        check(&case, Some(at_limit), false)
    });
    match result {
        Err(TestError::Fail(reason, minimal)) => {
            assert!(reason.message().contains("429"), "{reason}");
            let (_, intents, _) = build(&minimal, Some(at_limit), Replies::Realistic);
            println!(
                "caught as expected: {reason}\nminimal case: {} requests, preset {:?}, server {:?}",
                intents.len(),
                minimal.preset,
                ModelKind::ALL[minimal.server % 4]
            );
        }
        other => panic!("an unsafe quota went unnoticed: {other:?}"),
    }
}

/// Greedy clients from idle, all wanting to send at `t0`; `jitter` per intent.
fn greedy(
    group: Group,
    preset: Preset,
    config: GroupConfig,
    count: usize,
    jitter: &[Duration],
) -> sim::Outcome {
    let setup = Setup {
        preset,
        groups: vec![GroupSetup {
            group,
            config,
            phases: vec![],
        }],
        base_delay: Duration::from_millis(10),
        server: ModelKind::Sliding,
        changes: vec![],
    };
    let t0 = Instant::from_nanos(1_000_000_000);
    let intents: Vec<Intent> = (0..count)
        .map(|i| Intent {
            slot: 0,
            at: t0,
            jitter: jitter.get(i).copied().unwrap_or(Duration::ZERO),
            reply: Reply::Nothing,
        })
        .collect();
    sim::run(&setup, &intents, 10_000_000)
}

/// Property 2: for every preset group and every burst, a saturating client
/// reaches exactly the derived bound `b + ceil((W + J) / T) - 1` in some
/// window of length `W + J`, and that bound is exactly `N` for the window
/// that decides the quota; under the worst jitter (the early sends delayed by
/// `J`) a server window then holds exactly `N` requests, without a 429. With
/// the quota derived for no margin, the same adversary draws a 429: the margin
/// is neither wasted nor optional.
#[test]
fn the_bound_is_tight_for_every_preset_quota() {
    let mut checked = 0;
    for (preset, group) in sim::preset_groups() {
        let mut base = GroupConfig::preset(preset, group);
        base.policy = upbit_limiter_core::limiter::Policy::Gcra;
        let limits = base.limits.as_slice().to_vec();
        let n_min = limits.iter().map(|l| l.max_requests).min().unwrap_or(1);
        let n_max = limits.iter().map(|l| l.max_requests).max().unwrap_or(1);
        let margin = base.margin;
        for burst in 1..=n_min {
            let mut config = base;
            config.burst = burst;
            let quota = config.quota().expect("derivable");
            let count = n_max as usize + 5;
            let plain = greedy(group, preset, config, count, &[]);
            let sends = &plain.groups[0].sends;
            assert!(
                plain.groups[0].order.iter().copied().eq(0..count),
                "greedy clients go in order"
            );
            assert_eq!(sends.len(), count);
            let mut binding = 0;
            for limit in &limits {
                let widened = limit.window + margin;
                let bound = quota.max_admissions_in(widened);
                assert!(bound <= u64::from(limit.max_requests));
                assert_eq!(
                    max_in_window(sends, widened) as u64,
                    bound,
                    "{preset:?} {group} b={burst} {limit:?}: the adversary must reach the bound"
                );
                if bound == u64::from(limit.max_requests) {
                    binding += 1;
                }
            }
            assert!(
                binding > 0,
                "{preset:?} {group} b={burst}: no window uses its full limit"
            );

            // Worst jitter: everything sent within J of the first send arrives J late.
            let first = sends[0];
            let jitter: Vec<Duration> = sends
                .iter()
                .map(|&s| {
                    if s - first < margin {
                        margin
                    } else {
                        Duration::ZERO
                    }
                })
                .collect();
            let worst = greedy(group, preset, config, count, &jitter);
            assert!(worst.rejections().is_empty(), "{:?}", worst.rejections());
            let arrivals_full = limits.iter().any(|l| {
                let mut arrivals: Vec<Instant> = worst.groups[0]
                    .sends
                    .iter()
                    .zip(&jitter)
                    .map(|(&s, &j)| s + j)
                    .collect();
                arrivals.sort();
                max_in_window(&arrivals, l.window) as u64 == u64::from(l.max_requests)
            });
            assert!(
                arrivals_full,
                "{preset:?} {group} b={burst}: worst jitter should fill a server window"
            );

            // The quota derived for no margin is caught by the same adversary.
            let unguarded = Quota::derive(&limits, Duration::ZERO, burst).expect("derivable");
            let mut risky = config;
            risky.quota = Some(unguarded);
            risky.allow_unsafe = true;
            let sends0 = greedy(group, preset, risky, count, &[]).groups[0].sends.clone();
            let first0 = sends0[0];
            let jitter0: Vec<Duration> = sends0
                .iter()
                .map(|&s| {
                    if s - first0 < margin {
                        margin
                    } else {
                        Duration::ZERO
                    }
                })
                .collect();
            let hit = greedy(group, preset, risky, count, &jitter0);
            assert!(
                hit.rejections().iter().any(|r| r.2 == ModelKind::Sliding),
                "{preset:?} {group} b={burst}: a quota without the margin should draw a 429"
            );
            checked += 1;
        }
    }
    // 13 Korea groups + Global order, every burst up to the smallest limit.
    assert!(checked >= 14, "{checked}");
}

/// The checker's power, subtler: a quota derived as if there were no network
/// jitter (margin zero) is only unsafe under unlucky delays. The server
/// models alone (without the send-side window check) still find a 429 for it
/// in property 1's random search.
#[test]
fn property_1_catches_a_quota_derived_without_the_jitter_margin() {
    let limits = GroupConfig::preset(Preset::Korea, Group::Order).limits;
    let no_margin = Quota::derive(limits.as_slice(), Duration::ZERO, 1).expect("derivable");
    let mut runner = power_runner(5_000);
    let order_only = Just(vec![Group::Order.index()]).boxed();
    let korea = case(order_only, 120, 0).prop_map(|mut c| {
        c.preset = Preset::Korea;
        c
    });
    match runner.run(&korea, |case| check(&case, Some(no_margin), false)) {
        Err(TestError::Fail(reason, minimal)) => {
            assert!(reason.message().contains("429"), "{reason}");
            let (_, intents, _) = build(&minimal, Some(no_margin), Replies::Realistic);
            println!(
                "caught as expected: {reason}\nminimal case: {} requests",
                intents.len()
            );
        }
        other => panic!("a quota without the jitter margin went unnoticed: {other:?}"),
    }
}
