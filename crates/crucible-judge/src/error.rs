use std::path::PathBuf;

/// Errors from setting up the judge or from a request it cannot act on.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("unknown language {name:?} (available: {available})")]
    UnknownLanguage { name: String, available: String },
    #[error("language profile {path}: {message}")]
    Profile { path: PathBuf, message: String },
    #[error("language {name:?} is unavailable: {reason}")]
    Unavailable { name: String, reason: String },
    #[error("empty program: the completion for {task_id} sample {sample} has no code")]
    EmptyCode { task_id: String, sample: usize },
    #[error("sandbox: {0}")]
    Sandbox(#[from] crucible_sandbox::SandboxError),
    /// A stdio test names a comparator preset that does not exist.
    #[error("problem {task_id}: test {test}: {source}")]
    UnknownComparator {
        task_id: String,
        test: usize,
        #[source]
        source: crate::presets::UnknownPreset,
    },
    /// A problem's checker program cannot be used (unknown language, or it does not
    /// compile): the problem is at fault, not the submission.
    #[error("problem {task_id}: checker: {message}")]
    Checker { task_id: String, message: String },
    /// The problem has tests the submission's language cannot run (call or assert
    /// tests need a harnessed language such as Python).
    #[error("problem {task_id}: test {test} is a {kind} test, which {language} cannot run (only stdio tests)")]
    Unsupported {
        task_id: String,
        test: usize,
        kind: &'static str,
        language: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
