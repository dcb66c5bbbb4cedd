//! Serves the limiter's metrics in Prometheus text format, with
//! `metrics-exporter-prometheus`'s own HTTP listener, while a small synthetic
//! workload runs against an Upbit-like fake that answers some orders with
//! HTTP 429.
//!
//! ```sh
//! cargo run -p upbit-limiter-ops --example prometheus -- --listen 127.0.0.1:9898
//! curl -s http://127.0.0.1:9898/metrics
//! ```
//!
//! Options: `--listen ADDR` (default `127.0.0.1:9898`; port 0 picks a free
//! one), `--seconds N` (stop after N seconds and print the JSON status;
//! default: run until killed). The limiter's configuration comes from
//! `UPBIT_RATE_LIMIT_*` variables (and the file named by
//! `UPBIT_RATE_LIMIT_FILE`).
//!
//! Nothing here calls `record_metrics`: the limiter publishes every change as
//! it happens and refreshes what changes with time alone at most every
//! second (see "Metrics" in OPERATING.md), so the exporter's listener serves
//! current values by itself.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use upbit_limiter_core::{Request, Response};
use upbit_limiter_ops::telemetry::{self, WAIT_BUCKETS_SECONDS};
use upbit_limiter_ops::{Instrumented, OpsConfig};

/// A running example: the workload on its own tokio runtime, the exporter's
/// listener on the exporter's own thread.
#[derive(Debug)]
pub struct Running {
    /// Where the metrics are served (any path; `/metrics` by convention).
    pub addr: SocketAddr,
    /// The limiter the workload uses.
    pub limiter: Arc<Instrumented>,
    stop: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Running {
    /// Stops the workload. (The exporter's listener lives as long as the
    /// process, as its recorder does.)
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(StdDuration::from_secs(1));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `listen` resolved to one address; port 0 replaced by a port that was free
/// a moment ago (the exporter does not say which port it bound).
fn resolve(listen: &str) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let mut addr = listen
        .to_socket_addrs()
        .map_err(|e| format!("--listen {listen:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--listen {listen:?}: no address"))?;
    if addr.port() == 0 {
        addr = TcpListener::bind(addr)?.local_addr()?;
    }
    Ok(addr)
}

/// Installs the Prometheus recorder and its HTTP listener on `listen` (once
/// per process), then starts the workload.
pub fn start(listen: &str) -> Result<Running, Box<dyn std::error::Error>> {
    let config = OpsConfig::load_from_process_env(None)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    let addr = resolve(listen)?;
    // Outside any tokio runtime, `install` runs the listener on a thread of its own.
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), WAIT_BUCKETS_SECONDS)?
        .install()?;
    telemetry::describe();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    let limiter = {
        let _guard = runtime.enter();
        Arc::new(Instrumented::new(&config)?)
    };
    let stop = Arc::new(AtomicBool::new(false));
    spawn_workload(&runtime, &limiter, &stop);
    Ok(Running {
        addr,
        limiter,
        stop,
        runtime: Some(runtime),
    })
}

/// Three ticker pollers (so some of them wait) and one order loop whose fake
/// server answers every 10th order with 429.
fn spawn_workload(runtime: &tokio::runtime::Runtime, limiter: &Arc<Instrumented>, stop: &Arc<AtomicBool>) {
    for worker in 0..3u64 {
        let limiter = Arc::clone(limiter);
        let stop = Arc::clone(stop);
        runtime.spawn(async move {
            let mut id = worker << 32;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let request = Request::http("GET", "/v1/ticker").correlation_id(id);
                match limiter.acquire_request(request).await {
                    Ok(permit) => {
                        permit.report(
                            Response::status(200).with_remaining_req("group=ticker; min=1800; sec=9"),
                        );
                    }
                    Err(e) => {
                        tokio::time::sleep(std::time::Duration::from(e.retry_at() - limiter.now())).await
                    }
                }
            }
        });
    }
    let limiter = Arc::clone(limiter);
    let stop = Arc::clone(stop);
    runtime.spawn(async move {
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            match limiter
                .acquire_request(Request::http("POST", "/v1/orders").correlation_id(n))
                .await
            {
                Ok(permit) => {
                    let response = if n % 10 == 0 {
                        Response::status(429)
                    } else {
                        Response::status(201)
                    };
                    permit.report(response);
                }
                Err(e) => tokio::time::sleep(std::time::Duration::from(e.retry_at() - limiter.now())).await,
            }
            // A trader does not send orders back to back.
            tokio::time::sleep(StdDuration::from_millis(150)).await;
        }
    });
}

#[allow(dead_code)]
fn main() -> std::process::ExitCode {
    match run(std::env::args().skip(1)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error_line(&*e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// What `main` prints for an error: its `Display` text, which for a
/// configuration error lists every problem with its key.
pub fn error_line(e: &dyn std::error::Error) -> String {
    format!("error: {e}")
}

/// The example with its command-line arguments (without the program name).
pub fn run(mut args: impl Iterator<Item = String>) -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:9898".to_owned();
    let mut seconds: Option<u64> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "--seconds" => {
                let n = args.next().ok_or("--seconds needs a whole number of seconds")?;
                let n = n
                    .parse()
                    .map_err(|_| format!("--seconds needs a whole number of seconds, found {n:?}"))?;
                seconds = Some(n);
            }
            "-h" | "--help" => {
                println!("usage: prometheus [--listen 127.0.0.1:9898] [--seconds N]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    let running = start(&listen)?;
    println!("serving http://{}/metrics", running.addr);
    match seconds {
        Some(s) => std::thread::sleep(StdDuration::from_secs(s)),
        None => loop {
            std::thread::sleep(StdDuration::from_secs(3600));
        },
    }
    println!("{}", serde_json::to_string_pretty(&running.limiter.snapshot())?);
    running.stop();
    Ok(())
}
