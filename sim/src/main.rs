//! `upbit-limiter-sim`: run Upbit rate-limit scenarios in virtual time.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant as WallInstant;

use clap::{Parser, Subcommand};
use upbit_limiter_core::{Duration, Preset};
use upbit_limiter_sim::compare::{compare, Comparison};
use upbit_limiter_sim::network::Profile;
use upbit_limiter_sim::serve::{Server, Settings};
use upbit_limiter_sim::{run, Policy, Progress, Report, RunOptions, Scenario, ServerModel, BUILTINS};

/// Exit code when every run finished without a 429 or 418.
const EXIT_CLEAN: u8 = 0;
/// Exit code when the simulation itself failed.
const EXIT_FAILED: u8 = 1;
/// Exit code for bad arguments or a malformed scenario file (clap uses it too).
const EXIT_USAGE: u8 = 2;
/// Exit code when any request got a 429 or a 418.
const EXIT_VIOLATION: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "upbit-limiter-sim",
    version,
    about = "Run Upbit rate-limit scenarios against a simulated server in virtual time",
    after_help = "Scenario files: the TOML format is described in sim/README.md (\"Scenarios\"); `list` shows the built-in ones.\n\
                  Exit codes: 0 no 429/418, 3 some 429/418, 2 bad arguments or scenario file, 1 simulation failure."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the built-in scenarios.
    List,
    /// Run a built-in scenario or a scenario file and print the report.
    Run(RunArgs),
    /// Serve the server model over HTTP in real time (a mock Upbit).
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// The address to listen on; port 0 picks a free one. The bound address is
    /// the first line on stdout.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Take the preset and the `[server]` settings from this scenario (a built-in
    /// name or a .toml file); the options below override them.
    #[arg(long, value_name = "SCENARIO")]
    scenario: Option<String>,
    /// The server's window model: sliding, fixed, anchored, token-bucket.
    /// Default: the scenario's, else fixed.
    #[arg(long, value_name = "MODEL", value_parser = parse_model)]
    server_model: Option<ServerModel>,
    /// Upbit's limits to serve: korea or global. Default: the scenario's, else korea.
    #[arg(long, value_name = "PRESET", value_parser = parse_preset)]
    preset: Option<Preset>,
    /// Multiply every limit's request count by this (rounded, at least 1).
    #[arg(long, value_name = "F", default_value = "1", value_parser = parse_scale)]
    limit_scale: f64,
    /// Where the fixed model's calendar windows start, in milliseconds.
    #[arg(long, value_name = "MS")]
    fixed_phase_ms: Option<u64>,
    /// This many 429s to one IP/pocket within --escalate-window-s turn the next into a 418.
    #[arg(long, value_name = "N")]
    escalate_after: Option<u32>,
    /// The span, in seconds, over which 429s are counted for escalation.
    #[arg(long, value_name = "S")]
    escalate_window_s: Option<u64>,
    /// The first block's length in seconds (it doubles per block).
    #[arg(long, value_name = "S")]
    block_s: Option<u64>,
    /// The longest block in seconds.
    #[arg(long, value_name = "S")]
    block_max_s: Option<u64>,
    /// 418 bodies state no block time (the client cannot read how long it lasts).
    #[arg(long)]
    unreadable_ban_body: bool,
    /// Record up to N decisions, served at GET /__sim/decisions.
    #[arg(long, value_name = "N", default_value_t = 0)]
    record: usize,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// A built-in scenario name (see `list`) or a path to a .toml scenario
    /// file (format: sim/README.md, "Scenarios").
    scenario: String,
    /// The server's window model: sliding, fixed, anchored, token-bucket, or all
    /// (each in turn). Default: the scenario's.
    #[arg(long, value_name = "MODEL", value_parser = parse_models)]
    server_model: Option<Models>,
    /// Network profile: low-latency (one-way delay 3 ms + 0-5 ms jitter), default
    /// (10 ms + 0-50 ms), heavy-tailed (the default plus stalls: 0.5 % of one-way
    /// trips take 1-3 s longer). Replaces the scenario's delay, jitter and stalls
    /// (--jitter-ms still applies on top). Default: the scenario's.
    #[arg(long, value_name = "PROFILE", value_parser = parse_profile)]
    network: Option<Profile>,
    /// One-way network jitter J in milliseconds (delays are uniform in [d, d + J]).
    #[arg(long, value_name = "MS", value_parser = parse_jitter)]
    jitter_ms: Option<f64>,
    /// The server's service time in milliseconds, the same for every request
    /// (replaces the scenario's service times and their phases; with
    /// `--network low-latency --service-ms 0` the round trip is the network's
    /// alone).
    #[arg(long, value_name = "MS")]
    service_ms: Option<u64>,
    /// Seed of every random draw. Default: the scenario's.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// The server sends no `Remaining-Req` header (as `remaining_req = false`
    /// in the scenario's `[server]`): the limiter has only 429s to go by.
    #[arg(long)]
    no_headers: bool,
    /// The scenario's processes (`process = ...` on its clients) do not share
    /// the budgets through the store (as `shared = false` in `[store]`): each
    /// keeps its own limiter only, believing it owns the whole budget.
    #[arg(long)]
    no_store: bool,
    /// Drops our own clients and keeps the other processes' loads
    /// (`background = true`): what a co-tenant gets by itself, the baseline
    /// for the co-tenant table's `their429` and `418 s`.
    #[arg(long)]
    others_only: bool,
    /// Admission policy: ours, gcra, gcra-at-limit, best-practice, none, oracle; or a
    /// comma-separated list of them (e.g. ours,oracle) to run each on the same
    /// traffic and seed and print them side by side per group: throughput while
    /// requests waited (per second and as a share of N/W), wait p50/p95/p99, 429s.
    ///
    /// ours: the limiter as it ships: the interval log on every HTTP group (admits while fewer than N requests could still arrive in the window; no network assumption), the GCRA for websocket messages.
    ///
    /// gcra: the limiter with every group on the GCRA with its derived quota (jitter margin, burst 1; Zero-429 while delays vary by at most the margin).
    ///
    /// gcra-at-limit: the same limiter with every quota at the server's limit: rate N/W, burst N, no margin (10 rps with burst 10 on a 10/s group).
    ///
    /// best-practice: Upbit's published example: fixed one-second windows, header sync.
    ///
    /// none: no limiter; every request is sent at once.
    ///
    /// oracle: clairvoyant: each request is sent exactly when the server will accept it on arrival, knowing its network delay and the server's windows (the physical limit).
    #[arg(long, value_name = "POLICY[,POLICY...]", default_value = "ours", value_parser = parse_policies)]
    policy: Policies,
    /// Print the report as JSON (an array of reports with --server-model all).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Debug)]
enum Models {
    One(ServerModel),
    All,
}

fn parse_models(s: &str) -> Result<Models, String> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(Models::All);
    }
    s.parse().map(Models::One).map_err(|e| format!("{e}, or all"))
}

fn parse_model(s: &str) -> Result<ServerModel, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
        .map_err(|_| format!("unknown preset `{s}` (expected korea or global)"))
}

fn parse_scale(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1000.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number above 0 (at most 1000)")),
    }
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// One policy or several to compare, in the order given.
#[derive(Clone, Debug)]
struct Policies(Vec<Policy>);

fn parse_policies(s: &str) -> Result<Policies, String> {
    let mut list: Vec<Policy> = Vec::new();
    for part in s.split(',') {
        if part.trim().is_empty() {
            return Err(format!("`{s}`: an empty policy name in the list"));
        }
        let p: Policy = part.parse().map_err(|e| format!("{e}"))?;
        if list.contains(&p) {
            return Err(format!("`{s}`: policy `{p}` is given twice"));
        }
        list.push(p);
    }
    Ok(Policies(list))
}

fn parse_jitter(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of milliseconds"))?;
    if v.is_finite() && (0.0..=60_000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range (0 to 60000 ms)"))
    }
}

fn load_scenario(arg: &str) -> Result<Scenario, String> {
    let path = std::path::Path::new(arg);
    if path.is_file() || arg.ends_with(".toml") {
        let source = std::fs::read_to_string(path).map_err(|e| format!("cannot read {arg}: {e}"))?;
        return Scenario::from_toml(&source, arg).map_err(|e| e.to_string());
    }
    match Scenario::builtin(arg) {
        Some(s) => s.map_err(|e| e.to_string()),
        None => {
            let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
            Err(format!(
                "unknown scenario `{arg}`: built-in ones are {}; or give a path to a .toml file",
                names.join(", ")
            ))
        }
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_nanos() / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn list() -> ExitCode {
    for b in BUILTINS {
        match Scenario::from_toml(b.source, b.name) {
            Ok(s) => println!("{:<18} {}", b.name, s.description),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    }
    ExitCode::from(EXIT_CLEAN)
}

fn run_command(args: RunArgs) -> ExitCode {
    let mut scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(p) = args.network {
        scenario.set_network(p);
    }
    if let Some(j) = args.jitter_ms {
        scenario.set_jitter(Duration::from_nanos((j * 1e6).round() as u64));
    }
    if let Some(ms) = args.service_ms {
        scenario.set_service(Duration::from_millis(ms));
    }
    if args.no_headers {
        scenario.server.remaining_req = false;
    }
    if args.no_store {
        scenario.set_store(false);
    }
    if args.others_only {
        scenario.keep_others_only();
    }
    let models: Vec<ServerModel> = match args.server_model {
        Some(Models::All) => ServerModel::ALL.to_vec(),
        Some(Models::One(m)) => vec![m],
        None => vec![scenario.server.model],
    };
    let seed = args.seed.unwrap_or(scenario.seed);
    let show_progress = std::io::stdout().is_terminal();
    let policies = &args.policy.0;
    let mut reports: Vec<Report> = Vec::new();
    for &model in &models {
        for &policy in policies {
            match run_one(&scenario, model, policy, seed, show_progress) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    eprintln!("error: {model} / {policy}: {e}");
                    return ExitCode::from(EXIT_FAILED);
                }
            }
        }
    }
    if policies.len() > 1 {
        let mut comparisons = Vec::new();
        let mut left = reports.into_iter();
        for _ in &models {
            let batch: Vec<Report> = left.by_ref().take(policies.len()).collect();
            match compare(batch) {
                Ok(c) => comparisons.push(c),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_FAILED);
                }
            }
        }
        return print_comparisons(&comparisons, args.json);
    }

    let out = if args.json {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&reports)
        };
        match json {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("error: cannot write JSON: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    } else {
        let mut s = reports.iter().map(Report::render).collect::<Vec<_>>().join("\n");
        if reports.len() > 1 {
            s.push_str("\nper model: ");
            let parts: Vec<String> = reports
                .iter()
                .map(|r| format!("{} 429={} 418={}", r.server_model, r.total_429, r.total_418))
                .collect();
            s.push_str(&parts.join(" | "));
            s.push('\n');
        }
        s
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(EXIT_FAILED);
    }
    if reports.iter().any(Report::violated) {
        ExitCode::from(EXIT_VIOLATION)
    } else {
        ExitCode::from(EXIT_CLEAN)
    }
}

/// Runs one policy under one model, with a progress line while it takes long.
fn run_one(
    scenario: &Scenario,
    model: ServerModel,
    policy: Policy,
    seed: u64,
    show_progress: bool,
) -> Result<Report, upbit_limiter_sim::RunError> {
    let opts = RunOptions { model, policy, seed };
    let started = WallInstant::now();
    let mut last_print = started;
    let mut printed = false;
    let mut progress = |p: Progress| {
        if !show_progress {
            return;
        }
        let now = WallInstant::now();
        if now.duration_since(started).as_millis() < 500 || now.duration_since(last_print).as_millis() < 200 {
            return;
        }
        last_print = now;
        printed = true;
        let pct = if p.horizon.is_zero() {
            100.0
        } else {
            (p.now.as_nanos() as f64 / p.horizon.as_nanos() as f64 * 100.0).min(100.0)
        };
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{model} / {policy}: virtual {} of {} ({pct:.0} %)   ",
            clock(p.now),
            clock(p.horizon)
        );
        let _ = err.flush();
    };
    let result = run(scenario, &opts, &mut progress);
    if printed {
        eprint!("\r{:72}\r", "");
    }
    result
}

/// Prints comparisons (one per server model): tables, or JSON (an object for
/// one model, an array for several).
fn print_comparisons(comparisons: &[Comparison], json: bool) -> ExitCode {
    let out = if json {
        let text = if comparisons.len() == 1 {
            serde_json::to_string_pretty(&comparisons[0])
        } else {
            serde_json::to_string_pretty(comparisons)
        };
        match text {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("error: cannot write JSON: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    } else {
        comparisons
            .iter()
            .map(Comparison::render)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(EXIT_FAILED);
    }
    if comparisons.iter().any(Comparison::violated) {
        ExitCode::from(EXIT_VIOLATION)
    } else {
        ExitCode::from(EXIT_CLEAN)
    }
}

fn serve_settings(args: &ServeArgs) -> Result<Settings, String> {
    let mut settings = match &args.scenario {
        Some(name) => {
            let scenario = load_scenario(name)?;
            Settings::from_spec(scenario.preset, &scenario.server)
        }
        None => Settings::new(Preset::Korea, ServerModel::Fixed),
    };
    if let Some(m) = args.server_model {
        settings.model = m;
    }
    if let Some(p) = args.preset {
        settings.preset = p;
    }
    settings.limit_scale = args.limit_scale;
    if let Some(ms) = args.fixed_phase_ms {
        settings.fixed_phase = Duration::from_millis(ms);
    }
    let e = &mut settings.escalation;
    if let Some(n) = args.escalate_after {
        e.after = n;
    }
    if let Some(s) = args.escalate_window_s {
        e.window = Duration::from_secs(s);
    }
    if let Some(s) = args.block_s {
        e.block = Duration::from_secs(s);
    }
    if let Some(s) = args.block_max_s {
        e.block_max = Duration::from_secs(s);
    }
    if args.unreadable_ban_body {
        e.unreadable_body = true;
    }
    settings.decision_log = args.record;
    settings.validate().map_err(|e| e.to_string())?;
    Ok(settings)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn serve_command(args: ServeArgs) -> ExitCode {
    let settings = match serve_settings(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(async move {
        let (addr, handle) = match Server::bind(args.listen, settings).await {
            Ok(bound) => bound,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        };
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{addr}").and_then(|()| stdout.flush()).is_err() {
            return ExitCode::from(EXIT_FAILED);
        }
        drop(stdout);
        eprintln!(
            "serving a mock Upbit on http://{addr} ({} model, {} preset, limits x{}); stats at /__sim/stats; ctrl-c stops",
            settings.model, settings.preset.as_str(), settings.limit_scale
        );
        shutdown_signal().await;
        match handle.shutdown().await {
            Ok(stats) => {
                if let Ok(json) = serde_json::to_string_pretty(&stats) {
                    println!("{json}");
                }
                ExitCode::from(EXIT_CLEAN)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_FAILED)
            }
        }
    })
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::List => list(),
        Command::Run(args) => run_command(args),
        Command::Serve(args) => serve_command(args),
    }
}
