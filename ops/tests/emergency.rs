//! Emergency mode: enters, halves rate and burst, lengthens recovery, and
//! restores the previous configuration on time, lazily (no task).

mod common;

use std::sync::Arc;

use common::{check_windows, hammer};
use upbit_limiter_core::{Duration, Group, Instant, LimiterConfig, Preset, Quota, SyncLimiter};
use upbit_limiter_ops::{emergency_config, Control, Emergency, EmergencySettings, Instrumented, OpsConfig};

fn advance(d: Duration) -> impl std::future::Future<Output = ()> {
    tokio::time::advance(d.into())
}

#[tokio::test(start_paused = true)]
async fn enters_halves_every_group_and_restores_exactly_on_time() {
    let base = OpsConfig::default();
    let limiter: Instrumented = Instrumented::new(&base).unwrap();
    advance(Duration::from_secs(3)).await;
    let before = limiter.status();
    let t0 = limiter.now();
    let e = limiter.enter_emergency(Duration::from_secs(60)).unwrap();
    assert_eq!(
        e,
        Emergency {
            since: t0,
            until: t0 + Duration::from_secs(60)
        }
    );

    let status = limiter.status();
    assert_eq!(status.emergency.unwrap().remaining, Duration::from_secs(60));
    for g in Group::ALL {
        let before = before.group(g).unwrap();
        let r = status.group(g).unwrap();
        // Half the rate (twice the interval, to the microsecond the decisions
        // round to) and half the burst, rounded up: the GCRA's quota, or
        // the interval log's throttle and windows.
        let twice = before.quota.interval.saturating_mul(2);
        let us = Duration::from_micros(1);
        let off = r.quota.interval.max(twice) - r.quota.interval.min(twice);
        assert!(
            off <= us,
            "{g}: {:?} from {:?}",
            r.quota.interval,
            before.quota.interval
        );
        assert_eq!(r.quota.burst, before.quota.burst.div_ceil(2), "{g}");
        assert!((r.quota.rate * 2.0 - before.quota.rate).abs() < 1e-3, "{g}");
        assert_eq!(r.config.adaptive.recovery_delay, Duration::from_secs(600), "{g}");
        // Still safe against the server's windows.
        let running = limiter.limiter().limiter().group(g).config();
        assert!(running.validate().is_ok() && !running.allow_unsafe, "{g}");
    }

    // One millisecond before the end: still in emergency.
    advance(Duration::from_millis(59_999)).await;
    assert!(limiter.status().emergency.is_some());
    // At the end, nobody calls: nothing changes by itself (no task)...
    advance(Duration::from_millis(1)).await;
    let core = limiter.limiter().limiter();
    assert_eq!(
        core.group(Group::Order).config(),
        *emergency_config(&base.limiter, &base.emergency).group(Group::Order)
    );
    // ...until the next call that passes the time.
    let status = limiter.status();
    assert_eq!(status.at, t0 + Duration::from_secs(60));
    assert_eq!(status.emergency, None);
    for g in Group::ALL {
        assert_eq!(core.group(g).config(), *base.limiter.group(g), "{g}");
    }
    assert_eq!(limiter.emergency(), None);
}

#[tokio::test(start_paused = true)]
async fn under_load_the_rate_halves_and_comes_back_without_a_burst() {
    // The halved quota is the GCRA's.
    let mut base = OpsConfig::default();
    for g in base.limiter.groups.iter_mut() {
        g.policy = upbit_limiter_core::limiter::Policy::Gcra;
    }
    let limiter: Arc<Instrumented> = Arc::new(Instrumented::new(&base).unwrap());
    let t0 = limiter.now();
    let (enter, leave, end) = (
        t0 + Duration::from_secs(10),
        t0 + Duration::from_secs(20),
        t0 + Duration::from_secs(30),
    );
    let switcher = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            tokio::time::sleep_until(limiter.limiter().runtime().to_tokio(enter)).await;
            limiter.enter_emergency(leave - enter).unwrap();
        })
    };
    let admissions = hammer(&limiter, Group::Ticker, 8, end, 200).await;
    switcher.await.unwrap();
    let halved = emergency_config(&base.limiter, &base.emergency);
    let configs = [
        (t0, base.limiter.clone()),
        (enter, halved.clone()),
        (leave, base.limiter.clone()),
    ];
    // Every admission within the server's limit (and the halved quota never
    // admits more than it allows either).
    check_windows(&admissions, Group::Ticker, &configs);
    let count =
        |from: Instant, to: Instant| admissions.iter().filter(|&&t| t >= from && t < to).count() as u64;
    let s = Duration::from_secs;
    let normal = count(t0 + s(2), enter);
    let emergency = count(enter + s(2), leave);
    let after = count(leave + s(2), end);
    let full = base.limiter.group(Group::Ticker).quota().unwrap();
    let half = halved.group(Group::Ticker).quota.unwrap();
    assert_eq!(half, full.halved());
    // 8 s at each rate: 1.1 s / 10 per slot at full speed, twice that halved.
    let per = |q: Quota| s(8).as_nanos() / q.interval().as_nanos();
    assert!(normal.abs_diff(per(full)) <= 1, "{normal} at full speed");
    assert!(emergency.abs_diff(per(half)) <= 1, "{emergency} in emergency");
    assert!(after.abs_diff(normal) <= 1, "{after} vs {normal}");
    assert!(
        emergency * 2 <= normal + 2 && emergency * 2 + 2 >= normal,
        "{emergency} vs {normal}"
    );
    // No burst right after the restore: the first second after it holds no
    // more than one second's worth at full speed.
    assert!(count(leave, leave + s(1)) <= full.max_admissions_in(s(1)));
    assert_eq!(limiter.status().emergency, None);
}

#[tokio::test(start_paused = true)]
async fn manual_leave_extension_and_reload_during_emergency() {
    let base = OpsConfig::default();
    let limiter: Instrumented = Instrumented::new(&base).unwrap();
    let core = limiter.limiter().limiter();
    let t0 = limiter.now();
    limiter.enter_emergency(Duration::from_secs(3600)).unwrap();
    advance(Duration::from_secs(10)).await;
    // Entering again moves the end, keeps the start.
    let e = limiter.enter_emergency(Duration::from_secs(30)).unwrap();
    assert_eq!(e.since, t0);
    assert_eq!(e.until, t0 + Duration::from_secs(40));

    // A reload during emergency: the new base runs halved, and is what comes
    // back (candle on the GCRA, whose derived quota the burst shapes).
    let mut next = base.limiter.clone();
    next.group_mut(Group::Candle).policy = upbit_limiter_core::limiter::Policy::Gcra;
    next.group_mut(Group::Candle).burst = 3;
    limiter.apply(&next).unwrap();
    let want = Quota::derive(
        next.group(Group::Candle).limits.as_slice(),
        next.group(Group::Candle).margin,
        3,
    )
    .unwrap()
    .halved();
    assert_eq!(core.group(Group::Candle).config().quota, Some(want));
    assert_eq!(limiter.control().base(), next);

    // Manual leave: at once.
    let left = limiter.leave_emergency().unwrap();
    assert_eq!(left.until, t0 + Duration::from_secs(40));
    assert_eq!(core.group(Group::Candle).config(), *next.group(Group::Candle));
    assert_eq!(limiter.leave_emergency(), None);
    assert_eq!(limiter.emergency(), None);

    // A period that expired is not "left" by hand afterwards.
    limiter.enter_emergency(Duration::from_secs(1)).unwrap();
    advance(Duration::from_secs(2)).await;
    assert_eq!(limiter.leave_emergency(), None);
    assert_eq!(core.group(Group::Candle).config(), *next.group(Group::Candle));
}

#[test]
fn control_over_a_plain_core_limiter_expires_on_the_first_call_at_the_end() {
    let mut base = LimiterConfig::preset(Preset::Global);
    // An unsafe quota (10 rps with burst 10), accepted by override, stays accepted halved.
    base.group_mut(Group::Trade).quota = Some(Quota::per_second(10.0, 10).unwrap());
    base.group_mut(Group::Trade).allow_unsafe = true;
    let limiter = SyncLimiter::new(&base).unwrap();
    let settings = EmergencySettings {
        recovery_delay: Duration::from_secs(900),
    };
    let control = Control::new(base.clone(), settings);
    let at = |ms: u64| Instant::from_nanos(ms * 1_000_000);
    let e = control
        .enter_emergency(&limiter, Duration::from_secs(60), at(1_000))
        .unwrap();
    assert_eq!(e.until, at(61_000));
    let trade = limiter.group(Group::Trade).config();
    assert_eq!(trade.quota, Some(Quota::per_second(5.0, 5).unwrap()));
    assert!(trade.allow_unsafe);
    assert_eq!(trade.adaptive.recovery_delay, Duration::from_secs(900));
    assert_eq!(control.in_force(), emergency_config(&base, &settings));

    assert_eq!(control.expire(&limiter, at(60_999)), None);
    assert_eq!(limiter.group(Group::Trade).config(), trade);
    assert_eq!(control.expire(&limiter, at(61_000)), Some(e));
    assert_eq!(limiter.group(Group::Trade).config(), *base.group(Group::Trade));
    assert_eq!(control.expire(&limiter, at(70_000)), None);
    assert_eq!(control.in_force(), base);
}
