//! The least wait the server's limits allow for a run's traffic.
//!
//! A server that accepts at most `N` requests in any window `W` bounds every
//! policy, however clever: a burst of `K` requests at once on such a group
//! cannot all leave in less than `floor((K - 1) / N)` windows. For any
//! traffic, [`least_quantile`] finds the least `q`-quantile of the waits that
//! any policy sending every request could reach, assuming every request
//! reaches the server after the same delay (no jitter to exploit) and no other
//! process shares the limit.
//!
//! For a candidate wait `w`, the most requests that can leave within `w` of
//! when they were wanted is found greedily: in the order they were wanted,
//! each leaves at the earliest instant the limits allow, or not at all when
//! that is later than `w` after it was wanted (it then takes no quota). As
//! every request has the same allowance `w`, no choice of requests can keep
//! more of them within it; the least `w` that keeps enough is found by
//! bisection.

use std::collections::VecDeque;

use upbit_limiter_core::{Duration, ServerLimit};

/// One group's limits and when its requests were wanted.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupTraffic {
    /// The server's windows for the group (all are enforced).
    pub limits: Vec<ServerLimit>,
    /// When each request was wanted, in nanoseconds of virtual time.
    pub wanted: Vec<u64>,
}

/// How many requests can leave within `allowance` ns of being wanted
/// (`group.wanted` sorted).
fn within(group: &GroupTraffic, allowance: u64) -> u64 {
    // The departures kept, the newest `max_requests` per window.
    let mut kept: Vec<VecDeque<u64>> = group.limits.iter().map(|_| VecDeque::new()).collect();
    let mut count = 0;
    for &a in &group.wanted {
        let mut at = a;
        for (limit, sent) in group.limits.iter().zip(&kept) {
            let n = limit.max_requests.max(1) as usize;
            if sent.len() >= n {
                at = at.max(sent[sent.len() - n].saturating_add(limit.window.as_nanos()));
            }
        }
        if at - a <= allowance {
            count += 1;
            for (limit, sent) in group.limits.iter().zip(kept.iter_mut()) {
                sent.push_back(at);
                if sent.len() > limit.max_requests.max(1) as usize {
                    sent.pop_front();
                }
            }
        }
    }
    count
}

/// The least `q`-quantile of the waits, over all groups together, that any
/// policy sending every request could reach. The rank is the histogram's:
/// the `ceil(q * M)`-th smallest of `M` waits.
pub fn least_quantile(groups: &[GroupTraffic], q: f64) -> Duration {
    let total: u64 = groups.iter().map(|g| g.wanted.len() as u64).sum();
    if total == 0 {
        return Duration::ZERO;
    }
    let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let groups: Vec<GroupTraffic> = groups
        .iter()
        .map(|g| {
            let mut g = g.clone();
            g.wanted.sort_unstable();
            g
        })
        .collect();
    let kept = |w: u64| groups.iter().map(|g| within(g, w)).sum::<u64>();
    // With an unbounded allowance every request is kept; the longest wait
    // of that schedule is a finite upper end for the search.
    let (mut lo, mut hi) = (0u64, 1u64);
    while kept(hi) < rank {
        if hi > u64::MAX / 2 {
            return Duration::from_nanos(u64::MAX);
        }
        hi *= 2;
    }
    if kept(lo) >= rank {
        return Duration::ZERO;
    }
    // kept(lo) < rank <= kept(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if kept(mid) >= rank {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Duration::from_nanos(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn burst(k: u64, limits: Vec<ServerLimit>) -> Vec<GroupTraffic> {
        vec![GroupTraffic {
            limits,
            wanted: vec![0; k as usize],
        }]
    }

    #[test]
    fn a_burst_of_k_on_n_per_w_waits_whole_windows() {
        let g = burst(100, vec![ServerLimit::per_second(10)]);
        // The 99th of 100 leaves in the tenth second: 9 windows after the first.
        assert_eq!(least_quantile(&g, 0.99), Duration::from_secs(9));
        assert_eq!(least_quantile(&g, 0.95), Duration::from_secs(9));
        assert_eq!(least_quantile(&g, 0.50), Duration::from_secs(4));
        assert_eq!(least_quantile(&g, 0.10), Duration::ZERO);
        let g = burst(25, vec![ServerLimit::per_second(10)]);
        assert_eq!(least_quantile(&g, 0.99), Duration::from_secs(2));
    }

    #[test]
    fn every_window_counts() {
        let limits = vec![
            ServerLimit::per_second(5),
            ServerLimit::new(10, Duration::from_secs(60)),
        ];
        // 10 leave in the first two seconds, the 11th a minute after the first.
        let g = burst(11, limits);
        assert_eq!(least_quantile(&g, 1.0), Duration::from_secs(60));
        assert_eq!(least_quantile(&g, 0.9), Duration::from_secs(1));
    }

    #[test]
    fn traffic_within_the_limit_need_not_wait() {
        let g = vec![GroupTraffic {
            limits: vec![ServerLimit::per_second(10)],
            wanted: (0..1000).map(|i| i * S / 5).collect(),
        }];
        assert_eq!(least_quantile(&g, 0.99), Duration::ZERO);
        assert_eq!(least_quantile(&[], 0.99), Duration::ZERO);
    }

    #[test]
    fn groups_count_together_for_one_quantile() {
        // 100 at once on one group, 100 spread out on another: half the
        // waits are zero, and the 99th percentile is the burst's 98th.
        let mut g = burst(100, vec![ServerLimit::per_second(10)]);
        g.push(GroupTraffic {
            limits: vec![ServerLimit::per_second(10)],
            wanted: (0..100).map(|i| i * S).collect(),
        });
        assert_eq!(least_quantile(&g, 0.5), Duration::ZERO);
        assert_eq!(least_quantile(&g, 0.99), Duration::from_secs(9));
        assert_eq!(least_quantile(&g, 0.95), Duration::from_secs(8));
    }

    #[test]
    fn skipping_a_request_can_beat_arrival_order() {
        // 1 per second; wanted at 0, 0.5, 1.0, 1.5. In order they wait 0,
        // 0.5, 1, 1.5 s; sending the ones at 0, 1.0 (and 2.0 for 1.5) keeps
        // three within 0.5 s. The median (2nd of 4) is then 0.
        let g = vec![GroupTraffic {
            limits: vec![ServerLimit::per_second(1)],
            wanted: vec![0, S / 2, S, 3 * S / 2],
        }];
        assert_eq!(least_quantile(&g, 0.5), Duration::ZERO);
        assert_eq!(least_quantile(&g, 0.75), Duration::from_millis(500));
    }
}
