//! The same seed gives the same report, byte for byte (apart from the wall
//! time), whatever else runs in the process; another seed gives another one.

use upbit_limiter_sim::{run, Policy, Report, RunOptions, Scenario, ServerModel};

fn json_without_wall(r: &Report) -> String {
    let mut v = serde_json::to_value(r).unwrap();
    v.as_object_mut().unwrap().remove("wall_ms");
    serde_json::to_string(&v).unwrap()
}

fn active_for(seconds: f64) -> Scenario {
    let mut s = Scenario::builtin("active").unwrap().unwrap();
    for l in &mut s.loads {
        l.until = upbit_limiter_core::Duration::try_from_secs_f64(seconds).unwrap();
    }
    s
}

fn once(s: &Scenario, model: ServerModel, policy: Policy, seed: u64) -> String {
    let r = run(s, &RunOptions { model, policy, seed }, &mut |_| {}).unwrap();
    json_without_wall(&r)
}

#[test]
fn same_seed_same_report() {
    let shock = Scenario::builtin("market-shock").unwrap().unwrap();
    let load = active_for(900.0);
    for model in ServerModel::ALL {
        for policy in [Policy::Ours, Policy::BestPractice] {
            let a = once(&shock, model, policy, 7);
            let b = once(&shock, model, policy, 7);
            assert_eq!(a, b, "market-shock {model} {policy}");
        }
        let a = once(&load, model, Policy::Ours, 7);
        // Something else in between must not matter.
        let _ = once(&shock, model, Policy::None, 8);
        let b = once(&load, model, Policy::Ours, 7);
        assert_eq!(a, b, "active {model}");
    }
}

#[test]
fn another_seed_another_report() {
    let load = active_for(900.0);
    let a = once(&load, ServerModel::Sliding, Policy::Ours, 1);
    let b = once(&load, ServerModel::Sliding, Policy::Ours, 2);
    assert_ne!(a, b);
}

#[test]
fn policies_see_the_same_traffic() {
    // Open-loop traffic does not depend on how it is admitted.
    let load = active_for(900.0);
    let opts = |policy| RunOptions {
        model: ServerModel::Fixed,
        policy,
        seed: 3,
    };
    let requests: Vec<Vec<(String, u64)>> = [Policy::Ours, Policy::GcraAtLimit, Policy::None]
        .into_iter()
        .map(|p| {
            run(&load, &opts(p), &mut |_| {})
                .unwrap()
                .groups
                .iter()
                .map(|g| (g.group.clone(), g.requests))
                .collect()
        })
        .collect();
    assert!(requests[0].iter().map(|(_, n)| n).sum::<u64>() > 1000);
    assert_eq!(requests[0], requests[1]);
    assert_eq!(requests[0], requests[2]);
}

#[test]
fn the_oracle_and_every_network_profile_are_deterministic() {
    use upbit_limiter_sim::network::Profile;
    for profile in Profile::ALL {
        let mut shock = Scenario::builtin("market-shock").unwrap().unwrap();
        shock.set_network(profile);
        for policy in [Policy::Ours, Policy::Oracle] {
            let a = once(&shock, ServerModel::Sliding, policy, 5);
            let _ = once(&shock, ServerModel::Sliding, policy, 6);
            let b = once(&shock, ServerModel::Sliding, policy, 5);
            assert_eq!(a, b, "{profile} {policy}");
        }
    }
}
