//! Runtime-agnostic async waiting: FIFO per group, deadlines, cancellation,
//! and no background task.
//!
//! The runtime provides only "now" and "sleep until" ([`Runtime`]). A waiter
//! asks the core when it may go, sleeps on its own timer, and claims its slot
//! when it wakes; nothing else runs on its behalf, so there is nothing that
//! can die and leave waiters hanging.

use core::cell::UnsafeCell;
use core::fmt;
use core::future::Future;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};

use crate::limiter::{
    Admission, ConfigError, Control, Denied, Feedback, GroupLimiter, Limiter, LimiterConfig, Response,
};
use crate::queue::{Waiter, Wakes};
use crate::stats::Counters;
use crate::time::{Duration, Instant};
use crate::upbit::{classify, Group};

/// What a runtime must provide: its clock and a timer.
pub trait Runtime {
    /// The future `sleep_until` returns.
    type Sleep: Future<Output = ()>;
    /// Now, on the runtime's clock, as core time.
    fn now(&self) -> Instant;
    /// A future that completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;
}

/// Why an acquisition failed. Every variant says when a retry could succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcquireError {
    /// The earliest possible admission is after the deadline: failed at once
    /// (or as soon as that became true), without sleeping until the deadline.
    Timeout {
        /// When admission could happen at the earliest.
        earliest: Instant,
        /// The deadline that cannot be met.
        deadline: Instant,
    },
    /// The group's circuit breaker is open.
    CircuitOpen {
        /// When a probe may be tried ([`Instant::MAX`] when forced open).
        retry_at: Instant,
    },
    /// The server banned the group's scope (HTTP 418).
    Banned {
        /// When the ban ends.
        until: Instant,
    },
}

impl AcquireError {
    /// When to try again.
    pub fn retry_at(&self) -> Instant {
        match *self {
            Self::Timeout { earliest, .. } => earliest,
            Self::CircuitOpen { retry_at } => retry_at,
            Self::Banned { until } => until,
        }
    }
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { earliest, deadline } => write!(
                f,
                "deadline {deadline} cannot be met: earliest admission at {earliest}"
            ),
            Self::CircuitOpen { retry_at } => write!(f, "circuit open; retry at {retry_at}"),
            Self::Banned { until } => write!(f, "banned by the server (418) until {until}"),
        }
    }
}

impl core::error::Error for AcquireError {}

/// What to acquire: the request's method and path, or a group directly (for
/// WebSocket messages, which have no path), plus an optional deadline and
/// correlation id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The group the request is counted in.
    pub group: Group,
    /// The HTTP method, if this is an HTTP request.
    pub method: &'a str,
    /// The path, if this is an HTTP request.
    pub path: &'a str,
    /// Fail instead of waiting past this instant (default: the group's waiter timeout from now).
    pub deadline: Option<Instant>,
    /// An id the caller uses to correlate logs; carried into the permit.
    pub correlation_id: Option<u64>,
}

impl<'a> Request<'a> {
    /// An HTTP request, classified into its Upbit group.
    pub fn http(method: &'a str, path: &'a str) -> Self {
        Self {
            group: classify(method, path),
            method,
            path,
            deadline: None,
            correlation_id: None,
        }
    }
    /// A unit of a group that has no HTTP path (e.g. a WebSocket message).
    pub fn group(group: Group) -> Self {
        Self {
            group,
            method: "",
            path: "",
            deadline: None,
            correlation_id: None,
        }
    }
    /// Sets a deadline.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }
    /// Sets a correlation id.
    pub fn correlation_id(mut self, id: u64) -> Self {
        self.correlation_id = Some(id);
        self
    }
}

/// A [`Limiter`] bound to a runtime: the one way to `acquire(...).await`.
#[derive(Debug)]
pub struct RateLimiter<R> {
    limiter: Limiter,
    runtime: R,
}

impl<R: Runtime + Default> RateLimiter<R> {
    /// A limiter for every group with `config`, on the runtime's default clock.
    pub fn new(config: &LimiterConfig) -> Result<Self, ConfigError> {
        Self::with_runtime(config, R::default())
    }
}

impl<R: Runtime> RateLimiter<R> {
    /// A limiter for every group with `config`, on `runtime`.
    pub fn with_runtime(config: &LimiterConfig, runtime: R) -> Result<Self, ConfigError> {
        Ok(Self {
            limiter: Limiter::new(config)?,
            runtime,
        })
    }

    /// The core limiter (status, configuration changes, direct decisions).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Now, on the runtime's clock.
    pub fn now(&self) -> Instant {
        self.runtime.now()
    }

    /// Waits for a slot for `method path` (default deadline), in FIFO order
    /// within its group.
    pub fn acquire<'a>(&'a self, method: &'a str, path: &'a str) -> Acquire<'a, R> {
        self.acquire_request(Request::http(method, path))
    }

    /// Waits for a slot for `request`.
    pub fn acquire_request<'a>(&'a self, request: Request<'a>) -> Acquire<'a, R> {
        Acquire {
            owner: self,
            request,
            started: Instant::ZERO,
            deadline: Instant::MAX,
            phase: Phase::Init,
            sleep: None,
            sleep_until: Instant::ZERO,
            node: UnsafeCell::new(Waiter::new()),
            _pinned: PhantomPinned,
        }
    }
}

/// Where an [`Acquire`] is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not polled yet.
    Init,
    /// Linked in the group's queue (or evicted from it, see [`Waiter`]).
    Queued,
    /// Finished; polling again starts a new acquisition.
    Done,
}

/// The future returned by [`RateLimiter::acquire`].
///
/// It holds its own queue node: no allocation per waiter. It is `!Unpin`
/// because the group's queue points into it while it waits; dropping it
/// unlinks it.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a, R: Runtime> {
    owner: &'a RateLimiter<R>,
    request: Request<'a>,
    started: Instant,
    deadline: Instant,
    phase: Phase,
    sleep: Option<R::Sleep>,
    sleep_until: Instant,
    node: UnsafeCell<Waiter>,
    _pinned: PhantomPinned,
}

// SAFETY: the node is only touched under the group's lock; the rest is plain data.
unsafe impl<R: Runtime + Sync> Send for Acquire<'_, R> where R::Sleep: Send {}

impl<R: Runtime> fmt::Debug for Acquire<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("request", &self.request)
            .field("phase", &self.phase)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// What one locked step decided.
enum Step<T> {
    Ready(T),
    SleepUntil(Instant),
}

impl<'a, R: Runtime> Acquire<'a, R> {
    fn group(&self) -> &'a GroupLimiter {
        self.owner.limiter.group(self.request.group)
    }

    fn node_ptr(&self) -> NonNull<Waiter> {
        // SAFETY: `UnsafeCell::get` never returns null.
        unsafe { NonNull::new_unchecked(self.node.get()) }
    }

    fn finish(
        &mut self,
        result: Result<Admission, AcquireError>,
        now: Instant,
    ) -> Poll<<Self as Future>::Output> {
        self.phase = Phase::Done;
        let group = self.group();
        Poll::Ready(result.map(|admission| {
            let waited = now - self.started;
            group.counters.record_wait(waited);
            Permit {
                owner: self.owner,
                admission,
                waited,
                correlation_id: self.request.correlation_id,
                reported: false,
            }
        }))
    }

    /// Leaves the queue with `result`, handing the turn on.
    fn leave(
        &mut self,
        c: &mut Control,
        now: Instant,
        wakes: &mut Wakes,
        result: Result<Admission, AcquireError>,
    ) -> Step<Result<Admission, AcquireError>> {
        let group = self.group();
        if matches!(result, Err(AcquireError::Timeout { .. })) {
            Counters::bump(&group.counters.timeouts);
        }
        // SAFETY: under the lock; the node is linked.
        wakes.push(unsafe { c.queue.unlink(self.node_ptr()) });
        c.queue.stamp_head(group.earliest(now));
        group.publish(c, now);
        Step::Ready(result)
    }

    /// One decision with the lock held, in O(1) unless this waiter's
    /// deadline is in danger. Wakers to wake go to `wakes`, woken after the
    /// lock is released.
    fn step_locked(
        &mut self,
        c: &mut Control,
        now: Instant,
        wakes: &mut Wakes,
        waker: &Waker,
    ) -> Step<Result<Admission, AcquireError>> {
        let group = self.group();
        let node = self.node_ptr();
        if self.phase == Phase::Init {
            self.deadline = self
                .request
                .deadline
                .unwrap_or_else(|| now.saturating_add(c.config().waiter_timeout));
            match group.acquire_locked(c, now, false) {
                Ok(admission) => return Step::Ready(Ok(admission)),
                Err(Denied::NotYet { .. }) => {
                    // Everyone already queued goes first.
                    let estimate = group.earliest_after(now, c.queue.len() as u64);
                    if estimate > self.deadline {
                        Counters::bump(&group.counters.timeouts);
                        return Step::Ready(Err(AcquireError::Timeout {
                            earliest: estimate,
                            deadline: self.deadline,
                        }));
                    }
                    // SAFETY: the node lives in this pinned future until it is
                    // unlinked (by us, or by `Drop`); we hold the lock.
                    unsafe { c.queue.push_back(node) };
                    Counters::bump(&group.counters.waits);
                    self.phase = Phase::Queued;
                    group.publish(c, now);
                }
                Err(denied) => return Step::Ready(Err(denied.into())),
            }
        }
        // SAFETY: under the lock; the node is ours, and linked after this.
        unsafe {
            if !c.queue.contains(node) {
                // Evicted while we were slow to claim: we get our turn back first.
                c.queue.push_front(node);
                group.publish(c, now);
            }
            wakes.push(c.queue.check_in(node, waker));
        }
        loop {
            if c.queue.head() == Some(node) {
                if now > self.deadline {
                    // Polled late: the deadline has passed, admission or not.
                    let earliest = group.earliest(now);
                    let deadline = self.deadline;
                    return self.leave(c, now, wakes, Err(AcquireError::Timeout { earliest, deadline }));
                }
                let result = match group.acquire_locked(c, now, true) {
                    Ok(admission) => Ok(admission),
                    Err(Denied::NotYet { earliest }) if earliest <= self.deadline => {
                        // SAFETY: under the lock; the node is linked.
                        unsafe { c.queue.set_due(node, earliest) };
                        return Step::SleepUntil(earliest);
                    }
                    Err(Denied::NotYet { earliest }) => Err(AcquireError::Timeout {
                        earliest,
                        deadline: self.deadline,
                    }),
                    Err(denied) => Err(denied.into()),
                };
                return self.leave(c, now, wakes, result);
            }
            // Our turn comes no sooner than when the group can admit everyone
            // ahead of us. The O(1) bound first; the exact count only when
            // the bound says the deadline would be missed.
            // SAFETY: under the lock; the node is linked.
            let mut ahead = unsafe { c.queue.ahead_at_most(node) };
            let mut turn = group.earliest_after(now, ahead);
            if turn > self.deadline {
                // SAFETY: as above.
                ahead = unsafe { c.queue.position(node) };
                turn = group.earliest_after(now, ahead);
            }
            if turn > self.deadline || now >= self.deadline {
                let deadline = self.deadline;
                return self.leave(
                    c,
                    now,
                    wakes,
                    Err(AcquireError::Timeout {
                        earliest: turn,
                        deadline,
                    }),
                );
            }
            let interval = group.interval_now();
            let grace = interval.max(MIN_GRACE);
            let (head_due, suspected) = c.queue.head_state().unwrap_or((now, None));
            if now > head_due.saturating_add(grace) {
                // The head was told it could go and has not come back. It may
                // only be late (a busy executor): first wake it and give it
                // one more grace period, which its next poll clears. If it
                // still has not come back, it may have been leaked: step it
                // aside so it cannot stall the queue; if it is polled again
                // it takes the front place back.
                match suspected {
                    None => {
                        wakes.push(c.queue.suspect_head(now));
                        return Step::SleepUntil(now.saturating_add(grace).min(self.deadline));
                    }
                    Some(since) if now < since.saturating_add(grace) => {
                        return Step::SleepUntil(since.saturating_add(grace).min(self.deadline));
                    }
                    Some(_) if !wakes.has_room() => return Step::SleepUntil(now),
                    Some(_) => {
                        c.queue.evict_head(wakes);
                        c.queue.stamp_head(group.earliest(now));
                        continue;
                    }
                }
            }
            // We are woken when we become the head, or when an event moves
            // every turn; this timer is the fallback for a head that never
            // comes back, and the deadline.
            let fallback = head_due
                .max(now)
                .saturating_add(interval.saturating_mul(ahead))
                .saturating_add(grace);
            return Step::SleepUntil(fallback.min(self.deadline));
        }
    }
}

/// How late a head may be before the waiters behind it step around it.
const MIN_GRACE: Duration = Duration::from_millis(5);

/// Reads the runtime's clock for `group`. A reading behind what the group has
/// seen is read again: only if the second reading is behind too did the clock
/// go backwards (the first may just have lost a race with another thread).
fn read_clock<R: Runtime>(runtime: &R, group: &GroupLimiter) -> Instant {
    let now = runtime.now();
    if !group.is_behind(now) {
        return now;
    }
    let again = runtime.now();
    if group.is_behind(again) {
        group.note_clock_regression();
    }
    again
}

impl<'a, R: Runtime> Future for Acquire<'a, R> {
    type Output = Result<Permit<'a, R>, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: nothing is moved out of `this`; `sleep` is re-pinned below
        // and the node never moves while linked.
        let this = unsafe { self.get_unchecked_mut() };
        if this.phase == Phase::Done {
            this.phase = Phase::Init;
        }
        let mut spins = 0;
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                // SAFETY: `sleep` is structurally pinned: it is only dropped in place.
                if unsafe { Pin::new_unchecked(sleep) }.poll(cx).is_ready() {
                    this.sleep = None;
                }
            }
            let group = this.group();
            let raw = read_clock(&this.owner.runtime, group);
            if this.phase == Phase::Init {
                // The lock-free fast path first: an uncontended acquire takes no lock.
                this.started = raw;
                match group.try_acquire(raw) {
                    Ok(admission) => return this.finish(Ok(admission), raw),
                    Err(Denied::NotYet { .. }) => {}
                    Err(denied) => return this.finish(Err(denied.into()), raw),
                }
            }
            let now = group.observe_now(raw);
            let mut wakes = Wakes::default();
            let step = group
                .control
                .with(|c| this.step_locked(c, now, &mut wakes, cx.waker()));
            wakes.wake();
            match step {
                Step::Ready(result) => return this.finish(result, now),
                Step::SleepUntil(at) => {
                    if this.sleep.is_some() && this.sleep_until == at {
                        return Poll::Pending;
                    }
                    spins += 1;
                    if spins > 3 {
                        // A timer that keeps completing before the clock moves:
                        // yield instead of spinning.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    this.sleep_until = at;
                    // Dropped in place, then replaced: `sleep` stays pinned.
                    this.sleep = None;
                    this.sleep = Some(this.owner.runtime.sleep_until(at));
                    // The top of the loop polls it, which registers its waker.
                }
            }
        }
    }
}

impl<R: Runtime> Drop for Acquire<'_, R> {
    fn drop(&mut self) {
        if self.phase != Phase::Queued {
            return;
        }
        let group = self.group();
        let node = self.node_ptr();
        let now = group.observe_now(read_clock(&self.owner.runtime, group));
        let wake = group.control.with(|c| {
            // SAFETY: under the lock; unlinking before the memory goes away is
            // what keeps every linked node alive.
            let wake = unsafe {
                if c.queue.contains(node) {
                    c.queue.unlink(node)
                } else {
                    None
                }
            };
            c.queue.stamp_head(group.earliest(now));
            group.publish(c, now);
            wake
        });
        Counters::bump(&group.counters.cancelled);
        if let Some(w) = wake {
            w.wake();
        }
    }
}

/// A granted slot. Report the response with [`Permit::report`]; a permit
/// dropped unreported counts as neither success nor failure.
#[derive(Debug)]
#[must_use = "report the response with Permit::report"]
pub struct Permit<'a, R: Runtime> {
    owner: &'a RateLimiter<R>,
    admission: Admission,
    waited: Duration,
    correlation_id: Option<u64>,
    reported: bool,
}

impl<R: Runtime> Permit<'_, R> {
    /// The admission (group, instant, sequence number).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }
    /// The group the request was counted in.
    pub fn group(&self) -> Group {
        self.admission.group
    }
    /// How long the acquisition waited.
    pub fn waited(&self) -> Duration {
        self.waited
    }
    /// The caller's correlation id, if it gave one.
    pub fn correlation_id(&self) -> Option<u64> {
        self.correlation_id
    }
    /// Reports the response: status, `Remaining-Req`, and the body for 418.
    pub fn report(mut self, response: Response<'_>) -> Feedback {
        self.reported = true;
        let now = read_clock(
            &self.owner.runtime,
            self.owner.limiter.group(self.admission.group),
        );
        self.owner.limiter.on_response(&self.admission, response, now)
    }
}

impl<R: Runtime> Drop for Permit<'_, R> {
    fn drop(&mut self) {
        // Only a half-open probe holds anything to give back.
        if !self.reported && self.admission.probe {
            let now = read_clock(
                &self.owner.runtime,
                self.owner.limiter.group(self.admission.group),
            );
            self.owner.limiter.group(self.admission.group).on_unreported(now);
        }
    }
}

impl From<Denied> for AcquireError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::NotYet { earliest } => Self::Timeout {
                earliest,
                deadline: earliest,
            },
            Denied::CircuitOpen { retry_at } => Self::CircuitOpen { retry_at },
            Denied::Banned { until } => Self::Banned { until },
        }
    }
}
