//! One run: a scenario against one server model under one policy.
//!
//! Every simulated client is a task on the [`Executor`]. A request goes
//! through the policy (for `ours`: the limiter's real `acquire` future),
//! is sent at the instant it is admitted, reaches the server after its
//! one-way delay (the task sleeps until then, so the server sees arrivals
//! in time order and decides at the arrival instant), and its response comes
//! back after the service time and the return delay, or not at all within
//! the client's timeout. The response, with its `Remaining-Req` header, is
//! reported back to the policy.
//!
//! Clients do not retry: a refused or rejected request is counted and the
//! client moves on to its next step.
//!
//! Each process of the scenario has its own admission (its own limiter);
//! with several processes and a limiter, a request the local limiter
//! admitted also asks the shared store ([`crate::store`]) before it is
//! sent, and its response is reported to both.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use upbit_limiter_core::breaker::BreakerState;
use upbit_limiter_core::{
    ConfigError, Duration, Feedback, Group, Instant, RateLimiter, Reason, Request, Response, Runtime,
};

use crate::budget::{self, PerSecond, Tally};
use crate::exec::{Executor, SimRuntime, Stall};
use crate::histogram::Histogram;
use crate::least_wait::{least_quantile, GroupTraffic};
use crate::oracle::Oracle;
use crate::policy::{BestPractice, Policy};
use crate::report::{
    ms as ms_of, Actors, Background, BreakerChange, GroupReport, LeastWaitMs, LocalRejections, RatioSpan,
    Report, Sla, Throughput, Violation, WaitMs,
};
use crate::report::{ProcessReport, Spread, StoreReport};
use crate::rng::{Draws, LOAD_STREAMS};
use crate::scenario::{Arrivals, Call, Scenario};
use crate::server::{Reply, Server, ServerModel, Source};
use crate::store::{Ending, Refusal, SharedStore, Turn, REPORT_POLL};

/// What to run a scenario with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// The server's window model.
    pub model: ServerModel,
    /// The admission policy.
    pub policy: Policy,
    /// The random seed behind every draw.
    pub seed: u64,
}

/// Where a run is, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Virtual time reached.
    pub now: Duration,
    /// When the scenario's traffic ends, if known.
    pub horizon: Duration,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RunError {
    /// The policy's limiter configuration was refused.
    Config(ConfigError),
    /// The simulation stopped making progress (a bug, in the simulator or the limiter).
    Stall(Stall),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "limiter configuration refused: {e}"),
            Self::Stall(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RunError {}

enum Admission {
    Limiter(Box<RateLimiter<SimRuntime>>),
    BestPractice(Box<BestPractice>),
    Oracle(Box<Oracle>),
    Unlimited,
}

const LOG_KEPT: usize = 12;

#[derive(Default)]
struct GroupStats {
    requests: u64,
    admitted: u64,
    ok: u64,
    no_response: u64,
    rejections: LocalRejections,
    waits: Histogram,
    /// When each request was wanted (ns of virtual time), for the least
    /// wait the limits allow.
    wanted: Vec<u64>,
    waiting: u64,
    max_waiting: u64,
    /// Since when some request of the group has been waiting, and how many
    /// were admitted after a wait since then.
    busy_since: Option<(Instant, u64)>,
    /// Spells of at least one window during which some request of the group
    /// was waiting: their total length (ns)...
    busy_ns: u64,
    /// ...and the requests admitted after a wait above zero within them.
    admitted_after_wait: u64,
    ratio_min_ppm: Option<u32>,
    breaker: Option<BreakerState>,
    transitions: u64,
    breaker_log: Vec<BreakerChange>,
    violations: Vec<Violation>,
}

impl GroupStats {
    /// Ends a spell of waiting from `since` to `until` in which `n` requests
    /// were admitted after a wait; only spells of at least one `window` count
    /// towards the throughput (a shorter one says little about the rate).
    fn close_backlog(&mut self, since: Instant, until: Instant, n: u64, window: Duration) {
        let length = until - since;
        if length >= window {
            self.busy_ns += length.as_nanos();
            self.admitted_after_wait += n;
        }
    }
}

/// One process's counts.
#[derive(Default)]
struct ProcessStats {
    requests: u64,
    admitted: u64,
    ok: u64,
    status_429: u64,
    status_418: u64,
    waits: Histogram,
    /// Admitted per group.
    per_group: Vec<u64>,
}

struct World {
    rt: SimRuntime,
    seed: u64,
    scenario: Scenario,
    server: RefCell<Server>,
    /// One per process (one for all, for a policy without a limiter).
    admissions: Vec<Admission>,
    store: Option<RefCell<SharedStore>>,
    /// One per process and group: whose turn it is to ask the store.
    turns: Vec<Turn>,
    processes: RefCell<Vec<ProcessStats>>,
    groups: RefCell<Vec<GroupStats>>,
    actors: RefCell<Actors>,
    seconds: RefCell<PerSecond>,
}

fn secs(t: Instant) -> f64 {
    (t.as_nanos() as f64 / 1e3).round() / 1e6
}

impl World {
    fn admission(&self, process: usize) -> &Admission {
        &self.admissions[process.min(self.admissions.len() - 1)]
    }

    /// Records a breaker transition of the limiter's group `g`.
    fn note_transition(&self, g: Group, from: BreakerState, to: BreakerState, at: Instant) {
        let mut groups = self.groups.borrow_mut();
        let s = &mut groups[g.index()];
        s.transitions += 1;
        s.breaker = Some(to);
        if s.breaker_log.len() < LOG_KEPT {
            s.breaker_log.push(BreakerChange {
                at_s: secs(at),
                from: from.as_str().to_owned(),
                to: to.as_str().to_owned(),
            });
        }
    }

    /// Notices breaker changes that happen lazily (open → half-open when
    /// the open period ends), which no feedback reports.
    /// (The breaker columns follow the first process.)
    fn sample_breaker(&self, g: Group, now: Instant) {
        let Admission::Limiter(l) = &self.admissions[0] else {
            return;
        };
        let state = l.limiter().group(g).status(now).breaker;
        let last = self.groups.borrow()[g.index()].breaker;
        match last {
            None => self.groups.borrow_mut()[g.index()].breaker = Some(state),
            Some(prev) if prev != state => self.note_transition(g, prev, state, now),
            Some(_) => {}
        }
    }

    fn on_feedback(&self, process: usize, g: Group, fb: &Feedback) {
        if let Some(t) = fb.transition.filter(|_| process == 0) {
            self.note_transition(g, t.from, t.to, t.at);
        }
        if let Some((_, after)) = fb.ratio_change {
            let mut groups = self.groups.borrow_mut();
            let s = &mut groups[g.index()];
            s.ratio_min_ppm = Some(s.ratio_min_ppm.map_or(after.ppm(), |m| m.min(after.ppm())));
        }
    }
}

enum Ticket<'a> {
    /// The local permit, and the store's ticket when the group is shared.
    Permit(
        upbit_limiter_core::Permit<&'a upbit_limiter_core::RateLimiter<SimRuntime>>,
        Option<upbit_limiter_core::interval_log::Ticket>,
    ),
    BestPractice(usize),
    Oracle,
    Unlimited,
}

/// Why a request was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    CircuitOpen,
    Banned,
    Timeout,
}

impl Refused {
    fn of(e: &upbit_limiter_core::AcquireError) -> Self {
        match e.reason() {
            Reason::CircuitOpen | Reason::ForcedOpen => Self::CircuitOpen,
            Reason::Banned => Self::Banned,
            _ => Self::Timeout,
        }
    }
}

/// The store's admission for a request the local limiter of `process`
/// admitted, as the Redis client asks for it: one asker per process and
/// group, a decision a round trip away, a wait for the instant a denial
/// names (or a bounded back-off while only requests in flight fill the
/// window), within the group's waiter timeout from `requested`.
async fn through_store(
    w: &World,
    store: &RefCell<SharedStore>,
    process: usize,
    g: Group,
    requested: Instant,
    waiter_timeout: Duration,
) -> Result<upbit_limiter_core::interval_log::Ticket, Refused> {
    let deadline = requested.saturating_add(waiter_timeout);
    let _turn = w.turns[process * Group::COUNT + g.index()].take().await;
    let rtt = store.borrow().rtt();
    let up = Duration::from_nanos(rtt.as_nanos() / 2);
    let down = rtt - up;
    let mut poll = Duration::from_nanos(REPORT_POLL.as_nanos() / 8)
        .max(Duration::from_micros(100))
        .min(REPORT_POLL);
    loop {
        let arrives = w.rt.now() + up;
        w.rt.sleep_until(arrives).await;
        let Some(decision) = store.borrow_mut().decide(g, arrives) else {
            return Err(Refused::Timeout);
        };
        w.rt.sleep_until(arrives + down).await;
        let (retry_at, by_report) = match decision {
            Ok(ticket) => return Ok(ticket),
            Err(Refusal::Banned(_)) => return Err(Refused::Banned),
            Err(Refusal::Paused(until)) => (until, false),
            Err(Refusal::Full(d)) => (d.retry_at(), d.waits_for_report()),
        };
        let room_in = retry_at.saturating_duration_since(arrives);
        let asked = w.rt.now();
        if asked.saturating_add(room_in) > deadline && !by_report {
            return Err(Refused::Timeout);
        }
        let sleep = if by_report {
            let s = poll.min(room_in);
            poll = poll.saturating_mul(2).min(REPORT_POLL);
            s
        } else {
            room_in
        };
        if asked.saturating_add(sleep) > deadline {
            return Err(Refused::Timeout);
        }
        w.rt.sleep_until(asked + sleep).await;
    }
}

/// One request of ours, from wanting to send it to reporting its response.
async fn request(w: &Rc<World>, call: &Call, id: u64, process: usize) {
    let g = call.group;
    let req = Request::http(&call.method, &call.path).correlation_id(id);
    let requested = w.rt.now();
    {
        let mut groups = w.groups.borrow_mut();
        let s = &mut groups[g.index()];
        s.requests += 1;
        s.wanted.push(requested.as_nanos());
        s.waiting += 1;
        s.max_waiting = s.max_waiting.max(s.waiting);
        if s.busy_since.is_none() {
            s.busy_since = Some((requested, 0));
        }
    }
    w.processes.borrow_mut()[process].requests += 1;
    let shared = w.store.as_ref().filter(|st| st.borrow().shares(g));
    let ticket = match w.admission(process) {
        Admission::Limiter(l) => match l.acquire_request(req).await {
            Ok(permit) => match shared {
                None => Ok(Ticket::Permit(permit, None)),
                Some(store) => {
                    let timeout = l.limiter().group(g).config().waiter_timeout;
                    // A refusal drops the local permit: its request ends there.
                    through_store(w, store, process, g, requested, timeout)
                        .await
                        .map(|t| Ticket::Permit(permit, Some(t)))
                }
            },
            Err(e) => Err(Refused::of(&e)),
        },
        Admission::BestPractice(bp) => {
            let idx = BestPractice::group_for(&call.method, &call.path);
            bp.acquire(&w.rt, idx).await;
            Ok(Ticket::BestPractice(idx))
        }
        Admission::Oracle(o) => {
            // The network's draw for this request does not depend on when it
            // is sent: its upward delay is known now.
            let probe = w.scenario.network.trip(w.seed, id, requested);
            if let Some(arrival) = probe.arrival {
                let up = arrival - requested;
                let booked = o.book(&w.server.borrow(), g, arrival);
                w.rt.sleep_until(booked - up).await;
            }
            Ok(Ticket::Oracle)
        }
        Admission::Unlimited => Ok(Ticket::Unlimited),
    };
    let sent = w.rt.now();
    let window = w.server.borrow().limit(g).window;
    {
        let mut groups = w.groups.borrow_mut();
        let s = &mut groups[g.index()];
        s.waiting -= 1;
        if let (Ok(_), Some((_, n))) = (&ticket, s.busy_since.as_mut()) {
            if sent > requested {
                *n += 1;
            }
        }
        if s.waiting == 0 {
            if let Some((since, n)) = s.busy_since.take() {
                s.close_backlog(since, sent, n, window);
            }
        }
        match &ticket {
            Ok(_) => {
                s.admitted += 1;
                s.waits.record(sent - requested);
                let mut procs = w.processes.borrow_mut();
                let ps = &mut procs[process];
                ps.admitted += 1;
                ps.per_group[g.index()] += 1;
                ps.waits.record(sent - requested);
            }
            Err(Refused::CircuitOpen) => s.rejections.circuit_open += 1,
            Err(Refused::Banned) => s.rejections.banned += 1,
            Err(Refused::Timeout) => s.rejections.timeout += 1,
        }
    }
    if process == 0 {
        w.sample_breaker(req.group, sent);
    }
    let Ok(ticket) = ticket else {
        return;
    };

    let trip = w.scenario.network.trip(w.seed, id, sent);
    let reply: Option<Reply> = match trip.arrival {
        Some(arrival) => {
            w.rt.sleep_until(arrival).await;
            let reply = w.server.borrow_mut().handle(arrival, g, Source::Ours);
            if let Admission::Oracle(o) = w.admission(process) {
                o.arrived(g, arrival);
            }
            {
                let mut seconds = w.seconds.borrow_mut();
                match reply.status {
                    200 => seconds.record(g, arrival, Tally::Ok),
                    429 => seconds.record(g, arrival, Tally::Rejected),
                    418 => {
                        seconds.record(g, arrival, Tally::Rejected);
                        seconds.record(g, arrival, Tally::Blocked);
                    }
                    _ => {}
                }
            }
            if matches!(reply.status, 429 | 418) {
                let mut groups = w.groups.borrow_mut();
                let s = &mut groups[g.index()];
                if s.violations.len() < LOG_KEPT {
                    s.violations.push(Violation {
                        sent_s: secs(sent),
                        arrival_s: secs(arrival),
                        status: reply.status,
                    });
                }
            }
            Some(reply)
        }
        None => None,
    };
    let delivered = match (trip.response, reply.as_ref()) {
        (Some(back), Some(r)) => {
            w.rt.sleep_until(back).await;
            Some(r)
        }
        _ => {
            w.rt.sleep_until(trip.gives_up).await;
            None
        }
    };
    let now = w.rt.now();
    {
        let mut groups = w.groups.borrow_mut();
        let s = &mut groups[g.index()];
        match delivered {
            Some(r) if r.status == 200 => s.ok += 1,
            Some(_) => {}
            None => s.no_response += 1,
        }
        let mut procs = w.processes.borrow_mut();
        let ps = &mut procs[process];
        match reply.as_ref().map(|r| r.status) {
            Some(200) => ps.ok += 1,
            Some(429) => ps.status_429 += 1,
            Some(418) => ps.status_418 += 1,
            _ => {}
        }
    }
    match ticket {
        Ticket::Permit(permit, store_ticket) => {
            let lg = permit.group();
            let response = match delivered {
                Some(r) => {
                    let mut resp = Response::status(r.status);
                    // `Remaining-Req` counts every sharer's requests: the
                    // local limiter would read the others as foreign traffic
                    // (the Redis limiter withholds it the same way).
                    if store_ticket.is_none() {
                        resp.remaining_req = r.remaining_req.as_deref();
                    }
                    resp.body = r.body.as_deref();
                    resp
                }
                None => Response::no_response(),
            };
            let fb = permit.report_with_feedback(response);
            w.on_feedback(process, lg, &fb);
            if process == 0 {
                w.sample_breaker(lg, now);
            }
            if let Some(t) = store_ticket {
                let ending = delivered.map_or(Ending::NoResponse, |r| Ending::Response(r.status));
                let ban = fb.banned_until.max(fb.scope_ban_until);
                let world = Rc::clone(w);
                w.rt.spawn(async move {
                    let Some(store) = world.store.as_ref() else {
                        return;
                    };
                    let rtt = store.borrow().rtt();
                    let at = world.rt.now() + Duration::from_nanos(rtt.as_nanos() / 2);
                    world.rt.sleep_until(at).await;
                    store.borrow_mut().report(g, t, ending, ban, at);
                });
            }
        }
        Ticket::BestPractice(idx) => {
            if let (Some(r), Admission::BestPractice(bp)) = (delivered, w.admission(process)) {
                if let Some(h) = &r.remaining_req {
                    bp.update_from_header(now, h);
                }
                if r.status == 429 {
                    bp.mark_exhausted(now, idx);
                }
            }
        }
        Ticket::Oracle | Ticket::Unlimited => {}
    }
}

/// A request of the other process: no limiter, nobody waits for the answer.
async fn background_request(w: &World, call: &Call, id: u64) {
    let trip = w.scenario.network.trip(w.seed, id, w.rt.now());
    if let Some(arrival) = trip.arrival {
        w.rt.sleep_until(arrival).await;
        let reply = w
            .server
            .borrow_mut()
            .handle(arrival, call.group, Source::Background);
        let mut seconds = w.seconds.borrow_mut();
        seconds.record(call.group, arrival, Tally::Background);
        match reply.status {
            429 => seconds.record(call.group, arrival, Tally::BackgroundRefused),
            418 => seconds.record(call.group, arrival, Tally::Blocked),
            _ => {}
        }
    }
}

fn request_id(source: u32, n: u32) -> u64 {
    (u64::from(source) << 32) | u64::from(n)
}

/// One closed-loop client: rounds of steps, each request after the previous response.
async fn actor(w: Rc<World>, a: usize, i: u32, source: u32) {
    let spec = &w.scenario.actors[a];
    let start = Instant::ZERO + spec.start + spec.stagger.saturating_mul(u64::from(i));
    w.rt.sleep_until(start).await;
    w.actors.borrow_mut().started += 1;
    let mut n = 0u32;
    let mut round = start;
    loop {
        for step in &spec.steps {
            for _ in 0..step.repeat {
                request(&w, &step.call, request_id(source, n), spec.process).await;
                n = n.wrapping_add(1);
                if !step.gap.is_zero() {
                    let until = w.rt.now() + step.gap;
                    w.rt.sleep_until(until).await;
                }
            }
        }
        let (Some(every), Some(until)) = (spec.every, spec.until) else {
            break;
        };
        // The next round starts a period after this one did; a round that
        // overran starts the next at once, without catching up on missed ones.
        round = (round + every).max(w.rt.now());
        if round >= Instant::ZERO + until {
            break;
        }
        w.rt.sleep_until(round).await;
    }
    w.actors.borrow_mut().finished += 1;
}

/// One open-loop generator: spawns a request at each arrival of its process
/// (`burst` of them at once for bursty arrivals).
async fn load(w: Rc<World>, l: usize, source: u32) {
    let spec = &w.scenario.loads[l];
    let mut draws = Draws::new(w.seed, LOAD_STREAMS | l as u64);
    let total_weight: u64 = spec.mix.iter().map(|(_, wt)| u64::from(*wt)).sum();
    let mut t = spec.start;
    let mut n = 0u32;
    while t < spec.until {
        let rate = spec.rate_at(t);
        let change = spec.next_change(t);
        if rate <= 0.0 {
            t = change;
            continue;
        }
        let mean = Duration::from_nanos((60e9 / rate) as u64).max(Duration::from_nanos(1));
        let gap = match spec.arrivals {
            Arrivals::Poisson => draws.exponential(mean),
            Arrivals::Uniform => mean,
            // A clump of `burst` calls every `burst` mean gaps: the same rate.
            Arrivals::Bursty => mean.saturating_mul(u64::from(spec.burst)),
        };
        if t + gap >= change {
            // The rate changes first: start afresh from there (exact for
            // Poisson arrivals, which are memoryless).
            t = change;
            continue;
        }
        t = t + gap;
        w.rt.sleep_until(Instant::ZERO + t).await;
        for _ in 0..spec.burst {
            let mut pick = draws.below(total_weight);
            let mut k = 0;
            while k + 1 < spec.mix.len() && pick >= u64::from(spec.mix[k].1) {
                pick -= u64::from(spec.mix[k].1);
                k += 1;
            }
            let id = request_id(source, n);
            n = n.wrapping_add(1);
            let world = Rc::clone(&w);
            let background = spec.background;
            let process = spec.process;
            w.rt.spawn(async move {
                let call = &world.scenario.loads[l].mix[k].0;
                if background {
                    background_request(&world, call, id).await;
                } else {
                    request(&world, call, id, process).await;
                }
            });
        }
    }
}

/// When the scenario's traffic ends (the last start or `until`).
pub fn horizon(s: &Scenario) -> Duration {
    if let Some(d) = s.duration {
        return d;
    }
    let actors = s.actors.iter().map(|a| {
        let last_start = a.start + a.stagger.saturating_mul(u64::from(a.count.saturating_sub(1)));
        a.until.unwrap_or(Duration::ZERO).max(last_start)
    });
    let loads = s.loads.iter().map(|l| l.until);
    actors.chain(loads).max().unwrap_or(Duration::ZERO)
}

/// Grace after the traffic ends for requests still in flight, when the
/// scenario sets no hard stop. Longer than any waiter deadline plus timeout.
const DRAIN: Duration = Duration::from_secs(3_600);

fn limit_label(limit: upbit_limiter_core::ServerLimit) -> String {
    let w = limit.window.as_nanos();
    if w % 1_000_000_000 == 0 {
        format!("{}/{}s", limit.max_requests, w / 1_000_000_000)
    } else {
        format!("{}/{}ms", limit.max_requests, w / 1_000_000)
    }
}

/// Runs `scenario` with `opts`. `progress` is called now and then with the
/// virtual time reached; it cannot change the outcome.
pub fn run(
    scenario: &Scenario,
    opts: &RunOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, RunError> {
    let wall = std::time::Instant::now();
    let mut ex = Executor::new();
    let rt = ex.runtime();
    let processes = scenario.processes.len().max(1);
    let config = opts.policy.limiter_config(scenario.preset);
    let mut admissions = Vec::new();
    for _ in 0..processes {
        admissions.push(match &config {
            Some(cfg) => Admission::Limiter(Box::new(
                RateLimiter::with_runtime(cfg, rt.clone()).map_err(RunError::Config)?,
            )),
            None if opts.policy == Policy::BestPractice => Admission::BestPractice(Box::default()),
            None if opts.policy == Policy::Oracle => Admission::Oracle(Box::default()),
            None => Admission::Unlimited,
        });
    }
    if opts.policy == Policy::Oracle {
        // The clairvoyant books for every process at once: one for all.
        admissions.truncate(1);
    }
    let store = match &config {
        Some(cfg) if scenario.uses_store() => Some(RefCell::new(SharedStore::new(cfg, scenario.store.rtt))),
        _ => None,
    };
    let mut server = Server::new(
        scenario.preset,
        opts.model,
        scenario.server.fixed_phase,
        scenario.server.escalation,
    );
    if !scenario.server.remaining_req {
        server = server.without_remaining_req();
    }
    for c in &scenario.limit_changes {
        server.change_limits(Instant::ZERO + c.at, c.group, c.limits.clone());
    }
    let world = Rc::new(World {
        rt,
        seed: opts.seed,
        scenario: scenario.clone(),
        server: RefCell::new(server),
        admissions,
        store,
        turns: (0..processes * Group::COUNT).map(|_| Turn::default()).collect(),
        processes: RefCell::new(
            (0..processes)
                .map(|_| ProcessStats {
                    per_group: vec![0; Group::COUNT],
                    ..ProcessStats::default()
                })
                .collect(),
        ),
        groups: RefCell::new((0..Group::COUNT).map(|_| GroupStats::default()).collect()),
        actors: RefCell::new(Actors::default()),
        seconds: RefCell::new(PerSecond::new()),
    });

    let mut source = 0u32;
    for (a, spec) in scenario.actors.iter().enumerate() {
        for i in 0..spec.count {
            source += 1;
            ex.spawn(actor(Rc::clone(&world), a, i, source));
        }
    }
    for l in 0..scenario.loads.len() {
        source += 1;
        ex.spawn(load(Rc::clone(&world), l, source));
    }

    let horizon = horizon(scenario);
    let stop_at = Instant::ZERO
        + match scenario.duration {
            Some(d) => d,
            None => horizon.saturating_add(DRAIN),
        };
    ex.run(stop_at, |now| {
        progress(Progress {
            now: now - Instant::ZERO,
            horizon,
        })
    })
    .map_err(RunError::Stall)?;
    let end = ex.now();
    drop(ex);

    let server = world.server.borrow();
    let stats = world.groups.borrow();
    let mut all_waits = Histogram::new();
    let mut groups = Vec::new();
    let mut background = Background::default();
    for g in Group::ALL {
        let s = &stats[g.index()];
        let load = server.load(g);
        if s.requests == 0 && load.background_arrived == 0 {
            continue;
        }
        all_waits.merge(&s.waits);
        background.requests += load.background_arrived;
        background.rejected += load.background_rejected;
        let status = match &world.admissions[0] {
            Admission::Limiter(l) => Some(l.limiter().group(g).status(end)),
            _ => None,
        };
        let limit = server.limit(g);
        let limit_per_s = f64::from(limit.max_requests) / (limit.window.as_nanos().max(1) as f64 / 1e9);
        let mut backlog = GroupStats {
            busy_ns: s.busy_ns,
            admitted_after_wait: s.admitted_after_wait,
            ..GroupStats::default()
        };
        if let Some((since, n)) = s.busy_since {
            backlog.close_backlog(since, end, n, limit.window);
        }
        let throughput = Throughput::measure(backlog.admitted_after_wait, backlog.busy_ns, limit_per_s);
        groups.push(GroupReport {
            group: g.as_str().to_owned(),
            limit: limit_label(limit),
            requests: s.requests,
            admitted: s.admitted,
            ok: s.ok,
            status_429: load.status_429,
            status_418: load.status_418,
            no_response: s.no_response,
            local_rejections: s.rejections,
            wait_ms: WaitMs::from_histogram(&s.waits),
            utilisation: (load.peak_share * 1000.0).round() / 1000.0,
            max_queue_depth: s.max_waiting,
            throughput,
            breaker_transitions: status.map(|_| s.transitions),
            breaker_log: s.breaker_log.clone(),
            breaker_final: status.map(|st| st.breaker.as_str().to_owned()),
            ratio: status.map(|st| {
                let last = st.ratio.ppm();
                let min = s.ratio_min_ppm.map_or(last, |m| m.min(last));
                RatioSpan {
                    min: f64::from(min) / 1e6,
                    last: f64::from(last) / 1e6,
                }
            }),
            header_tightenings: status.map(|st| st.counters.header_tightenings),
            background: Background {
                requests: load.background_arrived,
                rejected: load.background_rejected,
            },
            first_violations: s.violations.clone(),
        });
    }
    let sum = |f: fn(&GroupReport) -> u64| groups.iter().map(f).sum::<u64>();
    let total_admitted = sum(|g| g.admitted);
    let total_429 = sum(|g| g.status_429);
    let total_418 = sum(|g| g.status_418);
    let wait_ms = WaitMs::from_histogram(&all_waits);
    let actors = *world.actors.borrow();
    let traffic: Vec<GroupTraffic> = Group::ALL
        .iter()
        .map(|&g| GroupTraffic {
            limits: scenario.preset.limits(g).to_vec(),
            wanted: stats[g.index()].wanted.clone(),
        })
        .collect();
    let least = |q| ms_of(least_quantile(&traffic, q));
    let least = LeastWaitMs {
        p50: least(0.50),
        p95: least(0.95),
        p99: least(0.99),
    };
    let sla = Sla::evaluate(total_admitted, total_429 + total_418, &wait_ms, &least);
    let traffic_end = horizon.min(end - Instant::ZERO);
    let seconds = world.seconds.borrow();
    let co_tenants = budget::co_tenants(scenario, &seconds, traffic_end);
    let limit_changes = budget::limit_changes(scenario, &seconds, traffic_end);
    let (processes, spread) = if scenario.processes.len() > 1 {
        process_reports(scenario, &world.processes.borrow(), &groups)
    } else {
        (Vec::new(), Vec::new())
    };
    let store = world.store.as_ref().map(|st| {
        let st = st.borrow();
        let c = st.counts();
        StoreReport {
            rtt_ms: ms_of(st.rtt()),
            decisions: c.decisions,
            admitted: c.admitted,
            reports: c.reports,
            decisions_per_admission: if c.admitted == 0 {
                0.0
            } else {
                (c.decisions as f64 / c.admitted as f64 * 1000.0).round() / 1000.0
            },
        }
    });
    Ok(Report {
        scenario: scenario.name.clone(),
        server_model: opts.model.as_str().to_owned(),
        policy: opts.policy.as_str().to_owned(),
        seed: opts.seed,
        preset: scenario.preset.as_str().to_owned(),
        network: scenario.network.profile.as_str().to_owned(),
        delay_ms: scenario.network.delay.as_nanos() as f64 / 1e6,
        jitter_ms: scenario.network.jitter.as_nanos() as f64 / 1e6,
        stall_chance: scenario.network.stalls.chance,
        stall_ms: [
            ms_of(scenario.network.stalls.min),
            ms_of(scenario.network.stalls.max),
        ],
        virtual_seconds: secs(end),
        wall_ms: (wall.elapsed().as_secs_f64() * 1e4).round() / 10.0,
        total_requests: sum(|g| g.requests),
        total_admitted,
        total_429,
        total_418,
        total_no_response: sum(|g| g.no_response),
        total_local_rejections: groups.iter().map(|g| g.local_rejections.total()).sum(),
        background,
        actors,
        wait_ms,
        sla,
        groups,
        co_tenants,
        limit_changes,
        processes,
        spread,
        store,
    })
}

/// Per process: what it sent and waited; per group that saw traffic: the
/// most and least any process got admitted.
fn process_reports(
    scenario: &Scenario,
    stats: &[ProcessStats],
    groups: &[GroupReport],
) -> (Vec<ProcessReport>, Vec<Spread>) {
    let processes = scenario
        .processes
        .iter()
        .zip(stats)
        .map(|(name, p)| ProcessReport {
            name: name.clone(),
            requests: p.requests,
            admitted: p.admitted,
            ok: p.ok,
            status_429: p.status_429,
            status_418: p.status_418,
            wait_ms: WaitMs::from_histogram(&p.waits),
            admitted_per_group: Group::ALL
                .iter()
                .filter(|g| p.per_group[g.index()] > 0)
                .map(|g| (g.as_str().to_owned(), p.per_group[g.index()]))
                .collect(),
        })
        .collect();
    let spread = groups
        .iter()
        .filter_map(|gr| {
            let g: Group = gr.group.parse().ok()?;
            // Only the processes that call the group.
            let counts: Vec<u64> = scenario
                .processes
                .iter()
                .enumerate()
                .filter(|(p, _)| calls(scenario, *p, g))
                .map(|(p, _)| stats[p].per_group[g.index()])
                .collect();
            let most = *counts.iter().max()?;
            let least = *counts.iter().min()?;
            Some(Spread {
                group: gr.group.clone(),
                processes: counts.len(),
                most,
                least,
                least_of_most: if most == 0 {
                    1.0
                } else {
                    (least as f64 / most as f64 * 1000.0).round() / 1000.0
                },
            })
        })
        .collect();
    (processes, spread)
}

/// Whether process `p` has a client that calls group `g`.
fn calls(s: &Scenario, p: usize, g: Group) -> bool {
    s.actors
        .iter()
        .any(|a| a.process == p && a.steps.iter().any(|st| st.call.group == g))
        || s.loads
            .iter()
            .any(|l| !l.background && l.process == p && l.mix.iter().any(|(c, _)| c.group == g))
}
