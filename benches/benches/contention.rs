//! A bounded throughput benchmark under lock contention (not criterion: the
//! figure is admissions per second against a quota, not time per call).
//!
//! 2000 tasks on a tokio runtime with 8 worker threads (on however many cores
//! the machine has: 2 here) wait on one group whose quota is 1000 per second
//! (burst 10, and burst 1), each task acquiring again as soon as it has its
//! permit. The
//! figure is the rate of admissions in the measured span, as a share of the
//! quota; the run also reports the spread of waits and how late errors came
//! after their deadlines. A second run does the same while the group's
//! configuration changes every 37 ms (between burst b and b + 1 at the same
//! rate), which exercises the re-spacing and the withdrawn claims.
//!
//! With burst 1 every admission needs its own timer wake-up exactly one
//! interval after the last, and tokio's timer has a resolution of 1 ms: a
//! wake-up that comes late cannot be made up without admitting faster than
//! the quota, so burst 1 at 1 ms intervals measures the timer as much as the
//! limiter. With burst 10 the GCRA's tolerance absorbs late wake-ups.
//!
//! `cargo bench -p upbit-limiter-benches --bench contention` runs 8 s per
//! case; with `--quick` (what `benches/quick.sh` passes) 2 s. It asserts
//! nothing about speed: it reports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use upbit_limiter_core::limiter::Limits;
use upbit_limiter_core::{Duration, Group, LimiterConfig, Preset, Quota, Request, Response, ServerLimit};
use upbit_limiter_tokio::RateLimiter;

const TASKS: usize = 2_000;
const WORKERS: usize = 8;
const RATE: u64 = 1_000;

/// A group whose server allows 1111 per second (a 1000/s quota, checked
/// against the 1 s window plus the 100 ms margin plus the nanosecond of a
/// closed window, admits `burst + 1100` there: safe up to burst 11), running
/// 1000/s at `burst`.
fn config(burst: u32) -> LimiterConfig {
    let mut c = LimiterConfig::preset(Preset::Korea);
    let g = c.group_mut(Group::Ticker);
    g.limits = Limits::new(&[ServerLimit::new(1_111, Duration::from_secs(1))]).expect("one window");
    g.quota = Some(Quota::new(Duration::from_nanos(1_000_000_000 / RATE), burst).expect("sane"));
    // A deadline no waiter reaches in a healthy run.
    g.waiter_timeout = Duration::from_secs(30);
    // The GCRA's queue under contention (the interval log's cannot hold 1111).
    g.policy = upbit_limiter_core::limiter::Policy::Gcra;
    c
}

struct Outcome {
    admitted_per_s: f64,
    errors: u64,
    worst_late_ms: f64,
}

fn run(seconds: u64, burst: u32, switch_every: Option<StdDuration>) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let limiter = Arc::new(RateLimiter::new(&config(burst)).expect("valid"));
        let stop = Arc::new(AtomicBool::new(false));
        let measuring = Arc::new(AtomicBool::new(false));
        let admitted = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let worst_late_ns = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::with_capacity(TASKS);
        for _ in 0..TASKS {
            let (limiter, stop, measuring) =
                (Arc::clone(&limiter), Arc::clone(&stop), Arc::clone(&measuring));
            let (admitted, errors, worst) = (
                Arc::clone(&admitted),
                Arc::clone(&errors),
                Arc::clone(&worst_late_ns),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let deadline = limiter.now() + Duration::from_secs(3);
                    match limiter
                        .acquire_request(Request::group(Group::Ticker).deadline(deadline))
                        .await
                    {
                        Ok(p) => {
                            if measuring.load(Ordering::Relaxed) {
                                admitted.fetch_add(1, Ordering::Relaxed);
                            }
                            p.report(Response::status(200));
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            let late = (limiter.now() - deadline).as_nanos();
                            worst.fetch_max(late, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        let switcher = switch_every.map(|every| {
            let (limiter, stop) = (Arc::clone(&limiter), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut next = burst;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(every).await;
                    next = if next == burst { burst + 1 } else { burst };
                    let g = limiter.limiter().group(Group::Ticker);
                    g.set_config(*config(next).group(Group::Ticker), limiter.now())
                        .expect("valid");
                }
            })
        });
        // Warm up one second, then measure.
        tokio::time::sleep(StdDuration::from_secs(1)).await;
        measuring.store(true, Ordering::Relaxed);
        let start = std::time::Instant::now();
        tokio::time::sleep(StdDuration::from_secs(seconds)).await;
        measuring.store(false, Ordering::Relaxed);
        let elapsed = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let admitted = admitted.load(Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        if let Some(s) = switcher {
            s.await.expect("every configuration change was accepted");
        }
        Outcome {
            admitted_per_s: admitted as f64 / elapsed,
            errors: errors.load(Ordering::Relaxed),
            worst_late_ms: worst_late_ns.load(Ordering::Relaxed) as f64 / 1e6,
        }
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `cargo bench` passes `--bench`; a name filter selects nothing else here.
    let seconds = if quick { 2 } else { 8 };
    println!(
        "contention: {TASKS} tasks, {WORKERS} tokio workers on {} cores, quota {RATE}/s, {seconds} s measured per case",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let switch = Some(StdDuration::from_millis(37));
    for (name, burst, switch) in [
        ("burst 10", 10, None),
        ("burst 10, config change every 37 ms", 10, switch),
        ("burst 1", 1, None),
        ("burst 1, config change every 37 ms", 1, switch),
    ] {
        let o = run(seconds, burst, switch);
        println!(
            "contention/{name}: {:.1} admissions/s = {:.1} % of the quota; {} errors, worst {:.1} ms after a deadline",
            o.admitted_per_s,
            100.0 * o.admitted_per_s / RATE as f64,
            o.errors,
            o.worst_late_ms
        );
    }
}
