//! Runtime reload under load, in paused tokio time: no admission burst at the
//! switch (every admission checked against an independent sliding-window
//! count under the configuration in force), and state kept.

mod common;

use std::sync::Arc;

use common::{check_windows, hammer};
use upbit_limiter_core::breaker::BreakerState;
use upbit_limiter_core::{Duration, Group, Instant, Preset, ServerLimit};
use upbit_limiter_ops::{Instrumented, OpsConfig, TomlText};

/// Every group on the GCRA: these reloads change bursts, rates and quotas,
/// which are the GCRA's.
const GCRA: &str = "[all]\npolicy = \"gcra\"\n";

fn config(text: &str) -> OpsConfig {
    OpsConfig::from_layers(
        Some(TomlText {
            name: "test.toml",
            text,
        }),
        std::iter::empty::<(&str, &str)>(),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn reload_to_a_slower_server_limit_under_load_keeps_state_and_never_bursts() {
    let base = config(GCRA);
    let limiter: Arc<Instrumented> = Arc::new(Instrumented::new(&base).unwrap());
    let t0 = limiter.now();
    let switch_at = t0 + Duration::from_secs(5);
    let end = t0 + Duration::from_secs(15);
    // An operator forced the ticker breaker open; the reload changes ticker's
    // configuration too, and must not close it.
    limiter
        .limiter()
        .limiter()
        .group(Group::Ticker)
        .force_open(true, t0);

    // The file an operator reloads: Upbit Global (order 8/s), ticker burst 2.
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ops-reload-slower.toml");
    std::fs::write(
        &path,
        format!("preset = \"global\"\n{GCRA}[groups.ticker]\nburst = 2\n"),
    )
    .unwrap();

    let switcher = {
        let limiter = Arc::clone(&limiter);
        let path = path.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(limiter.limiter().runtime().to_tokio(switch_at)).await;
            let before = limiter.status();
            let changed = limiter
                .reload_file(&path, std::iter::empty::<(&str, &str)>())
                .unwrap();
            let after = limiter.status();
            (before, changed, after, limiter.now())
        })
    };
    // The first order is answered 429: the ratio drops to 0.8 and must stay there.
    let admissions = hammer(&limiter, Group::Order, 20, end, 429).await;
    let (before, changed, after, at) = switcher.await.unwrap();
    assert_eq!(at, switch_at);
    assert_eq!(changed, vec![Group::Ticker, Group::Order]);

    let (b, a) = (
        before.group(Group::Order).unwrap(),
        after.group(Group::Order).unwrap(),
    );
    assert_eq!(b.ratio, 0.8);
    assert_eq!(a.ratio, 0.8, "the ratio survives the reload");
    assert!(
        a.tat >= b.tat && b.tat > at,
        "the TAT is kept (and only pushed later)"
    );
    assert_eq!(a.counters.status_429, 1);
    assert!(a.counters.admitted >= b.counters.admitted && b.counters.admitted > 0);
    assert_eq!(a.config.limits[0].max_requests, 8);
    let ticker = after.group(Group::Ticker).unwrap();
    assert_eq!(
        ticker.breaker,
        BreakerState::ForcedOpen,
        "the breaker survives the reload"
    );
    assert_eq!(ticker.quota.burst, 2);

    // Every admission against the limit in force when it was made.
    let configs = [
        (t0, base.limiter.clone()),
        (switch_at, config(&format!("preset = \"global\"\n{GCRA}")).limiter),
    ];
    let (worst, limit) = check_windows(&admissions, Group::Order, &configs);
    assert!(worst <= limit as usize);
    // Load really ran on both sides of the switch, at the rates each side allows.
    let pre = admissions.iter().filter(|&&t| t < switch_at).count();
    let post = admissions
        .iter()
        .filter(|&&t| t >= switch_at + Duration::from_secs(2) && t < switch_at + Duration::from_secs(10))
        .count();
    // 0.8 x 12 per 1.15 s for ~3.85 s after the 429's 1.15 s cool-down;
    // 0.8 x 8 per 1.15 s for 8 s (waiters queued before the end are still
    // admitted after it, so the count stops at the end).
    assert!((30..=36).contains(&pre), "{pre} before the switch");
    assert!((42..=46).contains(&post), "{post} in 8 s after the switch");
}

#[tokio::test(start_paused = true)]
async fn reload_between_bursts_and_explicit_rates_under_load_never_bursts() {
    // Ticker (10 per s, margin 100 ms): burst 1, then a derived burst of 4 (a
    // slower interval but a larger tolerance), then an explicit 5 rps, then
    // back to burst 1 (faster).
    let steps = [
        "",
        "[groups.ticker]\nburst = 4\n",
        "[groups.ticker]\nrps = 5\nburst = 3\n",
        "[groups.ticker]\nburst = 1\n",
    ];
    let config = |text: &str| config(&format!("{GCRA}{text}"));
    let base = config(steps[0]);
    let limiter: Arc<Instrumented> = Arc::new(Instrumented::new(&base).unwrap());
    let t0 = limiter.now();
    let every = Duration::from_secs(4);
    let end = t0 + every.saturating_mul(steps.len() as u64);
    let mut configs = vec![(t0, base.limiter.clone())];
    for (i, text) in steps.iter().enumerate().skip(1) {
        configs.push((t0 + every.saturating_mul(i as u64), config(text).limiter));
    }
    let switcher = {
        let limiter = Arc::clone(&limiter);
        let configs = configs.clone();
        tokio::spawn(async move {
            let mut tats = Vec::new();
            for (at, cfg) in configs.iter().skip(1) {
                tokio::time::sleep_until(limiter.limiter().runtime().to_tokio(*at)).await;
                let before = limiter.status().group(Group::Ticker).unwrap().tat;
                assert_eq!(limiter.apply(cfg).unwrap(), vec![Group::Ticker]);
                tats.push((before, limiter.status().group(Group::Ticker).unwrap().tat));
            }
            tats
        })
    };
    let admissions = hammer(&limiter, Group::Ticker, 12, end, 200).await;
    for (before, after) in switcher.await.unwrap() {
        assert!(after >= before, "a reload never moves the TAT back");
    }
    let (worst, limit) = check_windows(&admissions, Group::Ticker, &configs);
    assert!(worst <= limit as usize);
    // Every phase admitted at (close to) the rate its quota allows: no stall either.
    for (i, (from, cfg)) in configs.iter().enumerate() {
        let to = configs.get(i + 1).map_or(end, |c| c.0);
        let quota = cfg.group(Group::Ticker).quota().unwrap();
        let n = admissions.iter().filter(|&&t| t >= *from && t < to).count() as u64;
        let most = quota.max_admissions_in(to - *from);
        assert!(
            n <= most && n + 3 >= most * 9 / 10,
            "phase {i}: {n} admissions, quota allows {most}"
        );
    }
    assert_eq!(
        limiter.status().group(Group::Ticker).unwrap().config.limits[0].max_requests,
        ServerLimit::per_second(10).max_requests
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_reload_changes_nothing() {
    let limiter: Instrumented = Instrumented::new(&OpsConfig::default()).unwrap();
    let before = limiter.control().base();
    let mut bad = before.clone();
    bad.group_mut(Group::Ticker).burst = 4;
    bad.group_mut(Group::Order).quota = Some(upbit_limiter_core::Quota::per_second(12.0, 12).unwrap());
    let err = limiter.apply(&bad).unwrap_err();
    assert_eq!(err.issues.len(), 1, "{err}");
    assert_eq!(err.issues[0].key, "groups.order");
    assert_eq!(limiter.control().base(), before);
    // Ticker's valid change was not applied either: all or nothing.
    assert_eq!(
        limiter.limiter().limiter().group(Group::Ticker).config(),
        *before.group(Group::Ticker)
    );
    assert_eq!(before, upbit_limiter_core::LimiterConfig::preset(Preset::Korea));
}

#[test]
#[should_panic(expected = "11 admissions in the 1.1s before")]
fn the_window_check_catches_one_admission_too_many() {
    // 10 per second plus 100 ms margin: one every 100 ms puts 11 in 1.1 s.
    let admissions: Vec<Instant> = (0..20).map(|i| Instant::from_nanos(i * 100_000_000)).collect();
    // (The GCRA's promise: W + J; the interval log promises W.)
    let cfg = config(GCRA).limiter;
    check_windows(&admissions, Group::Ticker, &[(Instant::ZERO, cfg)]);
}
