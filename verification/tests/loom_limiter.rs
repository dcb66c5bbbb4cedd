//! loom models of `GroupLimiter`: concurrent `try_acquire` on the lock-free
//! fast path, racing each other, a 429 (ratio cut and TAT penalty), and a
//! run-time quota change.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p upbit-limiter-verification
//! --release --test loom_limiter`. Each model computes, inside the model and
//! on fresh limiters, what every sequential order of the same calls produces,
//! and checks that the concurrent execution matches one of them: results,
//! final TAT and admission count.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use upbit_limiter_core::limiter::{GroupConfig, GroupLimiter};
use upbit_limiter_core::{Admission, Denied, Duration, Group, Instant, Preset, Response};

type Acquired = Result<Admission, Denied>;

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    // A limiter is a few kilobytes (its ring and interval log) and the models
    // build several on the stack: run each in a thread with a stack to match
    // (loom's own are small).
    let f = std::sync::Arc::new(f);
    builder.check(move || {
        let f = std::sync::Arc::clone(&f);
        thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(move || f())
            .expect("spawn")
            .join()
            .expect("model");
    });
}

fn config(burst: u32) -> GroupConfig {
    let mut c = GroupConfig::preset(Preset::Korea, Group::Order);
    c.burst = burst;
    c
}

fn limiter(burst: u32) -> GroupLimiter {
    GroupLimiter::new(Group::Order, config(burst)).expect("preset configuration")
}

const T0: Instant = Instant::from_nanos(5_000_000_000);

fn admitted(results: &[Acquired]) -> usize {
    results.iter().filter(|r| r.is_ok()).count()
}

/// `threads` threads each call `try_acquire(T0)` once on a limiter with
/// `burst`; the concurrent answers must be those of a sequential execution.
fn same_instant(threads: usize, burst: u32) {
    model(move || {
        // What a sequential execution gives.
        let seq = limiter(burst);
        let mut expected: Vec<Acquired> = (0..threads).map(|_| seq.try_acquire(T0)).collect();
        let expected_tat = seq.status(T0).tat;

        let l = Arc::new(limiter(burst));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let l = Arc::clone(&l);
                thread::spawn(move || l.try_acquire(T0))
            })
            .collect();
        let mut got: Vec<Acquired> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            admitted(&got),
            admitted(&expected),
            "{got:?}, sequentially {expected:?}"
        );
        assert!(admitted(&got) >= 1);
        // Same multiset of answers as the sequential execution (admission
        // numbers are handed out in some order; denials name the same instant).
        let key = |r: &Acquired| match r {
            Ok(a) => (0, a.seq, a.at.as_nanos()),
            Err(d) => (1, 0, d.retry_at().as_nanos()),
        };
        got.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(got, expected);
        let status = l.status(T0);
        assert_eq!(status.tat, expected_tat, "lost update");
        assert_eq!(status.counters.admitted, admitted(&expected) as u64);
    });
}

#[test]
fn two_threads_acquire_at_the_same_instant() {
    same_instant(2, 1);
}

#[test]
fn three_threads_acquire_with_burst_two() {
    same_instant(3, 2);
}

/// Thread A acquires at `at` while thread B reports a 429 for an earlier
/// admission (the ratio drops and the TAT is pushed a window ahead).
///
/// Invariants: no lost update (the TAT is never below a sequential
/// order's), and no more admissions than a sequential order.
#[test]
fn acquire_races_a_429() {
    model(|| {
        let at = T0 + Duration::from_millis(100);
        let run_seq = |a_first: bool| {
            let l = limiter(1);
            let first = l.try_acquire(T0).expect("idle limiter admits");
            let r = if a_first {
                let r = l.try_acquire(at);
                l.on_response(&first, Response::status(429), at);
                r
            } else {
                l.on_response(&first, Response::status(429), at);
                l.try_acquire(at)
            };
            let s = l.status(at);
            (r, s.tat, s.ratio)
        };
        let orders = [run_seq(true), run_seq(false)];

        let l = Arc::new(limiter(1));
        let first = l.try_acquire(T0).expect("idle limiter admits");
        let la = Arc::clone(&l);
        let a = thread::spawn(move || la.try_acquire(at));
        let lb = Arc::clone(&l);
        let b = thread::spawn(move || {
            lb.on_response(&first, Response::status(429), at);
        });
        let r = a.join().unwrap();
        b.join().unwrap();
        let s = l.status(at);
        // The decision and the ratio are those of a sequential order; the TAT
        // is at least that order's (a claim that saw the slower interval
        // published after its CAS spaces itself once more: stricter, never
        // looser).
        assert!(
            orders
                .iter()
                .any(|(sr, stat, sratio)| *sr == r && *sratio == s.ratio && s.tat >= *stat),
            "not a sequential outcome: {:?}; sequential: {orders:?}",
            (r, s.tat, s.ratio)
        );
        // The penalty is never lost: nothing before a window plus margin has passed.
        assert!(s.tat >= at + Duration::from_millis(1_150));
    });
}

/// Thread A acquires twice at `at` while thread B switches the group to a
/// slower quota (burst 3: a longer interval, the TAT re-spaced).
///
/// A claim that read the old parameters may commit its CAS while
/// `set_config` re-spaces the TAT; such a claim sees the change when it
/// re-reads the parameters and withdraws (its slot stays taken, its sequence
/// number is spent) and decides again under the lock. That leaves a later
/// TAT than any sequential order (stricter, never looser), so the invariant
/// is: the admissions happen at the instants of some sequential order, and
/// the TAT is at least that order's.
#[test]
fn acquire_races_a_quota_change() {
    model(|| {
        let at = T0;
        let new = config(3);
        // B's call can fall before, between or after A's two calls.
        let run_seq = |b_pos: usize| {
            let l = limiter(1);
            let mut rs = Vec::new();
            for i in 0..=2 {
                if i == b_pos {
                    l.set_config(new, at).expect("valid");
                }
                if i < 2 {
                    rs.push(l.try_acquire(at));
                }
            }
            (rs, l.status(at).tat)
        };
        let orders: Vec<(Vec<Acquired>, Instant)> = (0..=2).map(run_seq).collect();

        let l = Arc::new(limiter(1));
        let la = Arc::clone(&l);
        let a = thread::spawn(move || vec![la.try_acquire(at), la.try_acquire(at)]);
        let lb = Arc::clone(&l);
        let b = thread::spawn(move || lb.set_config(new, at).expect("valid"));
        let rs = a.join().unwrap();
        b.join().unwrap();
        let tat = l.status(at).tat;
        // A denial that read the old parameters before the switch may name a
        // later retry instant than any sequential order: stricter, not looser.
        let no_looser = |seq: &Acquired, got: &Acquired| match (seq, got) {
            (Ok(a), Ok(b)) => (a.group, a.at, a.probe) == (b.group, b.at, b.probe),
            (Err(a), Err(b)) => b.retry_at() >= a.retry_at(),
            _ => false,
        };
        assert!(
            orders.iter().any(|(seq_rs, seq_tat)| {
                seq_rs.len() == rs.len()
                    && seq_rs.iter().zip(&rs).all(|(a, b)| no_looser(a, b))
                    && tat >= *seq_tat
            }),
            "not a sequential outcome: {rs:?} with TAT {tat:?}; sequential: {orders:?}"
        );
    });
}

/// Admissions of `l` from `from` on, greedily, until `until` (sequential,
/// after the model's threads have joined): what the limiter would let
/// through next.
fn drain(l: &GroupLimiter, from: Instant, until: Instant) -> Vec<Instant> {
    let mut out = Vec::new();
    let mut now = from;
    while now < until {
        match l.try_acquire(now) {
            Ok(a) => out.push(a.at),
            Err(d) => now = d.retry_at().max(now + Duration::from_nanos(1)),
        }
    }
    out
}

/// The most admissions in any half-open window of length `w`.
fn most_in_window(times: &[Instant], w: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| sorted[i..].iter().take_while(|&&t| t < sorted[i] + w).count())
        .max()
        .unwrap_or(0)
}

/// The order group (12 per second, 150 ms margin) with its last window
/// full, switched from burst 1 to burst 3 while another thread claims.
///
/// Whatever the interleaving, no window of 1.15 s (the server's second plus
/// the margin) holds more than 12 admissions: the ones before the switch,
/// the racing claims, and everything the limiter admits afterwards.
#[test]
fn a_quota_change_racing_claims_from_a_full_window_never_exceeds_the_limit() {
    model(|| {
        let interval = Duration::from_nanos(1_150_000_000u64.div_ceil(12));
        let l = Arc::new(limiter(1));
        // Fill the last window: 12 admissions, one interval apart.
        let mut admitted = Vec::new();
        let mut now = T0;
        for _ in 0..12 {
            let a = l.try_acquire(now).expect("spaced at the interval");
            admitted.push(a.at);
            now = now + interval + Duration::from_micros(1);
        }
        let at = now;
        let la = Arc::clone(&l);
        let a = thread::spawn(move || vec![la.try_acquire(at), la.try_acquire(at)]);
        let lb = Arc::clone(&l);
        let b = thread::spawn(move || lb.set_config(config(3), at).expect("valid"));
        let raced = a.join().unwrap();
        b.join().unwrap();
        admitted.extend(raced.iter().filter_map(|r| r.as_ref().ok().map(|a| a.at)));
        admitted.extend(drain(&l, at, at + Duration::from_millis(2_400)));
        let most = most_in_window(&admitted, Duration::from_millis(1_150));
        assert!(most <= 12, "{most} admissions in one 1.15 s window: {raced:?}");
    });
}
