//! Waiting through the async front: the queue's order (a request never
//! jumps the waiters queued before it), the events that wake its head (a
//! 429, a tightening header, a head that is late), deadlines kept to the
//! instant, and clock regressions counted where they are real.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use common::Manual;
use upbit_limiter_core::limiter::Policy;
use upbit_limiter_core::{
    Duration, Group, Instant, LimiterConfig, ManualClock, Preset, RateLimiter, Reason, Request, Response,
};

const TICKER: &str = "/v1/ticker";

/// A waker that counts its wakes.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn limiter(policy: Policy) -> (RateLimiter<Manual>, ManualClock) {
    let mut config = LimiterConfig::preset(Preset::Korea);
    config.group_mut(Group::Ticker).policy = policy;
    let clock = ManualClock::starting_at(Instant::from_nanos(10_000_000_000));
    (
        RateLimiter::with_runtime(&config, Manual(clock.clone())).unwrap(),
        clock,
    )
}

#[test]
fn a_new_request_never_jumps_a_queued_waiter() {
    for policy in [Policy::IntervalLog, Policy::Gcra] {
        let (l, clock) = limiter(policy);
        // Fill the group and answer every request at once.
        let mut admitted = 0;
        while let Ok(p) = l.try_acquire("GET", TICKER) {
            p.report(Response::status(200));
            admitted += 1;
        }
        assert!(admitted > 0, "{policy:?}");
        let waker = Waker::from(Arc::new(Count::default()));
        let mut cx = Context::from_waker(&waker);
        let mut first = pin!(l.acquire("GET", TICKER));
        assert!(
            first.as_mut().poll(&mut cx).is_pending(),
            "{policy:?}: the group is full"
        );
        // Long enough for a place to be free again, and the waiter not yet
        // polled: a newcomer must not take its place.
        clock.advance(Duration::from_secs(2));
        let newcomer = l.try_acquire("GET", TICKER);
        assert!(newcomer.is_err(), "{policy:?}: a new request jumped the queue");
        match first.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(p)) => p.report(Response::status(200)),
            other => panic!("{policy:?}: the queued waiter should go first: {other:?}"),
        }
        // With nobody queued, the next request goes as soon as there is room.
        clock.advance(Duration::from_secs(2));
        assert!(l.try_acquire("GET", TICKER).is_ok(), "{policy:?}");
    }
}

#[test]
fn a_429_wakes_the_head_which_fails_at_once_when_its_deadline_cannot_be_met() {
    // On the GCRA the head's turn is a known instant (on the interval log
    // a window full of requests in flight has no earliest instant to miss).
    let mut config = LimiterConfig::preset(Preset::Korea);
    let ticker = config.group_mut(Group::Ticker);
    ticker.policy = Policy::Gcra;
    // The ratio drops only after three 429s in a row: the wake must come
    // from the 429 itself, not from a rate change.
    ticker.adaptive.error_threshold = 3;
    let clock = ManualClock::starting_at(Instant::from_nanos(10_000_000_000));
    let l = RateLimiter::with_runtime(&config, Manual(clock.clone())).unwrap();
    let mut held = Vec::new();
    while let Ok(p) = l.try_acquire("GET", TICKER) {
        held.push(p);
    }
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let request = Request::http("GET", TICKER).timeout(core::time::Duration::from_millis(300));
    let mut waiter = pin!(l.acquire_request(request));
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    let woken = count.0.load(Ordering::SeqCst);
    clock.advance(Duration::from_millis(50));
    // A 429 pauses the group for longer than the waiter's deadline allows.
    let fb = held.pop().unwrap().report_with_feedback(Response::status(429));
    assert_eq!(
        (fb.ratio_change, fb.transition, fb.header_tightened),
        (None, None, false)
    );
    assert!(
        count.0.load(Ordering::SeqCst) > woken,
        "the 429 moved every turn but did not wake the head"
    );
    match waiter.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => {
            assert!(matches!(e.reason(), Reason::Timeout { .. }), "{e}");
            assert_eq!(e.failed_at(), l.now(), "failed when woken, not at its deadline");
        }
        other => panic!("the head should fail at once: {other:?}"),
    };
}

#[test]
fn a_late_head_gets_one_interval_before_the_waiters_behind_it_wake_it() {
    let (l, clock) = limiter(Policy::Gcra);
    let interval = l.group(Group::Ticker).status(l.now()).interval;
    let start = l.now();
    let _held = l.try_acquire("GET", TICKER).unwrap();
    let head_wakes = Arc::new(Count::default());
    let head_waker = Waker::from(head_wakes.clone());
    let other = Waker::from(Arc::new(Count::default()));
    let mut head = pin!(l.acquire("GET", TICKER));
    let mut behind = pin!(l.acquire("GET", TICKER));
    assert!(head
        .as_mut()
        .poll(&mut Context::from_waker(&head_waker))
        .is_pending());
    assert!(behind
        .as_mut()
        .poll(&mut Context::from_waker(&other))
        .is_pending());
    // The head's turn comes and it is not polled (a busy executor). Half an
    // interval late, and exactly one interval late, it is left alone...
    let before = wakes(&head_wakes);
    for late in [interval.as_nanos() / 2, interval.as_nanos()] {
        clock.set(start + interval + Duration::from_nanos(late));
        assert!(behind
            .as_mut()
            .poll(&mut Context::from_waker(&other))
            .is_pending());
        assert_eq!(wakes(&head_wakes), before, "woken {late} ns late");
    }
    // ...and more than an interval late, the waiter behind wakes it.
    clock.advance(Duration::from_nanos(1));
    assert!(behind
        .as_mut()
        .poll(&mut Context::from_waker(&other))
        .is_pending());
    assert!(wakes(&head_wakes) > before, "a late head was never woken");
}

/// The wakes `waker` has had.
fn wakes(count: &Arc<Count>) -> usize {
    count.0.load(Ordering::SeqCst)
}

#[test]
fn a_header_that_tightens_the_gcra_without_a_rate_change_wakes_the_head() {
    let (l, clock) = limiter(Policy::Gcra);
    let full = "group=market; min=1800; sec=0";
    let next = || loop {
        match l.try_acquire("GET", TICKER) {
            Ok(p) => return p,
            Err(_) => clock.advance(Duration::from_millis(5)),
        }
    };
    // One of ours, then a header: the server's window is full, nine places
    // used by others. Our share drops (a rate change).
    let a = next();
    clock.advance(Duration::from_millis(10));
    let fb = a.report_with_feedback(Response::status(200).with_remaining_req(full));
    assert!(fb.ratio_change.is_some() && fb.header_tightened);
    // The next one at that share, then the same header: others still use
    // nine places (no rate change), and the full window is waited out.
    let b = next();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut waiter = pin!(l.acquire("GET", TICKER));
    assert!(waiter
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    let before = wakes(&count);
    clock.advance(Duration::from_millis(10));
    let fb = b.report_with_feedback(Response::status(200).with_remaining_req(full));
    assert!(fb.header_tightened);
    assert_eq!(
        (fb.ratio_change, fb.transition, fb.ban_lifted),
        (None, None, None)
    );
    assert!(wakes(&count) > before, "the tightening did not wake the head");
}

#[test]
fn a_head_waiting_for_reports_fails_at_its_deadline_to_the_instant() {
    let (l, clock) = limiter(Policy::IntervalLog);
    let mut held = Vec::new();
    while let Ok(p) = l.try_acquire("GET", TICKER) {
        held.push(p);
    }
    let deadline = l.now() + Duration::from_millis(300);
    let waker = Waker::from(Arc::new(Count::default()));
    let mut cx = Context::from_waker(&waker);
    let mut waiter = pin!(l.acquire_request(Request::http("GET", TICKER).deadline(deadline)));
    assert!(
        waiter.as_mut().poll(&mut cx).is_pending(),
        "every place is in flight"
    );
    let shown = format!("{waiter:?}");
    assert!(
        shown.starts_with("Acquire {") && shown.contains("Queued"),
        "{shown}"
    );
    clock.set(deadline - Duration::from_nanos(1));
    assert!(
        waiter.as_mut().poll(&mut cx).is_pending(),
        "a report could still make room"
    );
    clock.set(deadline);
    match waiter.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => assert!(e.is_timeout() && e.failed_at() == deadline, "{e}"),
        other => panic!("still waiting at its deadline: {other:?}"),
    };
    drop(held);
}

#[test]
fn a_waiter_behind_the_head_fails_at_its_deadline_even_when_its_turn_is_due() {
    let (l, clock) = limiter(Policy::IntervalLog);
    let mut held = Vec::new();
    while let Ok(p) = l.try_acquire("GET", TICKER) {
        held.push(p);
    }
    let waker = Waker::from(Arc::new(Count::default()));
    let mut cx = Context::from_waker(&waker);
    let deadline = l.now() + Duration::from_millis(2_000);
    let mut head = pin!(l.acquire("GET", TICKER));
    let mut behind = pin!(l.acquire_request(Request::http("GET", TICKER).deadline(deadline)));
    assert!(head.as_mut().poll(&mut cx).is_pending());
    assert!(behind.as_mut().poll(&mut cx).is_pending());
    // Every place is answered; a window later there is room for both, but
    // the head has not come for its place yet when the one behind is polled
    // at its deadline.
    clock.advance(Duration::from_millis(10));
    for p in held.drain(..) {
        p.report(Response::status(200));
    }
    clock.set(deadline);
    match behind.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => assert!(e.is_timeout(), "{e}"),
        other => panic!("still waiting at its deadline: {other:?}"),
    };
    assert!(matches!(head.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
}

#[test]
fn a_waiter_that_leaves_early_does_not_count_against_those_behind_it() {
    let (l, clock) = limiter(Policy::Gcra);
    let interval = l.group(Group::Ticker).status(l.now()).interval;
    let _held = l.try_acquire("GET", TICKER).unwrap();
    let waker = Waker::from(Arc::new(Count::default()));
    let mut cx = Context::from_waker(&waker);
    let mut head = pin!(l.acquire("GET", TICKER));
    assert!(head.as_mut().poll(&mut cx).is_pending());
    let mut leaving = Box::pin(l.acquire("GET", TICKER));
    assert!(leaving.as_mut().poll(&mut cx).is_pending());
    // Third in line: its turn is two intervals away, its deadline only
    // allows for one waiter ahead once the second has left.
    // (Its ticket still says two are ahead: the exact count must be taken.)
    drop(leaving);
    let deadline = l.now() + interval + interval + Duration::from_millis(1);
    let mut last = pin!(l.acquire_request(Request::http("GET", TICKER).deadline(deadline)));
    assert!(
        last.as_mut().poll(&mut cx).is_pending(),
        "counted a waiter that has left"
    );
    clock.advance(Duration::from_millis(1));
    assert!(
        last.as_mut().poll(&mut cx).is_pending(),
        "counted a waiter that has left"
    );
}

#[test]
fn only_a_clock_that_really_goes_back_counts_as_a_regression() {
    let (l, clock) = limiter(Policy::IntervalLog);
    let regressions =
        |l: &RateLimiter<Manual>| l.group(Group::Ticker).status(l.now()).counters.clock_regressions;
    let t = l.now();
    l.try_acquire("GET", TICKER)
        .unwrap()
        .report(Response::status(200));
    // The same instant again is no regression.
    l.try_acquire("GET", TICKER)
        .unwrap()
        .report(Response::status(200));
    assert_eq!(regressions(&l), 0);
    // Each reading behind what the group has seen is one.
    clock.set(t - Duration::from_millis(1));
    let permit = l.try_acquire("GET", TICKER);
    assert_eq!(regressions(&l), 1);
    drop(permit);
    assert_eq!(regressions(&l), 2);
}

#[test]
fn a_permit_dropped_unreported_ends_its_request_at_the_drop() {
    let (l, clock) = limiter(Policy::IntervalLog);
    let mut held = Vec::new();
    while let Ok(p) = l.try_acquire_request(Request::http("GET", TICKER).correlation_id(7)) {
        held.push(p);
    }
    let shown = format!("{:?}", held[0]);
    assert!(
        shown.starts_with("Permit {") && shown.contains("correlation_id: Some(7)"),
        "{shown}"
    );
    assert_eq!(held[0].correlation_id(), Some(7));
    // Dropped without a report: each request counts as having reached the
    // server at the drop, so a window later there is room again (not only
    // after the maximum flight time).
    clock.advance(Duration::from_millis(10));
    let dropped = l.now();
    drop(held);
    clock.set(dropped + Duration::from_secs(1));
    assert!(
        l.try_acquire("GET", TICKER).is_err(),
        "the window still counts them"
    );
    clock.set(dropped + Duration::from_secs(1) + Duration::from_nanos(1));
    assert!(
        l.try_acquire("GET", TICKER).is_ok(),
        "a dropped permit stayed in flight"
    );
    assert!(l.group(Group::Ticker).status(l.now()).counters.unreported >= 10);
    // A reported permit is not counted again when it is dropped.
    let before = l.group(Group::Ticker).status(l.now()).counters.unreported;
    l.try_acquire("GET", TICKER)
        .unwrap()
        .report(Response::status(200));
    assert_eq!(l.group(Group::Ticker).status(l.now()).counters.unreported, before);
}

/// A runtime whose timers have always fired, on a clock that moves 1 µs at
/// each reading: a waiter's every step names a new instant to sleep until.
#[derive(Clone, Default)]
struct Hasty {
    clock: ManualClock,
    sleeps: Arc<AtomicUsize>,
}

impl upbit_limiter_core::Runtime for Hasty {
    type Sleep = std::future::Ready<()>;
    type Instant = Instant;
    fn now(&self) -> Instant {
        use upbit_limiter_core::Clock;
        self.clock.advance(Duration::from_micros(1));
        self.clock.now()
    }
    fn sleep_until(&self, _deadline: Instant) -> Self::Sleep {
        self.sleeps.fetch_add(1, Ordering::SeqCst);
        std::future::ready(())
    }
    fn core_instant(&self, at: Instant) -> Instant {
        at
    }
    fn runtime_instant(&self, at: Instant) -> Instant {
        at
    }
}

#[test]
fn a_timer_that_keeps_firing_early_makes_the_waiter_yield_not_spin() {
    let mut config = LimiterConfig::preset(Preset::Korea);
    config.group_mut(Group::Ticker).policy = Policy::Gcra;
    let rt = Hasty {
        clock: ManualClock::starting_at(Instant::from_nanos(10_000_000_000)),
        ..Hasty::default()
    };
    let l = RateLimiter::with_runtime(&config, rt.clone()).unwrap();
    let _held = l.try_acquire("GET", TICKER).unwrap();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut head = pin!(l.acquire("GET", TICKER));
    let mut behind = pin!(l.acquire("GET", TICKER));
    assert!(head.as_mut().poll(&mut cx).is_pending());
    let (sleeps, wakes_before) = (rt.sleeps.load(Ordering::SeqCst), wakes(&count));
    // Behind the head, each step sleeps until a moment after `now`; the
    // timer is always done at once. After three sleeps the poll yields: it
    // wakes itself and returns.
    assert!(behind.as_mut().poll(&mut cx).is_pending());
    assert_eq!(rt.sleeps.load(Ordering::SeqCst) - sleeps, 3);
    assert!(wakes(&count) > wakes_before, "a yielding waiter must wake itself");
}
