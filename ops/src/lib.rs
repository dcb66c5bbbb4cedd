//! Operating `upbit-limiter` in production: configuration from a TOML file and
//! environment variables over the built-in presets, changes at run time
//! without losing state, emergency mode, metrics, tracing, a status snapshot
//! and a health report.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | [`OpsConfig`]: preset, then file, then environment; every problem reported at once ([`ConfigErrors`]) |
//! | [`control`] | [`Control`]: apply a configuration to a running core `SyncLimiter`; emergency mode with lazy expiry |
//! | [`telemetry`] | metric names, [`telemetry::record_status`], per-request hooks, state-change events |
//! | [`status`] | [`Status`]: the full snapshot, serialisable to JSON |
//! | [`health`] | [`Thresholds`] and [`health::evaluate`] into a [`HealthReport`] |
//! | [`Instrumented`] | all of the above around the async limiter (tokio by default) |
//!
//! ```
//! use upbit_limiter_ops::{Instrumented, OpsConfig, TomlText};
//! use upbit_limiter_core::{Duration, Response};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let file = TomlText { name: "limits.toml", text: "[groups.order]\nstrategy = \"balanced\"\n" };
//! let env = [("UPBIT_RATE_LIMIT_TICKER_BURST", "3")];
//! let config = OpsConfig::from_layers(Some(file), env).unwrap();
//! let limiter = Instrumented::new(&config).unwrap();
//!
//! let permit = limiter.acquire("GET", "/v1/ticker").await.unwrap();
//! permit.report(Response::status(200));
//!
//! limiter.enter_emergency(Duration::from_secs(600)).unwrap();
//! let json = serde_json::to_string(&limiter.snapshot()).unwrap();
//! assert!(json.contains("\"emergency\":{"));
//! # }
//! ```
//!
#![doc = include_str!("../OPERATING.md")]
#![warn(missing_docs)]

pub mod config;
pub mod control;
pub mod health;
mod instrumented;
mod samples;
pub mod status;
pub mod telemetry;

pub use config::{ConfigErrors, Issue, Notice, OpsConfig, Origin, Problem, TomlText, Warning};
pub use control::{emergency_config, Control, Emergency, EmergencySettings};
pub use health::{HealthReport, Level, Thresholds};
pub use instrumented::{Instrumented, Permit, Snapshot, UPKEEP_INTERVAL};
pub use samples::MAX_SAMPLES;
pub use status::Status;
