//! The oracle (clairvoyant admission) is the physical limit: it never draws a
//! 429 or a 418, under any server model and any network profile, and no
//! limiter waits less on the same traffic.

use upbit_limiter_core::Duration;
use upbit_limiter_sim::compare::{compare, run_compared, Comparison};
use upbit_limiter_sim::network::Profile;
use upbit_limiter_sim::{run, Policy, RunOptions, Scenario, ServerModel};

fn scenario(name: &str, profile: Profile) -> Scenario {
    let mut s = Scenario::builtin(name).unwrap().unwrap();
    s.set_network(profile);
    // The institutional hour, cut after its first x5 peak (300 s to 420 s).
    for l in &mut s.loads {
        l.until = l.until.min(Duration::from_secs(480));
    }
    s
}

#[test]
fn the_oracle_never_draws_a_429_or_418() {
    for name in ["market-shock", "institutional"] {
        for profile in Profile::ALL {
            let s = scenario(name, profile);
            for model in ServerModel::ALL {
                let opts = RunOptions {
                    model,
                    policy: Policy::Oracle,
                    seed: 1,
                };
                let r = run(&s, &opts, &mut |_| {}).unwrap();
                let at = format!("{name} {model} {profile}");
                assert_eq!((r.total_429, r.total_418), (0, 0), "{at}\n{}", r.render());
                assert_eq!(r.total_admitted, r.total_requests, "{at}: every request was sent");
                assert!(r.total_requests > 500, "{at}: {} requests", r.total_requests);
                if model == ServerModel::Sliding {
                    // The sliding model's own criterion: never more than N in
                    // any window. (The others accept more in some sliding
                    // window, and the oracle uses all they accept.)
                    for g in &r.groups {
                        assert!(g.utilisation <= 1.0, "{at} {}", g.group);
                    }
                }
            }
        }
    }
}

fn shock(model: ServerModel, profile: Profile) -> Comparison {
    let s = scenario("market-shock", profile);
    run_compared(&s, model, 1, &[Policy::Ours, Policy::Oracle], &mut |_, _| {}).unwrap()
}

#[test]
fn no_policy_waits_less_than_the_oracle_in_market_shock() {
    for profile in Profile::ALL {
        for model in ServerModel::ALL {
            let c = shock(model, profile);
            let at = format!("{model} {profile}");
            let (ours, oracle) = (&c.total[0], &c.total[1]);
            assert_eq!((ours.policy.as_str(), oracle.policy.as_str()), ("ours", "oracle"));
            assert!(
                oracle.wait_ms.p99 <= ours.wait_ms.p99,
                "{at}: oracle p99 {} above ours {}\n{}",
                oracle.wait_ms.p99,
                ours.wait_ms.p99,
                c.render()
            );
            for g in &c.groups {
                assert!(
                    g.rows[1].wait_ms.p99 <= g.rows[0].wait_ms.p99,
                    "{at} {}:\n{}",
                    g.group,
                    c.render()
                );
            }
            if model == ServerModel::Sliding {
                // N in any window whoever admits them: the 99th of 100 ticker
                // calls at once on 10/s waits 9 windows, the oracle too.
                let ticker = c.groups.iter().find(|g| g.group == "ticker").unwrap();
                assert!(ticker.rows[1].wait_ms.p99 >= 9_000.0, "{at}\n{}", c.render());
            }
        }
    }
}

#[test]
fn the_oracle_admits_at_the_servers_rate_while_requests_wait() {
    let c = shock(ServerModel::Sliding, Profile::LowLatency);
    for name in ["ticker", "order"] {
        let g = c.groups.iter().find(|g| g.group == name).unwrap();
        let share = |i: usize| g.rows[i].throughput.unwrap().share_of_limit.unwrap();
        assert!(share(1) >= 0.98, "{name}: oracle at {}\n{}", share(1), c.render());
        assert!(share(1) <= 1.01, "{name}: oracle above the limit\n{}", c.render());
        // Ours pays its jitter margin on every request.
        assert!(share(0) < share(1), "{name}\n{}", c.render());
    }
}

#[test]
fn a_comparison_runs_every_policy_on_the_same_traffic() {
    // Open-loop traffic: the same requests per group whoever admits them.
    let s = scenario("institutional", Profile::Default);
    let policies = [Policy::Ours, Policy::GcraAtLimit, Policy::Oracle];
    let c = run_compared(&s, ServerModel::Sliding, 3, &policies, &mut |_, _| {}).unwrap();
    assert_eq!(c.policies, ["ours", "gcra-at-limit", "oracle"]);
    for g in &c.groups {
        assert_eq!(g.rows.len(), 3);
        assert!(
            g.rows.iter().all(|r| r.requests == g.rows[0].requests),
            "{}",
            g.group
        );
    }
    assert!(c.total[0].requests > 1000);
    // Reports of different seeds or networks are not comparable.
    let opts = |policy, seed| RunOptions {
        model: ServerModel::Sliding,
        policy,
        seed,
    };
    let a = run(&s, &opts(Policy::Ours, 1), &mut |_| {}).unwrap();
    let b = run(&s, &opts(Policy::Oracle, 2), &mut |_| {}).unwrap();
    let e = compare(vec![a.clone(), b]).unwrap_err();
    assert!(
        e.to_string().contains("seed 1") && e.to_string().contains("seed 2"),
        "{e}"
    );
    let mut low = s.clone();
    low.set_network(Profile::LowLatency);
    let b = run(&low, &opts(Policy::Oracle, 1), &mut |_| {}).unwrap();
    assert!(compare(vec![a, b]).is_err());
}
