//! Starts the Prometheus example on a free loopback port and scrapes the
//! exporter's own listener with a real HTTP client (a plain TCP GET): the
//! expected series are there, with plausible values, and the gauges follow
//! the limiter without anyone calling `record_metrics`.

#[allow(dead_code)]
#[path = "../examples/prometheus.rs"]
mod example;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use upbit_limiter_core::{Group, Request, Response};

/// The example, started once for the process (its recorder is global).
fn running() -> &'static example::Running {
    static RUNNING: OnceLock<example::Running> = OnceLock::new();
    RUNNING.get_or_init(|| example::start("127.0.0.1:0").unwrap())
}

fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// `name{labels} value` lines, keyed by `name{labels}` as written.
fn series(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(s: &HashMap<String, f64>, key: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| panic!("no series {key}"))
}

#[test]
fn the_example_serves_the_expected_series_on_loopback() {
    let running = running();
    let addr = running.addr;
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let started = Instant::now();

    // The example's fake answers every 10th order with 429: wait for it.
    let (head, body) = loop {
        let (head, body) = get(addr, "/metrics");
        let s = series(&body);
        if s.get("upbit_limiter_http_429_total{group=\"order\"}")
            .copied()
            .unwrap_or(0.0)
            >= 1.0
        {
            break (head, body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no 429 after 30 s:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed().as_secs_f64();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/plain"),
        "{head}"
    );
    let s = series(&body);

    // Acquisitions by group and outcome.
    let ticker = value(
        &s,
        "upbit_limiter_acquisitions_total{group=\"ticker\",outcome=\"admitted\"}",
    );
    // Ticker runs on the interval log: at most 10 in any second.
    assert!(
        ticker >= 5.0 && ticker <= 10.0 * (elapsed.ceil() + 1.0),
        "{ticker} in {elapsed} s"
    );
    assert_eq!(
        value(
            &s,
            "upbit_limiter_acquisitions_total{group=\"ticker\",outcome=\"timeout\"}"
        ),
        0.0
    );
    let orders = value(
        &s,
        "upbit_limiter_acquisitions_total{group=\"order\",outcome=\"admitted\"}",
    );
    assert!(orders >= 10.0, "{orders}");
    assert_eq!(value(&s, "upbit_limiter_timeouts_total{group=\"order\"}"), 0.0);
    assert_eq!(value(&s, "upbit_limiter_http_418_total{group=\"order\"}"), 0.0);
    let responses = value(&s, "upbit_limiter_responses_total{group=\"order\"}");
    assert!(
        responses >= 10.0 && responses <= orders,
        "{responses} of {orders}"
    );

    // The 429 lowered the order ratio; ticker is at full speed.
    let ratio = value(&s, "upbit_limiter_rate_ratio{group=\"order\"}");
    assert!((0.5..1.0).contains(&ratio), "{ratio}");
    assert_eq!(value(&s, "upbit_limiter_rate_ratio{group=\"ticker\"}"), 1.0);
    let c429 = value(&s, "upbit_limiter_consecutive_429{group=\"order\"}");
    assert!((0.0..=1.0).contains(&c429));

    // Wait histogram (with buckets) and the gauges.
    let count = value(&s, "upbit_limiter_wait_seconds_count{group=\"ticker\"}");
    // (The histogram is recorded per acquisition, the counter at each report:
    // each of the three pollers may be one ahead.)
    assert!(count >= 5.0 && count <= ticker + 3.0, "{count} waits of {ticker}");
    assert_eq!(
        value(
            &s,
            "upbit_limiter_wait_seconds_bucket{group=\"ticker\",le=\"+Inf\"}"
        ),
        count
    );
    let sum = value(&s, "upbit_limiter_wait_seconds_sum{group=\"ticker\"}");
    // Three pollers share 9 per second: waits of a few hundred ms.
    assert!(sum > 0.0 && sum / count < 1.0, "mean wait {}", sum / count);
    // Ticker runs on the interval log: its waits follow reports, not a
    // schedule, so it has no drift samples.
    assert!(!s.contains_key("upbit_limiter_tat_drift_seconds_count{group=\"ticker\"}"));
    let depth = value(&s, "upbit_limiter_queue_depth{group=\"ticker\"}");
    assert!((0.0..=3.0).contains(&depth), "{depth}");
    assert_eq!(value(&s, "upbit_limiter_stalled_waiters{group=\"ticker\"}"), 0.0);
    assert_eq!(
        value(
            &s,
            "upbit_limiter_breaker_state{group=\"ticker\",state=\"closed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&s, "upbit_limiter_breaker_state{group=\"ticker\",state=\"open\"}"),
        0.0
    );
    let utilisation = value(&s, "upbit_limiter_token_utilisation{group=\"ticker\"}");
    // The pollers saturate ticker, but the 10 s window started with the
    // example, and the value is as of the last upkeep (at most a second and
    // the pollers' ~0.1 s gap between calls old).
    let upkeep = upbit_limiter_ops::UPKEEP_INTERVAL.as_nanos() as f64 / 1e9;
    let expected = ((elapsed - upkeep - 0.2) / 10.0).clamp(0.0, 1.0);
    assert!(utilisation > 0.0 && utilisation <= 1.0, "{utilisation}");
    assert!(utilisation >= expected * 0.5, "{utilisation} after {elapsed} s");
    let drift = value(&s, "upbit_limiter_tat_drift_ratio{group=\"ticker\"}");
    assert_eq!(drift, 0.0);
    // The log's throttle: the server's own rate, burst N.
    let rate = value(&s, "upbit_limiter_effective_rate{group=\"ticker\"}");
    assert!((rate - 10.0).abs() < 1e-6, "{rate}");
    assert_eq!(value(&s, "upbit_limiter_burst{group=\"ticker\"}"), 10.0);
    assert_eq!(value(&s, "upbit_limiter_emergency_active"), 0.0);
    let health = value(&s, "upbit_limiter_health_level");
    assert!((0.0..=2.0).contains(&health));
    for quantile in ["0.5", "0.95", "0.99"] {
        let key = format!("upbit_limiter_wait_quantile_seconds{{group=\"ticker\",quantile=\"{quantile}\"}}");
        assert!((0.0..5.0).contains(&value(&s, &key)), "{key}");
    }
    // Descriptions are served.
    assert!(body.contains("# HELP upbit_limiter_http_429_total HTTP 429 (rate limited) responses."));
    assert!(body.contains("# TYPE upbit_limiter_wait_seconds histogram"));

    // The JSON status agrees.
    let snap = serde_json::to_value(running.limiter.snapshot()).unwrap();
    assert_eq!(snap["status"]["groups"][3]["group"], "ticker");
    assert!(snap["status"]["totals"]["admitted"].as_u64().unwrap() >= (ticker + orders) as u64);
}

#[test]
fn gauges_follow_the_limiter_on_the_exporters_listener() {
    let running = running();
    let (addr, limiter) = (running.addr, &running.limiter);
    let gauge = |key: &str| value(&series(&get(addr, "/metrics").1), key);
    let depth = "upbit_limiter_queue_depth{group=\"order-cancel-all\"}";
    // Every series is published when the limiter is built.
    assert_eq!(gauge(depth), 0.0);
    assert_eq!(gauge("upbit_limiter_rate_ratio{group=\"market\"}"), 1.0);

    // The workload never touches order-cancel-all (one per 2 s): its first
    // acquisition goes at once, the second waits about 2.2 s.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let first = rt
        .block_on(limiter.acquire_request(Request::group(Group::OrderCancelAll)))
        .unwrap();
    first.report(Response::status(200));
    let waiter = {
        let limiter = std::sync::Arc::clone(limiter);
        rt.spawn(async move {
            let permit = limiter
                .acquire_request(Request::group(Group::OrderCancelAll))
                .await;
            permit.map(|p| p.waited())
        })
    };
    let started = Instant::now();
    while gauge(depth) != 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(2) && !waiter.is_finished(),
            "the waiter never showed in {depth}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let waited = rt.block_on(waiter).unwrap().unwrap();
    assert!(waited > upbit_limiter_core::Duration::from_secs(1), "{waited:?}");
    // Gone from the gauge as soon as it was admitted.
    assert_eq!(gauge(depth), 0.0);

    // A 429 lowers the ratio; the scrape right after the report shows it.
    let permit = rt
        .block_on(limiter.acquire_request(Request::group(Group::Market)))
        .unwrap();
    permit.report(Response::status(429));
    let s = series(&get(addr, "/metrics").1);
    assert_eq!(value(&s, "upbit_limiter_rate_ratio{group=\"market\"}"), 0.8);
    assert_eq!(value(&s, "upbit_limiter_consecutive_429{group=\"market\"}"), 1.0);
    assert_eq!(value(&s, "upbit_limiter_http_429_total{group=\"market\"}"), 1.0);
    assert_eq!(
        value(
            &s,
            "upbit_limiter_acquisitions_total{group=\"market\",outcome=\"admitted\"}"
        ),
        1.0
    );
}

fn args(a: &[&str]) -> impl Iterator<Item = String> {
    a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>().into_iter()
}

#[test]
fn the_example_prints_errors_with_their_display_text() {
    let line = |a: &[&str]| example::error_line(&*example::run(args(a)).unwrap_err());
    assert_eq!(line(&["--listen"]), "error: --listen needs an address");
    assert_eq!(
        line(&["--seconds", "soon"]),
        "error: --seconds needs a whole number of seconds, found \"soon\""
    );
    assert_eq!(
        line(&["--verbose"]),
        "error: unknown argument \"--verbose\" (try --help)"
    );
    // A configuration error reads as the operator's report, not as Debug.
    let config = upbit_limiter_ops::OpsConfig::from_layers(None, [("UPBIT_RATE_LIMIT_ORDER_RPS", "fast")])
        .unwrap_err();
    assert_eq!(
        example::error_line(&config),
        "error: 1 configuration problem(s):\n  environment variable UPBIT_RATE_LIMIT_ORDER_RPS: expected a \
         positive number of requests per second, found \"fast\""
    );
}
