//! `crucible serve`: the HTTP reward service (crates/crucible-server) over a process
//! sandbox judge.

use crate::exit;
use anyhow::Context;
use crucible_core::RewardSpec;
use crucible_judge::JudgeOptions;
use crucible_server::{AppState, Datasets, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (use 0.0.0.0:PORT in a container; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: String,
    /// Judgements at once (default: one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Submissions that may wait for a worker; beyond that the server answers 429.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// File holding a bearer token that every request but health and metrics must send.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Largest request body, MiB.
    #[arg(long, default_value_t = 4)]
    body_limit_mb: usize,
    /// Largest CPU time a request may ask for, seconds (wall clock: twice that plus 1 s).
    #[arg(long)]
    max_time_limit: Option<f64>,
    /// Largest memory a request may ask for, MiB.
    #[arg(long)]
    max_memory_limit: Option<u64>,
    /// Reward of requests that name none: binary, fraction, weighted, shaped, or JSON.
    #[arg(long, default_value = "binary")]
    reward: String,
    /// A dataset that requests (and SandboxFusion's /submit) may name: NAME=KIND=PATH,
    /// or KIND=PATH to name it after its kind. Repeatable.
    #[arg(long = "dataset")]
    datasets: Vec<String>,
}

fn load_datasets(specs: &[String]) -> anyhow::Result<Datasets> {
    let mut sets = Datasets::default();
    for spec in specs {
        let parts: Vec<&str> = spec.splitn(3, '=').collect();
        let (name, kind, path) = match parts.as_slice() {
            [kind, path] => (*kind, *kind, *path),
            [name, kind, path] => (*name, *kind, *path),
            _ => anyhow::bail!("--dataset {spec:?}: expected NAME=KIND=PATH or KIND=PATH"),
        };
        let kind: crucible_datasets::DatasetKind = kind
            .parse()
            .map_err(|e| anyhow::anyhow!("--dataset {spec:?}: {e}"))?;
        let n = sets.load(name, kind, Path::new(path))?;
        tracing::info!(dataset = name, problems = n, "dataset loaded");
        eprintln!("crucible serve: dataset {name:?}: {n} problems");
    }
    Ok(sets)
}

pub fn run(args: ServeArgs, profiles: Option<&Path>) -> anyhow::Result<u8> {
    let mut config = ServerConfig {
        workers: args.workers,
        queue: args.queue,
        body_limit: args
            .body_limit_mb
            .checked_mul(1 << 20)
            .filter(|&b| b > 0)
            .context("--body-limit-mb must be positive and fit in memory")?,
        default_reward: args
            .reward
            .parse::<RewardSpec>()
            .map_err(|e| anyhow::anyhow!("--reward {:?}: not a reward spec: {e}", args.reward))?,
        pod_name: std::env::var("MY_POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
            .filter(|s| !s.is_empty()),
        ..ServerConfig::default()
    };
    config.max_limits = crate::limits_from_flags(
        config.max_limits,
        args.max_time_limit,
        args.max_memory_limit,
    )
    .map_err(|e| anyhow::anyhow!("{e}").context("--max-time-limit / --max-memory-limit"))?;
    if let Some(path) = &args.token_file {
        config.token = Some(ServerConfig::read_token(path)?);
    }
    let datasets = load_datasets(&args.datasets)?;
    // The server's limits come from each request (clamped); a judge-wide override would
    // silently replace them.
    let judge = crate::make_judge(
        profiles,
        JudgeOptions {
            reward: config.default_reward,
            limits: None,
        },
        None,
    )?;
    let state = AppState::new(Arc::new(judge), config, datasets)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        let addr = listener.local_addr()?;
        // Scripts and tests read this line to find a port picked with :0.
        eprintln!("crucible serve: listening on http://{addr}");
        tracing::info!(%addr, "listening");
        crucible_server::serve(listener, state, crucible_server::shutdown_signal()).await?;
        eprintln!("crucible serve: stopped after finishing the work in flight");
        anyhow::Ok(())
    })?;
    Ok(exit::OK)
}
