//! The shared limiter through a real Redis: admission, reports that survive
//! a dropped caller, failing closed, and a Redis that restarts empty.

mod support;

use std::time::{Duration, Instant};

use support::redis_server::RedisServer;
use upbit_limiter_redis::{SharedConfig, SharedError, SharedLimiter, WaitingFor};
use upbit_limiter_tokio::upbit_limiter_core::limiter::Policy;
use upbit_limiter_tokio::{Group, LimiterConfig, Preset, Request, Response};

const MAX_FLIGHT: Duration = Duration::from_millis(300);
/// The hold after an empty store: max_flight + the order group's 1 s window.
const HOLD: Duration = Duration::from_millis(1_300);

fn limits() -> LimiterConfig {
    let mut c = LimiterConfig::preset(Preset::Korea);
    for g in &mut c.groups {
        g.max_flight = MAX_FLIGHT.into();
        // The local limiter lets a full window through at once, as Redis does.
        g.policy = Policy::IntervalLog;
    }
    c
}

fn limiter(server: &RedisServer, prefix: &str) -> SharedLimiter {
    let shared = SharedConfig::new(server.url())
        .key_prefix(prefix)
        .pocket_id("p1")
        .store_timeout(Duration::from_millis(200));
    SharedLimiter::new(&limits(), shared).unwrap()
}

async fn in_flight(l: &SharedLimiter, group: Group) -> u64 {
    let status = l.status().await.unwrap();
    status.iter().find(|s| s.group == group).unwrap().shared.in_flight
}

/// Polls until the spawned reports have landed (bounded).
async fn settled(l: &SharedLimiter, group: Group) -> u64 {
    for _ in 0..100 {
        if in_flight(l, group).await == 0 {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    in_flight(l, group).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limiters_share_one_budget_and_reports_outlive_their_callers() {
    let server = RedisServer::start();
    let a = limiter(&server, "share");
    let b = limiter(&server, "share");
    let start = Instant::now();
    // An empty store opens after the hold.
    let first = a.acquire("POST", "/v1/orders").await.unwrap();
    assert!(
        start.elapsed() >= HOLD - Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    first.report(Response::status(201));
    // Twelve per second for the pocket, across both: 11 more now, then a
    // settled window makes the next wait until a report + 1 s.
    let mut permits = Vec::new();
    for i in 0..11 {
        let l = if i % 2 == 0 { &a } else { &b };
        permits.push(
            l.acquire_request(Request::http("POST", "/v1/orders").timeout(Duration::from_millis(50)))
                .await
                .unwrap(),
        );
    }
    let full = b
        .acquire_request(Request::http("POST", "/v1/orders").timeout(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            full,
            SharedError::Timeout {
                waiting_for: WaitingFor::Report | WaitingFor::Room,
                ..
            }
        ),
        "{full}"
    );
    // Reports from a task that is dropped right after: each lands anyway.
    let reporter = tokio::spawn(async move {
        for p in permits {
            p.report(Response::status(201));
        }
    });
    reporter.await.unwrap();
    assert_eq!(settled(&a, Group::Order).await, 0);
    let status = a.status().await.unwrap();
    let order = status.iter().find(|s| s.group == Group::Order).unwrap();
    assert_eq!(order.shared.counting, 12);
    // The pocket's other groups and the IP's groups have their own budgets
    // (and the hold ran on the one clock of the prefix).
    let t = Instant::now();
    b.acquire("GET", "/v1/ticker")
        .await
        .unwrap()
        .report(Response::status(200));
    b.acquire("GET", "/v1/accounts")
        .await
        .unwrap()
        .report(Response::status(200));
    assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
    // An acquisition cancelled while waiting leaves nothing behind.
    let waiting = tokio::time::timeout(Duration::from_millis(30), a.acquire("POST", "/v1/orders")).await;
    assert!(waiting.is_err());
    // A permit dropped unreported ends its request at the drop, in Redis too.
    let dropped = tokio::time::timeout(Duration::from_secs(3), b.acquire("POST", "/v1/orders"))
        .await
        .unwrap()
        .unwrap();
    drop(dropped);
    assert_eq!(settled(&b, Group::Order).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_closed_while_redis_is_down_and_reopens_after_the_hold() {
    let mut server = RedisServer::start();
    let l = limiter(&server, "down");
    l.acquire("GET", "/v1/ticker")
        .await
        .unwrap()
        .report(Response::status(200));
    let in_flight_at_the_crash = l.acquire("GET", "/v1/ticker").await.unwrap();
    server.kill();
    let t = Instant::now();
    let e = l.acquire("GET", "/v1/ticker").await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "failed closed in {:?}",
        t.elapsed()
    );
    assert!(matches!(e, SharedError::StoreUnavailable { .. }), "{e}");
    assert_eq!(e.retry_after(), Duration::from_secs(1));
    assert!(e.to_string().contains("refused"), "{e}");
    // Its report cannot reach Redis: nothing breaks, it is counted.
    in_flight_at_the_crash.report(Response::status(200));
    // Redis comes back empty: refused or held, never admitted before the hold.
    server.start_again();
    let back = Instant::now();
    let mut unavailable = 0;
    let admitted = loop {
        match l
            .acquire_request(Request::http("GET", "/v1/ticker").timeout(Duration::from_secs(5)))
            .await
        {
            Ok(p) => break p,
            Err(SharedError::StoreUnavailable { .. }) if unavailable < 20 => {
                unavailable += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        back.elapsed() >= HOLD - Duration::from_millis(50),
        "admitted {:?} after the restart",
        back.elapsed()
    );
    admitted.report(Response::status(200));
    let status = l.status().await.unwrap();
    let ticker = status.iter().find(|s| s.group == Group::Ticker).unwrap();
    // The report of the request in flight at the crash found its ticket
    // gone (or Redis away): either way it changed nothing.
    assert!(ticker.store_errors >= 1, "{ticker:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_inside_the_hold_fails_at_once_with_the_retry_time() {
    let server = RedisServer::start();
    let l = limiter(&server, "hold");
    let t = Instant::now();
    let e = l
        .acquire_request(Request::http("POST", "/v1/orders").timeout(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(150), "{:?}", t.elapsed());
    match e {
        SharedError::Timeout {
            waiting_for: WaitingFor::StoreRestart,
            retry_after,
            ..
        } => assert!(
            retry_after > Duration::from_millis(1_000) && retry_after <= HOLD + Duration::from_millis(1),
            "{retry_after:?}"
        ),
        e => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_or_a_418_seen_by_one_process_holds_every_other() {
    let server = RedisServer::start();
    let a = limiter(&server, "feedback");
    let b = limiter(&server, "feedback");
    a.acquire("GET", "/v1/ticker")
        .await
        .unwrap()
        .report(Response::status(429));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = b
        .acquire_request(Request::http("GET", "/v1/ticker").timeout(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SharedError::Timeout {
                waiting_for: WaitingFor::Pause,
                ..
            }
        ),
        "{e}"
    );
    let body = r#"{"error":{"name":"too_many_requests","message":"Too many API requests. 418 blocked until 2 minutes"}}"#;
    a.acquire("GET", "/v1/accounts")
        .await
        .unwrap()
        .report(Response::status(418).with_body(body));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The pocket is banned for every process; the IP's groups are not.
    let e = b.acquire("POST", "/v1/orders").await.unwrap_err();
    match e {
        SharedError::Banned { retry_after, .. } => {
            assert!(retry_after > Duration::from_secs(10), "{retry_after:?}")
        }
        SharedError::Local(_) => panic!("b saw no 418 itself: {e}"),
        e => panic!("{e}"),
    }
    let status = b.status().await.unwrap();
    let order = status.iter().find(|s| s.group == Group::Order).unwrap();
    assert!(order.shared.banned_until_us > order.shared.now_us.unwrap());
}

#[test]
fn nonsense_settings_are_typed_errors() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(
        SharedLimiter::new(&limits(), SharedConfig::new("redis://127.0.0.1:1")).is_err(),
        "outside a runtime"
    );
    rt.block_on(async {
        for bad in [
            SharedConfig::new("not a url"),
            SharedConfig::new("redis://127.0.0.1:1").pocket_id("a:b"),
            SharedConfig::new("redis://127.0.0.1:1").key_prefix(""),
            SharedConfig::new("redis://127.0.0.1:1").store_timeout(Duration::ZERO),
        ] {
            let e = SharedLimiter::new(&limits(), bad).unwrap_err();
            assert!(!e.to_string().is_empty());
        }
        assert!("open".parse::<upbit_limiter_redis::FailureMode>().is_err());
        // Nothing listens on port 1: every acquisition is refused, none admitted.
        let l = SharedLimiter::new(&limits(), SharedConfig::new("redis://127.0.0.1:1")).unwrap();
        let e = l.acquire("GET", "/v1/ticker").await.unwrap_err();
        assert!(matches!(e, SharedError::StoreUnavailable { .. }), "{e}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_instants_in_the_store_are_a_timeout_not_a_panic() {
    let server = RedisServer::start();
    let l = limiter(&server, "absurd");
    l.acquire("POST", "/v1/orders")
        .await
        .unwrap()
        .report(Response::status(201));
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    // A pause a century long (just below the scripts' 2^52 µs bound), and garbage.
    let _: () = redis::cmd("SET")
        .arg("{absurd}:pocket:p1:order:pause")
        .arg("4503599627370000")
        .query_async(&mut c)
        .await
        .unwrap();
    let e = l.acquire("POST", "/v1/orders").await.unwrap_err();
    assert!(
        matches!(
            e,
            SharedError::Timeout {
                waiting_for: WaitingFor::Pause,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.retry_after() > Duration::from_secs(86_400 * 365 * 50), "{e}");
    let _: () = redis::cmd("SET")
        .arg("{absurd}:pocket:p1:order:pause")
        .arg("soon")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("{absurd}:clock")
        .arg("hwm")
        .arg("not a number")
        .query_async(&mut c)
        .await
        .unwrap();
    // An unreadable clock reads as an empty store: closed for the hold, never open.
    let e = l
        .acquire_request(Request::http("POST", "/v1/orders").timeout(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SharedError::Timeout {
                waiting_for: WaitingFor::StoreRestart,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_fails_closed_within_the_timeout_and_recovers() {
    let server = RedisServer::start();
    let l = limiter(&server, "slow");
    l.acquire("GET", "/v1/ticker")
        .await
        .unwrap()
        .report(Response::status(200));
    // Every client's commands wait 800 ms: slower than the 200 ms timeout.
    assert_eq!(server.command("CLIENT PAUSE 800 ALL"), "+OK");
    let t = Instant::now();
    let e = l.acquire("GET", "/v1/ticker").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(600), "{:?}", t.elapsed());
    assert!(
        matches!(
            e,
            SharedError::StoreUnavailable {
                cause: upbit_limiter_redis::StoreError::TimedOut,
                ..
            }
        ),
        "{e}"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    // The pause is over: decisions again, no restart hold (the state is intact).
    let t = Instant::now();
    let mut attempts = 0;
    loop {
        match l.acquire("GET", "/v1/ticker").await {
            Ok(p) => break p.report(Response::status(200)),
            Err(SharedError::StoreUnavailable { .. }) if attempts < 10 => attempts += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceiling_learned_by_one_process_tightens_every_other() {
    use upbit_limiter_tokio::Runtime as _;
    let server = RedisServer::start();
    let a = limiter(&server, "ceiling");
    let b = limiter(&server, "ceiling");
    // Three requests of each process settle in the ticker window.
    for l in [&a, &b, &a, &b, &a, &b] {
        l.acquire("GET", "/v1/ticker")
            .await
            .unwrap()
            .report_and_wait(Response::status(200))
            .await
            .unwrap();
    }
    // The seventh draws a 429 in process a: the server holds fewer places
    // than 10 per second for us.
    a.acquire("GET", "/v1/ticker")
        .await
        .unwrap()
        .report_and_wait(Response::status(429))
        .await
        .unwrap();
    let reduction = u64::from(limits().group(Group::Ticker).adaptive.reduction.ppm());
    let missing = 10 - 6 * reduction / 1_000_000;
    let status = b.status().await.unwrap();
    let ticker = status.iter().find(|s| s.group == Group::Ticker).unwrap();
    assert_eq!(ticker.shared.ceiling, missing, "{:?}", ticker.shared);
    // Learned from both processes' requests, in the store only: process a's
    // own limiter, which saw only its 3, holds nothing back.
    let now = a.local().runtime().now();
    assert_eq!(a.local().limiter().group(Group::Ticker).status(now).reserve, 0);
    // After the pause (one window) and once the six have left the window,
    // process b gets only 10 - missing places in a second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let room = 10u64.saturating_sub(missing).max(1);
    let start = Instant::now();
    for _ in 0..room {
        b.acquire("GET", "/v1/ticker")
            .await
            .unwrap()
            .report_and_wait(Response::status(200))
            .await
            .unwrap();
    }
    let e = b
        .acquire_request(Request::http("GET", "/v1/ticker").timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SharedError::Timeout {
                waiting_for: WaitingFor::Room,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}
