//! Property 3: liveness and utilisation.
//!
//! Under saturating demand every request is admitted eventually, in FIFO
//! order (through the core's async wait layer, on virtual time, with tasks
//! polled in shuffled order), and the sustained throughput of every preset
//! group is at least 95 % of `N / (W + J)`.
//!
//! `UPBIT_PROPTEST_CASES` overrides the case count (default: 1 000 in release
//! builds, 100 in debug builds).
#![cfg(not(loom))]

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use upbit_limiter_core::limiter::GroupConfig;
use upbit_limiter_core::{
    AcquireError, Admission, Duration, Group, Instant, LimiterConfig, Preset, RateLimiter, Request, Response,
};
use upbit_limiter_verification::cases;
use upbit_limiter_verification::models::ModelKind;
use upbit_limiter_verification::runtime::{run_tasks, Task, VirtualRuntime};
use upbit_limiter_verification::sim::{self, GroupSetup, Intent, Reply, Setup};

/// The preset's configuration of `group` on the GCRA policy: this file's
/// properties are the GCRA quota's (the interval log's throughput is
/// measured by the simulator and its safety in `prop_interval_log`).
fn gcra(preset: Preset, group: Group) -> GroupConfig {
    let mut config = GroupConfig::preset(preset, group);
    config.policy = upbit_limiter_core::limiter::Policy::Gcra;
    config
}

/// The slowest of the group's windows: `min N / (W + J)` in requests per second.
fn required_rate(config: &GroupConfig) -> f64 {
    config
        .limits
        .as_slice()
        .iter()
        .map(|l| f64::from(l.max_requests) / (l.window + config.margin).as_secs_f64())
        .fold(f64::INFINITY, f64::min)
}

/// Requests per second between the first and the last of `sends` (ascending).
fn sustained_rate(sends: &[Instant]) -> f64 {
    let span = (sends[sends.len() - 1] - sends[0]).as_secs_f64();
    (sends.len() - 1) as f64 / span
}

/// Runs `count` acquisitions of `group` through the async wait layer; task `i`
/// starts at `t0 + starts[i]` (strictly increasing). Returns each result.
fn run_waiters(
    preset: Preset,
    group: Group,
    config: GroupConfig,
    starts: &[Duration],
    seed: u64,
) -> Vec<Option<(Instant, Result<Admission, AcquireError>)>> {
    let mut limiter_config = LimiterConfig::preset(preset);
    *limiter_config.group_mut(group) = config;
    let t0 = Instant::from_nanos(1_000_000_000);
    let rt = VirtualRuntime::starting_at(t0);
    let limiter = RateLimiter::with_runtime(&limiter_config, rt.clone()).expect("preset configuration");
    let limiter = &limiter;
    let tasks: Vec<Task<'_, Result<Admission, AcquireError>>> = starts
        .iter()
        .enumerate()
        .map(|(i, &offset)| Task {
            start: t0 + offset,
            future: Box::pin(async move {
                let request = Request::group(group)
                    .deadline(Instant::MAX)
                    .correlation_id(i as u64);
                let permit = limiter.acquire_request(request).await?;
                let admission = *permit.admission();
                permit.report(Response::status(200));
                Ok(admission)
            }),
        })
        .collect();
    run_tasks(&rt, tasks, seed, 1_000_000)
}

fn preset_group() -> impl Strategy<Value = (Preset, Group)> {
    let all = sim::preset_groups();
    (0..all.len()).prop_map(move |i| all[i])
}

proptest! {
    #![proptest_config(Config {
        cases: cases(1_000, 100),
        max_shrink_iters: 2_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/prop_liveness.txt"))),
        ..Config::default()
    })]

    /// Every waiter is admitted, in the order it started waiting, and a
    /// saturated preset group runs at >= 95 % of `N / (W + J)`.
    #[test]
    fn saturated_waiters_are_all_admitted_in_fifo_order(
        (preset, group) in preset_group(),
        gaps in proptest::collection::vec(prop_oneof![3 => 1u64..1_000, 1 => 1u64..2_000_000_000], 2..60),
        seed in any::<u64>(),
    ) {
        let config = gcra(preset, group);
        // Distinct start instants, so the order of arrival is well defined.
        let starts: Vec<Duration> = gaps
            .iter()
            .scan(Duration::ZERO, |t, &g| {
                *t = *t + Duration::from_nanos(g);
                Some(*t)
            })
            .collect();
        let results = run_waiters(preset, group, config, &starts, seed);
        let mut admissions = Vec::new();
        for (i, r) in results.iter().enumerate() {
            match r {
                Some((_, Ok(a))) => admissions.push(*a),
                Some((_, Err(e))) => return Err(TestCaseError::fail(format!("waiter {i} failed: {e}"))),
                None => return Err(TestCaseError::fail(format!("waiter {i} never finished"))),
            }
        }
        for (i, pair) in admissions.windows(2).enumerate() {
            prop_assert!(
                pair[0].seq < pair[1].seq && pair[0].at <= pair[1].at,
                "waiter {} started before waiter {} but was admitted after it: {:?} / {:?}",
                i, i + 1, pair[0], pair[1]
            );
        }
    }
}

/// A saturated preset group (all demand at once, burst 1) runs at >= 95 % of
/// `N / (W + J)`, through the async wait layer and through plain
/// `try_acquire` retries alike.
#[test]
fn saturated_preset_groups_use_at_least_95_percent_of_the_window() {
    for (preset, group) in sim::preset_groups() {
        let config = gcra(preset, group);
        let required = required_rate(&config);
        let n_max = config
            .limits
            .as_slice()
            .iter()
            .map(|l| l.max_requests)
            .max()
            .unwrap_or(1);
        let count = (2 * n_max as usize).max(40);
        let starts: Vec<Duration> = (1..=count as u64).map(Duration::from_nanos).collect();
        let results = run_waiters(preset, group, config, &starts, 42);
        let mut sends: Vec<Instant> = results
            .iter()
            .map(|r| match r {
                Some((_, Ok(a))) => a.at,
                other => panic!("{preset:?} {group}: waiter not admitted: {other:?}"),
            })
            .collect();
        sends.sort();
        let rate = sustained_rate(&sends);
        assert!(
            rate >= 0.95 * required,
            "{preset:?} {group}: async waiters ran at {rate:.4}/s, need 95 % of {required:.4}/s"
        );

        let setup = Setup {
            preset,
            groups: vec![GroupSetup {
                group,
                config,
                phases: vec![],
            }],
            base_delay: Duration::from_millis(15),
            server: ModelKind::Sliding,
            changes: vec![],
        };
        let intents: Vec<Intent> = (0..count)
            .map(|_| Intent {
                slot: 0,
                at: Instant::from_nanos(1_000_000_000),
                jitter: Duration::ZERO,
                reply: Reply::ServerStatusOnly,
            })
            .collect();
        let out = sim::run(&setup, &intents, 10_000_000);
        assert!(out.not_admitted.is_empty());
        let rate = sustained_rate(&out.groups[0].sends);
        assert!(
            rate >= 0.95 * required,
            "{preset:?} {group}: try_acquire clients ran at {rate:.4}/s, need 95 % of {required:.4}/s"
        );
    }
}

/// A client alone is not slowed by its own echo: when every response carries
/// the server's `Remaining-Req` (from each of the four models in turn), a
/// saturated preset group still runs at >= 95 % of `N / (W + J)`, and the
/// server models never answer 429.
#[test]
fn remaining_req_echo_of_our_own_traffic_keeps_full_throughput() {
    for (preset, group) in sim::preset_groups() {
        let config = gcra(preset, group);
        let required = required_rate(&config);
        for server in ModelKind::ALL {
            let setup = Setup {
                preset,
                groups: vec![GroupSetup {
                    group,
                    config,
                    phases: vec![],
                }],
                base_delay: Duration::from_millis(15),
                server,
                changes: vec![],
            };
            let intents: Vec<Intent> = (0..200)
                .map(|_| Intent {
                    slot: 0,
                    at: Instant::from_nanos(1_000_000_000),
                    jitter: Duration::ZERO,
                    reply: Reply::Server,
                })
                .collect();
            let out = sim::run(&setup, &intents, 10_000_000);
            assert!(out.not_admitted.is_empty());
            assert!(out.rejections().is_empty(), "{:?}", out.rejections());
            let rate = sustained_rate(&out.groups[0].sends);
            assert!(
                rate >= 0.95 * required,
                "{preset:?} {group} {server}: {:.1} % of N/(W+J) with {} header tightenings",
                100.0 * rate / required,
                out.header_tightenings
            );
        }
    }
}
