//! The loom models' power: a TAT cell whose update is split into a load and a
//! store (instead of one compare-and-swap) is caught.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p upbit-limiter-verification
//! --release --test loom_broken -- --nocapture` to see loom's finding.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

const T: u64 = 100;

/// The broken cell: read the TAT, decide, write the new TAT back.
struct SplitCell {
    tat: AtomicU64,
}

impl SplitCell {
    /// GCRA with burst 1: admit at `now` if `now >= tat`.
    fn try_claim(&self, now: u64) -> bool {
        let tat = self.tat.load(Ordering::Acquire);
        if now < tat {
            return false;
        }
        self.tat.store(tat.max(now) + T, Ordering::Release);
        true
    }
}

/// The same invariants as `loom_tat`: two claims at one instant with burst 1
/// admit one, and the final TAT counts every admission.
fn two_claims_at_once() {
    let cell = Arc::new(SplitCell {
        tat: AtomicU64::new(0),
    });
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let cell = Arc::clone(&cell);
            thread::spawn(move || cell.try_claim(1_000))
        })
        .collect();
    let admitted = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&a| a)
        .count();
    let tat = cell.tat.load(Ordering::Acquire);
    assert!(
        admitted <= 1,
        "admitted {admitted} at one instant; a sequential execution admits 1"
    );
    assert_eq!(tat, 1_000 + T * admitted as u64, "lost update");
}

#[test]
fn loom_catches_a_tat_update_split_into_load_and_store() {
    let caught = std::panic::catch_unwind(|| loom::model(two_claims_at_once));
    let message = match caught {
        Ok(()) => panic!("loom did not find the lost update"),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    };
    println!("loom found, as expected: {message}");
    assert!(message.contains("admitted 2"), "{message}");
}
