//! The interval log: admission by each recent request's `[admission, report]`
//! interval, Zero-429 without any assumption on network delay.
//!
//! # The rule
//!
//! For each recent request `i` the log keeps its admission instant `s_i` and
//! the latest instant `e_i` at which it can still reach the server:
//!
//! - in flight (no report yet): `e_i = s_i + max_flight`;
//! - reported at `r_i`: `e_i = r_i`, clamped into `[s_i, s_i + max_flight]`.
//!
//! A request is admitted at `t` only if, for every server window `(N, W)`,
//! **fewer than `N` earlier requests have `e_i >= t - W`**.
//!
//! # Why no window ever holds more than `N` arrivals
//!
//! A request admitted at `s` and reported at `r` reached the server at some
//! `a` with `s <= a <= r`, whatever happened in between; one that is never
//! reported arrived by `s + max_flight` (the one assumption: no request spends
//! longer than `max_flight` between admission and the server). So `a_i <= e_i`.
//! Take any window of length `W`, half-open or closed, and the last-admitted
//! request `j` among the arrivals in it. Every other arrival `i` in it was
//! admitted before `j` and has `e_i >= a_i >= a_j - W >= s_j - W`, so it was
//! counted when `j` was admitted; there were at most `N - 1` of them. Hence at
//! most `N` arrivals, for any delay distribution and any server reading of the
//! window (sliding, calendar, anchored at a first request, a token bucket of
//! `N` per `W`: each holds no more than a sliding window does). Groups with
//! several windows keep the condition for each.
//!
//! # Why no rule that knows only the intervals admits more
//!
//! Every denial is necessary. When the log denies at `t`, some window `(N,
//! W)` has `N` earlier requests with `e_i >= t - W`. Each may have reached
//! the server at `max(s_i, t - W)`, which lies in `[s_i, e_i]`: nothing the
//! client saw rules it out. With the new request arriving at once, `N + 1`
//! arrivals would lie in the closed window `[t - W, t]`, and what was
//! admitted before stays within the limit however it arrived (the proof
//! above). So any policy that is Zero-429 for every delay consistent with
//! the admissions and reports must deny there too, given the same history.
//! (Within a half-open window the one exception is `e_i = t - W`
//! exactly.) Only other knowledge can admit sooner: a bound on delays (the
//! GCRA's margin), or the server's own count in `Remaining-Req`, which this
//! rule does not use. The simulator's clairvoyant `oracle` policy, which
//! knows every delay, shows what that knowledge is worth; the brute-force
//! test below checks that the log denies exactly when the rule does.
//!
//! The proof needs `s_j` to be no earlier than any instant the log used
//! before (an entry dropped at `t` had `e_i < t - W`): the log reads a clock
//! going backwards as "no time passed" and keeps a high-water mark.
//!
//! # How a request ends
//!
//! | call | when | effect |
//! |---|---|---|
//! | [`IntervalLog::report`] | a response arrived (any status) | `e_i = r_i`; counts until `r_i + W` |
//! | [`IntervalLog::no_response`] | transport error, client timeout: the request may still be in the network | stays in flight until `s_i + max_flight`; a later [`report`](IntervalLog::report) still shortens it |
//! | [`IntervalLog::abandon`] | known never to have been sent | forgotten at once |
//! | nothing | a process that never reports | in flight until `s_i + max_flight` |
//!
//! Every call with a stale ticket (its slot was reused, or it already ended)
//! changes nothing and returns `false`.
//!
//! # Fixed capacity
//!
//! The log has [`CAPACITY`] slots and refuses a group whose largest `N`
//! exceeds it. It uses as many slots as the `N` of its longest window `L`
//! (the smallest `N` among the longest windows). A request that counts for
//! some window counts for `L` (it has `e_i >= t - W >= t - W_L`), and the rule
//! keeps fewer than `N_L` such requests before each admission, so at most
//! `N_L <= CAPACITY` requests count at any time. A slot whose request no longer
//! counts for `L` is free. Therefore **the rule for `L` is exactly "some slot is
//! free"**: when the rule admits, a free slot exists, and when every slot
//! holds a request that counts, the rule denies. The other windows are checked
//! by counting the slots.
//!
//! # Concurrency
//!
//! The log is plain data behind `&mut self`; the caller holds the group's
//! lock around each call. A lock-free log would have to make "the high-water
//! mark of `now`" and "the slot claimed at that instant" one atomic step:
//! otherwise a thread whose clock read is a few nanoseconds older can admit
//! after another thread has dropped an entry that the older instant still
//! counts, and the proof above fails. Under the lock an admission is a few
//! loads and stores (the slot after the last one claimed is the oldest and
//! almost always free), so the lock's two uncontended read-modify-writes are
//! its whole synchronisation cost. The invariant the lock protects: **every
//! request that still counts for some window occupies exactly one slot, and
//! every instant recorded is at most the high-water mark.**

use core::fmt;

use crate::quota::ServerLimit;
use crate::time::{Duration, Instant};

/// Slots per log: the largest `N` a group may have. Every Upbit window fits
/// (the largest is 100 per minute for websocket messages).
pub const CAPACITY: usize = 128;

/// The most windows a group may have.
pub const MAX_WINDOWS: usize = 3;

const ONE_NANO: Duration = Duration::from_nanos(1);

/// Why an interval log could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntervalLogError {
    /// No server window was given.
    NoLimits,
    /// More than [`MAX_WINDOWS`] windows.
    TooManyWindows {
        /// How many were given.
        count: usize,
    },
    /// A window allows zero requests or has zero length.
    EmptyLimit {
        /// The offending window.
        limit: ServerLimit,
    },
    /// A window allows more requests than the log has slots.
    OverCapacity {
        /// The offending window.
        limit: ServerLimit,
        /// [`CAPACITY`].
        capacity: usize,
    },
    /// A maximum flight time of zero would read every request as arrived the
    /// instant it was admitted: counting from admission, which 429s.
    ZeroMaxFlight,
}

impl fmt::Display for IntervalLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLimits => f.write_str("no server window to enforce"),
            Self::TooManyWindows { count } => {
                write!(f, "{count} server windows, at most {MAX_WINDOWS} are supported")
            }
            Self::EmptyLimit { limit } => write!(
                f,
                "server window of {} per {:?} allows nothing or has zero length",
                limit.max_requests, limit.window
            ),
            Self::OverCapacity { limit, capacity } => write!(
                f,
                "server window of {} per {:?} needs more than the interval log's {capacity} slots",
                limit.max_requests, limit.window
            ),
            Self::ZeroMaxFlight => f.write_str("maximum flight time is zero"),
        }
    }
}

impl core::error::Error for IntervalLogError {}

/// Why a request was not admitted, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Denial {
    /// Requests whose interval is settled (reported, or unanswered and bounded
    /// by the maximum flight time) fill a window: nothing can admit a request
    /// before this instant.
    Until(Instant),
    /// Requests in flight fill a window. A report can admit sooner: try again
    /// after the next report, and at the latest at this instant, when their
    /// maximum flight time has freed them.
    UntilReport(Instant),
}

impl Denial {
    /// The instant at which a request is admitted if no report comes first
    /// and no other request takes the room.
    pub const fn retry_at(self) -> Instant {
        match self {
            Self::Until(at) | Self::UntilReport(at) => at,
        }
    }

    /// Whether a report may admit a request before [`retry_at`](Self::retry_at).
    pub const fn waits_for_report(self) -> bool {
        matches!(self, Self::UntilReport(_))
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Until(at) => write!(f, "window full until {at}"),
            Self::UntilReport(at) => {
                write!(
                    f,
                    "window full of requests in flight: until a report, at the latest {at}"
                )
            }
        }
    }
}

/// Our requests a server counted in its window when one of them arrived, as
/// far as their intervals tell ([`IntervalLog::counted_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Taking each reported request to have arrived half-way through its
    /// round trip, and one not answered yet to have been sent with the same
    /// delay as this one: the count when delays are symmetric.
    pub likely: u32,
    /// Every request whose interval allows an arrival in the window: the most
    /// a server counting a window of that length can have counted (unless a
    /// slot was reused while this request was in flight).
    pub at_most: u32,
    /// The requests that surely arrived in the window, this one included:
    /// those answered before it was sent and sent after the window's
    /// earliest start (its answer minus the window). A server that counts
    /// a sliding window counted all of them; one that counts fewer (its
    /// `Remaining-Req` shows fewer) counts some other window.
    pub surely: u32,
}

/// An admitted request: hand it back with exactly one of
/// [`report`](IntervalLog::report), [`no_response`](IntervalLog::no_response)
/// or [`abandon`](IntervalLog::abandon) (or with none: it then counts until
/// its maximum flight time has passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    slot: u16,
    generation: u32,
    admitted_at: Instant,
}

impl Ticket {
    /// The instant the request was admitted (after the high-water mark: never
    /// earlier than an admission that came before it).
    pub const fn admitted_at(&self) -> Instant {
        self.admitted_at
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never used, or abandoned.
    Free,
    /// Admitted, no report yet.
    InFlight,
    /// Ended without a response; may still be in the network.
    Unanswered,
    /// Reported.
    Reported,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// `s_i`.
    start: Instant,
    /// `e_i`: the latest instant the request can reach the server.
    end: Instant,
    generation: u32,
    state: State,
}

impl Slot {
    const FREE: Self = Self {
        start: Instant::ZERO,
        end: Instant::ZERO,
        generation: 0,
        state: State::Free,
    };

    /// Whether the request counts for a window whose horizon is `horizon = t - W`.
    #[inline]
    fn counts(&self, horizon: Instant) -> bool {
        self.state != State::Free && self.end >= horizon
    }
}

/// The interval log of one budget. See the [module documentation](self).
#[derive(Clone)]
pub struct IntervalLog {
    slots: [Slot; CAPACITY],
    /// Slots in use: the `N` of the longest window.
    len: u16,
    /// Where the search for a free slot starts: after the last slot claimed,
    /// i.e. at the oldest admission.
    cursor: u16,
    /// The longest window (its `N` is `len`).
    longest: ServerLimit,
    /// The windows that the slot count does not already enforce.
    others: [ServerLimit; MAX_WINDOWS],
    others_len: u8,
    limits: [ServerLimit; MAX_WINDOWS],
    limits_len: u8,
    max_flight: Duration,
    /// The high-water mark of every `now` seen.
    latest: Instant,
    /// Places of every window held back for traffic that is not ours (see
    /// [`IntervalLog::set_reserve`]).
    reserve: u32,
}

impl fmt::Debug for IntervalLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntervalLog")
            .field("limits", &self.limits())
            .field("max_flight", &self.max_flight)
            .field("slots", &self.len)
            .field("in_flight", &self.in_flight())
            .field("latest", &self.latest)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

impl IntervalLog {
    /// A log enforcing every window of `limits`, reading a request that never
    /// reports as arrived at the latest `max_flight` after its admission.
    pub fn new(limits: &[ServerLimit], max_flight: Duration) -> Result<Self, IntervalLogError> {
        let Some(&first) = limits.first() else {
            return Err(IntervalLogError::NoLimits);
        };
        if limits.len() > MAX_WINDOWS {
            return Err(IntervalLogError::TooManyWindows { count: limits.len() });
        }
        if max_flight.is_zero() {
            return Err(IntervalLogError::ZeroMaxFlight);
        }
        let mut longest = first;
        for &limit in limits {
            if limit.max_requests == 0 || limit.window.is_zero() {
                return Err(IntervalLogError::EmptyLimit { limit });
            }
            if limit.max_requests as usize > CAPACITY {
                return Err(IntervalLogError::OverCapacity {
                    limit,
                    capacity: CAPACITY,
                });
            }
            if (limit.window, core::cmp::Reverse(limit.max_requests))
                > (longest.window, core::cmp::Reverse(longest.max_requests))
            {
                longest = limit;
            }
        }
        let mut stored = [first; MAX_WINDOWS];
        stored[..limits.len()].copy_from_slice(limits);
        // A window no longer than the longest, with at least its N, is implied:
        // it counts a subset of the longest window's requests.
        let mut others = [first; MAX_WINDOWS];
        let mut others_len = 0;
        for &limit in limits {
            if limit.max_requests < longest.max_requests {
                others[others_len] = limit;
                others_len += 1;
            }
        }
        Ok(Self {
            slots: [Slot::FREE; CAPACITY],
            len: longest.max_requests as u16,
            cursor: 0,
            longest,
            others,
            others_len: others_len as u8,
            limits: stored,
            limits_len: limits.len() as u8,
            max_flight,
            latest: Instant::ZERO,
            reserve: 0,
        })
    }

    /// The windows enforced, as given.
    pub fn limits(&self) -> &[ServerLimit] {
        &self.limits[..usize::from(self.limits_len)]
    }

    /// The maximum flight time.
    pub const fn max_flight(&self) -> Duration {
        self.max_flight
    }

    /// Holds `slots` places of every window back for traffic that is not
    /// ours (another process on the budget, or a server limit lower than
    /// the configured one): a request is admitted only while fewer than
    /// `N - slots` (at least one) earlier requests count in each window. It
    /// only ever admits less than the rule without it, so the guarantee
    /// holds whatever it is set to.
    pub fn set_reserve(&mut self, slots: u32) {
        self.reserve = slots;
    }

    /// The places held back (see [`IntervalLog::set_reserve`]).
    pub const fn reserve(&self) -> u32 {
        self.reserve
    }

    /// How many of `limit`'s places our requests may take.
    fn cap(&self, limit: &ServerLimit) -> usize {
        limit.max_requests.saturating_sub(self.reserve).max(1) as usize
    }

    /// Requests admitted and not yet ended by a report, a "no response" or
    /// abandonment.
    pub fn in_flight(&self) -> usize {
        self.used().iter().filter(|s| s.state == State::InFlight).count()
    }

    /// Requests that still count for some window at `now`: those that could
    /// still reach the server at or after `now - W` for the longest `W`.
    pub fn counting(&self, now: Instant) -> usize {
        let horizon = now.max(self.latest).saturating_sub(self.longest.window);
        self.used().iter().filter(|s| s.counts(horizon)).count()
    }

    fn used(&self) -> &[Slot] {
        &self.slots[..usize::from(self.len)]
    }

    /// `now`, or the latest instant seen if `now` is earlier.
    #[inline]
    fn observe(&mut self, now: Instant) -> Instant {
        let t = now.max(self.latest);
        self.latest = t;
        t
    }

    /// Admits one request at `now`, or says when to try again. A denial
    /// changes nothing but the high-water mark of `now`.
    #[inline]
    pub fn try_admit(&mut self, now: Instant) -> Result<Ticket, Denial> {
        let (index, t) = self.room(now)?;
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        slot.start = t;
        slot.end = t.saturating_add(self.max_flight);
        slot.state = State::InFlight;
        let next = index + 1;
        self.cursor = if next >= usize::from(self.len) {
            0
        } else {
            next as u16
        };
        Ok(Ticket {
            slot: index as u16,
            generation: slot.generation,
            admitted_at: t,
        })
    }

    /// Whether [`try_admit`](Self::try_admit) would admit a request at
    /// `now`, and if not, when to try again; changes nothing but the
    /// high-water mark of `now`.
    pub fn check(&mut self, now: Instant) -> Result<(), Denial> {
        self.room(now).map(|_| ())
    }

    /// The free slot a request would take at `now` (read against the
    /// high-water mark, which it raises) and that instant, or the denial.
    #[inline]
    fn room(&mut self, now: Instant) -> Result<(usize, Instant), Denial> {
        let t = self.observe(now);
        let horizon = t.saturating_sub(self.longest.window);
        let Some(index) = self.free_slot(horizon) else {
            return Err(self.denial(t));
        };
        // With places held back, a free slot is not enough for the longest
        // window either.
        let held_back = self.reserve > 0;
        let windows = core::iter::once(&self.longest)
            .filter(|_| held_back)
            .chain(&self.others[..usize::from(self.others_len)]);
        for limit in windows {
            let horizon = t.saturating_sub(limit.window);
            let counted = self.used().iter().filter(|s| s.counts(horizon)).count();
            if counted >= self.cap(limit) {
                return Err(self.denial(t));
            }
        }
        Ok((index, t))
    }

    /// The first slot from the cursor on whose request no longer counts for
    /// the longest window.
    #[inline]
    fn free_slot(&self, horizon: Instant) -> Option<usize> {
        let len = usize::from(self.len);
        let cursor = usize::from(self.cursor);
        if let Some(slot) = self.slots.get(cursor) {
            if !slot.counts(horizon) {
                return Some(cursor);
            }
        }
        (cursor + 1..len)
            .chain(0..cursor)
            .find(|&i| self.slots.get(i).is_some_and(|s| !s.counts(horizon)))
    }

    /// When a request could be admitted after `t` if nothing is reported, and
    /// whether a report could make that sooner.
    fn denial(&self, t: Instant) -> Denial {
        let horizon = t.saturating_sub(self.longest.window);
        // The ends of the counting requests, and the same with every request
        // in flight reported at `t`, the earliest a report can come.
        let mut ends = [Instant::ZERO; CAPACITY];
        let mut reported = [Instant::ZERO; CAPACITY];
        let mut n = 0;
        for slot in self.used() {
            if slot.counts(horizon) {
                ends[n] = slot.end;
                reported[n] = if slot.state == State::InFlight {
                    slot.end.min(t)
                } else {
                    slot.end
                };
                n += 1;
            }
        }
        let at = self.free_at(t, &mut ends[..n]);
        if self.free_at(t, &mut reported[..n]) >= at {
            Denial::Until(at)
        } else {
            Denial::UntilReport(at)
        }
    }

    /// The first instant after `t` at which the requests ending at `ends`
    /// leave room in every window (sorts `ends`, latest first).
    fn free_at(&self, t: Instant, ends: &mut [Instant]) -> Instant {
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let mut at = t;
        let windows = core::iter::once(&self.longest).chain(&self.others[..usize::from(self.others_len)]);
        for limit in windows {
            // Room once the N-th latest end (of the places not held back)
            // is before `at - W`.
            if let Some(&nth) = ends.get(self.cap(limit) - 1) {
                at = at.max(nth.saturating_add(limit.window).saturating_add(ONE_NANO));
            }
        }
        at
    }

    /// How many of the log's requests, `ticket`'s included, the server
    /// counted in a window of length `window` ending at the arrival of
    /// `ticket`'s request; `None` unless `ticket` is current and reported.
    /// Only an estimate of our part of a server's count (the rule never uses
    /// it): see [`Counted`].
    pub fn counted_with(&self, ticket: Ticket, window: Duration) -> Option<Counted> {
        let slots = &self.slots[..usize::from(self.len)];
        let own = slots.get(usize::from(ticket.slot))?;
        if own.generation != ticket.generation
            || own.start != ticket.admitted_at
            || own.state != State::Reported
        {
            return None;
        }
        let half = |s: &Slot| Duration::from_nanos((s.end - s.start).as_nanos() / 2);
        let arrival = own.start.saturating_add(half(own));
        let from = arrival.saturating_sub(window);
        let earliest = own.start.saturating_sub(window);
        let surely_from = own.end.saturating_sub(window);
        let mut counted = Counted {
            likely: 0,
            at_most: 0,
            surely: 1,
        };
        for s in slots.iter().filter(|s| s.state != State::Free) {
            // A request that reached the server in [s_i, e_i] may be in the
            // window of one that arrived in [s_j, r_j].
            if s.start <= own.end && s.end > earliest {
                counted.at_most += 1;
            }
            let at = match s.state {
                State::Reported => s.start.saturating_add(half(s)),
                _ => s.start.saturating_add(half(own)),
            };
            if at > from && at <= arrival {
                counted.likely += 1;
            }
            // Arrived in [s_i, e_i], within (e - W, s] of one that arrived in [s, e].
            if s.state == State::Reported
                && s.start > surely_from
                && s.end <= own.start
                && s.start < own.start
            {
                counted.surely += 1;
            }
        }
        Some(counted)
    }

    /// The slot of `ticket` if it is current and in one of `states`.
    fn current(&mut self, ticket: Ticket, states: &[State]) -> Option<&mut Slot> {
        let slot = self.slots[..usize::from(self.len)].get_mut(usize::from(ticket.slot))?;
        let current = slot.generation == ticket.generation
            && slot.start == ticket.admitted_at
            && states.contains(&slot.state);
        current.then_some(slot)
    }

    /// The response to `ticket`'s request was received at `now` (whatever its
    /// status): it counts until `now + W`. Also shortens a request ended with
    /// [`no_response`](Self::no_response) whose response came after all.
    /// Returns `false`, changing nothing, for a stale or already reported ticket.
    pub fn report(&mut self, ticket: Ticket, now: Instant) -> bool {
        let t = self.observe(now);
        let max_flight = self.max_flight;
        let Some(slot) = self.current(ticket, &[State::InFlight, State::Unanswered]) else {
            return false;
        };
        slot.end = t.clamp(slot.start, slot.start.saturating_add(max_flight));
        slot.state = State::Reported;
        true
    }

    /// `ticket`'s request ended without a response (transport error, client
    /// timeout): it may still be in the network, so it counts as in flight
    /// until its maximum flight time. Denials no longer wait on its report.
    /// Returns `false`, changing nothing, unless the ticket is in flight.
    pub fn no_response(&mut self, ticket: Ticket, now: Instant) -> bool {
        self.observe(now);
        let Some(slot) = self.current(ticket, &[State::InFlight]) else {
            return false;
        };
        slot.state = State::Unanswered;
        true
    }

    /// `ticket`'s request was never sent: it is forgotten at once. Calling it
    /// for a request that may have been sent breaks the guarantee.
    /// Returns `false`, changing nothing, unless the ticket is in flight.
    pub fn abandon(&mut self, ticket: Ticket, now: Instant) -> bool {
        self.observe(now);
        let Some(slot) = self.current(ticket, &[State::InFlight]) else {
            return false;
        };
        slot.state = State::Free;
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec::Vec;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(10 * S + ms * MS)
    }

    fn log(limits: &[ServerLimit], max_flight_ms: u64) -> IntervalLog {
        IntervalLog::new(limits, Duration::from_millis(max_flight_ms)).unwrap()
    }

    fn per_sec(n: u32) -> ServerLimit {
        ServerLimit::per_second(n)
    }

    #[test]
    fn counted_with_takes_each_arrival_half_way_through_its_round_trip() {
        let mut l = log(&[per_sec(10)], 5_000);
        let w = Duration::from_secs(1);
        let n = |likely, at_most, surely| {
            Some(Counted {
                likely,
                at_most,
                surely,
            })
        };
        let a = l.try_admit(at(0)).unwrap();
        assert!(l.report(a, at(100))); // arrived at 50, in [0, 100]
        let b = l.try_admit(at(200)).unwrap();
        assert!(l.report(b, at(260))); // at 230, in [200, 260]
        let c = l.try_admit(at(1_000)).unwrap(); // in flight
        let e = l.try_admit(at(1_050)).unwrap();
        assert!(l.abandon(e, at(1_050))); // never sent
        let d = l.try_admit(at(1_100)).unwrap();
        assert_eq!(l.counted_with(d, w), None, "not reported yet");
        assert!(l.report(d, at(1_140))); // at 1 120, 20 ms each way
                                         // Likely the window (120, 1 120]: b, c (sent with d's delay: 1 020)
                                         // and d. At most, every request that may have arrived after 100 (d
                                         // was sent at 1 100) and before 1 140: a only just misses it.
        assert_eq!(l.counted_with(d, w), n(3, 3, 2));
        assert_eq!(l.counted_with(c, w), None, "c is not reported");
        // The window is open at its start: b at 230 is out of (230, 1 230],
        // but may have arrived after 200.
        let f = l.try_admit(at(1_200)).unwrap();
        assert!(l.report(f, at(1_260)));
        assert_eq!(l.counted_with(f, w), n(3, 4, 2));
        // A stale ticket says nothing.
        let stale = Ticket {
            generation: d.generation.wrapping_add(1),
            ..d
        };
        assert_eq!(l.counted_with(stale, w), None);
        // Requests sent after this one's response are not in its window.
        assert_eq!(l.counted_with(b, w), n(2, 2, 2));
        let g = l.try_admit(at(1_300)).unwrap();
        assert!(l.report(g, at(2_101)));
        // Likely at 1 700 (c sent with g's 400 ms: 1 400); at most, what may
        // have arrived after 300 (g's window may start there): c, d, f, g.
        // Surely, in a sliding window: f (sent after 1 101, answered before
        // 1 300) and g; d, sent at 1 100, may have arrived before g's
        // window. (For d: b and d; for f: d and f; for b: a and b.)
        assert_eq!(l.counted_with(g, w), n(4, 4, 2));
    }

    #[test]
    fn surely_counts_what_arrived_inside_the_window_and_the_request_once() {
        let mut l = log(&[per_sec(10)], 5_000);
        let w = Duration::from_secs(1);
        let surely = |l: &IntervalLog, t| l.counted_with(t, w).map(|c| c.surely);
        let a = l.try_admit(at(0)).unwrap();
        assert!(l.report(a, at(10)));
        // b's window may start at its answer minus W: 0, where a was sent.
        // a may have arrived at 0 exactly, out of a window open at its start.
        let b = l.try_admit(at(500)).unwrap();
        assert!(l.report(b, at(1_000)));
        assert_eq!(surely(&l, b), Some(1));
        // One nanosecond less of round trip and a is surely in.
        let mut l = log(&[per_sec(10)], 5_000);
        let a = l.try_admit(at(0)).unwrap();
        assert!(l.report(a, at(10)));
        let b = l.try_admit(at(500)).unwrap();
        assert!(l.report(b, at(1_000) - ONE_NANO));
        assert_eq!(surely(&l, b), Some(2));
        // A request answered the instant it was sent counts once.
        let c = l.try_admit(at(2_000)).unwrap();
        assert!(l.report(c, at(2_000)));
        assert_eq!(surely(&l, c), Some(1));
    }

    #[test]
    fn full_burst_of_n_after_idle_then_denied_until_a_report() {
        let mut l = log(&[per_sec(10)], 5_000);
        let tickets: Vec<Ticket> = (0..10).map(|_| l.try_admit(at(0)).unwrap()).collect();
        // Ten in flight: only a report (or the flight bound) frees room.
        let d = l.try_admit(at(0)).unwrap_err();
        assert_eq!(d, Denial::UntilReport(at(6_000) + ONE_NANO));
        assert_eq!(l.in_flight(), 10);
        // Every report lets the window run from the report instant.
        for (i, t) in tickets.iter().enumerate() {
            assert!(l.report(*t, at(20 + i as u64)));
        }
        assert_eq!(l.try_admit(at(500)), Err(Denial::Until(at(1_020) + ONE_NANO)));
        assert!(l.try_admit(at(1_020)).is_err(), "closed windows count both ends");
        assert!(l.try_admit(at(1_020) + ONE_NANO).is_ok());
        assert!(l.try_admit(at(1_020) + ONE_NANO).is_err());
    }

    #[test]
    fn denials_and_the_log_describe_themselves() {
        let mut l = log(&[per_sec(1)], 2_000);
        let t = l.try_admit(at(0)).unwrap();
        let d = l.try_admit(at(0)).unwrap_err();
        assert_eq!(
            std::format!("{d}"),
            std::format!(
                "window full of requests in flight: until a report, at the latest {}",
                d.retry_at()
            )
        );
        let shown = std::format!("{l:?}");
        assert!(
            shown.starts_with("IntervalLog {") && shown.contains("in_flight: 1"),
            "{shown}"
        );
        assert!(l.report(t, at(10)));
        let d = l.try_admit(at(20)).unwrap_err();
        assert_eq!(
            std::format!("{d}"),
            std::format!("window full until {}", at(1_010) + ONE_NANO)
        );
        assert!(std::format!("{l:?}").contains("in_flight: 0"));
    }

    #[test]
    fn a_check_decides_as_an_admission_would_and_claims_nothing() {
        let mut l = log(&[per_sec(2)], 5_000);
        for _ in 0..2 {
            assert_eq!(l.check(at(0)), Ok(()));
            assert_eq!(l.check(at(0)), Ok(()));
            l.try_admit(at(0)).unwrap();
        }
        assert_eq!(l.in_flight(), 2);
        let denial = Denial::UntilReport(at(6_000) + ONE_NANO);
        assert_eq!(l.check(at(0)), Err(denial));
        assert_eq!(l.try_admit(at(0)), Err(denial));
        // It raises the high-water mark like any other call.
        assert_eq!(l.check(at(7_000)), Ok(()));
        assert_eq!(l.try_admit(at(1)).map(|t| t.admitted_at()), Ok(at(7_000)));
    }

    #[test]
    fn places_held_back_are_left_to_others_in_every_window() {
        let mut l = log(&[per_sec(10)], 5_000);
        l.set_reserve(3);
        let tickets: Vec<Ticket> = (0..7).map(|_| l.try_admit(at(0)).unwrap()).collect();
        assert_eq!(l.try_admit(at(0)), Err(Denial::UntilReport(at(6_000) + ONE_NANO)));
        for (i, t) in tickets.iter().enumerate() {
            assert!(l.report(*t, at(10 * i as u64)));
        }
        // Seven counting, seven allowed: room when the oldest of them ends.
        assert_eq!(l.try_admit(at(500)), Err(Denial::Until(at(1_000) + ONE_NANO)));
        assert!(l.try_admit(at(1_000) + ONE_NANO).is_ok());
        // Held back no more: the other three places are ours again.
        l.set_reserve(0);
        assert_eq!((0..3).filter(|_| l.try_admit(at(1_001)).is_ok()).count(), 3);
        assert!(l.try_admit(at(1_001)).is_err());
        // Never fewer than one place, however much is held back.
        let mut l = log(&[per_sec(2)], 5_000);
        l.set_reserve(u32::MAX);
        assert_eq!(l.reserve(), u32::MAX);
        let t = l.try_admit(at(0)).unwrap();
        assert!(l.try_admit(at(0)).is_err());
        assert!(l.report(t, at(5)));
        assert_eq!(l.try_admit(at(5)), Err(Denial::Until(at(1_005) + ONE_NANO)));
    }

    #[test]
    fn places_held_back_count_in_the_shorter_windows_too() {
        // 5 per second and 100 per minute (WebSocket messages): a reserve of
        // 2 leaves 3 per second.
        let mut l = log(
            &[per_sec(5), ServerLimit::new(100, Duration::from_secs(60))],
            5_000,
        );
        l.set_reserve(2);
        let tickets: Vec<Ticket> = (0..3).map(|_| l.try_admit(at(0)).unwrap()).collect();
        assert!(l.try_admit(at(0)).is_err());
        for t in tickets {
            assert!(l.report(t, at(1)));
        }
        assert_eq!(l.try_admit(at(2)), Err(Denial::Until(at(1_001) + ONE_NANO)));
    }

    #[test]
    fn in_flight_requests_block_until_reported() {
        let mut l = log(&[per_sec(2)], 10_000);
        let a = l.try_admit(at(0)).unwrap();
        let b = l.try_admit(at(0)).unwrap();
        // Long after one window, both may still be on their way.
        assert!(l.try_admit(at(3_000)).unwrap_err().waits_for_report());
        assert!(l.report(a, at(3_100)));
        // One settled, one in flight: the settled one frees room first, and
        // no report of the other can make that sooner.
        assert_eq!(l.try_admit(at(3_200)), Err(Denial::Until(at(4_100) + ONE_NANO)));
        let c = l.try_admit(at(4_100) + ONE_NANO).unwrap();
        assert!(l.report(b, at(4_200)));
        assert!(l.report(c, at(4_300)));
        assert_eq!(l.try_admit(at(4_300)), Err(Denial::Until(at(5_200) + ONE_NANO)));
    }

    #[test]
    fn max_flight_bounds_requests_that_never_report() {
        let mut l = log(&[per_sec(1)], 2_000);
        let a = l.try_admit(at(0)).unwrap();
        let free_at = at(3_000) + ONE_NANO;
        assert_eq!(l.try_admit(at(10)), Err(Denial::UntilReport(free_at)));
        assert!(l.try_admit(at(3_000)).is_err());
        let b = l.try_admit(free_at).unwrap();
        // The first ticket's slot was reused: its report is stale.
        assert!(!l.report(a, free_at));
        assert_eq!(l.in_flight(), 1);
        // A report long after the bound is read as at the bound.
        assert!(l.report(b, at(60_000)));
        assert_eq!(
            l.try_admit(at(60_000)),
            Ok(Ticket {
                slot: 0,
                generation: 3,
                admitted_at: at(60_000)
            })
        );
    }

    #[test]
    fn no_response_stays_until_max_flight_and_does_not_wait_for_a_report() {
        let mut l = log(&[per_sec(1)], 2_000);
        let a = l.try_admit(at(0)).unwrap();
        assert!(l.no_response(a, at(500)));
        assert!(!l.no_response(a, at(500)), "ends once");
        assert!(!l.abandon(a, at(500)), "it may have been sent");
        assert_eq!(l.try_admit(at(600)), Err(Denial::Until(at(3_000) + ONE_NANO)));
        // A response that comes after all still shortens it.
        assert!(l.report(a, at(700)));
        assert_eq!(l.try_admit(at(800)), Err(Denial::Until(at(1_700) + ONE_NANO)));
    }

    #[test]
    fn abandoned_requests_free_their_slot_at_once() {
        let mut l = log(&[per_sec(1)], 2_000);
        let a = l.try_admit(at(0)).unwrap();
        assert!(l.abandon(a, at(1)));
        assert!(!l.report(a, at(2)), "a forgotten ticket is stale");
        let b = l.try_admit(at(2)).unwrap();
        assert_eq!(b.admitted_at(), at(2));
        assert_eq!(l.in_flight(), 1);
    }

    #[test]
    fn multi_window_groups_keep_every_window() {
        // 5 per second and 100 per minute.
        let mut l = log(
            &[per_sec(5), ServerLimit::new(100, Duration::from_secs(60))],
            1_000,
        );
        let mut admitted = 0;
        let mut t = at(0);
        while t < at(60_000) {
            match l.try_admit(t) {
                Ok(ticket) => {
                    admitted += 1;
                    assert!(l.report(ticket, t + Duration::from_millis(30)));
                    t += Duration::from_millis(30);
                }
                Err(d) => {
                    assert!(d.retry_at() > t);
                    assert_eq!(l.try_admit(t), Err(d), "a denial writes nothing");
                    if admitted == 100 {
                        // The first request ended at 30 ms: it counts for a minute after.
                        assert_eq!(d, Denial::Until(at(60_030) + ONE_NANO));
                    }
                    t = d.retry_at();
                }
            }
        }
        // The per-second window paces, the per-minute one caps.
        assert_eq!(admitted, 100);
        // Five at once are fine, a sixth in the same second is not.
        let mut l = log(
            &[per_sec(5), ServerLimit::new(100, Duration::from_secs(60))],
            1_000,
        );
        for _ in 0..5 {
            let ticket = l.try_admit(at(0)).unwrap();
            assert!(l.report(ticket, at(1)));
        }
        assert_eq!(l.try_admit(at(2)), Err(Denial::Until(at(1_001) + ONE_NANO)));
    }

    #[test]
    fn stale_and_foreign_tickets_are_ignored() {
        let mut l = log(&[per_sec(2)], 1_000);
        let a = l.try_admit(at(0)).unwrap();
        assert!(l.report(a, at(10)));
        assert!(!l.report(a, at(20)), "idempotent");
        assert!(!l.no_response(a, at(20)));
        assert!(!l.abandon(a, at(20)));
        let forged = Ticket {
            slot: u16::MAX,
            generation: 1,
            admitted_at: at(0),
        };
        assert!(!l.report(forged, at(20)));
        let other_instant = Ticket {
            admitted_at: at(5),
            ..a
        };
        assert!(!l.report(other_instant, at(20)));
        // The first report stands.
        let _ = l.try_admit(at(30)).unwrap();
        // No report of the one in flight can free room before the reported one does.
        assert_eq!(l.try_admit(at(30)), Err(Denial::Until(at(1_010) + ONE_NANO)));
    }

    #[test]
    fn a_clock_going_backwards_reads_as_no_time_passed() {
        let mut l = log(&[per_sec(1)], 1_000);
        let a = l.try_admit(at(5_000)).unwrap();
        let b = l.try_admit(at(0)).unwrap_err();
        assert_eq!(b, Denial::UntilReport(at(7_000) + ONE_NANO));
        // Reported "before" its admission: read as at the high-water mark.
        assert!(l.report(a, at(0)));
        assert_eq!(l.try_admit(at(0)), Err(Denial::Until(at(6_000) + ONE_NANO)));
        let c = l.try_admit(at(6_000) + ONE_NANO).unwrap();
        assert!(c.admitted_at() > a.admitted_at());
    }

    #[test]
    fn the_end_of_time_saturates_without_panicking() {
        let mut l = IntervalLog::new(&[ServerLimit::new(2, Duration::MAX)], Duration::MAX).unwrap();
        let a = l.try_admit(Instant::MAX).unwrap();
        assert!(l.report(a, Instant::MAX));
        let _ = l.try_admit(Instant::ZERO).unwrap();
        assert_eq!(l.try_admit(Instant::MAX), Err(Denial::Until(Instant::MAX)));
        assert_eq!(l.counting(Instant::ZERO), 2);
    }

    #[test]
    fn construction_refuses_what_it_cannot_enforce() {
        let d = Duration::from_secs(1);
        assert_eq!(IntervalLog::new(&[], d).unwrap_err(), IntervalLogError::NoLimits);
        assert_eq!(
            IntervalLog::new(&[per_sec(1); 4], d).unwrap_err(),
            IntervalLogError::TooManyWindows { count: 4 }
        );
        assert_eq!(
            IntervalLog::new(&[per_sec(0)], d).unwrap_err(),
            IntervalLogError::EmptyLimit { limit: per_sec(0) }
        );
        let zero_window = ServerLimit::new(3, Duration::ZERO);
        assert_eq!(
            IntervalLog::new(&[zero_window], d).unwrap_err(),
            IntervalLogError::EmptyLimit { limit: zero_window }
        );
        assert_eq!(
            IntervalLog::new(&[per_sec(5), per_sec(129)], d).unwrap_err(),
            IntervalLogError::OverCapacity {
                limit: per_sec(129),
                capacity: CAPACITY
            }
        );
        assert_eq!(
            IntervalLog::new(&[per_sec(5)], Duration::ZERO).unwrap_err(),
            IntervalLogError::ZeroMaxFlight
        );
        assert!(IntervalLog::new(&[per_sec(128)], d).is_ok());
        let e = IntervalLogError::OverCapacity {
            limit: per_sec(129),
            capacity: CAPACITY,
        };
        assert!(std::format!("{e}").contains("128 slots"));
    }

    /// A small deterministic generator for the brute-force comparison.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % below.max(1)
        }
    }

    /// The rule over the whole history, with no slots: (start, end, ended by abandonment).
    fn rule_admits(history: &[(Instant, Instant, bool)], limits: &[ServerLimit], t: Instant) -> bool {
        limits.iter().all(|l| {
            let horizon = t.saturating_sub(l.window);
            let counted = history
                .iter()
                .filter(|(_, end, gone)| !gone && *end >= horizon)
                .count();
            counted < l.max_requests as usize
        })
    }

    /// With as many slots as the largest N, the log admits exactly when the
    /// rule over the whole history does: a free slot always exists when the
    /// rule admits, and the retry instant of a denial is exact when nothing
    /// is reported meanwhile.
    #[test]
    fn the_slots_decide_exactly_as_the_rule_over_the_whole_history() {
        let shapes: [&[ServerLimit]; 4] = [
            &[per_sec(3)],
            &[per_sec(CAPACITY as u32)],
            &[per_sec(2), ServerLimit::new(7, Duration::from_secs(5))],
            &[
                ServerLimit::new(4, Duration::from_millis(300)),
                per_sec(6),
                ServerLimit::new(6, Duration::from_millis(200)),
            ],
        ];
        let mut rng = Lcg(7);
        for limits in shapes {
            let max_flight = Duration::from_millis(1_500);
            let mut l = IntervalLog::new(limits, max_flight).unwrap();
            let longest = limits.iter().map(|l| l.window).max().unwrap();
            // (ticket, index into history) of requests not yet ended.
            let mut open: Vec<(Ticket, usize)> = Vec::new();
            let mut history: Vec<(Instant, Instant, bool)> = Vec::new();
            let mut t = at(0);
            // Under Miri (every step interpreted) 2.5 % of the operations.
            for _ in 0..if cfg!(miri) { 100 } else { 4_000 } {
                t += Duration::from_millis(rng.next(4) * rng.next(60));
                match rng.next(6) {
                    0..=2 => {
                        let expected = rule_admits(&history, limits, t);
                        match l.try_admit(t) {
                            Ok(ticket) => {
                                assert!(expected, "{limits:?}: admitted at {t} against the rule");
                                history.push((t, t + max_flight, false));
                                open.push((ticket, history.len() - 1));
                            }
                            Err(d) => {
                                assert!(!expected, "{limits:?}: denied at {t}, the rule admits");
                                let at = d.retry_at();
                                assert!(at > t);
                                assert!(rule_admits(&history, limits, at), "{d:?} at {t}");
                                assert!(!rule_admits(&history, limits, at - ONE_NANO), "{d:?} at {t}");
                                if d.waits_for_report() {
                                    assert!(!open.is_empty(), "{d:?} with nothing in flight");
                                } else {
                                    // The earliest any report could come is now: it changes nothing.
                                    let mut reported = l.clone();
                                    for (ticket, _) in &open {
                                        assert!(reported.report(*ticket, t));
                                    }
                                    assert_eq!(reported.try_admit(t).map_err(Denial::retry_at), Err(at));
                                }
                            }
                        }
                    }
                    3 | 4 if !open.is_empty() => {
                        let (ticket, i) = open.swap_remove(rng.next(open.len() as u64) as usize);
                        if l.report(ticket, t) {
                            history[i].1 = t.min(history[i].0 + max_flight);
                        } else {
                            assert!(
                                history[i].1 < t - longest,
                                "a counting request's report was refused"
                            );
                        }
                    }
                    5 if !open.is_empty() => {
                        let (ticket, i) = open.swap_remove(rng.next(open.len() as u64) as usize);
                        let ended = if rng.next(2) == 0 {
                            let done = l.abandon(ticket, t);
                            history[i].2 |= done;
                            done
                        } else {
                            l.no_response(ticket, t)
                        };
                        assert!(
                            ended || history[i].1 < t - longest,
                            "a counting request's end was refused"
                        );
                    }
                    _ => {}
                }
                assert!(l.counting(t) <= usize::from(l.len));
            }
        }
    }
}
