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
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
