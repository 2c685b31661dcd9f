//! The APPS adapter on real APPS data: MapCoder's 150-problem subset
//! (`../shared/datasets/apps_subset/selected150.jsonl`, or under
//! `$CRUCIBLE_SHARED_DATASETS`), read without copying it into the repo. Skips with a
//! message when the file is not there.

use crucible_core::{Problem, Submission, TestCase, Verdict};
use crucible_datasets::{load_apps, ProblemsLoad};
use crucible_judge::{CompileCache, Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use std::path::PathBuf;

fn selected150() -> Option<PathBuf> {
    let base = std::env::var_os("CRUCIBLE_SHARED_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    let p = base.join("apps_subset/selected150.jsonl");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is missing", p.display());
        None
    }
}

fn judge() -> Judge {
    Judge::new(
        ProcessSandbox::new(SandboxConfig::default()).expect("sandbox"),
        Profiles::load(None).expect("profiles"),
        JudgeOptions::default(),
    )
    .with_compile_cache(CompileCache::private(1 << 30))
}

fn load() -> Option<ProblemsLoad> {
    Some(load_apps(&selected150()?).expect("readable"))
}

fn find<'a>(load: &'a ProblemsLoad, id: &str) -> &'a Problem {
    load.problems
        .iter()
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("problem {id}"))
}

fn judge_code(j: &Judge, p: &Problem, language: &str, code: &str) -> crucible_core::Report {
    let s = Submission {
        task_id: p.id.clone(),
        sample: 0,
        language: language.into(),
        completion: code.into(),
    };
    j.judge(p, &s).expect("judgeable")
}

#[test]
fn loads_every_problem_and_reports_the_duplicates() {
    let Some(load) = load() else { return };
    // 150 rows, 128 distinct ids: each repeated row is reported at its own line.
    assert_eq!(load.problems.len(), 128);
    assert_eq!(load.errors.len(), 22);
    assert!(load
        .errors
        .iter()
        .all(|e| e.to_string().contains("duplicate problem id")));
    let calls = load
        .problems
        .iter()
        .filter(|p| matches!(p.tests[0], TestCase::Call { .. }))
        .count();
    let stdio = load
        .problems
        .iter()
        .filter(|p| matches!(p.tests[0], TestCase::Stdio { .. }))
        .count();
    assert_eq!(calls + stdio, 128);
    assert!(calls > 70 && stdio > 40, "{calls} call, {stdio} stdio");
}

#[test]
fn hand_written_solutions_are_accepted_in_several_languages() {
    let Some(load) = load() else { return };
    let j = judge();
    // Call problems (Python), APPS call semantics: the result equals the wrapped output.
    let cases = [
        (
            "2755",
            "def multiple_of_index(arr):\n    return [x for i, x in enumerate(arr) if i > 0 and x % i == 0]\n",
        ),
        (
            "3836",
            "def factors(x):\n    if not isinstance(x, int) or isinstance(x, bool) or x < 1:\n        return -1\n    return [d for d in range(x, 0, -1) if x % d == 0]\n",
        ),
        (
            "1647",
            "def next_bigger(n):\n    d = list(str(n))\n    i = len(d) - 2\n    while i >= 0 and d[i] >= d[i + 1]:\n        i -= 1\n    if i < 0:\n        return -1\n    k = len(d) - 1\n    while d[k] <= d[i]:\n        k -= 1\n    d[i], d[k] = d[k], d[i]\n    d[i + 1:] = reversed(d[i + 1:])\n    return int(''.join(d))\n",
        ),
    ];
    for (id, code) in cases {
        let r = judge_code(&j, find(&load, id), "python", code);
        assert_eq!(r.verdict, Verdict::Accepted, "{id}: {r:#?}");
    }
    // A stdin problem ("QAQ" subsequences, 43 tests) in Python, C++, Rust, JavaScript.
    let qaq = find(&load, "1607");
    let programs = [
        ("python", "s = input()\nq = qa = qaq = 0\nfor c in s:\n    if c == 'Q':\n        qaq += qa\n        q += 1\n    elif c == 'A':\n        qa += q\nprint(qaq)\n"),
        ("cpp", "#include <iostream>\n#include <string>\nint main() { std::string s; std::cin >> s; long long q = 0, qa = 0, qaq = 0; for (char c : s) { if (c == 'Q') { qaq += qa; ++q; } else if (c == 'A') qa += q; } std::cout << qaq << '\\n'; }\n"),
        ("rust", "fn main() { let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap(); let (mut q, mut qa, mut qaq) = (0u64, 0u64, 0u64); for c in s.trim().chars() { if c == 'Q' { qaq += qa; q += 1; } else if c == 'A' { qa += q; } } println!(\"{qaq}\"); }\n"),
        ("javascript", "const s = require('fs').readFileSync(0, 'utf8').trim();\nlet q = 0, qa = 0, qaq = 0;\nfor (const c of s) { if (c === 'Q') { qaq += qa; q++; } else if (c === 'A') qa += q; }\nconsole.log(qaq);\n"),
    ];
    for (language, code) in programs {
        let r = judge_code(&j, qaq, language, code);
        assert_eq!(
            (r.verdict, r.passed, r.total),
            (Verdict::Accepted, 43, 43),
            "{language}: {r:#?}"
        );
        if language != "python" {
            assert_eq!(r.compile.as_ref().unwrap().runs, 43);
        }
    }
}

#[test]
fn an_empty_program_passes_nothing_and_breaks_nothing() {
    let Some(load) = load() else { return };
    let j = judge();
    for p in &load.problems {
        let r = judge_code(&j, p, "python", "pass\n");
        assert!(
            !matches!(r.verdict, Verdict::Accepted | Verdict::SandboxError),
            "{}: {r:#?}",
            p.id
        );
    }
}
