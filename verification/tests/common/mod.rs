//! Scenario generation shared by the property tests.
#![allow(dead_code)]

use proptest::prelude::*;
use upbit_limiter_core::adaptive::Strategy as AdaptiveStrategy;
use upbit_limiter_core::limiter::{GroupConfig, Policy};
use upbit_limiter_core::{Duration, Group, Instant, Preset, Quota};
use upbit_limiter_verification::models::ModelKind;
use upbit_limiter_verification::sim::{Change, GroupSetup, Intent, Reply, Setup};

/// One generated request, before it is placed on the timeline.
#[derive(Clone, Debug)]
pub struct RawIntent {
    pub slot: usize,
    pub gap_kind: u8,
    pub gap_frac: u32,
    pub jitter_kind: u8,
    pub jitter_frac: u32,
    pub reply_kind: u8,
    /// For made-up responses: status, header, number, body.
    pub fake: (u8, u8, u32, u8),
}

/// A generated scenario.
#[derive(Clone, Debug)]
pub struct Case {
    pub preset: Preset,
    pub groups: Vec<usize>,
    /// Per group slot: burst pick and calendar phases.
    pub knobs: Vec<(u32, [u32; 3])>,
    pub base_delay_ms: u64,
    pub server: usize,
    pub intents: Vec<RawIntent>,
    /// `(at intent, slot, burst pick, strategy)` configuration changes.
    pub changes: Vec<(usize, usize, u32, u8)>,
}

/// How responses are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replies {
    /// What the server models say, with their `Remaining-Req`.
    Realistic,
    /// Random statuses (429, 418, 5xx, timeouts), headers and bodies,
    /// whatever the server said; and configuration changes.
    Random,
}

pub fn intent() -> impl Strategy<Value = RawIntent> {
    (
        0usize..4,
        0u8..100,
        any::<u32>(),
        0u8..3,
        any::<u32>(),
        0u8..10,
        (any::<u8>(), any::<u8>(), any::<u32>(), any::<u8>()),
    )
        .prop_map(
            |(slot, gap_kind, gap_frac, jitter_kind, jitter_frac, reply_kind, fake)| RawIntent {
                slot,
                gap_kind,
                gap_frac,
                jitter_kind,
                jitter_frac,
                reply_kind,
                fake,
            },
        )
}

pub fn any_groups() -> BoxedStrategy<Vec<usize>> {
    proptest::collection::vec(0usize..Group::COUNT, 1..=4).boxed()
}

pub fn case(
    groups: BoxedStrategy<Vec<usize>>,
    max_intents: usize,
    max_changes: usize,
) -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Preset::Korea), Just(Preset::Global)],
        groups,
        proptest::collection::vec((any::<u32>(), any::<[u32; 3]>()), 4),
        0u64..100,
        0usize..4,
        proptest::collection::vec(intent(), 1..max_intents),
        proptest::collection::vec((any::<usize>(), 0usize..4, any::<u32>(), 0u8..3), 0..=max_changes),
    )
        .prop_map(
            |(preset, groups, knobs, base_delay_ms, server, intents, changes)| Case {
                preset,
                groups,
                knobs,
                base_delay_ms,
                server,
                intents,
                changes,
            },
        )
}

/// `frac / u32::MAX` of `range`.
pub fn scale(frac: u32, range: Duration) -> Duration {
    let n = u128::from(frac) * u128::from(range.as_nanos()) / u128::from(u32::MAX);
    Duration::from_nanos(n as u64)
}

fn burst_for(pick: u32, config: &GroupConfig) -> u32 {
    let n_min = config
        .limits
        .as_slice()
        .iter()
        .map(|l| l.max_requests)
        .min()
        .unwrap_or(1);
    if pick % 2 == 0 {
        1
    } else {
        1 + (pick / 2) % n_min
    }
}

fn fake_reply(group: Group, n: u32, fake: (u8, u8, u32, u8)) -> Reply {
    let (status_kind, header_kind, number, body_kind) = fake;
    let status = match status_kind % 20 {
        0..6 => Some(200),
        6..11 => Some(429),
        11..13 => Some(418),
        13..15 => Some(if number % 2 == 0 { 500 } else { 503 }),
        15..17 => None,
        17 => Some(404),
        18 => Some(400),
        _ => Some(201),
    };
    let sec = number % (n + 3);
    let other = Group::ALL[(number as usize / 7) % Group::COUNT];
    let header = match header_kind % 10 {
        0..3 => None,
        3..7 => Some(format!("group={}; min={}; sec={sec}", group.as_str(), n * 60)),
        7 => Some(format!("group={}; sec={sec}", other.as_str())),
        8 => Some(format!("group=no-such-group; sec={sec}")),
        _ => Some(
            [
                "",
                "sec=1",
                "group=default; sec=-1",
                "group=x; sec=99999999999",
                "garbage;;=",
            ][number as usize % 5]
                .to_string(),
        ),
    };
    let body = match body_kind % 5 {
        0 | 1 => None,
        2 => Some(format!(
            "{{\"error\":{{\"name\":\"blocked\"}},\"retry_after\":{}}}",
            number % 120
        )),
        3 => Some(format!("blocked for {} seconds", number % 600)),
        _ => Some("{\"error\":\"nonsense\"}".to_string()),
    };
    Reply::Custom { status, header, body }
}

/// The scenario a case stands for; `force` replaces every group's quota
/// without any check (to show what the checks prevent). Returns the setup,
/// the intents and each group's starting quota.
pub fn build(case: &Case, force: Option<Quota>, replies: Replies) -> (Setup, Vec<Intent>, Vec<Quota>) {
    let mut chosen: Vec<Group> = Vec::new();
    for &g in &case.groups {
        let group = Group::ALL[g % Group::COUNT];
        if !chosen.contains(&group) {
            chosen.push(group);
        }
    }
    let mut groups = Vec::new();
    let mut quotas = Vec::new();
    for (k, &group) in chosen.iter().enumerate() {
        let (burst_pick, phases) = case.knobs[k % case.knobs.len()];
        let mut config = GroupConfig::preset(case.preset, group);
        // These properties are the GCRA quota's (the interval log has its
        // own in `prop_interval_log`).
        config.policy = Policy::Gcra;
        config.burst = burst_for(burst_pick, &config);
        if let Some(q) = force {
            config.quota = Some(q);
            config.allow_unsafe = true;
        }
        let quota = config.quota().expect("preset configurations are safe");
        let phases = config
            .limits
            .as_slice()
            .iter()
            .zip(phases)
            .map(|(l, p)| scale(p, l.window))
            .collect();
        quotas.push(quota);
        groups.push(GroupSetup {
            group,
            config,
            phases,
        });
    }
    let mut t = Instant::from_nanos(1_000_000_000);
    let mut intents = Vec::new();
    for raw in &case.intents {
        let slot = raw.slot % groups.len();
        let config = &groups[slot].config;
        let interval = quotas[slot].interval();
        let long = config.limits.longest_window();
        let gap = match raw.gap_kind {
            0..35 => Duration::ZERO,
            35..75 => scale(raw.gap_frac, interval.saturating_mul(2)),
            75..92 => scale(raw.gap_frac, long + config.margin),
            92..98 => scale(raw.gap_frac, long.saturating_mul(10)),
            // Long enough for the adaptive ratio to recover, bans to end.
            _ => scale(raw.gap_frac, Duration::from_secs(1_200)),
        };
        t += gap;
        let jitter = match raw.jitter_kind {
            0 => Duration::ZERO,
            1 => config.margin,
            _ => scale(raw.jitter_frac, config.margin),
        };
        let reply = match replies {
            Replies::Realistic => match raw.reply_kind {
                0..5 => Reply::Server,
                5..8 => Reply::ServerStatusOnly,
                _ => Reply::Nothing,
            },
            Replies::Random => match raw.reply_kind {
                0..2 => Reply::Server,
                2 => Reply::Nothing,
                _ => {
                    let n = config.limits.as_slice()[0].max_requests;
                    fake_reply(groups[slot].group, n, raw.fake)
                }
            },
        };
        intents.push(Intent {
            slot,
            at: t,
            jitter,
            reply,
        });
    }
    let mut changes = Vec::new();
    if replies == Replies::Random && force.is_none() {
        for &(at, slot, burst_pick, strategy) in &case.changes {
            let slot = slot % groups.len();
            let mut config = groups[slot].config;
            config.burst = burst_for(burst_pick, &config);
            config.adaptive = AdaptiveStrategy::ALL[usize::from(strategy) % 3].config();
            let at = intents[at % intents.len()].at;
            changes.push(Change { at, slot, config });
        }
    }
    let setup = Setup {
        preset: case.preset,
        groups,
        base_delay: Duration::from_millis(case.base_delay_ms),
        server: ModelKind::ALL[case.server % 4],
        changes,
    };
    (setup, intents, quotas)
}
