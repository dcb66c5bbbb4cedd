//! The simulated server blocks the IP for a fixed real length with 418
//! bodies that say nothing; our limiter, demanded without pause on every
//! IP-scoped group, sends at most 2 requests into a block of up to 600 s
//! once it has seen the first 418.
//!
//! The block is provoked the way the server model escalates: another
//! process on the same IP floods the ticker group until its 429s turn into
//! a 418 block. Each of our requests takes 20 ms each way.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use upbit_limiter_core::{Admission, Duration, Group, Instant, LimiterConfig, Preset, Response, SyncLimiter};
use upbit_limiter_sim::server::{Escalation, Server, ServerModel, Source, UNREADABLE_BODY};

const ONE_WAY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Attempt(usize),
    Arrive {
        group: usize,
        seq: u64,
        sent: u64,
    },
    Deliver {
        group: usize,
        seq: u64,
        sent: u64,
        status: u16,
        body: Option<String>,
    },
}

struct Outcome {
    /// Ours admitted after the first 418 reached us that got a 418.
    after_known: u32,
    /// All of ours that got a 418.
    all_418: u32,
    /// When the block began and ended (server side).
    block: (Instant, Instant),
    /// Send instant of our first 200 after the block.
    resumed: Option<Instant>,
}

fn run(model: ServerModel, block: Duration) -> Outcome {
    let escalation = Escalation {
        block,
        block_max: block,
        unreadable_body: true,
        ..Escalation::default()
    };
    let mut server = Server::new(Preset::Korea, model, Duration::from_millis(370), escalation);
    let limiter = SyncLimiter::new(&LimiterConfig::preset(Preset::Korea)).unwrap();
    let groups: Vec<Group> = Group::ALL.into_iter().filter(|g| g.is_quotation()).collect();
    // The other process: 40 ticker requests within 100 ms at t = 5 s.
    let flood_at = Instant::ZERO + Duration::from_secs(5);
    let mut block_start = None;
    for i in 0..40u64 {
        let at = flood_at + Duration::from_micros(2_500 * i);
        let r = server.handle(at, Group::Ticker, Source::Background);
        if r.status == 418 && block_start.is_none() {
            block_start = Some(at);
            assert_eq!(r.body.as_deref(), Some(UNREADABLE_BODY));
        }
    }
    let start = block_start.expect("the flood provokes a block");
    let mut out = Outcome {
        after_known: 0,
        all_418: 0,
        block: (start, start + block),
        resumed: None,
    };
    let mut events = BinaryHeap::new();
    let mut next = vec![0u64; groups.len()];
    // Our clients start just after the flood (the server sees arrivals in order).
    let t0 = (flood_at + Duration::from_millis(200)).as_nanos();
    for (i, n) in next.iter_mut().enumerate() {
        *n = t0;
        events.push(Reverse((t0, Event::Attempt(i))));
    }
    let mut known: Option<Instant> = None;
    let stop = start + block + Duration::from_secs(3_600);
    while let Some(Reverse((t, ev))) = events.pop() {
        let now = Instant::from_nanos(t);
        if now > stop || out.resumed.is_some() {
            break;
        }
        match ev {
            Event::Attempt(i) => {
                if next[i] != t {
                    continue;
                }
                match limiter.group(groups[i]).try_acquire(now) {
                    Ok(a) => {
                        let arrive = (now + ONE_WAY).as_nanos();
                        events.push(Reverse((
                            arrive,
                            Event::Arrive {
                                group: i,
                                seq: a.seq,
                                sent: t,
                            },
                        )));
                        next[i] = t;
                        events.push(Reverse((t, Event::Attempt(i))));
                    }
                    Err(d) => {
                        let retry = d.retry_at().max(now + Duration::from_nanos(1));
                        if retry != Instant::MAX {
                            next[i] = retry.as_nanos();
                            events.push(Reverse((next[i], Event::Attempt(i))));
                        }
                    }
                }
            }
            Event::Arrive { group, seq, sent } => {
                let reply = server.handle(now, groups[group], Source::Ours);
                let sent_at = Instant::from_nanos(sent);
                if reply.status == 418 {
                    out.all_418 += 1;
                    if known.is_some_and(|k| sent_at >= k) {
                        out.after_known += 1;
                    }
                } else if reply.status == 200 && now >= out.block.1 {
                    out.resumed = Some(sent_at);
                }
                let back = (now + ONE_WAY).as_nanos();
                events.push(Reverse((
                    back,
                    Event::Deliver {
                        group,
                        seq,
                        sent,
                        status: reply.status,
                        body: reply.body,
                    },
                )));
            }
            Event::Deliver {
                group,
                seq,
                sent,
                status,
                body,
            } => {
                let admission = Admission {
                    group: groups[group],
                    at: Instant::from_nanos(sent),
                    seq,
                    probe: false,
                    ticket: None,
                };
                let mut response = Response::status(status);
                if status == 418 {
                    known.get_or_insert(now);
                    response = response.with_body(body.as_deref().unwrap_or(""));
                }
                limiter.on_response(&admission, response, now);
                for (i, n) in next.iter_mut().enumerate() {
                    if *n > t {
                        *n = t;
                        events.push(Reverse((t, Event::Attempt(i))));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn at_most_two_of_our_requests_reach_an_unreadable_600_s_block() {
    for model in ServerModel::ALL {
        let o = run(model, Duration::from_secs(600));
        assert!(
            o.after_known <= 2,
            "{model:?}: {} requests into the block",
            o.after_known
        );
        let resumed = o.resumed.expect("resumes after the block");
        let late = resumed - o.block.1;
        println!(
            "{model:?}: 418s of ours {} (after the first was known {}), resumed {late} after the block",
            o.all_418, o.after_known
        );
        assert!(late <= Duration::from_secs(60), "{model:?}: {late}");
    }
}

#[test]
fn shorter_unreadable_blocks_are_probed_without_overshooting_much() {
    for (secs, most_late) in [(30, 21), (120, 81), (400, 251)] {
        let o = run(ServerModel::Sliding, Duration::from_secs(secs));
        assert!(o.after_known <= 2, "{secs} s: {}", o.after_known);
        let late = o.resumed.expect("resumes") - o.block.1;
        assert!(late <= Duration::from_secs(most_late), "{secs} s: {late}");
    }
}
