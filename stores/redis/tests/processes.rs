//! Three OS processes sharing the `order` (pocket) and `ticker` (IP) budgets
//! through one Redis against the mock Upbit, saturating for a bounded time:
//! no 429, the combined throughput of one process alone, no process
//! starved, with `SCRIPT FLUSH` halfway; then one of them killed with
//! `kill -9`, then Redis restarted empty, mid-run.
//!
//! The processes are this test binary run again with `worker` as the test
//! filter and its settings in the environment: the same code, no extra
//! binary to build.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::redis_server::RedisServer;
use upbit_limiter_redis::{SharedConfig, SharedError, SharedLimiter};
use upbit_limiter_sim::serve::{Handle, Server, Settings, Stats};
use upbit_limiter_sim::server::ServerModel;
use upbit_limiter_tokio::upbit_limiter_core::limiter::Policy;
use upbit_limiter_tokio::{LimiterConfig, Preset, Request, Response};

/// The variable that makes this binary a worker, and holds its settings.
const WORKER: &str = "UPBIT_LIMITER_REDIS_TEST_WORKER";
/// A JWT whose payload is `{"access_key":"shared-pocket"}` (the mock checks no signature).
const TOKEN: &str =
    "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2Nlc3Nfa2V5Ijoic2hhcmVkLXBvY2tldCJ9.c2ln";
const MAX_FLIGHT: Duration = Duration::from_secs(2);
/// Concurrent callers per group and process.
const CALLERS: usize = 3;
const GROUPS: [&str; 2] = ["order", "ticker"];

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn limits() -> LimiterConfig {
    let mut c = LimiterConfig::preset(Preset::Korea);
    for g in &mut c.groups {
        g.max_flight = MAX_FLIGHT.into();
        g.policy = Policy::IntervalLog;
    }
    c
}

/// What one worker did in its measured span, per group.
#[derive(Debug, Default, Clone)]
struct Counts {
    accepted: u64,
    too_many: u64,
    other: u64,
    store_unavailable: u64,
    timeouts: u64,
    waits_ms: Vec<f64>,
}

// ---- the worker ---------------------------------------------------------

/// Runs only as a worker: `WORKER=redis_url|server_addr|prefix|start_unix_ms|run_ms`.
#[test]
fn worker() {
    let Ok(spec) = std::env::var(WORKER) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [redis_url, addr, prefix, start, run] = parts.as_slice() else {
        panic!("bad worker settings {spec:?}");
    };
    let start: u64 = start.parse().unwrap();
    let run: u64 = run.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(work(redis_url, addr, prefix, start, start + run));
    let mut line = serde_json::Map::new();
    for (group, c) in &results {
        let mut w = c.waits_ms.clone();
        w.sort_by(f64::total_cmp);
        let q = |p: f64| {
            w.get(((w.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        line.insert(
            group.clone(),
            serde_json::json!({
                "accepted": c.accepted, "429": c.too_many, "other": c.other,
                "store_unavailable": c.store_unavailable, "timeouts": c.timeouts,
                "wait_p50_ms": q(0.5), "wait_p99_ms": q(0.99),
            }),
        );
    }
    println!("WORKER-RESULT {}", serde_json::Value::Object(line));
}

async fn work(redis_url: &str, addr: &str, prefix: &str, start: u64, end: u64) -> BTreeMap<String, Counts> {
    let shared = SharedConfig::new(redis_url)
        .key_prefix(prefix)
        .pocket_id("shared-pocket")
        .ip_id("loopback");
    let limiter = SharedLimiter::new(&limits(), shared).unwrap();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for group in GROUPS {
        for _ in 0..CALLERS {
            let (limiter, client) = (limiter.clone(), client.clone());
            let url = match group {
                "order" => format!("http://{addr}/v1/orders"),
                _ => format!("http://{addr}/v1/ticker?markets=KRW-BTC"),
            };
            tasks.push(tokio::spawn(async move {
                let mut c = Counts::default();
                let wait_start = start.saturating_sub(unix_ms());
                tokio::time::sleep(Duration::from_millis(wait_start)).await;
                while unix_ms() < end {
                    let request = match group {
                        "order" => Request::http("POST", "/v1/orders"),
                        _ => Request::http("GET", "/v1/ticker"),
                    }
                    .timeout(Duration::from_secs(5));
                    let t = Instant::now();
                    let permit = match limiter.acquire_request(request).await {
                        Ok(p) => p,
                        Err(SharedError::StoreUnavailable { .. }) => {
                            c.store_unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        Err(e) => {
                            c.timeouts += 1;
                            tokio::time::sleep(e.retry_after().min(Duration::from_millis(100))).await;
                            continue;
                        }
                    };
                    if unix_ms() >= end {
                        // Admitted after the measured span: never sent.
                        drop(permit);
                        break;
                    }
                    c.waits_ms.push(t.elapsed().as_secs_f64() * 1e3);
                    let sent = match group {
                        "order" => client.post(&url).header("authorization", TOKEN).send().await,
                        _ => client.get(&url).send().await,
                    };
                    match sent {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let remaining = resp
                                .headers()
                                .get("remaining-req")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let body = resp.text().await.unwrap_or_default();
                            match status {
                                200 | 201 => c.accepted += 1,
                                429 => c.too_many += 1,
                                _ => c.other += 1,
                            }
                            let mut r = Response::status(status).with_body(&body);
                            if let Some(rem) = remaining.as_deref() {
                                r = r.with_remaining_req(rem);
                            }
                            permit.report(r);
                        }
                        Err(_) => {
                            c.other += 1;
                            permit.report(Response::no_response());
                        }
                    }
                }
                (group, c)
            }));
        }
    }
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for t in tasks {
        let (group, c) = t.await.unwrap();
        let e = out.entry(group.to_owned()).or_default();
        e.accepted += c.accepted;
        e.too_many += c.too_many;
        e.other += c.other;
        e.store_unavailable += c.store_unavailable;
        e.timeouts += c.timeouts;
        e.waits_ms.extend(c.waits_ms);
    }
    // Let the last reports land before the process exits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    out
}

// ---- the parent ---------------------------------------------------------

fn spawn_worker(redis: &str, addr: SocketAddr, prefix: &str, start: u64, run: Duration) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["worker", "--exact", "--nocapture", "--test-threads", "1"])
        .env(
            WORKER,
            format!("{redis}|{addr}|{prefix}|{start}|{}", run.as_millis()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn result_of(child: Child) -> Option<serde_json::Value> {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().find_map(|l| Some(l.split_once("WORKER-RESULT ")?.1)) else {
        eprintln!("no result from a worker ({}): {text}", out.status);
        return None;
    };
    Some(serde_json::from_str(line).unwrap())
}

fn num(v: &serde_json::Value, group: &str, field: &str) -> f64 {
    v[group][field].as_f64().unwrap_or(0.0)
}

async fn mock() -> (SocketAddr, Handle) {
    Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        Settings::new(Preset::Korea, ServerModel::Sliding),
    )
    .await
    .unwrap()
}

/// Opens an empty store's hold for `prefix` before the workers start, so
/// that every run measures the same span of open budget.
async fn open_store(redis: &str, prefix: &str) {
    let l = SharedLimiter::new(&limits(), SharedConfig::new(redis).key_prefix(prefix)).unwrap();
    let r = l.acquire_request(Request::http("GET", "/v1/market/all")).await;
    r.unwrap().report(Response::status(200));
}

fn totals(stats: &Stats) -> (u64, u64) {
    stats
        .groups
        .values()
        .fold((0, 0), |(a, b), g| (a + g.status_429, b + g.status_418))
}

async fn script_calls(redis: &str) -> u64 {
    let client = redis::Client::open(redis).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

struct Run {
    results: Vec<serde_json::Value>,
    stats: Stats,
    script_calls: u64,
}

/// `n` workers for `run` on a fresh prefix and a fresh mock; `during` acts
/// on the children (and the Redis) halfway through.
async fn run_workers(
    redis: &mut RedisServer,
    prefix: &str,
    n: usize,
    run: Duration,
    during: impl FnOnce(&mut [Child], &mut RedisServer),
) -> Run {
    let url = redis.url();
    open_store(&url, prefix).await;
    let (addr, server) = mock().await;
    let calls_before = script_calls(&url).await;
    let start = unix_ms() + 1_000;
    let mut children: Vec<Child> = (0..n)
        .map(|_| spawn_worker(&url, addr, prefix, start, run))
        .collect();
    let half = Duration::from_millis(start - unix_ms()) + run / 2;
    tokio::time::sleep(half).await;
    during(&mut children, redis);
    let mut results = Vec::new();
    for child in children {
        let handle = tokio::task::spawn_blocking(move || result_of(child));
        if let Some(v) = handle.await.unwrap() {
            results.push(v);
        }
    }
    let calls = script_calls(&redis.url()).await.saturating_sub(calls_before);
    Run {
        results,
        stats: server.shutdown().await.unwrap(),
        script_calls: calls,
    }
}

fn accepted(results: &[serde_json::Value], group: &str) -> Vec<f64> {
    results.iter().map(|r| num(r, group, "accepted")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_order_and_ticker_exactly() {
    if std::env::var(WORKER).is_ok() {
        return;
    }
    let mut redis = RedisServer::start();
    let run = Duration::from_secs(8);

    // One process alone: the reference throughput.
    let alone = run_workers(&mut redis, "alone", 1, run, |_, _| {}).await;
    assert_eq!(alone.results.len(), 1);
    assert_eq!(totals(&alone.stats), (0, 0), "{:?}", alone.stats);

    // Three processes on the same budgets; halfway through, the script
    // cache is flushed (every process's next EVALSHA meets NOSCRIPT).
    let shared = run_workers(&mut redis, "three", 3, run, |_, redis| {
        assert_eq!(redis.command("SCRIPT FLUSH"), "+OK");
    })
    .await;
    assert_eq!(shared.results.len(), 3);
    assert_eq!(totals(&shared.stats), (0, 0), "{:?}", shared.stats);
    for group in GROUPS {
        let one = accepted(&alone.results, group)[0];
        let each = accepted(&shared.results, group);
        let sum: f64 = each.iter().sum();
        let (min, max) = each
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let p99: Vec<f64> = shared
            .results
            .iter()
            .map(|r| num(r, group, "wait_p99_ms"))
            .collect();
        let server_side = shared.stats.groups[group].accepted;
        eprintln!(
            "{group}: server accepted {server_side}; alone {one}, three {sum} ({:.1} %), per process {each:?}, spread max/min {:.2}, wait p99 ms {p99:?}",
            100.0 * sum / one,
            max / min
        );
        assert!(
            sum >= 0.95 * one,
            "{group}: three processes {sum} < 95 % of one alone {one}"
        );
        assert!(min >= 0.15 * sum, "{group}: a process was starved: {each:?}");
    }
    let admitted: f64 = GROUPS
        .iter()
        .map(|g| accepted(&shared.results, g).iter().sum::<f64>())
        .sum();
    eprintln!(
        "Redis script calls per admitted request: alone {:.2}, three processes {:.2}",
        alone.script_calls as f64 / GROUPS.iter().map(|g| accepted(&alone.results, g)[0]).sum::<f64>(),
        shared.script_calls as f64 / admitted
    );

    // kill -9 of one mid-run: the others go on, no 429.
    let killed = run_workers(&mut redis, "kill", 3, run, |children, _| {
        children[0].kill().unwrap();
    })
    .await;
    assert_eq!(killed.results.len(), 2, "the killed process printed nothing");
    assert_eq!(totals(&killed.stats), (0, 0), "{:?}", killed.stats);
    for group in GROUPS {
        let each = accepted(&killed.results, group);
        eprintln!("after kill -9, {group}: survivors {each:?}");
        assert!(each.iter().all(|&a| a > 0.0), "{group}: {each:?}");
    }

    // Redis restarted empty mid-run: refused, then held, then on; no 429.
    let restarted = run_workers(&mut redis, "restart", 3, Duration::from_secs(10), |_, redis| {
        redis.start_again();
    })
    .await;
    assert_eq!(restarted.results.len(), 3);
    assert_eq!(totals(&restarted.stats), (0, 0), "{:?}", restarted.stats);
    let refused: f64 = restarted
        .results
        .iter()
        .map(|r| GROUPS.iter().map(|g| num(r, g, "store_unavailable")).sum::<f64>())
        .sum();
    for group in GROUPS {
        eprintln!(
            "Redis restart, {group}: {:?}",
            accepted(&restarted.results, group)
        );
    }
    eprintln!("Redis restart: {refused} acquisitions refused while it was away");
}
