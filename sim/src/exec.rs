//! A deterministic single-threaded executor over exact virtual time.
//!
//! Tasks run in the order they became ready; time only moves when no task is
//! ready, and then jumps straight to the earliest timer. Timers that fall due
//! at the same instant fire in the order they were set. Nothing here reads a
//! clock or a random source, so a run is a pure function of its inputs.
//!
//! Time is kept in whole nanoseconds (tokio's timer wheel would round every
//! wake-up to a millisecond), so the limiter's emission intervals and the
//! network's jitter are simulated exactly.
//!
//! [`SimRuntime`] implements the core's [`Runtime`], so the simulated clients
//! wait through the real `RateLimiter::acquire` future.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use upbit_limiter_core::{Instant, Runtime};

/// A task: a boxed future with nothing to return.
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Why a run stopped before every task finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stall {
    /// Tasks are left but none is ready and no timer is set: they wait on
    /// something that can never happen.
    Deadlock {
        /// Tasks still alive.
        tasks: usize,
        /// The virtual time it happened.
        at: Instant,
    },
    /// More polls happened at one instant than `max_polls_per_instant`:
    /// tasks wake each other without time moving on.
    Livelock {
        /// The virtual time it happened.
        at: Instant,
    },
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deadlock { tasks, at } => write!(
                f,
                "simulation deadlock at {:.3} s: {tasks} task(s) wait with no timer set",
                at.as_nanos() as f64 / 1e9
            ),
            Self::Livelock { at } => write!(
                f,
                "simulation livelock at {:.3} s: tasks keep waking each other without time passing",
                at.as_nanos() as f64 / 1e9
            ),
        }
    }
}

impl std::error::Error for Stall {}

/// The state tasks and timers share: the clock, the timer heap and the queue
/// of tasks spawned from inside other tasks.
struct Shared {
    now: Cell<Instant>,
    timers: RefCell<BinaryHeap<Reverse<TimerEntry>>>,
    timer_seq: Cell<u64>,
    spawned: RefCell<Vec<Task>>,
}

struct TimerEntry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The ready queue. `Waker` must be `Send + Sync`, so it is behind a mutex
/// even though only one thread ever touches it (uncontended, so cheap).
#[derive(Default)]
struct ReadyQueue(Mutex<VecDeque<usize>>);

impl ReadyQueue {
    fn push(&self, id: usize) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push_back(id);
    }
    fn pop(&self) -> Option<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }
}

/// One task's waker. `queued` keeps a task in the ready queue at most once;
/// `done` turns wakes of a finished task (stale timers) into no-ops, so a
/// reused slot is never woken on someone else's behalf.
struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    done: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.done.load(Ordering::Relaxed) && !self.queued.swap(true, Ordering::Relaxed) {
            self.ready.push(self.id);
        }
    }
}

struct Slot {
    task: Task,
    waker: Arc<TaskWaker>,
}

/// The executor. Build it, [`spawn`](Self::spawn) tasks (also from inside
/// tasks, through [`SimRuntime::spawn`]), then [`run`](Self::run).
pub struct Executor {
    shared: Rc<Shared>,
    ready: Arc<ReadyQueue>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    live: usize,
    polls: u64,
    max_polls_per_instant: u64,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("now", &self.shared.now.get())
            .field("live", &self.live)
            .field("polls", &self.polls)
            .finish_non_exhaustive()
    }
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor {
    /// An executor at virtual time zero.
    pub fn new() -> Self {
        Self {
            shared: Rc::new(Shared {
                now: Cell::new(Instant::ZERO),
                timers: RefCell::new(BinaryHeap::new()),
                timer_seq: Cell::new(0),
                spawned: RefCell::new(Vec::new()),
            }),
            ready: Arc::new(ReadyQueue::default()),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            polls: 0,
            max_polls_per_instant: 10_000_000,
        }
    }

    /// The runtime handle tasks use for time, sleeping and spawning.
    pub fn runtime(&self) -> SimRuntime {
        SimRuntime {
            shared: Rc::clone(&self.shared),
        }
    }

    /// Adds a task; it first runs when [`run`](Self::run) is called.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + 'static) {
        self.insert(Box::pin(task));
    }

    fn insert(&mut self, task: Task) {
        let id = self.free.pop().unwrap_or(self.slots.len());
        let waker = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(true),
            done: AtomicBool::new(false),
            ready: Arc::clone(&self.ready),
        });
        let slot = Some(Slot { task, waker });
        if id == self.slots.len() {
            self.slots.push(slot);
        } else {
            self.slots[id] = slot;
        }
        self.live += 1;
        self.ready.push(id);
    }

    /// Tasks not yet finished.
    pub fn live_tasks(&self) -> usize {
        self.live
    }

    /// Total polls so far (a measure of work done).
    pub fn polls(&self) -> u64 {
        self.polls
    }

    /// Virtual now.
    pub fn now(&self) -> Instant {
        self.shared.now.get()
    }

    /// Runs until every task has finished, or virtual time would pass
    /// `stop_at` (then the remaining tasks are dropped and the clock stays at
    /// `stop_at`). `tick` is called with the virtual time every few thousand
    /// polls (for progress display; it must not influence the run).
    pub fn run(&mut self, stop_at: Instant, mut tick: impl FnMut(Instant)) -> Result<(), Stall> {
        let mut polls_here = 0u64;
        loop {
            self.adopt_spawned();
            while let Some(id) = self.ready.pop() {
                self.poll_task(id);
                polls_here += 1;
                if polls_here > self.max_polls_per_instant {
                    return Err(Stall::Livelock { at: self.now() });
                }
                if self.polls % 4096 == 0 {
                    tick(self.now());
                }
                self.adopt_spawned();
            }
            if self.live == 0 {
                return Ok(());
            }
            // Nothing ready: jump to the earliest timer and fire every timer due then.
            let next = match self.shared.timers.borrow().peek() {
                Some(Reverse(entry)) => entry.at,
                None => {
                    return Err(Stall::Deadlock {
                        tasks: self.live,
                        at: self.now(),
                    })
                }
            };
            if next > stop_at {
                self.shared.now.set(stop_at.max(self.now()));
                self.drop_all();
                return Ok(());
            }
            if next > self.now() {
                self.shared.now.set(next);
                polls_here = 0;
            }
            loop {
                let entry = {
                    let mut timers = self.shared.timers.borrow_mut();
                    match timers.peek() {
                        Some(Reverse(e)) if e.at <= next => timers.pop(),
                        _ => None,
                    }
                };
                match entry {
                    Some(Reverse(e)) => e.waker.wake(),
                    None => break,
                }
            }
        }
    }

    fn adopt_spawned(&mut self) {
        if self.shared.spawned.borrow().is_empty() {
            return;
        }
        let spawned = std::mem::take(&mut *self.shared.spawned.borrow_mut());
        for task in spawned {
            self.insert(task);
        }
    }

    fn poll_task(&mut self, id: usize) {
        let Some(slot) = self.slots.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        slot.waker.queued.store(false, Ordering::Relaxed);
        let waker = Waker::from(Arc::clone(&slot.waker));
        let mut cx = Context::from_waker(&waker);
        self.polls += 1;
        if slot.task.as_mut().poll(&mut cx).is_ready() {
            slot.waker.done.store(true, Ordering::Relaxed);
            self.slots[id] = None;
            self.free.push(id);
            self.live -= 1;
        }
    }

    fn drop_all(&mut self) {
        for slot in self.slots.iter_mut() {
            if let Some(s) = slot.take() {
                s.waker.done.store(true, Ordering::Relaxed);
            }
        }
        self.slots.clear();
        self.free.clear();
        self.live = 0;
        self.shared.timers.borrow_mut().clear();
        while self.ready.pop().is_some() {}
    }
}

/// The handle tasks hold: virtual now, sleeping, spawning.
#[derive(Clone)]
pub struct SimRuntime {
    shared: Rc<Shared>,
}

impl fmt::Debug for SimRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRuntime")
            .field("now", &self.shared.now.get())
            .finish()
    }
}

impl SimRuntime {
    /// Runs `task` concurrently, starting at the current instant.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.shared.spawned.borrow_mut().push(Box::pin(task));
    }
}

impl Runtime for SimRuntime {
    type Sleep = Sleep;
    type Instant = Instant;
    fn core_instant(&self, at: Instant) -> Instant {
        at
    }
    fn runtime_instant(&self, at: Instant) -> Instant {
        at
    }

    fn now(&self) -> Instant {
        self.shared.now.get()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep {
            shared: Rc::clone(&self.shared),
            deadline,
            registered: false,
        }
    }
}

/// A future that completes when virtual time reaches its deadline.
pub struct Sleep {
    shared: Rc<Shared>,
    deadline: Instant,
    registered: bool,
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep").field("deadline", &self.deadline).finish()
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.now.get() >= self.deadline {
            return Poll::Ready(());
        }
        if !self.registered {
            // Only this executor's tasks poll a Sleep, and a task's waker never
            // changes, so one registration is enough.
            self.registered = true;
            let seq = self.shared.timer_seq.get();
            self.shared.timer_seq.set(seq + 1);
            self.shared.timers.borrow_mut().push(Reverse(TimerEntry {
                at: self.deadline,
                seq,
                waker: cx.waker().clone(),
            }));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upbit_limiter_core::Duration;

    fn ms(n: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(n)
    }

    #[test]
    fn timers_fire_in_time_then_set_order() {
        let mut ex = Executor::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        for (name, at) in [("c", 30), ("a", 10), ("b", 10), ("d", 20)] {
            let rt = ex.runtime();
            let log = Rc::clone(&log);
            ex.spawn(async move {
                rt.sleep_until(ms(at)).await;
                log.borrow_mut().push((name, rt.now()));
            });
        }
        ex.run(Instant::MAX, |_| {}).unwrap();
        assert_eq!(
            *log.borrow(),
            vec![("a", ms(10)), ("b", ms(10)), ("d", ms(20)), ("c", ms(30))]
        );
        assert_eq!(ex.now(), ms(30));
        assert_eq!(ex.live_tasks(), 0);
    }

    #[test]
    fn spawned_tasks_start_at_the_spawn_instant() {
        let mut ex = Executor::new();
        let rt = ex.runtime();
        let seen = Rc::new(Cell::new(Instant::ZERO));
        let s = Rc::clone(&seen);
        ex.spawn(async move {
            rt.sleep_until(ms(7)).await;
            let inner = rt.clone();
            rt.spawn(async move { s.set(inner.now()) });
        });
        ex.run(Instant::MAX, |_| {}).unwrap();
        assert_eq!(seen.get(), ms(7));
    }

    #[test]
    fn stop_at_drops_the_rest() {
        let mut ex = Executor::new();
        let rt = ex.runtime();
        let done = Rc::new(Cell::new(false));
        let d = Rc::clone(&done);
        ex.spawn(async move {
            rt.sleep_until(ms(100)).await;
            d.set(true);
        });
        ex.run(ms(50), |_| {}).unwrap();
        assert!(!done.get());
        assert_eq!(ex.now(), ms(50));
        assert_eq!(ex.live_tasks(), 0);
    }

    #[test]
    fn a_task_waiting_on_nothing_is_a_deadlock() {
        let mut ex = Executor::new();
        ex.spawn(std::future::pending::<()>());
        assert_eq!(
            ex.run(Instant::MAX, |_| {}),
            Err(Stall::Deadlock {
                tasks: 1,
                at: Instant::ZERO
            })
        );
    }
}
