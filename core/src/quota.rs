//! From a server's limit to a quota that cannot exceed it.

use crate::time::Duration;

/// What the server allows: at most `max_requests` in any window of length `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServerLimit {
    /// Requests allowed per window.
    pub max_requests: u32,
    /// The window length.
    pub window: Duration,
}

impl ServerLimit {
    /// `max_requests` per `window`.
    pub const fn new(max_requests: u32, window: Duration) -> Self {
        Self { max_requests, window }
    }
    /// `max_requests` per second.
    pub const fn per_second(max_requests: u32) -> Self {
        Self::new(max_requests, Duration::from_secs(1))
    }
}
