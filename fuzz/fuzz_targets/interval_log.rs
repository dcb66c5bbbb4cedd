//! The interval log under an arbitrary stream of operations: time moving
//! forward by small and large steps or backwards, admissions on a one-window
//! and a two-window log, and every way a request can end (reported with any
//! delay, no response, abandoned before sending, never ended), including
//! stale and repeated tickets.
//!
//! Each sent request reaches the "server" at an arbitrary instant that its
//! documented end allows: within `[s, r]` for a reported one, within the
//! maximum flight time for the others. At the end, the arrivals of each log
//! must fit every window, closed (both ends counted), and nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upbit_limiter_core::interval_log::{IntervalLog, Ticket};
use upbit_limiter_core::{Duration, Instant, ServerLimit};

/// Reads bytes one at a time; zeros once exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn more(&self) -> bool {
        !self.0.is_empty()
    }
}

/// `from + (to - from) * k / 255`.
fn between(from: Instant, to: Instant, k: u8) -> Instant {
    let span = u128::from((to - from).as_nanos());
    from + Duration::from_nanos((span * u128::from(k) / 255) as u64)
}

/// The most instants of `sorted` in one closed window of length `window`.
fn max_in_closed_window(sorted: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for (end, t) in sorted.iter().enumerate() {
        while (*t - sorted[start]) > window {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

struct Budget {
    log: IntervalLog,
    limits: Vec<ServerLimit>,
    max_flight: Duration,
    /// Admitted, not ended: ticket and its arrival if it was sent.
    open: Vec<Ticket>,
    /// Ended tickets, and whether they ended by a report or abandonment
    /// (after which nothing more is accepted; a "no response" still takes a
    /// late report).
    ended: Vec<(Ticket, bool)>,
    arrivals: Vec<Instant>,
    /// The latest instant any call on this log has seen: its reading of time.
    latest: Instant,
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let n = 1 + u32::from(b.u8() % 8);
    let w = Duration::from_millis(1 + u64::from(b.u16() % 3_000));
    let flight = Duration::from_millis(1 + u64::from(b.u16() % 5_000));
    let shapes = [
        vec![ServerLimit::new(n, w)],
        vec![
            ServerLimit::new(n, w),
            ServerLimit::new(
                n + 1 + u32::from(b.u8() % 20),
                w.saturating_mul(2 + u64::from(b.u8() % 60)),
            ),
        ],
    ];
    let mut budgets: Vec<Budget> = shapes
        .into_iter()
        .map(|limits| Budget {
            log: IntervalLog::new(&limits, flight).expect("valid windows"),
            limits,
            max_flight: flight,
            open: Vec::new(),
            ended: Vec::new(),
            arrivals: Vec::new(),
            latest: Instant::ZERO,
        })
        .collect();
    let mut now = Instant::from_nanos(1_000_000_000);
    let mut steps = 0;
    while b.more() && steps < 5_000 {
        steps += 1;
        let op = b.u8();
        let which = usize::from(op >> 7);
        match op % 10 {
            0 | 1 => now += Duration::from_micros(u64::from(b.u16()) * 20),
            2 => now += Duration::from_secs(u64::from(b.u16() % 100)),
            3 => now = now.saturating_sub(Duration::from_millis(u64::from(b.u16()))),
            4..=6 => {
                let budget = &mut budgets[which];
                let t = now.max(budget.latest);
                budget.latest = t;
                match budget.log.try_admit(now) {
                    Ok(ticket) => {
                        let s = ticket.admitted_at();
                        assert_eq!(s, t, "admitted at {s}, the log had seen {t}");
                        budget.open.push(ticket);
                    }
                    Err(denial) => assert!(denial.retry_at() > t, "{denial:?} at {t}"),
                }
            }
            7 | 8 => {
                let budget = &mut budgets[which];
                if budget.open.is_empty() {
                    continue;
                }
                let ticket = budget.open.swap_remove(usize::from(b.u8()) % budget.open.len());
                let s = ticket.admitted_at();
                let bound = s + budget.max_flight;
                let k = b.u8();
                let how = b.u8() % 4;
                // What the log reads as "now" for this call.
                let t = now.max(budget.latest);
                budget.latest = t;
                let final_end = how != 2;
                match how {
                    0 | 1 => {
                        if budget.log.report(ticket, now) {
                            budget.arrivals.push(between(s, t.min(bound), k));
                            // The estimate of our part of a server's count:
                            // the likely count never exceeds the most.
                            let window = Duration::from_millis(u64::from(k) * 8);
                            let c = budget.log.counted_with(ticket, window).expect("just reported");
                            assert!(c.likely <= c.at_most, "{c:?}");
                        } else {
                            // Stale: its slot was reused after it stopped counting.
                            budget.arrivals.push(between(s, bound, k));
                        }
                    }
                    2 => {
                        let _ = budget.log.no_response(ticket, now);
                        budget.arrivals.push(between(s, bound, k));
                    }
                    _ => {
                        // Never sent: no arrival, whether the log still had it or not.
                        let _ = budget.log.abandon(ticket, now);
                    }
                }
                budget.ended.push((ticket, final_end));
            }
            _ => {
                // A stale or repeated ticket changes nothing.
                let budget = &mut budgets[which];
                if let Some(&(ticket, final_end)) =
                    budget.ended.get(usize::from(b.u8()) % budget.ended.len().max(1))
                {
                    if final_end {
                        assert!(!budget.log.report(ticket, now));
                    }
                    assert!(!budget.log.no_response(ticket, now));
                    assert!(!budget.log.abandon(ticket, now));
                    budget.latest = budget.latest.max(now);
                }
            }
        }
        if budgets[which].ended.len() > 64 {
            budgets[which].ended.remove(0);
        }
    }
    for budget in &mut budgets {
        // Never ended: anywhere up to the flight bound; take the latest.
        for ticket in budget.open.drain(..) {
            budget.arrivals.push(ticket.admitted_at() + budget.max_flight);
        }
        budget.arrivals.sort();
        for limit in &budget.limits {
            let most = max_in_closed_window(&budget.arrivals, limit.window);
            assert!(
                most <= limit.max_requests as usize,
                "{most} arrivals in one closed window of {:?}, limit {limit:?}",
                limit.window
            );
        }
    }
});
