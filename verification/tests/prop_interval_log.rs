//! The interval log's guarantee: no server window ever holds more than `N`
//! arrivals, for any network delay.
//!
//! Each case has several groups (one or two windows each, a maximum flight
//! time each) and clients wanting to send at arbitrary instants. Every
//! admitted request has its own delay, from zero to seconds and heavy-tailed
//! (stalls, reordering), and ends in one of the documented ways: reported
//! (its arrival anywhere in `[s, r]`, both ends included, and within the
//! maximum flight time), ended without a response (arrival anywhere up to the
//! maximum flight time), never ended at all (likewise), or abandoned before
//! it was sent (no arrival). Waiters retry at the instant a denial names, and
//! after each report when the denial says a report may help.
//!
//! The arrivals of each group are judged by the four server models of each
//! window, half-open and closed: no 429. The same property catches a driver
//! that reports every request at its admission instant, and one that drops
//! requests in flight from the log.
//!
//! `UPBIT_PROPTEST_CASES` overrides the case count (default: 10 000 in
//! release builds, 200 in debug builds).
#![cfg(not(loom))]

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use upbit_limiter_core::interval_log::{IntervalLog, Ticket};
use upbit_limiter_core::{Duration, Instant, ServerLimit};
use upbit_limiter_verification::cases;
use upbit_limiter_verification::models::ModelSet;

/// One group of a case.
#[derive(Clone, Debug)]
struct GroupSpec {
    limits: Vec<ServerLimit>,
    max_flight: Duration,
    /// The calendar models' boundary offset.
    phase: Duration,
}

/// How an admitted request ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// A response is reported `delay` after admission.
    Reported,
    /// The client gives up after `delay` (timeout, transport error); the
    /// request may still reach the server.
    NoResponse,
    /// The process never says anything about it.
    Never,
    /// Never sent: abandoned `delay` after admission.
    Abandoned,
}

/// One client's request.
#[derive(Clone, Debug)]
struct Req {
    group: usize,
    /// How long after the previous client's wish this one wants to send.
    gap: Duration,
    /// The round trip, or the time until the client gives up.
    delay: Duration,
    end: End,
    /// Where in its possible span the request reaches the server, per mille.
    arrival: u16,
}

#[derive(Clone, Debug)]
struct Case {
    groups: Vec<GroupSpec>,
    reqs: Vec<Req>,
}

/// A driver that breaks the log's contract, to show the property sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    /// Every request ends in one of the documented ways.
    Honest,
    /// Reports each request at its admission instant: counting from `s_i`
    /// instead of `r_i`.
    ReportsAtAdmission,
    /// Abandons each request right after admission, though it is sent:
    /// in-flight requests dropped from the count.
    DropsInFlight,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn micros(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn group_spec() -> impl Strategy<Value = GroupSpec> {
    (
        1u32..=5,
        prop_oneof![Just(1_000u64), 50u64..2_000],
        prop::option::weighted(0.4, (1u32..=6, 2u64..=5)),
        prop_oneof![Just(5_000u64), 200u64..4_000],
        0u64..2_000,
    )
        .prop_map(|(n, w, second, flight, phase)| {
            let mut limits = vec![ServerLimit::new(n, ms(w))];
            if let Some((extra, times)) = second {
                limits.push(ServerLimit::new(n + extra, ms(w * times)));
            }
            GroupSpec {
                limits,
                max_flight: ms(flight),
                phase: ms(phase),
            }
        })
}

/// Zero to seconds, heavy-tailed, in microseconds.
fn delay() -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => Just(Duration::ZERO),
        4 => (0u64..20_000).prop_map(micros),
        3 => (0u64..400_000).prop_map(micros),
        1 => (500_000u64..3_000_000).prop_map(micros),
        1 => (3_000_000u64..8_000_000).prop_map(micros),
    ]
}

fn gap() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => Just(Duration::ZERO),
        4 => (0u64..50_000).prop_map(micros),
        2 => (0u64..2_000_000).prop_map(micros),
        1 => (2_000_000u64..10_000_000).prop_map(micros),
    ]
}

fn req() -> impl Strategy<Value = Req> {
    (
        0usize..3,
        gap(),
        delay(),
        prop_oneof![
            6 => Just(End::Reported),
            2 => Just(End::NoResponse),
            1 => Just(End::Never),
            1 => Just(End::Abandoned),
        ],
        prop_oneof![Just(0u16), Just(1_000u16), 0u16..=1_000],
    )
        .prop_map(|(group, gap, delay, end, arrival)| Req {
            group,
            gap,
            delay,
            end,
            arrival,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(group_spec(), 1..=3),
        prop::collection::vec(req(), 1..=60),
    )
        .prop_map(|(groups, mut reqs)| {
            for r in &mut reqs {
                r.group %= groups.len();
            }
            Case { groups, reqs }
        })
}

/// `from + (to - from) * per_mille / 1000`, both ends reachable.
fn between(from: Instant, to: Instant, per_mille: u16) -> Instant {
    let span = u128::from((to - from).as_nanos());
    from + Duration::from_nanos((span * u128::from(per_mille) / 1_000) as u64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Request `i` tries to get admitted (ignored unless the second field is
    /// its latest scheduling: a waiter has one pending attempt).
    Attempt(usize, u64),
    /// Request `i` ends (report, no response, abandon).
    Finish(usize),
}

/// What the simulation produced.
#[derive(Debug)]
struct Outcome {
    /// Per group: the arrival instants at the server.
    arrivals: Vec<Vec<Instant>>,
    /// Requests that never got admitted.
    stuck: Vec<usize>,
}

fn simulate(case: &Case, driver: Driver) -> Result<Outcome, TestCaseError> {
    let mut logs: Vec<IntervalLog> = Vec::new();
    for g in &case.groups {
        match IntervalLog::new(&g.limits, g.max_flight) {
            Ok(log) => logs.push(log),
            Err(e) => return Err(TestCaseError::fail(format!("valid group refused: {e}"))),
        }
    }
    let n = case.reqs.len();
    let mut tickets: Vec<Option<Ticket>> = vec![None; n];
    let mut waiting_for_report: Vec<Vec<usize>> = vec![Vec::new(); case.groups.len()];
    let mut arrivals: Vec<Vec<Instant>> = vec![Vec::new(); case.groups.len()];
    let mut events = BinaryHeap::new();
    let mut seq = 0u64;
    let mut epoch: Vec<u64> = vec![0; n];
    let mut push = |events: &mut BinaryHeap<_>, at: Instant, e: Event| {
        seq += 1;
        events.push(Reverse((at, seq, e)));
    };
    let mut wish = Instant::from_nanos(1_000_000_000);
    for (i, r) in case.reqs.iter().enumerate() {
        wish += r.gap;
        push(&mut events, wish, Event::Attempt(i, 0));
    }
    let mut steps = 0;
    while let Some(Reverse((t, _, event))) = events.pop() {
        steps += 1;
        prop_assert!(steps < 200_000, "the simulation does not settle");
        match event {
            Event::Attempt(i, e) => {
                if tickets[i].is_some() || e != epoch[i] {
                    continue;
                }
                let r = &case.reqs[i];
                let g = &case.groups[r.group];
                let log = &mut logs[r.group];
                match log.try_admit(t) {
                    Ok(ticket) => {
                        let s = ticket.admitted_at();
                        prop_assert_eq!(s, t, "simulated time only moves forward");
                        tickets[i] = Some(ticket);
                        let bound = s + g.max_flight;
                        let arrival = match r.end {
                            End::Reported => Some(between(s, (s + r.delay).min(bound), r.arrival)),
                            End::NoResponse | End::Never => Some(between(s, bound, r.arrival)),
                            End::Abandoned => None,
                        };
                        if let Some(a) = arrival {
                            arrivals[r.group].push(a);
                        }
                        match driver {
                            Driver::Honest => {}
                            Driver::ReportsAtAdmission => {
                                prop_assert!(log.report(ticket, s));
                                continue;
                            }
                            Driver::DropsInFlight => {
                                prop_assert!(log.abandon(ticket, s));
                                continue;
                            }
                        }
                        if r.end != End::Never {
                            push(&mut events, s + r.delay, Event::Finish(i));
                        }
                    }
                    Err(denial) => {
                        prop_assert!(denial.retry_at() > t, "{denial:?} at {t}");
                        epoch[i] += 1;
                        push(&mut events, denial.retry_at(), Event::Attempt(i, epoch[i]));
                        if denial.waits_for_report() && !waiting_for_report[r.group].contains(&i) {
                            waiting_for_report[r.group].push(i);
                        }
                    }
                }
            }
            Event::Finish(i) => {
                let r = &case.reqs[i];
                let Some(ticket) = tickets[i] else {
                    return Err(TestCaseError::fail("finished before admission"));
                };
                let log = &mut logs[r.group];
                // `false` only for a ticket whose slot was reused after its
                // maximum flight time and window had passed.
                let _ = match r.end {
                    End::Reported => log.report(ticket, t),
                    End::NoResponse => log.no_response(ticket, t),
                    End::Abandoned => log.abandon(ticket, t),
                    End::Never => false,
                };
                if r.end == End::Reported {
                    for w in waiting_for_report[r.group].drain(..) {
                        if tickets[w].is_none() {
                            epoch[w] += 1;
                            push(&mut events, t, Event::Attempt(w, epoch[w]));
                        }
                    }
                }
            }
        }
    }
    let stuck = (0..n).filter(|&i| tickets[i].is_none()).collect();
    for a in &mut arrivals {
        a.sort();
    }
    Ok(Outcome { arrivals, stuck })
}

/// The property: every request is admitted in the end, and no server model
/// of any window, half-open or closed, answers 429.
fn zero_429(case: &Case, driver: Driver) -> Result<(), TestCaseError> {
    let out = simulate(case, driver)?;
    prop_assert!(out.stuck.is_empty(), "never admitted: {:?}", out.stuck);
    for (g, arrivals) in case.groups.iter().zip(&out.arrivals) {
        for &limit in &g.limits {
            for mut models in [ModelSet::new(limit, g.phase), ModelSet::closed(limit, g.phase)] {
                for &a in arrivals {
                    models.arrive(a);
                }
                prop_assert_eq!(
                    models.total_rejections(),
                    0,
                    "429 from {:?} for {:?}: {:?}",
                    models.rejections(),
                    limit,
                    arrivals
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: cases(10_000, 200),
        max_shrink_iters: 2_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/prop_interval_log.txt"
        ))),
        ..Config::default()
    })]

    /// Zero 429 under every server model, half-open and closed, for any
    /// delays, as long as every request ends in a documented way.
    #[test]
    fn interval_log_draws_no_429_for_any_delay(case in case()) {
        zero_429(&case, Driver::Honest)?;
    }
}

/// The same property with a driver that breaks the contract must fail.
fn assert_caught(driver: Driver) {
    let config = Config {
        cases: 2_000,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    match runner.run(&case(), |case| zero_429(&case, driver)) {
        Err(TestError::Fail(reason, minimal)) => {
            assert!(reason.message().contains("429"), "{reason}");
            println!(
                "{driver:?} caught as expected: {reason}\nminimal case: {} requests, groups {:?}",
                minimal.reqs.len(),
                minimal.groups
            );
        }
        other => panic!("{driver:?} went unnoticed: {other:?}"),
    }
}

#[test]
fn counting_from_admission_instead_of_report_is_caught() {
    assert_caught(Driver::ReportsAtAdmission);
}

#[test]
fn dropping_in_flight_requests_from_the_count_is_caught() {
    assert_caught(Driver::DropsInFlight);
}

/// One per second, alternately slow (500 ms) and instant: each request is
/// admitted only after the previous report plus `W` plus one nanosecond, so
/// arrivals are more than `W` apart; counted from admission instead, a slow
/// request and the next instant one land within one window.
#[test]
fn a_closed_window_server_sees_at_most_n() {
    let case = Case {
        groups: vec![GroupSpec {
            limits: vec![ServerLimit::per_second(1)],
            max_flight: ms(5_000),
            phase: Duration::ZERO,
        }],
        reqs: (0..4)
            .map(|i| Req {
                group: 0,
                gap: Duration::ZERO,
                delay: ms(500 * ((i + 1) % 2)),
                end: End::Reported,
                arrival: 1_000,
            })
            .collect(),
    };
    let out = simulate(&case, Driver::Honest).expect("simulates");
    let a = &out.arrivals[0];
    assert_eq!(a.len(), 4);
    for pair in a.windows(2) {
        assert!(pair[1] - pair[0] > ms(1_000), "{a:?}");
    }
    assert!(zero_429(&case, Driver::Honest).is_ok());
    assert!(zero_429(&case, Driver::ReportsAtAdmission).is_err());
}
