use serde::{Deserialize, Serialize};
use std::fmt;

/// The outcome of judging one test, or a whole submission.
///
/// `SandboxError` is the harness failing, not the program: it never becomes a reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    WrongAnswer,
    RuntimeError,
    TimeLimitExceeded,
    MemoryLimitExceeded,
    OutputLimitExceeded,
    CompileError,
    SandboxError,
}

impl Verdict {
    /// Every verdict, in a stable order (used for summaries).
    pub const ALL: [Verdict; 8] = [
        Verdict::Accepted,
        Verdict::WrongAnswer,
        Verdict::RuntimeError,
        Verdict::TimeLimitExceeded,
        Verdict::MemoryLimitExceeded,
        Verdict::OutputLimitExceeded,
        Verdict::CompileError,
        Verdict::SandboxError,
    ];

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::WrongAnswer => "wrong_answer",
            Verdict::RuntimeError => "runtime_error",
            Verdict::TimeLimitExceeded => "time_limit_exceeded",
            Verdict::MemoryLimitExceeded => "memory_limit_exceeded",
            Verdict::OutputLimitExceeded => "output_limit_exceeded",
            Verdict::CompileError => "compile_error",
            Verdict::SandboxError => "sandbox_error",
        }
    }

    /// The customary short code (AC, WA, RE, TLE, MLE, OLE, CE, SE).
    pub fn short(self) -> &'static str {
        match self {
            Verdict::Accepted => "AC",
            Verdict::WrongAnswer => "WA",
            Verdict::RuntimeError => "RE",
            Verdict::TimeLimitExceeded => "TLE",
            Verdict::MemoryLimitExceeded => "MLE",
            Verdict::OutputLimitExceeded => "OLE",
            Verdict::CompileError => "CE",
            Verdict::SandboxError => "SE",
        }
    }

    /// True only for `Accepted`.
    pub fn is_accepted(self) -> bool {
        self == Verdict::Accepted
    }

    /// Combines per-test verdicts into a submission verdict: a sandbox error anywhere wins
    /// (the run cannot be trusted), otherwise the first failing test decides. Returns
    /// `Accepted` for an all-pass list and `SandboxError` for an empty one, since a
    /// submission with no tests executed proves nothing.
    pub fn aggregate<I: IntoIterator<Item = Verdict>>(verdicts: I) -> Verdict {
        let mut first_failure = None;
        let mut any = false;
        for v in verdicts {
            any = true;
            if v == Verdict::SandboxError {
                return Verdict::SandboxError;
            }
            if first_failure.is_none() && v != Verdict::Accepted {
                first_failure = Some(v);
            }
        }
        match (any, first_failure) {
            (false, _) => Verdict::SandboxError,
            (true, Some(v)) => v,
            (true, None) => Verdict::Accepted,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a single sandboxed run ended, before any comparison with expected output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Exited with status 0 within every limit.
    Ok,
    /// Non-zero exit or killed by a signal that no limit explains.
    RuntimeError,
    TimeLimitExceeded,
    MemoryLimitExceeded,
    OutputLimitExceeded,
    CompileError,
    /// The sandbox itself failed; the program's behaviour is unknown.
    SandboxError,
}

impl RunStatus {
    /// The verdict a run with this status gets when there is nothing left to compare.
    pub fn verdict(self) -> Verdict {
        match self {
            RunStatus::Ok => Verdict::Accepted,
            RunStatus::RuntimeError => Verdict::RuntimeError,
            RunStatus::TimeLimitExceeded => Verdict::TimeLimitExceeded,
            RunStatus::MemoryLimitExceeded => Verdict::MemoryLimitExceeded,
            RunStatus::OutputLimitExceeded => Verdict::OutputLimitExceeded,
            RunStatus::CompileError => Verdict::CompileError,
            RunStatus::SandboxError => Verdict::SandboxError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_rules() {
        use Verdict::*;
        assert_eq!(Verdict::aggregate([Accepted, Accepted]), Accepted);
        assert_eq!(
            Verdict::aggregate([Accepted, WrongAnswer, RuntimeError]),
            WrongAnswer
        );
        assert_eq!(
            Verdict::aggregate([WrongAnswer, SandboxError]),
            SandboxError
        );
        assert_eq!(Verdict::aggregate([]), SandboxError);
    }

    #[test]
    fn serde_names() {
        for v in Verdict::ALL {
            let s = serde_json::to_string(&v).unwrap();
            assert_eq!(s, format!("\"{}\"", v.as_str()));
            let back: Verdict = serde_json::from_str(&s).unwrap();
            assert_eq!(back, v);
        }
    }
}
