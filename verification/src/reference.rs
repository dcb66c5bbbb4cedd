//! Small reference models of the core's two state machines, written from their
//! documentation (the state diagram and the formulas in the type docs of
//! `Breaker` and `Adaptive`) in the plainest style available: explicit fields,
//! a `VecDeque` for the outcome window, loops instead of closed forms. The
//! property tests feed both the real machine and the model the same events
//! and compare every output.
//!
//! Configurations are read from the core's plain config structs, and answers
//! are given in the core's plain data types (`BreakerState`, `Transition`) so
//! that they can be compared; no behaviour is shared.

use std::collections::VecDeque;

use upbit_limiter_core::adaptive::AdaptiveConfig;
use upbit_limiter_core::breaker::{BreakerConfig, BreakerState, Transition};
use upbit_limiter_core::{Duration, Instant};

/// `now >= t`, where `Instant::MAX` stands for "never" and is never reached.
fn due(now: Instant, t: Instant) -> bool {
    t != Instant::MAX && now >= t
}

/// The breaker's modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Closed,
    Open,
    HalfOpen,
    Forced,
    Disabled,
}

impl Mode {
    fn view(self) -> BreakerState {
        match self {
            Mode::Closed => BreakerState::Closed,
            Mode::Open => BreakerState::Open,
            Mode::HalfOpen => BreakerState::HalfOpen,
            Mode::Forced => BreakerState::ForcedOpen,
            Mode::Disabled => BreakerState::Disabled,
        }
    }
}

/// Reference circuit breaker (assumes a validated [`BreakerConfig`]).
#[derive(Clone, Debug)]
pub struct RefBreaker {
    cfg: BreakerConfig,
    mode: Mode,
    failures_in_a_row: u32,
    /// Newest last; `true` is a failure.
    history: VecDeque<bool>,
    open_until: Instant,
    probes_out: u32,
    probes_ok: u32,
    probe_activity: Instant,
    reopens: u32,
    transitions: u32,
    clock: Instant,
}

/// How long a half-open caller refused for lack of a probe slot waits.
pub const PROBE_RETRY: Duration = Duration::from_millis(100);

impl RefBreaker {
    /// Closed, nothing recorded.
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            mode: Mode::Closed,
            failures_in_a_row: 0,
            history: VecDeque::new(),
            open_until: Instant::ZERO,
            probes_out: 0,
            probes_ok: 0,
            probe_activity: Instant::ZERO,
            reopens: 0,
            transitions: 0,
            clock: Instant::ZERO,
        }
    }

    /// The latest instant seen; earlier ones read as it.
    fn tick(&mut self, now: Instant) -> Instant {
        if now > self.clock {
            self.clock = now;
        }
        self.clock
    }

    /// `open_wait * multiplier^reopens`, capped at `open_wait_max`.
    fn open_period(&self) -> Duration {
        let mut d = self.cfg.open_wait;
        for _ in 0..self.reopens {
            if d >= self.cfg.open_wait_max {
                break;
            }
            d = d.saturating_mul(u64::from(self.cfg.open_wait_multiplier));
        }
        if d > self.cfg.open_wait_max {
            self.cfg.open_wait_max
        } else {
            d
        }
    }

    fn go(&mut self, mode: Mode, at: Instant) -> Transition {
        let from = self.mode.view();
        self.mode = mode;
        self.transitions = self.transitions.saturating_add(1);
        match mode {
            Mode::Closed => {
                self.failures_in_a_row = 0;
                self.history.clear();
            }
            Mode::HalfOpen => {
                self.probes_out = 0;
                self.probes_ok = 0;
                self.probe_activity = at;
            }
            _ => {}
        }
        Transition {
            from,
            to: mode.view(),
            at,
        }
    }

    fn trip(&mut self, at: Instant) -> Transition {
        self.open_until = at + self.open_period();
        self.go(Mode::Open, at)
    }

    /// Applies the time-driven changes due by `now`; the last one.
    fn settle(&mut self, now: Instant) -> Option<Transition> {
        let mut last = None;
        loop {
            if self.mode == Mode::Open && due(now, self.open_until) {
                let at = self.open_until;
                last = Some(self.go(Mode::HalfOpen, at));
                continue;
            }
            if self.mode == Mode::HalfOpen && self.probes_out > 0 {
                let escape = self.probe_activity + self.cfg.half_open_max_wait;
                if due(now, escape) {
                    self.reopens = self.reopens.saturating_add(1);
                    last = Some(self.trip(escape));
                    continue;
                }
            }
            return last;
        }
    }

    fn record(&mut self, failed: bool) {
        self.history.push_back(failed);
        while self.history.len() > usize::from(self.cfg.window) {
            self.history.pop_front();
        }
    }

    fn share_trips(&self) -> bool {
        let calls = self.history.len() as u64;
        if calls < u64::from(self.cfg.minimum_calls) {
            return false;
        }
        let failures = self.history.iter().filter(|&&f| f).count() as u64;
        failures * 1_000_000 >= u64::from(self.cfg.failure_rate_ppm) * calls
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        let mut copy = self.clone();
        let now = copy.tick(now);
        copy.settle(now);
        copy.mode.view()
    }

    /// Asks for one call; `Err((retry_at, forced))` when refused.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), (Instant, bool)> {
        let now = self.tick(now);
        self.settle(now);
        match self.mode {
            Mode::Closed | Mode::Disabled => Ok(()),
            Mode::Open => Err((self.open_until, false)),
            Mode::Forced => Err((Instant::MAX, true)),
            Mode::HalfOpen if self.probes_out < self.cfg.half_open_probes => {
                self.probes_out += 1;
                self.probe_activity = now;
                Ok(())
            }
            Mode::HalfOpen => {
                let escape = self.probe_activity + self.cfg.half_open_max_wait;
                let retry = now + PROBE_RETRY;
                Err((if escape < retry { escape } else { retry }, false))
            }
        }
    }

    /// A call succeeded.
    pub fn on_success(&mut self, now: Instant) -> Option<Transition> {
        let now = self.tick(now);
        self.settle(now);
        match self.mode {
            Mode::Closed => {
                self.failures_in_a_row = 0;
                self.record(false);
                if self.share_trips() {
                    Some(self.trip(now))
                } else {
                    None
                }
            }
            Mode::HalfOpen if self.probes_out > 0 => {
                self.probes_out -= 1;
                self.probes_ok += 1;
                self.probe_activity = now;
                if self.probes_ok >= self.cfg.half_open_successes {
                    self.reopens = 0;
                    Some(self.go(Mode::Closed, now))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// A call failed.
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        let now = self.tick(now);
        self.settle(now);
        match self.mode {
            Mode::Closed => {
                self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
                self.record(true);
                if self.failures_in_a_row >= self.cfg.consecutive_failures || self.share_trips() {
                    Some(self.trip(now))
                } else {
                    None
                }
            }
            Mode::HalfOpen if self.probes_out > 0 => {
                self.reopens = self.reopens.saturating_add(1);
                Some(self.trip(now))
            }
            _ => None,
        }
    }

    /// A call ended without an outcome.
    pub fn on_ignored(&mut self, now: Instant) {
        let now = self.tick(now);
        self.settle(now);
        if self.mode == Mode::HalfOpen && self.probes_out > 0 {
            self.probes_out -= 1;
            self.probe_activity = now;
        }
    }

    /// Forced open by hand.
    pub fn force_open(&mut self, now: Instant) -> Option<Transition> {
        let now = self.tick(now);
        self.settle(now);
        (self.mode != Mode::Forced).then(|| self.go(Mode::Forced, now))
    }

    /// Disabled by hand.
    pub fn disable(&mut self, now: Instant) -> Option<Transition> {
        let now = self.tick(now);
        self.settle(now);
        (self.mode != Mode::Disabled).then(|| self.go(Mode::Disabled, now))
    }

    /// Closed by hand, counters cleared.
    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        let now = self.tick(now);
        self.settle(now);
        self.reopens = 0;
        if self.mode == Mode::Closed {
            self.failures_in_a_row = 0;
            self.history.clear();
            None
        } else {
            Some(self.go(Mode::Closed, now))
        }
    }

    /// Applies what is due and returns the last change.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Transition> {
        let now = self.tick(now);
        self.settle(now)
    }

    /// When the breaker next changes by itself.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let mut copy = self.clone();
        let now = copy.tick(now);
        copy.settle(now);
        let at = match copy.mode {
            Mode::Open => copy.open_until,
            Mode::HalfOpen if copy.probes_out > 0 => copy.probe_activity + copy.cfg.half_open_max_wait,
            _ => return None,
        };
        (at != Instant::MAX).then_some(at)
    }

    /// State changes so far.
    pub fn transitions(&self) -> u32 {
        self.transitions
    }
}

/// Reference adaptive ratio (assumes a validated [`AdaptiveConfig`]); ratios
/// in parts per million.
#[derive(Clone, Debug)]
pub struct RefAdaptive {
    cfg: AdaptiveConfig,
    ppm: u32,
    /// Latest 429 or ban end.
    anchor: Instant,
    errors: u32,
    ban_end: Instant,
    streak: u32,
    clock: Instant,
}

const ONE: u32 = 1_000_000;

impl RefAdaptive {
    /// Full speed.
    pub fn new(cfg: AdaptiveConfig) -> Self {
        Self {
            cfg,
            ppm: ONE,
            anchor: Instant::ZERO,
            errors: 0,
            ban_end: Instant::ZERO,
            streak: 0,
            clock: Instant::ZERO,
        }
    }

    fn tick(&mut self, now: Instant) -> Instant {
        if now > self.clock {
            self.clock = now;
        }
        self.clock
    }

    fn first_step(&self) -> Instant {
        self.anchor + self.cfg.recovery_delay
    }

    /// `ratio(now)` in ppm: `r0` before `P + d`, then `min(1, r0 + k*s)` with
    /// `k = 1 + (now - (P + d)) / i`.
    pub fn ratio_ppm(&self, now: Instant) -> u32 {
        let now = if now > self.clock { now } else { self.clock };
        let first = self.first_step();
        if self.ppm == ONE || !due(now, first) {
            return self.ppm;
        }
        let k = 1 + u128::from((now - first).as_nanos()) / u128::from(self.cfg.recovery_interval.as_nanos());
        let raised = u128::from(self.ppm) + k * u128::from(self.cfg.recovery_step_ppm);
        raised.min(u128::from(ONE)) as u32
    }

    fn reduce(&self, current: u32) -> u32 {
        let scaled =
            (u64::from(current) * u64::from(self.cfg.reduction.ppm()) / u64::from(ONE)).max(1) as u32;
        scaled.max(self.cfg.min_ratio.ppm()).min(current)
    }

    fn restart(&mut self, ppm: u32, at: Instant) {
        self.ppm = ppm;
        if at > self.anchor {
            self.anchor = at;
        }
    }

    /// A 429; the ratio from now on, in ppm.
    pub fn on_429(&mut self, now: Instant) -> u32 {
        let now = self.tick(now);
        self.errors = self.errors.saturating_add(1);
        let current = self.ratio_ppm(now);
        let next = if self.errors >= self.cfg.error_threshold {
            self.reduce(current)
        } else {
            current
        };
        self.restart(next, now);
        next
    }

    /// The ban length for a 418 without one: `ban_default * 3^streak`, capped.
    fn default_ban(&self) -> Duration {
        let mut d = self.cfg.ban_default;
        for _ in 0..self.streak {
            if d >= self.cfg.ban_max {
                break;
            }
            d = d.saturating_mul(3);
        }
        if d > self.cfg.ban_max {
            self.cfg.ban_max
        } else {
            d
        }
    }

    /// A 418; the end of the ban in force.
    pub fn on_418(&mut self, now: Instant, ban: Option<Duration>) -> Instant {
        let now = self.tick(now);
        if due(now, self.ban_end) {
            if due(now, self.ban_end + self.cfg.ban_max) {
                self.streak = 0;
            }
            let length = ban.unwrap_or_else(|| self.default_ban());
            self.streak = self.streak.saturating_add(1);
            let end = now + length;
            if end > self.ban_end {
                self.ban_end = end;
            }
            let reduced = self.reduce(self.ratio_ppm(now));
            let at = self.ban_end;
            self.restart(reduced, at);
        } else if let Some(length) = ban {
            let end = now + length;
            if end > self.ban_end {
                self.ban_end = end;
                let current = self.ratio_ppm(now);
                self.restart(current, end);
            }
        }
        self.ban_end
    }

    /// A success.
    pub fn on_success(&mut self, now: Instant) {
        self.tick(now);
        self.errors = 0;
    }

    /// The next recovery step after `now`.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let now = if now > self.clock { now } else { self.clock };
        if self.ratio_ppm(now) == ONE {
            return None;
        }
        let first = self.first_step();
        let next = if now < first {
            first
        } else {
            let i = self.cfg.recovery_interval;
            let done = (now - first).as_nanos() / i.as_nanos();
            first + i.saturating_mul(done.saturating_add(1))
        };
        (next != Instant::MAX).then_some(next)
    }

    /// The end of the latest ban.
    pub fn banned_until(&self) -> Instant {
        self.ban_end
    }

    /// 429s since the last success.
    pub fn consecutive_429(&self) -> u32 {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Instant {
        Instant::ZERO + Duration::from_secs(n)
    }

    #[test]
    fn ref_breaker_opens_on_the_fifth_failure_and_half_opens_after_30_s() {
        let mut b = RefBreaker::new(BreakerConfig::default());
        for _ in 0..4 {
            assert_eq!(b.on_failure(s(100)), None);
        }
        let t = b.on_failure(s(100)).expect("fifth failure trips");
        assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
        assert_eq!(b.try_acquire(s(110)), Err((s(130), false)));
        assert_eq!(b.state(s(130)), BreakerState::HalfOpen);
        for _ in 0..3 {
            assert_eq!(b.try_acquire(s(130)), Ok(()));
        }
        assert_eq!(b.try_acquire(s(130)), Err((s(130) + PROBE_RETRY, false)));
        // A failed probe re-opens for twice as long.
        let t = b.on_failure(s(131)).expect("probe failure re-opens");
        assert_eq!(t.to, BreakerState::Open);
        assert_eq!(b.next_change(s(131)), Some(s(191)));
        assert_eq!(b.transitions(), 3);
    }

    #[test]
    fn ref_breaker_escapes_silent_probes() {
        let mut b = RefBreaker::new(BreakerConfig::default());
        b.force_open(s(0));
        assert_eq!(b.try_acquire(s(5)), Err((Instant::MAX, true)));
        b.reset(s(5));
        for _ in 0..5 {
            b.on_failure(s(10));
        }
        assert_eq!(b.try_acquire(s(40)), Ok(()));
        // The probe never reports: re-open at 100 s for 60 s, half-open at 160 s.
        assert_eq!(b.next_change(s(40)), Some(s(100)));
        assert_eq!(b.state(s(100)), BreakerState::Open);
        assert_eq!(b.state(s(160)), BreakerState::HalfOpen);
        // Time going backwards changes nothing.
        assert_eq!(b.handle_timeout(s(170)).map(|t| t.at), Some(s(160)));
        assert_eq!(b.state(s(0)), BreakerState::HalfOpen);
    }

    #[test]
    fn ref_adaptive_reduces_and_recovers_on_schedule() {
        let mut a = RefAdaptive::new(AdaptiveConfig::conservative());
        assert_eq!(a.on_429(s(0)), 800_000);
        assert_eq!(a.on_429(s(0)), 640_000);
        assert_eq!(a.ratio_ppm(s(299)), 640_000);
        assert_eq!(a.ratio_ppm(s(300)), 690_000);
        assert_eq!(a.next_change(s(300)), Some(s(330)));
        assert_eq!(a.ratio_ppm(s(10_000)), ONE);
        assert_eq!(a.next_change(s(10_000)), None);
    }

    #[test]
    fn ref_adaptive_bans_triple_and_echoes_do_not_count() {
        let mut a = RefAdaptive::new(AdaptiveConfig::conservative());
        assert_eq!(a.on_418(s(0), None), s(50));
        // An echo inside the ban changes nothing.
        assert_eq!(a.on_418(s(30), None), s(50));
        assert_eq!(a.ratio_ppm(s(30)), 800_000);
        assert_eq!(a.on_418(s(50), None), s(200));
        assert_eq!(a.ratio_ppm(s(50)), 640_000);
        // Recovery counts from the ban's end.
        assert_eq!(a.next_change(s(50)), Some(s(500)));
    }
}
