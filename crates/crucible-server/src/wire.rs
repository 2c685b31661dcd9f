//! The JSON shapes of the native API, shared by the server and the client.

use crate::limits::LimitsPatch;
use crucible_core::{Limits, Problem, Report, RewardSpec};
use serde::{Deserialize, Serialize};

/// One submission to judge (`POST /v1/judge`, and each item of a batch).
///
/// The problem is either inline (`problem`) or one the server loaded at start-up
/// (`dataset` + `task_id`, see `crucible serve --dataset`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeRequest {
    /// The problem, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// Name of a dataset the server loaded (with `task_id`), instead of `problem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Id of the problem within `dataset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Language profile; the problem's language when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The completion (joined to the problem's `completion_prefix`).
    pub completion: String,
    /// Sample number, echoed in the report.
    #[serde(default)]
    pub sample: usize,
    /// Limits to change for this submission; each is clamped to the server's maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsPatch>,
    /// How the report becomes a reward; the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<RewardSpec>,
}

impl JudgeRequest {
    /// A request for `completion` against an inline `problem`, in the problem's language.
    pub fn inline(problem: Problem, completion: impl Into<String>) -> JudgeRequest {
        JudgeRequest {
            problem: Some(problem),
            dataset: None,
            task_id: None,
            language: None,
            completion: completion.into(),
            sample: 0,
            limits: None,
            reward: None,
        }
    }
}

/// Many submissions at once (`POST /v1/judge/batch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The submissions; each answer line carries its index in this list.
    pub submissions: Vec<JudgeRequest>,
}

/// One line of a batch answer: the report of submission `index`, or why it was not
/// judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchLine {
    /// Index of the submission in the request.
    pub index: usize,
    /// The report, when the submission was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// Why the submission was not judged (an unknown language, empty code, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// What went wrong with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Machine-readable kind: `malformed_json`, `invalid_field`, `unknown_language`,
    /// `unknown_task`, `empty_code`, `body_too_large`, `queue_full`, `unauthorized`, ...
    pub code: String,
    /// The field at fault as a path (`limits.cpu_time_ms`, `submissions[2].language`),
    /// `body` for the body as a whole, absent when no field is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A sentence for a person.
    pub message: String,
}

/// The body of every error answer. `detail` repeats the error in the shape FastAPI
/// (and so SandboxFusion) uses for validation errors, so clients written for either read
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
    /// `[{"loc": ["body", ...path], "msg": ..., "type": ...}]`.
    #[serde(default)]
    pub detail: Vec<serde_json::Value>,
}

/// A language the server can judge (`GET /v1/languages`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageEntry {
    /// Profile name, as used in requests.
    pub name: String,
    /// Human-readable name and version.
    pub display: String,
    /// Toolchain version, when the profile probes one.
    #[serde(default)]
    pub version: Option<String>,
    /// Limits a submission gets when neither it nor its problem says otherwise (already
    /// clamped to the server's maxima).
    pub default_limits: Limits,
}

/// The answer of `GET /v1/languages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguagesResponse {
    /// Usable languages, sorted by name.
    pub languages: Vec<LanguageEntry>,
    /// The largest limits a request may get; larger asks are clamped to these.
    pub max_limits: Limits,
}

/// The answer of `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or `draining` once shutdown has begun (answered with 503 so that load
    /// balancers stop sending work).
    pub status: String,
    /// Server version.
    pub version: String,
    /// Judgements that may run at once.
    pub workers: usize,
    /// Submissions that may wait or run at once; more are answered 429.
    pub capacity: usize,
    /// Submissions admitted and waiting for a worker.
    pub queue_depth: i64,
    /// Submissions being judged.
    pub in_flight: i64,
    /// Usable language names.
    pub languages: Vec<String>,
    /// Seconds since start.
    pub uptime_s: u64,
}
