//! `tracing`: the acquire span carries group, endpoint, method and correlation
//! id, and every state change emits an event (ratio, breaker, ban, emergency).

use std::sync::{Arc, Mutex};

use upbit_limiter_core::{Duration, Group, Request, Response};
use upbit_limiter_ops::{Instrumented, OpsConfig};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The lines written since the last call.
    fn take(&self) -> Vec<String> {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap());
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .without_time()
        .finish();
    (out, tracing::subscriber::set_default(subscriber))
}

fn one(lines: &[String], needle: &str) -> String {
    let found: Vec<&String> = lines.iter().filter(|l| l.contains(needle)).collect();
    assert_eq!(found.len(), 1, "{needle:?} in {lines:#?}");
    found[0].clone()
}

#[tokio::test(start_paused = true)]
async fn spans_carry_the_request_and_events_mark_every_state_change() {
    let (out, _guard) = capture();
    let limiter: Instrumented = Instrumented::new(&OpsConfig::default()).unwrap();

    // A 429: the ratio drops, inside the request's span.
    let permit = limiter
        .acquire_request(Request::http("POST", "/v1/orders").correlation_id(42))
        .await
        .unwrap();
    permit.report(Response::status(429));
    let line = one(&out.take(), "rate ratio lowered");
    assert!(line.starts_with(" WARN acquire{"), "{line}");
    for field in [
        "group=\"order\"",
        "endpoint=\"/v1/orders\"",
        "method=\"POST\"",
        "correlation_id=42",
        "outcome=\"admitted\"",
        "waited_ms=0",
        "from=1.0 to=0.8",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }

    // Five failures in a row open the breaker.
    for id in 0..5u64 {
        let permit = limiter
            .acquire_request(Request::http("GET", "/v1/accounts").correlation_id(100 + id))
            .await
            .unwrap();
        permit.report(Response::status(503));
    }
    let line = one(&out.take(), "circuit breaker transition");
    assert!(line.starts_with(" WARN acquire{group=\"default\""), "{line}");
    assert!(line.contains("correlation_id=104"), "{line}");
    assert!(line.contains("from=\"closed\" to=\"open\""), "{line}");

    // Open -> half-open happens by itself; it is reported when next observed.
    tokio::time::advance(std::time::Duration::from_secs(31)).await;
    limiter.status();
    let line = one(&out.take(), "circuit breaker transition");
    assert!(
        line.contains("group=\"default\" from=\"open\" to=\"half_open\""),
        "{line}"
    );

    // A 418 bans the group: an error event with the ban's end.
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    permit.report(Response::status(418));
    let lines = out.take();
    let line = one(&lines, "banned by the server (HTTP 418)");
    assert!(line.starts_with("ERROR acquire{group=\"ticker\""), "{line}");
    assert!(line.contains("ban_s=50.0"), "{line}");

    // Emergency mode: entered by hand, left by itself on the next call.
    limiter.enter_emergency(Duration::from_secs(10)).unwrap();
    let line = one(&out.take(), "emergency mode entered");
    assert!(line.contains("duration_s=10.0"), "{line}");
    tokio::time::advance(std::time::Duration::from_secs(10)).await;
    assert!(out.take().is_empty(), "nothing happens without a call");
    // (Candle shares ticker's IP ban, so this call is refused; it still ends
    // the emergency.)
    let refused = limiter.acquire_request(Request::group(Group::Candle)).await;
    assert!(refused.is_err());
    let line = one(&out.take(), "emergency mode left");
    assert!(line.contains("expired=true"), "{line}");

    // Recovery steps are reported when observed: 300 s after the 429, +0.05.
    tokio::time::advance(std::time::Duration::from_secs(260)).await;
    assert!(limiter.now() >= upbit_limiter_core::Instant::ZERO + Duration::from_secs(300));
    limiter.status();
    let line = one(&out.take(), "rate ratio raised");
    assert!(line.contains("group=\"order\" from=0.8 to=0.85"), "{line}");

    // A configuration change says which groups it changed.
    let mut config = limiter.control().base();
    config.group_mut(Group::Candle).burst = 2;
    limiter.apply(&config).unwrap();
    let line = one(&out.take(), "configuration applied");
    assert!(line.contains("groups=[\"candle\"] emergency=false"), "{line}");
}

#[tokio::test(start_paused = true)]
async fn a_reload_logs_what_its_settings_cost() {
    let (out, _guard) = capture();
    let limiter: Instrumented = Instrumented::new(&OpsConfig::default()).unwrap();
    out.take();
    let config = OpsConfig::from_layers(None, [("UPBIT_RATE_LIMIT_MARKET_BURST", "10")]).unwrap();
    limiter.reload(&config).unwrap();
    let line = one(&out.take(), "configuration accepted with a cost");
    assert!(line.starts_with(" WARN "), "{line}");
    assert!(
        line.contains(
            "warning=environment variable UPBIT_RATE_LIMIT_MARKET_BURST: burst 10 lowers market's sustained \
             rate to 0.91/s (from 9.09/s at burst 1)"
        ),
        "{line}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_round_trip_longer_than_the_margin_warns() {
    let (out, _guard) = capture();
    // The warning is the GCRA's: its assumption is about the margin.
    let mut config = OpsConfig::default();
    config.limiter.group_mut(upbit_limiter_core::Group::Ticker).policy =
        upbit_limiter_core::limiter::Policy::Gcra;
    let limiter = Instrumented::new(&config).unwrap();
    // The ticker's margin is 100 ms: a 50 ms round trip is within it.
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    tokio::time::advance(std::time::Duration::from_millis(50)).await;
    permit.report(Response::status(200));
    assert!(out.take().iter().all(|l| !l.contains("round trip")));
    // A 150 ms one is not: the GCRA's assumption may not hold.
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    tokio::time::advance(std::time::Duration::from_millis(150)).await;
    permit.report(Response::status(200));
    let line = one(&out.take(), "round trip longer than the jitter margin");
    assert!(line.starts_with(" WARN acquire{group=\"ticker\""), "{line}");
    let status = limiter.snapshot().status;
    assert_eq!(
        status
            .group(Group::Ticker)
            .unwrap()
            .counters
            .round_trips_over_margin,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_pockets_spans_and_events_name_it_for_its_own_groups() {
    let (out, _guard) = capture();
    let config = OpsConfig::default();
    let ip: Instrumented = Instrumented::new(&config).unwrap();
    let sub = ip
        .add_pocket(
            upbit_limiter_core::upbit::PocketId::new("sub-1").unwrap(),
            &config,
        )
        .unwrap();
    sub.acquire("POST", "/v1/orders")
        .await
        .unwrap()
        .report(Response::status(429));
    let line = one(&out.take(), "rate ratio lowered");
    assert!(
        line.contains("acquire{group=\"order\" pocket=\"sub-1\""),
        "{line}"
    );
    assert!(
        line.contains("group=\"order\" pocket=\"sub-1\" from=1.0 to=0.8"),
        "{line}"
    );
    // The IP's groups belong to no pocket.
    sub.acquire("GET", "/v1/ticker")
        .await
        .unwrap()
        .report(Response::status(429));
    let line = one(&out.take(), "rate ratio lowered");
    assert!(!line.contains("pocket="), "{line}");
}

#[tokio::test(start_paused = true)]
async fn others_on_the_budget_warn_when_they_appear_and_inform_when_they_go() {
    let (out, _guard) = capture();
    let limiter: Instrumented = Instrumented::new(&OpsConfig::default()).unwrap();
    // One request of ours, and the server counted all ten places.
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    tokio::time::advance(std::time::Duration::from_millis(20)).await;
    permit.report(Response::status(200).with_remaining_req("group=ticker; min=600; sec=0"));
    let line = one(&out.take(), "places held back for others");
    assert!(line.starts_with(" WARN acquire{group=\"ticker\""), "{line}");
    assert!(line.contains("places=9"), "{line}");
    // More of the same says nothing new.
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    permit.report(Response::status(200).with_remaining_req("group=ticker; min=600; sec=0"));
    assert!(out.take().iter().all(|l| !l.contains("held back")));
    // Fewer of them in the next window: still held back, nothing new to say
    // when the nine fall out of the last three windows and four stay.
    tokio::time::advance(std::time::Duration::from_millis(1_500)).await;
    let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
    tokio::time::advance(std::time::Duration::from_millis(20)).await;
    permit.report(Response::status(200).with_remaining_req("group=ticker; min=600; sec=5"));
    tokio::time::advance(std::time::Duration::from_millis(1_500)).await;
    let status = limiter.status();
    assert_eq!(status.group(Group::Ticker).unwrap().reserve, 4);
    assert!(out.take().iter().all(|l| !l.contains("held back")));
    // Three windows without a sighting: they are gone, said at the next look.
    tokio::time::advance(std::time::Duration::from_secs(3)).await;
    let _ = limiter.status();
    let line = one(&out.take(), "nothing held back for others any more");
    assert!(line.starts_with(" INFO "), "{line}");
    assert!(line.contains("group=\"ticker\""), "{line}");
}
