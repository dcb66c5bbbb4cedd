//! Several policies side by side on the same scenario, server model, network
//! and random seed (so on the same traffic and the same network draws).
//!
//! [`compare`] takes the reports of runs that differ only in their policy and
//! lines up, per group, each policy's throughput while requests waited (per
//! second and as a share of the server's `N / W`), its wait p50 / p95 / p99
//! and its 429s and 418s. It knows nothing about any policy: any list of
//! [`Policy`] values runs through [`run_compared`], e.g.
//! `ours` beside `oracle`, the physical limit.

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::report::{Report, Throughput, WaitMs};
use crate::run::{run, Progress, RunError, RunOptions};
use crate::scenario::Scenario;
use crate::{Policy, ServerModel};

/// One policy's numbers for one group (or for the whole run).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyRow {
    /// The policy.
    pub policy: String,
    /// Requests wanted.
    pub requests: u64,
    /// Admitted and sent.
    pub admitted: u64,
    /// Admission rate while requests waited (`None` for the whole run).
    pub throughput: Option<Throughput>,
    /// Wait quantiles.
    pub wait_ms: WaitMs,
    /// Answered 429.
    pub status_429: u64,
    /// Answered 418.
    pub status_418: u64,
}

/// One group across the policies.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupComparison {
    /// The group.
    pub group: String,
    /// The server's limit, e.g. `10/1s`.
    pub limit: String,
    /// One row per policy, in the order given.
    pub rows: Vec<PolicyRow>,
}

/// The policies side by side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The scenario's name.
    pub scenario: String,
    /// The server's window model.
    pub server_model: String,
    /// The network profile.
    pub network: String,
    /// The network: one-way delay and jitter, in ms.
    pub delay_ms: f64,
    /// The jitter.
    pub jitter_ms: f64,
    /// The random seed every run used.
    pub seed: u64,
    /// The policies, in the order given.
    pub policies: Vec<String>,
    /// Per group that saw traffic under any policy.
    pub groups: Vec<GroupComparison>,
    /// The whole run, one row per policy.
    pub total: Vec<PolicyRow>,
    /// The reports the comparison was drawn from.
    pub reports: Vec<Report>,
    /// The stalls in words, for the table (empty without).
    #[serde(skip)]
    stall: String,
}

/// Reports that cannot be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch(pub String);

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot compare: {}", self.0)
    }
}

impl std::error::Error for Mismatch {}

/// Why a comparison could not be made.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CompareError {
    /// A run failed.
    Run(Policy, RunError),
    /// The runs differ in more than the policy.
    Mismatch(Mismatch),
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Run(p, e) => write!(f, "{p}: {e}"),
            Self::Mismatch(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for CompareError {}

/// Runs `scenario` under `model` and `seed` once per policy and compares them.
pub fn run_compared(
    scenario: &Scenario,
    model: ServerModel,
    seed: u64,
    policies: &[Policy],
    progress: &mut dyn FnMut(Policy, Progress),
) -> Result<Comparison, CompareError> {
    let mut reports = Vec::with_capacity(policies.len());
    for &policy in policies {
        let opts = RunOptions { model, policy, seed };
        let r =
            run(scenario, &opts, &mut |p| progress(policy, p)).map_err(|e| CompareError::Run(policy, e))?;
        reports.push(r);
    }
    compare(reports).map_err(CompareError::Mismatch)
}

fn row(r: &Report, g: Option<&crate::report::GroupReport>) -> PolicyRow {
    match g {
        Some(g) => PolicyRow {
            policy: r.policy.clone(),
            requests: g.requests,
            admitted: g.admitted,
            throughput: Some(g.throughput),
            wait_ms: g.wait_ms,
            status_429: g.status_429,
            status_418: g.status_418,
        },
        None => PolicyRow {
            policy: r.policy.clone(),
            requests: r.total_requests,
            admitted: r.total_admitted,
            throughput: None,
            wait_ms: r.wait_ms,
            status_429: r.total_429,
            status_418: r.total_418,
        },
    }
}

/// Lines up reports of the same scenario, server model, network and seed.
pub fn compare(reports: Vec<Report>) -> Result<Comparison, Mismatch> {
    let Some(first) = reports.first() else {
        return Err(Mismatch("no report".into()));
    };
    for r in &reports[1..] {
        let same = r.scenario == first.scenario
            && r.server_model == first.server_model
            && r.seed == first.seed
            && r.network == first.network
            && r.delay_ms == first.delay_ms
            && r.jitter_ms == first.jitter_ms
            && r.stall_chance == first.stall_chance
            && r.stall_ms == first.stall_ms;
        if !same {
            return Err(Mismatch(format!(
                "`{}` ran {} / {} / seed {} and `{}` ran {} / {} / seed {}",
                first.policy,
                first.scenario,
                first.server_model,
                first.seed,
                r.policy,
                r.scenario,
                r.server_model,
                r.seed
            )));
        }
    }
    // Groups in the order of the first report that has them.
    let mut names: Vec<(String, String)> = Vec::new();
    for r in &reports {
        for g in &r.groups {
            if !names.iter().any(|(n, _)| *n == g.group) {
                names.push((g.group.clone(), g.limit.clone()));
            }
        }
    }
    let groups = names
        .into_iter()
        .map(|(name, limit)| GroupComparison {
            rows: reports
                .iter()
                .map(|r| match r.groups.iter().find(|g| g.group == name) {
                    Some(g) => row(r, Some(g)),
                    None => PolicyRow {
                        policy: r.policy.clone(),
                        requests: 0,
                        admitted: 0,
                        throughput: None,
                        wait_ms: WaitMs::default(),
                        status_429: 0,
                        status_418: 0,
                    },
                })
                .collect(),
            group: name,
            limit,
        })
        .collect();
    Ok(Comparison {
        scenario: first.scenario.clone(),
        server_model: first.server_model.clone(),
        network: first.network.clone(),
        delay_ms: first.delay_ms,
        jitter_ms: first.jitter_ms,
        seed: first.seed,
        policies: reports.iter().map(|r| r.policy.clone()).collect(),
        total: reports.iter().map(|r| row(r, None)).collect(),
        groups,
        stall: first.stalls_label(),
        reports,
    })
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

impl Comparison {
    /// Whether any policy drew a 429 or a 418.
    pub fn violated(&self) -> bool {
        self.reports.iter().any(Report::violated)
    }

    /// The side-by-side table.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "scenario {} | server {} | network {}: delay {} + jitter {}{} | seed {} | policies {}",
            self.scenario,
            self.server_model,
            self.network,
            fmt_ms(self.delay_ms),
            fmt_ms(self.jitter_ms),
            self.stall,
            self.seed,
            self.policies.join(", ")
        );
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<17} {:>7} {:<14} {:>8} {:>7} {:>8} {:>7} {:>8} {:>8} {:>8} {:>5} {:>5}",
            "group",
            "limit",
            "policy",
            "requests",
            "admit",
            "thr/s",
            "of N/W",
            "wait p50",
            "p95",
            "p99",
            "429",
            "418"
        );
        let line = |o: &mut String, group: &str, limit: &str, r: &PolicyRow| {
            let (thr, share) = match r.throughput.and_then(|t| t.per_s.zip(t.share_of_limit)) {
                Some((v, s)) => (format!("{v:.2}"), format!("{:.1}%", s * 100.0)),
                None => ("-".to_owned(), "-".to_owned()),
            };
            let _ = writeln!(
                o,
                "{:<17} {:>7} {:<14} {:>8} {:>7} {:>8} {:>7} {:>8} {:>8} {:>8} {:>5} {:>5}",
                group,
                limit,
                r.policy,
                r.requests,
                r.admitted,
                thr,
                share,
                fmt_ms(r.wait_ms.p50),
                fmt_ms(r.wait_ms.p95),
                fmt_ms(r.wait_ms.p99),
                r.status_429,
                r.status_418
            );
        };
        for g in &self.groups {
            for (i, r) in g.rows.iter().enumerate() {
                let (name, limit) = if i == 0 {
                    (g.group.as_str(), g.limit.as_str())
                } else {
                    ("", "")
                };
                line(&mut o, name, limit, r);
            }
        }
        for (i, r) in self.total.iter().enumerate() {
            line(&mut o, if i == 0 { "all" } else { "" }, "", r);
        }
        let _ = writeln!(
            o,
            "thr/s: requests admitted after waiting, per second, over the spells of at least one window during \
             which some request of the group waited (`-`: no such spell); of N/W: as a share of the server's limit"
        );
        o
    }
}
