//! Changing a running limiter's configuration: apply a new one (from a file
//! reload or code), and emergency mode with lazy expiry.
//!
//! [`Control`] keeps the operator's *base* configuration and, while emergency
//! mode is on, pushes a halved version of it to the limiter instead. Every
//! change goes through core's `GroupLimiter::set_config`, which keeps each
//! group's TAT, adaptive ratio and breaker state. Nothing runs in the
//! background: emergency mode ends on the first call at or after its end that
//! passes `now` (any method here, or [`crate::Instrumented`]'s `acquire`,
//! `status`, ...).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use upbit_limiter_core::limiter::{Limits, Policy};
use upbit_limiter_core::{Duration, Group, Instant, LimiterConfig, ServerLimit, SyncLimiter};

use crate::config::{validate, ConfigErrors};
use crate::telemetry;

/// The numbers of emergency mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmergencySettings {
    /// The adaptive `recovery_delay` while in emergency mode (default: 600 s);
    /// a group whose own delay is longer keeps its own.
    pub recovery_delay: Duration,
}

impl Default for EmergencySettings {
    fn default() -> Self {
        Self {
            recovery_delay: Duration::from_secs(600),
        }
    }
}

/// An emergency period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emergency {
    /// When it was entered.
    pub since: Instant,
    /// When it ends by itself ([`Instant::MAX`]: only when left by hand).
    pub until: Instant,
}

/// The emergency version of `base`: every group at half its rate and half its
/// burst and a recovery delay of at least `settings.recovery_delay`.
///
/// - A GCRA group gets core's [`Quota::halved`](upbit_limiter_core::Quota::halved)
///   as an explicit quota (halving a safe quota keeps it safe).
/// - An interval-log group is given windows of half the count: `N` per `W`
///   becomes `ceil(N/2)` per `W * 2 * ceil(N/2) / N` (5 per second for a
///   10/s group; 1 per 4 s for 1 per 2 s), which the log admits fewer of
///   than the server allows, so its guarantee holds as it is; an explicit
///   quota (its throttle) is halved too.
///
/// A group whose base configuration is refused keeps it (validation
/// reports it).
pub fn emergency_config(base: &LimiterConfig, settings: &EmergencySettings) -> LimiterConfig {
    let mut cfg = base.clone();
    for group in Group::ALL {
        let b = base.group(group);
        let Ok(quota) = b.quota() else { continue };
        let c = cfg.group_mut(group);
        if b.policy == Policy::IntervalLog {
            let halved: Vec<ServerLimit> = b.limits.as_slice().iter().map(|&l| halved_window(l)).collect();
            if let Some(limits) = Limits::new(&halved) {
                c.limits = limits;
            }
        }
        if b.policy == Policy::Gcra || b.quota.is_some() {
            c.quota = Some(quota.halved());
        }
        c.adaptive.recovery_delay = b.adaptive.recovery_delay.max(settings.recovery_delay);
    }
    cfg
}

/// `N` per `W` at half the rate and half the count: `ceil(N/2)` per
/// `W * 2 * ceil(N/2) / N` (saturating).
fn halved_window(l: ServerLimit) -> ServerLimit {
    let n = l.max_requests.max(1);
    let half = n.div_ceil(2);
    let window = u128::from(l.window.as_nanos()) * 2 * u128::from(half) / u128::from(n);
    ServerLimit::new(
        half,
        Duration::from_nanos(u64::try_from(window).unwrap_or(u64::MAX)),
    )
}

#[derive(Debug)]
struct State {
    base: LimiterConfig,
    settings: EmergencySettings,
    emergency: Option<Emergency>,
}

impl State {
    fn in_force(&self) -> LimiterConfig {
        match self.emergency {
            Some(_) => emergency_config(&self.base, &self.settings),
            None => self.base.clone(),
        }
    }
}

/// The operator's hold on a running [`SyncLimiter`]'s configuration.
///
/// Every method takes the limiter and `now` (on the limiter's clock). The
/// limiter must have been built from the `base` given to [`Control::new`].
#[derive(Debug)]
pub struct Control {
    state: Mutex<State>,
    /// The end of the emergency in force, or `u64::MAX`: the lock-free check
    /// that lets every acquisition look for an expiry.
    until: AtomicU64,
}

const NO_EMERGENCY: u64 = u64::MAX;

impl Control {
    /// Control over a limiter running `base`.
    pub fn new(base: LimiterConfig, settings: EmergencySettings) -> Self {
        Self {
            state: Mutex::new(State {
                base,
                settings,
                emergency: None,
            }),
            until: AtomicU64::new(NO_EMERGENCY),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every write
        // is a whole-value store), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The operator's configuration (what runs outside emergency mode).
    pub fn base(&self) -> LimiterConfig {
        self.lock().base.clone()
    }

    /// The configuration the limiter should be running now.
    pub fn in_force(&self) -> LimiterConfig {
        self.lock().in_force()
    }

    /// The emergency period in force, if any (as of the last call that passed `now`).
    pub fn emergency(&self) -> Option<Emergency> {
        self.lock().emergency
    }

    /// The emergency numbers.
    pub fn settings(&self) -> EmergencySettings {
        self.lock().settings
    }

    /// Makes `config` the base configuration, validating every group first
    /// (nothing changes if any group is refused). In emergency mode its
    /// halved version runs until the emergency ends. Returns the groups whose
    /// running configuration changed.
    pub fn apply(
        &self,
        limiter: &SyncLimiter,
        config: &LimiterConfig,
        now: Instant,
    ) -> Result<Vec<Group>, ConfigErrors> {
        validate(config)?;
        let mut s = self.lock();
        self.expire_locked(&mut s, limiter, now);
        s.base = config.clone();
        let changed = push(limiter, &s.in_force(), now);
        telemetry::config_applied(&changed, s.emergency.is_some());
        Ok(changed)
    }

    /// Replaces the emergency numbers; applies them at once if in emergency mode.
    pub fn set_settings(&self, limiter: &SyncLimiter, settings: EmergencySettings, now: Instant) {
        let mut s = self.lock();
        self.expire_locked(&mut s, limiter, now);
        s.settings = settings;
        if s.emergency.is_some() {
            push(limiter, &s.in_force(), now);
        }
    }

    /// Enters emergency mode for `duration` from `now` (or moves the end of
    /// the one in force). Refused, changing nothing, if a group's halved
    /// configuration does not validate.
    pub fn enter_emergency(
        &self,
        limiter: &SyncLimiter,
        duration: Duration,
        now: Instant,
    ) -> Result<Emergency, ConfigErrors> {
        let mut s = self.lock();
        self.expire_locked(&mut s, limiter, now);
        let halved = emergency_config(&s.base, &s.settings);
        validate(&halved)?;
        let emergency = Emergency {
            since: s.emergency.map_or(now, |e| e.since),
            until: now.saturating_add(duration),
        };
        s.emergency = Some(emergency);
        self.until.store(emergency.until.as_nanos(), Ordering::Release);
        push(limiter, &halved, now);
        telemetry::emergency_entered(&emergency, now);
        Ok(emergency)
    }

    /// Leaves emergency mode now, restoring the base configuration. Returns
    /// the period that ended, if one was in force.
    pub fn leave_emergency(&self, limiter: &SyncLimiter, now: Instant) -> Option<Emergency> {
        let mut s = self.lock();
        if self.expire_locked(&mut s, limiter, now).is_some() {
            return None;
        }
        let ended = s.emergency.take()?;
        self.until.store(NO_EMERGENCY, Ordering::Release);
        push(limiter, &s.base, now);
        telemetry::emergency_left(&ended, now, false);
        Some(ended)
    }

    /// Ends an emergency whose time is up, restoring the base configuration.
    /// Cheap (one atomic load) when there is nothing to do; call it with every
    /// `now` you have. Returns the period that ended.
    pub fn expire(&self, limiter: &SyncLimiter, now: Instant) -> Option<Emergency> {
        if now.as_nanos() < self.until.load(Ordering::Acquire) {
            return None;
        }
        let mut s = self.lock();
        self.expire_locked(&mut s, limiter, now)
    }

    fn expire_locked(&self, s: &mut State, limiter: &SyncLimiter, now: Instant) -> Option<Emergency> {
        let e = s.emergency?;
        if now < e.until {
            return None;
        }
        s.emergency = None;
        self.until.store(NO_EMERGENCY, Ordering::Release);
        // The change takes effect at the instant the period ended (or now, if
        // later: core never moves a group's clock backwards).
        push(limiter, &s.base, now);
        telemetry::emergency_left(&e, now, true);
        Some(e)
    }
}

/// Sets every group whose running configuration differs from `config`.
fn push(limiter: &SyncLimiter, config: &LimiterConfig, now: Instant) -> Vec<Group> {
    let mut changed = Vec::new();
    for group in Group::ALL {
        let g = limiter.group(group);
        let want = *config.group(group);
        if g.config() == want {
            continue;
        }
        match g.set_config(want, now) {
            Ok(()) => changed.push(group),
            // Only validated configurations get here; should core still refuse
            // one, the group keeps running what it had, and the log says so.
            Err(e) => telemetry::config_refused(&e),
        }
    }
    changed
}
