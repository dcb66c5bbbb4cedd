//! Budgets we do not have to ourselves: bursty arrivals, a co-tenant's
//! measurements on traffic whose numbers are known, and server limits that
//! change under a client.

use upbit_limiter_core::Duration;
use upbit_limiter_sim::budget::CoTenantReport;
use upbit_limiter_sim::{run, Policy, Report, RunOptions, Scenario, ServerModel};

fn go(s: &Scenario, model: ServerModel, policy: Policy) -> Report {
    run(
        s,
        &RunOptions {
            model,
            policy,
            seed: 1,
        },
        &mut |_| {},
    )
    .unwrap()
}

fn scenario(src: &str) -> Scenario {
    Scenario::from_toml(src, "test").unwrap_or_else(|e| panic!("{e}"))
}

/// A network that delivers every request 10 ms after it is sent.
const EXACT_NETWORK: &str = "[network]\ndelay_ms = 10\njitter_ms = 0\nservice_jitter_ms = 0\n";
/// No 418 blocks, so that every rejection is a 429 of the window itself.
const NO_BLOCKS: &str = "[server]\nmodel = \"sliding\"\nescalate_after = 1000000\n";

fn bursts_of(size: u32) -> Scenario {
    scenario(&format!(
        "name = \"clumps\"\n{EXACT_NETWORK}{NO_BLOCKS}\
         [[loads]]\nname = \"clumps\"\nuntil_s = 120\narrivals = \"bursty\"\nburst_size = {size}\n\
         per_minute = [60]\nmix = [{{ call = \"GET /v1/ticker\" }}]\n"
    ))
}

#[test]
fn bursty_arrivals_come_in_clumps_of_the_given_size() {
    // 60 a minute in clumps of 12: one clump every 12 s (12, 24, ... 108 s),
    // each arriving at one instant on a 10/s ticker: 10 pass, 2 get a 429.
    let r = go(&bursts_of(12), ServerModel::Sliding, Policy::None);
    let t = &r.groups[0];
    assert_eq!((t.requests, t.ok, t.status_429), (108, 90, 18), "{}", r.render());
    // Clumps of 10 fit the window exactly; of 11, one of each is refused.
    let r = go(&bursts_of(10), ServerModel::Sliding, Policy::None);
    assert_eq!((r.total_requests, r.total_429), (110, 0));
    let r = go(&bursts_of(11), ServerModel::Sliding, Policy::None);
    assert_eq!((r.total_requests, r.total_429), (110, 10));
    // The same rate evenly spaced draws none.
    let mut even = bursts_of(12);
    even.loads[0].arrivals = upbit_limiter_sim::scenario::Arrivals::Uniform;
    even.loads[0].burst = 1;
    let r = go(&even, ServerModel::Sliding, Policy::None);
    assert_eq!((r.total_requests, r.total_429), (119, 0));
}

/// Ours: 5 ticker calls a second for 60 s, no limiter; another process: 8 a
/// second from 20 s to 40 s. The limit is 10/s, so the free capacity while it
/// runs is 10 - 8 = 2 a second, and our 5 draw 429s only while it runs. The
/// network's jitter (0-50 ms) shuffles the two (with none, each keeps the
/// slots it first took, as evenly spaced arrivals find them free again).
const CROWDED: &str = r#"
name = "crowded"
[[loads]]
name = "ours"
until_s = 60
arrivals = "uniform"
per_minute = [300]
mix = [{ call = "GET /v1/ticker" }]

[[loads]]
name = "other"
background = true
start_s = 20
until_s = 40
arrivals = "uniform"
per_minute = [480]
mix = [{ call = "GET /v1/ticker?markets=KRW-ETH" }]
"#;

fn crowded() -> (Report, CoTenantReport) {
    let s = scenario(&format!("{CROWDED}{NO_BLOCKS}"));
    let r = go(&s, ServerModel::Sliding, Policy::None);
    assert_eq!(r.co_tenants.len(), 1, "{}", r.render());
    let c = r.co_tenants[0].clone();
    (r, c)
}

#[test]
fn a_co_tenant_without_limiter_costs_us_429s_only_while_it_runs() {
    let (r, c) = crowded();
    assert_eq!((c.load.as_str(), c.group.as_str()), ("other", "ticker"));
    assert_eq!((c.start_s, c.until_s, c.limit_per_s), (20.0, 40.0, 10.0));
    assert!(c.rejected_first_10s > 0, "{c:?}");
    assert!(c.rejected_while_running > 0, "{c:?}");
    assert_eq!(c.rejected_after_stop, 0, "{c:?}");
    // Every one of our 429s fell while it ran.
    assert_eq!(c.rejected_first_10s + c.rejected_while_running, r.total_429);
    // Between 30 s and 40 s: 8 a second of theirs arrived, exactly (evenly
    // spaced, sent from 30 s to 39.875 s, 10-60 ms late), so 2 a second were free.
    assert_eq!(c.co_tenant_per_s, Some(8.0));
    assert_eq!(c.free_per_s, Some(2.0));
    // The server accepted at most its limit; whatever we got is at most what
    // the other process left, and our 200s are counted exactly.
    let ours = c.ours_per_s.unwrap();
    assert!(ours > 0.0 && ours <= 5.0, "{c:?}");
    assert_eq!(c.share_of_free, Some((ours / 2.0 * 1e4).round() / 1e4));
    // Alone we get 5 a second, never 95 % of 10: back to our own rate in the
    // first second after it stops.
    assert_eq!(c.alone_per_s, Some(5.0));
    assert_eq!(c.back_to_95pct_of_alone_s, Some(1.0));
    assert_eq!(c.back_to_95pct_of_alone_windows, Some(1.0));
    assert_eq!(c.back_to_95pct_of_limit_s, None);
    // Its own 429s: with no blocks, every rejection of theirs is one, and
    // all of them fell while it ran (it sent nothing else).
    assert!(c.their_429s > 0, "{c:?}");
    assert_eq!(c.their_429s, r.background.rejected);
    assert_eq!(c.blocked_s, 0);
    let text = r.render();
    assert!(text.contains("co-tenants"), "{text}");
    assert!(text.contains("other"), "{text}");
}

#[test]
fn the_co_tenants_429s_block_the_ip_though_we_never_see_them() {
    // The same traffic with Upbit's escalation (a block after 10 429s to the
    // IP within 60 s): the other process's 429s count too, and soon the IP
    // is blocked, for ours and theirs alike.
    let r = go(&scenario(CROWDED), ServerModel::Sliding, Policy::None);
    let c = &r.co_tenants[0];
    assert!(c.their_429s > 0, "{c:?}");
    assert!(
        c.their_429s < r.background.rejected,
        "some of theirs got a 418: {c:?}"
    );
    assert!(c.blocked_s > 0 && c.blocked_s <= 20, "{c:?}");
    assert_eq!(r.groups[0].status_418 > 0, c.blocked_s > 0);
}

#[test]
fn without_us_the_co_tenant_alone_is_never_refused_below_the_limit() {
    // 8 a second on a 10/s ticker, by itself: nothing of ours, none of its
    // requests refused. So every 429 it got in the runs above was ours to
    // prevent.
    let mut s = scenario(CROWDED);
    s.keep_others_only();
    let r = go(&s, ServerModel::Sliding, Policy::Ours);
    let c = &r.co_tenants[0];
    assert_eq!(r.total_requests, 0);
    assert_eq!(c.co_tenant_per_s, Some(8.0));
    assert_eq!(
        (c.their_429s, c.blocked_s, r.background.rejected),
        (0, 0, 0),
        "{c:?}"
    );
}

#[test]
fn a_poisson_co_tenant_at_70_percent_has_itself_blocked_without_us() {
    // The built-in Poisson co-tenant at 70 % of the limit: a Poisson(7)
    // count reaches 10 in 17 % of one-second windows, so by itself it draws
    // enough 429s to block the IP and the pocket for much of its 180 s.
    // No limiter on our side can keep those 418s away.
    let mut s = Scenario::builtin("co-tenant-poisson").unwrap().unwrap();
    s.keep_others_only();
    let r = go(&s, ServerModel::Sliding, Policy::Ours);
    assert_eq!(r.total_requests, 0);
    for c in &r.co_tenants {
        if c.load.starts_with("co-tenant-70pct") {
            assert!(c.their_429s >= 10 && c.blocked_s >= 60, "{c:?}");
        } else {
            assert_eq!(c.blocked_s, 0, "{c:?}");
        }
    }
}

#[test]
fn the_co_tenant_rows_are_in_the_json() {
    let (r, _) = crowded();
    let v = serde_json::to_value(&r).unwrap();
    let row = &v["co_tenants"][0];
    for key in [
        "rejected_first_10s",
        "rejected_while_running",
        "share_of_free",
        "free_per_s",
        "back_to_95pct_of_limit_s",
        "back_to_95pct_of_limit_windows",
        "their_429s",
        "blocked_s",
    ] {
        assert!(row.get(key).is_some(), "{key}: {row}");
    }
    assert_eq!(v["limit_changes"], serde_json::json!([]));
}

/// 11 order calls a second for 120 s, no limiter; the server lowers order
/// from 12/s to 8/s at 30 s.
fn lowered(headers: bool) -> Scenario {
    scenario(&format!(
        "name = \"lowered\"\n{NO_BLOCKS}remaining_req = {headers}\n\
         [[server.limit_changes]]\nat_s = 30\ngroup = \"order\"\nlimits = [\"8/1s\"]\n\
         [[loads]]\nname = \"orders\"\nuntil_s = 120\narrivals = \"uniform\"\nper_minute = [660]\n\
         mix = [{{ call = \"POST /v1/orders\" }}]\n"
    ))
}

#[test]
fn a_lower_limit_draws_429s_after_the_change_and_none_before() {
    for model in ServerModel::ALL {
        let r = go(&lowered(true), model, Policy::None);
        assert_eq!(r.limit_changes.len(), 1);
        let c = &r.limit_changes[0];
        assert_eq!(
            (c.from.as_str(), c.to.as_str(), c.limit_per_s),
            ("12/1s", "8/1s", 8.0)
        );
        assert!(c.rejected_after > 0, "{model}: {}", r.render());
        // All of them after the change.
        assert_eq!(c.rejected_after, r.total_429 + r.total_418, "{model}");
        let first = r.groups[0].first_violations[0].arrival_s;
        assert!(first >= 30.0, "{model}: first 429 at {first}");
        // A run of 90 s after the change: the quiet span is its second half.
        assert_eq!((c.quiet_from_s, c.quiet_to_s), (75, 120), "{model}");
        assert!(c.rejected_quiet > 0);
        // At most the new limit (a window's slot frees between two of the
        // evenly spaced arrivals, so a little less under some models).
        let quiet = c.ours_per_s_quiet.unwrap();
        assert!((7.0..=8.05).contains(&quiet), "{model}: {quiet}");
        if model == ServerModel::Sliding {
            // The peak is a share of the limit in force: 11 of 12 before, at
            // most 8 of 8 after (not 11 of 8).
            assert!(r.groups[0].utilisation <= 1.0, "{}", r.groups[0].utilisation);
        }
    }
}

#[test]
fn without_headers_the_limiter_never_reads_one() {
    let with = go(&lowered(true), ServerModel::Sliding, Policy::Ours);
    let without = go(&lowered(false), ServerModel::Sliding, Policy::Ours);
    // The requests are the same; only the answers' headers differ.
    assert_eq!(with.total_requests, without.total_requests);
    assert_eq!(without.groups[0].header_tightenings, Some(0));
    assert!(with.total_429 > 0 && without.total_429 > 0);
}

#[test]
fn the_co_tenant_builtins_run_with_three_phases_per_group() {
    for name in ["co-tenant-periodic", "co-tenant-poisson", "co-tenant-bursty"] {
        let s = Scenario::builtin(name).unwrap().unwrap();
        let r = go(&s, ServerModel::Sliding, Policy::Ours);
        assert_eq!(r.co_tenants.len(), 6, "{name}");
        for c in &r.co_tenants {
            // Each phase is 20, 40 or 70 % of the limit, and so is what arrived.
            let pct: f64 = c.load["co-tenant-".len()..c.load.find("pct").unwrap()]
                .parse()
                .unwrap();
            let theirs = c.co_tenant_per_s.unwrap();
            let expected = c.limit_per_s * pct / 100.0;
            assert!(
                (theirs - expected).abs() <= 0.1 * expected,
                "{name} {}: {theirs}/s, not {expected}/s",
                c.load
            );
            assert_eq!(c.until_s - c.start_s, 180.0);
            // At 70 % with random arrivals the co-tenant alone overfills
            // windows, draws 429s of its own and gets the shared budget
            // banned by the server's escalation: nobody on it gets through.
            if pct < 70.0 {
                assert!(c.ours_per_s.unwrap() > 0.0, "{name} {}: starved", c.load);
            }
            assert_eq!(c.burst_size > 1, name == "co-tenant-bursty");
        }
        assert_eq!(r.actors.finished, 44, "{name}");
    }
}

#[test]
fn the_limit_change_builtin_runs_shortened() {
    let mut s = Scenario::builtin("limit-change").unwrap().unwrap();
    // The built-in runs 25 h; 10 minutes keep this test fast in debug builds.
    assert_eq!(s.duration, Some(Duration::from_secs(90_060)));
    s.duration = Some(Duration::from_secs(600));
    s.actors[0].until = Some(Duration::from_secs(600));
    let r = go(&s, ServerModel::Fixed, Policy::Ours);
    let c = &r.limit_changes[0];
    assert_eq!((c.group.as_str(), c.at_s), ("order", 60.0));
    assert_eq!((c.quiet_from_s, c.quiet_to_s), (330, 600));
    assert!(
        c.share_quiet.unwrap() > 0.0 && c.share_quiet.unwrap() <= 1.0,
        "{c:?}"
    );
    assert!(r.render().contains("12/1s -> 8/1s"));
}

/// The built-in `limit-change` shortened to 20 minutes, seed 2, sliding
/// windows, with headers: the 429s after the change teach a ceiling of the
/// four places the server no longer has. Read against that ceiling, the
/// headers show nobody beyond it, so the limiter keeps the eight places
/// the server gives (not seven, with a neighbour's margin besides) and
/// holds them: the full windows it sees say no probe upwards would pass.
#[test]
fn headers_read_against_a_learned_ceiling_keep_the_lower_limit_s_places() {
    limit_change_meets_its_goals(ServerModel::Sliding, 1_200, 2);
}

/// The same on a token bucket, whose headers show room that the lower limit
/// does not have: refilled while we wait, the bucket counts fewer of ours
/// than a sliding window would. Seen once, that marks the server's headers
/// as lenient, and the four places the lower limit shows beside ours
/// (within the ceiling's) no longer pass for a neighbour who may leave:
/// the ceiling is held, not ended by the next quiet headers and learned
/// again from the next 429.
///
/// The early probe (a place given back after 600 windows of headers
/// showing room) comes at about 660 s: the bucket drains, and the window
/// that fills after windows of room takes the place back before the 429
/// (which would fall in the quiet span, from 630 s).
#[test]
fn on_a_token_bucket_a_lower_limit_is_not_taken_for_a_neighbour() {
    for seed in 1..=3 {
        limit_change_meets_its_goals(ServerModel::TokenBucket, 1_200, seed);
    }
}

/// `limit-change` on a calendar (fixed) window with headers, seeds 1 and 2:
/// the first 429s teach a ceiling of five places for the four the server
/// took away. Headers showing room beyond every place we take, for 600
/// windows, give the fifth back at about 670 s, not when the two-day hold
/// ends: the quiet span (from 930 s) runs at the new limit.
#[test]
fn on_calendar_windows_a_ceiling_held_too_high_is_given_back_early() {
    for seed in 1..=2 {
        limit_change_meets_its_goals(ServerModel::Fixed, 1_800, seed);
    }
}

/// `limit-change` shortened to `seconds` on `model` with headers: at most
/// 3 429s after the change, none in the quiet span, and 90 % of the new
/// limit there.
fn limit_change_meets_its_goals(model: ServerModel, seconds: u64, seed: u64) {
    let mut s = Scenario::builtin("limit-change").unwrap().unwrap();
    s.duration = Some(Duration::from_secs(seconds));
    s.actors[0].until = Some(Duration::from_secs(seconds));
    let options = RunOptions {
        model,
        policy: Policy::Ours,
        seed,
    };
    let r = run(&s, &options, &mut |_| {}).unwrap();
    let c = &r.limit_changes[0];
    assert_eq!(c.quiet_to_s, seconds);
    assert!(c.rejected_after <= 3, "seed {seed}: {c:?}");
    assert_eq!(c.rejected_quiet, 0, "seed {seed}: {c:?}");
    let share = c.share_quiet.unwrap();
    assert!(share >= 0.9, "seed {seed}: {share}: {c:?}");
}

/// Ours: ticker saturated for 120 s through the limiter; another process:
/// 2 a second (20 % of the limit) from 20 s to 60 s. Its first burst draws a
/// 429 that teaches a ceiling; the headers showed it, so when they show it
/// gone the ceiling and the adaptive reduction end, and the group is back at
/// its own rate within a few windows (a day later, with a ceiling held for
/// its whole hold).
fn comes_and_goes() -> String {
    ours_beside_other(120, (20, 60), 120)
}

/// Ours: the ticker saturated through the limiter until `until_s`; another
/// process on the same IP: `per_minute` tickers, evenly spaced, from
/// `from_s` to `to_s`.
fn ours_beside_other(until_s: u32, (from_s, to_s): (u32, u32), per_minute: u32) -> String {
    format!(
        "name = \"ours-beside-other\"\n\
         [[loads]]\nname = \"ours\"\nuntil_s = {until_s}\narrivals = \"uniform\"\n\
         per_minute = [1200]\nmix = [{{ call = \"GET /v1/ticker\" }}]\n\
         [[loads]]\nname = \"other\"\nbackground = true\nstart_s = {from_s}\nuntil_s = {to_s}\n\
         arrivals = \"uniform\"\nper_minute = [{per_minute}]\n\
         mix = [{{ call = \"GET /v1/ticker?markets=KRW-ETH\" }}]\n"
    )
}

#[test]
fn a_co_tenant_that_leaves_gives_the_budget_back_within_a_few_windows() {
    let s = scenario(&format!("{}{NO_BLOCKS}", comes_and_goes()));
    for model in [ServerModel::Sliding, ServerModel::Fixed, ServerModel::Anchored] {
        let r = go(&s, model, Policy::Ours);
        let c = &r.co_tenants[0];
        assert!(c.rejected_first_10s > 0, "{model}: {c:?}");
        assert_eq!(c.rejected_after_stop, 0, "{model}: {c:?}");
        let back = c.back_to_95pct_of_alone_windows;
        assert!(
            back.is_some_and(|w| w <= 6.0),
            "{model}: back after {back:?} windows: {c:?}"
        );
    }
}

/// Ours: the ticker saturated for 200 s; another process at 20 %, 40 % and
/// 70 % of the limit, evenly spaced, from 20 s to 110 s on a sliding
/// window. Seen over a whole stretch, its longest silence between
/// sightings is short: headers showing nobody for a window longer than that
/// say it left, and our full rate is back within the issue's 3 windows.
#[test]
fn an_even_co_tenant_seen_for_a_stretch_gives_the_budget_back_within_three_windows() {
    for per_minute in [120, 240, 420] {
        let s = scenario(&format!(
            "{}{NO_BLOCKS}",
            ours_beside_other(200, (20, 110), per_minute)
        ));
        for seed in 1..=3 {
            let options = RunOptions {
                model: ServerModel::Sliding,
                policy: Policy::Ours,
                seed,
            };
            let r = run(&s, &options, &mut |_| {}).unwrap();
            let c = &r.co_tenants[0];
            assert_eq!(c.rejected_after_stop, 0, "{per_minute}/min seed {seed}: {c:?}");
            let back = c.back_to_95pct_of_alone_windows;
            assert!(
                back.is_some_and(|w| w <= 3.0),
                "{per_minute}/min seed {seed}: back after {back:?} windows: {c:?}"
            );
        }
    }
}

/// Ours: ticker saturated for 900 s; another process: 4 a second (40 % of
/// the limit) from 20 s to 200 s, on a token bucket. While the bucket has
/// room its headers hide the other process, so they end the first ceiling
/// while it still runs, and the 429 that follows teaches a locked one (held
/// for two days unless headers prove it too high).
fn locked_then_gone() -> String {
    let server = "[server]\nmodel = \"token-bucket\"\nescalate_after = 1000000\n";
    format!("{}{server}", ours_beside_other(900, (20, 200), 240))
}

#[test]
fn on_a_token_bucket_a_locked_ceiling_comes_down_once_the_co_tenant_left() {
    let s = scenario(&locked_then_gone());
    for seed in 1..=3 {
        let options = RunOptions {
            model: ServerModel::TokenBucket,
            policy: Policy::Ours,
            seed,
        };
        let r = run(&s, &options, &mut |_| {}).unwrap();
        let c = &r.co_tenants[0];
        assert_eq!(c.rejected_after_stop, 0, "seed {seed}: {c:?}");
        // Headers counting within the ceiling's places bring it down one
        // place a minute: back at our own rate within ten minutes.
        let back = c.back_to_95pct_of_alone_s;
        assert!(
            back.is_some_and(|s| s <= 600.0),
            "seed {seed}: back after {back:?} s: {c:?}"
        );
    }
}
