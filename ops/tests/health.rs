//! Health levels flip exactly at the thresholds, on statuses set by hand and
//! on a real limiter driven in paused tokio time; and the status snapshot as JSON.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use upbit_limiter_core::limiter::Policy;
use upbit_limiter_core::{Duration, Group, Request, Response};
use upbit_limiter_ops::health::{evaluate, Check};
use upbit_limiter_ops::status::Recent;
use upbit_limiter_ops::{Instrumented, Level, OpsConfig, Status, Thresholds};

/// The default configuration with every group on the GCRA, for the tests
/// that count in its emission intervals (one free slot, then one admission
/// per interval).
fn gcra() -> OpsConfig {
    let mut config = OpsConfig::default();
    for g in config.limiter.groups.iter_mut() {
        g.policy = Policy::Gcra;
    }
    config
}

/// [`gcra`] with every margin 1 ns short, so that each interval
/// `(W + J + 1 ns) / N` is the whole number of milliseconds that tokio's
/// timer hits (a late timer is what these tests measure, not the timer's
/// resolution).
fn on_whole_milliseconds() -> OpsConfig {
    let mut config = gcra();
    for g in config.limiter.groups.iter_mut() {
        g.margin = g.margin.saturating_sub(Duration::from_nanos(1));
    }
    config
}

fn quiet_status() -> Status {
    let limiter: Instrumented<upbit_limiter_tokio::Tokio> = Instrumented::new(&OpsConfig::default()).unwrap();
    let mut status = limiter.status();
    for g in &mut status.groups {
        g.recent = Some(Recent::default());
    }
    status
}

/// The level and the checks that fired, for `status` with one field of
/// `group` set by `set`.
fn eval(
    t: &Thresholds,
    group: Group,
    set: impl Fn(&mut upbit_limiter_ops::status::GroupReport),
) -> (Level, Vec<Check>) {
    let mut status = quiet_status();
    set(status.groups.iter_mut().find(|g| g.group == group).unwrap());
    let report = evaluate(&status, t);
    for r in &report.reasons {
        assert_eq!(r.group, group);
    }
    (report.level, report.reasons.iter().map(|r| r.check).collect())
}

#[tokio::test(start_paused = true)]
async fn every_threshold_flips_exactly_where_it_is_set() {
    let t = Thresholds::default();
    let g = Group::Order;
    let ok = (Level::Ok, vec![]);
    assert_eq!(evaluate(&quiet_status(), &t).level, Level::Ok);

    assert_eq!(eval(&t, g, |r| r.consecutive_429 = 1), ok);
    assert_eq!(
        eval(&t, g, |r| r.consecutive_429 = 2),
        (Level::Critical, vec![Check::Consecutive429])
    );

    assert_eq!(eval(&t, g, |r| r.queue_depth = 50), ok);
    assert_eq!(
        eval(&t, g, |r| r.queue_depth = 51),
        (Level::Critical, vec![Check::QueueDepth])
    );
    assert_eq!(eval(&t, g, |r| r.waiting = 50), ok);
    assert_eq!(
        eval(&t, g, |r| r.waiting = 51),
        (Level::Critical, vec![Check::QueueDepth])
    );

    assert_eq!(eval(&t, g, |r| r.stalled_waiters = 0), ok);
    assert_eq!(
        eval(&t, g, |r| r.stalled_waiters = 1),
        (Level::Critical, vec![Check::StalledWaiters])
    );

    let p95 = |d: Duration| {
        move |r: &mut upbit_limiter_ops::status::GroupReport| r.recent.as_mut().unwrap().wait_p95 = d
    };
    assert_eq!(eval(&t, g, p95(Duration::from_millis(100))), ok);
    assert_eq!(
        eval(&t, g, p95(Duration::from_nanos(100_000_001))),
        (Level::Warning, vec![Check::WaitP95])
    );
    // Without recent statistics, the all-time p95 is used.
    let all_time = |d: Duration| {
        move |r: &mut upbit_limiter_ops::status::GroupReport| {
            r.recent = None;
            r.waits.p95 = d;
        }
    };
    assert_eq!(eval(&t, g, all_time(Duration::from_millis(100))), ok);
    assert_eq!(
        eval(&t, g, all_time(Duration::from_millis(200))),
        (Level::Warning, vec![Check::WaitP95])
    );

    let util = |u: f64| {
        move |r: &mut upbit_limiter_ops::status::GroupReport| r.recent.as_mut().unwrap().utilisation = u
    };
    assert_eq!(eval(&t, g, util(0.95)), ok);
    assert_eq!(
        eval(&t, g, util(0.950_001)),
        (Level::Warning, vec![Check::Utilisation])
    );

    let drift = |d: f64| {
        move |r: &mut upbit_limiter_ops::status::GroupReport| r.recent.as_mut().unwrap().tat_drift = d
    };
    assert_eq!(eval(&t, g, drift(0.05)), ok);
    assert_eq!(
        eval(&t, g, drift(0.050_001)),
        (Level::Warning, vec![Check::TatDrift])
    );

    let long_trips = |n: u64| {
        move |r: &mut upbit_limiter_ops::status::GroupReport| {
            r.recent.as_mut().unwrap().round_trips_over_margin = n;
        }
    };
    assert_eq!(eval(&t, g, long_trips(0)), ok);
    assert_eq!(
        eval(&t, g, long_trips(1)),
        (Level::Warning, vec![Check::RoundTripsOverMargin])
    );

    assert_eq!(eval(&t, g, |r| r.reserve = 0), ok);
    assert_eq!(
        eval(&t, g, |r| r.reserve = 1),
        (Level::Warning, vec![Check::Reserve])
    );
    let tolerant = Thresholds {
        max_round_trips_over_margin: 3,
        max_reserve: 2,
        ..Thresholds::default()
    };
    assert_eq!(eval(&tolerant, g, long_trips(3)), ok);
    assert_eq!(eval(&tolerant, g, |r| r.reserve = 2), ok);
    assert_eq!(
        eval(&tolerant, g, |r| r.reserve = 3),
        (Level::Warning, vec![Check::Reserve])
    );

    // Critical outranks warning; every reason is listed.
    let (level, checks) = eval(&t, g, |r| {
        r.consecutive_429 = 3;
        r.recent.as_mut().unwrap().utilisation = 1.0;
    });
    assert_eq!(
        (level, checks),
        (Level::Critical, vec![Check::Consecutive429, Check::Utilisation])
    );

    // Thresholds are configurable.
    let strict = Thresholds {
        max_consecutive_429: 0,
        max_queue_depth: 5,
        max_wait_p95: Duration::from_millis(10),
        ..Thresholds::default()
    };
    assert_eq!(
        eval(&strict, g, |r| r.consecutive_429 = 1),
        (Level::Critical, vec![Check::Consecutive429])
    );
    assert_eq!(
        eval(&strict, g, |r| r.waiting = 6),
        (Level::Critical, vec![Check::QueueDepth])
    );
    assert_eq!(
        eval(&strict, g, p95(Duration::from_millis(11))),
        (Level::Warning, vec![Check::WaitP95])
    );
    let lenient = Thresholds {
        max_consecutive_429: 5,
        ..Thresholds::default()
    };
    assert_eq!(eval(&lenient, g, |r| r.consecutive_429 = 5), ok);
    let report = evaluate(
        &{
            let mut s = quiet_status();
            s.groups[0].consecutive_429 = 2;
            s
        },
        &t,
    );
    assert_eq!(report.reasons[0].message, "market: consecutive 429s 2 is above 1");
}

#[tokio::test(start_paused = true)]
async fn a_second_429_in_a_row_is_critical() {
    let limiter: Instrumented = Instrumented::new(&OpsConfig::default()).unwrap();
    let send = |status: u16| {
        let limiter = &limiter;
        async move {
            let permit = limiter.acquire("POST", "/v1/orders").await.unwrap();
            permit.report(Response::status(status));
        }
    };
    send(429).await;
    // One 429 is at the threshold; the ceiling it taught holds places back,
    // a warning of its own.
    let checks = |l: &Instrumented| -> (Level, Vec<Check>) {
        let h = l.health();
        (h.level, h.reasons.iter().map(|r| r.check).collect())
    };
    assert_eq!(checks(&limiter), (Level::Warning, vec![Check::Reserve]));
    send(429).await;
    let health = limiter.health();
    assert_eq!(health.level, Level::Critical);
    assert_eq!(health.reasons[0].check, Check::Consecutive429);
    assert_eq!(health.reasons[0].group, Group::Order);
    send(201).await;
    // A success ends the streak. (The 429s' cool-downs made that last
    // caller wait over a second: the p95 wait is a warning now.)
    assert_eq!(
        checks(&limiter),
        (Level::Warning, vec![Check::WaitP95, Check::Reserve])
    );
}

#[tokio::test(start_paused = true)]
async fn a_round_trip_longer_than_the_margin_warns_for_one_window() {
    // The ticker on the GCRA: its 100 ms margin is the assumption.
    let limiter: Instrumented = Instrumented::new(&gcra()).unwrap();
    let checks = |l: &Instrumented| -> Vec<Check> { l.health().reasons.iter().map(|r| r.check).collect() };
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    tokio::time::advance(std::time::Duration::from_millis(100)).await;
    permit.report(Response::status(200));
    assert_eq!(
        checks(&limiter),
        vec![],
        "a round trip of exactly the margin is fine"
    );
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    tokio::time::advance(std::time::Duration::from_millis(250)).await;
    permit.report(Response::status(200));
    let health = limiter.health();
    assert_eq!(health.level, Level::Warning);
    assert_eq!(
        (
            health.reasons[0].check,
            health.reasons[0].group,
            health.reasons[0].value
        ),
        (Check::RoundTripsOverMargin, Group::Ticker, 1.0)
    );
    assert_eq!(
        health.reasons[0].message,
        "ticker: round trips over the jitter margin 1 is above 0"
    );
    // Each one counts.
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    tokio::time::advance(std::time::Duration::from_millis(250)).await;
    permit.report(Response::status(200));
    assert_eq!(limiter.health().reasons[0].value, 2.0);
    // It counts in the recent window (10 s) only.
    tokio::time::advance(std::time::Duration::from_secs(10)).await;
    assert_eq!(checks(&limiter), vec![]);
}

#[tokio::test(start_paused = true)]
async fn headers_showing_others_on_the_budget_warn_while_places_are_held_back() {
    // The shipped configuration: the ticker on the interval log. One request
    // of ours, and the server counted all ten places: nine are someone
    // else's.
    let limiter: Instrumented = Instrumented::new(&OpsConfig::default()).unwrap();
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    tokio::time::advance(std::time::Duration::from_millis(20)).await;
    permit.report(Response::status(200).with_remaining_req("group=ticker; min=600; sec=0"));
    let health = limiter.health();
    let reserve: Vec<_> = health
        .reasons
        .iter()
        .filter(|r| r.check == Check::Reserve)
        .collect();
    assert_eq!(reserve.len(), 1, "{health:?}");
    assert_eq!((reserve[0].group, reserve[0].value), (Group::Ticker, 9.0));
    assert_eq!(health.level, Level::Warning);
    // Three windows without a sighting: nothing held back, no warning.
    tokio::time::advance(std::time::Duration::from_secs(3)).await;
    assert!(limiter.health().reasons.iter().all(|r| r.check != Check::Reserve));
}

#[tokio::test(start_paused = true)]
async fn a_429_shows_the_ceiling_it_taught_in_the_status() {
    // Two of ours answered 200, the third 429: of the two admitted before
    // it, the group keeps 0.8 x 2 (one place) and holds the other nine back
    // for the default two days.
    let limiter: Instrumented = Instrumented::new(&OpsConfig::default()).unwrap();
    let permits = [
        limiter.acquire("GET", "/v1/ticker").await.unwrap(),
        limiter.acquire("GET", "/v1/ticker").await.unwrap(),
        limiter.acquire("GET", "/v1/ticker").await.unwrap(),
    ];
    tokio::time::advance(std::time::Duration::from_millis(20)).await;
    for (i, p) in permits.into_iter().enumerate() {
        p.report(Response::status(if i < 2 { 200 } else { 429 }));
    }
    let status = limiter.status();
    let g = status.group(Group::Ticker).unwrap();
    let c = g.ceiling.expect("a learned ceiling");
    assert_eq!((c.places, g.reserve), (9, 9), "{g:?}");
    assert!(!c.locked && !c.explained, "{c:?}");
    let json = serde_json::to_value(g).unwrap();
    assert_eq!(json["ceiling"]["places"], 9, "{json}");
    // The 429 came at the status's instant: a place comes back two days on.
    let next = json["ceiling"]["next_give_back_s"].as_f64().unwrap();
    let at = serde_json::to_value(&status).unwrap()["at_s"].as_f64().unwrap();
    assert_eq!(next - at, 2.0 * 86_400.0, "{json}");
    // No 429, no ceiling.
    let limiter: Instrumented = Instrumented::new(&OpsConfig::default()).unwrap();
    let json = serde_json::to_value(limiter.status().group(Group::Ticker).unwrap()).unwrap();
    assert!(json["ceiling"].is_null(), "{json}");
}

/// Spawns `n` waiters on `group` with a far deadline and lets them queue.
async fn queue_up(limiter: &Arc<Instrumented>, group: Group, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let far = limiter.now() + Duration::from_secs(3600);
    let mut handles = Vec::new();
    for _ in 0..n {
        let limiter = Arc::clone(limiter);
        handles.push(tokio::spawn(async move {
            let permit = limiter
                .acquire_request(Request::group(group).deadline(far))
                .await
                .unwrap();
            permit.report(Response::status(200));
        }));
    }
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    handles
}

#[tokio::test(start_paused = true)]
async fn queue_depth_flips_between_50_and_51_waiters() {
    let limiter: Arc<Instrumented> = Arc::new(Instrumented::new(&gcra()).unwrap());
    // The first caller of each batch is admitted at once; the rest queue.
    let ticker = queue_up(&limiter, Group::Ticker, 51).await;
    let candle = queue_up(&limiter, Group::Candle, 52).await;
    let status = limiter.status();
    assert_eq!(status.group(Group::Ticker).unwrap().depth(), 50);
    assert_eq!(status.group(Group::Candle).unwrap().depth(), 51);
    assert_eq!(
        status.group(Group::Candle).unwrap().queue_depth,
        51,
        "core's queue agrees"
    );
    let health = evaluate(&status, &limiter.thresholds());
    assert_eq!(health.level, Level::Critical);
    let critical: Vec<(Group, Check)> = health
        .reasons
        .iter()
        .filter(|r| r.level == Level::Critical)
        .map(|r| (r.group, r.check))
        .collect();
    assert_eq!(critical, vec![(Group::Candle, Check::QueueDepth)]);
    for h in ticker.into_iter().chain(candle) {
        h.await.unwrap();
    }
    let status = limiter.status();
    assert_eq!(status.totals.queue_depth, 0);
    assert_eq!(status.totals.admitted, 51 + 52);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_nobody_polls_is_stalled_once_past_deadline_and_grace() {
    let limiter: Instrumented = Instrumented::new(&OpsConfig::default()).unwrap();
    // The interval log's ten in flight: the next one waits.
    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(limiter.acquire("GET", "/v1/ticker").await.unwrap());
    }
    let deadline = limiter.now() + Duration::from_secs(2);
    let mut waiter = pin!(limiter.acquire_request(Request::group(Group::Ticker).deadline(deadline)));
    // Poll once: it queues. Then never again (as if its wake-up were lost).
    std::future::poll_fn(|cx| {
        assert!(waiter.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    let stalled = |l: &Instrumented| l.status().group(Group::Ticker).unwrap().stalled_waiters;
    assert_eq!(stalled(&limiter), 0);
    // Deadline plus the 1 s grace: not yet.
    tokio::time::advance(std::time::Duration::from_secs(3)).await;
    assert_eq!(limiter.now(), deadline + Duration::from_secs(1));
    assert_eq!(stalled(&limiter), 0);
    assert_eq!(limiter.health().level, Level::Ok);
    tokio::time::advance(std::time::Duration::from_nanos(1)).await;
    assert_eq!(stalled(&limiter), 1);
    let health = limiter.health();
    assert_eq!(health.level, Level::Critical);
    assert_eq!(health.reasons[0].check, Check::StalledWaiters);
    // Polled again, it finishes and is no longer counted.
    for p in first {
        p.report(Response::status(200));
    }
    if let Ok(permit) = waiter.await {
        permit.report(Response::status(200));
    }
    assert_eq!(stalled(&limiter), 0);
}

#[tokio::test(start_paused = true)]
async fn saturation_warns_about_utilisation_and_waits_but_not_drift() {
    let limiter: Arc<Instrumented> = Arc::new(Instrumented::new(&on_whole_milliseconds()).unwrap());
    let end = limiter.now() + Duration::from_secs(12);
    let mut handles = Vec::new();
    for _ in 0..5 {
        let limiter = Arc::clone(&limiter);
        handles.push(tokio::spawn(async move {
            while limiter.now() < end {
                let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
                permit.report(Response::status(200));
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let snap = limiter.snapshot();
    let recent = snap.status.group(Group::Ticker).unwrap().recent.unwrap();
    // 10 s window at one per 110 ms: 91 slots; all used.
    assert_eq!(recent.window, Duration::from_secs(10));
    assert!(
        recent.utilisation > 0.95 && recent.utilisation <= 1.0,
        "{recent:?}"
    );
    // Five callers take turns: each waits about four intervals.
    assert!(recent.wait_p95 >= Duration::from_millis(400), "{recent:?}");
    // Paused time: every waiter is admitted exactly when it conforms.
    assert_eq!(recent.tat_drift, 0.0);
    assert_eq!(snap.health.level, Level::Warning);
    let checks: Vec<Check> = snap.health.reasons.iter().map(|r| r.check).collect();
    assert_eq!(checks, vec![Check::WaitP95, Check::Utilisation]);
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_serialises_to_the_documented_json() {
    let limiter: Instrumented = Instrumented::new(&gcra()).unwrap();
    for _ in 0..3 {
        let p = limiter.acquire("GET", "/v1/ticker").await.unwrap();
        p.report(Response::status(200));
    }
    let p = limiter.acquire("POST", "/v1/orders").await.unwrap();
    p.report(Response::status(429));
    limiter.enter_emergency(Duration::from_secs(30)).unwrap();
    let json = serde_json::to_value(limiter.snapshot()).unwrap();
    let status = &json["status"];
    assert_eq!(status["groups"].as_array().unwrap().len(), Group::COUNT);
    let ticker = &status["groups"][Group::Ticker.index()];
    assert_eq!(ticker["group"], "ticker");
    assert_eq!(ticker["config"]["limits"][0]["max_requests"], 10);
    assert_eq!(ticker["config"]["limits"][0]["window_ms"], 1000.0);
    assert_eq!(ticker["config"]["margin_ms"], 100.0);
    // Emergency's 600 s recovery delay is no named strategy any more.
    assert_eq!(ticker["config"]["strategy"], serde_json::Value::Null);
    assert_eq!(ticker["config"]["adaptive"]["recovery_delay_ms"], 600_000.0);
    assert_eq!(status["groups"][0]["group"], "market");
    assert_eq!(ticker["config"]["breaker"]["consecutive_failures"], 5);
    // Emergency: an explicit quota at twice the 110.000001 ms interval.
    assert_eq!(ticker["quota"]["interval_ms"], 220.000002);
    assert_eq!(ticker["config"]["rps"].as_f64().unwrap(), 1e9 / 220_000_002.0);
    assert_eq!(ticker["counters"]["admitted"], 3);
    assert_eq!(ticker["breaker"], "closed");
    assert_eq!(ticker["banned_until_s"], serde_json::Value::Null);
    assert!(ticker["tat_s"].as_f64().unwrap() > 0.0);
    assert_eq!(ticker["recent"]["admissions"], 3);
    let order = &status["groups"][Group::Order.index()];
    assert_eq!(order["ratio"], 0.8);
    assert_eq!(order["consecutive_429"], 1);
    assert_eq!(order["counters"]["status_429"], 1);
    assert_eq!(status["totals"]["admitted"], 4);
    assert_eq!(status["totals"]["throttled_groups"], 1);
    assert_eq!(status["emergency"]["remaining_ms"], 30_000.0);
    // Back-to-back ticker calls waited an interval (110.000001 ms, woken on
    // tokio's next whole millisecond) each: above the 100 ms p95.
    assert_eq!(ticker["recent"]["wait_p95_ms"], 111.0);
    assert_eq!(json["health"]["level"], "warning");
    assert_eq!(
        json["health"]["reasons"],
        serde_json::json!([{
            "level": "warning",
            "check": "wait_p95",
            "group": "ticker",
            "value": 111.0,
            "threshold": 100.0,
            "message": "ticker: p95 wait (ms) 111 is above 100",
        }])
    );
}

#[test]
fn a_plain_core_limiter_has_a_status_and_health_too() {
    use upbit_limiter_core::{Instant, LimiterConfig, Preset, SyncLimiter};
    let limiter = SyncLimiter::new(&LimiterConfig::preset(Preset::Korea)).unwrap();
    let at = |ms: u64| Instant::from_nanos(ms * 1_000_000);
    for ms in [0, 2_000] {
        let admission = limiter.try_acquire("POST", "/v1/orders", at(ms)).unwrap();
        limiter.on_response(&admission, Response::status(429), at(ms));
    }
    let status = Status::of_limiter(&limiter, at(2_000));
    let order = status.group(Group::Order).unwrap();
    assert_eq!(order.consecutive_429, 2);
    assert_eq!(order.counters.admitted, 2);
    assert_eq!((order.recent, order.waiting, order.stalled_waiters), (None, 0, 0));
    assert_eq!(status.emergency, None);
    assert_eq!(status.totals.status_429, 2);
    let health = evaluate(&status, &Thresholds::default());
    assert_eq!(health.level, Level::Critical);
    let messages: Vec<&str> = health.reasons.iter().map(|r| r.message.as_str()).collect();
    // The 429s taught a ceiling: the places the server showed missing are
    // held back, and that says the budget is not ours alone.
    let reserve = order.reserve;
    assert!(reserve > 0);
    assert_eq!(
        messages,
        [
            "order: consecutive 429s 2 is above 1".to_owned(),
            format!("order: places held back for others {reserve} is above 0"),
        ]
    );
}

/// tokio's clock, with a timer that always fires 10 ms late.
#[derive(Clone, Copy, Debug, Default)]
struct LateTimer(upbit_limiter_tokio::Tokio);

impl upbit_limiter_core::Runtime for LateTimer {
    type Sleep = <upbit_limiter_tokio::Tokio as upbit_limiter_core::Runtime>::Sleep;
    type Instant = upbit_limiter_core::Instant;
    fn core_instant(&self, at: upbit_limiter_core::Instant) -> upbit_limiter_core::Instant {
        at
    }
    fn runtime_instant(&self, at: upbit_limiter_core::Instant) -> upbit_limiter_core::Instant {
        at
    }
    fn now(&self) -> upbit_limiter_core::Instant {
        self.0.now()
    }
    fn sleep_until(&self, deadline: upbit_limiter_core::Instant) -> Self::Sleep {
        self.0.sleep_until(deadline + Duration::from_millis(10))
    }
}

#[tokio::test(start_paused = true)]
async fn a_late_timer_shows_as_tat_drift() {
    let limiter =
        Arc::new(Instrumented::with_runtime(&on_whole_milliseconds(), LateTimer::default()).unwrap());
    let end = limiter.now() + Duration::from_secs(5);
    let mut handles = Vec::new();
    for _ in 0..2 {
        let limiter = Arc::clone(&limiter);
        handles.push(tokio::spawn(async move {
            while limiter.now() < end {
                let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
                permit.report(Response::status(200));
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let snap = limiter.snapshot();
    let recent = snap.status.group(Group::Ticker).unwrap().recent.unwrap();
    // Every waited admission came 10 ms after it conformed; the interval is 110 ms.
    assert!(recent.waited > 30, "{recent:?}");
    assert_eq!(recent.drift_max, Duration::from_millis(10));
    assert!((recent.tat_drift - 10.0 / 110.0).abs() < 1e-9, "{recent:?}");
    let drift: Vec<_> = snap
        .health
        .reasons
        .iter()
        .filter(|r| r.check == Check::TatDrift)
        .collect();
    assert_eq!(drift.len(), 1, "{:?}", snap.health);
    assert_eq!(drift[0].level, Level::Warning);
}

#[tokio::test(start_paused = true)]
async fn health_messages_round_their_numbers() {
    let mut status = quiet_status();
    let ticker = status
        .groups
        .iter_mut()
        .find(|g| g.group == Group::Ticker)
        .unwrap();
    let recent = ticker.recent.as_mut().unwrap();
    recent.utilisation = 20.0 / 21.0;
    recent.wait_p95 = Duration::from_nanos(113_514_751);
    recent.tat_drift = 0.050_004;
    let messages: Vec<String> = evaluate(&status, &Thresholds::default())
        .reasons
        .into_iter()
        .map(|r| r.message)
        .collect();
    assert_eq!(
        messages,
        [
            "ticker: p95 wait (ms) 113.515 is above 100",
            "ticker: token utilisation 0.952 is above 0.95",
            // Close to its threshold, a value keeps the digits that tell them apart.
            "ticker: TAT drift 0.050004 is above 0.05",
        ]
    );
}
