//! The one place atomics and the group lock come from, so that `cfg(loom)`
//! can swap in loom's.
//!
//! Everything concurrent in the core goes through these names: the atomic TAT
//! cell, the packed parameter word, the counters, and [`Lock`], the lock of a
//! group's control block.
//!
//! # Which lock
//!
//! - With the `std` feature: `std::sync::Mutex`. A thread that finds it held
//!   parks instead of spinning, so a holder preempted by the OS does not make
//!   every other thread burn its time slice (a spin lock did, and collapsed
//!   throughput under contention).
//! - Without `std` (embassy, bare metal): a [`critical_section::Mutex`]. The
//!   section masks interrupts (or takes the platform's cross-core lock) for
//!   the few hundred nanoseconds a decision takes, so executors running at
//!   different interrupt priorities can share one limiter: a higher-priority
//!   executor cannot preempt a holder and then spin on the lock it holds,
//!   which with a spin lock deadlocks a single core. The application links a
//!   `critical-section` implementation, as every embassy HAL provides.
//! - Under `cfg(loom)`: loom's mutex, so the models explore the lock too.
//!
//! The lock is only ever taken through [`Lock::with`]: nothing can hold it
//! across a call that may re-enter the limiter (a waker is woken after the
//! closure returns, never inside it).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(loom))]
pub(crate) use portable_atomic::{fence, AtomicU64};

pub(crate) use core::sync::atomic::Ordering;

/// The lock of one group's control block.
pub(crate) struct Lock<T> {
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
    #[cfg(all(not(loom), feature = "std"))]
    inner: std::sync::Mutex<T>,
    #[cfg(all(not(loom), not(feature = "std")))]
    inner: critical_section::Mutex<core::cell::RefCell<T>>,
}

impl<T> Lock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
            #[cfg(all(not(loom), feature = "std"))]
            inner: std::sync::Mutex::new(value),
            #[cfg(all(not(loom), not(feature = "std")))]
            inner: critical_section::Mutex::new(core::cell::RefCell::new(value)),
        }
    }

    /// Runs `f` with the lock held.
    ///
    /// Nothing in the core panics while holding it; should a caller's panic
    /// poison the std mutex anyway, the state is still consistent (every
    /// update under the lock is a plain assignment), so the poison is ignored.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        #[cfg(loom)]
        {
            f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
        }
        #[cfg(all(not(loom), feature = "std"))]
        {
            f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
        }
        #[cfg(all(not(loom), not(feature = "std")))]
        {
            critical_section::with(|cs| f(&mut self.inner.borrow_ref_mut(cs)))
        }
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.with(|value| value.fmt(f))
    }
}
