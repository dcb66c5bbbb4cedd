//! Budgets we do not have to ourselves: another process on the same IP or
//! pocket (a co-tenant: a `[[loads]]` entry with `background = true`), and a
//! server whose limits change without notice (`[[server.limit_changes]]`).
//!
//! The run counts, per group and per second of virtual time at the server,
//! our requests answered 200, ours answered 429 or 418, and the arrivals of
//! other processes ([`PerSecond`]); everything below is read from those
//! counts after the run, so a 24 h run keeps one small array per group.
//!
//! Spans are whole seconds: a span from `a` to `b` holds the seconds
//! `[floor(a), ceil(b))`. "Rejected" means answered 429 or 418.
//!
//! # A co-tenant ([`CoTenantReport`], one per background load and group it calls)
//!
//! - `rejected_first_10s`: ours rejected in the 10 s after it starts;
//! - `rejected_while_running`: ours rejected from then until it stops;
//! - `rejected_after_stop`: ours rejected from its stop until the next
//!   co-tenant on the group starts (or the traffic ends);
//! - `their_429s`: other processes' requests answered 429 from its start to
//!   its stop. The limiter never sees them, yet they count towards the
//!   unit's 418 as much as ours: a co-tenant refused often enough has the
//!   whole IP or pocket blocked;
//! - `blocked_s`: the seconds of that span in which the group answered
//!   anyone 418 (the unit was blocked);
//! - `ours_per_s`, from 10 s after its start to its end, beside the free
//!   capacity `free_per_s`: the group's limit per second minus the other
//!   processes' actual arrival rate in that span (`co_tenant_per_s`), and
//!   `share_of_free` = `ours_per_s / free_per_s`;
//! - `back_to_95pct_of_limit_s`: the seconds from its stop to the end of the
//!   first whole second in which we got at least 95 % of the limit per second
//!   (also in windows of the limit); `None` when that did not happen before
//!   the next co-tenant on the group started or the traffic ended;
//! - `back_to_95pct_of_alone_s`: the same against `alone_per_s`, our own rate
//!   in the 20 s before the first co-tenant on the group started (full speed
//!   alone, which a limiter with a jitter margin keeps below the limit).
//!
//! # A limit change ([`LimitChangeReport`])
//!
//! - `rejected_after`: ours rejected from the change to the next change of the
//!   group or the end of the traffic;
//! - `rejected_quiet`: ours rejected in the quiet span: from an hour after the
//!   change (half-way through what is left, for shorter runs) for 24 h or to
//!   the end, whichever is sooner (`quiet_from_s`, `quiet_to_s`);
//! - `ours_per_s_after` and `ours_per_s_quiet`, our 200s per second over each
//!   span, with their share of the new limit.

use std::fmt::Write as _;

use serde::Serialize;
use upbit_limiter_core::{Duration, Group, Instant, ServerLimit};

use crate::scenario::Scenario;

/// What one second's count is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    /// One of our requests answered 200.
    Ok,
    /// One of our requests answered 429 or 418.
    Rejected,
    /// A request of another process arrived (whatever the answer).
    Background,
    /// A request of another process was answered 429: the window was full.
    /// It counts towards the unit's 418 as much as one of ours, and we never
    /// see it.
    BackgroundRefused,
    /// A request (ours or another process's) was answered 418: the unit was
    /// blocked.
    Blocked,
}

impl Tally {
    const COUNT: usize = 5;

    const fn index(self) -> usize {
        match self {
            Self::Ok => 0,
            Self::Rejected => 1,
            Self::Background => 2,
            Self::BackgroundRefused => 3,
            Self::Blocked => 4,
        }
    }
}

/// Counts per group and per second of virtual time, by [`Tally`].
#[derive(Clone, Debug, Default)]
pub struct PerSecond {
    groups: Vec<Vec<[u32; Tally::COUNT]>>,
}

fn second_of(at: Instant) -> usize {
    usize::try_from(at.as_nanos() / 1_000_000_000).unwrap_or(usize::MAX)
}

impl PerSecond {
    /// No counts yet.
    pub fn new() -> Self {
        Self {
            groups: vec![Vec::new(); Group::COUNT],
        }
    }

    /// Counts one `what` of `group` at `at`.
    pub fn record(&mut self, group: Group, at: Instant, what: Tally) {
        let secs = &mut self.groups[group.index()];
        let s = second_of(at);
        if s >= secs.len() {
            secs.resize(s + 1, [0; Tally::COUNT]);
        }
        secs[s][what.index()] = secs[s][what.index()].saturating_add(1);
    }

    /// The count of `what` in second `s` (`[s, s + 1)`).
    pub fn at(&self, group: Group, what: Tally, s: u64) -> u32 {
        usize::try_from(s)
            .ok()
            .and_then(|s| self.groups[group.index()].get(s))
            .map_or(0, |c| c[what.index()])
    }

    /// The count of `what` in the seconds `[from, to)`.
    pub fn sum(&self, group: Group, what: Tally, from: u64, to: u64) -> u64 {
        let secs = &self.groups[group.index()];
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(secs.len());
        let to = usize::try_from(to).unwrap_or(usize::MAX).min(secs.len());
        secs.get(from..to.max(from))
            .map_or(0, |s| s.iter().map(|c| u64::from(c[what.index()])).sum())
    }

    /// How many of the seconds `[from, to)` counted at least one `what`.
    pub fn seconds_with(&self, group: Group, what: Tally, from: u64, to: u64) -> u64 {
        (from..to).filter(|&s| self.at(group, what, s) > 0).count() as u64
    }

    /// The mean count of `what` per second over `[from, to)`; `None` if empty.
    pub fn rate(&self, group: Group, what: Tally, from: u64, to: u64) -> Option<f64> {
        (to > from).then(|| self.sum(group, what, from, to) as f64 / (to - from) as f64)
    }
}

/// What our clients got while another process used the same budget.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoTenantReport {
    /// The background load's name.
    pub load: String,
    /// The group.
    pub group: String,
    /// `poisson`, `uniform` or `bursty`.
    pub arrivals: String,
    /// Calls per clump (1 unless bursty).
    pub burst_size: u32,
    /// When it started (virtual seconds).
    pub start_s: f64,
    /// When it stopped.
    pub until_s: f64,
    /// The group's limit per second when it started (`N / W` of the first window).
    pub limit_per_s: f64,
    /// Other processes' arrivals at the server in the group, per second, from
    /// 10 s after its start to its end.
    pub co_tenant_per_s: Option<f64>,
    /// `limit_per_s - co_tenant_per_s`.
    pub free_per_s: Option<f64>,
    /// Our 200s per second over the same span.
    pub ours_per_s: Option<f64>,
    /// `ours_per_s / free_per_s`.
    pub share_of_free: Option<f64>,
    /// Ours rejected (429 or 418) in the 10 s after it started.
    pub rejected_first_10s: u64,
    /// Ours rejected from then until it stopped.
    pub rejected_while_running: u64,
    /// Ours rejected from its stop until the next co-tenant of the group
    /// started, or the traffic ended.
    pub rejected_after_stop: u64,
    /// Its own requests (and other processes') answered 429 from its start to
    /// its stop: refused because the window was full, each counting towards
    /// the unit's 418 like one of ours, and never seen by the limiter.
    pub their_429s: u64,
    /// Seconds from its start to its stop in which the group answered a
    /// request (ours or another process's) 418: the unit was blocked.
    pub blocked_s: u64,
    /// Seconds from its stop to the end of the first whole second with at
    /// least 95 % of `limit_per_s` of our requests answered 200.
    pub back_to_95pct_of_limit_s: Option<f64>,
    /// The same in windows of the group's limit.
    pub back_to_95pct_of_limit_windows: Option<f64>,
    /// Our 200s per second in the 20 s before the first co-tenant of the group
    /// started (after the first 5 s of the run; at least 5 s of them).
    pub alone_per_s: Option<f64>,
    /// As `back_to_95pct_of_limit_s`, against 95 % of `alone_per_s`.
    pub back_to_95pct_of_alone_s: Option<f64>,
    /// The same in windows.
    pub back_to_95pct_of_alone_windows: Option<f64>,
}

/// What our clients got after the server changed a group's limits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LimitChangeReport {
    /// The group.
    pub group: String,
    /// When the limits changed (virtual seconds).
    pub at_s: f64,
    /// The windows before, e.g. `12/1s`.
    pub from: String,
    /// The windows after.
    pub to: String,
    /// The new limit per second (`N / W` of the first window).
    pub limit_per_s: f64,
    /// Ours rejected (429 or 418) from the change to the next change of the
    /// group or the end of the traffic.
    pub rejected_after: u64,
    /// Our 200s per second over that span.
    pub ours_per_s_after: Option<f64>,
    /// As a share of the new limit.
    pub share_after: Option<f64>,
    /// The quiet span: from an hour after the change (half-way through what
    /// is left, for shorter runs)...
    pub quiet_from_s: u64,
    /// ...for 24 h, or to the end of that span.
    pub quiet_to_s: u64,
    /// Its length in hours.
    pub quiet_hours: f64,
    /// Ours rejected in it.
    pub rejected_quiet: u64,
    /// Our 200s per second in it.
    pub ours_per_s_quiet: Option<f64>,
    /// As a share of the new limit.
    pub share_quiet: Option<f64>,
}

fn per_second(limit: ServerLimit) -> f64 {
    f64::from(limit.max_requests) / (limit.window.as_nanos().max(1) as f64 / 1e9)
}

fn round(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

fn floor_s(d: Duration) -> u64 {
    d.as_nanos() / 1_000_000_000
}

fn ceil_s(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000)
}

/// `"12/1s"`, or several windows joined by `+`.
pub(crate) fn limits_label(limits: &[ServerLimit]) -> String {
    let label = |l: &ServerLimit| {
        let w = l.window.as_nanos();
        if w % 1_000_000_000 == 0 {
            format!("{}/{}s", l.max_requests, w / 1_000_000_000)
        } else {
            format!("{}/{}ms", l.max_requests, w / 1_000_000)
        }
    };
    limits.iter().map(label).collect::<Vec<_>>().join("+")
}

/// The first second from `from` on, before `to`, with at least `threshold`
/// of our 200s; the seconds from `stop` to its end, and that in windows.
fn back_to(
    per: &PerSecond,
    group: Group,
    threshold: f64,
    (from, to): (u64, u64),
    stop: Duration,
    window: Duration,
) -> (Option<f64>, Option<f64>) {
    let Some(k) = (from..to).find(|&s| f64::from(per.at(group, Tally::Ok, s)) >= threshold) else {
        return (None, None);
    };
    let secs = ((k + 1) as f64 - stop.as_secs_f64()).max(0.0);
    let windows = secs / (window.as_nanos().max(1) as f64 / 1e9);
    (Some(round(secs)), Some(round(windows)))
}

/// The groups a load calls, in Upbit's group order.
fn groups_of(load: &crate::scenario::Load) -> Vec<Group> {
    Group::ALL
        .into_iter()
        .filter(|g| load.mix.iter().any(|(c, _)| c.group == *g))
        .collect()
}

/// One report per background load and group it calls, in the scenario's
/// order; `end` is when the traffic ends.
pub fn co_tenants(scenario: &Scenario, per: &PerSecond, end: Duration) -> Vec<CoTenantReport> {
    let end_s = ceil_s(end);
    let background: Vec<_> = scenario.loads.iter().filter(|l| l.background).collect();
    let mut out = Vec::new();
    for l in &background {
        for g in groups_of(l) {
            let same_group = || background.iter().filter(move |o| groups_of(o).contains(&g));
            let limit = scenario.limits_at(g, l.start)[0];
            let limit_per_s = per_second(limit);
            let s0 = floor_s(l.start);
            let run_from = s0 + 10;
            let stop = ceil_s(l.until).min(end_s);
            let (from, to) = (run_from.min(stop), stop);
            let co = per.rate(g, Tally::Background, from, to);
            let ours = per.rate(g, Tally::Ok, from, to);
            let free = co.map(|c| limit_per_s - c);
            let share = match (ours, free) {
                (Some(o), Some(f)) if f > 0.0 => Some(round(o / f)),
                _ => None,
            };
            // After the stop: until the next co-tenant of the group starts.
            let next = same_group()
                .map(|o| floor_s(o.start))
                .filter(|&s| s >= stop)
                .min()
                .unwrap_or(end_s)
                .min(end_s);
            let after = (stop, next.max(stop));
            let stop_limit = scenario.limits_at(g, l.until)[0];
            let (back_limit_s, back_limit_w) = back_to(
                per,
                g,
                0.95 * per_second(stop_limit),
                after,
                l.until,
                stop_limit.window,
            );
            let first = same_group().map(|o| floor_s(o.start)).min().unwrap_or(s0);
            let alone_from = first.saturating_sub(20).max(5);
            let alone = (first >= alone_from + 5)
                .then(|| per.rate(g, Tally::Ok, alone_from, first))
                .flatten();
            let (back_alone_s, back_alone_w) = match alone {
                Some(a) if a > 0.0 => back_to(per, g, 0.95 * a, after, l.until, stop_limit.window),
                _ => (None, None),
            };
            out.push(CoTenantReport {
                load: l.name.clone(),
                group: g.as_str().to_owned(),
                arrivals: l.arrivals.as_str().to_owned(),
                burst_size: l.burst,
                start_s: l.start.as_secs_f64(),
                until_s: l.until.as_secs_f64(),
                limit_per_s: round(limit_per_s),
                co_tenant_per_s: co.map(round),
                free_per_s: free.map(round),
                ours_per_s: ours.map(round),
                share_of_free: share,
                rejected_first_10s: per.sum(g, Tally::Rejected, s0, run_from.min(stop)),
                rejected_while_running: per.sum(g, Tally::Rejected, from, to),
                rejected_after_stop: per.sum(g, Tally::Rejected, after.0, after.1),
                their_429s: per.sum(g, Tally::BackgroundRefused, s0, stop),
                blocked_s: per.seconds_with(g, Tally::Blocked, s0, stop),
                back_to_95pct_of_limit_s: back_limit_s,
                back_to_95pct_of_limit_windows: back_limit_w,
                alone_per_s: alone.map(round),
                back_to_95pct_of_alone_s: back_alone_s,
                back_to_95pct_of_alone_windows: back_alone_w,
            });
        }
    }
    out
}

const HOUR_S: u64 = 3_600;
const DAY_S: u64 = 24 * HOUR_S;

/// One report per limit change, in time order; `end` is when the traffic ends.
pub fn limit_changes(scenario: &Scenario, per: &PerSecond, end: Duration) -> Vec<LimitChangeReport> {
    let end_s = ceil_s(end);
    let mut out = Vec::new();
    for (i, c) in scenario.limit_changes.iter().enumerate() {
        let g = c.group;
        let before = if c.at.is_zero() {
            scenario.preset.limits(g).to_vec()
        } else {
            scenario.limits_at(g, c.at - Duration::from_nanos(1))
        };
        let limit_per_s = per_second(c.limits[0]);
        let from = floor_s(c.at).min(end_s);
        let to = scenario.limit_changes[i + 1..]
            .iter()
            .find(|o| o.group == g)
            .map_or(end_s, |o| floor_s(o.at).min(end_s))
            .max(from);
        let left = to - from;
        let settle = if left > 2 * HOUR_S { HOUR_S } else { left / 2 };
        let quiet_from = from + settle;
        let quiet_to = (quiet_from + DAY_S).min(to);
        let share = |r: Option<f64>| r.filter(|_| limit_per_s > 0.0).map(|r| round(r / limit_per_s));
        let after = per.rate(g, Tally::Ok, from, to);
        let quiet = per.rate(g, Tally::Ok, quiet_from, quiet_to);
        out.push(LimitChangeReport {
            group: g.as_str().to_owned(),
            at_s: c.at.as_secs_f64(),
            from: limits_label(&before),
            to: limits_label(&c.limits),
            limit_per_s: round(limit_per_s),
            rejected_after: per.sum(g, Tally::Rejected, from, to),
            ours_per_s_after: after.map(round),
            share_after: share(after),
            quiet_from_s: quiet_from,
            quiet_to_s: quiet_to,
            quiet_hours: round((quiet_to - quiet_from) as f64 / HOUR_S as f64),
            rejected_quiet: per.sum(g, Tally::Rejected, quiet_from, quiet_to),
            ours_per_s_quiet: quiet.map(round),
            share_quiet: share(quiet),
        });
    }
    out
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

fn pct(v: Option<f64>) -> String {
    opt(v, |v| format!("{:.1}%", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    opt(v, |v| format!("{v:.2}"))
}

/// The co-tenant table of the text report (empty without co-tenants).
pub fn render_co_tenants(rows: &[CoTenantReport]) -> String {
    let mut o = String::new();
    if rows.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "\nco-tenants (another process on the same budget, no limiter); rejected = our 429/418"
    );
    let _ = writeln!(
        o,
        "{:<22} {:<10} {:<11} {:>13} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7} {:>6} {:>14} {:>14}",
        "co-tenant",
        "group",
        "arrivals",
        "running s",
        "limit/s",
        "theirs",
        "free/s",
        "ours/s",
        "of free",
        "rej 10s",
        "rej then",
        "rej after",
        "their429",
        "418 s",
        "95% limit s(W)",
        "95% alone s(W)"
    );
    for r in rows {
        let arrivals = if r.burst_size > 1 {
            format!("{} x{}", r.arrivals, r.burst_size)
        } else {
            r.arrivals.clone()
        };
        let back = |s: Option<f64>, w: Option<f64>| match (s, w) {
            (Some(s), Some(w)) => format!("{s:.0} ({w:.1})"),
            _ => "never".to_owned(),
        };
        let _ = writeln!(
            o,
            "{:<22} {:<10} {:<11} {:>13} {:>7.2} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7} {:>6} {:>14} {:>14}",
            r.load,
            r.group,
            arrivals,
            format!("{:.0}-{:.0}", r.start_s, r.until_s),
            r.limit_per_s,
            num(r.co_tenant_per_s),
            num(r.free_per_s),
            num(r.ours_per_s),
            pct(r.share_of_free),
            r.rejected_first_10s,
            r.rejected_while_running,
            r.rejected_after_stop,
            r.their_429s,
            r.blocked_s,
            back(r.back_to_95pct_of_limit_s, r.back_to_95pct_of_limit_windows),
            back(r.back_to_95pct_of_alone_s, r.back_to_95pct_of_alone_windows),
        );
    }
    let _ = writeln!(
        o,
        "rej 10s: in its first 10 s; rej then: from then to its stop (rates over that span too); rej after: from its \
         stop to the next co-tenant or the end; their429: other processes' requests answered 429 while it ran \
         (unseen by the limiter, they count towards the unit's 418); 418 s: seconds of that span in which anyone got a \
         418; 95% limit/alone: seconds (windows) from its stop to the end of the first \
         second with 95 % of the limit / of our rate alone before the first co-tenant"
    );
    o
}

/// The limit-change table of the text report (empty without changes).
pub fn render_limit_changes(rows: &[LimitChangeReport]) -> String {
    let mut o = String::new();
    if rows.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "\nlimit changes (the limiter is not told); rejected = our 429/418"
    );
    let _ = writeln!(
        o,
        "{:<17} {:>8} {:>13} {:>9} {:>8} {:>8} {:>19} {:>9} {:>8} {:>8}",
        "group",
        "at s",
        "limits",
        "rej after",
        "ours/s",
        "of new",
        "quiet span s (h)",
        "rej quiet",
        "ours/s",
        "of new"
    );
    for r in rows {
        let _ = writeln!(
            o,
            "{:<17} {:>8.1} {:>13} {:>9} {:>8} {:>8} {:>19} {:>9} {:>8} {:>8}",
            r.group,
            r.at_s,
            format!("{} -> {}", r.from, r.to),
            r.rejected_after,
            num(r.ours_per_s_after),
            pct(r.share_after),
            format!("{}-{} ({:.1})", r.quiet_from_s, r.quiet_to_s, r.quiet_hours),
            r.rejected_quiet,
            num(r.ours_per_s_quiet),
            pct(r.share_quiet),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(n)
    }

    #[test]
    fn seconds_count_and_sum() {
        let mut p = PerSecond::new();
        p.record(Group::Ticker, s(3), Tally::Ok);
        p.record(Group::Ticker, s(3) + Duration::from_millis(999), Tally::Ok);
        p.record(Group::Ticker, s(4), Tally::Rejected);
        p.record(Group::Order, s(4), Tally::Background);
        assert_eq!(p.at(Group::Ticker, Tally::Ok, 3), 2);
        assert_eq!(p.at(Group::Ticker, Tally::Ok, 4), 0);
        assert_eq!(p.at(Group::Ticker, Tally::Ok, 1_000_000), 0);
        assert_eq!(p.sum(Group::Ticker, Tally::Ok, 0, 100), 2);
        assert_eq!(p.sum(Group::Ticker, Tally::Rejected, 0, 4), 0);
        assert_eq!(p.sum(Group::Ticker, Tally::Rejected, 4, 5), 1);
        assert_eq!(p.sum(Group::Ticker, Tally::Ok, 5, 3), 0);
        assert_eq!(p.sum(Group::Order, Tally::Background, 0, 10), 1);
        assert_eq!(p.rate(Group::Ticker, Tally::Ok, 2, 4), Some(1.0));
        assert_eq!(p.rate(Group::Ticker, Tally::Ok, 4, 4), None);
        // Seconds with at least one, not the count in them.
        p.record(Group::Order, s(4), Tally::Blocked);
        p.record(Group::Order, s(4), Tally::Blocked);
        p.record(Group::Order, s(6), Tally::Blocked);
        assert_eq!(p.seconds_with(Group::Order, Tally::Blocked, 0, 10), 2);
        assert_eq!(p.seconds_with(Group::Order, Tally::Blocked, 5, 6), 0);
        assert_eq!(p.seconds_with(Group::Ticker, Tally::Blocked, 0, 10), 0);
    }

    #[test]
    fn recovery_is_counted_to_the_end_of_the_first_full_second() {
        let mut p = PerSecond::new();
        for sec in 0..20 {
            let n = if sec < 13 { 5 } else { 10 };
            for _ in 0..n {
                p.record(Group::Ticker, s(sec), Tally::Ok);
            }
        }
        let stop = Duration::from_millis(10_500);
        let w = Duration::from_secs(1);
        // Seconds 11 and 12 have 5; second 13, [13, 14), has 10: 3.5 s after the stop.
        assert_eq!(
            back_to(&p, Group::Ticker, 9.5, (11, 20), stop, w),
            (Some(3.5), Some(3.5))
        );
        assert_eq!(
            back_to(&p, Group::Ticker, 9.5, (11, 20), stop, Duration::from_secs(2)),
            (Some(3.5), Some(1.75))
        );
        assert_eq!(back_to(&p, Group::Ticker, 9.5, (11, 13), stop, w), (None, None));
    }

    #[test]
    fn labels() {
        assert_eq!(limits_label(&[ServerLimit::per_second(8)]), "8/1s");
        assert_eq!(
            limits_label(&[
                ServerLimit::per_second(5),
                ServerLimit::new(100, Duration::from_secs(60))
            ]),
            "5/1s+100/60s"
        );
        assert_eq!(
            limits_label(&[ServerLimit::new(5, Duration::from_millis(500))]),
            "5/500ms"
        );
    }
}
