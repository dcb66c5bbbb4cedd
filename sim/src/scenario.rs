//! Scenarios: who calls what and when, on which network and server.
//!
//! A scenario is a TOML file; the built-in ones are TOML files too
//! (`sim/scenarios/*.toml`), read by the same loader, so each is an example
//! of the format. Every error names the line and column.
//!
//! ```toml
//! name = "my-strategy"
//! description = "what it shows"
//! seed = 1                  # default seed (--seed overrides)
//! preset = "korea"          # Upbit's limits: korea or global
//! duration_s = 600          # optional hard stop in virtual seconds
//!
//! [network]
//! profile = "default"       # low-latency (3 + 0-5 ms) | default (10 + 0-50 ms) |
//!                           # heavy-tailed (default + 0.5 % stalls of 1-3 s); --network overrides
//! delay_ms = 10             # one-way delay d (default: the profile's)
//! jitter_ms = 50            # each one-way delay is uniform in [d, d + J] (--jitter-ms overrides)
//! stall_chance = 0.005      # probability one direction of a trip stalls (default: the profile's)
//! stall_min_ms = 1000       # a stall adds a delay uniform in [min, max]
//! stall_max_ms = 3000
//! service_ms = 5            # server response time ...
//! service_jitter_ms = 5     # ... uniform in [service, service + this]
//! loss = 0.0                # probability a request, or its response, is lost
//! timeout_ms = 3000         # the client gives up after this
//! degrade = [ { at_s = 120, service_ms = 500 } ]   # response time from then on
//!
//! [server]
//! model = "fixed"           # sliding | fixed | anchored | token-bucket (--server-model overrides)
//! fixed_phase_ms = 370      # where the fixed model's calendar windows start
//! escalate_after = 10       # this many 429s to one IP/pocket within
//! escalate_window_s = 60    # this span turn the next one into a 418 block
//! block_s = 30              # of this length, doubling per block
//! block_max_s = 600         # up to this
//! unreadable_ban_body = false  # true: 418 bodies state no block time
//! remaining_req = true      # false: no `Remaining-Req` header on any answer (--no-headers)
//!
//! [[server.limit_changes]]  # the server enforces other limits from then on,
//! at_s = 60                 # without telling anyone (the limiter keeps the preset's)
//! group = "order"
//! limits = ["8/1s"]         # every window of the group: "N/<secs>s" or "N/<ms>ms"
//!
//! [store]                   # only with two or more processes (see below)
//! rtt_ms = 0.2              # the round trip to the shared store, per decision and per report
//! shared = true             # false: each process on its own limiter only (--no-store)
//!
//! [[actors]]                # closed loop: each actor runs its steps in order
//! name = "trader"
//! process = "a"             # the process it runs in (default "main"): each process has
//!                           # its own limiter; with several, they share the budgets
//!                           # through a simulated store (`src/store.rs`)
//! count = 100               # identical actors
//! start_s = 0
//! stagger_ms = 0            # actor i starts at start_s + i * stagger_ms
//! every_s = 5               # optional: repeat the steps every 5 s ...
//! until_s = 300             # ... until then
//! steps = [
//!   { call = "GET /v1/ticker" },
//!   { call = "POST /v1/orders", repeat = 3, gap_ms = 100 },   # pause after each
//! ]
//!
//! [[loads]]                 # open loop: calls at a rate, each on its own
//! name = "flow"
//! until_s = 3600
//! start_s = 0
//! arrivals = "poisson"      # or "uniform", or "bursty": clumps of `burst_size`
//! burst_size = 5            # calls at one instant, clumps evenly spaced so that
//!                           # the mean rate is still `per_minute` (bursty only)
//! per_minute = [30, 100]    # the rate, one value per period, cycling
//! period_s = 1800
//! peak_factor = 3           # optional: the rate times 3 ...
//! peak_every_s = 900        # ... every 900 s ...
//! peak_length_s = 120       # ... for 120 s
//! background = false        # true: another process on the same IP and pocket,
//!                           # sending without any limiter (unknown to ours)
//! process = "a"             # as for actors (not with `background = true`)
//! mix = [ { call = "GET /v1/ticker", weight = 3 }, { call = "GET /v1/accounts" } ]
//! ```

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use upbit_limiter_core::{Duration, Group, Preset, ServerLimit};

use crate::network::{Network, Profile, ServicePhase, Stalls};
use crate::server::{route, Escalation, ServerModel};

/// A built-in scenario: its name and its TOML source.
#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    /// The name `run` accepts.
    pub name: &'static str,
    /// The TOML source.
    pub source: &'static str,
}

/// The built-in scenarios, in the order `list` shows them.
pub const BUILTINS: [Builtin; 12] = [
    Builtin {
        name: "market-shock",
        source: include_str!("../scenarios/market-shock.toml"),
    },
    Builtin {
        name: "trading-day",
        source: include_str!("../scenarios/trading-day.toml"),
    },
    Builtin {
        name: "degradation",
        source: include_str!("../scenarios/degradation.toml"),
    },
    Builtin {
        name: "endurance-24h",
        source: include_str!("../scenarios/endurance-24h.toml"),
    },
    Builtin {
        name: "light",
        source: include_str!("../scenarios/light.toml"),
    },
    Builtin {
        name: "active",
        source: include_str!("../scenarios/active.toml"),
    },
    Builtin {
        name: "institutional",
        source: include_str!("../scenarios/institutional.toml"),
    },
    Builtin {
        name: "co-tenant-periodic",
        source: include_str!("../scenarios/co-tenant-periodic.toml"),
    },
    Builtin {
        name: "co-tenant-poisson",
        source: include_str!("../scenarios/co-tenant-poisson.toml"),
    },
    Builtin {
        name: "co-tenant-bursty",
        source: include_str!("../scenarios/co-tenant-bursty.toml"),
    },
    Builtin {
        name: "limit-change",
        source: include_str!("../scenarios/limit-change.toml"),
    },
    Builtin {
        name: "shared-store",
        source: include_str!("../scenarios/shared-store.toml"),
    },
];

/// A request a client makes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Call {
    /// The HTTP method, upper case.
    pub method: String,
    /// The path (a query is allowed).
    pub path: String,
    /// The group the server counts it in.
    pub group: Group,
}

impl Call {
    /// Parses `"METHOD /path"`; the server must route the path.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split_whitespace();
        let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "call `{s}` is not `METHOD /path` (e.g. \"GET /v1/ticker\")"
            ));
        };
        let method = method.to_ascii_uppercase();
        if !["GET", "POST", "DELETE", "PUT", "PATCH"].contains(&method.as_str()) {
            return Err(format!("call `{s}`: unknown HTTP method `{method}`"));
        }
        if !path.starts_with('/') {
            return Err(format!("call `{s}`: the path must start with `/`"));
        }
        let group = route(&method, path).ok_or_else(|| {
            format!("call `{s}`: Upbit has no such REST endpoint (the simulated server would answer 404)")
        })?;
        Ok(Self {
            method,
            path: path.to_owned(),
            group,
        })
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl TryFrom<String> for Call {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

/// One step of an actor: a call made `repeat` times with a pause after each.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The request.
    pub call: Call,
    /// How many times in a row.
    pub repeat: u32,
    /// The pause after each (after its response).
    pub gap: Duration,
}

/// A group of identical closed-loop clients.
#[derive(Clone, Debug, PartialEq)]
pub struct Actor {
    /// A label for reports.
    pub name: String,
    /// How many.
    pub count: u32,
    /// When the first starts.
    pub start: Duration,
    /// Actor `i` starts at `start + i * stagger`.
    pub stagger: Duration,
    /// Repeat the steps every this long (from the start of the previous round).
    pub every: Option<Duration>,
    /// Start no round after this.
    pub until: Option<Duration>,
    /// The steps of one round.
    pub steps: Vec<Step>,
    /// The process it runs in (an index into [`Scenario::processes`]).
    pub process: usize,
}

/// How a load spaces its calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process at the current rate).
    Poisson,
    /// Even gaps.
    Uniform,
    /// Clumps of [`Load::burst`] calls at one instant, evenly spaced so that
    /// the mean rate is the load's.
    Bursty,
}

impl Arrivals {
    /// `poisson`, `uniform` or `bursty`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Poisson => "poisson",
            Self::Uniform => "uniform",
            Self::Bursty => "bursty",
        }
    }
}

/// A periodic surge of a load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    /// The rate multiplier during a surge.
    pub factor: f64,
    /// A surge starts every this long (from the load's start + `offset`).
    pub every: Duration,
    /// How long a surge lasts.
    pub length: Duration,
    /// When the first surge starts, after the load's start.
    pub offset: Duration,
}

/// Open-loop traffic: calls at a rate, each one on its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    /// A label for reports.
    pub name: String,
    /// When it starts.
    pub start: Duration,
    /// When it stops.
    pub until: Duration,
    /// How calls are spaced.
    pub arrivals: Arrivals,
    /// Calls sent at one instant: `burst_size` for [`Arrivals::Bursty`], else 1.
    pub burst: u32,
    /// Calls per minute, one value per period, cycling.
    pub per_minute: Vec<f64>,
    /// The length of one period of `per_minute`.
    pub period: Duration,
    /// Optional surges.
    pub peak: Option<Peak>,
    /// Which calls, with integer weights.
    pub mix: Vec<(Call, u32)>,
    /// Another process on the same IP and pocket, with no limiter.
    pub background: bool,
    /// The process it runs in (an index into [`Scenario::processes`]; 0 for
    /// a background load, which has no limiter).
    pub process: usize,
}

impl Load {
    /// Calls per minute at `t` (time since the run began).
    pub fn rate_at(&self, t: Duration) -> f64 {
        if t < self.start || t >= self.until || self.per_minute.is_empty() {
            return 0.0;
        }
        let since = (t - self.start).as_nanos();
        let period = self.period.as_nanos().max(1);
        let idx = ((since / period) % self.per_minute.len() as u64) as usize;
        let mut rate = self.per_minute[idx];
        if let Some(p) = self.peak {
            if self.in_peak(p, since) {
                rate *= p.factor;
            }
        }
        rate
    }

    fn in_peak(&self, p: Peak, since: u64) -> bool {
        let off = p.offset.as_nanos();
        since >= off && (since - off) % p.every.as_nanos().max(1) < p.length.as_nanos()
    }

    /// The next instant after `t` at which the rate may change.
    pub fn next_change(&self, t: Duration) -> Duration {
        if t < self.start {
            return self.start;
        }
        let since = (t - self.start).as_nanos();
        let period = self.period.as_nanos().max(1);
        let mut next = (since / period + 1) * period;
        if let Some(p) = self.peak {
            let (off, every, len) = (
                p.offset.as_nanos(),
                p.every.as_nanos().max(1),
                p.length.as_nanos(),
            );
            let peak_next = if since < off {
                off
            } else {
                let k = (since - off) / every;
                let start = off + k * every;
                if since < start + len {
                    start + len
                } else {
                    start + every
                }
            };
            next = next.min(peak_next);
        }
        (self.start + Duration::from_nanos(next)).min(self.until)
    }
}

/// The server side of a scenario.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerSpec {
    /// The window model used unless `--server-model` says otherwise.
    pub model: ServerModel,
    /// Where the fixed model's calendar windows begin, modulo the window.
    pub fixed_phase: Duration,
    /// The 429 → 418 escalation.
    pub escalation: Escalation,
    /// Whether answers carry `Remaining-Req` (Upbit's do; `false` shows a
    /// client that has only 429s to go by).
    pub remaining_req: bool,
}

/// The server starts enforcing other limits for a group, unannounced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitChange {
    /// When, since the run began.
    pub at: Duration,
    /// The group.
    pub group: Group,
    /// Its windows from then on (at least one); a request must fit all of them.
    pub limits: Vec<ServerLimit>,
}

/// The shared store the processes of a scenario go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreSpec {
    /// The round trip to the store, per decision and per report.
    pub rtt: Duration,
    /// Whether the processes share the budgets through it (else each has
    /// only its own limiter, as without a shared store).
    pub shared: bool,
}

/// The default round trip to the store: Redis on loopback under load.
pub const DEFAULT_STORE_RTT: Duration = Duration::from_micros(200);

impl Default for StoreSpec {
    fn default() -> Self {
        Self {
            rtt: DEFAULT_STORE_RTT,
            shared: true,
        }
    }
}

/// The name of the process of clients that name none.
pub const DEFAULT_PROCESS: &str = "main";

/// A whole scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// The default seed.
    pub seed: u64,
    /// Upbit's limits to use (server and limiter alike).
    pub preset: Preset,
    /// A hard stop in virtual time; without it the run ends when every client is done.
    pub duration: Option<Duration>,
    /// The network.
    pub network: Network,
    /// The server.
    pub server: ServerSpec,
    /// The server's limit changes, in time order (the limiter is not told).
    pub limit_changes: Vec<LimitChange>,
    /// Closed-loop clients.
    pub actors: Vec<Actor>,
    /// Open-loop traffic.
    pub loads: Vec<Load>,
    /// The processes of our clients, in the order they first appear: each
    /// has its own limiter.
    pub processes: Vec<String>,
    /// The shared store, used when there are several processes.
    pub store: StoreSpec,
}

/// A scenario could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// Where it came from (a file name or `builtin:<name>`).
    pub origin: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

impl ScenarioError {
    /// The 1-based line of the error, if known.
    pub fn line(&self) -> Option<usize> {
        self.position.map(|(l, _)| l)
    }
}

fn position(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

impl Scenario {
    /// The built-in scenario `name`.
    pub fn builtin(name: &str) -> Option<Result<Self, ScenarioError>> {
        BUILTINS
            .iter()
            .find(|b| b.name == name)
            .map(|b| Self::from_toml(b.source, &format!("builtin:{}", b.name)))
    }

    /// Parses a scenario from TOML; `origin` names the source in errors.
    pub fn from_toml(source: &str, origin: &str) -> Result<Self, ScenarioError> {
        let raw: RawScenario = toml::from_str(source).map_err(|e| ScenarioError {
            origin: origin.to_owned(),
            position: e.span().map(|s| position(source, s.start)),
            message: e.message().trim_end().to_owned(),
        })?;
        raw.validate().map_err(|(span, message)| ScenarioError {
            origin: origin.to_owned(),
            position: span.map(|s| position(source, s.start)),
            message,
        })
    }

    /// Replaces the network's delay, jitter and stalls by `profile`'s.
    pub fn set_network(&mut self, profile: Profile) {
        self.network.set_profile(profile);
    }

    /// Whether the processes share the budgets through the store: several
    /// of them, and the store not turned off.
    pub fn uses_store(&self) -> bool {
        self.store.shared && self.processes.len() > 1
    }

    /// Turns the shared store off (or on): each process keeps its own limiter.
    pub fn set_store(&mut self, shared: bool) {
        self.store.shared = shared;
    }

    /// Keeps only the clients of process `name` (and background loads), as
    /// if it ran alone; `false` if there is no such process.
    pub fn keep_process(&mut self, name: &str) -> bool {
        let Some(p) = self.processes.iter().position(|n| n == name) else {
            return false;
        };
        self.actors.retain(|a| a.process == p);
        self.loads.retain(|l| l.background || l.process == p);
        for a in &mut self.actors {
            a.process = 0;
        }
        for l in &mut self.loads {
            l.process = 0;
        }
        self.processes = vec![name.to_owned()];
        true
    }

    /// Drops our clients and keeps the background loads: what the other
    /// processes get by themselves, the baseline for a co-tenant's 429s and
    /// blocks (a co-tenant that is refused without us is refused with us).
    pub fn keep_others_only(&mut self) {
        self.actors.clear();
        self.loads.retain(|l| l.background);
    }

    /// Replaces the network jitter `J`.
    pub fn set_jitter(&mut self, jitter: Duration) {
        self.network.jitter = jitter;
    }

    /// Makes the server answer every request after `service`, from the
    /// start to the end (the scenario's service times and phases go).
    pub fn set_service(&mut self, service: Duration) {
        self.network.phases = vec![ServicePhase {
            at: Duration::ZERO,
            service,
            service_jitter: Duration::ZERO,
        }];
    }

    /// The windows the server enforces for `group` at `t`: the preset's, or
    /// those of the last limit change at or before `t`.
    pub fn limits_at(&self, group: Group, t: Duration) -> Vec<ServerLimit> {
        self.limit_changes
            .iter()
            .rfind(|c| c.group == group && c.at <= t)
            .map_or_else(|| self.preset.limits(group).to_vec(), |c| c.limits.clone())
    }
}

/// A limit written `N/<secs>s` or `N/<ms>ms`, e.g. `8/1s`, `100/60s`, `5/500ms`.
pub fn parse_limit(s: &str) -> Result<ServerLimit, String> {
    let bad = || format!("limit `{s}` is not `N/<secs>s` or `N/<ms>ms` (e.g. \"8/1s\")");
    let (n, w) = s.trim().split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let w = w.trim();
    let window = if let Some(ms) = w.strip_suffix("ms") {
        Duration::from_millis(ms.trim().parse().map_err(|_| bad())?)
    } else if let Some(secs) = w.strip_suffix('s') {
        Duration::from_secs(secs.trim().parse().map_err(|_| bad())?)
    } else {
        return Err(bad());
    };
    if n == 0 || window.is_zero() {
        return Err(format!(
            "limit `{s}`: both the count and the window must be above zero"
        ));
    }
    Ok(ServerLimit::new(n, window))
}

// ---------------------------------------------------------------------------
// The file format. Conversions that concern one value run inside
// deserialisation (so toml places the error on that value); checks across
// fields run afterwards, placed on their table.

/// Seconds, as a non-negative float.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "f64")]
struct Secs(Duration);

impl TryFrom<f64> for Secs {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        Duration::try_from_secs_f64(v)
            .map(Secs)
            .map_err(|e| format!("{v} is not a valid number of seconds: {e}"))
    }
}

/// Milliseconds, as a non-negative float.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "f64")]
struct Millis(Duration);

impl TryFrom<f64> for Millis {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        Duration::try_from_secs_f64(v / 1000.0)
            .map(Millis)
            .map_err(|e| format!("{v} is not a valid number of milliseconds: {e}"))
    }
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
struct PresetName(Preset);

impl TryFrom<String> for PresetName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map(PresetName).map_err(|e| format!("{e}"))
    }
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
struct ProfileName(Profile);

impl TryFrom<String> for ProfileName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map(ProfileName).map_err(|e| format!("{e}"))
    }
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
struct ModelName(ServerModel);

impl TryFrom<String> for ModelName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map(ModelName).map_err(|e| format!("{e}"))
    }
}

/// A probability in `[0, 1)`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "f64")]
struct Probability(f64);

impl TryFrom<f64> for Probability {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..1.0).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("{v} is not a probability in [0, 1)"))
        }
    }
}

/// A count of at least one.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "i64")]
struct Count(u32);

impl TryFrom<i64> for Count {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match u32::try_from(v) {
            Ok(n) if n >= 1 => Ok(Self(n)),
            _ => Err(format!("{v} is not a count from 1 to {}", u32::MAX)),
        }
    }
}

/// A rate in calls per minute: finite and not negative.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "f64")]
struct Rate(f64);

impl TryFrom<f64> for Rate {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..=1e7).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("{v} is not a rate from 0 to 10000000 calls per minute"))
        }
    }
}

fn ms(n: u64) -> Millis {
    Millis(Duration::from_millis(n))
}
fn secs(n: u64) -> Secs {
    Secs(Duration::from_secs(n))
}
fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "one")]
    seed: u64,
    preset: Option<PresetName>,
    duration_s: Option<Secs>,
    #[serde(default = "default_network")]
    network: Spanned<RawNetwork>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    actors: Vec<Spanned<RawActor>>,
    #[serde(default)]
    loads: Vec<Spanned<RawLoad>>,
    store: Option<Spanned<RawStore>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "store_rtt")]
    rtt_ms: Millis,
    #[serde(default = "yes")]
    shared: bool,
}

fn store_rtt() -> Millis {
    Millis(DEFAULT_STORE_RTT)
}
fn yes() -> bool {
    true
}

/// A process name: non-empty, without whitespace or control characters.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "String")]
struct ProcessName(String);

impl TryFrom<String> for ProcessName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Err(format!(
                "process `{s}`: a name of 1 to 64 characters without spaces (e.g. \"a\")"
            ))
        } else {
            Ok(Self(s))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNetwork {
    profile: Option<ProfileName>,
    delay_ms: Option<Millis>,
    jitter_ms: Option<Millis>,
    stall_chance: Option<Probability>,
    stall_min_ms: Option<Millis>,
    stall_max_ms: Option<Millis>,
    service_ms: Millis,
    service_jitter_ms: Millis,
    loss: Probability,
    timeout_ms: Millis,
    degrade: Vec<Spanned<RawDegrade>>,
}

impl Default for RawNetwork {
    fn default() -> Self {
        Self {
            profile: None,
            delay_ms: None,
            jitter_ms: None,
            stall_chance: None,
            stall_min_ms: None,
            stall_max_ms: None,
            service_ms: ms(5),
            service_jitter_ms: ms(5),
            loss: Probability(0.0),
            timeout_ms: ms(3000),
            degrade: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDegrade {
    at_s: Secs,
    service_ms: Millis,
    #[serde(default = "zero_ms")]
    service_jitter_ms: Millis,
}

fn zero_ms() -> Millis {
    ms(0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    model: ModelName,
    fixed_phase_ms: Millis,
    escalate_after: Count,
    escalate_window_s: Secs,
    block_s: Secs,
    block_max_s: Secs,
    unreadable_ban_body: bool,
    remaining_req: bool,
    limit_changes: Vec<Spanned<RawLimitChange>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimitChange {
    at_s: Secs,
    group: GroupName,
    limits: Vec<LimitText>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
struct GroupName(Group);

impl TryFrom<String> for GroupName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map(GroupName).map_err(|_| {
            let names: Vec<&str> = Group::ALL.iter().map(|g| g.as_str()).collect();
            format!("unknown group `{s}` (expected one of {})", names.join(", "))
        })
    }
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
struct LimitText(ServerLimit);

impl TryFrom<String> for LimitText {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_limit(&s).map(LimitText)
    }
}

/// The calls of one clump of a bursty load: at least one.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "i64")]
struct BurstSize(u32);

/// The most calls one clump may hold.
const MAX_BURST: u32 = 100_000;

impl TryFrom<i64> for BurstSize {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        match u32::try_from(v) {
            Ok(n) if (1..=MAX_BURST).contains(&n) => Ok(Self(n)),
            _ => Err(format!(
                "`burst_size` is the number of calls sent at one instant: a whole number from 1 to {MAX_BURST}, not {v}"
            )),
        }
    }
}

impl Default for RawServer {
    fn default() -> Self {
        let e = Escalation::default();
        Self {
            model: ModelName(ServerModel::Fixed),
            fixed_phase_ms: ms(370),
            escalate_after: Count(e.after),
            escalate_window_s: Secs(e.window),
            block_s: Secs(e.block),
            block_max_s: Secs(e.block_max),
            unreadable_ban_body: e.unreadable_body,
            remaining_req: true,
            limit_changes: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActor {
    name: String,
    #[serde(default = "count_one")]
    count: Count,
    #[serde(default = "zero_s")]
    start_s: Secs,
    #[serde(default = "zero_ms")]
    stagger_ms: Millis,
    every_s: Option<Secs>,
    until_s: Option<Secs>,
    steps: Vec<RawStep>,
    process: Option<ProcessName>,
}

fn count_one() -> Count {
    Count(1)
}
fn zero_s() -> Secs {
    secs(0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    call: Call,
    #[serde(default = "count_one")]
    repeat: Count,
    #[serde(default = "zero_ms")]
    gap_ms: Millis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    name: String,
    #[serde(default = "zero_s")]
    start_s: Secs,
    until_s: Secs,
    #[serde(default = "poisson")]
    arrivals: Arrivals,
    burst_size: Option<BurstSize>,
    per_minute: Vec<Rate>,
    period_s: Option<Secs>,
    peak_factor: Option<Rate>,
    peak_every_s: Option<Secs>,
    peak_length_s: Option<Secs>,
    peak_offset_s: Option<Secs>,
    mix: Vec<RawMix>,
    #[serde(default)]
    background: bool,
    process: Option<ProcessName>,
}

fn poisson() -> Arrivals {
    Arrivals::Poisson
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    call: Call,
    #[serde(default = "count_one")]
    weight: Count,
}

type Invalid = (Option<Range<usize>>, String);

fn at(span: Range<usize>, message: impl Into<String>) -> Invalid {
    (Some(span), message.into())
}

impl RawScenario {
    fn validate(self) -> Result<Scenario, Invalid> {
        if self.name.trim().is_empty() {
            return Err((None, "`name` is empty".into()));
        }
        if self.actors.is_empty() && self.loads.is_empty() {
            return Err((
                None,
                "the scenario has no `[[actors]]` and no `[[loads]]`: nothing would run".into(),
            ));
        }
        let net_span = self.network.span();
        let net = self.network.into_inner();
        let mut phases = vec![ServicePhase {
            at: Duration::ZERO,
            service: net.service_ms.0,
            service_jitter: net.service_jitter_ms.0,
        }];
        for d in net.degrade {
            let span = d.span();
            let d = d.into_inner();
            let last = phases.last().map_or(Duration::ZERO, |p| p.at);
            if d.at_s.0 <= last {
                return Err(at(
                    span,
                    "`degrade` phases must start after the previous one, in order",
                ));
            }
            phases.push(ServicePhase {
                at: d.at_s.0,
                service: d.service_ms.0,
                service_jitter: d.service_jitter_ms.0,
            });
        }
        if net.timeout_ms.0.is_zero() {
            return Err(at(net_span, "`timeout_ms` must be above zero"));
        }
        let profile = net.profile.map_or(Profile::Default, |p| p.0);
        let base = profile.stalls();
        let stalls = Stalls {
            chance: net.stall_chance.map_or(base.chance, |p| p.0),
            min: net.stall_min_ms.map_or(base.min, |m| m.0),
            max: net.stall_max_ms.map_or(base.max, |m| m.0),
        };
        if stalls.max < stalls.min {
            return Err(at(net_span, "`stall_max_ms` is shorter than `stall_min_ms`"));
        }
        let network = Network {
            profile,
            delay: net.delay_ms.map_or(profile.delay(), |m| m.0),
            jitter: net.jitter_ms.map_or(profile.jitter(), |m| m.0),
            stalls,
            phases,
            loss: net.loss.0,
            timeout: net.timeout_ms.0,
        };

        let s = self.server;
        if s.block_max_s.0 < s.block_s.0 {
            return Err((
                None,
                "`server.block_max_s` is shorter than `server.block_s`".into(),
            ));
        }
        let server = ServerSpec {
            model: s.model.0,
            fixed_phase: s.fixed_phase_ms.0,
            escalation: Escalation {
                after: s.escalate_after.0,
                window: s.escalate_window_s.0,
                block: s.block_s.0,
                block_max: s.block_max_s.0,
                unreadable_body: s.unreadable_ban_body,
            },
            remaining_req: s.remaining_req,
        };
        let mut limit_changes: Vec<LimitChange> = Vec::new();
        for c in s.limit_changes {
            let span = c.span();
            let c = c.into_inner();
            let group = c.group.0;
            if c.limits.is_empty() {
                return Err(at(
                    span,
                    format!("limit change of `{group}`: `limits` is empty (give at least one window, e.g. [\"8/1s\"])"),
                ));
            }
            if limit_changes.iter().any(|o| o.group == group && o.at == c.at_s.0) {
                return Err(at(
                    span,
                    format!("`{group}` has two limit changes at {} s", c.at_s.0.as_secs_f64()),
                ));
            }
            limit_changes.push(LimitChange {
                at: c.at_s.0,
                group,
                limits: c.limits.into_iter().map(|l| l.0).collect(),
            });
        }
        limit_changes.sort_by_key(|c| c.at);

        let mut processes: Vec<String> = Vec::new();
        let mut process_of = |name: Option<ProcessName>| {
            let name = name.map_or_else(|| DEFAULT_PROCESS.to_owned(), |n| n.0);
            match processes.iter().position(|p| *p == name) {
                Some(i) => i,
                None => {
                    processes.push(name);
                    processes.len() - 1
                }
            }
        };
        let mut actors = Vec::new();
        for a in self.actors {
            let span = a.span();
            let a = a.into_inner();
            let process = process_of(a.process);
            if a.steps.is_empty() {
                return Err(at(span, format!("actor `{}` has no steps", a.name)));
            }
            if let Some(every) = a.every_s {
                if every.0.is_zero() {
                    return Err(at(
                        span,
                        format!("actor `{}`: `every_s` must be above zero", a.name),
                    ));
                }
                match a.until_s {
                    None => {
                        return Err(at(
                            span,
                            format!(
                                "actor `{}`: `every_s` needs `until_s` (when to stop repeating)",
                                a.name
                            ),
                        ))
                    }
                    Some(u) if u.0 <= a.start_s.0 => {
                        return Err(at(
                            span,
                            format!("actor `{}`: `until_s` must be after `start_s`", a.name),
                        ))
                    }
                    Some(_) => {}
                }
            }
            actors.push(Actor {
                name: a.name,
                count: a.count.0,
                start: a.start_s.0,
                stagger: a.stagger_ms.0,
                every: a.every_s.map(|s| s.0),
                until: a.until_s.map(|s| s.0),
                steps: a
                    .steps
                    .into_iter()
                    .map(|s| Step {
                        call: s.call,
                        repeat: s.repeat.0,
                        gap: s.gap_ms.0,
                    })
                    .collect(),
                process,
            });
        }

        let mut loads = Vec::new();
        for l in self.loads {
            let span = l.span();
            let l = l.into_inner();
            let name = &l.name;
            let process = match (l.background, l.process.clone()) {
                (true, Some(_)) => {
                    return Err(at(
                        span,
                        format!(
                            "load `{name}`: a background load has no limiter, so no `process` \
                             (it stands for another process already)"
                        ),
                    ))
                }
                (true, None) => 0,
                (false, p) => process_of(p),
            };
            if l.until_s.0 <= l.start_s.0 {
                return Err(at(
                    span,
                    format!("load `{name}`: `until_s` must be after `start_s`"),
                ));
            }
            if l.per_minute.is_empty() || l.per_minute.iter().all(|r| r.0 == 0.0) {
                return Err(at(
                    span,
                    format!("load `{name}`: `per_minute` needs at least one rate above zero"),
                ));
            }
            if l.mix.is_empty() {
                return Err(at(span, format!("load `{name}`: `mix` is empty")));
            }
            let period = match l.period_s {
                Some(p) if p.0.is_zero() => {
                    return Err(at(span, format!("load `{name}`: `period_s` must be above zero")))
                }
                Some(p) => p.0,
                None if l.per_minute.len() == 1 => l.until_s.0 - l.start_s.0,
                None => {
                    return Err(at(
                        span,
                        format!("load `{name}`: `per_minute` has several rates, so `period_s` is needed"),
                    ))
                }
            };
            let burst = match (l.arrivals, l.burst_size) {
                (Arrivals::Bursty, Some(b)) => b.0,
                (Arrivals::Bursty, None) => {
                    return Err(at(
                        span,
                        format!(
                            "load `{name}`: `arrivals = \"bursty\"` needs `burst_size` (how many calls are sent at one instant)"
                        ),
                    ))
                }
                (other, Some(_)) => {
                    return Err(at(
                        span,
                        format!(
                            "load `{name}`: `burst_size` applies only to `arrivals = \"bursty\"` (this load's are {})",
                            other.as_str()
                        ),
                    ))
                }
                (_, None) => 1,
            };
            let peak = match (l.peak_factor, l.peak_every_s, l.peak_length_s) {
                (None, None, None) => None,
                (Some(f), Some(every), Some(length)) => {
                    if every.0.is_zero() || length.0 >= every.0 {
                        return Err(at(
                            span,
                            format!("load `{name}`: `peak_length_s` must be shorter than `peak_every_s`"),
                        ));
                    }
                    Some(Peak {
                        factor: f.0,
                        every: every.0,
                        length: length.0,
                        offset: l.peak_offset_s.map_or(Duration::ZERO, |o| o.0),
                    })
                }
                _ => {
                    return Err(at(
                        span,
                        format!(
                        "load `{name}`: peaks need all of `peak_factor`, `peak_every_s` and `peak_length_s`"
                    ),
                    ))
                }
            };
            loads.push(Load {
                name: l.name,
                start: l.start_s.0,
                until: l.until_s.0,
                arrivals: l.arrivals,
                burst,
                per_minute: l.per_minute.iter().map(|r| r.0).collect(),
                period,
                peak,
                mix: l.mix.into_iter().map(|m| (m.call, m.weight.0)).collect(),
                background: l.background,
                process,
            });
        }
        if processes.is_empty() {
            processes.push(DEFAULT_PROCESS.to_owned());
        }
        let store = match self.store {
            None => StoreSpec::default(),
            Some(st) => {
                let span = st.span();
                let st = st.into_inner();
                if processes.len() < 2 {
                    return Err(at(
                        span,
                        "`[store]` is shared by processes: give two or more clients different \
                         `process` names",
                    ));
                }
                StoreSpec {
                    rtt: st.rtt_ms.0,
                    shared: st.shared,
                }
            }
        };

        Ok(Scenario {
            name: self.name,
            description: self.description.trim().to_owned(),
            seed: self.seed,
            preset: self.preset.map_or(Preset::Korea, |p| p.0),
            duration: self.duration_s.map(|d| d.0),
            network,
            server,
            limit_changes,
            actors,
            loads,
            processes,
            store,
        })
    }
}

fn default_network() -> Spanned<RawNetwork> {
    Spanned::new(0..0, RawNetwork::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_loads() {
        for b in BUILTINS {
            let s = Scenario::builtin(b.name)
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.name, b.name);
            assert!(!s.description.is_empty(), "{}", b.name);
        }
        assert!(Scenario::builtin("nope").is_none());
    }

    #[test]
    fn errors_name_the_line() {
        let src =
            "name = \"x\"\n\n[[actors]]\nname = \"a\"\ncount = 0\nsteps = [{ call = \"GET /v1/ticker\" }]\n";
        let e = Scenario::from_toml(src, "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(5), "{e}");
        assert!(e.to_string().starts_with("x.toml:5:"), "{e}");

        let src = "name = \"x\"\n[[actors]]\nname = \"a\"\nsteps = [\n  { call = \"GET /v1/tickr\" },\n]\n";
        let e = Scenario::from_toml(src, "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(5), "{e}");
        assert!(e.message.contains("no such REST endpoint"), "{e}");

        let src = "name = \"x\"\n[[loads]]\nname = \"l\"\nuntil_s = 10\nper_minute = [1, 2]\nmix = [{ call = \"GET /v1/ticker\" }]\n";
        let e = Scenario::from_toml(src, "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(e.message.contains("period_s"), "{e}");

        let e = Scenario::from_toml("name = \"x\"\ncolour = 3\n", "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        let e = Scenario::from_toml("name = \"x\"\n[server]\nmodel = \"leaky\"\n", "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
        let e = Scenario::from_toml("name = \"x\"\n[network]\njitter_ms = -5\n", "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
        let e = Scenario::from_toml("name = \"x\"\n", "x.toml").unwrap_err();
        assert!(e.message.contains("nothing would run"), "{e}");
        let e = Scenario::from_toml("name = [\n", "x.toml").unwrap_err();
        assert!(e.line().is_some(), "{e}");
    }

    #[test]
    fn load_rates_cycle_and_peak() {
        let call = Call::parse("GET /v1/ticker").unwrap();
        let l = Load {
            name: "l".into(),
            start: Duration::from_secs(10),
            until: Duration::from_secs(1000),
            arrivals: Arrivals::Uniform,
            burst: 1,
            per_minute: vec![30.0, 60.0],
            period: Duration::from_secs(100),
            peak: Some(Peak {
                factor: 2.0,
                every: Duration::from_secs(50),
                length: Duration::from_secs(10),
                offset: Duration::from_secs(20),
            }),
            mix: vec![(call, 1)],
            background: false,
            process: 0,
        };
        let s = Duration::from_secs;
        assert_eq!(l.rate_at(s(5)), 0.0);
        assert_eq!(l.rate_at(s(10)), 30.0);
        assert_eq!(l.rate_at(s(30)), 60.0); // in the surge [30, 40)
        assert_eq!(l.rate_at(s(40)), 30.0);
        assert_eq!(l.rate_at(s(110)), 60.0);
        assert_eq!(l.rate_at(s(130)), 120.0); // surge at 10 + 20 + 100
        assert_eq!(l.rate_at(s(1000)), 0.0);
        assert_eq!(l.next_change(s(0)), s(10));
        assert_eq!(l.next_change(s(10)), s(30));
        assert_eq!(l.next_change(s(30)), s(40));
        assert_eq!(l.next_change(s(45)), s(80));
        assert_eq!(l.next_change(s(995)), s(1000));
    }

    #[test]
    fn calls_parse() {
        let c = Call::parse("post /v1/orders").unwrap();
        assert_eq!((c.method.as_str(), c.group), ("POST", Group::Order));
        assert_eq!(c.to_string(), "POST /v1/orders");
        assert!(Call::parse("GET").is_err());
        assert!(Call::parse("FETCH /v1/ticker").is_err());
        assert!(Call::parse("GET v1/ticker").is_err());
        assert!(Call::parse("GET /v1/ticker extra").is_err());
    }

    const ONE_ACTOR: &str = "[[actors]]\nname = \"a\"\nsteps = [{ call = \"GET /v1/ticker\" }]\n";

    #[test]
    fn a_network_profile_is_selected_by_name() {
        let ms = Duration::from_millis;
        let src = format!("name = \"x\"\n[network]\nprofile = \"low-latency\"\n{ONE_ACTOR}");
        let s = Scenario::from_toml(&src, "x.toml").unwrap();
        assert_eq!(s.network.profile, Profile::LowLatency);
        assert_eq!((s.network.delay, s.network.jitter), (ms(3), ms(5)));
        assert_eq!(s.network.stalls, Stalls::NONE);

        let src = format!("name = \"x\"\n[network]\nprofile = \"heavy-tailed\"\njitter_ms = 20\n{ONE_ACTOR}");
        let s = Scenario::from_toml(&src, "x.toml").unwrap();
        assert_eq!(s.network.profile, Profile::HeavyTailed);
        // A key beside the profile overrides that part of it only.
        assert_eq!((s.network.delay, s.network.jitter), (ms(10), ms(20)));
        assert_eq!(s.network.stalls, Profile::HeavyTailed.stalls());
        assert!(s.network.stalls.chance > 0.0);

        // Without a profile: the default network, as before profiles existed.
        let s = Scenario::from_toml(&format!("name = \"x\"\n{ONE_ACTOR}"), "x.toml").unwrap();
        assert_eq!(s.network.profile, Profile::Default);
        assert_eq!((s.network.delay, s.network.jitter), (ms(10), ms(50)));
        assert_eq!(s.network.stalls, Stalls::NONE);

        let mut s = s;
        s.set_network(Profile::HeavyTailed);
        assert_eq!(s.network.stalls, Profile::HeavyTailed.stalls());
        assert_eq!(s.network.timeout, Duration::from_secs(3));
    }

    #[test]
    fn an_unknown_network_profile_is_refused_on_its_line() {
        let src = format!("name = \"x\"\n[network]\nprofile = \"satellite\"\n{ONE_ACTOR}");
        let e = Scenario::from_toml(&src, "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
        assert!(
            e.message.contains(
                "unknown network profile `satellite` (expected low-latency, default or heavy-tailed)"
            ),
            "{e}"
        );
        let src = format!("name = \"x\"\n[network]\nstall_min_ms = 5000\nstall_max_ms = 10\n{ONE_ACTOR}");
        let e = Scenario::from_toml(&src, "x.toml").unwrap_err();
        assert!(
            e.message
                .contains("`stall_max_ms` is shorter than `stall_min_ms`"),
            "{e}"
        );
        let src = format!("name = \"x\"\n[network]\nstall_chance = 1.5\n{ONE_ACTOR}");
        let e = Scenario::from_toml(&src, "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
    }

    const TICKER_LOAD: &str = "[[loads]]\nname = \"other\"\nbackground = true\nuntil_s = 60\nper_minute = [120]\nmix = [{ call = \"GET /v1/ticker\" }]\n";

    #[test]
    fn bursty_loads_need_a_burst_size_and_only_they_take_one() {
        let src = format!("name = \"x\"\n{TICKER_LOAD}arrivals = \"bursty\"\nburst_size = 4\n");
        let s = Scenario::from_toml(&src, "x.toml").unwrap();
        assert_eq!((s.loads[0].arrivals, s.loads[0].burst), (Arrivals::Bursty, 4));
        let s = Scenario::from_toml(&format!("name = \"x\"\n{TICKER_LOAD}"), "x.toml").unwrap();
        assert_eq!((s.loads[0].arrivals, s.loads[0].burst), (Arrivals::Poisson, 1));

        let src = format!("name = \"x\"\n{TICKER_LOAD}arrivals = \"bursty\"\n");
        let e = Scenario::from_toml(&src, "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(
            e.message.contains("`arrivals = \"bursty\"` needs `burst_size`"),
            "{e}"
        );

        let src = format!("name = \"x\"\n{TICKER_LOAD}arrivals = \"bursty\"\nburst_size = 0\n");
        let e = Scenario::from_toml(&src, "x.toml").unwrap_err();
        assert_eq!(e.position, Some((9, 14)), "{e}");
        assert!(e.message.contains("`burst_size` is the number of calls"), "{e}");
        assert!(e.message.contains("not 0"), "{e}");
        for bad in ["-3", "1.5", "\"5\"", "100001"] {
            let src = format!("name = \"x\"\n{TICKER_LOAD}arrivals = \"bursty\"\nburst_size = {bad}\n");
            let e = Scenario::from_toml(&src, "x.toml").unwrap_err();
            assert_eq!(e.line(), Some(9), "{bad}: {e}");
        }

        let src = format!("name = \"x\"\n{TICKER_LOAD}arrivals = \"uniform\"\nburst_size = 3\n");
        let e = Scenario::from_toml(&src, "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(
            e.message
                .contains("`burst_size` applies only to `arrivals = \"bursty\"` (this load's are uniform)"),
            "{e}"
        );

        let src = format!("name = \"x\"\n{TICKER_LOAD}arrivals = \"burst\"\n");
        let e = Scenario::from_toml(&src, "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(8), "{e}");
        assert!(e.message.contains("bursty"), "{e}");
    }

    #[test]
    fn limit_changes_parse_in_time_order() {
        let src = format!(
            "name = \"x\"\n[server]\nremaining_req = false\n\
             [[server.limit_changes]]\nat_s = 90\ngroup = \"ticker\"\nlimits = [\"5/1s\"]\n\
             [[server.limit_changes]]\nat_s = 60\ngroup = \"order\"\nlimits = [\"8/1s\", \"100/60s\"]\n{ONE_ACTOR}"
        );
        let s = Scenario::from_toml(&src, "x.toml").unwrap();
        assert!(!s.server.remaining_req);
        let at: Vec<(u64, Group)> = s
            .limit_changes
            .iter()
            .map(|c| (c.at.as_nanos() / 1_000_000_000, c.group))
            .collect();
        assert_eq!(at, [(60, Group::Order), (90, Group::Ticker)]);
        assert_eq!(
            s.limit_changes[0].limits,
            [
                ServerLimit::per_second(8),
                ServerLimit::new(100, Duration::from_secs(60))
            ]
        );
        let secs = Duration::from_secs;
        assert_eq!(s.limits_at(Group::Order, secs(59)), [ServerLimit::per_second(12)]);
        assert_eq!(s.limits_at(Group::Order, secs(60)).len(), 2);
        assert_eq!(
            s.limits_at(Group::Ticker, secs(100)),
            [ServerLimit::per_second(5)]
        );
        let s = Scenario::from_toml(&format!("name = \"x\"\n{ONE_ACTOR}"), "x.toml").unwrap();
        assert!(s.server.remaining_req && s.limit_changes.is_empty());
    }

    #[test]
    fn bad_limit_changes_are_refused_where_they_are() {
        let change = |body: &str| format!("name = \"x\"\n[[server.limit_changes]]\n{body}\n{ONE_ACTOR}");
        let cases = [
            (
                "at_s = 60\ngroup = \"orders\"\nlimits = [\"8/1s\"]",
                4,
                "unknown group `orders`",
            ),
            (
                "at_s = 60\ngroup = \"order\"\nlimits = [\"8/1\"]",
                5,
                "is not `N/<secs>s`",
            ),
            (
                "at_s = 60\ngroup = \"order\"\nlimits = [\"8 per second\"]",
                5,
                "is not `N/<secs>s`",
            ),
            (
                "at_s = 60\ngroup = \"order\"\nlimits = [\"0/1s\"]",
                5,
                "above zero",
            ),
            (
                "at_s = 60\ngroup = \"order\"\nlimits = [\"8/0ms\"]",
                5,
                "above zero",
            ),
            ("at_s = -1\ngroup = \"order\"\nlimits = [\"8/1s\"]", 3, "seconds"),
            (
                "at_s = 60\ngroup = \"order\"\nlimits = []",
                2,
                "`limits` is empty",
            ),
            ("at_s = 60\ngroup = \"order\"", 2, "missing field `limits`"),
            (
                "at_s = 60\ngroup = \"order\"\nlimits = [\"8/1s\"]\nwhen = 3",
                6,
                "unknown field `when`",
            ),
        ];
        for (body, line, message) in cases {
            let e = Scenario::from_toml(&change(body), "x.toml").unwrap_err();
            assert_eq!(e.line(), Some(line), "{body}: {e}");
            assert!(e.message.contains(message), "{body}: {e}");
        }
        let twice = format!(
            "name = \"x\"\n[[server.limit_changes]]\nat_s = 60\ngroup = \"order\"\nlimits = [\"8/1s\"]\n\
             [[server.limit_changes]]\nat_s = 60\ngroup = \"order\"\nlimits = [\"6/1s\"]\n{ONE_ACTOR}"
        );
        let e = Scenario::from_toml(&twice, "x.toml").unwrap_err();
        assert_eq!(e.line(), Some(6), "{e}");
        assert!(e.message.contains("two limit changes at 60 s"), "{e}");
    }

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("8/1s"), Ok(ServerLimit::per_second(8)));
        assert_eq!(
            parse_limit(" 5 / 500ms "),
            Ok(ServerLimit::new(5, Duration::from_millis(500)))
        );
        assert_eq!(
            parse_limit("100/60s"),
            Ok(ServerLimit::new(100, Duration::from_secs(60)))
        );
        for bad in ["8", "8/", "/1s", "8/1", "8/1m", "x/1s", "8/1.5s", "-8/1s"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }
}
