#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(any(feature = "alloc", loom))]
extern crate alloc;
#[cfg(any(feature = "std", test, loom))]
extern crate std;

pub mod adaptive;
pub mod breaker;
pub mod gcra;
pub mod interval_log;
pub mod limiter;
pub mod outside;
mod queue;
pub mod quota;
pub mod stats;
mod sync;
pub mod time;
pub mod upbit;
pub mod wait;

pub use limiter::{
    Admission, ConfigError, Denied, Feedback, GroupConfig, GroupLimiter, GroupStatus, LimiterConfig,
    Response, SyncLimiter,
};
pub use quota::{Quota, QuotaError, ServerLimit};
#[cfg(feature = "alloc")]
pub use time::ManualClock;
pub use time::{Clock, Duration, Instant};
pub use upbit::{classify, Group, Preset};
pub use wait::{
    Acquire, AcquireError, Deadline, Endpoint, LimiterRef, Permit, RateLimiter, Reason, Request, Runtime,
};
