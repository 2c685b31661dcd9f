//! Per-test overhead for a compiled C program: judging one stdio test of a C submission
//! whose compile is already cached (the judge's whole per-test path: cache lookup, a
//! fresh sandbox with the artifact bind-mounted, the run, the comparison), beside a bare
//! fork/exec of the same binary (gcc with the profile's flags) with stdin piped in and
//! stdout compared, measured the same way. Criterion's median is the p50.

use criterion::{criterion_group, criterion_main, Criterion};
use crucible_core::{Comparator, Limits, Problem, Submission, TestCase, Verdict};
use crucible_judge::{CompileCache, Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const SOURCE: &str = "#include <stdio.h>\nint main(void) { long a, b; if (scanf(\"%ld %ld\", &a, &b) != 2) return 1; printf(\"%ld\\n\", a + b); return 0; }\n";
const STDIN: &str = "20 22\n";
const EXPECTED: &str = "42\n";

fn overhead(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let sandbox = ProcessSandbox::new(SandboxConfig {
        scratch_dir: Some(scratch.path().to_path_buf()),
        cgroup_parent: Some("crucible-bench".into()),
    })
    .expect("ProcessSandbox::new");
    eprintln!("cgroup mode: {:?}", sandbox.cgroup_mode());
    let judge = Judge::new(
        sandbox,
        Profiles::load(None).expect("profiles"),
        JudgeOptions::default(),
    )
    .with_compile_cache(CompileCache::private(1 << 30));
    let problem = Problem {
        id: "sum".into(),
        prompt: None,
        completion_prefix: String::new(),
        test_setup: String::new(),
        tests: vec![TestCase::Stdio {
            stdin: STDIN.into(),
            expected_stdout: EXPECTED.into(),
            comparator: Comparator::Line,
        }],
        reference: None,
        language: "c".into(),
        limits: Some(Limits::default()),
    };
    let submission = Submission {
        task_id: "sum".into(),
        sample: 0,
        language: "c".into(),
        completion: SOURCE.into(),
    };
    // Warm the cache: every measured judgement is a hit, so only per-test work remains.
    let first = judge.judge(&problem, &submission).expect("judgeable");
    assert_eq!(first.verdict, Verdict::Accepted, "{first:?}");

    // The same program, compiled directly with the profile's flags.
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("main.c");
    let bin = dir.path().join("main");
    std::fs::write(&src, SOURCE).expect("write source");
    let status = Command::new("gcc")
        .args(["-O2", "-std=c17", "-o"])
        .arg(&bin)
        .arg(&src)
        .arg("-lm")
        .status()
        .expect("gcc");
    assert!(status.success());

    let mut g = c.benchmark_group("compiled_c_per_test");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("sandboxed_judge_one_test", |b| {
        b.iter(|| {
            let r = judge.judge(&problem, &submission).expect("judgeable");
            assert_eq!(r.verdict, Verdict::Accepted);
            assert!(r.compile.as_ref().is_some_and(|c| c.cached));
        })
    });
    g.bench_function("bare_fork_exec", |b| {
        b.iter(|| {
            let mut child = Command::new(&bin)
                .env_clear()
                .current_dir(dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(STDIN.as_bytes())
                .expect("write stdin");
            let out = child.wait_with_output().expect("wait");
            assert!(out.status.success());
            assert_eq!(out.stdout, EXPECTED.as_bytes());
        })
    });
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
