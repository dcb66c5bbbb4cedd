//! A fixed-size log-linear histogram of durations: constant memory however
//! long the run, relative error below 1/64 (about 1.6 %).
//!
//! Values below 128 ns have a bucket each; above, every power of two is split
//! into 64 equal buckets. Quantiles report the upper edge of their bucket,
//! capped at the largest value seen, so they never understate a wait.

use upbit_limiter_core::Duration;

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const LINEAR: u64 = 2 * SUB;
const BUCKETS: usize = ((64 - SUB_BITS as usize) << SUB_BITS) + SUB as usize;

/// Counts of durations in log-linear buckets.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    max: u64,
    total: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let top_bit = 63 - v.leading_zeros();
    let shift = top_bit - SUB_BITS;
    let top = v >> shift;
    (((shift as u64 + 1) << SUB_BITS) + (top - SUB)) as usize
}

/// The largest value that falls in bucket `i`.
fn upper_edge(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = (i >> SUB_BITS) - 1;
    let top = (i & (SUB - 1)) + SUB;
    let edge = (u128::from(top + 1) << shift) - 1;
    u64::try_from(edge).unwrap_or(u64::MAX)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            max: 0,
            total: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, d: Duration) {
        let v = d.as_nanos();
        self.counts[index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
        self.total += u128::from(v);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
        self.total += other.total;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }

    /// The mean (zero when empty).
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos((self.total / u128::from(self.count)) as u64)
    }

    /// The `q`-quantile (`q` clamped to `[0, 1]`): the upper edge of the
    /// bucket holding the value of rank `ceil(q * count)`, capped at the max.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(upper_edge(i).min(self.max));
            }
        }
        self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut prev = None;
        for v in (0..4096u64).chain([1 << 20, (1 << 20) + 1, u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v}");
            assert!(v <= upper_edge(i), "{v} above the edge of its bucket");
            if i > 0 {
                assert!(v > upper_edge(i - 1), "{v} belongs in an earlier bucket");
            }
            if let Some(p) = prev {
                assert!(i >= p);
            }
            prev = Some(i);
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_within_the_stated_error() {
        let mut h = Histogram::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        for (q, want_ms) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q).as_nanos() as f64 / 1e6;
            assert!(
                got >= want_ms && got <= want_ms * (1.0 + 1.0 / 64.0),
                "q{q}: {got}"
            );
        }
        assert_eq!(h.quantile(1.0), Duration::from_millis(1000));
        assert_eq!(h.max(), Duration::from_millis(1000));
        assert_eq!(h.count(), 1000);
        assert_eq!(h.mean(), Duration::from_nanos(500_500_000));
        assert_eq!(Histogram::new().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn merge_adds_up() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        b.record(Duration::ZERO);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max(), Duration::from_millis(3));
        assert_eq!(a.quantile(0.0), Duration::ZERO);
    }
}
