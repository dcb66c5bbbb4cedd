//! The shared store's cost per request: one decision and one report through
//! Redis on loopback, beside the local limiter alone, in the same run.
//!
//! The bench starts its own `redis-server` on a free loopback port (and
//! stops it). One caller on a current-thread runtime, limits far above what
//! one caller reaches (128 per 10 µs), so that every acquisition is
//! admitted at once and the figures are the cost of the path:
//!
//! - `local`: the tokio limiter's acquire + report;
//! - `redis/acquire+report`: the shared limiter's acquire (local, then the
//!   decision script) and report (the report script, in its own task),
//!   as a caller sees it: the figure is admitted requests per second;
//! - `redis/acquire+report_and_wait`: the same, waiting for the report to be
//!   in Redis: the latency of one decision plus one report.
//!
//! Criterion reports means and medians; `iter_custom` also keeps every
//! iteration's time and the run prints p50 and p99 of each shared path.

#[path = "../../stores/redis/tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use upbit_limiter_core::limiter::{Limits, Policy};
use upbit_limiter_core::{Duration, Group, LimiterConfig, Preset, ServerLimit};
use upbit_limiter_redis::{SharedConfig, SharedLimiter};
use upbit_limiter_tokio::{RateLimiter, Request, Response};

fn config() -> LimiterConfig {
    let mut c = LimiterConfig::preset(Preset::Korea);
    let g = c.group_mut(Group::Ticker);
    g.limits = Limits::new(&[ServerLimit::new(128, Duration::from_micros(10))]).expect("one window");
    g.policy = Policy::IntervalLog;
    g.max_flight = Duration::from_millis(100);
    c
}

fn percentiles(name: &str, samples: &Mutex<Vec<StdDuration>>) {
    let mut v = samples.lock().expect("samples").clone();
    if v.is_empty() {
        return;
    }
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    println!(
        "{name}: p50 {:.1} us, p99 {:.1} us over {} calls",
        q(0.5).as_secs_f64() * 1e6,
        q(0.99).as_secs_f64() * 1e6,
        v.len()
    );
}

fn shared_store(c: &mut Criterion) {
    let server = redis_server::RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = RateLimiter::new(&config()).expect("config");
    let shared = rt.block_on(async {
        let l = SharedLimiter::new(&config(), SharedConfig::new(server.url()).key_prefix("bench"))
            .expect("config");
        // An empty store opens after max_flight + W.
        let first = l
            .acquire_request(Request::http("GET", "/v1/ticker"))
            .await
            .expect("store");
        first
            .report_and_wait(Response::status(200))
            .await
            .expect("report");
        l
    });
    let mut group = c.benchmark_group("shared_store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("local", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = StdInstant::now();
                for _ in 0..iters {
                    let p = local.acquire("GET", "/v1/ticker").await.expect("admitted");
                    p.report(Response::status(200));
                }
                start.elapsed()
            })
        })
    });
    let spawned = Mutex::new(Vec::new());
    group.bench_function("redis/acquire+report", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = StdInstant::now();
                let mut times = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    let t = StdInstant::now();
                    let p = shared.acquire("GET", "/v1/ticker").await.expect("admitted");
                    p.report(Response::status(200));
                    times.push(t.elapsed());
                }
                spawned.lock().expect("samples").extend(times);
                start.elapsed()
            })
        })
    });
    let awaited = Mutex::new(Vec::new());
    group.bench_function("redis/acquire+report_and_wait", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = StdInstant::now();
                let mut times = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    let t = StdInstant::now();
                    let p = shared.acquire("GET", "/v1/ticker").await.expect("admitted");
                    p.report_and_wait(Response::status(200)).await.expect("reported");
                    times.push(t.elapsed());
                }
                awaited.lock().expect("samples").extend(times);
                start.elapsed()
            })
        })
    });
    group.finish();
    percentiles("shared_store/redis/acquire+report", &spawned);
    percentiles("shared_store/redis/acquire+report_and_wait", &awaited);
    drop(server);
}

criterion_group!(benches, shared_store);
criterion_main!(benches);
