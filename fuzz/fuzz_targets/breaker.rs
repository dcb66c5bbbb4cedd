//! The circuit breaker never panics, whatever its configuration and however
//! time moves; with a valid configuration it answers exactly like the
//! reference model of `upbit-limiter-verification`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upbit_limiter_core::breaker::{Breaker, BreakerConfig};
use upbit_limiter_core::{Duration, Instant};
use upbit_limiter_verification::reference::RefBreaker;

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
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn more(&self) -> bool {
        !self.0.is_empty()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let ms = |n: u16| Duration::from_millis(u64::from(n));
    let config = BreakerConfig {
        consecutive_failures: u32::from(b.u8() % 10),
        failure_rate_ppm: b.u32() % 1_100_000,
        window: b.u8() % 70,
        minimum_calls: b.u8() % 70,
        open_wait: ms(b.u16()),
        open_wait_max: ms(b.u16()),
        open_wait_multiplier: u32::from(b.u8() % 5),
        half_open_probes: u32::from(b.u8() % 6),
        half_open_successes: u32::from(b.u8() % 6),
        half_open_max_wait: ms(b.u16()),
    };
    let valid = config.validate().is_ok();
    let mut real = Breaker::new(config);
    let mut model = valid.then(|| RefBreaker::new(config));
    let mut now = Instant::from_nanos(1_000_000_000);
    let mut steps = 0;
    while b.more() && steps < 2_000 {
        steps += 1;
        let op = b.u8();
        now = match op >> 5 {
            0 | 1 => now,
            2 | 3 => now + ms(b.u16()),
            4 => now + Duration::from_secs(u64::from(b.u16())),
            5 => now.saturating_sub(ms(b.u16())),
            6 => now + Duration::from_nanos(u64::from(b.u32()) << 24),
            _ => {
                if b.u8() == 0 {
                    Instant::MAX
                } else {
                    now
                }
            }
        };
        match op % 9 {
            0 | 1 => {
                let r = real.try_acquire(now).map_err(|e| (e.retry_at, e.forced));
                if let Some(m) = model.as_mut() {
                    assert_eq!(r, m.try_acquire(now));
                }
            }
            2 => {
                let r = real.on_success(now);
                if let Some(m) = model.as_mut() {
                    assert_eq!(r, m.on_success(now));
                }
            }
            3 | 4 => {
                let r = real.on_failure(now);
                if let Some(m) = model.as_mut() {
                    assert_eq!(r, m.on_failure(now));
                }
            }
            5 => {
                real.on_ignored(now);
                if let Some(m) = model.as_mut() {
                    m.on_ignored(now);
                }
            }
            6 => {
                let r = real.handle_timeout(now);
                if let Some(m) = model.as_mut() {
                    assert_eq!(r, m.handle_timeout(now));
                }
            }
            7 => {
                let (r, m) = match b.u8() % 3 {
                    0 => (real.force_open(now), model.as_mut().map(|m| m.force_open(now))),
                    1 => (real.disable(now), model.as_mut().map(|m| m.disable(now))),
                    _ => (real.reset(now), model.as_mut().map(|m| m.reset(now))),
                };
                if let Some(m) = m {
                    assert_eq!(r, m);
                }
            }
            _ => {}
        }
        let state = real.state(now);
        let next = real.next_change(now);
        if let Some(at) = next {
            assert!(at > now, "next change {at:?} not after {now:?}");
        }
        if let Some(m) = model.as_ref() {
            assert_eq!(state, m.state(now));
            assert_eq!(next, m.next_change(now));
            assert_eq!(real.transitions(), m.transitions());
        }
    }
});
