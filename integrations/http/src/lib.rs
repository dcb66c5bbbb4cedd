#![doc = include_str!("../README.md")]
//!
//! [`MAX_BAN_BODY`]: crate::MAX_BAN_BODY
//! [`BAN_BODY_WAIT`]: crate::BAN_BODY_WAIT
//! [`Refused`]: crate::Refused
//! [`AcquireTimeout`]: crate::AcquireTimeout
//! [`ResponseBody`]: crate::ResponseBody

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

#[cfg(test)]
mod tests {
    /// The first Rust block of a markdown text.
    fn first_rust_block(text: &str) -> Option<&str> {
        let start = text.find("```rust")?;
        let body = &text[start..];
        let body = &body[body.find('\n')? + 1..];
        Some(&body[..body.find("```")?])
    }

    #[test]
    fn the_top_readme_shows_the_compiled_example() {
        let ours = first_rust_block(include_str!("../README.md"));
        let top = include_str!("../../../README.md");
        let top = top.find("## Using it: in the request path").map(|i| &top[i..]);
        assert!(ours.is_some());
        assert_eq!(top.and_then(first_rust_block), ours);
    }
}
