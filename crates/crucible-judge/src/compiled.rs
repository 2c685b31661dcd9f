//! Judging a submission in a compiled language (a profile with `[compile]`): compile
//! once through the cache, then run every stdio test against the one artifact.

use crate::checker::Comparisons;
use crate::compile::{self, CompileCache, CompileOutcome, Lookup, Toolchain};
use crate::judge::{run_failure_message, stderr_has_memory_error};
use crate::{JudgeError, LanguageProfile};
use crucible_core::{
    CompileInfo, Limits, Problem, Report, RewardSpec, RunReport, RunStatus, Submission, TestCase,
    TestOutcome, Verdict,
};
use crucible_sandbox::ProcessSandbox;

/// Longest failure message kept in a test outcome.
const MESSAGE_MAX: usize = 600;

/// What judging a compiled submission needs from the judge.
pub(crate) struct Context<'a> {
    pub sandbox: &'a ProcessSandbox,
    pub cache: &'a CompileCache,
    pub reward: &'a RewardSpec,
}

/// Judges `submission` (in `profile`, whose compile step is `tc`) against `problem`'s
/// stdio tests, each compared as `comparisons` says.
pub(crate) fn judge(
    ctx: &Context,
    profile: &LanguageProfile,
    tc: &Toolchain,
    problem: &Problem,
    submission: &Submission,
    limits: Limits,
    comparisons: &Comparisons,
) -> Result<Report, JudgeError> {
    if let Some((i, t)) = problem
        .tests
        .iter()
        .enumerate()
        .find(|(_, t)| !matches!(t, TestCase::Stdio { .. }))
    {
        return Err(JudgeError::Unsupported {
            task_id: problem.id.clone(),
            test: i,
            kind: t.kind(),
            language: profile.name.clone(),
        });
    }
    // Starts as a sandbox error; the verdict and counts are filled in once tests run.
    let mut report = Report::sandbox_error(
        submission.task_id.clone(),
        submission.sample,
        submission.language.clone(),
        "",
    );
    report.message = None;
    if let Some(message) = &comparisons.sandbox_error {
        report.message = Some(message.clone());
        return Ok(report);
    }
    let program = problem.program(&submission.completion);
    let lookup = compile::compile(ctx.sandbox, ctx.cache, &profile.name, tc, &program);
    let mut info = compile_info(&lookup);
    info.checker_compiles = comparisons.checker_compiles;
    let artifact = match &lookup.compiled.outcome {
        CompileOutcome::SandboxError { message } => {
            report.message = Some(message.clone());
            report.compile = Some(info);
            return Ok(report);
        }
        CompileOutcome::Error { message, .. } => {
            report.verdict = Verdict::CompileError;
            report.message = Some(message.clone());
            report.total = problem.tests.len();
            report.tests = (0..problem.tests.len())
                .map(|i| TestOutcome {
                    id: i.to_string(),
                    verdict: Verdict::CompileError,
                    message: None,
                    cpu_ms: 0,
                    wall_ms: 0,
                    memory_kb: 0,
                    score: None,
                })
                .collect();
            report.compile = Some(info);
            report.reward = ctx.reward.reward(&report);
            return Ok(report);
        }
        CompileOutcome::Ok { artifact } => artifact.clone(),
    };

    for (i, test) in problem.tests.iter().enumerate() {
        let TestCase::Stdio {
            stdin,
            expected_stdout,
            ..
        } = test
        else {
            continue;
        };
        let run = run_program(
            ctx.sandbox,
            profile,
            tc,
            artifact.as_deref(),
            &program,
            stdin.as_bytes(),
            limits,
        );
        info.runs += 1;
        let judged = match run_verdict(profile, &run) {
            Some((verdict, message)) => crate::checker::Judged {
                verdict,
                message: Some(message),
                score: None,
            },
            None => comparisons.judge_output(ctx.sandbox, i, stdin, &run.stdout, expected_stdout),
        };
        report.tests.push(TestOutcome {
            id: i.to_string(),
            verdict: judged.verdict,
            message: judged.message.map(|m| compile::clip_head(&m, MESSAGE_MAX)),
            cpu_ms: run.cpu_ms,
            wall_ms: run.wall_ms,
            memory_kb: run.memory_kb,
            score: judged.score,
        });
        report.cpu_ms += run.cpu_ms;
        report.wall_ms += run.wall_ms;
        report.memory_kb = report.memory_kb.max(run.memory_kb);
        if let Some(f) = run.fuel_used {
            report.fuel_used = Some(report.fuel_used.unwrap_or(0) + f);
        }
        if judged.verdict == Verdict::SandboxError && report.message.is_none() {
            report.message = report.tests.last().and_then(|t| t.message.clone());
        }
    }
    report.total = report.tests.len();
    report.passed = report
        .tests
        .iter()
        .filter(|t| t.verdict.is_accepted())
        .count();
    report.verdict = Verdict::aggregate(report.tests.iter().map(|t| t.verdict));
    report.compile = Some(info);
    report.reward = ctx.reward.reward(&report);
    Ok(report)
}

/// The report's compile section for one lookup.
fn compile_info(lookup: &Lookup) -> CompileInfo {
    let c = &lookup.compiled;
    CompileInfo {
        cached: lookup.cached,
        compiles: u32::from(!lookup.cached),
        runs: 0,
        key: c.key.clone(),
        cpu_ms: if lookup.cached { 0 } else { c.cpu_ms },
        wall_ms: if lookup.cached { 0 } else { c.wall_ms },
        checker_compiles: 0,
    }
}

/// Runs the compiled program (or, for a checked-only language, the source) once.
fn run_program(
    sandbox: &ProcessSandbox,
    profile: &LanguageProfile,
    tc: &Toolchain,
    artifact: Option<&std::path::Path>,
    program: &str,
    stdin: &[u8],
    limits: Limits,
) -> RunReport {
    let mut mounts = profile.mounts.clone();
    let (file, files) = match artifact {
        // The artifact is bind-mounted read-only from the cache: nothing is copied.
        Some(a) => {
            mounts.push(a.to_path_buf());
            (a.to_string_lossy().into_owned(), Vec::new())
        }
        None => (
            format!("/work/{}", tc.source),
            vec![(tc.source.clone(), program.as_bytes().to_vec())],
        ),
    };
    let spec = compile::run_spec(
        profile.argv(&file, &[]),
        profile.env.clone(),
        files,
        stdin.to_vec(),
        limits,
        mounts,
    );
    crate::wasm::dispatch(sandbox, profile, &spec)
}

/// The verdict of a run before any comparison, or None when it exited cleanly and its
/// output must be compared.
fn run_verdict(profile: &LanguageProfile, run: &RunReport) -> Option<(Verdict, String)> {
    match run.status {
        RunStatus::Ok => None,
        RunStatus::RuntimeError if stderr_has_memory_error(profile, &run.stderr) => {
            Some((Verdict::MemoryLimitExceeded, run_failure_message(run)))
        }
        s => Some((s.verdict(), run_failure_message(run))),
    }
}

/// Compiles and runs `source` once with `stdin` (for `crucible run`): a compile failure
/// is a run with status compile_error and the compiler's message as stderr.
pub(crate) fn run_source(
    sandbox: &ProcessSandbox,
    cache: &CompileCache,
    profile: &LanguageProfile,
    tc: &Toolchain,
    source: &str,
    stdin: &[u8],
    limits: Limits,
) -> RunReport {
    let lookup = compile::compile(sandbox, cache, &profile.name, tc, source);
    match &lookup.compiled.outcome {
        CompileOutcome::SandboxError { message } => RunReport::sandbox_error(message.clone()),
        CompileOutcome::Error { message, .. } => {
            let mut run = RunReport::sandbox_error(message.clone());
            run.status = RunStatus::CompileError;
            run.stderr = message.clone();
            run.cpu_ms = lookup.compiled.cpu_ms;
            run.wall_ms = lookup.compiled.wall_ms;
            run
        }
        CompileOutcome::Ok { artifact } => {
            let mut run = run_program(
                sandbox,
                profile,
                tc,
                artifact.as_deref(),
                source,
                stdin,
                limits,
            );
            if run.status == RunStatus::RuntimeError
                && stderr_has_memory_error(profile, &run.stderr)
            {
                run.status = RunStatus::MemoryLimitExceeded;
            }
            run
        }
    }
}
