//! loom models of the interval log under its caller's lock.
//!
//! The log is plain `&mut` data; what is concurrent is the caller pattern:
//! threads take the group lock (here loom's mutex, which `sync::Lock` is
//! under `cfg(loom)`), admit or end a request, and release it, with their
//! own readings of the clock, which may be older than another thread's.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p upbit-limiter-verification
//! --release --test loom_interval_log`. Every model checks, in every
//! execution:
//!
//! - linearizability against the log run sequentially: the results of the
//!   concurrent calls are those of some interleaving of the threads' programs;
//! - the rule over the whole history, in lock order: when each request was
//!   admitted, fewer than `N` requests admitted before it could still arrive
//!   at or after its admission instant minus `W`, using what is known at the
//!   end (a report only ever shortens an interval);
//! - no lost wake-up: a waiter told to wait for a report sleeps on a condition
//!   variable and is admitted after the report.
#![cfg(loom)]

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use upbit_limiter_core::interval_log::{Denial, IntervalLog, Ticket};
use upbit_limiter_core::{Duration, Instant, ServerLimit};

const MS: u64 = 1_000_000;
const MAX_FLIGHT_MS: u64 = 1_000;

fn ms(n: u64) -> Instant {
    Instant::from_nanos(n * MS)
}

/// One call a thread makes, at an instant in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Admit(u64),
    /// Report the last ticket this thread was given.
    Report(u64),
    /// The last ticket ended without a response.
    NoResponse(u64),
    /// The last ticket was never sent.
    Abandon(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Admitted(Instant),
    Denied(Denial),
    Ended(bool),
}

/// The log, and the history in lock order: (admitted at, ticket) per admission.
struct Shared {
    log: IntervalLog,
    admissions: Vec<(Instant, Ticket)>,
    /// Final end per admission: `None` while in flight or unanswered,
    /// `Some(r)` once reported, and abandoned ones are removed from the count.
    ends: Vec<(Ticket, Option<Instant>, bool)>,
}

fn new_log(limits: &[ServerLimit]) -> IntervalLog {
    IntervalLog::new(limits, Duration::from_millis(MAX_FLIGHT_MS)).expect("valid log")
}

/// Runs `op` on `log` with the thread's `last` ticket; records the history.
fn apply(shared: &mut Shared, op: Op, last: &mut Option<Ticket>) -> Out {
    match op {
        Op::Admit(t) => match shared.log.try_admit(ms(t)) {
            Ok(ticket) => {
                *last = Some(ticket);
                shared.admissions.push((ticket.admitted_at(), ticket));
                shared.ends.push((ticket, None, false));
                Out::Admitted(ticket.admitted_at())
            }
            Err(d) => Out::Denied(d),
        },
        Op::Report(t) | Op::NoResponse(t) | Op::Abandon(t) => {
            let Some(ticket) = *last else {
                return Out::Ended(false);
            };
            let done = match op {
                Op::Report(_) => shared.log.report(ticket, ms(t)),
                Op::NoResponse(_) => shared.log.no_response(ticket, ms(t)),
                _ => shared.log.abandon(ticket, ms(t)),
            };
            if done {
                if let Some(entry) = shared.ends.iter_mut().find(|(k, _, _)| *k == ticket) {
                    match op {
                        Op::Report(_) => {
                            let bound = ticket.admitted_at() + Duration::from_millis(MAX_FLIGHT_MS);
                            entry.1 = Some(ms(t).clamp(ticket.admitted_at(), bound));
                        }
                        Op::Abandon(_) => entry.2 = true,
                        _ => {}
                    }
                }
            }
            Out::Ended(done)
        }
    }
}

/// Every `results per thread` some sequential interleaving produces.
fn sequential_outcomes(programs: &[Vec<Op>], limits: &[ServerLimit]) -> Vec<Vec<Vec<Out>>> {
    fn go(
        programs: &[Vec<Op>],
        pos: &mut Vec<usize>,
        lasts: &mut Vec<Option<Ticket>>,
        results: &mut Vec<Vec<Out>>,
        shared: &Shared,
        out: &mut Vec<Vec<Vec<Out>>>,
    ) {
        let mut any = false;
        for t in 0..programs.len() {
            if pos[t] < programs[t].len() {
                any = true;
                let mut next = Shared {
                    log: shared.log.clone(),
                    admissions: shared.admissions.clone(),
                    ends: shared.ends.clone(),
                };
                let saved = lasts[t];
                let r = apply(&mut next, programs[t][pos[t]], &mut lasts[t]);
                pos[t] += 1;
                results[t].push(r);
                go(programs, pos, lasts, results, &next, out);
                results[t].pop();
                pos[t] -= 1;
                lasts[t] = saved;
            }
        }
        if !any {
            out.push(results.clone());
        }
    }
    let shared = Shared {
        log: new_log(limits),
        admissions: Vec::new(),
        ends: Vec::new(),
    };
    let mut out = Vec::new();
    go(
        programs,
        &mut vec![0; programs.len()],
        &mut vec![None; programs.len()],
        &mut vec![Vec::new(); programs.len()],
        &shared,
        &mut out,
    );
    out
}

/// The rule over the whole history, with the final knowledge of each end.
fn assert_rule_held(shared: &Shared, limits: &[ServerLimit]) {
    let max_flight = Duration::from_millis(MAX_FLIGHT_MS);
    for (j, (s_j, _)) in shared.admissions.iter().enumerate() {
        for limit in limits {
            let horizon = s_j.saturating_sub(limit.window);
            let counted = shared.ends[..j]
                .iter()
                .filter(|(ticket, end, abandoned)| {
                    let e = end.unwrap_or(ticket.admitted_at() + max_flight);
                    !abandoned && e >= horizon
                })
                .count();
            assert!(
                counted < limit.max_requests as usize,
                "admission {j} at {s_j} had {counted} requests that could share a window {limit:?}"
            );
        }
    }
}

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

fn check(programs: Vec<Vec<Op>>, limits: Vec<ServerLimit>) {
    let allowed = std::sync::Arc::new(sequential_outcomes(&programs, &limits));
    let programs = std::sync::Arc::new(programs);
    let limits = std::sync::Arc::new(limits);
    model(move || {
        let shared = Arc::new(Mutex::new(Shared {
            log: new_log(&limits),
            admissions: Vec::new(),
            ends: Vec::new(),
        }));
        let handles: Vec<_> = (0..programs.len())
            .map(|t| {
                let shared = Arc::clone(&shared);
                let programs = std::sync::Arc::clone(&programs);
                thread::spawn(move || {
                    let mut last = None;
                    let mut outs = Vec::new();
                    for &op in &programs[t] {
                        let mut guard = shared.lock().unwrap();
                        outs.push(apply(&mut guard, op, &mut last));
                    }
                    outs
                })
            })
            .collect();
        let results: Vec<Vec<Out>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            allowed.contains(&results),
            "not linearizable: {results:?}; sequential outcomes: {allowed:?}"
        );
        assert_rule_held(&shared.lock().unwrap(), &limits);
    });
}

#[test]
fn two_threads_admit_into_one_slot() {
    // N = 1: exactly one of the two is admitted.
    check(
        vec![vec![Op::Admit(1_000)], vec![Op::Admit(1_000)]],
        vec![ServerLimit::new(1, Duration::from_millis(100))],
    );
}

#[test]
fn admission_races_a_report_with_clocks_read_out_of_order() {
    // The second thread's clock reading is older than the first's report.
    check(
        vec![
            vec![Op::Admit(1_000), Op::Report(1_050), Op::Admit(1_200)],
            vec![Op::Admit(1_040), Op::Admit(1_151)],
        ],
        vec![ServerLimit::new(1, Duration::from_millis(100))],
    );
}

#[test]
fn every_way_to_end_races_admissions() {
    check(
        vec![
            vec![Op::Admit(1_000), Op::NoResponse(1_010), Op::Admit(1_020)],
            vec![Op::Admit(1_000), Op::Abandon(1_005), Op::Admit(1_010)],
            vec![Op::Admit(1_001)],
        ],
        vec![ServerLimit::new(2, Duration::from_millis(100))],
    );
}

#[test]
fn two_windows_under_concurrent_admission() {
    check(
        vec![
            vec![Op::Admit(1_000), Op::Report(1_001), Op::Admit(1_050)],
            vec![Op::Admit(1_000), Op::Report(1_002), Op::Admit(1_102)],
        ],
        vec![
            ServerLimit::new(1, Duration::from_millis(50)),
            ServerLimit::new(2, Duration::from_millis(200)),
        ],
    );
}

/// A waiter denied by a request in flight sleeps until a report and is then
/// admitted: the report and the wait are ordered by the lock, so the wake-up
/// cannot be lost.
#[test]
fn a_waiter_blocked_by_a_request_in_flight_wakes_on_its_report() {
    model(|| {
        let limit = ServerLimit::new(1, Duration::from_millis(100));
        let mut log = new_log(&[limit]);
        let first = log.try_admit(ms(1_000)).expect("an empty log admits");
        // The log and a count of reports, under one lock.
        let shared = Arc::new((Mutex::new((log, 0u32)), Condvar::new()));
        let reporter = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (lock, reported) = &*shared;
                let mut guard = lock.lock().unwrap();
                assert!(guard.0.report(first, ms(1_010)));
                guard.1 += 1;
                drop(guard);
                reported.notify_all();
            })
        };
        let (lock, reported) = &*shared;
        let mut guard = lock.lock().unwrap();
        let mut now = ms(1_001);
        let mut seen = 0;
        let mut rounds = 0;
        let admitted = loop {
            rounds += 1;
            assert!(rounds < 10, "the waiter does not progress");
            match guard.0.try_admit(now) {
                Ok(ticket) => break ticket,
                Err(Denial::UntilReport(latest)) => {
                    assert_eq!(latest, ms(1_000 + MAX_FLIGHT_MS + 100) + Duration::from_nanos(1));
                    while guard.1 == seen {
                        guard = reported.wait(guard).unwrap();
                    }
                    seen = guard.1;
                }
                Err(Denial::Until(at)) => now = at,
            }
        };
        drop(guard);
        reporter.join().unwrap();
        // Admitted one window after the report, not after the flight bound.
        assert_eq!(admitted.admitted_at(), ms(1_110) + Duration::from_nanos(1));
    });
}
