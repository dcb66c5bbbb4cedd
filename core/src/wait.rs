//! Runtime-agnostic async waiting: FIFO per group, deadlines, cancellation,
//! and no background task.
//!
//! The runtime provides only "now" and "sleep until" ([`Runtime`]). A waiter
//! asks the core when it may go, sleeps on its own timer, and claims its slot
//! when it wakes; nothing else runs on its behalf, so there is nothing that
//! can die and leave waiters hanging.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::limiter::{
    Admission, ConfigError, Denied, Feedback, GroupLimiter, Limiter, LimiterConfig, Response,
};
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
            started: None,
            deadline: Instant::MAX,
            sleep: None,
            done: false,
        }
    }
}

/// The future returned by [`RateLimiter::acquire`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a, R: Runtime> {
    owner: &'a RateLimiter<R>,
    request: Request<'a>,
    started: Option<Instant>,
    deadline: Instant,
    sleep: Option<R::Sleep>,
    done: bool,
}

impl<R: Runtime> Unpin for Acquire<'_, R> where R::Sleep: Unpin {}

impl<'a, R: Runtime> Acquire<'a, R> {
    fn group(&self) -> &'a GroupLimiter {
        self.owner.limiter.group(self.request.group)
    }
}

impl<'a, R: Runtime> Future for Acquire<'a, R>
where
    R::Sleep: Unpin,
{
    type Output = Result<Permit<'a, R>, AcquireError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                if Pin::new(sleep).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
            }
            let now = this.owner.runtime.now();
            let group = this.group();
            let started = *this.started.get_or_insert(now);
            if this.deadline == Instant::MAX {
                this.deadline = this
                    .request
                    .deadline
                    .unwrap_or_else(|| started.saturating_add(group.config().waiter_timeout));
            }
            match group.try_acquire(now) {
                Ok(admission) => {
                    this.done = true;
                    let waited = now - started;
                    if !waited.is_zero() {
                        Counters::bump(&group.counters.waits);
                    }
                    group.counters.record_wait(waited);
                    return Poll::Ready(Ok(Permit {
                        owner: this.owner,
                        admission,
                        waited,
                        correlation_id: this.request.correlation_id,
                        reported: false,
                    }));
                }
                Err(Denied::NotYet { earliest }) => {
                    if earliest > this.deadline {
                        this.done = true;
                        Counters::bump(&group.counters.timeouts);
                        return Poll::Ready(Err(AcquireError::Timeout {
                            earliest,
                            deadline: this.deadline,
                        }));
                    }
                    this.sleep = Some(this.owner.runtime.sleep_until(earliest));
                }
                Err(Denied::CircuitOpen { retry_at }) => {
                    this.done = true;
                    return Poll::Ready(Err(AcquireError::CircuitOpen { retry_at }));
                }
                Err(Denied::Banned { until }) => {
                    this.done = true;
                    return Poll::Ready(Err(AcquireError::Banned { until }));
                }
            }
        }
    }
}

impl<R: Runtime> Drop for Acquire<'_, R> {
    fn drop(&mut self) {
        if !self.done && self.started.is_some() {
            Counters::bump(&self.group().counters.cancelled);
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
        let now = self.owner.runtime.now();
        self.owner.limiter.on_response(&self.admission, response, now)
    }
}

impl<R: Runtime> Drop for Permit<'_, R> {
    fn drop(&mut self) {
        if !self.reported {
            let now = self.owner.runtime.now();
            self.owner.limiter.group(self.admission.group).on_unreported(now);
        }
    }
}

/// The waiters of one group, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct WaitQueue {
    len: usize,
}

impl WaitQueue {
    pub(crate) const fn new() -> Self {
        Self { len: 0 }
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Whether the holder of `ticket` (or a caller without one) may claim now.
    pub(crate) fn may_claim(&self, ticket: Option<u64>) -> bool {
        ticket.is_some() || self.is_empty()
    }
}
