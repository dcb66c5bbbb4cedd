//! The binary: exit codes, JSON shape, and errors that name the line.

use std::path::PathBuf;
use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upbit-limiter-sim"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn scratch(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upbit-limiter-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

const SMALL: &str = r#"
name = "small"
description = "a few traders"

[[actors]]
name = "trader"
count = 5
steps = [{ call = "GET /v1/ticker" }, { call = "POST /v1/orders", repeat = 2 }]
"#;

#[test]
fn clean_run_exits_zero_and_prints_the_table() {
    let out = sim(&["run", "market-shock"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("scenario market-shock"));
    assert!(text.contains("ticker"));
    assert!(text.contains("SLA"));
}

#[test]
fn any_429_exits_three() {
    let out = sim(&["run", "market-shock", "--policy", "none"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn bad_arguments_exit_two() {
    for args in [
        &["run", "market-shock", "--server-model", "leaky"][..],
        &["run", "market-shock", "--policy", "governor"],
        &["run", "market-shock", "--jitter-ms", "-1"],
        &["run", "no-such-scenario"],
        &["run"],
        &["frobnicate"],
    ] {
        let out = sim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    let missing = sim(&["run", "/nonexistent/dir/scenario.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn malformed_file_names_the_line() {
    let bad = SMALL.replace("count = 5", "count = \"five\"");
    let path = scratch("bad.toml", &bad);
    let out = sim(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = bad.lines().position(|l| l.contains("five")).unwrap() + 1;
    assert!(err.contains(&format!("bad.toml:{line}:")), "{err}");

    let typo = SMALL.replace("GET /v1/ticker", "GET /v1/tickers");
    let path = scratch("typo.toml", &typo);
    let out = sim(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = typo.lines().position(|l| l.contains("tickers")).unwrap() + 1;
    assert!(err.contains(&format!("typo.toml:{line}:")), "{err}");
    assert!(err.contains("/v1/tickers"), "{err}");
}

#[test]
fn a_user_file_runs_and_json_has_the_promised_fields() {
    let path = scratch("small.toml", SMALL);
    let out = sim(&[
        "run",
        path.to_str().unwrap(),
        "--json",
        "--seed",
        "4",
        "--jitter-ms",
        "20",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "total_429",
        "total_418",
        "virtual_seconds",
        "wall_ms",
        "sla",
        "groups",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["seed"], 4);
    assert_eq!(v["jitter_ms"], 20.0);
    assert_eq!(v["total_requests"], 15);
    let g = &v["groups"][0];
    for key in [
        "group",
        "requests",
        "admitted",
        "status_429",
        "status_418",
        "wait_ms",
        "utilisation",
    ] {
        assert!(g.get(key).is_some(), "missing groups[].{key}");
    }
    for key in ["p50", "p95", "p99", "max"] {
        assert!(g["wait_ms"].get(key).is_some(), "missing wait_ms.{key}");
    }
}

#[test]
fn all_models_give_one_report_each() {
    let path = scratch("small-all.toml", SMALL);
    let out = sim(&["run", path.to_str().unwrap(), "--json", "--server-model", "all"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["server_model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["sliding", "fixed", "anchored", "token-bucket"]);
}

#[test]
fn the_binary_is_deterministic() {
    let strip = |o: Output| {
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_object_mut().unwrap().remove("wall_ms");
        v
    };
    let a = strip(sim(&[
        "run",
        "market-shock",
        "--json",
        "--server-model",
        "sliding",
    ]));
    let b = strip(sim(&[
        "run",
        "market-shock",
        "--json",
        "--server-model",
        "sliding",
    ]));
    assert_eq!(a, b);
}

#[test]
fn list_names_every_builtin() {
    let out = sim(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "market-shock",
        "trading-day",
        "degradation",
        "endurance-24h",
        "light",
        "active",
        "institutional",
        "co-tenant-periodic",
        "co-tenant-poisson",
        "co-tenant-bursty",
        "limit-change",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing");
    }
}

const LOWERED: &str = r#"
name = "lowered"
[[server.limit_changes]]
at_s = 5
group = "order"
limits = ["8/1s"]

[[actors]]
name = "bots"
count = 24
every_s = 1
until_s = 30
steps = [{ call = "POST /v1/orders" }]
"#;

#[test]
fn no_headers_reaches_the_server_and_the_report_has_the_change() {
    let path = scratch("lowered.toml", LOWERED);
    let path = path.to_str().unwrap();
    let json = |extra: &[&str]| {
        // The GCRA reads every header as it comes (the interval log, which
        // learns the lower limit from its first 429, needs none here).
        let mut args = vec!["run", path, "--server-model", "sliding", "--policy", "gcra", "--json"];
        args.extend_from_slice(extra);
        let out = sim(&args);
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let with = json(&[]);
    let without = json(&["--no-headers"]);
    let change = &without["limit_changes"][0];
    assert_eq!(
        (change["from"].as_str(), change["to"].as_str()),
        (Some("12/1s"), Some("8/1s"))
    );
    assert_eq!(without["groups"][0]["header_tightenings"], 0);
    assert_ne!(
        with["groups"][0]["header_tightenings"], 0,
        "{}",
        with["groups"][0]
    );
    let out = sim(&["run", "market-shock", "--no-headers"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("limit changes"), "{text}");
    assert!(!text.contains("co-tenants"), "{text}");
}

/// Sends one HTTP/1.1 GET and returns the raw response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connects to the served address");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[cfg(unix)]
#[test]
fn serve_prints_its_address_and_stops_on_sigint() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_upbit-limiter-sim"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--server-model",
            "token-bucket",
            "--preset",
            "global",
            "--limit-scale",
            "0.5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first.trim().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{first:?}");
    let reply = http_get(&addr, "/v1/ticker");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("remaining-req: group=ticker; min=300; sec=4"),
        "{reply}"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 10 s after SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let stats: serde_json::Value = serde_json::from_str(&rest).expect("the final stats as JSON");
    assert_eq!(stats["model"], "token-bucket");
    assert_eq!(stats["preset"], "global");
    assert_eq!(stats["groups"]["ticker"]["accepted"], 1);
}

#[test]
fn serve_refuses_bad_settings() {
    for args in [
        &["serve", "--limit-scale", "0"][..],
        &["serve", "--limit-scale", "nan"],
        &["serve", "--server-model", "all"],
        &["serve", "--preset", "mars"],
        &["serve", "--block-s", "60", "--block-max-s", "30"],
        &["serve", "--scenario", "no-such-scenario"],
    ] {
        let out = sim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn help_explains_every_policy_and_points_to_the_scenario_format() {
    let out = sim(&["run", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    // clap wraps long lines; compare with whitespace folded.
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for p in upbit_limiter_sim::Policy::ALL {
        let line = format!("{p}: {}", p.summary());
        assert!(folded.contains(&line), "{line:?} not in\n{text}");
    }
    assert!(
        folded.contains("file (format: sim/README.md, \"Scenarios\")"),
        "{text}"
    );
    let top = String::from_utf8(sim(&["--help"]).stdout).unwrap();
    assert!(
        top.contains("the TOML format is described in sim/README.md"),
        "{top}"
    );
}

const BURST: &str = r#"
name = "burst"
description = "100 ticker calls at once"

[[actors]]
name = "poller"
count = 100
steps = [{ call = "GET /v1/ticker" }]
"#;

#[test]
fn a_wait_target_no_policy_can_meet_says_so_with_the_least_wait() {
    let path = scratch("burst.toml", BURST);
    let out = sim(&["run", path.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    // 100 at once on 10 per second: the 50th leaves 4 s after the first, the
    // 95th and 99th 9 s after.
    for (name, least) in [("p50", "4.00s"), ("p95", "9.00s"), ("p99", "9.00s")] {
        let note = format!(
            "NOT met: no policy that sends every request can meet it: the limits allow a {name} wait of no \
             less than {least} for this traffic\n"
        );
        assert!(text.contains(&note), "{note:?} not in\n{text}");
    }
    let out = sim(&["run", path.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sla"]["p99_ms"]["least_possible"], 9000.0);
    assert_eq!(v["sla"]["p99_ms"]["attainable"], false);
    assert_eq!(
        v["sla"]["without_429_pct"]["least_possible"],
        serde_json::Value::Null
    );

    // Traffic the limits let through at once has nothing to excuse.
    let path = scratch("small.toml", SMALL);
    let text = String::from_utf8(sim(&["run", path.to_str().unwrap()]).stdout).unwrap();
    assert!(!text.contains("no policy"), "{text}");
}

#[test]
fn util_is_explained_under_the_table() {
    let text = String::from_utf8(sim(&["run", "market-shock"]).stdout).unwrap();
    assert!(
        text.contains(
            "util: the most requests the server accepted (ours and background) in any window of the limit, \
             as a share of the limit\n"
        ),
        "{text}"
    );
    let out = sim(&[
        "run",
        "market-shock",
        "--policy",
        "best-practice",
        "--server-model",
        "fixed",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "util: the most requests the server accepted (ours and background) in any window of the limit, \
             as a share of the limit; above 1 the server accepted more than its limit within some window, as \
             fixed (calendar) windows allow across a window boundary (up to twice the limit)\n"
        ),
        "{text}"
    );
}

#[test]
fn several_policies_print_side_by_side_per_group() {
    let out = sim(&[
        "run",
        "market-shock",
        "--policy",
        "ours,oracle",
        "--server-model",
        "sliding",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("policies ours, oracle"), "{text}");
    for header in ["thr/s", "of N/W", "wait p50", "p95", "p99", "429"] {
        assert!(text.contains(header), "{header} missing:\n{text}");
    }
    let ticker: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("ticker"))
        .take(2)
        .collect();
    assert!(ticker[0].contains(" ours "), "{text}");
    assert!(ticker[1].contains(" oracle "), "{text}");

    let out = sim(&[
        "run",
        "market-shock",
        "--policy",
        "ours,oracle",
        "--server-model",
        "all",
        "--network",
        "low-latency",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = v.as_array().unwrap();
    assert_eq!(all.len(), 4);
    for c in all {
        assert_eq!(c["policies"], serde_json::json!(["ours", "oracle"]));
        assert_eq!(c["network"], "low-latency");
        let rows = &c["groups"][0]["rows"];
        assert_eq!(rows.as_array().unwrap().len(), 2);
        for key in ["p50", "p95", "p99"] {
            assert!(rows[1]["wait_ms"].get(key).is_some(), "{key}");
        }
        assert!(rows[1]["throughput"]["share_of_limit"].is_number(), "{c}");
    }
}

#[test]
fn network_profiles_select_by_flag_and_refuse_unknown_names() {
    let out = sim(&["run", "market-shock", "--network", "low-latency", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["network"].as_str(),
            v["delay_ms"].as_f64(),
            v["jitter_ms"].as_f64()
        ),
        (Some("low-latency"), Some(3.0), Some(5.0))
    );
    let out = sim(&["run", "market-shock", "--network", "heavy-tailed"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("network heavy-tailed: delay 10ms + jitter 50ms + stalls 1.00s-3.00s"),
        "{text}"
    );

    let out = sim(&["run", "market-shock", "--network", "satellite"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("unknown network profile `satellite` (expected low-latency, default or heavy-tailed)"),
        "{err}"
    );
    for list in ["ours,ours", "ours,", "ours,governor"] {
        let out = sim(&["run", "market-shock", "--policy", list]);
        assert_eq!(out.status.code(), Some(2), "{list}");
    }

    let path = scratch("profile.toml", "name = \"p\"\n[network]\nprofile = \"dial-up\"\n[[actors]]\nname = \"a\"\nsteps = [{ call = \"GET /v1/ticker\" }]\n");
    let out = sim(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("profile.toml:3:") && err.contains("unknown network profile `dial-up`"),
        "{err}"
    );

    let help = String::from_utf8(sim(&["run", "--help"]).stdout).unwrap();
    let folded = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for p in [
        "low-latency (one-way delay 3 ms + 0-5 ms jitter)",
        "default (10 ms + 0-50 ms)",
        "heavy-tailed (the default plus stalls",
    ] {
        assert!(folded.contains(p), "{p:?} not in\n{help}");
    }
    assert!(folded.contains("comma-separated list"), "{help}");
}
