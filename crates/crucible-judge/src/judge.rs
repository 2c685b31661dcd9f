use crate::compare::json_matches;
use crate::compile::CompileCache;
use crate::profile::PYTHON_HARNESS;
use crate::{JudgeError, LanguageProfile, Profiles};
use crucible_core::{
    Limits, Problem, Report, RewardSpec, RunReport, RunStatus, Submission, TestCase, TestOutcome,
    Verdict,
};
use crucible_sandbox::{
    ExecRequest, ForkServer, ProcessSandbox, RunSpec, ZygoteSpec, PYTHON_ZYGOTE,
};
use serde_json::Value;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};

const SOURCE: &str = "solution.py";
const HARNESS: &str = ".crucible_harness.py";
const SPEC: &str = ".crucible_tests.json";
/// The fork server's zygote script, in the zygote's own work dir.
const ZYGOTE: &str = ".crucible_zygote.py";
/// Memory limit of a zygote's own cgroup (the interpreter with its preloaded modules).
const ZYGOTE_MEMORY: u64 = 256 << 20;
/// Most zygotes a language's fork server starts (each on first demand), unless set.
const DEFAULT_FORK_SLOTS: usize = 64;
/// Exit code the harness uses when the program does not compile in stdio mode.
const STDIO_COMPILE_ERROR: i32 = 97;
/// Longest failure message kept in a test outcome.
const MESSAGE_MAX: usize = 600;

/// Settings that apply to every submission a judge sees.
#[derive(Debug, Clone, Default)]
pub struct JudgeOptions {
    /// How reports become rewards.
    pub reward: RewardSpec,
    /// When set, replaces the problem's and the profile's limits.
    pub limits: Option<Limits>,
}

/// One unit of work for the scheduler: a submission and its problem.
#[derive(Debug, Clone)]
pub struct Job {
    pub problem: Arc<Problem>,
    pub submission: Submission,
}

/// Runs submissions' tests in the sandbox and turns the runs into reports.
///
/// Languages whose profile says `fork_server = true` (Python) run through a
/// [`ForkServer`] by default: started on first use, with as many zygotes as runs at once
/// (up to [`Judge::set_fork_server_slots`]). Where a fork server cannot run (no root,
/// no cgroups), the judge warns once and runs each program in a fresh sandbox.
pub struct Judge {
    sandbox: ProcessSandbox,
    profiles: Profiles,
    options: JudgeOptions,
    compile_cache: CompileCache,
    fork_enabled: bool,
    fork_slots: usize,
    /// Per language: its fork server once started, for a profile with `fork_server =
    /// true` (None when it could not start).
    forks: HashMap<String, OnceLock<Option<ForkServer>>>,
}

impl Judge {
    /// A judge over `sandbox` with the languages in `profiles`.
    pub fn new(sandbox: ProcessSandbox, profiles: Profiles, options: JudgeOptions) -> Judge {
        // A cell per language, whether or not it uses a fork server: listing only those
        // that do would probe every toolchain now (see `Profiles`).
        let forks = profiles
            .declared_names()
            .map(|name| (name.to_string(), OnceLock::new()))
            .collect();
        Judge {
            sandbox,
            profiles,
            options,
            compile_cache: CompileCache::from_env(),
            fork_enabled: true,
            fork_slots: DEFAULT_FORK_SLOTS,
            forks,
        }
    }

    /// Whether languages whose profile asks for a fork server use one (the default), or
    /// every program runs in a fresh sandbox. Verdicts are the same either way.
    pub fn set_fork_server(&mut self, enabled: bool) {
        self.fork_enabled = enabled;
    }

    /// The most runs at once in one language's fork server (one zygote each, started on
    /// demand); more wait for a free zygote. Set it to the judgements run at once.
    pub fn set_fork_server_slots(&mut self, slots: usize) {
        self.fork_slots = slots.max(1);
    }

    /// The fork server `language` runs in, started on first use; None when the language
    /// does not use one, fork servers are off, or it could not start (then its programs
    /// run in fresh sandboxes).
    pub fn fork_server(&self, language: &str) -> Option<&ForkServer> {
        let profile = self.profiles.get(language).ok()?;
        self.fork_server_for(profile)
    }

    fn fork_server_for(&self, profile: &LanguageProfile) -> Option<&ForkServer> {
        if !self.fork_enabled || !profile.fork_server || profile.wasm.is_some() {
            return None;
        }
        let cell = self.forks.get(&profile.name)?;
        cell.get_or_init(|| {
            let preload = profile.preload.join(",");
            let harness = format!("/work/{HARNESS}");
            let spec = ZygoteSpec {
                argv: profile.argv(
                    &format!("/work/{ZYGOTE}"),
                    &["--entry", &harness, "--preload", &preload],
                ),
                env: profile.env.clone(),
                mounts: profile.mounts.clone(),
                files: vec![
                    (ZYGOTE.to_string(), PYTHON_ZYGOTE.as_bytes().to_vec()),
                    (HARNESS.to_string(), PYTHON_HARNESS.as_bytes().to_vec()),
                ],
                memory_bytes: ZYGOTE_MEMORY,
                slots: self.fork_slots,
                // As many as there are cores start at once; more on demand.
                warm: self
                    .fork_slots
                    .min(std::thread::available_parallelism().map_or(1, |n| n.get())),
            };
            match ForkServer::with_sandbox(&self.sandbox, spec) {
                Ok(server) => Some(server),
                Err(e) => {
                    tracing::warn!(
                        language = %profile.name,
                        error = %e,
                        "no fork server; each program runs in a fresh sandbox"
                    );
                    None
                }
            }
        })
        .as_ref()
    }

    /// Runs the harness with `args` over `files`: in the language's fork server when it
    /// has one, else in a fresh sandbox (process or wasm, as the profile says). The work
    /// dir holds the same files either way.
    fn execute(
        &self,
        profile: &LanguageProfile,
        args: &[&str],
        files: Vec<(String, Vec<u8>)>,
        stdin: &[u8],
        limits: Limits,
    ) -> RunReport {
        let harness = format!("/work/{HARNESS}");
        if let Some(server) = self.fork_server_for(profile) {
            let mut argv = vec![harness];
            argv.extend(args.iter().map(|a| a.to_string()));
            // The tests spec is the judge's own data: the zygote may parse and compile it.
            let prepare = files
                .iter()
                .filter(|(p, _)| p == SPEC)
                .map(|(p, _)| p.clone())
                .collect();
            return server.run(&ExecRequest {
                argv,
                files,
                prepare,
                stdin: stdin.to_vec(),
                limits,
            });
        }
        let spec = RunSpec {
            argv: profile.argv(&harness, args),
            env: profile.env.clone(),
            files,
            stdin: stdin.to_vec(),
            limits,
            mounts: profile.mounts.clone(),
        };
        crate::wasm::dispatch(&self.sandbox, profile, &spec)
    }

    /// The judge with `cache` as its compile cache (default: [`CompileCache::from_env`]).
    pub fn with_compile_cache(mut self, cache: CompileCache) -> Judge {
        self.compile_cache = cache;
        self
    }

    /// The compile cache (its counters say how often the compiler ran).
    pub fn compile_cache(&self) -> &CompileCache {
        &self.compile_cache
    }

    /// The language profiles this judge knows.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// The sandbox the judge runs programs in.
    pub fn sandbox(&self) -> &ProcessSandbox {
        &self.sandbox
    }

    /// Checks that a submission can be judged at all: a known language and some code.
    /// Returns the error to show the user otherwise.
    pub fn validate(&self, submission: &Submission) -> Result<(), JudgeError> {
        self.profiles.get(&submission.language)?;
        if submission.completion.trim().is_empty() {
            return Err(JudgeError::EmptyCode {
                task_id: submission.task_id.clone(),
                sample: submission.sample,
            });
        }
        Ok(())
    }

    /// The limits a run of `problem` in `profile` gets: the judge's override, else the
    /// problem's, else the profile's.
    fn limits(&self, problem: &Problem, profile: &LanguageProfile) -> Limits {
        self.options
            .limits
            .or(problem.limits)
            .unwrap_or(profile.limits)
    }

    /// Judges one submission (blocking). Returns its report, or an error when the
    /// submission cannot be judged (unknown language, empty code). Infrastructure failures
    /// during the runs are not errors: they give a report with verdict sandbox_error and
    /// no reward.
    pub fn judge(&self, problem: &Problem, submission: &Submission) -> Result<Report, JudgeError> {
        self.validate(submission)?;
        let profile = self.profiles.get(&submission.language)?;
        let limits = self.limits(problem, profile);
        // Every stdio test's comparison (preset, checker) is resolved first, so a broken
        // problem is reported before anything runs.
        let comparisons =
            crate::checker::prepare(&self.sandbox, &self.compile_cache, &self.profiles, problem)?;
        if let Some(tc) = &profile.compile {
            let ctx = crate::compiled::Context {
                sandbox: &self.sandbox,
                cache: &self.compile_cache,
                reward: &self.options.reward,
            };
            return crate::compiled::judge(
                &ctx,
                profile,
                tc,
                problem,
                submission,
                limits,
                &comparisons,
            );
        }
        if let Some(message) = comparisons.sandbox_error {
            return Ok(Report::sandbox_error(
                &submission.task_id,
                submission.sample,
                &submission.language,
                message,
            ));
        }
        let program = problem.program(&submission.completion);
        let mut runs: Vec<RunReport> = Vec::new();
        let mut per_test: Vec<Vec<TestOutcome>> = vec![Vec::new(); problem.tests.len()];
        let mut message = None;

        let harnessed: Vec<usize> = (0..problem.tests.len())
            .filter(|&i| !matches!(problem.tests[i], TestCase::Stdio { .. }))
            .collect();
        if !harnessed.is_empty() {
            let out = self.run_harnessed(profile, problem, &program, &harnessed, limits);
            for (i, outcomes) in out.outcomes {
                per_test[i] = outcomes;
            }
            message = out.message;
            runs.push(out.run);
        }
        for (i, test) in problem.tests.iter().enumerate() {
            if let TestCase::Stdio {
                stdin,
                expected_stdout,
                ..
            } = test
            {
                let run = self.run_stdio(profile, &program, stdin.as_bytes(), limits);
                let (verdict, msg, score) = match stdio_run_verdict(profile, &run) {
                    Some((v, m)) => (v, m, None),
                    None => {
                        let j = comparisons.judge_output(
                            &self.sandbox,
                            i,
                            stdin,
                            &run.stdout,
                            expected_stdout,
                        );
                        (j.verdict, j.message, j.score)
                    }
                };
                if verdict == Verdict::CompileError && message.is_none() {
                    message = msg.clone();
                }
                let mut o = outcome(i.to_string(), verdict, msg, &run);
                o.score = score;
                per_test[i].push(o);
                runs.push(run);
            }
        }

        let tests: Vec<TestOutcome> = per_test.into_iter().flatten().collect();
        let verdict = if tests.iter().any(|t| t.verdict == Verdict::CompileError) {
            Verdict::CompileError
        } else {
            Verdict::aggregate(tests.iter().map(|t| t.verdict))
        };
        if verdict == Verdict::SandboxError && message.is_none() {
            message = runs.iter().find_map(|r| r.message.clone()).or_else(|| {
                tests
                    .iter()
                    .find(|t| t.verdict == Verdict::SandboxError)
                    .and_then(|t| t.message.clone())
            });
        }
        let mut report = Report {
            task_id: submission.task_id.clone(),
            sample: submission.sample,
            language: submission.language.clone(),
            verdict,
            reward: None,
            passed: tests.iter().filter(|t| t.verdict.is_accepted()).count(),
            total: tests.len(),
            tests,
            cpu_ms: runs.iter().map(|r| r.cpu_ms).sum(),
            wall_ms: runs.iter().map(|r| r.wall_ms).sum(),
            memory_kb: runs.iter().map(|r| r.memory_kb).max().unwrap_or(0),
            message,
            fuel_used: runs.iter().filter_map(|r| r.fuel_used).reduce(|a, b| a + b),
            compile: None,
        };
        report.reward = self.options.reward.reward(&report);
        Ok(report)
    }

    /// Runs `source` once with `stdin` (for `crucible run`). Returns exactly what the
    /// sandbox saw, with a program that does not compile reported as compile_error.
    pub fn run_source(
        &self,
        language: &str,
        source: &str,
        stdin: &[u8],
        limits: Option<Limits>,
    ) -> Result<RunReport, JudgeError> {
        let profile = self.profiles.get(language)?;
        let limits = limits.or(self.options.limits).unwrap_or(profile.limits);
        if let Some(tc) = &profile.compile {
            return Ok(crate::compiled::run_source(
                &self.sandbox,
                &self.compile_cache,
                profile,
                tc,
                source,
                stdin,
                limits,
            ));
        }
        let mut run = self.run_stdio(profile, source, stdin, limits);
        if let Some((verdict, _)) = stdio_run_verdict(profile, &run) {
            run.status = match verdict {
                Verdict::CompileError => RunStatus::CompileError,
                Verdict::MemoryLimitExceeded => RunStatus::MemoryLimitExceeded,
                _ => run.status,
            };
        }
        Ok(run)
    }

    fn run_stdio(
        &self,
        profile: &LanguageProfile,
        program: &str,
        stdin: &[u8],
        limits: Limits,
    ) -> RunReport {
        let files = vec![
            (SOURCE.to_string(), program.as_bytes().to_vec()),
            (HARNESS.to_string(), PYTHON_HARNESS.as_bytes().to_vec()),
        ];
        self.execute(profile, &["stdio"], files, stdin, limits)
    }

    /// Runs every call and assert test of a submission in one sandboxed harness run.
    fn run_harnessed(
        &self,
        profile: &LanguageProfile,
        problem: &Problem,
        program: &str,
        indices: &[usize],
        limits: Limits,
    ) -> HarnessOutcome {
        let nonce = nonce();
        let tests: Vec<Value> = indices
            .iter()
            .map(|&i| match &problem.tests[i] {
                TestCase::Call { function, args, .. } => serde_json::json!({
                    "id": i.to_string(), "kind": "call", "function": function, "args": args,
                }),
                TestCase::Assert { code, entry_point } => serde_json::json!({
                    "id": i.to_string(), "kind": "assert", "code": code, "entry_point": entry_point,
                }),
                TestCase::Stdio { .. } => unreachable!("stdio tests are not harnessed"),
            })
            .collect();
        let spec_json = serde_json::json!({
            "nonce": nonce, "setup": problem.test_setup, "tests": tests,
        });
        let files = vec![
            (SOURCE.to_string(), program.as_bytes().to_vec()),
            (HARNESS.to_string(), PYTHON_HARNESS.as_bytes().to_vec()),
            (SPEC.to_string(), spec_json.to_string().into_bytes()),
        ];
        let spec_path = format!("/work/{SPEC}");
        let run = self.execute(profile, &["tests", &spec_path], files, &[], limits);
        interpret_harness(profile, problem, indices, &nonce, run)
    }
}

struct HarnessOutcome {
    outcomes: Vec<(usize, Vec<TestOutcome>)>,
    message: Option<String>,
    run: RunReport,
}

/// A record the harness printed, already checked to carry this run's nonce.
#[derive(Debug, Default, serde::Deserialize)]
struct Record {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    exc: Option<String>,
    #[serde(default)]
    count: Option<usize>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    cpu_ms: u64,
    #[serde(default)]
    wall_ms: u64,
}

fn interpret_harness(
    profile: &LanguageProfile,
    problem: &Problem,
    indices: &[usize],
    nonce: &str,
    run: RunReport,
) -> HarnessOutcome {
    let mut started = false;
    let mut done = false;
    let mut units: HashMap<String, usize> = HashMap::new();
    let mut results: HashMap<String, Record> = HashMap::new();
    let mut fatal: Option<(Verdict, String)> = None;
    for line in run.stdout.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if value.get("n").and_then(Value::as_str) != Some(nonce) {
            continue;
        }
        let Ok(rec) = serde_json::from_value::<Record>(value) else {
            continue;
        };
        match rec.event.as_deref() {
            Some("start") => started = true,
            Some("done") => done = true,
            Some("units") => {
                if let (Some(id), Some(count)) = (rec.id.clone(), rec.count) {
                    units.insert(id, count.max(1));
                }
            }
            Some("compile_error") => {
                fatal = Some((Verdict::CompileError, rec.message.unwrap_or_default()))
            }
            Some("program_error") => {
                let v = if is_memory_error(profile, rec.exc.as_deref()) {
                    Verdict::MemoryLimitExceeded
                } else {
                    Verdict::RuntimeError
                };
                fatal = Some((v, rec.message.unwrap_or_default()));
            }
            _ => {
                if let Some(id) = rec.id.clone() {
                    results.insert(id, rec);
                }
            }
        }
    }

    // What a test that left no record gets: the reason the run stopped short.
    let missing: (Verdict, String) = if let Some(f) = &fatal {
        f.clone()
    } else if run.status == RunStatus::SandboxError {
        (
            Verdict::SandboxError,
            run.message.clone().unwrap_or_default(),
        )
    } else if !started && run.status == RunStatus::RuntimeError {
        // Nothing submitted runs before "start": this is the harness failing.
        (
            Verdict::SandboxError,
            format!("harness did not start: {}", tail(&run.stderr)),
        )
    } else if run.status == RunStatus::Ok && !done {
        (
            Verdict::RuntimeError,
            format!(
                "program exited (code {}) before all tests ran",
                run.exit_code.unwrap_or(0)
            ),
        )
    } else if run.status == RunStatus::Ok {
        (
            Verdict::SandboxError,
            "harness finished without a result for this test".into(),
        )
    } else {
        let v = match run.status {
            RunStatus::RuntimeError if stderr_has_memory_error(profile, &run.stderr) => {
                Verdict::MemoryLimitExceeded
            }
            s => s.verdict(),
        };
        (v, run_failure_message(&run))
    };

    let mut outcomes = Vec::with_capacity(indices.len());
    for &i in indices {
        let id = i.to_string();
        let test = &problem.tests[i];
        let ids: Vec<String> = match test {
            TestCase::Assert {
                entry_point: Some(_),
                ..
            } => (0..units.get(&id).copied().unwrap_or(1))
                .map(|k| format!("{id}.{k}"))
                .collect(),
            _ => vec![id],
        };
        let mut list = Vec::with_capacity(ids.len());
        for uid in ids {
            let o = match results.get(&uid) {
                Some(rec) if fatal.is_none() => record_outcome(profile, test, uid, rec, &run),
                _ => TestOutcome {
                    id: uid,
                    verdict: missing.0,
                    message: Some(clip(&missing.1)),
                    cpu_ms: 0,
                    wall_ms: 0,
                    memory_kb: run.memory_kb,
                    score: None,
                },
            };
            list.push(o);
        }
        outcomes.push((i, list));
    }
    let message = match &fatal {
        Some((Verdict::CompileError, m)) => Some(clip(m)),
        _ => None,
    };
    HarnessOutcome {
        outcomes,
        message,
        run,
    }
}

fn record_outcome(
    profile: &LanguageProfile,
    test: &TestCase,
    id: String,
    rec: &Record,
    run: &RunReport,
) -> TestOutcome {
    let (verdict, message) = match rec.status.as_deref() {
        Some("pass") => match test {
            TestCase::Call { expected, atol, .. } => {
                let got = rec.value.clone().unwrap_or(Value::Null);
                if json_matches(&got, expected, *atol) {
                    (Verdict::Accepted, None)
                } else {
                    (
                        Verdict::WrongAnswer,
                        Some(format!("expected {expected}, got {got}")),
                    )
                }
            }
            _ => (Verdict::Accepted, None),
        },
        Some("fail") => (Verdict::WrongAnswer, rec.message.clone()),
        Some("error") if is_memory_error(profile, rec.exc.as_deref()) => {
            (Verdict::MemoryLimitExceeded, rec.message.clone())
        }
        Some("error") => (Verdict::RuntimeError, rec.message.clone()),
        other => (
            Verdict::SandboxError,
            Some(format!("harness record with status {other:?}")),
        ),
    };
    TestOutcome {
        id,
        verdict,
        message: message.map(|m| clip(&m)),
        cpu_ms: rec.cpu_ms,
        wall_ms: rec.wall_ms,
        memory_kb: run.memory_kb,
        score: None,
    }
}

/// The verdict a stdio run gets before any comparison, or None when it ran cleanly and
/// its output must be compared.
fn stdio_run_verdict(
    profile: &LanguageProfile,
    run: &RunReport,
) -> Option<(Verdict, Option<String>)> {
    match run.status {
        RunStatus::Ok => None,
        RunStatus::RuntimeError
            if run.exit_code == Some(STDIO_COMPILE_ERROR) && run.stderr.contains("Error") =>
        {
            Some((Verdict::CompileError, Some(clip(&tail(&run.stderr)))))
        }
        RunStatus::RuntimeError if stderr_has_memory_error(profile, &run.stderr) => {
            Some((Verdict::MemoryLimitExceeded, Some(run_failure_message(run))))
        }
        s => Some((s.verdict(), Some(run_failure_message(run)))),
    }
}

fn is_memory_error(profile: &LanguageProfile, exc: Option<&str>) -> bool {
    exc.is_some_and(|e| profile.memory_errors.iter().any(|m| m == e))
}

/// True when the last lines of stderr report that the runtime ran out of memory (a
/// Python `MemoryError`, V8's heap limit followed by its stack).
pub(crate) fn stderr_has_memory_error(profile: &LanguageProfile, stderr: &str) -> bool {
    stderr.lines().rev().take(8).any(|l| {
        profile
            .memory_errors
            .iter()
            .any(|m| l.trim_start().starts_with(m.as_str()))
    })
}

/// Why a run failed, for a test outcome's message: the status with its measurement, then
/// the last line of stderr.
pub(crate) fn run_failure_message(run: &RunReport) -> String {
    let why = match run.status {
        RunStatus::TimeLimitExceeded => format!(
            "time limit exceeded (cpu {} ms, wall {} ms)",
            run.cpu_ms, run.wall_ms
        ),
        RunStatus::MemoryLimitExceeded => {
            format!("memory limit exceeded (peak {} KiB)", run.memory_kb)
        }
        RunStatus::OutputLimitExceeded => "output limit exceeded".to_string(),
        RunStatus::SandboxError => run
            .message
            .clone()
            .unwrap_or_else(|| "sandbox error".into()),
        _ => match (run.exit_code, run.signal) {
            (_, Some(sig)) => format!("killed by signal {sig}"),
            (Some(code), _) => format!("exit code {code}"),
            _ => "failed".into(),
        },
    };
    let err = tail(&run.stderr);
    if err.is_empty() {
        why
    } else {
        format!("{why}: {err}")
    }
}

/// The last non-empty line of `s` (an exception's summary, usually).
fn tail(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

fn clip(s: &str) -> String {
    if s.len() <= MESSAGE_MAX {
        return s.to_string();
    }
    let mut end = MESSAGE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn outcome(id: String, verdict: Verdict, message: Option<String>, run: &RunReport) -> TestOutcome {
    TestOutcome {
        id,
        verdict,
        message,
        cpu_ms: run.cpu_ms,
        wall_ms: run.wall_ms,
        memory_kb: run.memory_kb,
        score: None,
    }
}

/// 128 random bits as hex, from the standard library's per-process random hash keys.
fn nonce() -> String {
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(a);
    format!("{a:016x}{:016x}", h.finish())
}
