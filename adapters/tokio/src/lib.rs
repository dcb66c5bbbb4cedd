//! tokio binding for `upbit-limiter-core`.
//!
//! The clock is `tokio::time::Instant`, so `#[tokio::test(start_paused = true)]`
//! drives the whole limiter in virtual time; the timer is `tokio::time::sleep_until`.
//! There is no background task.
//!
//! ```
//! use upbit_limiter_tokio::{Limiter, LimiterConfig, Preset, Response};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limiter = Limiter::new(&LimiterConfig::preset(Preset::Korea)).unwrap();
//! let permit = limiter.acquire("POST", "/v1/orders").await.unwrap();
//! // ... send the order, then tell the limiter what the server said:
//! permit.report(Response::status(201).with_remaining_req("group=order; min=720; sec=11"));
//! # }
//! ```

pub use upbit_limiter_core::{
    AcquireError, Duration, Group, Instant, LimiterConfig, Preset, Request, Response,
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
    fn now(&self) -> Instant {
        let d = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        Instant::from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
    fn sleep_until(&self, deadline: Instant) -> tokio::time::Sleep {
        tokio::time::sleep_until(self.to_tokio(deadline))
    }
}

/// The limiter on tokio.
pub type Limiter = upbit_limiter_core::RateLimiter<Tokio>;
/// A granted slot on tokio.
pub type Permit<'a> = upbit_limiter_core::Permit<'a, Tokio>;

/// The README's examples, compiled and run as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The adapters README's example, compiled and run as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct AdaptersReadmeDoctests;
