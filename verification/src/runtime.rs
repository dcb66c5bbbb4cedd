//! A virtual-time [`Runtime`] and a tiny single-threaded executor for the
//! core's async wait layer, so that waiting is tested without a real clock.
//!
//! The executor polls every live task (in a shuffled order each round, so no
//! task is favoured by position) until none completes at the current instant,
//! then moves the clock to the earliest timer any task asked for. Wakers are
//! no-ops: every task is polled every round, which is a superset of what any
//! wake-up would cause, so a task that stays pending here stays pending for a
//! real runtime too.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use upbit_limiter_core::{Clock, Instant, ManualClock, Runtime};

/// Virtual time shared by the runtime, its timers and the executor.
#[derive(Clone, Debug, Default)]
pub struct VirtualRuntime {
    clock: ManualClock,
    timers: Rc<RefCell<Vec<Instant>>>,
}

impl VirtualRuntime {
    /// A runtime whose clock starts at `start`.
    pub fn starting_at(start: Instant) -> Self {
        Self {
            clock: ManualClock::starting_at(start),
            timers: Rc::default(),
        }
    }

    /// The clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }
}

/// The future of [`VirtualRuntime::sleep_until`].
#[derive(Debug)]
pub struct VirtualSleep {
    deadline: Instant,
    clock: ManualClock,
    timers: Rc<RefCell<Vec<Instant>>>,
}

impl Future for VirtualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now() >= self.deadline {
            Poll::Ready(())
        } else {
            self.timers.borrow_mut().push(self.deadline);
            Poll::Pending
        }
    }
}

impl Runtime for VirtualRuntime {
    type Sleep = VirtualSleep;
    type Instant = Instant;
    fn core_instant(&self, at: Instant) -> Instant {
        at
    }
    fn runtime_instant(&self, at: Instant) -> Instant {
        at
    }
    fn now(&self) -> Instant {
        self.clock.now()
    }
    fn sleep_until(&self, deadline: Instant) -> VirtualSleep {
        VirtualSleep {
            deadline,
            clock: self.clock.clone(),
            timers: Rc::clone(&self.timers),
        }
    }
}

/// A task for [`run_tasks`]: a future first polled at `start`.
pub struct Task<'a, T> {
    /// When the task starts (is first polled).
    pub start: Instant,
    /// The work.
    pub future: Pin<Box<dyn Future<Output = T> + 'a>>,
}

impl<T> std::fmt::Debug for Task<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

/// A small deterministic permutation source (xorshift).
fn shuffle(order: &mut [usize], state: &mut u64) {
    for i in (1..order.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let j = (*state % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

/// Runs `tasks` on `rt`'s virtual time until all have finished or nothing
/// can make progress. Returns each task's result with the instant it
/// finished; `None` for a task that never finished (it waited for no timer,
/// or `max_rounds` ran out). `seed` picks the polling orders.
pub fn run_tasks<T>(
    rt: &VirtualRuntime,
    tasks: Vec<Task<'_, T>>,
    seed: u64,
    max_rounds: usize,
) -> Vec<Option<(Instant, T)>> {
    let mut futures: Vec<Option<Pin<Box<dyn Future<Output = T> + '_>>>> = Vec::new();
    let mut starts = Vec::new();
    for t in tasks {
        starts.push(t.start);
        futures.push(Some(t.future));
    }
    let mut results: Vec<Option<(Instant, T)>> = futures.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let mut state = seed | 1;
    let mut order: Vec<usize> = (0..futures.len()).collect();
    for _ in 0..max_rounds {
        let now = rt.clock.now();
        rt.timers.borrow_mut().clear();
        let mut completed = false;
        shuffle(&mut order, &mut state);
        for &i in &order {
            if starts[i] > now {
                continue;
            }
            let Some(fut) = futures[i].as_mut() else { continue };
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                results[i] = Some((now, out));
                futures[i] = None;
                completed = true;
            }
        }
        if futures.iter().all(Option::is_none) {
            break;
        }
        if completed {
            continue;
        }
        let timer = rt.timers.borrow().iter().copied().filter(|&t| t > now).min();
        let start = starts
            .iter()
            .zip(&futures)
            .filter(|(s, f)| f.is_some() && **s > now)
            .map(|(s, _)| *s)
            .min();
        let next = match (timer, start) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        rt.clock.set(next);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use upbit_limiter_core::Duration;

    #[test]
    fn sleeps_complete_on_virtual_time_in_deadline_order() {
        let rt = VirtualRuntime::starting_at(Instant::from_nanos(10));
        let tasks: Vec<Task<'_, u64>> = [300u64, 100, 200]
            .into_iter()
            .map(|ms| {
                let sleep = rt.sleep_until(Instant::from_nanos(10) + Duration::from_millis(ms));
                Task {
                    start: Instant::ZERO,
                    future: Box::pin(async move {
                        sleep.await;
                        ms
                    }),
                }
            })
            .collect();
        let out = run_tasks(&rt, tasks, 7, 100);
        let finished: Vec<u64> = out
            .iter()
            .map(|r| r.as_ref().map_or(0, |(t, _)| t.as_nanos()))
            .collect();
        assert_eq!(finished, [300_000_010, 100_000_010, 200_000_010]);
    }

    #[test]
    fn a_task_that_waits_for_nothing_is_reported_unfinished() {
        let rt = VirtualRuntime::default();
        let tasks = vec![Task {
            start: Instant::ZERO,
            future: Box::pin(std::future::pending::<()>()),
        }];
        assert!(run_tasks(&rt, tasks, 1, 10)[0].is_none());
    }
}
