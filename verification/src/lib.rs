//! Verification of `upbit-limiter-core`: independent reference server models,
//! reference state machines, a discrete-event driver and a virtual-time
//! executor, used by the property tests (`tests/prop_*.rs`), the loom models
//! (`tests/loom_*.rs`, under `--cfg loom`) and the fuzz targets (`fuzz/`).
//!
//! The models know nothing of the limiter: they are written from the
//! definitions of the server windows and from the documented behaviour of the
//! state machines. `run.sh` runs everything the way CI does.

#![warn(missing_docs)]

pub mod models;
pub mod reference;
pub mod runtime;
pub mod sim;

/// The number of cases a property test runs: `UPBIT_PROPTEST_CASES` when set
/// (for long offline runs), else `release` in optimised builds and `debug` in
/// debug builds.
pub fn cases(release: u32, debug: u32) -> u32 {
    if let Some(n) = std::env::var("UPBIT_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        return n.max(1);
    }
    if cfg!(debug_assertions) {
        debug
    } else {
        release
    }
}
