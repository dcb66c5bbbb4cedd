//! Property 4: feedback only tightens.
//!
//! Responses are made up at random, whatever the server said: 429s, 418s with
//! and without a ban length, 5xx, timeouts, `Remaining-Req` headers with any
//! count, for the wrong group, or unreadable; and run-time configuration
//! changes (burst, adaptive strategy) land in between. The real server models
//! must still never answer 429, no window of `W + J` may hold more than `N`
//! sends, and, without configuration changes, the sends never beat the
//! configured quota's spacing however the ratio recovers.
//!
//! `UPBIT_PROPTEST_CASES` overrides the case count (default: 5 000 in release
//! builds, 200 in debug builds).
#![cfg(not(loom))]

mod common;

use common::{any_groups, build, build_on, case, Replies};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use upbit_limiter_core::limiter::Policy;
use upbit_limiter_verification::cases;
use upbit_limiter_verification::models::{max_in_window, spacing_violation};
use upbit_limiter_verification::sim;

proptest! {
    #![proptest_config(Config {
        cases: cases(5_000, 200),
        max_shrink_iters: 2_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/prop_feedback.txt"))),
        ..Config::default()
    })]

    #[test]
    fn random_feedback_never_loosens(case in case(any_groups(), 120, 4)) {
        let (setup, intents, quotas) = build(&case, None, Replies::Random);
        let out = sim::run(&setup, &intents, 2_000_000);
        let rejections = out.rejections();
        prop_assert!(rejections.is_empty(), "server models answered 429: {rejections:?}");
        let changed = !setup.changes.is_empty();
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
            if !changed {
                prop_assert_eq!(
                    spacing_violation(&g.sends, quota.interval(), quota.tolerance()),
                    None,
                    "{} beat its configured quota {:?}", g.group, quota
                );
            }
        }
    }

    /// The same on the interval log: whatever the answers say (made-up
    /// `Remaining-Req` counts, 429s that teach ceilings, 418s, timeouts),
    /// what the log admits never draws a 429 from any server model: what
    /// others are estimated to use only ever holds places back.
    #[test]
    fn random_feedback_never_loosens_the_interval_log(case in case(any_groups(), 120, 4)) {
        let (setup, intents, _) = build_on(&case, None, Replies::Random, Policy::IntervalLog);
        let out = sim::run(&setup, &intents, 2_000_000);
        let rejections = out.rejections();
        prop_assert!(rejections.is_empty(), "server models answered 429: {rejections:?}");
    }
}
