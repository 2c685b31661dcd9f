//! `crucible-loadgen`: writes the load mix as files the CLI can judge, and drives load at
//! Crucible servers (loopback or your own test hosts only), checking every verdict
//! against the CLI's.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use crucible_server::load::{self, LoadConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "crucible-loadgen", about = "Load generator for crucible serve")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the mix as DIR/problems.jsonl (Crucible problems) and DIR/samples.jsonl
    /// (one sample per problem), for `crucible judge --dataset crucible=... --solutions ...`.
    WriteMix {
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
    },
    /// Send the mix to servers from many concurrent clients.
    Run {
        /// Server base URL; repeat to balance over several.
        #[arg(long = "endpoint", required = true)]
        endpoints: Vec<String>,
        /// Concurrent clients.
        #[arg(long, default_value_t = 200)]
        clients: usize,
        /// Requests in all.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// `crucible judge` reports of the mix: every verdict and reward must match.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Only items whose id ends with NAME (repeatable), e.g. `add-good`.
        #[arg(long)]
        only: Vec<String>,
        /// Stop sending after this many seconds.
        #[arg(long, default_value_t = 1800)]
        max_seconds: u64,
        /// Failed attempts per request before its reward is given up as absent.
        #[arg(long, default_value_t = 4)]
        attempts: u32,
        /// Seconds one request may take, retries included.
        #[arg(long, default_value_t = 120)]
        request_deadline: u64,
        /// Requests may end without a report (for a run during which the server is
        /// killed); wrong verdicts still fail the run.
        #[arg(long)]
        allow_errors: bool,
        /// File with the bearer token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Also write the summary as JSON here.
        #[arg(long)]
        json_out: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("crucible-loadgen: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<bool> {
    match Cli::parse().command {
        Command::WriteMix { out } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let mut problems = std::fs::File::create(out.join("problems.jsonl"))?;
            let mut samples = std::fs::File::create(out.join("samples.jsonl"))?;
            for item in load::mix() {
                serde_json::to_writer(&mut problems, &item.problem)?;
                problems.write_all(b"\n")?;
                serde_json::to_writer(
                    &mut samples,
                    &serde_json::json!({"task_id": item.problem.id, "completion": item.completion}),
                )?;
                samples.write_all(b"\n")?;
            }
            println!("wrote {}/problems.jsonl and samples.jsonl", out.display());
            Ok(true)
        }
        Command::Run {
            endpoints,
            clients,
            requests,
            expect,
            only,
            max_seconds,
            attempts,
            request_deadline,
            allow_errors,
            token_file,
            json_out,
        } => {
            let expected = match &expect {
                Some(p) => load::expected_from_reports(
                    &std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))?,
                )
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
                None => Default::default(),
            };
            if expect.is_some() && expected.is_empty() {
                bail!("no expected reports in {:?}", expect);
            }
            let token = match token_file {
                Some(p) => Some(crucible_server::ServerConfig::read_token(&p)?),
                None => None,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(load::run(LoadConfig {
                endpoints,
                clients,
                requests,
                token,
                only,
                expected,
                max_duration: Duration::from_secs(max_seconds),
                max_attempts: attempts,
                request_deadline: Duration::from_secs(request_deadline),
            }))?;
            let s = &report.client;
            println!("sent        {}", report.sent);
            println!("judged      {}", report.judged);
            println!(
                "no report   {} (reward absent, counted; never scored 0)",
                report.errors
            );
            println!("not sent    {} (time bound)", report.not_sent);
            println!("checked     {} against the CLI's verdicts", report.checked);
            println!("mismatches  {}", report.mismatches.len());
            println!(
                "latency ms  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
                report.p50_ms, report.p90_ms, report.p99_ms, report.max_ms
            );
            println!(
                "throughput  {:.1} judged requests/s over {:.1} s",
                report.throughput_rps, report.elapsed_s
            );
            println!("verdicts    {:?}", report.by_verdict);
            println!("classes     {:?}", report.by_class);
            println!(
                "client      attempts {} retries {} throttled(429) {} transport {} 5xx {} sandbox_error {} absent {} rejected {}",
                s.attempts, s.retries, s.throttled, s.transport_errors, s.server_errors, s.sandbox_errors, s.absent, s.rejected
            );
            for m in report.mismatches.iter().take(10) {
                println!(
                    "MISMATCH    {}: expected {} ({:?}), got {} ({:?})",
                    m.task_id, m.expected, m.expected_reward, m.got, m.got_reward
                );
            }
            for e in &report.sample_errors {
                println!("error       {e}");
            }
            if let Some(p) = json_out {
                let mut v = serde_json::to_value(&report)?;
                v["client"] = serde_json::json!({
                    "attempts": s.attempts, "retries": s.retries, "throttled": s.throttled,
                    "transport_errors": s.transport_errors, "server_errors": s.server_errors,
                    "sandbox_errors": s.sandbox_errors, "absent": s.absent, "rejected": s.rejected,
                });
                std::fs::write(&p, serde_json::to_vec_pretty(&v)?)?;
            }
            let ok = report.mismatches.is_empty()
                && (allow_errors || (report.errors == 0 && report.not_sent == 0))
                && report.client.rejected == 0;
            println!("result      {}", if ok { "PASS" } else { "FAIL" });
            Ok(ok)
        }
    }
}
