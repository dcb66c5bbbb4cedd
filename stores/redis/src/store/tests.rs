//! The scripts against core's interval log, on a real Redis, with the
//! scripts' clock driven by an explicit instant (the only place one is passed:
//! the same sequence of instants goes to both, so every decision and every
//! retry instant can be compared exactly, which readings of a moving `TIME`
//! could not give).

#[path = "../../tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use redis::aio::ConnectionManager;
use redis_server::RedisServer;
use upbit_limiter_tokio::upbit_limiter_core::interval_log::{Denial, IntervalLog, Ticket};
use upbit_limiter_tokio::upbit_limiter_core::limiter::Limits;
use upbit_limiter_tokio::upbit_limiter_core::{Duration, Instant};
use upbit_limiter_tokio::{GroupConfig, Preset, ServerLimit};

use super::*;

const MS: u64 = 1_000;
const S: u64 = 1_000_000;
/// Where the scripts' clock starts (µs): any instant well below 2^52.
const T0: u64 = 1_700_000_000 * S;

async fn connect(server: &RedisServer) -> ConnectionManager {
    let client = redis::Client::open(server.url()).unwrap();
    ConnectionManager::new(client).await.unwrap()
}

fn group_config(limits: &[ServerLimit], max_flight_us: u64) -> GroupConfig {
    let mut c = GroupConfig::preset(Preset::Korea, Group::Order);
    c.limits = Limits::new(limits).unwrap();
    c.max_flight = Duration::from_micros(max_flight_us);
    c
}

fn budget(prefix: &str, limits: &[ServerLimit], max_flight_us: u64) -> Budget {
    Budget::new(
        prefix,
        "ip",
        "pocket",
        Group::Order,
        &group_config(limits, max_flight_us),
    )
    .unwrap()
}

fn fb(pause_us: u64, ban_us: u64) -> Shared {
    Shared {
        pause_us,
        ban_us,
        sec: None,
    }
}

fn ns(us: u64) -> Instant {
    Instant::from_nanos(us * 1_000)
}

/// A deterministic generator (an LCG), as in core's brute-force test.
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

/// When the store opens after its epoch `T0`: max_flight + the longest window + 1.
fn opening(b: &Budget, max_flight_us: u64) -> u64 {
    T0 + max_flight_us + b.longest_us + 1
}

#[tokio::test(flavor = "current_thread")]
async fn the_scripts_decide_as_core_s_interval_log() {
    let server = RedisServer::start();
    let store = Store::new(connect(&server).await, "diff");
    let shapes: [&[ServerLimit]; 4] = [
        &[ServerLimit::per_second(3)],
        &[ServerLimit::per_second(12)],
        &[
            ServerLimit::per_second(2),
            ServerLimit::new(7, Duration::from_secs(5)),
        ],
        &[
            ServerLimit::new(4, Duration::from_millis(300)),
            ServerLimit::per_second(6),
            ServerLimit::new(6, Duration::from_millis(200)),
        ],
    ];
    let max_flight = 1_500 * MS;
    let mut rng = Lcg(11);
    let (mut admitted, mut denied, mut waits_for_report) = (0, 0, 0);
    for (k, limits) in shapes.into_iter().enumerate() {
        let prefix = format!("diff{k}");
        let store = Store::new(store.conn.clone(), &prefix);
        let b = budget(&prefix, limits, max_flight);
        let mut log = IntervalLog::new(limits, Duration::from_micros(max_flight)).unwrap();
        // The first decision finds the store empty: closed until the epoch's hold ends.
        match store.decide(&b, Some(T0)).await.unwrap() {
            Decision::Denied {
                wait: Wait::FreshStore,
                retry_at,
                now: T0,
            } => assert_eq!(retry_at, opening(&b, max_flight)),
            other => panic!("{other:?}"),
        }
        let mut t = opening(&b, max_flight);
        let mut open: Vec<(Ticket, String)> = Vec::new();
        for step in 0..1_500 {
            t += MS * rng.next(4) * rng.next(60);
            match rng.next(6) {
                0..=2 => {
                    let core = log.try_admit(ns(t));
                    let script = store.decide(&b, Some(t)).await.unwrap();
                    match (core, script) {
                        (Ok(ticket), Decision::Admitted { ticket: id, at }) => {
                            assert_eq!(at, t);
                            admitted += 1;
                            open.push((ticket, id));
                        }
                        (Err(d), Decision::Denied { wait, retry_at, now }) => {
                            denied += 1;
                            assert_eq!(now, t);
                            // Core's retry instant is `end + W + 1 ns`; the script's
                            // `end + W + 1 µs`: the same first microsecond.
                            assert_eq!(
                                retry_at,
                                d.retry_at().as_nanos().div_ceil(1_000),
                                "{limits:?} step {step}"
                            );
                            assert_eq!(wait == Wait::FullInFlight, d.waits_for_report(), "{d:?} {wait:?}");
                            assert!(matches!(wait, Wait::Full | Wait::FullInFlight));
                            waits_for_report += usize::from(matches!(d, Denial::UntilReport(_)));
                        }
                        (core, script) => {
                            panic!("{limits:?} step {step} at {t}: core {core:?}, script {script:?}")
                        }
                    }
                }
                3 | 4 if !open.is_empty() => {
                    let (ticket, id) = open.swap_remove(rng.next(open.len() as u64) as usize);
                    let core = log.report(ticket, ns(t));
                    let script = store
                        .report(&b, &id, End::Response, fb(0, 0), Some(t))
                        .await
                        .unwrap();
                    assert_eq!(core, script, "{limits:?} step {step}: report");
                }
                5 if !open.is_empty() => {
                    let (ticket, id) = open.swap_remove(rng.next(open.len() as u64) as usize);
                    let (core, script) = if rng.next(2) == 0 {
                        (
                            log.abandon(ticket, ns(t)),
                            store
                                .report(&b, &id, End::Abandoned, fb(0, 0), Some(t))
                                .await
                                .unwrap(),
                        )
                    } else {
                        let core = log.no_response(ticket, ns(t));
                        let script = store
                            .report(&b, &id, End::NoResponse, fb(0, 0), Some(t))
                            .await
                            .unwrap();
                        if core && rng.next(2) == 0 {
                            // Its response comes after all: both shorten it.
                            t += MS * rng.next(200);
                            let late = log.report(ticket, ns(t));
                            assert_eq!(
                                late,
                                store
                                    .report(&b, &id, End::Response, fb(0, 0), Some(t))
                                    .await
                                    .unwrap()
                            );
                        }
                        (core, script)
                    };
                    assert_eq!(core, script, "{limits:?} step {step}: end without a response");
                }
                _ => {}
            }
        }
        let state = store.status(&b, Some(t)).await.unwrap();
        assert_eq!(state.counting as usize, log.counting(ns(t)), "{limits:?}");
        assert_eq!(state.in_flight as usize, log.in_flight(), "{limits:?}");
    }
    // The sequences exercised every kind of decision.
    assert!(
        admitted > 500 && denied > 300 && waits_for_report > 20,
        "{admitted} {denied} {waits_for_report}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_backward_step_reads_as_no_time_passed_and_time_flows_on() {
    let server = RedisServer::start();
    let store = Store::new(connect(&server).await, "back");
    let mf = 2 * S;
    let b = budget("back", &[ServerLimit::per_second(1)], mf);
    let t = opening(&b, mf);
    let _ = store.decide(&b, Some(T0)).await.unwrap();
    let Decision::Admitted { ticket, at } = store.decide(&b, Some(t)).await.unwrap() else {
        panic!("closed");
    };
    assert_eq!(at, t);
    // The clock steps back by an hour: the report reads as at the mark.
    let back = t - 3_600 * S;
    assert!(store
        .report(&b, &ticket, End::Response, fb(0, 0), Some(back + 10 * MS))
        .await
        .unwrap());
    // From there time flows on at the real rate (10 ms later is the mark +
    // 10 ms), not frozen for an hour until the wall clock catches up.
    match store.decide(&b, Some(back + 20 * MS)).await.unwrap() {
        Decision::Denied {
            wait: Wait::Full,
            retry_at,
            now,
        } => {
            assert_eq!(now, t + 10 * MS);
            // Reported at the mark, the request counts for W after it.
            assert_eq!(retry_at, t + S + 1);
        }
        other => panic!("{other:?}"),
    }
    match store.decide(&b, Some(back + 20 * MS + S)).await.unwrap() {
        Decision::Admitted { at, .. } => assert_eq!(at, t + 10 * MS + S),
        other => panic!("{other:?}"),
    }
    // A second step back while idle: still never below the mark.
    match store.decide(&b, Some(back)).await.unwrap() {
        Decision::Denied { now, .. } => assert_eq!(now, t + 10 * MS + S),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_forward_step_makes_entries_end_early_by_the_step() {
    let server = RedisServer::start();
    let store = Store::new(connect(&server).await, "fwd");
    let mf = 2 * S;
    let b = budget("fwd", &[ServerLimit::per_second(2)], mf);
    let t = opening(&b, mf);
    let _ = store.decide(&b, Some(T0)).await.unwrap();
    for _ in 0..2 {
        let Decision::Admitted { ticket, .. } = store.decide(&b, Some(t)).await.unwrap() else {
            panic!("closed");
        };
        assert!(store
            .report(&b, &ticket, End::Response, fb(0, 0), Some(t + 5 * MS))
            .await
            .unwrap());
    }
    assert!(matches!(
        store.decide(&b, Some(t + 10 * MS)).await.unwrap(),
        Decision::Denied { wait: Wait::Full, .. }
    ));
    // 10 ms of real time later the host's clock jumps 5 s ahead: the store
    // cannot tell it from 5 s of idle time and admits a whole window again,
    // N requests that a real window of one second already holds N of.
    let jump = t + 20 * MS + 5 * S;
    for _ in 0..2 {
        assert!(matches!(
            store.decide(&b, Some(jump)).await.unwrap(),
            Decision::Admitted { .. }
        ));
    }
    assert!(matches!(
        store.decide(&b, Some(jump)).await.unwrap(),
        Decision::Denied { .. }
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn a_store_found_empty_stays_closed_until_every_lost_interval_has_ended() {
    let server = RedisServer::start();
    let conn = connect(&server).await;
    let store = Store::new(conn.clone(), "lost");
    let mf = 3 * S;
    let b = budget("lost", &[ServerLimit::per_second(2)], mf);
    let t = opening(&b, mf);
    let _ = store.decide(&b, Some(T0)).await.unwrap();
    let Decision::Admitted { ticket, .. } = store.decide(&b, Some(t)).await.unwrap() else {
        panic!("closed");
    };
    // Every key is lost (a restart without persistence) with the request in flight.
    let mut c = conn.clone();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    let lost_at = t + 100 * MS;
    // Its report finds no ticket: it changes nothing, and the report
    // itself marks the new epoch.
    assert!(!store
        .report(&b, &ticket, End::Response, fb(0, 0), Some(lost_at))
        .await
        .unwrap());
    let open_at = lost_at + mf + S + 1;
    for probe in [lost_at + MS, lost_at + mf, open_at - 1] {
        match store.decide(&b, Some(probe)).await.unwrap() {
            Decision::Denied {
                wait: Wait::FreshStore,
                retry_at,
                ..
            } => assert_eq!(retry_at, open_at),
            other => panic!("{other:?} at {probe}"),
        }
    }
    let state = store.status(&b, Some(open_at)).await.unwrap();
    assert_eq!(state.epoch_us, Some(lost_at));
    assert!(matches!(
        store.decide(&b, Some(open_at)).await.unwrap(),
        Decision::Admitted { .. }
    ));
    // The old ticket's ids are never reused: the new epoch is in every ticket.
    let Decision::Admitted { ticket: again, .. } = store.decide(&b, Some(open_at)).await.unwrap() else {
        panic!("second admission");
    };
    assert_ne!(again, ticket);
    assert!(again.starts_with(&lost_at.to_string()));
}

#[tokio::test(flavor = "current_thread")]
async fn scripts_survive_script_flush() {
    let server = RedisServer::start();
    let conn = connect(&server).await;
    let store = Store::new(conn.clone(), "flush");
    let b = budget("flush", &[ServerLimit::per_second(5)], S);
    let _ = store.decide(&b, Some(T0)).await.unwrap();
    let t = opening(&b, S);
    let Decision::Admitted { ticket, .. } = store.decide(&b, Some(t)).await.unwrap() else {
        panic!("closed");
    };
    let mut c = conn.clone();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .unwrap();
    // EVALSHA meets NOSCRIPT; the script is loaded again and runs once.
    assert!(store
        .report(&b, &ticket, End::Response, fb(0, 0), Some(t + MS))
        .await
        .unwrap());
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(matches!(
        store.decide(&b, Some(t + 2 * MS)).await.unwrap(),
        Decision::Admitted { .. }
    ));
    let state = store.status(&b, Some(t + 2 * MS)).await.unwrap();
    assert_eq!((state.counting, state.in_flight), (2, 1));
}

#[tokio::test(flavor = "current_thread")]
async fn bans_and_pauses_close_every_sharer_and_only_extend() {
    let server = RedisServer::start();
    let store = Store::new(connect(&server).await, "fb");
    let b = budget("fb", &[ServerLimit::per_second(5)], S);
    let _ = store.decide(&b, Some(T0)).await.unwrap();
    let t = opening(&b, S);
    let Decision::Admitted { ticket, .. } = store.decide(&b, Some(t)).await.unwrap() else {
        panic!("closed");
    };
    // A 429: the budget pauses for one window.
    assert!(store
        .report(&b, &ticket, End::Response, fb(S, 0), Some(t + MS))
        .await
        .unwrap());
    match store.decide(&b, Some(t + 2 * MS)).await.unwrap() {
        Decision::Denied {
            wait: Wait::Paused,
            retry_at,
            ..
        } => assert_eq!(retry_at, t + MS + S),
        other => panic!("{other:?}"),
    }
    // A 418 bans the scope (a stale ticket still carries the ban); a shorter
    // one later does not shorten it.
    assert!(!store
        .report(&b, "0-0", End::Response, fb(0, 60 * S), Some(t + 3 * MS))
        .await
        .unwrap());
    assert!(!store
        .report(&b, "0-0", End::Response, fb(0, S), Some(t + 4 * MS))
        .await
        .unwrap());
    let other_group = Budget::new(
        "fb",
        "ip",
        "pocket",
        Group::Default,
        &group_config(&[ServerLimit::per_second(5)], S),
    )
    .unwrap();
    for budget in [&b, &other_group] {
        match store.decide(budget, Some(t + 2 * S)).await.unwrap() {
            Decision::Denied {
                wait: Wait::Banned,
                retry_at,
                ..
            } => assert_eq!(retry_at, t + 3 * MS + 60 * S),
            other => panic!("{other:?}"),
        }
    }
    let state = store.status(&b, Some(t + 2 * S)).await.unwrap();
    assert_eq!(state.banned_until_us, t + 3 * MS + 60 * S);
    assert_eq!(state.paused_until_us, t + MS + S);
}

#[tokio::test(flavor = "current_thread")]
async fn sharers_must_agree_on_the_rule() {
    let server = RedisServer::start();
    let store = Store::new(connect(&server).await, "spec");
    let a = budget("spec", &[ServerLimit::per_second(5)], S);
    let b = budget("spec", &[ServerLimit::per_second(6)], S);
    let _ = store.decide(&a, Some(T0)).await.unwrap();
    assert_eq!(
        store.decide(&b, Some(T0 + 1)).await.unwrap(),
        Decision::SpecMismatch
    );
}

#[tokio::test(flavor = "current_thread")]
async fn nonsense_arguments_are_refused_with_a_typed_error() {
    let server = RedisServer::start();
    let store = Store::new(connect(&server).await, "bad");
    let b = budget("bad", &[ServerLimit::per_second(5)], S);
    for now in [TIME_LIMIT_US, u64::MAX / 2] {
        assert!(matches!(
            store.decide(&b, Some(now)).await,
            Err(StoreError::Refused(_))
        ));
    }
    let mut broken = b.clone();
    broken.args[2] = "0".into();
    assert!(matches!(
        store.decide(&broken, Some(T0)).await,
        Err(StoreError::Refused(_))
    ));
    broken.args.truncate(3);
    assert!(matches!(
        store.decide(&broken, Some(T0)).await,
        Err(StoreError::Refused(_))
    ));
}

#[test]
fn malformed_replies_are_typed_errors() {
    use redis::Value::{Array, BulkString, Int, Nil};
    let bad = [
        Nil,
        Int(1),
        Array(vec![]),
        Array(vec![Int(1), Int(5), Int(3)]),
        Array(vec![Int(1), BulkString(vec![]), Int(3)]),
        Array(vec![Int(1), BulkString(b"1-1".to_vec()), Int(-3)]),
        Array(vec![Int(0), Int(9), Int(3), Int(1)]),
        Array(vec![Int(0), Int(1), Int(3), Int(4)]),
        Array(vec![Int(0), Int(1), BulkString(b"x".to_vec()), Int(4)]),
        Array(vec![Int(2), Int(1), Int(3), Int(4)]),
    ];
    for v in bad {
        assert_eq!(parse_decision(&v), Err(StoreError::MalformedReply), "{v:?}");
    }
    assert_eq!(
        parse_decision(&Array(vec![Int(0), Int(2), Int(9), Int(4)])),
        Ok(Decision::Denied {
            wait: Wait::FullInFlight,
            retry_at: 9,
            now: 4
        })
    );
    assert!(parse_status(&Array(vec![Int(1); 6])).is_err());
    assert!(parse_status(&Array(vec![
        Int(1),
        Int(1),
        Int(-1),
        Int(0),
        Int(0),
        Int(0),
        Int(0)
    ]))
    .is_err());
}

#[test]
fn key_names_are_checked_and_budgets_keyed_by_scope() {
    assert!(valid_name("pocket-1"));
    for bad in ["", "a:b", "a{b", "a}", "a b", "a\u{7}", &"x".repeat(129)] {
        assert!(!valid_name(bad), "{bad:?}");
    }
    let cfg = GroupConfig::preset(Preset::Korea, Group::Ticker);
    let ticker = Budget::new("p", "host-ip", "pk", Group::Ticker, &cfg).unwrap();
    assert_eq!(ticker.ends, "{p}:ip:host-ip:ticker:ends");
    assert_eq!(ticker.ban, "{p}:ip:host-ip:ban");
    let order = Budget::new(
        "p",
        "host-ip",
        "pk",
        Group::Order,
        &GroupConfig::preset(Preset::Korea, Group::Order),
    )
    .unwrap();
    assert_eq!(order.meta, "{p}:pocket:pk:order:meta");
    assert!(Budget::new("p", "i", "k", Group::WebsocketMessage, &cfg).is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn traffic_of_others_in_remaining_req_reserves_room_for_two_windows() {
    let server = RedisServer::start();
    let store = Store::new(connect(&server).await, "others");
    let mf = 2 * S;
    let b = budget("others", &[ServerLimit::per_second(5)], mf);
    let _ = store.decide(&b, Some(T0)).await.unwrap();
    let t = opening(&b, mf);
    let mut tickets = Vec::new();
    for _ in 0..2 {
        let Decision::Admitted { ticket, .. } = store.decide(&b, Some(t)).await.unwrap() else {
            panic!("closed");
        };
        tickets.push(ticket);
    }
    let with_sec = |sec| Shared {
        sec: Some(sec),
        ..Shared::default()
    };
    // The sharers sent 2; the server counted 4 (sec = 1 of 5): 2 of others.
    assert!(store
        .report(&b, &tickets[0], End::Response, with_sec(1), Some(t + 5 * MS))
        .await
        .unwrap());
    let state = store.status(&b, Some(t + 6 * MS)).await.unwrap();
    assert_eq!(state.reserved, 3, "the others' 2 and one of slack");
    match store.decide(&b, Some(t + 10 * MS)).await.unwrap() {
        // Room for max(5 - 3, 1) = 2: the next is when the first report leaves the window.
        Decision::Denied { wait, retry_at, .. } => {
            assert_eq!(wait, Wait::Full);
            assert_eq!(retry_at, t + 5 * MS + S + 1);
        }
        other => panic!("{other:?}"),
    }
    // A report that agrees with the sharers' count reserves nothing more.
    assert!(store
        .report(&b, &tickets[1], End::Response, with_sec(3), Some(t + 20 * MS))
        .await
        .unwrap());
    assert_eq!(store.status(&b, Some(t + 21 * MS)).await.unwrap().reserved, 3);
    // Two windows after the report, the whole budget is back.
    let later = t + 5 * MS + 2 * S;
    assert_eq!(store.status(&b, Some(later)).await.unwrap().reserved, 0);
    for _ in 0..5 {
        assert!(matches!(
            store.decide(&b, Some(later)).await.unwrap(),
            Decision::Admitted { .. }
        ));
    }
    assert!(matches!(
        store.decide(&b, Some(later)).await.unwrap(),
        Decision::Denied { .. }
    ));
    // No reserve from a budget whose sharers account for everything.
    let quiet = budget("others2", &[ServerLimit::per_second(5)], mf);
    let store2 = Store::new(store.conn.clone(), "others2");
    let _ = store2.decide(&quiet, Some(T0)).await.unwrap();
    let Decision::Admitted { ticket, .. } = store2.decide(&quiet, Some(t)).await.unwrap() else {
        panic!("closed");
    };
    assert!(store2
        .report(&quiet, &ticket, End::Response, with_sec(4), Some(t + MS))
        .await
        .unwrap());
    assert_eq!(store2.status(&quiet, Some(t + 2 * MS)).await.unwrap().reserved, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_ceiling_learned_from_a_429_holds_back_places_for_every_sharer() {
    let server = RedisServer::start();
    let store = Store::new(connect(&server).await, "ceil");
    let mf = 2 * S;
    let config = group_config(&[ServerLimit::per_second(5)], mf);
    let hold = micros_up(config.ceiling_hold.as_nanos());
    let reduction = u64::from(config.adaptive.reduction.ppm());
    assert!(hold > 0, "the presets hold a learned ceiling");
    // Two processes on one budget: the same keys, each its own `Budget`.
    let a = Budget::new("ceil", "ip", "pocket", Group::Order, &config).unwrap();
    let b = Budget::new("ceil", "ip", "pocket", Group::Order, &config).unwrap();
    let _ = store.decide(&a, Some(T0)).await.unwrap();
    let t = opening(&a, mf);
    let mut tickets = Vec::new();
    for (i, budget) in [&a, &b, &a, &b].into_iter().enumerate() {
        let Decision::Admitted { ticket, .. } = store.decide(budget, Some(t + i as u64 * MS)).await.unwrap()
        else {
            panic!("closed");
        };
        tickets.push(ticket);
    }
    for (i, ticket) in tickets.iter().enumerate() {
        assert!(store
            .report(
                &a,
                ticket,
                End::Response,
                fb(0, 0),
                Some(t + (10 + i as u64) * MS)
            )
            .await
            .unwrap());
    }
    assert_eq!(store.status(&a, Some(t + 20 * MS)).await.unwrap().ceiling, 0);
    let Decision::Admitted { ticket, .. } = store.decide(&b, Some(t + 20 * MS)).await.unwrap() else {
        panic!("room for a fifth");
    };
    // Process b's fifth request draws a 429: the server had fewer places
    // than 5. The sharers' 4 before it are what it surely holds for us;
    // of them the reduction is kept, the rest is held back for everyone.
    let at = t + 30 * MS;
    assert!(store
        .report(&b, &ticket, End::Response, fb(S, 0), Some(at))
        .await
        .unwrap());
    let kept = 4 * reduction / 1_000_000;
    let missing = 5 - kept;
    assert!(missing >= 1);
    let state = store.status(&a, Some(at + MS)).await.unwrap();
    assert_eq!((state.ceiling, state.reserved), (missing, 0), "{state:?}");
    // After the pause, and once the window is clear, process a gets only
    // max(5 - missing, 1) places in a window.
    let clear = at + 3 * S;
    let room = 5u64.saturating_sub(missing).max(1);
    for i in 0..room {
        assert!(
            matches!(
                store.decide(&a, Some(clear + i * MS)).await.unwrap(),
                Decision::Admitted { .. }
            ),
            "place {i} of {room}"
        );
    }
    match store.decide(&a, Some(clear + room * MS)).await.unwrap() {
        Decision::Denied {
            wait: Wait::FullInFlight,
            retry_at,
            ..
        } => assert_eq!(
            retry_at,
            clear + mf + S + 1,
            "the first one's maximum flight, then its window"
        ),
        other => panic!("{other:?}"),
    }
    // Held for the hold, then one place fewer per hold.
    assert_eq!(
        store.status(&a, Some(at + hold - 1)).await.unwrap().ceiling,
        missing
    );
    assert_eq!(
        store.status(&a, Some(at + hold)).await.unwrap().ceiling,
        missing - 1
    );
    assert_eq!(
        store.status(&a, Some(at + missing * hold)).await.unwrap().ceiling,
        0
    );
    // A budget whose configuration holds nothing learns nothing.
    let mut none = config;
    none.ceiling_hold = Duration::ZERO;
    let c = Budget::new("ceil0", "ip", "pocket", Group::Order, &none).unwrap();
    let store0 = Store::new(store.conn.clone(), "ceil0");
    let _ = store0.decide(&c, Some(T0)).await.unwrap();
    let Decision::Admitted { ticket, .. } = store0.decide(&c, Some(t)).await.unwrap() else {
        panic!("closed");
    };
    assert!(store0
        .report(&c, &ticket, End::Response, fb(S, 0), Some(t + MS))
        .await
        .unwrap());
    let state = store0.status(&c, Some(t + 2 * MS)).await.unwrap();
    assert_eq!((state.ceiling, state.paused_until_us), (0, t + MS + S));
}
