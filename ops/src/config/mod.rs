//! Layered configuration: built-in preset, then a TOML file, then environment
//! variables; validated as a whole, every problem reported with its key.
//!
//! # Layers
//!
//! For each group the settings are laid over each other in this order (a later
//! layer wins field by field):
//!
//! 1. the preset (`preset = "korea" | "global"`, or `UPBIT_RATE_LIMIT_PRESET`);
//! 2. the file's `[all]` table;
//! 3. the file's `[groups.<name>]` table;
//! 4. the `UPBIT_RATE_LIMIT_ALL_<SETTING>` variables;
//! 5. the `UPBIT_RATE_LIMIT_<GROUP>_<SETTING>` variables.
//!
//! # Pockets
//!
//! `pocket = "<name>"` (or `UPBIT_RATE_LIMIT_POCKET`) names the pocket the
//! limiter's exchange budgets belong to. `[pockets.<name>.groups.<group>]`
//! tables set a pocket's own values for the pocket-scoped groups (`default`,
//! `order`, `order-test`, `order-cancel-all`, `websocket-connect` for
//! authenticated connects); they lie over layer 3 and under the variables,
//! which apply to every pocket. The IP-scoped groups are shared by every
//! pocket and are set under `[groups]` only. See [`OpsConfig::pocket_limiter`].
//!
//! `strategy` replaces the adaptive numbers as a whole and the individual
//! adaptive settings then override single numbers, whatever layer each came
//! from.
//!
//! # Validation
//!
//! Every value is parsed, every group is checked with core's rules, and every
//! problem found is returned at once in [`ConfigErrors`], each with the key it
//! concerns and where it was written (file line and column, or variable
//! name). An unsafe explicit quota is refused unless `allow_unsafe_quota` is set
//! for the group.

mod env;
mod fields;
mod file;

use core::fmt;
use std::path::Path;

use std::collections::BTreeMap;
use upbit_limiter_core::adaptive::AdaptiveConfigError;
use upbit_limiter_core::breaker::BreakerConfigError;

use upbit_limiter_core::limiter::{ConfigErrorKind, Limits};
use upbit_limiter_core::upbit::{PocketId, Scope};
use upbit_limiter_core::{Group, GroupConfig, LimiterConfig, Preset, Quota, QuotaError};

use crate::control::EmergencySettings;
use crate::health::Thresholds;
pub(crate) use fields::GroupLayer;

/// The prefix of every environment variable this crate reads.
pub const ENV_PREFIX: &str = "UPBIT_RATE_LIMIT_";

/// The variable [`OpsConfig::load_from_process_env`] takes the file path from
/// when it is given none.
pub const ENV_FILE: &str = "UPBIT_RATE_LIMIT_FILE";

/// Where a setting was written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A TOML file (its name as given), 1-based line and column.
    File {
        /// The file's name or path.
        name: String,
        /// Line, from 1.
        line: usize,
        /// Column in characters, from 1.
        column: usize,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A configuration built in code (no file position).
    Code,
}

/// A value together with where it was set and under which key.
#[derive(Clone, Debug)]
pub(crate) struct Set<T> {
    pub value: T,
    pub origin: Origin,
    pub key: String,
}

/// What is wrong with one setting.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    /// The file could not be read.
    Io(String),
    /// The file is not valid TOML.
    Syntax(String),
    /// A key no setting has.
    UnknownKey,
    /// A group name Upbit does not have.
    UnknownGroup(String),
    /// A variable with the prefix that names no group and no setting.
    UnknownVariable,
    /// A value of the wrong type or out of range.
    Expected {
        /// What the setting takes.
        what: &'static str,
        /// What was written.
        found: String,
    },
    /// A number too large to represent (`1e400`, or more digits than any
    /// setting takes).
    TooLarge {
        /// What the setting takes.
        what: &'static str,
        /// What was written.
        found: String,
    },
    /// A problem a shared setting (`[all]`, `UPBIT_RATE_LIMIT_ALL_*`) causes
    /// in the groups named.
    InGroups {
        /// The groups that refuse the setting, in Upbit's group order.
        groups: Vec<Group>,
        /// What they find wrong.
        problem: Box<Problem>,
    },
    /// A value that is not valid UTF-8 (environment only).
    NotUnicode,
    /// The quota is refused; `hint` says how to override it where that is possible.
    Quota {
        /// Core's reason.
        error: QuotaError,
        /// How to accept it anyway (only for an unsafe explicit quota).
        hint: Option<String>,
    },
    /// The adaptive numbers are refused.
    Adaptive(AdaptiveConfigError),
    /// The breaker numbers are refused.
    Breaker(BreakerConfigError),
    /// A waiter deadline of zero would fail every wait.
    ZeroWaiterTimeout,
    /// The GCRA policy with a zero jitter margin.
    ZeroMargin,
    /// The interval log cannot hold the group's limits or flight time.
    IntervalLog(upbit_limiter_core::interval_log::IntervalLogError),
    /// Not a pocket name.
    Pocket(upbit_limiter_core::upbit::PocketIdError),
    /// A pocket table sets a group every pocket shares (counted per IP).
    SharedByPockets(Group),
    /// The shared store's settings are refused.
    #[cfg(feature = "redis")]
    Shared(upbit_limiter_redis::SharedConfigError),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read the file: {e}"),
            Self::Syntax(e) => write!(f, "TOML syntax: {e}"),
            Self::UnknownKey => f.write_str("unknown setting"),
            Self::UnknownGroup(name) => write!(
                f,
                "unknown group {name:?} (groups: {})",
                Group::ALL.map(Group::as_str).join(", ")
            ),
            Self::UnknownVariable => write!(
                f,
                "unknown variable (expected {ENV_PREFIX}<GROUP>_<SETTING> with GROUP one of {}, ALL; \
                 or {ENV_PREFIX}PRESET, _HEALTH_*, _EMERGENCY_*)",
                Group::ALL.map(env_name).join(", ")
            ),
            Self::Expected { what, found } => write!(f, "expected {what}, found {found}"),
            Self::TooLarge { what, found } => {
                write!(
                    f,
                    "expected {what}, found {found}, which is too large (it overflows)"
                )
            }
            Self::InGroups { groups, problem } => {
                let names: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
                match names.as_slice() {
                    [one] => write!(f, "in group {one}: {problem}"),
                    [init @ .., last] => write!(f, "in groups {} and {last}: {problem}", init.join(", ")),
                    [] => write!(f, "{problem}"),
                }
            }
            Self::NotUnicode => f.write_str("value is not valid UTF-8"),
            Self::Quota { error, hint } => {
                write!(f, "{error}")?;
                if let Some(hint) = hint {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            Self::Adaptive(e) => write!(f, "{e}"),
            Self::Breaker(e) => write!(f, "{e}"),
            Self::ZeroWaiterTimeout => f.write_str("waiter timeout must be longer than zero"),
            Self::ZeroMargin => f.write_str(
                "the gcra policy needs a jitter margin above zero (any jitter could put one request too many \
                 in a window); use policy = \"interval-log\", which needs none",
            ),
            Self::IntervalLog(e) => write!(f, "interval log: {e}"),
            Self::Pocket(e) => write!(f, "{e}"),
            Self::SharedByPockets(g) => write!(
                f,
                "group {g} is counted per IP and shared by every pocket: set it under [groups.{g}]"
            ),
            #[cfg(feature = "redis")]
            Self::Shared(e) => write!(f, "shared store: {e}"),
        }
    }
}

/// One problem with its key and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    /// Where the offending setting was written.
    pub origin: Origin,
    /// The key: a dotted TOML path (`groups.ticker.burst`), a variable name, or
    /// `groups.<name>` for a configuration built in code.
    pub key: String,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_at(f, &self.origin, &self.key, &self.problem)
    }
}

/// `where: key: what`, in the spelling of the source.
fn write_at(f: &mut fmt::Formatter<'_>, origin: &Origin, key: &str, what: &dyn fmt::Display) -> fmt::Result {
    match origin {
        Origin::File { name, line, column } => {
            write!(f, "{name}")?;
            if *line > 0 {
                write!(f, ":{line}:{column}")?;
            }
            if !key.is_empty() {
                write!(f, ": {key}")?;
            }
            write!(f, ": {what}")
        }
        Origin::Env { var } => write!(f, "environment variable {var}: {what}"),
        Origin::Code => write!(f, "{key}: {what}"),
    }
}

/// A setting that is accepted but costs something an operator may not expect.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// A burst above 1 on a derived quota lowers the group's sustained rate:
    /// the quota must keep `burst` admissions plus the steady ones within the
    /// server's window.
    BurstLowersRate {
        /// The group.
        group: Group,
        /// The burst set.
        burst: u32,
        /// The sustained rate the burst leaves, per second.
        rate_per_s: f64,
        /// The sustained rate at burst 1, per second.
        rate_at_burst_1_per_s: f64,
    },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BurstLowersRate {
                group,
                burst,
                rate_per_s,
                rate_at_burst_1_per_s,
            } => write!(
                f,
                "burst {burst} lowers {group}'s sustained rate to {}/s (from {}/s at burst 1)",
                rate(*rate_per_s),
                rate(*rate_at_burst_1_per_s)
            ),
        }
    }
}

/// A rate with two decimals, or four below 0.1/s so it never shows as zero.
fn rate(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.4}")
    }
}

/// A [`Notice`] with its key and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    /// Where the setting was written.
    pub origin: Origin,
    /// Its key, as in [`Issue::key`].
    pub key: String,
    /// What it costs.
    pub notice: Notice,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_at(f, &self.origin, &self.key, &self.notice)
    }
}

/// Every problem found in a configuration, in file order, then variables by name.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigErrors {
    /// The problems (never empty).
    pub issues: Vec<Issue>,
}

impl ConfigErrors {
    fn sorted(mut issues: Vec<Issue>) -> Self {
        issues.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        Self { issues }
    }
}

fn sort_key(i: &Issue) -> (u8, usize, usize, &str) {
    match &i.origin {
        Origin::File { line, column, .. } => (0, *line, *column, i.key.as_str()),
        Origin::Env { var } => (1, 0, 0, var.as_str()),
        Origin::Code => (2, 0, 0, i.key.as_str()),
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration problem(s):", self.issues.len())?;
        for issue in &self.issues {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A TOML document and the name to report its positions under.
#[derive(Clone, Copy, Debug)]
pub struct TomlText<'a> {
    /// Shown in errors (usually the path).
    pub name: &'a str,
    /// The document.
    pub text: &'a str,
}

/// Everything an operator configures: the limiter, the health thresholds and
/// emergency mode.
#[derive(Clone, Debug, PartialEq)]
pub struct OpsConfig {
    /// The preset the groups start from.
    pub preset: Preset,
    /// Every group's configuration, without any pocket's own values.
    pub limiter: LimiterConfig,
    /// The pocket this process's limiter counts the exchange groups for.
    pub pocket: Option<PocketId>,
    /// Every pocket with values of its own (`[pockets.<name>]`): its whole
    /// configuration.
    pub pockets: BTreeMap<PocketId, LimiterConfig>,
    /// Health thresholds and the window recent statistics are taken over.
    pub health: Thresholds,
    /// Emergency-mode numbers.
    pub emergency: EmergencySettings,
    /// Where budgets shared with other processes live (`[shared]`,
    /// `UPBIT_RATE_LIMIT_SHARED_*`; `None` when no URL is given): build an
    /// `upbit_limiter_redis::SharedLimiter` from it and [`Self::limiter`].
    #[cfg(feature = "redis")]
    pub shared: Option<upbit_limiter_redis::SharedConfig>,
    /// Settings that were accepted but cost something (a burst that lowers
    /// the derived rate), for the operator to see; empty for a configuration
    /// built in code.
    pub warnings: Vec<Warning>,
}

impl Default for OpsConfig {
    /// The Korea preset, the default alert thresholds and emergency numbers.
    fn default() -> Self {
        Self {
            preset: Preset::Korea,
            limiter: LimiterConfig::preset(Preset::Korea),
            pocket: None,
            pockets: BTreeMap::new(),
            health: Thresholds::default(),
            emergency: EmergencySettings::default(),
            #[cfg(feature = "redis")]
            shared: None,
            warnings: Vec::new(),
        }
    }
}

/// The layers read from the sources, before they are resolved.
#[derive(Debug, Default)]
pub(crate) struct Layers {
    pub preset: Option<Set<Preset>>,
    pub file_all: GroupLayer,
    pub file_groups: [GroupLayer; Group::COUNT],
    pub env_all: GroupLayer,
    pub env_groups: [GroupLayer; Group::COUNT],
    pub pocket: Option<Set<PocketId>>,
    pub pockets: BTreeMap<PocketId, [Option<GroupLayer>; Group::COUNT]>,
    pub health: Thresholds,
    pub emergency: EmergencySettings,
    #[cfg(feature = "redis")]
    pub shared: fields::SharedLayer,
}

impl OpsConfig {
    /// The configuration of pocket `pocket`: [`limiter`](Self::limiter)
    /// with the pocket's own values, if it has any.
    pub fn pocket_limiter(&self, pocket: &PocketId) -> &LimiterConfig {
        self.pockets.get(pocket).unwrap_or(&self.limiter)
    }

    /// The configuration of this process's pocket ([`pocket`](Self::pocket)),
    /// or [`limiter`](Self::limiter) when it names none.
    pub fn own_limiter(&self) -> &LimiterConfig {
        self.pocket
            .as_ref()
            .map_or(&self.limiter, |p| self.pocket_limiter(p))
    }

    /// Builds the configuration from an optional TOML document and environment
    /// variables given as `(name, value)` pairs (variables without the
    /// [`ENV_PREFIX`] are ignored). The one parsing entry point; the others
    /// read a file or the process environment and call this.
    pub fn from_layers<I, K, V>(file: Option<TomlText<'_>>, env: I) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut issues = Vec::new();
        let mut layers = Layers::default();
        if let Some(doc) = file {
            file::read(doc, &mut layers, &mut issues);
        }
        env::read(env, &mut layers, &mut issues);
        let config = resolve(&layers, &mut issues);
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors::sorted(issues))
        }
    }

    /// Reads the TOML file at `path` (if any) and lays `env` over it.
    pub fn load<I, K, V>(path: Option<&Path>, env: I) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let Some(path) = path else {
            return Self::from_layers(None, env);
        };
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_layers(
                Some(TomlText {
                    name: &name,
                    text: &text,
                }),
                env,
            ),
            Err(e) => {
                let mut issues = vec![Issue {
                    origin: Origin::File {
                        name: name.clone(),
                        line: 0,
                        column: 0,
                    },
                    key: String::new(),
                    problem: Problem::Io(e.to_string()),
                }];
                // Still report what is wrong with the environment.
                if let Err(more) = Self::from_layers(None, env) {
                    issues.extend(more.issues);
                }
                Err(ConfigErrors::sorted(issues))
            }
        }
    }

    /// [`load`](Self::load) with this process's environment; the file is
    /// `path`, else the one named by [`ENV_FILE`], else none.
    pub fn load_from_process_env(path: Option<&Path>) -> Result<Self, ConfigErrors> {
        let (vars, bad) = process_env();
        let from_env = vars
            .iter()
            .find(|(k, _)| k == ENV_FILE)
            .map(|(_, v)| std::path::PathBuf::from(v));
        let path = path.map(Path::to_path_buf).or(from_env);
        let result = Self::load(path.as_deref(), vars);
        if bad.is_empty() {
            return result;
        }
        let mut issues = bad;
        if let Err(e) = result {
            issues.extend(e.issues);
        }
        Err(ConfigErrors::sorted(issues))
    }
}

/// This process's variables that start with [`ENV_PREFIX`], and an issue for
/// each such variable whose value is not UTF-8.
pub fn process_env() -> (Vec<(String, String)>, Vec<Issue>) {
    let mut vars = Vec::new();
    let mut bad = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str().filter(|k| k.starts_with(ENV_PREFIX)) else {
            continue;
        };
        match v.into_string() {
            Ok(v) => vars.push((k.to_owned(), v)),
            Err(_) => bad.push(Issue {
                origin: Origin::Env { var: k.to_owned() },
                key: k.to_owned(),
                problem: Problem::NotUnicode,
            }),
        }
    }
    (vars, bad)
}

/// The name a group has in environment variables: upper case, `_` for `-`.
pub fn env_name(group: Group) -> String {
    group.as_str().to_ascii_uppercase().replace('-', "_")
}

/// Checks every group of a configuration built in code, collecting every
/// problem (keys are `groups.<name>`).
pub fn validate(config: &LimiterConfig) -> Result<(), ConfigErrors> {
    let mut issues = Vec::new();
    for group in Group::ALL {
        let cfg = config.group(group);
        let at = |problem| Issue {
            origin: Origin::Code,
            key: format!("groups.{group}"),
            problem,
        };
        if let Err(kind) = cfg.quota() {
            issues.push(at(quota_problem(kind, None)));
        }
        if let Err(e) = cfg.adaptive.validate() {
            issues.push(at(Problem::Adaptive(e)));
        }
        if let Err(e) = cfg.breaker.validate() {
            issues.push(at(Problem::Breaker(e)));
        }
        if cfg.waiter_timeout.is_zero() {
            issues.push(at(Problem::ZeroWaiterTimeout));
        }
        if let Err(kind @ (ConfigErrorKind::ZeroMargin | ConfigErrorKind::IntervalLog(_))) = cfg.validate() {
            issues.push(at(quota_problem(kind, None)));
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors::sorted(issues))
    }
}

fn quota_problem(kind: ConfigErrorKind, hint: Option<String>) -> Problem {
    match kind {
        ConfigErrorKind::Quota(error) => Problem::Quota { error, hint },
        ConfigErrorKind::Adaptive(e) => Problem::Adaptive(e),
        ConfigErrorKind::Breaker(e) => Problem::Breaker(e),
        ConfigErrorKind::ZeroMargin => Problem::ZeroMargin,
        ConfigErrorKind::IntervalLog(e) => Problem::IntervalLog(e),
        _ => Problem::ZeroWaiterTimeout,
    }
}

fn resolve(layers: &Layers, issues: &mut Vec<Issue>) -> OpsConfig {
    let preset = layers.preset.as_ref().map_or(Preset::Korea, |p| p.value);
    let mut limiter = LimiterConfig::preset(preset);
    let mut warnings = Vec::new();
    let merged = |group: Group, pocket: Option<&GroupLayer>| {
        let mut merged = layers.file_all.clone();
        merged.overlay(&layers.file_groups[group.index()]);
        if let Some(own) = pocket {
            merged.overlay(own);
        }
        merged.overlay(&layers.env_all);
        merged.overlay(&layers.env_groups[group.index()]);
        merged
    };
    for group in Group::ALL {
        let mut found = Vec::new();
        *limiter.group_mut(group) =
            resolve_group(preset, group, &merged(group, None), &mut found, &mut warnings);
        for issue in found {
            name_the_group(group, issue, issues);
        }
    }
    let mut pockets = BTreeMap::new();
    for (pocket, own) in &layers.pockets {
        let mut config = limiter.clone();
        for group in Group::ALL.into_iter().filter(|g| g.scope() != Scope::Ip) {
            let Some(own) = &own[group.index()] else {
                continue;
            };
            let mut found = Vec::new();
            let mut costs = Vec::new();
            *config.group_mut(group) =
                resolve_group(preset, group, &merged(group, Some(own)), &mut found, &mut costs);
            // What the shared layers cause was reported for the groups above.
            let own_key = |key: &str| key.starts_with("pockets.");
            issues.extend(found.into_iter().filter(|i| own_key(&i.key)));
            warnings.extend(costs.into_iter().filter(|w| own_key(&w.key)));
        }
        pockets.insert(*pocket, config);
    }
    OpsConfig {
        preset,
        limiter,
        pocket: layers.pocket.as_ref().map(|p| p.value),
        pockets,
        health: layers.health,
        emergency: layers.emergency,
        #[cfg(feature = "redis")]
        shared: resolve_shared(&layers.shared, layers.pocket.as_ref().map(|p| p.value), issues),
        warnings,
    }
}

/// The shared store's settings: `None` without any, an issue when some are
/// given without a URL or do not validate. The shared pocket is the
/// limiter's `pocket` unless `shared.pocket_id` names another.
#[cfg(feature = "redis")]
fn resolve_shared(
    layer: &fields::SharedLayer,
    pocket: Option<PocketId>,
    issues: &mut Vec<Issue>,
) -> Option<upbit_limiter_redis::SharedConfig> {
    let issue = |key: &str, problem| Issue {
        origin: Origin::Code,
        key: key.to_owned(),
        problem,
    };
    let Some(url) = &layer.url else {
        if *layer != fields::SharedLayer::default() {
            issues.push(issue(
                "shared.url",
                Problem::Expected {
                    what: "a Redis URL when any other shared setting is given",
                    found: "none".to_owned(),
                },
            ));
        }
        return None;
    };
    let mut c = upbit_limiter_redis::SharedConfig::new(url.clone());
    if let Some(v) = &layer.key_prefix {
        c.key_prefix = v.clone();
    }
    if let Some(v) = &layer.pocket_id {
        c.pocket_id = v.clone();
    } else if let Some(p) = pocket {
        c.pocket_id = p.as_str().to_owned();
    }
    if let Some(v) = &layer.ip_id {
        c.ip_id = v.clone();
    }
    if let Some(v) = layer.store_timeout {
        c.store_timeout = v.into();
    }
    if let Some(v) = layer.store_retry {
        c.store_retry = v.into();
    }
    if let Some(v) = layer.report_poll {
        c.report_poll = v.into();
    }
    if let Some(v) = layer.failure_mode {
        c.failure_mode = v;
    }
    match c.validate() {
        Ok(()) => Some(c),
        Err(e) => {
            issues.push(issue("shared", Problem::Shared(e)));
            None
        }
    }
}

/// Whether a key belongs to a setting every group shares.
fn is_shared(key: &str) -> bool {
    key.starts_with("all.")
        || key
            .strip_prefix(ENV_PREFIX)
            .is_some_and(|k| k.starts_with("ALL_"))
}

/// Adds `group`'s `issue`; a problem with a shared setting names the group,
/// and the groups that refuse it for the same reason share one issue.
fn name_the_group(group: Group, issue: Issue, issues: &mut Vec<Issue>) {
    if !is_shared(&issue.key) {
        issues.push(issue);
        return;
    }
    let same = issues.iter_mut().find(|i| {
        i.origin == issue.origin
            && i.key == issue.key
            && matches!(&i.problem, Problem::InGroups { problem, .. } if **problem == issue.problem)
    });
    match same {
        Some(Issue {
            problem: Problem::InGroups { groups, .. },
            ..
        }) => groups.push(group),
        _ => issues.push(Issue {
            origin: issue.origin,
            key: issue.key,
            problem: Problem::InGroups {
                groups: vec![group],
                problem: Box::new(issue.problem),
            },
        }),
    }
}

fn issue_at<T>(set: &Set<T>, problem: Problem) -> Issue {
    Issue {
        origin: set.origin.clone(),
        key: set.key.clone(),
        problem,
    }
}

fn group_issue(group: Group, problem: Problem) -> Issue {
    Issue {
        origin: Origin::Code,
        key: format!("groups.{group}"),
        problem,
    }
}

/// Where the "allow it anyway" switch is, in the spelling of the source
/// that set the quota.
fn unsafe_hint(group: Group, rps: &Set<f64>) -> String {
    match &rps.origin {
        Origin::Env { .. } => format!(
            "to accept it anyway set {ENV_PREFIX}{}_ALLOW_UNSAFE=1",
            env_name(group)
        ),
        _ => {
            let table = rps.key.rsplit_once('.').map_or("groups", |(t, _)| t);
            format!("to accept it anyway set allow_unsafe_quota = true in [{table}]")
        }
    }
}

fn resolve_group(
    preset: Preset,
    group: Group,
    m: &GroupLayer,
    issues: &mut Vec<Issue>,
    warnings: &mut Vec<Warning>,
) -> GroupConfig {
    let mut cfg = GroupConfig::preset(preset, group);
    if let Some(l) = &m.limits {
        // Parsing already bounded the count, so this only fails on an empty list.
        match Limits::new(&l.value) {
            Some(limits) => cfg.limits = limits,
            None => issues.push(issue_at(
                l,
                Problem::Expected {
                    what: "one to three server windows",
                    found: "none".into(),
                },
            )),
        }
    }
    if let Some(v) = &m.margin {
        cfg.margin = v.value;
    }
    if let Some(v) = &m.policy {
        cfg.policy = v.value;
    }
    if let Some(v) = &m.ceiling_hold {
        cfg.ceiling_hold = v.value;
    }
    if let Some(v) = &m.max_flight {
        cfg.max_flight = v.value;
    }
    if let Some(v) = &m.burst {
        cfg.burst = v.value;
    }
    if let Some(v) = &m.allow_unsafe {
        cfg.allow_unsafe = v.value;
    }
    if let Some(v) = &m.timeout {
        cfg.waiter_timeout = v.value;
    }
    if let Some(s) = &m.strategy {
        cfg.adaptive = s.value.config();
    }
    let a = &mut cfg.adaptive;
    macro_rules! copy {
        ($dst:expr; $($f:ident => $field:ident),*) => {
            $(if let Some(v) = &m.$f { $dst.$field = v.value; })*
        };
    }
    copy!(a; error_threshold => error_threshold, reduction => reduction, min_ratio => min_ratio,
        recovery_delay => recovery_delay, recovery_interval => recovery_interval,
        recovery_step_ppm => recovery_step_ppm, ban_default => ban_default, ban_max => ban_max);
    let b = &mut cfg.breaker;
    copy!(b; consecutive_failures => consecutive_failures, failure_rate_ppm => failure_rate_ppm,
        window => window, minimum_calls => minimum_calls, open_wait => open_wait,
        open_wait_max => open_wait_max, open_wait_multiplier => open_wait_multiplier,
        half_open_probes => half_open_probes, half_open_successes => half_open_successes,
        half_open_max_wait => half_open_max_wait);

    // The quota: explicit (rps) or derived (burst, margin, limits).
    let mut quota_ok = true;
    if let Some(rps) = &m.rps {
        match Quota::per_second(rps.value, cfg.burst) {
            Ok(q) => cfg.quota = Some(q),
            Err(error) => {
                quota_ok = false;
                let at = if error == QuotaError::ZeroBurst {
                    m.burst.as_ref()
                } else {
                    None
                };
                let problem = Problem::Quota { error, hint: None };
                issues.push(match at {
                    Some(burst) => issue_at(burst, problem),
                    None => issue_at(rps, problem),
                });
            }
        }
    }
    if quota_ok {
        if let Err(kind) = cfg.quota() {
            let unsafe_explicit =
                matches!(kind, ConfigErrorKind::Quota(QuotaError::Unsafe { .. })) && cfg.quota.is_some();
            let hint = m
                .rps
                .as_ref()
                .filter(|_| unsafe_explicit)
                .map(|rps| unsafe_hint(group, rps));
            let problem = quota_problem(kind, hint);
            let blame = match kind {
                ConfigErrorKind::Quota(QuotaError::ZeroBurst | QuotaError::BurstExceedsLimit { .. }) => {
                    m.burst.as_ref().map(|s| issue_at(s, problem.clone()))
                }
                _ => None,
            };
            let blame = blame
                .or_else(|| m.rps.as_ref().map(|s| issue_at(s, problem.clone())))
                .or_else(|| m.burst.as_ref().map(|s| issue_at(s, problem.clone())))
                .or_else(|| m.margin.as_ref().map(|s| issue_at(s, problem.clone())))
                .or_else(|| m.limits.as_ref().map(|s| issue_at(s, problem.clone())))
                .unwrap_or_else(|| group_issue(group, problem));
            issues.push(blame);
        }
    }
    if quota_ok && cfg.quota.is_none() {
        if let Some(burst) = m.burst.as_ref().filter(|b| b.value > 1) {
            if let Some(notice) = burst_cost(group, &cfg) {
                warnings.push(Warning {
                    origin: burst.origin.clone(),
                    key: burst.key.clone(),
                    notice,
                });
            }
        }
    }

    adaptive_issues(group, &cfg, m, issues);
    breaker_issues(group, &cfg, m, issues);
    if cfg.waiter_timeout.is_zero() {
        issues.push(match &m.timeout {
            Some(t) => issue_at(t, Problem::ZeroWaiterTimeout),
            None => group_issue(group, Problem::ZeroWaiterTimeout),
        });
    }
    match cfg.validate() {
        Err(ConfigErrorKind::ZeroMargin) => issues.push(match (&m.margin, &m.policy) {
            (Some(s), _) => issue_at(s, Problem::ZeroMargin),
            (None, Some(s)) => issue_at(s, Problem::ZeroMargin),
            (None, None) => group_issue(group, Problem::ZeroMargin),
        }),
        Err(ConfigErrorKind::IntervalLog(e)) => issues.push(match (&m.max_flight, &m.limits, &m.policy) {
            (Some(s), _, _) => issue_at(s, Problem::IntervalLog(e)),
            (None, Some(s), _) => issue_at(s, Problem::IntervalLog(e)),
            (None, None, Some(s)) => issue_at(s, Problem::IntervalLog(e)),
            (None, None, None) => group_issue(group, Problem::IntervalLog(e)),
        }),
        _ => {}
    }
    cfg
}

/// What a derived quota's burst costs in sustained rate, when it costs any.
fn burst_cost(group: Group, cfg: &GroupConfig) -> Option<Notice> {
    let per_s = |q: Quota| 1e9 / q.interval().as_nanos().max(1) as f64;
    let with = cfg.quota().ok()?;
    let mut one = *cfg;
    one.burst = 1;
    let without = one.quota().ok()?;
    (with.interval() > without.interval()).then(|| Notice::BurstLowersRate {
        group,
        burst: cfg.burst,
        rate_per_s: per_s(with),
        rate_at_burst_1_per_s: per_s(without),
    })
}

/// Core reports the first adaptive problem; to report every one, the field
/// at fault is put back to the strategy's value and the check repeated.
fn adaptive_issues(group: Group, cfg: &GroupConfig, m: &GroupLayer, issues: &mut Vec<Issue>) {
    use AdaptiveConfigError as E;
    let d = m.strategy.as_ref().map_or_else(
        || GroupConfig::preset(Preset::Korea, group).adaptive,
        |s| s.value.config(),
    );
    let mut a = cfg.adaptive;
    let mut seen = Vec::new();
    for _ in 0..16 {
        let Err(e) = a.validate() else { return };
        if seen.contains(&e) {
            return;
        }
        seen.push(e);
        let slot: Option<Set<()>> = match e {
            E::ZeroErrorThreshold => {
                a.error_threshold = d.error_threshold;
                m.error_threshold.as_ref().map(erase)
            }
            E::NoReduction => {
                a.reduction = d.reduction;
                m.reduction.as_ref().map(erase)
            }
            E::ZeroRecoveryDelay => {
                a.recovery_delay = d.recovery_delay;
                m.recovery_delay.as_ref().map(erase)
            }
            E::ZeroRecoveryInterval => {
                a.recovery_interval = d.recovery_interval;
                m.recovery_interval.as_ref().map(erase)
            }
            E::ZeroRecoveryStep | E::RecoveryStepAboveOne => {
                a.recovery_step_ppm = d.recovery_step_ppm;
                m.recovery_step_ppm.as_ref().map(erase)
            }
            E::ZeroBanDefault => {
                a.ban_default = d.ban_default;
                m.ban_default.as_ref().map(erase)
            }
            E::BanDefaultAboveMax => {
                let slot = m
                    .ban_default
                    .as_ref()
                    .map(erase)
                    .or(m.ban_max.as_ref().map(erase));
                a.ban_default = d.ban_default;
                a.ban_max = d.ban_max;
                slot
            }
            _ => {
                a = d;
                None
            }
        };
        let problem = Problem::Adaptive(e);
        issues.push(match slot {
            Some(s) => issue_at(&s, problem),
            None => m
                .strategy
                .as_ref()
                .map(|s| issue_at(s, problem.clone()))
                .unwrap_or_else(|| group_issue(group, problem)),
        });
    }
}

/// Like [`adaptive_issues`], for the breaker.
fn breaker_issues(group: Group, cfg: &GroupConfig, m: &GroupLayer, issues: &mut Vec<Issue>) {
    use upbit_limiter_core::breaker::BreakerConfig;
    use BreakerConfigError as E;
    let d = BreakerConfig::default();
    let mut b = cfg.breaker;
    let mut seen = Vec::new();
    for _ in 0..16 {
        let Err(e) = b.validate() else { return };
        if seen.contains(&e) {
            return;
        }
        seen.push(e);
        let slot: Option<Set<()>> = match e {
            E::ZeroConsecutiveFailures => {
                b.consecutive_failures = d.consecutive_failures;
                m.consecutive_failures.as_ref().map(erase)
            }
            E::ZeroFailureRate | E::FailureRateAboveOne => {
                b.failure_rate_ppm = d.failure_rate_ppm;
                m.failure_rate_ppm.as_ref().map(erase)
            }
            E::WindowOutOfRange => {
                b.window = d.window;
                m.window.as_ref().map(erase)
            }
            E::ZeroMinimumCalls => {
                b.minimum_calls = d.minimum_calls;
                m.minimum_calls.as_ref().map(erase)
            }
            E::MinimumCallsAboveWindow => {
                let slot = m
                    .minimum_calls
                    .as_ref()
                    .map(erase)
                    .or(m.window.as_ref().map(erase));
                b.minimum_calls = b.minimum_calls.min(b.window);
                slot
            }
            E::ZeroOpenWait => {
                b.open_wait = d.open_wait;
                m.open_wait.as_ref().map(erase)
            }
            E::OpenWaitAboveMax => {
                let slot = m
                    .open_wait
                    .as_ref()
                    .map(erase)
                    .or(m.open_wait_max.as_ref().map(erase));
                b.open_wait = b.open_wait_max;
                slot
            }
            E::ZeroOpenWaitMultiplier => {
                b.open_wait_multiplier = d.open_wait_multiplier;
                m.open_wait_multiplier.as_ref().map(erase)
            }
            E::ZeroHalfOpenProbes => {
                b.half_open_probes = d.half_open_probes.max(b.half_open_successes);
                m.half_open_probes.as_ref().map(erase)
            }
            E::ZeroHalfOpenSuccesses => {
                b.half_open_successes = d.half_open_successes.min(b.half_open_probes.max(1));
                m.half_open_successes.as_ref().map(erase)
            }
            E::ProbesBelowSuccesses => {
                let slot = m
                    .half_open_probes
                    .as_ref()
                    .map(erase)
                    .or(m.half_open_successes.as_ref().map(erase));
                b.half_open_probes = b.half_open_successes;
                slot
            }
            E::ZeroHalfOpenMaxWait => {
                b.half_open_max_wait = d.half_open_max_wait;
                m.half_open_max_wait.as_ref().map(erase)
            }
            _ => {
                b = d;
                None
            }
        };
        let problem = Problem::Breaker(e);
        issues.push(match slot {
            Some(s) => issue_at(&s, problem),
            None => group_issue(group, problem),
        });
    }
}

/// Forgets a setting's value, keeping where it was written.
fn erase<T>(s: &Set<T>) -> Set<()> {
    Set {
        value: (),
        origin: s.origin.clone(),
        key: s.key.clone(),
    }
}
