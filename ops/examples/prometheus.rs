//! Serves the limiter's metrics in Prometheus text format while a small
//! synthetic workload runs against an Upbit-like fake that answers some orders
//! with HTTP 429.
//!
//! ```sh
//! cargo run -p upbit-limiter-ops --example prometheus -- --listen 127.0.0.1:9898
//! curl -s http://127.0.0.1:9898/metrics
//! curl -s http://127.0.0.1:9898/status
//! ```
//!
//! Options: `--listen ADDR` (default `127.0.0.1:9898`; port 0 picks a free
//! one), `--seconds N` (stop after N seconds; default: run until killed). The
//! limiter's configuration comes from `UPBIT_RATE_LIMIT_*` variables (and the
//! file named by `UPBIT_RATE_LIMIT_FILE`).
//!
//! The HTTP server is deliberately tiny: one thread, one request per
//! connection, `GET /metrics` and `GET /status` only. Each scrape first
//! records a fresh status snapshot, so counters and gauges are current.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use upbit_limiter_core::{Request, Response};
use upbit_limiter_ops::telemetry::{self, WAIT_BUCKETS_SECONDS};
use upbit_limiter_ops::{Instrumented, OpsConfig};

/// A running example: the workload on its own tokio runtime, the HTTP server
/// on its own thread.
#[derive(Debug)]
pub struct Running {
    /// Where `/metrics` is served.
    pub addr: SocketAddr,
    /// The limiter the workload uses.
    pub limiter: Arc<Instrumented>,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Running {
    /// Stops the server and the workload.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, StdDuration::from_secs(1));
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
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

/// Installs the Prometheus recorder (once per process), starts the workload
/// and serves `/metrics` and `/status` on `listen`.
pub fn start(listen: &str) -> Result<Running, Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), WAIT_BUCKETS_SECONDS)?
        .install_recorder()?;
    telemetry::describe();

    let config = OpsConfig::load_from_process_env(None)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
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

    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let server = {
        let limiter = Arc::clone(&limiter);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || serve(&listener, &limiter, &handle, &stop))
    };
    Ok(Running {
        addr,
        limiter,
        stop,
        server: Some(server),
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

fn serve(listener: &TcpListener, limiter: &Instrumented, handle: &PrometheusHandle, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        // A client that misbehaves costs at most the timeout.
        let _ = stream.set_read_timeout(Some(StdDuration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(StdDuration::from_secs(2)));
        let _ = respond(stream, limiter, handle);
    }
}

fn respond(stream: TcpStream, limiter: &Instrumented, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers; nothing in them matters here.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            limiter.record_metrics();
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            )
        }
        ("GET", "/status") => {
            let snap = limiter.record_metrics();
            let json =
                serde_json::to_string_pretty(&snap).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            ("200 OK", "application/json", json)
        }
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /status\n".to_owned(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_owned()),
    };
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
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
    println!(
        "serving http://{}/metrics and http://{}/status",
        running.addr, running.addr
    );
    match seconds {
        Some(s) => std::thread::sleep(StdDuration::from_secs(s)),
        None => loop {
            std::thread::sleep(StdDuration::from_secs(3600));
        },
    }
    running.stop();
    Ok(())
}
