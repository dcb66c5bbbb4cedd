#![doc = include_str!("../README.md")]
//! # How
//!
//! Each process keeps its local [`RateLimiter`](upbit_limiter_tokio::RateLimiter)
//! (FIFO per group, deadlines, cancellation, breaker, bans: unchanged) and,
//! after the local admission, asks Redis. One Lua script decides, one
//! records each report; both run atomically in Redis on Redis's clock, so no
//! host's clock matters.
//!
//! # The rule, in Redis
//!
//! The decision script applies core's [interval log](upbit_limiter_tokio::upbit_limiter_core::interval_log)
//! to the budget's entries in Redis, in integer microseconds: admit at `t`
//! only if, for every window `(N, W)`, fewer than `N` earlier requests have
//! `e_i >= t - W`, where `e_i` is the report instant (clamped into
//! `[s_i, s_i + max_flight]`) or `s_i + max_flight` while in flight. The
//! decision runs before the request is sent and the report after its
//! response arrived, both on Redis's clock, so each request reached Upbit
//! between those two instants, whichever process sent it: the proof of the
//! local log holds for the union of the processes. A test runs the same
//! sequences through core's log and through the script and compares every
//! decision.
//!
//! The script always decides with the interval log, whatever policy the
//! local limiter uses (GCRA or interval log): the local limiter only bounds
//! this process, by the whole budget, which is always safe. Every process
//! sharing a budget must agree on its limits and `max_flight`: the first
//! decision stores them, and a process with other numbers gets
//! [`SharedError::SpecMismatch`].
//!
//! Budgets are keyed by scope: quotation groups by the IP's name
//! ([`SharedConfig::ip_id`]), exchange groups by the pocket
//! ([`SharedConfig::pocket_id`]); the per-connection websocket-message group
//! stays local. The [`store`] module documents the keys (all of one prefix in
//! one Redis Cluster slot).
//!
//! # Waiting
//!
//! Local waiting stays local: one task per group and process asks Redis at a
//! time (the others wait, FIFO, in a `tokio::sync::Mutex`), and a denial names
//! the instant to ask again. A window full of settled requests is asked
//! again exactly then; a window full of requests in flight (whose report
//! could come at any moment from another process) is asked again after a
//! back-off of `report_poll / 8`, doubling to `report_poll`, and never after
//! the instant the store named. No background task: the waiting task sleeps
//! on its own timer.
//!
//! # Failure: closed
//!
//! When Redis does not answer within `store_timeout` (down, partitioned,
//! slow, a failover in progress) or answers something malformed, the
//! acquisition fails with [`SharedError::StoreUnavailable`], which names
//! `store_retry`. It never admits without the store. A local fallback share
//! (each process on `1/k` of the budget while Redis is away) is not offered:
//! it is safe only if every sharer loses Redis at once and all come back at
//! once, which a partition of one host breaks (the others still use the
//! whole budget through Redis), and the requests sent on the fallback are
//! not in Redis when it comes back. A 429 costs more than a refused request:
//! the caller can retry after `store_retry`, Upbit's 418 cannot be undone.
//!
//! A report that cannot reach Redis leaves its request in flight until
//! `max_flight`: slower, never unsafe. An admission whose reply is lost
//! likewise counts until its `max_flight`.
//!
//! # Redis restarted empty
//!
//! Without persistence a restarted Redis has lost every interval, among them
//! those of requests still in flight. The scripts detect it (the clock key
//! `{P}:clock` is missing) and record the instant as the store's epoch; the
//! decision script then admits nothing in a group until
//! `epoch + max_flight + W_longest`: every lost request was admitted before
//! the epoch, arrived within `max_flight` of its admission and counts for at
//! most `W` after. A first start on an empty Redis waits the same way (it
//! cannot be told apart); with AOF or RDB persistence a restart keeps the
//! state and does not wait. A failover to a replica that had not received
//! the latest writes is not detected: use `WAIT` or `min-replicas-to-write`
//! if the primary can fail over.
//!
//! # The clock
//!
//! Redis `TIME` is the Redis host's wall clock. The scripts keep a
//! high-water mark: a **backward step** reads as "no time passed" and time
//! flows on from the mark (the step is added to an offset), so the scripts'
//! clock never runs faster than real time and every window still spans at
//! least `W` of real time: safe, at the cost of holding entries longer by
//! nothing more than the step. A **forward step** of `F` cannot be told from
//! idle time: entries look `F` older and end early, so for the windows that
//! straddle the step up to `N` more requests than allowed can be admitted
//! (one window's worth at most, once; a 429 then pauses every sharer).
//! Run the Redis host with a slewing clock (chrony/ntpd without steps) to
//! rule that out. Both directions are tested.
//!
//! # Shared feedback
//!
//! A 429 seen by any process pauses the budget for every sharer for the
//! group's longest window; a 418 bans the scope (every group of the IP or
//! the pocket) until the ban the local limiter read from the response ends.
//! `Remaining-Req` is read against every sharer's requests, not one
//! process's (the local limiter would take the other sharers for foreign
//! traffic, so it does not see the header): when the server counted more
//! than all sharers can have sent, the difference plus one slot of the
//! shortest window is reserved for everyone for two windows (the co-tenant
//! estimate, shared). A 429 also teaches a ceiling, as core's does (see
//! core's `outside` module), but learned in the store from every sharer's
//! requests: of the requests any sharer was admitted in the shortest window
//! before the one that drew it, the adaptive reduction is kept, and the rest
//! of the window's places are held back for every sharer for the group's
//! `ceiling_hold`, then given back one per hold. The decision script holds
//! back the larger of that and the co-tenant reserve. (The local limiters do
//! not learn ceilings for shared groups: each sees only its own requests, and
//! would read the other sharers' places as missing.)
//! [`SharedLimiter::status`] reads the shared state.

mod config;
mod limiter;
pub mod store;

pub use config::{FailureMode, SharedConfig, SharedConfigError};
pub use limiter::{BuildError, SharedError, SharedGroupStatus, SharedLimiter, SharedPermit, WaitingFor};
pub use store::{BudgetState, StoreError};
