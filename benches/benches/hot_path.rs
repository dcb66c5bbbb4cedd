//! What a caller pays per request, ours next to governor in the same run.
//!
//! Every group names its functions `<case>/<who>`; `BENCHMARKS.md` at the
//! repository root has the numbers and what dominates each row. Limiters that
//! must keep admitting are rebuilt for every criterion sample (`iter_custom`),
//! outside the timed loop, so no sample ever runs out of burst.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Waker};
use std::time::Duration as StdDuration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use governor::clock::{DefaultClock, FakeRelativeClock, MonotonicClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota as GQuota, RateLimiter as GLimiter};
use upbit_limiter_benches::{
    always_admits, every_group, from_std, never_admits, ADMIT_BURST, ADMIT_INTERVAL, DENY_INTERVAL, HEADERS,
    REQUESTS, START,
};
use upbit_limiter_core::gcra::{Params, TatCell};
use upbit_limiter_core::interval_log::IntervalLog;
use upbit_limiter_core::upbit::RemainingReq;
use upbit_limiter_core::{
    classify, Clock as _, Group, GroupLimiter, Instant, ManualClock, Request, Response, Runtime as _,
    ServerLimit, SyncLimiter,
};

type Direct<C> = GLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    C,
    governor::middleware::NoOpMiddleware<<C as governor::clock::Clock>::Instant>,
>;

type Keyed = GLimiter<
    (&'static str, &'static str),
    DefaultKeyedStateStore<(&'static str, &'static str)>,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<<FakeRelativeClock as governor::clock::Clock>::Instant>,
>;

fn std_dur(d: upbit_limiter_core::Duration) -> StdDuration {
    StdDuration::from_nanos(d.as_nanos())
}

/// governor's twin of [`always_admits`]: one per microsecond, the same burst.
fn g_admits() -> GQuota {
    let burst = NonZeroU32::new(ADMIT_BURST).unwrap_or(NonZeroU32::MIN);
    GQuota::with_period(std_dur(ADMIT_INTERVAL))
        .unwrap_or(GQuota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

/// governor's twin of [`never_admits`]: one per hour, burst 1.
fn g_denies() -> GQuota {
    GQuota::with_period(std_dur(DENY_INTERVAL)).unwrap_or(GQuota::per_hour(NonZeroU32::MIN))
}

fn ours_admits() -> GroupLimiter {
    GroupLimiter::new(Group::Default, always_admits()).expect("valid configuration")
}

/// A group that has spent its single admission at `now`: it denies for an hour.
fn saturated_at(now: Instant) -> GroupLimiter {
    let g = GroupLimiter::new(Group::Default, never_admits()).expect("valid configuration");
    assert!(g.try_acquire(now).is_ok());
    assert!(g.try_acquire(now).is_err());
    g
}

/// A group that has spent its single admission at `START`.
fn ours_saturated() -> GroupLimiter {
    saturated_at(START)
}

fn g_saturated<C: governor::clock::Clock>(clock: C) -> Direct<C> {
    let g = GLimiter::direct_with_clock(g_denies(), clock);
    assert!(g.check().is_ok());
    assert!(g.check().is_err());
    g
}

/// How far the interval log's instant moves per decision in the benches.
const LOG_STEP: upbit_limiter_core::Duration = upbit_limiter_core::Duration::from_nanos(16);

/// An interval log that admits every decision made [`LOG_STEP`] apart: 128
/// slots, reused after the window and the maximum flight time (1 µs each).
fn always_admitting_log() -> IntervalLog {
    let window = ServerLimit::new(128, upbit_limiter_core::Duration::from_micros(1));
    IntervalLog::new(&[window], upbit_limiter_core::Duration::from_micros(1)).expect("valid log")
}

/// Runs `op` `iters` times and returns the wall time.
#[inline(always)]
fn timed(iters: u64, mut op: impl FnMut()) -> StdDuration {
    let start = std::time::Instant::now();
    for _ in 0..iters {
        op();
    }
    start.elapsed()
}

/// `quanta`'s clock read exactly as governor's `QuantaClock` does it, as core time.
#[derive(Clone)]
struct QuantaNow(quanta::Clock);

impl QuantaNow {
    fn new() -> Self {
        Self(quanta::Clock::new())
    }
    #[inline(always)]
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.delta_as_nanos(0, self.0.raw()))
    }
}

/// 1. The decision alone on a manual clock (an atomic read, like governor's
///    `FakeRelativeClock`).
fn manual_clock(c: &mut Criterion) {
    let mut group = c.benchmark_group("manual_clock");

    group.bench_function("allow/ours", |b| {
        b.iter_custom(|iters| {
            let clock = ManualClock::starting_at(START);
            let g = ours_admits();
            timed(iters, || {
                black_box(g.try_acquire(clock.now()).is_ok());
            })
        })
    });
    group.bench_function("allow/governor", |b| {
        b.iter_custom(|iters| {
            let g = GLimiter::direct_with_clock(g_admits(), FakeRelativeClock::default());
            timed(iters, || {
                black_box(g.check().is_ok());
            })
        })
    });
    // Time moves between decisions (one emission interval each): both pay the
    // clock's CAS, and ours also raises its clock high-water mark.
    group.bench_function("allow_advancing/ours", |b| {
        b.iter_custom(|iters| {
            let clock = ManualClock::starting_at(START);
            let g = ours_admits();
            timed(iters, || {
                clock.advance(ADMIT_INTERVAL);
                black_box(g.try_acquire(clock.now()).is_ok());
            })
        })
    });
    group.bench_function("allow_advancing/governor", |b| {
        b.iter_custom(|iters| {
            let clock = FakeRelativeClock::default();
            let g = GLimiter::direct_with_clock(g_admits(), clock.clone());
            let step = std_dur(ADMIT_INTERVAL);
            timed(iters, || {
                clock.advance(step);
                black_box(g.check().is_ok());
            })
        })
    });
    // The interval log's decision beside the GCRA fast path: the bare TAT
    // cell, and the log under a lock as the group holds it (std's mutex, what
    // the group lock is with `std`) and bare. The log's instant advances by
    // 16 ns per call (a plain addition, no clock) so that the slot after the
    // last one claimed is free again: 128 slots, a window and a maximum
    // flight time of 1 µs each.
    group.bench_function("allow/gcra_cell", |b| {
        b.iter_custom(|iters| {
            let cell = TatCell::new(START);
            let params = Params::new(ADMIT_INTERVAL, upbit_limiter_core::Duration::MAX);
            timed(iters, || {
                black_box(cell.try_claim(black_box(START), params).is_ok());
            })
        })
    });
    group.bench_function("admit/interval_log", |b| {
        b.iter_custom(|iters| {
            let log = std::sync::Mutex::new(always_admitting_log());
            let mut now = START;
            timed(iters, || {
                now += LOG_STEP;
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                black_box(log.try_admit(black_box(now)).is_ok());
            })
        })
    });
    group.bench_function("admit_report/interval_log", |b| {
        b.iter_custom(|iters| {
            let log = std::sync::Mutex::new(always_admitting_log());
            let mut now = START;
            timed(iters, || {
                now += LOG_STEP;
                let ticket = log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .try_admit(black_box(now));
                if let Ok(ticket) = ticket {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    black_box(log.report(ticket, black_box(now)));
                }
            })
        })
    });
    group.bench_function("admit/interval_log_unlocked", |b| {
        b.iter_custom(|iters| {
            let mut log = always_admitting_log();
            let mut now = START;
            timed(iters, || {
                now += LOG_STEP;
                black_box(log.try_admit(black_box(now)).is_ok());
            })
        })
    });
    group.bench_function("admit_report/interval_log_unlocked", |b| {
        b.iter_custom(|iters| {
            let mut log = always_admitting_log();
            let mut now = START;
            timed(iters, || {
                now += LOG_STEP;
                if let Ok(ticket) = log.try_admit(black_box(now)) {
                    black_box(log.report(ticket, black_box(now)));
                }
            })
        })
    });
    let clock = ManualClock::starting_at(START);
    let g = ours_saturated();
    group.bench_function("deny/ours", |b| {
        b.iter(|| black_box(g.try_acquire(clock.now()).is_err()))
    });
    let g = g_saturated(FakeRelativeClock::default());
    group.bench_function("deny/governor", |b| b.iter(|| black_box(g.check().is_err())));
    group.finish();
}

/// 2. The decision on a real clock: each side reads the clock itself.
fn real_clock(c: &mut Criterion) {
    let mut group = c.benchmark_group("real_clock");
    let epoch = std::time::Instant::now();
    let tokio = upbit_limiter_tokio::Tokio::new();
    let quanta = QuantaNow::new();

    group.bench_function("allow/ours_quanta", |b| {
        b.iter_custom(|iters| {
            let g = ours_admits();
            timed(iters, || {
                black_box(g.try_acquire(quanta.now()).is_ok());
            })
        })
    });
    group.bench_function("allow/governor_quanta", |b| {
        b.iter_custom(|iters| {
            let g = GLimiter::direct_with_clock(g_admits(), DefaultClock::default());
            timed(iters, || {
                black_box(g.check().is_ok());
            })
        })
    });
    group.bench_function("allow/ours_std", |b| {
        b.iter_custom(|iters| {
            let g = ours_admits();
            timed(iters, || {
                black_box(g.try_acquire(from_std(epoch, std::time::Instant::now())).is_ok());
            })
        })
    });
    group.bench_function("allow/ours_tokio", |b| {
        b.iter_custom(|iters| {
            let g = ours_admits();
            timed(iters, || {
                black_box(g.try_acquire(tokio.now()).is_ok());
            })
        })
    });
    group.bench_function("allow/governor_monotonic", |b| {
        b.iter_custom(|iters| {
            let g = GLimiter::direct_with_clock(g_admits(), MonotonicClock);
            timed(iters, || {
                black_box(g.check().is_ok());
            })
        })
    });

    let ours = saturated_at(quanta.now());
    group.bench_function("deny/ours_quanta", |b| {
        b.iter(|| black_box(ours.try_acquire(quanta.now()).is_err()))
    });
    let g = g_saturated(DefaultClock::default());
    group.bench_function("deny/governor_quanta", |b| {
        b.iter(|| black_box(g.check().is_err()))
    });
    let ours = saturated_at(from_std(epoch, std::time::Instant::now()));
    group.bench_function("deny/ours_std", |b| {
        b.iter(|| {
            black_box(
                ours.try_acquire(from_std(epoch, std::time::Instant::now()))
                    .is_err(),
            )
        })
    });
    let ours = saturated_at(tokio.now());
    group.bench_function("deny/ours_tokio", |b| {
        b.iter(|| black_box(ours.try_acquire(tokio.now()).is_err()))
    });
    let g = g_saturated(MonotonicClock);
    group.bench_function("deny/governor_monotonic", |b| {
        b.iter(|| black_box(g.check().is_err()))
    });
    // The clocks alone, to subtract.
    group.bench_function("clock/quanta", |b| b.iter(|| black_box(quanta.now())));
    group.bench_function("clock/std", |b| {
        b.iter(|| black_box(from_std(epoch, std::time::Instant::now())))
    });
    group.bench_function("clock/tokio", |b| b.iter(|| black_box(tokio.now())));
    group.finish();
}

/// 3. The whole decision from `(method, path)`, and its parts.
fn classified(c: &mut Criterion) {
    let mut group = c.benchmark_group("classified");
    let config = every_group(always_admits());

    group.bench_function("decision/ours", |b| {
        b.iter_custom(|iters| {
            let clock = ManualClock::starting_at(START);
            let limiter = SyncLimiter::new(&config).expect("valid configuration");
            let mut i = 0usize;
            timed(iters, || {
                let (method, path) = REQUESTS[i % REQUESTS.len()];
                i = i.wrapping_add(1);
                black_box(
                    limiter
                        .try_acquire(black_box(method), black_box(path), clock.now())
                        .is_ok(),
                );
            })
        })
    });
    // The anchor: one governor bucket per (method, path), looked up by hash.
    group.bench_function("decision/governor_keyed", |b| {
        b.iter_custom(|iters| {
            let limiter: Keyed = GLimiter::new(
                g_admits(),
                DefaultKeyedStateStore::default(),
                FakeRelativeClock::default(),
            );
            let mut i = 0usize;
            timed(iters, || {
                let key = black_box(&REQUESTS[i % REQUESTS.len()]);
                i = i.wrapping_add(1);
                black_box(limiter.check_key(key).is_ok());
            })
        })
    });
    let mut i = 0usize;
    group.bench_function("classify/ours", |b| {
        b.iter(|| {
            let (method, path) = REQUESTS[i % REQUESTS.len()];
            i = i.wrapping_add(1);
            classify(black_box(method), black_box(path))
        })
    });
    let mut i = 0usize;
    group.bench_function("remaining_req/ours", |b| {
        b.iter(|| {
            let value = HEADERS[i % HEADERS.len()];
            i = i.wrapping_add(1);
            black_box(RemainingReq::parse(black_box(value)).map(|h| h.sec))
        })
    });
    group.finish();
}

/// Two threads run `op` `iters` times each from a common start; the result is
/// the slower thread's time, so criterion's per-iteration figure is the
/// latency of one decision while another thread hammers the same group.
fn two_threads<S: Sync>(iters: u64, state: &S, op: impl Fn(&S) + Sync) -> StdDuration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let run = || {
            barrier.wait();
            timed(iters, || op(state))
        };
        let other = s.spawn(run);
        let mine = run();
        mine.max(other.join().unwrap_or(StdDuration::ZERO))
    })
}

fn contended_pair(
    group: &mut BenchmarkGroup<'_, WallTime>,
    case: &str,
    ours: impl Fn() -> (GroupLimiter, Box<dyn Fn() -> Instant + Sync>),
    governor: impl Fn() -> Box<dyn Fn() -> bool + Sync>,
) {
    group.bench_function(format!("{case}/ours"), |b| {
        b.iter_custom(|iters| {
            let (g, now) = ours();
            two_threads(iters, &g, |g| {
                black_box(g.try_acquire(now()).is_ok());
            })
        })
    });
    group.bench_function(format!("{case}/governor"), |b| {
        b.iter_custom(|iters| {
            let check = governor();
            two_threads(iters, &check, |check| {
                black_box(check());
            })
        })
    });
}

/// 4. Two threads on one group.
fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("two_threads");
    contended_pair(
        &mut group,
        "allow_manual",
        || {
            let clock = ManualClock::starting_at(START);
            (ours_admits(), Box::new(move || clock.now()))
        },
        || {
            let g = GLimiter::direct_with_clock(g_admits(), FakeRelativeClock::default());
            Box::new(move || g.check().is_ok())
        },
    );
    contended_pair(
        &mut group,
        "deny_manual",
        || {
            let clock = ManualClock::starting_at(START);
            (ours_saturated(), Box::new(move || clock.now()))
        },
        || {
            let g = g_saturated(FakeRelativeClock::default());
            Box::new(move || g.check().is_ok())
        },
    );
    contended_pair(
        &mut group,
        "allow_quanta",
        || {
            let clock = QuantaNow::new();
            (ours_admits(), Box::new(move || clock.now()))
        },
        || {
            let g = GLimiter::direct_with_clock(g_admits(), DefaultClock::default());
            Box::new(move || g.check().is_ok())
        },
    );
    contended_pair(
        &mut group,
        "deny_quanta",
        || {
            let clock = QuantaNow::new();
            let g = saturated_at(clock.now());
            (g, Box::new(move || clock.now()))
        },
        || {
            let g = g_saturated(DefaultClock::default());
            Box::new(move || g.check().is_ok())
        },
    );
    group.finish();
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

/// Polls `fut` once with a waker that does nothing, then drops it.
fn poll_once_and_drop<F: Future>(fut: F) -> bool {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    fut.as_mut().poll(&mut cx).is_pending()
}

/// Two threads, each on a current-thread runtime of its own (built before
/// the common start), await `op()` `iters` times each; the result is the
/// slower thread's time, as in [`two_threads`].
fn two_threads_async<F: Future>(iters: u64, op: impl Fn() -> F + Sync) -> StdDuration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let run = || {
            let rt = current_thread();
            barrier.wait();
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    op().await;
                }
                start.elapsed()
            })
        };
        let other = s.spawn(run);
        let mine = run();
        mine.max(other.join().unwrap_or(StdDuration::ZERO))
    })
}

/// The operator's wrapper (`upbit_limiter_ops::Instrumented`) around the
/// tokio limiter, on `config`.
fn instrumented(config: &upbit_limiter_core::LimiterConfig) -> upbit_limiter_ops::Instrumented {
    let ops = upbit_limiter_ops::OpsConfig {
        limiter: config.clone(),
        ..upbit_limiter_ops::OpsConfig::default()
    };
    upbit_limiter_ops::Instrumented::new(&ops).expect("valid")
}

/// 5. `acquire().await` that never has to wait, and a waiter that is cancelled.
fn async_acquire(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_acquire");
    let rt = current_thread();
    let config = every_group(always_admits());

    group.bench_function("uncontended/ours", |b| {
        b.iter_custom(|iters| {
            let limiter = rt
                .block_on(async { upbit_limiter_tokio::RateLimiter::new(&config) })
                .expect("valid");
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let permit = limiter.acquire_request(Request::group(Group::Default)).await;
                    drop(black_box(permit));
                }
                start.elapsed()
            })
        })
    });
    // The same through the operator's wrapper: a span, the recent-statistics
    // record, the wait histogram, the upkeep check.
    group.bench_function("uncontended/instrumented", |b| {
        b.iter_custom(|iters| {
            let limiter = rt.block_on(async { instrumented(&config) });
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let permit = limiter.acquire_request(Request::group(Group::Default)).await;
                    drop(black_box(permit));
                }
                start.elapsed()
            })
        })
    });
    // Two threads acquiring on one group, each on a runtime of its own.
    group.bench_function("two_threads/ours", |b| {
        b.iter_custom(|iters| {
            let limiter = rt
                .block_on(async { upbit_limiter_tokio::RateLimiter::new(&config) })
                .expect("valid");
            let limiter = &limiter;
            two_threads_async(iters, move || async move {
                let permit = limiter.acquire_request(Request::group(Group::Default)).await;
                drop(black_box(permit));
            })
        })
    });
    group.bench_function("two_threads/instrumented", |b| {
        b.iter_custom(|iters| {
            let limiter = rt.block_on(async { instrumented(&config) });
            let limiter = &limiter;
            two_threads_async(iters, move || async move {
                let permit = limiter.acquire_request(Request::group(Group::Default)).await;
                drop(black_box(permit));
            })
        })
    });
    group.bench_function("uncontended/governor", |b| {
        b.iter_custom(|iters| {
            let g = GLimiter::direct(g_admits());
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    g.until_ready().await;
                }
                start.elapsed()
            })
        })
    });
    // The parts of ours: classification included, and the permit kept out of
    // the figure (forgotten instead of dropped, which skips `on_unreported`).
    group.bench_function("uncontended_classified/ours", |b| {
        b.iter_custom(|iters| {
            let limiter = rt
                .block_on(async { upbit_limiter_tokio::RateLimiter::new(&config) })
                .expect("valid");
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters as usize {
                    let (method, path) = REQUESTS[i % REQUESTS.len()];
                    drop(black_box(limiter.acquire(method, path).await));
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("uncontended_permit_forgotten/ours", |b| {
        b.iter_custom(|iters| {
            let limiter = rt
                .block_on(async { upbit_limiter_tokio::RateLimiter::new(&config) })
                .expect("valid");
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    if let Ok(permit) = limiter.acquire_request(Request::group(Group::Default)).await {
                        std::mem::forget(black_box(permit));
                    }
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("uncontended_reported/ours", |b| {
        b.iter_custom(|iters| {
            let limiter = rt
                .block_on(async { upbit_limiter_tokio::RateLimiter::new(&config) })
                .expect("valid");
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    if let Ok(permit) = limiter.acquire_request(Request::group(Group::Default)).await {
                        black_box(permit.report_with_feedback(Response::status(200)));
                    }
                }
                start.elapsed()
            })
        })
    });

    let saturated = every_group(never_admits());
    let ours = rt
        .block_on(async { upbit_limiter_tokio::RateLimiter::new(&saturated) })
        .expect("valid");
    let _guard = rt.enter();
    assert!(ours
        .limiter()
        .group(Group::Default)
        .try_acquire(ours.now())
        .is_ok());
    group.bench_function("cancelled_waiter/ours", |b| {
        b.iter(|| poll_once_and_drop(ours.acquire_request(Request::group(Group::Default))))
    });
    let g = g_saturated(DefaultClock::default());
    group.bench_function("cancelled_waiter/governor", |b| {
        b.iter(|| poll_once_and_drop(g.until_ready()))
    });
    group.finish();
}

criterion_group!(
    benches,
    manual_clock,
    real_clock,
    classified,
    contended,
    async_acquire
);
criterion_main!(benches);
