//! Metrics through the `metrics` facade and `tracing` events for every state
//! change. The metric names are listed, with their meaning, in the crate docs.
//!
//! Two kinds of recording:
//! - [`record_status`] publishes a [`Status`] snapshot: core's cumulative
//!   counters (as absolute counter values) and the gauges. For a plain core
//!   limiter, call it with [`Status::of_limiter`] when you want them current;
//!   [`crate::Instrumented`] keeps them current by itself (every change as it
//!   happens, the rest at each upkeep: see its docs).
//! - [`on_acquisition`] and [`on_feedback`] are per-request hooks: the wait
//!   and drift histograms, and the gauges and events a response changes.
//!   [`crate::Instrumented`] calls them for you.

use std::sync::OnceLock;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, Key, Label, Metadata, Unit,
};
use upbit_limiter_core::adaptive::Ratio;
use upbit_limiter_core::breaker::BreakerState;
use upbit_limiter_core::upbit::{PocketId, Scope};
use upbit_limiter_core::{AcquireError, ConfigError, Duration, Feedback, Group, Instant, Reason};

use crate::control::Emergency;
use crate::health::{HealthReport, Level};
use crate::status::{GroupReport, Status};

/// The metric names (see the crate docs for the table).
pub mod names {
    /// Counter `{group, outcome}`: acquisitions by outcome.
    pub const ACQUISITIONS: &str = "upbit_limiter_acquisitions_total";
    /// Counter `{group}`: acquisitions that failed on their deadline.
    pub const TIMEOUTS: &str = "upbit_limiter_timeouts_total";
    /// Counter `{group}`: "not yet" decisions taken under the group's lock (waiters, behind a queue, half-open).
    pub const DENIED: &str = "upbit_limiter_denied_total";
    /// Counter `{group}`: responses reported.
    pub const RESPONSES: &str = "upbit_limiter_responses_total";
    /// Counter `{group}`: HTTP 429 responses.
    pub const HTTP_429: &str = "upbit_limiter_http_429_total";
    /// Counter `{group}`: HTTP 418 responses.
    pub const HTTP_418: &str = "upbit_limiter_http_418_total";
    /// Counter `{group}`: 5xx responses and transport failures.
    pub const FAILURES: &str = "upbit_limiter_failures_total";
    /// Counter `{group}`: `Remaining-Req` headers that tightened the limiter.
    pub const HEADER_TIGHTENINGS: &str = "upbit_limiter_header_tightenings_total";
    /// Counter `{group}`: `Remaining-Req` headers that could not be used.
    pub const HEADER_REJECTS: &str = "upbit_limiter_header_rejects_total";
    /// Counter `{group}`: times a clock reading went backwards.
    pub const CLOCK_REGRESSIONS: &str = "upbit_limiter_clock_regressions_total";
    /// Counter `{group}`: GCRA round trips longer than the jitter margin.
    pub const ROUND_TRIPS_OVER_MARGIN: &str = "upbit_limiter_round_trips_over_margin_total";
    /// Counter `{group}`: permits dropped without a report.
    pub const UNREPORTED: &str = "upbit_limiter_unreported_total";
    /// Histogram `{group}`: seconds each admitted acquisition waited.
    pub const WAIT_SECONDS: &str = "upbit_limiter_wait_seconds";
    /// Histogram `{group}`: seconds a waited admission came after the instant it conformed.
    pub const TAT_DRIFT_SECONDS: &str = "upbit_limiter_tat_drift_seconds";
    /// Gauge `{group}`: waiters queued.
    pub const QUEUE_DEPTH: &str = "upbit_limiter_queue_depth";
    /// Gauge `{group}`: pending waiters past their deadline by more than the stall grace.
    pub const STALLED_WAITERS: &str = "upbit_limiter_stalled_waiters";
    /// Gauge `{group}`: 429s in a row.
    pub const CONSECUTIVE_429: &str = "upbit_limiter_consecutive_429";
    /// Gauge `{group}`: the adaptive rate ratio.
    pub const RATE_RATIO: &str = "upbit_limiter_rate_ratio";
    /// Gauge `{group}`: places of the shortest window held back for others
    /// (what `Remaining-Req` showed others using, or a limit learned from a 429).
    pub const RESERVED_PLACES: &str = "upbit_limiter_reserved_places";
    /// Gauge `{group}`: requests per second allowed now (quota times ratio).
    pub const EFFECTIVE_RATE: &str = "upbit_limiter_effective_rate";
    /// Gauge `{group}`: the quota's burst.
    pub const BURST: &str = "upbit_limiter_burst";
    /// Gauge `{group, state}`: 1 for the breaker's current state, 0 for the others.
    pub const BREAKER_STATE: &str = "upbit_limiter_breaker_state";
    /// Gauge `{group}`: seconds left of a 418 ban (0 when none).
    pub const BAN_REMAINING: &str = "upbit_limiter_ban_remaining_seconds";
    /// Gauge `{group}`: recent admissions over what the quota allows.
    pub const UTILISATION: &str = "upbit_limiter_token_utilisation";
    /// Gauge `{group}`: recent mean admission lateness over the emission interval.
    pub const TAT_DRIFT: &str = "upbit_limiter_tat_drift_ratio";
    /// Gauge `{group}`: seconds the TAT is ahead of now.
    pub const BACKLOG: &str = "upbit_limiter_backlog_seconds";
    /// Gauge `{group, quantile}`: recent wait quantiles (0.5, 0.95, 0.99).
    pub const WAIT_QUANTILE: &str = "upbit_limiter_wait_quantile_seconds";
    /// Gauge: 1 while emergency mode is on.
    pub const EMERGENCY: &str = "upbit_limiter_emergency_active";
    /// Gauge: seconds of emergency mode left.
    pub const EMERGENCY_REMAINING: &str = "upbit_limiter_emergency_remaining_seconds";
    /// Gauge: 0 ok, 1 warning, 2 critical.
    pub const HEALTH_LEVEL: &str = "upbit_limiter_health_level";
}

/// Bucket bounds (seconds) that suit the wait and drift histograms; the same
/// bounds as core's wait histogram.
pub const WAIT_BUCKETS_SECONDS: &[f64] = &[
    0.0, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// The series a group's metrics and events go to: `{group}`, and
/// `{group, pocket}` for the budgets Upbit counts per pocket on a limiter
/// that names its pocket. The IP's groups are shared by every pocket and
/// carry no pocket label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Series {
    /// The group.
    pub group: Group,
    /// The pocket, for a pocket-scoped group of a named pocket.
    pub pocket: Option<PocketId>,
}

impl Series {
    /// The series of `group` as counted by the pocket `pocket`.
    pub fn new(group: Group, pocket: Option<PocketId>) -> Self {
        Self {
            group,
            pocket: pocket.filter(|_| group.scope() != Scope::Ip),
        }
    }

    /// The pocket's name, for a `tracing` field (left out when `None`).
    pub fn pocket_name(&self) -> Option<&str> {
        self.pocket.as_ref().map(PocketId::as_str)
    }

    fn labels(&self) -> Vec<Label> {
        let mut labels = vec![Label::from_static_parts("group", self.group.as_str())];
        if let Some(p) = &self.pocket {
            labels.push(Label::new("pocket", p.as_str().to_owned()));
        }
        labels
    }

    fn labels_with(&self, key: &'static str, value: &'static str) -> Vec<Label> {
        let mut labels = self.labels();
        labels.push(Label::from_static_parts(key, value));
        labels
    }
}

impl From<Group> for Series {
    /// The series of a group on a limiter that names no pocket.
    fn from(group: Group) -> Self {
        Self::new(group, None)
    }
}

/// How an acquisition ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Admitted.
    Admitted,
    /// Its deadline could not be met.
    Timeout,
    /// The breaker was open.
    CircuitOpen,
    /// The group was banned (418).
    Banned,
    /// Dropped before it was admitted.
    Cancelled,
}

impl Outcome {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::Banned => "banned",
            Self::Cancelled => "cancelled",
        }
    }

    /// The outcome of a failed acquisition.
    pub fn of_error(e: &AcquireError) -> Self {
        match e.reason() {
            Reason::Timeout { .. } => Self::Timeout,
            Reason::CircuitOpen | Reason::ForcedOpen => Self::CircuitOpen,
            Reason::Banned => Self::Banned,
            // A future variant: counted with the deadline failures.
            _ => Self::Timeout,
        }
    }
}

/// Registers the description and unit of every metric with the installed
/// recorder (the `# HELP` lines). Call once after installing it.
pub fn describe() {
    use names::*;
    let counters: [(&'static str, &'static str); 12] = [
        (
            ACQUISITIONS,
            "Acquisitions by group and outcome (admitted, timeout, circuit_open, banned, cancelled).",
        ),
        (
            TIMEOUTS,
            "Acquisitions that failed because their deadline could not be met.",
        ),
        (
            DENIED,
            "Immediate not-yet decisions (each poll of a waiter that had to wait).",
        ),
        (RESPONSES, "Responses reported."),
        (HTTP_429, "HTTP 429 (rate limited) responses."),
        (HTTP_418, "HTTP 418 (temporary ban) responses."),
        (
            FAILURES,
            "5xx responses and transport failures (count against the breaker).",
        ),
        (
            HEADER_TIGHTENINGS,
            "Remaining-Req headers that made the limiter stricter.",
        ),
        (
            HEADER_REJECTS,
            "Remaining-Req headers that could not be parsed or named an unknown group.",
        ),
        (CLOCK_REGRESSIONS, "Clock readings earlier than one already seen."),
        (
            ROUND_TRIPS_OVER_MARGIN,
            "GCRA policy: reported round trips longer than the jitter margin (its assumption may not hold).",
        ),
        (
            UNREPORTED,
            "Permits dropped without a report (their feedback was lost).",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, Unit::Count, help);
    }
    describe_histogram!(
        WAIT_SECONDS,
        Unit::Seconds,
        "Time each admitted acquisition waited."
    );
    describe_histogram!(
        TAT_DRIFT_SECONDS,
        Unit::Seconds,
        "Lateness of a waited admission: actual admission minus the instant the TAT made it conform."
    );
    let gauges: [(&'static str, &'static str); 16] = [
        (QUEUE_DEPTH, "Waiters queued (pending acquisitions)."),
        (
            STALLED_WAITERS,
            "Pending waiters past their deadline by more than the stall grace.",
        ),
        (CONSECUTIVE_429, "429 responses in a row."),
        (RATE_RATIO, "Adaptive rate ratio (1 = full quota)."),
        (
            RESERVED_PLACES,
            "Places of the shortest window held back for others (use the server counted that is not ours).",
        ),
        (
            EFFECTIVE_RATE,
            "Requests per second allowed now (quota rate times ratio).",
        ),
        (BURST, "Burst of the quota in force."),
        (
            BREAKER_STATE,
            "1 for the circuit breaker's current state, 0 for the others.",
        ),
        (BAN_REMAINING, "Seconds left of a 418 ban (0 when none)."),
        (
            UTILISATION,
            "Recent admissions over the most the effective quota allows in the window.",
        ),
        (
            TAT_DRIFT,
            "Recent mean admission lateness over the emission interval.",
        ),
        (BACKLOG, "Seconds the theoretical arrival time is ahead of now."),
        (WAIT_QUANTILE, "Recent wait quantiles in seconds."),
        (EMERGENCY, "1 while emergency mode is on."),
        (EMERGENCY_REMAINING, "Seconds of emergency mode left."),
        (HEALTH_LEVEL, "Health level: 0 ok, 1 warning, 2 critical."),
    ];
    for (name, help) in gauges {
        describe_gauge!(name, help);
    }
}

const BREAKER_STATES: [BreakerState; 5] = [
    BreakerState::Closed,
    BreakerState::Open,
    BreakerState::HalfOpen,
    BreakerState::ForcedOpen,
    BreakerState::Disabled,
];

fn secs(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e9
}

/// Publishes a status snapshot: cumulative counters and every gauge.
pub fn record_status(status: &Status) {
    for g in &status.groups {
        record_group_state(g, status.at);
        record_pending(g.series(), g.depth(), g.stalled_waiters);
        record_recent(g);
    }
    record_emergency(status);
}

/// A group's counters (as absolute values: a stale one never lowers a
/// counter) and the gauges of its state: consecutive 429s, ratio, rate,
/// burst, breaker, ban and backlog.
pub(crate) fn record_group_state(g: &GroupReport, at: Instant) {
    use names::*;
    let series = g.series();
    let labels = series.labels();
    let c = &g.counters;
    for (outcome, value) in [
        (Outcome::Admitted, c.admitted),
        (Outcome::Timeout, c.timeouts),
        (Outcome::CircuitOpen, c.circuit_rejections),
        (Outcome::Banned, c.ban_rejections),
        (Outcome::Cancelled, c.cancelled),
    ] {
        counter!(ACQUISITIONS, series.labels_with("outcome", outcome.as_str())).absolute(value);
    }
    for (name, value) in [
        (TIMEOUTS, c.timeouts),
        (DENIED, c.denied),
        (RESPONSES, c.responses),
        (HTTP_429, c.status_429),
        (HTTP_418, c.status_418),
        (FAILURES, c.failures),
        (HEADER_TIGHTENINGS, c.header_tightenings),
        (HEADER_REJECTS, c.header_rejects),
        (CLOCK_REGRESSIONS, c.clock_regressions),
        (ROUND_TRIPS_OVER_MARGIN, c.round_trips_over_margin),
        (UNREPORTED, c.unreported),
    ] {
        counter!(name, labels.clone()).absolute(value);
    }
    gauge!(CONSECUTIVE_429, labels.clone()).set(f64::from(g.consecutive_429));
    gauge!(RATE_RATIO, labels.clone()).set(g.ratio);
    gauge!(RESERVED_PLACES, labels.clone()).set(f64::from(g.reserve));
    gauge!(EFFECTIVE_RATE, labels.clone()).set(g.quota.effective_rate);
    gauge!(BURST, labels.clone()).set(f64::from(g.quota.burst));
    set_breaker(series, g.breaker);
    let ban = g.banned_until.map_or(Duration::ZERO, |u| u - at);
    gauge!(BAN_REMAINING, labels.clone()).set(secs(ban));
    gauge!(BACKLOG, labels.clone()).set(secs(g.backlog));
}

/// A group's queue depth and stalled waiters.
pub(crate) fn record_pending(series: Series, depth: usize, stalled: usize) {
    let labels = series.labels();
    gauge!(names::QUEUE_DEPTH, labels.clone()).set(depth as f64);
    gauge!(names::STALLED_WAITERS, labels.clone()).set(stalled as f64);
}

/// A group's wait quantiles (recent ones if the report has them, else since
/// start), utilisation and TAT drift.
pub(crate) fn record_recent(g: &GroupReport) {
    use names::*;
    let series = g.series();
    let labels = series.labels();
    let (p50, p95, p99) = match &g.recent {
        Some(r) => (r.wait_p50, r.wait_p95, r.wait_p99),
        None => (g.waits.p50, g.waits.p95, g.waits.p99),
    };
    for (q, v) in [("0.5", p50), ("0.95", p95), ("0.99", p99)] {
        gauge!(WAIT_QUANTILE, series.labels_with("quantile", q)).set(secs(v));
    }
    if let Some(r) = &g.recent {
        gauge!(UTILISATION, labels.clone()).set(r.utilisation);
        gauge!(TAT_DRIFT, labels.clone()).set(r.tat_drift);
    }
}

/// Whether emergency mode is on, and for how long still.
pub(crate) fn record_emergency(status: &Status) {
    let (active, remaining) = status
        .emergency
        .map_or((0.0, Duration::ZERO), |e| (1.0, e.remaining));
    gauge!(names::EMERGENCY).set(active);
    gauge!(names::EMERGENCY_REMAINING).set(secs(remaining));
}

/// Publishes a health report's level.
pub fn record_health(report: &HealthReport) {
    let level = match report.level {
        Level::Ok => 0.0,
        Level::Warning => 1.0,
        Level::Critical => 2.0,
    };
    gauge!(names::HEALTH_LEVEL).set(level);
}

fn set_breaker(series: Series, state: BreakerState) {
    for s in BREAKER_STATES {
        let v = if s == state { 1.0 } else { 0.0 };
        gauge!(names::BREAKER_STATE, series.labels_with("state", s.as_str())).set(v);
    }
}

/// Per-acquisition hook: records the wait (admitted acquisitions only) and,
/// for an acquisition that waited, how late it was admitted against its
/// scheduled instant.
pub fn on_acquisition(
    series: impl Into<Series>,
    outcome: Outcome,
    waited: Duration,
    drift: Option<Duration>,
) {
    static WAIT: OnceLock<GroupKeys> = OnceLock::new();
    static DRIFT: OnceLock<GroupKeys> = OnceLock::new();
    if outcome != Outcome::Admitted {
        return;
    }
    let series = series.into();
    let key = |cell, name| match series.pocket {
        None => group_keys(cell, name)[series.group.index()].clone(),
        Some(_) => Key::from_parts(name, series.labels()),
    };
    record_histogram(&key(&WAIT, names::WAIT_SECONDS), secs(waited));
    if let Some(d) = drift {
        record_histogram(&key(&DRIFT, names::TAT_DRIFT_SECONDS), secs(d));
    }
}

/// A metric's `{group}` key for every group, by [`Group::index`].
type GroupKeys = [Key; Group::COUNT];

/// The keys of `name`, built once: the per-acquisition path then records
/// without building (and allocating) a key on every call.
fn group_keys(cell: &'static OnceLock<GroupKeys>, name: &'static str) -> &'static GroupKeys {
    cell.get_or_init(|| {
        Group::ALL.map(|g| Key::from_parts(name, vec![Label::from_static_parts("group", g.as_str())]))
    })
}

fn record_histogram(key: &Key, value: f64) {
    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
    metrics::with_recorder(|r| r.register_histogram(key, &METADATA)).record(value);
}

/// Per-response hook: emits an event for every change in `feedback` and
/// updates the gauges it concerns.
pub fn on_feedback(series: impl Into<Series>, feedback: &Feedback, now: Instant) {
    let series = series.into();
    let (group, pocket) = (series.group.as_str(), series.pocket_name());
    if let Some((from, to)) = feedback.ratio_change {
        ratio_changed(series, from, to);
    }
    if let Some(t) = feedback.transition {
        breaker_transition(series, t.from, t.to);
    }
    if let Some(until) = feedback.banned_until {
        banned(series, until, now);
    }
    if feedback.header_tightened {
        tracing::debug!(target: "upbit_limiter", group, pocket, "Remaining-Req header tightened the limiter");
    }
    if feedback.header_rejected {
        tracing::debug!(target: "upbit_limiter", group, pocket, "Remaining-Req header could not be used");
    }
    if feedback.round_trip_over_margin {
        tracing::warn!(target: "upbit_limiter", group, pocket,
            "round trip longer than the jitter margin: one-way delays may vary by more than the GCRA assumes \
             (a larger margin_ms, or policy = \"interval-log\", which needs no such assumption)");
    }
}

/// The places `group` holds back for others changed: a warning when some
/// are held back where none were (the budget is not ours alone), info when
/// none are any more.
pub fn reserve_changed(series: impl Into<Series>, from: u32, to: u32) {
    let series = series.into();
    gauge!(names::RESERVED_PLACES, series.labels()).set(f64::from(to));
    let (group, pocket) = (series.group.as_str(), series.pocket_name());
    match (from, to) {
        (0, 1..) => tracing::warn!(target: "upbit_limiter", group, pocket, places = to,
            "places held back for others: the server counted requests that are not ours (another program on this \
             IP or pocket, or a limit below the preset); Zero-429 needs every program on a budget behind one limiter"),
        (1.., 0) => {
            tracing::info!(target: "upbit_limiter", group, pocket, "nothing held back for others any more")
        }
        // More or fewer places, or none before and after: nothing new to say.
        _ => {}
    }
}

/// The ratio of `group` changed: a warning when it fell, info when it recovered.
pub fn ratio_changed(series: impl Into<Series>, from: Ratio, to: Ratio) {
    let series = series.into();
    gauge!(names::RATE_RATIO, series.labels()).set(to.as_f64());
    let (group, pocket) = (series.group.as_str(), series.pocket_name());
    if to < from {
        tracing::warn!(target: "upbit_limiter", group, pocket, from = from.as_f64(), to = to.as_f64(),
            "rate ratio lowered");
    } else {
        tracing::info!(target: "upbit_limiter", group, pocket, from = from.as_f64(), to = to.as_f64(),
            "rate ratio raised");
    }
}

/// The breaker of `group` changed state.
pub fn breaker_transition(series: impl Into<Series>, from: BreakerState, to: BreakerState) {
    let series = series.into();
    set_breaker(series, to);
    let (group, pocket) = (series.group.as_str(), series.pocket_name());
    match to {
        BreakerState::Open | BreakerState::ForcedOpen => tracing::warn!(
            target: "upbit_limiter", group, pocket, from = from.as_str(), to = to.as_str(),
            "circuit breaker transition"),
        _ => tracing::info!(
            target: "upbit_limiter", group, pocket, from = from.as_str(), to = to.as_str(),
            "circuit breaker transition"),
    }
}

/// `group` (and its scope) is banned until `until`.
pub fn banned(series: impl Into<Series>, until: Instant, now: Instant) {
    let series = series.into();
    gauge!(names::BAN_REMAINING, series.labels()).set(secs(until - now));
    let (group, pocket) = (series.group.as_str(), series.pocket_name());
    tracing::error!(target: "upbit_limiter", group, pocket, scope = ?series.group.scope(),
        until_s = until.as_nanos() as f64 / 1e9, ban_s = secs(until - now), "banned by the server (HTTP 418)");
}

pub(crate) fn config_applied(changed: &[Group], emergency: bool) {
    let groups: Vec<&str> = changed.iter().map(|g| g.as_str()).collect();
    tracing::info!(target: "upbit_limiter", groups = ?groups, emergency, "configuration applied");
}

pub(crate) fn config_refused(e: &ConfigError) {
    tracing::error!(target: "upbit_limiter", group = e.group.as_str(), error = %e, "configuration refused by the limiter");
}

pub(crate) fn emergency_entered(e: &Emergency, now: Instant) {
    gauge!(names::EMERGENCY).set(1.0);
    tracing::warn!(target: "upbit_limiter", since_s = e.since.as_nanos() as f64 / 1e9,
        until_s = e.until.as_nanos() as f64 / 1e9, duration_s = secs(e.until - now),
        "emergency mode entered: every group at half rate and half burst");
}

pub(crate) fn emergency_left(e: &Emergency, now: Instant, expired: bool) {
    gauge!(names::EMERGENCY).set(0.0);
    tracing::warn!(target: "upbit_limiter", since_s = e.since.as_nanos() as f64 / 1e9,
        at_s = now.as_nanos() as f64 / 1e9, expired, "emergency mode left: configuration restored");
}
