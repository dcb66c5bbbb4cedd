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
//! A one-way delay may also stall: with probability `stall.chance` (drawn
//! for each direction on its own) it is longer by a duration uniform in
//! `[stall.min, stall.max]`, as when a TCP retransmission or a congested
//! link holds a packet for seconds.
//!
//! Every draw of one request comes from that request's own random stream, so
//! its trip does not depend on what other requests did.
//!
//! # Profiles
//!
//! [`Profile`] names three networks, selected by `--network` or by
//! `[network] profile = ...` in a scenario file:
//!
//! | profile | one-way delay | stalls |
//! |---|---|---|
//! | `low-latency` | 3 ms + 0–5 ms | none |
//! | `default` | 10 ms + 0–50 ms | none |
//! | `heavy-tailed` | 10 ms + 0–50 ms | 0.5 % of one-way trips take 1–3 s longer |

use std::fmt;
use std::str::FromStr;

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

/// Occasional long one-way delays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stalls {
    /// Probability that one direction of a trip stalls, in `[0, 1)`.
    pub chance: f64,
    /// The shortest extra delay of a stall.
    pub min: Duration,
    /// The longest extra delay of a stall (at least `min`).
    pub max: Duration,
}

impl Stalls {
    /// No stalls.
    pub const NONE: Stalls = Stalls {
        chance: 0.0,
        min: Duration::ZERO,
        max: Duration::ZERO,
    };
}

/// A named network: one-way delay, jitter and stalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// A client next to the exchange: 3 ms + 0–5 ms, no stalls.
    LowLatency,
    /// The simulator's usual network: 10 ms + 0–50 ms, no stalls.
    Default,
    /// The default network plus stalls: 0.5 % of one-way trips take 1–3 s longer.
    HeavyTailed,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 3] = [Self::LowLatency, Self::Default, Self::HeavyTailed];

    /// `low-latency`, `default` or `heavy-tailed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LowLatency => "low-latency",
            Self::Default => "default",
            Self::HeavyTailed => "heavy-tailed",
        }
    }

    /// The shortest one-way delay `d`.
    pub const fn delay(self) -> Duration {
        match self {
            Self::LowLatency => Duration::from_millis(3),
            Self::Default | Self::HeavyTailed => Duration::from_millis(10),
        }
    }

    /// The jitter `J` above `d`.
    pub const fn jitter(self) -> Duration {
        match self {
            Self::LowLatency => Duration::from_millis(5),
            Self::Default | Self::HeavyTailed => Duration::from_millis(50),
        }
    }

    /// The stalls.
    pub const fn stalls(self) -> Stalls {
        match self {
            Self::LowLatency | Self::Default => Stalls::NONE,
            Self::HeavyTailed => Stalls {
                chance: 0.005,
                min: Duration::from_secs(1),
                max: Duration::from_secs(3),
            },
        }
    }

    /// One line on the profile, as `--help` shows it.
    pub const fn summary(self) -> &'static str {
        match self {
            Self::LowLatency => "one-way delay 3 ms + 0-5 ms jitter",
            Self::Default => "one-way delay 10 ms + 0-50 ms jitter",
            Self::HeavyTailed => "the default plus stalls: 0.5 % of one-way trips take 1-3 s longer",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A network profile name that is not one of [`Profile::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownProfile(pub String);

impl fmt::Display for UnknownProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown network profile `{}` (expected low-latency, default or heavy-tailed)",
            self.0
        )
    }
}

impl std::error::Error for UnknownProfile {}

impl FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(&name))
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// The network and response-time model.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// The profile it was built from (its delay, jitter and stalls may have
    /// been changed since).
    pub profile: Profile,
    /// The shortest one-way delay `d`.
    pub delay: Duration,
    /// The jitter `J`: one-way delays are uniform in `[d, d + J]`, before stalls.
    pub jitter: Duration,
    /// Occasional long delays on top.
    pub stalls: Stalls,
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
    /// Puts the delay, jitter and stalls of `profile` in place (service
    /// times, loss and timeout stay).
    pub fn set_profile(&mut self, profile: Profile) {
        self.profile = profile;
        self.delay = profile.delay();
        self.jitter = profile.jitter();
        self.stalls = profile.stalls();
    }

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
        // Drawn after the others, so a network without stalls keeps the
        // trips it had before stalls existed.
        let stall_up = d.chance(self.stalls.chance);
        let stall_up_len = d.within(self.stalls.min, self.stalls.max.saturating_sub(self.stalls.min));
        let stall_down = d.chance(self.stalls.chance);
        let stall_down_len = d.within(self.stalls.min, self.stalls.max.saturating_sub(self.stalls.min));
        let up = if stall_up {
            up.saturating_add(stall_up_len)
        } else {
            up
        };
        let down = if stall_down {
            down.saturating_add(stall_down_len)
        } else {
            down
        };
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
            profile: Profile::Default,
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(jitter_ms),
            stalls: Stalls::NONE,
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

    /// The one-way delays `(up, down)` of `n` requests under `profile`.
    fn delays(profile: Profile, n: u64) -> Vec<(Duration, Duration)> {
        let mut net = net(0, 0.0);
        net.set_profile(profile);
        net.phases[1].at = Duration::from_secs(1_000_000);
        net.timeout = Duration::from_secs(3_600);
        let service = Duration::from_millis(100);
        (0..n)
            .map(|id| {
                let t = net.trip(11, id, Instant::ZERO);
                let up = t.arrival.unwrap() - Instant::ZERO;
                let down = t
                    .response
                    .map_or(Duration::MAX, |r| r - Instant::ZERO - up - service);
                (up, down)
            })
            .collect()
    }

    #[test]
    fn profiles_draw_their_documented_delays() {
        let ms = Duration::from_millis;
        for (profile, lo, hi) in [(Profile::LowLatency, 3, 8), (Profile::Default, 10, 60)] {
            let d = delays(profile, 20_000);
            let all = d.iter().flat_map(|&(u, w)| [u, w]);
            let (min, max) = all.fold((Duration::MAX, Duration::ZERO), |(a, b), x| (a.min(x), b.max(x)));
            assert!(min >= ms(lo) && max <= ms(hi), "{profile}: {min:?}..{max:?}");
            // Spread over the whole range, not only part of it.
            assert!(
                min < ms(lo) + Duration::from_micros((hi - lo) * 50),
                "{profile}: min {min:?}"
            );
            assert!(
                max > ms(hi) - Duration::from_micros((hi - lo) * 50),
                "{profile}: max {max:?}"
            );
        }
        // Heavy-tailed: the default range, except about 0.5 % of one-way
        // trips, which take 1 to 3 s longer.
        let d = delays(Profile::HeavyTailed, 20_000);
        let one_way: Vec<Duration> = d.iter().flat_map(|&(u, w)| [u, w]).collect();
        let stalled: Vec<Duration> = one_way.iter().copied().filter(|&x| x > ms(60)).collect();
        assert!(
            (120..290).contains(&stalled.len()),
            "{} stalls in 40000",
            stalled.len()
        );
        for &x in &stalled {
            assert!(x >= ms(1_010) && x <= ms(3_060), "stall {x:?}");
        }
        assert!(stalled.iter().any(|&x| x < ms(1_500)) && stalled.iter().any(|&x| x > ms(2_500)));
        // The trips that did not stall are the default profile's, draw for draw.
        let default = delays(Profile::Default, 20_000);
        let same = d
            .iter()
            .zip(&default)
            .filter(|(a, b)| a.0 <= ms(60) && a.0 == b.0)
            .count();
        let unstalled = d.iter().filter(|a| a.0 <= ms(60)).count();
        assert_eq!(same, unstalled);
    }

    #[test]
    fn profiles_parse_and_refuse_unknown_names() {
        for p in Profile::ALL {
            assert_eq!(p.as_str().parse(), Ok(p));
        }
        assert_eq!("Heavy_Tailed".parse(), Ok(Profile::HeavyTailed));
        let e = "satellite".parse::<Profile>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown network profile `satellite` (expected low-latency, default or heavy-tailed)"
        );
    }
}
