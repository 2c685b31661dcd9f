//! `crucible`: judge datasets of programs and run single programs in the sandbox.

mod judge_cmd;
mod run_cmd;
mod serve_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes, as documented in README.md ("Exit codes").
pub mod exit {
    /// Everything ran; for `run`, the program's status was ok.
    pub const OK: u8 = 0;
    /// `judge`: some input was rejected (and the rest judged). `run`: the program failed.
    pub const FAILED: u8 = 1;
    /// Bad usage or set-up: unreadable dataset, unknown language, no sandbox.
    pub const USAGE: u8 = 2;
    /// `judge --expect-all-accepted`: some submission was not accepted.
    pub const NOT_ALL_ACCEPTED: u8 = 3;
    /// The sandbox failed for at least one run (verdict sandbox_error).
    pub const SANDBOX_ERROR: u8 = 4;
}

#[derive(Parser)]
#[command(
    name = "crucible",
    version,
    about = "Run model-written programs against tests in a sandbox; turn the verdicts into rewards"
)]
struct Cli {
    /// Folder of language profiles (*.toml) that override the built-in ones.
    #[arg(long, global = true, env = "CRUCIBLE_SANDBOXES")]
    profiles: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Judge a dataset's canonical solutions or a file of samples; print one JSON report per line.
    Judge(judge_cmd::JudgeArgs),
    /// Run one program in the sandbox and print what happened.
    Run(run_cmd::RunArgs),
    /// List the usable languages.
    Languages,
    /// Serve rewards over HTTP (native API and SandboxFusion-compatible /run_code, /submit).
    Serve(serve_cmd::ServeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRUCIBLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Judge(args) => judge_cmd::run(args, cli.profiles.as_deref()),
        Command::Run(args) => run_cmd::run(args, cli.profiles.as_deref()),
        Command::Languages => languages(cli.profiles.as_deref()),
        Command::Serve(args) => serve_cmd::run(args, cli.profiles.as_deref()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("crucible: {e:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn languages(profiles: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let profiles = crucible_judge::Profiles::load(profiles)?;
    for p in profiles.iter() {
        println!("{:<12} {} ({})", p.name, p.display, p.interpreter.display());
    }
    Ok(exit::OK)
}

/// Builds a judge over a fresh process sandbox.
pub fn make_judge(
    profiles: Option<&std::path::Path>,
    options: crucible_judge::JudgeOptions,
    fuel: Option<u64>,
) -> anyhow::Result<crucible_judge::Judge> {
    use anyhow::Context;
    let mut profiles = crucible_judge::Profiles::load(profiles)?;
    if fuel.is_some() {
        anyhow::ensure!(fuel != Some(0), "--fuel must be positive");
        profiles.set_wasm_fuel(fuel);
    }
    let sandbox = crucible_sandbox::ProcessSandbox::new(crucible_sandbox::SandboxConfig::default())
        .context("cannot set up the process sandbox")?;
    Ok(crucible_judge::Judge::new(sandbox, profiles, options))
}

/// Limits from the profile's defaults with the command line's time and memory applied.
pub fn limits_from_flags(
    base: crucible_core::Limits,
    time_limit_s: Option<f64>,
    memory_limit_mb: Option<u64>,
) -> anyhow::Result<crucible_core::Limits> {
    let mut limits = base;
    if let Some(t) = time_limit_s {
        anyhow::ensure!(
            t > 0.0 && t.is_finite(),
            "--time-limit must be a positive number of seconds"
        );
        limits = limits.with_time_ms((t * 1000.0).ceil() as u64);
    }
    if let Some(mb) = memory_limit_mb {
        anyhow::ensure!(mb > 0, "--memory-limit must be positive");
        limits = limits.with_memory_mb(mb);
    }
    Ok(limits)
}
