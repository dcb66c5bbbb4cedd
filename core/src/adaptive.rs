//! The adaptive rate ratio: 429 / 418 / success / lazy recovery.
//!
//! A group's quota is the most the server allows; the ratio is how much of it we
//! dare to use right now. A 429 means our picture of the server was wrong (another
//! process on the same IP, a tightened limit), so the ratio drops at once and only
//! creeps back after a quiet period. Recovery is a pure function of the state and
//! `now`: there is no timer to run and nothing that can die. A 418 (temporary ban)
//! additionally blocks the group until the ban ends.

use core::fmt;
use core::str::FromStr;

use crate::time::{Duration, Instant};

/// A rate multiplier in `(0, 1]`, fixed point in parts per million.
///
/// The effective emission interval is the quota's interval divided by the ratio,
/// so a ratio below one only ever slows a group down.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "u32", into = "u32")
)]
pub struct Ratio(u32);

/// Why a number is not a [`Ratio`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RatioError {
    /// NaN, zero, negative, or above one.
    OutOfRange,
}

impl fmt::Display for RatioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ratio must be a number in (0, 1]")
    }
}

impl core::error::Error for RatioError {}

impl Ratio {
    /// Parts per million that make one.
    pub const SCALE: u32 = 1_000_000;
    /// Full speed.
    pub const ONE: Self = Self(Self::SCALE);

    /// `ppm` parts per million; `None` unless `1 <= ppm <= 1_000_000`.
    pub const fn from_ppm(ppm: u32) -> Option<Self> {
        if ppm == 0 || ppm > Self::SCALE {
            None
        } else {
            Some(Self(ppm))
        }
    }
    /// From a float in `(0, 1]`.
    pub fn try_from_f64(r: f64) -> Result<Self, RatioError> {
        // NaN fails both comparisons.
        if !(r > 0.0 && r <= 1.0) {
            return Err(RatioError::OutOfRange);
        }
        // `f64::round` lives in std; `r` is positive, so adding one half and
        // truncating rounds to nearest.
        let ppm = (r * Self::SCALE as f64 + 0.5) as u32;
        Self::from_ppm(ppm.max(1)).ok_or(RatioError::OutOfRange)
    }
    /// Parts per million.
    pub const fn ppm(self) -> u32 {
        self.0
    }
    /// As a float (for reports).
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / f64::from(Self::SCALE)
    }

    /// `self * factor`, rounded down (slower is the safe side), at least one ppm.
    const fn scaled_by(self, factor: Ratio) -> Ratio {
        let ppm = (self.0 as u64 * factor.0 as u64) / Self::SCALE as u64;
        Ratio(if ppm == 0 { 1 } else { ppm as u32 })
    }

    /// `self + ppm`, capped at one.
    const fn raised_by(self, ppm: u64) -> Ratio {
        let sum = (self.0 as u64).saturating_add(ppm);
        if sum >= Self::SCALE as u64 {
            Self::ONE
        } else {
            Ratio(sum as u32)
        }
    }
}

impl fmt::Debug for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ratio({})", self.as_f64())
    }
}

impl TryFrom<u32> for Ratio {
    type Error = RatioError;
    /// From parts per million; see [`Ratio::from_ppm`].
    fn try_from(ppm: u32) -> Result<Self, RatioError> {
        Self::from_ppm(ppm).ok_or(RatioError::OutOfRange)
    }
}

impl From<Ratio> for u32 {
    /// Parts per million.
    fn from(r: Ratio) -> u32 {
        r.0
    }
}

/// How a group reacts to 429 and 418 and how it recovers.
///
/// Three presets; [`Default`] is [`conservative`](Self::conservative).
/// "Floor to 1.0" is the quiet time a group needs to climb back from
/// `min_ratio` to full speed.
///
/// | field               | conservative | balanced | aggressive |
/// |---------------------|-------------:|---------:|-----------:|
/// | `error_threshold`   | 1            | 1        | 2          |
/// | `reduction`         | x0.80        | x0.85    | x0.90      |
/// | `min_ratio`         | 0.50         | 0.60     | 0.70       |
/// | `recovery_delay`    | 300 s        | 120 s    | 60 s       |
/// | `recovery_interval` | 30 s         | 15 s     | 10 s       |
/// | `recovery_step_ppm` | 50 000 (+0.05) | 50 000 (+0.05) | 100 000 (+0.10) |
/// | `ban_default`       | 50 s         | 50 s     | 50 s       |
/// | `ban_max`           | 1 h          | 1 h      | 30 min     |
/// | floor to 1.0        | 570 s        | 225 s    | 80 s       |
///
/// # Bans whose length is unknown
///
/// A 418 whose response states no credible length (see
/// [`crate::upbit::stated_ban`]) is waited out on a probe schedule instead of
/// a guess. The first wait is `ban_default`; every later one is
/// [`BAN_GROWTH`] (3) times the one before, capped at `ban_max`. At the end
/// of each wait exactly one request of the whole scope goes (the probe; the
/// limiter holds every other request of the scope until its answer): a 418
/// starts the next, longer wait; anything else ends the ban for the scope.
///
/// With the presets' 50 s the probes go 50 s, 200 s and 650 s after the
/// first 418. So **at most two requests reach a real ban of up to 600 s**
/// (the third probe comes 50 s after the longest such ban, which covers
/// network delay and a ban that began slightly before its first 418 was
/// answered), while a short ban is not overshot by much: a ban of `B`
/// seconds is over for us at the first probe after it, i.e. by 50 s if
/// `B < 50`, by 200 s if `B < 200`, by 650 s if `B < 650` (worst case 450 s
/// late, for a ban just over 200 s; about 190 s late on average over bans of
/// 1 to 600 s). The old schedule (60 s doubling, every group of the scope
/// reopening at once) sent 3 rounds into a 600 s ban, one request per busy
/// group each. [`AdaptiveConfig::probes_into_ban`] computes the count for any
/// configuration; the guarantee holds whenever
/// `ban_default * (1 + 3 + 9) >= 600 s` plus margin, i.e. `ban_default >= 48 s`.
///
/// Every preset passes [`validate`](Self::validate). The state machine never
/// panics on an invalid configuration either, but its behaviour is then only
/// "safe", not useful: validate what comes from users.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct AdaptiveConfig {
    /// Consecutive 429s (without a success in between) before the ratio drops.
    /// Every further 429 drops it again.
    pub error_threshold: u32,
    /// Factor applied to the ratio on each reduction; must be below one.
    pub reduction: Ratio,
    /// Reductions never go below this ratio.
    pub min_ratio: Ratio,
    /// Quiet time after the last 429 (or after a ban ends) before the first step up.
    pub recovery_delay: Duration,
    /// Time between later steps up.
    pub recovery_interval: Duration,
    /// Size of one step up, in parts per million of full speed.
    pub recovery_step_ppm: u32,
    /// First wait for a 418 that does not say how long it lasts; each further
    /// wait of the same streak is [`BAN_GROWTH`] times longer (see the type's
    /// docs for the probe schedule).
    pub ban_default: Duration,
    /// Upper bound of one wait of the schedule; also the quiet time that
    /// resets the streak.
    pub ban_max: Duration,
}

/// Why an [`AdaptiveConfig`] is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdaptiveConfigError {
    /// `error_threshold` is zero.
    ZeroErrorThreshold,
    /// `reduction` is 1.0, so a 429 would change nothing.
    NoReduction,
    /// `recovery_delay` is zero, so a reduction would be undone the instant it happens.
    ZeroRecoveryDelay,
    /// `recovery_interval` is zero.
    ZeroRecoveryInterval,
    /// `recovery_step_ppm` is zero, so the ratio would never recover.
    ZeroRecoveryStep,
    /// `recovery_step_ppm` is above 1 000 000 (more than full speed in one step).
    RecoveryStepAboveOne,
    /// `ban_default` is zero.
    ZeroBanDefault,
    /// `ban_default` is longer than `ban_max`.
    BanDefaultAboveMax,
}

impl fmt::Display for AdaptiveConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroErrorThreshold => "adaptive error_threshold must be at least 1",
            Self::NoReduction => "adaptive reduction must be below 1.0, or a 429 changes nothing",
            Self::ZeroRecoveryDelay => "adaptive recovery_delay must be longer than zero",
            Self::ZeroRecoveryInterval => "adaptive recovery_interval must be longer than zero",
            Self::ZeroRecoveryStep => "adaptive recovery_step_ppm must be at least 1",
            Self::RecoveryStepAboveOne => {
                "adaptive recovery_step_ppm must be at most 1000000 (a step of 1.0)"
            }
            Self::ZeroBanDefault => "adaptive ban_default must be longer than zero",
            Self::BanDefaultAboveMax => "adaptive ban_default must not exceed ban_max",
        })
    }
}

impl core::error::Error for AdaptiveConfigError {}

impl AdaptiveConfig {
    /// React to the first 429 with x0.8, floor 0.5; after 300 s without a 429
    /// recover +0.05 every 30 s; a 418 of unknown length is probed after 50 s,
    /// then waits tripling up to 1 h.
    pub const fn conservative() -> Self {
        Self {
            error_threshold: 1,
            reduction: Ratio(800_000),
            min_ratio: Ratio(500_000),
            recovery_delay: Duration::from_secs(300),
            recovery_interval: Duration::from_secs(30),
            recovery_step_ppm: 50_000,
            ban_default: Duration::from_secs(50),
            ban_max: Duration::from_secs(3_600),
        }
    }

    /// React to the first 429 with x0.85, floor 0.6; after 120 s recover +0.05
    /// every 15 s; 418 bans as conservative.
    pub const fn balanced() -> Self {
        Self {
            error_threshold: 1,
            reduction: Ratio(850_000),
            min_ratio: Ratio(600_000),
            recovery_delay: Duration::from_secs(120),
            recovery_interval: Duration::from_secs(15),
            recovery_step_ppm: 50_000,
            ban_default: Duration::from_secs(50),
            ban_max: Duration::from_secs(3_600),
        }
    }

    /// Tolerate one isolated 429, then x0.9 per 429, floor 0.7; after 60 s recover
    /// +0.1 every 10 s; 418 schedule as conservative but capped at 30 min.
    pub const fn aggressive() -> Self {
        Self {
            error_threshold: 2,
            reduction: Ratio(900_000),
            min_ratio: Ratio(700_000),
            recovery_delay: Duration::from_secs(60),
            recovery_interval: Duration::from_secs(10),
            recovery_step_ppm: 100_000,
            ban_default: Duration::from_secs(50),
            ban_max: Duration::from_secs(1_800),
        }
    }

    /// Checks that every field makes sense; the first problem found is returned.
    pub fn validate(&self) -> Result<(), AdaptiveConfigError> {
        use AdaptiveConfigError as E;
        if self.error_threshold == 0 {
            return Err(E::ZeroErrorThreshold);
        }
        if self.reduction == Ratio::ONE {
            return Err(E::NoReduction);
        }
        if self.recovery_delay.is_zero() {
            return Err(E::ZeroRecoveryDelay);
        }
        if self.recovery_interval.is_zero() {
            return Err(E::ZeroRecoveryInterval);
        }
        if self.recovery_step_ppm == 0 {
            return Err(E::ZeroRecoveryStep);
        }
        if self.recovery_step_ppm > Ratio::SCALE {
            return Err(E::RecoveryStepAboveOne);
        }
        if self.ban_default.is_zero() {
            return Err(E::ZeroBanDefault);
        }
        if self.ban_default > self.ban_max {
            return Err(E::BanDefaultAboveMax);
        }
        Ok(())
    }

    /// The wait after `streak` earlier 418s of unknown length:
    /// `ban_default * 3^streak`, capped at `ban_max`.
    pub fn default_ban(&self, streak: u32) -> Duration {
        let factor = BAN_GROWTH.checked_pow(streak).unwrap_or(u64::MAX);
        self.ban_default.saturating_mul(factor).min(self.ban_max)
    }

    /// How many probes of the unknown-length schedule reach a real ban of
    /// length `ban` that began when the first 418 was answered, if each
    /// probe's answer comes back at once: the number of probe instants
    /// (`ban_default`, then each further wait added) strictly before `ban`.
    /// The presets give at most 2 for every `ban` up to 650 s.
    pub fn probes_into_ban(&self, ban: Duration) -> u32 {
        let mut at = Duration::ZERO;
        let mut probes = 0u32;
        loop {
            let step = self.default_ban(probes);
            if step.is_zero() {
                return u32::MAX;
            }
            at = at.saturating_add(step);
            if at >= ban || probes == u32::MAX {
                return probes;
            }
            probes += 1;
            if step == self.ban_max {
                // Every later wait is `ban_max`: count them at once.
                let more = (ban - at).as_nanos().saturating_sub(1) / step.as_nanos();
                return probes.saturating_add(u32::try_from(more).unwrap_or(u32::MAX));
            }
        }
    }
}

/// How much each wait of the unknown-length ban schedule grows over the one
/// before it (see [`AdaptiveConfig`]).
pub const BAN_GROWTH: u64 = 3;

/// How long a group holds its requests after sending a ban probe whose
/// answer has not been reported (a dropped permit); then it probes again.
pub const BAN_PROBE_HOLD: Duration = Duration::from_secs(30);

impl Default for AdaptiveConfig {
    /// [`AdaptiveConfig::conservative`].
    fn default() -> Self {
        Self::conservative()
    }
}

/// A named [`AdaptiveConfig`] preset, e.g. from a configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Strategy {
    /// [`AdaptiveConfig::conservative`] (the default).
    #[default]
    Conservative,
    /// [`AdaptiveConfig::balanced`].
    Balanced,
    /// [`AdaptiveConfig::aggressive`].
    Aggressive,
}

impl Strategy {
    /// Every strategy, mildest reaction last.
    pub const ALL: [Strategy; 3] = [Self::Conservative, Self::Balanced, Self::Aggressive];

    /// The preset this name stands for.
    pub const fn config(self) -> AdaptiveConfig {
        match self {
            Self::Conservative => AdaptiveConfig::conservative(),
            Self::Balanced => AdaptiveConfig::balanced(),
            Self::Aggressive => AdaptiveConfig::aggressive(),
        }
    }

    /// The lower-case name, as accepted by [`FromStr`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Conservative => "conservative",
            Self::Balanced => "balanced",
            Self::Aggressive => "aggressive",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a [`Strategy`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StrategyParseError {
    /// Not one of `conservative`, `balanced`, `aggressive`.
    Unknown,
}

impl fmt::Display for StrategyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown strategy; expected conservative, balanced or aggressive")
    }
}

impl core::error::Error for StrategyParseError {}

impl FromStr for Strategy {
    type Err = StrategyParseError;
    /// ASCII case-insensitive; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, StrategyParseError> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or(StrategyParseError::Unknown)
    }
}

/// The adaptive rate ratio of one group, and its 418 ban.
///
/// Inputs are `on_429`, `on_418` and `on_success`, each with the `now` at which
/// the response arrived; outputs are [`ratio`](Self::ratio),
/// [`banned_until`](Self::banned_until) and [`next_change`](Self::next_change).
///
/// # Reduction
///
/// 429s are counted until a success resets the count. When the count reaches
/// `error_threshold`, and on every further 429, the ratio as it stands at `now`
/// (recovery included) is multiplied by `reduction`, but never taken below
/// `min_ratio` (and never raised to it either, should it already be lower).
///
/// # Recovery
///
/// Let `P` be the recovery anchor: the latest 429 (any 429, counted or not) or
/// the end of the latest ban, whichever is later, and `r0` the ratio set at `P`.
/// With `d = recovery_delay`, `i = recovery_interval`, `s = recovery_step_ppm`:
///
/// ```text
/// ratio(now) = r0                           if now < P + d
///            = min(1.0, r0 + k * s)         if now >= P + d,
///              where k = 1 + (now - (P + d)) / i   (integer division)
/// ```
///
/// So the first step lands exactly at `P + d` and the `k`-th at
/// `P + d + (k - 1) * i`. Successes never raise the ratio; only quiet time does.
///
/// # Bans (418)
///
/// A 418 blocks the group until `now + ban` when the response said how long,
/// else `now + ban_default * 3^n`, capped at `ban_max`, where `n` counts the
/// earlier 418s of the current streak, and then requires a probe: when that
/// wait is over, the first admission is the probe
/// ([`on_admitted`](Self::on_admitted)), and the group admits nothing more
/// until its answer is reported ([`on_answer`](Self::on_answer)) or
/// [`BAN_PROBE_HOLD`] has passed. A 418 answer starts the next wait; any other
/// answer ends the ban; no answer (timeout, 5xx) makes the next admission
/// the probe again. The streak ends (and `n` returns to zero)
/// once a 418 arrives `ban_max` or more after the previous ban ended. A 418 that
/// arrives while a ban is still in force is taken as an echo of that ban (a
/// response to a request sent before it): it may lengthen the ban when it states
/// a longer one, but it neither advances the streak nor reduces the ratio again.
/// A ban is never shortened. A fresh 418 also reduces the ratio once (regardless
/// of `error_threshold`) and moves the recovery anchor to the ban's end: time
/// spent banned does not count as quiet time.
///
/// # Time
///
/// Every method takes `now`; an instant earlier than one already seen is read
/// as the latest seen ("no time passed"), so a clock stepping back can never
/// release a ban or advance recovery early. `Instant::MAX` means "never": a ban
/// ending there is never over and a recovery anchored there never starts.
#[derive(Clone, Debug)]
pub struct Adaptive {
    config: AdaptiveConfig,
    /// The ratio at the recovery anchor.
    base: Ratio,
    /// When the first recovery step lands (anchor + delay, see `set_config`).
    first_step: Instant,
    /// The recovery anchor: latest 429 or ban end.
    anchor: Instant,
    consecutive_429: u32,
    banned_until: Instant,
    /// 418s in the current streak.
    ban_streak: u32,
    /// The probe of a ban whose length was not stated.
    probe: Probe,
    /// The latest `now` seen; earlier ones are read as this.
    last_seen: Instant,
}

impl Adaptive {
    /// Full speed, no ban, nothing counted; or why `config` is refused.
    pub fn new(config: AdaptiveConfig) -> Result<Self, AdaptiveConfigError> {
        config.validate()?;
        Ok(Self::from_valid(config))
    }

    /// As [`Adaptive::new`], for a configuration already validated.
    pub(crate) fn from_valid(config: AdaptiveConfig) -> Self {
        Self {
            config,
            base: Ratio::ONE,
            first_step: Instant::ZERO,
            anchor: Instant::ZERO,
            consecutive_429: 0,
            banned_until: Instant::ZERO,
            ban_streak: 0,
            probe: Probe::None,
            last_seen: Instant::ZERO,
        }
    }

    /// The ratio at `now`, recovery included (see the type's docs for the formula).
    pub fn ratio(&self, now: Instant) -> Ratio {
        let now = self.at(now);
        if self.base == Ratio::ONE || !reached(now, self.first_step) {
            return self.base;
        }
        let interval = self.config.recovery_interval.as_nanos().max(1);
        let steps = ((now - self.first_step).as_nanos() / interval).saturating_add(1);
        self.base
            .raised_by(steps.saturating_mul(u64::from(self.config.recovery_step_ppm)))
    }

    /// The next instant after `now` at which [`ratio`](Self::ratio) changes by
    /// itself (the next recovery step), or `None` when it will not: at 1.0, with
    /// a zero step, or when the step would only come at `Instant::MAX`.
    ///
    /// Bans are not included; see [`banned_until`](Self::banned_until).
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let now = self.at(now);
        if self.ratio(now) == Ratio::ONE || self.config.recovery_step_ppm == 0 {
            return None;
        }
        let next = if now < self.first_step {
            self.first_step
        } else {
            let interval = self.config.recovery_interval.max(Duration::from_nanos(1));
            let done = (now - self.first_step).as_nanos() / interval.as_nanos();
            self.first_step + interval.saturating_mul(done.saturating_add(1))
        };
        (next != Instant::MAX).then_some(next)
    }

    /// A 429 arrived at `now`: counts it, restarts the recovery clock and, once
    /// the count reaches `error_threshold`, reduces the ratio. Returns the ratio
    /// in force from now on.
    pub fn on_429(&mut self, now: Instant) -> Ratio {
        let now = self.observe(now);
        self.consecutive_429 = self.consecutive_429.saturating_add(1);
        let current = self.ratio(now);
        let next = if self.consecutive_429 >= self.config.error_threshold {
            self.reduced(current)
        } else {
            current
        };
        self.restart_recovery(next, now);
        next
    }

    /// A 418 arrived at `now`, with the ban's length when the response stated
    /// one. Blocks the group (see the type's docs) and returns the end of the
    /// ban now in force, which is never earlier than before.
    pub fn on_418(&mut self, now: Instant, ban: Option<Duration>) -> Instant {
        let now = self.observe(now);
        if reached(now, self.banned_until) {
            // A fresh ban, not an echo of the one in force.
            if reached(now, self.banned_until.saturating_add(self.config.ban_max)) {
                self.ban_streak = 0;
            }
            let length = ban.unwrap_or_else(|| self.config.default_ban(self.ban_streak));
            self.ban_streak = self.ban_streak.saturating_add(1);
            self.probe = if ban.is_some() { Probe::None } else { Probe::Due };
            self.banned_until = self.banned_until.max(now + length);
            let reduced = self.reduced(self.ratio(now));
            self.restart_recovery(reduced, self.banned_until);
        } else if let Some(length) = ban {
            // The ban's length is known now: no probe is needed.
            self.probe = Probe::None;
            let until = now + length;
            if until > self.banned_until {
                self.banned_until = until;
                let current = self.ratio(now);
                self.restart_recovery(current, until);
            }
        }
        self.banned_until
    }

    /// The end of the latest ban (`Instant::ZERO` if there never was one). The
    /// group must send nothing before it; `Instant::MAX` means until reset by hand.
    pub fn banned_until(&self) -> Instant {
        self.banned_until
    }

    /// Until when the group must send nothing: the ban, or while a ban probe
    /// is out, its hold.
    pub fn blocked_until(&self) -> Instant {
        match self.probe {
            Probe::InFlight { hold_until, .. } => self.banned_until.max(hold_until),
            _ => self.banned_until,
        }
    }

    /// Whether the next admission (at `now`, after the ban) must be a probe:
    /// the ban in force had no stated length and no answer has ended it.
    pub fn probe_due(&self, now: Instant) -> bool {
        match self.probe {
            Probe::None => false,
            Probe::Due => true,
            Probe::InFlight { hold_until, .. } => reached(self.at(now), hold_until),
        }
    }

    /// Whether a ban of unknown length is being waited out or probed.
    pub fn probing(&self) -> bool {
        self.probe != Probe::None
    }

    /// Until when the *other* groups of the scope should wait after this
    /// group's ban of unknown length: the end of the next wait, as if the
    /// probe failed. They are released earlier when the probe passes. For a
    /// stated ban, its end.
    pub fn scope_hold(&self) -> Instant {
        if self.probe == Probe::None {
            return self.banned_until;
        }
        self.banned_until
            .saturating_add(self.config.default_ban(self.ban_streak))
    }

    /// Admission `seq` went at `now`; if a probe was due it was the probe, and
    /// `true` is returned: hold everything else until its answer.
    pub fn on_admitted(&mut self, seq: u64, now: Instant) -> bool {
        let now = self.observe(now);
        if !self.probe_due(now) {
            return false;
        }
        self.probe = Probe::InFlight {
            seq,
            hold_until: now.saturating_add(BAN_PROBE_HOLD),
        };
        true
    }

    /// The answer to admission `seq` was reported: `Some(true)` a response
    /// that was not a 418, `Some(false)` a 418, `None` no response or a 5xx.
    /// Returns whether it was the probe and it ended the ban. (A 418 answer
    /// goes through [`on_418`](Self::on_418) as well, which starts the next
    /// wait.)
    pub fn on_answer(&mut self, seq: u64, answer: Option<bool>) -> bool {
        let Probe::InFlight { seq: probe, .. } = self.probe else {
            return false;
        };
        if probe != seq {
            return false;
        }
        match answer {
            Some(true) => {
                self.probe = Probe::None;
                true
            }
            Some(false) => false,
            None => {
                self.probe = Probe::Due;
                false
            }
        }
    }

    /// A request succeeded: the consecutive-429 count starts over. The ratio is
    /// left alone; only quiet time raises it.
    pub fn on_success(&mut self, now: Instant) {
        self.observe(now);
        self.consecutive_429 = 0;
    }

    /// 429s since the last success.
    pub fn consecutive_429(&self) -> u32 {
        self.consecutive_429
    }

    /// The configuration in force.
    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    /// Replaces the configuration at `now`, keeping the state.
    ///
    /// The ratio in force at `now` is kept as it is: a new `min_ratio` only bounds
    /// later reductions, so a ratio below the new floor stays there and a change
    /// never raises the ratio. When the recovery schedule changes, the next step
    /// lands at the later of `anchor + new recovery_delay` and
    /// `now + new recovery_interval`, and every `recovery_interval` after that;
    /// so a longer delay (emergency mode) holds recovery back and a shorter one
    /// cannot cause a jump at the moment of the change. Bans in force and the
    /// 418 streak are kept.
    pub fn set_config(&mut self, config: AdaptiveConfig, now: Instant) -> Result<(), AdaptiveConfigError> {
        config.validate()?;
        let now = self.observe(now);
        let old = self.config;
        if config == old {
            return Ok(());
        }
        let schedule_changed = config.recovery_delay != old.recovery_delay
            || config.recovery_interval != old.recovery_interval
            || config.recovery_step_ppm != old.recovery_step_ppm;
        if schedule_changed {
            self.base = self.ratio(now);
            self.first_step = (self.anchor + config.recovery_delay).max(now + config.recovery_interval);
        }
        self.config = config;
        Ok(())
    }

    /// `current * reduction`, floored at `min_ratio` but never above `current`.
    fn reduced(&self, current: Ratio) -> Ratio {
        current
            .scaled_by(self.config.reduction)
            .max(self.config.min_ratio)
            .min(current)
    }

    /// Sets the ratio to `ratio` as of anchor `at`; the anchor never moves back.
    fn restart_recovery(&mut self, ratio: Ratio, at: Instant) {
        self.base = ratio;
        self.anchor = self.anchor.max(at);
        self.first_step = self.first_step.max(self.anchor + self.config.recovery_delay);
    }

    /// The server's answers show that we have been alone on the budget since
    /// before the latest 429: the reduction it caused is lifted at `now`.
    pub fn end_reduction(&mut self, now: Instant) {
        self.observe(now);
        self.base = Ratio::ONE;
        self.consecutive_429 = 0;
    }

    /// Records `now` and returns the instant to act at (never earlier than seen).
    fn observe(&mut self, now: Instant) -> Instant {
        self.last_seen = self.last_seen.max(now);
        self.last_seen
    }

    /// The instant to read state at (never earlier than seen).
    fn at(&self, now: Instant) -> Instant {
        self.last_seen.max(now)
    }
}

/// Where the probe of a ban of unknown length is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// No ban of unknown length.
    None,
    /// The next admission after the ban is the probe.
    Due,
    /// Admission `seq` is the probe; nothing else goes until its answer or
    /// `hold_until`.
    InFlight { seq: u64, hold_until: Instant },
}

/// Whether `now` is at or past `t`; `Instant::MAX` is never reached.
fn reached(now: Instant, t: Instant) -> bool {
    t != Instant::MAX && now >= t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(secs)
    }

    fn ppm(r: Ratio) -> u32 {
        r.ppm()
    }

    const NS: Duration = Duration::from_nanos(1);

    #[test]
    fn first_429_reduces_to_point_eight() {
        let mut a = Adaptive::new(AdaptiveConfig::default()).unwrap();
        assert_eq!(a.ratio(at(0)), Ratio::ONE);
        assert_eq!(a.next_change(at(0)), None);
        assert_eq!(ppm(a.on_429(at(10))), 800_000);
        assert_eq!(ppm(a.ratio(at(10))), 800_000);
        assert_eq!(a.consecutive_429(), 1);
    }

    #[test]
    fn ending_the_reduction_restores_full_speed_and_the_count() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        a.on_429(at(10));
        a.on_429(at(11));
        a.end_reduction(at(20));
        assert_eq!(a.ratio(at(20)), Ratio::ONE);
        assert_eq!(a.consecutive_429(), 0);
        assert_eq!(a.next_change(at(20)), None);
        // The next 429 reduces from full speed again.
        assert_eq!(ppm(a.on_429(at(30))), 800_000);
    }

    #[test]
    fn repeated_429s_stop_at_the_floor() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        let seen: [u32; 5] = core::array::from_fn(|_| ppm(a.on_429(at(1))));
        assert_eq!(seen, [800_000, 640_000, 512_000, 500_000, 500_000]);
        assert_eq!(a.consecutive_429(), 5);
    }

    #[test]
    fn recovery_steps_land_exactly_on_schedule() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        let t0 = at(100);
        a.on_429(t0);
        // First step at t0 + 300 s, then every 30 s, capped at 1.0.
        let schedule = [
            (400, 850_000, Some(430)),
            (430, 900_000, Some(460)),
            (460, 950_000, Some(490)),
            (490, 1_000_000, None),
        ];
        assert_eq!(ppm(a.ratio(at(400) - NS)), 800_000);
        assert_eq!(a.next_change(t0), Some(at(400)));
        assert_eq!(a.next_change(at(400) - NS), Some(at(400)));
        for (t, expected, next) in schedule {
            assert_eq!(ppm(a.ratio(at(t) - NS)), expected - 50_000, "just before {t} s");
            assert_eq!(ppm(a.ratio(at(t))), expected, "at {t} s");
            assert_eq!(a.next_change(at(t)), next.map(at), "next after {t} s");
        }
        assert_eq!(a.ratio(at(100_000)), Ratio::ONE);
    }

    #[test]
    fn from_the_floor_full_speed_takes_570_seconds() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        for _ in 0..4 {
            a.on_429(at(0));
        }
        assert_eq!(ppm(a.ratio(at(0))), 500_000);
        assert_eq!(ppm(a.ratio(at(570) - NS)), 950_000);
        assert_eq!(a.ratio(at(570)), Ratio::ONE);
        assert_eq!(a.next_change(at(569)), Some(at(570)));
    }

    #[test]
    fn a_429_during_recovery_reduces_the_recovered_ratio_and_restarts_the_clock() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        a.on_429(at(0));
        assert_eq!(ppm(a.ratio(at(330))), 900_000);
        assert_eq!(ppm(a.on_429(at(330))), 720_000);
        assert_eq!(ppm(a.ratio(at(630) - NS)), 720_000);
        assert_eq!(ppm(a.ratio(at(630))), 770_000);
    }

    #[test]
    fn success_resets_the_count_but_never_raises_the_ratio() {
        let mut a = Adaptive::new(AdaptiveConfig::aggressive()).unwrap();
        // Threshold 2: one isolated 429 is tolerated.
        assert_eq!(a.on_429(at(0)), Ratio::ONE);
        a.on_success(at(1));
        assert_eq!(a.consecutive_429(), 0);
        assert_eq!(a.on_429(at(2)), Ratio::ONE);
        assert_eq!(ppm(a.on_429(at(3))), 900_000);
        // Every 429 beyond the threshold reduces again.
        assert_eq!(ppm(a.on_429(at(4))), 810_000);
        for t in 5..20 {
            a.on_success(at(t));
            assert_eq!(ppm(a.ratio(at(t))), 810_000);
        }
    }

    #[test]
    fn an_uncounted_429_still_restarts_recovery() {
        let mut a = Adaptive::new(AdaptiveConfig::aggressive()).unwrap();
        a.on_429(at(0));
        a.on_429(at(0));
        a.on_success(at(1));
        // Below the threshold: no reduction, but the quiet time starts over.
        assert_eq!(ppm(a.on_429(at(50))), 900_000);
        assert_eq!(ppm(a.ratio(at(60))), 900_000);
        assert_eq!(ppm(a.ratio(at(110))), 1_000_000);
    }

    #[test]
    fn ban_without_a_duration_triples_up_to_the_cap() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        let mut t = at(0);
        for secs in [50, 150, 450, 1_350, 3_600, 3_600] {
            let until = a.on_418(t, None);
            assert_eq!(until, t + Duration::from_secs(secs));
            assert_eq!(a.banned_until(), until);
            t = until;
        }
    }

    #[test]
    fn ban_with_a_duration_is_used_as_given_and_never_shortened() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        assert_eq!(a.banned_until(), Instant::ZERO);
        assert_eq!(a.on_418(at(0), Some(Duration::from_secs(10))), at(10));
        // An echo with a shorter ban does not shorten it ...
        assert_eq!(a.on_418(at(1), Some(Duration::from_secs(1))), at(10));
        // ... nor does one without a duration escalate it ...
        assert_eq!(a.on_418(at(2), None), at(10));
        // ... but a longer one lengthens it.
        assert_eq!(a.on_418(at(3), Some(Duration::from_secs(100))), at(103));
        // The echoes did not count: the next fresh default is the 2nd of the streak.
        assert_eq!(a.on_418(at(103), None), at(253));
        // A server ban longer than ban_max is honoured.
        assert_eq!(a.on_418(at(253), Some(Duration::from_secs(86_400))), at(86_653));
    }

    #[test]
    fn the_ban_streak_resets_after_a_quiet_ban_max() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        a.on_418(at(0), None);
        assert_eq!(a.on_418(at(50), None), at(200));
        let mut quiet = a.clone();
        // 3 599 s after the last ban ended: the streak goes on (450 s).
        assert_eq!(a.on_418(at(200 + 3_599), None), at(200 + 3_599 + 450));
        // 3 600 s after: back to the default.
        assert_eq!(quiet.on_418(at(200 + 3_600), None), at(200 + 3_600 + 50));
    }

    #[test]
    fn a_ban_reduces_the_ratio_once_and_recovery_waits_for_its_end() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        assert_eq!(a.on_418(at(0), None), at(50));
        assert_eq!(ppm(a.ratio(at(0))), 800_000);
        assert_eq!(a.consecutive_429(), 0);
        // Echoes do not reduce again.
        a.on_418(at(1), None);
        a.on_418(at(2), Some(Duration::from_secs(5)));
        assert_eq!(ppm(a.ratio(at(2))), 800_000);
        // Recovery starts at ban end + 300 s.
        assert_eq!(a.next_change(at(2)), Some(at(350)));
        assert_eq!(ppm(a.ratio(at(350) - NS)), 800_000);
        assert_eq!(ppm(a.ratio(at(350))), 850_000);
        // A 429 in the ban's shadow does not pull the anchor back.
        let mut b = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        b.on_418(at(0), Some(Duration::from_secs(600)));
        b.on_429(at(10));
        assert_eq!(b.next_change(at(10)), Some(at(900)));
    }

    #[test]
    fn time_going_backwards_reads_as_no_time_passed() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        a.on_429(at(1_000));
        assert_eq!(ppm(a.ratio(Instant::ZERO)), 800_000);
        assert_eq!(a.next_change(Instant::ZERO), Some(at(1_300)));
        // A stale 429 is anchored at the latest instant seen.
        a.on_429(at(0));
        assert_eq!(ppm(a.ratio(at(1_300) - NS)), 640_000);
        assert_eq!(ppm(a.ratio(at(1_300))), 690_000);

        // Recovery seen once is not undone by an earlier `now`.
        a.on_success(at(1_300));
        assert_eq!(ppm(a.ratio(at(500))), 690_000);

        // A ban is never released by a clock that stepped back.
        let until = a.on_418(at(2_000), None);
        assert_eq!(until, at(2_050));
        assert_eq!(a.on_418(at(10), None), until);
        assert_eq!(a.on_418(at(10), Some(Duration::from_secs(1))), until);
        assert_eq!(a.banned_until(), until);
    }

    #[test]
    fn huge_time_jumps_saturate_without_panicking() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        a.on_429(at(0));
        assert_eq!(a.ratio(Instant::MAX), Ratio::ONE);
        assert_eq!(a.next_change(Instant::MAX), None);
        // A ban at the end of time never ends, and recovery never starts.
        assert_eq!(a.on_418(Instant::MAX, None), Instant::MAX);
        assert_eq!(ppm(a.ratio(Instant::MAX)), 800_000);
        assert_eq!(a.next_change(Instant::MAX), None);
        assert_eq!(ppm(a.on_429(Instant::MAX)), 640_000);

        let mut b = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        assert_eq!(b.on_418(at(5), Some(Duration::MAX)), Instant::MAX);
        assert_eq!(b.on_418(at(6), None), Instant::MAX);
        assert_eq!(b.next_change(at(6)), None);

        // Just short of the end: the schedule saturates instead of wrapping.
        let near = Instant::MAX - Duration::from_secs(10);
        let mut c = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        c.on_429(near);
        assert_eq!(ppm(c.ratio(Instant::MAX)), 800_000);
        assert_eq!(c.next_change(near), None);
    }

    #[test]
    fn set_config_never_raises_the_ratio() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        for _ in 0..4 {
            a.on_429(at(0));
        }
        assert_eq!(ppm(a.ratio(at(0))), 500_000);
        // Balanced has a floor of 0.6; the ratio stays at 0.5 ...
        a.set_config(AdaptiveConfig::balanced(), at(10)).unwrap();
        assert_eq!(ppm(a.ratio(at(10))), 500_000);
        assert_eq!(a.config(), &AdaptiveConfig::balanced());
        // ... and the next 429 cannot lift it to the floor either.
        assert_eq!(ppm(a.on_429(at(11))), 500_000);
    }

    #[test]
    fn set_config_moves_the_schedule_without_a_jump() {
        // A shorter delay applies from the last 429 when it has not elapsed yet.
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        a.on_429(at(0));
        a.set_config(AdaptiveConfig::balanced(), at(100)).unwrap();
        assert_eq!(a.next_change(at(100)), Some(at(120)));
        assert_eq!(ppm(a.ratio(at(120))), 850_000);
        assert_eq!(ppm(a.ratio(at(135))), 900_000);

        // When it has elapsed, the next step is one new interval away.
        let mut b = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        b.on_429(at(0));
        assert_eq!(ppm(b.ratio(at(350))), 900_000);
        b.set_config(AdaptiveConfig::balanced(), at(350)).unwrap();
        assert_eq!(ppm(b.ratio(at(350))), 900_000);
        assert_eq!(ppm(b.ratio(at(365) - NS)), 900_000);
        assert_eq!(ppm(b.ratio(at(365))), 950_000);

        // A longer delay (emergency) holds recovery back from the last 429.
        let emergency = AdaptiveConfig {
            recovery_delay: Duration::from_secs(600),
            ..AdaptiveConfig::conservative()
        };
        let mut c = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        c.on_429(at(0));
        c.set_config(emergency, at(100)).unwrap();
        assert_eq!(c.next_change(at(100)), Some(at(600)));
        assert_eq!(ppm(c.ratio(at(599))), 800_000);

        // Changing only the ban numbers leaves the schedule alone.
        let mut d = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        d.on_429(at(0));
        let bans = AdaptiveConfig {
            ban_max: Duration::from_secs(7_200),
            ..AdaptiveConfig::conservative()
        };
        d.set_config(bans, at(310)).unwrap();
        assert_eq!(ppm(d.ratio(at(330))), 900_000);
    }

    #[test]
    fn unvalidated_configs_are_refused() {
        let nonsense = AdaptiveConfig {
            error_threshold: 0,
            reduction: Ratio::ONE,
            min_ratio: Ratio::ONE,
            recovery_delay: Duration::ZERO,
            recovery_interval: Duration::ZERO,
            recovery_step_ppm: u32::MAX,
            ban_default: Duration::MAX,
            ban_max: Duration::ZERO,
        };
        assert_eq!(
            Adaptive::new(nonsense).map(|_| ()),
            Err(AdaptiveConfigError::ZeroErrorThreshold)
        );
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        assert_eq!(
            a.set_config(nonsense, at(1)),
            Err(AdaptiveConfigError::ZeroErrorThreshold)
        );
        assert_eq!(a.config(), &AdaptiveConfig::conservative());
    }

    #[test]
    fn the_ratio_at_the_end_of_time_does_not_overflow() {
        // The smallest schedule validation accepts: 1 ns delay and interval.
        let config = AdaptiveConfig {
            recovery_delay: NS,
            recovery_interval: NS,
            ..AdaptiveConfig::conservative()
        };
        let mut a = Adaptive::new(config).unwrap();
        a.on_429(at(0));
        assert_eq!(a.ratio(Instant::MAX), Ratio::ONE);
        assert_eq!(a.next_change(Instant::MAX), None);
    }

    #[test]
    fn presets_validate_and_default_is_conservative() {
        for s in Strategy::ALL {
            assert_eq!(s.config().validate(), Ok(()), "{s}");
        }
        assert_eq!(AdaptiveConfig::default(), AdaptiveConfig::conservative());
        assert_eq!(Strategy::default().config(), AdaptiveConfig::conservative());
        let c = AdaptiveConfig::conservative();
        assert_eq!(c.error_threshold, 1);
        assert_eq!((ppm(c.reduction), ppm(c.min_ratio)), (800_000, 500_000));
        assert_eq!(c.recovery_delay, Duration::from_secs(300));
        assert_eq!(c.recovery_interval, Duration::from_secs(30));
        assert_eq!(c.recovery_step_ppm, 50_000);
        assert_eq!(c.ban_default, Duration::from_secs(50));
        assert_eq!(c.ban_max, Duration::from_secs(3_600));
    }

    #[test]
    fn presets_get_back_to_full_speed_as_documented() {
        for (strategy, floor_to_one) in [
            (Strategy::Conservative, 570),
            (Strategy::Balanced, 225),
            (Strategy::Aggressive, 80),
        ] {
            let config = strategy.config();
            let mut a = Adaptive::new(config).unwrap();
            for _ in 0..100 {
                a.on_429(at(0));
            }
            assert_eq!(a.ratio(at(0)), config.min_ratio, "{strategy}");
            assert!(a.ratio(at(floor_to_one) - NS) < Ratio::ONE, "{strategy}");
            assert_eq!(a.ratio(at(floor_to_one)), Ratio::ONE, "{strategy}");
        }
    }

    #[test]
    fn bad_configs_are_rejected_with_the_right_error() {
        use AdaptiveConfigError as E;
        let d = AdaptiveConfig::conservative();
        let bad = |edit: fn(&mut AdaptiveConfig)| {
            let mut c = d;
            edit(&mut c);
            c
        };
        let cases: [(AdaptiveConfig, E); 9] = [
            (bad(|c| c.error_threshold = 0), E::ZeroErrorThreshold),
            (bad(|c| c.reduction = Ratio::ONE), E::NoReduction),
            (bad(|c| c.recovery_delay = Duration::ZERO), E::ZeroRecoveryDelay),
            (
                bad(|c| c.recovery_interval = Duration::ZERO),
                E::ZeroRecoveryInterval,
            ),
            (bad(|c| c.recovery_step_ppm = 0), E::ZeroRecoveryStep),
            (bad(|c| c.recovery_step_ppm = 1_000_001), E::RecoveryStepAboveOne),
            (bad(|c| c.ban_default = Duration::ZERO), E::ZeroBanDefault),
            (
                bad(|c| c.ban_default = Duration::from_secs(3_601)),
                E::BanDefaultAboveMax,
            ),
            (
                bad(|c| c.ban_max = Duration::from_secs(49)),
                E::BanDefaultAboveMax,
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected), "{config:?}");
            assert!(!std::format!("{expected}").is_empty());
        }
        assert_eq!(bad(|c| c.recovery_step_ppm = 1_000_000).validate(), Ok(()));
    }

    #[test]
    fn strategy_names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
            assert_eq!(std::format!("{s}"), s.as_str());
        }
        assert_eq!(" BALANCED ".parse::<Strategy>(), Ok(Strategy::Balanced));
        assert_eq!("Aggressive".parse::<Strategy>(), Ok(Strategy::Aggressive));
        assert_eq!("fast".parse::<Strategy>(), Err(StrategyParseError::Unknown));
        assert_eq!("".parse::<Strategy>(), Err(StrategyParseError::Unknown));
        assert_eq!(Strategy::Balanced.config(), AdaptiveConfig::balanced());
        assert_eq!(Strategy::Aggressive.config(), AdaptiveConfig::aggressive());
    }

    #[test]
    fn a_ban_of_unknown_length_is_probed_once_per_wait() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        assert!(!a.probing());
        assert_eq!(a.on_418(at(0), None), at(50));
        assert!(a.probing());
        // The siblings wait for the next wait's end unless the probe passes.
        assert_eq!(a.scope_hold(), at(200));
        assert!(a.probe_due(at(50)));
        // The first admission after the wait is the probe; it holds the group.
        assert!(a.on_admitted(7, at(50)));
        assert!(!a.probe_due(at(50)));
        assert_eq!(a.blocked_until(), at(50) + BAN_PROBE_HOLD);
        assert!(!a.on_admitted(8, at(51)));
        // Another request's answer changes nothing.
        assert!(!a.on_answer(6, Some(true)));
        assert!(a.probing());
        // The probe's 418 starts the next, tripled wait.
        assert!(!a.on_answer(7, Some(false)));
        assert_eq!(a.on_418(at(51), None), at(201));
        assert!(a.probe_due(at(201)));
        assert_eq!(a.blocked_until(), at(201));
        // No answer: the next admission probes again.
        assert!(a.on_admitted(9, at(201)));
        assert!(!a.on_answer(9, None));
        assert!(a.probe_due(at(202)));
        // An answer never reported: the hold runs out, then it probes again.
        assert!(a.on_admitted(10, at(202)));
        assert!(!a.probe_due(at(202) + BAN_PROBE_HOLD - NS));
        assert!(a.probe_due(at(202) + BAN_PROBE_HOLD));
        assert!(a.on_admitted(11, at(240)));
        // A success ends it.
        assert!(a.on_answer(11, Some(true)));
        assert!(!a.probing());
        assert_eq!(a.blocked_until(), at(201));
        assert!(!a.on_admitted(12, at(241)));
    }

    #[test]
    fn a_stated_length_needs_no_probe() {
        let mut a = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        a.on_418(at(0), Some(Duration::from_secs(30)));
        assert!(!a.probing());
        assert_eq!(a.scope_hold(), at(30));
        assert!(!a.on_admitted(1, at(30)));
        // An echo that states a length ends the guessing.
        let mut b = Adaptive::new(AdaptiveConfig::conservative()).unwrap();
        b.on_418(at(0), None);
        b.on_418(at(1), Some(Duration::from_secs(100)));
        assert!(!b.probing());
        assert_eq!(b.banned_until(), at(101));
    }

    #[test]
    fn presets_put_at_most_two_probes_into_a_ban_of_up_to_650_s() {
        for s in Strategy::ALL {
            let c = s.config();
            for secs in 1..=650 {
                let n = c.probes_into_ban(Duration::from_secs(secs));
                assert!(n <= 2, "{s}: {n} probes into {secs} s");
            }
            assert_eq!(c.probes_into_ban(Duration::from_secs(651)), 3, "{s}");
            assert_eq!(c.probes_into_ban(Duration::from_secs(50)), 0, "{s}");
            assert_eq!(c.probes_into_ban(Duration::from_secs(51)), 1, "{s}");
        }
        // The old numbers (60 s doubling) do not have the property.
        let old = AdaptiveConfig {
            ban_default: Duration::from_secs(60),
            ..AdaptiveConfig::conservative()
        };
        let doubling = |streak: u32| old.ban_default.saturating_mul(1 << streak).min(old.ban_max);
        let probes_600 = (0..).scan(Duration::ZERO, |t, k| {
            *t = t.saturating_add(doubling(k));
            Some(*t)
        });
        assert_eq!(
            probes_600.take_while(|t| *t < Duration::from_secs(600)).count(),
            3
        );
        // Nor does tripling from a first wait that is too short.
        let short = AdaptiveConfig {
            ban_default: Duration::from_secs(30),
            ..AdaptiveConfig::conservative()
        };
        assert_eq!(short.probes_into_ban(Duration::from_secs(600)), 3);
        // Long bans: every wait past the cap is `ban_max`.
        let c = AdaptiveConfig::conservative();
        // 50, 200, 650, 2 000, 5 600, 9 200, 12 800 s.
        assert_eq!(c.probes_into_ban(Duration::from_secs(4 * 3_600)), 7);
        assert_eq!(c.probes_into_ban(Duration::from_secs(12_800)), 6);
        assert_eq!(c.probes_into_ban(Duration::from_secs(12_801)), 7);
        assert!(c.probes_into_ban(Duration::MAX) > 1_000_000);
    }

    #[test]
    fn ratio_conversions() {
        assert_eq!(Ratio::try_from_f64(0.8).map(ppm), Ok(800_000));
        assert_eq!(Ratio::try_from_f64(0.123_456_7).map(ppm), Ok(123_457));
        assert_eq!(Ratio::try_from_f64(1e-9).map(ppm), Ok(1));
        assert_eq!(Ratio::try_from_f64(1.0), Ok(Ratio::ONE));
        for bad in [0.0, -0.5, 1.000_001, f64::NAN, f64::INFINITY] {
            assert_eq!(Ratio::try_from_f64(bad), Err(RatioError::OutOfRange), "{bad}");
        }
        assert_eq!(Ratio::try_from(500_000).map(ppm), Ok(500_000));
        assert_eq!(Ratio::try_from(0), Err(RatioError::OutOfRange));
        assert_eq!(Ratio::try_from(1_000_001), Err(RatioError::OutOfRange));
        assert_eq!(u32::from(Ratio::ONE), 1_000_000);
        // Reductions round down and never reach zero.
        let tiny = Ratio::from_ppm(1).unwrap();
        assert_eq!(tiny.scaled_by(Ratio::from_ppm(500_000).unwrap()), tiny);
        assert_eq!(Ratio::from_ppm(999_999).unwrap().raised_by(u64::MAX), Ratio::ONE);
    }
}
