//! Whole-dataset parity: every reference solution of HumanEval, MBPP sanitized and MBPP
//! full is accepted in the sandbox, and a wrong completion of every task is not (and is
//! never mistaken for an infrastructure failure). Each set is judged twice, through the
//! Python fork server (the default) and with a fresh sandbox per program, and the two
//! reports of every submission must agree field by field, timings and memory aside. The
//! fork-server judge has its problems described first, so the host judges every problem
//! whose tests are all plain asserts (as `crucible judge` does), while the fresh judge
//! sends every submission through a checker process: the two ways must agree too. The
//! data is read from ../shared/datasets (or $CRUCIBLE_SHARED_DATASETS); each test is
//! skipped with a message when it is absent.

use crucible_core::{Problem, Report, Submission, Verdict};
use crucible_datasets::{canonical_submissions, load, DatasetKind};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use crucible_suite::{comparable, judge_in_order, shared_dataset, without_measurements};
use std::sync::Arc;

/// Judges `subs` with the fork server on (`fork`) or off.
fn judge_all(problems: &[Problem], subs: &[Submission], fork: bool) -> Vec<Report> {
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
    let mut judge = Judge::new(
        sandbox,
        Profiles::load(None).unwrap(),
        JudgeOptions::default(),
    );
    judge.set_fork_server(fork);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    judge.set_fork_server_slots(workers);
    if fork {
        assert!(
            judge.fork_server("python").is_some(),
            "the fork server must be up for the parity to mean anything"
        );
        let problems: Vec<Arc<Problem>> = problems.iter().cloned().map(Arc::new).collect();
        let host_judged = judge.prepare_problems(&problems);
        assert!(
            host_judged * 2 > problems.len(),
            "most problems are judged on the host: {host_judged} of {}",
            problems.len()
        );
    } else {
        assert!(judge.fork_server("python").is_none());
        // Every submission through a checker process, against the host's verdicts above.
        judge.set_host_checks(false);
    }
    judge_in_order(Arc::new(judge), workers, problems, subs.to_vec())
}

/// Judges `subs` both ways, asserts that every report agrees, and returns the fork
/// server's.
fn judge_both_ways(problems: &[Problem], subs: Vec<Submission>) -> Vec<Report> {
    let forked = judge_all(problems, &subs, true);
    let fresh = judge_all(problems, &subs, false);
    let differ: Vec<String> = forked
        .iter()
        .zip(&fresh)
        .filter(|(a, b)| comparable(a) != comparable(b))
        .map(|(a, b)| format!("fork server: {a:?}\nfresh:       {b:?}"))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} reports differ between the fork server and fresh sandboxes:\n{}",
        differ.len(),
        forked.len(),
        differ.join("\n")
    );
    forked
}

fn assert_all_accepted(kind: DatasetKind, rel: &str, expected: usize) {
    let Some(path) = shared_dataset(rel) else {
        return;
    };
    let problems = load(kind, &path).unwrap();
    assert_eq!(problems.len(), expected);
    let reports = judge_both_ways(&problems, canonical_submissions(&problems));
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.verdict != Verdict::Accepted)
        .map(|r| {
            format!(
                "{} {} {:?}",
                r.task_id,
                r.verdict,
                r.tests
                    .iter()
                    .find(|t| !t.verdict.is_accepted())
                    .and_then(|t| t.message.clone())
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} not accepted:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(reports
        .iter()
        .all(|r| r.reward == Some(1.0) && r.passed == r.total && r.total > 0));
}

/// A stub for each top-level function of the reference, returning None.
fn wrong_program(problem: &Problem) -> String {
    let reference = problem.reference.as_deref().unwrap_or_default();
    let mut out = String::new();
    for line in reference.lines() {
        let code = line.split('#').next().unwrap_or_default().trim_end();
        if line.starts_with("def ") && code.ends_with(':') {
            out.push_str(code);
            out.push_str("\n    return None\n");
        }
    }
    out
}

fn assert_wrong_all_rejected(kind: DatasetKind, rel: &str) {
    let Some(path) = shared_dataset(rel) else {
        return;
    };
    let problems = load(kind, &path).unwrap();
    let subs: Vec<Submission> = problems
        .iter()
        .map(|p| Submission {
            task_id: p.id.clone(),
            sample: 0,
            language: "python".into(),
            completion: if p.completion_prefix.is_empty() {
                wrong_program(p)
            } else {
                "    return None\n".into()
            },
        })
        .collect();
    let reports = judge_both_ways(&problems, subs);
    for r in &reports {
        assert!(
            matches!(r.verdict, Verdict::WrongAnswer | Verdict::RuntimeError),
            "{}: {} ({:?})",
            r.task_id,
            r.verdict,
            r.message
        );
        assert_eq!(r.reward, Some(0.0));
    }
}

#[test]
fn measurements_are_left_out_of_messages() {
    assert_eq!(
        without_measurements(&Some(
            "time limit exceeded (cpu 2010 ms, wall 2100 ms): boom".into()
        )),
        Some("time limit exceeded : boom".into())
    );
    assert_eq!(
        without_measurements(&Some("memory limit exceeded (peak 5 KiB)".into())),
        Some("memory limit exceeded ".into())
    );
    assert_eq!(without_measurements(&None), None);
}

#[test]
fn humaneval_canonical_all_accepted() {
    assert_all_accepted(DatasetKind::HumanEval, "humaneval/HumanEval.jsonl.gz", 164);
}

#[test]
fn mbpp_sanitized_canonical_all_accepted() {
    assert_all_accepted(DatasetKind::MbppSanitized, "mbpp/sanitized-mbpp.json", 427);
}

#[test]
fn mbpp_full_canonical_all_accepted() {
    assert_all_accepted(DatasetKind::Mbpp, "mbpp/mbpp.jsonl", 974);
}

#[test]
fn humaneval_wrong_completions_rejected() {
    assert_wrong_all_rejected(DatasetKind::HumanEval, "humaneval/HumanEval.jsonl.gz");
}

#[test]
fn mbpp_sanitized_wrong_completions_rejected() {
    assert_wrong_all_rejected(DatasetKind::MbppSanitized, "mbpp/sanitized-mbpp.json");
}

#[test]
fn mbpp_full_wrong_completions_rejected() {
    assert_wrong_all_rejected(DatasetKind::Mbpp, "mbpp/mbpp.jsonl");
}
