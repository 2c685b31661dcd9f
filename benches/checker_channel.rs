//! The cost of the checker channel: a submission judged through the fork server against
//! a `check(candidate)` suite of N asserts, each one call over the channel, for N = 1 and
//! N = 201. The difference over 200 is what one more call costs (the checker encoding
//! the arguments, the program decoding them, calling, encoding the answer, the checker
//! decoding and judging it), printed as `per-call cost` after criterion's own report.
//! Two forms of assert: `candidate(i) == i` (its call is known ahead and pipelined) and
//! `abs(candidate(i) - i) < 1` written so that it is not (each call a round trip).
//!
//! Run with `cargo bench --bench checker_channel`.

use criterion::{criterion_group, criterion_main, Criterion};
use crucible_core::{Limits, Problem, Submission, TestCase, Verdict};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use std::time::{Duration, Instant};

fn problem(n: usize, pipelined: bool) -> Problem {
    let mut check = String::from("def check(candidate):\n");
    for i in 0..n {
        if pipelined {
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

fn channel(c: &mut Criterion) {
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
    judge.warm_up("python");
    let sub = Submission {
        task_id: String::new(),
        sample: 0,
        language: "python".into(),
        completion: "def ident(x):\n    return x\n".into(),
    };
    let mut group = c.benchmark_group("checker_channel");
    for pipelined in [true, false] {
        let form = if pipelined { "pipelined" } else { "round trip" };
        for n in [1usize, 201] {
            let p = problem(n, pipelined);
            group.bench_function(format!("{form}/{n} calls"), |b| {
                b.iter(|| judge.judge(&p, &sub).expect("judgeable"))
            });
        }
    }
    group.finish();
    for pipelined in [true, false] {
        let form = if pipelined { "pipelined" } else { "round trip" };
        let one = median(&judge, &problem(1, pipelined), &sub, 60);
        let many = median(&judge, &problem(201, pipelined), &sub, 60);
        let per_call = many.saturating_sub(one).as_secs_f64() / 200.0;
        eprintln!(
            "per-call cost ({form}): {:.1} us (median judgement with 1 call {:.3} ms, with 201 calls {:.3} ms)",
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
