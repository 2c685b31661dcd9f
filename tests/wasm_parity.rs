//! Parity of python-wasm with the process backend on HumanEval: every canonical solution
//! is accepted under python-wasm (no task needs a module that CPython for WASI lacks),
//! and the wrong-completion set gets the same verdict, task by task, under both backends.
//!
//! Needs the guests from scripts/fetch-wasm-guests.sh and HumanEval in ../shared/datasets
//! (or $CRUCIBLE_SHARED_DATASETS); skipped with a message when one is absent, unless
//! CRUCIBLE_REQUIRE_WASM is set (CI).

use crucible_core::{Problem, Report, Submission, Verdict};
use crucible_datasets::{canonical_submissions, load, DatasetKind};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use crucible_suite::{judge_in_order, shared_dataset};
use std::sync::Arc;

/// HumanEval tasks whose canonical solution cannot pass under python-wasm, with the
/// reason. Empty: every task's imports (math, hashlib, re, collections, ...) exist in
/// CPython 3.12 for WASI. A task that needs a missing module (threads, subprocess,
/// sockets) would be listed here.
const KNOWN_WASM_GAPS: &[(&str, &str)] = &[];

fn setup() -> Option<(Arc<Judge>, Vec<Problem>)> {
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
    let judge = Judge::new(
        sandbox,
        Profiles::load(None).expect("profiles"),
        JudgeOptions::default(),
    );
    if let Err(e) = judge.profiles().get("python-wasm") {
        assert!(
            std::env::var_os("CRUCIBLE_REQUIRE_WASM").is_none(),
            "python-wasm is required here: {e}"
        );
        eprintln!("skipped: {e}");
        return None;
    }
    let path = shared_dataset("humaneval/HumanEval.jsonl.gz")?;
    let problems = load(DatasetKind::HumanEval, &path).expect("HumanEval");
    Some((Arc::new(judge), problems))
}

fn in_language(subs: Vec<Submission>, lang: &str) -> Vec<Submission> {
    subs.into_iter()
        .map(|mut s| {
            s.language = lang.into();
            s
        })
        .collect()
}

#[test]
fn humaneval_canonical_all_accepted_under_python_wasm() {
    let Some((judge, problems)) = setup() else {
        return;
    };
    let reports = judge_in_order(
        judge.clone(),
        0,
        &problems,
        in_language(canonical_submissions(&problems), "python-wasm"),
    );
    assert_eq!(reports.len(), 164);
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.verdict != Verdict::Accepted)
        .filter(|r| !KNOWN_WASM_GAPS.iter().any(|(t, _)| *t == r.task_id))
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
    assert!(failed.is_empty(), "not accepted:\n{}", failed.join("\n"));
    assert!(reports
        .iter()
        .all(|r| r.reward.is_some() && r.fuel_used.is_some()));
}

#[test]
fn humaneval_wrong_completions_same_verdicts_as_process_backend() {
    let Some((judge, problems)) = setup() else {
        return;
    };
    // The wrong set of tests/parity.rs: every completion returns None.
    let wrong: Vec<Submission> = problems
        .iter()
        .map(|p| Submission {
            task_id: p.id.clone(),
            sample: 0,
            language: String::new(),
            completion: "    return None\n".into(),
        })
        .collect();
    let native = judge_in_order(
        judge.clone(),
        0,
        &problems,
        in_language(wrong.clone(), "python"),
    );
    let wasm = judge_in_order(
        judge.clone(),
        0,
        &problems,
        in_language(wrong, "python-wasm"),
    );
    let mut differ = Vec::new();
    for (n, w) in native.iter().zip(&wasm) {
        assert!(
            matches!(w.verdict, Verdict::WrongAnswer | Verdict::RuntimeError),
            "{}: {}",
            w.task_id,
            w.verdict
        );
        let per_test = |r: &Report| r.tests.iter().map(|t| t.verdict).collect::<Vec<_>>();
        if n.verdict != w.verdict || per_test(n) != per_test(w) || n.reward != w.reward {
            differ.push(format!(
                "{}: process {} {:?}, wasm {} {:?}",
                n.task_id,
                n.verdict,
                per_test(n),
                w.verdict,
                per_test(w)
            ));
        }
    }
    assert!(differ.is_empty(), "verdicts differ:\n{}", differ.join("\n"));
}

/// MBPP tasks whose canonical solution is not accepted under python-wasm, with the
/// reason. MBPP/596 asserts `tuple_size(t) == sys.getsizeof(t)`: the program computes
/// the size in CPython for WASI (32-bit objects), the checker in native CPython (64-bit),
/// and the two differ. The checker runs natively whatever sandbox the program is in.
const KNOWN_MBPP_WASM_GAPS: &[(&str, &str)] = &[(
    "596",
    "sys.getsizeof differs between the program's 32-bit and the checker's 64-bit CPython",
)];

/// Every canonical solution of an MBPP set accepted under python-wasm, but for the known
/// gaps above (which must still fail, or the list is stale). The time limit is
/// raised for all: MBPP/123 takes ~5 s natively (PROVENANCE.md: "give it room") and ~14 s
/// of fuel under python-wasm, past the default 10 s.
fn assert_mbpp_accepted_under_python_wasm(kind: DatasetKind, rel: &str, expected: usize) {
    if setup().is_none() {
        return;
    }
    let Some(path) = shared_dataset(rel) else {
        return;
    };
    let problems = load(kind, &path).expect("MBPP");
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
    let judge = Judge::new(
        sandbox,
        Profiles::load(None).expect("profiles"),
        JudgeOptions {
            limits: Some(crucible_core::Limits::default().with_time_ms(60_000)),
            ..JudgeOptions::default()
        },
    );
    let reports = judge_in_order(
        Arc::new(judge),
        0,
        &problems,
        in_language(canonical_submissions(&problems), "python-wasm"),
    );
    assert_eq!(reports.len(), expected);
    let known = |id: &str| KNOWN_MBPP_WASM_GAPS.iter().any(|(t, _)| *t == id);
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.verdict != Verdict::Accepted && !known(&r.task_id))
        .map(|r| format!("{} {} {:?}", r.task_id, r.verdict, r.tests))
        .collect();
    assert!(failed.is_empty(), "not accepted:\n{}", failed.join("\n"));
    for r in reports.iter().filter(|r| known(&r.task_id)) {
        assert_eq!(r.verdict, Verdict::WrongAnswer, "stale gap: {r:?}");
    }
}

#[test]
fn mbpp_full_canonical_all_accepted_under_python_wasm() {
    assert_mbpp_accepted_under_python_wasm(DatasetKind::Mbpp, "mbpp/mbpp.jsonl", 974);
}

#[test]
fn mbpp_sanitized_canonical_all_accepted_under_python_wasm() {
    assert_mbpp_accepted_under_python_wasm(
        DatasetKind::MbppSanitized,
        "mbpp/sanitized-mbpp.json",
        427,
    );
}
