//! What others use of a budget we share with them, estimated from the
//! server's answers: an estimate that follows them both ways.
//!
//! Upbit's `Remaining-Req` says how many requests the server counted in its
//! window. What our own admissions cannot explain is used by someone else: a
//! process on the same IP or pocket that does not use this limiter, or a
//! server limit lower than the configured one (which looks the same, and
//! calls for the same answer: fewer places for us). The estimate is counted
//! in places of the group's shortest window and kept per group.
//!
//! - **It rises at once**: an observation above the estimate replaces it.
//! - **It decays with evidence**: the estimate is the largest observation of
//!   the last [`WINDOWS`] windows (the current one and the two before), so a
//!   co-tenant that varies is covered by its recent peaks, and one that stops
//!   is forgotten three windows after its last request seen.
//! - **A 429 teaches a ceiling**: the places the 429 showed missing are
//!   held back for the hold period (the group's
//!   [`ceiling_hold`](crate::GroupConfig::ceiling_hold), 48 h by default),
//!   then given back one at a time, one per hold period: a probe upwards.
//!   A 429 within [`PROBE_WINDOWS`] windows of a place given back answers
//!   the probe: it takes that one place back (not what it shows missing,
//!   which counts the probe's place and the adaptive reduction's), so a
//!   probe costs at most one 429 per hold if the server's limit is still
//!   lower.
//! - **Headers give a place back early**: a ceiling (not locked) whose
//!   headers showed room beyond every place we took (`sec > 0` while the
//!   most of ours filled them) for [`PROBE_WINDOWS`] windows, with no full
//!   window, holds back more than the server took away; a place is given
//!   back then, not when the hold ends. Once a probe met a 429, none is
//!   given back early until a fresh 429 teaches a new ceiling.
//! - **A ceiling rises to what headers surely show**: while one is held
//!   (unless it is locked: see below), others that even the most of ours cannot
//!   explain in every header of each of the last [`WINDOWS`] windows are
//!   surely there (others, or a lower limit). A ceiling below them, from a
//!   429 that showed fewer places missing, rises to them: else the
//!   reserve drops to the ceiling whenever three windows of headers leave
//!   some of ours in doubt, and the next 429 comes then.
//! - **Headers are read against the ceiling**: while one is held, a header
//!   whose count the ceiling's places and the most of ours can explain
//!   shows nobody beyond it, so a lower limit that a 429 taught is not also
//!   counted as a neighbour (with a margin) every time a header shows it.
//!   And a header that shows the window full (`sec=0`) while a ceiling is
//!   held says the server has no room beyond it: the hold starts afresh,
//!   so no probe upwards is spent where headers already answer it. A
//!   server at its limit fills the window at once after a probe; one whose
//!   first full window after a probe comes only after [`DRAIN_WINDOWS`]
//!   windows of room is filling up (a token bucket draining), so the
//!   probe's place is taken back before its 429.
//! - **Headers end a ceiling that others explain**: the 429 was someone
//!   else's doing if headers showed others in the windows before it, or,
//!   while it is held, others beyond the ceiling's places, or a count of
//!   one (only the request itself: the server has its whole limit). Others
//!   within the ceiling's places are what a lower limit shows too (as many
//!   more counted than ours as it took away): they explain the ceiling
//!   only while every header has counted all of ours that surely arrived
//!   in the window before it, as a sliding window does, which shows a
//!   lower limit in every header. One that counted fewer
//!   ([`Sighting::below_sliding`]: a calendar window, a token bucket)
//!   marks the group's headers as lenient for good: they can show room
//!   that a lower limit does not have. Once every header shows nobody
//!   else (and no 429 came) for a window longer than their longest
//!   silence between sightings, they are gone and the ceiling ends
//!   ([`observe`](OutsideUse::observe) says so, and the limiter lifts the
//!   adaptive reduction the 429 caused). Their silences are known once
//!   they were seen over [`STRETCH_WINDOWS`] windows (until then
//!   [`WINDOWS`] windows of quiet end it): a script on a timer, seen in
//!   every header, is gone after one quiet window; one that pauses is
//!   waited for as long as it paused. A ceiling
//!   nothing explained (a lower limit, as far as we can tell) is held.
//!   And headers get one chance: a 429 within
//!   [`PROBATION_WINDOWS`] windows of their ending a ceiling teaches one
//!   that they cannot end (locked).
//! - **Headers bring a locked ceiling down by proof**: a server whose limit
//!   is lower by `k` places counts at least `k + 1` in every header (the
//!   request itself), and on a sliding window at least `k` more than the
//!   requests of ours that surely arrived in it (while no header has
//!   counted fewer than those, the headers are taken to count a sliding
//!   window). A header that leaves fewer places to a lower limit than the
//!   ceiling holds back proves it holds back too much: it comes down one
//!   place, at most once per [`STEP_WINDOWS`] windows since the ceiling
//!   last changed or a window was full. Each step is a probe (a 429 after
//!   it, or the drain rule, takes the place back), and it never goes below
//!   what a lower limit takes on headers that count as they seem to (a
//!   fixed window lowered by more than half can look sliding: there a step
//!   may cost a 429, at most one per [`STEP_WINDOWS`] windows). A co-tenant
//!   that left does not keep a locked ceiling for its whole hold.
//!
//! Everything is a pure function of the state and `now`: nothing runs by
//! itself, and a clock going backwards reads as "no time passed".

use crate::time::{Duration, Instant};

/// How many windows the estimate remembers.
pub const WINDOWS: usize = 3;

/// Windows after headers ended a ceiling in which a 429 teaches one that
/// headers cannot end.
pub const PROBATION_WINDOWS: u64 = 20;

/// Windows of headers showing room beyond our places after which a held
/// ceiling gives a place back early, and in which a 429 after a place was
/// given back (early or when a hold ends) answers that probe.
pub const PROBE_WINDOWS: u64 = 600;

/// Windows after a probe from which the first full window shows the
/// server's count filling up (a bucket draining), not the limit reached.
pub const DRAIN_WINDOWS: u64 = 3;

/// Windows between the steps by which a locked ceiling comes down while
/// headers prove it holds back more than any lower limit could take.
pub const STEP_WINDOWS: u64 = 60;

/// Windows without others seen after which they have left (their next
/// sighting starts a new stretch); and how long a stretch must last before
/// its longest silence tells when they are gone.
pub const STRETCH_WINDOWS: u64 = 60;

/// What one `Remaining-Req` header showed, in places of the group's
/// shortest window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sighting {
    /// The requests the server counted in its window, this one included
    /// (the group's capacity minus `sec`).
    pub used: u32,
    /// The most of ours the server can have counted there.
    pub ours_at_most: u32,
    /// The likely count of ours there (at most `ours_at_most`).
    pub ours_likely: u32,
    /// No request was left in the window (`sec=0`).
    pub full: bool,
    /// The requests of ours that surely arrived in the window before the
    /// request, the request included (`None`: not known). A server that
    /// counts a sliding window counted every one of them.
    pub ours_surely: Option<u32>,
    /// The most of ours there took every place the limiter gave us (the
    /// capacity less what it held back): a window with no room beyond
    /// them would have been full.
    pub at_our_places: bool,
}

impl Sighting {
    /// The requests of others the header shows: none if even the most of
    /// ours can explain the count (a client alone never sees a neighbour),
    /// else what the likely count of ours leaves.
    pub const fn others(&self) -> u32 {
        if self.used > self.ours_at_most {
            self.used.saturating_sub(self.ours_likely)
        } else {
            0
        }
    }

    /// The server counted fewer than surely arrived in the window before
    /// the request: it does not count a sliding window.
    pub fn below_sliding(&self) -> bool {
        self.ours_surely.is_some_and(|surely| self.used < surely)
    }

    /// The requests of others (or the places of a lower limit) the server
    /// surely counted: what even the most of ours leaves.
    pub const fn surely_others(&self) -> u32 {
        self.used.saturating_sub(self.ours_at_most)
    }
}

/// A ceiling a 429 taught, as it is held at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Ceiling {
    /// The places of the group's shortest window it holds back.
    pub places: u32,
    /// Headers cannot end it (a 429 came soon after headers had ended
    /// one); they can only prove it too high, a place per [`STEP_WINDOWS`]
    /// windows.
    pub locked: bool,
    /// Others' use explains it: it ends once headers show them gone.
    /// Otherwise it is a lower server limit as far as headers can tell.
    pub explained: bool,
    /// When the hold gives a place back (a probe), unless a full window,
    /// a 429 or a header changes the ceiling first.
    pub next_give_back: Instant,
}

/// What was observed in one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    /// The window's number: `now / W`.
    window: u64,
    /// The most requests of others seen in it.
    most: u32,
    /// The fewest others a header surely showed in it
    /// ([`Sighting::surely_others`]).
    least: u32,
}

/// The estimate of what others use of one group's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutsideUse {
    window: Duration,
    hold: Duration,
    buckets: [Bucket; WINDOWS],
    /// Places a 429 showed missing, and since when they are held back: the
    /// 429, or the latest header that showed the window full while held.
    ceiling: u32,
    ceiling_since: Instant,
    /// Whether others' use, not a lower limit, explains the ceiling: others
    /// seen before the 429, or beyond the ceiling's places while it is
    /// held, or the server's whole limit shown. It ends when they are gone.
    ceiling_explained: bool,
    /// Whether headers showed others within the ceiling's places while it
    /// is held: that explains it only where headers show a lower limit in
    /// every window (not [`headers_lenient`](Self::headers_lenient)).
    others_within: bool,
    /// A header showed the server does not count a sliding window (a
    /// calendar window, one anchored on a first request, a token bucket):
    /// its headers can show room that a lower limit does not have.
    headers_lenient: bool,
    /// A ceiling that headers cannot end: learned soon after headers ended
    /// one, they misled us once (a server whose headers show room that a
    /// lower limit does not have).
    ceiling_locked: bool,
    /// When headers last ended a ceiling.
    ended_at: Option<Instant>,
    /// Since when every header that found us at our places has shown room
    /// beyond them while a ceiling is held (`None`: none yet, or one showed
    /// the window full).
    room_since: Option<Instant>,
    /// When a place of the ceiling was last given back (a probe).
    probed_at: Option<Instant>,
    /// A header showed the window full since that probe.
    probe_filled: bool,
    /// A probe met a 429 since a fresh 429 taught the ceiling: no place is
    /// given back early again.
    probe_failed: bool,
    /// Since when every header has shown nobody else (`None`: the last one
    /// showed someone, or a 429 came after it).
    quiet_since: Option<Instant>,
    /// When others were last seen, and since when they have been seen with
    /// no silence of [`STRETCH_WINDOWS`] windows (a stretch).
    others_at: Option<Instant>,
    stretch_since: Instant,
    /// The longest span of headers showing nobody else that ended with
    /// others seen again, in that stretch.
    longest_quiet: Duration,
    latest: Instant,
}

impl OutsideUse {
    /// No use by others yet, for a group whose shortest window is `window`;
    /// a learned ceiling is held for `hold` (zero: never held).
    pub const fn new(window: Duration, hold: Duration) -> Self {
        Self {
            window,
            hold,
            buckets: [Bucket {
                window: 0,
                most: 0,
                least: 0,
            }; WINDOWS],
            ceiling: 0,
            ceiling_since: Instant::ZERO,
            ceiling_explained: false,
            others_within: false,
            headers_lenient: false,
            ceiling_locked: false,
            ended_at: None,
            room_since: None,
            probed_at: None,
            probe_filled: false,
            probe_failed: false,
            quiet_since: None,
            others_at: None,
            stretch_since: Instant::ZERO,
            longest_quiet: Duration::ZERO,
            latest: Instant::ZERO,
        }
    }

    /// A new shortest window and hold for the same group: what was seen is
    /// kept (a hold of zero forgets a learned ceiling).
    pub fn set_config(&mut self, window: Duration, hold: Duration) {
        self.window = window;
        self.hold = hold;
    }

    fn observe_now(&mut self, now: Instant) -> Instant {
        self.latest = self.latest.max(now);
        self.latest
    }

    fn window_of(&self, at: Instant) -> u64 {
        at.as_nanos() / self.window.as_nanos().max(1)
    }

    /// A header read at `now` showed `sighting`. Returns `true` when this
    /// ends a ceiling that others explained: every header for a window
    /// longer than their longest silence (see the module docs) showed
    /// nobody else, none of them a full window, and no 429 came in that
    /// time (we are alone on the budget again).
    pub fn observe(&mut self, now: Instant, sighting: Sighting) -> bool {
        let now = self.observe_now(now);
        let others = sighting.others();
        self.settle(now);
        self.headers_lenient |= sighting.below_sliding();
        if self.ceiling_locked
            && self.ceiling > 0
            && !sighting.full
            && self.lower_by_at_most(&sighting) < self.ceiling
            && now - self.ceiling_since >= self.window.saturating_mul(STEP_WINDOWS)
        {
            // The server lacks fewer places than the ceiling holds back, so
            // one place less still covers any lower limit. The step is a
            // probe.
            self.ceiling -= 1;
            self.ceiling_since = now;
            self.probed_at = Some(now);
            self.probe_filled = false;
        }
        let ceiling = self.ceiling;
        if sighting.full {
            // No room beyond the ceiling: hold it afresh. A server at its
            // limit fills the window right after a probe; one that shows
            // room for a few windows first is filling up (a bucket
            // draining): the probe's 429 is coming, so its place is taken
            // back first.
            let since_probe = self.probed_at.map(|at| now - at);
            let draining = !self.probe_filled
                && since_probe
                    .is_some_and(|d| d >= self.window.saturating_mul(DRAIN_WINDOWS) && d < self.probe_span());
            if draining {
                self.ceiling = self.ceiling.saturating_add(1);
                self.probe_failed = true;
                self.probed_at = None;
            }
            self.probe_filled = true;
            self.ceiling_since = now;
            self.room_since = None;
        } else if ceiling > 0 && sighting.at_our_places && !self.probe_failed && !self.ceiling_locked {
            // Room beyond every place we took, for PROBE_WINDOWS windows:
            // the ceiling holds back more than the server took away. Give
            // a place back now rather than when the hold ends.
            let room_since = *self.room_since.get_or_insert(now);
            if now - room_since >= self.probe_span() {
                self.ceiling = ceiling - 1;
                self.ceiling_since = now;
                self.probed_at = Some(now);
                self.probe_filled = false;
                self.room_since = None;
            }
        }
        // Beyond a ceiling: only what the ceiling's places cannot explain (a
        // lower limit shows as many more counted than ours as it took away).
        let beyond = sighting.surely_others() > ceiling;
        let held = if ceiling == 0 || beyond { others } else { 0 };
        if held > 0 || sighting.used <= 1 {
            // Someone else's use, or the server's whole limit (a count of
            // only this request): no lower limit taught the ceiling.
            self.ceiling_explained |= !self.ceiling_locked;
        } else if others > 0 {
            self.others_within |= !self.ceiling_locked;
        }
        let explained = self.explained();
        let mut alone = false;
        if others == 0 && !sighting.full {
            let quiet_since = *self.quiet_since.get_or_insert(now);
            if now - quiet_since >= self.quiet_for() && explained && ceiling > 0 {
                // The 429 was someone else's doing, and they are gone.
                self.ceiling = 0;
                self.ended_at = Some(now);
                alone = true;
            }
        } else {
            let quiet_since = self.quiet_since.take();
            if others > 0 {
                self.seen_others(now, quiet_since);
            }
        }
        let window = self.window_of(now);
        let surely = sighting.surely_others();
        match self.buckets.iter_mut().find(|b| b.window == window) {
            Some(b) => {
                b.most = b.most.max(held);
                b.least = b.least.min(surely);
            }
            None => {
                if let Some(oldest) = self.buckets.iter_mut().min_by_key(|b| b.window) {
                    *oldest = Bucket {
                        window,
                        most: held,
                        least: surely,
                    };
                }
            }
        }
        let held_back = self.ceiling_at(now);
        if !self.ceiling_locked && held_back > 0 {
            // Others (or a lower limit) surely counted in every recent
            // window, more than the ceiling holds back: it was too low. (A
            // header showing that many is beyond it, so it explains it.)
            let surely = self.surely_seen(now);
            if surely > held_back {
                self.ceiling = surely;
                self.ceiling_since = now;
            }
        }
        alone
    }

    /// A 429 at `now` showed `missing` places fewer than we counted on.
    pub fn on_429(&mut self, now: Instant, missing: u32) {
        let now = self.observe_now(now);
        self.quiet_since = None;
        if self.hold.is_zero() {
            return;
        }
        self.settle(now);
        let fresh = self.ceiling == 0;
        let probation = self.window.saturating_mul(PROBATION_WINDOWS);
        if self.ended_at.is_some_and(|at| now - at < probation) {
            self.ceiling_locked = true;
        } else if fresh {
            self.ceiling_locked = false;
        }
        if fresh {
            // Others seen in the windows before it: the 429 is theirs.
            self.ceiling_explained = self.seen(now) > 0;
            self.others_within = false;
        }
        self.ceiling_explained &= !self.ceiling_locked;
        self.others_within &= !self.ceiling_locked;
        // A probe (a place given back lately) found no room: the 429 takes
        // that place back. Else it shows what is missing.
        let probed = !fresh && self.probed_at.is_some_and(|at| now - at < self.probe_span());
        self.ceiling = if probed {
            self.ceiling.saturating_add(1)
        } else {
            self.ceiling.max(missing)
        };
        self.ceiling_since = now;
        self.probe_failed = !fresh && (self.probe_failed || probed);
        self.probed_at = None;
        self.room_since = None;
    }

    /// A header at `now` showed others, after headers showing nobody else
    /// since `quiet_since`: that silence was one of theirs, unless it was
    /// long enough to start a new stretch.
    fn seen_others(&mut self, now: Instant, quiet_since: Option<Instant>) {
        let stretch = self.window.saturating_mul(STRETCH_WINDOWS);
        if self.others_at.is_none_or(|at| now - at >= stretch) {
            self.stretch_since = now;
            self.longest_quiet = Duration::ZERO;
        } else if let Some(since) = quiet_since {
            self.longest_quiet = self.longest_quiet.max(now - since);
        }
        self.others_at = Some(now);
    }

    /// The most places a lower server limit can have taken, as `sighting`
    /// proves. A limit lower by `k` places counts `k` more than the server's
    /// own count: at least `k + 1` (the request itself), and, where headers
    /// have always counted a sliding window, at least `k` more than the
    /// requests of ours that surely arrived in it.
    fn lower_by_at_most(&self, sighting: &Sighting) -> u32 {
        let counted = match sighting.ours_surely {
            Some(surely) if !self.headers_lenient => surely.max(1),
            _ => 1,
        };
        sighting.used.saturating_sub(counted)
    }

    /// How long every header must show nobody else before others who
    /// explained a ceiling are gone: a window longer than their longest
    /// silence, once they were seen over a stretch of [`STRETCH_WINDOWS`]
    /// windows; [`WINDOWS`] windows until then.
    fn quiet_for(&self) -> Duration {
        let stretch = self.window.saturating_mul(STRETCH_WINDOWS);
        let known = self
            .others_at
            .is_some_and(|at| at - self.stretch_since >= stretch);
        if known {
            self.longest_quiet.saturating_add(self.window)
        } else {
            self.window.saturating_mul(WINDOWS as u64)
        }
    }

    fn probe_span(&self) -> Duration {
        self.window.saturating_mul(PROBE_WINDOWS)
    }

    /// Gives back the places whose hold ended by `now` (each a probe: the
    /// latest is remembered), as [`ceiling_at`](Self::ceiling_at) counts them.
    fn settle(&mut self, now: Instant) {
        if self.ceiling == 0 || self.hold.is_zero() {
            return;
        }
        let periods = (now - self.ceiling_since).as_nanos() / self.hold.as_nanos();
        if periods > 0 {
            self.ceiling = self.ceiling_at(now);
            self.ceiling_since += self.hold.saturating_mul(periods);
            self.probed_at = Some(self.ceiling_since);
            self.probe_filled = false;
        }
    }

    /// The learned ceiling's places held back at `now`: all of them for the
    /// hold period, then one fewer per hold period.
    fn ceiling_at(&self, now: Instant) -> u32 {
        if self.ceiling == 0 || self.hold.is_zero() {
            return 0;
        }
        let held = now.max(self.latest) - self.ceiling_since;
        let given_back = held.as_nanos() / self.hold.as_nanos();
        self.ceiling
            .saturating_sub(u32::try_from(given_back).unwrap_or(u32::MAX))
    }

    /// Others' use explains the ceiling: seen beyond it or before its 429,
    /// the server's whole limit shown, or others within its places where
    /// headers count a sliding window.
    fn explained(&self) -> bool {
        self.ceiling_explained || (self.others_within && !self.headers_lenient)
    }

    /// The learned ceiling held at `now`, if any.
    pub fn ceiling(&self, now: Instant) -> Option<Ceiling> {
        let places = self.ceiling_at(now);
        if places == 0 {
            return None;
        }
        let held = now.max(self.latest) - self.ceiling_since;
        let periods = held.as_nanos() / self.hold.as_nanos().max(1);
        Some(Ceiling {
            places,
            locked: self.ceiling_locked,
            explained: self.explained(),
            next_give_back: self
                .ceiling_since
                .saturating_add(self.hold.saturating_mul(periods.saturating_add(1))),
        })
    }

    /// The places to hold back for others at `now`.
    pub fn reserve(&self, now: Instant) -> u32 {
        self.seen(now).max(self.ceiling_at(now))
    }

    /// The buckets of the last [`WINDOWS`] windows at `now`.
    fn recent(&self, now: Instant) -> impl Iterator<Item = &Bucket> {
        let window = self.window_of(now.max(self.latest));
        self.buckets
            .iter()
            .filter(move |b| b.window <= window && window - b.window < WINDOWS as u64)
    }

    /// The most requests of others seen in one window of the last [`WINDOWS`].
    fn seen(&self, now: Instant) -> u32 {
        self.recent(now).map(|b| b.most).max().unwrap_or(0)
    }

    /// The fewest others headers surely showed in each of the last
    /// [`WINDOWS`] windows (none unless every one of them had a header).
    fn surely_seen(&self, now: Instant) -> u32 {
        if self.recent(now).count() < WINDOWS {
            return 0;
        }
        self.recent(now).map(|b| b.least).min().unwrap_or(0)
    }

    /// The next window boundary after `now`, where what others were seen
    /// using may fall out of the last [`WINDOWS`], if anything is held back.
    /// (A learned ceiling falls at multiples of the hold; the decisions
    /// that use it read [`reserve`](Self::reserve) each time.)
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let now = now.max(self.latest);
        if self.reserve(now) == 0 {
            return None;
        }
        let w = self.window.as_nanos().max(1);
        Some(Instant::from_nanos(
            self.window_of(now).saturating_add(1).saturating_mul(w),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(1_000 * S + ms * 1_000_000)
    }

    /// A header showing `n` requests none of which can be ours.
    fn others(n: u32) -> Sighting {
        Sighting {
            used: n,
            ..Sighting::default()
        }
    }

    /// A header showing three requests, all of which can be ours: nobody
    /// else, and no proof of the server's whole limit either.
    const QUIET: Sighting = Sighting {
        used: 3,
        ours_at_most: 3,
        ours_likely: 3,
        full: false,
        ours_surely: None,
        at_our_places: false,
    };

    fn estimate() -> OutsideUse {
        OutsideUse::new(Duration::from_secs(1), Duration::from_secs(3_600))
    }

    #[test]
    fn rises_at_once_and_is_forgotten_three_windows_after_the_last_sight() {
        let mut o = estimate();
        assert_eq!(o.reserve(at(0)), 0);
        assert_eq!(o.next_change(at(0)), None);
        o.observe(at(100), others(2));
        o.observe(at(200), others(4));
        o.observe(at(300), others(1));
        assert_eq!(o.reserve(at(300)), 4, "the largest of the window");
        // Lower sightings in the next windows do not lower it while the peak
        // is among the last three windows.
        o.observe(at(1_100), others(1));
        o.observe(at(2_100), others(1));
        assert_eq!(o.reserve(at(2_999)), 4);
        assert_eq!(o.next_change(at(2_500)), Some(at(3_000)));
        assert_eq!(o.reserve(at(3_000)), 1);
        // Nothing seen for three windows: nothing held back.
        assert_eq!(o.reserve(at(5_000)), 0);
        assert_eq!(o.next_change(at(5_000)), None);
    }

    #[test]
    fn a_ceiling_is_held_then_given_back_one_place_per_hold() {
        let mut o = estimate();
        o.on_429(at(0), 4);
        assert_eq!(o.reserve(at(0)), 4);
        assert_eq!(o.reserve(at(3_599_999)), 4);
        assert_eq!(
            o.next_change(at(10)),
            Some(at(1_000)),
            "the window bound comes first"
        );
        assert_eq!(o.reserve(at(3_600_000)), 3);
        assert_eq!(o.reserve(at(4 * 3_600_000)), 0);
        // Another 429 while held, once the probe's windows are over: the
        // larger of the two, held afresh.
        let mut o = estimate();
        o.on_429(at(0), 4);
        let later = 3_600_000 + PROBE_WINDOWS * 1_000;
        o.on_429(at(later), 2);
        assert_eq!(o.reserve(at(later)), 3);
        assert_eq!(o.reserve(at(later + 3_599_999)), 3);
        // Headers showing nobody else leave it as it is.
        for k in 0..4 {
            o.observe(at(later + 3_590_000 + k * 1_000), QUIET);
        }
        assert_eq!(o.reserve(at(later + 3_595_000)), 3);
        // A 429 within them answers the probe: it takes back the place
        // given back, whatever it shows missing.
        for missing in [1, 6] {
            let mut o = estimate();
            o.on_429(at(0), 4);
            o.on_429(at(later - 1), missing);
            assert_eq!(o.reserve(at(later - 1)), 4, "{missing}");
            assert_eq!(o.reserve(at(later + 3_599_998)), 4, "{missing}");
        }
    }

    /// Others seen at 0, then a 429 at 100 ms showing five places missing.
    fn explained_ceiling() -> OutsideUse {
        let mut o = estimate();
        o.observe(at(0), others(3));
        o.on_429(at(100), 5);
        o
    }

    #[test]
    fn a_ceiling_others_explain_ends_when_headers_show_them_gone() {
        let mut o = estimate();
        // Others are seen, then a 429: their use explains it.
        o.observe(at(0), others(3));
        o.on_429(at(100), 5);
        assert_eq!(o.reserve(at(100)), 5);
        // Headers showing nobody else, but not yet for three windows.
        assert!(!o.observe(at(1_000), QUIET));
        assert!(!o.observe(at(3_999), QUIET));
        assert_eq!(o.reserve(at(3_999)), 5);
        // Three windows of them: alone, and the ceiling is gone.
        assert!(o.observe(at(4_000), QUIET));
        assert_eq!(o.reserve(at(4_000)), 0);
        // Said once: nothing is left to end.
        assert!(!o.observe(at(4_100), QUIET));
        // A sighting in between starts the quiet span afresh.
        let mut o = explained_ceiling();
        o.observe(at(1_000), QUIET);
        o.observe(at(2_500), others(1));
        assert!(!o.observe(at(4_000), QUIET));
        assert!(!o.observe(at(6_999), QUIET));
        assert!(o.observe(at(7_000), QUIET));
        // So does a 429.
        let mut o = explained_ceiling();
        o.observe(at(1_000), QUIET);
        o.on_429(at(2_000), 5);
        assert!(!o.observe(at(4_500), QUIET));
        assert!(o.observe(at(7_500), QUIET));
    }

    /// Others seen every `every_ms` for `span_ms` from 0 (a 429 at 100 ms
    /// teaching a ceiling of 5 they explain), then headers showing nobody
    /// else every 100 ms from the last sighting on: how long after it the
    /// ceiling ends.
    fn ends_after(every_ms: u64, span_ms: u64) -> u64 {
        let mut o = estimate();
        let mut t = 0;
        while t < span_ms {
            o.observe(at(t), others(3));
            if t == 0 {
                o.on_429(at(100), 5);
            }
            // Their silences, in between, are headers showing nobody else.
            for q in (t + 100..t + every_ms).step_by(100) {
                o.observe(at(q), QUIET);
            }
            t += every_ms;
        }
        let last = t - every_ms;
        let mut q = last + every_ms.max(100);
        while !o.observe(at(q), QUIET) {
            q += 100;
            assert!(q < last + 100_000, "never ends");
        }
        assert_eq!(o.reserve(at(q)), 0);
        q - last
    }

    #[test]
    fn others_are_gone_once_headers_were_quiet_a_window_longer_than_their_longest_silence() {
        let stretch = STRETCH_WINDOWS * 1_000;
        // Seen in every header for a whole stretch: gone after one quiet
        // window (the span starts at the first quiet header, 100 ms on).
        assert_eq!(ends_after(100, stretch + 100), 1_100);
        // Silences of 2.4 s between sightings: gone after 3.4 s of quiet,
        // later than three windows.
        assert_eq!(ends_after(2_500, stretch + 2_500), 3_500);
        // Silences of 2.8 s: 3.8 s. (Longer ones end the ceiling within the
        // stretch's first three windows of quiet, before it is known.)
        assert_eq!(ends_after(2_900, stretch + 2_900), 3_900);
        // Before a whole stretch has shown how they send: three windows.
        assert_eq!(ends_after(100, stretch - 1_000), 3_100);
        assert_eq!(ends_after(2_500, stretch - 2_500), 3_100);
        // Unseen for a stretch, they left: their next sighting starts a new
        // stretch, and their old silences are forgotten.
        let mut o = estimate();
        for k in 0..=STRETCH_WINDOWS / 5 {
            o.observe(at(k * 5_000), others(3));
            o.observe(at(k * 5_000 + 100), QUIET);
        }
        let back = 2 * stretch + 10_000;
        o.observe(at(back), others(3));
        assert_eq!(o.quiet_for(), Duration::from_secs(3));
        for k in 1..=STRETCH_WINDOWS * 10 {
            o.observe(at(back + k * 100), others(3));
        }
        assert_eq!(o.quiet_for(), Duration::from_secs(1));
        // The silence that started the stretch is not one of theirs either.
        assert_eq!(o.longest_quiet, Duration::ZERO);
        // A full window that ours explain is not a sighting of others.
        let mut o = estimate();
        let full = Sighting { full: true, ..QUIET };
        for k in 0..=STRETCH_WINDOWS * 10 {
            o.observe(at(k * 100), full);
        }
        assert_eq!(o.quiet_for(), Duration::from_secs(3));
    }

    #[test]
    fn headers_after_the_429_explain_it_by_the_whole_limit_or_others_beyond_it() {
        // A ceiling of 4 taught at 100 ms (after `before`, if any), one
        // header at 500 ms, then quiet ones: whether they end it three
        // windows later.
        let ends = |before: Option<Sighting>, seen: Sighting| {
            let mut o = estimate();
            if let Some(b) = before {
                o.observe(at(0), b);
            }
            o.on_429(at(100), 4);
            o.observe(at(500), seen);
            o.observe(at(1_000), QUIET);
            o.observe(at(4_000), QUIET)
        };
        // A co-tenant's first burst: the 429 comes before any header shows
        // it. Then a header counts only its own request: the server has its
        // whole limit, so no lower one taught the ceiling.
        assert!(ends(None, under_ceiling(1, 1, 1)));
        // Or headers show others beyond the ceiling's places.
        assert!(ends(None, others(6)));
        // Others within the ceiling's places explain it where headers count
        // a sliding window: there a lower limit shows in every header, and
        // quiet ones show it gone.
        assert!(ends(None, others(2)));
        // Not once a header counted fewer than surely arrived (a calendar
        // window, a token bucket): such headers show room a lower limit
        // does not have, and the four more than ours that a limit lowered
        // from 12 to 8 shows may be all there is.
        let lenient = Sighting {
            ours_surely: Some(4),
            ..QUIET
        };
        assert!(!ends(Some(lenient), under_ceiling(5, 1, 1)));
        assert!(!ends(Some(lenient), others(2)));
        let mut o = estimate();
        o.on_429(at(0), 4);
        o.observe(at(500), under_ceiling(5, 1, 1));
        o.observe(at(600), lenient);
        assert!(!o.observe(at(10_000), QUIET));
        assert_eq!(o.reserve(at(10_000)), 4);
        // Others beyond the ceiling's places, or the whole limit, explain
        // it even there.
        assert!(ends(Some(lenient), others(6)));
        assert!(ends(Some(lenient), under_ceiling(1, 1, 1)));
        // A 429 that raises a ceiling keeps what explained it.
        let mut o = estimate();
        o.on_429(at(0), 4);
        o.observe(at(500), others(2));
        o.on_429(at(600), 5);
        o.observe(at(1_000), QUIET);
        assert!(o.observe(at(4_000), QUIET));
        // (Lenient headers are remembered: the next ceiling is read the
        // same way.)
        let mut o = estimate();
        o.observe(at(0), lenient);
        o.on_429(at(3_600_000 * 5), 4);
        o.observe(at(3_600_000 * 5 + 500), under_ceiling(5, 1, 1));
        o.observe(at(3_600_000 * 5 + 1_000), QUIET);
        assert!(!o.observe(at(3_600_000 * 5 + 4_500), QUIET));
        assert_eq!(o.reserve(at(3_600_000 * 5 + 4_500)), 4);
    }

    #[test]
    fn a_429_soon_after_headers_ended_a_ceiling_teaches_one_they_cannot_end() {
        let mut o = explained_ceiling();
        o.observe(at(100), QUIET);
        assert!(o.observe(at(3_100), QUIET));
        assert_eq!(o.reserve(at(3_100)), 0);
        // The headers misled us: the next 429 within the probation locks the
        // ceiling, sightings or not, for its hold.
        let soon = 3_100 + PROBATION_WINDOWS * 1_000 - 1;
        o.on_429(at(soon), 4);
        o.observe(at(soon + 100), others(2));
        for k in 1..=10 {
            assert!(!o.observe(at(soon + k * 1_000), QUIET));
        }
        assert_eq!(o.reserve(at(soon + 10_000)), 4);
        assert_eq!(o.reserve(at(soon + 3_599_999)), 4);
        // Once that ceiling is given back, a new one may be explained again.
        o.on_429(at(soon + 4 * 3_600_000), 2);
        o.observe(at(soon + 4 * 3_600_000 + 100), others(1));
        o.observe(at(soon + 4 * 3_600_000 + 100), QUIET);
        assert!(o.observe(at(soon + 4 * 3_600_000 + 3_100), QUIET));
        // A 429 after the probation is not locked either.
        let mut o = explained_ceiling();
        o.observe(at(100), QUIET);
        assert!(o.observe(at(3_100), QUIET));
        let late = 3_100 + PROBATION_WINDOWS * 1_000;
        o.on_429(at(late), 4);
        o.observe(at(late + 100), others(6));
        o.observe(at(late + 100), QUIET);
        assert!(o.observe(at(late + 3_100), QUIET));
    }

    /// A header under a ceiling of 4 (a limit lowered from 12 to 8): the
    /// server counted `used`, of which at most `at_most` and likely
    /// `likely` were ours.
    fn under_ceiling(used: u32, at_most: u32, likely: u32) -> Sighting {
        Sighting {
            used,
            ours_at_most: at_most,
            ours_likely: likely,
            full: false,
            ours_surely: None,
            at_our_places: false,
        }
    }

    #[test]
    fn headers_proving_a_locked_ceiling_too_high_bring_it_down_a_place_per_step() {
        let step = STEP_WINDOWS * 1_000;
        // A locked ceiling of 5 (a 429 soon after headers ended one).
        let locked = || {
            let mut o = explained_ceiling();
            o.observe(at(100), QUIET);
            assert!(o.observe(at(3_100), QUIET));
            o.on_429(at(4_000), 5);
            o
        };
        // QUIET counts 3 within its 5 places: at most 2 can be missing.
        let mut o = locked();
        headers(&mut o, 4_000, 4_000 + step, QUIET);
        assert_eq!(o.reserve(at(4_000 + step - 1)), 5);
        o.observe(at(4_000 + step), QUIET);
        assert_eq!(o.reserve(at(4_000 + step)), 4, "one step");
        headers(&mut o, 4_500 + step, 4_000 + 2 * step, QUIET);
        assert_eq!(o.reserve(at(4_000 + 2 * step - 1)), 4, "one per step");
        headers(&mut o, 4_000 + 2 * step, 4_000 + 10 * step, QUIET);
        assert_eq!(o.reserve(at(4_000 + 10 * step)), 2, "never below the proof");
        // A count above the ceiling's places proves nothing by itself...
        let mut o = locked();
        headers(&mut o, 4_000, 4_000 + 3 * step, under_ceiling(6, 6, 6));
        assert_eq!(o.reserve(at(4_000 + 3 * step)), 5);
        // ...but on headers that count a sliding window every request of
        // ours that surely arrived is counted too: 9 counted with 6 of ours
        // surely there leaves at most 3 to a lower limit.
        let busy = Sighting {
            used: 9,
            ours_at_most: 9,
            ours_likely: 8,
            ours_surely: Some(6),
            ..QUIET
        };
        let mut o = locked();
        headers(&mut o, 4_000, 4_001 + step, busy);
        assert_eq!(o.reserve(at(4_001 + step)), 4, "one step");
        headers(&mut o, 4_001 + step, 4_000 + 10 * step, busy);
        assert_eq!(o.reserve(at(4_000 + 10 * step)), 3, "never below the proof");
        // Once headers counted fewer than surely arrived (not a sliding
        // window), only the request itself is proof of being counted.
        let mut o = locked();
        o.observe(at(4_000), Sighting { used: 5, ..busy });
        headers(&mut o, 4_001, 4_000 + 3 * step, busy);
        assert_eq!(o.reserve(at(4_000 + 3 * step)), 5);
        // A full window starts the step afresh.
        let mut o = locked();
        headers(&mut o, 4_000, 3_000 + step, QUIET);
        o.observe(at(3_000 + step), full(7));
        headers(&mut o, 3_500 + step, 3_000 + 2 * step, QUIET);
        assert_eq!(o.reserve(at(3_000 + 2 * step - 1)), 5);
        o.observe(at(3_000 + 2 * step), QUIET);
        assert_eq!(o.reserve(at(3_000 + 2 * step)), 4);
        // A step is a probe: a 429 after it takes the place back.
        let mut o = locked();
        headers(&mut o, 4_000, 4_001 + step, QUIET);
        o.on_429(at(5_000 + step), 9);
        assert_eq!(o.reserve(at(5_000 + step)), 5);
        // A ceiling that is not locked does not step (the early give-back
        // and the end by quiet headers are its ways down).
        let mut o = estimate();
        o.on_429(at(0), 5);
        headers(&mut o, 0, 3 * step, QUIET);
        assert_eq!(o.reserve(at(3 * step)), 5);
        // Nor does a locked ceiling its hold has given back whole.
        let mut o = locked();
        o.observe(at(4_000 + 5 * 3_600_000), QUIET);
        assert_eq!(o.reserve(at(4_000 + 5 * 3_600_000)), 0);
        o.observe(at(4_000 + 6 * 3_600_000), Sighting { used: 0, ..QUIET });
        assert_eq!(o.reserve(at(4_000 + 6 * 3_600_000)), 0);
    }

    #[test]
    fn the_ceiling_held_is_reported_with_its_next_give_back() {
        let hour = 3_600_000;
        let mut o = estimate();
        assert_eq!(o.ceiling(at(0)), None);
        o.on_429(at(0), 2);
        let taught = Ceiling {
            places: 2,
            locked: false,
            explained: false,
            next_give_back: at(hour),
        };
        assert_eq!(o.ceiling(at(hour - 1)), Some(taught));
        let later = Ceiling {
            places: 1,
            next_give_back: at(2 * hour),
            ..taught
        };
        assert_eq!(o.ceiling(at(hour)), Some(later));
        assert_eq!(o.ceiling(at(2 * hour)), None);
        // One that others explain, and one that is locked.
        let mut o = explained_ceiling();
        assert!(o.ceiling(at(100)).is_some_and(|c| c.explained && !c.locked));
        o.observe(at(100), QUIET);
        assert!(o.observe(at(3_100), QUIET));
        assert_eq!(o.ceiling(at(3_100)), None);
        o.on_429(at(4_000), 5);
        let c = o.ceiling(at(4_000)).unwrap();
        assert!(c.locked && !c.explained && c.places == 5, "{c:?}");
        // Others within its places explain it only on sliding headers.
        let within = |lenient: bool| {
            let mut o = estimate();
            o.on_429(at(0), 4);
            if lenient {
                let counted_fewer = Sighting {
                    used: 2,
                    ours_at_most: 5,
                    ours_likely: 3,
                    ours_surely: Some(4),
                    ..QUIET
                };
                o.observe(at(50), counted_fewer);
            }
            o.observe(at(100), under_ceiling(8, 4, 3));
            o.ceiling(at(100)).unwrap().explained
        };
        assert!(within(false));
        assert!(!within(true));
    }

    #[test]
    fn steps_never_take_a_locked_ceiling_below_a_lower_limit() {
        // A limit lower by `k`: every header counts at least `k + 1` (here
        // up to 3 more, so that steps come), and on a sliding window at
        // least `k` more than the requests of ours surely in it. Whatever
        // else the headers show, the steps leave `k` held back.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            u32::try_from(x % u64::from(n)).unwrap()
        };
        // Fewer cases under Miri (each header is slow there).
        let (ks, more, span) = if cfg!(miri) { (2, 1, 4) } else { (6, 11, 40) };
        let end = 4_000 + span * STEP_WINDOWS * 1_000;
        let mut steps = 0;
        for (k, sliding) in (1..=ks).flat_map(|k| [(k, false), (k, true)]) {
            for taught in k..=more.max(k + 1) {
                let mut o = explained_ceiling();
                o.observe(at(100), QUIET);
                assert!(o.observe(at(3_100), QUIET));
                o.on_429(at(4_000), taught);
                for t in (4_500..end).step_by(250) {
                    let sighting = if sliding {
                        let surely = 1 + next(12 - k - 3);
                        let used = surely + k + next(3);
                        // Ours could explain (nearly) all of it: only the
                        // ceiling holds the lower limit's places back.
                        let at_most = used - next(2);
                        Sighting {
                            used,
                            ours_at_most: at_most,
                            ours_likely: surely + next(at_most - surely + 1),
                            full: used == 12,
                            ours_surely: Some(surely),
                            at_our_places: next(2) == 0,
                        }
                    } else {
                        let used = (k + 1 + next(4)).min(12);
                        let at_most = next(used + 1);
                        Sighting {
                            used,
                            ours_at_most: at_most,
                            ours_likely: next(at_most + 1),
                            full: used == 12,
                            ours_surely: None,
                            at_our_places: next(2) == 0,
                        }
                    };
                    o.observe(at(t), sighting);
                    assert!(
                        o.reserve(at(t)) >= k,
                        "k {k}, sliding {sliding}, taught {taught}, at {t}"
                    );
                }
                steps += u32::from(o.ceiling(at(end)).map_or(0, |c| c.places) < taught);
            }
        }
        let least = if cfg!(miri) { 1 } else { 20 };
        assert!(steps > least, "the headers brought {steps} ceilings down");
    }

    #[test]
    fn a_ceiling_rises_to_the_others_headers_surely_showed_in_every_recent_window() {
        // Four more counted than even the most of ours, and headers that
        // leave some of ours in doubt (four counted beyond the likely two,
        // two beyond the most: within the ceiling's places).
        let sure = |n: u32| under_ceiling(2 + n, 2, 2);
        let doubtful = under_ceiling(6, 4, 2);
        // A ceiling of 2, then `shown` in windows 1 to 3, then doubtful
        // headers for three windows: the places held back at the end.
        let after = |locked: bool, shown: [Option<Sighting>; 3]| {
            let mut o = estimate();
            let t0 = if locked {
                o = explained_ceiling();
                o.observe(at(100), QUIET);
                assert!(o.observe(at(3_100), QUIET));
                o.on_429(at(4_000), 2);
                5_000
            } else {
                o.on_429(at(0), 2);
                1_000
            };
            for (k, s) in shown.iter().enumerate() {
                if let Some(s) = s {
                    o.observe(at(t0 + 1_000 * k as u64 + 500), *s);
                }
            }
            for k in 3..=7 {
                assert!(!o.observe(at(t0 + 1_000 * k + 500), doubtful));
            }
            o.reserve(at(t0 + 7_500))
        };
        // A lower limit by four places shows four beyond ours in every
        // header: the ceiling was too low, and rises to them.
        assert_eq!(after(false, [Some(sure(4)); 3]), 4);
        // The fewest of those windows.
        assert_eq!(after(false, [Some(sure(4)), Some(sure(3)), Some(sure(5))]), 3);
        // Only if every window had a header...
        assert_eq!(after(false, [Some(sure(4)), None, Some(sure(4))]), 2);
        // ...and one beyond the ceiling (two is what it holds already).
        assert_eq!(after(false, [Some(sure(4)), Some(sure(2)), Some(sure(4))]), 2);
        // A locked ceiling is held as it was taught.
        assert_eq!(after(true, [Some(sure(4)); 3]), 2);
        // Headers that surely show just the ceiling's places do not hold
        // it afresh: its place is given back when the hold ends.
        let hold = 3_600_000;
        let mut o = estimate();
        o.on_429(at(0), 2);
        for k in 0..10 {
            o.observe(at(hold - 10_000 + k * 1_000), sure(2));
        }
        assert_eq!(o.reserve(at(hold - 1)), 2);
        assert_eq!(o.reserve(at(hold)), 1);
    }

    #[test]
    fn headers_are_read_against_the_ceiling_a_429_taught() {
        let mut o = estimate();
        o.on_429(at(0), 4);
        // 12 - sec = 11: with 7 of ours at most and 6 likely, 5 are not
        // ours, but the ceiling's 4 and our 7 explain them all.
        let s = under_ceiling(11, 7, 6);
        assert_eq!(s.others(), 5, "read against the whole capacity");
        o.observe(at(100), s);
        assert_eq!(o.reserve(at(100)), 4, "nobody beyond the ceiling");
        // One more than the ceiling and ours can explain: others beyond it.
        o.observe(at(200), under_ceiling(12, 7, 6));
        assert_eq!(o.reserve(at(200)), 6);
        // Without a ceiling the same header holds its others back.
        let mut o = estimate();
        o.observe(at(100), under_ceiling(11, 7, 6));
        assert_eq!(o.reserve(at(100)), 5);
        // And one that ours alone explain holds nothing back.
        o.observe(at(5_000), under_ceiling(7, 7, 6));
        assert_eq!(o.reserve(at(5_000)), 0);
    }

    /// A ceiling of 5 where the server took 4 of 12 away: the seven of
    /// ours at our places, and the server's count one short of full.
    const ROOM: Sighting = Sighting {
        used: 11,
        ours_at_most: 7,
        ours_likely: 7,
        full: false,
        ours_surely: None,
        at_our_places: true,
    };

    /// The window full, with `ours` of ours at most, at our places.
    fn full(ours: u32) -> Sighting {
        Sighting {
            used: 12,
            ours_at_most: ours,
            ours_likely: ours,
            full: true,
            ..ROOM
        }
    }

    /// Headers showing `s` every 500 ms over `[from, to)` ms.
    fn headers(o: &mut OutsideUse, from: u64, to: u64, s: Sighting) {
        for t in (from..to).step_by(500) {
            o.observe(at(t), s);
        }
    }

    const PROBE_MS: u64 = PROBE_WINDOWS * 1_000;

    #[test]
    fn room_beyond_our_places_gives_a_place_back_early() {
        let mut o = estimate();
        o.on_429(at(0), 5);
        headers(&mut o, 0, PROBE_MS, ROOM);
        assert_eq!(o.reserve(at(PROBE_MS - 1)), 5);
        o.observe(at(PROBE_MS), ROOM);
        assert_eq!(o.reserve(at(PROBE_MS)), 4, "PROBE_WINDOWS windows of room");
        // At the limit now: the window fills at once, and the place stays.
        headers(&mut o, PROBE_MS + 500, 2 * PROBE_MS + 1_000, full(8));
        assert_eq!(o.reserve(at(2 * PROBE_MS + 1_000)), 4);
        // A full window starts the span of room afresh...
        let mut o = estimate();
        o.on_429(at(0), 5);
        headers(&mut o, 0, PROBE_MS - 1_000, ROOM);
        o.observe(at(PROBE_MS - 1_000), full(7));
        headers(&mut o, PROBE_MS - 500, 2 * PROBE_MS - 1_000, ROOM);
        assert_eq!(o.reserve(at(2 * PROBE_MS - 1_000)), 5);
        o.observe(at(2 * PROBE_MS - 500), ROOM);
        assert_eq!(o.reserve(at(2 * PROBE_MS - 500)), 4);
        // ...room while we do not take our places shows nothing...
        let mut o = estimate();
        o.on_429(at(0), 5);
        headers(&mut o, 0, 2 * PROBE_MS, idle_room());
        assert_eq!(o.reserve(at(2 * PROBE_MS)), 5);
        // ...nor does room without a ceiling...
        let mut o = estimate();
        headers(&mut o, 0, 2 * PROBE_MS, ROOM);
        assert_eq!(o.reserve(at(2 * PROBE_MS)), 4, "the others ROOM shows");
        // ...and a locked ceiling is given back only when its hold ends.
        let mut o = explained_ceiling();
        o.observe(at(100), QUIET);
        assert!(o.observe(at(3_100), QUIET));
        o.on_429(at(4_000), 5);
        headers(&mut o, 4_000, 4_000 + 2 * PROBE_MS, ROOM);
        assert_eq!(o.reserve(at(4_000 + 2 * PROBE_MS)), 5);
    }

    #[test]
    fn a_probe_that_finds_no_room_takes_its_place_back() {
        // A ceiling of 5 given back early to 4 at PROBE_MS.
        let probed = || {
            let mut o = estimate();
            o.on_429(at(0), 5);
            headers(&mut o, 0, PROBE_MS + 1, ROOM);
            assert_eq!(o.reserve(at(PROBE_MS)), 4);
            o
        };
        // A 429 answers it: the place is taken back, whatever the 429
        // shows missing, and none is given back early again.
        let mut o = probed();
        o.on_429(at(PROBE_MS + 5_000), 7);
        assert_eq!(o.reserve(at(PROBE_MS + 5_000)), 5);
        headers(&mut o, PROBE_MS + 5_500, 3 * PROBE_MS, ROOM);
        assert_eq!(o.reserve(at(3 * PROBE_MS)), 5);
        // Once PROBE_WINDOWS windows have passed, a 429 is not the
        // probe's: it shows what is missing.
        let mut o = probed();
        o.on_429(at(2 * PROBE_MS), 7);
        assert_eq!(o.reserve(at(2 * PROBE_MS)), 7);
        // Nor is one that finds the ceiling given back whole: it is fresh.
        let mut o = estimate();
        o.on_429(at(0), 1);
        assert_eq!(o.reserve(at(3_600_000)), 0);
        o.on_429(at(3_601_000), 4);
        assert_eq!(o.reserve(at(3_601_000)), 4);
        // A window that fills only after DRAIN_WINDOWS windows of room
        // (a bucket draining) takes the place back before the 429.
        let mut o = probed();
        headers(&mut o, PROBE_MS + 500, PROBE_MS + DRAIN_WINDOWS * 1_000, ROOM);
        o.observe(at(PROBE_MS + DRAIN_WINDOWS * 1_000), full(8));
        assert_eq!(o.reserve(at(PROBE_MS + DRAIN_WINDOWS * 1_000)), 5);
        headers(&mut o, PROBE_MS + 4_000, 3 * PROBE_MS, ROOM);
        assert_eq!(o.reserve(at(3 * PROBE_MS)), 5, "no early probe again");
        // Nor a window that fills only when the probe's windows are over.
        let mut o = probed();
        o.observe(at(2 * PROBE_MS), full(8));
        assert_eq!(o.reserve(at(2 * PROBE_MS)), 4);
        // One that fills sooner is a server at its limit: the place stays,
        // and a later full window does not take it back either.
        let mut o = probed();
        o.observe(at(PROBE_MS + DRAIN_WINDOWS * 1_000 - 1), full(8));
        headers(&mut o, PROBE_MS + 3_000, PROBE_MS + 20_000, ROOM);
        o.observe(at(PROBE_MS + 20_000), full(8));
        assert_eq!(o.reserve(at(PROBE_MS + 20_000)), 4);
        // The same holds for a place given back when a hold ends.
        let hold = 3_600_000;
        let mut o = estimate();
        o.on_429(at(0), 5);
        headers(&mut o, hold, hold + DRAIN_WINDOWS * 1_000, idle_room());
        assert_eq!(o.reserve(at(hold)), 4);
        o.observe(at(hold + DRAIN_WINDOWS * 1_000), full(8));
        assert_eq!(o.reserve(at(hold + DRAIN_WINDOWS * 1_000)), 5);
        let mut o = estimate();
        o.on_429(at(0), 5);
        o.on_429(at(hold + 1_000), 1);
        assert_eq!(o.reserve(at(hold + 1_000)), 5, "the hold's probe met a 429");
    }

    /// Room, while we do not take all our places (no early probe).
    fn idle_room() -> Sighting {
        Sighting {
            at_our_places: false,
            ..ROOM
        }
    }

    /// A window of 12 full with requests that may all be ours.
    const OURS_FULL: Sighting = Sighting {
        used: 12,
        ours_at_most: 12,
        ours_likely: 12,
        full: true,
        ours_surely: None,
        at_our_places: false,
    };

    #[test]
    fn a_full_window_holds_the_ceiling_afresh_and_is_not_quiet() {
        let hold = 3_600_000;
        let full = Sighting {
            used: 12,
            ours_at_most: 8,
            ours_likely: 8,
            full: true,
            ours_surely: None,
            at_our_places: true,
        };
        let mut o = estimate();
        o.on_429(at(0), 4);
        o.observe(at(hold - 1), full);
        assert_eq!(o.reserve(at(hold)), 4, "no probe: the server had no room");
        assert_eq!(o.reserve(at(2 * hold - 2)), 4);
        assert_eq!(o.reserve(at(2 * hold - 1)), 3, "a hold after the full window");
        // A window full of ours alone (no one else seen) is no sign that
        // the others are gone: the quiet span starts after it.
        let mut o = explained_ceiling();
        o.observe(at(1_000), QUIET);
        o.observe(at(2_000), OURS_FULL);
        assert!(!o.observe(at(3_000), QUIET));
        assert!(!o.observe(at(5_999), QUIET));
        assert!(o.observe(at(6_000), QUIET));
        // Nor does it explain a ceiling: one no header explained is held.
        let mut o = estimate();
        o.on_429(at(0), 4);
        o.observe(at(500), OURS_FULL);
        assert!(!o.observe(at(1_000), QUIET));
        assert!(!o.observe(at(4_000), QUIET));
        assert_eq!(o.reserve(at(4_000)), 4);
        // Without a ceiling a full window holds only the others it shows.
        let mut o = estimate();
        o.observe(at(0), full);
        assert_eq!(o.reserve(at(0)), 4);
        assert_eq!(o.reserve(at(3_000)), 0);
    }

    #[test]
    fn no_hold_learns_no_ceiling_and_a_clock_going_back_changes_nothing() {
        let mut o = OutsideUse::new(Duration::from_secs(1), Duration::ZERO);
        o.on_429(at(0), 5);
        assert_eq!(o.reserve(at(0)), 0);
        // A hold set to zero later forgets a ceiling learned before.
        let mut o = estimate();
        o.on_429(at(0), 5);
        assert_eq!(o.next_change(at(500)), Some(at(1_000)));
        o.set_config(Duration::from_secs(1), Duration::ZERO);
        assert_eq!(o.reserve(at(10)), 0);
        assert_eq!(o.next_change(at(10)), None);
        // And headers or 429s after that change nothing either.
        o.observe(at(20), ROOM);
        o.on_429(at(30), 5);
        assert_eq!(o.reserve(at(30)), 0);
        let mut o = estimate();
        o.observe(at(10_000), others(3));
        o.observe(at(0), others(9));
        // The late sighting lands in the window of the latest instant seen.
        assert_eq!(o.reserve(at(0)), 9);
        assert_eq!(o.reserve(at(13_000)), 0);
        // Overflowing times saturate.
        let mut o = estimate();
        o.on_429(Instant::MAX, 1);
        assert_eq!(o.reserve(Instant::MAX), 1);
        assert!(o.next_change(Instant::MAX).is_some());
    }
}
