//! Ours never draws a 429 on the market shock, whatever the server's window
//! model; quotas at the server's limit (`gcra-at-limit`) and no limiter at
//! all do, on the same traffic.

use upbit_limiter_core::Duration;
use upbit_limiter_sim::{run, Policy, Report, RunOptions, Scenario, ServerModel};

fn shock(policy: Policy, model: ServerModel, seed: u64, jitter_ms: u64) -> Report {
    let mut s = Scenario::builtin("market-shock").unwrap().unwrap();
    s.set_jitter(Duration::from_millis(jitter_ms));
    run(&s, &RunOptions { model, policy, seed }, &mut |_| {}).unwrap()
}

#[test]
fn ours_has_no_429_under_any_model() {
    for model in ServerModel::ALL {
        // Jitter up to the limiter's margin (100 ms; 150 ms for orders).
        for (seed, jitter) in [(1, 50), (2, 0), (3, 100), (4, 100)] {
            let r = shock(Policy::Ours, model, seed, jitter);
            assert_eq!(
                (r.total_429, r.total_418),
                (0, 0),
                "{model} seed {seed} jitter {jitter}"
            );
            assert_eq!(r.total_admitted, 600, "{model}: every request was sent");
            assert_eq!(r.actors.finished, 100, "{model}: every trader finished");
            for g in &r.groups {
                assert!(g.utilisation <= 1.0, "{model} {}: over the limit", g.group);
            }
        }
    }
}

#[test]
fn quotas_at_the_limit_draw_429s() {
    let r = shock(Policy::GcraAtLimit, ServerModel::Sliding, 1, 50);
    assert!(r.total_429 > 0, "{}", r.render());
    // The adaptive ratio reacted to them.
    let ticker = r.groups.iter().find(|g| g.group == "ticker").unwrap();
    assert!(ticker.ratio.unwrap().min < 1.0);
    let total: u64 = ServerModel::ALL
        .into_iter()
        .map(|m| shock(Policy::GcraAtLimit, m, 1, 100).total_429)
        .sum();
    assert!(total > 0);
}

#[test]
fn no_limiter_is_blocked_and_best_practice_is_not_enough() {
    let none = shock(Policy::None, ServerModel::Fixed, 1, 50);
    assert!(none.total_429 > 0 && none.total_418 > 0, "{}", none.render());
    let bp = shock(Policy::BestPractice, ServerModel::Fixed, 1, 50);
    assert!(bp.total_429 > 0, "{}", bp.render());
}
