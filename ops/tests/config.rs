//! Configuration from TOML and environment pairs: a table of good inputs with
//! what they must produce, and a table of bad inputs with the exact errors.
//! Variables are passed as pairs, never through the process environment.

use upbit_limiter_core::adaptive::{AdaptiveConfig, Ratio, Strategy};
use upbit_limiter_core::breaker::BreakerConfig;
use upbit_limiter_core::{Duration, Group, GroupConfig, LimiterConfig, Preset, Quota, ServerLimit};
use upbit_limiter_ops::{EmergencySettings, OpsConfig, Thresholds, TomlText};

fn parse(file: Option<&str>, env: &[(&str, &str)]) -> Result<OpsConfig, Vec<String>> {
    OpsConfig::from_layers(
        file.map(|text| TomlText {
            name: "ops.toml",
            text,
        }),
        env.iter().copied(),
    )
    .map_err(|e| e.issues.iter().map(ToString::to_string).collect())
}

type Check = fn(&OpsConfig);
type Env<'a> = &'a [(&'a str, &'a str)];

#[test]
fn good_inputs_produce_the_intended_configuration() {
    let cases: &[(&str, Option<&str>, Env, Check)] = &[
        ("nothing at all is the Korea preset", None, &[], |c| {
            assert_eq!(*c, OpsConfig::default());
            assert_eq!(c.limiter, LimiterConfig::preset(Preset::Korea));
        }),
        ("an empty file is the Korea preset", Some(""), &[], |c| {
            assert_eq!(*c, OpsConfig::default());
        }),
        (
            "preset global from the file",
            Some("preset = \"global\""),
            &[],
            |c| {
                assert_eq!(c.preset, Preset::Global);
                assert_eq!(c.limiter, LimiterConfig::preset(Preset::Global));
                assert_eq!(
                    c.limiter.group(Group::Order).limits.as_slice(),
                    &[ServerLimit::per_second(8)]
                );
            },
        ),
        (
            "the environment's preset wins over the file's",
            Some("preset = \"global\""),
            &[("UPBIT_RATE_LIMIT_PRESET", "korea")],
            |c| assert_eq!(c.limiter, LimiterConfig::preset(Preset::Korea)),
        ),
        (
            "variables without the prefix are ignored",
            None,
            &[
                ("PATH", "/bin"),
                ("upbit_rate_limit_ticker_burst", "9"),
                ("UPBIT_RATE_LIMITS", "x"),
            ],
            |c| assert_eq!(*c, OpsConfig::default()),
        ),
        (
            "layers: preset < [all] < [groups.x] < ALL_ env < group env",
            Some(
                "[all]\nstrategy = \"balanced\"\ntimeout_ms = 1000\nmargin_ms = 120\n\
                 [groups.ticker]\nburst = 3\ntimeout_ms = 2000\nstrategy = \"aggressive\"\n",
            ),
            &[
                ("UPBIT_RATE_LIMIT_ALL_TIMEOUT_MS", "3000"),
                ("UPBIT_RATE_LIMIT_CANDLE_TIMEOUT_MS", "4000"),
            ],
            |c| {
                let ticker = c.limiter.group(Group::Ticker);
                let candle = c.limiter.group(Group::Candle);
                let trade = c.limiter.group(Group::Trade);
                assert_eq!((ticker.burst, candle.burst, trade.burst), (3, 1, 1));
                assert_eq!(ticker.adaptive, AdaptiveConfig::aggressive());
                assert_eq!(trade.adaptive, AdaptiveConfig::balanced());
                // The ALL variable is a later layer than the file's group table.
                assert_eq!(ticker.waiter_timeout, Duration::from_millis(3000));
                assert_eq!(candle.waiter_timeout, Duration::from_millis(4000));
                assert_eq!(trade.margin, Duration::from_millis(120));
                // The derived quota follows the burst and the margin.
                assert_eq!(
                    ticker.quota().unwrap(),
                    Quota::derive(&[ServerLimit::per_second(10)], Duration::from_millis(120), 3).unwrap()
                );
            },
        ),
        (
            "group names with dashes and underscores, in the file and the environment",
            Some("[groups.order-cancel-all]\ntimeout_ms = 5\n[groups.websocket_message]\nburst = 2\n"),
            &[
                ("UPBIT_RATE_LIMIT_ORDER_CANCEL_ALL_MARGIN_MS", "250"),
                ("UPBIT_RATE_LIMIT_ORDER_TEST_BURST", "2"),
                ("UPBIT_RATE_LIMIT_ORDER_BURST", "4"),
            ],
            |c| {
                let oca = c.limiter.group(Group::OrderCancelAll);
                assert_eq!(oca.waiter_timeout, Duration::from_millis(5));
                assert_eq!(oca.margin, Duration::from_millis(250));
                assert_eq!(c.limiter.group(Group::WebsocketMessage).burst, 2);
                assert_eq!(c.limiter.group(Group::OrderTest).burst, 2);
                assert_eq!(c.limiter.group(Group::Order).burst, 4);
                assert_eq!(c.limiter.group(Group::Order).margin, Duration::from_millis(150));
            },
        ),
        (
            "an explicit safe rate",
            Some("[groups.ticker]\nrps = 9\n"),
            &[],
            |c| {
                let t = c.limiter.group(Group::Ticker);
                assert_eq!(t.quota, Some(Quota::per_second(9.0, 1).unwrap()));
                assert!(!t.allow_unsafe);
                assert!(t.validate().is_ok());
            },
        ),
        (
            "10 rps with burst 10 (twice the server's 10/s in a window) with the named override",
            Some("[groups.ticker]\nrps = 10\nburst = 10\nallow_unsafe_quota = true\n"),
            &[],
            |c| {
                let t = c.limiter.group(Group::Ticker);
                assert_eq!(t.quota, Some(Quota::per_second(10.0, 10).unwrap()));
                assert!(t.allow_unsafe);
            },
        ),
        (
            "the override from the environment",
            None,
            &[
                ("UPBIT_RATE_LIMIT_TRADE_RPS", "10"),
                ("UPBIT_RATE_LIMIT_TRADE_BURST", "10"),
                ("UPBIT_RATE_LIMIT_TRADE_ALLOW_UNSAFE", "1"),
            ],
            |c| {
                let t = c.limiter.group(Group::Trade);
                assert_eq!(t.quota, Some(Quota::per_second(10.0, 10).unwrap()));
                assert!(t.allow_unsafe);
            },
        ),
        (
            "server limits, several windows",
            Some("[groups.default]\nlimits = [\"5/1s\", \"100/1m\"]\n[groups.origin]\nlimits = \"1/2s\"\n"),
            // 600 in a window is more than the interval log's slots: the GCRA.
            &[
                ("UPBIT_RATE_LIMIT_MARKET_LIMITS", "20/1s, 600/60000ms"),
                ("UPBIT_RATE_LIMIT_MARKET_POLICY", "gcra"),
            ],
            |c| {
                assert_eq!(
                    c.limiter.group(Group::Default).limits.as_slice(),
                    &[
                        ServerLimit::per_second(5),
                        ServerLimit::new(100, Duration::from_secs(60))
                    ]
                );
                assert_eq!(
                    c.limiter.group(Group::Origin).limits.as_slice(),
                    &[ServerLimit::new(1, Duration::from_secs(2))]
                );
                assert_eq!(
                    c.limiter.group(Group::Market).limits.as_slice(),
                    &[
                        ServerLimit::per_second(20),
                        ServerLimit::new(600, Duration::from_secs(60))
                    ]
                );
            },
        ),
        (
            "strategy, then single adaptive numbers over it whatever their layer",
            Some("[groups.order]\nadaptive.recovery_delay_ms = 5000\n"),
            &[
                ("UPBIT_RATE_LIMIT_ORDER_STRATEGY", "Aggressive"),
                ("UPBIT_RATE_LIMIT_ORDER_MIN_RATIO", "0.75"),
            ],
            |c| {
                let want = AdaptiveConfig {
                    recovery_delay: Duration::from_secs(5),
                    min_ratio: Ratio::try_from_f64(0.75).unwrap(),
                    ..Strategy::Aggressive.config()
                };
                assert_eq!(c.limiter.group(Group::Order).adaptive, want);
                assert_eq!(
                    c.limiter.group(Group::Ticker).adaptive,
                    AdaptiveConfig::conservative()
                );
            },
        ),
        (
            "every adaptive and breaker key lands in its field",
            Some(
                "[groups.candle.adaptive]\nerror_threshold = 2\nreduction = 0.7\nmin_ratio = 0.4\n\
                 recovery_delay_ms = 1000\nrecovery_interval_ms = 2000\nrecovery_step = 0.25\n\
                 ban_default_ms = 3000\nban_max_ms = 4000\n\
                 [groups.candle.breaker]\nconsecutive_failures = 7\nfailure_rate = 0.25\nwindow = 30\n\
                 minimum_calls = 5\nopen_wait_ms = 1500\nopen_wait_max_ms = 2500\nopen_wait_multiplier = 3\n\
                 half_open_probes = 4\nhalf_open_successes = 2\nhalf_open_max_wait_ms = 3500\n",
            ),
            &[],
            |c| {
                let g = c.limiter.group(Group::Candle);
                assert_eq!(
                    g.adaptive,
                    AdaptiveConfig {
                        error_threshold: 2,
                        reduction: Ratio::try_from_f64(0.7).unwrap(),
                        min_ratio: Ratio::try_from_f64(0.4).unwrap(),
                        recovery_delay: Duration::from_secs(1),
                        recovery_interval: Duration::from_secs(2),
                        recovery_step_ppm: 250_000,
                        ban_default: Duration::from_secs(3),
                        ban_max: Duration::from_secs(4),
                    }
                );
                assert_eq!(
                    g.breaker,
                    BreakerConfig {
                        consecutive_failures: 7,
                        failure_rate_ppm: 250_000,
                        window: 30,
                        minimum_calls: 5,
                        open_wait: Duration::from_millis(1500),
                        open_wait_max: Duration::from_millis(2500),
                        open_wait_multiplier: 3,
                        half_open_probes: 4,
                        half_open_successes: 2,
                        half_open_max_wait: Duration::from_millis(3500),
                    }
                );
                // The other groups keep the preset.
                assert_eq!(
                    *c.limiter.group(Group::Trade),
                    GroupConfig::preset(Preset::Korea, Group::Trade)
                );
            },
        ),
        (
            "the same keys from the environment",
            None,
            &[
                ("UPBIT_RATE_LIMIT_CANDLE_ERROR_THRESHOLD", "2"),
                ("UPBIT_RATE_LIMIT_CANDLE_REDUCTION", "0.7"),
                ("UPBIT_RATE_LIMIT_CANDLE_RECOVERY_STEP", "0.25"),
                ("UPBIT_RATE_LIMIT_CANDLE_BAN_MAX_MS", "4000"),
                ("UPBIT_RATE_LIMIT_CANDLE_BAN_DEFAULT_MS", "3000"),
                ("UPBIT_RATE_LIMIT_CANDLE_BREAKER_FAILURES", "7"),
                ("UPBIT_RATE_LIMIT_CANDLE_BREAKER_WINDOW", "30"),
                ("UPBIT_RATE_LIMIT_CANDLE_BREAKER_OPEN_WAIT_MS", "1500"),
                ("UPBIT_RATE_LIMIT_CANDLE_BREAKER_OPEN_WAIT_MAX_MS", "2500"),
                ("UPBIT_RATE_LIMIT_CANDLE_BREAKER_HALF_OPEN_PROBES", "4"),
                ("UPBIT_RATE_LIMIT_CANDLE_BREAKER_HALF_OPEN_SUCCESSES", "2"),
            ],
            |c| {
                let g = c.limiter.group(Group::Candle);
                assert_eq!(g.adaptive.error_threshold, 2);
                assert_eq!(g.adaptive.reduction, Ratio::try_from_f64(0.7).unwrap());
                assert_eq!(g.adaptive.recovery_step_ppm, 250_000);
                assert_eq!(g.adaptive.ban_default, Duration::from_secs(3));
                assert_eq!(g.adaptive.ban_max, Duration::from_secs(4));
                assert_eq!(g.breaker.consecutive_failures, 7);
                assert_eq!(g.breaker.window, 30);
                assert_eq!(g.breaker.open_wait, Duration::from_millis(1500));
                assert_eq!(g.breaker.open_wait_max, Duration::from_millis(2500));
                assert_eq!(
                    (g.breaker.half_open_probes, g.breaker.half_open_successes),
                    (4, 2)
                );
            },
        ),
        (
            "health and emergency from the file, one overridden by the environment",
            Some(
                "[health]\nmax_consecutive_429 = 3\nmax_queue_depth = 10\nmax_stalled_waiters = 1\n\
                 stall_grace_ms = 500\nmax_wait_p95_ms = 250\nmax_utilisation = 0.9\nmax_tat_drift = 0.1\n\
                 max_round_trips_over_margin = 2\nmax_reserve = 1\nwindow_ms = 30000\n[emergency]\nrecovery_delay_ms = 900000\n",
            ),
            &[("UPBIT_RATE_LIMIT_HEALTH_MAX_QUEUE_DEPTH", "20")],
            |c| {
                assert_eq!(
                    c.health,
                    Thresholds {
                        max_consecutive_429: 3,
                        max_queue_depth: 20,
                        max_stalled_waiters: 1,
                        stall_grace: Duration::from_millis(500),
                        max_wait_p95: Duration::from_millis(250),
                        max_utilisation: 0.9,
                        max_tat_drift: 0.1,
                        max_round_trips_over_margin: 2,
                        max_reserve: 1,
                        window: Duration::from_secs(30),
                    }
                );
                assert_eq!(
                    c.emergency,
                    EmergencySettings {
                        recovery_delay: Duration::from_secs(900)
                    }
                );
            },
        ),
        (
            "the file's example in OPERATING.md",
            Some(
                include_str!("../OPERATING.md")
                    .split("```toml\n")
                    .nth(1)
                    .unwrap()
                    .split("```")
                    .next()
                    .unwrap(),
            ),
            &[],
            |c| {
                let order = c.limiter.group(Group::Order);
                assert_eq!(order.burst, 2);
                assert_eq!(
                    order.adaptive,
                    AdaptiveConfig {
                        recovery_delay: Duration::from_secs(300),
                        ..AdaptiveConfig::balanced()
                    }
                );
                assert_eq!(order.breaker.consecutive_failures, 5);
                assert_eq!(
                    c.limiter.group(Group::WebsocketMessage).limits.as_slice(),
                    &[
                        ServerLimit::per_second(5),
                        ServerLimit::new(100, Duration::from_secs(60))
                    ]
                );
                assert_eq!(c.emergency.recovery_delay, Duration::from_secs(600));
                assert_eq!(
                    c.limiter.group(Group::Ticker).quota,
                    Some(Quota::per_second(8.5, 1).unwrap())
                );
                assert!(order.validate().is_ok());
            },
        ),
    ];
    for (name, file, env, check) in cases {
        let config = parse(*file, env).unwrap_or_else(|e| panic!("{name}: refused: {e:#?}"));
        check(&config);
        // Everything accepted is accepted by core as well.
        for g in Group::ALL {
            assert!(config.limiter.group(g).validate().is_ok(), "{name}: {g}");
        }
    }
}

#[test]
fn bad_inputs_report_every_problem_with_key_and_position() {
    let cases: &[(&str, Option<&str>, Env, &[&str])] = &[
        (
            "10 rps with burst 10 for a 10/s group is refused, saying why",
            Some("[groups.ticker]\nrps = 10\nburst = 10\n"),
            &[],
            &["ops.toml:2:7: groups.ticker.rps: quota admits up to 21 requests in 1.1s counting both ends (server window 1s plus \
               jitter margin), but the server allows 10: it could receive HTTP 429; to accept it anyway set \
               allow_unsafe_quota = true in [groups.ticker]"],
        ),
        (
            "the same from the environment names the variable to set",
            None,
            &[("UPBIT_RATE_LIMIT_TICKER_RPS", "10"), ("UPBIT_RATE_LIMIT_TICKER_BURST", "10")],
            &["environment variable UPBIT_RATE_LIMIT_TICKER_RPS: quota admits up to 21 requests in 1.1s counting both ends (server \
               window 1s plus jitter margin), but the server allows 10: it could receive HTTP 429; to accept it \
               anyway set UPBIT_RATE_LIMIT_TICKER_ALLOW_UNSAFE=1"],
        ),
        (
            "even 10 rps with burst 1 is unsafe once the jitter margin counts",
            Some("[groups.candle]\nrps = 10.0\n"),
            &[],
            &["ops.toml:2:7: groups.candle.rps: quota admits up to 12 requests in 1.1s counting both ends (server window 1s plus \
               jitter margin), but the server allows 10: it could receive HTTP 429; to accept it anyway set \
               allow_unsafe_quota = true in [groups.candle]"],
        ),
        (
            "an override set to false does not override",
            Some("[groups.ticker]\nrps = 10\nburst = 10\nallow_unsafe_quota = false\n"),
            &[],
            &["ops.toml:2:7: groups.ticker.rps: quota admits up to 21 requests in 1.1s counting both ends (server window 1s plus \
               jitter margin), but the server allows 10: it could receive HTTP 429; to accept it anyway set \
               allow_unsafe_quota = true in [groups.ticker]"],
        ),
        (
            "a burst above the server's limit cannot be derived (and has no override)",
            Some("[groups.market]\nburst = 11\n"),
            &[],
            &["ops.toml:2:9: groups.market.burst: burst 11 exceeds the server limit of 10 per 1s"],
        ),
        (
            "zero burst and zero timeout",
            Some("[all]\nburst = 0\n[groups.candle]\nburst = 1\ntimeout_ms = 0\n"),
            &[("UPBIT_RATE_LIMIT_ORIGIN_BURST", "1")],
            &[
                // Refused where it is written, once, with the range it takes.
                "ops.toml:2:9: all.burst: expected a whole number of requests from 1 to the group's server limit, \
                 found integer 0",
                "ops.toml:5:14: groups.candle.timeout_ms: waiter timeout must be longer than zero",
            ],
        ),
        (
            "a file with many problems reports all of them, in file order",
            Some(
                "preset = \"korea\"\ncolour = \"blue\"\n\n[groups.tickr]\nburst = 1\n\n[groups.order]\n\
                 burst = \"ten\"\nmargin_ms = -5\nstrategy = \"fast\"\nlimits = [\"12/1s\", \"bad\"]\n\
                 adaptive.reduction = 1.0\nadaptive.recovery_step = 0\nadaptive.ban_default_ms = 7200000\n\n\
                 [groups.order.breaker]\nwindow = 0\nhalf_open_probes = 1\nopen_wait_ms = 0\nspeed = 3\n",
            ),
            &[],
            &[
                "ops.toml:2:1: colour: unknown setting",
                "ops.toml:4:9: groups.tickr: unknown group \"tickr\" (groups: market, candle, trade, ticker, \
                 orderbook, default, order, order-test, order-cancel-all, websocket-connect, websocket-message, \
                 origin, public-fallback)",
                "ops.toml:8:9: groups.order.burst: expected a whole number of requests from 1 to the group's server limit, found string \"ten\"",
                "ops.toml:9:13: groups.order.margin_ms: expected a non-negative number of milliseconds, found \
                 integer -5",
                "ops.toml:10:12: groups.order.strategy: expected \"conservative\", \"balanced\" or \"aggressive\", \
                 found string \"fast\"",
                "ops.toml:11:10: groups.order.limits: expected server limits such as \"10/1s\" or [\"5/1s\", \
                 \"100/60s\"] (one to three windows), found string \"bad\" (element 2)",
                "ops.toml:12:22: groups.order.adaptive.reduction: adaptive reduction must be below 1.0, or a 429 \
                 changes nothing",
                "ops.toml:13:26: groups.order.adaptive.recovery_step: adaptive recovery_step_ppm must be at least 1",
                "ops.toml:14:27: groups.order.adaptive.ban_default_ms: adaptive ban_default must not exceed ban_max",
                "ops.toml:17:10: groups.order.breaker.window: breaker window must be between 1 and 64 calls",
                "ops.toml:18:20: groups.order.breaker.half_open_probes: breaker half_open_probes must be at least \
                 half_open_successes",
                "ops.toml:19:16: groups.order.breaker.open_wait_ms: breaker open_wait must be longer than zero",
                "ops.toml:20:1: groups.order.breaker.speed: unknown setting",
            ],
        ),
        (
            "wrong shapes: a group that is not a table, a setting table where a value belongs",
            Some("groups = 3\n[health]\nwindow_ms = 0\nmax_utilisation = \"high\"\n[emergency]\nrecovery_delay_ms = 0\n"),
            &[],
            &[
                "ops.toml:1:10: groups: expected a table, found integer",
                "ops.toml:3:13: health.window_ms: expected a positive number of milliseconds, found integer 0",
                "ops.toml:4:19: health.max_utilisation: expected a non-negative number, found string \"high\"",
                "ops.toml:6:21: emergency.recovery_delay_ms: expected a positive number of milliseconds, found \
                 integer 0",
            ],
        ),
        (
            "TOML syntax errors stop the file, with their line",
            Some("[groups.ticker]\nburst = = 3\n"),
            &[("UPBIT_RATE_LIMIT_TICKER_BURST", "many")],
            &[
                "ops.toml:2:9: TOML syntax: extra `=`, expected nothing",
                "ops.toml:2:11: TOML syntax: unexpected key or value, expected newline, `#`",
                "environment variable UPBIT_RATE_LIMIT_TICKER_BURST: expected a whole number of requests from 1 to the group's server limit, \
                 found \"many\"",
            ],
        ),
        (
            "environment problems, sorted by variable name",
            None,
            &[
                ("UPBIT_RATE_LIMIT_TICKR_RPS", "1"),
                ("UPBIT_RATE_LIMIT_ORDER_SPEED", "1"),
                ("UPBIT_RATE_LIMIT_ORDER_CANCEL_ALL_ALLOW_UNSAFE", "maybe"),
                ("UPBIT_RATE_LIMIT_PRESET", "mars"),
                ("UPBIT_RATE_LIMIT_HEALTH_MAX_UTILISATION", "-1"),
                ("UPBIT_RATE_LIMIT_HEALTH_COLOUR", "red"),
                ("UPBIT_RATE_LIMIT_WEBSOCKET_MESSAGE_LIMITS", "5/1s,100/60s,1/1h,2/2h"),
                ("UPBIT_RATE_LIMIT_DEFAULT_RPS", "NaN"),
                ("UPBIT_RATE_LIMIT_MARKET_RPS", "0"),
                ("UPBIT_RATE_LIMIT_TRADE_REDUCTION", "1.5"),
            ],
            &[
                "environment variable UPBIT_RATE_LIMIT_DEFAULT_RPS: expected a positive number of requests per \
                 second, found \"NaN\"",
                "environment variable UPBIT_RATE_LIMIT_HEALTH_COLOUR: unknown setting",
                "environment variable UPBIT_RATE_LIMIT_HEALTH_MAX_UTILISATION: expected a non-negative number, \
                 found \"-1\"",
                "environment variable UPBIT_RATE_LIMIT_MARKET_RPS: expected a positive number of requests per \
                 second, found \"0\"",
                "environment variable UPBIT_RATE_LIMIT_ORDER_CANCEL_ALL_ALLOW_UNSAFE: expected 1, 0, true, false, \
                 yes, no, on or off, found \"maybe\"",
                "environment variable UPBIT_RATE_LIMIT_ORDER_SPEED: unknown setting",
                "environment variable UPBIT_RATE_LIMIT_PRESET: expected korea or global, found \"mars\"",
                "environment variable UPBIT_RATE_LIMIT_TICKR_RPS: unknown variable (expected \
                 UPBIT_RATE_LIMIT_<GROUP>_<SETTING> with GROUP one of MARKET, CANDLE, TRADE, TICKER, ORDERBOOK, \
                 DEFAULT, ORDER, ORDER_TEST, ORDER_CANCEL_ALL, WEBSOCKET_CONNECT, WEBSOCKET_MESSAGE, ORIGIN, \
                 PUBLIC_FALLBACK, ALL; or UPBIT_RATE_LIMIT_PRESET, _HEALTH_*, _EMERGENCY_*)",
                "environment variable UPBIT_RATE_LIMIT_TRADE_REDUCTION: expected a number above 0 and at most 1, \
                 found \"1.5\"",
                "environment variable UPBIT_RATE_LIMIT_WEBSOCKET_MESSAGE_LIMITS: expected server limits such as \
                 \"10/1s\" or [\"5/1s\", \"100/60s\"] (one to three windows), found 4 windows",
            ],
        ),
        (
            "semantic problems are put on the layer that set the value",
            Some("[groups.order.breaker]\nhalf_open_successes = 5\n"),
            &[("UPBIT_RATE_LIMIT_ORDER_BREAKER_WINDOW", "65"), ("UPBIT_RATE_LIMIT_ORDER_BAN_MAX_MS", "0")],
            &[
                "ops.toml:2:23: groups.order.breaker.half_open_successes: breaker half_open_probes must be at \
                 least half_open_successes",
                "environment variable UPBIT_RATE_LIMIT_ORDER_BAN_MAX_MS: adaptive ban_default must not exceed \
                 ban_max",
                "environment variable UPBIT_RATE_LIMIT_ORDER_BREAKER_WINDOW: breaker window must be between 1 and \
                 64 calls",
            ],
        ),
    ];
    for (name, file, env, want) in cases {
        let got = parse(*file, env)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        let got: Vec<&str> = got.iter().map(String::as_str).collect();
        assert_eq!(&got, want, "{name}");
    }
}

#[test]
fn errors_display_as_one_report() {
    let err = OpsConfig::from_layers(
        Some(TomlText {
            name: "limits.toml",
            text: "[groups.ticker]\nburst = \"ten\"\n",
        }),
        [("UPBIT_RATE_LIMIT_ORDER_STRATEGY", "fast")],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "2 configuration problem(s):\n  limits.toml:2:9: groups.ticker.burst: expected a whole number of requests from 1 to the group's server limit, \
         found string \"ten\"\n  environment variable UPBIT_RATE_LIMIT_ORDER_STRATEGY: expected \
         \"conservative\", \"balanced\" or \"aggressive\", found \"fast\""
    );
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("ops-config-load.toml");
    std::fs::write(&path, "[groups.ticker]\nburst = 2\n").unwrap();
    let c = OpsConfig::load(Some(&path), [("UPBIT_RATE_LIMIT_TICKER_TIMEOUT_MS", "7")]).unwrap();
    assert_eq!(c.limiter.group(Group::Ticker).burst, 2);
    assert_eq!(
        c.limiter.group(Group::Ticker).waiter_timeout,
        Duration::from_millis(7)
    );

    let missing = dir.join("ops-config-missing.toml");
    let err = OpsConfig::load(Some(&missing), [("UPBIT_RATE_LIMIT_TICKER_BURST", "x")]).unwrap_err();
    assert_eq!(err.issues.len(), 2, "{err}");
    assert!(
        err.issues[0]
            .to_string()
            .starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{err}"
    );
    assert_eq!(
        err.issues[1].to_string(),
        "environment variable UPBIT_RATE_LIMIT_TICKER_BURST: expected a whole number of requests from 1 to the group's server limit, found \"x\""
    );
}

#[test]
fn validate_collects_problems_of_configurations_built_in_code() {
    let mut cfg = LimiterConfig::preset(Preset::Korea);
    cfg.group_mut(Group::Ticker).quota = Some(Quota::per_second(10.0, 10).unwrap());
    cfg.group_mut(Group::Order).waiter_timeout = Duration::ZERO;
    cfg.group_mut(Group::Order).breaker.window = 0;
    let err = upbit_limiter_ops::config::validate(&cfg).unwrap_err();
    let got: Vec<String> = err.issues.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "groups.order: breaker window must be between 1 and 64 calls",
            "groups.order: waiter timeout must be longer than zero",
            "groups.ticker: quota admits up to 21 requests in 1.1s counting both ends (server window 1s plus jitter margin), but the \
             server allows 10: it could receive HTTP 429",
        ]
    );
    cfg.group_mut(Group::Ticker).allow_unsafe = true;
    cfg.group_mut(Group::Order).waiter_timeout = Duration::from_secs(1);
    cfg.group_mut(Group::Order).breaker.window = 20;
    assert!(upbit_limiter_ops::config::validate(&cfg).is_ok());
}

#[test]
fn the_error_report_in_operating_md_is_what_the_code_prints() {
    let doc = include_str!("../OPERATING.md");
    let block = doc
        .split("```text\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let file =
        "preset = \"korea\"\n\n[groups.ticker]\nburst = \"ten\"\n[groups.market]\nburst = 10\nrps = 10\n";
    let err = OpsConfig::from_layers(
        Some(TomlText {
            name: "limits.toml",
            text: file,
        }),
        [("UPBIT_RATE_LIMIT_ORDER_STRATEGY", "fast")],
    )
    .unwrap_err();
    assert_eq!(format!("{err}\n"), block);
}

fn warnings(file: Option<&str>, env: &[(&str, &str)]) -> Vec<String> {
    parse(file, env)
        .unwrap_or_else(|e| panic!("refused: {e:?}"))
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_burst_that_lowers_the_derived_rate_is_accepted_with_its_cost() {
    assert_eq!(
        warnings(None, &[("UPBIT_RATE_LIMIT_MARKET_BURST", "10")]),
        [
            "environment variable UPBIT_RATE_LIMIT_MARKET_BURST: burst 10 lowers market's sustained rate to \
          0.91/s (from 9.09/s at burst 1)"
        ]
    );
    assert_eq!(
        warnings(Some("[groups.ticker]\nburst = 3\n"), &[]),
        ["ops.toml:2:9: groups.ticker.burst: burst 3 lowers ticker's sustained rate to 7.27/s (from 9.09/s \
          at burst 1)"]
    );
    // The quota is what the derivation says it is.
    let c = parse(None, &[("UPBIT_RATE_LIMIT_MARKET_BURST", "10")]).unwrap();
    let q = c.limiter.group(Group::Market).quota().unwrap();
    assert_eq!(
        (q.interval(), q.burst()),
        (Duration::from_nanos(1_100_000_001), 10)
    );
    // Burst 1, the presets, and an explicit rate cost nothing to warn about.
    assert!(warnings(None, &[("UPBIT_RATE_LIMIT_MARKET_BURST", "1")]).is_empty());
    assert!(warnings(None, &[]).is_empty());
    assert!(warnings(Some("[groups.ticker]\nrps = 5\nburst = 3\n"), &[]).is_empty());
}

#[test]
fn configuration_traps_are_refused_with_a_true_reason() {
    let cases: &[(&str, Option<&str>, Env, &[&str])] = &[
        (
            "a shared burst names the groups that refuse it",
            None,
            &[("UPBIT_RATE_LIMIT_ALL_BURST", "3")],
            &[
                "environment variable UPBIT_RATE_LIMIT_ALL_BURST: in group order-cancel-all: burst 3 exceeds \
                 the server limit of 1 per 2s",
                "environment variable UPBIT_RATE_LIMIT_ALL_BURST: in group origin: burst 3 exceeds the server \
                 limit of 1 per 10s",
            ],
        ),
        (
            "groups refusing a shared setting for the same reason share one line",
            Some("[all]\ntimeout_ms = 0\n[groups.ticker]\ntimeout_ms = 5\n"),
            &[],
            &["ops.toml:2:14: all.timeout_ms: in groups market, candle, trade, orderbook, default, order, \
               order-test, order-cancel-all, websocket-connect, websocket-message, origin and public-fallback: \
               waiter timeout must be longer than zero"],
        ),
        (
            "a number that overflows is too large, not 'not a number'",
            Some("[groups.market]\nrps = 1e400\n"),
            &[("UPBIT_RATE_LIMIT_TICKER_RPS", "1e400")],
            &[
                "ops.toml:2:7: groups.market.rps: expected a positive number of requests per second, found \
                 float 1e400, which is too large (it overflows)",
                "environment variable UPBIT_RATE_LIMIT_TICKER_RPS: expected a positive number of requests per \
                 second, found \"1e400\", which is too large (it overflows)",
            ],
        ),
        (
            "infinity written as a word is not a number",
            None,
            &[("UPBIT_RATE_LIMIT_TICKER_RPS", "inf")],
            &["environment variable UPBIT_RATE_LIMIT_TICKER_RPS: expected a positive number of requests per \
               second, found \"inf\""],
        ),
        (
            "a burst with more digits than any burst takes is too large",
            None,
            &[("UPBIT_RATE_LIMIT_MARKET_BURST", "99999999999")],
            &["environment variable UPBIT_RATE_LIMIT_MARKET_BURST: expected a whole number of requests from 1 \
               to the group's server limit, found \"99999999999\", which is too large (it overflows)"],
        ),
        (
            "a zero burst is refused by the same text that says what a burst takes",
            None,
            &[("UPBIT_RATE_LIMIT_MARKET_BURST", "0")],
            &["environment variable UPBIT_RATE_LIMIT_MARKET_BURST: expected a whole number of requests from 1 \
               to the group's server limit, found \"0\""],
        ),
    ];
    for (what, file, env, want) in cases {
        let got = parse(*file, env).expect_err(what);
        assert_eq!(got, *want, "{what}");
    }
}

#[test]
fn the_warning_and_shared_refusal_in_operating_md_are_what_the_code_prints() {
    let doc = include_str!("../OPERATING.md");
    let warning = &warnings(None, &[("UPBIT_RATE_LIMIT_MARKET_BURST", "10")])[0];
    assert!(doc.contains(&format!("\n{warning}\n")), "{warning}");
    let refused = &parse(None, &[("UPBIT_RATE_LIMIT_ALL_BURST", "3")]).unwrap_err()[0];
    assert!(doc.contains(&format!("\n  {refused}\n")), "{refused}");
}

#[test]
fn the_policy_and_maximum_flight_time_are_set_per_group_from_file_and_environment() {
    use upbit_limiter_core::limiter::Policy;
    let c = parse(
        Some("[all]\npolicy = \"gcra\"\nmax_flight_ms = 10000\n[groups.ticker]\npolicy = \"interval-log\"\n"),
        &[("UPBIT_RATE_LIMIT_ORDER_MAX_FLIGHT_MS", "5000")],
    )
    .unwrap();
    assert_eq!(c.limiter.group(Group::Ticker).policy, Policy::IntervalLog);
    assert_eq!(c.limiter.group(Group::Ticker).max_flight, Duration::from_secs(10));
    assert_eq!(c.limiter.group(Group::Order).max_flight, Duration::from_secs(5));
    assert_eq!(c.limiter.group(Group::Order).policy, Policy::Gcra);
    assert_eq!(c.limiter.group(Group::WebsocketMessage).policy, Policy::Gcra);
    // The presets' policy: the interval log, the GCRA for websocket messages.
    let c = parse(None, &[]).unwrap();
    for g in Group::ALL {
        assert_eq!(c.limiter.group(g).policy, Policy::for_group(g), "{g}");
    }
    assert_eq!(c.limiter.group(Group::Ticker).policy, Policy::IntervalLog);
    // A name that is neither is refused with what is expected.
    let err = parse(None, &[("UPBIT_RATE_LIMIT_TICKER_POLICY", "fast")]).unwrap_err();
    assert_eq!(
        err,
        ["environment variable UPBIT_RATE_LIMIT_TICKER_POLICY: expected \"interval-log\" or \"gcra\", found \"fast\""]
    );
    // A zero margin is refused for the GCRA, not for the interval log.
    assert_eq!(
        parse(
            None,
            &[
                ("UPBIT_RATE_LIMIT_TICKER_MARGIN_MS", "0"),
                ("UPBIT_RATE_LIMIT_TICKER_POLICY", "gcra")
            ]
        )
        .unwrap_err(),
        ["environment variable UPBIT_RATE_LIMIT_TICKER_MARGIN_MS: the gcra policy needs a jitter margin above zero \
          (any jitter could put one request too many in a window); use policy = \"interval-log\", which needs none"]
    );
    assert!(parse(None, &[("UPBIT_RATE_LIMIT_TICKER_MARGIN_MS", "0")]).is_ok());
}
