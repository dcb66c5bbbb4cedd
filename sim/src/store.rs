//! A simulated shared store: several processes, each with its own limiter,
//! share the IP's and the pocket's budgets through it, as through Redis.
//!
//! It applies the rule of the Redis scripts (`upbit-limiter-redis`): core's
//! [interval log](upbit_limiter_core::interval_log) over every sharer's
//! requests, a decision before each request is sent and a report after its
//! response arrived, both at the store's instant, so each request reached the
//! server between the two whichever process sent it. A 429 seen by any
//! process pauses the budget for every sharer for the group's longest
//! window; a 418 bans the scope until the ban the process read ends.
//!
//! Decisions and reports each take the store's round trip (`[store] rtt_ms`):
//! half of it to reach the store, which decides at that instant, and half
//! for the answer. A process asks for one request per group at a time (the
//! others wait their turn in FIFO order, as behind the Redis client's gate),
//! waits for the instant a denial names, and while a window is full of
//! requests in flight polls with the same bounded back-off as the Redis
//! client (`REPORT_POLL / 8`, doubling up to `REPORT_POLL`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use upbit_limiter_core::interval_log::{Denial, IntervalLog, Ticket};
use upbit_limiter_core::upbit::Scope;
use upbit_limiter_core::{Duration, Group, Instant, LimiterConfig};

/// The Redis client's longest poll while a window is full of requests in flight.
pub const REPORT_POLL: Duration = Duration::from_millis(16);

/// Why the store did not admit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A window is full: ask again then (or, if only in flight, after the next poll).
    Full(Denial),
    /// A process sharing the budget saw a 429: nothing until then.
    Paused(Instant),
    /// A process sharing the scope saw a 418: nothing until then.
    Banned(Instant),
}

/// How a request ended, for the store's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A response with this status arrived.
    Response(u16),
    /// No response within the client's timeout.
    NoResponse,
}

struct Budget {
    log: IntervalLog,
    longest: Duration,
    pause_until: Instant,
}

/// What the store did in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Decisions asked.
    pub decisions: u64,
    /// Of them, admissions.
    pub admitted: u64,
    /// Reports received.
    pub reports: u64,
}

/// The store: one interval log per shared budget (one IP, one pocket).
pub struct SharedStore {
    rtt: Duration,
    budgets: Vec<Option<Budget>>,
    bans: [Instant; 2],
    counts: StoreCounts,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("rtt", &self.rtt)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

fn scope_index(scope: Scope) -> Option<usize> {
    match scope {
        Scope::Ip => Some(0),
        Scope::Pocket => Some(1),
        Scope::Connection => None,
    }
}

impl SharedStore {
    /// A store for the budgets of `config` (the limits and maximum flight
    /// time every sharer agrees on), `rtt` away from every process. Groups
    /// whose budget is per connection are not shared.
    pub fn new(config: &LimiterConfig, rtt: Duration) -> Self {
        let budgets = Group::ALL
            .iter()
            .map(|&g| {
                scope_index(g.scope())?;
                let c = config.group(g);
                let log = IntervalLog::new(c.limits.as_slice(), c.max_flight).ok()?;
                Some(Budget {
                    log,
                    longest: c.limits.longest_window(),
                    pause_until: Instant::ZERO,
                })
            })
            .collect();
        Self {
            rtt,
            budgets,
            bans: [Instant::ZERO; 2],
            counts: StoreCounts::default(),
        }
    }

    /// The round trip to the store.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// Whether `group`'s budget goes through the store.
    pub fn shares(&self, group: Group) -> bool {
        self.budgets[group.index()].is_some()
    }

    /// What the store did so far.
    pub fn counts(&self) -> StoreCounts {
        self.counts
    }

    /// The decision at the store's instant `now`: a ticket, or why not.
    pub fn decide(&mut self, group: Group, now: Instant) -> Option<Result<Ticket, Refusal>> {
        let ban = scope_index(group.scope()).map_or(Instant::ZERO, |s| self.bans[s]);
        let b = self.budgets[group.index()].as_mut()?;
        self.counts.decisions += 1;
        if now < ban {
            return Some(Err(Refusal::Banned(ban)));
        }
        if now < b.pause_until {
            return Some(Err(Refusal::Paused(b.pause_until)));
        }
        let decision = b.log.try_admit(now).map_err(Refusal::Full);
        if decision.is_ok() {
            self.counts.admitted += 1;
        }
        Some(decision)
    }

    /// The report of `ticket` at the store's instant `now`; `ban_until` is
    /// the end of a ban the process read from a 418.
    pub fn report(
        &mut self,
        group: Group,
        ticket: Ticket,
        ending: Ending,
        ban_until: Option<Instant>,
        now: Instant,
    ) {
        if let (Some(until), Some(s)) = (ban_until, scope_index(group.scope())) {
            self.bans[s] = self.bans[s].max(until);
        }
        let Some(b) = self.budgets[group.index()].as_mut() else {
            return;
        };
        self.counts.reports += 1;
        match ending {
            Ending::Response(status) => {
                b.log.report(ticket, now);
                if status == 429 {
                    b.pause_until = b.pause_until.max(now.saturating_add(b.longest));
                }
            }
            Ending::NoResponse => {
                b.log.no_response(ticket, now);
            }
        }
    }
}

/// A FIFO turn: one holder at a time, the others woken in the order they came.
#[derive(Debug, Default)]
pub struct Turn {
    busy: Cell<bool>,
    next_id: Cell<u64>,
    queue: RefCell<VecDeque<(u64, Option<Waker>)>>,
}

impl Turn {
    /// Waits for the turn; it is held until the returned guard is dropped.
    pub fn take(&self) -> TakeTurn<'_> {
        TakeTurn { turn: self, id: None }
    }
}

/// The future of [`Turn::take`].
#[derive(Debug)]
pub struct TakeTurn<'a> {
    turn: &'a Turn,
    id: Option<u64>,
}

/// Holds a [`Turn`] until dropped.
#[derive(Debug)]
pub struct TurnGuard<'a> {
    turn: &'a Turn,
}

impl<'a> Future for TakeTurn<'a> {
    type Output = TurnGuard<'a>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TurnGuard<'a>> {
        let turn = self.turn;
        let mut queue = turn.queue.borrow_mut();
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = turn.next_id.get();
                turn.next_id.set(id + 1);
                queue.push_back((id, None));
                self.id = Some(id);
                id
            }
        };
        if !turn.busy.get() && queue.front().is_some_and(|(first, _)| *first == id) {
            queue.pop_front();
            turn.busy.set(true);
            self.id = None;
            return Poll::Ready(TurnGuard { turn });
        }
        if let Some(entry) = queue.iter_mut().find(|(i, _)| *i == id) {
            entry.1 = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for TakeTurn<'_> {
    fn drop(&mut self) {
        // A waiter that leaves the queue passes its place on.
        if let Some(id) = self.id {
            let mut queue = self.turn.queue.borrow_mut();
            queue.retain(|(i, _)| *i != id);
            if !self.turn.busy.get() {
                if let Some((_, Some(w))) = queue.front() {
                    w.wake_by_ref();
                }
            }
        }
    }
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        self.turn.busy.set(false);
        if let Some((_, Some(w))) = self.turn.queue.borrow().front() {
            w.wake_by_ref();
        }
    }
}
