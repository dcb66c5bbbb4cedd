//! Reference server models: four readings of "at most N requests per window W".
//!
//! Upbit does not document how its windows work; the evidence fits a sliding
//! window, a fixed calendar window, a window anchored at the first request, or
//! a token bucket. Each model here answers 200 or 429 for one request arriving
//! at one instant, says how many requests it would still take in its current
//! window (what a `Remaining-Req` header's `sec` would carry), and counts its
//! 429s. They are written from the definitions alone and share no code with
//! the limiter; only the core's `Instant`, `Duration` and `ServerLimit` plain
//! data types are used.
//!
//! Arrivals must be fed in time order (a server sees them in the order they
//! arrive). An instant earlier than the latest one fed is read as the latest.
//! Rejected requests are not counted against the window.

use std::collections::VecDeque;
use std::fmt;

use upbit_limiter_core::{Duration, Instant, ServerLimit};

/// HTTP 200.
pub const OK: u16 = 200;
/// HTTP 429 Too Many Requests.
pub const TOO_MANY_REQUESTS: u16 = 429;

/// A model's answer to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// 200 or 429.
    pub status: u16,
    /// Requests the model would still take in its current window, after this one.
    pub remaining: u32,
}

impl Verdict {
    /// Whether the request was accepted (200).
    pub fn is_ok(&self) -> bool {
        self.status == OK
    }

    /// A `Remaining-Req` header value for group `group`, in Upbit's form
    /// (`group=default; min=1800; sec=29`); `min` is the deprecated fixed
    /// value of 60 times the per-window limit.
    pub fn remaining_req(&self, group: &str, limit: ServerLimit) -> String {
        let min = u64::from(limit.max_requests) * 60;
        format!("group={group}; min={min}; sec={}", self.remaining)
    }
}

/// What a model has answered so far.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    accepted: u64,
    rejected: u64,
}

impl Tally {
    /// Counts an accepted request, with `remaining` left after it.
    fn accept(&mut self, remaining: u32) -> Verdict {
        self.accepted += 1;
        Verdict {
            status: OK,
            remaining,
        }
    }
    /// Counts a rejected request (429).
    fn reject(&mut self) -> Verdict {
        self.rejected += 1;
        Verdict {
            status: TOO_MANY_REQUESTS,
            remaining: 0,
        }
    }
}

/// Which of the four models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// At most N in any half-open window of length W.
    Sliding,
    /// At most N in each `[kW + phase, (k+1)W + phase)`.
    Calendar,
    /// At most N in a window of length W that opens with the first request
    /// arriving after the previous window closed.
    Anchored,
    /// A bucket of N tokens, refilled continuously at N per W, starting full.
    TokenBucket,
}

impl ModelKind {
    /// All four kinds.
    pub const ALL: [ModelKind; 4] = [Self::Sliding, Self::Calendar, Self::Anchored, Self::TokenBucket];

    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sliding => "sliding",
            Self::Calendar => "calendar",
            Self::Anchored => "anchored",
            Self::TokenBucket => "token-bucket",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A server's rate limit for one window.
pub trait ServerModel: fmt::Debug {
    /// Which model this is.
    fn kind(&self) -> ModelKind;
    /// The limit it enforces.
    fn limit(&self) -> ServerLimit;
    /// A request arrives at `at`: accept (200) or reject (429) it.
    fn arrive(&mut self, at: Instant) -> Verdict;
    /// Requests accepted so far.
    fn accepted(&self) -> u64;
    /// Requests rejected (429) so far.
    fn rejected(&self) -> u64;
}

/// Turns an instant into the latest seen so far (arrivals must be ordered).
fn monotone(last: &mut Option<Instant>, at: Instant) -> Instant {
    let t = match *last {
        Some(prev) if prev > at => prev,
        _ => at,
    };
    *last = Some(t);
    t
}

/// A sliding window: the request is accepted when fewer than N accepted
/// requests arrived in the last W (an earlier arrival `x` shares a window
/// with `t` iff `t - x < W`; with [`SlidingWindow::closed`], iff `t - x <= W`).
#[derive(Clone, Debug)]
pub struct SlidingWindow {
    limit: ServerLimit,
    closed: bool,
    recent: VecDeque<Instant>,
    last: Option<Instant>,
    tally: Tally,
}

impl SlidingWindow {
    /// An empty sliding window for `limit`.
    pub fn new(limit: ServerLimit) -> Self {
        Self {
            limit,
            closed: false,
            recent: VecDeque::new(),
            last: None,
            tally: Tally::default(),
        }
    }
}

impl SlidingWindow {
    /// An empty sliding window for `limit` counting both ends: at most N in
    /// any closed window `[x, x + W]`.
    pub fn closed(limit: ServerLimit) -> Self {
        Self {
            closed: true,
            ..Self::new(limit)
        }
    }
}

impl ServerModel for SlidingWindow {
    fn kind(&self) -> ModelKind {
        ModelKind::Sliding
    }
    fn limit(&self) -> ServerLimit {
        self.limit
    }
    fn arrive(&mut self, at: Instant) -> Verdict {
        let t = monotone(&mut self.last, at);
        while let Some(&first) = self.recent.front() {
            let age = t.as_nanos() - first.as_nanos();
            let window = self.limit.window.as_nanos();
            if age > window || (age == window && !self.closed) {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        let n = self.limit.max_requests as usize;
        if self.recent.len() < n {
            self.recent.push_back(t);
            self.tally.accept((n - self.recent.len()) as u32)
        } else {
            self.tally.reject()
        }
    }
    fn accepted(&self) -> u64 {
        self.tally.accepted
    }
    fn rejected(&self) -> u64 {
        self.tally.rejected
    }
}

/// Fixed calendar windows `[kW + phase, (k+1)W + phase)`, N each. The phase
/// is the server's unknown offset; it is taken modulo W.
#[derive(Clone, Debug)]
pub struct CalendarWindow {
    limit: ServerLimit,
    phase: u64,
    /// With closed windows `[b, b + W]`: accepted arrivals of the last two windows.
    closed: Option<VecDeque<Instant>>,
    window_index: Option<u64>,
    count: u32,
    last: Option<Instant>,
    tally: Tally,
}

impl CalendarWindow {
    /// Calendar windows for `limit`, with boundaries at `phase` modulo W.
    pub fn new(limit: ServerLimit, phase: Duration) -> Self {
        let w = limit.window.as_nanos().max(1);
        Self {
            limit,
            phase: phase.as_nanos() % w,
            closed: None,
            window_index: None,
            count: 0,
            last: None,
            tally: Tally::default(),
        }
    }

    /// Closed calendar windows `[kW + phase, (k+1)W + phase]`: an arrival on
    /// a boundary belongs to both windows that meet there.
    pub fn closed(limit: ServerLimit, phase: Duration) -> Self {
        Self {
            closed: Some(VecDeque::new()),
            ..Self::new(limit, phase)
        }
    }

    /// The closed reading: accept when every closed window holding `t` has
    /// fewer than N accepted arrivals.
    fn arrive_closed(&mut self, t: Instant) -> Verdict {
        let w = u128::from(self.limit.window.as_nanos().max(1));
        let shifted = u128::from(t.as_nanos()) + (w - u128::from(self.phase));
        let offset = (shifted % w) as u64;
        let start = t.as_nanos().saturating_sub(offset);
        let n = self.limit.max_requests as usize;
        let Some(recent) = self.closed.as_mut() else {
            return self.tally.reject();
        };
        let keep_from = t.as_nanos().saturating_sub(2 * self.limit.window.as_nanos());
        while recent.front().is_some_and(|x| x.as_nanos() < keep_from) {
            recent.pop_front();
        }
        let in_current = recent.iter().filter(|x| x.as_nanos() >= start).count();
        let before = if offset == 0 {
            let from = t.as_nanos().saturating_sub(self.limit.window.as_nanos());
            recent.iter().filter(|x| x.as_nanos() >= from).count()
        } else {
            0
        };
        if in_current < n && before < n {
            recent.push_back(t);
            let left = n - 1 - in_current.max(before);
            self.tally.accept(left as u32)
        } else {
            self.tally.reject()
        }
    }

    /// The index of the calendar window holding `t`. Window 0 is `[0, phase)`,
    /// window `k >= 1` is `[(k-1)W + phase, kW + phase)`.
    fn index_of(&self, t: Instant) -> u64 {
        let w = u128::from(self.limit.window.as_nanos().max(1));
        // Shift by (W - phase) so that boundaries fall on multiples of W.
        let shifted = u128::from(t.as_nanos()) + (w - u128::from(self.phase));
        (shifted / w) as u64
    }
}

impl ServerModel for CalendarWindow {
    fn kind(&self) -> ModelKind {
        ModelKind::Calendar
    }
    fn limit(&self) -> ServerLimit {
        self.limit
    }
    fn arrive(&mut self, at: Instant) -> Verdict {
        let t = monotone(&mut self.last, at);
        if self.closed.is_some() {
            return self.arrive_closed(t);
        }
        let index = self.index_of(t);
        if self.window_index != Some(index) {
            self.window_index = Some(index);
            self.count = 0;
        }
        if self.count < self.limit.max_requests {
            self.count += 1;
            self.tally.accept(self.limit.max_requests - self.count)
        } else {
            self.tally.reject()
        }
    }
    fn accepted(&self) -> u64 {
        self.tally.accepted
    }
    fn rejected(&self) -> u64 {
        self.tally.rejected
    }
}

/// A window of length W that opens with the first request arriving at or
/// after the end of the previous one; N requests per window.
#[derive(Clone, Debug)]
pub struct AnchoredWindow {
    limit: ServerLimit,
    /// Whether the window `[start, start + W]` includes its end.
    closed: bool,
    opened_at: Option<Instant>,
    count: u32,
    last: Option<Instant>,
    tally: Tally,
}

impl AnchoredWindow {
    /// No window open yet.
    pub fn new(limit: ServerLimit) -> Self {
        Self {
            limit,
            closed: false,
            opened_at: None,
            count: 0,
            last: None,
            tally: Tally::default(),
        }
    }
}

impl AnchoredWindow {
    /// No window open yet; each window `[start, start + W]` includes its end.
    pub fn closed(limit: ServerLimit) -> Self {
        Self {
            closed: true,
            ..Self::new(limit)
        }
    }
}

impl ServerModel for AnchoredWindow {
    fn kind(&self) -> ModelKind {
        ModelKind::Anchored
    }
    fn limit(&self) -> ServerLimit {
        self.limit
    }
    fn arrive(&mut self, at: Instant) -> Verdict {
        let t = monotone(&mut self.last, at);
        let closed = match self.opened_at {
            None => true,
            Some(start) => {
                let end = u128::from(start.as_nanos()) + u128::from(self.limit.window.as_nanos());
                let t = u128::from(t.as_nanos());
                t > end || (t == end && !self.closed)
            }
        };
        if closed {
            self.opened_at = Some(t);
            self.count = 0;
        }
        if self.count < self.limit.max_requests {
            self.count += 1;
            self.tally.accept(self.limit.max_requests - self.count)
        } else {
            self.tally.reject()
        }
    }
    fn accepted(&self) -> u64 {
        self.tally.accepted
    }
    fn rejected(&self) -> u64 {
        self.tally.rejected
    }
}

/// A token bucket of capacity N refilled continuously at N tokens per W,
/// full before the first request. A request takes one whole token.
///
/// Exact integer arithmetic: the level is kept in units of `1 / W_ns` tokens,
/// so one token is `W_ns` units and one nanosecond refills `N` units.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    limit: ServerLimit,
    level: u128,
    refilled_at: Option<Instant>,
    last: Option<Instant>,
    tally: Tally,
}

impl TokenBucket {
    /// A full bucket for `limit`.
    pub fn new(limit: ServerLimit) -> Self {
        Self {
            limit,
            level: Self::capacity(limit),
            refilled_at: None,
            last: None,
            tally: Tally::default(),
        }
    }

    fn token(limit: ServerLimit) -> u128 {
        u128::from(limit.window.as_nanos().max(1))
    }

    fn capacity(limit: ServerLimit) -> u128 {
        u128::from(limit.max_requests) * Self::token(limit)
    }

    /// Whole tokens in the bucket.
    pub fn tokens(&self) -> u64 {
        (self.level / Self::token(self.limit)) as u64
    }
}

impl ServerModel for TokenBucket {
    fn kind(&self) -> ModelKind {
        ModelKind::TokenBucket
    }
    fn limit(&self) -> ServerLimit {
        self.limit
    }
    fn arrive(&mut self, at: Instant) -> Verdict {
        let t = monotone(&mut self.last, at);
        if let Some(prev) = self.refilled_at {
            let elapsed = u128::from(t.as_nanos() - prev.as_nanos());
            let refill = elapsed.saturating_mul(u128::from(self.limit.max_requests));
            self.level = self.level.saturating_add(refill).min(Self::capacity(self.limit));
        }
        self.refilled_at = Some(t);
        let token = Self::token(self.limit);
        if self.level >= token {
            self.level -= token;
            self.tally.accept(self.tokens() as u32)
        } else {
            self.tally.reject()
        }
    }
    fn accepted(&self) -> u64 {
        self.tally.accepted
    }
    fn rejected(&self) -> u64 {
        self.tally.rejected
    }
}

/// All four models of one server limit, fed the same arrivals.
#[derive(Debug)]
pub struct ModelSet {
    limit: ServerLimit,
    models: [Box<dyn ServerModel>; 4],
}

impl ModelSet {
    /// The four models for `limit`; `phase` is the calendar window's offset.
    pub fn new(limit: ServerLimit, phase: Duration) -> Self {
        Self {
            limit,
            models: [
                Box::new(SlidingWindow::new(limit)),
                Box::new(CalendarWindow::new(limit, phase)),
                Box::new(AnchoredWindow::new(limit)),
                Box::new(TokenBucket::new(limit)),
            ],
        }
    }

    /// The four models for `limit` with windows that include both ends
    /// (the token bucket has no ends and is the same as in [`ModelSet::new`]).
    pub fn closed(limit: ServerLimit, phase: Duration) -> Self {
        Self {
            limit,
            models: [
                Box::new(SlidingWindow::closed(limit)),
                Box::new(CalendarWindow::closed(limit, phase)),
                Box::new(AnchoredWindow::closed(limit)),
                Box::new(TokenBucket::new(limit)),
            ],
        }
    }

    /// The limit the models enforce.
    pub fn limit(&self) -> ServerLimit {
        self.limit
    }

    /// A request arrives at `at`; every model judges it. In [`ModelKind::ALL`] order.
    pub fn arrive(&mut self, at: Instant) -> [Verdict; 4] {
        let mut out = [Verdict {
            status: OK,
            remaining: 0,
        }; 4];
        for (slot, model) in out.iter_mut().zip(self.models.iter_mut()) {
            *slot = model.arrive(at);
        }
        out
    }

    /// 429s per model, in [`ModelKind::ALL`] order.
    pub fn rejections(&self) -> [(ModelKind, u64); 4] {
        core::array::from_fn(|i| (self.models[i].kind(), self.models[i].rejected()))
    }

    /// Total 429s over the four models.
    pub fn total_rejections(&self) -> u64 {
        self.models.iter().map(|m| m.rejected()).sum()
    }
}

/// The most instants of `sorted` (ascending) that fit in one half-open window
/// of length `window`: the exact count a sliding-window server would see at
/// its busiest. Zero for an empty window.
pub fn max_in_window(sorted: &[Instant], window: Duration) -> usize {
    if window.is_zero() {
        return 0;
    }
    let mut best = 0;
    let mut start = 0;
    for (end, t) in sorted.iter().enumerate() {
        while t.as_nanos() - sorted[start].as_nanos() >= window.as_nanos() {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

/// Checks `sorted` (ascending admission instants) against the spacing a quota
/// of one request per `interval` with tolerance `tolerance` allows:
/// `t_j - t_i + tolerance >= (j - i) * interval` for every `i < j`. Returns the
/// first offending pair `(i, j)`. Quadratic; meant for short sequences.
pub fn spacing_violation(
    sorted: &[Instant],
    interval: Duration,
    tolerance: Duration,
) -> Option<(usize, usize)> {
    for i in 0..sorted.len() {
        for j in i + 1..sorted.len() {
            let span =
                u128::from(sorted[j].as_nanos() - sorted[i].as_nanos()) + u128::from(tolerance.as_nanos());
            let needed = (j - i) as u128 * u128::from(interval.as_nanos());
            if span < needed {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_nanos(n * 1_000_000)
    }

    fn statuses(model: &mut dyn ServerModel, at: &[u64]) -> Vec<u16> {
        at.iter().map(|&t| model.arrive(ms(t)).status).collect()
    }

    const TEN_PER_SEC: ServerLimit = ServerLimit::per_second(10);
    const THREE_PER_SEC: ServerLimit = ServerLimit::per_second(3);

    #[test]
    fn sliding_window_counts_the_last_w() {
        let mut m = SlidingWindow::new(THREE_PER_SEC);
        let got = statuses(&mut m, &[0, 100, 200, 300, 999, 1_000, 1_099, 1_100, 1_150]);
        // 0,100,200 fill the window; 300 and 999 are inside [0, 1000); at 1000
        // the request at 0 has left; at 1099 the one at 100 is still in.
        assert_eq!(got, [200, 200, 200, 429, 429, 200, 429, 200, 429]);
        assert_eq!((m.accepted(), m.rejected()), (5, 4));
    }

    #[test]
    fn sliding_window_reports_remaining() {
        let mut m = SlidingWindow::new(THREE_PER_SEC);
        let rem: Vec<u32> = [0, 1, 2, 3].iter().map(|&t| m.arrive(ms(t)).remaining).collect();
        assert_eq!(rem, [2, 1, 0, 0]);
        let v = SlidingWindow::new(TEN_PER_SEC).arrive(ms(0));
        assert_eq!(
            v.remaining_req("market", TEN_PER_SEC),
            "group=market; min=600; sec=9"
        );
    }

    #[test]
    fn calendar_window_resets_on_its_boundaries_with_phase() {
        // Boundaries at 300 ms + k s.
        let mut m = CalendarWindow::new(THREE_PER_SEC, Duration::from_millis(300));
        let got = statuses(&mut m, &[0, 100, 200, 299, 300, 301, 302, 303, 1_299, 1_300]);
        assert_eq!(got, [200, 200, 200, 429, 200, 200, 200, 429, 429, 200]);
        // Phase beyond W wraps around.
        let mut wrapped = CalendarWindow::new(THREE_PER_SEC, Duration::from_millis(2_300));
        let again = statuses(
            &mut wrapped,
            &[0, 100, 200, 299, 300, 301, 302, 303, 1_299, 1_300],
        );
        assert_eq!(again, got);
    }

    #[test]
    fn calendar_window_admits_two_full_windows_back_to_back() {
        // The calendar reading lets 2N through within a little more than 0 s
        // around a boundary: the reason a client must not rely on it.
        let mut m = CalendarWindow::new(THREE_PER_SEC, Duration::ZERO);
        let got = statuses(&mut m, &[997, 998, 999, 1_000, 1_001, 1_002, 1_003]);
        assert_eq!(got, [200, 200, 200, 200, 200, 200, 429]);
    }

    #[test]
    fn anchored_window_opens_at_the_first_request_after_close() {
        let mut m = AnchoredWindow::new(THREE_PER_SEC);
        let got = statuses(
            &mut m,
            &[
                500, 600, 700, 1_400, 1_499, 1_500, 1_600, 1_700, 1_800, 2_499, 2_500,
            ],
        );
        // Window [500, 1500): three, then 429s; 1500 opens [1500, 2500).
        assert_eq!(got, [200, 200, 200, 429, 429, 200, 200, 200, 429, 429, 200]);
    }

    #[test]
    fn token_bucket_refills_continuously() {
        let mut m = TokenBucket::new(THREE_PER_SEC);
        // Full bucket: three at once, then one token per 333.33 ms.
        let got = statuses(&mut m, &[0, 0, 0, 0, 333, 334, 500, 667, 668]);
        assert_eq!(got, [200, 200, 200, 429, 429, 200, 429, 200, 429]);
        assert_eq!(m.tokens(), 0);
        // Long idle refills to capacity, not beyond.
        m.arrive(ms(100_000));
        assert_eq!(m.tokens(), 2);
    }

    #[test]
    fn models_clamp_out_of_order_arrivals() {
        let mut m = SlidingWindow::new(ServerLimit::per_second(1));
        assert!(m.arrive(ms(5_000)).is_ok());
        // Earlier than the latest: read as 5 s, inside the same window.
        assert!(!m.arrive(ms(0)).is_ok());
    }

    #[test]
    fn closed_windows_count_both_ends() {
        let at = [0, 500, 1_000, 1_001];
        let mut open = SlidingWindow::new(ServerLimit::per_second(2));
        let mut closed = SlidingWindow::closed(ServerLimit::per_second(2));
        assert_eq!(statuses(&mut open, &at), [200, 200, 200, 429]);
        assert_eq!(statuses(&mut closed, &at), [200, 200, 429, 200]);
        // Calendar boundaries at whole seconds: an arrival at 1 000 is in both windows.
        let mut cal = CalendarWindow::closed(ServerLimit::per_second(2), Duration::ZERO);
        assert_eq!(
            statuses(&mut cal, &[200, 999, 1_000, 1_001, 1_002]),
            [200, 200, 429, 200, 200]
        );
        let mut cal = CalendarWindow::closed(ServerLimit::per_second(2), Duration::ZERO);
        assert_eq!(
            statuses(&mut cal, &[1_000, 1_000, 1_001, 2_000]),
            [200, 200, 429, 429]
        );
        let mut anchored = AnchoredWindow::closed(ServerLimit::per_second(1));
        assert_eq!(statuses(&mut anchored, &[0, 1_000, 1_001]), [200, 429, 200]);
        let mut set = ModelSet::closed(ServerLimit::per_second(1), Duration::ZERO);
        set.arrive(ms(0));
        set.arrive(ms(1_000));
        assert_eq!(set.rejections()[0], (ModelKind::Sliding, 1));
    }

    #[test]
    fn model_set_judges_with_all_four() {
        let mut set = ModelSet::new(THREE_PER_SEC, Duration::from_millis(990));
        // Three at 980..982 and three at 995..997: the calendar window resets
        // at 990 and accepts all six; sliding, anchored and bucket refuse three.
        for t in [980, 981, 982, 995, 996, 997] {
            set.arrive(ms(t));
        }
        let r = set.rejections();
        assert_eq!(
            r,
            [
                (ModelKind::Sliding, 3),
                (ModelKind::Calendar, 0),
                (ModelKind::Anchored, 3),
                (ModelKind::TokenBucket, 3)
            ]
        );
        assert_eq!(set.total_rejections(), 9);
    }

    #[test]
    fn max_in_window_is_the_sliding_count() {
        let t: Vec<Instant> = [0, 100, 200, 999, 1_000, 1_999].iter().map(|&x| ms(x)).collect();
        assert_eq!(max_in_window(&t, Duration::from_secs(1)), 4);
        assert_eq!(max_in_window(&t, Duration::from_millis(1)), 1);
        assert_eq!(max_in_window(&t, Duration::from_secs(2)), 6);
        assert_eq!(max_in_window(&t, Duration::ZERO), 0);
        assert_eq!(max_in_window(&[], Duration::from_secs(1)), 0);
    }

    #[test]
    fn spacing_violation_finds_bursts_beyond_the_tolerance() {
        let t: Vec<Instant> = [0, 0, 100, 200].iter().map(|&x| ms(x)).collect();
        let interval = Duration::from_millis(100);
        // Burst 2 (tolerance 100 ms) allows this; burst 1 does not.
        assert_eq!(spacing_violation(&t, interval, Duration::from_millis(100)), None);
        assert_eq!(spacing_violation(&t, interval, Duration::ZERO), Some((0, 1)));
    }
}
