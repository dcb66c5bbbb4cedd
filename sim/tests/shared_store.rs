//! Several processes, each with its own limiter, sharing the budgets through
//! the simulated store: zero 429 under every server model, the throughput of
//! one process alone, no process starved; and without the store, 429s.

use upbit_limiter_sim::{run, Policy, Report, RunOptions, Scenario, ServerModel};

fn go(s: &Scenario, model: ServerModel) -> Report {
    run(
        s,
        &RunOptions {
            model,
            policy: Policy::Ours,
            seed: 1,
        },
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn shared_store() -> Scenario {
    Scenario::builtin("shared-store").unwrap().unwrap()
}

fn admitted(r: &Report, group: &str) -> u64 {
    r.groups
        .iter()
        .find(|g| g.group == group)
        .map_or(0, |g| g.admitted)
}

#[test]
fn three_processes_share_the_budgets_without_a_429_under_every_model() {
    let s = shared_store();
    assert_eq!(s.processes, ["a", "b", "c"]);
    assert!(s.uses_store());
    let mut alone = s.clone();
    assert!(alone.keep_process("a"));
    assert!(!alone.uses_store());
    for model in ServerModel::ALL {
        let shared = go(&s, model);
        let one = go(&alone, model);
        assert_eq!((shared.total_429, shared.total_418), (0, 0), "{model}");
        assert_eq!((one.total_429, one.total_418), (0, 0), "{model}");
        assert_eq!(shared.total_local_rejections, 0, "{model}");
        let store = shared.store.expect("the store was used");
        assert_eq!(store.admitted, shared.total_admitted, "{model}");
        for group in ["ticker", "order"] {
            let (both, single) = (admitted(&shared, group), admitted(&one, group));
            assert!(
                both * 100 >= single * 95,
                "{model} {group}: three processes got {both}, one alone {single}"
            );
            let spread = shared
                .spread
                .iter()
                .find(|sp| sp.group == group)
                .expect("a spread per group");
            assert_eq!(spread.processes, 3);
            // No process starved: each got at least 90 % of the most any got.
            assert!(
                spread.least * 10 >= spread.most * 9,
                "{model} {group}: least {} most {}",
                spread.least,
                spread.most
            );
        }
        assert_eq!(shared.processes.len(), 3);
        assert!(shared
            .processes
            .iter()
            .all(|p| p.status_429 == 0 && p.admitted > 0));
    }
}

#[test]
fn without_the_store_each_process_believes_it_owns_the_budget_and_draws_429s() {
    let mut s = shared_store();
    s.set_store(false);
    assert!(!s.uses_store());
    let r = go(&s, ServerModel::Sliding);
    assert!(r.total_429 > 0, "{}", r.render());
    assert!(r.store.is_none());
    assert!(r.processes.iter().filter(|p| p.status_429 > 0).count() >= 2);
}

#[test]
fn a_slower_store_costs_throughput_never_a_429() {
    let mut s = shared_store();
    s.store.rtt = upbit_limiter_core::Duration::from_millis(20);
    let r = go(&s, ServerModel::Sliding);
    assert_eq!(r.total_429, 0);
    let fast = go(&shared_store(), ServerModel::Sliding);
    assert!(admitted(&r, "ticker") <= admitted(&fast, "ticker"));
    assert!(r.render().contains("20 ms round trip"), "{}", r.render());
}

#[test]
fn process_and_store_keys_are_checked_where_they_are() {
    let actor = |process: &str| {
        format!("[[actors]]\nname = \"x\"\nprocess = {process}\nsteps = [{{ call = \"GET /v1/ticker\" }}]\n")
    };
    let e = Scenario::from_toml(
        &format!("name = \"x\"\n[store]\nrtt_ms = 1\n{}", actor("\"a\"")),
        "x.toml",
    )
    .unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    assert!(e.message.contains("two or more"), "{e}");
    let e = Scenario::from_toml(&format!("name = \"x\"\n{}", actor("\"a b\"")), "x.toml").unwrap_err();
    assert_eq!(e.position, Some((4, 11)), "{e}");
    let e = Scenario::from_toml(&format!("name = \"x\"\n{}", actor("3")), "x.toml").unwrap_err();
    assert_eq!(e.line(), Some(4), "{e}");
    let two = format!("{}{}", actor("\"a\""), actor("\"b\""));
    let e = Scenario::from_toml(&format!("name = \"x\"\n[store]\nrtt_ms = -1\n{two}"), "x.toml").unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    let e = Scenario::from_toml(&format!("name = \"x\"\n[store]\nrtt = 1\n{two}"), "x.toml").unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    let bg = "[[loads]]\nname = \"o\"\nbackground = true\nprocess = \"a\"\nuntil_s = 5\nper_minute = [60]\nmix = [{ call = \"GET /v1/ticker\" }]\n";
    let e = Scenario::from_toml(&format!("name = \"x\"\n{bg}"), "x.toml").unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    assert!(e.message.contains("background load has no limiter"), "{e}");
    let s = Scenario::from_toml(
        &format!("name = \"x\"\n[store]\nrtt_ms = 0.5\nshared = false\n{two}"),
        "x.toml",
    )
    .unwrap();
    assert_eq!(s.processes, ["a", "b"]);
    assert_eq!(s.store.rtt, upbit_limiter_core::Duration::from_micros(500));
    assert!(!s.uses_store());
    let s = Scenario::from_toml(&format!("name = \"x\"\n{}", actor("\"solo\"")), "x.toml").unwrap();
    assert_eq!(s.processes, ["solo"]);
    let mut s = s;
    assert!(!s.keep_process("other"));
}
