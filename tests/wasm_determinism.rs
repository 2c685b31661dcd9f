//! Determinism of the wasm backend: the same program, input and fuel budget give the same
//! verdict and the same fuel_used on every run. HumanEval's canonical solutions are judged
//! twice under python-wasm and the reports compared field by field (timings excepted);
//! endless loops get time_limit_exceeded with the same fuel_used each time.
//!
//! Needs the guests from scripts/fetch-wasm-guests.sh and HumanEval in ../shared/datasets
//! (or $CRUCIBLE_SHARED_DATASETS); each test is skipped with a message when one is absent,
//! unless CRUCIBLE_REQUIRE_WASM is set (CI), which makes a missing guest a failure.

use crucible_core::{Limits, Problem, Report, RunReport, RunStatus, Submission};
use crucible_datasets::{canonical_submissions, load, DatasetKind};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use crucible_suite::{judge_in_order, shared_dataset};
use std::sync::Arc;

fn judge() -> Option<Arc<Judge>> {
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
    let judge = Judge::new(
        sandbox,
        Profiles::load(None).expect("profiles"),
        JudgeOptions::default(),
    );
    for lang in ["python-wasm", "c-wasm"] {
        if let Err(e) = judge.profiles().get(lang) {
            assert!(
                std::env::var_os("CRUCIBLE_REQUIRE_WASM").is_none(),
                "{lang} is required here: {e}"
            );
            eprintln!("skipped: {e}");
            return None;
        }
    }
    Some(Arc::new(judge))
}

fn humaneval() -> Option<Vec<Problem>> {
    let path = shared_dataset("humaneval/HumanEval.jsonl.gz")?;
    Some(load(DatasetKind::HumanEval, &path).expect("HumanEval"))
}

/// The report with its host timings zeroed: everything left must repeat exactly.
fn without_timings(r: &Report) -> Report {
    let mut r = r.clone();
    r.cpu_ms = 0;
    r.wall_ms = 0;
    for t in &mut r.tests {
        t.cpu_ms = 0;
        t.wall_ms = 0;
    }
    r
}

#[test]
fn humaneval_canonical_twice_gives_identical_reports() {
    let (Some(judge), Some(problems)) = (judge(), humaneval()) else {
        return;
    };
    let subs = |lang: &str| -> Vec<Submission> {
        canonical_submissions(&problems)
            .into_iter()
            .map(|mut s| {
                s.language = lang.into();
                s
            })
            .collect()
    };
    let first = judge_in_order(judge.clone(), 0, &problems, subs("python-wasm"));
    let second = judge_in_order(judge.clone(), 0, &problems, subs("python-wasm"));
    assert_eq!(first.len(), 164);
    for (a, b) in first.iter().zip(&second) {
        assert!(a.fuel_used.is_some_and(|f| f > 0), "{}: no fuel", a.task_id);
        assert_eq!(
            without_timings(a),
            without_timings(b),
            "{} differs between two runs",
            a.task_id
        );
    }
}

/// `code` run `n` times under python-wasm; the first run must succeed.
fn python_runs(judge: &Judge, code: &str, n: usize) -> Vec<RunReport> {
    let runs: Vec<RunReport> = (0..n)
        .map(|_| {
            judge
                .run_source("python-wasm", code, b"", None)
                .expect("runnable")
        })
        .collect();
    assert_eq!(runs[0].status, RunStatus::Ok, "{:?}", runs[0]);
    runs
}

fn loop_limits() -> Limits {
    Limits::default().with_time_ms(300).with_memory_mb(128)
}

#[test]
fn endless_loops_spend_exactly_their_budget() {
    let Some(judge) = judge() else { return };
    let programs = [
        ("python-wasm", "while True:\n    pass\n"),
        (
            "python-wasm",
            "import time\nn = 0\nwhile True:\n    n += len(str(time.time()))\n    time.sleep(0.001)\n",
        ),
        ("c-wasm", "int main(void) { volatile int x = 0; for (;;) x++; }\n"),
    ];
    for (lang, code) in programs {
        let budget = judge
            .profiles()
            .get(lang)
            .expect("profile")
            .wasm
            .as_ref()
            .expect("wasm profile")
            .fuel_for(&loop_limits());
        let mut seen = Vec::new();
        for _ in 0..3 {
            let r = judge
                .run_source(lang, code, b"", Some(loop_limits()))
                .expect("runnable");
            assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{lang}: {r:?}");
            seen.push(r.fuel_used);
        }
        assert_eq!(seen, vec![Some(budget); 3], "{lang}: {code}");
    }
}

/// Host inode numbers and file times differ from run to run, and whether a directory's
/// mtime moves between two looks depends on the kernel's clock granularity; CPython's
/// importlib branches on it. Guests see neither: the same program prints the same
/// metadata and spends the same fuel on every run, imports included (`import copy`
/// re-reads the work dir's listing; it once varied by 138 fuel units).
#[test]
fn file_metadata_and_imports_repeat_exactly() {
    let Some(judge) = judge() else { return };
    let code = "import os, copy\n\
        a = os.stat('/work')\n\
        open('/work/x.txt', 'w').write('hi')\n\
        b, c = os.stat('/work'), os.stat('x.txt')\n\
        print(a.st_ino, a.st_mtime_ns, b.st_mtime_ns, c.st_ino, c.st_ctime_ns, c.st_size)\n\
        print(sorted((e.name, e.inode()) for e in os.scandir('/work')))\n";
    let runs = python_runs(&judge, code, 12);
    let first = runs[0].stdout.clone();
    // The work dir keeps its time (the epoch, 2024-01-01) when a file is written in it,
    // and the new file's inode number comes after the ones seen before.
    let fields: Vec<&str> = first.lines().next().unwrap_or("").split(' ').collect();
    assert_eq!(fields.len(), 6, "{first}");
    assert_eq!(fields[1], "1704067200000000000", "{first}");
    assert_eq!(fields[1], fields[2], "{first}");
    assert_eq!(fields[4], fields[1], "{first}");
    assert!(fields[3].parse::<u64>().expect("ino") > fields[0].parse::<u64>().expect("ino"));
    assert_eq!(fields[5], "2");
    assert!(first.contains("('x.txt', "), "{first}");
    for r in &runs[1..] {
        assert_eq!(r.stdout, runs[0].stdout);
        assert_eq!(r.fuel_used, runs[0].fuel_used, "{first}");
    }
}

/// With file times constant, importlib cannot see a new module by its directory's mtime:
/// a module the program writes into the work dir imports after
/// `importlib.invalidate_caches()`, as CPython documents.
#[test]
fn modules_written_to_the_work_dir_import() {
    let Some(judge) = judge() else { return };
    let code = "import importlib\n\
        open('/work/helper_mod.py', 'w').write('X = 41\\n')\n\
        importlib.invalidate_caches()\n\
        import helper_mod\n\
        print(helper_mod.X + 1)\n";
    let r = judge
        .run_source("python-wasm", code, b"", None)
        .expect("runnable");
    assert_eq!(r.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.stdout.trim(), "42");
}

#[test]
fn a_finishing_program_uses_the_same_fuel_every_time() {
    let Some(judge) = judge() else { return };
    // Time, randomness and hashing all feed the output: each must repeat.
    let code = "import random, time, os, uuid\nt0 = time.perf_counter()\ns = sum(i * i for i in range(20000))\nprint(s, random.random(), os.urandom(4).hex(), uuid.uuid4(), hash('x'), time.time(), time.perf_counter() - t0)\n";
    let runs = python_runs(&judge, code, 3);
    for r in &runs[1..] {
        assert_eq!(r.stdout, runs[0].stdout);
        assert_eq!(r.fuel_used, runs[0].fuel_used);
        assert_eq!(r.memory_kb, runs[0].memory_kb);
    }
}
