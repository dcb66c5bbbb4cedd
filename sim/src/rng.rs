//! Seeded random draws with a fixed algorithm (ChaCha8), split into
//! independent streams.
//!
//! Every source of randomness has its own stream, derived from the run's
//! seed and a stable id: a load generator by its index, a request's network
//! trip by the request's id. So a request sees the same delays whatever the
//! policy did before it, and two policies run on the same traffic.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use upbit_limiter_core::Duration;

/// Streams of load generators: `LOAD_STREAMS | index`.
pub const LOAD_STREAMS: u64 = 1 << 62;
/// Streams of request trips: `TRIP_STREAMS | request id`.
pub const TRIP_STREAMS: u64 = 1 << 63;

/// One stream of draws.
#[derive(Clone, Debug)]
pub struct Draws(ChaCha8Rng);

impl Draws {
    /// Stream `stream` of the run whose random seed is `run`.
    pub fn new(run: u64, stream: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&run.to_le_bytes());
        // A fixed, arbitrary second word so seed 0 is not the all-zero key.
        key[8..16].copy_from_slice(&0x7570_6269_742d_7369_u64.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(stream);
        Self(rng)
    }

    /// A uniform `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`0` when `n == 0`). Multiply-shift: the bias is
    /// below 2^-64 per draw, and the mapping is fixed.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[lo, lo + span]`, to the nanosecond.
    pub fn within(&mut self, lo: Duration, span: Duration) -> Duration {
        let extra = self.below(span.as_nanos().saturating_add(1));
        lo.saturating_add(Duration::from_nanos(extra))
    }

    /// Exponentially distributed with the given mean (Poisson arrivals).
    pub fn exponential(&mut self, mean: Duration) -> Duration {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let x = -(1.0 - self.unit()).ln() * mean.as_nanos() as f64;
        Duration::from_nanos(if x >= u64::MAX as f64 { u64::MAX } else { x as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_stream_same_draws_other_stream_differs() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut d = Draws::new(7, 3);
                move |_| d.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut d = Draws::new(7, 3);
                move |_| d.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut d = Draws::new(7, 4);
                move |_| d.next_u64()
            })
            .collect();
        let e: Vec<u64> = (0..4)
            .map({
                let mut d = Draws::new(8, 3);
                move |_| d.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, e);
    }

    #[test]
    fn ranges_hold() {
        let mut d = Draws::new(1, 1);
        let lo = Duration::from_millis(10);
        let span = Duration::from_millis(50);
        let (mut min, mut max) = (u64::MAX, 0);
        for _ in 0..10_000 {
            let x = d.within(lo, span).as_nanos();
            min = min.min(x);
            max = max.max(x);
            assert!(d.below(7) < 7);
            let u = d.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert!(min >= lo.as_nanos() && max <= (lo + span).as_nanos());
        // Spread over the range, not stuck at one end.
        assert!(min < Duration::from_millis(11).as_nanos());
        assert!(max > Duration::from_millis(59).as_nanos());
        assert_eq!(d.below(0), 0);
        assert_eq!(d.within(lo, Duration::ZERO), lo);
    }

    #[test]
    fn exponential_has_its_mean() {
        let mut d = Draws::new(3, 9);
        let mean = Duration::from_millis(100);
        let n = 20_000;
        let total: u64 = (0..n).map(|_| d.exponential(mean).as_nanos()).sum();
        let avg = total as f64 / n as f64 / 1e6;
        assert!((avg - 100.0).abs() < 5.0, "mean {avg} ms");
    }
}
