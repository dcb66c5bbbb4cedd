//! The caller's side: a local limiter in front, then the store's decision.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;
use tokio::time::Instant as TokioInstant;
use upbit_limiter_tokio::upbit_limiter_core::upbit::{RemainingReq, Scope};
use upbit_limiter_tokio::{
    AcquireError, Deadline, Endpoint, Feedback, Group, LimiterConfig, OwnedPermit, RateLimiter, Request,
    Response,
};

use crate::config::{SharedConfig, SharedConfigError};
use crate::store::{Budget, BudgetState, Decision, End, Shared, Store, StoreError, Wait, TIME_LIMIT_US};

/// Why a shared acquisition failed, and when a retry could succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedError {
    /// The local limiter refused (deadline, breaker, a ban this process saw).
    Local(AcquireError),
    /// The shared budget has no room before the deadline.
    Timeout {
        /// The group.
        group: Group,
        /// The request's method and path.
        endpoint: Endpoint,
        /// Why the store made it wait.
        waiting_for: WaitingFor,
        /// When the store would have had room, from the failure on.
        retry_after: Duration,
    },
    /// A process sharing the scope saw a 418: the ban holds for every one.
    Banned {
        /// The group.
        group: Group,
        /// The request's method and path.
        endpoint: Endpoint,
        /// When the ban ends.
        retry_after: Duration,
    },
    /// Redis could not decide within the timeout: refused (fail closed).
    StoreUnavailable {
        /// The group.
        group: Group,
        /// The request's method and path.
        endpoint: Endpoint,
        /// What went wrong.
        cause: StoreError,
        /// The configured `store_retry`.
        retry_after: Duration,
    },
    /// Another process shares this budget with other limits or another
    /// maximum flight time: sharing needs one rule. No retry succeeds until
    /// the configurations agree.
    SpecMismatch {
        /// The group.
        group: Group,
    },
}

/// What a shared wait was waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitingFor {
    /// Room in the shared window.
    Room,
    /// A report of a request in flight (or its maximum flight time).
    Report,
    /// The intervals a restarted, empty store may have lost to end.
    StoreRestart,
    /// The pause after a 429 seen by a process sharing the budget.
    Pause,
}

impl SharedError {
    /// The group, where there is one.
    pub fn group(&self) -> Group {
        match self {
            Self::Local(e) => e.group(),
            Self::Timeout { group, .. }
            | Self::Banned { group, .. }
            | Self::StoreUnavailable { group, .. }
            | Self::SpecMismatch { group } => *group,
        }
    }

    /// How long after the failure a retry could succeed (`Duration::MAX`: not
    /// by waiting).
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Local(e) => e.retry_after(),
            Self::Timeout { retry_after, .. }
            | Self::Banned { retry_after, .. }
            | Self::StoreUnavailable { retry_after, .. } => *retry_after,
            Self::SpecMismatch { .. } => Duration::MAX,
        }
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = |f: &mut fmt::Formatter<'_>, group: &Group, endpoint: &Endpoint| {
            write!(f, "group {group}")?;
            if !endpoint.is_empty() {
                write!(f, " ({endpoint})")?;
            }
            Ok(())
        };
        match self {
            Self::Local(e) => write!(f, "{e}"),
            Self::Timeout {
                group,
                endpoint,
                waiting_for,
                retry_after,
            } => {
                head(f, group, endpoint)?;
                let why = match waiting_for {
                    WaitingFor::Room => "the shared window is full",
                    WaitingFor::Report => "the shared window is full of requests in flight",
                    WaitingFor::StoreRestart => {
                        "the store restarted empty and lost intervals may still count"
                    }
                    WaitingFor::Pause => "a process sharing the budget saw a 429",
                };
                write!(f, ": deadline cannot be met: {why}; room in {retry_after:?}")
            }
            Self::Banned {
                group,
                endpoint,
                retry_after,
            } => {
                head(f, group, endpoint)?;
                write!(
                    f,
                    ": a process sharing the scope was banned (418); the ban ends in {retry_after:?}"
                )
            }
            Self::StoreUnavailable {
                group,
                endpoint,
                cause,
                retry_after,
            } => {
                head(f, group, endpoint)?;
                write!(
                    f,
                    ": refused, the shared store cannot decide ({cause}); retry in {retry_after:?}"
                )
            }
            Self::SpecMismatch { group } => write!(
                f,
                "group {group}: another process shares this budget with other limits or max_flight"
            ),
        }
    }
}

impl std::error::Error for SharedError {}

/// Counts of one group, since the limiter was built.
#[derive(Debug, Default)]
struct Counters {
    decisions: AtomicU64,
    admitted: AtomicU64,
    denied: AtomicU64,
    store_errors: AtomicU64,
    reports: AtomicU64,
    report_errors: AtomicU64,
}

/// One group's shared state and this process's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedGroupStatus {
    /// The group.
    pub group: Group,
    /// The state in Redis, as every sharer sees it.
    pub shared: BudgetState,
    /// Decision scripts this process ran.
    pub decisions: u64,
    /// Of those, admissions.
    pub admitted: u64,
    /// Of those, denials (each followed by a sleep and another question).
    pub denied: u64,
    /// Calls that failed (timeout, unreachable, malformed reply).
    pub store_errors: u64,
    /// Report scripts that completed.
    pub reports: u64,
    /// Report scripts that failed: those intervals count until their
    /// maximum flight time.
    pub report_errors: u64,
}

struct Inner {
    local: Arc<RateLimiter>,
    store: Store,
    budgets: Vec<Option<Budget>>,
    /// One asker per group and process: FIFO among the local permits.
    gates: Vec<Mutex<()>>,
    counters: Vec<Counters>,
    config: SharedConfig,
}

/// A limiter whose budgets are shared, through Redis, by every process
/// built with the same [`SharedConfig`] (URL, prefix, pocket or IP name).
/// Cheap to clone. See the [crate docs](crate).
#[derive(Clone)]
pub struct SharedLimiter {
    inner: Arc<Inner>,
}

impl fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Why a [`SharedLimiter`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The local limiter's configuration.
    Limits(upbit_limiter_tokio::ConfigError),
    /// The shared settings.
    Shared(SharedConfigError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Limits(e) => write!(f, "{e}"),
            Self::Shared(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<SharedConfigError> for BuildError {
    fn from(e: SharedConfigError) -> Self {
        Self::Shared(e)
    }
}

/// `at + d`, saturating at about 30 years from `at` (tokio's instants
/// overflow far earlier than any retry time a store can name).
fn later(at: TokioInstant, d: Duration) -> TokioInstant {
    let far = Duration::from_secs(30 * 365 * 86_400);
    at.checked_add(d.min(far))
        .unwrap_or(at + Duration::from_secs(86_400))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl SharedLimiter {
    /// A local limiter for `limits` in front of the shared budgets in Redis.
    /// Connects lazily (the first acquisition connects): a Redis that is down
    /// now is an error of each acquisition, not of this call. Must be called
    /// inside a tokio runtime.
    pub fn new(limits: &LimiterConfig, shared: SharedConfig) -> Result<Self, BuildError> {
        shared.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SharedConfigError::NoRuntime.into());
        }
        for g in Group::ALL {
            let c = limits.group(g);
            let too_long = |d: upbit_limiter_tokio::upbit_limiter_core::Duration| {
                d.as_nanos() / 1_000 >= TIME_LIMIT_US / 4
            };
            if too_long(c.max_flight) || c.limits.as_slice().iter().any(|l| too_long(l.window)) {
                return Err(SharedConfigError::Limits(format!(
                    "{g}: a window or max_flight is longer than 35 years"
                ))
                .into());
            }
        }
        // A learned ceiling of a shared budget is learned by the store from
        // every sharer's requests before the 429 (the local limiter sees only
        // this process's, and would hold back the others' places as missing);
        // the store holds it for the group's `ceiling_hold`.
        let mut local_limits = limits.clone();
        for g in Group::ALL {
            if matches!(g.scope(), Scope::Ip | Scope::Pocket) {
                local_limits.group_mut(g).ceiling_hold = Default::default();
            }
        }
        let local = Arc::new(RateLimiter::new(&local_limits).map_err(BuildError::Limits)?);
        let client =
            redis::Client::open(shared.url.as_str()).map_err(|e| SharedConfigError::Url(e.to_string()))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(shared.store_timeout))
            .set_response_timeout(Some(shared.store_timeout))
            .set_number_of_retries(1)
            .set_max_delay(shared.store_retry);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| SharedConfigError::Url(e.to_string()))?;
        let store = Store::new(conn, &shared.key_prefix);
        let budgets = Group::ALL
            .iter()
            .map(|&g| {
                Budget::new(
                    &shared.key_prefix,
                    &shared.ip_id,
                    &shared.pocket_id,
                    g,
                    limits.group(g),
                )
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                local,
                store,
                budgets,
                gates: Group::ALL.iter().map(|_| Mutex::new(())).collect(),
                counters: Group::ALL.iter().map(|_| Counters::default()).collect(),
                config: shared,
            }),
        })
    }

    /// The local limiter in front (its status, its metrics).
    pub fn local(&self) -> &RateLimiter {
        &self.inner.local
    }

    /// The shared settings.
    pub fn config(&self) -> &SharedConfig {
        &self.inner.config
    }

    /// Waits for room for `method path` in this process and in the shared
    /// budget, within the group's waiter timeout.
    pub async fn acquire(&self, method: &str, path: &str) -> Result<SharedPermit, SharedError> {
        self.acquire_request(Request::http(method, path)).await
    }

    /// Waits for room for `request`, within its deadline (default: the
    /// group's waiter timeout). Dropping the future cancels it at any point;
    /// an admission the store made while its reply was on the way counts
    /// until its maximum flight time (the safe side).
    pub async fn acquire_request(&self, request: Request) -> Result<SharedPermit, SharedError> {
        let inner = &self.inner;
        let start = TokioInstant::now();
        let group = request.group;
        let deadline = match request.deadline {
            Some(Deadline::At(at)) => inner.local.runtime().to_tokio(at),
            Some(Deadline::After(d)) => later(start, d),
            None => later(
                start,
                inner.local.limiter().group(group).config().waiter_timeout.into(),
            ),
        };
        let local = Arc::clone(&inner.local)
            .acquire_request_owned(request)
            .await
            .map_err(SharedError::Local)?;
        let Some(budget) = inner.budgets[group.index()].as_ref() else {
            return Ok(SharedPermit::new(Arc::clone(&self.inner), local, None));
        };
        let endpoint = request.endpoint;
        let timeout = |waiting_for, retry_after| SharedError::Timeout {
            group,
            endpoint,
            waiting_for,
            retry_after,
        };
        let Ok(_gate) = tokio::time::timeout_at(deadline, inner.gates[group.index()].lock()).await else {
            return Err(timeout(WaitingFor::Room, Duration::ZERO));
        };
        let counters = &inner.counters[group.index()];
        let cap = inner.config.report_poll;
        let mut poll = (cap / 8).max(Duration::from_micros(100)).min(cap);
        loop {
            counters.decisions.fetch_add(1, Ordering::Relaxed);
            let answer =
                tokio::time::timeout(inner.config.store_timeout, inner.store.decide(budget, None)).await;
            let decision = match answer {
                Ok(Ok(d)) => d,
                Ok(Err(cause)) => return Err(self.unavailable(group, endpoint, cause)),
                Err(_) => return Err(self.unavailable(group, endpoint, StoreError::TimedOut)),
            };
            let (wait, retry_at, now) = match decision {
                Decision::Admitted { ticket, .. } => {
                    counters.admitted.fetch_add(1, Ordering::Relaxed);
                    return Ok(SharedPermit::new(Arc::clone(&self.inner), local, Some(ticket)));
                }
                Decision::SpecMismatch => return Err(SharedError::SpecMismatch { group }),
                Decision::Denied { wait, retry_at, now } => (wait, retry_at, now),
            };
            counters.denied.fetch_add(1, Ordering::Relaxed);
            let room_in = Duration::from_micros(retry_at - now);
            let waiting_for = match wait {
                Wait::Banned => {
                    return Err(SharedError::Banned {
                        group,
                        endpoint,
                        retry_after: room_in,
                    })
                }
                Wait::Full => WaitingFor::Room,
                Wait::FullInFlight => WaitingFor::Report,
                Wait::FreshStore => WaitingFor::StoreRestart,
                Wait::Paused => WaitingFor::Pause,
            };
            let asked = TokioInstant::now();
            if later(asked, room_in) > deadline && wait != Wait::FullInFlight {
                return Err(timeout(waiting_for, room_in));
            }
            let sleep = if wait == Wait::FullInFlight {
                let s = poll.min(room_in);
                poll = (poll * 2).min(cap);
                s
            } else {
                room_in
            };
            if later(asked, sleep) > deadline {
                return Err(timeout(waiting_for, room_in));
            }
            tokio::time::sleep_until(asked + sleep).await;
        }
    }

    fn unavailable(&self, group: Group, endpoint: Endpoint, cause: StoreError) -> SharedError {
        self.inner.counters[group.index()]
            .store_errors
            .fetch_add(1, Ordering::Relaxed);
        SharedError::StoreUnavailable {
            group,
            endpoint,
            cause,
            retry_after: self.inner.config.store_retry,
        }
    }

    /// The shared state of every shared group (read from Redis, changing
    /// nothing) and this process's counts.
    pub async fn status(&self) -> Result<Vec<SharedGroupStatus>, StoreError> {
        let mut out = Vec::new();
        for budget in self.inner.budgets.iter().flatten() {
            let shared = tokio::time::timeout(
                self.inner.config.store_timeout,
                self.inner.store.status(budget, None),
            )
            .await
            .map_err(|_| StoreError::TimedOut)??;
            let c = &self.inner.counters[budget.group.index()];
            out.push(SharedGroupStatus {
                group: budget.group,
                shared,
                decisions: c.decisions.load(Ordering::Relaxed),
                admitted: c.admitted.load(Ordering::Relaxed),
                denied: c.denied.load(Ordering::Relaxed),
                store_errors: c.store_errors.load(Ordering::Relaxed),
                reports: c.reports.load(Ordering::Relaxed),
                report_errors: c.report_errors.load(Ordering::Relaxed),
            });
        }
        Ok(out)
    }
}

impl SharedLimiter {
    /// Reads the shared state of every shared group ([`status`](Self::status))
    /// and publishes it through the `metrics` facade, labelled `group` and
    /// `budget` (the IP's or the pocket's name in the store). Gauges, as every
    /// sharer sees them: `upbit_limiter_shared_counting`,
    /// `upbit_limiter_shared_in_flight`, `upbit_limiter_shared_reserved`,
    /// `upbit_limiter_shared_ceiling` (places held back),
    /// `upbit_limiter_shared_ban_remaining_seconds`,
    /// `upbit_limiter_shared_pause_remaining_seconds`; this process's
    /// counters: `upbit_limiter_shared_decisions_total`,
    /// `upbit_limiter_shared_admitted_total`, `upbit_limiter_shared_store_errors_total`,
    /// `upbit_limiter_shared_report_errors_total`. Call it as often as the
    /// exporter should be current (each call runs one status script per group).
    pub async fn record_metrics(&self) -> Result<Vec<SharedGroupStatus>, StoreError> {
        let status = self.status().await?;
        for s in &status {
            let budget = match s.group.scope() {
                upbit_limiter_tokio::Scope::Pocket => self.inner.config.pocket_id.clone(),
                _ => self.inner.config.ip_id.clone(),
            };
            let labels = [("group", s.group.as_str().to_owned()), ("budget", budget)];
            let b = &s.shared;
            let left = |until_us: u64| match b.now_us {
                Some(now) => until_us.saturating_sub(now) as f64 / 1e6,
                None => 0.0,
            };
            metrics::gauge!("upbit_limiter_shared_counting", &labels).set(b.counting as f64);
            metrics::gauge!("upbit_limiter_shared_in_flight", &labels).set(b.in_flight as f64);
            metrics::gauge!("upbit_limiter_shared_reserved", &labels).set(b.reserved as f64);
            metrics::gauge!("upbit_limiter_shared_ceiling", &labels).set(b.ceiling as f64);
            metrics::gauge!("upbit_limiter_shared_ban_remaining_seconds", &labels)
                .set(left(b.banned_until_us));
            metrics::gauge!("upbit_limiter_shared_pause_remaining_seconds", &labels)
                .set(left(b.paused_until_us));
            metrics::counter!("upbit_limiter_shared_decisions_total", &labels).absolute(s.decisions);
            metrics::counter!("upbit_limiter_shared_admitted_total", &labels).absolute(s.admitted);
            metrics::counter!("upbit_limiter_shared_store_errors_total", &labels).absolute(s.store_errors);
            metrics::counter!("upbit_limiter_shared_report_errors_total", &labels).absolute(s.report_errors);
        }
        Ok(status)
    }
}

/// A granted request: send it, then [`report`](Self::report) its response.
///
/// Reporting is synchronous, as with the local permit: the local limiter
/// learns at once, and the report script runs in a task of its own
/// (`tokio::spawn`, one per report) so that it completes even when the
/// caller's future is dropped right after. If that task cannot run or Redis
/// cannot be reached, the request counts until its maximum flight time: the
/// safe side. Dropping an unreported permit ends the request at the drop,
/// as the local limiter does.
#[must_use = "report the response with SharedPermit::report"]
pub struct SharedPermit {
    inner: Arc<Inner>,
    local: Option<OwnedPermit>,
    ticket: Option<String>,
}

impl fmt::Debug for SharedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPermit")
            .field("local", &self.local)
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl SharedPermit {
    fn new(inner: Arc<Inner>, local: OwnedPermit, ticket: Option<String>) -> Self {
        Self {
            inner,
            local: Some(local),
            ticket,
        }
    }

    /// The group the request was counted in.
    pub fn group(&self) -> Group {
        self.local
            .as_ref()
            .map_or(Group::PublicFallback, OwnedPermit::group)
    }

    /// The store's ticket (`None` for a group that is not shared).
    pub fn ticket(&self) -> Option<&str> {
        self.ticket.as_deref()
    }

    /// Reports the response (status, `Remaining-Req`, the body for 418).
    pub fn report(self, response: Response<'_>) {
        let _ = self.report_with_feedback(response);
    }

    /// As [`report`](Self::report), returning what the response changed locally.
    pub fn report_with_feedback(mut self, response: Response<'_>) -> Feedback {
        self.finish(response).0
    }

    /// As [`report_with_feedback`](Self::report_with_feedback), and waits
    /// until the report is in Redis (before a shutdown, say). The report
    /// runs in its own task all the same: dropping this future does not
    /// cancel it.
    pub async fn report_and_wait(mut self, response: Response<'_>) -> Result<Feedback, StoreError> {
        let (feedback, task) = self.finish(response);
        match task {
            None => Ok(feedback),
            Some(task) => match task.await {
                Ok(done) => done.map(|_| feedback),
                Err(_) => Err(StoreError::Unreachable("the report task was cancelled".into())),
            },
        }
    }

    fn finish(&mut self, response: Response<'_>) -> (Feedback, Option<Report>) {
        let Some(local) = self.local.take() else {
            return (Feedback::default(), None);
        };
        let group = local.group();
        let runtime = *self.inner.local.runtime();
        let is_shared = self.inner.budgets[group.index()].is_some();
        // `Remaining-Req` counts every sharer's requests: the local limiter
        // would read the others as foreign traffic and shrink its share.
        // The report script reads it against every sharer's requests instead.
        let local_view = if is_shared {
            Response {
                remaining_req: None,
                ..response
            }
        } else {
            response
        };
        let feedback = local.report_with_feedback(local_view);
        let now = upbit_limiter_tokio::Runtime::now(&runtime);
        let end = if response.status.is_none() {
            End::NoResponse
        } else {
            End::Response
        };
        let pause_us = if response.status == Some(429) {
            self.inner.budgets[group.index()]
                .as_ref()
                .map_or(0, |b| b.longest_us)
        } else {
            0
        };
        let ban_us = [feedback.banned_until, feedback.scope_ban_until]
            .into_iter()
            .flatten()
            .map(|until| micros(until.saturating_duration_since(now).into()))
            .max()
            .unwrap_or(0);
        let sec = response
            .remaining_req
            .and_then(|v| RemainingReq::parse(v).ok())
            .map(|h| h.sec);
        let shared = Shared {
            pause_us,
            ban_us,
            sec,
        };
        (feedback, self.send_report(group, end, shared))
    }

    fn send_report(&mut self, group: Group, end: End, shared: Shared) -> Option<Report> {
        let ticket = self.ticket.take()?;
        // No runtime to report on: the request counts until its maximum
        // flight time.
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let inner = Arc::clone(&self.inner);
        Some(handle.spawn(async move {
            let budget = inner.budgets[group.index()]
                .as_ref()
                .ok_or(StoreError::MalformedReply)?;
            let c = &inner.counters[group.index()];
            let done = tokio::time::timeout(
                inner.config.store_timeout,
                inner.store.report(budget, &ticket, end, shared, None),
            )
            .await
            .unwrap_or(Err(StoreError::TimedOut));
            match done {
                Ok(_) => c.reports.fetch_add(1, Ordering::Relaxed),
                Err(_) => c.report_errors.fetch_add(1, Ordering::Relaxed),
            };
            done
        }))
    }
}

/// The task running one report script.
type Report = tokio::task::JoinHandle<Result<bool, StoreError>>;

impl Drop for SharedPermit {
    fn drop(&mut self) {
        if let Some(local) = self.local.take() {
            let group = local.group();
            // The local permit's drop ends its request at the drop; the
            // shared one ends the same way.
            drop(local);
            let _ = self.send_report(group, End::Response, Shared::default());
        }
    }
}
