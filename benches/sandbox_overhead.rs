//! Per-run overhead of the process sandbox: a trivial Python program run in the full
//! sandbox, beside the same interpreter spawned directly with std::process::Command,
//! both measured the same way (a run to completion with stdout and stderr captured).
//! A sandboxed `/bin/true` shows the sandbox's own cost without Python's start-up.

use criterion::{criterion_group, criterion_main, Criterion};
use crucible_core::{Limits, RunStatus};
use crucible_sandbox::{ProcessSandbox, RunSpec, SandboxConfig};
use crucible_suite::{default_env, python_mounts, python_spec, PYTHON};
use std::process::{Command, Stdio};
use std::time::Duration;

fn overhead(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let sandbox = ProcessSandbox::new(SandboxConfig {
        scratch_dir: Some(scratch.path().to_path_buf()),
        cgroup_parent: Some("crucible-bench".into()),
    })
    .expect("ProcessSandbox::new");
    eprintln!("cgroup mode: {:?}", sandbox.cgroup_mode());

    let limits = Limits::default();
    let mut py = python_spec("pass", limits);
    // Same flags as the direct run: -E ignores PYTHON* variables, -S skips site.
    py.argv = vec![
        PYTHON.into(),
        "-S".into(),
        "-E".into(),
        "-c".into(),
        "pass".into(),
    ];
    let true_spec = RunSpec {
        argv: vec!["/bin/true".into()],
        env: default_env(),
        files: vec![],
        stdin: vec![],
        limits,
        mounts: python_mounts(),
    };

    let mut g = c.benchmark_group("run_trivial_program");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("sandboxed_python", |b| {
        b.iter(|| {
            let r = sandbox.run(&py);
            assert_eq!(r.status, RunStatus::Ok, "{r:?}");
        })
    });
    g.bench_function("direct_python", |b| {
        b.iter(|| {
            let out = Command::new(PYTHON)
                .args(["-S", "-E", "-c", "pass"])
                .env_clear()
                .envs(default_env())
                .current_dir(scratch.path())
                .stdin(Stdio::null())
                .output()
                .expect("spawn python");
            assert!(out.status.success());
        })
    });
    g.bench_function("sandboxed_true", |b| {
        b.iter(|| {
            let r = sandbox.run(&true_spec);
            assert_eq!(r.status, RunStatus::Ok, "{r:?}");
        })
    });
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
