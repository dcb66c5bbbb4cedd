//! The behaviour every runtime adapter must show, written once against
//! [`Runtime`] and run by each adapter's tests.
//!
//! Every scenario drives its concurrent waiters inside one task (a [`Crowd`])
//! and sleeps only through the runtime's own timer, so the same code runs in
//! paused tokio time, under embassy's mock driver and in real time on
//! async-std or smol. Under a virtual clock ([`Timing::Exact`]) the scenarios
//! also check instants exactly and upper bounds; in real time
//! ([`Timing::Real`]) they check order and lower bounds only, because a busy
//! machine may wake anything late.
//!
//! A [`Crowd`] gives each waiter its own waker, as if it were a task, and
//! polls the woken ones in *reverse* arrival order, so a waiter polled first
//! at its instant is never the one whose turn it is: arrival order must come
//! from the queue, not from polling luck, and a lost wake-up shows.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::future::poll_fn;
use futures::task::AtomicWaker;
use upbit_limiter_core::limiter::Policy;
use upbit_limiter_core::{
    AcquireError, Admission, Duration, Group, Instant, LimiterConfig, Preset, RateLimiter, Reason, Request,
    Response, Runtime, ServerLimit,
};

/// How strictly instants are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// A virtual clock that only moves when everything waits: instants are
    /// checked exactly, upper bounds too.
    Exact,
    /// A real clock: order and lower bounds only.
    Real,
}

/// The coarsest timer the scenarios run on (tokio's: a whole millisecond),
/// by which each wake-up may come late.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// The group most scenarios use (`GET /v1/ticker`).
pub const GROUP: Group = Group::Ticker;
const TICKER: (&str, &str) = ("GET", "/v1/ticker");

/// The Korea preset with every group on the GCRA policy: the scenarios
/// that check the waiter queue instant by instant count in its emission
/// intervals (one free slot, then one admission per interval).
pub fn korea_gcra() -> LimiterConfig {
    let mut config = LimiterConfig::preset(Preset::Korea);
    for g in config.groups.iter_mut() {
        g.policy = Policy::Gcra;
    }
    config
}

/// [`korea_gcra`] with every margin 1 ns short, so that each group's
/// interval `(W + J + 1 ns) / N` lands on the whole milliseconds it had
/// before the nanosecond was added (tokio's timer ticks in milliseconds: an
/// exact-time test needs intervals it can hit).
pub fn korea_gcra_on_whole_milliseconds() -> LimiterConfig {
    let mut config = korea_gcra();
    for g in config.groups.iter_mut() {
        g.margin = g.margin.saturating_sub(Duration::from_nanos(1));
    }
    config
}

/// The Korea preset, with the ticker group (the one the scenarios use) made
/// fast enough for real-time tests: the GCRA at 10 per 190 ms plus a margin
/// 1 ns short of 10 ms (one every `(W + J + 1 ns) / 10` = 20 ms, a whole
/// number of timer ticks), a 200 ms circuit-breaker open period and a 5 s
/// waiter deadline (so a stall shows as a timeout quickly).
pub fn fast_config() -> LimiterConfig {
    let mut config = LimiterConfig::preset(Preset::Korea);
    let g = config.group_mut(GROUP);
    g.policy = Policy::Gcra;
    g.limits = upbit_limiter_core::limiter::Limits::new(&[ServerLimit::new(10, Duration::from_millis(190))])
        .expect("one window");
    g.margin = Duration::from_millis(10) - Duration::from_nanos(1);
    g.breaker.open_wait = Duration::from_millis(200);
    g.breaker.open_wait_max = Duration::from_millis(400);
    g.waiter_timeout = Duration::from_secs(5);
    config
}

/// The emission interval of `group` in force now.
pub fn interval<R: Runtime>(l: &RateLimiter<R>, group: Group) -> Duration {
    l.limiter().group(group).status(l.now()).interval
}

fn queue_depth<R: Runtime>(l: &RateLimiter<R>, group: Group) -> usize {
    l.limiter().group(group).status(l.now()).queue_depth
}

/// Pairs `(i, j)` with `i < j` whose values are in the wrong order.
pub fn inversions(values: &[u64]) -> usize {
    let mut n = 0;
    for (i, a) in values.iter().enumerate() {
        n += values[i + 1..].iter().filter(|b| *b < a).count();
    }
    n
}

/// A window that held more admissions than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where the window starts (an admission instant).
    pub start: Instant,
    /// How many admissions fell in `[start, start + window)`.
    pub count: usize,
    /// How many the limit allows.
    pub allowed: u32,
}

/// A sliding-window checker, independent of the limiter: every window
/// `[t, t + window)` that starts at an admission must hold at most `max`
/// admissions (a window holding the most admissions can always be slid to
/// start at one of them).
pub fn window_violations(admissions: &[Instant], max: u32, window: Duration) -> Vec<Violation> {
    let mut at: Vec<u64> = admissions.iter().map(|t| t.as_nanos()).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut end = 0;
    for (i, &start) in at.iter().enumerate() {
        end = end.max(i);
        while end < at.len() && at[end] < start.saturating_add(window.as_nanos()) {
            end += 1;
        }
        let count = end - i;
        if count > max as usize {
            out.push(Violation {
                start: Instant::from_nanos(start),
                count,
                allowed: max,
            });
        }
    }
    out
}

/// What one waiter ended with, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The admission, or why there was none.
    pub result: Result<Admission, AcquireError>,
    /// The runtime's clock when the acquisition finished.
    pub at: Instant,
}

impl Outcome {
    fn admission(&self, who: usize) -> Admission {
        match self.result {
            Ok(a) => a,
            Err(e) => panic!("waiter {who} failed: {e}"),
        }
    }
}

type Waiting<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

enum Slot<'a, T> {
    Waiting(Waiting<'a, T>),
    Finished(T),
    Gone,
}

/// A member's own waker: marks the member woken and wakes the crowd's task.
#[derive(Default)]
struct Member {
    woken: AtomicBool,
    crowd: AtomicWaker,
}

impl Wake for Member {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.crowd.wake();
    }
}

/// Many futures driven inside one task, each as if it were a task of its
/// own: it has its own waker and is polled only after that waker fired (so a
/// lost wake-up stalls it, as it would a task). Members are polled once each
/// in arrival order by [`Crowd::arrive`], then, whenever the crowd is polled,
/// the woken ones in reverse arrival order. Members can be dropped
/// (cancelled) at any time.
pub struct Crowd<'a, T> {
    slots: Vec<(Slot<'a, T>, Arc<Member>)>,
}

impl<T> std::fmt::Debug for Crowd<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crowd").field("len", &self.slots.len()).finish()
    }
}

impl<'a, T> Crowd<'a, T> {
    /// A crowd of `futures`, none polled yet.
    pub fn new(futures: Vec<Waiting<'a, T>>) -> Self {
        let mut crowd = Self { slots: Vec::new() };
        for f in futures {
            crowd.push(f);
        }
        crowd
    }

    /// Adds a member (not polled yet); returns its index.
    pub fn push(&mut self, future: Waiting<'a, T>) -> usize {
        self.slots.push((Slot::Waiting(future), Arc::default()));
        self.slots.len() - 1
    }

    fn poll_slot(slot: &mut (Slot<'a, T>, Arc<Member>), cx: &mut Context<'_>, force: bool) {
        let (slot, member) = slot;
        member.crowd.register(cx.waker());
        if !member.woken.swap(false, Ordering::SeqCst) && !force {
            return;
        }
        if let Slot::Waiting(f) = slot {
            let waker = Waker::from(member.clone());
            if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
                *slot = Slot::Finished(v);
            }
        }
    }

    /// Polls members `range` once each, in index order: their arrival.
    pub async fn arrive(&mut self, range: std::ops::Range<usize>) {
        poll_fn(|cx| {
            for slot in &mut self.slots[range.clone()] {
                Self::poll_slot(slot, cx, true);
            }
            Poll::Ready(())
        })
        .await;
    }

    fn poll_reverse(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for slot in self.slots.iter_mut().rev() {
            Self::poll_slot(slot, cx, false);
        }
        if self.slots.iter().any(|(s, _)| matches!(s, Slot::Waiting(_))) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Drives the crowd until every member has finished (or gone), or until
    /// `until` on `rt`'s clock.
    pub async fn run<R: Runtime>(&mut self, rt: &R, until: Option<Instant>) {
        let mut sleep = until.map(|t| Box::pin(rt.sleep_until(t)));
        poll_fn(|cx| {
            if self.poll_reverse(cx).is_ready() {
                return Poll::Ready(());
            }
            match sleep.as_mut() {
                Some(s) => s.as_mut().poll(cx),
                None => Poll::Pending,
            }
        })
        .await;
    }

    /// Whether member `i` has finished.
    pub fn is_finished(&self, i: usize) -> bool {
        matches!(self.slots[i].0, Slot::Finished(_))
    }

    /// Drops member `i`'s future (a cancellation); `false` if it had already
    /// finished or gone.
    pub fn cancel(&mut self, i: usize) -> bool {
        let was_waiting = matches!(self.slots[i].0, Slot::Waiting(_));
        if was_waiting {
            self.slots[i].0 = Slot::Gone;
        }
        was_waiting
    }

    /// Each member's output; `None` for members dropped before finishing.
    pub fn into_outputs(self) -> Vec<Option<T>> {
        self.slots
            .into_iter()
            .map(|(s, _)| match s {
                Slot::Finished(v) => Some(v),
                Slot::Waiting(_) | Slot::Gone => None,
            })
            .collect()
    }
}

/// A waiter: acquires for `request`, reports a 200 at once, and says when it finished.
/// The earliest admission and the deadline of a timeout, if `e` is one.
pub fn timeout_of(e: &AcquireError) -> Option<(Instant, Instant)> {
    match e.reason() {
        Reason::Timeout { deadline } => Some((e.retry_at(), deadline)),
        _ => None,
    }
}

pub fn waiter<'a, R: Runtime>(l: &'a RateLimiter<R>, request: Request) -> Waiting<'a, Outcome> {
    Box::pin(async move {
        let result = l.acquire_request(request).await;
        let at = l.now();
        let result = result.map(|permit| {
            let admission = *permit.admission();
            permit.report(Response::status(200));
            admission
        });
        Outcome { result, at }
    })
}

fn ticker(id: u64) -> Request {
    Request::http(TICKER.0, TICKER.1).correlation_id(id)
}

/// Takes all the group's free room (the GCRA's one free slot at burst 1,
/// the interval log's `N`), reporting each response at once, so that the
/// next request must wait; returns the last admission instant.
pub async fn saturate<R: Runtime>(l: &RateLimiter<R>) -> Instant {
    let permit = l
        .acquire(TICKER.0, TICKER.1)
        .await
        .expect("the first request is admitted");
    let mut at = permit.admission().at;
    permit.report(Response::status(200));
    while let Ok(permit) = l.try_acquire(TICKER.0, TICKER.1) {
        at = permit.admission().at;
        permit.report(Response::status(200));
    }
    at
}

/// Polls `fut` exactly once.
pub async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

async fn sleep_until<R: Runtime>(rt: &R, at: Instant) {
    rt.sleep_until(at).await;
}

/// Twelve waiters arriving in order on a saturated group are admitted in
/// arrival order (0 inversions), one interval apart.
pub async fn fifo_in_arrival_order<R: Runtime>(l: &RateLimiter<R>, timing: Timing) {
    const N: usize = 12;
    let t = interval(l, GROUP);
    let t0 = saturate(l).await;
    let mut crowd = Crowd::new((0..N as u64).map(|i| waiter(l, ticker(i))).collect());
    crowd.arrive(0..N).await;
    if timing == Timing::Exact {
        assert_eq!(queue_depth(l, GROUP), N, "every waiter queued on arrival");
    }
    crowd.run(l.runtime(), None).await;
    let admissions: Vec<Admission> = crowd
        .into_outputs()
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.expect("no waiter is cancelled").admission(i))
        .collect();
    let seqs: Vec<u64> = admissions.iter().map(|a| a.seq).collect();
    assert_eq!(inversions(&seqs), 0, "admission order {seqs:?}");
    for (i, a) in admissions.iter().enumerate() {
        let slot = t0 + t.saturating_mul(i as u64 + 1);
        assert!(
            a.at >= slot,
            "waiter {i} admitted at {} before its slot {slot}",
            a.at
        );
        if timing == Timing::Exact {
            assert_eq!(a.at, slot, "waiter {i}: one interval apart, no gaps");
        }
    }
    assert_eq!(queue_depth(l, GROUP), 0);
}

/// FIFO when the executor is late: twelve waiters queue, then their task is
/// not polled for four intervals (a busy or blocked executor), although
/// their timers fire. When it runs again they are still admitted in arrival
/// order: a head that is merely late (polled in the same round as those
/// behind it) is not a leaked one.
pub async fn fifo_after_a_late_executor<R: Runtime>(l: &RateLimiter<R>, timing: Timing) {
    const N: usize = 12;
    let t = interval(l, GROUP);
    let t0 = saturate(l).await;
    let mut crowd = Crowd::new((0..N as u64).map(|i| waiter(l, ticker(i))).collect());
    crowd.arrive(0..N).await;
    let late = t0 + t.saturating_mul(4);
    sleep_until(l.runtime(), late).await;
    crowd.run(l.runtime(), None).await;
    let admissions: Vec<Admission> = crowd
        .into_outputs()
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.expect("no waiter is cancelled").admission(i))
        .collect();
    let seqs: Vec<u64> = admissions.iter().map(|a| a.seq).collect();
    assert_eq!(inversions(&seqs), 0, "admission order after the stall {seqs:?}");
    if timing == Timing::Exact {
        for (i, a) in admissions.iter().enumerate() {
            assert_eq!(a.at, late + t.saturating_mul(i as u64), "waiter {i}");
        }
    }
}

/// The same with every waiter in its own task: each is polled once (its
/// arrival) in order, then handed to `spawn`, which returns a future for its
/// completion. On a multi-threaded executor the waiters wake on different
/// threads.
pub async fn fifo_across_tasks<R, S, J>(l: &'static RateLimiter<R>, timing: Timing, mut spawn: S)
where
    R: Runtime + Send + Sync,
    R::Sleep: Send,
    S: FnMut(Pin<Box<dyn Future<Output = Outcome> + Send>>) -> J,
    J: Future<Output = Outcome>,
{
    const N: usize = 12;
    let t = interval(l, GROUP);
    let t0 = saturate(l).await;
    let mut futures = Vec::new();
    for i in 0..N as u64 {
        let mut acquire = Box::pin(l.acquire_request(ticker(i)));
        let first = poll_once(&mut acquire).await;
        futures.push(Box::pin(async move {
            let result = match first {
                Poll::Ready(r) => r,
                Poll::Pending => acquire.await,
            };
            let at = l.now();
            let result = result.map(|p| {
                let a = *p.admission();
                p.report(Response::status(200));
                a
            });
            Outcome { result, at }
        }));
    }
    let handles: Vec<J> = futures
        .into_iter()
        .map(|f| spawn(f as Pin<Box<dyn Future<Output = Outcome> + Send>>))
        .collect();
    let mut admissions = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        admissions.push(h.await.admission(i));
    }
    let seqs: Vec<u64> = admissions.iter().map(|a| a.seq).collect();
    assert_eq!(inversions(&seqs), 0, "admission order {seqs:?}");
    let mut prev = t0;
    for (i, a) in admissions.iter().enumerate() {
        assert!(
            a.at >= prev + t,
            "waiter {i} admitted less than one interval after the one before"
        );
        if timing == Timing::Exact {
            assert_eq!(a.at, prev + t, "waiter {i}: one interval apart, no gaps");
        }
        prev = a.at;
    }
}

/// Deadline fail-fast: an acquire whose earliest admission is after its
/// deadline fails at once (first poll, no time passes) with that earliest
/// instant, which is the truth: a waiter without a deadline arriving instead
/// is admitted then. A deadline equal to the earliest instant is met. With no
/// deadline, the group's waiter timeout applies the same way.
pub async fn deadline_fails_fast<R: Runtime>(l: &RateLimiter<R>, timing: Timing) {
    const AHEAD: usize = 3;
    let t = interval(l, GROUP);
    let t0 = saturate(l).await;
    let mut crowd = Crowd::new((0..AHEAD as u64).map(|i| waiter(l, ticker(i))).collect());
    crowd.arrive(0..AHEAD).await;
    let expected = t0 + t.saturating_mul(AHEAD as u64 + 1);

    let now = l.now();
    let deadline = now + t;
    let mut late = Box::pin(l.acquire_request(ticker(100).deadline(deadline)));
    let (earliest, failed_deadline) = match poll_once(&mut late).await {
        Poll::Ready(Err(e)) if timeout_of(&e).is_some() => timeout_of(&e).expect("a timeout"),
        Poll::Ready(other) => panic!(
            "expected a timeout at once, got {:?}",
            other.map(|p| *p.admission())
        ),
        Poll::Pending => panic!("an unmeetable deadline must fail on the first poll"),
    };
    drop(late);
    assert_eq!(failed_deadline, deadline);
    assert!(earliest > deadline);
    assert!(
        earliest >= expected,
        "earliest {earliest} is before the queue can drain ({expected})"
    );
    if timing == Timing::Exact {
        assert_eq!(l.now(), now, "failing took no time");
        assert_eq!(earliest, expected);
    }
    assert_eq!(
        queue_depth(l, GROUP),
        AHEAD,
        "the failed waiter left nothing behind"
    );

    // With no deadline the group's waiter timeout is the deadline.
    let mut config = l.limiter().group(GROUP).config();
    config.waiter_timeout = t.saturating_mul(2);
    l.limiter()
        .group(GROUP)
        .set_config(config, l.now())
        .expect("valid");
    let now = l.now();
    let mut plain = Box::pin(l.acquire_request(ticker(101)));
    match poll_once(&mut plain).await {
        Poll::Ready(Err(e)) if timeout_of(&e).is_some() => {
            let (earliest, deadline) = timeout_of(&e).expect("a timeout");
            assert!(earliest >= expected);
            if timing == Timing::Exact {
                assert_eq!(deadline, now + t.saturating_mul(2));
                assert_eq!(earliest, expected);
            }
        }
        other => panic!(
            "the default deadline must fail fast too, got {:?}",
            other.map(|r| r.map(|p| *p.admission()))
        ),
    }
    drop(plain);
    config.waiter_timeout = upbit_limiter_core::limiter::DEFAULT_WAITER_TIMEOUT;
    l.limiter()
        .group(GROUP)
        .set_config(config, l.now())
        .expect("valid");

    // A deadline exactly at the earliest instant is met, at that instant (in
    // real time a late wake-up of those ahead may push it past: no deadline).
    let request = match timing {
        Timing::Exact => ticker(102).deadline(earliest),
        Timing::Real => ticker(102),
    };
    let last = crowd.push(waiter(l, request));
    crowd.arrive(last..last + 1).await;
    crowd.run(l.runtime(), None).await;
    let outcome = crowd.into_outputs().remove(last).expect("not cancelled");
    let a = outcome.admission(last);
    assert!(a.at >= earliest);
    if timing == Timing::Exact {
        assert_eq!(a.at, earliest, "admitted at the earliest instant the error named");
    }
}

/// Circuit-open fail-fast: four failures keep the breaker closed; the fifth
/// opens it, and the next acquire fails at once with `CircuitOpen` and the
/// instant the open period ends; after it, a probe is admitted.
pub async fn circuit_open_fails_fast<R: Runtime>(l: &RateLimiter<R>, timing: Timing) {
    let open_wait = l.limiter().group(GROUP).config().breaker.open_wait;
    let threshold = l.limiter().group(GROUP).config().breaker.consecutive_failures;
    let mut failed_at = Instant::ZERO;
    for i in 0..threshold {
        let permit = l
            .acquire(TICKER.0, TICKER.1)
            .await
            .unwrap_or_else(|e| panic!("closed breaker after {i} failures refused: {e}"));
        let before = l.now();
        permit.report(Response::no_response());
        failed_at = before;
    }
    let now = l.now();
    let mut next = Box::pin(l.acquire(TICKER.0, TICKER.1));
    let retry_at = match poll_once(&mut next).await {
        Poll::Ready(Err(e)) if e.reason() == Reason::CircuitOpen => e.retry_at(),
        Poll::Ready(other) => panic!("expected CircuitOpen, got {:?}", other.map(|p| *p.admission())),
        Poll::Pending => panic!("an open circuit must fail on the first poll"),
    };
    drop(next);
    assert!(retry_at >= failed_at + open_wait, "retry at {retry_at}");
    assert!(retry_at <= now + open_wait);
    if timing == Timing::Exact {
        assert_eq!(l.now(), now, "failing took no time");
        assert_eq!(retry_at, failed_at + open_wait);
    }
    assert!(matches!(
        l.acquire(TICKER.0, TICKER.1).await,
        Err(e) if e.reason() == Reason::CircuitOpen
    ));
    // Other groups are unaffected.
    let other = l.acquire("GET", "/v1/accounts").await.expect("another group");
    other.report(Response::status(200));
    sleep_until(l.runtime(), retry_at).await;
    let probe = l
        .acquire(TICKER.0, TICKER.1)
        .await
        .expect("a probe after the open period");
    assert!(probe.admission().at >= retry_at);
    probe.report(Response::status(200));
}

/// 418 blocking: a reported 418 whose body says `ban` bans the group's
/// scope; acquires fail at once with `Banned` until it ends (a waiter queued
/// before it fails too, before the ban ends), other scopes go on, and at the
/// end of the ban the group admits again.
pub async fn ban_blocks<R: Runtime>(l: &RateLimiter<R>, timing: Timing, body: &str, ban: Duration) {
    saturate(l).await;
    let mut queued = Crowd::new(vec![waiter(l, ticker(1))]);
    queued.arrive(0..1).await;
    assert!(!queued.is_finished(0), "the group was saturated");
    let permit = l
        .acquire("GET", "/v1/orderbook")
        .await
        .expect("same scope, own group");
    let before = l.now();
    let feedback = permit.report_with_feedback(Response::status(418).with_body(body));
    let until = feedback.banned_until.expect("a 418 bans");
    assert!(
        until >= before + ban && until <= l.now() + ban,
        "ban until {until}"
    );
    if timing == Timing::Exact {
        assert_eq!(until, before + ban);
    }
    for (method, path) in [TICKER, ("GET", "/v1/orderbook")] {
        let mut a = Box::pin(l.acquire(method, path));
        match poll_once(&mut a).await {
            Poll::Ready(Err(e)) if e.reason() == Reason::Banned => assert_eq!(e.retry_at(), until),
            Poll::Ready(other) => panic!("{path}: expected Banned, got {:?}", other.map(|p| *p.admission())),
            Poll::Pending => panic!("{path}: a ban must fail on the first poll"),
        }
    }
    let private = l
        .acquire("GET", "/v1/accounts")
        .await
        .expect("another scope is not banned");
    private.report(Response::status(200));
    queued.run(l.runtime(), None).await;
    let outcome = queued.into_outputs().remove(0).expect("not cancelled");
    assert_eq!(
        outcome.result.map_err(|e| (e.reason(), e.retry_at())),
        Err((Reason::Banned, until)),
        "the queued waiter fails too"
    );
    assert!(outcome.at < until, "and does not wait for the ban to end");
    if timing == Timing::Exact {
        sleep_until(l.runtime(), until - Duration::from_millis(1)).await;
        assert_eq!(
            l.acquire(TICKER.0, TICKER.1)
                .await
                .map(|p| *p.admission())
                .map_err(|e| (e.reason(), e.retry_at())),
            Err((Reason::Banned, until))
        );
    }
    sleep_until(l.runtime(), until).await;
    let permit = l.acquire(TICKER.0, TICKER.1).await.expect("the ban is over");
    assert!(permit.admission().at >= until);
    if timing == Timing::Exact {
        assert_eq!(permit.admission().at, until);
    }
    permit.report(Response::status(200));
}

/// `sec=0` blocking: after a response says no request is left in the current
/// second while only one of them was ours, the next admission comes only
/// after a full server window (on the GCRA, plus the margin; on the interval
/// log, which holds the other nine places back, a window after our request's
/// report, closed windows counted), and a deadline before that fails fast
/// naming that instant.
pub async fn sec0_blocks<R: Runtime>(l: &RateLimiter<R>, timing: Timing) {
    let config = l.limiter().group(GROUP).config();
    let hold = match config.policy {
        upbit_limiter_core::limiter::Policy::Gcra => config.limits.shortest_window() + config.margin,
        _ => config.limits.shortest_window() + Duration::from_nanos(1),
    };
    let permit = l.acquire(TICKER.0, TICKER.1).await.expect("first");
    let before = l.now();
    let feedback =
        permit.report_with_feedback(Response::status(200).with_remaining_req("group=ticker; min=600; sec=0"));
    let after = l.now();
    assert!(feedback.header_tightened, "sec=0 must tighten");
    // Just short of the window (virtual time), or well short of it (real time,
    // where `after` may lag the instant the response was applied).
    let deadline = match timing {
        Timing::Exact => after + hold - Duration::from_nanos(1),
        Timing::Real => before + Duration::from_nanos(hold.as_nanos() / 2),
    };
    let mut early = Box::pin(l.acquire_request(ticker(1).deadline(deadline)));
    match poll_once(&mut early).await {
        Poll::Ready(Err(e)) if e.is_timeout() => {
            assert!(e.retry_at() >= before + hold);
        }
        other => panic!(
            "expected a timeout at once, got {:?}",
            other.map(|r| r.map(|p| *p.admission()))
        ),
    }
    drop(early);
    let permit = l.acquire(TICKER.0, TICKER.1).await.expect("after the window");
    assert!(
        permit.admission().at >= before + hold,
        "admitted at {} before the window ({}) had passed",
        permit.admission().at,
        before + hold
    );
    if timing == Timing::Exact {
        // To the timer's tick (a millisecond for tokio, a microsecond for embassy).
        let at = permit.admission().at;
        assert!(
            at <= before + hold + Duration::from_millis(1),
            "admitted at {at}, not {}",
            before + hold
        );
    }
    permit.report(Response::status(200));
}

/// Runs `n` waiters on a freshly saturated `l`, cancelling member `i` at
/// `cancel[i]` (if any); returns each member's outcome and the saturation
/// instant.
async fn run_with_cancellations<R: Runtime>(
    l: &RateLimiter<R>,
    n: usize,
    cancel: &[(usize, Duration)],
) -> (Vec<Option<Outcome>>, Instant) {
    let t0 = saturate(l).await;
    let mut crowd = Crowd::new((0..n as u64).map(|i| waiter(l, ticker(i))).collect());
    crowd.arrive(0..n).await;
    let mut events = cancel.to_vec();
    events.sort_by_key(|&(i, d)| (d, i));
    for (i, offset) in events {
        crowd.run(l.runtime(), Some(t0 + offset)).await;
        assert!(
            crowd.cancel(i),
            "waiter {i} finished before {offset:?} although enough waiters were still ahead of it"
        );
    }
    crowd.run(l.runtime(), None).await;
    (crowd.into_outputs(), t0)
}

/// Cancellation: 50 of 100 queued waiters, chosen by a seeded RNG, are
/// dropped at random instants while still queued. The others are admitted in
/// order, each no later than in a run where the 50 never queued, plus one
/// interval; nothing is left in the queue.
pub async fn cancellation<R: Runtime>(make: impl Fn() -> RateLimiter<R>, timing: Timing, rng_seed: u64) {
    const N: usize = 100;
    let mut rng = fastrand::Rng::with_seed(rng_seed);
    let mut order: Vec<usize> = (0..N).collect();
    rng.shuffle(&mut order);
    let mut cancelled = order[..N / 2].to_vec();
    cancelled.sort_unstable();
    let survivors: Vec<usize> = (0..N).filter(|i| !cancelled.contains(i)).collect();

    // Boxed: a limiter is large, and futures holding it get moved around.
    let l = Box::new(make());
    let t = interval(&l, GROUP);
    // A waiter with `s` survivors ahead is admitted no sooner than (s + 1)
    // intervals after saturation: cancel it at a random instant before that.
    let events: Vec<(usize, Duration)> = cancelled
        .iter()
        .map(|&i| {
            let ahead = survivors.iter().filter(|&&s| s < i).count() as u64;
            (i, Duration::from_nanos(rng.u64(0..=t.as_nanos() * ahead)))
        })
        .collect();
    let (outcomes, t0) = run_with_cancellations(&l, N, &events).await;
    let status = l.limiter().group(GROUP).status(l.now());
    assert_eq!(status.queue_depth, 0, "nothing left queued");
    assert_eq!(status.counters.cancelled, (N / 2) as u64);

    let baseline = Box::new(make());
    let (base_outcomes, b0) = run_with_cancellations(&baseline, survivors.len(), &[]).await;

    let mut seqs = Vec::new();
    for (rank, &i) in survivors.iter().enumerate() {
        let got = outcomes[i].expect("survivors finish");
        let a = got.admission(i);
        seqs.push(a.seq);
        let base = base_outcomes[rank].expect("baseline finishes").admission(rank);
        if timing == Timing::Exact {
            let late = (a.at - t0).saturating_sub(base.at - b0);
            assert!(
                late <= t,
                "survivor {i} (rank {rank}) admitted {late:?} later than without the cancelled waiters"
            );
        }
    }
    assert_eq!(inversions(&seqs), 0, "survivors in arrival order: {seqs:?}");
}

/// Saturates `l`, then queues `N - 1` waiters in order with, at arrival
/// `position`, one more that is boxed, polled once and `mem::forget`-ed if
/// `leak`. Returns the others' ids and outcomes, and the saturation instant.
async fn run_with_leak<R: Runtime>(
    l: &RateLimiter<R>,
    n: usize,
    position: usize,
    leak: bool,
) -> (Vec<usize>, Vec<Option<Outcome>>, Instant) {
    let t0 = saturate(l).await;
    let others: Vec<usize> = (0..n).filter(|&i| i != position).collect();
    let mut crowd = Crowd::new(others.iter().map(|&i| waiter(l, ticker(i as u64))).collect());
    crowd.arrive(0..position).await;
    if leak {
        let mut leaked = Box::pin(l.acquire_request(ticker(position as u64)));
        assert!(
            poll_once(&mut leaked).await.is_pending(),
            "the leaked waiter queued"
        );
        std::mem::forget(leaked);
    }
    crowd.arrive(position..n - 1).await;
    crowd.run(l.runtime(), None).await;
    (others, crowd.into_outputs(), t0)
}

/// A leaked waiter (boxed, polled once, `mem::forget`-ed) at arrival
/// `position` of six does not stall the others: they all finish, in order,
/// and (virtual time) no more than three intervals later than had the leaked
/// one never queued: its unused slot plus at most two intervals to notice.
pub async fn leaked_waiter<R: Runtime>(make: impl Fn() -> RateLimiter<R>, timing: Timing, position: usize) {
    const N: usize = 6;
    assert!(position < N);
    // Boxed: a limiter is large, and futures holding it get moved around.
    let leaky = Box::new(make());
    let t = interval(&leaky, GROUP);
    let (others, outs, t0) = run_with_leak(&leaky, N, position, true).await;
    let clean = Box::new(make());
    let (_, base, b0) = run_with_leak(&clean, N, position, false).await;
    let mut seqs = Vec::new();
    for (k, &i) in others.iter().enumerate() {
        let o = outs[k].expect("not cancelled");
        let a = match o.result {
            Ok(a) => a,
            Err(e) => panic!(
                "waiter {i}, behind a leaked waiter at position {position}, failed at {} (saturated at {t0}): {e}",
                o.at
            ),
        };
        seqs.push(a.seq);
        if timing == Timing::Exact {
            let b = base[k].expect("not cancelled").admission(i);
            let late = (a.at - t0).saturating_sub(b.at - b0);
            assert!(
                late <= t.saturating_mul(3),
                "waiter {i} admitted {late:?} later than without the leaked waiter at {position}"
            );
        }
    }
    assert_eq!(inversions(&seqs), 0, "{seqs:?}");
}

/// One group's admissions in a scenario.
#[derive(Debug, Default)]
struct Log {
    admissions: RefCell<Vec<Admission>>,
}

impl Log {
    async fn go<R: Runtime>(&self, l: &RateLimiter<R>, method: &str, path: &str, who: usize) {
        let permit = l
            .acquire(method, path)
            .await
            .unwrap_or_else(|e| panic!("trader {who}: {method} {path} failed: {e}"));
        self.admissions.borrow_mut().push(*permit.admission());
        let status = if method == "POST" { 201 } else { 200 };
        permit.report(Response::status(status));
    }
}

/// The market shock: 100 traders at once, each `GET /v1/ticker`,
/// `GET /v1/accounts`, three `POST /v1/orders` 0.1 s apart and `GET
/// /v1/order`, each response reported at once. All finish; an independent
/// sliding-window checker finds no window of any group's server limit over
/// its limit (nor, for a GCRA group, of the limit's window plus the margin,
/// which its quota promises too); and (virtual time) the whole takes no more
/// than one step of the bottleneck over the minimum the groups allow (a
/// GCRA group: one emission interval; an interval-log group, which admits
/// batches of `N` one window apart: the traders' gap and a timer tick per
/// batch).
pub async fn market_shock<R: Runtime>(l: &RateLimiter<R>, timing: Timing) {
    const TRADERS: usize = 100;
    const ORDERS: u64 = 3;
    let gap = Duration::from_millis(100);
    let log = Log::default();
    let start = l.now();
    let traders: Vec<Waiting<'_, ()>> = (0..TRADERS)
        .map(|who| {
            let log = &log;
            Box::pin(async move {
                log.go(l, "GET", "/v1/ticker", who).await;
                log.go(l, "GET", "/v1/accounts", who).await;
                for k in 0..ORDERS {
                    if k > 0 {
                        sleep_until(l.runtime(), l.now() + gap).await;
                    }
                    log.go(l, "POST", "/v1/orders", who).await;
                }
                log.go(l, "GET", "/v1/order", who).await;
            }) as Waiting<'_, ()>
        })
        .collect();
    let mut crowd = Crowd::new(traders);
    crowd.arrive(0..TRADERS).await;
    crowd.run(l.runtime(), None).await;
    let finished = crowd.into_outputs().iter().filter(|o| o.is_some()).count();
    assert_eq!(finished, TRADERS, "every trader finishes");
    let total = l.now() - start;

    let admissions = log.admissions.into_inner();
    let count = |g: Group| admissions.iter().filter(|a| a.group == g).count() as u64;
    let order = upbit_limiter_core::classify("POST", "/v1/orders");
    let ticker = upbit_limiter_core::classify("GET", "/v1/ticker");
    let accounts = upbit_limiter_core::classify("GET", "/v1/accounts");
    let get_order = upbit_limiter_core::classify("GET", "/v1/order");
    assert_eq!(count(order), TRADERS as u64 * ORDERS);
    assert_eq!(admissions.len(), TRADERS * (3 + ORDERS as usize));

    for group in Group::ALL {
        let at: Vec<Instant> = admissions
            .iter()
            .filter(|a| a.group == group)
            .map(|a| a.at)
            .collect();
        if at.is_empty() {
            continue;
        }
        let config = l.limiter().group(group).config();
        let promised = match config.policy {
            Policy::Gcra => config.margin,
            Policy::IntervalLog => Duration::ZERO,
        };
        for limit in config.limits.as_slice() {
            for window in [limit.window, limit.window + promised] {
                let v = window_violations(&at, limit.max_requests, window);
                assert!(
                    v.is_empty(),
                    "{group}: {} per {window:?} exceeded: {v:?}",
                    limit.max_requests
                );
            }
        }
    }

    // The minimum the groups allow. With burst b and interval T, n GCRA
    // admissions span at least (n - b)·T; n interval-log admissions, at most
    // N in any window W, span at least (ceil(n / N) - 1)·W. Every order
    // follows its trader's ticker and accounts, so the first order comes no
    // sooner than the first ticker; the last trader's ticker comes no sooner
    // than the ticker's span after the first, and its own orders then take
    // 2 x 0.1 s.
    let span = |g: Group, n: u64| {
        let config = l.limiter().group(g).config();
        match config.policy {
            Policy::Gcra => {
                let q = l.limiter().group(g).status(l.now()).quota;
                q.interval()
                    .saturating_mul(n.saturating_sub(u64::from(q.burst())))
            }
            Policy::IntervalLog => config
                .limits
                .as_slice()
                .iter()
                .map(|w| {
                    w.window
                        .saturating_mul(n.div_ceil(u64::from(w.max_requests)).saturating_sub(1))
                })
                .max()
                .unwrap_or(Duration::ZERO),
        }
    };
    let mut by_group = std::collections::BTreeMap::new();
    for g in [ticker, accounts, order, get_order] {
        *by_group.entry(g).or_insert(0u64) += TRADERS as u64 * if g == order { ORDERS } else { 1 };
    }
    let mut minimum = Duration::ZERO;
    for (&g, &n) in &by_group {
        minimum = minimum.max(span(g, n));
    }
    minimum = minimum.max(span(ticker, TRADERS as u64) + gap.saturating_mul(ORDERS - 1));
    let bottleneck = by_group
        .iter()
        .max_by_key(|(&g, &n)| span(g, n))
        .map(|(&g, &n)| {
            let config = l.limiter().group(g).config();
            match config.policy {
                Policy::Gcra => l.limiter().group(g).status(l.now()).quota.interval(),
                Policy::IntervalLog => {
                    // The first traders reach the order group in steps one
                    // gap apart (10 past the ticker at once, 12 slots), so
                    // some slots start their cycles a gap late; and every
                    // batch wakes up to a timer tick late.
                    let batches = config
                        .limits
                        .as_slice()
                        .iter()
                        .map(|w| n.div_ceil(u64::from(w.max_requests)))
                        .max()
                        .unwrap_or(1);
                    gap + TIMER_TICK.saturating_mul(batches)
                }
            }
        })
        .unwrap_or(Duration::ZERO);
    println!("market shock: {total:?} in all; the groups allow {minimum:?}; one step {bottleneck:?}");
    assert!(
        total >= minimum,
        "{total:?} is below the minimum {minimum:?}: something went too fast"
    );
    if timing == Timing::Exact {
        assert!(
            total <= minimum + bottleneck,
            "took {total:?}; the quotas allow {minimum:?} (+ one interval {bottleneck:?})"
        );
    }
}
