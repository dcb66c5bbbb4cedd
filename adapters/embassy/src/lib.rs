//! embassy binding for `upbit-limiter-core`: `no_std`, no allocation, no
//! background task.
//!
//! The clock is [`embassy_time::Instant`] (core time counts from boot) and the
//! timer is [`embassy_time::Timer::at`]. This crate chooses neither the time
//! driver nor the tick rate: the application does, through embassy-time's
//! features, as for any embassy library. Instants are converted with the
//! configured [`embassy_time::TICK_HZ`]; a wake-up is rounded up to the next
//! tick so that it never comes before the instant the core asked for.
//!
//! A limiter is shared by reference; put it in a `static` (for example with
//! `static_cell`) to use it from several tasks. Every waiting task holds one
//! timer: with embassy-time's generic timer queue, size it (`generic-queue-N`)
//! for the tasks that may wait at once, or a full queue keeps evicting and
//! re-waking them.
//!
//! ```
//! use upbit_limiter_embassy::{RateLimiter, Response};
//!
//! async fn place_order(limiter: &RateLimiter) {
//!     match limiter.acquire("POST", "/v1/orders").await {
//!         Ok(permit) => {
//!             // ... send the order, then report what the server said:
//!             permit.report(Response::status(201).with_remaining_req("group=order; min=720; sec=11"));
//!         }
//!         Err(e) => {
//!             // Circuit open, banned, or the deadline cannot be met: the
//!             // error says which group, why, and when to retry (an embassy instant).
//!             embassy_time::Timer::at(limiter.retry_at(&e)).await;
//!         }
//!     }
//! }
//! ```

#![no_std]

pub use upbit_limiter_core;
pub use upbit_limiter_core::upbit::{PocketId, Scope};
use upbit_limiter_core::Instant;
pub use upbit_limiter_core::{
    AcquireError, Admission, ConfigError, Deadline, Denied, Endpoint, Feedback, Group, GroupConfig,
    GroupLimiter, GroupStatus, LimiterConfig, Preset, Quota, Reason, Request, Response, Runtime, ServerLimit,
    SyncLimiter,
};

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// embassy-time's clock and timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embassy;

impl Embassy {
    /// The core instant of an embassy instant (rounded down to whole nanoseconds).
    pub fn from_embassy(at: embassy_time::Instant) -> Instant {
        let nanos = u128::from(at.as_ticks()) * NANOS_PER_SEC / u128::from(embassy_time::TICK_HZ);
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The first embassy instant at or after a core instant (saturating).
    pub fn to_embassy(at: Instant) -> embassy_time::Instant {
        let ticks = (u128::from(at.as_nanos()) * u128::from(embassy_time::TICK_HZ)).div_ceil(NANOS_PER_SEC);
        embassy_time::Instant::from_ticks(u64::try_from(ticks).unwrap_or(u64::MAX))
    }
}

impl upbit_limiter_core::Runtime for Embassy {
    type Sleep = embassy_time::Timer;
    type Instant = embassy_time::Instant;

    fn now(&self) -> Instant {
        Self::from_embassy(embassy_time::Instant::now())
    }

    fn core_instant(&self, at: embassy_time::Instant) -> Instant {
        Self::from_embassy(at)
    }

    fn runtime_instant(&self, at: Instant) -> embassy_time::Instant {
        Self::to_embassy(at)
    }

    fn sleep_until(&self, deadline: Instant) -> embassy_time::Timer {
        embassy_time::Timer::at(Self::to_embassy(deadline))
    }
}

/// The limiter on embassy.
pub type RateLimiter = upbit_limiter_core::RateLimiter<Embassy>;
/// A granted slot on embassy, borrowing the limiter.
pub type Permit<'a> = upbit_limiter_core::Permit<&'a RateLimiter>;
