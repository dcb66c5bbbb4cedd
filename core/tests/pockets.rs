//! Several pockets behind one IP: each pocket's own budgets for the pocket
//! groups, one shared budget for the IP groups, bans per pocket, and the
//! pocket's name in errors.

mod common;

use std::sync::Arc;

use common::Manual;

use upbit_limiter_core::upbit::{PocketId, Scope};
use upbit_limiter_core::{
    AcquireError, Duration, Group, Instant, LimiterConfig, ManualClock, Permit, Preset, RateLimiter, Reason,
    Request, Response,
};

type Limiter = RateLimiter<Manual>;
type Owned = Permit<Arc<Limiter>>;

fn pocket(name: &str) -> PocketId {
    PocketId::new(name).unwrap()
}

/// A main pocket and a sub-pocket opened from the limiter of their IP, and
/// the clock they share.
fn two_pockets(config: &LimiterConfig) -> (Arc<Limiter>, Arc<Limiter>, ManualClock) {
    let clock = ManualClock::starting_at(Instant::from_nanos(10_000_000_000));
    let ip = Arc::new(RateLimiter::with_runtime(config, Manual(clock.clone())).unwrap());
    let main = ip.add_pocket(pocket("main"), config).unwrap();
    let sub = ip.add_pocket(pocket("sub-1"), config).unwrap();
    (main, sub, clock)
}

/// Every permit `limiter` grants for `request` right now, until it refuses.
fn take_all(limiter: &Arc<Limiter>, request: Request, held: &mut Vec<Owned>) -> Result<usize, AcquireError> {
    let before = held.len();
    loop {
        match limiter.clone().try_acquire_owned(request) {
            Ok(p) => held.push(p),
            Err(_) if held.len() > before => return Ok(held.len() - before),
            Err(e) => return Err(e),
        }
    }
}

/// A quotation request through `pocket`, answered 10 ms later with `ban`
/// (a 418 for the IP).
fn ban_ip_through(pocket: &Arc<Limiter>, clock: &ManualClock, ban: Response<'_>) {
    let permit = pocket
        .clone()
        .try_acquire_owned(Request::http("GET", "/v1/ticker"))
        .unwrap();
    clock.advance(Duration::from_millis(10));
    permit.report(ban);
}

fn count(limiter: &Arc<Limiter>, request: Request, held: &mut Vec<Owned>) -> usize {
    take_all(limiter, request, held).unwrap_or(0)
}

#[test]
fn each_pocket_has_its_own_exchange_budget_and_they_share_the_ip_budget() {
    let config = LimiterConfig::preset(Preset::Korea);
    // What one limiter alone admits at once.
    let (alone, _, _) = two_pockets(&config);
    let mut held = Vec::new();
    let order_alone = count(&alone, Request::http("POST", "/v1/orders"), &mut held);
    let ticker_alone = count(&alone, Request::http("GET", "/v1/ticker"), &mut held);
    assert!(order_alone >= 1 && ticker_alone >= 1);

    let (main, sub, _clock) = two_pockets(&config);
    let mut held = Vec::new();
    // Orders: each pocket its full budget.
    assert_eq!(
        count(&main, Request::http("POST", "/v1/orders"), &mut held),
        order_alone
    );
    assert_eq!(
        count(&sub, Request::http("POST", "/v1/orders"), &mut held),
        order_alone
    );
    // Ticker: one budget for both, whichever pocket asks.
    let ticker_main = count(&main, Request::http("GET", "/v1/ticker"), &mut held);
    let ticker_sub = count(&sub, Request::http("GET", "/v1/ticker"), &mut held);
    assert_eq!((ticker_main, ticker_sub), (ticker_alone, 0));
    // Both read the same IP budget; their own pocket budgets differ.
    let g = Group::Ticker.index();
    assert_eq!(
        main.status(main.now())[g].counters,
        sub.status(sub.now())[g].counters
    );
    assert!(std::ptr::eq(main.budget(Scope::Ip), sub.budget(Scope::Ip)));
    assert!(!std::ptr::eq(
        main.budget(Scope::Pocket),
        sub.budget(Scope::Pocket)
    ));
    // A pocket opened from a pocket joins the same IP.
    let third = sub.add_pocket(pocket("sub-2"), &config).unwrap();
    assert!(std::ptr::eq(third.budget(Scope::Ip), main.budget(Scope::Ip)));
    assert_eq!(count(&third, Request::http("GET", "/v1/ticker"), &mut held), 0);
    assert_eq!(
        count(&third, Request::http("POST", "/v1/orders"), &mut held),
        order_alone
    );
}

#[test]
fn authenticated_websocket_connects_count_per_pocket() {
    let config = LimiterConfig::preset(Preset::Korea);
    let (main, sub, _clock) = two_pockets(&config);
    let mut held = Vec::new();
    let private = Request::http("GET", "wss://api.upbit.com/websocket/v1/private");
    assert_eq!(private.scope, Scope::Pocket);
    assert_eq!(Request::http("GET", "/websocket/v1").scope, Scope::Ip);
    assert_eq!(
        Request::http("GET", "/websocket/v1").authenticated().scope,
        Scope::Pocket
    );
    // Only the connect's unit can change.
    assert_eq!(
        Request::http("GET", "/v1/ticker").authenticated().scope,
        Scope::Ip
    );
    let per_pocket = count(&main, private, &mut held);
    assert!(per_pocket >= 1);
    assert_eq!(count(&sub, private, &mut held), per_pocket);
    // The public connects have a budget of their own, per IP.
    let public = count(&main, Request::http("GET", "/websocket/v1"), &mut held);
    assert!(public >= 1);
    assert_eq!(count(&sub, Request::http("GET", "/websocket/v1"), &mut held), 0);
}

#[test]
fn a_pocket_ban_bans_that_pocket_only() {
    let config = LimiterConfig::preset(Preset::Korea);
    let (main, sub, clock) = two_pockets(&config);
    let order = Request::http("POST", "/v1/orders");
    let permit = sub.clone().try_acquire_owned(order).unwrap();
    clock.advance(Duration::from_millis(10));
    permit.report(Response::status(418).with_retry_after("30"));
    clock.advance(Duration::from_millis(10));
    let e = sub
        .clone()
        .try_acquire_owned(Request::http("GET", "/v1/accounts"))
        .unwrap_err();
    assert_eq!(e.reason(), Reason::Banned);
    assert_eq!(e.pocket(), Some(&pocket("sub-1")));
    assert!(
        e.to_string()
            .starts_with("pocket sub-1: group default (GET /v1/accounts): banned"),
        "{e}"
    );
    // The other pocket and the IP groups go on.
    assert!(main.clone().try_acquire_owned(order).is_ok());
    assert!(sub
        .clone()
        .try_acquire_owned(Request::http("GET", "/v1/ticker"))
        .is_ok());
}

#[test]
fn an_ip_ban_bans_the_ip_groups_of_every_pocket_and_by_setting_their_pocket_groups() {
    for pause in [false, true] {
        let mut config = LimiterConfig::preset(Preset::Korea);
        config.ip_ban_pauses_pocket_groups = pause;
        let (main, sub, clock) = two_pockets(&config);
        ban_ip_through(&sub, &clock, Response::status(418).with_retry_after("30"));
        clock.advance(Duration::from_millis(10));
        for l in [&main, &sub] {
            // The pocket group first: its own decision must see the IP ban.
            let order = l.clone().try_acquire_owned(Request::http("POST", "/v1/orders"));
            let e = l
                .clone()
                .try_acquire_owned(Request::http("GET", "/v1/orderbook"))
                .unwrap_err();
            assert_eq!(e.reason(), Reason::Banned);
            // The IP's groups belong to no pocket.
            assert_eq!(e.pocket(), None);
            assert!(e.to_string().starts_with("group orderbook"), "{e}");
            match (pause, order) {
                (false, order) => assert!(order.is_ok(), "{:?}", l.pocket()),
                (true, Err(e)) => {
                    assert_eq!(e.reason(), Reason::Banned);
                    assert_eq!(e.pocket(), l.pocket());
                    assert!(e.retry_after() >= std::time::Duration::from_secs(29), "{e}");
                }
                (true, Ok(_)) => panic!("{:?}: an order went out during the IP ban", l.pocket()),
            }
        }
        // After the ban, everything runs again (the IP's first request is
        // its probe; the next one waits for its answer).
        clock.advance(Duration::from_secs(31));
        for l in [&main, &sub] {
            assert!(l
                .clone()
                .try_acquire_owned(Request::http("POST", "/v1/orders"))
                .is_ok());
            let probe = l
                .clone()
                .try_acquire_owned(Request::http("GET", "/v1/orderbook"))
                .unwrap();
            clock.advance(Duration::from_millis(10));
            probe.report(Response::status(200));
            // After a ban the group runs slower for a while.
            clock.advance(Duration::from_millis(500));
        }
    }
}

#[test]
fn an_unnamed_limiter_names_no_pocket() {
    let config = LimiterConfig::preset(Preset::Korea);
    let clock = ManualClock::starting_at(Instant::from_nanos(10_000_000_000));
    let l = Arc::new(RateLimiter::with_runtime(&config, Manual(clock.clone())).unwrap());
    let p = l
        .clone()
        .try_acquire_owned(Request::http("POST", "/v1/orders"))
        .unwrap();
    p.report(Response::status(418).with_retry_after("30"));
    let e = l
        .clone()
        .try_acquire_owned(Request::http("POST", "/v1/orders"))
        .unwrap_err();
    assert_eq!((e.reason(), e.pocket()), (Reason::Banned, None));
    assert!(e.to_string().starts_with("group order (POST /v1/orders)"), "{e}");
}

#[test]
fn with_the_setting_every_pockets_groups_run_again_when_the_ips_probe_passes() {
    let mut config = LimiterConfig::preset(Preset::Korea);
    config.ip_ban_pauses_pocket_groups = true;
    let (main, sub, clock) = two_pockets(&config);
    // A ban of unknown length, seen through the sub-pocket.
    ban_ip_through(
        &sub,
        &clock,
        Response::status(418).with_body(r#"{"error":{"name":418,"message":"I'm a teapot"}}"#),
    );
    // Each pocket's first decision applies the ban, and the next ones keep it.
    for l in [&main, &sub, &main, &sub] {
        let e = l
            .clone()
            .try_acquire_owned(Request::http("POST", "/v1/orders"))
            .unwrap_err();
        assert_eq!(e.reason(), Reason::Banned, "{:?}", l.pocket());
    }
    // The IP's probe goes when the first wait ends, and passes.
    clock.advance(Duration::from_secs(50));
    let probe = main
        .clone()
        .try_acquire_owned(Request::http("GET", "/v1/ticker"))
        .unwrap();
    clock.advance(Duration::from_millis(40));
    probe.report(Response::status(200));
    // Orders go again from both pockets, long before the hold would end.
    for l in [&main, &sub, &main] {
        let order = l.clone().try_acquire_owned(Request::http("POST", "/v1/orders"));
        assert!(order.is_ok(), "{:?}: {:?}", l.pocket(), order.err());
    }
}
