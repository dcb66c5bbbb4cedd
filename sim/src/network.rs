//! The network and the server's response time.
//!
//! A request sent at `s` reaches the server at `s + d₁` and its response is
//! back at `s + d₁ + service + d₂`, where each one-way delay is uniform in
//! `[delay, delay + jitter]` and the service time is uniform in
//! `[service, service + service_jitter]` for the phase of the degradation
//! schedule the arrival falls in. A request or a response may be lost; the
//! client then sees no response and gives up at its timeout, as it does when
//! the response takes longer than the timeout.
//!
//! Every draw of one request comes from that request's own random stream, so
//! its trip does not depend on what other requests did.

use upbit_limiter_core::{Duration, Instant};

use crate::rng::{Draws, TRIP_STREAMS};

/// From `at` on, the server answers in `[service, service + service_jitter]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServicePhase {
    /// When this phase starts (virtual time since the run began).
    pub at: Duration,
    /// The shortest service time.
    pub service: Duration,
    /// The spread above it.
    pub service_jitter: Duration,
}

/// The network and response-time model.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// The shortest one-way delay `d`.
    pub delay: Duration,
    /// The jitter `J`: one-way delays are uniform in `[d, d + J]`.
    pub jitter: Duration,
    /// Service-time phases, sorted by start; the first starts at zero.
    pub phases: Vec<ServicePhase>,
    /// Probability that a request, or independently its response, is lost.
    pub loss: f64,
    /// How long a client waits for a response before giving up.
    pub timeout: Duration,
}

/// One request's fate, decided when it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trip {
    /// When it reaches the server; `None` if the request is lost.
    pub arrival: Option<Instant>,
    /// When its response is back at the client; `None` if it is lost or
    /// later than the timeout.
    pub response: Option<Instant>,
    /// When the client gives up waiting.
    pub gives_up: Instant,
}

impl Network {
    /// The service phase in force at `at`.
    pub fn phase_at(&self, at: Instant) -> ServicePhase {
        let since = at - Instant::ZERO;
        self.phases
            .iter()
            .rev()
            .find(|p| p.at <= since)
            .copied()
            .unwrap_or(ServicePhase {
                at: Duration::ZERO,
                service: Duration::ZERO,
                service_jitter: Duration::ZERO,
            })
    }

    /// The trip of request `id` sent at `sent`, in run `seed`.
    pub fn trip(&self, seed: u64, id: u64, sent: Instant) -> Trip {
        let mut d = Draws::new(seed, TRIP_STREAMS | id);
        // Draw everything in a fixed order, used or not, so one choice never
        // shifts the others.
        let up = d.within(self.delay, self.jitter);
        let down = d.within(self.delay, self.jitter);
        let lost_request = d.chance(self.loss);
        let lost_response = d.chance(self.loss);
        let service_draw = d.unit();
        let gives_up = sent.saturating_add(self.timeout);
        if lost_request {
            return Trip {
                arrival: None,
                response: None,
                gives_up,
            };
        }
        let arrival = sent.saturating_add(up);
        let phase = self.phase_at(arrival);
        let extra = (service_draw * phase.service_jitter.as_nanos() as f64) as u64;
        let service = phase.service.saturating_add(Duration::from_nanos(extra));
        let back = arrival.saturating_add(service).saturating_add(down);
        Trip {
            arrival: Some(arrival),
            response: (!lost_response && back <= gives_up).then_some(back),
            gives_up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(jitter_ms: u64, loss: f64) -> Network {
        Network {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(jitter_ms),
            phases: vec![
                ServicePhase {
                    at: Duration::ZERO,
                    service: Duration::from_millis(100),
                    service_jitter: Duration::ZERO,
                },
                ServicePhase {
                    at: Duration::from_secs(60),
                    service: Duration::from_millis(2000),
                    service_jitter: Duration::from_millis(2000),
                },
            ],
            loss,
            timeout: Duration::from_secs(3),
        }
    }

    #[test]
    fn delays_stay_within_d_and_d_plus_j() {
        let n = net(50, 0.0);
        for id in 0..2000 {
            let sent = Instant::from_nanos(id * 1_000_000);
            let t = n.trip(5, id, sent);
            let up = t.arrival.unwrap() - sent;
            assert!(up >= Duration::from_millis(10) && up <= Duration::from_millis(60));
            let rtt = t.response.unwrap() - sent;
            assert!(rtt >= Duration::from_millis(120) && rtt <= Duration::from_millis(220));
        }
    }

    #[test]
    fn a_trip_depends_only_on_seed_and_id() {
        let n = net(50, 0.1);
        let a = n.trip(1, 42, Instant::ZERO);
        let b = n.trip(1, 42, Instant::ZERO);
        assert_eq!(a, b);
        let shifted = n.trip(1, 42, Instant::from_nanos(1_000));
        assert_eq!(
            shifted.arrival.map(|t| t - Instant::from_nanos(1_000)),
            a.arrival.map(|t| t - Instant::ZERO)
        );
        assert!((0..50).any(|id| n.trip(1, id, Instant::ZERO) != a));
    }

    #[test]
    fn degradation_and_timeouts() {
        let n = net(0, 0.0);
        let late = Instant::ZERO + Duration::from_secs(100);
        let trips: Vec<Trip> = (0..1000).map(|id| n.trip(9, id, late)).collect();
        let timed_out = trips.iter().filter(|t| t.response.is_none()).count();
        // Service uniform in [2, 4] s plus 20 ms of network: about half miss 3 s.
        assert!((400..600).contains(&timed_out), "{timed_out}");
        assert!(trips.iter().all(|t| t.arrival.is_some()));
        assert_eq!(trips[0].gives_up, late + Duration::from_secs(3));
    }

    #[test]
    fn loss_loses_requests_and_responses() {
        let n = net(0, 0.2);
        let trips: Vec<Trip> = (0..2000).map(|id| n.trip(2, id, Instant::ZERO)).collect();
        let lost_req = trips.iter().filter(|t| t.arrival.is_none()).count();
        let no_resp = trips.iter().filter(|t| t.response.is_none()).count();
        assert!((300..500).contains(&lost_req), "{lost_req}");
        // 1 - 0.8 * 0.8 = 36 %.
        assert!((620..820).contains(&no_resp), "{no_resp}");
    }
}
