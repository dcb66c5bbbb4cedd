//! 418 handling through the whole limiter: stated lengths in every form, the
//! probe of a ban of unknown length across the groups of a scope, and
//! whether an IP ban pauses the pocket groups.

use upbit_limiter_core::upbit::WallClock;
use upbit_limiter_core::{Denied, Duration, Instant, LimiterConfig, Preset, Response, SyncLimiter};

fn at(ms: u64) -> Instant {
    Instant::from_nanos(ms * 1_000_000)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const TEAPOT: &str = r#"{"error":{"name":418,"message":"I'm a teapot"}}"#;

fn limiter(pause_pocket: bool) -> SyncLimiter {
    let mut config = LimiterConfig::preset(Preset::Korea);
    config.ip_ban_pauses_pocket_groups = pause_pocket;
    SyncLimiter::new(&config).unwrap()
}

fn banned(l: &SyncLimiter, method: &str, path: &str, now: Instant) -> Option<Instant> {
    match l.try_acquire(method, path, now) {
        Err(Denied::Banned { until }) => Some(until),
        _ => None,
    }
}

#[test]
fn the_default_keeps_pocket_groups_running_through_an_ip_ban() {
    assert!(!LimiterConfig::default().ip_ban_pauses_pocket_groups);
    let l = limiter(false);
    let a = l.try_acquire("GET", "/v1/ticker", at(1_000)).unwrap();
    let fb = l.on_response(&a, Response::status(418).with_retry_after("30"), at(1_010));
    assert_eq!(fb.banned_until, Some(at(31_010)));
    assert_eq!(banned(&l, "GET", "/v1/orderbook", at(2_000)), Some(at(31_010)));
    // Orders can still be placed and cancelled.
    assert!(l.try_acquire("GET", "/v1/accounts", at(2_000)).is_ok());
    assert!(l.try_acquire("DELETE", "/v1/order", at(2_100)).is_ok());
    assert!(l.try_acquire("POST", "/v1/orders", at(2_000)).is_ok());
}

#[test]
fn the_setting_pauses_pocket_groups_for_an_ip_ban() {
    let l = limiter(true);
    let a = l.try_acquire("GET", "/v1/ticker", at(1_000)).unwrap();
    l.on_response(&a, Response::status(418).with_retry_after("30"), at(1_010));
    assert_eq!(banned(&l, "GET", "/v1/accounts", at(2_000)), Some(at(31_010)));
    assert_eq!(banned(&l, "POST", "/v1/orders", at(2_000)), Some(at(31_010)));
    assert!(l.try_acquire("GET", "/v1/accounts", at(31_010)).is_ok());
    // A pocket ban never pauses the IP groups, whatever the setting.
    let a = l.try_acquire("POST", "/v1/orders", at(40_000)).unwrap();
    l.on_response(&a, Response::status(418).with_retry_after("30"), at(40_010));
    assert!(banned(&l, "GET", "/v1/accounts", at(41_000)).is_some());
    assert!(l.try_acquire("GET", "/v1/ticker", at(41_000)).is_ok());
}

#[test]
fn with_the_setting_pocket_groups_also_wait_for_the_probe() {
    let l = limiter(true);
    let a = l.try_acquire("GET", "/v1/ticker", at(1_000)).unwrap();
    let fb = l.on_response(&a, Response::status(418).with_body(TEAPOT), at(1_010));
    assert_eq!(fb.banned_until, Some(at(51_010)));
    assert_eq!(fb.scope_ban_until, Some(at(201_010)));
    assert_eq!(banned(&l, "GET", "/v1/accounts", at(51_010)), Some(at(201_010)));
    let probe = l.try_acquire("GET", "/v1/ticker", at(51_010)).unwrap();
    let fb = l.on_response(&probe, Response::status(200), at(51_050));
    assert_eq!(fb.ban_lifted, Some(at(201_010)));
    assert!(l.try_acquire("GET", "/v1/accounts", at(51_050)).is_ok());
    assert!(l.try_acquire("GET", "/v1/candles/days", at(51_050)).is_ok());
}

#[test]
fn a_ban_of_unknown_length_is_probed_by_one_request_of_the_scope() {
    let l = limiter(false);
    let ticker = l.try_acquire("GET", "/v1/ticker", at(1_000)).unwrap();
    let candle = l.try_acquire("GET", "/v1/candles/days", at(1_000)).unwrap();
    let fb = l.on_response(&ticker, Response::status(418).with_body(TEAPOT), at(1_040));
    assert_eq!(fb.banned_until, Some(at(51_040)));
    assert_eq!(fb.scope_ban_until, Some(at(201_040)));
    // The candle request was in flight: its 418 is an echo and starts no
    // schedule of its own.
    let fb = l.on_response(&candle, Response::status(418).with_body(TEAPOT), at(1_041));
    assert_eq!(fb.banned_until, None);
    assert_eq!(
        banned(&l, "GET", "/v1/candles/days", at(51_040)),
        Some(at(201_040))
    );
    assert_eq!(banned(&l, "GET", "/v1/ticker", at(51_039)), Some(at(51_040)));
    // At the end of the wait one ticker request goes, and holds the rest.
    let probe = l.try_acquire("GET", "/v1/ticker", at(51_040)).unwrap();
    assert!(banned(&l, "GET", "/v1/ticker", at(51_060)).is_some());
    assert!(banned(&l, "GET", "/v1/market/all", at(51_060)).is_some());
    // It is still banned: the next wait is three times as long.
    let fb = l.on_response(&probe, Response::status(418).with_body(TEAPOT), at(51_080));
    assert_eq!(fb.banned_until, Some(at(201_080)));
    assert_eq!(fb.scope_ban_until, Some(at(651_080)));
    assert_eq!(banned(&l, "GET", "/v1/orderbook", at(201_080)), Some(at(651_080)));
    let probe = l.try_acquire("GET", "/v1/ticker", at(201_080)).unwrap();
    assert!(l.try_acquire("GET", "/v1/ticker", at(201_100)).is_err());
    // It passes: the whole scope runs again at once.
    let fb = l.on_response(&probe, Response::status(200), at(201_120));
    assert_eq!(fb.ban_lifted, Some(at(651_080)));
    assert!(l.try_acquire("GET", "/v1/orderbook", at(201_120)).is_ok());
    assert!(l.try_acquire("GET", "/v1/candles/days", at(201_120)).is_ok());
    assert!(l.try_acquire("GET", "/v1/ticker", at(201_500)).is_ok());
}

#[test]
fn a_probe_without_an_answer_is_sent_again() {
    let l = limiter(false);
    let a = l.try_acquire("GET", "/v1/ticker", at(1_000)).unwrap();
    l.on_response(&a, Response::status(418), at(1_000));
    let probe = l.try_acquire("GET", "/v1/ticker", at(51_000)).unwrap();
    assert!(l.try_acquire("GET", "/v1/ticker", at(52_000)).is_err());
    let fb = l.on_response(&probe, Response::no_response(), at(60_000));
    assert_eq!(fb.ban_lifted, None);
    let again = l.try_acquire("GET", "/v1/ticker", at(60_000)).unwrap();
    assert!(l.try_acquire("GET", "/v1/ticker", at(60_500)).is_err());
    // An unreported probe holds the group for 30 s, then it probes again.
    let _ = again;
    assert!(l.try_acquire("GET", "/v1/ticker", at(89_999)).is_err());
    assert!(l.try_acquire("GET", "/v1/ticker", at(90_000)).is_ok());
    assert!(l.try_acquire("GET", "/v1/ticker", at(90_500)).is_err());
}

#[test]
fn stated_lengths_in_every_form() {
    let date = "Tue, 01 Dec 2026 03:00:00 GMT";
    // 2026-12-01T03:00:00Z.
    let wall = WallClock::from_unix_secs(1_796_094_000);
    let cases: [(Response<'_>, u64); 7] = [
        (Response::status(418).with_body("blocked for 45 seconds"), 45),
        (Response::status(418).with_retry_after("120"), 120),
        (
            Response::status(418)
                .with_retry_after("Tue, 01 Dec 2026 03:05:00 GMT")
                .with_date(date),
            300,
        ),
        (
            Response::status(418)
                .with_body("blocked until 2026-12-01T12:10:00+09:00")
                .with_date(date),
            600,
        ),
        (
            Response::status(418)
                .with_body("blocked until 2026-12-01T03:10Z")
                .with_wall_clock(wall),
            600,
        ),
        // The longest credible form wins.
        (
            Response::status(418)
                .with_body("blocked for 45 seconds")
                .with_retry_after("90"),
            90,
        ),
        // Incredible or unreadable forms fall back to the safe schedule.
        (
            Response::status(418)
                .with_body("blocked for 99999999 days")
                .with_retry_after("soon")
                .with_date("never"),
            50,
        ),
    ];
    for (response, want) in cases {
        let l = limiter(false);
        let a = l.try_acquire("GET", "/v1/ticker", at(1_000)).unwrap();
        let fb = l.on_response(&a, response, at(1_000));
        assert_eq!(fb.banned_until, Some(at(1_000) + secs(want)), "{response:?}");
        if want != 50 {
            // A stated length needs no probe: everything reopens at its end.
            assert_eq!(fb.scope_ban_until, fb.banned_until, "{response:?}");
        }
    }
}

#[test]
fn a_zero_retry_after_is_not_a_zero_ban() {
    let l = limiter(false);
    let a = l.try_acquire("GET", "/v1/ticker", at(1_000)).unwrap();
    let fb = l.on_response(&a, Response::status(418).with_retry_after("0"), at(1_000));
    assert_eq!(fb.banned_until, Some(at(51_000)));
}

#[test]
fn a_ban_refuses_the_gcra_groups_as_banned_on_their_fast_path_too() {
    // The GCRA admits lock-free while nothing is in force; a ban must close
    // that path and name itself, for the banned group and its scope's others.
    let mut config = LimiterConfig::preset(Preset::Korea);
    for g in upbit_limiter_core::Group::ALL {
        config.group_mut(g).policy = upbit_limiter_core::limiter::Policy::Gcra;
    }
    let l = SyncLimiter::new(&config).unwrap();
    // Warm the fast path of orderbook, then ban the IP through ticker.
    assert!(l.try_acquire("GET", "/v1/orderbook", at(500)).is_ok());
    let a = l.try_acquire("GET", "/v1/ticker", at(1_000)).unwrap();
    l.on_response(&a, Response::status(418).with_retry_after("30"), at(1_010));
    for t in [2_000, 15_000, 31_000] {
        assert_eq!(
            banned(&l, "GET", "/v1/ticker", at(t)),
            Some(at(31_010)),
            "at {t} ms"
        );
        assert_eq!(
            banned(&l, "GET", "/v1/orderbook", at(t)),
            Some(at(31_010)),
            "at {t} ms"
        );
    }
    assert!(l.try_acquire("GET", "/v1/orderbook", at(31_010)).is_ok());
}
