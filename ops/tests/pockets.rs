//! Pockets in the operations layer: the `pocket` setting, a pocket's own
//! values in `[pockets.<name>]`, and status per pocket.

use upbit_limiter_core::upbit::PocketId;
use upbit_limiter_core::{Group, Request, Response};
use upbit_limiter_ops::{Instrumented, OpsConfig, Problem, TomlText};

fn load(text: &str, env: &[(&str, &str)]) -> Result<OpsConfig, upbit_limiter_ops::ConfigErrors> {
    OpsConfig::from_layers(
        Some(TomlText {
            name: "limits.toml",
            text,
        }),
        env.iter().copied(),
    )
}

fn pocket(name: &str) -> PocketId {
    PocketId::new(name).unwrap()
}

#[test]
fn a_pocket_table_sets_that_pockets_own_values_under_the_variables() {
    let text = "pocket = \"main\"\n\
                [groups.order]\nburst = 2\n\
                [pockets.sub-1.groups.order]\nburst = 3\n\
                [pockets.sub-1.groups.default]\ntimeout_ms = 1500\n";
    let c = load(text, &[]).unwrap();
    assert_eq!(c.pocket, Some(pocket("main")));
    assert_eq!(c.limiter.group(Group::Order).burst, 2);
    let sub = c.pocket_limiter(&pocket("sub-1"));
    assert_eq!(sub.group(Group::Order).burst, 3);
    assert_eq!(sub.group(Group::Default).waiter_timeout.as_nanos(), 1_500_000_000);
    // A pocket without a table of its own has the shared values.
    assert_eq!(c.pocket_limiter(&pocket("sub-2")), &c.limiter);
    assert_eq!(c.own_limiter(), &c.limiter);
    // The variables apply to every pocket, over the pocket tables.
    let c = load(
        text,
        &[
            ("UPBIT_RATE_LIMIT_ORDER_BURST", "4"),
            ("UPBIT_RATE_LIMIT_POCKET", "sub-1"),
        ],
    )
    .unwrap();
    assert_eq!(c.pocket, Some(pocket("sub-1")));
    assert_eq!(c.pocket_limiter(&pocket("sub-1")).group(Group::Order).burst, 4);
    assert_eq!(
        c.own_limiter().group(Group::Default).waiter_timeout.as_nanos(),
        1_500_000_000
    );
}

#[test]
fn pocket_tables_refuse_the_ip_groups_and_bad_names_with_their_position() {
    let text = "pocket = \"main pocket\"\n\
                [pockets.sub-1.groups.ticker]\nburst = 2\n\
                [pockets.sub-1.limits]\nx = 1\n\
                [pockets.\"a/b\".groups.order]\nburst = 2\n";
    let e = load(text, &[("UPBIT_RATE_LIMIT_POCKET", "")]).unwrap_err();
    let problems: Vec<(String, Problem)> = e
        .issues
        .iter()
        .map(|i| (i.key.clone(), i.problem.clone()))
        .collect();
    assert!(problems.contains(&(
        "pocket".into(),
        Problem::Pocket(upbit_limiter_core::upbit::PocketIdError::InvalidCharacter)
    )));
    assert!(problems.contains(&(
        "pockets.sub-1.groups.ticker".into(),
        Problem::SharedByPockets(Group::Ticker)
    )));
    assert!(problems.contains(&("pockets.sub-1.limits".into(), Problem::UnknownKey)));
    assert!(problems.contains(&(
        "pockets.a/b".into(),
        Problem::Pocket(upbit_limiter_core::upbit::PocketIdError::InvalidCharacter)
    )));
    assert!(problems.contains(&(
        "UPBIT_RATE_LIMIT_POCKET".into(),
        Problem::Pocket(upbit_limiter_core::upbit::PocketIdError::Empty)
    )));
    let shown = e.to_string();
    assert!(
        shown.contains("limits.toml:2:")
            && shown.contains("group ticker is counted per IP and shared by every pocket"),
        "{shown}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn status_names_the_pocket_of_the_exchange_groups_only() {
    let config = load(
        "pocket = \"main\"\n[pockets.sub-1.groups.order]\nburst = 3\n",
        &[],
    )
    .unwrap();
    let main = Instrumented::new(&config).unwrap();
    let sub = main.add_pocket(pocket("sub-1"), &config).unwrap();
    sub.acquire_request(Request::group(Group::Order))
        .await
        .unwrap()
        .report(Response::status(200));
    let s = sub.status();
    assert_eq!(s.pocket, Some(pocket("sub-1")));
    let order = s.group(Group::Order).unwrap();
    assert_eq!(
        (order.pocket, order.config.burst, order.counters.admitted),
        (Some(pocket("sub-1")), 3, 1)
    );
    assert_eq!(s.group(Group::Ticker).unwrap().pocket, None);
    // The main pocket counts its own orders, none so far.
    let m = main.status();
    assert_eq!(m.group(Group::Order).unwrap().counters.admitted, 0);
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"pocket\":\"sub-1\""), "{json}");
    // A ticker through either pocket is the IP's.
    main.acquire("GET", "/v1/ticker")
        .await
        .unwrap()
        .report(Response::status(200));
    assert_eq!(sub.status().group(Group::Ticker).unwrap().counters.admitted, 1);
}
