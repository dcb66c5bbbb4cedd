//! Admission policies: ours and the baselines it is compared with.
//!
//! | policy | what admits a request |
//! |---|---|
//! | `ours` | the real limiter, `RateLimiter::acquire`, with the preset as it ships: the interval log on every group whose requests get a response, the GCRA with its margin for WebSocket messages |
//! | `gcra` | the same limiter with every group on the GCRA with the preset's derived, jitter-safe quota (burst 1) |
//! | `gcra-at-limit` | the same limiter (adaptive ratio, breaker, header sync and all), but with every group's quota at the server's limit: rate = `N / W`, burst = `N`, no jitter margin (10 rps with burst 10 on a 10/s group). It admits up to `2N - 1` in one window |
//! | `best-practice` | Upbit's published example limiter ([`BestPractice`]) |
//! | `none` | nothing: every request is sent at once |
//! | `oracle` | clairvoyant: each request is sent exactly when the server will accept it on arrival, knowing its network delay and the server's windows ([`crate::oracle`]); the physical limit |

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use upbit_limiter_core::{Duration, Group, GroupConfig, Instant, LimiterConfig, Preset, Quota, Runtime};

use crate::exec::SimRuntime;

/// Which admission policy the clients use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// The real limiter with the preset as it ships (the interval log on
    /// the HTTP groups).
    Ours,
    /// The real limiter with every group on the GCRA and its derived,
    /// jitter-safe quota.
    Gcra,
    /// The real limiter with every quota at the server's limit: rate `N / W`,
    /// burst `N`, no margin.
    GcraAtLimit,
    /// Upbit's published fixed-window example with header sync.
    BestPractice,
    /// No limiter at all.
    None,
    /// Clairvoyant: sent exactly when the server will accept it on arrival.
    Oracle,
}

impl Policy {
    /// Every policy.
    pub const ALL: [Policy; 6] = [
        Self::Ours,
        Self::Gcra,
        Self::GcraAtLimit,
        Self::BestPractice,
        Self::None,
        Self::Oracle,
    ];

    /// `ours`, `gcra`, `gcra-at-limit`, `best-practice`, `none` or `oracle`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Gcra => "gcra",
            Self::GcraAtLimit => "gcra-at-limit",
            Self::BestPractice => "best-practice",
            Self::None => "none",
            Self::Oracle => "oracle",
        }
    }

    /// One line on what the policy admits, as `--help` shows it.
    pub fn summary(self) -> &'static str {
        match self {
            Self::Ours => {
                "the limiter as it ships: the interval log on every HTTP group (admits while fewer than N requests \
                 could still arrive in the window; no network assumption), the GCRA for websocket messages"
            }
            Self::Gcra => {
                "the limiter with every group on the GCRA with its derived quota (jitter margin, burst 1; Zero-429 \
                 while delays vary by at most the margin)"
            }
            Self::GcraAtLimit => {
                "the same limiter with every quota at the server's limit: rate N/W, burst N, no margin \
                 (10 rps with burst 10 on a 10/s group)"
            }
            Self::BestPractice => "Upbit's published example: fixed one-second windows, header sync",
            Self::None => "no limiter; every request is sent at once",
            Self::Oracle => {
                "clairvoyant: each request is sent exactly when the server will accept it on arrival, knowing its \
                 network delay and the server's windows (the physical limit)"
            }
        }
    }

    /// The limiter configuration for the policies that run the real limiter.
    pub fn limiter_config(self, preset: Preset) -> Option<LimiterConfig> {
        match self {
            Self::Ours => Some(LimiterConfig::preset(preset)),
            Self::Gcra => {
                let mut cfg = LimiterConfig::preset(preset);
                for g in Group::ALL {
                    cfg.group_mut(g).policy = upbit_limiter_core::limiter::Policy::Gcra;
                }
                Some(cfg)
            }
            Self::GcraAtLimit => {
                let mut cfg = LimiterConfig::preset(preset);
                for g in Group::ALL {
                    *cfg.group_mut(g) = at_limit_group_config(preset, g);
                }
                Some(cfg)
            }
            Self::BestPractice | Self::None | Self::Oracle => None,
        }
    }
}

/// One group's quota at the server's limit: one request per `W / N`, bursts of
/// `N`, no margin. Unsafe by design (refused without `allow_unsafe`).
fn at_limit_group_config(preset: Preset, group: Group) -> GroupConfig {
    let mut cfg = GroupConfig::preset(preset, group);
    cfg.policy = upbit_limiter_core::limiter::Policy::Gcra;
    let first = preset.limits(group)[0];
    let n = first.max_requests.max(1);
    let interval = Duration::from_nanos(first.window.as_nanos().div_ceil(u64::from(n)));
    cfg.quota = Some(Quota::new_unchecked(interval, n));
    cfg.allow_unsafe = true;
    cfg.margin = Duration::ZERO;
    cfg
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is not one of [`Policy::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown policy `{}` (expected ours, gcra, gcra-at-limit, best-practice, none or oracle)",
            self.0
        )
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}

/// Upbit's REST best-practice limiter (UPBIT_LIMITS.md §7), as published:
///
/// - a fixed window per group, aligned to whole seconds of the *client's*
///   clock (`start = ⌊now⌋ − ⌊now⌋ mod window`), with the example's numbers:
///   `market`, `ticker`, `trades`, `candles`, `orderbook` 10 per 1 s,
///   `default` 30 per 1 s, `order` 8 per 1 s, `order-cancel-all` 1 per 2 s;
/// - `acquire`: refill when the window is stale; with no token left, sleep
///   until the window ends plus 10 ms and try again; take one. (Made safe for
///   many tasks: a refill only happens to a stale window, so waking waiters do
///   not each refill it);
/// - after every response, `update_from_header`: if the header's group is one
///   of its keys and `sec` parses, remaining = min(capacity, sec) for the
///   client's current window; on a 429, the current window is marked exhausted;
/// - the group by path prefix, as the example does (so `POST /v1/orders/test`
///   counts as `order`, and the wire name `crix-trades` matches no key).
#[derive(Debug)]
pub struct BestPractice {
    buckets: RefCell<[Bucket; BP_GROUPS.len()]>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    capacity: u32,
    window_secs: u64,
    remaining: u32,
    start: Option<Instant>,
}

const BP_GROUPS: [(&str, u32, u64); 8] = [
    ("market", 10, 1),
    ("ticker", 10, 1),
    ("trades", 10, 1),
    ("candles", 10, 1),
    ("orderbook", 10, 1),
    ("default", 30, 1),
    ("order", 8, 1),
    ("order-cancel-all", 1, 2),
];

const NS: u64 = 1_000_000_000;

impl Bucket {
    fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }
    fn aligned(&self, now: Instant) -> Instant {
        let secs = now.as_nanos() / NS;
        Instant::from_nanos((secs - secs % self.window_secs.max(1)) * NS)
    }
    fn refresh(&mut self, now: Instant) {
        let stale = self.start.is_none_or(|s| now >= s.saturating_add(self.window()));
        if stale {
            self.start = Some(self.aligned(now));
            self.remaining = self.capacity;
        }
    }
}

impl Default for BestPractice {
    fn default() -> Self {
        Self::new()
    }
}

impl BestPractice {
    /// Fresh buckets.
    pub fn new() -> Self {
        Self {
            buckets: RefCell::new(BP_GROUPS.map(|(_, capacity, window_secs)| Bucket {
                capacity,
                window_secs,
                remaining: capacity,
                start: None,
            })),
        }
    }

    /// The example's `_group_for(method, path)`: its bucket index.
    pub fn group_for(method: &str, path: &str) -> usize {
        let key = if path.starts_with("/v1/market") {
            "market"
        } else if path.starts_with("/v1/ticker") {
            "ticker"
        } else if path.starts_with("/v1/trades") {
            "trades"
        } else if path.starts_with("/v1/candles") {
            "candles"
        } else if path.starts_with("/v1/orderbook") {
            "orderbook"
        } else if method.eq_ignore_ascii_case("DELETE") && path.starts_with("/v1/orders/open") {
            "order-cancel-all"
        } else if method.eq_ignore_ascii_case("POST") && path.starts_with("/v1/orders") {
            "order"
        } else {
            "default"
        };
        Self::index(key).unwrap_or(5)
    }

    fn index(name: &str) -> Option<usize> {
        BP_GROUPS.iter().position(|(n, _, _)| *n == name)
    }

    /// Waits for a token of bucket `idx`.
    pub async fn acquire(&self, rt: &SimRuntime, idx: usize) {
        loop {
            let now = rt.now();
            let wake = {
                let mut buckets = self.buckets.borrow_mut();
                let b = &mut buckets[idx];
                b.refresh(now);
                if b.remaining > 0 {
                    b.remaining -= 1;
                    return;
                }
                b.start
                    .unwrap_or(now)
                    .saturating_add(b.window())
                    .saturating_add(Duration::from_millis(10))
            };
            rt.sleep_until(wake).await;
        }
    }

    /// The example's `update_from_header`.
    pub fn update_from_header(&self, now: Instant, value: &str) {
        let mut group = "default";
        let mut sec = None;
        for part in value.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k.trim() {
                "group" => group = v.trim(),
                "sec" => sec = v.trim().parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(idx), Some(sec)) = (Self::index(group), sec) else {
            return;
        };
        let mut buckets = self.buckets.borrow_mut();
        let b = &mut buckets[idx];
        b.refresh(now);
        b.remaining = b.capacity.min(sec);
    }

    /// The example's `mark_exhausted`, on a 429.
    pub fn mark_exhausted(&self, now: Instant, idx: usize) {
        let mut buckets = self.buckets.borrow_mut();
        let b = &mut buckets[idx];
        b.refresh(now);
        b.remaining = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Executor;
    use std::rc::Rc;
    use upbit_limiter_core::SyncLimiter;

    #[test]
    fn names_parse() {
        for p in Policy::ALL {
            assert_eq!(p.as_str().parse(), Ok(p));
        }
        assert!("governor".parse::<Policy>().is_err());
    }

    #[test]
    fn at_limit_quota_admits_19_per_second_and_is_refused_without_the_override() {
        let cfg = Policy::GcraAtLimit.limiter_config(Preset::Korea).unwrap();
        let ticker = cfg.group(Group::Ticker);
        let q = ticker.quota.unwrap();
        assert_eq!(q.max_admissions_in(Duration::from_secs(1)), 19);
        let mut strict = *ticker;
        strict.allow_unsafe = false;
        assert!(strict.validate().is_err());
        assert!(SyncLimiter::new(&cfg).is_ok());
        assert!(SyncLimiter::new(&Policy::Ours.limiter_config(Preset::Korea).unwrap()).is_ok());
    }

    #[test]
    fn best_practice_groups_by_prefix() {
        let name = |m, p| BP_GROUPS[BestPractice::group_for(m, p)].0;
        assert_eq!(name("GET", "/v1/ticker"), "ticker");
        assert_eq!(name("GET", "/v1/trades/ticks"), "trades");
        assert_eq!(name("POST", "/v1/orders/test"), "order");
        assert_eq!(name("DELETE", "/v1/orders/open"), "order-cancel-all");
        assert_eq!(name("GET", "/v1/orders/open"), "default");
    }

    #[test]
    fn best_practice_fills_its_own_second_then_waits_for_the_next() {
        let mut ex = Executor::new();
        let bp = Rc::new(BestPractice::new());
        let times = Rc::new(RefCell::new(Vec::new()));
        let idx = BestPractice::group_for("GET", "/v1/ticker");
        for _ in 0..12 {
            let (rt, bp, times) = (ex.runtime(), Rc::clone(&bp), Rc::clone(&times));
            ex.spawn(async move {
                rt.sleep_until(Instant::from_nanos(900_000_000)).await;
                bp.acquire(&rt, idx).await;
                times.borrow_mut().push(rt.now().as_nanos() / 1_000_000);
            });
        }
        ex.run(Instant::MAX, |_| {}).unwrap();
        // Ten at 0.9 s, in the client's window [0, 1); two at 1.01 s.
        let t = times.borrow();
        assert_eq!(t.iter().filter(|&&ms| ms == 900).count(), 10);
        assert_eq!(t.iter().filter(|&&ms| ms == 1010).count(), 2);
    }

    #[test]
    fn best_practice_header_sync_only_knows_its_keys() {
        let bp = BestPractice::new();
        let now = Instant::from_nanos(100);
        bp.update_from_header(now, "group=candles; min=600; sec=2");
        bp.update_from_header(now, "group=crix-trades; min=600; sec=0");
        let b = bp.buckets.borrow();
        assert_eq!(b[BestPractice::index("candles").unwrap()].remaining, 2);
        assert_eq!(b[BestPractice::index("trades").unwrap()].remaining, 10);
    }
}
