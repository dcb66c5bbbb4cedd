//! tokio binding for `upbit-limiter-core`.
//!
//! The clock is `tokio::time::Instant`, so `#[tokio::test(start_paused = true)]`
//! drives the whole limiter in virtual time; the timer is `tokio::time::sleep_until`.
//! There is no background task.
//!
//! Everything a tokio user needs is re-exported here: one dependency is
//! enough. Deadlines and retry times are tokio's and std's time types.
//!
//! ```
//! use std::sync::Arc;
//! use upbit_limiter_tokio::{LimiterConfig, Preset, RateLimiter, Response};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limiter = Arc::new(RateLimiter::new(&LimiterConfig::preset(Preset::Korea)).unwrap());
//! let market = "KRW-BTC";
//! // The permit borrows the limiter, not the path.
//! let permit = limiter.acquire("GET", &format!("/v1/ticker?markets={market}")).await.unwrap();
//! permit.report(Response::status(200).with_remaining_req("group=ticker; min=1800; sec=9"));
//!
//! // An owned permit moves into another task.
//! let permit = Arc::clone(&limiter).acquire_owned("POST", "/v1/orders").await.unwrap();
//! tokio::spawn(async move {
//!     // ... send the order, then tell the limiter what the server said:
//!     permit.report(Response::status(201).with_remaining_req("group=order; min=720; sec=11"));
//! })
//! .await
//! .unwrap();
//! # }
//! ```

pub use upbit_limiter_core;
pub use upbit_limiter_core::upbit::{PocketId, Scope};
use upbit_limiter_core::Instant;
pub use upbit_limiter_core::{
    AcquireError, Admission, ConfigError, Deadline, Denied, Endpoint, Feedback, Group, GroupConfig,
    GroupLimiter, GroupStatus, LimiterConfig, Preset, Quota, Reason, Request, Response, Runtime, ServerLimit,
    SyncLimiter,
};

/// tokio's clock and timer, measured from the instant the runtime handle was made.
#[derive(Debug, Clone, Copy)]
pub struct Tokio {
    epoch: tokio::time::Instant,
}

impl Tokio {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
        }
    }
    /// Converts a core instant to tokio's.
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        // Far-future instants saturate to ~30 years, which tokio accepts.
        let far = core::time::Duration::from_secs(30 * 365 * 86_400);
        let d = core::time::Duration::from_nanos(at.as_nanos()).min(far);
        self.epoch + d
    }
}

impl Default for Tokio {
    fn default() -> Self {
        Self::new()
    }
}

impl upbit_limiter_core::Runtime for Tokio {
    type Sleep = tokio::time::Sleep;
    type Instant = tokio::time::Instant;
    fn now(&self) -> Instant {
        self.core_instant(tokio::time::Instant::now())
    }
    fn sleep_until(&self, deadline: Instant) -> tokio::time::Sleep {
        tokio::time::sleep_until(self.to_tokio(deadline))
    }
    fn core_instant(&self, at: tokio::time::Instant) -> Instant {
        let d = at.saturating_duration_since(self.epoch);
        Instant::from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
    fn runtime_instant(&self, at: Instant) -> tokio::time::Instant {
        self.to_tokio(at)
    }
}

/// The limiter on tokio.
pub type RateLimiter = upbit_limiter_core::RateLimiter<Tokio>;
/// A granted slot on tokio, borrowing the limiter.
pub type Permit<'a> = upbit_limiter_core::Permit<&'a RateLimiter>;
/// A granted slot on tokio that owns a share of the limiter (`'static`).
pub type OwnedPermit = upbit_limiter_core::Permit<std::sync::Arc<RateLimiter>>;
/// The future of [`RateLimiter::acquire`].
pub type Acquire<'a> = upbit_limiter_core::Acquire<&'a RateLimiter>;
/// The future of [`RateLimiter::acquire_owned`].
pub type AcquireOwned = upbit_limiter_core::Acquire<std::sync::Arc<RateLimiter>>;

/// The README's examples, compiled and run as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The adapters README's example, compiled and run as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct AdaptersReadmeDoctests;
