//! A discrete-event driver for the real [`SyncLimiter`]: clients that want to send
//! at given instants, a network with a per-request delay in `[d, d + J]`, and
//! servers made of the reference [`models`](crate::models).
//!
//! Events run in time order on virtual time (plain [`Instant`]s). A client
//! calls `try_acquire` at the instant it wants to send; when told "not yet" it
//! tries again exactly at the earliest instant it was given (the most
//! aggressive legal client). An admitted request arrives at the server
//! `d + jitter` later, is judged by all four models of every window of its
//! group, and its response is reported `d` after that with `on_response`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use upbit_limiter_core::limiter::GroupConfig;
use upbit_limiter_core::{
    Admission, Denied, Duration, Group, Instant, LimiterConfig, Preset, Response, ServerLimit, SyncLimiter,
};

use crate::models::{ModelKind, ModelSet, Verdict};

/// What a request's response says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The response is never reported.
    Nothing,
    /// What the server (the chosen model of the group's shortest window) said:
    /// its status and a `Remaining-Req` header with its count.
    Server,
    /// The server's status, without a header.
    ServerStatusOnly,
    /// A made-up response, whatever the server said.
    Custom {
        /// HTTP status, or `None` for a timeout.
        status: Option<u16>,
        /// `Remaining-Req` value.
        header: Option<String>,
        /// Body (for 418).
        body: Option<String>,
    },
}

/// One request a client wants to send.
#[derive(Clone, Debug)]
pub struct Intent {
    /// Index into [`Setup::groups`].
    pub slot: usize,
    /// When the client wants to send it.
    pub at: Instant,
    /// Its extra network delay, within `[0, J]`.
    pub jitter: Duration,
    /// How its response is reported.
    pub reply: Reply,
}

/// One group under test.
#[derive(Clone, Debug)]
pub struct GroupSetup {
    /// The group.
    pub group: Group,
    /// Its configuration.
    pub config: GroupConfig,
    /// The calendar model's phase for each of its windows (missing ones are zero).
    pub phases: Vec<Duration>,
}

/// A whole scenario.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The preset every other group keeps.
    pub preset: Preset,
    /// The groups requests go to.
    pub groups: Vec<GroupSetup>,
    /// The fixed part `d` of the network delay (each way).
    pub base_delay: Duration,
    /// The model whose answer becomes the response ([`Reply::Server`]).
    pub server: ModelKind,
    /// Configuration changes made while the requests run.
    pub changes: Vec<Change>,
}

/// A run-time configuration change of one group.
#[derive(Clone, Debug)]
pub struct Change {
    /// When it is made.
    pub at: Instant,
    /// Index into [`Setup::groups`].
    pub slot: usize,
    /// The new configuration (must be valid).
    pub config: GroupConfig,
}

/// What happened to one group.
#[derive(Debug)]
pub struct GroupOutcome {
    /// The group.
    pub group: Group,
    /// Admission instants, ascending.
    pub sends: Vec<Instant>,
    /// Intent indices in admission order.
    pub order: Vec<usize>,
    /// The models of each window, after every arrival.
    pub models: Vec<ModelSet>,
}

/// What happened in a scenario.
#[derive(Debug)]
pub struct Outcome {
    /// Per group, in [`Setup::groups`] order.
    pub groups: Vec<GroupOutcome>,
    /// Intents never admitted (refused for good, or still waiting when the
    /// step budget ran out).
    pub not_admitted: Vec<usize>,
    /// Responses whose `on_response` reported a tightening header.
    pub header_tightenings: u64,
}

impl Outcome {
    /// Every model's 429s, as `(group, window, model, count)` for non-zero counts.
    pub fn rejections(&self) -> Vec<(Group, ServerLimit, ModelKind, u64)> {
        let mut out = Vec::new();
        for g in &self.groups {
            for set in &g.models {
                for (kind, n) in set.rejections() {
                    if n > 0 {
                        out.push((g.group, set.limit(), kind, n));
                    }
                }
            }
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Change {
        index: usize,
    },
    Try {
        intent: usize,
    },
    Arrive {
        intent: usize,
        admission: AdmissionKey,
    },
    Respond {
        intent: usize,
        admission: AdmissionKey,
        status: u16,
        remaining: u32,
    },
}

/// An [`Admission`] in a form that orders (for the event heap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AdmissionKey {
    at: u64,
    seq: u64,
    group: usize,
    probe: bool,
}

impl AdmissionKey {
    fn admission(self) -> Admission {
        Admission {
            group: Group::ALL[self.group],
            at: Instant::from_nanos(self.at),
            seq: self.seq,
            probe: self.probe,
            ticket: None,
        }
    }
}

/// Runs `intents` against a limiter built from `setup`. `max_steps` bounds
/// the number of events processed. Panics only if `setup` is refused by the
/// limiter (a test bug).
pub fn run(setup: &Setup, intents: &[Intent], max_steps: usize) -> Outcome {
    let mut config = LimiterConfig::preset(setup.preset);
    for g in &setup.groups {
        *config.group_mut(g.group) = g.config;
    }
    let limiter = match SyncLimiter::new(&config) {
        Ok(l) => l,
        Err(e) => panic!("scenario configuration refused: {e}"),
    };
    let mut groups: Vec<GroupOutcome> = setup
        .groups
        .iter()
        .map(|g| GroupOutcome {
            group: g.group,
            sends: Vec::new(),
            order: Vec::new(),
            models: g
                .config
                .limits
                .as_slice()
                .iter()
                .enumerate()
                .map(|(i, &limit)| ModelSet::new(limit, g.phases.get(i).copied().unwrap_or(Duration::ZERO)))
                .collect(),
        })
        .collect();
    let server_index = ModelKind::ALL
        .iter()
        .position(|&k| k == setup.server)
        .unwrap_or(0);

    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<Reverse<(Instant, u64, Event)>>, at: Instant, ev: Event| {
        heap.push(Reverse((at, seq, ev)));
        seq += 1;
    };
    for (i, change) in setup.changes.iter().enumerate() {
        push(&mut heap, change.at, Event::Change { index: i });
    }
    for (i, intent) in intents.iter().enumerate() {
        push(&mut heap, intent.at, Event::Try { intent: i });
    }
    let mut admitted = vec![false; intents.len()];
    let mut header_tightenings = 0;
    let mut steps = 0;
    while let Some(Reverse((now, _, ev))) = heap.pop() {
        steps += 1;
        if steps > max_steps {
            break;
        }
        match ev {
            Event::Change { index } => {
                let change = &setup.changes[index];
                let group = setup.groups[change.slot].group;
                if let Err(e) = limiter.group(group).set_config(change.config, now) {
                    panic!("configuration change refused: {e}");
                }
            }
            Event::Try { intent } => {
                let slot = intents[intent].slot;
                let group = setup.groups[slot].group;
                match limiter.group(group).try_acquire(now) {
                    Ok(adm) => {
                        admitted[intent] = true;
                        groups[slot].sends.push(adm.at);
                        groups[slot].order.push(intent);
                        let key = AdmissionKey {
                            at: adm.at.as_nanos(),
                            seq: adm.seq,
                            group: group.index(),
                            probe: adm.probe,
                        };
                        let arrive = adm.at + setup.base_delay + intents[intent].jitter;
                        push(
                            &mut heap,
                            arrive,
                            Event::Arrive {
                                intent,
                                admission: key,
                            },
                        );
                    }
                    Err(denied) => {
                        let retry = match denied {
                            Denied::NotYet { earliest } => earliest,
                            other => other.retry_at(),
                        };
                        if retry != Instant::MAX {
                            let retry = retry.max(now + Duration::from_nanos(1));
                            push(&mut heap, retry, Event::Try { intent });
                        }
                    }
                }
            }
            Event::Arrive { intent, admission } => {
                let slot = intents[intent].slot;
                let verdicts: Vec<[Verdict; 4]> =
                    groups[slot].models.iter_mut().map(|m| m.arrive(now)).collect();
                // The response speaks of the shortest window (the per-second one).
                let shortest = setup.groups[slot]
                    .config
                    .limits
                    .as_slice()
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, l)| l.window)
                    .map_or(0, |(i, _)| i);
                let any_429 = verdicts.iter().any(|v| !v[server_index].is_ok());
                let v = verdicts[shortest][server_index];
                let status = if any_429 { 429 } else { 200 };
                push(
                    &mut heap,
                    now + setup.base_delay,
                    Event::Respond {
                        intent,
                        admission,
                        status,
                        remaining: v.remaining,
                    },
                );
            }
            Event::Respond {
                intent,
                admission,
                status,
                remaining,
            } => {
                let slot = intents[intent].slot;
                let g = &setup.groups[slot];
                let limit = g.config.limits.as_slice()[0];
                let adm = admission.admission();
                let header;
                let response = match &intents[intent].reply {
                    Reply::Nothing => continue,
                    Reply::ServerStatusOnly => Response::status(status),
                    Reply::Server => {
                        header = Verdict { status, remaining }.remaining_req(g.group.as_str(), limit);
                        Response::status(status).with_remaining_req(&header)
                    }
                    Reply::Custom { status, header, body } => Response {
                        status: *status,
                        remaining_req: header.as_deref(),
                        body: body.as_deref(),
                        ..Response::default()
                    },
                };
                let fb = limiter.on_response(&adm, response, now);
                header_tightenings += u64::from(fb.header_tightened);
            }
        }
    }
    for g in &mut groups {
        g.sends.sort();
    }
    let not_admitted = admitted
        .iter()
        .enumerate()
        .filter(|(_, &a)| !a)
        .map(|(i, _)| i)
        .collect();
    Outcome {
        groups,
        not_admitted,
        header_tightenings,
    }
}

/// Every `(preset, group)` pair whose limits differ, Korea first.
pub fn preset_groups() -> Vec<(Preset, Group)> {
    let mut out: Vec<(Preset, Group)> = Group::ALL.iter().map(|&g| (Preset::Korea, g)).collect();
    for g in Group::ALL {
        if Preset::Global.limits(g) != Preset::Korea.limits(g)
            || Preset::Global.default_margin(g) != Preset::Korea.default_margin(g)
        {
            out.push((Preset::Global, g));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(group: Group, burst: u32) -> Setup {
        let mut config = GroupConfig::preset(Preset::Korea, group);
        config.burst = burst;
        Setup {
            preset: Preset::Korea,
            groups: vec![GroupSetup {
                group,
                config,
                phases: vec![],
            }],
            base_delay: Duration::from_millis(20),
            server: ModelKind::Sliding,
            changes: vec![],
        }
    }

    #[test]
    fn saturating_clients_are_spaced_by_the_quota() {
        let s = setup(Group::Order, 1);
        let intents: Vec<Intent> = (0..30)
            .map(|_| Intent {
                slot: 0,
                at: Instant::from_nanos(1_000_000_000),
                jitter: Duration::ZERO,
                reply: Reply::ServerStatusOnly,
            })
            .collect();
        let out = run(&s, &intents, 100_000);
        assert!(out.not_admitted.is_empty());
        let sends = &out.groups[0].sends;
        assert_eq!(sends.len(), 30);
        // Order: 12 per 1 s + 150 ms margin.
        assert_eq!(
            crate::models::max_in_window(sends, Duration::from_millis(1_150)),
            12
        );
        assert!(out.rejections().is_empty(), "{:?}", out.rejections());
    }

    #[test]
    fn preset_groups_cover_both_presets_once() {
        let all = preset_groups();
        assert_eq!(all.len(), Group::COUNT + 1, "only order differs on Global");
        assert!(all.contains(&(Preset::Global, Group::Order)));
    }
}
