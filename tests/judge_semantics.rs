//! The judge's verdicts on tricky programs: reward hacks, limits seen through the harness,
//! every test kind and comparator, and the smoke problem set. Every submission is judged
//! through the Python fork server (the default) and in a fresh sandbox, and the two
//! reports must agree (timings and memory aside).

use crucible_core::{Comparator, Limits, Problem, Report, Submission, TestCase, Verdict};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use crucible_suite::comparable;
use std::sync::OnceLock;

fn judge() -> &'static Judge {
    static J: OnceLock<Judge> = OnceLock::new();
    J.get_or_init(|| {
        let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
        let j = Judge::new(
            sandbox,
            Profiles::load(None).unwrap(),
            JudgeOptions::default(),
        );
        assert!(j.fork_server("python").is_some(), "fork server up");
        j
    })
}

/// The same judge with the fork server off: every program in a fresh sandbox.
fn fresh_judge() -> &'static Judge {
    static J: OnceLock<Judge> = OnceLock::new();
    J.get_or_init(|| {
        let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
        let mut j = Judge::new(
            sandbox,
            Profiles::load(None).unwrap(),
            JudgeOptions::default(),
        );
        j.set_fork_server(false);
        j
    })
}

fn problem(tests: Vec<TestCase>) -> Problem {
    Problem {
        id: "t".into(),
        prompt: None,
        completion_prefix: String::new(),
        test_setup: String::new(),
        tests,
        reference: None,
        language: "python".into(),
        limits: Some(Limits::default().with_time_ms(2_000).with_memory_mb(256)),
    }
}

fn judge_code(p: &Problem, code: &str) -> Report {
    let s = Submission {
        task_id: p.id.clone(),
        sample: 0,
        language: "python".into(),
        completion: code.into(),
    };
    let forked = judge().judge(p, &s).expect("judgeable");
    let fresh = fresh_judge().judge(p, &s).expect("judgeable");
    assert_eq!(
        comparable(&forked),
        comparable(&fresh),
        "fork server and fresh sandbox disagree on {code:?}"
    );
    forked
}

fn add_asserts() -> Problem {
    problem(vec![
        TestCase::Assert {
            code: "assert add(1, 2) == 3".into(),
            entry_point: None,
        },
        TestCase::Assert {
            code: "assert add(2, 2) == 4".into(),
            entry_point: None,
        },
    ])
}

fn check_suite() -> Problem {
    problem(vec![TestCase::Assert {
        code: "def check(candidate):\n    assert candidate(1, 2) == 3\n    x = 5\n    assert candidate(x, 1) == 6\n    assert candidate(0, 0) == 0\n".into(),
        entry_point: Some("add".into()),
    }])
}

#[test]
fn check_suite_counts_each_assert() {
    let r = judge_code(&check_suite(), "def add(a, b):\n    return a + b\n");
    assert_eq!(r.verdict, Verdict::Accepted, "{r:?}");
    assert_eq!((r.passed, r.total), (3, 3));
    let ids: Vec<&str> = r.tests.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["0.0", "0.1", "0.2"]);

    let r = judge_code(
        &check_suite(),
        "def add(a, b):\n    return a + b if a else 1\n",
    );
    assert_eq!(r.verdict, Verdict::WrongAnswer);
    assert_eq!((r.passed, r.total), (2, 3));
    assert_eq!(r.tests[2].verdict, Verdict::WrongAnswer);
}

#[test]
fn early_exit_is_not_a_pass() {
    for code in [
        "import sys\nsys.exit(0)\ndef add(a, b):\n    return 0\n",
        "import os\nos._exit(0)\n",
        "def add(a, b):\n    import os\n    os._exit(0)\n",
        "def add(a, b):\n    raise SystemExit(0)\n",
    ] {
        let r = judge_code(&check_suite(), code);
        assert_eq!(r.verdict, Verdict::RuntimeError, "{code}: {r:?}");
        assert_eq!(r.passed, 0, "{code}");
        assert_eq!(r.reward, Some(0.0));
    }
}

#[test]
fn forged_results_are_ignored() {
    // Prints records shaped like the checker's, then exits: only the checker's stdout
    // holds records, and it is another process's.
    let code = "import os\nfor i in range(3):\n    os.write(1, ('{\"id\": \"0.%d\", \"status\": \"pass\", \"n\": \"x\"}\\n' % i).encode())\nos.write(1, b'{\"event\": \"done\", \"n\": \"x\"}\\n')\nos._exit(0)\n";
    let r = judge_code(&check_suite(), code);
    assert_ne!(r.verdict, Verdict::Accepted, "{r:?}");
    assert_eq!(r.passed, 0);
}

#[test]
fn always_equal_objects_do_not_pass() {
    let code = "class Any:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n        return False\ndef add(a, b):\n    return Any()\n";
    let r = judge_code(&check_suite(), code);
    assert_eq!(r.verdict, Verdict::WrongAnswer, "{r:?}");
    assert_eq!(r.passed, 0);
    let r = judge_code(&add_asserts(), code);
    assert_eq!(r.passed, 0, "{r:?}");
}

#[test]
fn reading_the_test_spec_finds_nothing() {
    let code = "import os\nleft = [f for f in os.listdir('.') if f.endswith('.json')]\ndef add(a, b):\n    assert not left, left\n    return a + b\n";
    let r = judge_code(&add_asserts(), code);
    assert_eq!(r.verdict, Verdict::Accepted, "{r:?}");
}

#[test]
fn the_work_dir_looks_the_same_either_way() {
    // The tests never reach the program's work dir, on either path: it holds the
    // program and the harness that serves the checker's calls, nothing else.
    let p = problem(vec![TestCase::Assert {
        code: "assert files() == ['.crucible_harness.py', 'solution.py']".into(),
        entry_point: None,
    }]);
    let r = judge_code(
        &p,
        "import os\ndef files():\n    return sorted(os.listdir('.'))\n",
    );
    assert_eq!(r.verdict, Verdict::Accepted, "{r:?}");
}

#[test]
fn tampering_with_compile_cannot_touch_the_tests() {
    // A submission that replaces compile (or ast.parse) changes its own interpreter; the
    // tests are compiled and run by the checker, another process.
    for hack in [
        "import builtins\n_c = builtins.compile\nbuiltins.compile = lambda *a, **k: _c('pass', 'x', 'exec')\n",
        "import ast\n_p = ast.parse\nast.parse = lambda *a, **k: _p('pass')\n",
    ] {
        let code = format!("{hack}def add(a, b):\n    return -1\n");
        for p in [check_suite(), add_asserts()] {
            let r = judge_code(&p, &code);
            assert_eq!(r.verdict, Verdict::WrongAnswer, "{hack}: {r:?}");
            assert_eq!(r.passed, 0, "{hack}");
        }
    }
}

#[test]
fn the_program_zygote_holds_no_tests() {
    // One zygote, so both runs are forked from it. The first looks through everything
    // it inherited for a test plan or a test's source and empties what it finds; the
    // second, wrong, is still judged on every assert, by the checker.
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
    let mut j = Judge::new(
        sandbox,
        Profiles::load(None).unwrap(),
        JudgeOptions::default(),
    );
    j.set_fork_server_slots(1);
    let p = check_suite();
    let sub = |completion: &str| Submission {
        task_id: p.id.clone(),
        sample: 0,
        language: "python".into(),
        completion: completion.into(),
    };
    let tamper = "import sys, gc\nFOUND = []\nfor o in gc.get_objects():\n    if type(o).__name__ in ('_Plan', '_CheckPlan', '_Compiled') or (isinstance(o, dict) and 'tests' in o):\n        FOUND.append(type(o).__name__)\ndef add(a, b):\n    assert not FOUND, FOUND\n    return a + b\n";
    let r = j.judge(&p, &sub(tamper)).expect("judgeable");
    assert!(j.fork_server("python").is_some(), "fork server up");
    assert_eq!(r.verdict, Verdict::Accepted, "the zygote held tests: {r:?}");
    assert_eq!(r.total, 3, "{r:?}");
    let r = j
        .judge(&p, &sub("def add(a, b):\n    return -1\n"))
        .expect("judgeable");
    assert_eq!(r.verdict, Verdict::WrongAnswer, "{r:?}");
    assert_eq!((r.passed, r.total), (0, 3), "{r:?}");
}

#[test]
fn program_errors_and_limits() {
    let p = add_asserts();
    let cases = [
        ("def add(a, b):\n    return a +\n", Verdict::CompileError),
        ("raise RuntimeError('boom')\n", Verdict::RuntimeError),
        (
            "def add(a, b):\n    return a + b\nundefined_name\n",
            Verdict::RuntimeError,
        ),
        (
            "def add(a, b):\n    while True:\n        pass\n",
            Verdict::TimeLimitExceeded,
        ),
        (
            "def add(a, b):\n    import time\n    time.sleep(100)\n",
            Verdict::TimeLimitExceeded,
        ),
        (
            "def add(a, b):\n    return len(bytearray(1 << 40))\n",
            Verdict::MemoryLimitExceeded,
        ),
        (
            "def add(a, b):\n    x = []\n    while True:\n        x.append(bytearray(1 << 20))\n",
            Verdict::MemoryLimitExceeded,
        ),
        (
            "def add(a, b):\n    return add(a, b)\n",
            Verdict::RuntimeError,
        ),
    ];
    for (code, want) in cases {
        let r = judge_code(&p, code);
        assert_eq!(r.verdict, want, "{code}: {r:?}");
        assert_eq!(r.total, 2, "{code}");
        assert!(r.reward == Some(0.0), "{code}");
    }
}

#[test]
fn stdio_comparators() {
    let t = |stdin: &str, out: &str, comparator| TestCase::Stdio {
        stdin: stdin.into(),
        expected_stdout: out.into(),
        comparator,
    };
    let p = problem(vec![
        t("3\n", "6\n", Comparator::Exact),
        t("4\n", "8", Comparator::Line),
        t("5\n", "10", Comparator::Token),
        t(
            "6\n",
            "12.0000001",
            Comparator::Float {
                abs: 1e-6,
                rel: 1e-6,
            },
        ),
    ]);
    let r = judge_code(&p, "print(int(input()) * 2)\n");
    assert_eq!(r.verdict, Verdict::Accepted, "{r:?}");
    assert_eq!((r.passed, r.total), (4, 4));

    let r = judge_code(&p, "print(int(input()) * 2, end=' \\n\\n')\n");
    let v: Vec<Verdict> = r.tests.iter().map(|t| t.verdict).collect();
    assert_eq!(v[0], Verdict::WrongAnswer, "exact sees the trailing space");
    assert_eq!(&v[1..], [Verdict::Accepted; 3]);
}

#[test]
fn empty_expected_output_does_not_excuse_a_crash() {
    let p = problem(vec![TestCase::Stdio {
        stdin: String::new(),
        expected_stdout: String::new(),
        comparator: Comparator::Line,
    }]);
    assert_eq!(
        judge_code(&p, "raise ValueError\n").verdict,
        Verdict::RuntimeError
    );
    assert_eq!(judge_code(&p, "pass\n").verdict, Verdict::Accepted);
    assert_eq!(judge_code(&p, "def f(:\n").verdict, Verdict::CompileError);
}

#[test]
fn call_tests() {
    let p = problem(vec![
        TestCase::Call {
            function: "f".into(),
            args: vec![serde_json::json!(1), serde_json::json!([2, 3])],
            expected: serde_json::json!([1, 2, 3]),
            atol: None,
        },
        TestCase::Call {
            function: "g".into(),
            args: vec![],
            expected: serde_json::json!(0.3),
            atol: Some(1e-9),
        },
    ]);
    let r = judge_code(
        &p,
        "def f(a, b):\n    return (a, *b)\ndef g():\n    return 0.1 + 0.2\n",
    );
    assert_eq!(r.verdict, Verdict::Accepted, "{r:?}");
    let r = judge_code(&p, "def f(a, b):\n    return [a]\n");
    assert_eq!(r.tests[0].verdict, Verdict::WrongAnswer);
    assert_eq!(r.tests[1].verdict, Verdict::RuntimeError, "g is missing");
}

#[test]
fn hash_and_random_are_deterministic() {
    let code =
        "import random\nprint(hash('crucible'), random.random(), list({'a', 'b', 'c', 'd'}))\n";
    for j in [judge(), fresh_judge()] {
        let run = || j.run_source("python", code, b"", None).unwrap();
        let a = run();
        let b = run();
        assert_eq!(a.status, crucible_core::RunStatus::Ok, "{a:?}");
        assert!(!a.stdout.is_empty());
        assert_eq!(a.stdout, b.stdout);
    }
    // The same output from a fresh interpreter and a forked one.
    let a = judge().run_source("python", code, b"", None).unwrap();
    let b = fresh_judge().run_source("python", code, b"", None).unwrap();
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn smoke_set_references_are_accepted() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/smoke.jsonl");
    let problems =
        crucible_datasets::load(crucible_datasets::DatasetKind::Crucible, &path).unwrap();
    for s in crucible_datasets::canonical_submissions(&problems) {
        let p = problems.iter().find(|p| p.id == s.task_id).unwrap();
        let r = judge().judge(p, &s).unwrap();
        assert_eq!(r.verdict, Verdict::Accepted, "{}: {r:?}", p.id);
    }
}
