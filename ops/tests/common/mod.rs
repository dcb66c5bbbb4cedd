//! Shared by the load tests: a load generator on paused tokio time and an
//! independent sliding-window check of the admissions it recorded.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use upbit_limiter_core::limiter::Policy;
use upbit_limiter_core::{Duration, Group, Instant, LimiterConfig, Request, Response};
use upbit_limiter_ops::Instrumented;

/// Runs `tasks` callers of `group` as fast as the limiter lets them until
/// `end` (limiter clock), reporting `200` for every admission; returns the
/// admission instants. `first_status` is reported for the very first one.
pub async fn hammer(
    limiter: &Arc<Instrumented>,
    group: Group,
    tasks: usize,
    end: Instant,
    first_status: u16,
) -> Vec<Instant> {
    let admissions = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let limiter = Arc::clone(limiter);
        let admissions = Arc::clone(&admissions);
        handles.push(tokio::spawn(async move {
            while limiter.now() < end {
                match limiter.acquire_request(Request::group(group)).await {
                    Ok(permit) => {
                        let at = permit.admission().at;
                        let status = {
                            let mut a = admissions.lock().unwrap();
                            a.push(at);
                            if a.len() == 1 {
                                first_status
                            } else {
                                200
                            }
                        };
                        permit.report(Response::status(status));
                    }
                    Err(e) => {
                        let wait = e.retry_at() - limiter.now();
                        tokio::time::sleep(wait.max(Duration::from_millis(1)).into()).await;
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut a = admissions.lock().unwrap().clone();
    a.sort();
    a
}

/// Checks every admission against the configuration in force when it was
/// made: for each server window `W` of its group (plus the jitter margin
/// `J` under the GCRA, whose quota promises that much; the interval log
/// promises `W`), the admissions in the trailing window `(t - W - J, t]`
/// must not exceed the server's limit. `configs` lists `(from, config)` in time order.
/// Returns the largest count seen relative to its limit, as `(count, limit)`.
pub fn check_windows(
    admissions: &[Instant],
    group: Group,
    configs: &[(Instant, LimiterConfig)],
) -> (usize, u32) {
    let mut worst = (0usize, 1u32);
    for (i, &t) in admissions.iter().enumerate() {
        let cfg = configs
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .map(|(_, c)| c.group(group))
            .expect("a configuration in force");
        for limit in cfg.limits.as_slice() {
            let margin = match cfg.policy {
                Policy::Gcra => cfg.margin,
                Policy::IntervalLog => Duration::ZERO,
            };
            let span = limit.window.saturating_add(margin);
            // Admissions are sorted; count those in (t - span, t] (all of
            // them while t - span is before the epoch).
            let count = if t.as_nanos() < span.as_nanos() {
                i + 1
            } else {
                let start = t - span;
                admissions[..=i].iter().rev().take_while(|&&a| a > start).count()
            };
            assert!(
                count <= limit.max_requests as usize,
                "{count} admissions in the {span:?} before {t:?}, limit {} per {:?}",
                limit.max_requests,
                limit.window
            );
            if count * worst.1 as usize > worst.0 * limit.max_requests as usize {
                worst = (count, limit.max_requests);
            }
        }
    }
    worst
}
