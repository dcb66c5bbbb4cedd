//! The shared state as metrics: what every sharer sees in Redis, labelled by
//! group and budget, published by `SharedLimiter::record_metrics`.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use support::redis_server::RedisServer;
use upbit_limiter_redis::{SharedConfig, SharedLimiter};
use upbit_limiter_tokio::upbit_limiter_core::limiter::Policy;
use upbit_limiter_tokio::{LimiterConfig, Preset, Response};

/// Every gauge and counter by `name{label="value",..}` (labels sorted).
#[derive(Default)]
struct Values(Mutex<HashMap<String, Arc<AtomicU64>>>);

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Values {
    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        Arc::clone(self.0.lock().unwrap().entry(render(key)).or_default())
    }
    fn gauge(&self, key: &str) -> f64 {
        f64::from_bits(
            self.0
                .lock()
                .unwrap()
                .get(key)
                .unwrap_or_else(|| panic!("no {key}"))
                .load(Ordering::Acquire),
        )
    }
    fn counter(&self, key: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(key)
            .unwrap_or_else(|| panic!("no {key}"))
            .load(Ordering::Acquire)
    }
}

impl Recorder for &'static Values {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.slot(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.slot(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn values() -> &'static Values {
    static VALUES: OnceLock<&'static Values> = OnceLock::new();
    VALUES.get_or_init(|| {
        let v: &'static Values = Box::leak(Box::default());
        metrics::set_global_recorder(v).expect("the only recorder of this test binary");
        v
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_state_is_published_by_group_and_budget() {
    let v = values();
    let server = RedisServer::start();
    let mut limits = LimiterConfig::preset(Preset::Korea);
    for g in &mut limits.groups {
        g.max_flight = Duration::from_millis(300).into();
        g.policy = Policy::IntervalLog;
    }
    let shared = SharedConfig::new(server.url())
        .key_prefix("metrics")
        .pocket_id("p1")
        .ip_id("host-a")
        .store_timeout(Duration::from_millis(200));
    let l = SharedLimiter::new(&limits, shared).unwrap();
    // One order in flight, one 429 on a ticker: both show as every sharer sees them.
    let order = l.acquire("POST", "/v1/orders").await.unwrap();
    let ticker = l.acquire("GET", "/v1/ticker").await.unwrap();
    ticker.report_and_wait(Response::status(429)).await.unwrap();
    l.record_metrics().await.unwrap();
    let order_key = |name: &str| format!("{name}{{budget=\"p1\",group=\"order\"}}");
    let ticker_key = |name: &str| format!("{name}{{budget=\"host-a\",group=\"ticker\"}}");
    assert_eq!(v.gauge(&order_key("upbit_limiter_shared_in_flight")), 1.0);
    assert_eq!(v.counter(&order_key("upbit_limiter_shared_admitted_total")), 1);
    assert_eq!(v.gauge(&ticker_key("upbit_limiter_shared_in_flight")), 0.0);
    let pause = v.gauge(&ticker_key("upbit_limiter_shared_pause_remaining_seconds"));
    assert!(pause > 0.0 && pause <= 1.0, "{pause}");
    assert!(v.gauge(&ticker_key("upbit_limiter_shared_ceiling")) >= 1.0);
    assert_eq!(
        v.gauge(&order_key("upbit_limiter_shared_ban_remaining_seconds")),
        0.0
    );
    order.report_and_wait(Response::status(201)).await.unwrap();
    l.record_metrics().await.unwrap();
    assert_eq!(v.gauge(&order_key("upbit_limiter_shared_in_flight")), 0.0);
    assert_eq!(
        v.counter(&order_key("upbit_limiter_shared_store_errors_total")),
        0
    );
}
