//! Compiled languages end to end: C, C++, Rust and JavaScript verdicts; compile once per
//! submission and once per identical source (the cache, also under concurrency);
//! testlib-style checkers; and a batch in which broken problems get errors while the
//! rest is judged.

use crucible_core::{Comparator, Limits, Problem, Report, Submission, TestCase, Verdict};
use crucible_judge::{CompileCache, Job, Judge, JudgeError, JudgeOptions, Profiles, Scheduler};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A judge with a private compile cache of its own (removed when the judge drops), so
/// each test starts cold.
fn judge() -> Judge {
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
    Judge::new(
        sandbox,
        Profiles::load(None).expect("profiles"),
        JudgeOptions::default(),
    )
    .with_compile_cache(CompileCache::private(1 << 30))
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn stdio(stdin: &str, expected: &str) -> TestCase {
    TestCase::Stdio {
        stdin: stdin.into(),
        expected_stdout: expected.into(),
        comparator: Comparator::Line,
    }
}

fn problem(id: &str, language: &str, tests: Vec<TestCase>) -> Problem {
    Problem {
        id: id.into(),
        prompt: None,
        completion_prefix: String::new(),
        test_setup: String::new(),
        tests,
        reference: None,
        language: language.into(),
        limits: Some(Limits::default().with_time_ms(1_000).with_memory_mb(256)),
    }
}

fn sum_problem(language: &str) -> Problem {
    problem(
        "sum",
        language,
        vec![stdio("1 2\n", "3\n"), stdio("10 -4\n", "6\n")],
    )
}

fn submission(p: &Problem, language: &str, code: &str) -> Submission {
    Submission {
        task_id: p.id.clone(),
        sample: 0,
        language: language.into(),
        completion: code.into(),
    }
}

fn run(j: &Judge, p: &Problem, language: &str, code: &str) -> Report {
    j.judge(p, &submission(p, language, code))
        .expect("judgeable")
}

/// One language's five programs: correct, wrong, not compiling, crashing, looping.
struct Programs {
    language: &'static str,
    correct: &'static str,
    wrong: &'static str,
    no_compile: &'static str,
    crash: &'static str,
    infinite: &'static str,
}

fn check_language(p: Programs) {
    let j = judge();
    let prob = sum_problem(p.language);
    let cases = [
        ("correct", p.correct, Verdict::Accepted),
        ("wrong", p.wrong, Verdict::WrongAnswer),
        ("no_compile", p.no_compile, Verdict::CompileError),
        ("crash", p.crash, Verdict::RuntimeError),
        ("infinite", p.infinite, Verdict::TimeLimitExceeded),
    ];
    for (what, code, want) in cases {
        let r = run(&j, &prob, p.language, code);
        assert_eq!(r.verdict, want, "{} {what}: {r:#?}", p.language);
        let c = r
            .compile
            .as_ref()
            .expect("compiled languages report their compile");
        assert_eq!(c.compiles, 1, "{} {what}", p.language);
        match want {
            Verdict::Accepted => assert_eq!((r.passed, r.total, r.reward), (2, 2, Some(1.0))),
            Verdict::CompileError => {
                let m = r.message.as_deref().unwrap_or("");
                assert!(
                    !m.is_empty() && m.len() < 2100,
                    "{} message: {m:?}",
                    p.language
                );
                assert_eq!(c.runs, 0, "nothing runs after a compile error");
                assert_eq!(r.reward, Some(0.0));
            }
            _ => assert_eq!(r.passed, 0, "{} {what}: {r:#?}", p.language),
        }
    }
}

#[test]
fn c_verdicts() {
    check_language(Programs {
        language: "c",
        correct: "#include <stdio.h>\nint main(void) { long a, b; scanf(\"%ld %ld\", &a, &b); printf(\"%ld\\n\", a + b); return 0; }\n",
        wrong: "#include <stdio.h>\nint main(void) { long a, b; scanf(\"%ld %ld\", &a, &b); printf(\"%ld\\n\", a - b); return 0; }\n",
        no_compile: "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", undeclared) return 0; }\n",
        crash: "int main(void) { volatile int *p = 0; *p = 1; return 0; }\n",
        infinite: "int main(void) { volatile unsigned long x = 0; for (;;) x++; }\n",
    });
}

#[test]
fn cpp_verdicts() {
    check_language(Programs {
        language: "cpp",
        correct: "#include <iostream>\nint main() { long long a, b; std::cin >> a >> b; std::cout << a + b << '\\n'; }\n",
        wrong: "#include <iostream>\nint main() { long long a, b; std::cin >> a >> b; std::cout << a * b << '\\n'; }\n",
        no_compile: "#include <vector>\nint main() { std::vector<int> v = 3; }\n",
        crash: "#include <vector>\nint main() { std::vector<int> v; return v.at(5); }\n",
        infinite: "int main() { volatile unsigned long x = 0; for (;;) x = x + 1; }\n",
    });
}

#[test]
fn rust_verdicts() {
    check_language(Programs {
        language: "rust",
        correct: "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect(); println!(\"{}\", v[0] + v[1]); }\n",
        wrong: "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect(); println!(\"{}\", v[0] - v[1]); }\n",
        no_compile: "fn main() { let x: i32 = \"not a number\"; println!(\"{x}\"); }\n",
        crash: "fn main() { let v: Vec<i32> = Vec::new(); let i = std::hint::black_box(7); println!(\"{}\", v[i]); }\n",
        infinite: "fn main() { let mut x = 0u64; loop { x = std::hint::black_box(x.wrapping_add(1)); } }\n",
    });
}

#[test]
fn javascript_verdicts() {
    check_language(Programs {
        language: "javascript",
        correct: "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\nconsole.log(a + b);\n",
        wrong: "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\nconsole.log(a - b);\n",
        no_compile: "function broken( {\n  return 1;\n}\n",
        crash: "throw new Error('boom');\n",
        infinite: "let x = 0;\nwhile (true) { x++; }\n",
    });
}

#[test]
fn a_syntax_error_is_reported_by_the_compile_step_not_the_tests() {
    let j = judge();
    let p = sum_problem("javascript");
    let r = run(&j, &p, "javascript", "console.log(;\n");
    assert_eq!(r.verdict, Verdict::CompileError);
    assert!(
        r.message.as_deref().unwrap_or("").contains("SyntaxError"),
        "{r:#?}"
    );
    assert!(r.tests.iter().all(|t| t.verdict == Verdict::CompileError));
}

#[test]
fn hundred_tests_compile_once() {
    let j = judge();
    let tests = (0..100)
        .map(|i| stdio(&format!("{i} {i}\n"), &format!("{}\n", 2 * i)))
        .collect();
    let p = problem("hundred", "c", tests);
    let code = "#include <stdio.h>\nint main(void) { int a, b; scanf(\"%d %d\", &a, &b); printf(\"%d\\n\", a + b); return 0; }\n";
    let r = run(&j, &p, "c", code);
    assert_eq!(
        (r.verdict, r.passed, r.total),
        (Verdict::Accepted, 100, 100)
    );
    let c = r.compile.clone().unwrap();
    assert_eq!((c.compiles, c.runs, c.cached), (1, 100, false));
    assert_eq!(j.compile_cache().compiles(), 1);
    // The same source again is a cache hit: the compiler does not run.
    let again = run(&j, &p, "c", code);
    let c2 = again.compile.unwrap();
    assert_eq!((c2.compiles, c2.cached, c2.key), (0, true, c.key));
    assert_eq!(j.compile_cache().compiles(), 1);
    // The report's JSON carries the counter.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["compile"]["compiles"], 1);
    assert_eq!(json["compile"]["runs"], 100);
}

#[test]
fn sixty_four_identical_submissions_at_once_compile_once() {
    let j = Arc::new(judge());
    let p = Arc::new(sum_problem("cpp"));
    let code = "#include <iostream>\nint main() { long long a, b; std::cin >> a >> b; std::cout << a + b << '\\n'; }\n";
    let jobs: Vec<Job> = (0..64)
        .map(|i| Job {
            problem: p.clone(),
            submission: Submission {
                sample: i,
                ..submission(&p, "cpp", code)
            },
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // All 64 at once: every judgement asks the cache for the same key together.
    let scheduler = Scheduler::new(j.clone(), 64);
    let reports: Vec<Report> = rt.block_on(async {
        scheduler
            .judge_all(jobs)
            .map(|(_, r)| r.expect("judgeable"))
            .collect()
            .await
    });
    assert_eq!(reports.len(), 64);
    assert!(
        reports.iter().all(|r| r.verdict == Verdict::Accepted),
        "{reports:#?}"
    );
    let compiles: u32 = reports
        .iter()
        .map(|r| r.compile.as_ref().unwrap().compiles)
        .sum();
    let hits = reports
        .iter()
        .filter(|r| r.compile.as_ref().unwrap().cached)
        .count();
    assert_eq!((compiles, hits), (1, 63));
    assert_eq!(j.compile_cache().compiles(), 1);
    // A different source is a different key.
    let other = run(&j, &p, "cpp", &format!("{code}// another sample\n"));
    assert_eq!(other.compile.unwrap().compiles, 1);
    assert_eq!(j.compile_cache().compiles(), 2);
}

#[test]
fn the_compiler_runs_under_its_own_limits() {
    let j = judge();
    let p = sum_problem("c");
    // The preprocessor would read /dev/zero forever; the compile's limits stop it.
    let r = run(
        &j,
        &p,
        "c",
        "#include \"/dev/zero\"\nint main(void) { return 0; }\n",
    );
    assert_eq!(r.verdict, Verdict::CompileError, "{r:#?}");
    let m = r.message.unwrap_or_default();
    assert!(m.contains("limit") || m.contains("error"), "{m}");
    // Nothing outside the toolchain is visible to the compiler.
    let r = run(
        &j,
        &p,
        "c",
        "#include \"/etc/shadow\"\nint main(void) { return 0; }\n",
    );
    assert_eq!(r.verdict, Verdict::CompileError);
    assert!(r.message.unwrap_or_default().contains("No such file"));
}

fn codeforces_problem() -> Problem {
    let problems = crucible_datasets::load(
        crucible_datasets::DatasetKind::Crucible,
        &repo("datasets/codeforces-checker.jsonl"),
    )
    .expect("fixture loads");
    problems.into_iter().next().unwrap()
}

#[test]
fn codeforces_checker_judges_any_valid_answer() {
    let j = judge();
    let p = codeforces_problem();
    let reference = run(&j, &p, "cpp", p.reference.as_deref().unwrap());
    assert_eq!(reference.verdict, Verdict::Accepted, "{reference:#?}");
    let c = reference.compile.as_ref().unwrap();
    assert_eq!(
        (c.compiles, c.checker_compiles),
        (1, 1),
        "checker compiled once for 5 tests"
    );

    // A different valid answer than the jury's: only a checker can accept it.
    let halves = "#include <cstdio>\nint main() { long long n; scanf(\"%lld\", &n); printf(\"%lld %lld\\n\", n / 2, n - n / 2); }\n";
    let r = run(&j, &p, "cpp", halves);
    assert_eq!(r.verdict, Verdict::Accepted, "{r:#?}");
    assert_eq!(
        r.compile.as_ref().unwrap().checker_compiles,
        0,
        "the checker is cached"
    );

    let off_by_one = "#include <cstdio>\nint main() { long long n; scanf(\"%lld\", &n); printf(\"1 %lld\\n\", n); }\n";
    let r = run(&j, &p, "cpp", off_by_one);
    assert_eq!(r.verdict, Verdict::WrongAnswer);
    assert!(
        r.tests[0]
            .message
            .as_deref()
            .unwrap()
            .contains("wrong answer"),
        "{r:#?}"
    );

    let r = run(&j, &p, "python", "input()\nprint('hello')\n");
    assert_eq!(r.verdict, Verdict::WrongAnswer);
    assert!(
        r.tests[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("presentation error"),
        "{r:#?}"
    );

    let r = run(&j, &p, "python", "n = int(input())\nprint(n - 1, 1)\n");
    assert_eq!(
        r.verdict,
        Verdict::Accepted,
        "checkers judge Python submissions too: {r:#?}"
    );
}

#[test]
fn a_checker_may_give_partial_points() {
    let j = judge();
    // Half the points for a positive answer that is not the expected one.
    let checker = "#include <stdio.h>\nint main(int c, char **v) { FILE *o = fopen(v[2], \"r\"), *a = fopen(v[3], \"r\"); long x, y; if (fscanf(o, \"%ld\", &x) != 1) return 2; fscanf(a, \"%ld\", &y); if (x == y) return 0; if (x > 0) { printf(\"points 0.5\\n\"); return 7; } fprintf(stderr, \"wrong answer %ld\\n\", x); return 1; }\n";
    let cmp = Comparator::Checker {
        language: "c".into(),
        source: checker.into(),
    };
    let p = problem(
        "partial",
        "python",
        vec![TestCase::Stdio {
            stdin: String::new(),
            expected_stdout: "42\n".into(),
            comparator: cmp,
        }],
    );
    let r = run(&j, &p, "python", "print(41)\n");
    assert_eq!(
        (r.verdict, r.tests[0].score),
        (Verdict::WrongAnswer, Some(0.5)),
        "{r:#?}"
    );
    let r = run(&j, &p, "python", "print(42)\n");
    assert_eq!(r.verdict, Verdict::Accepted);
    let r = run(&j, &p, "python", "print(-1)\n");
    assert_eq!(
        (r.verdict, r.tests[0].score),
        (Verdict::WrongAnswer, Some(0.0))
    );
}

#[test]
fn broken_problems_get_errors_and_the_rest_of_the_batch_is_judged() {
    let j = Arc::new(judge());
    let good_c = Arc::new(sum_problem("c"));
    let c_code = "#include <stdio.h>\nint main(void) { long a, b; scanf(\"%ld %ld\", &a, &b); printf(\"%ld\\n\", a + b); return 0; }\n";

    let mut unknown = sum_problem("c");
    unknown.id = "unknown-comparator".into();
    unknown.tests[1] = TestCase::Stdio {
        stdin: "1 1\n".into(),
        expected_stdout: "2\n".into(),
        comparator: Comparator::Preset {
            name: "fuzzy".into(),
            atol: None,
        },
    };
    let mut bad_checker = sum_problem("python");
    bad_checker.id = "checker-does-not-compile".into();
    bad_checker.tests[0] = TestCase::Stdio {
        stdin: "1 2\n".into(),
        expected_stdout: "3\n".into(),
        comparator: Comparator::Checker {
            language: "cpp".into(),
            source: "int main( { return 0; }\n".into(),
        },
    };
    // An APPS file with a malformed input_output: the loader reports that record and
    // keeps the others, which are judged with the rest.
    let apps = crucible_datasets::load_lenient(
        crucible_datasets::DatasetKind::Apps,
        &repo("datasets/apps-sample.jsonl"),
    )
    .expect("file readable");
    assert_eq!(apps.errors.len(), 1);
    let apps_error = apps.errors[0].to_string();
    assert!(
        apps_error.contains("apps-sample.jsonl:5: field \"input_output\": is not valid JSON"),
        "{apps_error}"
    );

    let mut jobs = vec![
        Job {
            problem: good_c.clone(),
            submission: submission(&good_c, "c", c_code),
        },
        Job {
            problem: Arc::new(unknown.clone()),
            submission: submission(&unknown, "c", c_code),
        },
        Job {
            problem: Arc::new(bad_checker.clone()),
            submission: submission(&bad_checker, "python", "print(3)\n"),
        },
    ];
    for p in &apps.problems {
        let p = Arc::new(p.clone());
        let code = p.reference.clone().unwrap();
        jobs.push(Job {
            submission: submission(&p, "python", &code),
            problem: p,
        });
    }
    let n = jobs.len();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut results: Vec<(usize, Result<Report, JudgeError>)> = rt.block_on(
        Scheduler::new(j.clone(), 2)
            .judge_all(jobs)
            .collect::<Vec<_>>(),
    );
    results.sort_by_key(|(i, _)| *i);
    assert_eq!(results.len(), n);
    let err = |i: usize| match &results[i].1 {
        Err(e) => e.to_string(),
        Ok(r) => panic!("job {i} should fail: {r:#?}"),
    };
    let e1 = err(1);
    assert!(
        e1.contains("unknown-comparator") && e1.contains("fuzzy") && e1.contains("livecodebench"),
        "{e1}"
    );
    let e2 = err(2);
    assert!(
        e2.contains("checker-does-not-compile") && e2.contains("does not compile"),
        "{e2}"
    );
    for (i, r) in results
        .iter()
        .enumerate()
        .filter(|(i, _)| ![1, 2].contains(i))
    {
        let r = r.1.as_ref().expect("judged");
        assert_eq!(r.verdict, Verdict::Accepted, "job {i}: {r:#?}");
    }
}

#[test]
fn call_tests_need_a_harnessed_language() {
    let j = judge();
    let p = problem(
        "calls",
        "c",
        vec![TestCase::Call {
            function: "f".into(),
            args: vec![],
            expected: serde_json::json!(1),
            atol: None,
        }],
    );
    let e = j
        .judge(&p, &submission(&p, "c", "int main(void) { return 0; }\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("call test") && e.contains("only stdio"), "{e}");
}

#[test]
fn a_missing_toolchain_makes_its_language_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let js = std::fs::read_to_string(repo("sandboxes/javascript.toml")).unwrap();
    let js = js.replace(
        "interpreters = [\"/usr/bin/node\", \"node\"]",
        "interpreters = [\"/nonexistent/node\", \"no-such-node-binary\"]",
    );
    std::fs::write(dir.path().join("javascript.toml"), js).unwrap();
    let profiles = Profiles::load(Some(dir.path())).unwrap();
    let e = profiles.get("javascript").unwrap_err().to_string();
    assert!(
        e.contains("\"javascript\" is unavailable") && e.contains("no interpreter found"),
        "{e}"
    );
    assert!(profiles.get("c").is_ok(), "other languages stay usable");
}

#[test]
fn run_source_compiles_and_runs_once() {
    let j = judge();
    let r = j
        .run_source(
            "rust",
            "fn main() { println!(\"hi\"); }\n",
            b"",
            Some(Limits::default().with_time_ms(2_000)),
        )
        .unwrap();
    assert_eq!(
        (r.status, r.stdout.as_str()),
        (crucible_core::RunStatus::Ok, "hi\n")
    );
    let r = j
        .run_source("cpp", "int main() { return }\n", b"", None)
        .unwrap();
    assert_eq!(r.status, crucible_core::RunStatus::CompileError);
    assert!(r.stderr.contains("error"), "{r:#?}");
}
