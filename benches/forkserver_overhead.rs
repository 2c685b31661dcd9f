//! Per-execution overhead of a trivial Python program (`pass`): through the fork server
//! versus a fresh sandbox per run, both with full isolation.
//!
//! - `sandbox/*`: the same entry script (tests/support/runner.py running main.py) as
//!   `ForkServer::run` and as `ProcessSandbox::run` of `python3 -s -P runner.py main.py`.
//! - `judge/*`: `Judge::run_source("python", "pass")` (the judge's stdio harness) with
//!   the fork server on and off.
//!
//! Criterion reports means over batches. After it, every path is also timed run by run
//! and its p50/p90/p99 printed (`per-execution latency` lines), since the fork server is
//! held to a per-execution p50. Run with `cargo bench --bench forkserver_overhead`.

use criterion::{criterion_group, criterion_main, Criterion};
use crucible_core::{Limits, RunStatus};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ForkServer, ProcessSandbox, RunSpec, SandboxConfig};
use crucible_suite::{default_env, fork_request, fork_spec, python_mounts, FORK_RUNNER, PYTHON};
use std::time::{Duration, Instant};

/// Runs `f` `n` times, timing each call, and prints the percentiles.
fn percentiles(name: &str, n: usize, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f(); // warm-up
    }
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    let at = |q: f64| t[((t.len() as f64 * q) as usize).min(t.len() - 1)];
    eprintln!(
        "per-execution latency {name:<28} n={n:<5} p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
    );
}

fn overhead(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let config = SandboxConfig {
        scratch_dir: Some(scratch.path().to_path_buf()),
        cgroup_parent: Some("crucible-bench".into()),
    };
    let sandbox = ProcessSandbox::new(config.clone()).expect("ProcessSandbox::new");
    eprintln!("cgroup mode: {:?}", sandbox.cgroup_mode());
    let limits = Limits::default();

    let server = ForkServer::with_sandbox(&sandbox, fork_spec(1)).expect("ForkServer");
    let forked = fork_request("pass", limits);
    let fresh = RunSpec {
        argv: vec![
            PYTHON.into(),
            "-s".into(),
            "-P".into(),
            "/work/runner.py".into(),
            "/work/main.py".into(),
        ],
        env: default_env(),
        files: vec![
            (
                "runner.py".into(),
                format!("{FORK_RUNNER}\nmain()\n").into_bytes(),
            ),
            ("main.py".into(), b"pass".to_vec()),
        ],
        stdin: vec![],
        limits,
        mounts: python_mounts(),
    };
    let profiles = Profiles::load(None).expect("profiles");
    let mut judge_fork = Judge::new(sandbox.clone(), profiles.clone(), JudgeOptions::default());
    judge_fork.set_fork_server_slots(1);
    assert!(judge_fork.fork_server("python").is_some(), "fork server up");
    let mut judge_fresh = Judge::new(sandbox.clone(), profiles, JudgeOptions::default());
    judge_fresh.set_fork_server(false);

    let run_fork = || {
        let r = server.run(&forked);
        assert_eq!(r.status, RunStatus::Ok, "{r:?}");
    };
    let run_fresh = || {
        let r = sandbox.run(&fresh);
        assert_eq!(r.status, RunStatus::Ok, "{r:?}");
    };
    let judge_run = |j: &Judge| {
        let r = j.run_source("python", "pass", b"", None).expect("runnable");
        assert_eq!(r.status, RunStatus::Ok, "{r:?}");
    };

    let mut g = c.benchmark_group("trivial_program");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("sandbox/fork_server", |b| b.iter(run_fork));
    g.bench_function("sandbox/fresh", |b| b.iter(run_fresh));
    g.bench_function("judge/fork_server", |b| b.iter(|| judge_run(&judge_fork)));
    g.bench_function("judge/fresh", |b| b.iter(|| judge_run(&judge_fresh)));
    g.finish();

    percentiles("sandbox/fork_server", 2000, run_fork);
    percentiles("sandbox/fresh", 300, run_fresh);
    percentiles("judge/fork_server", 2000, || judge_run(&judge_fork));
    percentiles("judge/fresh", 300, || judge_run(&judge_fresh));
}

criterion_group!(benches, overhead);
criterion_main!(benches);
