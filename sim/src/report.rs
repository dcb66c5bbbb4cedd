//! The report of one run: per group and overall, with the SLA targets.
//!
//! Serialised as JSON by `--json`; [`Report::render`] draws the table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::budget::{render_co_tenants, render_limit_changes, CoTenantReport, LimitChangeReport};
use crate::histogram::Histogram;

/// The SLA targets.
pub mod targets {
    /// Share of requests that must get neither 429 nor 418, in percent.
    pub const WITHOUT_429_PCT: f64 = 99.95;
    /// Median wait, in milliseconds (strictly below).
    pub const P50_MS: f64 = 50.0;
    /// 95th percentile wait (strictly below).
    pub const P95_MS: f64 = 200.0;
    /// 99th percentile wait (strictly below).
    pub const P99_MS: f64 = 500.0;
}

/// Wait quantiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct WaitMs {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Longest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

pub(crate) fn ms(d: upbit_limiter_core::Duration) -> f64 {
    // Round to the microsecond so the JSON stays readable.
    (d.as_nanos() as f64 / 1_000.0).round() / 1_000.0
}

impl WaitMs {
    /// From a histogram of waits.
    pub fn from_histogram(h: &Histogram) -> Self {
        Self {
            p50: ms(h.quantile(0.50)),
            p95: ms(h.quantile(0.95)),
            p99: ms(h.quantile(0.99)),
            max: ms(h.max()),
            mean: ms(h.mean()),
        }
    }
}

/// Requests the policy refused locally, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LocalRejections {
    /// The wait would have passed the deadline (the waiter timeout).
    pub timeout: u64,
    /// The circuit breaker was open.
    pub circuit_open: u64,
    /// The scope was banned after a 418.
    pub banned: u64,
}

impl LocalRejections {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.timeout + self.circuit_open + self.banned
    }
}

/// The adaptive rate ratio over the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RatioSpan {
    /// The lowest it went.
    pub min: f64,
    /// At the end (`final` in JSON).
    #[serde(rename = "final")]
    pub last: f64,
}

/// One breaker transition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerChange {
    /// Virtual seconds.
    pub at_s: f64,
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
}

/// One of the first 429/418 responses to our requests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// When the request was admitted and sent (virtual seconds).
    pub sent_s: f64,
    /// When it reached the server.
    pub arrival_s: f64,
    /// 429 or 418.
    pub status: u16,
}

/// Background traffic of one group (another process, no limiter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Background {
    /// Requests that reached the server.
    pub requests: u64,
    /// Of those, answered 429 or 418.
    pub rejected: u64,
}

/// One group's numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupReport {
    /// The group (Upbit's documented name).
    pub group: String,
    /// The server's limit, e.g. `10/1s`.
    pub limit: String,
    /// Requests our clients wanted to make.
    pub requests: u64,
    /// Of those, admitted by the policy and sent.
    pub admitted: u64,
    /// Of those sent, answered 200.
    pub ok: u64,
    /// Answered 429.
    pub status_429: u64,
    /// Answered 418.
    pub status_418: u64,
    /// No response within the client timeout (lost or too slow).
    pub no_response: u64,
    /// Refused by the policy without sending.
    pub local_rejections: LocalRejections,
    /// How long admitted requests waited for admission.
    pub wait_ms: WaitMs,
    /// The peak number of accepted requests (ours and background) in any
    /// sliding window of the group's limit, as a share of the limit.
    pub utilisation: f64,
    /// The most of our requests waiting for admission at once.
    pub max_queue_depth: u64,
    /// The rate the policy admitted at while requests were waiting.
    pub throughput: Throughput,
    /// Breaker transitions seen (`None` for policies without a breaker).
    pub breaker_transitions: Option<u64>,
    /// The first few transitions.
    pub breaker_log: Vec<BreakerChange>,
    /// The breaker's state at the end.
    pub breaker_final: Option<String>,
    /// The adaptive ratio (`None` for policies without one).
    pub ratio: Option<RatioSpan>,
    /// `Remaining-Req` headers that tightened the limiter.
    pub header_tightenings: Option<u64>,
    /// Background traffic.
    pub background: Background,
    /// The first few 429/418 responses, with their send instants.
    pub first_violations: Vec<Violation>,
}

/// How fast a policy admits when demand exceeds the limit: requests admitted
/// after a wait above zero, per second, over the spells of at least one
/// window `W` during which some request of the group was waiting without a
/// break. A limit of `N` per `W` bounds it near `N / W` over a long backlog
/// (the requests admitted at once after an idle spell are not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// Seconds of those spells.
    pub backlog_s: f64,
    /// Requests admitted after waiting, within them.
    pub admitted_after_wait: u64,
    /// `admitted_after_wait / backlog_s`; `None` without a backlog.
    pub per_s: Option<f64>,
    /// The server's rate for the group, `N / W` of its first limit.
    pub limit_per_s: f64,
    /// `per_s` as a share of `limit_per_s`.
    pub share_of_limit: Option<f64>,
}

impl Throughput {
    /// From the count admitted after waiting and the backlogged time.
    pub fn measure(admitted_after_wait: u64, backlog_ns: u64, limit_per_s: f64) -> Self {
        let backlog_s = backlog_ns as f64 / 1e9;
        let per_s =
            (backlog_ns > 0 && admitted_after_wait > 0).then(|| admitted_after_wait as f64 / backlog_s);
        let round = |v: f64, k: f64| (v * k).round() / k;
        Self {
            backlog_s: round(backlog_s, 1e6),
            admitted_after_wait,
            per_s: per_s.map(|v| round(v, 1e4)),
            limit_per_s: round(limit_per_s, 1e4),
            share_of_limit: per_s
                .filter(|_| limit_per_s > 0.0)
                .map(|v| round(v / limit_per_s, 1e4)),
        }
    }
}

/// One SLA line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SlaItem {
    /// The target.
    pub target: f64,
    /// What the run achieved.
    pub value: f64,
    /// Whether the target is met.
    pub met: bool,
    /// For a wait: the least the server's limits allow any policy that sends
    /// every request, for this run's traffic ([`crate::least_wait`]).
    pub least_possible: Option<f64>,
    /// Whether any policy could meet the target (false when even the least
    /// possible wait is not below it).
    pub attainable: bool,
}

/// The least wait quantiles the limits allow for a run's traffic, in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LeastWaitMs {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// The SLA targets against the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sla {
    /// Percent of sent requests answered without 429/418 (at least the target).
    pub without_429_pct: SlaItem,
    /// Median wait in ms (below the target).
    pub p50_ms: SlaItem,
    /// 95th percentile wait in ms.
    pub p95_ms: SlaItem,
    /// 99th percentile wait in ms.
    pub p99_ms: SlaItem,
    /// Every target met.
    pub all_met: bool,
}

impl Sla {
    /// Evaluates the targets; `least` is what the limits allow at best.
    pub fn evaluate(sent: u64, rejected: u64, wait: &WaitMs, least: &LeastWaitMs) -> Self {
        let pct = if sent == 0 {
            100.0
        } else {
            100.0 * (sent - rejected.min(sent)) as f64 / sent as f64
        };
        let pct = (pct * 10_000.0).round() / 10_000.0;
        let below = |target: f64, value: f64, least: f64| SlaItem {
            target,
            value,
            met: value < target,
            least_possible: Some(least),
            attainable: least < target,
        };
        let without = SlaItem {
            target: targets::WITHOUT_429_PCT,
            value: pct,
            met: pct >= targets::WITHOUT_429_PCT,
            least_possible: None,
            attainable: true,
        };
        let p50 = below(targets::P50_MS, wait.p50, least.p50);
        let p95 = below(targets::P95_MS, wait.p95, least.p95);
        let p99 = below(targets::P99_MS, wait.p99, least.p99);
        Self {
            without_429_pct: without,
            p50_ms: p50,
            p95_ms: p95,
            p99_ms: p99,
            all_met: without.met && p50.met && p95.met && p99.met,
        }
    }
}

/// Actors (closed-loop clients) that started and finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Actors {
    /// Started.
    pub started: u64,
    /// Ran every round to the end.
    pub finished: u64,
}

/// The report of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The server's window model.
    pub server_model: String,
    /// The admission policy.
    pub policy: String,
    /// The random seed of the run.
    pub seed: u64,
    /// Upbit preset.
    pub preset: String,
    /// The network profile the delays below come from.
    pub network: String,
    /// The network: one-way delay and jitter, in ms.
    pub delay_ms: f64,
    /// The jitter `J`.
    pub jitter_ms: f64,
    /// Probability that one direction of a trip stalls.
    pub stall_chance: f64,
    /// A stall's extra delay, shortest and longest, in ms.
    pub stall_ms: [f64; 2],
    /// Virtual time simulated.
    pub virtual_seconds: f64,
    /// Wall-clock time the run took (the only value that differs between
    /// runs of the same seed).
    pub wall_ms: f64,
    /// Requests our clients wanted to make.
    pub total_requests: u64,
    /// Admitted and sent.
    pub total_admitted: u64,
    /// Answered 429.
    pub total_429: u64,
    /// Answered 418.
    pub total_418: u64,
    /// Without a response in time.
    pub total_no_response: u64,
    /// Refused by the policy without sending.
    pub total_local_rejections: u64,
    /// Background requests (another process) and how many were rejected.
    pub background: Background,
    /// Closed-loop clients.
    pub actors: Actors,
    /// Waits of every admitted request.
    pub wait_ms: WaitMs,
    /// The SLA targets.
    pub sla: Sla,
    /// Per group, in Upbit's group order, only groups that saw traffic.
    pub groups: Vec<GroupReport>,
    /// Per background load and group it calls: what we got while it ran and
    /// after it stopped ([`crate::budget`]).
    pub co_tenants: Vec<CoTenantReport>,
    /// Per server limit change: what we got after it.
    pub limit_changes: Vec<LimitChangeReport>,
    /// Per process, when the scenario has several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessReport>,
    /// Per group, with several processes: the most and least admitted to one
    /// process among those that call the group.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spread: Vec<Spread>,
    /// The shared store, when the processes shared the budgets through it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreReport>,
}

/// One process of a scenario with several.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessReport {
    /// Its name (`process` in the scenario).
    pub name: String,
    /// Requests its clients wanted to make.
    pub requests: u64,
    /// Admitted and sent.
    pub admitted: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered 429.
    pub status_429: u64,
    /// Answered 418.
    pub status_418: u64,
    /// Waits of its admitted requests.
    pub wait_ms: WaitMs,
    /// Admitted per group, for the groups it got any in.
    pub admitted_per_group: Vec<(String, u64)>,
}

/// How evenly the processes calling one group shared it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// The group.
    pub group: String,
    /// The processes that call it.
    pub processes: usize,
    /// The most requests admitted to one of them.
    pub most: u64,
    /// The least.
    pub least: u64,
    /// `least / most` (1: even).
    pub least_of_most: f64,
}

/// What the shared store did.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StoreReport {
    /// The round trip to it, per decision and per report.
    pub rtt_ms: f64,
    /// Decisions asked by every process.
    pub decisions: u64,
    /// Of them, admissions.
    pub admitted: u64,
    /// Reports.
    pub reports: u64,
    /// Decisions per admission: the extra store load of waiting.
    pub decisions_per_admission: f64,
}

fn fmt_ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v:.1}ms")
    }
}

fn met(m: bool) -> &'static str {
    if m {
        "met"
    } else {
        "NOT met"
    }
}

impl Report {
    /// Whether any of our requests got a 429 or a 418.
    pub fn violated(&self) -> bool {
        self.total_429 > 0 || self.total_418 > 0
    }

    /// ` + stalls 1.00s-3.00s on 0.5 % of trips`, or nothing without stalls.
    pub fn stalls_label(&self) -> String {
        if self.stall_chance > 0.0 {
            format!(
                " + stalls {}-{} on {} % of one-way trips",
                fmt_ms(self.stall_ms[0]),
                fmt_ms(self.stall_ms[1]),
                self.stall_chance * 100.0
            )
        } else {
            String::new()
        }
    }

    /// The table of processes and the spread between them (empty with one).
    fn render_processes(&self) -> String {
        let mut o = String::new();
        if self.processes.is_empty() {
            return o;
        }
        let _ = writeln!(o);
        match &self.store {
            Some(st) => {
                let _ = writeln!(
                    o,
                    "processes sharing the budgets through a store ({} ms round trip): {} decisions for {} \
                     admissions ({:.3} per admission), {} reports",
                    st.rtt_ms, st.decisions, st.admitted, st.decisions_per_admission, st.reports
                );
            }
            None => {
                let _ = writeln!(o, "processes, each on its own limiter only (no shared store)");
            }
        }
        let _ = writeln!(
            o,
            "{:<12} {:>8} {:>7} {:>5} {:>5} {:>8} {:>8}  admitted per group",
            "process", "requests", "admit", "429", "418", "wait p50", "p99"
        );
        for p in &self.processes {
            let per: Vec<String> = p
                .admitted_per_group
                .iter()
                .map(|(g, n)| format!("{g} {n}"))
                .collect();
            let _ = writeln!(
                o,
                "{:<12} {:>8} {:>7} {:>5} {:>5} {:>8} {:>8}  {}",
                p.name,
                p.requests,
                p.admitted,
                p.status_429,
                p.status_418,
                fmt_ms(p.wait_ms.p50),
                fmt_ms(p.wait_ms.p99),
                per.join(", ")
            );
        }
        for s in &self.spread {
            let _ = writeln!(
                o,
                "spread {}: most {} least {} admitted to one of {} processes (least/most {:.3})",
                s.group, s.most, s.least, s.processes, s.least_of_most
            );
        }
        o
    }

    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "scenario {} | server {} | policy {} | seed {} | preset {} | network {}: delay {} + jitter {}{}",
            self.scenario,
            self.server_model,
            self.policy,
            self.seed,
            self.preset,
            self.network,
            fmt_ms(self.delay_ms),
            fmt_ms(self.jitter_ms),
            self.stalls_label()
        );
        let _ = writeln!(
            o,
            "virtual {:.1} s in {:.0} ms wall | requests {} | admitted {} | 429: {} | 418: {} | no response: {} | refused locally: {}",
            self.virtual_seconds,
            self.wall_ms,
            self.total_requests,
            self.total_admitted,
            self.total_429,
            self.total_418,
            self.total_no_response,
            self.total_local_rejections
        );
        if self.actors.started > 0 {
            let _ = writeln!(
                o,
                "actors finished {}/{}",
                self.actors.finished, self.actors.started
            );
        }
        if self.background.requests > 0 {
            let _ = writeln!(
                o,
                "background process (same IP/pocket, no limiter): {} requests, {} rejected",
                self.background.requests, self.background.rejected
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<17} {:>7} {:>8} {:>7} {:>5} {:>5} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8} {:>5} {:>5} {:>7} {:>11}",
            "group",
            "limit",
            "requests",
            "admit",
            "429",
            "418",
            "no-rsp",
            "refused",
            "wait p50",
            "p95",
            "p99",
            "max",
            "util",
            "max-q",
            "breaker",
            "ratio min/end"
        );
        let mut over_limit = false;
        for g in &self.groups {
            let breaker = g.breaker_transitions.map_or("-".to_owned(), |t| format!("{t}"));
            let ratio = g
                .ratio
                .map_or("-".to_owned(), |r| format!("{:.2}/{:.2}", r.min, r.last));
            let _ = writeln!(
                o,
                "{:<17} {:>7} {:>8} {:>7} {:>5} {:>5} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8} {:>5.2} {:>5} {:>7} {:>11}",
                g.group,
                g.limit,
                g.requests,
                g.admitted,
                g.status_429,
                g.status_418,
                g.no_response,
                g.local_rejections.total(),
                fmt_ms(g.wait_ms.p50),
                fmt_ms(g.wait_ms.p95),
                fmt_ms(g.wait_ms.p99),
                fmt_ms(g.wait_ms.max),
                g.utilisation,
                g.max_queue_depth,
                breaker,
                ratio
            );
            over_limit |= g.utilisation > 1.0;
        }
        let _ = writeln!(
            o,
            "util: the most requests the server accepted (ours and background) in any window of the limit, \
             as a share of the limit{}",
            if over_limit {
                "; above 1 the server accepted more than its limit within some window, as fixed (calendar) \
                 windows allow across a window boundary (up to twice the limit)"
            } else {
                ""
            }
        );
        for g in &self.groups {
            if !g.breaker_log.is_empty() {
                let log: Vec<String> = g
                    .breaker_log
                    .iter()
                    .map(|c| format!("{:.1}s {}->{}", c.at_s, c.from, c.to))
                    .collect();
                let _ = writeln!(o, "breaker {}: {}", g.group, log.join(", "));
            }
            if let Some(v) = g.first_violations.first() {
                let _ = writeln!(
                    o,
                    "first {} in {}: sent at {:.6} s, arrived at {:.6} s",
                    v.status, g.group, v.sent_s, v.arrival_s
                );
            }
        }
        o.push_str(&self.render_processes());
        o.push_str(&render_co_tenants(&self.co_tenants));
        o.push_str(&render_limit_changes(&self.limit_changes));
        let s = &self.sla;
        let _ = writeln!(o);
        let _ = writeln!(o, "SLA targets");
        let _ = writeln!(
            o,
            "  requests without 429/418 >= {:.2} %   {:>10.4} %   {}",
            s.without_429_pct.target,
            s.without_429_pct.value,
            met(s.without_429_pct.met)
        );
        for (name, item) in [("p50", s.p50_ms), ("p95", s.p95_ms), ("p99", s.p99_ms)] {
            let _ = write!(
                o,
                "  wait {name} < {:<5} ms                {:>12}   {}",
                item.target,
                fmt_ms(item.value),
                met(item.met)
            );
            match item.least_possible {
                Some(least) if !item.met && !item.attainable => {
                    let _ = writeln!(
                        o,
                        ": no policy that sends every request can meet it: the limits allow a {name} wait of \
                         no less than {} for this traffic",
                        fmt_ms(least)
                    );
                }
                _ => o.push('\n'),
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sla_marks_each_target() {
        let w = WaitMs {
            p50: 10.0,
            p95: 250.0,
            p99: 400.0,
            max: 900.0,
            mean: 20.0,
        };
        let s = Sla::evaluate(10_000, 5, &w, &LeastWaitMs::default());
        assert!(s.without_429_pct.met && s.without_429_pct.value == 99.95);
        assert!(s.p50_ms.met && !s.p95_ms.met && s.p99_ms.met);
        assert!(!s.all_met);
        let s = Sla::evaluate(10_000, 6, &WaitMs::default(), &LeastWaitMs::default());
        assert!(!s.without_429_pct.met);
        assert!(Sla::evaluate(0, 0, &WaitMs::default(), &LeastWaitMs::default()).all_met);
        let least = LeastWaitMs {
            p50: 4000.0,
            p95: 199.0,
            p99: 9000.0,
        };
        let s = Sla::evaluate(100, 0, &w, &least);
        assert_eq!(
            (s.p50_ms.attainable, s.p95_ms.attainable, s.p99_ms.attainable),
            (false, true, false)
        );
        assert_eq!(s.p99_ms.least_possible, Some(9000.0));
        assert!(s.without_429_pct.attainable && s.without_429_pct.least_possible.is_none());
    }

    #[test]
    fn durations_print_in_sensible_units() {
        assert_eq!(fmt_ms(0.0), "0.0ms");
        assert_eq!(fmt_ms(42.4), "42ms");
        assert_eq!(fmt_ms(1500.0), "1.50s");
        assert_eq!(fmt_ms(25_000.0), "25.0s");
    }
}
