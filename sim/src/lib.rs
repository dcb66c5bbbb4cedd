//! A deterministic virtual-time Upbit simulator for `upbit-limiter`.
//!
//! It puts a population of clients, a network and a model of Upbit's server
//! in one virtual clock, runs a scenario (built in, or a TOML file a user
//! writes), and reports per rate-limit group what the server answered, how
//! long requests waited for admission and whether the SLA targets were
//! met. The clients wait through the real limiter (`RateLimiter::acquire`)
//! on a deterministic executor, so the same seed gives the same report, byte
//! for byte, apart from the wall time it took.
//!
//! - [`exec`]: the executor and its clock (exact nanoseconds).
//! - [`server`]: routing, the window models (`sliding`, `fixed`, `anchored`,
//!   `token-bucket`), 429/418 escalation and `Remaining-Req`.
//! - [`network`]: delays with jitter, response-time degradation, loss, timeouts.
//! - [`scenario`]: the scenario format and the built-in scenarios.
//! - [`policy`]: ours and the baselines (`gcra-at-limit`, `best-practice`, `none`),
//!   and [`oracle`], the clairvoyant policy that is the physical limit.
//! - [`compare`]: several policies side by side on the same traffic and seed.
//! - [`run`](mod@run): one run; [`report`]: what it found; [`budget`]: what
//!   we got beside another process on the same budget, and after the
//!   server's limits changed;
//!   [`least_wait`]: the least wait the limits allow for the run's traffic.
//! - [`store`]: several processes, each with its own limiter, sharing the
//!   budgets through a simulated shared store (the rule of the Redis store).
//! - [`serve`]: the same server model over real HTTP, in real time.
//!
//! ```
//! use upbit_limiter_sim::{run, Policy, RunOptions, Scenario, ServerModel};
//!
//! let mut scenario = Scenario::builtin("market-shock").unwrap().unwrap();
//! scenario.actors[0].count = 10; // a smaller shock
//! let opts = RunOptions { model: ServerModel::Sliding, policy: Policy::Ours, seed: 1 };
//! let report = run(&scenario, &opts, &mut |_| {}).unwrap();
//! assert_eq!(report.total_429, 0);
//! assert_eq!(report.actors.finished, 10);
//! ```

#![warn(missing_docs)]

pub mod budget;
pub mod compare;
pub mod exec;
pub mod histogram;
pub mod least_wait;
pub mod network;
pub mod oracle;
pub mod policy;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod serve;
pub mod server;
pub mod store;

pub use policy::Policy;
pub use report::Report;
pub use run::{run, Progress, RunError, RunOptions};
pub use scenario::{Scenario, ScenarioError, BUILTINS};
pub use server::ServerModel;
