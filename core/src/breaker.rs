//! The circuit breaker of one group: stop calling a group that keeps failing.
//!
//! Rate limiting keeps us under the server's quota; the breaker handles the other
//! way a group goes bad: errors and timeouts. After enough failures it rejects
//! calls at once (with the instant to retry) instead of letting every caller wait
//! for a timeout, then lets a few probe calls through to see whether the group
//! has recovered. Like the rest of the core it is a pure `&mut self` state
//! machine over a `now` passed in; waiting out the open state needs no timer.

use core::fmt;

use crate::time::{Duration, Instant};

/// When a [`Breaker`] opens, how long it stays open and how it closes again.
///
/// [`Default`] holds these numbers:
///
/// | field                  | default | meaning |
/// |------------------------|--------:|---------|
/// | `consecutive_failures` | 5       | failures in a row that open the breaker |
/// | `failure_rate_ppm`     | 500 000 | failure share (50 %) of the window that opens it |
/// | `window`               | 20      | calls the failure share is taken over |
/// | `minimum_calls`        | 10      | calls recorded before the share counts |
/// | `open_wait`            | 30 s    | first open period |
/// | `open_wait_max`        | 60 s    | longest open period |
/// | `open_wait_multiplier` | 2       | growth per re-open without a close in between |
/// | `half_open_probes`     | 3       | probe calls in flight at once when half-open |
/// | `half_open_successes`  | 3       | successful probes that close the breaker |
/// | `half_open_max_wait`   | 60 s    | how long probes may stay silent before it re-opens |
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct BreakerConfig {
    /// Failures in a row (no success in between) that open the breaker.
    pub consecutive_failures: u32,
    /// Failure share of the window, in parts per million, that opens the breaker
    /// (`>=` trips), once `minimum_calls` outcomes are recorded.
    pub failure_rate_ppm: u32,
    /// Size of the count-based sliding window of outcomes, `1..=64`.
    pub window: u8,
    /// Outcomes recorded before the failure share is considered.
    pub minimum_calls: u8,
    /// Open period after the first trip.
    pub open_wait: Duration,
    /// Longest open period; the growth stops here.
    pub open_wait_max: Duration,
    /// Each re-open without a successful close in between multiplies the open
    /// period by this (1 keeps it constant).
    pub open_wait_multiplier: u32,
    /// Probe calls allowed in flight at once while half-open.
    pub half_open_probes: u32,
    /// Successful probes that close the breaker.
    pub half_open_successes: u32,
    /// While probes are in flight, the longest time half-open may go without any
    /// probe being admitted or reporting back before the breaker re-opens.
    pub half_open_max_wait: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate_ppm: 500_000,
            window: 20,
            minimum_calls: 10,
            open_wait: Duration::from_secs(30),
            open_wait_max: Duration::from_secs(60),
            open_wait_multiplier: 2,
            half_open_probes: 3,
            half_open_successes: 3,
            half_open_max_wait: Duration::from_secs(60),
        }
    }
}

/// Why a [`BreakerConfig`] is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// `consecutive_failures` is zero.
    ZeroConsecutiveFailures,
    /// `failure_rate_ppm` is zero (every window would trip).
    ZeroFailureRate,
    /// `failure_rate_ppm` is above 1 000 000 (100 %), so it could never trip.
    FailureRateAboveOne,
    /// `window` is zero or above 64.
    WindowOutOfRange,
    /// `minimum_calls` is zero.
    ZeroMinimumCalls,
    /// `minimum_calls` is larger than `window`, so the share would never count.
    MinimumCallsAboveWindow,
    /// `open_wait` is zero.
    ZeroOpenWait,
    /// `open_wait` is longer than `open_wait_max`.
    OpenWaitAboveMax,
    /// `open_wait_multiplier` is zero.
    ZeroOpenWaitMultiplier,
    /// `half_open_probes` is zero, so half-open could never test the group.
    ZeroHalfOpenProbes,
    /// `half_open_successes` is zero.
    ZeroHalfOpenSuccesses,
    /// `half_open_probes` is smaller than `half_open_successes`.
    ProbesBelowSuccesses,
    /// `half_open_max_wait` is zero.
    ZeroHalfOpenMaxWait,
}

impl fmt::Display for BreakerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroConsecutiveFailures => "breaker consecutive_failures must be at least 1",
            Self::ZeroFailureRate => "breaker failure_rate_ppm must be at least 1",
            Self::FailureRateAboveOne => "breaker failure_rate_ppm must be at most 1000000 (100 %)",
            Self::WindowOutOfRange => "breaker window must be between 1 and 64 calls",
            Self::ZeroMinimumCalls => "breaker minimum_calls must be at least 1",
            Self::MinimumCallsAboveWindow => "breaker minimum_calls must not exceed window",
            Self::ZeroOpenWait => "breaker open_wait must be longer than zero",
            Self::OpenWaitAboveMax => "breaker open_wait must not exceed open_wait_max",
            Self::ZeroOpenWaitMultiplier => "breaker open_wait_multiplier must be at least 1",
            Self::ZeroHalfOpenProbes => "breaker half_open_probes must be at least 1",
            Self::ZeroHalfOpenSuccesses => "breaker half_open_successes must be at least 1",
            Self::ProbesBelowSuccesses => "breaker half_open_probes must be at least half_open_successes",
            Self::ZeroHalfOpenMaxWait => "breaker half_open_max_wait must be longer than zero",
        })
    }
}

impl core::error::Error for BreakerConfigError {}

impl BreakerConfig {
    /// Checks that every field makes sense; the first problem found is returned.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        use BreakerConfigError as E;
        if self.consecutive_failures == 0 {
            return Err(E::ZeroConsecutiveFailures);
        }
        if self.failure_rate_ppm == 0 {
            return Err(E::ZeroFailureRate);
        }
        if self.failure_rate_ppm > 1_000_000 {
            return Err(E::FailureRateAboveOne);
        }
        if self.window == 0 || self.window > Outcomes::CAPACITY {
            return Err(E::WindowOutOfRange);
        }
        if self.minimum_calls == 0 {
            return Err(E::ZeroMinimumCalls);
        }
        if self.minimum_calls > self.window {
            return Err(E::MinimumCallsAboveWindow);
        }
        if self.open_wait.is_zero() {
            return Err(E::ZeroOpenWait);
        }
        if self.open_wait > self.open_wait_max {
            return Err(E::OpenWaitAboveMax);
        }
        if self.open_wait_multiplier == 0 {
            return Err(E::ZeroOpenWaitMultiplier);
        }
        if self.half_open_probes == 0 {
            return Err(E::ZeroHalfOpenProbes);
        }
        if self.half_open_successes == 0 {
            return Err(E::ZeroHalfOpenSuccesses);
        }
        if self.half_open_probes < self.half_open_successes {
            return Err(E::ProbesBelowSuccesses);
        }
        if self.half_open_max_wait.is_zero() {
            return Err(E::ZeroHalfOpenMaxWait);
        }
        Ok(())
    }

    /// The open period after `reopens` re-opens without a close:
    /// `min(open_wait * multiplier^reopens, open_wait_max)`.
    fn open_wait_for(&self, reopens: u32) -> Duration {
        let factor = u64::from(self.open_wait_multiplier)
            .checked_pow(reopens)
            .unwrap_or(u64::MAX);
        self.open_wait
            .saturating_mul(factor)
            .max(self.open_wait)
            .min(self.open_wait_max)
    }

    /// The window size, forced into `1..=64` so an unvalidated config cannot misbehave.
    fn window_size(&self) -> u8 {
        self.window.clamp(1, Outcomes::CAPACITY)
    }

    /// Whether the recorded outcomes open the breaker by failure share.
    fn rate_trips(&self, outcomes: &Outcomes) -> bool {
        let calls = outcomes.len.max(1);
        if calls < self.minimum_calls.clamp(1, self.window_size()) {
            return false;
        }
        let failures = u64::from(outcomes.failures());
        failures * 1_000_000 >= u64::from(self.failure_rate_ppm) * u64::from(calls)
    }
}

/// What a [`Breaker`] is doing, as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum BreakerState {
    /// Calls pass; outcomes are recorded.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A bounded number of probe calls pass; their outcomes decide.
    HalfOpen,
    /// Rejecting everything until [`Breaker::reset`] or [`Breaker::disable`].
    ForcedOpen,
    /// Passing everything; nothing is recorded and nothing trips.
    Disabled,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`, `forced_open` or `disabled`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of [`BreakerState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// When it happened.
    pub at: Instant,
}

/// A call was refused by the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerOpen {
    /// The earliest instant at which a call may be admitted; `Instant::MAX`
    /// when only an operator can reopen the way (forced open).
    pub retry_at: Instant,
    /// Whether the breaker was forced open by hand.
    pub forced: bool,
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.forced {
            f.write_str("circuit breaker forced open")
        } else {
            write!(f, "circuit breaker open; retry at {}", self.retry_at)
        }
    }
}

impl core::error::Error for BreakerOpen {}

/// The circuit breaker of one group.
///
/// Call [`try_acquire`](Self::try_acquire) before a request and report its
/// outcome with exactly one of [`on_success`](Self::on_success),
/// [`on_failure`](Self::on_failure) or [`on_ignored`](Self::on_ignored) (the
/// last for outcomes that say nothing about the group's health, e.g. a
/// cancelled call). Time-driven changes happen lazily: every method takes
/// `now` and first applies whatever change was due by then;
/// [`next_change`](Self::next_change) says when the next one falls due.
///
/// ```text
///                    consecutive_failures in a row, or failure
///                    share >= failure_rate_ppm over the last
///   +--------+       `window` outcomes (once >= minimum_calls)     +------+
///   | Closed |---------------------------------------------------->| Open |<-----+
///   +--------+                                                     +------+      |
///       ^                                                             |          |
///       |                                        now >= open until    |          |
///       |                                                             v          |
///       |   half_open_successes successful probes             +----------+       |
///       +-----------------------------------------------------| HalfOpen |-------+
///                                                             +----------+
///                     any probe fails, or probes are in flight and none is
///                     admitted or reports back for half_open_max_wait
///
///   any state --force_open()--> ForcedOpen   (left only by reset() or disable())
///   any state --disable()-----> Disabled     (left only by reset() or force_open())
///   any state --reset()-------> Closed       (counters cleared)
/// ```
///
/// # Open periods
///
/// The `n`-th re-open without a close in between (the first trip from Closed is
/// `n = 0`) stays open for `min(open_wait * open_wait_multiplier^n,
/// open_wait_max)`. A close from half-open, and `reset`, start over at `n = 0`.
///
/// # Half-open
///
/// At most `half_open_probes` probes are in flight at once. Each success counts
/// towards `half_open_successes`; any failure re-opens at once. Should every
/// probe go silent (a leaked call that never reports), the breaker re-opens
/// `half_open_max_wait` after the last probe was admitted or reported, instead
/// of rejecting calls forever; this counts as a re-open like a failed probe.
/// With no probe in flight half-open simply waits for the next caller. A caller
/// refused because all probe slots are
/// taken is told to retry after [`Breaker::PROBE_RETRY`] (or at the escape,
/// if sooner).
///
/// # Late outcomes
///
/// Outcomes are not tied to the call that produced them, so late ones (from
/// calls admitted before the last change) are handled conservatively:
/// - while Open, ForcedOpen or Disabled every outcome is ignored: a late success
///   cannot close the breaker and a late failure cannot extend the open period;
/// - while HalfOpen an outcome counts only while a probe slot is taken (it is
///   attributed to a probe); with no probe in flight it is ignored;
/// - while Closed every outcome is recorded, including late ones. The failure
///   share is checked after every outcome, so a success that completes
///   `minimum_calls` over a window already at the threshold opens the breaker.
///
/// # Time
///
/// An instant earlier than one already seen is read as the latest seen, so a
/// clock stepping back never ends an open period early. `Instant::MAX` means
/// "never": an open period ending there does not end by itself.
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    /// Re-opens since the last close; the exponent of the open period.
    reopens: u32,
    transitions: u32,
    /// The latest `now` seen; earlier ones are read as this.
    last_seen: Instant,
}

/// The state machine proper; each state carries exactly the data it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        consecutive_failures: u32,
        outcomes: Outcomes,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        in_flight: u32,
        successes: u32,
        /// The last probe admission or report; the stuck escape counts from here.
        last_activity: Instant,
    },
    ForcedOpen,
    Disabled,
}

impl State {
    const CLOSED: Self = Self::Closed {
        consecutive_failures: 0,
        outcomes: Outcomes::EMPTY,
    };

    fn view(&self) -> BreakerState {
        match self {
            Self::Closed { .. } => BreakerState::Closed,
            Self::Open { .. } => BreakerState::Open,
            Self::HalfOpen { .. } => BreakerState::HalfOpen,
            Self::ForcedOpen => BreakerState::ForcedOpen,
            Self::Disabled => BreakerState::Disabled,
        }
    }
}

/// The last `len` outcomes as bits (1 = failure), newest in bit 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outcomes {
    bits: u64,
    len: u8,
}

impl Outcomes {
    const CAPACITY: u8 = 64;
    const EMPTY: Self = Self { bits: 0, len: 0 };

    fn mask(size: u8) -> u64 {
        if size >= Self::CAPACITY {
            u64::MAX
        } else {
            (1u64 << size) - 1
        }
    }

    /// Pushes one outcome, dropping the oldest beyond `size`.
    fn record(&mut self, failed: bool, size: u8) {
        self.bits = ((self.bits << 1) | u64::from(failed)) & Self::mask(size);
        self.len = self.len.saturating_add(1).min(size);
    }

    /// Keeps only the newest `size` outcomes.
    fn shrink_to(&mut self, size: u8) {
        self.bits &= Self::mask(size);
        self.len = self.len.min(size);
    }

    fn failures(&self) -> u32 {
        self.bits.count_ones()
    }
}

impl Breaker {
    /// How long a caller refused for lack of a free half-open probe slot is told
    /// to wait before asking again.
    pub const PROBE_RETRY: Duration = Duration::from_millis(100);

    /// A closed breaker with nothing recorded.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: State::CLOSED,
            reopens: 0,
            transitions: 0,
            last_seen: Instant::ZERO,
        }
    }

    /// The state at `now`, time-driven changes included.
    pub fn state(&self, now: Instant) -> BreakerState {
        self.settled(now).state.view()
    }

    /// Asks to make one call at `now`. Closed and Disabled admit; HalfOpen
    /// admits while a probe slot is free and takes it; otherwise the error says
    /// when to retry.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), BreakerOpen> {
        let now = self.observe(now);
        self.apply_timeouts(now);
        let probes = self.config.half_open_probes;
        let max_wait = self.config.half_open_max_wait;
        match &mut self.state {
            State::Closed { .. } | State::Disabled => Ok(()),
            State::Open { until } => Err(BreakerOpen {
                retry_at: *until,
                forced: false,
            }),
            State::ForcedOpen => Err(BreakerOpen {
                retry_at: Instant::MAX,
                forced: true,
            }),
            State::HalfOpen {
                in_flight,
                last_activity,
                ..
            } => {
                if *in_flight < probes {
                    *in_flight += 1;
                    *last_activity = now;
                    Ok(())
                } else {
                    let escape = *last_activity + max_wait;
                    Err(BreakerOpen {
                        retry_at: (now + Self::PROBE_RETRY).min(escape),
                        forced: false,
                    })
                }
            }
        }
    }

    /// A call succeeded at `now`. Returns the change it caused, if any.
    pub fn on_success(&mut self, now: Instant) -> Option<Transition> {
        let now = self.observe(now);
        self.apply_timeouts(now);
        let size = self.config.window_size();
        let needed = self.config.half_open_successes;
        match &mut self.state {
            State::Closed {
                consecutive_failures,
                outcomes,
            } => {
                *consecutive_failures = 0;
                outcomes.record(false, size);
                // A success can still complete `minimum_calls` over a bad window.
                let trips = self.config.rate_trips(outcomes);
                trips.then(|| self.open(now))
            }
            State::HalfOpen {
                in_flight,
                successes,
                last_activity,
            } if *in_flight > 0 => {
                *in_flight -= 1;
                *successes = successes.saturating_add(1);
                *last_activity = now;
                if *successes >= needed {
                    self.reopens = 0;
                    Some(self.enter(State::CLOSED, now))
                } else {
                    None
                }
            }
            State::HalfOpen { .. } | State::Open { .. } | State::ForcedOpen | State::Disabled => None,
        }
    }

    /// A call failed at `now`. Returns the change it caused, if any.
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        let now = self.observe(now);
        self.apply_timeouts(now);
        let size = self.config.window_size();
        match &mut self.state {
            State::Closed {
                consecutive_failures,
                outcomes,
            } => {
                *consecutive_failures = consecutive_failures.saturating_add(1);
                outcomes.record(true, size);
                let trips = *consecutive_failures >= self.config.consecutive_failures
                    || self.config.rate_trips(outcomes);
                trips.then(|| self.open(now))
            }
            State::HalfOpen { in_flight, .. } if *in_flight > 0 => {
                self.reopens = self.reopens.saturating_add(1);
                Some(self.open(now))
            }
            State::HalfOpen { .. } | State::Open { .. } | State::ForcedOpen | State::Disabled => None,
        }
    }

    /// A call admitted at `now` ended without saying anything about the group
    /// (cancelled, or failed on our side). Frees its half-open probe slot, if it
    /// held one; records nothing.
    pub fn on_ignored(&mut self, now: Instant) {
        let now = self.observe(now);
        self.apply_timeouts(now);
        if let State::HalfOpen {
            in_flight,
            last_activity,
            ..
        } = &mut self.state
        {
            if *in_flight > 0 {
                *in_flight -= 1;
                *last_activity = now;
            }
        }
    }

    /// Rejects every call from `now` until [`reset`](Self::reset) or
    /// [`disable`](Self::disable).
    pub fn force_open(&mut self, now: Instant) -> Option<Transition> {
        let now = self.observe(now);
        self.apply_timeouts(now);
        match self.state {
            State::ForcedOpen => None,
            _ => Some(self.enter(State::ForcedOpen, now)),
        }
    }

    /// Admits every call from `now` and records nothing, until
    /// [`reset`](Self::reset) or [`force_open`](Self::force_open).
    pub fn disable(&mut self, now: Instant) -> Option<Transition> {
        let now = self.observe(now);
        self.apply_timeouts(now);
        match self.state {
            State::Disabled => None,
            _ => Some(self.enter(State::Disabled, now)),
        }
    }

    /// Closes the breaker at `now` and clears its failure counters and open
    /// period growth. Returns the change, if the breaker was not already closed.
    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        let now = self.observe(now);
        self.apply_timeouts(now);
        self.reopens = 0;
        match self.state {
            State::Closed { .. } => {
                self.state = State::CLOSED;
                None
            }
            _ => Some(self.enter(State::CLOSED, now)),
        }
    }

    /// The next instant after `now` at which the breaker changes by itself: the
    /// end of the open period, or the half-open escape while probes are in
    /// flight. `None` when nothing is pending (or only at `Instant::MAX`).
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let settled = self.settled(now);
        let due = match settled.state {
            State::Open { until } => until,
            State::HalfOpen {
                in_flight,
                last_activity,
                ..
            } if in_flight > 0 => last_activity + settled.config.half_open_max_wait,
            _ => return None,
        };
        (due != Instant::MAX).then_some(due)
    }

    /// Applies the time-driven changes due by `now` and returns the latest one,
    /// stamped with the instant it fell due. The other methods do this
    /// themselves; call this at [`next_change`](Self::next_change) to observe
    /// the change when it happens.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Transition> {
        let now = self.observe(now);
        self.apply_timeouts(now)
    }

    /// The configuration in force.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Replaces the configuration at `now`, keeping the state. Changes due by
    /// `now` are applied under the old configuration first; an open period
    /// already running keeps its end; the outcome window keeps its newest
    /// `window` outcomes. New thresholds apply from the next outcome on.
    pub fn set_config(&mut self, config: BreakerConfig, now: Instant) {
        let now = self.observe(now);
        self.apply_timeouts(now);
        self.config = config;
        let size = config.window_size();
        if let State::Closed { outcomes, .. } = &mut self.state {
            outcomes.shrink_to(size);
        }
    }

    /// State changes so far, time-driven ones included (each counted once it
    /// has been applied by a call at or after the instant it fell due).
    /// Saturates at `u32::MAX`.
    pub fn transitions(&self) -> u32 {
        self.transitions
    }

    /// Moves to Open at `at` for the period of the current re-open count.
    fn open(&mut self, at: Instant) -> Transition {
        let until = at + self.config.open_wait_for(self.reopens);
        self.enter(State::Open { until }, at)
    }

    /// Moves to `next` at `at`, counting the transition.
    fn enter(&mut self, next: State, at: Instant) -> Transition {
        let from = self.state.view();
        self.state = next;
        self.transitions = self.transitions.saturating_add(1);
        Transition {
            from,
            to: next.view(),
            at,
        }
    }

    /// Applies every time-driven change due by `now`, in order; returns the last.
    ///
    /// Open -> HalfOpen enters with no probe in flight, so at most two steps
    /// happen (HalfOpen escape -> Open -> HalfOpen); the loop is bounded anyway.
    fn apply_timeouts(&mut self, now: Instant) -> Option<Transition> {
        let mut last = None;
        for _ in 0..3 {
            match self.state {
                State::Open { until } if reached(now, until) => {
                    let next = State::HalfOpen {
                        in_flight: 0,
                        successes: 0,
                        last_activity: until,
                    };
                    last = Some(self.enter(next, until));
                }
                State::HalfOpen {
                    in_flight,
                    last_activity,
                    ..
                } if in_flight > 0 => {
                    let escape = last_activity + self.config.half_open_max_wait;
                    if !reached(now, escape) {
                        break;
                    }
                    self.reopens = self.reopens.saturating_add(1);
                    last = Some(self.open(escape));
                }
                _ => break,
            }
        }
        last
    }

    /// A copy with the changes due by `now` applied, for the `&self` queries.
    fn settled(&self, now: Instant) -> Self {
        let mut copy = self.clone();
        let now = copy.observe(now);
        copy.apply_timeouts(now);
        copy
    }

    /// Records `now` and returns the instant to act at (never earlier than seen).
    fn observe(&mut self, now: Instant) -> Instant {
        self.last_seen = self.last_seen.max(now);
        self.last_seen
    }
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

    fn at_ms(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    const NS: Duration = Duration::from_nanos(1);

    /// A config where only the failure share can trip.
    fn rate_only(window: u8, minimum_calls: u8, failure_rate_ppm: u32) -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 1_000,
            failure_rate_ppm,
            window,
            minimum_calls,
            ..BreakerConfig::default()
        }
    }

    /// Trips a default breaker at `t` with five failures.
    fn tripped_at(t: Instant) -> Breaker {
        let mut b = Breaker::new(BreakerConfig::default());
        for _ in 0..5 {
            b.on_failure(t);
        }
        assert_eq!(b.state(t), BreakerState::Open);
        b
    }

    fn open_err(retry_at: Instant) -> Result<(), BreakerOpen> {
        Err(BreakerOpen {
            retry_at,
            forced: false,
        })
    }

    #[test]
    fn five_failures_open_then_half_open_then_closed() {
        let mut b = Breaker::new(BreakerConfig::default());
        let t0 = at(100);
        for i in 0..4 {
            assert_eq!(b.try_acquire(t0), Ok(()));
            assert_eq!(b.on_failure(t0), None, "failure {} must not trip", i + 1);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert_eq!(
            b.on_failure(t0),
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open,
                at: t0
            })
        );
        assert_eq!(b.try_acquire(t0 + Duration::from_secs(10)), open_err(at(130)));
        assert_eq!(b.next_change(t0), Some(at(130)));
        assert_eq!(b.state(at(130) - NS), BreakerState::Open);
        assert_eq!(b.state(at(130)), BreakerState::HalfOpen);

        let t1 = at(130);
        for _ in 0..3 {
            assert_eq!(b.try_acquire(t1), Ok(()));
        }
        assert_eq!(b.on_success(t1), None);
        assert_eq!(b.on_success(t1), None);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert_eq!(
            b.on_success(t1),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed,
                at: t1
            })
        );
        assert_eq!(b.try_acquire(t1), Ok(()));
        assert_eq!(b.next_change(t1), None);
        // Closed, Open, HalfOpen, Closed.
        assert_eq!(b.transitions(), 3);
    }

    #[test]
    fn failed_probe_reopens_with_doubled_wait_capped_at_max() {
        let mut b = tripped_at(at(0));
        // Open 30 s, then each failed probe doubles: 60 s, then capped at 60 s.
        let mut t = at(30);
        for wait in [60, 60, 60] {
            assert_eq!(b.state(t), BreakerState::HalfOpen);
            assert_eq!(b.try_acquire(t), Ok(()));
            let tr = b.on_failure(t).expect("a failed probe re-opens");
            assert_eq!(
                (tr.from, tr.to, tr.at),
                (BreakerState::HalfOpen, BreakerState::Open, t)
            );
            let until = t + Duration::from_secs(wait);
            assert_eq!(b.try_acquire(t), open_err(until));
            assert_eq!(b.state(until - NS), BreakerState::Open);
            t = until;
        }
        // A successful close resets the growth: the next trip waits 30 s again.
        for _ in 0..3 {
            assert_eq!(b.try_acquire(t), Ok(()));
            b.on_success(t);
        }
        assert_eq!(b.state(t), BreakerState::Closed);
        for _ in 0..5 {
            b.on_failure(t);
        }
        assert_eq!(b.try_acquire(t), open_err(t + Duration::from_secs(30)));
    }

    #[test]
    fn open_wait_grows_geometrically_until_the_cap() {
        let config = BreakerConfig {
            open_wait_max: Duration::from_secs(300),
            ..BreakerConfig::default()
        };
        let mut b = Breaker::new(config);
        for _ in 0..5 {
            b.on_failure(at(0));
        }
        let mut t = at(30);
        for wait in [60, 120, 240, 300, 300] {
            b.try_acquire(t).unwrap();
            b.on_failure(t);
            assert_eq!(b.next_change(t), Some(t + Duration::from_secs(wait)));
            t += Duration::from_secs(wait);
        }
        // The exponent saturates rather than overflowing.
        assert_eq!(config.open_wait_for(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn failure_share_trips_without_consecutive_failures() {
        let mut b = Breaker::new(BreakerConfig::default());
        // S F S F ...: never two failures in a row, 50 % once 10 calls are in.
        for i in 0..9 {
            let t = at(i);
            let tr = if i % 2 == 0 {
                b.on_success(t)
            } else {
                b.on_failure(t)
            };
            assert_eq!(tr, None, "call {} must not trip", i + 1);
        }
        let tr = b.on_failure(at(9)).expect("5 of 10 failed");
        assert_eq!(tr.to, BreakerState::Open);
        assert_eq!(b.next_change(at(9)), Some(at(39)));
    }

    #[test]
    fn failure_share_waits_for_minimum_calls() {
        let mut b = Breaker::new(rate_only(20, 10, 500_000));
        for i in 0..9 {
            assert_eq!(b.on_failure(at(i)), None, "only {} calls recorded", i + 1);
        }
        assert_eq!(b.state(at(9)), BreakerState::Closed);
        assert!(b.on_failure(at(9)).is_some());
    }

    #[test]
    fn a_success_completing_minimum_calls_over_a_bad_window_trips() {
        let mut b = Breaker::new(rate_only(4, 4, 750_000));
        for _ in 0..3 {
            assert_eq!(b.on_failure(at(0)), None);
        }
        let tr = b.on_success(at(1)).expect("3 of 4 failed");
        assert_eq!(tr.to, BreakerState::Open);
    }

    #[test]
    fn the_window_slides_over_the_newest_outcomes() {
        let mut b = Breaker::new(rate_only(4, 4, 750_000));
        // F S F S S: the window now holds S F S S (25 %).
        for (i, failed) in [true, false, true, false, false].into_iter().enumerate() {
            let t = at(i as u64);
            let tr = if failed { b.on_failure(t) } else { b.on_success(t) };
            assert_eq!(tr, None);
        }
        // F F: 50 %, still under 75 %, though 4 of the last 7 calls failed.
        assert_eq!(b.on_failure(at(5)), None);
        assert_eq!(b.on_failure(at(6)), None);
        // F: the window is S F F F.
        assert!(b.on_failure(at(7)).is_some());
    }

    #[test]
    fn a_success_breaks_the_consecutive_run() {
        let mut b = Breaker::new(BreakerConfig::default());
        for _ in 0..4 {
            b.on_failure(at(0));
        }
        b.on_success(at(1));
        for _ in 0..4 {
            assert_eq!(b.on_failure(at(2)), None);
        }
        // 8 of 9 failed, but the share needs 10 calls; the 5th in a row trips.
        assert_eq!(b.state(at(2)), BreakerState::Closed);
        assert!(b.on_failure(at(2)).is_some());
    }

    #[test]
    fn half_open_admits_a_bounded_number_of_probes() {
        let mut b = tripped_at(at(0));
        let t = at(30);
        for _ in 0..3 {
            assert_eq!(b.try_acquire(t), Ok(()));
        }
        assert_eq!(b.try_acquire(t), open_err(t + Breaker::PROBE_RETRY));
        // An ignored outcome frees its slot without counting.
        b.on_ignored(t);
        assert_eq!(b.try_acquire(t), Ok(()));
        assert!(b.try_acquire(t).is_err());
        // Two successes free two slots; still one short of closing.
        b.on_success(t);
        b.on_success(t);
        assert_eq!(b.state(t), BreakerState::HalfOpen);
        assert_eq!(b.try_acquire(t), Ok(()));
        assert_eq!(b.try_acquire(t), Ok(()));
        assert!(b.try_acquire(t).is_err());
        assert!(b.on_success(t).is_some());
    }

    #[test]
    fn half_open_outcomes_without_a_probe_in_flight_are_ignored() {
        let mut b = tripped_at(at(0));
        let t = at(31);
        assert_eq!(b.state(t), BreakerState::HalfOpen);
        for _ in 0..5 {
            assert_eq!(b.on_success(t), None);
        }
        assert_eq!(b.on_failure(t), None);
        b.on_ignored(t);
        assert_eq!(b.state(t), BreakerState::HalfOpen);
        // Still three fresh successes needed.
        for _ in 0..2 {
            b.try_acquire(t).unwrap();
            assert_eq!(b.on_success(t), None);
        }
        b.try_acquire(t).unwrap();
        assert!(b.on_success(t).is_some());
    }

    #[test]
    fn stuck_half_open_escapes_back_to_open() {
        let mut b = tripped_at(at(0));
        let t = at(30);
        for _ in 0..3 {
            b.try_acquire(t).unwrap();
        }
        // The probes never report back.
        assert_eq!(b.next_change(t), Some(at(90)));
        assert_eq!(b.state(at(90) - NS), BreakerState::HalfOpen);
        // A refused caller is never sent past the escape.
        assert_eq!(b.try_acquire(at_ms(89_950)), open_err(at(90)));
        assert_eq!(b.state(at(90)), BreakerState::Open);
        assert_eq!(
            b.handle_timeout(at(90)),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open,
                at: at(90)
            })
        );
        assert_eq!(b.handle_timeout(at(90)), None);
        // The escape counts as a re-open: 60 s instead of 30 s.
        assert_eq!(b.try_acquire(at(90)), open_err(at(150)));
        // The lost probes reporting late cannot close it.
        for _ in 0..3 {
            assert_eq!(b.on_success(at(100)), None);
        }
        assert_eq!(b.state(at(100)), BreakerState::Open);
        assert_eq!(b.state(at(150)), BreakerState::HalfOpen);
    }

    #[test]
    fn the_escape_counts_from_the_last_probe_activity() {
        let mut b = tripped_at(at(0));
        b.try_acquire(at(30)).unwrap();
        b.try_acquire(at(80)).unwrap();
        assert_eq!(b.next_change(at(80)), Some(at(140)));
        b.on_success(at(100));
        assert_eq!(b.next_change(at(100)), Some(at(160)));
        assert_eq!(b.state(at(159)), BreakerState::HalfOpen);
        assert_eq!(b.state(at(160)), BreakerState::Open);
    }

    #[test]
    fn idle_half_open_stays_half_open() {
        let b = tripped_at(at(0));
        assert_eq!(b.state(at(10_000)), BreakerState::HalfOpen);
        assert_eq!(b.next_change(at(10_000)), None);
        // The clone used by `state` left the original untouched.
        assert_eq!(b.transitions(), 1);
    }

    #[test]
    fn escape_and_reopen_can_both_fall_due_in_one_step() {
        let mut b = tripped_at(at(0));
        b.try_acquire(at(30)).unwrap();
        // Escape at 90 -> Open until 150 -> HalfOpen at 150, all lazily.
        let tr = b.handle_timeout(at(1_000)).unwrap();
        assert_eq!(
            (tr.from, tr.to, tr.at),
            (BreakerState::Open, BreakerState::HalfOpen, at(150))
        );
        // Closed->Open, Open->HalfOpen, HalfOpen->Open, Open->HalfOpen.
        assert_eq!(b.transitions(), 4);
    }

    #[test]
    fn outcomes_while_open_neither_close_nor_extend() {
        let mut b = tripped_at(at(0));
        for i in 1..20 {
            assert_eq!(b.on_success(at(i)), None);
        }
        assert_eq!(b.on_failure(at(20)), None);
        assert_eq!(b.try_acquire(at(25)), open_err(at(30)));
        assert_eq!(b.state(at(30)), BreakerState::HalfOpen);
    }

    #[test]
    fn forced_open_rejects_until_reset_or_disable() {
        let mut b = Breaker::new(BreakerConfig::default());
        let tr = b.force_open(at(1)).unwrap();
        assert_eq!((tr.from, tr.to), (BreakerState::Closed, BreakerState::ForcedOpen));
        assert_eq!(b.force_open(at(1)), None);
        let forced = Err(BreakerOpen {
            retry_at: Instant::MAX,
            forced: true,
        });
        assert_eq!(b.try_acquire(at(2)), forced);
        for _ in 0..10 {
            assert_eq!(b.on_success(at(3)), None);
        }
        assert_eq!(b.state(Instant::MAX), BreakerState::ForcedOpen);
        assert_eq!(b.try_acquire(Instant::MAX), forced);
        assert_eq!(b.next_change(at(3)), None);

        let tr = b.reset(at(4)).unwrap();
        assert_eq!((tr.from, tr.to), (BreakerState::ForcedOpen, BreakerState::Closed));
        assert_eq!(b.try_acquire(at(4)), Ok(()));

        b.force_open(at(5));
        let tr = b.disable(at(6)).unwrap();
        assert_eq!(
            (tr.from, tr.to),
            (BreakerState::ForcedOpen, BreakerState::Disabled)
        );
    }

    #[test]
    fn force_open_from_lapsed_open_reports_half_open_as_the_origin() {
        let mut b = tripped_at(at(0));
        let tr = b.force_open(at(40)).unwrap();
        assert_eq!(
            (tr.from, tr.to, tr.at),
            (BreakerState::HalfOpen, BreakerState::ForcedOpen, at(40))
        );
    }

    #[test]
    fn disabled_never_trips() {
        let mut b = Breaker::new(BreakerConfig::default());
        let tr = b.disable(at(0)).unwrap();
        assert_eq!((tr.from, tr.to), (BreakerState::Closed, BreakerState::Disabled));
        for i in 0..1_000 {
            assert_eq!(b.try_acquire(at(i)), Ok(()));
            assert_eq!(b.on_failure(at(i)), None);
        }
        assert_eq!(b.state(at(1_000)), BreakerState::Disabled);
        assert_eq!(b.next_change(at(1_000)), None);
        // Reset starts from a clean slate: the failures above were not recorded.
        assert!(b.reset(at(1_000)).is_some());
        for _ in 0..4 {
            assert_eq!(b.on_failure(at(1_000)), None);
        }
        assert!(b.on_failure(at(1_000)).is_some());
    }

    #[test]
    fn reset_clears_counters_and_growth() {
        let mut b = Breaker::new(BreakerConfig::default());
        for _ in 0..4 {
            b.on_failure(at(0));
        }
        assert_eq!(b.reset(at(0)), None);
        for _ in 0..4 {
            assert_eq!(b.on_failure(at(0)), None);
        }
        // Grow the open period, then reset: the next trip is back to 30 s.
        b.on_failure(at(0));
        b.try_acquire(at(30)).unwrap();
        b.on_failure(at(30));
        assert_eq!(b.next_change(at(30)), Some(at(90)));
        assert!(b.reset(at(31)).is_some());
        for _ in 0..5 {
            b.on_failure(at(31));
        }
        assert_eq!(b.next_change(at(31)), Some(at(61)));
    }

    #[test]
    fn time_going_backwards_never_unlocks_early() {
        let mut b = tripped_at(at(100));
        assert_eq!(b.state(Instant::ZERO), BreakerState::Open);
        assert_eq!(b.try_acquire(Instant::ZERO), open_err(at(130)));
        assert_eq!(b.try_acquire(at(129)), open_err(at(130)));
        assert_eq!(b.next_change(at(50)), Some(at(130)));

        // Failures reported with a stale `now` trip at the latest time seen.
        let mut b = Breaker::new(BreakerConfig::default());
        b.try_acquire(at(1_000)).unwrap();
        for _ in 0..5 {
            b.on_failure(at(1));
        }
        assert_eq!(b.try_acquire(at(2)), open_err(at(1_030)));
        assert_eq!(b.state(at(1_029)), BreakerState::Open);

        // Once half-open was seen, an earlier `now` does not re-open it.
        assert_eq!(b.try_acquire(at(1_030)), Ok(()));
        assert_eq!(b.state(at(5)), BreakerState::HalfOpen);
    }

    #[test]
    fn huge_time_jumps_saturate_without_panicking() {
        let mut b = tripped_at(at(1));
        assert_eq!(b.state(Instant::MAX), BreakerState::HalfOpen);
        for _ in 0..3 {
            b.try_acquire(Instant::MAX).unwrap();
        }
        // The escape would be at MAX, which never comes.
        assert_eq!(b.next_change(Instant::MAX), None);
        assert_eq!(b.state(Instant::MAX), BreakerState::HalfOpen);
        for _ in 0..3 {
            b.on_success(Instant::MAX);
        }
        assert_eq!(b.state(Instant::MAX), BreakerState::Closed);

        // Tripping at the end of time opens "forever", until reset.
        for _ in 0..5 {
            b.on_failure(Instant::MAX);
        }
        assert_eq!(b.state(Instant::MAX), BreakerState::Open);
        assert_eq!(b.try_acquire(Instant::MAX), open_err(Instant::MAX));
        assert_eq!(b.next_change(Instant::MAX), None);
        assert!(b.reset(Instant::MAX).is_some());
        assert_eq!(b.try_acquire(Instant::MAX), Ok(()));

        // Just short of the end, the open period saturates to MAX.
        let near = Instant::MAX - Duration::from_secs(1);
        let mut b = tripped_at(near);
        assert_eq!(b.try_acquire(near), open_err(Instant::MAX));
    }

    #[test]
    fn set_config_keeps_the_state() {
        let mut b = tripped_at(at(0));
        let longer = BreakerConfig {
            open_wait: Duration::from_secs(120),
            open_wait_max: Duration::from_secs(600),
            ..BreakerConfig::default()
        };
        b.set_config(longer, at(10));
        assert_eq!(b.config(), &longer);
        // The running open period keeps its end.
        assert_eq!(b.next_change(at(10)), Some(at(30)));
        // The next one uses the new numbers (first re-open: 240 s).
        b.try_acquire(at(30)).unwrap();
        b.on_failure(at(30));
        assert_eq!(b.next_change(at(30)), Some(at(270)));
    }

    #[test]
    fn set_config_shrinks_the_window_to_its_newest_outcomes() {
        let mut b = Breaker::new(rate_only(8, 8, 500_000));
        // F F F S S S S: 7 calls, one short of the minimum.
        for failed in [true, true, true, false, false, false, false] {
            let tr = if failed {
                b.on_failure(at(0))
            } else {
                b.on_success(at(0))
            };
            assert_eq!(tr, None);
        }
        // Had the old failures stayed, one more failure would make 4 of 8 (50 %).
        // Shrunk to the newest 4 (all successes), it is 1 of 4, then 2 of 4.
        b.set_config(rate_only(4, 4, 500_000), at(1));
        assert_eq!(b.on_failure(at(1)), None);
        assert!(b.on_failure(at(1)).is_some());
    }

    #[test]
    fn unvalidated_configs_do_not_panic() {
        let nonsense = BreakerConfig {
            consecutive_failures: 0,
            failure_rate_ppm: 0,
            window: 0,
            minimum_calls: 200,
            open_wait: Duration::ZERO,
            open_wait_max: Duration::ZERO,
            open_wait_multiplier: 0,
            half_open_probes: 0,
            half_open_successes: 0,
            half_open_max_wait: Duration::ZERO,
        };
        let mut b = Breaker::new(nonsense);
        for i in 0..10 {
            let _ = b.try_acquire(at(i));
            b.on_failure(at(i));
            b.on_success(at(i));
            let _ = b.state(at(i));
            let _ = b.next_change(at(i));
        }
        let big = BreakerConfig {
            window: 255,
            minimum_calls: 255,
            ..BreakerConfig::default()
        };
        b.set_config(big, at(20));
        for _ in 0..100 {
            b.on_success(at(20));
        }
    }

    #[test]
    fn default_config_holds_the_documented_numbers_and_validates() {
        let c = BreakerConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.consecutive_failures, 5);
        assert_eq!(c.failure_rate_ppm, 500_000);
        assert_eq!((c.window, c.minimum_calls), (20, 10));
        assert_eq!(c.open_wait, Duration::from_secs(30));
        assert_eq!(c.open_wait_max, Duration::from_secs(60));
        assert_eq!(c.open_wait_multiplier, 2);
        assert_eq!((c.half_open_probes, c.half_open_successes), (3, 3));
        assert_eq!(c.half_open_max_wait, Duration::from_secs(60));
        // The edges that are still fine.
        let edges = BreakerConfig {
            failure_rate_ppm: 1_000_000,
            window: 64,
            minimum_calls: 64,
            open_wait_max: Duration::from_secs(30),
            open_wait_multiplier: 1,
            ..c
        };
        assert_eq!(edges.validate(), Ok(()));
    }

    #[test]
    fn bad_configs_are_rejected_with_the_right_error() {
        use BreakerConfigError as E;
        let d = BreakerConfig::default();
        let bad = |edit: fn(&mut BreakerConfig)| {
            let mut c = d;
            edit(&mut c);
            c
        };
        let cases: [(BreakerConfig, E); 14] = [
            (bad(|c| c.consecutive_failures = 0), E::ZeroConsecutiveFailures),
            (bad(|c| c.failure_rate_ppm = 0), E::ZeroFailureRate),
            (bad(|c| c.failure_rate_ppm = 1_000_001), E::FailureRateAboveOne),
            (bad(|c| (c.window, c.minimum_calls) = (0, 0)), E::WindowOutOfRange),
            (bad(|c| c.window = 65), E::WindowOutOfRange),
            (bad(|c| c.minimum_calls = 0), E::ZeroMinimumCalls),
            (bad(|c| c.minimum_calls = 21), E::MinimumCallsAboveWindow),
            (bad(|c| c.open_wait = Duration::ZERO), E::ZeroOpenWait),
            (
                bad(|c| c.open_wait = Duration::from_secs(61)),
                E::OpenWaitAboveMax,
            ),
            (bad(|c| c.open_wait_multiplier = 0), E::ZeroOpenWaitMultiplier),
            (bad(|c| c.half_open_probes = 0), E::ZeroHalfOpenProbes),
            (bad(|c| c.half_open_successes = 0), E::ZeroHalfOpenSuccesses),
            (bad(|c| c.half_open_probes = 2), E::ProbesBelowSuccesses),
            (
                bad(|c| c.half_open_max_wait = Duration::ZERO),
                E::ZeroHalfOpenMaxWait,
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected), "{config:?}");
            assert!(!std::format!("{expected}").is_empty());
        }
    }

    #[test]
    fn names_and_messages() {
        let names = [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half_open"),
            (BreakerState::ForcedOpen, "forced_open"),
            (BreakerState::Disabled, "disabled"),
        ];
        for (state, name) in names {
            assert_eq!(state.as_str(), name);
            assert_eq!(std::format!("{state}"), name);
        }
        let open = BreakerOpen {
            retry_at: at(30),
            forced: false,
        };
        assert_eq!(
            std::format!("{open}"),
            "circuit breaker open; retry at Instant(+30s)"
        );
        let forced = BreakerOpen {
            retry_at: Instant::MAX,
            forced: true,
        };
        assert_eq!(std::format!("{forced}"), "circuit breaker forced open");
    }
}
