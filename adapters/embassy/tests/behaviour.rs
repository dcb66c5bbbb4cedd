//! The shared behaviour suite under embassy-time's mock driver.
//!
//! The driver is process-global, so every test holds [`DRIVER_LOCK`] and
//! starts from a reset clock. [`run`] is a small executor for virtual time:
//! it polls the test's future until nothing is left to do, then advances the
//! mock clock straight to the next instant any timer was set for (every timer
//! comes from the runtime's `sleep_until`, which [`Traced`] records).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use embassy_time::MockDriver;
use upbit_limiter_core::{RateLimiter, Runtime};
use upbit_limiter_embassy::upbit_limiter_core::{Duration, Instant};
use upbit_limiter_embassy::{Embassy, LimiterConfig, Preset};
use upbit_limiter_suite::{self as suite, Timing};

static DRIVER_LOCK: Mutex<()> = Mutex::new(());

fn exclusive_driver() -> MutexGuard<'static, ()> {
    let guard = DRIVER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    MockDriver::get().reset();
    guard
}

/// The embassy runtime, recording every instant a timer is set for.
#[derive(Debug, Clone, Default)]
struct Traced {
    deadlines: Arc<Mutex<BinaryHeap<Reverse<Instant>>>>,
}

impl Runtime for Traced {
    type Sleep = <Embassy as Runtime>::Sleep;
    type Instant = Instant;
    fn core_instant(&self, at: Instant) -> Instant {
        at
    }
    fn runtime_instant(&self, at: Instant) -> Instant {
        at
    }
    fn now(&self) -> Instant {
        Embassy.now()
    }
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        self.deadlines.lock().unwrap().push(Reverse(deadline));
        Embassy.sleep_until(deadline)
    }
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs `future` to completion in virtual time on `rt`'s clock.
fn run<F: Future>(rt: &Traced, future: F) -> F::Output {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    for _ in 0..10_000_000 {
        flag.0.store(false, Ordering::SeqCst);
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        if flag.0.load(Ordering::SeqCst) {
            continue;
        }
        let now = embassy_time::Instant::now();
        let next = loop {
            let Reverse(at) = rt
                .deadlines
                .lock()
                .unwrap()
                .pop()
                .expect("stalled: nothing to wake and no timer set");
            let at = Embassy::to_embassy(at);
            if at > now {
                break at;
            }
        };
        MockDriver::get().advance(next - now);
    }
    panic!("no progress after 10 million steps");
}

fn limiter(rt: &Traced, config: &LimiterConfig) -> RateLimiter<Traced> {
    RateLimiter::with_runtime(config, rt.clone()).unwrap()
}

/// The scenarios that count in emission intervals run on the GCRA.
fn korea() -> LimiterConfig {
    suite::korea_gcra()
}

/// The Korea preset as it ships (the interval log on every HTTP group).
fn preset() -> LimiterConfig {
    LimiterConfig::preset(Preset::Korea)
}

#[test]
fn clock_conversion_rounds_wake_ups_up() {
    let tick = 1_000_000_000 / embassy_time::TICK_HZ;
    for nanos in [0, 1, tick - 1, tick, tick + 1, 123_456_789] {
        let at = Instant::from_nanos(nanos);
        let woken = Embassy::from_embassy(Embassy::to_embassy(at));
        assert!(woken >= at, "{nanos} ns would wake at {woken}");
        assert!(
            woken - at < Duration::from_nanos(tick),
            "{nanos} ns wakes a whole tick late"
        );
    }
    // "Never" stays never, both ways.
    assert_eq!(
        Embassy::from_embassy(Embassy::to_embassy(Instant::MAX)),
        Instant::MAX
    );
    assert_eq!(Embassy::from_embassy(embassy_time::Instant::MAX), Instant::MAX);
}

#[test]
fn clock_follows_the_driver() {
    let _driver = exclusive_driver();
    let l = upbit_limiter_embassy::RateLimiter::new(&korea()).unwrap();
    assert_eq!(l.now(), Instant::ZERO);
    MockDriver::get().advance(embassy_time::Duration::from_millis(250));
    assert_eq!(l.now(), Instant::from_nanos(250_000_000));
}

#[test]
fn fifo_in_arrival_order() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    run(
        &rt,
        suite::fifo_in_arrival_order(&limiter(&rt, &korea()), Timing::Exact),
    );
}

#[test]
fn deadline_fails_fast() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    run(
        &rt,
        suite::deadline_fails_fast(&limiter(&rt, &korea()), Timing::Exact),
    );
}

#[test]
fn cancellation() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    run(
        &rt,
        suite::cancellation(|| limiter(&rt, &korea()), Timing::Exact, 7),
    );
}

#[test]
fn leaked_waiter_does_not_stall_the_queue() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    run(
        &rt,
        suite::leaked_waiter(|| limiter(&rt, &korea()), Timing::Exact, 0),
    );
    run(
        &rt,
        suite::leaked_waiter(|| limiter(&rt, &korea()), Timing::Exact, 3),
    );
}

#[test]
fn circuit_open_fails_fast() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    run(
        &rt,
        suite::circuit_open_fails_fast(&limiter(&rt, &preset()), Timing::Exact),
    );
}

#[test]
fn ban_418_blocks_until_it_ends() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    let body = r#"{"error":{"name":"blocked","message":"Too many requests"},"retry_after":30}"#;
    run(
        &rt,
        suite::ban_blocks(
            &limiter(&rt, &preset()),
            Timing::Exact,
            body,
            Duration::from_secs(30),
        ),
    );
}

#[test]
fn sec0_blocks_for_a_window() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    run(&rt, suite::sec0_blocks(&limiter(&rt, &preset()), Timing::Exact));
}

#[test]
fn market_shock() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    run(&rt, suite::market_shock(&limiter(&rt, &korea()), Timing::Exact));
}

#[test]
fn market_shock_on_the_preset() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    run(&rt, suite::market_shock(&limiter(&rt, &preset()), Timing::Exact));
}

#[test]
fn fifo_after_a_late_executor() {
    let _driver = exclusive_driver();
    let rt = Traced::default();
    run(
        &rt,
        suite::fifo_after_a_late_executor(&limiter(&rt, &korea()), Timing::Exact),
    );
}
