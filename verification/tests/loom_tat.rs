//! loom models of the atomic TAT cell (`gcra::TatCell`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p upbit-limiter-verification
//! --release --test loom_tat`. Every model checks linearizability against a
//! plain sequential GCRA written here: the results of the concurrent
//! operations, and the final TAT, must be those of *some* sequential order of
//! the same operations that respects each thread's program order. That covers
//! "no lost update" (a lost CAS would leave a final TAT no order produces),
//! "admissions never exceed a sequential execution at the same instants", and
//! each thread sees the TAT only move forward.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use upbit_limiter_core::gcra::{Params, TatCell};
use upbit_limiter_core::{Duration, Instant};

/// One operation on the cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Claim(u64),
    Push(u64),
    /// `advance_with(|t| t + extra)`.
    Advance(u64),
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Admitted(u64),
    Denied(u64),
    Tat(u64),
}

const T: u64 = 100;
const MS: u64 = 1_000_000;

fn params(burst: u64) -> Params {
    Params::new(Duration::from_millis(T), Duration::from_millis(T * (burst - 1)))
}

/// The sequential GCRA, in milliseconds.
fn sequential(tat: &mut u64, op: Op, burst: u64) -> Out {
    let tau = T * (burst - 1);
    match op {
        Op::Claim(now) => {
            let earliest = tat.saturating_sub(tau);
            if now < earliest {
                Out::Denied(earliest)
            } else {
                *tat = (*tat).max(now) + T;
                Out::Admitted(*tat)
            }
        }
        Op::Push(to) => {
            *tat = (*tat).max(to);
            Out::Tat(*tat)
        }
        Op::Advance(extra) => {
            *tat += extra;
            Out::Tat(*tat)
        }
    }
}

fn run(cell: &TatCell, op: Op, burst: u64) -> Out {
    let ms = |n: u64| Instant::from_nanos(n * MS);
    let back = |i: Instant| i.as_nanos() / MS;
    match op {
        Op::Claim(now) => match cell.try_claim(ms(now), params(burst)) {
            Ok(tat) => Out::Admitted(back(tat)),
            Err(earliest) => Out::Denied(back(earliest)),
        },
        Op::Push(to) => Out::Tat(back(cell.push_to(ms(to)))),
        Op::Advance(extra) => Out::Tat(back(cell.advance_with(|t| t + Duration::from_millis(extra)))),
    }
}

/// Every `(results per thread, final TAT)` some sequential interleaving of
/// `programs` produces, starting from `tat0`.
fn sequential_outcomes(programs: &[Vec<Op>], tat0: u64, burst: u64) -> Vec<(Vec<Vec<Out>>, u64)> {
    fn go(
        programs: &[Vec<Op>],
        pos: &mut Vec<usize>,
        results: &mut Vec<Vec<Out>>,
        tat: u64,
        burst: u64,
        out: &mut Vec<(Vec<Vec<Out>>, u64)>,
    ) {
        let mut any = false;
        for t in 0..programs.len() {
            if pos[t] < programs[t].len() {
                any = true;
                let mut next = tat;
                let r = sequential(&mut next, programs[t][pos[t]], burst);
                pos[t] += 1;
                results[t].push(r);
                go(programs, pos, results, next, burst, out);
                results[t].pop();
                pos[t] -= 1;
            }
        }
        if !any {
            out.push((results.clone(), tat));
        }
    }
    let mut out = Vec::new();
    go(
        programs,
        &mut vec![0; programs.len()],
        &mut vec![Vec::new(); programs.len()],
        tat0,
        burst,
        &mut out,
    );
    out
}

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Runs `programs` (one thread each) on a cell at `tat0` under loom and checks
/// linearizability and per-thread monotonicity in every execution.
fn check(programs: Vec<Vec<Op>>, tat0: u64, burst: u64) {
    let allowed = sequential_outcomes(&programs, tat0, burst);
    let programs = std::sync::Arc::new(programs);
    let allowed = std::sync::Arc::new(allowed);
    model(move || {
        let cell = Arc::new(TatCell::new(Instant::from_nanos(tat0 * MS)));
        let handles: Vec<_> = (0..programs.len())
            .map(|t| {
                let cell = Arc::clone(&cell);
                let programs = std::sync::Arc::clone(&programs);
                thread::spawn(move || {
                    let mut seen = 0;
                    let mut outs = Vec::new();
                    for &op in &programs[t] {
                        let before = cell.load().as_nanos() / MS;
                        assert!(before >= seen, "TAT moved backwards: {seen} then {before}");
                        let out = run(&cell, op, burst);
                        let after = cell.load().as_nanos() / MS;
                        assert!(after >= before, "TAT moved backwards: {before} then {after}");
                        seen = after;
                        outs.push(out);
                    }
                    outs
                })
            })
            .collect();
        let results: Vec<Vec<Out>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let tat = cell.load().as_nanos() / MS;
        let admitted = results
            .iter()
            .flatten()
            .filter(|o| matches!(o, Out::Admitted(_)))
            .count();
        let most = allowed
            .iter()
            .map(|(r, _)| {
                r.iter()
                    .flatten()
                    .filter(|o| matches!(o, Out::Admitted(_)))
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(
            admitted <= most,
            "admitted {admitted}, a sequential execution admits at most {most}"
        );
        assert!(
            allowed.iter().any(|(r, t)| *r == results && *t == tat),
            "not linearizable: results {results:?}, final TAT {tat}; sequential outcomes: {allowed:?}"
        );
    });
}

#[test]
fn two_threads_claim_at_the_same_instant_burst_one() {
    // Exactly one of the two is admitted; the final TAT counts one admission.
    check(vec![vec![Op::Claim(1_000)], vec![Op::Claim(1_000)]], 0, 1);
}

#[test]
fn two_threads_claim_twice_each_burst_three() {
    check(
        vec![
            vec![Op::Claim(1_000), Op::Claim(1_000)],
            vec![Op::Claim(1_000), Op::Claim(1_050)],
        ],
        0,
        3,
    );
}

#[test]
fn three_threads_claim_at_different_instants() {
    check(
        vec![
            vec![Op::Claim(1_000)],
            vec![Op::Claim(1_050)],
            vec![Op::Claim(1_100)],
        ],
        1_000,
        2,
    );
}

#[test]
fn claim_races_a_429_penalty() {
    // A 429 pushes the TAT to 2 500 while two claims are in flight.
    check(
        vec![vec![Op::Claim(1_000), Op::Claim(1_000)], vec![Op::Push(2_500)]],
        900,
        2,
    );
}

#[test]
fn claim_races_a_header_floor_below_the_tat() {
    // A push that is already behind the TAT must change nothing.
    check(vec![vec![Op::Claim(1_000)], vec![Op::Push(1_050)]], 1_000, 2);
}

#[test]
fn claim_races_a_quota_change_respacing() {
    // `set_config` to a slower quota re-spaces the TAT with `advance_with`.
    check(
        vec![vec![Op::Claim(1_000), Op::Claim(1_000)], vec![Op::Advance(300)]],
        1_000,
        3,
    );
}
