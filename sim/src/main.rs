//! `upbit-limiter-sim`: run Upbit rate-limit scenarios in virtual time.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant as WallInstant;

use clap::{Parser, Subcommand};
use upbit_limiter_core::Duration;
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
    /// One-way network jitter J in milliseconds (delays are uniform in [d, d + J]).
    #[arg(long, value_name = "MS", value_parser = parse_jitter)]
    jitter_ms: Option<f64>,
    /// Seed of every random draw. Default: the scenario's.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Admission policy: ours, gcra-at-limit, best-practice, none.
    ///
    /// ours: the limiter with the preset's derived quotas (jitter margin, Zero-429).
    ///
    /// gcra-at-limit: the same limiter with every quota at the server's limit: rate N/W, burst N, no margin (10 rps with burst 10 on a 10/s group).
    ///
    /// best-practice: Upbit's published example: fixed one-second windows, header sync.
    ///
    /// none: no limiter; every request is sent at once.
    #[arg(long, value_name = "POLICY", default_value = "ours", value_parser = parse_policy)]
    policy: Policy,
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

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse().map_err(|e| format!("{e}"))
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
            Ok(s) => println!("{:<15} {}", b.name, s.description),
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
    if let Some(j) = args.jitter_ms {
        scenario.set_jitter(Duration::from_nanos((j * 1e6).round() as u64));
    }
    let models: Vec<ServerModel> = match args.server_model {
        Some(Models::All) => ServerModel::ALL.to_vec(),
        Some(Models::One(m)) => vec![m],
        None => vec![scenario.server.model],
    };
    let seed = args.seed.unwrap_or(scenario.seed);
    let show_progress = std::io::stdout().is_terminal();
    let mut reports: Vec<Report> = Vec::new();
    for model in models {
        let opts = RunOptions {
            model,
            policy: args.policy,
            seed,
        };
        let started = WallInstant::now();
        let mut last_print = started;
        let mut printed = false;
        let mut progress = |p: Progress| {
            if !show_progress {
                return;
            }
            let now = WallInstant::now();
            if now.duration_since(started).as_millis() < 500
                || now.duration_since(last_print).as_millis() < 200
            {
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
                "\r{} / {}: virtual {} of {} ({pct:.0} %)   ",
                model,
                args.policy,
                clock(p.now),
                clock(p.horizon)
            );
            let _ = err.flush();
        };
        let result = run(&scenario, &opts, &mut progress);
        if printed {
            eprint!("\r{:72}\r", "");
        }
        match result {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {} / {}: {e}", model, args.policy);
                return ExitCode::from(EXIT_FAILED);
            }
        }
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

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::List => list(),
        Command::Run(args) => run_command(args),
    }
}
