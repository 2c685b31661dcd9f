//! What the server executes work on: a [`crucible_judge::Judge`] in production, anything
//! else in tests (a backend that fails on purpose, or blocks until told to go on).

use crucible_core::{Limits, Problem, Report, RunReport, Submission};
use crucible_judge::{Judge, JudgeError};

/// A language as the server advertises it.
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageInfo {
    /// Profile name.
    pub name: String,
    /// Human-readable name.
    pub display: String,
    /// Toolchain version, if known.
    pub version: Option<String>,
    /// Default limits of a run.
    pub limits: Limits,
}

/// Judges submissions and runs programs. Methods block (they run sandboxes); the server
/// calls them on tokio's blocking pool, at most `workers` at once.
pub trait Backend: Send + Sync + 'static {
    /// Judges one submission against `problem`, whose `limits` are already the effective,
    /// clamped limits.
    fn judge(&self, problem: &Problem, submission: &Submission) -> Result<Report, JudgeError>;

    /// Runs `source` once with `stdin` under `limits`.
    fn run_source(
        &self,
        language: &str,
        source: &str,
        stdin: &[u8],
        limits: Limits,
    ) -> Result<RunReport, JudgeError>;

    /// The usable languages.
    fn languages(&self) -> Vec<LanguageInfo>;
}

impl Backend for Judge {
    fn judge(&self, problem: &Problem, submission: &Submission) -> Result<Report, JudgeError> {
        Judge::judge(self, problem, submission)
    }

    fn run_source(
        &self,
        language: &str,
        source: &str,
        stdin: &[u8],
        limits: Limits,
    ) -> Result<RunReport, JudgeError> {
        Judge::run_source(self, language, source, stdin, Some(limits))
    }

    fn languages(&self) -> Vec<LanguageInfo> {
        self.profiles()
            .iter()
            .map(|p| LanguageInfo {
                name: p.name.clone(),
                display: p.display.clone(),
                version: p.version.clone(),
                limits: p.limits,
            })
            .collect()
    }
}
