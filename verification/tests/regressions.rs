//! Regression tests for defects once found in the limiter, one per defect,
//! each written to fail on the code that had it.
//!
//! - a run-time quota change racing lock-free claims let a full window take
//!   more than the server allows (real threads; the loom model of the same
//!   race is `loom_limiter::a_quota_change_racing_claims_from_a_full_window_*`);
//! - a waker was woken with the group's lock held (a re-entrant waker deadlocked);
//! - a queue head polled after its deadline still got a permit;
//! - a waiter behind the head whose turn moved past its deadline (a 429)
//!   returned only at its deadline;
//! - threads racing on one monotonic clock were counted as clock regressions.
#![cfg(not(loom))]

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};

use upbit_limiter_core::limiter::{GroupConfig, GroupLimiter};
use upbit_limiter_core::{
    Clock, Duration, Group, Instant, LimiterConfig, ManualClock, Preset, RateLimiter, Reason, Request,
    Response, Runtime,
};

/// Manual time shared across threads; timers are never awaited here (each
/// test polls by hand after moving the clock).
#[derive(Clone, Debug, Default)]
struct ManualRuntime(ManualClock);

impl ManualRuntime {
    fn starting_at(t: Instant) -> Self {
        Self(ManualClock::starting_at(t))
    }
    fn clock(&self) -> &ManualClock {
        &self.0
    }
}

impl Runtime for ManualRuntime {
    type Sleep = std::future::Pending<()>;
    type Instant = Instant;
    fn core_instant(&self, at: Instant) -> Instant {
        at
    }
    fn runtime_instant(&self, at: Instant) -> Instant {
        at
    }
    fn now(&self) -> Instant {
        self.0.now()
    }
    fn sleep_until(&self, _deadline: Instant) -> Self::Sleep {
        std::future::pending()
    }
}

const T0: Instant = Instant::from_nanos(10_000_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A waker that records that it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

fn poll<F: Future>(f: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

/// A limiter that outlives every future and permit of the test, on the
/// GCRA policy: the queue's turns then fall at fixed instants (every 110 ms
/// for the ticker), which these tests place deadlines around.
fn limiter(rt: &ManualRuntime) -> &'static RateLimiter<ManualRuntime> {
    let mut config = LimiterConfig::preset(Preset::Korea);
    for g in config.groups.iter_mut() {
        g.policy = upbit_limiter_core::limiter::Policy::Gcra;
    }
    Box::leak(Box::new(
        RateLimiter::with_runtime(&config, rt.clone()).expect("preset"),
    ))
}

fn ticker() -> Request {
    Request::http("GET", "/v1/ticker")
}

#[test]
fn a_head_polled_after_its_deadline_times_out_instead_of_taking_a_permit() {
    let rt = ManualRuntime::starting_at(T0);
    let l = limiter(&rt);
    let waker = Waker::noop();
    let first = pin!(l.acquire_request(ticker()));
    let Poll::Ready(Ok(_first)) = poll(first, waker) else {
        panic!("an idle group admits")
    };
    // Queued as head: its turn (T0 + 110 ms) is within its deadline.
    let mut late = pin!(l.acquire_request(ticker().deadline(T0 + ms(200))));
    assert!(poll(late.as_mut(), waker).is_pending());
    // The executor comes back long after the deadline.
    rt.clock().set(T0 + ms(1_300));
    match poll(late.as_mut(), waker) {
        Poll::Ready(Err(e)) => assert_eq!(
            e.reason(),
            Reason::Timeout {
                deadline: T0 + ms(200)
            }
        ),
        other => panic!("a permit 1.1 s after the deadline: {other:?}"),
    }
}

#[test]
fn a_waiter_behind_the_head_fails_as_soon_as_a_429_moves_its_turn_past_its_deadline() {
    let rt = ManualRuntime::starting_at(T0);
    let l = limiter(&rt);
    let (a_flag, b_flag) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
    let (a_waker, b_waker) = (Waker::from(Arc::clone(&a_flag)), Waker::from(Arc::clone(&b_flag)));
    let first = pin!(l.acquire_request(ticker()));
    let Poll::Ready(Ok(first)) = poll(first, &a_waker) else {
        panic!("an idle group admits")
    };
    // A is the head (turn at +110 ms), B behind it (turn at +220 ms, deadline +500 ms).
    let mut a = pin!(l.acquire_request(ticker()));
    let mut b = pin!(l.acquire_request(ticker().deadline(T0 + ms(500))));
    assert!(poll(a.as_mut(), &a_waker).is_pending());
    assert!(poll(b.as_mut(), &b_waker).is_pending());
    a_flag.take();
    b_flag.take();
    // A 429 pushes the group a whole window (plus margin) ahead: B's turn is
    // now after its deadline.
    rt.clock().set(T0 + ms(10));
    first.report(Response::status(429));
    assert!(a_flag.take(), "the head is woken by the 429");
    assert!(poll(a.as_mut(), &a_waker).is_pending());
    assert!(b_flag.take(), "the head passes the wake on");
    match poll(b.as_mut(), &b_waker) {
        Poll::Ready(Err(e)) => {
            assert_eq!(
                e.reason(),
                Reason::Timeout {
                    deadline: T0 + ms(500)
                }
            );
            assert!(e.retry_at() > T0 + ms(500), "{e}");
        }
        other => panic!("B should fail at once, at +10 ms: {other:?}"),
    }
}

/// A waker that, when woken, re-enters the limiter (reads its status, which
/// takes every group's lock).
struct Reentrant {
    limiter: &'static RateLimiter<ManualRuntime>,
    woken: AtomicUsize,
}

impl Wake for Reentrant {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let now = self.limiter.now();
        let _ = self.limiter.limiter().status(now);
        self.woken.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs `f` on its own thread and fails if it does not finish in 20 s.
fn within_20s(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("deadlocked: a waker was woken with the group's lock held");
}

#[test]
fn a_stale_head_is_woken_and_stepped_around_without_the_lock_held() {
    within_20s(|| {
        let rt = ManualRuntime::starting_at(T0);
        let l = limiter(&rt);
        let reentrant = Arc::new(Reentrant {
            limiter: l,
            woken: AtomicUsize::new(0),
        });
        let head_waker = Waker::from(Arc::clone(&reentrant));
        let waker = Waker::noop();
        let first = pin!(l.acquire_request(ticker()));
        let Poll::Ready(Ok(_first)) = poll(first, waker) else {
            panic!("an idle group admits")
        };
        // The head is polled once and then never again (its executor is stuck).
        let mut head = pin!(l.acquire_request(ticker()));
        assert!(poll(head.as_mut(), &head_waker).is_pending());
        let mut behind = pin!(l.acquire_request(ticker()));
        assert!(poll(behind.as_mut(), waker).is_pending());
        // Long past the head's turn: the waiter behind suspects it (and wakes
        // it), then, one grace period later, steps around it (and wakes it).
        let mut now = T0 + ms(110);
        let mut outcome = Poll::Pending;
        for _ in 0..10 {
            now += ms(200);
            rt.clock().set(now);
            outcome = poll(behind.as_mut(), waker);
            if outcome.is_ready() {
                break;
            }
        }
        assert!(matches!(outcome, Poll::Ready(Ok(_))), "{outcome:?}");
        assert!(reentrant.woken.load(Ordering::SeqCst) >= 2);
    });
}

/// A runtime on the OS's monotonic clock; its timers are never awaited here.
#[derive(Clone, Debug)]
struct StdClock(std::time::Instant);

impl Runtime for StdClock {
    type Sleep = std::future::Pending<()>;
    type Instant = Instant;
    fn core_instant(&self, at: Instant) -> Instant {
        at
    }
    fn runtime_instant(&self, at: Instant) -> Instant {
        at
    }
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.elapsed().as_nanos() as u64)
    }
    fn sleep_until(&self, _deadline: Instant) -> Self::Sleep {
        std::future::pending()
    }
}

#[test]
fn threads_racing_on_a_monotonic_clock_are_not_clock_regressions() {
    // A quota fast enough that most polls are admitted on the fast path.
    let mut config = LimiterConfig::preset(Preset::Korea);
    let cfg = config.group_mut(Group::Ticker);
    cfg.quota = Some(upbit_limiter_core::Quota::new(Duration::from_nanos(1), 1).expect("sane"));
    cfg.allow_unsafe = true;
    let l = Arc::new(RateLimiter::with_runtime(&config, StdClock(std::time::Instant::now())).expect("valid"));
    let rounds = if cfg!(miri) {
        50
    } else if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                let waker = Waker::noop();
                for _ in 0..rounds {
                    let f = pin!(l.acquire_request(ticker()));
                    if let Poll::Ready(Ok(p)) = poll(f, waker) {
                        drop(p);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no panic");
    }
    let status = l.limiter().group(Group::Ticker).status(l.now());
    assert!(status.counters.admitted > 0);
    assert_eq!(status.counters.clock_regressions, 0);

    // A clock that really goes back is counted (each reading that a second
    // reading confirms).
    let rt = ManualRuntime::starting_at(T0);
    let l = limiter(&rt);
    let waker = Waker::noop();
    let f = pin!(l.acquire_request(ticker()));
    assert!(poll(f, waker).is_ready());
    let group = l.limiter().group(Group::Ticker);
    assert_eq!(group.status(rt.now()).counters.clock_regressions, 0);
    rt.clock().set(T0 - ms(5));
    let f = pin!(l.acquire_request(ticker()));
    let _ = poll(f, waker);
    assert!(group.status(rt.now()).counters.clock_regressions >= 1);
}

/// The most admissions in any half-open window of length `w`.
fn most_in_window(times: &mut [Instant], w: Duration) -> usize {
    times.sort();
    (0..times.len())
        .map(|i| times[i..].iter().take_while(|&&t| t < times[i] + w).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn quota_changes_racing_claims_never_overfill_a_window() {
    // The order group (12 per second, 150 ms margin) with its last window
    // full, switched from burst 1 to burst 3 by one thread while another
    // claims at the same instant for as long as the switch takes; round
    // after round on fresh limiters, the two released together by a barrier. Afterwards each
    // limiter is drained greedily: no 1.15 s window may hold more than 12.
    let rounds = if cfg!(miri) {
        10
    } else if cfg!(debug_assertions) {
        2_000
    } else {
        40_000
    };
    let config = |burst| {
        let mut c = GroupConfig::preset(Preset::Korea, Group::Order);
        c.burst = burst;
        c
    };
    let interval = Duration::from_nanos(1_150_000_000u64.div_ceil(12)) + Duration::from_micros(1);
    let at = T0 + interval.saturating_mul(12);
    let limiters: Arc<Vec<(GroupLimiter, Vec<Instant>)>> = Arc::new(
        (0..rounds)
            .map(|_| {
                let l = GroupLimiter::new(Group::Order, config(1)).expect("preset");
                let full = (0..12)
                    .map(|i| l.try_acquire(T0 + interval.saturating_mul(i)).expect("spaced").at)
                    .collect();
                (l, full)
            })
            .collect(),
    );
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let switched = Arc::new(AtomicUsize::new(0));
    let claimer = {
        let (limiters, barrier, switched) =
            (Arc::clone(&limiters), Arc::clone(&barrier), Arc::clone(&switched));
        std::thread::spawn(move || {
            let mut raced = Vec::with_capacity(limiters.len());
            for (round, (l, _)) in limiters.iter().enumerate() {
                barrier.wait();
                // Claim for as long as the switch is under way.
                let mut got = Vec::new();
                while switched.load(Ordering::Acquire) <= round {
                    if let Ok(a) = l.try_acquire(at) {
                        got.push(a.at);
                    }
                }
                raced.push(got);
            }
            raced
        })
    };
    for (round, (l, _)) in limiters.iter().enumerate() {
        barrier.wait();
        l.set_config(config(3), at).expect("valid");
        switched.store(round + 1, Ordering::Release);
    }
    let raced = claimer.join().expect("no panic");
    let mut worst = 0;
    for ((l, full), raced) in limiters.iter().zip(raced) {
        let mut admitted: Vec<Instant> = full.iter().copied().chain(raced).collect();
        let mut now = at;
        while now < at + ms(2_400) {
            match l.try_acquire(now) {
                Ok(a) => admitted.push(a.at),
                Err(d) => now = d.retry_at().max(now + Duration::from_nanos(1)),
            }
        }
        worst = worst.max(most_in_window(&mut admitted, ms(1_150)));
    }
    assert!(worst <= 12, "{worst} admissions in one 1.15 s window");
}

#[test]
fn a_waiter_blocked_by_requests_in_flight_is_woken_by_a_report() {
    let rt = ManualRuntime::starting_at(T0);
    let mut config = LimiterConfig::preset(Preset::Korea);
    config.group_mut(Group::Ticker).policy = upbit_limiter_core::limiter::Policy::IntervalLog;
    let l: &'static RateLimiter<ManualRuntime> = Box::leak(Box::new(
        RateLimiter::with_runtime(&config, rt.clone()).expect("valid"),
    ));
    let waker = Waker::noop();
    let mut permits = Vec::new();
    for _ in 0..10 {
        let f = pin!(l.acquire_request(ticker()));
        let Poll::Ready(Ok(p)) = poll(f, waker) else {
            panic!("a burst of 10 after idle")
        };
        permits.push(p);
    }
    // Past the throttle's spacing, the log is full of requests in flight.
    rt.clock().set(T0 + ms(150));
    let flag = Arc::new(Flag::default());
    let head_waker = Waker::from(Arc::clone(&flag));
    let mut next = pin!(l.acquire_request(ticker()));
    assert!(poll(next.as_mut(), &head_waker).is_pending());
    flag.take();
    // One response arrives: its request counts until 150 ms + 1 s, but the
    // waiter learns now when that is, instead of sleeping on the others'
    // 30 s flight time.
    permits.remove(0).report(Response::status(200));
    assert!(flag.take(), "the report wakes the waiting head");
    assert!(poll(next.as_mut(), &head_waker).is_pending());
    rt.clock().set(T0 + ms(1_150) + Duration::from_nanos(1));
    match poll(next.as_mut(), &head_waker) {
        Poll::Ready(Ok(p)) => assert_eq!(p.admission().at, T0 + ms(1_150) + Duration::from_nanos(1)),
        other => panic!("{other:?}"),
    }
}
