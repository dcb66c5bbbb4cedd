//! Where the shared budget lives and how long to wait for it.

use std::fmt;
use std::time::Duration;

use crate::store::valid_name;

/// What happens when Redis cannot decide.
///
/// Only [`FailureMode::Closed`] exists: see the crate docs for why a local
/// fallback share is not offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureMode {
    /// Refuse with [`SharedError::StoreUnavailable`](crate::SharedError::StoreUnavailable),
    /// which says when to retry. Never admits without a decision of the store.
    #[default]
    Closed,
}

impl FailureMode {
    /// The name used in configuration files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
        }
    }
}

impl core::str::FromStr for FailureMode {
    type Err = SharedConfigError;
    /// `closed` (any case).
    fn from_str(s: &str) -> Result<Self, SharedConfigError> {
        if s.trim().eq_ignore_ascii_case("closed") {
            Ok(Self::Closed)
        } else {
            Err(SharedConfigError::FailureMode(s.to_owned()))
        }
    }
}

/// The shared store's settings. [`SharedConfig::new`] takes the URL; the rest
/// has defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedConfig {
    /// `redis://host:port/db` (or `rediss://`, `redis+unix://`).
    pub url: String,
    /// Every key starts with this, in braces (a Redis Cluster hash tag), and
    /// a `:` (default `upbit-limiter`).
    pub key_prefix: String,
    /// The pocket whose exchange budgets (`default`, `order`, ...) this
    /// process shares. Processes trading one pocket must use the same id;
    /// different pockets have independent budgets (default `default`).
    pub pocket_id: String,
    /// The public IP whose quotation budgets (`ticker`, `candle`, ...) this
    /// process shares: processes behind one public address must use the
    /// same name (default `default`).
    pub ip_id: String,
    /// How long one Redis call may take before the acquisition fails closed
    /// (default 250 ms).
    pub store_timeout: Duration,
    /// The retry time a store failure names (default 1 s).
    pub store_retry: Duration,
    /// The longest sleep between two questions to Redis while the window is
    /// full of requests in flight: a report from another process can free
    /// it at any time. The first sleep is an eighth of it, doubling
    /// (default 16 ms).
    pub report_poll: Duration,
    /// What happens when Redis cannot decide.
    pub failure_mode: FailureMode,
}

impl SharedConfig {
    /// The defaults with this URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "upbit-limiter".into(),
            pocket_id: "default".into(),
            ip_id: "default".into(),
            store_timeout: Duration::from_millis(250),
            store_retry: Duration::from_secs(1),
            report_poll: Duration::from_millis(16),
            failure_mode: FailureMode::Closed,
        }
    }

    /// Sets the key prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the pocket id.
    pub fn pocket_id(mut self, id: impl Into<String>) -> Self {
        self.pocket_id = id.into();
        self
    }

    /// Sets the IP's name.
    pub fn ip_id(mut self, id: impl Into<String>) -> Self {
        self.ip_id = id.into();
        self
    }

    /// Sets the per-call timeout.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), SharedConfigError> {
        for (field, value) in [
            ("key_prefix", &self.key_prefix),
            ("pocket_id", &self.pocket_id),
            ("ip_id", &self.ip_id),
        ] {
            if !valid_name(value) {
                return Err(SharedConfigError::Name {
                    field,
                    value: value.clone(),
                });
            }
        }
        for (field, value) in [
            ("store_timeout", self.store_timeout),
            ("store_retry", self.store_retry),
            ("report_poll", self.report_poll),
        ] {
            if value.is_zero() || value > Duration::from_secs(3_600) {
                return Err(SharedConfigError::Duration { field, value });
            }
        }
        redis::Client::open(self.url.as_str()).map_err(|e| SharedConfigError::Url(e.to_string()))?;
        Ok(())
    }
}

/// A setting that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedConfigError {
    /// The URL does not parse.
    Url(String),
    /// A key part is empty, longer than 128 bytes, or holds `:`, `{`, `}`,
    /// whitespace or a control character.
    Name {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A duration is zero or longer than an hour.
    Duration {
        /// The field.
        field: &'static str,
        /// Its value.
        value: Duration,
    },
    /// Not a failure mode (only `closed` exists).
    FailureMode(String),
    /// A group's limits or maximum flight time are too large for the scripts' clock.
    Limits(String),
    /// No tokio runtime to run the Redis connection on.
    NoRuntime,
}

impl fmt::Display for SharedConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(e) => write!(f, "Redis URL: {e}"),
            Self::Name { field, value } => write!(
                f,
                "{field} {value:?}: must be 1 to 128 bytes without ':', '{{', '}}', whitespace or control characters"
            ),
            Self::Duration { field, value } => {
                write!(f, "{field} {value:?}: must be above zero and at most an hour")
            }
            Self::FailureMode(s) => write!(
                f,
                "failure mode {s:?}: only \"closed\" exists (a store that cannot decide refuses)"
            ),
            Self::Limits(e) => write!(f, "limits: {e}"),
            Self::NoRuntime => f.write_str("no tokio runtime: build the shared limiter inside one"),
        }
    }
}

impl std::error::Error for SharedConfigError {}
