//! Runtime-agnostic async waiting: FIFO per group, deadlines, cancellation,
//! and no background task.
//!
//! The runtime provides only "now" and "sleep until" ([`Runtime`]). A waiter
//! asks the core when it may go, sleeps on its own timer, and claims its slot
//! when it wakes; nothing else runs on its behalf, so there is nothing that
//! can die and leave waiters hanging.
//!
//! [`RateLimiter::acquire`] borrows the limiter; [`RateLimiter::acquire_owned`]
//! (feature `alloc`) takes an `Arc` of it and gives a `'static` permit that
//! can move into another task. Neither borrows the request's path.

use core::cell::UnsafeCell;
use core::fmt;
use core::future::Future;
use core::marker::PhantomPinned;
use core::ops::Deref;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};

use crate::limiter::{
    Admission, ConfigError, Control, Denied, Feedback, GroupLimiter, LimiterConfig, Response, SyncLimiter,
};
use crate::queue::{Waiter, Wakes};
use crate::stats::Counters;
use crate::sync::{AtomicU64, Ordering};
use crate::time::{Duration, Instant};
use crate::upbit::{classify, Group, PocketId, Scope};

/// What a runtime must provide: its clock and a timer.
pub trait Runtime {
    /// The future `sleep_until` returns.
    type Sleep: Future<Output = ()>;
    /// The runtime's own instant type (e.g. `tokio::time::Instant`).
    type Instant: Copy;
    /// Now, on the runtime's clock, as core time.
    fn now(&self) -> Instant;
    /// A future that completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;
    /// A runtime instant as core time (saturating).
    fn core_instant(&self, at: Self::Instant) -> Instant;
    /// A core instant as a runtime instant (saturating; far-future instants
    /// may be clamped to what the runtime can represent).
    fn runtime_instant(&self, at: Instant) -> Self::Instant;
}

/// Why an acquisition failed, for which group and endpoint, and when a retry
/// could succeed. Its `Display` is a complete log line: `group ticker (GET
/// /v1/ticker): deadline cannot be met: earliest admission in 95 ms, 45 ms
/// after the deadline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquireError {
    pocket: Option<PocketId>,
    group: Group,
    endpoint: Endpoint,
    reason: Reason,
    at: Instant,
    retry_at: Instant,
}

/// Why an acquisition failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The earliest possible admission is after the deadline: failed at once
    /// (or as soon as that became true), without sleeping until the deadline.
    Timeout {
        /// The deadline that cannot be met.
        deadline: Instant,
    },
    /// The group's circuit breaker is open after repeated failures.
    CircuitOpen,
    /// The breaker was forced open (an operator's switch): no retry time.
    ForcedOpen,
    /// The server banned the group's scope (HTTP 418).
    Banned,
    /// The interval log's window is full of requests still in flight: a
    /// report may make room sooner than the retry time (which is when their
    /// maximum flight time has passed). Only from a non-waiting try: a
    /// waiter waits for the report.
    InFlight,
}

impl AcquireError {
    fn new(group: Group, endpoint: Endpoint, denied: Denied, at: Instant) -> Self {
        let (reason, retry_at) = match denied {
            Denied::NotYet { earliest } => (Reason::Timeout { deadline: at }, earliest),
            Denied::CircuitOpen { retry_at } if retry_at == Instant::MAX => (Reason::ForcedOpen, retry_at),
            Denied::CircuitOpen { retry_at } => (Reason::CircuitOpen, retry_at),
            Denied::Banned { until } => (Reason::Banned, until),
            Denied::InFlight { at_latest } => (Reason::InFlight, at_latest),
        };
        Self {
            pocket: None,
            group,
            endpoint,
            reason,
            at,
            retry_at,
        }
    }
    fn timeout(group: Group, endpoint: Endpoint, earliest: Instant, deadline: Instant, at: Instant) -> Self {
        Self {
            pocket: None,
            group,
            endpoint,
            reason: Reason::Timeout { deadline },
            at,
            retry_at: earliest,
        }
    }
    fn in_pocket(mut self, pocket: Option<PocketId>) -> Self {
        self.pocket = pocket;
        self
    }
    /// The pocket whose budget refused the request: set for the groups Upbit
    /// counts per pocket, on a limiter that names its pocket
    /// ([`RateLimiter::with_pocket`]).
    pub fn pocket(&self) -> Option<&PocketId> {
        self.pocket.as_ref()
    }
    /// The group the request was counted in.
    pub fn group(&self) -> Group {
        self.group
    }
    /// The request's method and path (without the query), as far as kept.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
    /// Why it failed.
    pub fn reason(&self) -> Reason {
        self.reason
    }
    /// Whether it failed because the deadline could not be met.
    pub fn is_timeout(&self) -> bool {
        matches!(self.reason, Reason::Timeout { .. })
    }
    /// How long after the failure a retry could succeed (`Duration::MAX`
    /// when the breaker is forced open: not until an operator resets it).
    pub fn retry_after(&self) -> core::time::Duration {
        if self.retry_at == Instant::MAX {
            return core::time::Duration::MAX;
        }
        (self.retry_at - self.at).into()
    }
    /// When a retry could succeed, in core time ([`Instant::MAX`]: never by itself).
    pub fn retry_at(&self) -> Instant {
        self.retry_at
    }
    /// When the acquisition failed, in core time.
    pub fn failed_at(&self) -> Instant {
        self.at
    }
}

/// A span for a log line, rounded: `95 ms`, `1.2 s`, `4 min 10 s`, `2 h 5 min`.
struct Human(core::time::Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if self.0 == core::time::Duration::MAX {
            f.write_str("never")
        } else if ms < 1_000 {
            write!(f, "{ms} ms")
        } else if ms < 60_000 {
            let tenths = (ms + 50) / 100;
            write!(f, "{}.{} s", tenths / 10, tenths % 10)
        } else if ms < 3_600_000 {
            let s = (ms + 500) / 1_000;
            write!(f, "{} min {} s", s / 60, s % 60)
        } else {
            let m = (ms + 30_000) / 60_000;
            write!(f, "{} h {} min", m / 60, m % 60)
        }
    }
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pocket) = &self.pocket {
            write!(f, "pocket {pocket}: ")?;
        }
        write!(f, "group {}", self.group)?;
        if !self.endpoint.is_empty() {
            write!(f, " ({})", self.endpoint)?;
        }
        let retry = Human(self.retry_after());
        match self.reason {
            Reason::Timeout { deadline } => {
                let late = Human((self.retry_at - deadline).into());
                write!(
                    f,
                    ": deadline cannot be met: earliest admission in {retry}, {late} after the deadline"
                )
            }
            Reason::CircuitOpen => write!(
                f,
                ": circuit open after repeated failures; a probe may go in {retry}"
            ),
            Reason::ForcedOpen => {
                f.write_str(": circuit forced open by an operator; no retry until it is reset")
            }
            Reason::Banned => write!(f, ": banned by the server (418); the ban ends in {retry}"),
            Reason::InFlight => write!(
                f,
                ": window full of requests in flight; room after the next report, at the latest in {retry}"
            ),
        }
    }
}

impl core::error::Error for AcquireError {}

/// The method and path of a request (without the query), kept inline for
/// errors and logs: at most [`Endpoint::CAPACITY`] bytes, cut at a character
/// boundary.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    bytes: [u8; Endpoint::CAPACITY],
    len: u8,
}

impl Endpoint {
    /// The most bytes kept.
    pub const CAPACITY: usize = 62;
    /// No endpoint (a group acquired directly).
    pub const NONE: Self = Self {
        bytes: [0; Self::CAPACITY],
        len: 0,
    };
    /// `method path`, with the query and fragment left out.
    pub fn new(method: &str, path: &str) -> Self {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut e = Self::NONE;
        for part in [method.trim(), " ", path] {
            for c in part.chars() {
                let mut buf = [0; 4];
                let c = c.encode_utf8(&mut buf).as_bytes();
                let at = usize::from(e.len);
                if at + c.len() > Self::CAPACITY {
                    return e;
                }
                e.bytes[at..at + c.len()].copy_from_slice(c);
                e.len += c.len() as u8;
            }
        }
        e
    }
    /// As text.
    pub fn as_str(&self) -> &str {
        // Only whole characters are ever copied in.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The method (empty when there is no endpoint).
    pub fn method(&self) -> &str {
        self.as_str().split_once(' ').map_or("", |(m, _)| m)
    }
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.as_str().split_once(' ').map_or("", |(_, p)| p)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// When an acquisition gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// At this core instant.
    At(Instant),
    /// This long after the acquisition starts.
    After(core::time::Duration),
}

/// What to acquire: the request's group (classified from its method and
/// path, or given directly for WebSocket messages), an optional deadline and
/// correlation id. Owns everything it needs: it borrows nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The group the request is counted in.
    pub group: Group,
    /// The unit the group's budget is counted per for this request: the
    /// group's [`Group::scope`], except for an authenticated WebSocket
    /// connect, which Upbit counts per pocket ([`Request::authenticated`]).
    pub scope: Scope,
    /// The method and path, for errors and logs.
    pub endpoint: Endpoint,
    /// Fail instead of waiting past this (default: the group's waiter timeout).
    pub deadline: Option<Deadline>,
    /// An id the caller uses to correlate logs; carried into the permit.
    pub correlation_id: Option<u64>,
}

impl Request {
    /// An HTTP request, classified into its Upbit group.
    pub fn http(method: &str, path: &str) -> Self {
        let request = Self::group(classify(method, path));
        let request = Self {
            endpoint: Endpoint::new(method, path),
            ..request
        };
        if is_private_websocket(path) {
            request.authenticated()
        } else {
            request
        }
    }
    /// A unit of a group that has no HTTP path (e.g. a WebSocket message).
    pub fn group(group: Group) -> Self {
        Self {
            group,
            scope: group.scope(),
            endpoint: Endpoint::NONE,
            deadline: None,
            correlation_id: None,
        }
    }
    /// Gives up at `deadline` (core time; see [`RateLimiter::instant`] for a
    /// runtime's instant).
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(Deadline::At(deadline));
        self
    }
    /// Gives up `timeout` after the acquisition starts.
    pub fn timeout(mut self, timeout: core::time::Duration) -> Self {
        self.deadline = Some(Deadline::After(timeout));
        self
    }
    /// Sets a correlation id.
    pub fn correlation_id(mut self, id: u64) -> Self {
        self.correlation_id = Some(id);
        self
    }
    /// The request carries the pocket's credentials (a JWT). Upbit counts an
    /// authenticated WebSocket connect per pocket instead of per IP; every
    /// other group's unit is fixed. [`Request::http`] marks connects to the
    /// private endpoint (`/websocket/v1/private`) by itself.
    pub fn authenticated(mut self) -> Self {
        if self.group == Group::WebsocketConnect {
            self.scope = Scope::Pocket;
        }
        self
    }
}

/// Whether `path` is Upbit's private WebSocket endpoint, which takes only
/// authenticated connects.
fn is_private_websocket(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or("").trim_end_matches('/');
    let tail = "/websocket/v1/private";
    path.len() >= tail.len()
        && path.is_char_boundary(path.len() - tail.len())
        && path[path.len() - tail.len()..].eq_ignore_ascii_case(tail)
}

/// A [`SyncLimiter`] bound to a runtime: the one way to `acquire(...).await`.
///
/// # Pockets
///
/// Upbit counts the quotation groups (and public WebSocket connects) per
/// IP, and the exchange groups (and authenticated connects) per pocket: the
/// main account and each sub-account have budgets of their own. A limiter
/// keeps one of each. For several pockets behind one IP, keep one limiter
/// for the IP and open every pocket from it ([`RateLimiter::add_pocket`]):
/// each pocket has its own budgets for the pocket groups and shares the IP
/// limiter's budgets for the IP groups, so the IP budget is counted once and
/// every pocket runs at its full rate. A 418 on a pocket group bans that
/// pocket only; a 418 on an IP group bans the IP groups of every pocket (and,
/// with [`LimiterConfig::ip_ban_pauses_pocket_groups`], pauses every
/// pocket's groups: each pocket applies it at its next pocket-group request).
/// The IP limiter can be used as a pocket too (name it with
/// [`RateLimiter::with_pocket`]); its authenticated WebSocket connects then
/// share the IP's connect budget, which is stricter than the server.
///
/// ```
/// # use std::sync::Arc;
/// # use upbit_limiter_core::{Clock, Instant, LimiterConfig, ManualClock, Preset, RateLimiter, Runtime};
/// # use upbit_limiter_core::upbit::PocketId;
/// # #[derive(Clone, Default)]
/// # struct Rt(ManualClock);
/// # impl Runtime for Rt {
/// #     type Sleep = std::future::Ready<()>;
/// #     type Instant = Instant;
/// #     fn now(&self) -> Instant { self.0.now() }
/// #     fn sleep_until(&self, _: Instant) -> Self::Sleep { std::future::ready(()) }
/// #     fn core_instant(&self, at: Instant) -> Instant { at }
/// #     fn runtime_instant(&self, at: Instant) -> Instant { at }
/// # }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = LimiterConfig::preset(Preset::Korea);
/// let ip = Arc::new(RateLimiter::<Rt>::new(&config)?);
/// let main = ip.add_pocket(PocketId::new("main")?, &config)?;
/// let sub = ip.add_pocket(PocketId::new("sub-1")?, &config)?;
/// // Orders: 12/s for each pocket. Tickers: 10/s for the two together.
/// # let _ = (main, sub);
/// # Ok(())
/// # }
/// ```
pub struct RateLimiter<R> {
    limiter: SyncLimiter,
    runtime: R,
    pocket: Option<PocketId>,
    /// The limiter whose IP-scoped budgets this pocket shares.
    #[cfg(feature = "alloc")]
    ip: Option<alloc::sync::Arc<RateLimiter<R>>>,
    /// On the limiter that keeps the IP budgets: the end of the latest IP
    /// ban that also pauses pocket groups
    /// ([`LimiterConfig::ip_ban_pauses_pocket_groups`]), in nanoseconds.
    ip_ban_until: AtomicU64,
    /// The latest such ban this pocket has applied to its own groups.
    ip_ban_applied: AtomicU64,
}

impl<R> fmt::Debug for RateLimiter<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pocket) = &self.pocket {
            write!(f, "pocket {pocket}: ")?;
        }
        fmt::Debug::fmt(&self.limiter, f)
    }
}

impl<R: Runtime + Default> RateLimiter<R> {
    /// A limiter for every group with `config`, on the runtime's default clock.
    pub fn new(config: &LimiterConfig) -> Result<Self, ConfigError> {
        Self::with_runtime(config, R::default())
    }
}

/// Something that leads to a [`RateLimiter`]: a reference to it, or (with
/// `alloc`) an `Arc` of it. [`Acquire`] and [`Permit`] hold one, so the same
/// code serves borrowed and owned permits.
pub trait LimiterRef: Deref<Target = RateLimiter<Self::Runtime>> + Clone {
    /// The limiter's runtime.
    type Runtime: Runtime;
}

impl<R: Runtime> LimiterRef for &RateLimiter<R> {
    type Runtime = R;
}

#[cfg(feature = "alloc")]
impl<R: Runtime> LimiterRef for alloc::sync::Arc<RateLimiter<R>> {
    type Runtime = R;
}

impl<R: Runtime> RateLimiter<R> {
    /// A limiter for every group with `config`, on `runtime`.
    pub fn with_runtime(config: &LimiterConfig, runtime: R) -> Result<Self, ConfigError> {
        Ok(Self {
            limiter: SyncLimiter::new(config)?,
            runtime,
            pocket: None,
            #[cfg(feature = "alloc")]
            ip: None,
            ip_ban_until: AtomicU64::new(0),
            ip_ban_applied: AtomicU64::new(0),
        })
    }

    /// Names the pocket this limiter's pocket-scoped budgets belong to (in
    /// errors, status and logs).
    pub fn with_pocket(mut self, pocket: PocketId) -> Self {
        self.pocket = Some(pocket);
        self
    }

    /// The pocket's name, if it has one.
    pub fn pocket(&self) -> Option<&PocketId> {
        self.pocket.as_ref()
    }

    /// The core limiter of this pocket's own budgets (configuration changes,
    /// direct decisions). For a pocket opened with
    /// [`RateLimiter::add_pocket`], the IP-scoped groups in it are unused:
    /// [`RateLimiter::budget`] and [`RateLimiter::group`] lead to the ones
    /// that count.
    pub fn limiter(&self) -> &SyncLimiter {
        &self.limiter
    }

    /// The core limiter that keeps this pocket's budgets of `scope`: the one
    /// shared with the other pockets for [`Scope::Ip`], this pocket's own
    /// otherwise.
    pub fn budget(&self, scope: Scope) -> &SyncLimiter {
        #[cfg(feature = "alloc")]
        if let (Scope::Ip, Some(ip)) = (scope, &self.ip) {
            return &ip.limiter;
        }
        let _ = scope;
        &self.limiter
    }

    /// The limiter of `group` as this pocket counts it (by the group's
    /// [`Group::scope`]).
    pub fn group(&self, group: Group) -> &GroupLimiter {
        self.budget(group.scope()).group(group)
    }

    /// Every group's status at `now` as this pocket counts it, in
    /// [`Group::ALL`] order.
    pub fn status(&self, now: Instant) -> [crate::limiter::GroupStatus; Group::COUNT] {
        core::array::from_fn(|i| self.group(Group::ALL[i]).status(now))
    }

    /// The pocket to name in an error for a request of `scope`.
    fn pocket_of(&self, scope: Scope) -> Option<PocketId> {
        if scope == Scope::Pocket {
            self.pocket
        } else {
            None
        }
    }

    /// Reports `response` to the budget that admitted it. An IP ban that
    /// pauses pocket groups is recorded where every pocket of the IP sees it.
    fn on_response(
        &self,
        scope: Scope,
        admission: &Admission,
        response: Response<'_>,
        now: Instant,
    ) -> Feedback {
        let budget = self.budget(scope);
        let fb = budget.on_response(admission, response, now);
        if scope == Scope::Ip && budget.ip_ban_pauses_pocket_groups() {
            let shared = &self.ip_budget_owner().ip_ban_until;
            if let Some(until) = fb.scope_ban_until.or(fb.banned_until) {
                shared.fetch_max(until.as_nanos(), Ordering::AcqRel);
            }
            if let Some(hold) = fb.ban_lifted {
                // The IP's probe passed: the hold it set ends now (a longer
                // ban recorded since is kept).
                let _ = shared.compare_exchange(
                    hold.as_nanos(),
                    now.as_nanos(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
        fb
    }

    /// The limiter that keeps the IP budgets (this one, or the one its
    /// pocket was opened from).
    fn ip_budget_owner(&self) -> &Self {
        #[cfg(feature = "alloc")]
        if let Some(ip) = &self.ip {
            return ip;
        }
        self
    }

    /// Before a pocket-group decision: applies an IP ban that pauses pocket
    /// groups, if one was seen through another pocket since the last look,
    /// and ends the one applied if the IP's probe has passed since.
    ///
    /// (A waiter already queued in a pocket group when the probe passes
    /// learns of it with the pocket's next decision, or when its ban ends.)
    fn sync_ip_ban(&self, scope: Scope, now: Instant) {
        if scope != Scope::Pocket {
            return;
        }
        let until = self.ip_budget_owner().ip_ban_until.load(Ordering::Acquire);
        let applied = self.ip_ban_applied.load(Ordering::Acquire);
        let pocket_groups = || Group::ALL.into_iter().filter(|g| g.scope() == Scope::Pocket);
        if until < applied {
            // Lifted early: the applied ban's hold ends (once per lift).
            if self
                .ip_ban_applied
                .compare_exchange(applied, until, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                for g in pocket_groups() {
                    self.limiter
                        .group(g)
                        .lift_scope_ban(Instant::from_nanos(applied), now);
                }
            }
            return;
        }
        if until <= now.as_nanos() || until == applied {
            return;
        }
        self.ip_ban_applied.fetch_max(until, Ordering::AcqRel);
        for g in pocket_groups() {
            self.limiter
                .group(g)
                .ban_scope_until(Instant::from_nanos(until), now);
        }
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Now, on the runtime's clock, as core time.
    pub fn now(&self) -> Instant {
        self.runtime.now()
    }

    /// A runtime instant as the core time this limiter runs on (for
    /// [`Request::deadline`]).
    pub fn instant(&self, at: R::Instant) -> Instant {
        self.runtime.core_instant(at)
    }

    /// When `error` says a retry could succeed, as a runtime instant.
    pub fn retry_at(&self, error: &AcquireError) -> R::Instant {
        self.runtime.runtime_instant(error.retry_at())
    }

    /// Waits for a slot for `method path` (default deadline), in FIFO order
    /// within its group.
    pub fn acquire(&self, method: &str, path: &str) -> Acquire<&Self> {
        self.acquire_request(Request::http(method, path))
    }

    /// Waits for a slot for `request`.
    pub fn acquire_request(&self, request: Request) -> Acquire<&Self> {
        Acquire::new(self, request)
    }

    /// Decides now without waiting: a permit, or why not and when to retry.
    /// Never jumps ahead of queued waiters.
    pub fn try_acquire(&self, method: &str, path: &str) -> Result<Permit<&Self>, AcquireError> {
        self.try_acquire_request(Request::http(method, path))
    }

    /// [`RateLimiter::try_acquire`] for `request` (its deadline is ignored).
    pub fn try_acquire_request(&self, request: Request) -> Result<Permit<&Self>, AcquireError> {
        Permit::try_new(self, request)
    }
}

#[cfg(feature = "alloc")]
impl<R: Runtime + Clone> RateLimiter<R> {
    /// Opens another pocket on the same IP: a limiter with budgets of its
    /// own for the pocket-scoped groups, configured by `config`, that shares
    /// this limiter's budgets for the IP-scoped groups (their entries in
    /// `config` are not used). Opened from a pocket that was itself opened
    /// this way, it shares the same IP budgets.
    pub fn add_pocket(
        self: &alloc::sync::Arc<Self>,
        pocket: PocketId,
        config: &LimiterConfig,
    ) -> Result<alloc::sync::Arc<Self>, ConfigError> {
        let ip = self.ip.clone().unwrap_or_else(|| self.clone());
        let mut limiter = Self::with_runtime(config, self.runtime.clone())?.with_pocket(pocket);
        limiter.ip = Some(ip);
        Ok(alloc::sync::Arc::new(limiter))
    }
}

#[cfg(feature = "alloc")]
impl<R: Runtime> RateLimiter<R> {
    /// As [`RateLimiter::acquire`], on an `Arc` of the limiter: the permit is
    /// `'static` and can move into another task (like tokio's
    /// `Semaphore::acquire_owned`).
    pub fn acquire_owned(
        self: alloc::sync::Arc<Self>,
        method: &str,
        path: &str,
    ) -> Acquire<alloc::sync::Arc<Self>> {
        Acquire::new(self, Request::http(method, path))
    }

    /// As [`RateLimiter::acquire_request`], owned.
    pub fn acquire_request_owned(
        self: alloc::sync::Arc<Self>,
        request: Request,
    ) -> Acquire<alloc::sync::Arc<Self>> {
        Acquire::new(self, request)
    }

    /// As [`RateLimiter::try_acquire_request`], owned.
    pub fn try_acquire_owned(
        self: alloc::sync::Arc<Self>,
        request: Request,
    ) -> Result<Permit<alloc::sync::Arc<Self>>, AcquireError> {
        Permit::try_new(self, request)
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

/// The future returned by [`RateLimiter::acquire`] (and `acquire_owned`).
///
/// It holds its own queue node: no allocation per waiter. It is `!Unpin`
/// because the group's queue points into it while it waits; dropping it
/// unlinks it.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<L: LimiterRef> {
    owner: L,
    waiting: Waiting,
    sleep: Option<<L::Runtime as Runtime>::Sleep>,
    sleep_until: Instant,
    _pinned: PhantomPinned,
}

/// The part of an [`Acquire`] that the locked steps change.
///
/// `!Unpin` like the future itself: the queue holds raw pointers into `node`
/// across polls, and a `&mut` to an `Unpin` struct around it would claim
/// unique access to memory those pointers still use (Miri's Stacked Borrows
/// flags it); a `&mut` to a `!Unpin` type claims no such uniqueness.
struct Waiting {
    request: Request,
    started: Instant,
    deadline: Instant,
    phase: Phase,
    node: UnsafeCell<Waiter>,
    _pinned: PhantomPinned,
}

// SAFETY: the node is only touched under the group's lock; the rest is plain
// data, sent with the handle (a `&RateLimiter` is `Send` when the limiter is
// `Sync`, an `Arc` when it is `Send + Sync`).
unsafe impl<L: LimiterRef + Send> Send for Acquire<L> where <L::Runtime as Runtime>::Sleep: Send {}

impl<L: LimiterRef> fmt::Debug for Acquire<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("request", &self.waiting.request)
            .field("phase", &self.waiting.phase)
            .field("deadline", &self.waiting.deadline)
            .finish_non_exhaustive()
    }
}

/// What one locked step decided.
enum Step<T> {
    Ready(T),
    SleepUntil(Instant),
}

impl<L: LimiterRef> Acquire<L> {
    fn new(owner: L, request: Request) -> Self {
        Self {
            owner,
            waiting: Waiting {
                request,
                started: Instant::ZERO,
                deadline: Instant::MAX,
                phase: Phase::Init,
                node: UnsafeCell::new(Waiter::new()),
                _pinned: PhantomPinned,
            },
            sleep: None,
            sleep_until: Instant::ZERO,
            _pinned: PhantomPinned,
        }
    }

    fn finish(
        &mut self,
        result: Result<Admission, AcquireError>,
        now: Instant,
    ) -> Poll<<Self as Future>::Output> {
        let w = &mut self.waiting;
        w.phase = Phase::Done;
        let scope = w.request.scope;
        let pocket = self.owner.pocket_of(scope);
        Poll::Ready(
            result
                .map(|admission| {
                    let waited = now - w.started;
                    self.owner
                        .budget(scope)
                        .group(w.request.group)
                        .counters
                        .record_wait(waited);
                    Permit {
                        owner: self.owner.clone(),
                        admission,
                        scope,
                        waited,
                        correlation_id: w.request.correlation_id,
                        reported: false,
                    }
                })
                .map_err(|e| e.in_pocket(pocket)),
        )
    }
}

impl Waiting {
    fn fail(&self, denied: Denied, at: Instant) -> AcquireError {
        AcquireError::new(self.request.group, self.request.endpoint, denied, at)
    }

    fn timeout(&self, earliest: Instant, at: Instant) -> AcquireError {
        AcquireError::timeout(
            self.request.group,
            self.request.endpoint,
            earliest,
            self.deadline,
            at,
        )
    }

    fn node_ptr(&self) -> NonNull<Waiter> {
        // SAFETY: `UnsafeCell::get` never returns null.
        unsafe { NonNull::new_unchecked(self.node.get()) }
    }

    /// Leaves the queue with `result`, handing the turn on.
    fn leave(
        &mut self,
        group: &GroupLimiter,
        c: &mut Control,
        now: Instant,
        wakes: &mut Wakes,
        result: Result<Admission, AcquireError>,
    ) -> Step<Result<Admission, AcquireError>> {
        if matches!(&result, Err(e) if e.is_timeout()) {
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
        group: &GroupLimiter,
        c: &mut Control,
        now: Instant,
        wakes: &mut Wakes,
        waker: &Waker,
    ) -> Step<Result<Admission, AcquireError>> {
        let node = self.node_ptr();
        if self.phase == Phase::Init {
            self.deadline = match self.request.deadline {
                Some(Deadline::At(at)) => at,
                Some(Deadline::After(d)) => self.started.saturating_add(d.into()),
                None => self.started.saturating_add(c.config().waiter_timeout),
            };
            match group.acquire_locked(c, now, false) {
                Ok(admission) => return Step::Ready(Ok(admission)),
                Err(denied @ (Denied::NotYet { .. } | Denied::InFlight { .. })) => {
                    // Everyone already queued goes first. (Behind requests in
                    // flight the turn depends on their reports: no estimate.)
                    let estimate = group.earliest_after(now, c.queue.len() as u64);
                    if matches!(denied, Denied::NotYet { .. }) && estimate > self.deadline {
                        Counters::bump(&group.counters.timeouts);
                        return Step::Ready(Err(self.timeout(estimate, now)));
                    }
                    // SAFETY: the node lives in this pinned future until it is
                    // unlinked (by us, or by `Drop`); we hold the lock.
                    unsafe { c.queue.push_back(node) };
                    Counters::bump(&group.counters.waits);
                    self.phase = Phase::Queued;
                    group.publish(c, now);
                }
                Err(denied) => return Step::Ready(Err(self.fail(denied, now))),
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
                    let error = self.timeout(group.earliest(now), now);
                    return self.leave(group, c, now, wakes, Err(error));
                }
                let result = match group.acquire_locked(c, now, true) {
                    Ok(admission) => Ok(admission),
                    Err(Denied::NotYet { earliest }) if earliest <= self.deadline => {
                        // SAFETY: under the lock; the node is linked.
                        unsafe { c.queue.set_due(node, earliest) };
                        return Step::SleepUntil(earliest);
                    }
                    Err(Denied::NotYet { earliest }) => Err(self.timeout(earliest, now)),
                    Err(Denied::InFlight { at_latest }) if now < self.deadline => {
                        // A report wakes us; at the latest, their flight time ends.
                        let until = at_latest.min(self.deadline);
                        // SAFETY: under the lock; the node is linked.
                        unsafe { c.queue.set_due(node, at_latest) };
                        return Step::SleepUntil(until);
                    }
                    Err(Denied::InFlight { at_latest }) => Err(self.timeout(at_latest, now)),
                    Err(denied) => Err(self.fail(denied, now)),
                };
                return self.leave(group, c, now, wakes, result);
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
                let error = self.timeout(turn, now);
                return self.leave(group, c, now, wakes, Err(error));
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

/// Reads the runtime's clock for `group`, counting a reading behind what the
/// group had seen before it as a clock regression.
fn read_clock<R: Runtime>(runtime: &R, group: &GroupLimiter) -> Instant {
    // Loaded before the clock is read: every instant in it came from a
    // reading taken before this one, so on a monotonic clock this reading is
    // never behind it, however threads race (see `GroupLimiter::latest_seen`).
    let seen = group.latest_seen();
    let now = runtime.now();
    if now < seen {
        group.note_clock_regression();
    }
    now
}

impl<L: LimiterRef> Future for Acquire<L> {
    type Output = Result<Permit<L>, AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: nothing is moved out of `this`; `sleep` is re-pinned below
        // and the node never moves while linked.
        let this = unsafe { self.get_unchecked_mut() };
        if this.waiting.phase == Phase::Done {
            this.waiting.phase = Phase::Init;
        }
        let mut spins = 0;
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                // SAFETY: `sleep` is structurally pinned: it is only dropped in place.
                if unsafe { Pin::new_unchecked(sleep) }.poll(cx).is_ready() {
                    this.sleep = None;
                }
            }
            let request = &this.waiting.request;
            let group = this.owner.budget(request.scope).group(request.group);
            let raw = read_clock(&this.owner.runtime, group);
            if this.waiting.phase == Phase::Init {
                this.owner.sync_ip_ban(this.waiting.request.scope, raw);
                // The lock-free fast path first: an uncontended acquire takes no lock.
                this.waiting.started = raw;
                match group.try_acquire(raw) {
                    Ok(admission) => return this.finish(Ok(admission), raw),
                    Err(Denied::NotYet { .. } | Denied::InFlight { .. }) => {}
                    Err(denied) => {
                        let error = this.waiting.fail(denied, raw);
                        return this.finish(Err(error), raw);
                    }
                }
            }
            let now = group.observe_now(raw);
            let mut wakes = Wakes::default();
            let waiting = &mut this.waiting;
            let step = group
                .control
                .with(|c| waiting.step_locked(group, c, now, &mut wakes, cx.waker()));
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

impl<L: LimiterRef> Drop for Acquire<L> {
    fn drop(&mut self) {
        let w = &self.waiting;
        if w.phase != Phase::Queued {
            return;
        }
        let group = self.owner.budget(w.request.scope).group(w.request.group);
        let node = w.node_ptr();
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

/// A granted slot. Report the response with [`Permit::report`]. A permit
/// dropped unreported counts as neither success nor failure, and its request
/// as ended at the drop: hold the permit until the response has arrived.
///
/// `Permit<&RateLimiter<R>>` borrows the limiter; `Permit<Arc<RateLimiter<R>>>`
/// (from `acquire_owned`) is `'static`.
#[must_use = "report the response with Permit::report"]
pub struct Permit<L: LimiterRef> {
    owner: L,
    admission: Admission,
    scope: Scope,
    waited: Duration,
    correlation_id: Option<u64>,
    reported: bool,
}

impl<L: LimiterRef> fmt::Debug for Permit<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("admission", &self.admission)
            .field("waited", &self.waited)
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

impl<L: LimiterRef> Permit<L> {
    /// A permit now, or why not (never jumps ahead of queued waiters).
    fn try_new(owner: L, request: Request) -> Result<Self, AcquireError> {
        let group = owner.budget(request.scope).group(request.group);
        let now = read_clock(&owner.runtime, group);
        owner.sync_ip_ban(request.scope, now);
        match group.try_acquire(now) {
            Ok(admission) => {
                group.counters.record_wait(Duration::ZERO);
                Ok(Self {
                    owner,
                    admission,
                    scope: request.scope,
                    waited: Duration::ZERO,
                    correlation_id: request.correlation_id,
                    reported: false,
                })
            }
            Err(denied) => Err(AcquireError::new(request.group, request.endpoint, denied, now)
                .in_pocket(owner.pocket_of(request.scope))),
        }
    }
    /// The admission (group, instant, sequence number).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }
    /// The group the request was counted in.
    pub fn group(&self) -> Group {
        self.admission.group
    }
    /// How long the acquisition waited.
    pub fn waited(&self) -> core::time::Duration {
        self.waited.into()
    }
    /// The caller's correlation id, if it gave one.
    pub fn correlation_id(&self) -> Option<u64> {
        self.correlation_id
    }
    /// Reports the response: status, `Remaining-Req`, and the body for 418.
    pub fn report(self, response: Response<'_>) {
        let _ = self.report_with_feedback(response);
    }
    /// As [`Permit::report`], returning what the response changed (for logs
    /// and metrics).
    pub fn report_with_feedback(mut self, response: Response<'_>) -> Feedback {
        self.reported = true;
        let group = self.owner.budget(self.scope).group(self.admission.group);
        let now = read_clock(&self.owner.runtime, group);
        self.owner.on_response(self.scope, &self.admission, response, now)
    }
}

impl<L: LimiterRef> Drop for Permit<L> {
    fn drop(&mut self) {
        if !self.reported {
            let group = self.owner.budget(self.scope).group(self.admission.group);
            let now = read_clock(&self.owner.runtime, group);
            group.on_dropped(&self.admission, now);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::format;

    const MS: u64 = 1_000_000;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * MS)
    }

    #[test]
    fn errors_name_the_group_and_endpoint_say_why_and_in_how_long() {
        let ticker = Endpoint::new("GET", "/v1/ticker?markets=KRW-BTC");
        let e = AcquireError::timeout(Group::Ticker, ticker, at(1_208), at(1_113), at(1_113));
        assert_eq!(
            format!("{e}"),
            "group ticker (GET /v1/ticker): deadline cannot be met: earliest admission in 95 ms, 95 ms after the deadline"
        );
        assert_eq!(e.retry_after(), core::time::Duration::from_millis(95));
        let order = Endpoint::new("POST", "/v1/orders");
        let banned = AcquireError::new(
            Group::Order,
            order,
            Denied::Banned { until: at(32_252) },
            at(1_000),
        );
        assert_eq!(
            format!("{banned}"),
            "group order (POST /v1/orders): banned by the server (418); the ban ends in 31.3 s"
        );
        let open = AcquireError::new(
            Group::Ticker,
            Endpoint::NONE,
            Denied::CircuitOpen {
                retry_at: at(251_000),
            },
            at(1_000),
        );
        assert_eq!(
            format!("{open}"),
            "group ticker: circuit open after repeated failures; a probe may go in 4 min 10 s"
        );
        let forced = AcquireError::new(
            Group::Ticker,
            Endpoint::NONE,
            Denied::CircuitOpen {
                retry_at: Instant::MAX,
            },
            at(1),
        );
        assert_eq!(
            format!("{forced}"),
            "group ticker: circuit forced open by an operator; no retry until it is reset"
        );
        assert_eq!(forced.retry_after(), core::time::Duration::MAX);
        let long = AcquireError::new(
            Group::Order,
            order,
            Denied::Banned { until: at(7_501_000) },
            at(1_000),
        );
        assert!(format!("{long}").ends_with("the ban ends in 2 h 5 min"), "{long}");
        // Only a deadline that cannot be met is a timeout; each error keeps
        // the instant it failed at.
        assert!(e.is_timeout() && !banned.is_timeout() && !open.is_timeout() && !forced.is_timeout());
        assert_eq!((e.failed_at(), banned.failed_at()), (at(1_113), at(1_000)));
    }

    #[test]
    fn spans_change_unit_exactly_at_a_second_a_minute_and_an_hour() {
        let human = |ms: u64| format!("{}", Human(core::time::Duration::from_millis(ms)));
        assert_eq!(human(999), "999 ms");
        assert_eq!(human(1_000), "1.0 s");
        assert_eq!(human(59_940), "59.9 s");
        assert_eq!(human(60_000), "1 min 0 s");
        assert_eq!(human(3_599_000), "59 min 59 s");
        assert_eq!(human(3_600_000), "1 h 0 min");
        assert_eq!(format!("{}", Human(core::time::Duration::MAX)), "never");
    }

    #[test]
    fn only_the_private_websocket_endpoint_is_counted_per_pocket_by_itself() {
        for path in [
            "/websocket/v1/private",
            "wss://api.upbit.com/websocket/v1/private",
            "/WebSocket/V1/Private/",
            "/websocket/v1/private?x=1#y",
        ] {
            assert!(is_private_websocket(path), "{path}");
            assert_eq!(Request::http("GET", path).scope, Scope::Pocket, "{path}");
        }
        for path in [
            "/websocket/v1",
            "/websocket/v1/privat",
            "/websocket/v1/private/x",
            "/private",
            "",
            "가/websocket/v1/privat가",
            "/v1/private?/websocket/v1/private",
        ] {
            assert!(!is_private_websocket(path), "{path}");
            assert_eq!(
                Request::http("GET", path).scope,
                classify("GET", path).scope(),
                "{path}"
            );
        }
        // The tail is compared from a character boundary, whatever comes before it.
        assert!(is_private_websocket("가/websocket/v1/private"));
        // A private path outside the WebSocket group changes nothing.
        assert!(is_private_websocket("/v2/websocket/v1/private"));
        assert_eq!(Request::http("GET", "/v2/websocket/v1/private").scope, Scope::Ip);
    }

    #[test]
    fn endpoints_drop_the_query_and_cut_at_a_character_boundary() {
        let e = Endpoint::new(" get ", "/v1/candles/minutes/5?market=KRW-BTC#x");
        assert_eq!(
            (e.as_str(), e.method(), e.path()),
            ("get /v1/candles/minutes/5", "get", "/v1/candles/minutes/5")
        );
        let long = std::string::String::from("/v1/") + &"가".repeat(40);
        let e = Endpoint::new("GET", &long);
        assert!(e.as_str().len() <= Endpoint::CAPACITY && long.starts_with(e.path()));
        assert!(Endpoint::NONE.is_empty() && Endpoint::NONE.path().is_empty());
        // Debug shows the text, quoted.
        assert_eq!(format!("{e:?}"), format!("{:?}", e.as_str()));
        assert_eq!(
            format!("{:?}", Endpoint::new("GET", "/v1/ticker")),
            "\"GET /v1/ticker\""
        );
    }
}
