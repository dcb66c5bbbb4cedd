//! The limiter under an arbitrary stream of operations: time moving forward
//! by small and large steps or backwards, acquisitions on any group, made-up
//! responses (200, 429, 418 with or without a ban length, 5xx, timeouts, any
//! `Remaining-Req`), configuration changes and the operator's switch.
//!
//! Every group runs on the GCRA policy. After every step, each group's
//! admissions must fit a sliding window of `N` per `W + J` for each of its
//! server windows (the Zero-429 bound at the send side), and nothing may
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upbit_limiter_core::adaptive::Strategy;
use upbit_limiter_core::limiter::Policy;
use upbit_limiter_core::{
    Admission, Duration, Group, Instant, SyncLimiter, LimiterConfig, Preset, Response, ServerLimit,
};
use upbit_limiter_verification::models::{ServerModel, SlidingWindow};

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

fn burst_for(pick: u8, limits: &[ServerLimit]) -> u32 {
    let n_min = limits.iter().map(|l| l.max_requests).min().unwrap_or(1);
    1 + u32::from(pick) % n_min
}

const HEADERS: [&str; 6] = [
    "group=default; min=1800; sec=0",
    "group=market; sec=3",
    "group=order; min=720; sec=11",
    "group=nope; sec=1",
    "sec=5",
    "group=ticker; sec=banana",
];

const BODIES: [&str; 3] = [
    "{\"error\":{\"name\":\"blocked\"},\"retry_after\":5}",
    "blocked for 2 minutes",
    "{\"error\":\"?\"}",
];

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let preset = if b.u8() % 2 == 0 {
        Preset::Korea
    } else {
        Preset::Global
    };
    let mut config = LimiterConfig::preset(preset);
    for g in Group::ALL {
        let pick = b.u8();
        let c = config.group_mut(g);
        // The GCRA's bound (the interval log has its own target).
        c.policy = Policy::Gcra;
        c.burst = burst_for(pick, c.limits.as_slice());
    }
    let Ok(limiter) = SyncLimiter::new(&config) else {
        panic!("preset configurations with a burst within the limit are valid");
    };
    // One sliding window of N per W + J for each server window of each group.
    let mut windows: Vec<Vec<SlidingWindow>> = Group::ALL
        .iter()
        .map(|&g| {
            let c = config.group(g);
            c.limits
                .as_slice()
                .iter()
                .map(|l| SlidingWindow::new(ServerLimit::new(l.max_requests, l.window + c.margin)))
                .collect()
        })
        .collect();
    let mut in_flight: Vec<Admission> = Vec::new();
    let mut now = Instant::from_nanos(1_000_000_000);
    let mut steps = 0;
    while b.more() && steps < 5_000 {
        steps += 1;
        match b.u8() % 10 {
            0 | 1 => now += Duration::from_micros(u64::from(b.u16()) * 50),
            2 => now += Duration::from_secs(u64::from(b.u16() % 2_000)),
            3 => now = now.saturating_sub(Duration::from_millis(u64::from(b.u16()))),
            4..=6 => {
                let g = Group::ALL[usize::from(b.u8()) % Group::COUNT];
                if let Ok(adm) = limiter.group(g).try_acquire(now) {
                    assert_eq!(adm.group, g);
                    for w in &mut windows[g.index()] {
                        let verdict = w.arrive(adm.at);
                        assert!(
                            verdict.is_ok(),
                            "{g}: admission at {} exceeds {:?}",
                            adm.at,
                            w.limit()
                        );
                    }
                    if in_flight.len() < 64 {
                        in_flight.push(adm);
                    }
                }
            }
            7 | 8 => {
                if in_flight.is_empty() {
                    continue;
                }
                let adm = in_flight.swap_remove(usize::from(b.u8()) % in_flight.len());
                let kind = b.u8();
                let mut response = match kind % 8 {
                    0..=2 => Response::status(200),
                    3 => Response::status(429),
                    4 => Response::status(418),
                    5 => Response::status(503),
                    6 => Response::no_response(),
                    _ => Response::status(404),
                };
                let extra = b.u8();
                if extra % 3 == 0 {
                    response = response.with_remaining_req(HEADERS[usize::from(extra / 3) % HEADERS.len()]);
                }
                if kind & 0x80 != 0 {
                    response = response.with_body(BODIES[usize::from(extra) % BODIES.len()]);
                }
                limiter.on_response(&adm, response, now);
            }
            _ => {
                let g = Group::ALL[usize::from(b.u8()) % Group::COUNT];
                let what = b.u8();
                let group = limiter.group(g);
                match what % 4 {
                    0 => {
                        let _ = group.force_open(true, now);
                    }
                    1 => {
                        let _ = group.force_open(false, now);
                    }
                    _ => {
                        let mut c = group.config();
                        c.burst = burst_for(b.u8(), c.limits.as_slice());
                        c.adaptive = Strategy::ALL[usize::from(what / 4) % 3].config();
                        if let Err(e) = group.set_config(c, now) {
                            panic!("a valid configuration was refused: {e}");
                        }
                    }
                }
            }
        }
        let _ = limiter.status(now);
    }
});
