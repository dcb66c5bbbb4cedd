//! [`Instrumented`]: the async limiter with configuration control, emergency
//! mode, metrics, tracing, status and health in one place.

use core::future::{poll_fn, Future};
use core::pin::pin;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tracing::Instrument as _;
use upbit_limiter_core::adaptive::Ratio;
use upbit_limiter_core::breaker::BreakerState;
use upbit_limiter_core::upbit::{PocketId, Scope};
use upbit_limiter_core::{
    AcquireError, Admission, Deadline, Duration, Feedback, Group, Instant, LimiterConfig, Quota, RateLimiter,
    Request, Response, Runtime,
};

use crate::config::{validate, ConfigErrors, Issue, OpsConfig, Origin, Problem};
use crate::control::{Control, Emergency};
use crate::health::{evaluate, HealthReport, Thresholds};
use crate::samples::{Ring, Sample};
use crate::status::{effective_interval, group_report, Pending, Recent, Status};
use crate::telemetry::{self, Outcome, Series};

/// The comprehensive status: the snapshot and its health evaluation, as one
/// serialisable value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    /// Everything about the limiter.
    pub status: Status,
    /// The thresholds evaluated over it.
    pub health: HealthReport,
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    id: u64,
    started: Instant,
    /// Core admits or fails every waiter by its deadline; one still pending
    /// well after it is not being woken or not being polled.
    deadline: Instant,
}

const BREAKER_STATES: [BreakerState; 5] = [
    BreakerState::Closed,
    BreakerState::Open,
    BreakerState::HalfOpen,
    BreakerState::ForcedOpen,
    BreakerState::Disabled,
];

fn breaker_code(s: BreakerState) -> u8 {
    BREAKER_STATES.iter().position(|&b| b == s).unwrap_or(0) as u8
}

/// How often the gauges that change with time alone are refreshed, at most:
/// the first [`Instrumented::acquire`] or [`Permit::report`] at or after
/// this long since the last refresh republishes every metric.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One group's pending acquisitions, recent admissions, and the last state
/// seen (to report changes that happen lazily, such as recovery steps).
///
/// Nothing here is shared between groups. An acquisition admitted at once
/// takes no lock here: it writes its slot of `samples`. One that waits also
/// registers in `waiters`, whose lock every publication of the group's
/// metrics holds, so that the last value published is never older than the
/// last change.
#[derive(Debug)]
#[repr(align(128))]
struct GroupTrack {
    next_id: AtomicU64,
    waiters: Mutex<Vec<Waiter>>,
    samples: Ring,
    last_ratio: AtomicU32,
    last_breaker: AtomicU8,
    last_reserve: AtomicU32,
    /// When the last [`LONG_TRIPS_KEPT`] round trips longer than the jitter
    /// margin were reported (nanoseconds; 0: none), for the recent count.
    long_trips: [AtomicU64; LONG_TRIPS_KEPT],
    long_trips_seen: AtomicU64,
}

/// The most round trips over the margin the recent window counts.
pub(crate) const LONG_TRIPS_KEPT: usize = 32;

/// Every group's [`GroupTrack`], and the few settings the acquire path reads
/// (as atomics, so that it takes no lock shared between groups).
#[derive(Debug)]
struct Tracker {
    /// The pocket the limiter names, for the series of its pocket groups.
    pocket: Option<PocketId>,
    groups: [GroupTrack; Group::COUNT],
    /// [`Thresholds::window`] in nanoseconds.
    window: AtomicU64,
    /// [`Thresholds::stall_grace`] in nanoseconds.
    stall_grace: AtomicU64,
    /// When the next upkeep is due (nanoseconds on the limiter's clock).
    next_upkeep: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a poisoned lock is usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A registered waiter; unregisters on drop (admitted, failed or cancelled).
struct WaiterGuard<'a, R: Runtime> {
    owner: &'a Instrumented<R>,
    group: Group,
    id: u64,
}

impl<R: Runtime> Drop for WaiterGuard<'_, R> {
    fn drop(&mut self) {
        let now = self.owner.now();
        self.owner.tracker.unregister(self.group, self.id, now);
    }
}

fn pending_of(waiters: &[Waiter], now: Instant, grace: Duration) -> Pending {
    let mut p = Pending::default();
    for waiter in waiters {
        p.waiting += 1;
        if now > waiter.deadline.saturating_add(grace) {
            p.stalled += 1;
        }
        p.oldest = p.oldest.max(now - waiter.started);
    }
    p
}

impl GroupTrack {
    fn new() -> Self {
        Self {
            next_id: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            samples: Ring::default(),
            last_ratio: AtomicU32::new(Ratio::ONE.ppm()),
            last_breaker: AtomicU8::new(breaker_code(BreakerState::Closed)),
            last_reserve: AtomicU32::new(0),
            long_trips: std::array::from_fn(|_| AtomicU64::new(0)),
            long_trips_seen: AtomicU64::new(0),
        }
    }

    /// A round trip longer than the margin was reported at `now`.
    fn long_trip(&self, now: Instant) {
        let n = self.long_trips_seen.fetch_add(1, Ordering::Relaxed);
        self.long_trips[(n % LONG_TRIPS_KEPT as u64) as usize]
            .store(now.as_nanos().max(1), Ordering::Relaxed);
    }

    fn recent(&self, now: Instant, window: Duration, quota: &Quota, ratio: Ratio) -> Recent {
        let in_window = self.samples.between(before(now, window), now);
        let interval = effective_interval(quota, ratio);
        let capacity = if window.is_zero() {
            0
        } else {
            u64::from(quota.burst())
                .saturating_add(window.as_nanos().div_ceil(interval.as_nanos().max(1)))
                .saturating_sub(1)
        };
        let mut waits: Vec<Duration> = in_window.iter().map(|x| x.waited).collect();
        waits.sort_unstable();
        let drifts: Vec<Duration> = in_window.iter().filter_map(|x| x.drift).collect();
        let drift_total: u128 = drifts.iter().map(|d| u128::from(d.as_nanos())).sum();
        let tat_drift = if drifts.is_empty() {
            0.0
        } else {
            drift_total as f64 / drifts.len() as f64 / interval.as_nanos().max(1) as f64
        };
        let after = before(now, window).map_or(0, Instant::as_nanos);
        let long_trips = self
            .long_trips
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .filter(|&t| t > after && t <= now.as_nanos())
            .count() as u64;
        Recent {
            window,
            round_trips_over_margin: long_trips,
            admissions: in_window.len() as u64,
            waited: in_window.iter().filter(|x| !x.waited.is_zero()).count() as u64,
            utilisation: if capacity == 0 {
                0.0
            } else {
                in_window.len() as f64 / capacity as f64
            },
            wait_p50: nearest_rank(&waits, 0.50),
            wait_p95: nearest_rank(&waits, 0.95),
            wait_p99: nearest_rank(&waits, 0.99),
            tat_drift,
            drift_max: drifts.iter().copied().max().unwrap_or(Duration::ZERO),
        }
    }

    /// Notes the ratio seen now; reports a change from the last one seen.
    fn sync_ratio(&self, series: Series, ratio: Ratio) {
        let prev = self.last_ratio.swap(ratio.ppm(), Ordering::AcqRel);
        if prev != ratio.ppm() {
            if let Some(prev) = Ratio::from_ppm(prev) {
                telemetry::ratio_changed(series, prev, ratio);
            }
        }
    }

    /// Notes the places held back for others seen now; reports their coming
    /// and going.
    fn sync_reserve(&self, series: Series, reserve: u32) {
        let prev = self.last_reserve.swap(reserve, Ordering::AcqRel);
        if prev != reserve {
            telemetry::reserve_changed(series, prev, reserve);
        }
    }

    /// Notes the breaker state seen now; reports a change from the last one seen.
    fn sync_breaker(&self, series: Series, state: BreakerState) {
        let prev = self.last_breaker.swap(breaker_code(state), Ordering::AcqRel);
        if prev != breaker_code(state) {
            let prev = BREAKER_STATES[usize::from(prev).min(BREAKER_STATES.len() - 1)];
            telemetry::breaker_transition(series, prev, state);
        }
    }
}

impl Tracker {
    fn new(thresholds: &Thresholds, pocket: Option<PocketId>) -> Self {
        Self {
            pocket,
            groups: core::array::from_fn(|_| GroupTrack::new()),
            window: AtomicU64::new(thresholds.window.as_nanos()),
            stall_grace: AtomicU64::new(thresholds.stall_grace.as_nanos()),
            next_upkeep: AtomicU64::new(0),
        }
    }

    fn group(&self, group: Group) -> &GroupTrack {
        &self.groups[group.index()]
    }

    fn series(&self, group: Group) -> Series {
        Series::new(group, self.pocket)
    }

    fn window(&self) -> Duration {
        Duration::from_nanos(self.window.load(Ordering::Relaxed))
    }

    fn stall_grace(&self) -> Duration {
        Duration::from_nanos(self.stall_grace.load(Ordering::Relaxed))
    }

    fn set_thresholds(&self, t: &Thresholds) {
        self.window.store(t.window.as_nanos(), Ordering::Relaxed);
        self.stall_grace
            .store(t.stall_grace.as_nanos(), Ordering::Relaxed);
    }

    /// Registers a waiter of `group` and publishes the group's pending gauges.
    fn register(&self, group: Group, started: Instant, deadline: Instant) -> u64 {
        let track = self.group(group);
        let id = track.next_id.fetch_add(1, Ordering::Relaxed);
        let mut w = lock(&track.waiters);
        w.push(Waiter {
            id,
            started,
            deadline,
        });
        let p = pending_of(&w, started, self.stall_grace());
        telemetry::record_pending(self.series(group), p.waiting, p.stalled);
        id
    }

    /// Removes a waiter and publishes the group's pending gauges.
    fn unregister(&self, group: Group, id: u64, now: Instant) {
        let mut w = lock(&self.group(group).waiters);
        if let Some(i) = w.iter().position(|x| x.id == id) {
            w.swap_remove(i);
        }
        let p = pending_of(&w, now, self.stall_grace());
        telemetry::record_pending(self.series(group), p.waiting, p.stalled);
    }

    /// Claims the upkeep due at or before `now`: true for one caller per
    /// [`UPKEEP_INTERVAL`].
    fn claim_upkeep(&self, now: Instant) -> bool {
        let due = self.next_upkeep.load(Ordering::Relaxed);
        now.as_nanos() >= due
            && self
                .next_upkeep
                .compare_exchange(
                    due,
                    now.saturating_add(UPKEEP_INTERVAL).as_nanos(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// `at - window`, or `None` when that is before the clock's epoch (so that
/// the window `(at - window, at]` holds everything since the epoch).
fn before(at: Instant, window: Duration) -> Option<Instant> {
    at.as_nanos()
        .checked_sub(window.as_nanos())
        .map(Instant::from_nanos)
}

/// The `q`-quantile of sorted `values` by nearest rank; zero when empty.
fn nearest_rank(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The async limiter, instrumented and under operator control.
///
/// - [`acquire`](Self::acquire) runs inside a `tracing` span `acquire` with
///   `group`, `endpoint`, `method`, `correlation_id`, and records `outcome` and
///   `waited_ms` on it; it feeds the wait and drift histograms, the pending
///   waiters (queue depth, stalled waiters) and the recent statistics.
/// - [`Permit::report`] emits an event for every state change the response
///   caused (ratio, breaker, ban); changes that happen lazily (recovery steps,
///   open to half-open) are reported when next observed.
/// - [`apply`](Self::apply), [`reload`](Self::reload),
///   [`enter_emergency`](Self::enter_emergency) change the configuration of the
///   running limiter, keeping every group's state; emergency mode ends by
///   itself on the first call at or after its end.
/// - [`status`](Self::status), [`health`](Self::health),
///   [`snapshot`](Self::snapshot), [`record_metrics`](Self::record_metrics).
///
/// The metrics keep themselves current: every change the limiter sees is
/// published as it happens (a waiter queued or gone, a report, a
/// configuration change, emergency mode), and everything, including what
/// changes with time alone, is republished at most every
/// [`UPKEEP_INTERVAL`] by the acquisition or report that finds it due. An
/// exporter's own listener serves current values without any call from you.
///
/// No lock is shared between groups on the acquire path: each group has its
/// own record of waiters and recent admissions.
///
/// The default runtime is tokio: `Instrumented` is then
/// `Instrumented<upbit_limiter_tokio::Tokio>`, built with
/// [`Instrumented::new`]; any other runtime with [`with_runtime`](Self::with_runtime).
///
/// ```
/// use upbit_limiter_ops::{Instrumented, OpsConfig};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let limiter = Instrumented::new(&OpsConfig::default()).unwrap();
/// let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
/// # drop(permit);
/// # }
/// ```
#[derive(Debug)]
pub struct Instrumented<R: Runtime = upbit_limiter_tokio::Tokio> {
    limiter: Arc<RateLimiter<R>>,
    /// Whether the IP's groups are another `Instrumented`'s (this one is a
    /// pocket opened from it): their metrics are published there.
    shares_ip: bool,
    control: Control,
    thresholds: Mutex<Thresholds>,
    tracker: Tracker,
    /// Held by every publication of the whole set of metrics, so that one
    /// computed before a change never lands after that change's own.
    publishing: Mutex<()>,
}

fn from_core(e: upbit_limiter_core::ConfigError) -> ConfigErrors {
    ConfigErrors {
        issues: vec![Issue {
            origin: Origin::Code,
            key: format!("groups.{}", e.group),
            problem: match e.kind {
                upbit_limiter_core::limiter::ConfigErrorKind::Quota(error) => {
                    Problem::Quota { error, hint: None }
                }
                upbit_limiter_core::limiter::ConfigErrorKind::Adaptive(a) => Problem::Adaptive(a),
                upbit_limiter_core::limiter::ConfigErrorKind::Breaker(b) => Problem::Breaker(b),
                _ => Problem::ZeroWaiterTimeout,
            },
        }],
    }
}

impl Instrumented {
    /// A limiter for `config` on tokio's clock and timer; every problem of
    /// the configuration is reported at once. (Other runtimes:
    /// [`with_runtime`](Self::with_runtime).)
    pub fn new(config: &OpsConfig) -> Result<Self, ConfigErrors> {
        Self::with_runtime(config, upbit_limiter_tokio::Tokio::new())
    }
}

impl<R: Runtime> Instrumented<R> {
    /// A limiter for `config` on `runtime`; every problem of the
    /// configuration is reported at once. Publishes every metric once.
    pub fn with_runtime(config: &OpsConfig, runtime: R) -> Result<Self, ConfigErrors> {
        validate(config.own_limiter())?;
        let mut limiter = RateLimiter::with_runtime(config.own_limiter(), runtime).map_err(from_core)?;
        if let Some(pocket) = config.pocket {
            limiter = limiter.with_pocket(pocket);
        }
        Ok(Self::around(Arc::new(limiter), config, false))
    }

    fn around(limiter: Arc<RateLimiter<R>>, config: &OpsConfig, shares_ip: bool) -> Self {
        let own = limiter
            .pocket()
            .map_or(&config.limiter, |p| config.pocket_limiter(p));
        let this = Self {
            tracker: Tracker::new(&config.health, limiter.pocket().copied()),
            control: Control::new(own.clone(), config.emergency),
            limiter,
            shares_ip,
            thresholds: Mutex::new(config.health),
            publishing: Mutex::new(()),
        };
        this.record_metrics();
        this
    }

    /// Opens another pocket on this limiter's IP (see core's
    /// `RateLimiter::add_pocket`): its own budgets for the pocket-scoped
    /// groups, configured by `config`'s values for `pocket`
    /// ([`OpsConfig::pocket_limiter`]), and this limiter's budgets for the
    /// IP-scoped groups. Its status shows every group as it counts them; its
    /// metrics carry `pocket="<name>"` on the pocket-scoped groups and leave
    /// the IP's groups to the limiter that keeps them.
    pub fn add_pocket(&self, pocket: PocketId, config: &OpsConfig) -> Result<Self, ConfigErrors>
    where
        R: Clone,
    {
        let own = config.pocket_limiter(&pocket);
        validate(own)?;
        let limiter = self.limiter.add_pocket(pocket, own).map_err(from_core)?;
        Ok(Self::around(limiter, config, true))
    }

    /// Whether this limiter publishes the metrics of `group` (a pocket
    /// opened from another leaves the IP's groups to that one).
    fn publishes(&self, group: Group) -> bool {
        !(self.shares_ip && group.scope() == Scope::Ip)
    }

    /// The wrapped limiter. (Acquisitions made on it directly bypass the
    /// instrumentation: they are counted by core's counters, but not seen as
    /// pending, nor in the recent statistics.)
    pub fn limiter(&self) -> &Arc<RateLimiter<R>> {
        &self.limiter
    }

    /// The configuration control. (Changes made through it directly are
    /// published by the next upkeep; [`apply`](Self::apply) and the other
    /// methods here publish them at once.)
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Now, on the limiter's clock.
    pub fn now(&self) -> Instant {
        self.limiter.now()
    }

    /// The health thresholds in force.
    pub fn thresholds(&self) -> Thresholds {
        *lock(&self.thresholds)
    }

    /// Replaces the health thresholds.
    pub fn set_thresholds(&self, thresholds: Thresholds) {
        let mut t = lock(&self.thresholds);
        *t = thresholds;
        self.tracker.set_thresholds(&t);
    }

    /// Ends an emergency whose time is up and publishes the change; returns it.
    fn expire(&self, now: Instant) -> Option<Emergency> {
        let ended = self.control.expire(self.limiter.limiter(), now);
        if ended.is_some() {
            self.record_metrics();
        }
        ended
    }

    /// Republishes every metric if the upkeep is due.
    fn upkeep(&self, now: Instant) {
        if self.tracker.claim_upkeep(now) {
            self.record_metrics();
        }
    }

    /// Applies a new limiter configuration (see [`Control::apply`]).
    pub fn apply(&self, config: &LimiterConfig) -> Result<Vec<Group>, ConfigErrors> {
        let changed = self.control.apply(self.limiter.limiter(), config, self.now())?;
        self.record_metrics();
        Ok(changed)
    }

    /// Applies everything in `config`: the limiter configuration, the health
    /// thresholds and the emergency numbers. Nothing changes if the limiter
    /// configuration is refused. Each of the configuration's
    /// [`warnings`](OpsConfig::warnings) is logged as a `tracing` warning.
    pub fn reload(&self, config: &OpsConfig) -> Result<Vec<Group>, ConfigErrors> {
        let now = self.now();
        let own = self
            .limiter
            .pocket()
            .map_or(&config.limiter, |p| config.pocket_limiter(p));
        let changed = self.control.apply(self.limiter.limiter(), own, now)?;
        for warning in &config.warnings {
            tracing::warn!(target: "upbit_limiter", warning = %warning, "configuration accepted with a cost");
        }
        self.control
            .set_settings(self.limiter.limiter(), config.emergency, now);
        self.set_thresholds(config.health);
        self.record_metrics();
        Ok(changed)
    }

    /// Reads the file at `path`, lays `env` over it and [`reload`](Self::reload)s.
    pub fn reload_file<I, K, V>(&self, path: &Path, env: I) -> Result<Vec<Group>, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let config = OpsConfig::load(Some(path), env)?;
        self.reload(&config)
    }

    /// Enters emergency mode for `duration` (see [`Control::enter_emergency`]).
    pub fn enter_emergency(&self, duration: Duration) -> Result<Emergency, ConfigErrors> {
        let emergency = self
            .control
            .enter_emergency(self.limiter.limiter(), duration, self.now())?;
        self.record_metrics();
        Ok(emergency)
    }

    /// Leaves emergency mode now.
    pub fn leave_emergency(&self) -> Option<Emergency> {
        let ended = self.control.leave_emergency(self.limiter.limiter(), self.now());
        self.record_metrics();
        ended
    }

    /// The emergency period in force (an expired one is ended first).
    pub fn emergency(&self) -> Option<Emergency> {
        self.expire(self.now());
        self.control.emergency()
    }

    /// The full status now.
    pub fn status(&self) -> Status {
        self.expire(self.now());
        self.status_publishing(false)
    }

    /// The status now; with `publish`, each group's metrics are published
    /// while its record is locked.
    fn status_publishing(&self, publish: bool) -> Status {
        let now = self.now();
        let grace = self.tracker.stall_grace();
        let window = self.tracker.window();
        let pocket = self.limiter.pocket().copied();
        let groups = Group::ALL
            .iter()
            .map(|&g| {
                let track = self.tracker.group(g);
                let waiters = lock(&track.waiters);
                let gl = self.limiter.group(g);
                let s = gl.status(now);
                let cfg = gl.config();
                let pending = pending_of(&waiters, now, grace);
                let recent = track.recent(now, window, &s.quota, s.ratio);
                let report = group_report(pocket, &s, &cfg, now, pending, Some(recent));
                if self.publishes(g) {
                    track.sync_ratio(report.series(), s.ratio);
                    track.sync_breaker(report.series(), s.breaker);
                    track.sync_reserve(report.series(), s.reserve);
                    if publish {
                        telemetry::record_group_state(&report, now);
                        telemetry::record_pending(report.series(), pending.waiting, pending.stalled);
                        telemetry::record_recent(&report);
                    }
                }
                report
            })
            .collect();
        Status::assemble(now, pocket, self.control.emergency(), groups)
    }

    /// The health thresholds evaluated now.
    pub fn health(&self) -> HealthReport {
        evaluate(&self.status(), &self.thresholds())
    }

    /// The comprehensive status: [`status`](Self::status) and its health, from one snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let status = self.status();
        let health = evaluate(&status, &self.thresholds());
        Snapshot { status, health }
    }

    /// Takes a [`snapshot`](Self::snapshot), publishes every metric from it,
    /// and returns it. The limiter does this by itself (see the type's docs);
    /// call it to have everything exact at a given moment, e.g. before
    /// reading a recorder in a test.
    pub fn record_metrics(&self) -> Snapshot {
        let _publishing = lock(&self.publishing);
        let now = self.now();
        self.control.expire(self.limiter.limiter(), now);
        // Whoever publishes everything also does the upkeep that was due.
        self.tracker
            .next_upkeep
            .fetch_max(now.saturating_add(UPKEEP_INTERVAL).as_nanos(), Ordering::Relaxed);
        let status = self.status_publishing(true);
        let health = evaluate(&status, &self.thresholds());
        telemetry::record_emergency(&status);
        telemetry::record_health(&health);
        Snapshot { status, health }
    }

    /// After a report: publishes the group's counters and state gauges, with
    /// its record locked (so that the last value published is the newest).
    fn publish_group(&self, group: Group, now: Instant) {
        if !self.publishes(group) {
            return;
        }
        let track = self.tracker.group(group);
        let waiters = lock(&track.waiters);
        let gl = self.limiter.group(group);
        let s = gl.status(now);
        let series = self.tracker.series(group);
        track.sync_ratio(series, s.ratio);
        track.sync_breaker(series, s.breaker);
        track.sync_reserve(series, s.reserve);
        let pending = pending_of(&waiters, now, self.tracker.stall_grace());
        let report = group_report(
            self.limiter.pocket().copied(),
            &s,
            &gl.config(),
            now,
            pending,
            None,
        );
        telemetry::record_group_state(&report, now);
    }

    fn observe_feedback(&self, group: Group, fb: &Feedback, now: Instant) {
        let track = self.tracker.group(group);
        let series = self.tracker.series(group);
        if fb.round_trip_over_margin {
            track.long_trip(now);
        }
        if let Some((from, to)) = fb.ratio_change {
            track.sync_ratio(series, from);
            track.sync_ratio(series, to);
        }
        if let Some(t) = fb.transition {
            track.sync_breaker(series, t.from);
            track.sync_breaker(series, t.to);
        }
        let rest = Feedback {
            ratio_change: None,
            transition: None,
            ..*fb
        };
        telemetry::on_feedback(series, &rest, now);
    }
}

impl<R: Runtime> Instrumented<R> {
    /// Waits for a slot for `method path` (default deadline), in a span.
    pub fn acquire<'a>(
        &'a self,
        method: &'a str,
        path: &'a str,
    ) -> impl Future<Output = Result<Permit<'a, R>, AcquireError>> + 'a {
        self.acquire_request(Request::http(method, path))
    }

    /// Waits for a slot for `request`, in a span.
    pub fn acquire_request<'a>(
        &'a self,
        request: Request,
    ) -> impl Future<Output = Result<Permit<'a, R>, AcquireError>> + 'a {
        let span = tracing::info_span!(
            target: "upbit_limiter",
            "acquire",
            group = request.group.as_str(),
            pocket = Series::new(request.group, self.limiter.pocket().copied()).pocket_name(),
            endpoint = request.endpoint.path(),
            method = request.endpoint.method(),
            correlation_id = request.correlation_id,
            outcome = tracing::field::Empty,
            waited_ms = tracing::field::Empty,
        );
        let inner = span.clone();
        async move { self.acquire_in(request, inner).await }.instrument(span)
    }

    async fn acquire_in<'a>(
        &'a self,
        request: Request,
        span: tracing::Span,
    ) -> Result<Permit<'a, R>, AcquireError> {
        let group = request.group;
        let start = self.now();
        self.expire(start);
        let gl = self.limiter.budget(request.scope).group(group);
        let mut waiter: Option<WaiterGuard<'_, R>> = None;
        // The instant the group's next admission conforms (TAT minus the
        // tolerance, not clamped to now), as read just before each poll: a
        // waiter admitted after waiting should be admitted exactly then.
        let mut conforms = Instant::ZERO;
        let deadline = request.deadline;
        let mut inner = pin!(self.limiter.acquire_request(request));
        let result = poll_fn(|cx| {
            conforms = gl.earliest(Instant::ZERO);
            let poll = inner.as_mut().poll(cx);
            if poll.is_pending() && waiter.is_none() {
                let deadline = match deadline {
                    Some(Deadline::At(at)) => at,
                    Some(Deadline::After(d)) => start.saturating_add(d.into()),
                    None => start.saturating_add(gl.config().waiter_timeout),
                };
                waiter = Some(WaiterGuard {
                    owner: self,
                    group,
                    id: self.tracker.register(group, start, deadline),
                });
            }
            poll
        })
        .await;
        let waited_in_queue = waiter.is_some();
        drop(waiter);
        let outcome = match result {
            Ok(permit) => {
                let at = permit.admission().at;
                let waited = Duration::from(permit.waited());
                // Lateness against the GCRA's schedule; a logged group waits
                // for places (reports), not for a schedule.
                let gcra = gl.config().policy == upbit_limiter_core::limiter::Policy::Gcra;
                let drift = (waited_in_queue && gcra).then(|| at - conforms);
                let seq = permit.admission().seq;
                self.tracker
                    .group(group)
                    .samples
                    .record(seq, Sample { at, waited, drift });
                telemetry::on_acquisition(self.tracker.series(group), Outcome::Admitted, waited, drift);
                span.record("outcome", Outcome::Admitted.as_str());
                span.record("waited_ms", waited.as_nanos() as f64 / 1e6);
                Ok(Permit {
                    inner: permit,
                    owner: self,
                    span,
                })
            }
            Err(e) => {
                let outcome = Outcome::of_error(&e);
                span.record("outcome", outcome.as_str());
                telemetry::on_acquisition(self.tracker.series(group), outcome, Duration::ZERO, None);
                tracing::debug!(target: "upbit_limiter", error = %e, "acquisition failed");
                Err(e)
            }
        };
        self.upkeep(if waited_in_queue { self.now() } else { start });
        outcome
    }
}

/// A granted slot from [`Instrumented`]. Report the response with
/// [`report`](Self::report); dropping it unreported counts as neither
/// success nor failure.
#[derive(Debug)]
#[must_use = "report the response with Permit::report"]
pub struct Permit<'a, R: Runtime = upbit_limiter_tokio::Tokio> {
    inner: upbit_limiter_core::Permit<&'a upbit_limiter_core::RateLimiter<R>>,
    owner: &'a Instrumented<R>,
    span: tracing::Span,
}

impl<R: Runtime> Permit<'_, R> {
    /// The admission (group, instant, sequence number).
    pub fn admission(&self) -> &Admission {
        self.inner.admission()
    }
    /// The group the request was counted in.
    pub fn group(&self) -> Group {
        self.inner.group()
    }
    /// How long the acquisition waited.
    pub fn waited(&self) -> Duration {
        self.inner.waited().into()
    }
    /// The caller's correlation id, if it gave one.
    pub fn correlation_id(&self) -> Option<u64> {
        self.inner.correlation_id()
    }
    /// The acquisition's span (enter it around the request to tie its logs in).
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }
    /// Reports the response; emits an event for every state change it causes.
    pub fn report(self, response: Response<'_>) -> Feedback {
        let Self { inner, owner, span } = self;
        let entered = span.enter();
        let group = inner.group();
        let fb = inner.report_with_feedback(response);
        let now = owner.now();
        owner.observe_feedback(group, &fb, now);
        owner.publish_group(group, now);
        owner.expire(now);
        drop(entered);
        owner.upkeep(now);
        fb
    }
}
