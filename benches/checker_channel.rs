//! The cost of one call over the checker channel: a submission judged through the fork
//! server against a `check(candidate)` suite of N asserts, each one call, for N = 1 and
//! N = 201. The difference over 200 is what one more call costs (arguments encoded, the
//! program decoding them, calling, encoding the answer, the answer decoded and judged),
//! printed as `per-call cost` after criterion's own report. Three ways:
//! - `host`: `assert candidate(i) == i`, judged by the host itself (see host_check.rs);
//! - `checker, sent ahead`: the same asserts with host checks off, judged by the checker,
//!   which sends the calls ahead in one request;
//! - `checker, round trip`: `assert candidate(int('i')) == i`, whose argument is not a
//!   literal, so each call is a round trip between the checker and the program.
//!
//! Run with `cargo bench --bench checker_channel`.

use criterion::{criterion_group, criterion_main, Criterion};
use crucible_core::{Limits, Problem, Submission, TestCase, Verdict};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use std::time::{Duration, Instant};

fn problem(n: usize, literal: bool) -> Problem {
    let mut check = String::from("def check(candidate):\n");
    for i in 0..n {
        if literal {
            check.push_str(&format!("    assert candidate({i}) == {i}\n"));
        } else {
            // The call's argument is not a literal, so the checker cannot send it ahead.
            check.push_str(&format!("    assert candidate(int('{i}')) == {i}\n"));
        }
    }
    Problem {
        id: format!("bench/{n}"),
        prompt: None,
        completion_prefix: String::new(),
        test_setup: String::new(),
        tests: vec![TestCase::Assert {
            code: check,
            entry_point: Some("ident".into()),
        }],
        reference: None,
        language: "python".into(),
        limits: Some(Limits::default()),
    }
}

fn median(judge: &Judge, p: &Problem, sub: &Submission, runs: usize) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let r = judge.judge(p, sub).expect("judgeable");
            assert_eq!(r.verdict, Verdict::Accepted, "{r:?}");
            start.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

/// The three ways: name, whether the host judges plain asserts, whether the arguments
/// are literals.
const WAYS: [(&str, bool, bool); 3] = [
    ("host", true, true),
    ("checker, sent ahead", false, true),
    ("checker, round trip", false, false),
];

fn judge(host_checks: bool) -> Judge {
    let sandbox = ProcessSandbox::new(SandboxConfig {
        scratch_dir: None,
        cgroup_parent: Some("crucible-bench".into()),
    })
    .expect("sandbox");
    let mut judge = Judge::new(
        sandbox,
        Profiles::load(None).expect("profiles"),
        JudgeOptions::default(),
    );
    judge.set_fork_server_slots(1);
    judge.set_host_checks(host_checks);
    judge.warm_up("python");
    judge
}

fn channel(c: &mut Criterion) {
    let judges = [judge(true), judge(false)];
    let sub = Submission {
        task_id: String::new(),
        sample: 0,
        language: "python".into(),
        completion: "def ident(x):\n    return x\n".into(),
    };
    let mut group = c.benchmark_group("checker_channel");
    for (way, host, literal) in WAYS {
        let judge = &judges[usize::from(!host)];
        for n in [1usize, 201] {
            let p = problem(n, literal);
            group.bench_function(format!("{way}/{n} calls"), |b| {
                b.iter(|| judge.judge(&p, &sub).expect("judgeable"))
            });
        }
    }
    group.finish();
    for (way, host, literal) in WAYS {
        let judge = &judges[usize::from(!host)];
        let one = median(judge, &problem(1, literal), &sub, 60);
        let many = median(judge, &problem(201, literal), &sub, 60);
        let per_call = many.saturating_sub(one).as_secs_f64() / 200.0;
        eprintln!(
            "per-call cost ({way}): {:.1} us (median judgement with 1 call {:.3} ms, with 201 calls {:.3} ms)",
            per_call * 1e6,
            one.as_secs_f64() * 1e3,
            many.as_secs_f64() * 1e3
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = channel
}
criterion_main!(benches);
