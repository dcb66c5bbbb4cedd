//! A ban whose 418 body says nothing: how many of our requests reach it, and
//! how late after its end the client resumes.
//!
//! A small event-driven world: every IP-scoped group is demanded without
//! pause (each retries the moment the limiter says it may, and again
//! whenever a response comes back), requests take 20 ms each way, and the
//! server bans the IP for a real length `B` from the first request that
//! arrives at or after `BAN_START`. Every request arriving during the ban
//! gets a 418 with an unreadable body. For every `B` from 1 s to 600 s the
//! test counts the requests our limiter admitted after it had seen the first
//! 418 and that still arrived inside the ban, and the delay from the ban's
//! end to the first request that gets through.

use std::collections::BinaryHeap;

use upbit_limiter_core::{Admission, Duration, Group, Instant, LimiterConfig, Preset, Response, SyncLimiter};

const ONE_WAY: Duration = Duration::from_millis(20);
const BAN_START: Instant = Instant::from_nanos(2_000_000_000);
const UNREADABLE: &str = r#"{"error":{"name":418,"message":"I'm a teapot"}}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Group (by index) tries to send.
    Attempt(usize),
    /// The response to a request reaches the client.
    Deliver {
        group: usize,
        seq: u64,
        at: u64,
        status: u16,
    },
}

/// What one run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Requests admitted after the first 418 was seen that arrived in the ban.
    pub after_known: u32,
    /// Every request of ours that arrived in the ban.
    pub in_ban: u32,
    /// From the ban's end to the send of the first request that got a 200.
    pub resume_delay: Duration,
}

/// Runs the world against a real ban of `ban` with `config`.
pub fn run(config: &LimiterConfig, ban: Duration) -> Outcome {
    let limiter = SyncLimiter::new(config).unwrap();
    let groups: Vec<Group> = Group::ALL
        .into_iter()
        .filter(|g| g.scope() == config_scope())
        .collect();
    // Min-heap on time (Reverse).
    let mut events: BinaryHeap<std::cmp::Reverse<(u64, Event)>> = BinaryHeap::new();
    let mut next_attempt: Vec<u64> = vec![0; groups.len()];
    for (i, _) in groups.iter().enumerate() {
        events.push(std::cmp::Reverse((0, Event::Attempt(i))));
    }
    let mut ban_window: Option<(Instant, Instant)> = None;
    let mut known_at: Option<Instant> = None;
    let mut out = Outcome {
        after_known: 0,
        in_ban: 0,
        resume_delay: Duration::MAX,
    };
    let stop = BAN_START + ban + Duration::from_secs(4 * 3_600);
    while let Some(std::cmp::Reverse((t, ev))) = events.pop() {
        let now = Instant::from_nanos(t);
        if now > stop {
            break;
        }
        match ev {
            Event::Attempt(i) => {
                if next_attempt[i] != t {
                    continue; // superseded
                }
                match limiter.group(groups[i]).try_acquire(now) {
                    Ok(a) => {
                        let arrival = now + ONE_WAY;
                        if ban_window.is_none() && arrival >= BAN_START {
                            ban_window = Some((arrival, arrival + ban));
                        }
                        let banned = ban_window.is_some_and(|(from, to)| arrival >= from && arrival < to);
                        if banned {
                            out.in_ban += 1;
                            if known_at.is_some_and(|k| now >= k) {
                                out.after_known += 1;
                            }
                        } else if let Some((_, to)) = ban_window {
                            if out.resume_delay == Duration::MAX {
                                out.resume_delay = now - (to - ONE_WAY);
                                // One success after the ban: measured.
                                return out;
                            }
                        }
                        let back = arrival + ONE_WAY;
                        let status = if banned { 418 } else { 200 };
                        events.push(std::cmp::Reverse((
                            back.as_nanos(),
                            Event::Deliver {
                                group: i,
                                seq: a.seq,
                                at: a.at.as_nanos(),
                                status,
                            },
                        )));
                        schedule(&mut events, &mut next_attempt, i, t);
                    }
                    Err(denied) => {
                        let retry = denied.retry_at().max(now + Duration::from_nanos(1));
                        if retry != Instant::MAX {
                            schedule(&mut events, &mut next_attempt, i, retry.as_nanos());
                        }
                    }
                }
            }
            Event::Deliver {
                group,
                seq,
                at,
                status,
            } => {
                let admission = Admission {
                    group: groups[group],
                    at: Instant::from_nanos(at),
                    seq,
                    probe: false,
                    ticket: None,
                };
                let response = if status == 418 {
                    known_at.get_or_insert(now);
                    Response::status(418).with_body(UNREADABLE)
                } else {
                    Response::status(200)
                };
                limiter.on_response(&admission, response, now);
                // A waiter would be woken: everyone tries again now.
                for i in 0..groups.len() {
                    if next_attempt[i] > t {
                        schedule(&mut events, &mut next_attempt, i, t);
                    }
                }
            }
        }
    }
    out
}

fn config_scope() -> upbit_limiter_core::upbit::Scope {
    upbit_limiter_core::upbit::Scope::Ip
}

fn schedule(events: &mut BinaryHeap<std::cmp::Reverse<(u64, Event)>>, next: &mut [u64], i: usize, t: u64) {
    next[i] = t;
    events.push(std::cmp::Reverse((t, Event::Attempt(i))));
}

/// Every real ban length from 1 s to 600 s: at most 2 requests reach it
/// once the first 418 is known; and the measured resume delays.
#[test]
fn at_most_two_requests_reach_an_unreadable_ban_of_up_to_600_s() {
    let config = LimiterConfig::preset(Preset::Korea);
    let mut worst = (0, 0);
    let mut worst_delay = (Duration::ZERO, 0);
    let mut total_delay = Duration::ZERO;
    let mut in_ban_max = 0;
    for secs in 1..=600 {
        let o = run(&config, Duration::from_secs(secs));
        assert!(o.after_known <= 2, "{secs} s ban: {o:?}");
        assert!(o.resume_delay != Duration::MAX, "{secs} s ban: never resumed");
        if o.after_known > worst.0 {
            worst = (o.after_known, secs);
        }
        if o.resume_delay > worst_delay.0 {
            worst_delay = (o.resume_delay, secs);
        }
        in_ban_max = in_ban_max.max(o.in_ban);
        total_delay = total_delay.saturating_add(o.resume_delay);
    }
    std::println!(
        "requests into the ban after the first 418: at most {} (ban of {} s); all of ours in the ban: at most {}; \
         resume delay: worst {} (ban of {} s), mean {}",
        worst.0,
        worst.1,
        in_ban_max,
        worst_delay.0,
        worst_delay.1,
        Duration::from_nanos(total_delay.as_nanos() / 600)
    );
    // The schedule's instants: probes at 50 s, 200 s, 650 s.
    assert_eq!(worst.0, 2);
    assert!(worst_delay.0 < Duration::from_secs(460), "{worst_delay:?}");
}

/// A short ban is not overshot by much; a long one is still waited out.
#[test]
fn short_and_long_bans() {
    let config = LimiterConfig::preset(Preset::Korea);
    let o = run(&config, Duration::from_secs(10));
    assert_eq!(o.after_known, 0, "{o:?}");
    assert!(o.resume_delay <= Duration::from_secs(41), "{o:?}");
    let o = run(&config, Duration::from_secs(3_000));
    // 50, 200, 650, 2 000 s: four probes, then the 5 600 s one gets through.
    assert_eq!(o.after_known, 4, "{o:?}");
    assert!(o.resume_delay <= Duration::from_secs(2_601), "{o:?}");
}
