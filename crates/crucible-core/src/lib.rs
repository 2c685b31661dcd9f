//! Crucible's vocabulary. Plain serde types with no I/O: every other crate speaks in these.
//!
//! The JSON schema of each type is documented in README.md ("Schema"); field names there
//! match the serde names here.

mod base64;
mod limits;
mod problem;
mod report;
mod reward;
mod verdict;

pub use base64::base64_decode;
pub use limits::Limits;
pub use problem::{Comparator, Problem, Submission, TestCase};
pub use report::{CompileInfo, Report, RunReport, TestOutcome};
pub use reward::{RewardSpec, VerdictValues};
pub use verdict::{RunStatus, Verdict};
