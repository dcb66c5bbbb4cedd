//! Several pockets behind one IP, in virtual time against the four server
//! models: three pockets saturate their order budgets and the IP's ticker
//! budget at once, with random network delays. Each pocket's orders and the
//! IP's tickers must stay within every model's windows, and each pocket must
//! get its whole order budget. Three separate limiters (the IP budget counted
//! three times) are shown to break the ticker limit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use proptest::prelude::*;
use upbit_limiter_core::limiter::Policy;
use upbit_limiter_core::upbit::PocketId;
use upbit_limiter_core::{
    Clock, Duration, Group, Instant, LimiterConfig, ManualClock, Permit, Preset, RateLimiter, Reason,
    Request, Response, Runtime,
};
use upbit_limiter_verification::models::ModelSet;

#[derive(Clone)]
struct Manual(ManualClock);

impl Runtime for Manual {
    type Sleep = std::future::Pending<()>;
    type Instant = Instant;
    fn now(&self) -> Instant {
        self.0.now()
    }
    fn sleep_until(&self, _deadline: Instant) -> Self::Sleep {
        std::future::pending()
    }
    fn core_instant(&self, at: Instant) -> Instant {
        at
    }
    fn runtime_instant(&self, at: Instant) -> Instant {
        at
    }
}

type Limiter = Arc<RateLimiter<Manual>>;

const POCKETS: usize = 3;
const RUN: Duration = Duration::from_secs(20);
const START: Instant = Instant::from_nanos(1_000_000_000);

/// What the server saw: rejections per model set, and our admissions.
struct Seen {
    order_rejections: [u64; POCKETS],
    ticker_rejections: u64,
    orders: [u64; POCKETS],
    tickers: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Pocket `p` wants to send a request of group index `g`.
    Want { p: usize, g: usize },
    /// The request held in `held[slot]` reaches the server.
    Arrive { slot: usize },
    /// Its response reaches the client.
    Respond { slot: usize, status: u16 },
}

/// Saturates `pockets` (one limiter per pocket) with orders and tickers for
/// [`RUN`]; one-way delays are 10 ms plus `jitter[i % len]` (at most the
/// preset's margin), responses come back 10 ms after arrival.
fn run(pockets: &[Limiter; POCKETS], clock: &ManualClock, jitter: &[u64]) -> Seen {
    let config = LimiterConfig::preset(Preset::Korea);
    let groups = [Group::Order, Group::Ticker];
    let limit = |g: Group| config.group(g).limits.as_slice()[0];
    let mut order_models: Vec<ModelSet> = (0..POCKETS)
        .map(|_| ModelSet::closed(limit(Group::Order), Duration::ZERO))
        .collect();
    let mut ticker_models = ModelSet::closed(limit(Group::Ticker), Duration::from_millis(370));
    let mut seen = Seen {
        order_rejections: [0; POCKETS],
        ticker_rejections: 0,
        orders: [0; POCKETS],
        tickers: 0,
    };
    let mut held: Vec<Option<(usize, usize, Permit<Limiter>)>> = Vec::new();
    let mut parked: Vec<(usize, usize)> = Vec::new();
    let mut events = BinaryHeap::new();
    for p in 0..POCKETS {
        for g in 0..groups.len() {
            events.push(Reverse((START, Event::Want { p, g })));
        }
    }
    let end = START + RUN;
    let mut sent = 0usize;
    while let Some(Reverse((at, event))) = events.pop() {
        clock.set(at);
        match event {
            Event::Want { p, g } => {
                if at >= end {
                    continue;
                }
                match pockets[p].clone().try_acquire_owned(Request::group(groups[g])) {
                    Ok(permit) => {
                        let delay = Duration::from_millis(10 + jitter[sent % jitter.len()]);
                        sent += 1;
                        held.push(Some((p, g, permit)));
                        events.push(Reverse((at + delay, Event::Arrive { slot: held.len() - 1 })));
                        // A saturating client asks again at once.
                        events.push(Reverse((at, Event::Want { p, g })));
                    }
                    Err(e) if e.reason() == Reason::InFlight => {
                        // A report may make room before the flight bound.
                        parked.push((p, g));
                        let retry = e.retry_at().max(at + Duration::from_nanos(1));
                        events.push(Reverse((retry, Event::Want { p, g })));
                    }
                    Err(e) => {
                        let retry = e.retry_at().max(at + Duration::from_nanos(1));
                        events.push(Reverse((retry, Event::Want { p, g })));
                    }
                }
            }
            Event::Arrive { slot } => {
                let (p, g, _) = held[slot].as_ref().expect("in flight");
                let verdicts = match groups[*g] {
                    Group::Order => {
                        seen.orders[*p] += 1;
                        order_models[*p].arrive(at)
                    }
                    _ => {
                        seen.tickers += 1;
                        ticker_models.arrive(at)
                    }
                };
                let status = if verdicts.iter().all(|v| v.is_ok()) {
                    200
                } else {
                    429
                };
                events.push(Reverse((
                    at + Duration::from_millis(10),
                    Event::Respond { slot, status },
                )));
            }
            Event::Respond { slot, status } => {
                let (_, g, permit) = held[slot].take().expect("answered once");
                permit.report(Response::status(status));
                // Whoever waits on a report of this group asks again now.
                for (p, parked_g) in std::mem::take(&mut parked) {
                    if parked_g == g {
                        events.push(Reverse((at, Event::Want { p, g })));
                    } else {
                        parked.push((p, parked_g));
                    }
                }
            }
        }
    }
    for (seen, models) in seen.order_rejections.iter_mut().zip(&order_models) {
        *seen = models.total_rejections();
    }
    seen.ticker_rejections = ticker_models.total_rejections();
    seen
}

fn clock() -> ManualClock {
    ManualClock::starting_at(START)
}

/// One IP limiter and three pockets opened from it.
fn pockets_on_one_ip(clock: &ManualClock) -> [Limiter; POCKETS] {
    let config = LimiterConfig::preset(Preset::Korea);
    let ip = Arc::new(RateLimiter::with_runtime(&config, Manual(clock.clone())).unwrap());
    ["main", "sub-1", "sub-2"].map(|name| ip.add_pocket(PocketId::new(name).unwrap(), &config).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(upbit_limiter_verification::cases(256, 32)))]

    #[test]
    fn pockets_share_the_ip_budget_and_keep_their_own(jitter in proptest::collection::vec(0u64..=100, 1..64)) {
        let clock = clock();
        let pockets = pockets_on_one_ip(&clock);
        let seen = run(&pockets, &clock, &jitter);
        prop_assert_eq!(seen.order_rejections, [0; POCKETS]);
        prop_assert_eq!(seen.ticker_rejections, 0);
        // Each pocket gets at least 95 % of its own order budget; the IP's
        // ticker budget is shared by all three. On the interval log a
        // request holds its place for its round trip (at most 20 ms plus
        // the largest jitter) on top of the window: `N` per `W + rtt`, less
        // the first window's `N`. On the GCRA it is its quota's rate.
        let rtt = Duration::from_millis(20 + jitter.iter().copied().max().unwrap_or(0));
        let full = |g: Group| {
            let s = pockets[0].group(g).status(clock.now());
            let limit = s.limits.as_slice()[0];
            match s.policy {
                Policy::IntervalLog => {
                    let per = limit.window + rtt;
                    u64::from(limit.max_requests) * (RUN.as_nanos() / per.as_nanos()) - u64::from(limit.max_requests)
                }
                _ => RUN.as_nanos() / s.quota.interval().as_nanos(),
            }
        };
        for p in 0..POCKETS {
            prop_assert!(seen.orders[p] * 100 >= full(Group::Order) * 95, "pocket {}: {} orders of {}", p, seen.orders[p], full(Group::Order));
        }
        prop_assert!(seen.tickers * 100 >= full(Group::Ticker) * 95, "{} tickers of {}", seen.tickers, full(Group::Ticker));
        // Never more than the server allows one IP: 10 per second.
        prop_assert!(seen.tickers <= 10 * (RUN.as_nanos() / 1_000_000_000 + 1), "{} tickers", seen.tickers);
    }
}

#[test]
fn three_separate_limiters_count_the_ip_budget_three_times() {
    let clock = clock();
    let config = LimiterConfig::preset(Preset::Korea);
    let separate =
        [0; POCKETS].map(|_| Arc::new(RateLimiter::with_runtime(&config, Manual(clock.clone())).unwrap()));
    let seen = run(&separate, &clock, &[0, 50, 100]);
    assert_eq!(seen.order_rejections, [0; POCKETS]);
    assert!(
        seen.ticker_rejections > 0,
        "no ticker 429 from {} tickers",
        seen.tickers
    );
}
