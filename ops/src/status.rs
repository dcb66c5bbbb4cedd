//! The full status snapshot (every group's configuration, state and counters), as typed
//! Rust values that serialise to JSON with units in the field names
//! (`_ms` milliseconds, `_s` seconds on the limiter's clock).

use serde::Serialize;
use upbit_limiter_core::adaptive::{AdaptiveConfig, Ratio, Strategy};
use upbit_limiter_core::breaker::{BreakerConfig, BreakerState};
use upbit_limiter_core::outside::Ceiling;
use upbit_limiter_core::stats::CounterSnapshot;
use upbit_limiter_core::upbit::PocketId;
use upbit_limiter_core::{Duration, Group, GroupConfig, GroupStatus, Instant, Quota, SyncLimiter};

use crate::control::Emergency;
use crate::telemetry::Series;

/// Serialisers for core types (kept here so core needs no serde feature).
pub(crate) mod ser {
    use serde::Serializer;
    use upbit_limiter_core::breaker::BreakerState;
    use upbit_limiter_core::{Duration, Group, Instant};

    pub fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_nanos() as f64 / 1e6)
    }
    pub fn secs<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        if *t == Instant::MAX {
            s.serialize_none()
        } else {
            s.serialize_f64(t.as_nanos() as f64 / 1e9)
        }
    }
    pub fn opt_secs<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => secs(t, s),
            None => s.serialize_none(),
        }
    }
    pub fn group<S: Serializer>(g: &Group, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(g.as_str())
    }
    pub fn breaker<S: Serializer>(b: &BreakerState, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(b.as_str())
    }
    pub fn pocket<S: Serializer>(
        p: &Option<upbit_limiter_core::upbit::PocketId>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_str(p.as_str()),
            None => s.serialize_none(),
        }
    }
}

/// Everything about the limiter at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    /// When the snapshot was taken (limiter clock).
    #[serde(rename = "at_s", serialize_with = "ser::secs")]
    pub at: Instant,
    /// The pocket whose budgets the pocket-scoped groups are, if the limiter
    /// names it.
    #[serde(serialize_with = "ser::pocket")]
    pub pocket: Option<PocketId>,
    /// The emergency period in force.
    pub emergency: Option<EmergencyView>,
    /// Sums over every group.
    pub totals: Totals,
    /// Every group, in [`Group::ALL`] order.
    pub groups: Vec<GroupReport>,
}

/// An emergency period in a status.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EmergencyView {
    /// When it was entered.
    #[serde(rename = "since_s", serialize_with = "ser::secs")]
    pub since: Instant,
    /// When it ends by itself (`null`: only by hand).
    #[serde(rename = "until_s", serialize_with = "ser::secs")]
    pub until: Instant,
    /// Time left.
    #[serde(rename = "remaining_ms", serialize_with = "ser::ms")]
    pub remaining: Duration,
}

/// Sums over every group, and how many groups are in each notable state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Requests admitted.
    pub admitted: u64,
    /// Acquisitions that failed on their deadline.
    pub timeouts: u64,
    /// HTTP 429 responses.
    pub status_429: u64,
    /// HTTP 418 responses.
    pub status_418: u64,
    /// Responses reported.
    pub responses: u64,
    /// Waiters queued, all groups.
    pub queue_depth: usize,
    /// Stalled waiters, all groups.
    pub stalled_waiters: usize,
    /// Groups running below full rate (ratio < 1).
    pub throttled_groups: usize,
    /// Groups whose breaker is open, half-open or forced open.
    pub open_breakers: usize,
    /// Groups under a 418 ban.
    pub banned_groups: usize,
}

/// One server window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LimitView {
    /// Requests allowed per window.
    pub max_requests: u32,
    /// The window.
    #[serde(rename = "window_ms", serialize_with = "ser::ms")]
    pub window: Duration,
}

/// A group's configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigView {
    /// The server's windows.
    pub limits: Vec<LimitView>,
    /// Jitter margin.
    #[serde(rename = "margin_ms", serialize_with = "ser::ms")]
    pub margin: Duration,
    /// Burst used when the quota is derived.
    pub burst: u32,
    /// The explicit quota's rate, if one is set.
    pub rps: Option<f64>,
    /// Whether an unsafe explicit quota is accepted.
    pub allow_unsafe_quota: bool,
    /// The strategy the adaptive numbers match, if any.
    pub strategy: Option<&'static str>,
    /// Default waiter deadline.
    #[serde(rename = "timeout_ms", serialize_with = "ser::ms")]
    pub waiter_timeout: Duration,
    /// How admissions are decided: `interval-log` or `gcra`.
    pub policy: &'static str,
    /// Interval log: how long an unreported request counts.
    #[serde(rename = "max_flight_ms", serialize_with = "ser::ms")]
    pub max_flight: Duration,
    /// Interval log: how long a limit learned from a 429 is held.
    #[serde(rename = "ceiling_hold_ms", serialize_with = "ser::ms")]
    pub ceiling_hold: Duration,
    /// Adaptive ratio numbers.
    pub adaptive: AdaptiveView,
    /// Breaker numbers.
    pub breaker: BreakerView,
}

/// Adaptive ratio numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AdaptiveView {
    /// 429s in a row before the ratio drops.
    pub error_threshold: u32,
    /// Factor per reduction.
    pub reduction: f64,
    /// Floor of the ratio.
    pub min_ratio: f64,
    /// Quiet time before recovery starts.
    #[serde(rename = "recovery_delay_ms", serialize_with = "ser::ms")]
    pub recovery_delay: Duration,
    /// Time between recovery steps.
    #[serde(rename = "recovery_interval_ms", serialize_with = "ser::ms")]
    pub recovery_interval: Duration,
    /// Size of one step.
    pub recovery_step: f64,
    /// Ban for a 418 that does not say how long.
    #[serde(rename = "ban_default_ms", serialize_with = "ser::ms")]
    pub ban_default: Duration,
    /// Longest default ban.
    #[serde(rename = "ban_max_ms", serialize_with = "ser::ms")]
    pub ban_max: Duration,
}

impl From<&AdaptiveConfig> for AdaptiveView {
    fn from(a: &AdaptiveConfig) -> Self {
        Self {
            error_threshold: a.error_threshold,
            reduction: a.reduction.as_f64(),
            min_ratio: a.min_ratio.as_f64(),
            recovery_delay: a.recovery_delay,
            recovery_interval: a.recovery_interval,
            recovery_step: f64::from(a.recovery_step_ppm) / 1e6,
            ban_default: a.ban_default,
            ban_max: a.ban_max,
        }
    }
}

/// Breaker numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BreakerView {
    /// Failures in a row that open it.
    pub consecutive_failures: u32,
    /// Failure share that opens it.
    pub failure_rate: f64,
    /// Outcomes the share is taken over.
    pub window: u8,
    /// Outcomes before the share counts.
    pub minimum_calls: u8,
    /// First open period.
    #[serde(rename = "open_wait_ms", serialize_with = "ser::ms")]
    pub open_wait: Duration,
    /// Longest open period.
    #[serde(rename = "open_wait_max_ms", serialize_with = "ser::ms")]
    pub open_wait_max: Duration,
    /// Growth per re-open.
    pub open_wait_multiplier: u32,
    /// Probes in flight when half-open.
    pub half_open_probes: u32,
    /// Successful probes that close it.
    pub half_open_successes: u32,
    /// Silence that re-opens it while half-open.
    #[serde(rename = "half_open_max_wait_ms", serialize_with = "ser::ms")]
    pub half_open_max_wait: Duration,
}

impl From<&BreakerConfig> for BreakerView {
    fn from(b: &BreakerConfig) -> Self {
        Self {
            consecutive_failures: b.consecutive_failures,
            failure_rate: f64::from(b.failure_rate_ppm) / 1e6,
            window: b.window,
            minimum_calls: b.minimum_calls,
            open_wait: b.open_wait,
            open_wait_max: b.open_wait_max,
            open_wait_multiplier: b.open_wait_multiplier,
            half_open_probes: b.half_open_probes,
            half_open_successes: b.half_open_successes,
            half_open_max_wait: b.half_open_max_wait,
        }
    }
}

impl From<&GroupConfig> for ConfigView {
    fn from(c: &GroupConfig) -> Self {
        Self {
            limits: c
                .limits
                .as_slice()
                .iter()
                .map(|l| LimitView {
                    max_requests: l.max_requests,
                    window: l.window,
                })
                .collect(),
            margin: c.margin,
            burst: c.burst,
            rps: c.quota.map(|q| per_second(q.interval())),
            allow_unsafe_quota: c.allow_unsafe,
            strategy: Strategy::ALL
                .into_iter()
                .find(|s| s.config() == c.adaptive)
                .map(Strategy::as_str),
            waiter_timeout: c.waiter_timeout,
            policy: c.policy.as_str(),
            max_flight: c.max_flight,
            ceiling_hold: c.ceiling_hold,
            adaptive: (&c.adaptive).into(),
            breaker: (&c.breaker).into(),
        }
    }
}

/// The quota in force.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QuotaView {
    /// Emission interval before the ratio.
    #[serde(rename = "interval_ms", serialize_with = "ser::ms")]
    pub interval: Duration,
    /// Burst.
    pub burst: u32,
    /// Requests per second before the ratio.
    pub rate: f64,
    /// Requests per second after the ratio.
    pub effective_rate: f64,
    /// Whether an unsafe explicit quota was accepted by override.
    pub unsafe_override: bool,
}

/// A copy of core's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Requests admitted.
    pub admitted: u64,
    /// "Not yet" decisions taken under the group's lock (the lock-free fast path's denials write nothing).
    pub denied: u64,
    /// Acquisitions that waited.
    pub waits: u64,
    /// Acquisitions that failed on their deadline.
    pub timeouts: u64,
    /// Refused by an open breaker.
    pub circuit_rejections: u64,
    /// Refused by a ban.
    pub ban_rejections: u64,
    /// Waiters dropped before admission.
    pub cancelled: u64,
    /// HTTP 429 responses.
    pub status_429: u64,
    /// HTTP 418 responses.
    pub status_418: u64,
    /// 5xx and transport failures.
    pub failures: u64,
    /// Responses reported.
    pub responses: u64,
    /// `Remaining-Req` headers that tightened the limiter.
    pub header_tightenings: u64,
    /// `Remaining-Req` headers refused.
    pub header_rejects: u64,
    /// Times the clock went backwards.
    pub clock_regressions: u64,
    /// GCRA policy: round trips longer than the jitter margin.
    pub round_trips_over_margin: u64,
    /// Permits dropped without a report.
    pub unreported: u64,
}

impl From<&CounterSnapshot> for Counters {
    fn from(c: &CounterSnapshot) -> Self {
        Self {
            admitted: c.admitted,
            denied: c.denied,
            waits: c.waits,
            timeouts: c.timeouts,
            circuit_rejections: c.circuit_rejections,
            ban_rejections: c.ban_rejections,
            cancelled: c.cancelled,
            status_429: c.status_429,
            status_418: c.status_418,
            failures: c.failures,
            responses: c.responses,
            header_tightenings: c.header_tightenings,
            header_rejects: c.header_rejects,
            clock_regressions: c.clock_regressions,
            round_trips_over_margin: c.round_trips_over_margin,
            unreported: c.unreported,
        }
    }
}

/// Wait quantiles since the limiter started (core's bucketed histogram:
/// each quantile is the upper bound of its bucket).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct WaitSummary {
    /// Waits recorded.
    pub count: u64,
    /// Mean wait.
    #[serde(rename = "mean_ms", serialize_with = "ser::ms")]
    pub mean: Duration,
    /// Median.
    #[serde(rename = "p50_ms", serialize_with = "ser::ms")]
    pub p50: Duration,
    /// 95th percentile.
    #[serde(rename = "p95_ms", serialize_with = "ser::ms")]
    pub p95: Duration,
    /// 99th percentile.
    #[serde(rename = "p99_ms", serialize_with = "ser::ms")]
    pub p99: Duration,
    /// Longest.
    #[serde(rename = "max_ms", serialize_with = "ser::ms")]
    pub max: Duration,
}

/// Statistics over the recent window, from the acquisitions made through
/// [`crate::Instrumented`] (exact, not bucketed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Recent {
    /// The window covered.
    #[serde(rename = "window_ms", serialize_with = "ser::ms")]
    pub window: Duration,
    /// Round trips longer than the jitter margin reported in the window (a
    /// GCRA group's assumption seen failing; the last 32 are kept, so at
    /// most 32).
    pub round_trips_over_margin: u64,
    /// Admissions in the window.
    pub admissions: u64,
    /// Of those, how many had to wait.
    pub waited: u64,
    /// Admissions in the window over the most the effective quota allows in it.
    pub utilisation: f64,
    /// Median wait.
    #[serde(rename = "wait_p50_ms", serialize_with = "ser::ms")]
    pub wait_p50: Duration,
    /// 95th-percentile wait.
    #[serde(rename = "wait_p95_ms", serialize_with = "ser::ms")]
    pub wait_p95: Duration,
    /// 99th-percentile wait.
    #[serde(rename = "wait_p99_ms", serialize_with = "ser::ms")]
    pub wait_p99: Duration,
    /// Mean lateness of waited admissions (actual admission minus the instant
    /// the group's TAT made it conform) over the effective emission interval.
    pub tat_drift: f64,
    /// Largest lateness seen.
    #[serde(rename = "drift_max_ms", serialize_with = "ser::ms")]
    pub drift_max: Duration,
}

/// A ceiling a 429 taught, as it is held (see `upbit_limiter_core::outside`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CeilingView {
    /// Places of the shortest window it holds back (within `reserve`).
    pub places: u32,
    /// Headers cannot end it, only prove it too high (a place per minute
    /// of one-second windows).
    pub locked: bool,
    /// Others' use explains it: it ends once headers show them gone; else
    /// it is a lower server limit as far as the headers tell.
    pub explained: bool,
    /// When the hold gives a place back, unless something renews it first.
    #[serde(rename = "next_give_back_s", serialize_with = "ser::secs")]
    pub next_give_back: Instant,
}

impl From<Ceiling> for CeilingView {
    fn from(c: Ceiling) -> Self {
        Self {
            places: c.places,
            locked: c.locked,
            explained: c.explained,
            next_give_back: c.next_give_back,
        }
    }
}

/// Everything about one group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupReport {
    /// The group.
    #[serde(serialize_with = "ser::group")]
    pub group: Group,
    /// The pocket whose budget this is: set for the pocket-scoped groups of a
    /// named pocket; the IP's groups are every pocket's.
    #[serde(serialize_with = "ser::pocket")]
    pub pocket: Option<PocketId>,
    /// Its configuration in force.
    pub config: ConfigView,
    /// Its quota in force.
    pub quota: QuotaView,
    /// Places of the shortest window held back for others (what the headers
    /// show others using, or a server limit learned from a 429).
    pub reserve: u32,
    /// The ceiling a 429 taught, while one is held.
    pub ceiling: Option<CeilingView>,
    /// The adaptive ratio.
    pub ratio: f64,
    /// The theoretical arrival time.
    #[serde(rename = "tat_s", serialize_with = "ser::secs")]
    pub tat: Instant,
    /// How far the TAT is ahead of now.
    #[serde(rename = "backlog_ms", serialize_with = "ser::ms")]
    pub backlog: Duration,
    /// Waiters in core's queue.
    pub queue_depth: usize,
    /// Acquisitions pending in [`crate::Instrumented`].
    pub waiting: usize,
    /// Pending acquisitions past their deadline by more than the stall grace.
    pub stalled_waiters: usize,
    /// Age of the oldest pending acquisition.
    #[serde(rename = "oldest_wait_ms", serialize_with = "ser::ms")]
    pub oldest_wait: Duration,
    /// Breaker state.
    #[serde(serialize_with = "ser::breaker")]
    pub breaker: BreakerState,
    /// End of a ban in force.
    #[serde(rename = "banned_until_s", serialize_with = "ser::opt_secs")]
    pub banned_until: Option<Instant>,
    /// 429s in a row.
    pub consecutive_429: u32,
    /// Core's counters.
    pub counters: Counters,
    /// Waits since start.
    pub waits: WaitSummary,
    /// Recent statistics (only through [`crate::Instrumented`]).
    pub recent: Option<Recent>,
}

impl GroupReport {
    /// Queue depth as health sees it: core's queue or the pending
    /// acquisitions, whichever is larger.
    pub fn depth(&self) -> usize {
        self.queue_depth.max(self.waiting)
    }
    /// The metric series this group's numbers go to.
    pub fn series(&self) -> Series {
        Series::new(self.group, self.pocket)
    }
}

/// Requests per second for an emission interval.
pub(crate) fn per_second(interval: Duration) -> f64 {
    if interval.is_zero() {
        return f64::INFINITY;
    }
    1e9 / interval.as_nanos() as f64
}

/// The emission interval after the ratio (as core computes it: rounded up).
pub(crate) fn effective_interval(quota: &Quota, ratio: Ratio) -> Duration {
    let n = u128::from(quota.interval().as_nanos()) * u128::from(Ratio::SCALE);
    let d = u128::from(ratio.ppm().max(1));
    Duration::from_nanos(u64::try_from(n.div_ceil(d)).unwrap_or(u64::MAX))
}

/// What a pending-acquisition tracker contributes to a group's report.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pending {
    pub waiting: usize,
    pub stalled: usize,
    pub oldest: Duration,
}

pub(crate) fn group_report(
    pocket: Option<PocketId>,
    s: &GroupStatus,
    config: &GroupConfig,
    now: Instant,
    pending: Pending,
    recent: Option<Recent>,
) -> GroupReport {
    let h = &s.waits;
    let count = h.count();
    GroupReport {
        group: s.group,
        pocket: Series::new(s.group, pocket).pocket,
        config: config.into(),
        reserve: s.reserve,
        ceiling: s.ceiling.map(CeilingView::from),
        quota: QuotaView {
            interval: s.quota.interval(),
            burst: s.quota.burst(),
            rate: per_second(s.quota.interval()),
            effective_rate: per_second(effective_interval(&s.quota, s.ratio)),
            unsafe_override: s.unsafe_override,
        },
        ratio: s.ratio.as_f64(),
        tat: s.tat,
        backlog: s.tat - now,
        queue_depth: s.queue_depth,
        waiting: pending.waiting,
        stalled_waiters: pending.stalled,
        oldest_wait: pending.oldest,
        breaker: s.breaker,
        banned_until: s.banned_until,
        consecutive_429: s.consecutive_429,
        counters: (&s.counters).into(),
        waits: WaitSummary {
            count,
            mean: Duration::from_nanos(h.total.as_nanos().checked_div(count).unwrap_or(0)),
            p50: h.quantile(0.5),
            p95: h.quantile(0.95),
            p99: h.quantile(0.99),
            max: h.max,
        },
        recent,
    }
}

impl Status {
    /// A snapshot of a plain core limiter (no emergency mode, no pending
    /// acquisitions, no recent statistics: see [`crate::Instrumented::status`]).
    pub fn of_limiter(limiter: &SyncLimiter, now: Instant) -> Self {
        Self::assemble(
            now,
            None,
            None,
            Group::ALL
                .iter()
                .map(|&g| {
                    let gl = limiter.group(g);
                    group_report(None, &gl.status(now), &gl.config(), now, Pending::default(), None)
                })
                .collect(),
        )
    }

    pub(crate) fn assemble(
        now: Instant,
        pocket: Option<PocketId>,
        emergency: Option<Emergency>,
        groups: Vec<GroupReport>,
    ) -> Self {
        let mut t = Totals::default();
        for g in &groups {
            t.admitted += g.counters.admitted;
            t.timeouts += g.counters.timeouts;
            t.status_429 += g.counters.status_429;
            t.status_418 += g.counters.status_418;
            t.responses += g.counters.responses;
            t.queue_depth += g.depth();
            t.stalled_waiters += g.stalled_waiters;
            t.throttled_groups += usize::from(g.ratio < 1.0);
            t.open_breakers += usize::from(matches!(
                g.breaker,
                BreakerState::Open | BreakerState::HalfOpen | BreakerState::ForcedOpen
            ));
            t.banned_groups += usize::from(g.banned_until.is_some());
        }
        Self {
            at: now,
            pocket,
            emergency: emergency.map(|e| EmergencyView {
                since: e.since,
                until: e.until,
                remaining: e.until - now,
            }),
            totals: t,
            groups,
        }
    }

    /// The report of one group.
    pub fn group(&self, group: Group) -> Option<&GroupReport> {
        self.groups.iter().find(|g| g.group == group)
    }
}
