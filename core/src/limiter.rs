//! The per-group limiter: GCRA + adaptive ratio + breaker + header sync + counters,
//! and [`SyncLimiter`], one per Upbit group.
//!
//! # Call order
//!
//! 1. `try_acquire(now)` (or the async `acquire` of the `wait` layer) before
//!    sending; on success you hold an [`Admission`].
//! 2. Send the request.
//! 3. `on_response(&admission, response, now)` with the status, the
//!    `Remaining-Req` header and, for 418, the body.
//!
//! # Fast path and slow path
//!
//! The fast path reads three words (`gate`, the high-water mark of `now`,
//! the packed [`Params`]) and CASes the TAT: no lock, and a denial writes
//! nothing. Everything that changes rarely (the
//! adaptive ratio, the breaker, bans, the configuration, the waiter queue)
//! lives behind the group's lock (its control block, see `sync::Lock`) and is *published* to those words.
//! `gate` is the instant until which the published words stay valid by
//! themselves (the next lazy recovery step, the breaker's open-until); at or
//! after it, or while the group is blocked, a decision takes the slow path,
//! which brings the state up to `now`, republishes, and decides.

use core::fmt;

use crate::adaptive::{Adaptive, AdaptiveConfig, AdaptiveConfigError, Ratio};
use crate::breaker::{Breaker, BreakerConfig, BreakerConfigError, BreakerState, Transition};
use crate::gcra::{decide, tat_allowing, Params, TatCell};
use crate::interval_log::{Denial, IntervalLog, IntervalLogError, Ticket};
use crate::outside::{Ceiling, OutsideUse, Sighting};
use crate::queue::WaitQueue;
use crate::quota::{Quota, QuotaError, ServerLimit};
use crate::stats::{CounterSnapshot, Counters, WaitHistogram};
use crate::sync::{fence, AtomicU64, Lock, Ordering};
use crate::time::{Duration, Instant};
use crate::upbit::{classify, stated_ban, Group, Preset, RemainingReq, Scope, WallClock};

/// Most windows a group can have (Upbit's websocket-message has two).
pub const MAX_WINDOWS: usize = 3;

/// The server's windows for one group (one to [`MAX_WINDOWS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Limits {
    items: [ServerLimit; MAX_WINDOWS],
    len: u8,
}

impl Limits {
    /// The limits in `limits`; `None` if empty or longer than [`MAX_WINDOWS`].
    pub fn new(limits: &[ServerLimit]) -> Option<Self> {
        if limits.is_empty() || limits.len() > MAX_WINDOWS {
            return None;
        }
        let mut items = [limits[0]; MAX_WINDOWS];
        items[..limits.len()].copy_from_slice(limits);
        Some(Self {
            items,
            len: limits.len() as u8,
        })
    }
    /// The limits as a slice.
    pub fn as_slice(&self) -> &[ServerLimit] {
        &self.items[..usize::from(self.len)]
    }
    /// The shortest window (what `Remaining-Req`'s `sec` speaks of).
    pub fn shortest_window(&self) -> Duration {
        self.as_slice()
            .iter()
            .map(|l| l.window)
            .min()
            .unwrap_or(Duration::ZERO)
    }
    /// The longest window.
    pub fn longest_window(&self) -> Duration {
        self.as_slice()
            .iter()
            .map(|l| l.window)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// Everything that configures one group.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GroupConfig {
    /// What the server allows.
    pub limits: Limits,
    /// Jitter margin `J` added to every server window.
    pub margin: Duration,
    /// Burst used when the quota is derived from the limits.
    pub burst: u32,
    /// An explicit quota instead of the derived one. Still checked against the
    /// limits unless `allow_unsafe` is set.
    pub quota: Option<Quota>,
    /// Accept an explicit quota that could exceed the server's limit. Named so
    /// that nobody sets it by accident; the status shows it.
    pub allow_unsafe: bool,
    /// The adaptive ratio's numbers.
    pub adaptive: AdaptiveConfig,
    /// The circuit breaker's numbers.
    pub breaker: BreakerConfig,
    /// Deadline for a waiter when the caller gives none (default: 30 s).
    pub waiter_timeout: Duration,
    /// How admissions are decided.
    pub policy: Policy,
    /// The interval log's bound on how long a request can take between its
    /// admission and the server: a request that is never reported counts
    /// until then (default 30 s; set it to at least the HTTP client's total
    /// timeout). Unused by the GCRA policy.
    pub max_flight: Duration,
    /// How long a server limit learned from a 429 is kept (interval-log
    /// groups): the places the 429 showed missing are held back this long,
    /// then given back one per period (see [`crate::outside`]). Default
    /// 48 h; zero learns nothing.
    pub ceiling_hold: Duration,
}

/// How a group decides admissions.
///
/// | policy | guarantee (no 429 from our own traffic) | assumption | presets |
/// |---|---|---|---|
/// | [`Policy::IntervalLog`] (the default) | no window of the server's holds more than `N` of our requests | every request is reported (or dropped) after its response, or reaches the server within `max_flight` | every HTTP group |
/// | [`Policy::Gcra`] | the quota never places more than `N` in a window of `W + margin` | every request's one-way delay varies by at most the margin | [`Group::WebsocketMessage`] |
///
/// The interval log pays each request's real round trip instead of a
/// worst-case margin and gives the full burst of `N` after idle; the GCRA
/// needs no response per request (WebSocket messages), so the presets keep
/// it there ([`Policy::for_group`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Policy {
    /// Admit while fewer than `N` earlier requests could still arrive in the
    /// window (see [`crate::interval_log`]). The presets' policy for every
    /// group whose requests get a response.
    #[default]
    IntervalLog,
    /// GCRA with a jitter margin (the presets' policy for WebSocket
    /// messages, which get no response to report).
    Gcra,
}

impl Policy {
    /// The presets' policy for `group`: the GCRA for
    /// [`Group::WebsocketMessage`] (no response per message, so nothing
    /// would end a request's interval), the interval log for every other
    /// group.
    pub const fn for_group(group: Group) -> Self {
        match group {
            Group::WebsocketMessage => Self::Gcra,
            _ => Self::IntervalLog,
        }
    }

    /// The name used in configuration files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::IntervalLog => "interval-log",
            Self::Gcra => "gcra",
        }
    }
}

impl core::str::FromStr for Policy {
    type Err = ();
    /// `interval-log` or `gcra`, in any case, `_` for `-` allowed.
    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim();
        let is = |name: &str| {
            s.len() == name.len()
                && s.bytes()
                    .zip(name.bytes())
                    .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
        };
        [Self::IntervalLog, Self::Gcra]
            .into_iter()
            .find(|p| is(p.as_str()))
            .ok_or(())
    }
}

/// The default maximum flight time of the interval log.
pub const DEFAULT_MAX_FLIGHT: Duration = Duration::from_secs(30);

/// [`GroupConfig::ceiling_hold`] of the presets: two days. A lower limit
/// then costs at most one 429 (the probe when a hold ends) every two days,
/// and none in the day after the 429s that taught it, with or without
/// headers.
pub const DEFAULT_CEILING_HOLD: Duration = Duration::from_secs(48 * 3_600);

/// The default waiter deadline: 30 s.
pub const DEFAULT_WAITER_TIMEOUT: Duration = Duration::from_secs(30);

impl GroupConfig {
    /// Upbit's published limits for `group` in `preset`, with the policy
    /// [`Policy::for_group`] (the interval log except for WebSocket
    /// messages), the preset's margin and burst 1 (used by the GCRA policy),
    /// the conservative strategy and the default breaker.
    pub fn preset(preset: Preset, group: Group) -> Self {
        Self {
            // Presets always have one to MAX_WINDOWS windows (tested in `upbit`).
            limits: Limits::new(preset.limits(group)).unwrap_or(Limits {
                items: [ServerLimit::per_second(1); MAX_WINDOWS],
                len: 1,
            }),
            margin: preset.default_margin(group),
            burst: 1,
            quota: None,
            allow_unsafe: false,
            adaptive: AdaptiveConfig::conservative(),
            breaker: BreakerConfig::default(),
            waiter_timeout: DEFAULT_WAITER_TIMEOUT,
            policy: Policy::for_group(group),
            max_flight: DEFAULT_MAX_FLIGHT,
            ceiling_hold: DEFAULT_CEILING_HOLD,
        }
    }

    /// The quota this configuration runs on, or why it is refused.
    ///
    /// An explicit quota is always checked for sanity (a non-zero interval
    /// of at most [`MAX_INTERVAL`](crate::quota::MAX_INTERVAL), a non-zero
    /// burst); `allow_unsafe` relaxes only the check against the server's
    /// limits.
    pub fn quota(&self) -> Result<Quota, ConfigErrorKind> {
        match self.quota {
            Some(q) => {
                Quota::new(q.interval(), q.burst())?;
                if !self.allow_unsafe {
                    q.check_against(self.limits.as_slice(), self.margin)?;
                }
                Ok(q)
            }
            None => Ok(Quota::derive(self.limits.as_slice(), self.margin, self.burst)?),
        }
    }

    /// Checks every part of the configuration.
    pub fn validate(&self) -> Result<Quota, ConfigErrorKind> {
        if self.policy == Policy::Gcra && self.margin.is_zero() && !self.allow_unsafe {
            // Any jitter at all can then put N + 1 requests in a window.
            return Err(ConfigErrorKind::ZeroMargin);
        }
        let quota = self.quota()?;
        self.adaptive.validate()?;
        self.breaker.validate()?;
        if self.waiter_timeout.is_zero() {
            return Err(ConfigErrorKind::ZeroWaiterTimeout);
        }
        if self.policy == Policy::IntervalLog {
            IntervalLog::new(self.limits.as_slice(), self.max_flight)?;
        }
        Ok(quota)
    }
}

/// What is wrong with a group's configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The quota is unsafe or nonsensical.
    Quota(QuotaError),
    /// The adaptive ratio's numbers are invalid.
    Adaptive(AdaptiveConfigError),
    /// The breaker's numbers are invalid.
    Breaker(BreakerConfigError),
    /// A zero waiter deadline would fail every wait.
    ZeroWaiterTimeout,
    /// The GCRA policy with a zero jitter margin (refused unless unsafe
    /// quotas are allowed explicitly).
    ZeroMargin,
    /// The interval log cannot hold the group's limits.
    IntervalLog(IntervalLogError),
}

impl From<IntervalLogError> for ConfigErrorKind {
    fn from(e: IntervalLogError) -> Self {
        Self::IntervalLog(e)
    }
}

impl From<QuotaError> for ConfigErrorKind {
    fn from(e: QuotaError) -> Self {
        Self::Quota(e)
    }
}
impl From<AdaptiveConfigError> for ConfigErrorKind {
    fn from(e: AdaptiveConfigError) -> Self {
        Self::Adaptive(e)
    }
}
impl From<BreakerConfigError> for ConfigErrorKind {
    fn from(e: BreakerConfigError) -> Self {
        Self::Breaker(e)
    }
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Quota(e) => write!(f, "quota: {e}"),
            Self::Adaptive(e) => write!(f, "adaptive ratio: {e}"),
            Self::Breaker(e) => write!(f, "circuit breaker: {e}"),
            Self::ZeroWaiterTimeout => f.write_str("waiter timeout is zero"),
            Self::ZeroMargin => f.write_str(
                "the GCRA policy needs a jitter margin above zero (any jitter could put one request too many in a window)",
            ),
            Self::IntervalLog(e) => write!(f, "interval log: {e}"),
        }
    }
}

/// A group's configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfigError {
    /// The group.
    pub group: Group,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {}: {}", self.group, self.kind)
    }
}

impl core::error::Error for ConfigError {}

/// The configuration of every group.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LimiterConfig {
    /// Indexed by [`Group::index`].
    pub groups: [GroupConfig; Group::COUNT],
    /// Whether a 418 on an IP-scoped group (quotation, public websocket
    /// connects) also pauses the pocket-scoped (exchange) groups for as long
    /// as it bans the IP. Default `false`.
    ///
    /// Upbit documents that a 418 applies per unit of its limit (IP or
    /// pocket), and the pocket groups have a budget of their own that a
    /// quotation ban does not touch; pausing them would leave a bot unable to
    /// cancel or amend its orders for the length of a quotation ban (up to
    /// 10 minutes or more), which costs more than the risk it removes. If the
    /// server does block exchange calls from a banned IP after all, the first
    /// exchange request gets a 418 of its own, which bans the pocket groups
    /// with the same safe schedule. Set it to `true` to stop everything on an
    /// IP ban (e.g. when the pocket's traffic is only market making that can
    /// wait).
    pub ip_ban_pauses_pocket_groups: bool,
}

impl LimiterConfig {
    /// Upbit's limits for every group of `preset`.
    pub fn preset(preset: Preset) -> Self {
        Self {
            groups: core::array::from_fn(|i| {
                GroupConfig::preset(preset, Group::from_index(i).unwrap_or(Group::PublicFallback))
            }),
            ip_ban_pauses_pocket_groups: false,
        }
    }
    /// One group's configuration.
    pub fn group(&self, group: Group) -> &GroupConfig {
        &self.groups[group.index()]
    }
    /// One group's configuration, to change it.
    pub fn group_mut(&mut self, group: Group) -> &mut GroupConfig {
        &mut self.groups[group.index()]
    }
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self::preset(Preset::Korea)
    }
}

/// A granted request. Report its response with `on_response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The group it was counted in.
    pub group: Group,
    /// When it was admitted.
    pub at: Instant,
    /// Its position among the group's admissions (0-based).
    pub seq: u64,
    /// Whether it was a half-open probe of the circuit breaker.
    pub probe: bool,
    /// Its entry in the group's interval log (the interval-log policy):
    /// reporting the response ends the request's interval.
    pub ticket: Option<Ticket>,
}

/// Why a request may not go now, and when it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denied {
    /// The group's quota is used up until `earliest`.
    NotYet {
        /// The first instant at which the request would conform.
        earliest: Instant,
    },
    /// The circuit breaker is open.
    CircuitOpen {
        /// When a probe may be tried ([`Instant::MAX`] when forced open).
        retry_at: Instant,
    },
    /// The server banned this scope (HTTP 418).
    Banned {
        /// When the ban ends.
        until: Instant,
    },
    /// Requests still in flight fill a window of the interval log: the next
    /// report may make room (a waiter is woken by it); without one there is
    /// room at `at_latest`, when their maximum flight time has passed.
    InFlight {
        /// When there is room if no report comes.
        at_latest: Instant,
    },
}

impl Denied {
    /// When to try again.
    pub fn retry_at(&self) -> Instant {
        match *self {
            Self::NotYet { earliest } => earliest,
            Self::CircuitOpen { retry_at } => retry_at,
            Self::Banned { until } => until,
            Self::InFlight { at_latest } => at_latest,
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotYet { earliest } => write!(f, "rate limited until {earliest}"),
            Self::CircuitOpen { retry_at } => write!(f, "circuit open; retry at {retry_at}"),
            Self::Banned { until } => write!(f, "banned by the server (418) until {until}"),
            Self::InFlight { at_latest } => {
                write!(
                    f,
                    "window full of requests in flight; room after a report, at the latest {at_latest}"
                )
            }
        }
    }
}

impl core::error::Error for Denied {}

/// A response to report. `status: None` means no response at all (timeout,
/// connection error): a failure for the breaker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Response<'a> {
    /// The HTTP status, or `None` for a timeout or transport error.
    pub status: Option<u16>,
    /// The raw `Remaining-Req` header value, if present.
    pub remaining_req: Option<&'a str>,
    /// The body, for 418 (the ban duration or its end may be in it).
    pub body: Option<&'a str>,
    /// The raw `Retry-After` header value, if present (delta-seconds or an
    /// HTTP-date).
    pub retry_after: Option<&'a str>,
    /// The raw `Date` header value, if present: the server's wall-clock time
    /// when it answered, which turns an absolute ban end (in the body or an
    /// HTTP-date `Retry-After`) into a length on the server's own clock.
    pub date: Option<&'a str>,
    /// The caller's wall-clock time at the response, for when there is no
    /// usable `Date` header. Core never reads a clock itself.
    pub wall_clock: Option<WallClock>,
}

impl<'a> Response<'a> {
    /// A response with `status` and no header.
    pub fn status(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }
    /// No response (timeout or transport error).
    pub fn no_response() -> Self {
        Self::default()
    }
    /// Adds the `Remaining-Req` header value.
    pub fn with_remaining_req(mut self, value: &'a str) -> Self {
        self.remaining_req = Some(value);
        self
    }
    /// Adds the body.
    pub fn with_body(mut self, body: &'a str) -> Self {
        self.body = Some(body);
        self
    }
    /// Adds the `Retry-After` header value.
    pub fn with_retry_after(mut self, value: &'a str) -> Self {
        self.retry_after = Some(value);
        self
    }
    /// Adds the `Date` header value.
    pub fn with_date(mut self, value: &'a str) -> Self {
        self.date = Some(value);
        self
    }
    /// Adds the caller's wall-clock time (used when `Date` is missing or unreadable).
    pub fn with_wall_clock(mut self, now: WallClock) -> Self {
        self.wall_clock = Some(now);
        self
    }
}

/// What a reported response changed, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Feedback {
    /// The rate ratio before and after, if it changed.
    pub ratio_change: Option<(Ratio, Ratio)>,
    /// A breaker transition, if any.
    pub transition: Option<Transition>,
    /// The end of a ban, if the response started or extended one.
    pub banned_until: Option<Instant>,
    /// Until when the other groups of the scope must wait, if the response
    /// started or extended a ban: its end, or for a ban of unknown length
    /// the end of the next wait of the schedule (they are released when
    /// this group's probe passes, see [`Feedback::ban_lifted`]). A denial
    /// during that hold names the hold's end; a caller that tries again
    /// sooner gets through as soon as the probe has passed.
    pub scope_ban_until: Option<Instant>,
    /// This response answered the probe of a ban of unknown length and was
    /// not a 418: the ban is over. Holds the hold the scope was given, to be
    /// lifted.
    pub ban_lifted: Option<Instant>,
    /// The `Remaining-Req` header made the limiter stricter.
    pub header_tightened: bool,
    /// The `Remaining-Req` header could not be parsed, or named an unknown group.
    pub header_rejected: bool,
    /// GCRA policy: the round trip was longer than the jitter margin, so
    /// one-way delays may vary by more than the margin assumes.
    pub round_trip_over_margin: bool,
}

/// The rarely changing state, behind the group's lock.
#[derive(Debug)]
pub(crate) struct Control {
    config: GroupConfig,
    quota: Quota,
    adaptive: Adaptive,
    breaker: Breaker,
    /// A ban set by a 418 in another group of the same scope.
    scope_ban_until: Instant,
    /// When the latest 429 or 418 was reported. A 429 or 418 to a request
    /// admitted before then is an echo of it (the request was on its way
    /// before the penalty was known): it tells the breaker nothing new.
    penalty_seen_at: Instant,
    /// What others use of the budget (from `Remaining-Req`, and from 429s
    /// of logged groups).
    outside: OutsideUse,
    /// The loosest parameters any admission since `loosest_until` minus a
    /// span may have been decided with (the smallest interval and largest
    /// tolerance of the configurations in force), for re-spacing.
    loosest: Params,
    loosest_until: Instant,
    /// The interval log (the interval-log policy).
    log: Option<IntervalLog>,
    pub(crate) queue: WaitQueue,
}

impl Control {
    pub(crate) fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn banned_until(&self) -> Instant {
        self.adaptive.blocked_until().max(self.scope_ban_until)
    }

    /// The `N` of the shortest window (the one `Remaining-Req` speaks of).
    fn capacity(&self) -> u32 {
        let limits = self.config.limits.as_slice();
        let window = self.config.limits.shortest_window();
        limits
            .iter()
            .filter(|l| l.window == window)
            .map(|l| l.max_requests)
            .min()
            .unwrap_or(0)
    }

    /// The ratio in force: the adaptive one, or our share of a budget that
    /// others use too, whichever is slower.
    fn ratio(&self, now: Instant) -> Ratio {
        let adaptive = self.adaptive.ratio(now);
        // The interval log holds places back instead (`Control::reserve`).
        let reserve = self.outside.reserve(now);
        if self.log.is_some() || reserve == 0 {
            return adaptive;
        }
        // The GCRA runs on the share others leave, with one place of slack
        // so that our share does not itself drive the server to `sec=0`.
        let capacity = u64::from(self.capacity());
        let left = capacity
            .saturating_sub(u64::from(reserve))
            .saturating_sub(1)
            .max(1);
        let share =
            Ratio::from_ppm((left * u64::from(Ratio::SCALE) / capacity.max(1)) as u32).unwrap_or(Ratio::ONE);
        adaptive.min(share)
    }
}

/// The words every admission writes, on a cache line (pair) of their own so
/// that the words every decision only reads (`gate`, `params`) are not
/// invalidated by every admission.
#[derive(Debug)]
#[repr(C, align(128))]
struct Hot {
    tat: TatCell,
    /// The highest `now` an admission or the slow path has seen; an earlier
    /// one takes the slow path, where it is counted and treated as "no time
    /// passed".
    high_water: AtomicU64,
}

/// One group's limiter. Shared by reference (`&self` everywhere).
pub struct GroupLimiter {
    group: Group,
    hot: Hot,
    params: AtomicU64,
    gate: AtomicU64,

    /// Admission instants of the last [`RECENT`] admissions, by sequence number.
    recent: [AtomicU64; RECENT],
    pub(crate) counters: Counters,
    pub(crate) control: Lock<Control>,
}

/// The parameter word while `set_config` re-spaces the TAT: no fast-path
/// claim proceeds on it (a packed [`Params`] is never zero: its interval is
/// at least one microsecond).
const RESPACING: u64 = 0;

/// What a withdrawn claim leaves in its `recent` slot: no admission instant.
const WITHDRAWN: u64 = u64::MAX;

/// How many admission instants a group remembers, for `Remaining-Req` sync
/// and for re-spacing on a configuration change: at least the count of every
/// Upbit window (the largest is websocket-message's 100 per minute), so that
/// for a quota checked against its limits the ring covers a whole window.
pub const RECENT: usize = 128;

fn scaled_interval(interval: Duration, ratio: Ratio) -> Duration {
    let n = u128::from(interval.as_nanos()) * u128::from(Ratio::SCALE);
    let d = u128::from(ratio.ppm());
    Duration::from_nanos(u64::try_from(n.div_ceil(d)).unwrap_or(u64::MAX))
}

impl GroupLimiter {
    /// A limiter for `group` with `config`, or why the configuration is refused.
    pub fn new(group: Group, config: GroupConfig) -> Result<Self, ConfigError> {
        let quota = config.validate().map_err(|kind| ConfigError { group, kind })?;
        Ok(Self::with_quota(group, config, quota))
    }

    /// Builds from a configuration already validated into `quota`.
    fn with_quota(group: Group, config: GroupConfig, quota: Quota) -> Self {
        let this = Self {
            group,
            hot: Hot {
                tat: TatCell::default(),
                high_water: AtomicU64::new(0),
            },
            params: AtomicU64::new(0),
            gate: AtomicU64::new(0),
            recent: core::array::from_fn(|_| AtomicU64::new(0)),
            counters: Counters::default(),
            control: Lock::new(Control {
                config,
                quota,
                // Validated with the rest of the configuration.
                adaptive: Adaptive::from_valid(config.adaptive),
                breaker: Breaker::new(config.breaker),
                scope_ban_until: Instant::ZERO,
                penalty_seen_at: Instant::ZERO,
                outside: OutsideUse::new(config.limits.shortest_window(), config.ceiling_hold),
                loosest: Params::for_quota(&quota, quota.interval()),
                loosest_until: Instant::ZERO,
                log: Self::log_for(&config),
                queue: WaitQueue::new(),
            }),
        };
        this.control.with(|c| this.publish(c, Instant::ZERO));
        this
    }

    /// The interval log `config` runs on (validated: it builds).
    fn log_for(config: &GroupConfig) -> Option<IntervalLog> {
        match config.policy {
            Policy::IntervalLog => IntervalLog::new(config.limits.as_slice(), config.max_flight).ok(),
            Policy::Gcra => None,
        }
    }

    /// The group this limiter counts.
    pub fn group(&self) -> Group {
        self.group
    }

    /// Reads `now` against the highest instant seen so far (on the slow
    /// path): an earlier one is treated as "no time passed".
    ///
    /// It is not counted here: threads that read one monotonic clock race
    /// between reading it and getting here, so an earlier `now` is usually
    /// such a race. Whoever owns the clock tells the two apart
    /// ([`GroupLimiter::latest_seen`], [`GroupLimiter::note_clock_regression`]).
    fn observe(&self, now: Instant) -> Instant {
        let seen = self.hot.high_water.load(Ordering::Relaxed);
        if now.as_nanos() > seen {
            self.hot.high_water.fetch_max(now.as_nanos(), Ordering::Relaxed);
            now
        } else {
            Instant::from_nanos(seen)
        }
    }

    /// The latest instant this group has seen (a high-water mark of `now`).
    ///
    /// A clock owner that loads it *before* reading its clock tells a clock
    /// that went backwards from a race: every value here came from a reading
    /// taken before the load, so on a monotonic clock the new reading is
    /// never behind it; if it is, the clock went back (report it with
    /// [`GroupLimiter::note_clock_regression`]). Loaded after the reading,
    /// it may hold other threads' later readings: that is an ordinary race.
    pub fn latest_seen(&self) -> Instant {
        Instant::from_nanos(self.hot.high_water.load(Ordering::Relaxed))
    }

    /// Counts a clock regression (see [`GroupLimiter::latest_seen`]).
    pub fn note_clock_regression(&self) {
        Counters::bump(&self.counters.clock_regressions);
    }

    /// Decides at `now` without waiting: admit, or say when and why not.
    /// Never jumps ahead of queued waiters.
    #[inline]
    pub fn try_acquire(&self, now: Instant) -> Result<Admission, Denied> {
        let t = now.as_nanos();
        // The published words hold while `now < gate`; an instant earlier
        // than one already seen goes the slow way too, to be counted. (On
        // the fast path an earlier `now` could only make the GCRA stricter.)
        if t < self.gate.load(Ordering::Acquire) && t >= self.hot.high_water.load(Ordering::Relaxed) {
            if let Some(result) = self.claim(now) {
                return result;
            }
        }
        let now = self.observe(now);
        self.control.with(|c| self.acquire_locked(c, now, false))
    }

    /// One claim on the TAT with the published parameters, or `None` when
    /// the parameters changed under it (take the slow path).
    ///
    /// # Why a claim can withdraw
    ///
    /// The parameters and the TAT are two words. A claim reads the
    /// parameters, CASes the TAT, records its instant in `recent`, and then
    /// reads the parameters again behind a `SeqCst` fence; `set_config`
    /// publishes `RESPACING`, fences, counts the recent admissions and
    /// re-spaces the TAT. By the fences, either the claim's second read sees
    /// the change, or `set_config` sees the claim's record (or both). A
    /// claim that sees a change withdraws: the slot it took stays taken
    /// (stricter), and the request decides again under the lock with the new
    /// parameters. So every admission that is returned was decided entirely
    /// under one parameter word and, if that word was replaced, was counted
    /// by the re-spacing.
    #[inline]
    fn claim(&self, now: Instant) -> Option<Result<Admission, Denied>> {
        let word = self.params.load(Ordering::Acquire);
        if word == RESPACING {
            return None;
        }
        let params = Params::unpack(word);
        if let Err(earliest) = self.hot.tat.try_claim(now, params) {
            // A denial on the fast path writes nothing at all: the caller has it.
            return Some(Err(Denied::NotYet { earliest }));
        }
        // Same cache line as the TAT, which this thread owns right now.
        if now.as_nanos() > self.hot.high_water.load(Ordering::Relaxed) {
            self.hot.high_water.store(now.as_nanos(), Ordering::Relaxed);
        }
        let seq = self.counters.admitted.fetch_add(1, Ordering::Relaxed);
        let slot = &self.recent[(seq % RECENT as u64) as usize];
        slot.store(now.as_nanos(), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.params.load(Ordering::Relaxed) != word {
            slot.store(WITHDRAWN, Ordering::Relaxed);
            Counters::bump(&self.counters.withdrawn);
            return None;
        }
        Some(Ok(Admission {
            group: self.group,
            at: now,
            probe: false,
            seq,
            ticket: None,
        }))
    }

    /// A claim under the interval-log policy, with the lock held: the log
    /// must have room, and the throttle (a GCRA at the server's own rate,
    /// burst `N`, scaled by the rate ratio and pushed by 429s and headers)
    /// must conform. At ratio 1 the throttle is looser than the log, so the
    /// log decides; after a 429 or a co-tenant's share it slows the group.
    /// Nothing else claims a log group's TAT (it has no lock-free fast path).
    ///
    /// A denial names the later of the two instants: the throttle's alone
    /// would be too early while the log is full (a deadline between the two
    /// would not fail fast).
    fn claim_logged(&self, log: &mut IntervalLog, now: Instant) -> Result<Admission, Denied> {
        let denied = |d: Denial, earliest: Instant| match d {
            Denial::UntilReport(at) => Denied::InFlight {
                at_latest: at.max(earliest),
            },
            Denial::Until(at) => Denied::NotYet {
                earliest: at.max(earliest),
            },
        };
        let params = Params::unpack(self.params.load(Ordering::Acquire));
        let next = match decide(self.hot.tat.load(), now, params) {
            Ok(next) => next,
            Err(earliest) => {
                return Err(match log.check(now) {
                    Ok(()) => Denied::NotYet { earliest },
                    Err(d) => denied(d, earliest),
                })
            }
        };
        let ticket = log.try_admit(now).map_err(|d| denied(d, now))?;
        self.hot.tat.push_to(next);
        let at = ticket.admitted_at();
        self.hot.high_water.fetch_max(at.as_nanos(), Ordering::Relaxed);
        let seq = self.counters.admitted.fetch_add(1, Ordering::Relaxed);
        self.recent[(seq % RECENT as u64) as usize].store(at.as_nanos(), Ordering::Relaxed);
        Ok(Admission {
            group: self.group,
            at,
            probe: false,
            seq,
            ticket: Some(ticket),
        })
    }

    /// The slow path, with the lock held. While waiters are queued only the
    /// queue's head (`is_head`) may claim.
    pub(crate) fn acquire_locked(
        &self,
        c: &mut Control,
        now: Instant,
        is_head: bool,
    ) -> Result<Admission, Denied> {
        self.publish(c, now);
        let banned = c.banned_until();
        if now < banned {
            Counters::bump(&self.counters.ban_rejections);
            return Err(Denied::Banned { until: banned });
        }
        let half_open = c.breaker.state(now) == BreakerState::HalfOpen;
        if let Err(open) = c.breaker.try_acquire(now) {
            Counters::bump(&self.counters.circuit_rejections);
            return Err(Denied::CircuitOpen {
                retry_at: open.retry_at,
            });
        }
        let mut result = if !(is_head || c.queue.is_empty()) {
            // Behind queued waiters: the earliest is no sooner than the GCRA's.
            let params = Params::unpack(self.params.load(Ordering::Acquire));
            let earliest = self.hot.tat.load().saturating_sub(params.tolerance()).max(now);
            Err(Denied::NotYet { earliest })
        } else if let Some(log) = c.log.as_mut() {
            log.set_reserve(c.outside.reserve(now));
            self.claim_logged(log, now)
        } else {
            // Under the lock the word is never `RESPACING` and cannot change
            // (both need the lock), so the claim always decides.
            self.claim(now).unwrap_or(Err(Denied::NotYet { earliest: now }))
        };
        if result.is_err() {
            Counters::bump(&self.counters.denied);
        }
        match &mut result {
            Ok(admission) => {
                admission.probe = half_open;
                // After a ban of unknown length the first admission probes it.
                if c.adaptive.on_admitted(admission.seq, now) {
                    self.publish(c, now);
                }
            }
            Err(_) if half_open => c.breaker.on_ignored(now),
            Err(_) => {}
        }
        result
    }

    /// Brings the lazily changing state up to `now` and republishes the
    /// fast path's words.
    pub(crate) fn publish(&self, c: &mut Control, now: Instant) {
        self.params
            .store(Self::params_for(c, now).pack(), Ordering::Release);
        let state = c.breaker.state(now);
        let mut gate = Instant::MAX;
        if let Some(at) = c.adaptive.next_change(now) {
            gate = gate.min(at);
        }
        if let Some(at) = c.breaker.next_change(now) {
            gate = gate.min(at);
        }
        if let Some(at) = c.outside.next_change(now) {
            gate = gate.min(at);
        }
        // No fast path while banned or open (fail fast with the reason), in
        // half-open (every decision must count its probe), or while waiters
        // are queued (nobody jumps the queue).
        let blocked = now < c.banned_until()
            || c.adaptive.probe_due(now)
            || matches!(
                state,
                BreakerState::Open | BreakerState::ForcedOpen | BreakerState::HalfOpen
            );
        // The interval log decides under the lock: no fast path.
        if blocked || !c.queue.is_empty() || c.log.is_some() {
            gate = Instant::ZERO;
        }
        self.gate.store(gate.as_nanos(), Ordering::Release);
    }

    /// The parameters `c` runs on at `now`: its quota, scaled by the ratio.
    fn params_for(c: &Control, now: Instant) -> Params {
        Self::params_at(c, c.ratio(now))
    }

    /// The quota decisions run on before the ratio: the GCRA's, or for the
    /// interval log its throttle's (the server's own rate, burst `N`).
    fn quota_in_force(c: &Control) -> Quota {
        if c.log.is_none() {
            return c.quota;
        }
        let p = Self::params_at(c, Ratio::ONE);
        let interval = p.interval();
        let burst = p.tolerance().as_nanos() / interval.as_nanos().max(1) + 1;
        Quota::new_unchecked(interval, u32::try_from(burst).unwrap_or(u32::MAX))
    }

    /// The parameters `c` runs on at rate ratio `ratio`.
    fn params_at(c: &Control, ratio: Ratio) -> Params {
        if let (Some(_), Some(quota)) = (&c.log, c.config.quota) {
            // An explicit quota paces the log's admissions.
            return Params::for_quota(&quota, scaled_interval(quota.interval(), ratio));
        }
        if c.log.is_some() {
            // The log's throttle: the server's own rate, burst `N`.
            let limits = c.config.limits.as_slice();
            let interval = limits
                .iter()
                .map(|l| Duration::from_nanos(l.window.as_nanos().div_ceil(u64::from(l.max_requests.max(1)))))
                .max()
                .unwrap_or(Duration::MAX);
            let burst = limits
                .iter()
                .map(|l| u64::from(l.max_requests))
                .min()
                .unwrap_or(1);
            let base = Params::new(interval, Duration::ZERO).interval();
            let tolerance = base.saturating_mul(burst.saturating_sub(1));
            return Params::new(scaled_interval(interval, ratio), tolerance);
        }
        Params::for_quota(&c.quota, scaled_interval(c.quota.interval(), ratio))
    }

    /// The emission interval in force (the quota's, scaled by the rate ratio).
    pub(crate) fn interval_now(&self) -> Duration {
        Params::unpack(self.params.load(Ordering::Acquire)).interval()
    }

    /// The earliest instant at which the group could admit one more request
    /// after `ahead` others (those queued in front of a waiter), ignoring
    /// bans and the breaker: the `ahead + 1`-th conforming instant of the
    /// GCRA from its current TAT.
    pub(crate) fn earliest_after(&self, now: Instant, ahead: u64) -> Instant {
        let params = Params::unpack(self.params.load(Ordering::Acquire));
        self.hot
            .tat
            .load()
            .max(now)
            .saturating_add(params.interval().saturating_mul(ahead))
            .saturating_sub(params.tolerance())
            .max(now)
    }

    /// Reads `now` against the highest instant seen (see `observe`).
    pub(crate) fn observe_now(&self, now: Instant) -> Instant {
        self.observe(now)
    }

    /// The earliest instant a request could be admitted, ignoring bans and the
    /// breaker (see [`Denied`] for those).
    pub fn earliest(&self, now: Instant) -> Instant {
        let params = Params::unpack(self.params.load(Ordering::Acquire));
        self.hot.tat.load().saturating_sub(params.tolerance()).max(now)
    }

    /// Reports the response to an admitted request. Errors and headers only
    /// ever make the limiter stricter.
    pub fn on_response(&self, admission: &Admission, response: Response<'_>, now: Instant) -> Feedback {
        let now = self.observe(now);
        let mut fb = Feedback::default();
        Counters::bump(&self.counters.responses);
        let wake = self
            .control
            .with(|c| self.on_response_locked(c, admission, response, now, &mut fb));
        if let Some(w) = wake {
            w.wake();
        }
        if fb.header_tightened {
            Counters::bump(&self.counters.header_tightenings);
        }
        if fb.header_rejected {
            Counters::bump(&self.counters.header_rejects);
        }
        fb
    }

    /// The locked part of [`GroupLimiter::on_response`]; returns a waker to
    /// wake once the lock is released.
    fn on_response_locked(
        &self,
        c: &mut Control,
        admission: &Admission,
        response: Response<'_>,
        now: Instant,
        fb: &mut Feedback,
    ) -> Option<core::task::Waker> {
        let before = c.ratio(now);
        let window = c.config.limits.shortest_window().saturating_add(c.config.margin);
        let tolerance = Self::params_for(c, now).tolerance();
        // The request's interval ends: it reached the server by now (or, with
        // no response, by its maximum flight time).
        let mut ended = false;
        if let (Some(log), Some(ticket)) = (c.log.as_mut(), admission.ticket) {
            ended = match response.status {
                None => log.no_response(ticket, now),
                Some(_) => log.report(ticket, now),
            };
        } else if response.status.is_some() && now - admission.at > c.config.margin {
            // The GCRA's assumption: one-way delays vary by at most the
            // margin. A round trip longer than the margin allows delays that
            // vary by more.
            Counters::bump(&self.counters.round_trips_over_margin);
            fb.round_trip_over_margin = true;
        }
        match response.status {
            Some(429) => {
                Counters::bump(&self.counters.status_429);
                c.adaptive.on_429(now);
                if c.log.is_some() {
                    self.learn_ceiling(c, admission, now);
                }
                // Nothing more until a whole server window (plus margin) has passed.
                self.hot
                    .tat
                    .push_to(now.saturating_add(window).saturating_add(tolerance));
                fb.transition = Self::penalty_for_breaker(c, admission, now);
            }
            Some(418) => {
                Counters::bump(&self.counters.status_418);
                let ban = stated_ban(
                    response.body,
                    response.retry_after,
                    response.date,
                    response.wall_clock,
                );
                // A 418 of unknown length while another group of the scope
                // holds us is an echo of that group's ban (it was sent before
                // the ban was known): that group alone probes it.
                if ban.is_some() || now >= c.scope_ban_until {
                    let until = c.adaptive.on_418(now, ban);
                    self.hot.tat.push_to(until.saturating_add(tolerance));
                    fb.banned_until = Some(until);
                    fb.scope_ban_until = Some(c.adaptive.scope_hold().max(until));
                }
                fb.transition = Self::penalty_for_breaker(c, admission, now);
            }
            None | Some(500..=599) => {
                Counters::bump(&self.counters.failures);
                fb.transition = c.breaker.on_failure(now);
            }
            Some(_) => {
                c.adaptive.on_success(now);
                fb.transition = c.breaker.on_success(now);
            }
        }
        let answer = match response.status {
            None | Some(500..=599) => None,
            Some(status) => Some(status != 418),
        };
        let hold = c.adaptive.scope_hold();
        if c.adaptive.on_answer(admission.seq, answer) {
            fb.ban_lifted = Some(hold);
        }
        if let Some(value) = response.remaining_req {
            self.apply_remaining_req(c, admission, value, now, fb);
        }
        let after = c.ratio(now);
        if after != before {
            fb.ratio_change = Some((before, after));
        }
        self.publish(c, now);
        // A penalty, a ban or a breaker transition moves every waiter's turn:
        // wake the head now (the wake travels down the queue), so that a
        // waiter whose deadline can no longer be met fails at once and a
        // ban or an open breaker fails them fast. (A response changes the
        // ratio only by a 429, a 418 or a tightening header. A lifted ban
        // wakes nobody: a ban fails every waiter it meets, so none waits
        // through one.)
        let moved =
            matches!(response.status, Some(429 | 418)) || fb.header_tightened || fb.transition.is_some();
        if moved {
            c.queue.bump_generation()
        } else if ended {
            // Room in the log for the head, if it waits on a report.
            c.queue.head_waker()
        } else {
            None
        }
    }

    /// A 429 or 418 as the breaker sees it: a failure, unless it is an echo
    /// of one reported before (its request was admitted before that one was
    /// known), which says nothing new: a burst of requests in flight when a
    /// ban starts must not open the breaker on top of the ban.
    fn penalty_for_breaker(c: &mut Control, admission: &Admission, now: Instant) -> Option<Transition> {
        let echo = admission.at < c.penalty_seen_at;
        c.penalty_seen_at = c.penalty_seen_at.max(now);
        if echo {
            c.breaker.on_ignored(now);
            None
        } else {
            c.breaker.on_failure(now)
        }
    }

    /// `Remaining-Req` sync. The server says `sec` requests remain in its
    /// window after this one, so it counted `N - sec` there. Our own part of
    /// that is, on an interval-log group, read from our requests' intervals
    /// ([`IntervalLog::counted_with`]): usage counts as someone else's only
    /// if even the most of ours the server can have counted leaves some
    /// unexplained, and then as much as the likely count of ours (each
    /// arrival half-way through its round trip) leaves. A count below the
    /// requests of ours that surely arrived in the window before says the
    /// server does not count a sliding window. On a GCRA
    /// group, our admissions sent within one window plus the jitter margin
    /// around this one (from the ring of recent admissions; with jitter, any
    /// of them may have arrived inside the server's window).
    /// Usage we cannot explain comes from another process on the same IP or
    /// pocket, or from a lower limit: its places are held back for others
    /// ([`crate::outside`], which also reads the header against a ceiling a
    /// 429 taught, and holds that ceiling afresh on a full window). Our
    /// own traffic is already bounded by the quota, so a client alone at full
    /// rate, which routinely sees `sec=0` on a sliding window, is never slowed
    /// by its own echo. A `sec=0` that others share in pauses the group for a
    /// whole window plus margin. Only ever tightens.
    fn apply_remaining_req(
        &self,
        c: &mut Control,
        admission: &Admission,
        value: &str,
        now: Instant,
        fb: &mut Feedback,
    ) {
        let header = match RemainingReq::parse(value) {
            Ok(h) => h,
            Err(_) => {
                fb.header_rejected = true;
                return;
            }
        };
        if header.group().is_none() {
            // An unknown name is still applied to the group the request was counted in.
            fb.header_rejected = true;
        }
        let window = c.config.limits.shortest_window();
        let capacity = u64::from(c.capacity());
        let used = capacity.saturating_sub(u64::from(header.sec));
        let margin = c.config.margin;
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let counted = match (c.log.as_ref(), admission.ticket) {
            (Some(log), Some(ticket)) => log.counted_with(ticket, window),
            _ => None,
        };
        let (ours_at_most, ours_likely, ours_surely) = match counted {
            Some(ours) => (ours.at_most, ours.likely, Some(ours.surely)),
            None => {
                // Our admissions sent within one window plus the margin
                // around this one: with jitter, any may have arrived there.
                let ours = clamp(self.admitted_between(
                    admission.at.saturating_sub(window).saturating_sub(margin),
                    admission.at.saturating_add(margin),
                ));
                (ours, ours, None)
            }
        };
        let sighting = Sighting {
            used: clamp(used),
            ours_at_most,
            ours_likely,
            full: header.sec == 0,
            ours_surely,
            at_our_places: u64::from(ours_at_most) + u64::from(c.outside.reserve(now)) >= capacity,
        };
        let external = sighting.others();
        // (A rising reserve is also the only way a header lowers the ratio.)
        let before = c.outside.reserve(now);
        if c.outside.observe(now, sighting) && c.log.is_some() {
            // Alone on the budget for a while: the log alone keeps us within it.
            c.adaptive.end_reduction(now);
        }
        if c.outside.reserve(now) > before {
            fb.header_tightened = true;
        }
        if let Some(log) = c.log.as_mut() {
            log.set_reserve(c.outside.reserve(now));
        }
        if external == 0 {
            return;
        }
        if header.sec == 0 && c.log.is_none() {
            // The server's window is full and not only with our requests:
            // nothing more until a whole window (plus margin) has passed.
            // (The interval log holds the others' places back instead.)
            let params = Params::unpack(self.params.load(Ordering::Acquire));
            let until = now.saturating_add(window).saturating_add(margin);
            let before = self.hot.tat.load();
            if self.hot.tat.push_to(tat_allowing(now, until, 0, params)) > before {
                fb.header_tightened = true;
            }
        }
    }

    /// A 429 to a logged group's request: the server had no place left where
    /// we counted on one. The requests we admitted in the window before this
    /// one (`k`) are at least what the server holds for us; of them we keep
    /// `k` times the adaptive reduction, and hold the rest of the group's
    /// places back as a learned ceiling (see [`crate::outside`]).
    fn learn_ceiling(&self, c: &mut Control, admission: &Admission, now: Instant) {
        let window = c.config.limits.shortest_window();
        let before = self.admitted_before(admission, admission.at.saturating_sub(window));
        let reduction = u64::from(c.config.adaptive.reduction.ppm());
        let kept = before.saturating_mul(reduction) / u64::from(Ratio::SCALE);
        let missing = u64::from(c.capacity()).saturating_sub(kept);
        c.outside.on_429(now, u32::try_from(missing).unwrap_or(u32::MAX));
        if let Some(log) = c.log.as_mut() {
            log.set_reserve(c.outside.reserve(now));
        }
    }

    /// How many admissions before `admission` (by sequence number) happened
    /// at or after `from`, as far as the ring of recent admissions remembers.
    fn admitted_before(&self, admission: &Admission, from: Instant) -> u64 {
        let oldest_kept = admission.seq.saturating_sub(RECENT as u64);
        (oldest_kept..admission.seq)
            .filter(|&seq| {
                let at = self.recent[(seq % RECENT as u64) as usize].load(Ordering::Relaxed);
                at != WITHDRAWN && at >= from.as_nanos() && at <= admission.at.as_nanos()
            })
            .count() as u64
    }

    /// How many of our admissions happened in `[from, to]`, as far as the ring
    /// of recent admissions remembers (it undercounts beyond [`RECENT`],
    /// which only makes the caller stricter).
    fn admitted_between(&self, from: Instant, to: Instant) -> u64 {
        let admitted = self.counters.admitted.load(Ordering::Relaxed);
        let oldest_kept = admitted.saturating_sub(RECENT as u64);
        (oldest_kept..admitted)
            .filter(|&seq| {
                let at = self.recent[(seq % RECENT as u64) as usize].load(Ordering::Relaxed);
                (from.as_nanos()..=to.as_nanos()).contains(&at)
            })
            .count() as u64
    }

    /// A permit was dropped without a reported response.
    ///
    /// Its request is taken to have ended at the drop: the interval log
    /// counts it until `now + W` (as a report at `now` would), so holding the
    /// permit until the response (what a guard does) keeps the guarantee, and
    /// a forgotten report costs neither a 429 nor throughput. What is lost is
    /// the status and headers (no 429 / 418 / `Remaining-Req` feedback): the
    /// `unreported` counter says how often. A half-open probe's slot is freed
    /// without counting an outcome.
    pub fn on_dropped(&self, admission: &Admission, now: Instant) {
        let now = self.observe(now);
        Counters::bump(&self.counters.unreported);
        let wake = self.control.with(|c| {
            if admission.probe {
                c.breaker.on_ignored(now);
            }
            let ended = match (c.log.as_mut(), admission.ticket) {
                (Some(log), Some(ticket)) => log.report(ticket, now),
                _ => false,
            };
            self.publish(c, now);
            if ended {
                c.queue.head_waker()
            } else {
                None
            }
        });
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Bans this group until `until` because another group of the same scope
    /// received a 418. Never shortens a ban.
    pub fn ban_scope_until(&self, until: Instant, now: Instant) {
        let now = self.observe(now);
        let wake = self.control.with(|c| {
            c.scope_ban_until = c.scope_ban_until.max(until);
            self.publish(c, now);
            c.queue.bump_generation()
        });
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Ends a hold that another group of the scope set for a ban of unknown
    /// length (until `hold`), because that group's probe passed. A longer
    /// scope ban (set by another 418 since) is kept.
    pub fn lift_scope_ban(&self, hold: Instant, now: Instant) {
        let now = self.observe(now);
        let wake = self.control.with(|c| {
            // (Scope bans only rise, so a shorter one is this hold lifted before.)
            if c.scope_ban_until == hold {
                c.scope_ban_until = hold.min(now);
            }
            self.publish(c, now);
            c.queue.bump_generation()
        });
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Replaces the configuration at run time, keeping the TAT, the ratio and
    /// the breaker's state, without a burst across the switch.
    ///
    /// The admissions of the last window (the longest window plus margin,
    /// old or new) are replayed through the new quota from the `recent`
    /// ring: the TAT becomes at least what the new quota would have after
    /// admitting exactly those requests at their instants. The new quota's
    /// bound (`b + ceil(W/T) - 1` per window) then covers every window that
    /// holds admissions from after the switch, and windows before it were
    /// covered by the old quota. An idle group is not pushed back; a group
    /// whose window holds more admissions than the ring remembers is
    /// re-spaced as if every slot of that window had been used (stricter).
    ///
    /// Lock-free claims racing the switch either are counted by the replay
    /// or withdraw (see `claim`): the parameter word is `RESPACING` while
    /// the replay runs.
    pub fn set_config(&self, config: GroupConfig, now: Instant) -> Result<(), ConfigError> {
        let group = self.group;
        let quota = config.validate().map_err(|kind| ConfigError { group, kind })?;
        let now = self.observe(now);
        let wake = self.control.with(|c| {
            let old_span = c.config.limits.longest_window().saturating_add(c.config.margin);
            let span = old_span.max(config.limits.longest_window().saturating_add(config.margin));
            self.params.store(RESPACING, Ordering::Release);
            fence(Ordering::SeqCst);
            // The old parameters at full rate (the fastest they ran at), and
            // anything looser that ran within the span.
            let old = Self::params_at(c, Ratio::ONE);
            // A new interval log knows nothing of the requests admitted
            // before it: until none of them could still count, the group
            // holds (a rare operator's change; the hold is at most the
            // longest window plus the maximum flight time).
            let log_changed = (c.config.policy, c.config.limits, c.config.max_flight)
                != (config.policy, config.limits, config.max_flight);
            let hold = (log_changed
                && config.policy == Policy::IntervalLog
                && self.counters.admitted.load(Ordering::Relaxed) > 0)
                .then(|| {
                    let flight = c.config.max_flight.max(config.max_flight);
                    let window = c
                        .config
                        .limits
                        .longest_window()
                        .max(config.limits.longest_window());
                    Instant::from_nanos(self.hot.high_water.load(Ordering::Relaxed))
                        .saturating_add(flight)
                        .saturating_add(window)
                        .saturating_add(Duration::from_nanos(1))
                });
            if log_changed {
                c.log = Self::log_for(&config);
            }
            let loosest = if now < c.loosest_until {
                c.loosest.loosest(old)
            } else {
                old
            };
            c.loosest = loosest;
            c.loosest_until = now.saturating_add(span);
            c.quota = quota;
            c.config = config;
            // Validated with the rest of the configuration.
            let _ = c.adaptive.set_config(config.adaptive, now);
            c.breaker.set_config(config.breaker, now);
            c.outside
                .set_config(config.limits.shortest_window(), config.ceiling_hold);
            let new = Self::params_for(c, now);
            let replayed = self.replay_recent(now.saturating_sub(span), loosest, new);
            let held = hold.map_or(Instant::ZERO, |until| until.saturating_add(new.tolerance()));
            self.hot.tat.advance_with(|tat| tat.max(replayed).max(held));
            self.publish(c, now);
            c.queue.bump_generation()
        });
        if let Some(w) = wake {
            w.wake();
        }
        Ok(())
    }

    /// The TAT a GCRA with `new` would have after admitting our admissions
    /// since `from`, in order (an upper bound when the ring does not reach
    /// back to `from`).
    ///
    /// When it does not, the admissions between `from` and the oldest one
    /// remembered are unknown, but each conformed to `old` (the loosest
    /// parameters in force in the span). Of all such sequences ending at the
    /// oldest remembered instant `o`, the one that leaves the new GCRA the
    /// latest TAT has every admission as late as `old` allows; with `m` of
    /// them at most and burst `b`, its TAT is at most
    /// `o + max(b·T_new, b·T_old + m·(T_new − T_old))`. The remembered ones
    /// are replayed from there.
    fn replay_recent(&self, from: Instant, old: Params, new: Params) -> Instant {
        let admitted = self.counters.admitted.load(Ordering::Relaxed);
        let kept = admitted.min(RECENT as u64);
        let first = admitted - kept;
        let instant_of = |seq: u64| self.recent[(seq % RECENT as u64) as usize].load(Ordering::Relaxed);
        let mut tat = Instant::ZERO;
        // The oldest remembered admission is in the span: earlier ones may be too.
        if kept == RECENT as u64 {
            let oldest = (first..admitted)
                .map(instant_of)
                .filter(|&at| at != WITHDRAWN)
                .min()
                .map_or(from, Instant::from_nanos);
            if oldest >= from {
                let t_old = old.interval().as_nanos().max(1);
                let burst = old.tolerance().as_nanos() / t_old + 1;
                let most = ((oldest - from).as_nanos() / t_old).saturating_add(burst);
                let grown = new.interval().saturating_sub(old.interval());
                let packed = old
                    .interval()
                    .saturating_mul(burst)
                    .saturating_add(grown.saturating_mul(most));
                tat = oldest.saturating_add(new.interval().saturating_mul(burst).max(packed));
            }
        }
        for seq in first..admitted {
            let at = instant_of(seq);
            if at < from.as_nanos() || at == WITHDRAWN {
                continue;
            }
            tat = tat.max(Instant::from_nanos(at)).saturating_add(new.interval());
        }
        tat
    }

    /// The current configuration.
    pub fn config(&self) -> GroupConfig {
        self.control.with(|c| c.config)
    }

    /// Forces the breaker open (an operator's switch) or back to closed.
    pub fn force_open(&self, open: bool, now: Instant) -> Option<Transition> {
        let now = self.observe(now);
        let (t, wake) = self.control.with(|c| {
            let t = if open {
                c.breaker.force_open(now)
            } else {
                c.breaker.reset(now)
            };
            self.publish(c, now);
            (t, c.queue.bump_generation())
        });
        if let Some(w) = wake {
            w.wake();
        }
        t
    }

    /// A snapshot of everything about this group at `now`.
    pub fn status(&self, now: Instant) -> GroupStatus {
        self.control.with(|c| self.status_locked(c, now))
    }

    fn status_locked(&self, c: &Control, now: Instant) -> GroupStatus {
        let tat = self.hot.tat.load();
        GroupStatus {
            group: self.group,
            quota: Self::quota_in_force(c),
            limits: c.config.limits,
            margin: c.config.margin,
            unsafe_override: c.config.allow_unsafe && c.config.quota.is_some(),
            ratio: c.ratio(now),
            interval: Self::params_for(c, now).interval(),
            policy: c.config.policy,
            in_flight: c.log.as_ref().map_or(0, IntervalLog::in_flight),
            reserve: c.outside.reserve(now),
            ceiling: c.outside.ceiling(now),
            tat,
            backlog: tat - now,
            queue_depth: c.queue.len(),
            breaker: c.breaker.state(now),
            banned_until: Some(c.banned_until()).filter(|&u| u > now),
            consecutive_429: c.adaptive.consecutive_429(),
            counters: self.counters.snapshot(),
            waits: self.counters.histogram(),
        }
    }
}

/// A summary: the group, its quota and the state that matters (at the latest
/// instant the group has seen).
impl fmt::Debug for GroupLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = Instant::from_nanos(self.hot.high_water.load(Ordering::Relaxed));
        let s = self.status(now);
        f.debug_struct("GroupLimiter")
            .field("group", &s.group.as_str())
            .field("interval", &s.quota.interval())
            .field("burst", &s.quota.burst())
            .field("ratio", &s.ratio)
            .field("backlog", &s.backlog)
            .field("queued", &s.queue_depth)
            .field("breaker", &s.breaker)
            .field("banned_until", &s.banned_until)
            .field("admitted", &s.counters.admitted)
            .field("status_429", &s.counters.status_429)
            .finish()
    }
}

/// One line per group (see [`GroupLimiter`]'s `Debug`).
impl fmt::Debug for SyncLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.groups.iter()).finish()
    }
}

/// One group's state at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GroupStatus {
    /// The group.
    pub group: Group,
    /// The quota in force (before the ratio): the GCRA's, or for the
    /// interval log its throttle's (the server's own rate, burst `N`).
    pub quota: Quota,
    /// The server's windows.
    pub limits: Limits,
    /// The jitter margin.
    pub margin: Duration,
    /// Whether an unsafe explicit quota was accepted by override.
    pub unsafe_override: bool,
    /// The adaptive rate ratio.
    pub ratio: Ratio,
    /// The emission interval in force: the quota's (for the interval log,
    /// its throttle's), scaled by the ratio, as the decisions use it
    /// (rounded up to the microsecond).
    pub interval: Duration,
    /// How admissions are decided.
    pub policy: Policy,
    /// Requests admitted by the interval log and not yet reported.
    pub in_flight: usize,
    /// Places of the shortest window held back for others: what the
    /// `Remaining-Req` headers show others using, or a server limit learned
    /// from a 429 (see [`crate::outside`]).
    pub reserve: u32,
    /// The ceiling a 429 taught, while one is held (part of `reserve`).
    pub ceiling: Option<Ceiling>,
    /// The theoretical arrival time.
    pub tat: Instant,
    /// How far the TAT is ahead of now: the work already scheduled.
    pub backlog: Duration,
    /// Waiters queued.
    pub queue_depth: usize,
    /// The breaker's state.
    pub breaker: BreakerState,
    /// The end of a ban in force.
    pub banned_until: Option<Instant>,
    /// 429s in a row.
    pub consecutive_429: u32,
    /// The counters.
    pub counters: CounterSnapshot,
    /// The wait histogram.
    pub waits: WaitHistogram,
}

/// The limiter for every Upbit group, without waiting: every call takes
/// `now` and answers at once. [`RateLimiter`](crate::RateLimiter) wraps it
/// with a runtime's clock and timer to wait in FIFO order.
pub struct SyncLimiter {
    groups: Groups,
    ip_ban_pauses_pocket_groups: bool,
}

/// The groups of a [`SyncLimiter`], a few kilobytes each. With `alloc` they
/// live on the heap, so that a limiter is a small value to return and move
/// (a debug build copies a moved value once per frame it passes through);
/// without it, inline, for a `static`.
#[cfg(feature = "alloc")]
type Groups = alloc::boxed::Box<[GroupLimiter]>;
#[cfg(not(feature = "alloc"))]
type Groups = [GroupLimiter; Group::COUNT];

impl SyncLimiter {
    /// A limiter for every group, or the first group whose configuration is refused.
    pub fn new(config: &LimiterConfig) -> Result<Self, ConfigError> {
        let mut quotas = [Quota::new_unchecked(Duration::MAX, 1); Group::COUNT];
        for group in Group::ALL {
            quotas[group.index()] = config
                .group(group)
                .validate()
                .map_err(|kind| ConfigError { group, kind })?;
        }
        let build = |i: usize| {
            let group = Group::ALL[i];
            GroupLimiter::with_quota(group, *config.group(group), quotas[i])
        };
        #[cfg(feature = "alloc")]
        let groups = (0..Group::COUNT).map(build).collect();
        #[cfg(not(feature = "alloc"))]
        let groups = core::array::from_fn(build);
        Ok(Self {
            groups,
            ip_ban_pauses_pocket_groups: config.ip_ban_pauses_pocket_groups,
        })
    }

    /// The limiter of one group.
    pub fn group(&self, group: Group) -> &GroupLimiter {
        &self.groups[group.index()]
    }

    /// Classifies `(method, path)` and decides at `now` without waiting.
    pub fn try_acquire(&self, method: &str, path: &str, now: Instant) -> Result<Admission, Denied> {
        self.group(classify(method, path)).try_acquire(now)
    }

    /// Reports a response. A 418 bans every group of the same scope (and,
    /// with [`LimiterConfig::ip_ban_pauses_pocket_groups`], an IP ban also
    /// the pocket groups); for a ban of unknown length they wait until the
    /// banned group's probe passes.
    pub fn on_response(&self, admission: &Admission, response: Response<'_>, now: Instant) -> Feedback {
        let fb = self.group(admission.group).on_response(admission, response, now);
        let scope = admission.group.scope();
        let shares_ban = |g: Group| {
            g != admission.group
                && (g.scope() == scope
                    || (self.ip_ban_pauses_pocket_groups && scope == Scope::Ip && g.scope() == Scope::Pocket))
        };
        if let Some(until) = fb.scope_ban_until.or(fb.banned_until) {
            for g in Group::ALL.into_iter().filter(|&g| shares_ban(g)) {
                self.group(g).ban_scope_until(until, now);
            }
        }
        if let Some(hold) = fb.ban_lifted {
            for g in Group::ALL.into_iter().filter(|&g| shares_ban(g)) {
                self.group(g).lift_scope_ban(hold, now);
            }
        }
        fb
    }

    /// Whether a 418 on an IP-scoped group also pauses the pocket groups
    /// ([`LimiterConfig::ip_ban_pauses_pocket_groups`]).
    pub fn ip_ban_pauses_pocket_groups(&self) -> bool {
        self.ip_ban_pauses_pocket_groups
    }

    /// Every group's status at `now`, in [`Group::ALL`] order.
    pub fn status(&self, now: Instant) -> [GroupStatus; Group::COUNT] {
        core::array::from_fn(|i| self.groups[i].status(now))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::breaker::BreakerState;

    const MS: u64 = 1_000_000;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * MS)
    }

    /// The ticker preset as it ships (the interval log).
    fn ticker() -> GroupLimiter {
        GroupLimiter::new(Group::Ticker, GroupConfig::preset(Preset::Korea, Group::Ticker)).unwrap()
    }

    /// `group`'s preset on the GCRA policy, for what is about the GCRA's
    /// spacing and its re-spacing on a switch.
    fn gcra_config(group: Group) -> GroupConfig {
        GroupConfig {
            policy: Policy::Gcra,
            ..GroupConfig::preset(Preset::Korea, group)
        }
    }

    /// The ticker preset on the GCRA policy.
    fn ticker_gcra() -> GroupLimiter {
        GroupLimiter::new(Group::Ticker, gcra_config(Group::Ticker)).unwrap()
    }

    /// The ticker preset's interval under the GCRA: `(1 s + 100 ms + 1 ns) / 10`,
    /// rounded up to the microsecond.
    const T: Duration = Duration::from_micros(110_001);

    /// The most of the sorted `admitted` instants in any window of length
    /// `window` (half-open), and where such a window ends: two pointers.
    fn most_in_a_window(admitted: &[Instant], window: Duration) -> (usize, Option<Instant>) {
        let (mut first, mut most) = (0, (0, None));
        for (last, &t) in admitted.iter().enumerate() {
            while admitted[first] + window <= t {
                first += 1;
            }
            if last - first + 1 > most.0 {
                most = (last - first + 1, Some(t));
            }
        }
        most
    }

    #[test]
    fn a_round_trip_longer_than_the_margin_is_flagged_and_one_of_exactly_the_margin_is_not() {
        let g = ticker_gcra();
        let margin = g.config().margin;
        let a = g.try_acquire(at(1_000)).unwrap();
        let fb = g.on_response(&a, Response::status(200), at(1_000) + margin);
        assert!(!fb.round_trip_over_margin);
        let b = g.try_acquire(at(3_000)).unwrap();
        let fb = g.on_response(
            &b,
            Response::status(200),
            at(3_000) + margin + Duration::from_nanos(1),
        );
        assert!(fb.round_trip_over_margin);
        assert_eq!(g.status(at(4_000)).counters.round_trips_over_margin, 1);
    }

    #[test]
    fn a_header_that_changes_nothing_is_no_tightening() {
        let g = ticker_gcra();
        let full = "group=market; min=1800; sec=0";
        let a = g.try_acquire(at(1_000)).unwrap();
        let b = g.try_acquire(at(1_000) + T).unwrap();
        let t = at(1_000) + T + Duration::from_millis(10);
        // Nine places used by others: the share and the TAT both tighten.
        let fb = g.on_response(&a, Response::status(200).with_remaining_req(full), t);
        assert!(fb.header_tightened && fb.ratio_change.is_some());
        // The same full window at the same instant, fewer others than already
        // held back: nothing moves, nothing is flagged.
        let fb = g.on_response(&b, Response::status(200).with_remaining_req(full), t);
        assert!(!fb.header_tightened && fb.ratio_change.is_none(), "{fb:?}");
        assert_eq!(g.status(t).counters.header_tightenings, 1);
    }

    #[test]
    fn lifting_a_scope_hold_keeps_a_longer_ban() {
        let g = ticker_gcra();
        let banned = |t: u64| matches!(g.try_acquire(at(t)), Err(Denied::Banned { .. }));
        // The hold of a ban of unknown length, lifted when its probe passes.
        g.ban_scope_until(at(50_000), at(1_000));
        assert!(banned(2_000));
        g.lift_scope_ban(at(50_000), at(3_000));
        assert!(!banned(3_000));
        // A longer ban recorded since the hold is kept.
        g.ban_scope_until(at(90_000), at(4_000));
        g.lift_scope_ban(at(50_000), at(5_000));
        assert!(banned(6_000) && banned(89_999) && !banned(90_000));
    }

    #[test]
    fn preset_ticker_admits_one_per_110_001_us() {
        let g = ticker_gcra();
        let a = g.try_acquire(at(1_000)).unwrap();
        assert_eq!((a.group, a.seq), (Group::Ticker, 0));
        assert_eq!(
            g.try_acquire(at(1_000)),
            Err(Denied::NotYet {
                earliest: at(1_000) + T
            })
        );
        assert!(g.try_acquire(at(1_000) + T - Duration::from_nanos(1)).is_err());
        assert!(g.try_acquire(at(1_000) + T).is_ok());
        // The fast path's denial wrote nothing, not even a statistic.
        let s = g.status(at(1_000) + T).counters;
        assert_eq!((s.admitted, s.denied), (2, 0));
    }

    #[test]
    fn ten_rps_with_burst_ten_is_refused_with_a_reason() {
        let mut cfg = GroupConfig::preset(Preset::Korea, Group::Ticker);
        cfg.quota = Some(Quota::per_second(10.0, 10).unwrap());
        let err = GroupLimiter::new(Group::Ticker, cfg).unwrap_err();
        assert!(matches!(
            err.kind,
            ConfigErrorKind::Quota(QuotaError::Unsafe { admits: 21, .. })
        ));
        assert!(std::format!("{err}").starts_with("group ticker: quota: quota admits up to 21"));
        // Only the explicitly named override accepts it, and the status says so.
        cfg.allow_unsafe = true;
        let g = GroupLimiter::new(Group::Ticker, cfg).unwrap();
        assert!(g.status(at(0)).unsafe_override);
    }

    #[test]
    fn a_429_slows_the_group_and_pauses_it_for_a_window() {
        let g = ticker_gcra();
        let a = g.try_acquire(at(1_000)).unwrap();
        let fb = g.on_response(&a, Response::status(429), at(1_050));
        let (before, after) = fb.ratio_change.unwrap();
        assert_eq!((before.ppm(), after.ppm()), (1_000_000, 800_000));
        // Nothing until a whole window plus margin has passed.
        assert_eq!(
            g.try_acquire(at(2_149)),
            Err(Denied::NotYet { earliest: at(2_150) })
        );
        assert!(g.try_acquire(at(2_150)).is_ok());
        // Then at the reduced rate: 110.000001 ms / 0.8, rounded up to the microsecond.
        assert_eq!(
            g.try_acquire(at(2_150)),
            Err(Denied::NotYet {
                earliest: at(2_150) + Duration::from_micros(137_501)
            })
        );
        let s = g.status(at(2_150));
        assert_eq!((s.counters.status_429, s.consecutive_429), (1, 1));
    }

    #[test]
    fn remaining_req_sec_zero_blocks_for_a_window_and_only_tightens() {
        let g = ticker_gcra();
        let a = g.try_acquire(at(1_000)).unwrap();
        // The window is full and only one request in it is ours: someone else
        // uses 9 of 10. Pause for a window plus margin, then run on the share
        // left to us (one slot kept as slack, at least one): 1/10.
        let fb = g.on_response(
            &a,
            Response::status(200).with_remaining_req("group=ticker; min=600; sec=0"),
            at(1_020),
        );
        assert!(fb.header_tightened);
        assert_eq!(fb.ratio_change.map(|(_, r)| r.ppm()), Some(100_000));
        assert_eq!(
            g.try_acquire(at(2_119)),
            Err(Denied::NotYet { earliest: at(2_120) })
        );
        let b = g.try_acquire(at(2_120)).unwrap();
        // A header that our own traffic explains changes nothing, and a
        // generous one never loosens.
        let fb = g.on_response(
            &b,
            Response::status(200).with_remaining_req("group=ticker; sec=9"),
            at(2_121),
        );
        assert!(!fb.header_tightened && !fb.header_rejected && fb.ratio_change.is_none());
        // One interval at a tenth of the rate: 1100.00001 ms, rounded up.
        let us = Duration::from_micros(1);
        assert_eq!(
            g.try_acquire(at(2_121)),
            Err(Denied::NotYet {
                earliest: at(3_220) + us
            })
        );
        // The estimate keeps the largest sighting of the last three windows:
        // the one at 1.02 s (window 1) until window 4 begins, although the
        // header at 2.121 s saw nobody else.
        assert_eq!(g.status(at(3_999)).ratio.ppm(), 100_000);
        assert_eq!(g.status(at(4_000)).ratio, Ratio::ONE);
        // Garbage is reported, not applied.
        let start = g.earliest(at(4_000));
        let c = g.try_acquire(start).unwrap();
        let ms = Duration::from_millis(1);
        let fb = g.on_response(
            &c,
            Response::status(200).with_remaining_req("sec=banana"),
            start + ms,
        );
        assert!(fb.header_rejected && !fb.header_tightened);
        assert_eq!(g.status(start + ms).counters.header_rejects, 1);
        assert_eq!(
            g.try_acquire(start + ms),
            Err(Denied::NotYet { earliest: start + T })
        );
    }

    #[test]
    fn remaining_req_shares_the_budget_with_another_process() {
        let g = ticker_gcra();
        let first = g.try_acquire(at(1_000)).unwrap();
        for i in 1..5 {
            g.try_acquire(at(1_000) + T.saturating_mul(i)).unwrap();
        }
        // The server counted 5 in the window that ended with `first`, and only
        // `first` can have been ours (the others left more than the margin
        // later): another process uses 4 of 10. We keep 10 - 4 - 1 = 5.
        let fb = g.on_response(
            &first,
            Response::status(200).with_remaining_req("group=ticker; sec=5"),
            at(1_450),
        );
        assert!(fb.header_tightened);
        assert_eq!(fb.ratio_change.map(|(_, r)| r.ppm()), Some(500_000));
        let mut starts = std::vec::Vec::new();
        let mut now = at(1_450);
        while now < at(4_700) {
            match g.try_acquire(now) {
                Ok(a) => starts.push(a.at),
                Err(d) => now = d.retry_at(),
            }
        }
        // Twice the interval apart while the share lasts (the sighting in
        // window 1 is kept until window 4 begins, at 4 s), then one interval.
        let half = Duration::from_micros(220_001);
        let first_after = at(1_000) + T.saturating_mul(5);
        assert_eq!(
            &starts[..3],
            &[
                first_after,
                first_after + half,
                first_after + half.saturating_mul(2)
            ]
        );
        assert!(starts.windows(2).all(|w| w[1] - w[0] >= T));
        let late: std::vec::Vec<_> = starts.iter().filter(|&&t| t >= at(4_000)).collect();
        assert!(late.len() >= 4, "{late:?}");
        assert!(late.windows(2).all(|w| *w[1] - *w[0] == T), "{late:?}");
    }

    #[test]
    fn half_open_admissions_are_probes_and_a_denied_one_gives_its_probe_back() {
        let g = ticker_gcra();
        assert!(!g.try_acquire(at(500)).unwrap().probe, "closed: no probe");
        for i in 0..5 {
            let a = g.try_acquire(at(1_000 + 200 * i)).unwrap();
            g.on_response(&a, Response::no_response(), at(1_100 + 200 * i));
        }
        // Half-open after the wait: the first admission is a probe.
        let first = g.try_acquire(at(31_900)).unwrap();
        assert!(first.probe);
        // Others at the same instant: the GCRA says not yet, and each gives
        // back the probe place the breaker had lent it.
        for _ in 0..5 {
            assert!(matches!(g.try_acquire(at(31_900)), Err(Denied::NotYet { .. })));
        }
        // So the next probes still go, one interval apart.
        let second = g.try_acquire(at(31_900) + T).unwrap();
        let third = g.try_acquire(at(31_900) + T.saturating_mul(2)).unwrap();
        assert!(second.probe && third.probe);
    }

    #[test]
    fn the_recovered_rate_applies_from_the_instant_it_is_due() {
        // A 429 lowers the ratio; the first recovery step is due 300 s later.
        let g = ticker_gcra();
        let a = g.try_acquire(at(1_000)).unwrap();
        g.on_response(&a, Response::status(429), at(1_010));
        let step = at(1_010) + Duration::from_secs(300);
        let slower = g.status(step - Duration::from_millis(1)).interval;
        let faster = g.status(step).interval;
        assert!(faster < slower, "{faster:?} {slower:?}");
        // Idle until the step, admitted exactly at it: the next one is one
        // recovered interval later, not one at the old ratio.
        let b = g.try_acquire(step).unwrap();
        assert_eq!(b.at, step);
        assert_eq!(g.earliest(step), step + faster);
    }

    #[test]
    fn a_logged_group_remembers_each_admission_for_the_header_sync() {
        // Five of ours in the window and the server counted five: nobody
        // else. (Far from the epoch, so that a ring place left unwritten,
        // which reads as the epoch, could not pass for an admission.)
        let mut cfg = GroupConfig::preset(Preset::Korea, Group::Ticker);
        cfg.policy = Policy::IntervalLog;
        let g = GroupLimiter::new(Group::Ticker, cfg).unwrap();
        let admitted: std::vec::Vec<Admission> =
            (0..5).map(|i| g.try_acquire(at(100_000 + i)).unwrap()).collect();
        let fb = g.on_response(
            &admitted[4],
            Response::status(200).with_remaining_req("group=ticker; sec=5"),
            at(100_020),
        );
        assert!(!fb.header_tightened);
        assert_eq!(g.status(at(100_020)).reserve, 0);
        // One more that the server counted beyond ours: one place held back.
        let fb = g.on_response(
            &admitted[3],
            Response::status(200).with_remaining_req("group=ticker; sec=4"),
            at(100_021),
        );
        assert!(fb.header_tightened);
        assert_eq!(g.status(at(100_021)).reserve, 1);
    }

    #[test]
    fn breaker_fails_fast_after_five_failures_and_recovers_through_half_open() {
        let g = ticker();
        for i in 0..5 {
            let a = g.try_acquire(at(1_000 + 200 * i)).unwrap();
            g.on_response(&a, Response::no_response(), at(1_100 + 200 * i));
        }
        assert_eq!(g.status(at(2_000)).breaker, BreakerState::Open);
        match g.try_acquire(at(2_000)) {
            Err(Denied::CircuitOpen { retry_at }) => assert_eq!(retry_at, at(1_900 + 30_000)),
            other => panic!("{other:?}"),
        }
        // Half-open after the wait: three successful probes close it.
        for i in 0..3 {
            let a = g.try_acquire(at(31_900 + 200 * i)).unwrap();
            g.on_response(&a, Response::status(200), at(31_950 + 200 * i));
        }
        assert_eq!(g.status(at(32_500)).breaker, BreakerState::Closed);
        assert!(g.try_acquire(at(32_500)).is_ok());
    }

    #[test]
    fn a_418_bans_every_group_of_the_scope() {
        let l = SyncLimiter::new(&LimiterConfig::preset(Preset::Korea)).unwrap();
        let a = l.try_acquire("GET", "/v1/ticker", at(1_000)).unwrap();
        let fb = l.on_response(
            &a,
            Response::status(418).with_body("{\"error\":{\"message\":\"blocked for 30 seconds\"}}"),
            at(1_010),
        );
        assert_eq!(fb.banned_until, Some(at(31_010)));
        for (m, p) in [("GET", "/v1/ticker"), ("GET", "/v1/candles/days")] {
            assert_eq!(
                l.try_acquire(m, p, at(2_000)),
                Err(Denied::Banned { until: at(31_010) }),
                "{p}"
            );
        }
        // Another scope (the pocket) is not banned.
        assert!(l.try_acquire("GET", "/v1/accounts", at(2_000)).is_ok());
        assert!(l.try_acquire("GET", "/v1/ticker", at(31_010 + 1_200)).is_ok());
    }

    #[test]
    fn an_earlier_now_reads_as_no_time_passed_and_is_counted_only_when_confirmed() {
        let g = ticker_gcra();
        g.try_acquire(at(5_000)).unwrap();
        assert_eq!(
            g.try_acquire(at(1)),
            Err(Denied::NotYet {
                earliest: at(5_000) + T
            })
        );
        // The interval log admits a burst, each at the latest instant seen.
        let log = ticker();
        assert_eq!(log.try_acquire(at(5_000)).unwrap().at, at(5_000));
        let earlier = log.try_acquire(at(1)).unwrap();
        assert_eq!(earlier.at, at(5_000));
        assert_eq!(earlier.ticket.map(|t| t.admitted_at()), Some(at(5_000)));
        assert_eq!(log.latest_seen(), at(5_000));
        // A `now` passed in proves nothing (it may have lost a race with
        // another thread): the owner of the clock compares and reports.
        assert_eq!(g.status(at(5_000)).counters.clock_regressions, 0);
        assert_eq!(g.latest_seen(), at(5_000));
        g.note_clock_regression();
        assert_eq!(g.status(at(5_000)).counters.clock_regressions, 1);
        assert!(g.try_acquire(at(5_000) + T).is_ok());
    }

    #[test]
    fn the_status_flags_an_unsafe_quota_only_when_one_is_in_force_and_a_ban_only_while_it_lasts() {
        // `allow_unsafe` alone changes nothing; with an explicit quota beyond
        // the server's limit it is in force.
        let mut cfg = gcra_config(Group::Ticker);
        cfg.allow_unsafe = true;
        let g = GroupLimiter::new(Group::Ticker, cfg).unwrap();
        assert!(!g.status(at(0)).unsafe_override);
        cfg.quota = Some(Quota::new_unchecked(Duration::from_millis(100), 10));
        let g = GroupLimiter::new(Group::Ticker, cfg).unwrap();
        assert!(g.status(at(0)).unsafe_override);
        let mut safe = gcra_config(Group::Ticker);
        safe.quota = Some(Quota::new_unchecked(Duration::from_millis(200), 1));
        assert!(
            !GroupLimiter::new(Group::Ticker, safe)
                .unwrap()
                .status(at(0))
                .unsafe_override
        );
        // A ban shows until the instant it ends, not at it.
        let g = ticker_gcra();
        let a = g.try_acquire(at(1_000)).unwrap();
        g.on_response(&a, Response::status(418).with_retry_after("30"), at(1_010));
        assert_eq!(g.status(at(31_009)).banned_until, Some(at(31_010)));
        assert_eq!(g.status(at(31_010)).banned_until, None);
    }

    #[test]
    fn allow_unsafe_relaxes_only_the_server_check_never_sanity() {
        for (quota, expected) in [
            (Quota::new_unchecked(Duration::ZERO, 1), QuotaError::ZeroInterval),
            (
                Quota::new_unchecked(Duration::from_millis(100), 0),
                QuotaError::ZeroBurst,
            ),
            (
                Quota::new_unchecked(Duration::from_secs(3_601), 1),
                QuotaError::IntervalTooLong {
                    interval: Duration::from_secs(3_601),
                },
            ),
        ] {
            let mut cfg = GroupConfig::preset(Preset::Korea, Group::Ticker);
            cfg.quota = Some(quota);
            cfg.allow_unsafe = true;
            let err = GroupLimiter::new(Group::Ticker, cfg).unwrap_err();
            assert_eq!(err.kind, ConfigErrorKind::Quota(expected), "{quota:?}");
            // Nor at run time: a running group refuses it and keeps its quota.
            let g = ticker();
            assert_eq!(
                g.set_config(cfg, at(1)).unwrap_err().kind,
                ConfigErrorKind::Quota(expected)
            );
            assert_eq!(g.config(), GroupConfig::preset(Preset::Korea, Group::Ticker));
        }
    }

    #[test]
    fn a_switch_beyond_what_the_ring_remembers_stays_within_the_limit_without_a_stall() {
        // 1000 per second: a full window holds far more admissions than the
        // ring keeps, so the start of the window is bounded, not replayed.
        let mut cfg = gcra_config(Group::Ticker);
        cfg.limits = Limits::new(&[ServerLimit::new(1_000, Duration::from_secs(1))]).unwrap();
        let g = GroupLimiter::new(Group::Ticker, cfg).unwrap();
        let mut admitted = std::vec::Vec::new();
        let mut now = at(1_000);
        // A full window and some (under Miri, just past the ring's 128).
        let fill = if cfg!(miri) { at(1_300) } else { at(2_200) };
        while now < fill {
            match g.try_acquire(now) {
                Ok(a) => admitted.push(a.at),
                Err(d) => now = d.retry_at(),
            }
        }
        let switched = now;
        cfg.burst = 2;
        g.set_config(cfg, switched).unwrap();
        let mut first_after = None;
        let end = if cfg!(miri) {
            now + Duration::from_millis(300)
        } else {
            at(4_500)
        };
        while now < end {
            match g.try_acquire(now) {
                Ok(a) => {
                    first_after.get_or_insert(a.at);
                    admitted.push(a.at);
                }
                Err(d) => now = d.retry_at(),
            }
        }
        let (most, at) = most_in_a_window(&admitted, Duration::from_millis(1_100));
        assert!(most <= 1_000, "{most} admissions in the window ending {at:?}");
        // The switch costs about one new interval, not a window.
        let waited = first_after.unwrap() - switched;
        assert!(waited <= Duration::from_millis(5), "{waited:?}");
    }

    #[test]
    fn quick_switches_beyond_what_the_ring_remembers_stay_within_the_limit() {
        // 1000 per second: a full window at burst 1 (the fastest interval)
        // holds far more admissions than the ring keeps. Each switch that
        // follows, however quickly, must still count them: re-spaced at a
        // slower interval they fill the window, and the loosest configuration
        // that ran within a window bounds what the ring forgot.
        // (A burst of 500 first, then a switch to burst 1: the burst is what
        // the ring forgot, and only the old burst in the bound counts it.)
        let schedules: [(u32, &[u32]); 6] = [
            (1, &[500]),
            (1, &[2, 500]),
            (1, &[500, 250]),
            (1, &[250, 2, 500]),
            (500, &[1]),
            (500, &[1, 500]),
        ];
        for (start, bursts) in schedules {
            let mut cfg = gcra_config(Group::Ticker);
            cfg.limits = Limits::new(&[ServerLimit::new(1_000, Duration::from_secs(1))]).unwrap();
            cfg.burst = start;
            let g = GroupLimiter::new(Group::Ticker, cfg).unwrap();
            let mut admitted = std::vec::Vec::new();
            let mut now = at(1_000);
            let mut run_until = |until: Instant, now: &mut Instant| {
                while *now < until {
                    match g.try_acquire(*now) {
                        Ok(a) => admitted.push(a.at),
                        Err(d) => *now = d.retry_at(),
                    }
                }
            };
            let fill = if cfg!(miri) || start > 1 {
                at(1_300)
            } else {
                at(2_200)
            };
            run_until(fill, &mut now);
            for &burst in bursts {
                cfg.burst = burst;
                g.set_config(cfg, now).unwrap();
                run_until(now + Duration::from_millis(20), &mut now);
            }
            run_until(
                now + Duration::from_millis(if cfg!(miri) { 200 } else { 1_500 }),
                &mut now,
            );
            // The most in any window of the server's length plus the margin.
            let (most, at) = most_in_a_window(&admitted, Duration::from_millis(1_100));
            assert!(
                most <= 1_000,
                "{start} -> {bursts:?}: {most} admissions in the window ending {at:?}"
            );
        }
    }

    #[test]
    fn random_switch_schedules_never_exceed_the_limit() {
        // A seeded search over run-time switches on a 1000-per-second group
        // (more per window than the ring of recent admissions keeps): a
        // starting burst, greedy or spaced admissions, one to four switches
        // (bursts, or explicit quotas) a random while apart. No window of the
        // server's length plus the margin may hold more than 1000. (It found
        // the schedules where the loosest configuration of the last window,
        // and the old burst in the bound of what the ring forgot, matter.)
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let bursts = [1u32, 2, 10, 100, 250, 500, 900, 999];
        let mut tightest = 0;
        for case in 0..if cfg!(miri) { 2 } else { 3_000 } {
            let mut cfg = gcra_config(Group::Ticker);
            cfg.limits = Limits::new(&[ServerLimit::new(1_000, Duration::from_secs(1))]).unwrap();
            cfg.burst = bursts[rnd(8) as usize];
            let g = GroupLimiter::new(Group::Ticker, cfg).unwrap();
            let mut admitted = std::vec::Vec::new();
            let mut now = at(1_000_000);
            // 0: as soon as allowed; 1, 2: up to 3 or 6 ms between requests.
            let spacing = rnd(3);
            let mut run = |until: Instant, now: &mut Instant, rnd: &mut dyn FnMut(u64) -> u64| {
                while *now < until {
                    match g.try_acquire(*now) {
                        Ok(a) => {
                            admitted.push(a.at);
                            *now += Duration::from_micros(rnd(3_000 * spacing + 1));
                        }
                        Err(d) => *now = d.retry_at().max(*now + Duration::from_nanos(1)),
                    }
                }
            };
            run(now + Duration::from_millis(rnd(1_500)), &mut now, &mut rnd);
            let mut schedule = std::vec::Vec::new();
            for _ in 0..1 + rnd(4) {
                if rnd(4) == 0 {
                    let interval = Duration::from_micros(1_100 + rnd(20_000));
                    cfg.quota = Some(Quota::new_unchecked(interval, 1 + rnd(50) as u32));
                } else {
                    cfg.quota = None;
                    cfg.burst = bursts[rnd(8) as usize];
                }
                if g.set_config(cfg, now).is_ok() {
                    schedule.push((cfg.burst, cfg.quota));
                }
                run(now + Duration::from_millis(rnd(200)), &mut now, &mut rnd);
            }
            run(now + Duration::from_secs(2), &mut now, &mut rnd);
            let (most, _) = most_in_a_window(&admitted, Duration::from_millis(1_100));
            tightest = tightest.max(most);
            assert!(
                most <= 1_000,
                "case {case}: {most} in a window, switches {schedule:?}"
            );
        }
        // The search reaches the limit itself (it is not too timid to tell).
        if !cfg!(miri) {
            assert_eq!(tightest, 1_000);
        }
    }

    #[test]
    fn a_switch_re_spaces_only_what_was_admitted_within_a_window() {
        // A long history at full speed, then a much slower quota: only the
        // admissions that could still count (the last window and margin)
        // are re-spaced, not the whole ring of recent ones.
        let g = ticker_gcra();
        let mut now = at(1_000);
        while now < at(20_000) {
            match g.try_acquire(now) {
                Ok(_) => {}
                Err(d) => now = d.retry_at(),
            }
        }
        let mut cfg = gcra_config(Group::Ticker);
        cfg.quota = Some(Quota::new(Duration::from_secs(2), 1).unwrap());
        g.set_config(cfg, now).unwrap();
        // About ten admissions in the span, each worth 2 s now.
        let next = match g.try_acquire(now) {
            Ok(a) => a.at,
            Err(d) => d.retry_at(),
        };
        assert!(next - now <= Duration::from_secs(21), "{:?}", next - now);
        assert!(next - now >= Duration::from_secs(15), "{:?}", next - now);
    }

    #[test]
    fn a_switch_to_a_slower_quota_respaces_by_admissions_not_slots() {
        // One admission, then a switch to burst 5 (interval 1.1 s / 6): the
        // replay of that one admission leaves the new burst available.
        let g = ticker_gcra();
        g.try_acquire(at(1_000)).unwrap();
        let mut cfg = g.config();
        cfg.burst = 5;
        g.set_config(cfg, at(1_010)).unwrap();
        for _ in 0..4 {
            assert!(g.try_acquire(at(1_010)).is_ok());
        }
        // Five in the window now: the sixth waits until the first one's
        // slot at the new interval (183 334 us, rounded up) has passed.
        assert_eq!(
            g.try_acquire(at(1_010)),
            Err(Denied::NotYet {
                earliest: Instant::from_nanos((1_000_000 + 183_334) * 1_000)
            })
        );
    }

    #[test]
    fn runtime_reconfiguration_keeps_state_and_cannot_burst() {
        let g = ticker_gcra();
        let mut t = at(1_000);
        for _ in 0..10 {
            g.try_acquire(t).unwrap();
            t += T;
        }
        // Switch to a quota with a burst of 5 (slower interval, 1.1 s / 6).
        let mut cfg = g.config();
        cfg.burst = 5;
        g.set_config(cfg, t).unwrap();
        // Count admissions in the window that straddles the switch.
        let mut admitted = std::vec::Vec::new();
        let mut now = t;
        while now < t + Duration::from_millis(3_000) {
            match g.try_acquire(now) {
                Ok(a) => admitted.push(a.at),
                Err(d) => now = d.retry_at(),
            }
        }
        let before: std::vec::Vec<Instant> = (0..10).map(|i| at(1_000) + T.saturating_mul(i)).collect();
        let all: std::vec::Vec<Instant> = before.into_iter().chain(admitted).collect();
        for (i, &start) in all.iter().enumerate() {
            let in_window = all[i..]
                .iter()
                .take_while(|&&x| x <= start + Duration::from_millis(1_100))
                .count();
            assert!(
                in_window <= 10,
                "{in_window} admissions in the window from {start:?}"
            );
        }
        assert_eq!(g.config().burst, 5);
        assert_eq!(g.status(t).counters.admitted as usize, all.len());
        // A bad configuration is refused and changes nothing.
        let mut bad = cfg;
        bad.burst = 0;
        assert!(g.set_config(bad, t).is_err());
        assert_eq!(g.config().burst, 5);
    }

    #[test]
    fn a_full_burst_is_available_at_one_instant_whatever_the_rounding() {
        // order: 1.15 s / 11 slots = 104.545454.. ms, not a whole microsecond.
        let mut cfg = gcra_config(Group::Order);
        cfg.burst = 2;
        let g = GroupLimiter::new(Group::Order, cfg).unwrap();
        assert!(g.try_acquire(at(1_000)).is_ok());
        assert!(g.try_acquire(at(1_000)).is_ok());
        assert!(g.try_acquire(at(1_000)).is_err());
    }

    #[test]
    fn forced_open_fails_fast_until_reset() {
        let g = ticker();
        g.force_open(true, at(0));
        assert_eq!(
            g.try_acquire(at(1)),
            Err(Denied::CircuitOpen {
                retry_at: Instant::MAX
            })
        );
        g.force_open(false, at(2));
        assert!(g.try_acquire(at(3)).is_ok());
    }
}

#[cfg(all(test, not(loom)))]
mod interval_log_policy {
    use super::*;

    const MS: u64 = 1_000_000;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(10_000 * MS + ms * MS)
    }

    fn ticker_log() -> GroupLimiter {
        let mut cfg = GroupConfig::preset(Preset::Korea, Group::Ticker);
        cfg.policy = Policy::IntervalLog;
        cfg.max_flight = Duration::from_secs(5);
        GroupLimiter::new(Group::Ticker, cfg).unwrap()
    }

    #[test]
    fn a_429_keeps_a_share_of_only_the_admissions_of_the_window_before_it() {
        let g = ticker_log();
        // Three long before, answered.
        for _ in 0..3 {
            let a = g.try_acquire(at(0)).unwrap();
            g.on_response(&a, Response::status(200), at(10));
        }
        // Four in the window before the one that draws a 429.
        let recent: std::vec::Vec<Admission> = (0..5).map(|_| g.try_acquire(at(3_000)).unwrap()).collect();
        for a in &recent[..4] {
            g.on_response(a, Response::status(200), at(3_010));
        }
        g.on_response(&recent[4], Response::status(429), at(3_020));
        // Kept: 4 x 0.8 = 3 (rounded down) of 10; the other 7 are held back.
        assert_eq!(g.status(at(3_020)).reserve, 7);
    }

    #[test]
    fn a_change_that_leaves_the_log_alone_keeps_what_it_counts_and_holds_nothing() {
        let g = ticker_log();
        let admitted: std::vec::Vec<Admission> = (0..10).map(|_| g.try_acquire(at(0)).unwrap()).collect();
        let mut cfg = g.config();
        cfg.waiter_timeout = Duration::from_secs(7);
        g.set_config(cfg, at(5)).unwrap();
        // Still the same ten in flight...
        assert!(matches!(g.try_acquire(at(6)), Err(Denied::InFlight { .. })));
        for a in &admitted {
            g.on_response(a, Response::status(200), at(10));
        }
        // ...and room again one window after their reports.
        assert!(g.try_acquire(at(1_010)).is_err());
        assert!(g.try_acquire(at(1_010) + Duration::from_nanos(1)).is_ok());
    }

    #[test]
    fn a_new_log_holds_until_the_old_ones_requests_cannot_count_and_only_if_there_were_any() {
        // Limits lowered at run time: the new log starts empty, so the group
        // holds until every request admitted before could no longer count
        // (maximum flight time plus the longest window, after the last one
        // seen), then keeps the new limit.
        let g = ticker_log();
        let _in_flight: std::vec::Vec<Admission> = (0..10).map(|_| g.try_acquire(at(0)).unwrap()).collect();
        let mut cfg = g.config();
        cfg.limits = Limits::new(&[ServerLimit::new(5, Duration::from_secs(1))]).unwrap();
        g.set_config(cfg, at(20)).unwrap();
        let hold_ends = at(20) + cfg.max_flight + Duration::from_secs(1) + Duration::from_nanos(1);
        assert!(g.try_acquire(at(21)).is_err());
        assert!(g.try_acquire(hold_ends - Duration::from_millis(1)).is_err());
        // Then five per window (answered at once), at the new limit's pace.
        let mut after = 0;
        for ms in 0..1_000 {
            let t = hold_ends + Duration::from_millis(ms);
            if let Ok(a) = g.try_acquire(t) {
                g.on_response(&a, Response::status(200), t);
                after += 1;
            }
        }
        assert_eq!(after, 5, "the new limit, after the hold");
        // A group that admitted nothing switches at once.
        let fresh = ticker_log();
        fresh.set_config(cfg, at(20)).unwrap();
        assert!(fresh.try_acquire(at(21)).is_ok());
    }

    #[test]
    fn the_status_names_the_throttle_the_log_runs_under() {
        // The server's own rate, burst N: 10 per 100 ms for ticker, 12 per
        // 1/12 s (rounded up to the microsecond) for orders.
        let q = ticker_log().status(at(0)).quota;
        assert_eq!((q.interval(), q.burst()), (Duration::from_millis(100), 10));
        let order =
            GroupLimiter::new(Group::Order, GroupConfig::preset(Preset::Korea, Group::Order)).unwrap();
        let q = order.status(at(0)).quota;
        assert_eq!((q.interval(), q.burst()), (Duration::from_micros(83_334), 12));
    }

    #[test]
    fn a_full_burst_after_idle_then_room_only_after_reports() {
        let g = ticker_log();
        let admitted: std::vec::Vec<Admission> = (0..10).map(|_| g.try_acquire(at(0)).unwrap()).collect();
        assert!(admitted.iter().all(|a| a.ticket.is_some()));
        // All ten in flight: only a report (or their flight time) makes
        // room. The throttle (the server's own rate, burst 10) would space
        // the next by only 100 ms; the denial names the log's later instant.
        let in_flight = Err(Denied::InFlight {
            at_latest: at(5_000) + Duration::from_secs(1) + Duration::from_nanos(1),
        });
        assert_eq!(g.try_acquire(at(1)), in_flight);
        assert_eq!(g.try_acquire(at(100)), in_flight);
        assert_eq!(g.status(at(1)).in_flight, 10);
        // Reported at 120 ms: it may have arrived as late as that, so it
        // counts until 120 ms + 1 s.
        g.on_response(&admitted[0], Response::status(200), at(120));
        assert_eq!(
            g.try_acquire(at(121)),
            Err(Denied::NotYet {
                earliest: at(1_120) + Duration::from_nanos(1)
            })
        );
        assert!(g.try_acquire(at(1_120) + Duration::from_nanos(1)).is_ok());
    }

    #[test]
    fn no_response_counts_until_the_maximum_flight_time_and_a_drop_ends_at_the_drop() {
        let g = ticker_log();
        let admitted: std::vec::Vec<Admission> = (0..10).map(|_| g.try_acquire(at(0)).unwrap()).collect();
        g.on_response(&admitted[0], Response::no_response(), at(50));
        // Still in the network for all we know: room only after 5 s + 1 s.
        for a in &admitted[2..] {
            g.on_response(a, Response::status(200), at(60));
        }
        g.on_dropped(&admitted[1], at(70));
        assert_eq!(g.status(at(70)).counters.unreported, 1);
        // The dropped one ended at 70 ms, the reported ones at 60 ms: room
        // at 60 ms + 1 s for them, the unanswered one holds its slot.
        assert!(g.try_acquire(at(1_000)).is_err());
        let later: std::vec::Vec<_> = (0..9).map(|_| g.try_acquire(at(1_071))).collect();
        assert_eq!(later.iter().filter(|r| r.is_ok()).count(), 9, "{later:?}");
        assert!(g.try_acquire(at(1_071)).is_err());
    }

    #[test]
    fn a_429_still_pauses_and_slows_a_logged_group() {
        let g = ticker_log();
        let a = g.try_acquire(at(0)).unwrap();
        g.on_response(&a, Response::status(429), at(10));
        // Nothing for a window plus margin, whatever the log says.
        assert!(matches!(g.try_acquire(at(1_000)), Err(Denied::NotYet { .. })));
        assert!(g.try_acquire(at(1_110)).is_ok());
        assert_eq!(g.status(at(1_110)).policy, Policy::IntervalLog);
    }

    #[test]
    fn the_gcra_needs_a_margin_the_log_does_not() {
        let mut cfg = GroupConfig::preset(Preset::Korea, Group::Ticker);
        cfg.policy = Policy::Gcra;
        cfg.margin = Duration::ZERO;
        assert_eq!(
            GroupLimiter::new(Group::Ticker, cfg).unwrap_err().kind,
            ConfigErrorKind::ZeroMargin
        );
        cfg.policy = Policy::IntervalLog;
        assert!(GroupLimiter::new(Group::Ticker, cfg).is_ok());
        cfg.max_flight = Duration::ZERO;
        assert!(matches!(
            GroupLimiter::new(Group::Ticker, cfg).unwrap_err().kind,
            ConfigErrorKind::IntervalLog(_)
        ));
    }

    /// Admits as many as the group takes at `now`.
    fn burst(g: &GroupLimiter, now: Instant) -> std::vec::Vec<Admission> {
        core::iter::from_fn(|| g.try_acquire(now).ok()).collect()
    }

    #[test]
    fn a_header_shows_others_only_if_our_intervals_cannot_explain_the_count() {
        let g = ticker_log();
        // a took 900 ms: likely it arrived at 450, but it may have arrived
        // as late as 900, inside b's window.
        let a = g.try_acquire(at(0)).unwrap();
        g.on_response(&a, Response::status(200), at(900));
        let b = g.try_acquire(at(1_460)).unwrap();
        let fb = g.on_response(
            &b,
            Response::status(200).with_remaining_req("group=ticker; sec=8"),
            at(1_480),
        );
        assert!(!fb.header_tightened, "two counted: both may be ours");
        assert_eq!(g.status(at(1_480)).reserve, 0);
        // Four counted where at most three were ours: someone else's for
        // sure, as many as the likely count of ours (b and c) leaves.
        let c = g.try_acquire(at(1_470)).unwrap();
        let fb = g.on_response(
            &c,
            Response::status(200).with_remaining_req("group=ticker; sec=6"),
            at(1_490),
        );
        assert!(fb.header_tightened);
        assert_eq!(g.status(at(1_490)).reserve, 2);
    }

    #[test]
    fn a_co_tenants_429_is_forgotten_once_headers_show_it_gone() {
        let g = ticker_log();
        let first: std::vec::Vec<_> = (0..6).map(|_| g.try_acquire(at(0)).unwrap()).collect();
        // Of our six, the server counted ten: four are someone else's.
        g.on_response(
            &first[0],
            Response::status(200).with_remaining_req("group=ticker; sec=0"),
            at(20),
        );
        g.on_response(&first[1], Response::status(429), at(20));
        for a in &first[2..] {
            g.on_response(a, Response::status(200), at(20));
        }
        let held = g.status(at(20));
        assert!(held.reserve >= 4, "{}", held.reserve);
        assert!(held.ratio < Ratio::ONE);
        // Alone again: each header shows only our own request.
        let alone = || Response::status(200).with_remaining_req("group=ticker; sec=9");
        for t in [1_200, 2_300, 3_400] {
            let a = g.try_acquire(at(t)).unwrap();
            g.on_response(&a, alone(), at(t + 10));
            let s = g.status(at(t + 10));
            assert_eq!((s.reserve, s.ratio), (held.reserve, held.ratio), "at {t}");
        }
        // Three windows of them: the ceiling and the reduction are gone.
        let a = g.try_acquire(at(4_500)).unwrap();
        g.on_response(&a, alone(), at(4_510));
        let s = g.status(at(4_510));
        assert_eq!((s.reserve, s.ratio), (0, Ratio::ONE));
        assert_eq!(burst(&g, at(5_600)).len(), 10);
    }

    #[test]
    fn others_seen_in_the_header_keep_their_places_out_of_the_log() {
        let g = ticker_log();
        // Our own full window, echoed by the header, shows nobody else.
        let first = burst(&g, at(0));
        assert_eq!(first.len(), 10);
        for a in &first {
            g.on_response(
                a,
                Response::status(200).with_remaining_req("group=ticker; sec=0"),
                at(20),
            );
        }
        assert_eq!(g.status(at(20)).reserve, 0);
        // Two of ours in the window, and the server counted six: four are
        // someone else's.
        let a = g.try_acquire(at(2_000)).unwrap();
        let b = g.try_acquire(at(2_000)).unwrap();
        let fb = g.on_response(
            &a,
            Response::status(200).with_remaining_req("group=ticker; sec=4"),
            at(2_010),
        );
        assert!(fb.header_tightened);
        g.on_response(&b, Response::status(200), at(2_010));
        assert_eq!(g.status(at(2_010)).reserve, 4);
        // Six places are ours in the window: four more now, then none.
        let more = burst(&g, at(2_020));
        assert_eq!(more.len(), 4);
        for a in &more {
            g.on_response(a, Response::status(200), at(2_030));
        }
        // A new window: six again, still not ten.
        assert_eq!(burst(&g, at(3_100)).len(), 6);
        // Three windows without a sighting: every place is ours again (the
        // six above are still on their way: four more).
        assert_eq!(g.status(at(4_999)).reserve, 4);
        assert_eq!(g.status(at(5_000)).reserve, 0);
        assert_eq!(burst(&g, at(5_000)).len(), 4);
    }

    #[test]
    fn a_429_without_headers_teaches_a_ceiling_that_is_held() {
        let g = ticker_log();
        // The server took 5: the other five of the burst meet 429s.
        let admitted = burst(&g, at(0));
        for (i, a) in admitted.iter().enumerate() {
            let status = if i < 5 { 200 } else { 429 };
            g.on_response(a, Response::status(status), at(20));
        }
        // Five were admitted before the first 429'd one: 0.8 x 5 = 4 kept,
        // six places held back for two days.
        let s = g.status(at(2_000));
        assert_eq!(s.reserve, 6);
        let two_days = Duration::from_secs(2 * 86_400);
        let ceiling = s.ceiling.expect("a learned ceiling in the status");
        assert_eq!(ceiling.places, 6);
        assert!(!ceiling.locked && !ceiling.explained, "{ceiling:?}");
        assert_eq!(ceiling.next_give_back, at(20) + two_days);
        assert_eq!(burst(&g, at(10_000)).len(), 4);
        assert_eq!(g.status(at(20) + two_days - Duration::from_millis(1)).reserve, 6);
        assert_eq!(
            g.status(at(20) + two_days).reserve,
            5,
            "one place back per two days"
        );
    }

    /// A ceiling no header explained, then a header showing two more than
    /// ours (within its six places), then quiet headers for three windows:
    /// the ceiling's places held back at the end, `lenient` first sending a
    /// header that counts fewer than surely arrived.
    fn reserve_after_others_within_a_ceiling(lenient: bool) -> u32 {
        let g = ticker_log();
        // The server took 5 of a burst: a ceiling of six places.
        for (i, a) in burst(&g, at(0)).iter().enumerate() {
            let status = if i < 5 { 200 } else { 429 };
            g.on_response(a, Response::status(status), at(20));
        }
        // Requests one after another, each answered before the next is
        // sent (as spaced as the reduced ratio wants); the last one's header is `header`.
        let chain = |t: u64, n: u64, header: &'static str| {
            for k in 0..n {
                let a = g.try_acquire(at(t + 250 * k)).unwrap();
                let last = k + 1 == n;
                let response = if last {
                    Response::status(200).with_remaining_req(header)
                } else {
                    Response::status(200)
                };
                g.on_response(&a, response, at(t + 250 * k + 10));
            }
        };
        if lenient {
            // Three surely arrived within the window; the server counted two.
            chain(1_200, 3, "group=ticker; sec=8");
        }
        // Two of ours, four counted.
        chain(2_900, 2, "group=ticker; sec=6");
        assert_eq!(g.status(at(3_200)).reserve, 6);
        // Two of ours, two counted, for three windows (the log runs on
        // `W` plus the margin).
        for t in [4_300, 5_700, 7_100, 8_500] {
            chain(t, 2, "group=ticker; sec=8");
        }
        g.status(at(8_800)).reserve
    }

    /// A ceiling of six places, then up to `per_window` requests a window
    /// (all four of our places are taken every other window: a request
    /// counts until a window after its answer), each answered with
    /// `header`, for `outside::PROBE_WINDOWS`
    /// windows and a few more: the places held back at the end.
    fn reserve_after_room_at(per_window: usize, header: &'static str) -> u32 {
        let g = ticker_log();
        for (i, a) in burst(&g, at(0)).iter().enumerate() {
            let status = if i < 5 { 200 } else { 429 };
            g.on_response(a, Response::status(status), at(20));
        }
        assert_eq!(g.status(at(1_000)).reserve, 6);
        for k in 1..=crate::outside::PROBE_WINDOWS + 3 {
            let t = at(k * 1_000);
            let taken: std::vec::Vec<Admission> = core::iter::from_fn(|| g.try_acquire(t).ok())
                .take(per_window)
                .collect();
            for a in &taken {
                let fb = g.on_response(
                    a,
                    Response::status(200).with_remaining_req(header),
                    t + Duration::from_millis(10),
                );
                assert!(!fb.header_rejected);
            }
        }
        g.status(at((crate::outside::PROBE_WINDOWS + 1) * 1_000 + 20))
            .reserve
    }

    // 600 windows of real admissions take four minutes under Miri, over the
    // same code as the shorter tests here: left to the native run.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn room_beyond_every_place_we_take_gives_one_back_early() {
        // The server took five places away, and had room beyond our four
        // in every window: the ceiling held one place too many.
        assert_eq!(reserve_after_room_at(usize::MAX, "group=ticker; sec=1"), 5);
        // Room beside half of them shows nothing (one a window: two of
        // ours in every window of the server's).
        assert_eq!(reserve_after_room_at(1, "group=ticker; sec=3"), 6);
    }

    #[test]
    fn others_within_a_ceiling_explain_it_only_where_headers_count_a_sliding_window() {
        // A sliding window shows a lower limit in every header: these
        // others left, and the ceiling ends with them.
        assert_eq!(reserve_after_others_within_a_ceiling(false), 0);
        // A server that counted fewer than surely arrived can show room a
        // lower limit does not have: the ceiling is held.
        assert_eq!(reserve_after_others_within_a_ceiling(true), 6);
    }

    #[test]
    fn penalties_to_requests_already_on_their_way_do_not_open_the_breaker() {
        // Five requests in flight at once (the log's burst) all meet a ban.
        let g = ticker_log();
        let burst: std::vec::Vec<Admission> = (0..5).map(|_| g.try_acquire(at(1_000)).unwrap()).collect();
        for (i, a) in burst.iter().enumerate() {
            let fb = g.on_response(
                a,
                Response::status(418).with_retry_after("2"),
                at(1_010 + i as u64),
            );
            assert_eq!(fb.transition, None, "response {i}");
        }
        assert_eq!(g.status(at(1_100)).breaker, crate::breaker::BreakerState::Closed);
        assert_eq!(g.status(at(1_100)).counters.status_418, 5);
        // The first 418 counted once. Penalties to requests sent after the
        // last one was known count too: four more make the five in a row
        // that open the breaker.
        let mut now = at(10_000);
        let mut more = 0;
        loop {
            let a = g.try_acquire(now).unwrap();
            now += Duration::from_millis(10);
            more += 1;
            let fb = g.on_response(&a, Response::status(429), now);
            if let Some(t) = fb.transition {
                assert_eq!(t.to, crate::breaker::BreakerState::Open);
                break;
            }
            assert!(more < 5, "the breaker never opened");
            now += Duration::from_secs(2);
        }
        assert_eq!(more, 4);
    }

    #[test]
    fn denials_say_why_and_until_when() {
        let t = at(1_500);
        for (denied, text) in [
            (Denied::NotYet { earliest: t }, "rate limited until"),
            (Denied::CircuitOpen { retry_at: t }, "circuit open; retry at"),
            (Denied::Banned { until: t }, "banned by the server (418) until"),
            (
                Denied::InFlight { at_latest: t },
                "window full of requests in flight; room after a report, at the latest",
            ),
        ] {
            assert_eq!(std::format!("{denied}"), std::format!("{text} {t}"));
            assert_eq!(denied.retry_at(), t);
        }
    }

    #[test]
    fn policy_names_parse_in_any_case_with_either_separator() {
        for (text, policy) in [
            ("interval-log", Ok(Policy::IntervalLog)),
            (" Interval_Log ", Ok(Policy::IntervalLog)),
            ("GCRA", Ok(Policy::Gcra)),
            ("interval", Err(())),
            ("interval log", Err(())),
            ("interval_lo", Err(())),
            ("gcra2", Err(())),
            ("", Err(())),
        ] {
            assert_eq!(text.parse::<Policy>(), policy, "{text:?}");
        }
        assert_eq!(Policy::default(), Policy::IntervalLog);
        for g in Group::ALL {
            let expected = if g == Group::WebsocketMessage {
                Policy::Gcra
            } else {
                Policy::IntervalLog
            };
            assert_eq!(Policy::for_group(g), expected, "{g}");
            assert_eq!(GroupConfig::preset(Preset::Korea, g).policy, expected, "{g}");
            assert_eq!(GroupConfig::preset(Preset::Global, g).policy, expected, "{g}");
        }
    }

    #[test]
    fn gcra_round_trips_longer_than_the_margin_are_counted() {
        let mut cfg = GroupConfig::preset(Preset::Korea, Group::Ticker);
        cfg.policy = Policy::Gcra;
        let g = GroupLimiter::new(Group::Ticker, cfg).unwrap();
        let a = g.try_acquire(at(0)).unwrap();
        let fb = g.on_response(&a, Response::status(200), at(50));
        assert!(!fb.round_trip_over_margin);
        let b = g.try_acquire(at(200)).unwrap();
        let fb = g.on_response(&b, Response::status(200), at(350));
        assert!(fb.round_trip_over_margin);
        assert_eq!(g.status(at(350)).counters.round_trips_over_margin, 1);
    }
}
