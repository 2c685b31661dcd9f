use crate::compare::json_matches;
use crate::compile::CompileCache;
use crate::host_check::{self, HostOutcome, HostPlan};
use crate::profile::{HarnessMode, HarnessRun, HARNESS_FILE, PYTHON_CHECKER, PYTHON_HARNESS};
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
use std::os::fd::OwnedFd;
use std::sync::{Arc, OnceLock};

/// The checker's script and the tests spec, in the checker's work dir (the program's
/// never holds either).
const CHECKER: &str = ".crucible_checker.py";
const SPEC: &str = ".crucible_tests.json";
/// The profile whose interpreter runs checkers, whatever language the program is in.
const CHECKER_PROFILE: &str = "python";
/// Room a checker gets over the program's limits: it waits for the program's answers,
/// then judges them.
const CHECKER_MARGIN_MS: u64 = 5_000;
/// The least memory a checker gets (a program's answers can be large).
const CHECKER_MEMORY: u64 = 512 << 20;
/// Most problems whose host plans are kept (then the cache starts again).
const HOST_PLANS_MAX: usize = 200_000;
/// Modules a checker's zygote imports before its first check.
const CHECKER_PRELOAD: &str = "ast,random";
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
    /// The checkers' fork server once started (None when it could not start).
    checkers: OnceLock<Option<ForkServer>>,
    /// Per harness spec (by hash): the plan the host judges it with alone, or None when
    /// it needs a checker; filled by [`Judge::prepare_problems`].
    host_plans: std::sync::Mutex<HashMap<[u8; 32], Option<Arc<HostPlan>>>>,
    /// Whether the host judges plain problems itself (see [`Judge::set_host_checks`]).
    host_checks: bool,
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
            checkers: OnceLock::new(),
            host_plans: std::sync::Mutex::new(HashMap::new()),
            host_checks: true,
        }
    }

    /// Whether languages whose profile asks for a fork server use one (the default), or
    /// every program runs in a fresh sandbox. Verdicts are the same either way.
    pub fn set_fork_server(&mut self, enabled: bool) {
        self.fork_enabled = enabled;
    }

    /// Whether problems whose tests are all plain asserts are judged on the host (the
    /// default; see `host_check`), or every submission's tests go through a checker
    /// process. Verdicts are the same either way.
    pub fn set_host_checks(&mut self, enabled: bool) {
        self.host_checks = enabled;
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

    /// Starts what judging `language` will need (its fork server, and the checkers'
    /// for a language whose call and assert tests a checker judges), so that the first
    /// submissions do not wait for interpreters to load.
    pub fn warm_up(&self, language: &str) {
        let Ok(profile) = self.profiles.get(language) else {
            return;
        };
        let python_harness = profile.fork_server
            || profile
                .wasm
                .as_ref()
                .is_some_and(|w| w.boot == Some(crate::wasm::Boot::Python));
        let checker = self
            .profiles
            .get(CHECKER_PROFILE)
            .ok()
            .filter(|_| profile.compile.is_none() && python_harness);
        // Both pools' interpreters load side by side.
        std::thread::scope(|s| {
            if let Some(checker) = checker {
                s.spawn(|| self.checker_server(checker));
            }
            self.fork_server_for(profile);
        });
    }

    fn fork_server_for(&self, profile: &LanguageProfile) -> Option<&ForkServer> {
        if !self.fork_enabled || !profile.fork_server || profile.wasm.is_some() {
            return None;
        }
        let cell = self.forks.get(&profile.name)?;
        cell.get_or_init(|| self.start_fork_server(profile, HARNESS_FILE, PYTHON_HARNESS, false))
            .as_ref()
    }

    /// The checkers' fork server, started on first use; None when fork servers are off
    /// or it could not start (then each checker runs in a fresh sandbox).
    fn checker_server(&self, profile: &LanguageProfile) -> Option<&ForkServer> {
        if !self.fork_enabled || !profile.fork_server {
            return None;
        }
        self.checkers
            .get_or_init(|| self.start_fork_server(profile, CHECKER, PYTHON_CHECKER, true))
            .as_ref()
    }

    /// A fork server of `profile`'s interpreter whose zygotes load `entry` (written as
    /// `name`), or None (logged) when it cannot start.
    fn start_fork_server(
        &self,
        profile: &LanguageProfile,
        name: &str,
        entry: &str,
        in_place: bool,
    ) -> Option<ForkServer> {
        // The profile's preloads are for programs, which fork from the zygote; a checker
        // runs in its zygote, so whatever it imports stays imported after its first
        // check. It preloads only what it and most tests' prompts use at once.
        let preload = if in_place {
            CHECKER_PRELOAD.to_string()
        } else {
            profile.preload.join(",")
        };
        let entry_path = format!("/work/{name}");
        let spec = ZygoteSpec {
            argv: profile.argv(
                &format!("/work/{ZYGOTE}"),
                &["--entry", &entry_path, "--preload", &preload],
            ),
            env: profile.env.clone(),
            mounts: profile.mounts.clone(),
            files: vec![
                (ZYGOTE.to_string(), PYTHON_ZYGOTE.as_bytes().to_vec()),
                (name.to_string(), entry.as_bytes().to_vec()),
            ],
            memory_bytes: ZYGOTE_MEMORY,
            slots: self.fork_slots,
            // As many as there are cores start at once, more on demand; one checker
            // (most problems' tests are judged on the host, see `host_check`).
            warm: if in_place {
                1
            } else {
                self.fork_slots
                    .min(std::thread::available_parallelism().map_or(1, |n| n.get()))
            },
            // The checker never runs submitted code, so it needs no child per run.
            in_place,
        };
        match ForkServer::with_sandbox(&self.sandbox, spec) {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::warn!(
                    language = %profile.name,
                    entry = name,
                    error = %e,
                    "no fork server; each run gets a fresh sandbox"
                );
                None
            }
        }
    }

    /// Runs the harness over a program: in the language's fork server when it has one,
    /// else in a fresh sandbox (process or wasm, as the profile says). The work dir holds
    /// the same files either way.
    fn run_harness(&self, profile: &LanguageProfile, run: HarnessRun<'_>) -> RunReport {
        let harness = format!("/work/{HARNESS_FILE}");
        if let Some(server) = self.fork_server_for(profile) {
            let req = ExecRequest {
                argv: vec![harness, run.mode.arg().to_string()],
                files: run.files(),
                prepare: Vec::new(),
                stdin: run.stdin.to_vec(),
                limits: run.limits,
            };
            return match run.channel {
                Some(c) => server.run_with_channel(&req, c),
                None => server.run(&req),
            };
        }
        if profile.wasm.is_some() {
            return crate::wasm::run_harness(profile, run);
        }
        let spec = RunSpec {
            argv: profile.argv(&harness, &[run.mode.arg()]),
            env: profile.env.clone(),
            files: run.files(),
            stdin: run.stdin.to_vec(),
            limits: run.limits,
            mounts: profile.mounts.clone(),
        };
        match run.channel {
            Some(c) => self.sandbox.run_with_channel(&spec, c),
            None => self.sandbox.run(&spec),
        }
    }

    /// Runs the checker for `spec` (the tests, as JSON) against the program on the
    /// other end of `channel`: in the checkers' fork server, else in a fresh sandbox.
    /// The checker always runs natively, whatever sandbox the program is in.
    fn run_checker(&self, spec: Vec<u8>, channel: Option<OwnedFd>, limits: Limits) -> RunReport {
        self.run_checker_with(&[], spec, channel, limits)
    }

    /// Runs `checker.py ARGS SPEC` (see harness/checker.py).
    fn run_checker_with(
        &self,
        args: &[&str],
        spec: Vec<u8>,
        channel: Option<OwnedFd>,
        limits: Limits,
    ) -> RunReport {
        let profile = match self.profiles.get(CHECKER_PROFILE) {
            Ok(p) => p,
            Err(e) => return RunReport::sandbox_error(format!("no checker interpreter: {e}")),
        };
        let checker = format!("/work/{CHECKER}");
        let spec_path = format!("/work/{SPEC}");
        let mut argv_args: Vec<&str> = args.to_vec();
        argv_args.push(&spec_path);
        if let Some(server) = self.checker_server(profile) {
            // The spec is the judge's own data: the checker's zygote parses and compiles
            // it (once per problem) before the check runs.
            let mut argv = vec![checker];
            argv.extend(argv_args.iter().map(|a| a.to_string()));
            let req = ExecRequest {
                argv,
                files: vec![(SPEC.to_string(), spec)],
                prepare: vec![SPEC.to_string()],
                stdin: Vec::new(),
                limits,
            };
            return match channel {
                Some(c) => server.run_with_channel(&req, c),
                None => server.run(&req),
            };
        }
        let run = RunSpec {
            argv: profile.argv(&checker, &argv_args),
            env: profile.env.clone(),
            files: vec![
                (CHECKER.to_string(), PYTHON_CHECKER.as_bytes().to_vec()),
                (SPEC.to_string(), spec),
            ],
            stdin: Vec::new(),
            limits,
            mounts: profile.mounts.clone(),
        };
        match channel {
            Some(c) => self.sandbox.run_with_channel(&run, c),
            None => self.sandbox.run(&run),
        }
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

        let indices = harnessed(problem);
        if !indices.is_empty() {
            let out = self.run_harnessed(profile, problem, &program, &indices, limits);
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
        let run = HarnessRun {
            mode: HarnessMode::Stdio,
            program,
            stdin,
            limits,
            channel: None,
        };
        self.run_harness(profile, run)
    }

    /// The host plan for `spec`: cached, or asked of the checker now (once per problem,
    /// so that the next submissions of a problem, as RL sends them, skip the checker).
    /// None when the problem needs a checker.
    fn host_plan(&self, spec: &str) -> Option<Arc<HostPlan>> {
        if !self.host_checks {
            return None;
        }
        let key = spec_key(spec);
        if let Some(plan) = self.lock_plans().get(&key) {
            return plan.clone();
        }
        self.describe(vec![(key, spec.to_string())]);
        self.lock_plans().get(&key).cloned().flatten()
    }

    fn lock_plans(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Option<Arc<HostPlan>>>> {
        self.host_plans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Has the checker describe `problems`' call and assert tests in one run, so that
    /// the host judges by itself every problem whose tests are all plain asserts of
    /// literal calls (see `host_check`). Without it each problem is described when its
    /// first submission comes. Returns how many of them the host judges alone.
    pub fn prepare_problems(&self, problems: &[Arc<Problem>]) -> usize {
        if !self.host_checks {
            return 0;
        }
        let mut specs = Vec::new();
        let mut keys = Vec::new();
        {
            let plans = self.lock_plans();
            let mut seen = std::collections::HashSet::new();
            for p in problems {
                let indices = harnessed(p);
                if indices.is_empty() {
                    continue;
                }
                let spec = harness_spec(p, &indices);
                let key = spec_key(&spec);
                keys.push(key);
                if !plans.contains_key(&key) && seen.insert(key) {
                    specs.push((key, spec));
                }
            }
        }
        self.describe(specs);
        let plans = self.lock_plans();
        keys.iter()
            .filter(|k| plans.get(*k).is_some_and(Option::is_some))
            .count()
    }

    /// Asks the checker to describe `specs` in one run and caches what it says. A
    /// checker that cannot describe them leaves them uncached (they go through checkers).
    fn describe(&self, specs: Vec<([u8; 32], String)>) {
        if specs.is_empty() {
            return;
        }
        let list = format!(
            "[{}]",
            specs
                .iter()
                .map(|(_, s)| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let limits = Limits {
            cpu_time_ms: 120_000,
            wall_time_ms: 240_000,
            memory_bytes: 2 << 30,
            output_bytes: 1 << 30,
            ..Limits::default()
        };
        let run = self.run_checker_with(&["--describe"], list.into_bytes(), None, limits);
        let described: Vec<Value> = match serde_json::from_str(&run.stdout) {
            Ok(Value::Array(list)) if list.len() == specs.len() => list,
            _ => {
                tracing::warn!(status = ?run.status, stderr = %tail(&run.stderr), "the checker could not describe problems; their submissions go through checkers");
                return;
            }
        };
        let mut plans = self.lock_plans();
        if plans.len() + specs.len() > HOST_PLANS_MAX {
            plans.clear();
        }
        for ((key, _), d) in specs.into_iter().zip(&described) {
            plans.insert(key, host_check::plan_from(d).map(Arc::new));
        }
    }

    /// Judges a submission's harnessed tests on the host (see `host_check`): the
    /// program serves the plan's calls and the host compares the answers.
    fn run_host_checked(
        &self,
        profile: &LanguageProfile,
        problem: &Problem,
        program: &str,
        indices: &[usize],
        limits: Limits,
        plan: &HostPlan,
    ) -> HarnessOutcome {
        let (program_end, host_end) = match std::os::unix::net::UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => return no_channel(profile, problem, indices, &e),
        };
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_millis(checker_limits(profile, limits).wall_time_ms);
        let run = HarnessRun {
            mode: HarnessMode::Serve,
            program,
            stdin: &[],
            limits,
            channel: Some(program_end.into()),
        };
        let (outcome, run) = std::thread::scope(|s| {
            let host = s.spawn(|| host_check::run(plan, host_end, deadline));
            let run = self.run_harness(profile, run);
            let outcome = host
                .join()
                .unwrap_or_else(|_| host_check::HostOutcome::Units(Vec::new()));
            (outcome, run)
        });
        let checked = host_checked(profile, plan, outcome);
        interpret_checker(profile, problem, indices, checked, None, run)
    }

    /// Runs every call and assert test of a submission: the program serves calls in its
    /// sandbox, and a checker in a sandbox of its own holds the tests and judges the
    /// answers. The two talk over a socketpair; the program never sees a test.
    fn run_harnessed(
        &self,
        profile: &LanguageProfile,
        problem: &Problem,
        program: &str,
        indices: &[usize],
        limits: Limits,
    ) -> HarnessOutcome {
        let spec = harness_spec(problem, indices);
        if let Some(plan) = self.host_plan(&spec) {
            return self.run_host_checked(profile, problem, program, indices, limits, &plan);
        }
        let (program_end, checker_end) = match std::os::unix::net::UnixStream::pair() {
            Ok((a, b)) => (OwnedFd::from(a), OwnedFd::from(b)),
            Err(e) => return no_channel(profile, problem, indices, &e),
        };
        let run = HarnessRun {
            mode: HarnessMode::Serve,
            program,
            stdin: &[],
            limits,
            channel: Some(program_end),
        };
        let checker_limits = checker_limits(profile, limits);
        let (checker, run) = std::thread::scope(|s| {
            let checker =
                s.spawn(|| self.run_checker(spec.into_bytes(), Some(checker_end), checker_limits));
            let run = self.run_harness(profile, run);
            let checker = checker
                .join()
                .unwrap_or_else(|_| RunReport::sandbox_error("the checker thread panicked"));
            (checker, run)
        });
        let checked = parse_checker(profile, &checker.stdout);
        interpret_checker(profile, problem, indices, checked, Some(&checker), run)
    }
}

/// The tests spec a checker gets for `problem`'s harnessed tests `indices` (JSON).
fn harness_spec(problem: &Problem, indices: &[usize]) -> String {
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
    serde_json::json!({
        "prefix": problem.completion_prefix, "setup": problem.test_setup, "tests": tests,
    })
    .to_string()
}

/// The indices of `problem`'s call and assert tests (those a checker judges).
fn harnessed(problem: &Problem) -> Vec<usize> {
    (0..problem.tests.len())
        .filter(|&i| !matches!(problem.tests[i], TestCase::Stdio { .. }))
        .collect()
}

/// The key of a spec in the host plans cache.
fn spec_key(spec: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(spec.as_bytes()).into()
}

/// The outcomes when no channel could be made: our machinery failed, a sandbox error.
fn no_channel(
    profile: &LanguageProfile,
    problem: &Problem,
    indices: &[usize],
    e: &std::io::Error,
) -> HarnessOutcome {
    let run = RunReport::sandbox_error(format!("socketpair: {e}"));
    let checked = Checked::default();
    interpret_checker(profile, problem, indices, checked, Some(&run.clone()), run)
}

/// The checker's limits: the program's, with room to wait for the program's answers
/// (which, for a wasm program, may take up to its wall-clock safety net) and then to
/// judge them.
fn checker_limits(profile: &LanguageProfile, limits: Limits) -> Limits {
    let mut wall = limits.wall_time_ms;
    if let Some(w) = &profile.wasm {
        let fuel_ms = w.fuel_for(&limits) / w.fuel_per_ms.max(1);
        wall = wall.max(fuel_ms.saturating_mul(10).saturating_add(5_000));
    }
    Limits {
        cpu_time_ms: limits.cpu_time_ms.saturating_add(CHECKER_MARGIN_MS),
        wall_time_ms: wall.saturating_add(CHECKER_MARGIN_MS),
        memory_bytes: limits.memory_bytes.max(CHECKER_MEMORY),
        output_bytes: limits.output_bytes.max(64 << 20),
        processes: limits.processes.max(4),
        ..limits
    }
}

struct HarnessOutcome {
    outcomes: Vec<(usize, Vec<TestOutcome>)>,
    message: Option<String>,
    run: RunReport,
}

/// A record the checker printed. Only the checker writes its stdout, and it never runs
/// submitted code, so these records are the verdicts' source of truth.
#[derive(Debug, Default, serde::Deserialize)]
struct Record {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    kind: Option<String>,
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

/// What a test gets when the program is gone before answering it: the program's own
/// outcome. A program that exits cleanly mid-tests (`sys.exit(0)` in a call,
/// `os._exit(0)`) has left tests unanswered, which is a runtime error.
fn program_outcome(profile: &LanguageProfile, run: &RunReport) -> (Verdict, String) {
    match run.status {
        RunStatus::Ok => (
            Verdict::RuntimeError,
            format!(
                "program exited (code {}) before all tests ran",
                run.exit_code.unwrap_or(0)
            ),
        ),
        RunStatus::RuntimeError if stderr_has_memory_error(profile, &run.stderr) => {
            (Verdict::MemoryLimitExceeded, run_failure_message(run))
        }
        s => (s.verdict(), run_failure_message(run)),
    }
}

/// What judging a submission's harnessed tests found, unit by unit: parsed from a
/// checker process's records, or built by the host (see `host_check`).
#[derive(Default)]
struct Checked {
    started: bool,
    done: bool,
    units: HashMap<String, usize>,
    results: HashMap<String, Record>,
    fatal: Option<(Verdict, String)>,
}

/// The fatal verdict of a program that did not load: it did not compile, or failed (or
/// ran out of memory) while loading.
fn fatal_verdict(profile: &LanguageProfile, kind: &str, exc: Option<&str>) -> Verdict {
    match kind {
        "compile_error" => Verdict::CompileError,
        _ if is_memory_error(profile, exc) => Verdict::MemoryLimitExceeded,
        _ => Verdict::RuntimeError,
    }
}

/// Reads a checker's records. Only the checker writes its stdout, and it never runs
/// submitted code.
fn parse_checker(profile: &LanguageProfile, stdout: &str) -> Checked {
    let mut c = Checked::default();
    for line in stdout.lines() {
        let Ok(rec) = serde_json::from_str::<Record>(line) else {
            continue;
        };
        match rec.event.as_deref() {
            Some("start") => c.started = true,
            Some("done") => c.done = true,
            Some("units") => {
                if let (Some(id), Some(count)) = (rec.id.clone(), rec.count) {
                    c.units.insert(id, count.max(1));
                }
            }
            Some("fatal") => {
                let kind = rec.kind.as_deref().unwrap_or("");
                let v = fatal_verdict(profile, kind, rec.exc.as_deref());
                c.fatal = Some((v, rec.message.unwrap_or_default()));
            }
            _ => {
                if let Some(id) = rec.id.clone() {
                    c.results.insert(id, rec);
                }
            }
        }
    }
    c
}

/// What the host found judging a plan itself, in the checker's terms.
fn host_checked(profile: &LanguageProfile, plan: &HostPlan, outcome: HostOutcome) -> Checked {
    let mut c = Checked {
        started: true,
        done: true,
        ..Checked::default()
    };
    for u in &plan.units {
        // A suite's units are TEST.K; their count is the plan's.
        if let Some((test, _)) = u.id().split_once('.') {
            *c.units.entry(test.to_string()).or_insert(0) += 1;
        }
    }
    match outcome {
        HostOutcome::Fatal { kind, message, exc } => {
            c.fatal = Some((fatal_verdict(profile, &kind, Some(&exc)), message))
        }
        HostOutcome::Units(results) => {
            for r in results {
                let rec = Record {
                    id: Some(r.id.clone()),
                    status: Some(r.status.to_string()),
                    message: r.message,
                    exc: r.exc,
                    cpu_ms: r.wall_ms,
                    wall_ms: r.wall_ms,
                    ..Record::default()
                };
                c.results.insert(r.id, rec);
            }
        }
    }
    c
}

/// Turns what was checked and the runs into outcomes per test. `checker` is the checker
/// process's run (None when the host judged). `sandbox_error` comes only from our own
/// machinery: the checker not starting, either sandbox failing.
fn interpret_checker(
    profile: &LanguageProfile,
    problem: &Problem,
    indices: &[usize],
    checked: Checked,
    checker: Option<&RunReport>,
    run: RunReport,
) -> HarnessOutcome {
    let Checked {
        started,
        done,
        units,
        results,
        fatal,
    } = checked;
    let checker_status = checker.map_or(RunStatus::Ok, |c| c.status);
    let lost = program_outcome(profile, &run);
    // What a test that got no record is given.
    let missing: (Verdict, String) = if let Some(f) = &fatal {
        f.clone()
    } else if !started || checker_status == RunStatus::SandboxError {
        let why = checker.map_or_else(String::new, |c| {
            c.message.clone().unwrap_or_else(|| run_failure_message(c))
        });
        (Verdict::SandboxError, format!("the checker failed: {why}"))
    } else if run.status == RunStatus::SandboxError {
        (
            Verdict::SandboxError,
            run.message.clone().unwrap_or_default(),
        )
    } else if !done && run.status != RunStatus::Ok {
        lost.clone()
    } else if let (false, Some(checker)) = (done, checker) {
        // The checker ran out of time or memory judging this program's answers (a huge
        // value, say): the program's doing, so its verdict.
        tracing::warn!(status = ?checker.status, stderr = %tail(&checker.stderr), "the checker stopped early");
        let v = match checker.status {
            RunStatus::TimeLimitExceeded | RunStatus::MemoryLimitExceeded => {
                checker.status.verdict()
            }
            _ => Verdict::RuntimeError,
        };
        (
            v,
            format!(
                "checking the program's answers failed: {}",
                run_failure_message(checker)
            ),
        )
    } else {
        (
            Verdict::SandboxError,
            "the checker finished without a result for this test".into(),
        )
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
            let (verdict, message, cpu_ms, wall_ms) = match results.get(&uid) {
                Some(rec) if fatal.is_none() && rec.status.as_deref() == Some("lost") => {
                    (lost.0, Some(lost.1.clone()), rec.cpu_ms, rec.wall_ms)
                }
                Some(rec) if fatal.is_none() => {
                    let (v, m) = record_verdict(profile, test, rec);
                    (v, m, rec.cpu_ms, rec.wall_ms)
                }
                _ => (missing.0, Some(missing.1.clone()), 0, 0),
            };
            list.push(TestOutcome {
                id: uid,
                verdict,
                message: message.map(|m| clip(&m)),
                cpu_ms,
                wall_ms,
                memory_kb: run.memory_kb,
                score: None,
            });
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

/// The verdict of one checker record.
fn record_verdict(
    profile: &LanguageProfile,
    test: &TestCase,
    rec: &Record,
) -> (Verdict, Option<String>) {
    match rec.status.as_deref() {
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
            Some(format!("checker record with status {other:?}")),
        ),
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
