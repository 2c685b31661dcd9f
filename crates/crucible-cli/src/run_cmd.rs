use crate::exit;
use anyhow::Context;
use crucible_core::RunStatus;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Language profile: python, c, cpp, rust, javascript (see `crucible languages`).
    #[arg(long)]
    lang: String,
    /// File to give the program as stdin (default: empty).
    #[arg(long)]
    stdin: Option<PathBuf>,
    /// CPU time limit in seconds (the wall clock gets twice this plus one second).
    #[arg(long)]
    time_limit: Option<f64>,
    /// Memory limit in MiB.
    #[arg(long)]
    memory_limit: Option<u64>,
    /// Fuel budget per run for wasm languages (instructions; replaces the budget derived
    /// from the time limit).
    #[arg(long)]
    fuel: Option<u64>,
    /// Print one JSON object instead of the program's output.
    #[arg(long)]
    json: bool,
    /// The program's source file.
    source: PathBuf,
}

pub fn run(args: RunArgs, profiles: Option<&Path>) -> anyhow::Result<u8> {
    let source = std::fs::read_to_string(&args.source)
        .with_context(|| format!("cannot read {}", args.source.display()))?;
    anyhow::ensure!(
        !source.trim().is_empty(),
        "{}: the program is empty",
        args.source.display()
    );
    let stdin = match &args.stdin {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => Vec::new(),
    };
    let mut judge = crate::make_judge(profiles, Default::default(), args.fuel)?;
    // One program: a fresh sandbox starts sooner than a fork server's zygote would.
    judge.set_fork_server(false);
    let profile = judge.profiles().get(&args.lang)?;
    let limits = crate::limits_from_flags(profile.limits, args.time_limit, args.memory_limit)?;
    let report = judge.run_source(&args.lang, &source, &stdin, Some(limits))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        use std::io::Write;
        std::io::stdout().write_all(report.stdout.as_bytes())?;
        std::io::stderr().write_all(report.stderr.as_bytes())?;
        eprintln!(
            "[crucible] status {} exit {:?} signal {:?} cpu {} ms wall {} ms memory {} KiB{}",
            serde_json::to_value(report.status)?.as_str().unwrap_or("?"),
            report.exit_code,
            report.signal,
            report.cpu_ms,
            report.wall_ms,
            report.memory_kb,
            report
                .message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default(),
        );
    }
    Ok(match report.status {
        RunStatus::Ok => exit::OK,
        RunStatus::SandboxError => exit::SANDBOX_ERROR,
        _ => exit::FAILED,
    })
}
