//! async-std and smol binding for `upbit-limiter-core`.
//!
//! The clock is [`std::time::Instant`], measured from the moment the runtime
//! value was made; the timer is [`async_io::Timer::at`]. There is no
//! background task.
//!
//! async-std is discontinued upstream in favour of smol. This crate needs
//! nothing from async-std itself: async-io's timer is the reactor that both
//! async-std and smol run on, so the same [`RateLimiter`] works unchanged under
//! `async_std::task::block_on`, `smol::block_on`, `async_io::block_on` or any
//! executor, as long as async-io's reactor is running (it starts on demand).
//!
//! ```
//! use upbit_limiter_async_std::{LimiterConfig, Preset, RateLimiter, Response};
//!
//! # async_io::block_on(async {
//! let limiter = RateLimiter::new(&LimiterConfig::preset(Preset::Korea)).unwrap();
//! let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
//! // ... send the request, then tell the limiter what the server said:
//! permit.report(Response::status(200).with_remaining_req("group=ticker; min=600; sec=9"));
//! # });
//! ```

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

pub use upbit_limiter_core;
pub use upbit_limiter_core::upbit::{PocketId, Scope};
use upbit_limiter_core::Instant;
pub use upbit_limiter_core::{
    AcquireError, Admission, ConfigError, Deadline, Denied, Endpoint, Feedback, Group, GroupConfig,
    GroupLimiter, GroupStatus, LimiterConfig, Preset, Quota, Reason, Request, Response, Runtime, ServerLimit,
    SyncLimiter,
};

/// std's monotonic clock and async-io's timer; core time counts from `epoch`.
#[derive(Debug, Clone, Copy)]
pub struct AsyncStd {
    epoch: std::time::Instant,
}

impl AsyncStd {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
        }
    }

    /// Converts a core instant to std's; `None` if std cannot represent it
    /// (such an instant never comes).
    pub fn to_std(&self, at: Instant) -> Option<std::time::Instant> {
        self.epoch
            .checked_add(std::time::Duration::from_nanos(at.as_nanos()))
    }
}

impl Default for AsyncStd {
    fn default() -> Self {
        Self::new()
    }
}

/// async-io's timer, completing with `()`.
#[derive(Debug)]
pub struct Sleep(async_io::Timer);

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

impl upbit_limiter_core::Runtime for AsyncStd {
    type Sleep = Sleep;
    type Instant = std::time::Instant;

    fn now(&self) -> Instant {
        self.core_instant(std::time::Instant::now())
    }

    fn core_instant(&self, at: std::time::Instant) -> Instant {
        let d = at.saturating_duration_since(self.epoch);
        Instant::from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn runtime_instant(&self, at: Instant) -> std::time::Instant {
        // Beyond what std can hold: ~30 years, which never comes.
        let far = std::time::Duration::from_secs(30 * 365 * 86_400);
        self.to_std(at).unwrap_or(self.epoch + far)
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep(
            self.to_std(deadline)
                .map_or_else(async_io::Timer::never, async_io::Timer::at),
        )
    }
}

/// The limiter on async-std or smol.
pub type RateLimiter = upbit_limiter_core::RateLimiter<AsyncStd>;
/// A granted slot on async-std or smol, borrowing the limiter.
pub type Permit<'a> = upbit_limiter_core::Permit<&'a RateLimiter>;
/// A granted slot that owns a share of the limiter (`'static`).
pub type OwnedPermit = upbit_limiter_core::Permit<std::sync::Arc<RateLimiter>>;
