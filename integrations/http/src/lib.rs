//! upbit-limiter in the request path.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod inflight;
#[cfg(feature = "reqwest")]
mod reqwest;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg(feature = "tungstenite")]
pub mod websocket;

use std::time::Duration;
use std::{error, fmt};

pub use body::ResponseBody;
pub use inflight::{BAN_BODY_WAIT, MAX_BAN_BODY};
#[cfg(feature = "reqwest")]
pub use reqwest::RateLimitMiddleware;
#[cfg(feature = "tower")]
pub use tower::RateLimitLayer;
pub use upbit_limiter_tokio;
use upbit_limiter_tokio::{AcquireError, Group, Reason};

/// A request extension: give up waiting for a permit after this long
/// instead of the group's default waiter timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquireTimeout(pub Duration);

/// The limiter refused a request, which was not sent: which group, why, and
/// when a retry could succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    error: AcquireError,
    retry_at: tokio::time::Instant,
}

impl Refused {
    pub(crate) fn new(error: AcquireError, retry_at: tokio::time::Instant) -> Self {
        Self { error, retry_at }
    }
    /// The limiter's error.
    pub fn error(&self) -> &AcquireError {
        &self.error
    }
    /// The group the request was counted in.
    pub fn group(&self) -> Group {
        self.error.group()
    }
    /// Why it was refused.
    pub fn reason(&self) -> Reason {
        self.error.reason()
    }
    /// How long after the refusal a retry could succeed (`Duration::MAX`: not by itself).
    pub fn retry_after(&self) -> Duration {
        self.error.retry_after()
    }
    /// When a retry could succeed, on tokio's clock.
    pub fn retry_at(&self) -> tokio::time::Instant {
        self.retry_at
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not sent: {}", self.error)
    }
}

impl error::Error for Refused {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        Some(&self.error)
    }
}
