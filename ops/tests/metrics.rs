//! Which metrics are exact at any moment and which are refreshed by the
//! upkeep, on a recorder of our own and paused tokio time: every change the
//! limiter sees is published at once; what changes with time alone waits for
//! the first call at or after `UPKEEP_INTERVAL` since the last refresh.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use upbit_limiter_core::{Duration, Group, Request, Response};
use upbit_limiter_ops::{Instrumented, OpsConfig, UPKEEP_INTERVAL};

/// Counters and gauges by `name{label="value",..}`; histograms are dropped.
#[derive(Debug, Default)]
struct Values {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl Values {
    fn slot(map: &Mutex<HashMap<String, Arc<AtomicU64>>>, key: &Key) -> Arc<AtomicU64> {
        Arc::clone(map.lock().unwrap().entry(render(key)).or_default())
    }
    fn gauge(&self, key: &str) -> f64 {
        let map = self.gauges.lock().unwrap();
        f64::from_bits(
            map.get(key)
                .unwrap_or_else(|| panic!("no gauge {key}"))
                .load(Ordering::Acquire),
        )
    }
    fn counter(&self, key: &str) -> u64 {
        let map = self.counters.lock().unwrap();
        map.get(key)
            .unwrap_or_else(|| panic!("no counter {key}"))
            .load(Ordering::Acquire)
    }
}

impl Recorder for Values {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Self::slot(&self.counters, key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Self::slot(&self.gauges, key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Runs `test` on a paused current-thread runtime with `values` as the
/// thread's recorder.
fn with_values(test: impl AsyncFnOnce(Arc<Values>)) {
    let values = Arc::new(Values::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&*Arc::clone(&values), || rt.block_on(test(values)));
}

async fn advance(d: Duration) {
    tokio::time::advance(d.into()).await;
}

#[test]
fn the_queue_depth_follows_every_waiter_at_once() {
    with_values(async |v| {
        let limiter = Instrumented::new(&OpsConfig::default()).unwrap();
        let depth = "upbit_limiter_queue_depth{group=\"order-cancel-all\"}";
        assert_eq!(v.gauge(depth), 0.0, "published when built");
        let first = limiter
            .acquire_request(Request::group(Group::OrderCancelAll))
            .await
            .unwrap();
        first.report(Response::status(200));

        // Two waiters queue (one per 2 s), one is cancelled, one admitted.
        let mut cx = Context::from_waker(Waker::noop());
        let mut a = pin!(limiter.acquire_request(Request::group(Group::OrderCancelAll)));
        let b = limiter.acquire_request(Request::group(Group::OrderCancelAll));
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert_eq!(v.gauge(depth), 1.0);
        {
            let mut b = pin!(b);
            assert!(b.as_mut().poll(&mut cx).is_pending());
            assert_eq!(v.gauge(depth), 2.0);
        }
        assert_eq!(v.gauge(depth), 1.0, "a cancelled waiter leaves at once");
        let permit = a.await.unwrap();
        assert_eq!(v.gauge(depth), 0.0, "an admitted waiter leaves at once");
        assert!(permit.waited() >= Duration::from_secs(2));
    });
}

#[test]
fn a_report_publishes_its_group_at_once() {
    with_values(async |v| {
        let limiter = Instrumented::new(&OpsConfig::default()).unwrap();
        let permit = limiter.acquire("POST", "/v1/orders").await.unwrap();
        assert_eq!(
            v.counter("upbit_limiter_acquisitions_total{group=\"order\",outcome=\"admitted\"}"),
            0,
            "counters are published at reports and upkeeps, not per admission"
        );
        permit.report(Response::status(429));
        assert_eq!(v.gauge("upbit_limiter_rate_ratio{group=\"order\"}"), 0.8);
        // The 429 taught a ceiling: the places it showed missing are held back.
        assert!(v.gauge("upbit_limiter_reserved_places{group=\"order\"}") > 0.0);
        assert_eq!(v.gauge("upbit_limiter_reserved_places{group=\"ticker\"}"), 0.0);
        assert_eq!(v.gauge("upbit_limiter_consecutive_429{group=\"order\"}"), 1.0);
        assert_eq!(v.counter("upbit_limiter_http_429_total{group=\"order\"}"), 1);
        assert_eq!(v.counter("upbit_limiter_responses_total{group=\"order\"}"), 1);
        assert_eq!(
            v.counter("upbit_limiter_acquisitions_total{group=\"order\",outcome=\"admitted\"}"),
            1
        );

        // Five failures in a row open the breaker.
        for _ in 0..5 {
            let permit = limiter.acquire("GET", "/v1/accounts").await.unwrap();
            permit.report(Response::status(503));
        }
        assert_eq!(
            v.gauge("upbit_limiter_breaker_state{group=\"default\",state=\"open\"}"),
            1.0
        );
        assert_eq!(
            v.gauge("upbit_limiter_breaker_state{group=\"default\",state=\"closed\"}"),
            0.0
        );
    });
}

#[test]
fn configuration_changes_and_emergency_mode_publish_at_once() {
    with_values(async |v| {
        // Candle on the GCRA, whose burst is a setting (the interval log's
        // is the server's N).
        let mut ops = OpsConfig::default();
        ops.limiter.group_mut(Group::Candle).policy = upbit_limiter_core::limiter::Policy::Gcra;
        let limiter = Instrumented::new(&ops).unwrap();
        let burst = "upbit_limiter_burst{group=\"candle\"}";
        assert_eq!(v.gauge(burst), 1.0);
        let mut config = limiter.control().base();
        config.group_mut(Group::Candle).burst = 2;
        limiter.apply(&config).unwrap();
        assert_eq!(v.gauge(burst), 2.0);

        let rate = "upbit_limiter_effective_rate{group=\"market\"}";
        let full = v.gauge(rate);
        limiter.enter_emergency(Duration::from_secs(60)).unwrap();
        assert_eq!(v.gauge("upbit_limiter_emergency_active"), 1.0);
        assert_eq!(v.gauge("upbit_limiter_emergency_remaining_seconds"), 60.0);
        assert!(
            (v.gauge(rate) - full / 2.0).abs() < full * 0.01,
            "{} of {full}",
            v.gauge(rate)
        );
        limiter.leave_emergency();
        assert_eq!(v.gauge("upbit_limiter_emergency_active"), 0.0);
        assert_eq!(v.gauge(rate), full);

        // An emergency that runs out ends on the next call, which publishes it.
        limiter.enter_emergency(Duration::from_secs(5)).unwrap();
        advance(Duration::from_secs(5)).await;
        assert_eq!(
            v.gauge("upbit_limiter_emergency_active"),
            1.0,
            "nothing happens without a call"
        );
        drop(limiter.acquire("GET", "/v1/market/all").await.unwrap());
        assert_eq!(v.gauge("upbit_limiter_emergency_active"), 0.0);
        assert_eq!(v.gauge(rate), full);
    });
}

#[test]
fn what_changes_with_time_alone_is_refreshed_by_the_upkeep() {
    with_values(async |v| {
        let limiter = Instrumented::new(&OpsConfig::default()).unwrap();
        let ban = "upbit_limiter_ban_remaining_seconds{group=\"ticker\"}";
        let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
        permit.report(Response::status(418));
        let banned_at = limiter.now();
        assert_eq!(v.gauge(ban), 50.0);
        let left = || 50.0 - (limiter.now() - banned_at).as_nanos() as f64 / 1e9;

        // Without a call, nothing moves.
        advance(Duration::from_secs(10)).await;
        assert_eq!(v.gauge(ban), 50.0);
        // The first call (any group) at or after the interval refreshes everything ...
        drop(limiter.acquire("POST", "/v1/orders").await.unwrap());
        assert_eq!(v.gauge(ban), 40.0);
        // ... and the calls within the interval after it do not.
        advance(UPKEEP_INTERVAL - Duration::from_millis(1)).await;
        drop(limiter.acquire("GET", "/v1/accounts").await.unwrap());
        assert_eq!(v.gauge(ban), 40.0);
        advance(Duration::from_millis(1)).await;
        // (The interval log has room: no wait, the clock stays at the interval.)
        drop(limiter.acquire("GET", "/v1/accounts").await.unwrap());
        assert_eq!(left(), 39.0);
        assert_eq!(v.gauge(ban), left());
        assert_eq!(v.gauge("upbit_limiter_health_level"), 0.0);

        // Health is evaluated by the upkeep: two 429s in a row are critical.
        for _ in 0..2 {
            let permit = limiter.acquire("POST", "/v1/orders").await.unwrap();
            permit.report(Response::status(429));
        }
        advance(UPKEEP_INTERVAL).await;
        drop(limiter.acquire("GET", "/v1/accounts").await.unwrap());
        assert_eq!(v.gauge("upbit_limiter_health_level"), 2.0);
    });
}

#[test]
fn record_metrics_still_publishes_everything_on_demand() {
    with_values(async |v| {
        let limiter = Instrumented::new(&OpsConfig::default()).unwrap();
        let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
        permit.report(Response::status(418));
        advance(Duration::from_millis(1500)).await;
        let snap = limiter.record_metrics();
        assert_eq!(
            v.gauge("upbit_limiter_ban_remaining_seconds{group=\"ticker\"}"),
            48.5
        );
        assert_eq!(snap.status.totals.status_418, 1);
    });
}

#[test]
fn a_waiter_past_its_deadline_shows_as_stalled_at_the_next_upkeep() {
    with_values(async |v| {
        let limiter = Instrumented::new(&OpsConfig::default()).unwrap();
        let stalled = "upbit_limiter_stalled_waiters{group=\"order-cancel-all\"}";
        drop(
            limiter
                .acquire_request(Request::group(Group::OrderCancelAll))
                .await
                .unwrap(),
        );
        // A waiter that is polled once and then never again.
        let mut cx = Context::from_waker(Waker::noop());
        let request = Request::group(Group::OrderCancelAll).timeout(std::time::Duration::from_secs(10));
        let mut w = pin!(limiter.acquire_request(request));
        assert!(matches!(w.as_mut().poll(&mut cx), Poll::Pending));
        assert_eq!(v.gauge(stalled), 0.0);
        advance(Duration::from_secs(12)).await;
        drop(limiter.acquire("GET", "/v1/market/all").await.unwrap());
        assert_eq!(v.gauge(stalled), 1.0);
    });
}

#[test]
fn a_named_pockets_exchange_groups_carry_its_name_and_the_ip_groups_none() {
    with_values(async |v| {
        let config = OpsConfig::from_layers(
            Some(upbit_limiter_ops::TomlText {
                name: "pockets.toml",
                text: "pocket = \"main\"\n",
            }),
            std::iter::empty::<(&str, &str)>(),
        )
        .unwrap();
        let main = Instrumented::new(&config).unwrap();
        let sub = main
            .add_pocket(
                upbit_limiter_core::upbit::PocketId::new("sub-1").unwrap(),
                &config,
            )
            .unwrap();
        sub.acquire("POST", "/v1/orders")
            .await
            .unwrap()
            .report(Response::status(429));
        assert_eq!(
            v.gauge("upbit_limiter_rate_ratio{group=\"order\",pocket=\"sub-1\"}"),
            0.8
        );
        assert_eq!(
            v.counter("upbit_limiter_http_429_total{group=\"order\",pocket=\"sub-1\"}"),
            1
        );
        // The main pocket's own order budget is untouched.
        assert_eq!(
            v.gauge("upbit_limiter_rate_ratio{group=\"order\",pocket=\"main\"}"),
            1.0
        );
        // The IP's groups are one series, whichever pocket used them.
        sub.acquire("GET", "/v1/ticker")
            .await
            .unwrap()
            .report(Response::status(429));
        main.record_metrics();
        assert_eq!(v.gauge("upbit_limiter_rate_ratio{group=\"ticker\"}"), 0.8);
        assert_eq!(v.counter("upbit_limiter_http_429_total{group=\"ticker\"}"), 1);
        let gauges = v.gauges.lock().unwrap();
        assert!(
            !gauges.keys().any(|k| k.contains("group=\"ticker\",pocket")),
            "an IP group labelled with a pocket: {:?}",
            gauges.keys().filter(|k| k.contains("ticker")).collect::<Vec<_>>()
        );
    });
}
