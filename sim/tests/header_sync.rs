//! `Remaining-Req` sync must not slow a client that is alone on its IP and
//! pocket: the server's count differs from ours only by network jitter
//! (requests sent just before the window, or sent after this one but
//! arriving first), which is not another process.
//!
//! Counting our own admissions over the send window alone (without the
//! jitter margin on both sides) once mistook that difference for a
//! neighbour and throttled an 18/s Poisson flow on `default` (limit 30/s)
//! until requests timed out after 30 s under a sliding-window server.

use upbit_limiter_sim::{run, Policy, RunOptions, Scenario, ServerModel};

const ALONE: &str = r#"
name = "alone-on-default"
description = "Poisson 18/s on the default group for 10 min, no other process"
[[loads]]
name = "flow"
until_s = 600
per_minute = [1080]
mix = [{ call = "GET /v1/accounts" }]
"#;

#[test]
fn a_client_alone_is_not_slowed_by_its_own_echo() {
    let s = Scenario::from_toml(ALONE, "alone").unwrap();
    for model in ServerModel::ALL {
        let opts = RunOptions {
            model,
            policy: Policy::Ours,
            seed: 1,
        };
        let r = run(&s, &opts, &mut |_| {}).unwrap();
        let g = &r.groups[0];
        assert_eq!(g.header_tightenings, Some(0), "{model}");
        assert_eq!(g.local_rejections.timeout, 0, "{model}");
        assert!(g.wait_ms.p99 < 1000.0, "{model}: p99 {} ms", g.wait_ms.p99);
    }
}
