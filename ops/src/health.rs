//! Health: the alert thresholds evaluated over a [`Status`].
//!
//! | check | level | fires when (per group) | default |
//! |---|---|---|---|
//! | consecutive 429 | critical | `consecutive_429 > max_consecutive_429` | 1 |
//! | queue depth | critical | `max(queue_depth, waiting) > max_queue_depth` | 50 |
//! | stalled waiters | critical | `stalled_waiters > max_stalled_waiters` | 0 |
//! | wait p95 | warning | recent p95 wait `> max_wait_p95` | 100 ms |
//! | token utilisation | warning | recent utilisation `> max_utilisation` | 0.95 |
//! | TAT drift | warning | recent mean drift / emission interval `> max_tat_drift` | 0.05 |
//! | round trips over the margin | warning | recent round trips longer than the jitter margin `> max_round_trips_over_margin` (GCRA groups: delays may vary by more than Zero-429 assumes there) | 0 |
//! | places held back for others | warning | `reserve > max_reserve`: headers or a 429 showed use that is not ours (another program on the IP or pocket, or a lower server limit); Zero-429 needs every program on a budget behind one limiter, and their 429s count towards the 418 of the IP or pocket too | 0 |
//!
//! Every comparison is strictly "above": a value equal to its threshold is fine.
//! A waiter is *stalled* when it is still pending more than `stall_grace`
//! after its deadline: core admits or fails every waiter by its deadline, so
//! such a waiter is not being woken (a lost wake-up) or not being polled.
//! There is no memory or background-task check: the limiter has no
//! background task and allocates nothing per request.

use core::fmt;

use serde::Serialize;
use upbit_limiter_core::{Duration, Group};

use crate::status::{ser, Status};

/// Alert thresholds, and the window the recent statistics are taken over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Critical above this many 429s in a row (default: 1).
    pub max_consecutive_429: u32,
    /// Critical above this many queued waiters in one group (default: 50).
    pub max_queue_depth: usize,
    /// Critical above this many stalled waiters in one group (default: 0, any is critical).
    pub max_stalled_waiters: usize,
    /// How long past its deadline a pending waiter counts as stalled.
    pub stall_grace: Duration,
    /// Warning above this recent 95th-percentile wait (default: 100 ms).
    pub max_wait_p95: Duration,
    /// Warning above this share of the quota used recently (default: 0.95).
    pub max_utilisation: f64,
    /// Warning above this mean admission lateness, as a share of the emission
    /// interval (default: 0.05).
    pub max_tat_drift: f64,
    /// Warning above this many recent round trips longer than the jitter
    /// margin (default: 0, any).
    pub max_round_trips_over_margin: u32,
    /// Warning above this many places held back for others (default: 0, any).
    pub max_reserve: u32,
    /// The window recent statistics (waits, utilisation, drift) cover.
    pub window: Duration,
}

impl Default for Thresholds {
    /// The alert thresholds of the table above; a 1 s stall grace and a 10 s window.
    fn default() -> Self {
        Self {
            max_consecutive_429: 1,
            max_queue_depth: 50,
            max_stalled_waiters: 0,
            stall_grace: Duration::from_secs(1),
            max_wait_p95: Duration::from_millis(100),
            max_utilisation: 0.95,
            max_tat_drift: 0.05,
            max_round_trips_over_margin: 0,
            max_reserve: 0,
            window: Duration::from_secs(10),
        }
    }
}

/// How healthy the limiter is, worst first in importance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing above a threshold.
    Ok,
    /// A warning threshold is exceeded.
    Warning,
    /// A critical threshold is exceeded.
    Critical,
}

impl Level {
    /// `ok`, `warning` or `critical`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which threshold a [`Reason`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Check {
    /// 429s in a row.
    Consecutive429,
    /// Waiters queued.
    QueueDepth,
    /// Waiters past their deadline by more than the grace.
    StalledWaiters,
    /// Recent 95th-percentile wait.
    WaitP95,
    /// Recent token utilisation.
    Utilisation,
    /// Recent TAT drift.
    TatDrift,
    /// Recent round trips longer than the jitter margin.
    RoundTripsOverMargin,
    /// Places held back for others.
    Reserve,
}

/// One threshold exceeded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    /// How serious.
    pub level: Level,
    /// Which check.
    pub check: Check,
    /// The group it concerns.
    #[serde(serialize_with = "ser::group")]
    pub group: Group,
    /// The measured value (milliseconds for waits).
    pub value: f64,
    /// The threshold it exceeded (same unit).
    pub threshold: f64,
    /// A sentence for people.
    pub message: String,
}

/// The outcome of a health evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthReport {
    /// The worst level among the reasons; `ok` when there are none.
    pub level: Level,
    /// Every exceeded threshold, in group order.
    pub reasons: Vec<Reason>,
}

/// Evaluates `thresholds` over `status`.
pub fn evaluate(status: &Status, thresholds: &Thresholds) -> HealthReport {
    let mut reasons = Vec::new();
    for g in &status.groups {
        let mut fire = |level, check, value: f64, threshold: f64, what: &str| {
            reasons.push(Reason {
                level,
                check,
                group: g.group,
                value,
                threshold,
                message: format!(
                    "{}: {what} {} is above {}",
                    g.group,
                    rounded(value, threshold),
                    rounded(threshold, value)
                ),
            });
        };
        let t = thresholds;
        if g.consecutive_429 > t.max_consecutive_429 {
            fire(
                Level::Critical,
                Check::Consecutive429,
                f64::from(g.consecutive_429),
                f64::from(t.max_consecutive_429),
                "consecutive 429s",
            );
        }
        if g.depth() > t.max_queue_depth {
            fire(
                Level::Critical,
                Check::QueueDepth,
                g.depth() as f64,
                t.max_queue_depth as f64,
                "queue depth",
            );
        }
        if g.stalled_waiters > t.max_stalled_waiters {
            fire(
                Level::Critical,
                Check::StalledWaiters,
                g.stalled_waiters as f64,
                t.max_stalled_waiters as f64,
                "stalled waiters",
            );
        }
        let p95 = g.recent.as_ref().map_or(g.waits.p95, |r| r.wait_p95);
        if p95 > t.max_wait_p95 {
            fire(
                Level::Warning,
                Check::WaitP95,
                ms(p95),
                ms(t.max_wait_p95),
                "p95 wait (ms)",
            );
        }
        if let Some(r) = &g.recent {
            if r.utilisation > t.max_utilisation {
                fire(
                    Level::Warning,
                    Check::Utilisation,
                    r.utilisation,
                    t.max_utilisation,
                    "token utilisation",
                );
            }
            if r.tat_drift > t.max_tat_drift {
                fire(
                    Level::Warning,
                    Check::TatDrift,
                    r.tat_drift,
                    t.max_tat_drift,
                    "TAT drift",
                );
            }
            if r.round_trips_over_margin > u64::from(t.max_round_trips_over_margin) {
                fire(
                    Level::Warning,
                    Check::RoundTripsOverMargin,
                    r.round_trips_over_margin as f64,
                    f64::from(t.max_round_trips_over_margin),
                    "round trips over the jitter margin",
                );
            }
        }
        if g.reserve > t.max_reserve {
            fire(
                Level::Warning,
                Check::Reserve,
                f64::from(g.reserve),
                f64::from(t.max_reserve),
                "places held back for others",
            );
        }
    }
    let level = reasons.iter().map(|r| r.level).max().unwrap_or(Level::Ok);
    HealthReport { level, reasons }
}

/// `x` with at most three decimals and no trailing zeros, or as many more
/// (up to nine) as it takes to tell it from `other`.
fn rounded(x: f64, other: f64) -> String {
    let mut decimals = 3;
    let s = loop {
        let s = format!("{x:.decimals$}");
        if x == other || decimals >= 9 || s != format!("{other:.decimals$}") {
            break s;
        }
        decimals += 1;
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::rounded;

    #[test]
    fn numbers_are_rounded_but_never_to_their_threshold() {
        assert_eq!(rounded(0.952_380_952_380_952_3, 0.95), "0.952");
        assert_eq!(rounded(113.514_751, 100.0), "113.515");
        assert_eq!(rounded(2.0, 1.0), "2");
        assert_eq!(rounded(0.95, 0.952_380_952_380_952_3), "0.95");
        assert_eq!(rounded(0.950_04, 0.95), "0.95004");
        assert_eq!(rounded(0.050_000_000_01, 0.05), "0.05");
    }
}
