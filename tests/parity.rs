//! Whole-dataset parity: every reference solution of HumanEval, MBPP sanitized and MBPP
//! full is accepted in the sandbox, and a wrong completion of every task is not (and is
//! never mistaken for an infrastructure failure). The data is read from ../shared/datasets
//! (or $CRUCIBLE_SHARED_DATASETS); each test is skipped with a message when it is absent.

use crucible_core::{Problem, Report, Submission, Verdict};
use crucible_datasets::{canonical_submissions, load, DatasetKind};
use crucible_judge::{Job, Judge, JudgeOptions, Profiles, Scheduler};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

fn shared(rel: &str) -> Option<PathBuf> {
    let base = std::env::var_os("CRUCIBLE_SHARED_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    let p = base.join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is not there", p.display());
        None
    }
}

fn judge_all(problems: &[Problem], subs: Vec<Submission>) -> Vec<Report> {
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
    let judge = Judge::new(
        sandbox,
        Profiles::load(None).unwrap(),
        JudgeOptions::default(),
    );
    let scheduler = Scheduler::new(Arc::new(judge), 0);
    let by_id: BTreeMap<&str, Arc<Problem>> = problems
        .iter()
        .map(|p| (p.id.as_str(), Arc::new(p.clone())))
        .collect();
    let jobs: Vec<Job> = subs
        .into_iter()
        .map(|s| Job {
            problem: by_id[s.task_id.as_str()].clone(),
            submission: s,
        })
        .collect();
    let n = jobs.len();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut out: Vec<(usize, Report)> = rt.block_on(async {
        scheduler
            .judge_all(jobs)
            .map(|(i, r)| (i, r.expect("judgeable")))
            .collect()
            .await
    });
    out.sort_by_key(|(i, _)| *i);
    assert_eq!(out.len(), n, "every submission gets a report");
    out.into_iter().map(|(_, r)| r).collect()
}

fn assert_all_accepted(kind: DatasetKind, rel: &str, expected: usize) {
    let Some(path) = shared(rel) else { return };
    let problems = load(kind, &path).unwrap();
    assert_eq!(problems.len(), expected);
    let reports = judge_all(&problems, canonical_submissions(&problems));
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
    let Some(path) = shared(rel) else { return };
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
    let reports = judge_all(&problems, subs);
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
