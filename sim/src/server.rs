//! The simulated Upbit server: routing, per-group windows under a chosen
//! model, 429 and the escalation to 418, and the `Remaining-Req` header.
//!
//! # Window models
//!
//! Upbit says "N per second" but not how it counts (see UPBIT_LIMITS.md §5),
//! so each model the evidence allows is here, and `all` runs each in turn:
//!
//! | model | a request arriving at `t` is accepted when |
//! |---|---|
//! | `sliding` | fewer than `N` accepted arrivals lie in `(t - W, t]` |
//! | `fixed` | fewer than `N` accepted arrivals lie in the calendar window `[phase + kW, phase + (k+1)W)` holding `t` |
//! | `anchored` | fewer than `N` accepted arrivals lie in the window that opened at the first arrival after the previous window closed, and lasts `W` |
//! | `token-bucket` | a bucket of capacity `N`, refilled continuously at `N / W` and full at the start, holds a whole token |
//!
//! Counting is exact (integer nanoseconds; the bucket keeps its level in
//! units of `1/N` token-nanoseconds). Rejected requests (429, 418) do not
//! count towards any window, as Upbit's 2022 guide said of failed requests.
//!
//! # 429 and 418
//!
//! Upbit publishes no escalation numbers, so this model is ours and its
//! numbers are configurable ([`Escalation`]): when `after` 429s have been
//! sent to one scope unit (the IP for Quotation groups, the pocket for
//! Exchange groups) within `window`, the request that would have been the
//! next 429 gets a 418 instead and the whole unit is blocked for `block`;
//! every further block doubles that, up to `block_max` (set both to one
//! length for a fixed real ban). While blocked, every request of the unit
//! gets a 418 whose body states the remaining block time in words
//! (`"blocked for 27 seconds"`), since Upbit documents no field; with
//! [`Escalation::unreadable_body`] the body says only `I'm a teapot`, so the
//! client cannot know how long the block lasts.
//!
//! # `Remaining-Req`
//!
//! Every response carries `Remaining-Req: group=<wire name>; min=<60 × per-second
//! limit>; sec=<left in the current window after this request>`. The wire
//! names are the ones seen in practice: `candles` for candle and
//! `crix-trades` for trade. A 429 or 418 says `sec=0`.
//! [`Server::without_remaining_req`] drops the header from every answer.
//!
//! # Limit changes
//!
//! [`Server::change_limits`] schedules new windows for a group at an instant
//! (nobody is told). From then on the group is counted against them, and what
//! it has counted so far carries over (see [`Window::carried`]), so a lower
//! limit does not grant a fresh window at the change.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use upbit_limiter_core::upbit::Scope;
use upbit_limiter_core::{Duration, Group, Instant, Preset, ServerLimit};

/// How the server counts a group's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerModel {
    /// "N in any window of length W" (a sliding log).
    Sliding,
    /// Calendar windows `[phase + kW, phase + (k+1)W)`.
    Fixed,
    /// A window opens at the first request and lasts `W`.
    Anchored,
    /// A token bucket of capacity `N` refilled at `N / W`.
    TokenBucket,
}

impl ServerModel {
    /// Every model, in the order `all` runs them.
    pub const ALL: [ServerModel; 4] = [Self::Sliding, Self::Fixed, Self::Anchored, Self::TokenBucket];

    /// `sliding`, `fixed`, `anchored` or `token-bucket`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sliding => "sliding",
            Self::Fixed => "fixed",
            Self::Anchored => "anchored",
            Self::TokenBucket => "token-bucket",
        }
    }
}

impl fmt::Display for ServerModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server model name that is not one of [`ServerModel::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownModel(pub String);

impl fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown server model `{}` (expected sliding, fixed, anchored or token-bucket)",
            self.0
        )
    }
}

impl std::error::Error for UnknownModel {}

impl FromStr for ServerModel {
    type Err = UnknownModel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(&name))
            .ok_or_else(|| UnknownModel(s.to_owned()))
    }
}

/// The group the real server counts `method path` in, or `None` if it does
/// not route the path (it would answer 404 without `Remaining-Req`).
///
/// This is the simulator's own table, written from Upbit's documentation
/// independently of the limiter's classifier, so that a classification bug in
/// the limiter shows up as 429s here instead of agreeing with itself.
pub fn route(method: &str, path: &str) -> Option<Group> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_end_matches('/');
    let method = method.trim().to_ascii_uppercase();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    match segs.as_slice() {
        ["v1", "market", "all"] => Some(Group::Market),
        ["v1", "candles", "seconds" | "days" | "weeks" | "months" | "years"] => Some(Group::Candle),
        ["v1", "candles", "minutes", unit]
            if ["1", "3", "5", "10", "15", "30", "60", "240"].contains(unit) =>
        {
            Some(Group::Candle)
        }
        ["v1", "trades", "ticks"] => Some(Group::Trade),
        ["v1", "ticker"] | ["v1", "ticker", "all"] => Some(Group::Ticker),
        ["v1", "orderbook"] | ["v1", "orderbook", "instruments" | "supported_levels"] => {
            Some(Group::Orderbook)
        }
        ["v1", "orders"] | ["v1", "orders", "cancel_and_new"] if method == "POST" => Some(Group::Order),
        ["v1", "orders", "test"] if method == "POST" => Some(Group::OrderTest),
        ["v1", "orders", "open"] if method == "DELETE" => Some(Group::OrderCancelAll),
        ["v1", "accounts"]
        | ["v1", "order"]
        | ["v1", "orders", "chance" | "uuids" | "open" | "closed"]
        | ["v1", "withdraws", ..]
        | ["v1", "withdraw"]
        | ["v1", "deposits", ..]
        | ["v1", "deposit"]
        | ["v1", "travel_rule", ..]
        | ["v1", "status", "wallet"]
        | ["v1", "api_keys"]
        | ["v1", "pockets", ..] => Some(Group::Default),
        _ => None,
    }
}

/// The group name the server writes in `Remaining-Req`.
pub fn wire_name(group: Group) -> &'static str {
    match group {
        Group::Candle => "candles",
        Group::Trade => "crix-trades",
        Group::WebsocketConnect => "websocket",
        other => other.as_str(),
    }
}

/// The deprecated `min` field: 60 × the per-second limit of the first window.
fn min_field(limit: ServerLimit) -> u64 {
    let per_min =
        u128::from(limit.max_requests) * 60_000_000_000 / u128::from(limit.window.as_nanos().max(1));
    per_min as u64
}

/// One window of one group under one model.
#[derive(Clone, Debug)]
pub enum Window {
    /// Accepted arrivals in `(t - W, t]`.
    Sliding {
        /// The limit.
        limit: ServerLimit,
        /// Accepted arrivals not yet expired, oldest first.
        log: VecDeque<Instant>,
    },
    /// A calendar window.
    Fixed {
        /// The limit.
        limit: ServerLimit,
        /// Where windows begin, modulo `W`.
        phase: Duration,
        /// The index of the current window.
        id: u64,
        /// Accepted in the current window.
        count: u32,
    },
    /// A window anchored at its first request.
    Anchored {
        /// The limit.
        limit: ServerLimit,
        /// When the current window opened (`None` before the first request).
        start: Option<Instant>,
        /// Accepted in the current window.
        count: u32,
    },
    /// A token bucket.
    TokenBucket {
        /// The limit.
        limit: ServerLimit,
        /// The level, where one token is `W` (in nanoseconds) units and the
        /// bucket gains `N` units per nanosecond.
        level: u128,
        /// When the level was last brought up to date.
        last: Instant,
    },
}

impl Window {
    /// A fresh window for `limit` under `model`.
    pub fn new(model: ServerModel, limit: ServerLimit, phase: Duration) -> Self {
        match model {
            ServerModel::Sliding => Self::Sliding {
                limit,
                log: VecDeque::new(),
            },
            ServerModel::Fixed => Self::Fixed {
                limit,
                phase: Duration::from_nanos(phase.as_nanos() % limit.window.as_nanos().max(1)),
                id: 0,
                count: 0,
            },
            ServerModel::Anchored => Self::Anchored {
                limit,
                start: None,
                count: 0,
            },
            ServerModel::TokenBucket => Self::TokenBucket {
                limit,
                level: Self::capacity(limit),
                last: Instant::ZERO,
            },
        }
    }

    fn capacity(limit: ServerLimit) -> u128 {
        u128::from(limit.max_requests) * u128::from(limit.window.as_nanos())
    }

    /// Brings the window up to `at` (expiries, refills). `at` never goes back.
    pub fn refresh(&mut self, at: Instant) {
        match self {
            Self::Sliding { limit, log } => {
                while let Some(&first) = log.front() {
                    if first.saturating_add(limit.window) <= at {
                        log.pop_front();
                    } else {
                        break;
                    }
                }
            }
            Self::Fixed {
                limit,
                phase,
                id,
                count,
            } => {
                let w = limit.window.as_nanos().max(1);
                // Windows start at phase + kW; shift so that window 1 starts at `phase`.
                let k = (at.as_nanos() + (w - phase.as_nanos())) / w;
                if k != *id {
                    *id = k;
                    *count = 0;
                }
            }
            Self::Anchored { limit, start, count } => {
                if start.is_some_and(|s| at >= s.saturating_add(limit.window)) {
                    *start = None;
                    *count = 0;
                }
            }
            Self::TokenBucket { limit, level, last } => {
                let elapsed = u128::from((at - *last).as_nanos());
                *level = (*level + elapsed * u128::from(limit.max_requests)).min(Self::capacity(*limit));
                *last = at.max(*last);
            }
        }
    }

    /// Whether one more request fits (after [`refresh`](Self::refresh)).
    pub fn has_room(&self) -> bool {
        match self {
            Self::Sliding { limit, log } => log.len() < limit.max_requests as usize,
            Self::Fixed { limit, count, .. } | Self::Anchored { limit, count, .. } => {
                *count < limit.max_requests
            }
            Self::TokenBucket { limit, level, .. } => *level >= u128::from(limit.window.as_nanos()),
        }
    }

    /// Counts an accepted request at `at`.
    pub fn take(&mut self, at: Instant) {
        match self {
            Self::Sliding { log, .. } => log.push_back(at),
            Self::Fixed { count, .. } => *count += 1,
            Self::Anchored { start, count, .. } => {
                if start.is_none() {
                    *start = Some(at);
                }
                *count += 1;
            }
            Self::TokenBucket { limit, level, .. } => {
                *level = level.saturating_sub(u128::from(limit.window.as_nanos()));
            }
        }
    }

    /// When a window with no room (after [`refresh`](Self::refresh) at some
    /// instant) next has room, if nothing more is taken meanwhile: the instant
    /// the oldest counted arrival leaves (`sliding`), the next calendar window
    /// (`fixed`), the end of the open window (`anchored`), the instant a whole
    /// token is back (`token-bucket`). `None` when it has room now.
    pub fn next_room(&self) -> Option<Instant> {
        if self.has_room() {
            return None;
        }
        Some(match self {
            Self::Sliding { limit, log } => {
                let n = limit.max_requests as usize;
                let oldest = log.len().saturating_sub(n.max(1));
                log.get(oldest)
                    .map_or(Instant::ZERO, |&t| t.saturating_add(limit.window))
            }
            Self::Fixed { limit, phase, id, .. } => {
                // Window `id` ends where window `id + 1` starts: `id * W + phase`.
                let w = limit.window.as_nanos().max(1);
                Instant::from_nanos(id.saturating_mul(w).saturating_add(phase.as_nanos()))
            }
            Self::Anchored { limit, start, .. } => {
                start.map_or(Instant::ZERO, |s| s.saturating_add(limit.window))
            }
            Self::TokenBucket { limit, level, last } => {
                let short = u128::from(limit.window.as_nanos()).saturating_sub(*level);
                let n = u128::from(limit.max_requests.max(1));
                let wait = u64::try_from(short.div_ceil(n)).unwrap_or(u64::MAX);
                last.saturating_add(Duration::from_nanos(wait))
            }
        })
    }

    /// Requests left in the current window (for `Remaining-Req`'s `sec`).
    pub fn remaining(&self) -> u32 {
        match self {
            Self::Sliding { limit, log } => limit.max_requests.saturating_sub(log.len() as u32),
            Self::Fixed { limit, count, .. } | Self::Anchored { limit, count, .. } => {
                limit.max_requests.saturating_sub(*count)
            }
            Self::TokenBucket { limit, level, .. } => {
                (level / u128::from(limit.window.as_nanos().max(1))) as u32
            }
        }
    }

    /// A window of the same model for `limit` that carries what this one
    /// counted, brought up to `at`: the same arrivals (`sliding`; a longer new
    /// window does not see arrivals the old one had already let go), the
    /// count of the current window (`fixed`: in the new calendar window that
    /// holds `at`; `anchored`: the window keeps its opening instant), the
    /// same share of a full bucket (`token-bucket`). `phase` places the new
    /// `fixed` windows.
    pub fn carried(&self, limit: ServerLimit, phase: Duration, at: Instant) -> Self {
        let mut old = self.clone();
        old.refresh(at);
        let mut new = match old {
            Self::Sliding { log, .. } => Self::Sliding { limit, log },
            Self::Fixed { count, .. } => {
                let mut w = Self::new(ServerModel::Fixed, limit, phase);
                w.refresh(at);
                if let Self::Fixed { count: c, .. } = &mut w {
                    *c = count;
                }
                w
            }
            Self::Anchored { start, count, .. } => Self::Anchored { limit, start, count },
            Self::TokenBucket {
                limit: old_limit,
                level,
                last,
            } => {
                // The level in tokens is `level / W_old`; the same share of a
                // full bucket in the new units.
                let old_cap = Self::capacity(old_limit).max(1);
                let level = level.saturating_mul(Self::capacity(limit)) / old_cap;
                Self::TokenBucket { limit, level, last }
            }
        };
        new.refresh(at);
        new
    }

    /// The limit this window enforces.
    pub fn limit(&self) -> ServerLimit {
        match self {
            Self::Sliding { limit, .. }
            | Self::Fixed { limit, .. }
            | Self::Anchored { limit, .. }
            | Self::TokenBucket { limit, .. } => *limit,
        }
    }
}

/// The 429 → 418 escalation (our model; Upbit publishes no numbers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Escalation {
    /// 429s to one scope unit within `window` that turn the next one into a block.
    pub after: u32,
    /// The span those 429s are counted over.
    pub window: Duration,
    /// The first block's length.
    pub block: Duration,
    /// The longest block; each further block doubles up to this.
    pub block_max: Duration,
    /// 418 bodies that state no block time (the client has to guess).
    pub unreadable_body: bool,
}

impl Default for Escalation {
    fn default() -> Self {
        Self {
            after: 10,
            window: Duration::from_secs(60),
            block: Duration::from_secs(30),
            block_max: Duration::from_secs(600),
            unreadable_body: false,
        }
    }
}

/// Who sent a request: our clients or the other process on the same IP/pocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The clients whose admission policy is under test.
    Ours,
    /// Background load the policy does not know about.
    Background,
}

/// The server's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status: 200, 429 or 418 (404 for an unrouted path).
    pub status: u16,
    /// The `Remaining-Req` value, on every routed response (unless the
    /// server sends none).
    pub remaining_req: Option<String>,
    /// The body of a 418 (the block time in words).
    pub body: Option<String>,
}

/// What the server saw of one group, for the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupLoad {
    /// Requests of ours that arrived.
    pub arrived: u64,
    /// Of those, accepted (200).
    pub accepted: u64,
    /// Of those, 429.
    pub status_429: u64,
    /// Of those, 418.
    pub status_418: u64,
    /// Background requests that arrived.
    pub background_arrived: u64,
    /// Background requests that got a 429 or 418.
    pub background_rejected: u64,
    /// The most accepted arrivals (all sources) seen in one sliding window of
    /// the group's first limit: the peak load the server carried.
    pub peak_in_window: u32,
    /// The most accepted arrivals in one such window as a share of the first
    /// limit in force then (the same as `peak_in_window` over the limit,
    /// unless the limits changed).
    pub peak_share: f64,
    /// Instants of the first few 429/418 given to our requests.
    pub first_violations: Vec<Instant>,
}

#[derive(Clone, Debug)]
struct GroupState {
    windows: Vec<Window>,
    /// Accepted arrivals in the last window of the first limit, any model.
    peak_log: VecDeque<Instant>,
    load: GroupLoad,
}

#[derive(Clone, Debug, Default)]
struct UnitState {
    recent_429: VecDeque<Instant>,
    blocked_until: Instant,
    blocks: u32,
}

const FIRST_VIOLATIONS_KEPT: usize = 8;

/// The server: one IP and one pocket shared by every simulated client.
#[derive(Clone, Debug)]
pub struct Server {
    model: ServerModel,
    phase: Duration,
    groups: Vec<GroupState>,
    units: [UnitState; 3],
    escalation: Escalation,
    last_arrival: Instant,
    remaining_req: bool,
    /// Limit changes not yet applied, in time order.
    changes: Vec<(Instant, Group, Vec<ServerLimit>)>,
}

fn unit_index(scope: Scope) -> usize {
    match scope {
        Scope::Ip => 0,
        Scope::Pocket => 1,
        Scope::Connection => 2,
    }
}

impl Server {
    /// A server with `preset`'s limits under `model`; `phase` places the
    /// `fixed` model's calendar windows.
    pub fn new(preset: Preset, model: ServerModel, phase: Duration, escalation: Escalation) -> Self {
        Self::with_limits(model, phase, escalation, |g| preset.limits(g).to_vec())
    }

    /// A server whose windows for each group are `limits(group)` (each group
    /// needs at least one) instead of a preset's, e.g. a preset's scaled down
    /// so that a test reaches them with few requests.
    pub fn with_limits(
        model: ServerModel,
        phase: Duration,
        escalation: Escalation,
        mut limits: impl FnMut(Group) -> Vec<ServerLimit>,
    ) -> Self {
        let groups = Group::ALL
            .iter()
            .map(|&g| GroupState {
                windows: {
                    let mut l = limits(g);
                    if l.is_empty() {
                        l.push(ServerLimit::per_second(1));
                    }
                    l.into_iter().map(|l| Window::new(model, l, phase)).collect()
                },
                peak_log: VecDeque::new(),
                load: GroupLoad::default(),
            })
            .collect();
        Self {
            model,
            phase,
            groups,
            units: Default::default(),
            escalation,
            last_arrival: Instant::ZERO,
            remaining_req: true,
            changes: Vec::new(),
        }
    }

    /// The same server, answering without `Remaining-Req`.
    pub fn without_remaining_req(mut self) -> Self {
        self.remaining_req = false;
        self
    }

    /// From `at` on, `group` is counted against `limits` instead (an empty
    /// list changes nothing). Applied when the first arrival at or after `at`
    /// is handled; an instant already past applies at the next arrival.
    pub fn change_limits(&mut self, at: Instant, group: Group, limits: Vec<ServerLimit>) {
        if limits.is_empty() {
            return;
        }
        // In time order; two changes at one instant apply in the order
        // given (the last wins), as the sort is stable.
        self.changes.push((at, group, limits));
        self.changes.sort_by_key(|c| c.0);
    }

    fn apply_changes(&mut self, now: Instant) {
        let due = self.changes.partition_point(|c| c.0 <= now);
        if due == 0 {
            return;
        }
        for (at, group, limits) in self.changes.drain(..due).collect::<Vec<_>>() {
            let at = at.max(self.last_arrival);
            let state = &mut self.groups[group.index()];
            let windows = limits
                .into_iter()
                .enumerate()
                .map(|(i, l)| match state.windows.get(i) {
                    Some(w) => w.carried(l, self.phase, at),
                    None => Window::new(self.model, l, self.phase),
                })
                .collect();
            state.windows = windows;
        }
    }

    /// The window model.
    pub fn model(&self) -> ServerModel {
        self.model
    }

    /// What the server saw of `group`.
    pub fn load(&self, group: Group) -> &GroupLoad {
        &self.groups[group.index()].load
    }

    /// The first limit of `group` (the one `sec` speaks of).
    pub fn limit(&self, group: Group) -> ServerLimit {
        self.groups[group.index()].windows[0].limit()
    }

    /// The windows of `group` as they stand (brought up to date only at the
    /// group's last arrival; [`Window::refresh`] a copy to look ahead).
    pub fn windows(&self, group: Group) -> &[Window] {
        &self.groups[group.index()].windows
    }

    /// Until when the IP or pocket `group` counts in is blocked (418).
    pub fn blocked_until(&self, group: Group) -> Instant {
        self.units[unit_index(group.scope())].blocked_until
    }

    /// Decides the request of `group` arriving at `at` from `source`.
    /// Arrivals must come in time order (a late one is taken as arriving at
    /// the latest instant seen).
    pub fn handle(&mut self, at: Instant, group: Group, source: Source) -> Reply {
        let at = at.max(self.last_arrival);
        self.apply_changes(at);
        self.last_arrival = at;
        let unit = unit_index(group.scope());
        let first_limit = self.groups[group.index()].windows[0].limit();
        let with_header = self.remaining_req;
        let header = |sec: u32| {
            with_header.then(|| {
                format!(
                    "group={}; min={}; sec={sec}",
                    wire_name(group),
                    min_field(first_limit)
                )
            })
        };
        let ours = source == Source::Ours;
        let state = &mut self.groups[group.index()];
        if ours {
            state.load.arrived += 1;
        } else {
            state.load.background_arrived += 1;
        }

        let unreadable = self.escalation.unreadable_body;
        let u = &mut self.units[unit];
        if at < u.blocked_until {
            let left = (u.blocked_until - at).as_nanos().div_ceil(1_000_000_000);
            Self::count_rejection(state, source, 418, at);
            return Reply {
                status: 418,
                remaining_req: header(0),
                body: Some(blocked_body(left, unreadable)),
            };
        }

        for w in &mut state.windows {
            w.refresh(at);
        }
        if state.windows.iter().all(Window::has_room) {
            for w in &mut state.windows {
                w.take(at);
            }
            let sec = state.windows[0].remaining();
            if ours {
                state.load.accepted += 1;
            }
            while let Some(&first) = state.peak_log.front() {
                if first.saturating_add(first_limit.window) <= at {
                    state.peak_log.pop_front();
                } else {
                    break;
                }
            }
            state.peak_log.push_back(at);
            state.load.peak_in_window = state.load.peak_in_window.max(state.peak_log.len() as u32);
            let share = state.peak_log.len() as f64 / f64::from(first_limit.max_requests.max(1));
            state.load.peak_share = state.load.peak_share.max(share);
            return Reply {
                status: 200,
                remaining_req: header(sec),
                body: None,
            };
        }

        // Over the limit: a 429, or a 418 once the unit has had enough of them.
        let esc = self.escalation;
        while let Some(&first) = u.recent_429.front() {
            if first.saturating_add(esc.window) <= at {
                u.recent_429.pop_front();
            } else {
                break;
            }
        }
        if u.recent_429.len() as u32 >= esc.after {
            let factor = 1u64.checked_shl(u.blocks.min(63)).unwrap_or(u64::MAX);
            let length = esc.block.saturating_mul(factor).min(esc.block_max.max(esc.block));
            u.blocked_until = at.saturating_add(length);
            u.blocks = u.blocks.saturating_add(1);
            u.recent_429.clear();
            Self::count_rejection(state, source, 418, at);
            return Reply {
                status: 418,
                remaining_req: header(0),
                body: Some(blocked_body(
                    length.as_nanos().div_ceil(1_000_000_000),
                    unreadable,
                )),
            };
        }
        u.recent_429.push_back(at);
        Self::count_rejection(state, source, 429, at);
        Reply {
            status: 429,
            remaining_req: header(0),
            body: Some("Too many API requests.".to_owned()),
        }
    }

    fn count_rejection(state: &mut GroupState, source: Source, status: u16, at: Instant) {
        match source {
            Source::Ours => {
                if status == 418 {
                    state.load.status_418 += 1;
                } else {
                    state.load.status_429 += 1;
                }
                if state.load.first_violations.len() < FIRST_VIOLATIONS_KEPT {
                    state.load.first_violations.push(at);
                }
            }
            Source::Background => state.load.background_rejected += 1,
        }
    }
}

/// The body of a 418 under [`Escalation::unreadable_body`]: no block time.
pub const UNREADABLE_BODY: &str = r#"{"error":{"name":418,"message":"I'm a teapot"}}"#;

/// The body of a 418: the block time in words, or nothing readable.
fn blocked_body(secs: u64, unreadable: bool) -> String {
    if unreadable {
        return UNREADABLE_BODY.to_owned();
    }
    format!(
        "{{\"error\":{{\"name\":\"too_many_requests_blocked\",\"message\":\"Too many requests: blocked for {secs} seconds\"}}}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use upbit_limiter_core::upbit::{parse_ban_duration, RemainingReq};

    fn ms(n: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(n)
    }

    fn ten_per_sec(model: ServerModel, phase_ms: u64) -> Window {
        Window::new(
            model,
            ServerLimit::per_second(10),
            Duration::from_millis(phase_ms),
        )
    }

    /// Offers a request at each instant; returns which were accepted.
    fn offer(w: &mut Window, at: &[u64]) -> Vec<bool> {
        at.iter()
            .map(|&t| {
                w.refresh(ms(t));
                let ok = w.has_room();
                if ok {
                    w.take(ms(t));
                }
                ok
            })
            .collect()
    }

    #[test]
    fn sliding_counts_any_window() {
        let mut w = ten_per_sec(ServerModel::Sliding, 0);
        let burst: Vec<u64> = (0..10).map(|i| 500 + i).collect();
        assert!(offer(&mut w, &burst).iter().all(|&ok| ok));
        assert_eq!(w.remaining(), 0);
        // Full until the first of them is a whole window old...
        assert_eq!(offer(&mut w, &[1000, 1499]), [false, false]);
        // ...and (t - W, t] excludes an arrival exactly W ago.
        assert_eq!(offer(&mut w, &[1500, 1500]), [true, false]);
        assert_eq!(offer(&mut w, &[1501]), [true]);
    }

    #[test]
    fn fixed_resets_on_the_phased_boundary() {
        let mut w = ten_per_sec(ServerModel::Fixed, 300);
        // Ten just before the boundary at 1.3 s, ten just after: 20 in 20 ms.
        let before: Vec<u64> = (0..10).map(|i| 1290 + i).collect();
        let after: Vec<u64> = (0..10).map(|i| 1300 + i).collect();
        assert!(offer(&mut w, &before).iter().all(|&ok| ok));
        assert_eq!(offer(&mut w, &[1299]), [false]);
        assert!(offer(&mut w, &after).iter().all(|&ok| ok));
        assert_eq!(offer(&mut w, &[2299]), [false]);
        assert_eq!(offer(&mut w, &[2300]), [true]);
        // Before the first boundary the window is [phase - W, phase).
        let mut w = ten_per_sec(ServerModel::Fixed, 300);
        let early: Vec<u64> = (0..10).map(|i| 10 * i).collect();
        assert!(offer(&mut w, &early).iter().all(|&ok| ok));
        assert_eq!(offer(&mut w, &[299, 300]), [false, true]);
    }

    #[test]
    fn anchored_opens_at_the_first_request() {
        let mut w = ten_per_sec(ServerModel::Anchored, 0);
        let first: Vec<u64> = (0..10).map(|i| 700 + i).collect();
        assert!(offer(&mut w, &first).iter().all(|&ok| ok));
        // The window [700, 1700) is full, whatever the calendar says.
        assert_eq!(offer(&mut w, &[1000, 1699]), [false, false]);
        assert_eq!(offer(&mut w, &[1700]), [true]);
        assert_eq!(w.remaining(), 9);
        // The next window opened at 1700, not at 1000 or 2000.
        let more: Vec<u64> = (0..9).map(|i| 2600 + i).collect();
        assert!(offer(&mut w, &more).iter().all(|&ok| ok));
        assert_eq!(offer(&mut w, &[2699]), [false]);
        assert_eq!(offer(&mut w, &[2700]), [true]);
    }

    #[test]
    fn token_bucket_refills_continuously() {
        let mut w = ten_per_sec(ServerModel::TokenBucket, 0);
        let burst = vec![0; 10];
        assert!(offer(&mut w, &burst).iter().all(|&ok| ok));
        assert_eq!(offer(&mut w, &[0, 99]), [false, false]);
        // One token per 100 ms.
        assert_eq!(offer(&mut w, &[100, 100, 200]), [true, false, true]);
        // After a long idle it is full again, not fuller.
        assert_eq!(offer(&mut w, &[10_000]), [true]);
        assert_eq!(w.remaining(), 9);
        // Exact with a limit that does not divide: 12 per second is one per 83.33 ms.
        let mut w = Window::new(
            ServerModel::TokenBucket,
            ServerLimit::per_second(12),
            Duration::ZERO,
        );
        for _ in 0..12 {
            w.refresh(ms(0));
            w.take(ms(0));
        }
        w.refresh(Instant::from_nanos(83_333_333));
        assert!(!w.has_room());
        w.refresh(Instant::from_nanos(83_333_334));
        assert!(w.has_room());
    }

    #[test]
    fn a_burst_of_ten_at_ten_rps_trips_every_model_once_jitter_moves_one_arrival() {
        // GCRA 10/s with burst 10: a burst of 10, then one every 100 ms,
        // 19 requests in 0.9 s.
        let exact: Vec<u64> = (0..10).map(|_| 0).chain((1..=9).map(|i| 100 * i)).collect();
        for model in [ServerModel::Sliding, ServerModel::Fixed, ServerModel::Anchored] {
            let mut w = ten_per_sec(model, 0);
            let rejected = offer(&mut w, &exact).iter().filter(|&&ok| !ok).count();
            assert_eq!(rejected, 9, "{model}");
        }
        // A bucket of 10 refilled at 10/s is exactly that GCRA: all 19 pass...
        let mut w = ten_per_sec(ServerModel::TokenBucket, 0);
        assert!(offer(&mut w, &exact).iter().all(|&ok| ok));
        // ...until jitter brings one arrival a millisecond early.
        let mut jittered = exact.clone();
        jittered[14] -= 1;
        let mut w = ten_per_sec(ServerModel::TokenBucket, 0);
        assert_eq!(offer(&mut w, &jittered).iter().filter(|&&ok| !ok).count(), 1);
    }

    #[test]
    fn next_room_is_the_first_instant_with_room() {
        for model in ServerModel::ALL {
            let mut w = ten_per_sec(model, 370);
            let burst: Vec<u64> = (0..10).map(|i| 400 + i).collect();
            assert!(offer(&mut w, &burst).iter().all(|&ok| ok), "{model}");
            w.refresh(ms(450));
            let t = w.next_room().unwrap_or_else(|| panic!("{model}: full"));
            let expected = match model {
                ServerModel::Sliding | ServerModel::Anchored => ms(1400),
                // The next calendar window starts at 1.37 s.
                ServerModel::Fixed => ms(1370),
                // 0.09 tokens left at 409 ms; 0.91 more at 10/s take 91 ms.
                ServerModel::TokenBucket => ms(500),
            };
            assert_eq!(t, expected, "{model}");
            let mut before = w.clone();
            before.refresh(t - Duration::from_nanos(1));
            assert!(!before.has_room(), "{model}: room 1 ns before");
            let mut at = w.clone();
            at.refresh(t);
            assert!(at.has_room(), "{model}: no room at {t:?}");
            assert_eq!(at.next_room(), None);
        }
    }

    #[test]
    fn routes_follow_upbits_table() {
        assert_eq!(route("GET", "/v1/ticker"), Some(Group::Ticker));
        assert_eq!(
            route("GET", "/v1/candles/minutes/5?market=KRW-BTC"),
            Some(Group::Candle)
        );
        assert_eq!(route("GET", "/v1/candles/minutes/7"), None);
        assert_eq!(route("GET", "/v1/trades/ticks"), Some(Group::Trade));
        assert_eq!(route("POST", "/v1/orders"), Some(Group::Order));
        assert_eq!(route("post", "/v1/orders/cancel_and_new"), Some(Group::Order));
        assert_eq!(route("POST", "/v1/orders/test"), Some(Group::OrderTest));
        assert_eq!(route("DELETE", "/v1/orders/open"), Some(Group::OrderCancelAll));
        assert_eq!(route("GET", "/v1/orders/open"), Some(Group::Default));
        assert_eq!(route("DELETE", "/v1/order"), Some(Group::Default));
        assert_eq!(route("GET", "/v1/accounts"), Some(Group::Default));
        assert_eq!(route("GET", "/v1/nope"), None);
        assert_eq!(route("GET", "/v2/ticker"), None);
    }

    #[test]
    fn headers_use_wire_names_and_parse() {
        let mut s = Server::new(
            Preset::Korea,
            ServerModel::Sliding,
            Duration::ZERO,
            Escalation::default(),
        );
        let r = s.handle(ms(0), Group::Candle, Source::Ours);
        assert_eq!(r.status, 200);
        assert_eq!(r.remaining_req.as_deref(), Some("group=candles; min=600; sec=9"));
        let r = s.handle(ms(1), Group::Trade, Source::Ours);
        assert_eq!(
            r.remaining_req.as_deref(),
            Some("group=crix-trades; min=600; sec=9")
        );
        let r = s.handle(ms(2), Group::OrderCancelAll, Source::Ours);
        assert_eq!(
            r.remaining_req.as_deref(),
            Some("group=order-cancel-all; min=30; sec=0")
        );
        let r = s.handle(ms(3), Group::Default, Source::Ours);
        let h = RemainingReq::parse(r.remaining_req.as_deref().unwrap()).unwrap();
        assert_eq!((h.group(), h.sec, h.min), (Some(Group::Default), 29, Some(1800)));
    }

    #[test]
    fn repeated_429s_escalate_to_a_growing_block_of_the_whole_unit() {
        let esc = Escalation {
            after: 3,
            window: Duration::from_secs(10),
            block: Duration::from_secs(30),
            block_max: Duration::from_secs(100),
            unreadable_body: false,
        };
        let mut s = Server::new(Preset::Korea, ServerModel::Fixed, Duration::ZERO, esc);
        for i in 0..10 {
            assert_eq!(s.handle(ms(i), Group::Ticker, Source::Ours).status, 200);
        }
        for i in 10..13 {
            assert_eq!(s.handle(ms(i), Group::Ticker, Source::Ours).status, 429);
        }
        let r = s.handle(ms(13), Group::Ticker, Source::Ours);
        assert_eq!(r.status, 418);
        assert_eq!(
            parse_ban_duration(r.body.as_deref().unwrap()),
            Some(Duration::from_secs(30))
        );
        // The whole IP is blocked, not only the ticker group; the pocket is not.
        assert_eq!(s.handle(ms(2000), Group::Orderbook, Source::Ours).status, 418);
        assert_eq!(s.handle(ms(2000), Group::Order, Source::Ours).status, 200);
        // After the block, the second offence blocks twice as long.
        let t = 31_000;
        for i in 0..10 {
            assert_eq!(s.handle(ms(t + i), Group::Ticker, Source::Ours).status, 200);
        }
        for i in 10..13 {
            assert_eq!(s.handle(ms(t + i), Group::Ticker, Source::Ours).status, 429);
        }
        let r = s.handle(ms(t + 13), Group::Ticker, Source::Ours);
        assert_eq!(
            parse_ban_duration(r.body.as_deref().unwrap()),
            Some(Duration::from_secs(60))
        );
        let load = s.load(Group::Ticker);
        assert_eq!((load.status_429, load.status_418, load.accepted), (6, 2, 20));
        assert_eq!(load.first_violations[0], ms(10));
        assert_eq!(s.load(Group::Orderbook).status_418, 1);
    }

    #[test]
    fn background_load_counts_against_the_same_budget() {
        let mut s = Server::new(
            Preset::Korea,
            ServerModel::Sliding,
            Duration::ZERO,
            Escalation::default(),
        );
        for i in 0..4 {
            s.handle(ms(i), Group::Ticker, Source::Background);
        }
        let r = s.handle(ms(10), Group::Ticker, Source::Ours);
        assert_eq!(r.remaining_req.as_deref(), Some("group=ticker; min=600; sec=5"));
        let load = s.load(Group::Ticker);
        assert_eq!(
            (load.arrived, load.background_arrived, load.peak_in_window),
            (1, 4, 5)
        );
    }

    #[test]
    fn models_parse() {
        for m in ServerModel::ALL {
            assert_eq!(m.as_str().parse(), Ok(m));
        }
        assert_eq!("Token-Bucket".parse(), Ok(ServerModel::TokenBucket));
        assert_eq!(" token_bucket ".parse(), Ok(ServerModel::TokenBucket));
        assert!("leaky".parse::<ServerModel>().is_err());
    }

    /// Offers a request of `group` every `gap_ms` from `from_ms` to `to_ms`;
    /// returns (accepted, rejected) by second of arrival.
    fn stream(s: &mut Server, group: Group, gap_ms: f64, from_ms: u64, to_ms: u64) -> Vec<(u32, u32)> {
        let mut by_second = vec![(0, 0); (to_ms / 1000 + 1) as usize];
        let mut k = 0u64;
        loop {
            let t = Instant::from_nanos(from_ms * 1_000_000 + (k as f64 * gap_ms * 1e6) as u64);
            if t >= ms(to_ms) {
                return by_second;
            }
            let sec = (t.as_nanos() / 1_000_000_000) as usize;
            if s.handle(t, group, Source::Ours).status == 200 {
                by_second[sec].0 += 1;
            } else {
                by_second[sec].1 += 1;
            }
            k += 1;
        }
    }

    #[test]
    fn a_limit_change_is_enforced_from_its_instant_under_every_model() {
        for model in ServerModel::ALL {
            let mut s = Server::new(
                Preset::Korea,
                model,
                Duration::ZERO,
                Escalation {
                    after: u32::MAX,
                    ..Escalation::default()
                },
            );
            s.change_limits(ms(3_500), Group::Order, vec![ServerLimit::per_second(8)]);
            // 11 a second: under 12/s, over 8/s.
            let seconds = stream(&mut s, Group::Order, 1000.0 / 11.0, 0, 9_000);
            let before: u32 = seconds[..3].iter().map(|c| c.1).sum();
            assert_eq!(before, 0, "{model}: {seconds:?}");
            assert!(seconds[3].0 >= 8, "{model}: {seconds:?}");
            // Once whatever was counted before has drained: 8 a second.
            let late: u32 = seconds[6..9].iter().map(|c| c.0).sum();
            assert!((23..=25).contains(&late), "{model}: {seconds:?}");
            assert!(seconds[6..9].iter().all(|c| c.1 > 0), "{model}: {seconds:?}");
            assert_eq!(s.limit(Group::Order), ServerLimit::per_second(8));
            let r = s.handle(ms(20_000), Group::Order, Source::Ours);
            assert_eq!(
                r.remaining_req.as_deref(),
                Some("group=order; min=480; sec=7"),
                "{model}"
            );
            // Other groups keep their limits.
            assert_eq!(s.limit(Group::Ticker), ServerLimit::per_second(10));
        }
    }

    #[test]
    fn a_lower_limit_grants_no_fresh_window() {
        for model in [ServerModel::Sliding, ServerModel::Fixed, ServerModel::Anchored] {
            let mut s = Server::new(Preset::Korea, model, Duration::ZERO, Escalation::default());
            for i in 0..12 {
                assert_eq!(
                    s.handle(ms(100 + i), Group::Order, Source::Ours).status,
                    200,
                    "{model}"
                );
            }
            s.change_limits(ms(600), Group::Order, vec![ServerLimit::per_second(8)]);
            assert_eq!(
                s.handle(ms(700), Group::Order, Source::Ours).status,
                429,
                "{model}"
            );
            assert_eq!(
                s.handle(ms(1_200), Group::Order, Source::Ours).status,
                200,
                "{model}"
            );
        }
        // The bucket keeps its share: a quarter full of 12 is a quarter full of 8.
        let w = Window::new(
            ServerModel::TokenBucket,
            ServerLimit::per_second(12),
            Duration::ZERO,
        );
        let mut w = w;
        for _ in 0..9 {
            w.take(ms(0));
        }
        assert_eq!(w.remaining(), 3);
        let c = w.carried(ServerLimit::per_second(8), Duration::ZERO, ms(0));
        assert_eq!(c.remaining(), 2);
        assert_eq!(c.limit(), ServerLimit::per_second(8));
        // A raise carries the count too: 12 taken of a new 20.
        let mut w = ten_per_sec(ServerModel::Sliding, 0);
        offer(&mut w, &[0, 1, 2]);
        let c = w.carried(ServerLimit::per_second(20), Duration::ZERO, ms(5));
        assert_eq!(c.remaining(), 17);
    }

    #[test]
    fn a_server_without_headers_sends_none() {
        let mut s = Server::new(
            Preset::Korea,
            ServerModel::Sliding,
            Duration::ZERO,
            Escalation::default(),
        )
        .without_remaining_req();
        for i in 0..11 {
            let r = s.handle(ms(i), Group::Ticker, Source::Ours);
            assert_eq!(r.status, if i < 10 { 200 } else { 429 });
            assert_eq!(r.remaining_req, None);
        }
    }

    #[test]
    fn limit_changes_apply_in_time_order_and_the_last_given_wins_a_tie() {
        let mut s = Server::new(
            Preset::Korea,
            ServerModel::Fixed,
            Duration::ZERO,
            Escalation::default(),
        );
        let per_sec = ServerLimit::per_second;
        s.change_limits(ms(5_000), Group::Ticker, vec![per_sec(3)]);
        s.change_limits(ms(2_000), Group::Ticker, vec![per_sec(6)]);
        s.change_limits(ms(2_000), Group::Ticker, vec![per_sec(5)]);
        s.change_limits(ms(2_000), Group::Order, Vec::new());
        s.handle(ms(1_000), Group::Ticker, Source::Ours);
        assert_eq!(s.limit(Group::Ticker), per_sec(10));
        s.handle(ms(2_000), Group::Ticker, Source::Ours);
        assert_eq!(s.limit(Group::Ticker), per_sec(5));
        assert_eq!(s.limit(Group::Order), per_sec(12));
        // Applied at the first arrival of any group at or after its instant.
        s.handle(ms(7_000), Group::Order, Source::Ours);
        assert_eq!(s.limit(Group::Ticker), per_sec(3));
    }
}
