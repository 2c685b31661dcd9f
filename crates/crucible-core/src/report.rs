use crate::{RunStatus, Verdict};
use serde::{Deserialize, Serialize};

/// Exactly what happened in one sandboxed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub status: RunStatus,
    /// Exit code when the program exited normally.
    pub exit_code: Option<i32>,
    /// Signal number when the program was killed by one.
    pub signal: Option<i32>,
    /// Captured stdout, lossily decoded as UTF-8, at most `Limits::output_bytes`.
    pub stdout: String,
    pub stderr: String,
    /// True when output was cut at the cap.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// CPU time (user + system) of the whole process tree.
    pub cpu_ms: u64,
    pub wall_ms: u64,
    /// Peak memory of the process tree in KiB.
    pub memory_kb: u64,
    /// Why the sandbox failed, for `sandbox_error`; or which limit ended the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// WebAssembly instructions the run consumed (wasm backend only): the same program,
    /// input and budget give the same number on every run and every machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
}

impl RunReport {
    /// A report for a run that never happened because the sandbox failed.
    pub fn sandbox_error(message: impl Into<String>) -> RunReport {
        RunReport {
            status: RunStatus::SandboxError,
            exit_code: None,
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            cpu_ms: 0,
            wall_ms: 0,
            memory_kb: 0,
            message: Some(message.into()),
            fuel_used: None,
        }
    }
}

/// The verdict of one test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestOutcome {
    /// `"3"` for the fourth test; `"0.2"` for the third assert inside test 0's `check`.
    pub id: String,
    pub verdict: Verdict,
    /// Short reason for a failure: a diff summary, an exception line, the limit hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub cpu_ms: u64,
    pub wall_ms: u64,
    pub memory_kb: u64,
    /// A partial score in [0, 1] printed by a checker, when it printed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// How the program of a compiled-language submission was built: compiled once, then run
/// for every test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompileInfo {
    /// True when the artifact (or the compile error) came from the compile cache.
    pub cached: bool,
    /// How many times the compiler ran for this judgement: 0 on a cache hit, 1 on a miss,
    /// whatever the number of tests.
    pub compiles: u32,
    /// How many test runs used the one artifact.
    pub runs: usize,
    /// The cache key: SHA-256 (hex) of language, toolchain version, flags and source.
    pub key: String,
    /// CPU and wall time of the compiler run (0 on a cache hit).
    pub cpu_ms: u64,
    pub wall_ms: u64,
    /// Compiler runs for the problem's checker programs caused by this judgement.
    #[serde(default)]
    pub checker_compiles: u32,
}

/// The result of judging one submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub task_id: String,
    #[serde(default)]
    pub sample: usize,
    pub language: String,
    pub verdict: Verdict,
    /// From the RewardSpec; `null` when the verdict is sandbox_error.
    pub reward: Option<f64>,
    pub passed: usize,
    pub total: usize,
    pub tests: Vec<TestOutcome>,
    /// Sum over the runs of this submission.
    pub cpu_ms: u64,
    pub wall_ms: u64,
    /// Peak over the runs, KiB.
    pub memory_kb: u64,
    /// What went wrong, for sandbox_error and compile_error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Sum of the runs' fuel (wasm backend only; see [`RunReport::fuel_used`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// For compiled languages: whether the compile was a cache hit, and how often the
    /// compiler ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile: Option<CompileInfo>,
}

impl Report {
    /// A report for a submission whose judgement was lost to an infrastructure failure:
    /// verdict sandbox_error, no tests, no reward.
    pub fn sandbox_error(
        task_id: impl Into<String>,
        sample: usize,
        language: impl Into<String>,
        message: impl Into<String>,
    ) -> Report {
        Report {
            task_id: task_id.into(),
            sample,
            language: language.into(),
            verdict: Verdict::SandboxError,
            reward: None,
            passed: 0,
            total: 0,
            tests: Vec::new(),
            cpu_ms: 0,
            wall_ms: 0,
            memory_kb: 0,
            message: Some(message.into()),
            fuel_used: None,
            compile: None,
        }
    }

    /// Share of tests passed, in [0, 1]; 0 when there were no tests.
    pub fn pass_fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }
}
