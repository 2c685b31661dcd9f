//! How each stdio test's output is judged: a built-in comparator, a parity preset, or a
//! testlib-style checker program run in the sandbox.
//!
//! [`prepare`] resolves every test's comparison before the submission runs, so a problem
//! with an unknown preset or a checker that does not compile is reported as that
//! problem's error without judging anything, and each distinct checker compiles once
//! (through the compile cache, shared by all tests and all submissions).

use crate::compile::{self, clip_head, CompileCache, CompileOutcome, Lookup};
use crate::presets::ParityPreset;
use crate::{compare_stdout, JudgeError, LanguageProfile, Profiles};
use crucible_core::{Comparator, Problem, RunReport, RunStatus, TestCase, Verdict};
use crucible_sandbox::ProcessSandbox;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// testlib's exit codes (0, accepted, is a run with status ok).
const EXIT_WRONG_ANSWER: i32 = 1;
const EXIT_PRESENTATION_ERROR: i32 = 2;
const EXIT_FAIL: i32 = 3;
const EXIT_POINTS: i32 = 7;
/// Longest checker comment kept in a test outcome.
const COMMENT_MAX: usize = 300;
/// Where a checker finds its three files.
const INPUT: &str = "input.txt";
const OUTPUT: &str = "output.txt";
const ANSWER: &str = "answer.txt";

/// A checker program ready to run: its profile and compiled artifact.
#[derive(Debug)]
pub(crate) struct Checker {
    profile: LanguageProfile,
    /// Host path of the compiled checker, for compiled languages.
    artifact: Option<PathBuf>,
    /// The checker's source, for languages whose checked source runs as it is.
    source: String,
    /// Keeps the cache entry (and so the artifact) alive while the checker is in use.
    _entry: Lookup,
}

/// One stdio test's comparison, resolved.
#[derive(Debug)]
enum Compare {
    Builtin(Comparator),
    Preset(ParityPreset, Option<f64>),
    Checker(Arc<Checker>),
}

/// The verdict on one test's output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Judged {
    pub verdict: Verdict,
    pub message: Option<String>,
    /// A partial score a checker printed.
    pub score: Option<f64>,
}

impl Judged {
    fn from(result: Result<(), String>) -> Judged {
        match result {
            Ok(()) => Judged {
                verdict: Verdict::Accepted,
                message: None,
                score: None,
            },
            Err(why) => Judged {
                verdict: Verdict::WrongAnswer,
                message: Some(why),
                score: None,
            },
        }
    }
}

/// The resolved comparisons of a problem's stdio tests, by test index.
#[derive(Debug, Default)]
pub(crate) struct Comparisons {
    per_test: HashMap<usize, Compare>,
    /// Compiler runs for checkers this preparation caused (0 when all were cached).
    pub checker_compiles: u32,
    /// Set when compiling a checker hit a sandbox failure: nothing can be judged.
    pub sandbox_error: Option<String>,
}

/// Resolves the comparison of every stdio test of `problem`, compiling its checkers.
/// Returns the problem's error for an unknown preset or a checker that cannot be used.
pub(crate) fn prepare(
    sandbox: &ProcessSandbox,
    cache: &CompileCache,
    profiles: &Profiles,
    problem: &Problem,
) -> Result<Comparisons, JudgeError> {
    let mut out = Comparisons::default();
    let mut checkers: HashMap<(&str, &str), Arc<Checker>> = HashMap::new();
    for (i, test) in problem.tests.iter().enumerate() {
        let TestCase::Stdio { comparator, .. } = test else {
            continue;
        };
        let compare = match comparator {
            Comparator::Preset { name, atol } => {
                let preset = name.parse::<ParityPreset>().map_err(|source| {
                    JudgeError::UnknownComparator {
                        task_id: problem.id.clone(),
                        test: i,
                        source,
                    }
                })?;
                Compare::Preset(preset, *atol)
            }
            Comparator::Checker { language, source } => {
                if let Some(c) = checkers.get(&(language.as_str(), source.as_str())) {
                    Compare::Checker(c.clone())
                } else {
                    let checker =
                        match build_checker(sandbox, cache, profiles, problem, language, source)? {
                            Ok(c) => c,
                            Err(message) => {
                                out.sandbox_error = Some(message);
                                return Ok(out);
                            }
                        };
                    if !checker._entry.cached {
                        out.checker_compiles += 1;
                    }
                    let checker = Arc::new(checker);
                    checkers.insert((language, source), checker.clone());
                    Compare::Checker(checker)
                }
            }
            builtin => Compare::Builtin(builtin.clone()),
        };
        out.per_test.insert(i, compare);
    }
    Ok(out)
}

/// Compiles one checker. The outer error is the problem's fault; the inner one a
/// sandbox failure.
fn build_checker(
    sandbox: &ProcessSandbox,
    cache: &CompileCache,
    profiles: &Profiles,
    problem: &Problem,
    language: &str,
    source: &str,
) -> Result<Result<Checker, String>, JudgeError> {
    let fail = |message: String| JudgeError::Checker {
        task_id: problem.id.clone(),
        message,
    };
    let profile = profiles.get(language).map_err(|e| fail(e.to_string()))?;
    let Some(tc) = &profile.compile else {
        // An interpreted checker that dies of an exception exits with 1, which testlib
        // reads as "wrong answer": only languages with a compile step are safe.
        return Err(fail(format!(
            "checkers must be in a compiled language (c, cpp, rust, javascript), not {language}"
        )));
    };
    if source.trim().is_empty() {
        return Err(fail("the checker's source is empty".into()));
    }
    let lookup = compile::compile(sandbox, cache, &profile.name, tc, source);
    let artifact = match &lookup.compiled.outcome {
        CompileOutcome::Ok { artifact } => artifact.clone(),
        CompileOutcome::Error { message, .. } => {
            return Err(fail(format!("does not compile: {message}")))
        }
        CompileOutcome::SandboxError { message } => {
            return Ok(Err(format!("compiling the checker: {message}")))
        }
    };
    Ok(Ok(Checker {
        profile: profile.clone(),
        artifact,
        source: source.to_string(),
        _entry: lookup,
    }))
}

impl Comparisons {
    /// Judges test `index`'s output `actual` against `expected` (with the test's input,
    /// for checkers).
    pub(crate) fn judge_output(
        &self,
        sandbox: &ProcessSandbox,
        index: usize,
        input: &str,
        actual: &str,
        expected: &str,
    ) -> Judged {
        match self.per_test.get(&index) {
            Some(Compare::Builtin(c)) => Judged::from(compare_stdout(c, actual, expected)),
            Some(Compare::Preset(p, atol)) => Judged::from(p.compare(actual, expected, *atol)),
            Some(Compare::Checker(c)) => run_checker(sandbox, c, input, actual, expected),
            None => Judged {
                verdict: Verdict::SandboxError,
                message: Some(format!("internal: test {index} has no prepared comparison")),
                score: None,
            },
        }
    }
}

/// Runs a checker on one test and reads its verdict from the exit code.
fn run_checker(
    sandbox: &ProcessSandbox,
    checker: &Checker,
    input: &str,
    actual: &str,
    expected: &str,
) -> Judged {
    let profile = &checker.profile;
    let mut files = vec![
        (INPUT.to_string(), input.as_bytes().to_vec()),
        (OUTPUT.to_string(), actual.as_bytes().to_vec()),
        (ANSWER.to_string(), expected.as_bytes().to_vec()),
    ];
    let mut mounts = profile.mounts.clone();
    let program = match &checker.artifact {
        Some(a) => {
            mounts.push(a.clone());
            a.to_string_lossy().into_owned()
        }
        None => {
            let name = profile
                .compile
                .as_ref()
                .map_or("checker", |t| t.source.as_str())
                .to_string();
            files.push((name.clone(), checker.source.as_bytes().to_vec()));
            format!("/work/{name}")
        }
    };
    let args = [INPUT, OUTPUT, ANSWER].map(|f| format!("/work/{f}"));
    let argv = profile.argv(&program, &args.each_ref().map(String::as_str));
    let mut limits = profile.limits;
    // The three files live in the work dir's tmpfs: make room for them.
    let data = (input.len() + actual.len() + expected.len()) as u64;
    limits.work_dir_bytes = limits
        .work_dir_bytes
        .max(data.saturating_mul(2) + (1 << 20));
    let spec = compile::run_spec(argv, profile.env.clone(), files, Vec::new(), limits, mounts);
    let run = crate::wasm::dispatch(sandbox, profile, &spec);
    interpret_checker(&run)
}

/// testlib's convention: 0 accepted, 1 wrong answer, 2 presentation error, 3 checker
/// failure, 7 partial points. Anything else (a crash, a limit) is the checker failing;
/// since the jury's program is at fault, not the submission, that is a sandbox_error
/// (no reward) rather than a verdict against the program.
fn interpret_checker(run: &RunReport) -> Judged {
    let comment = comment(run);
    let score = score(run);
    let sandbox_error = |why: String| Judged {
        verdict: Verdict::SandboxError,
        message: Some(match &comment {
            Some(c) => format!("{why}: {c}"),
            None => why,
        }),
        score: None,
    };
    match (run.status, run.exit_code) {
        (RunStatus::Ok, _) => Judged {
            verdict: Verdict::Accepted,
            message: None,
            score,
        },
        (RunStatus::RuntimeError, Some(EXIT_WRONG_ANSWER)) => Judged {
            verdict: Verdict::WrongAnswer,
            message: Some(comment.unwrap_or_else(|| "wrong answer (checker)".into())),
            score: score.or(Some(0.0)),
        },
        (RunStatus::RuntimeError, Some(EXIT_PRESENTATION_ERROR)) => Judged {
            verdict: Verdict::WrongAnswer,
            message: Some(format!(
                "presentation error{}",
                comment.map(|c| format!(": {c}")).unwrap_or_default()
            )),
            score: score.or(Some(0.0)),
        },
        (RunStatus::RuntimeError, Some(EXIT_POINTS)) => match score {
            Some(s) => Judged {
                verdict: if s >= 1.0 {
                    Verdict::Accepted
                } else {
                    Verdict::WrongAnswer
                },
                message: comment.or_else(|| Some(format!("partial score {s}"))),
                score: Some(s),
            },
            None => sandbox_error("checker exited with 7 (points) without printing a score".into()),
        },
        (RunStatus::RuntimeError, Some(EXIT_FAIL)) => {
            sandbox_error("the checker failed (testlib FAIL)".into())
        }
        (RunStatus::SandboxError, _) => sandbox_error(format!(
            "checker run: {}",
            run.message.as_deref().unwrap_or("sandbox error")
        )),
        (status, code) => sandbox_error(format!(
            "the checker ended with {status:?} (exit {code:?}, signal {:?})",
            run.signal
        )),
    }
}

/// The checker's first non-empty line of output (testlib writes to stderr).
fn comment(run: &RunReport) -> Option<String> {
    run.stderr
        .lines()
        .chain(run.stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| clip_head(l, COMMENT_MAX))
}

/// A score the checker printed: a line `points X` or `score X` on stdout or stderr, or
/// stdout that is one number. Only values in [0, 1] count.
fn score(run: &RunReport) -> Option<f64> {
    let tagged = run.stdout.lines().chain(run.stderr.lines()).find_map(|l| {
        let mut words = l.split_whitespace();
        match words.next()?.to_ascii_lowercase().as_str() {
            "points" | "score" => words.next()?.parse::<f64>().ok(),
            _ => None,
        }
    });
    let bare = || run.stdout.trim().parse::<f64>().ok();
    tagged
        .or_else(bare)
        .filter(|s| s.is_finite() && (0.0..=1.0).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus, code: Option<i32>, stdout: &str, stderr: &str) -> RunReport {
        let mut r = RunReport::sandbox_error("");
        r.status = status;
        r.exit_code = code;
        r.stdout = stdout.into();
        r.stderr = stderr.into();
        r.message = None;
        r
    }

    #[test]
    fn testlib_exit_codes() {
        let ok = interpret_checker(&run(RunStatus::Ok, Some(0), "", "ok 3 numbers"));
        assert_eq!(ok.verdict, Verdict::Accepted);
        let wa = interpret_checker(&run(
            RunStatus::RuntimeError,
            Some(1),
            "",
            "wrong answer sum is 7, expected 8",
        ));
        assert_eq!(wa.verdict, Verdict::WrongAnswer);
        assert_eq!(
            wa.message.as_deref(),
            Some("wrong answer sum is 7, expected 8")
        );
        let pe = interpret_checker(&run(RunStatus::RuntimeError, Some(2), "", "no number"));
        assert_eq!(pe.verdict, Verdict::WrongAnswer);
        assert!(pe.message.unwrap().starts_with("presentation error"));
        let fail = interpret_checker(&run(
            RunStatus::RuntimeError,
            Some(3),
            "",
            "bad answer file",
        ));
        assert_eq!(fail.verdict, Verdict::SandboxError);
        let crash = interpret_checker(&run(RunStatus::RuntimeError, None, "", ""));
        assert_eq!(crash.verdict, Verdict::SandboxError);
    }

    #[test]
    fn partial_scores() {
        let p = interpret_checker(&run(RunStatus::RuntimeError, Some(7), "points 0.25\n", ""));
        assert_eq!((p.verdict, p.score), (Verdict::WrongAnswer, Some(0.25)));
        let full = interpret_checker(&run(RunStatus::RuntimeError, Some(7), "", "score 1"));
        assert_eq!((full.verdict, full.score), (Verdict::Accepted, Some(1.0)));
        let bare = interpret_checker(&run(RunStatus::Ok, Some(0), "0.5\n", ""));
        assert_eq!((bare.verdict, bare.score), (Verdict::Accepted, Some(0.5)));
        let none = interpret_checker(&run(RunStatus::RuntimeError, Some(7), "", "nothing"));
        assert_eq!(none.verdict, Verdict::SandboxError);
        let out_of_range = interpret_checker(&run(RunStatus::Ok, Some(0), "points 40", ""));
        assert_eq!(out_of_range.score, None);
    }
}
