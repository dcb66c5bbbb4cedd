//! The one place atomics come from, so that `cfg(loom)` can swap in loom's.
//!
//! Everything concurrent in the core goes through these names: the atomic TAT
//! cell, the packed parameter word and the counters.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use portable_atomic::AtomicU64;

pub(crate) use core::sync::atomic::Ordering;
