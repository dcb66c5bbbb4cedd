//! The shared state in Redis: key layout, the three scripts and their replies.
//!
//! # Keys
//!
//! Under a prefix `P` (default `upbit-limiter`), a budget is (scope, scope
//! id, group): quotation groups are keyed by the IP's name, exchange groups
//! by the pocket id. Every key starts with `{P}`, a hash tag: in a Redis
//! Cluster all keys of a prefix live in one slot, as the scripts (which touch
//! the clock and a budget at once) require.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{P}:clock` | hash | `hwm`, `offset`, `epoch`: the one clock (see below) |
//! | `{P}:<scope>:<id>:<group>:ends` | sorted set | ticket → `e_i` in µs |
//! | `{P}:<scope>:<id>:<group>:live` | hash | ticket → `"s_i state"` (`f` in flight, `u` unanswered, `r` reported) |
//! | `{P}:<scope>:<id>:<group>:meta` | hash | `seq` (ticket counter), `spec` (the limits every sharer must agree on) |
//! | `{P}:<scope>:<id>:<group>:pause` | string | until when a 429 pauses the budget (µs) |
//! | `{P}:<scope>:<id>:<group>:reserve` | hash | `n` slots of the shortest window left to traffic that does not go through the store, `until` (µs) |
//! | `{P}:<scope>:<id>:<group>:ceiling` | hash | a ceiling learned from a 429: `n` places of the shortest window held back from `since` (µs) for `hold` (µs), then one fewer per `hold` |
//! | `{P}:<scope>:<id>:ban` | string | until when a 418 bans the scope (µs) |
//!
//! Nothing expires by Redis TTL: every instant is compared with the scripts'
//! own clock, and the decision script trims the entries that can no longer
//! count (after a further `max_flight`), so a budget holds at most its
//! largest `N` entries that count, plus those that ended in the last
//! `max_flight`.
//!
//! # The clock
//!
//! Every script reads Redis `TIME` (one clock for every host; no client's
//! clock is ever used), in integer microseconds, and keeps a high-water mark
//! in `{P}:clock`: `now = max(TIME + offset, hwm)`, and a backward step of the
//! Redis host's clock grows `offset` by the step, so it reads as "no time
//! passed" and time then flows on from the mark at the real rate. The clock
//! therefore never runs faster than real time except when the host's clock
//! steps forward (see the crate docs).

use std::fmt;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{Script, Value};
use upbit_limiter_tokio::upbit_limiter_core::upbit::Scope;
use upbit_limiter_tokio::{Group, GroupConfig};

const CLOCK: &str = include_str!("scripts/clock.lua");
const DECIDE: &str = include_str!("scripts/decide.lua");
const REPORT: &str = include_str!("scripts/report.lua");
const STATUS: &str = include_str!("scripts/status.lua");

/// The largest instant or length (µs) sent to a script: 2^52, as in the scripts.
pub(crate) const TIME_LIMIT_US: u64 = 1 << 52;

/// Why the store gave no decision.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// Redis could not be reached, or the connection broke.
    Unreachable(String),
    /// No answer within the configured timeout.
    TimedOut,
    /// Redis answered with an error (e.g. out of memory, a read-only replica).
    Refused(String),
    /// The reply did not have the shape the script returns.
    MalformedReply,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(e) => write!(f, "Redis unreachable: {e}"),
            Self::TimedOut => f.write_str("Redis did not answer in time"),
            Self::Refused(e) => write!(f, "Redis refused the script: {e}"),
            Self::MalformedReply => f.write_str("malformed reply from the decision script"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_timeout() {
            Self::TimedOut
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            Self::Unreachable(e.to_string())
        } else {
            Self::Refused(e.to_string())
        }
    }
}

/// Why the decision script did not admit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Wait {
    /// Settled requests fill a window: nothing admits before `retry_at`.
    Full,
    /// Requests in flight fill a window: a report may admit sooner.
    FullInFlight,
    /// The store was found empty: lost intervals may still count.
    FreshStore,
    /// A process sharing the scope saw a 418.
    Banned,
    /// A process sharing the budget saw a 429.
    Paused,
}

/// What the decision script said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Admitted at `at` (µs, store time) with this ticket.
    Admitted { ticket: String, at: u64 },
    /// Not now; ask again at `retry_at` (µs, store time; `now` is when it was decided).
    Denied { wait: Wait, retry_at: u64, now: u64 },
    /// Another process shares this budget with other limits.
    SpecMismatch,
}

/// How a request ended, for the report script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// A response arrived.
    Response,
    /// No response (transport error, timeout): it may still arrive.
    NoResponse,
    /// Never sent.
    #[cfg_attr(not(test), allow(dead_code))]
    Abandoned,
}

impl End {
    fn code(self) -> &'static str {
        match self {
            Self::Response => "r",
            Self::NoResponse => "u",
            Self::Abandoned => "a",
        }
    }
}

/// What a response tells every sharer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shared {
    /// Pause the budget this long (µs, 0: none): a 429.
    pub(crate) pause_us: u64,
    /// Ban the scope this long (µs, 0: none): a 418.
    pub(crate) ban_us: u64,
    /// `Remaining-Req`'s `sec`.
    pub(crate) sec: Option<u32>,
}

/// The shared state of one budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetState {
    /// The store's clock (µs), `None` if the store holds no state at all.
    pub now_us: Option<u64>,
    /// When the store's state began (µs): admissions stay closed until
    /// `epoch + max_flight + W` after a store is found empty.
    pub epoch_us: Option<u64>,
    /// Requests that still count for the longest window.
    pub counting: u64,
    /// Requests admitted and not yet reported, by every process.
    pub in_flight: u64,
    /// Until when a 418 seen by some process bans the scope (µs, 0: none).
    pub banned_until_us: u64,
    /// Until when a 429 seen by some process pauses the budget (µs, 0: none).
    pub paused_until_us: u64,
    /// Slots of the shortest window left to traffic that does not go
    /// through the store, as some sharer's `Remaining-Req` showed (0: none).
    pub reserved: u64,
    /// Places of the shortest window a 429 seen by some sharer holds back
    /// for every sharer (a learned ceiling; 0: none). Decisions hold back the
    /// larger of this and [`reserved`](Self::reserved).
    pub ceiling: u64,
}

/// One budget's keys and the arguments its decisions send.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    pub(crate) group: Group,
    ends: String,
    live: String,
    meta: String,
    pause: String,
    reserve: String,
    ceiling: String,
    ban: String,
    /// How long a learned ceiling is held (µs, 0: none learned), and the
    /// share of the requests before a 429 it keeps (ppm).
    ceiling_hold_us: u64,
    reduction_ppm: u32,
    /// max_flight, spec, then the windows' (N, W) pairs.
    args: Vec<String>,
    pub(crate) longest_us: u64,
    /// The shortest window (µs) and its `N`: what `Remaining-Req`'s `sec` counts.
    shortest_us: u64,
    shortest_n: u32,
}

/// A name part of a key: non-empty, at most 128 bytes, no `:`, `{`, `}`, whitespace or control.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s
            .chars()
            .any(|c| matches!(c, ':' | '{' | '}') || c.is_whitespace() || c.is_control())
}

/// Microseconds, rounded up (a longer window or flight bound is the safe side).
pub(crate) fn micros_up(nanos: u64) -> u64 {
    nanos.div_ceil(1_000)
}

impl Budget {
    /// The budget of `group` under `prefix`, or `None` for a group whose
    /// budget is per connection (nothing to share).
    pub(crate) fn new(
        prefix: &str,
        ip: &str,
        pocket: &str,
        group: Group,
        config: &GroupConfig,
    ) -> Option<Self> {
        let (scope, id) = match group.scope() {
            Scope::Ip => ("ip", ip),
            Scope::Pocket => ("pocket", pocket),
            _ => return None,
        };
        let scope_base = format!("{{{prefix}}}:{scope}:{id}");
        let base = format!("{scope_base}:{}", group.as_str());
        let max_flight = micros_up(config.max_flight.as_nanos()).max(1);
        let windows: Vec<(u32, u64)> = config
            .limits
            .as_slice()
            .iter()
            .map(|l| (l.max_requests, micros_up(l.window.as_nanos())))
            .collect();
        let spec = format!(
            "v1;flight={max_flight};{}",
            windows
                .iter()
                .map(|(n, w)| format!("{n}/{w}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut args = vec![max_flight.to_string(), spec];
        for (n, w) in &windows {
            args.push(n.to_string());
            args.push(w.to_string());
        }
        let shortest_us = windows.iter().map(|w| w.1).min().unwrap_or(0);
        let shortest_n = windows
            .iter()
            .filter(|w| w.1 == shortest_us)
            .map(|w| w.0)
            .min()
            .unwrap_or(0);
        Some(Self {
            group,
            ends: format!("{base}:ends"),
            live: format!("{base}:live"),
            meta: format!("{base}:meta"),
            pause: format!("{base}:pause"),
            reserve: format!("{base}:reserve"),
            ceiling: format!("{base}:ceiling"),
            ban: format!("{scope_base}:ban"),
            ceiling_hold_us: micros_up(config.ceiling_hold.as_nanos()).min(TIME_LIMIT_US - 1),
            reduction_ppm: config.adaptive.reduction.ppm(),
            args,
            longest_us: windows.iter().map(|w| w.1).max().unwrap_or(0),
            shortest_us,
            shortest_n,
        })
    }
}

struct Scripts {
    decide: Script,
    report: Script,
    status: Script,
}

/// The connection and the scripts. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    clock: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn uint(v: &Value) -> Option<u64> {
    int(v).and_then(|i| u64::try_from(i).ok())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Reads the decision script's reply; anything else is malformed.
fn parse_decision(v: &Value) -> Result<Decision, StoreError> {
    let Value::Array(items) = v else {
        return Err(StoreError::MalformedReply);
    };
    let bad = StoreError::MalformedReply;
    match items.as_slice() {
        [flag, ticket, at] if int(flag) == Some(1) => Ok(Decision::Admitted {
            ticket: text(ticket).filter(|t| !t.is_empty()).ok_or(bad)?,
            at: uint(at).ok_or(StoreError::MalformedReply)?,
        }),
        [flag, reason, retry_at, now] if int(flag) == Some(0) => {
            let wait = match int(reason) {
                Some(1) => Wait::Full,
                Some(2) => Wait::FullInFlight,
                Some(3) => Wait::FreshStore,
                Some(4) => Wait::Banned,
                Some(5) => Wait::Paused,
                Some(6) => return Ok(Decision::SpecMismatch),
                _ => return Err(bad),
            };
            let (retry_at, now) = (
                uint(retry_at).ok_or(bad)?,
                uint(now).ok_or(StoreError::MalformedReply)?,
            );
            if retry_at < now {
                return Err(StoreError::MalformedReply);
            }
            Ok(Decision::Denied { wait, retry_at, now })
        }
        _ => Err(bad),
    }
}

fn parse_status(v: &Value) -> Result<BudgetState, StoreError> {
    let Value::Array(items) = v else {
        return Err(StoreError::MalformedReply);
    };
    let n: Vec<i64> = items
        .iter()
        .map(int)
        .collect::<Option<_>>()
        .ok_or(StoreError::MalformedReply)?;
    let [now, epoch, counting, in_flight, ban, pause, reserved, ceiling] = n.as_slice() else {
        return Err(StoreError::MalformedReply);
    };
    let u = |x: i64| u64::try_from(x).map_err(|_| StoreError::MalformedReply);
    let fresh = *epoch < 0;
    Ok(BudgetState {
        now_us: if fresh { None } else { Some(u(*now)?) },
        epoch_us: if fresh { None } else { Some(u(*epoch)?) },
        counting: u(*counting)?,
        in_flight: u(*in_flight)?,
        banned_until_us: u(*ban)?,
        paused_until_us: u(*pause)?,
        reserved: u(*reserved)?,
        ceiling: u(*ceiling)?,
    })
}

fn explicit(now: Option<u64>) -> String {
    now.map(|n| n.to_string()).unwrap_or_default()
}

impl Store {
    pub(crate) fn new(conn: ConnectionManager, prefix: &str) -> Self {
        let with_clock = |body: &str| Script::new(&format!("{CLOCK}\n{body}"));
        Self {
            conn,
            scripts: Arc::new(Scripts {
                decide: with_clock(DECIDE),
                report: with_clock(REPORT),
                status: with_clock(STATUS),
            }),
            clock: format!("{{{prefix}}}:clock"),
        }
    }

    /// Runs the decision script. `now` (µs) replaces Redis `TIME` only in
    /// this crate's tests.
    pub(crate) async fn decide(&self, budget: &Budget, now: Option<u64>) -> Result<Decision, StoreError> {
        let mut inv = self.scripts.decide.prepare_invoke();
        inv.key(&self.clock)
            .key(&budget.ends)
            .key(&budget.live)
            .key(&budget.meta)
            .key(&budget.ban)
            .key(&budget.pause)
            .key(&budget.reserve)
            .key(&budget.ceiling)
            .arg(explicit(now));
        for a in &budget.args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        let reply: Value = inv.invoke_async(&mut conn).await?;
        parse_decision(&reply)
    }

    /// Runs the report script: whether the ticket was current. A pause or a
    /// ban (µs, 0: none) is written either way; `sec` (the server's
    /// `Remaining-Req`) reserves room for traffic the store does not see.
    pub(crate) async fn report(
        &self,
        budget: &Budget,
        ticket: &str,
        end: End,
        feedback: Shared,
        now: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let reply: Value = self
            .scripts
            .report
            .key(&self.clock)
            .key(&budget.ends)
            .key(&budget.live)
            .key(&budget.ban)
            .key(&budget.pause)
            .key(&budget.reserve)
            .key(&budget.ceiling)
            .arg(explicit(now))
            .arg(ticket)
            .arg(end.code())
            .arg(feedback.pause_us.min(TIME_LIMIT_US - 1))
            .arg(feedback.ban_us.min(TIME_LIMIT_US - 1))
            .arg(feedback.sec.map(|s| s.to_string()).unwrap_or_default())
            .arg(budget.shortest_us)
            .arg(budget.shortest_n)
            .arg(budget.ceiling_hold_us)
            .arg(budget.reduction_ppm)
            .invoke_async(&mut conn)
            .await?;
        match int(&reply) {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(StoreError::MalformedReply),
        }
    }

    /// Runs the status script (writes nothing).
    pub(crate) async fn status(&self, budget: &Budget, now: Option<u64>) -> Result<BudgetState, StoreError> {
        let mut conn = self.conn.clone();
        let reply: Value = self
            .scripts
            .status
            .key(&self.clock)
            .key(&budget.ends)
            .key(&budget.live)
            .key(&budget.ban)
            .key(&budget.pause)
            .key(&budget.reserve)
            .key(&budget.ceiling)
            .arg(explicit(now))
            .arg(budget.longest_us)
            .invoke_async(&mut conn)
            .await?;
        parse_status(&reply)
    }
}

#[cfg(test)]
mod tests;
