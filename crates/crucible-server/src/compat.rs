//! SandboxFusion-compatible endpoints, following its documented request and response
//! schema, so verl's `sandbox_fusion` reward and scripts written for SandboxFusion work
//! unchanged:
//!
//! - `POST /run_code`: `{code, language, stdin, compile_timeout, run_timeout,
//!   memory_limit_MB, files, fetch_files}` in; `{status: Success|Failed|SandboxError,
//!   message, compile_result, run_result: {status: Finished|TimeLimitExceeded|Error,
//!   execution_time, return_code, stdout, stderr}, executor_pod_name, files}` out.
//! - `POST /submit`: `{dataset, id, completion, config}` in; `{id, accepted,
//!   extracted_code, full_code, test_code, tests: [{passed, exec_info, test_info}],
//!   extracted_type, extra}` out.
//!
//! Like SandboxFusion (a pydantic model), unknown request fields are ignored. Where
//! Crucible knows more than the schema carries (memory or output limit, the verdict), it
//! adds a `crucible` object that SandboxFusion clients ignore.

use crate::app::{check_declared_length, json, read_body, CLAMPED_HEADER};
use crate::error::ApiError;
use crate::limits::{parse_body, LimitsPatch, MAX_LIMIT_VALUE};
use crate::state::{AppState, Prepared};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use crucible_core::{Problem, Report, RunReport, RunStatus, Submission, TestOutcome, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

fn ten() -> f64 {
    10.0
}

/// SandboxFusion's RunCodeRequest.
#[derive(Debug, Deserialize)]
struct RunCodeRequest {
    code: String,
    language: String,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default = "ten")]
    compile_timeout: f64,
    #[serde(default = "ten")]
    run_timeout: f64,
    /// -1 (SandboxFusion's default) means the server's default.
    #[serde(default, rename = "memory_limit_MB")]
    memory_limit_mb: Option<f64>,
    #[serde(default)]
    files: BTreeMap<String, Option<String>>,
    #[serde(default)]
    fetch_files: Vec<String>,
}

/// SandboxFusion's CommandRunResult.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct CommandRunResult {
    /// `Finished`, `TimeLimitExceeded` or `Error`.
    status: &'static str,
    execution_time: Option<f64>,
    return_code: Option<i32>,
    stdout: Option<String>,
    stderr: Option<String>,
}

/// What Crucible adds to a RunCodeResponse.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct CrucibleRun {
    /// Crucible's run status (`ok`, `memory_limit_exceeded`, ...) or test verdict.
    status: String,
    cpu_ms: u64,
    wall_ms: u64,
    memory_kb: u64,
    stdout_truncated: bool,
    stderr_truncated: bool,
}

/// SandboxFusion's RunCodeResponse.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct RunCodeResponse {
    /// `Success`, `Failed` or `SandboxError`.
    status: &'static str,
    message: String,
    compile_result: Option<CommandRunResult>,
    run_result: Option<CommandRunResult>,
    executor_pod_name: Option<String>,
    files: BTreeMap<String, String>,
    crucible: CrucibleRun,
}

/// A timeout in seconds as milliseconds, or 422 on `field`.
fn timeout_ms(field: &str, secs: f64) -> Result<u64, ApiError> {
    if !secs.is_finite() || secs <= 0.0 {
        return Err(ApiError::invalid(
            field,
            format!("must be a positive number of seconds, got {secs}"),
        ));
    }
    let ms = (secs * 1000.0).ceil();
    if ms > MAX_LIMIT_VALUE as f64 {
        return Err(ApiError::invalid(
            field,
            format!("{secs} s is out of range"),
        ));
    }
    Ok(ms as u64)
}

/// The wall-clock limit that goes with a CPU limit: twice it plus a second, so a loaded
/// machine does not turn a correct program into a timeout.
fn wall_for(cpu_ms: u64) -> u64 {
    cpu_ms.saturating_mul(2).saturating_add(1_000)
}

fn run_patch(run_timeout: f64, memory_mb: Option<f64>) -> Result<LimitsPatch, ApiError> {
    let cpu = timeout_ms("run_timeout", run_timeout)?;
    let memory_bytes = match memory_mb {
        None => None,
        Some(-1.0) => None,
        Some(m) if !m.is_finite() || m <= 0.0 => {
            return Err(ApiError::invalid(
                "memory_limit_MB",
                format!("must be a positive number of MiB, or -1 for the default; got {m}"),
            ))
        }
        Some(m) => {
            let bytes = (m * (1u64 << 20) as f64).ceil();
            if bytes > MAX_LIMIT_VALUE as f64 {
                return Err(ApiError::invalid(
                    "memory_limit_MB",
                    format!("{m} MiB is out of range"),
                ));
            }
            Some(bytes as u64)
        }
    };
    Ok(LimitsPatch {
        cpu_time_ms: Some(cpu),
        wall_time_ms: Some(wall_for(cpu)),
        memory_bytes,
        ..LimitsPatch::default()
    })
}

/// Maps SandboxFusion language names onto Crucible profiles.
fn profile_name(language: &str) -> &str {
    match language {
        "python3" => "python",
        other => other,
    }
}

fn secs(ms: u64) -> Option<f64> {
    Some(ms as f64 / 1000.0)
}

fn return_code(run: &RunReport) -> Option<i32> {
    // Python's subprocess convention, which SandboxFusion's runners report: -N for a
    // process killed by signal N.
    run.exit_code.or(run.signal.map(|s| -s))
}

fn run_response(run: &RunReport, pod: Option<String>) -> RunCodeResponse {
    let crucible = CrucibleRun {
        status: serde_json::to_value(run.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        cpu_ms: run.cpu_ms,
        wall_ms: run.wall_ms,
        memory_kb: run.memory_kb,
        stdout_truncated: run.stdout_truncated,
        stderr_truncated: run.stderr_truncated,
    };
    let finished = |status: &'static str| CommandRunResult {
        status,
        execution_time: secs(run.wall_ms),
        return_code: return_code(run),
        stdout: Some(run.stdout.clone()),
        stderr: Some(run.stderr.clone()),
    };
    let (status, compile_result, run_result) = match run.status {
        RunStatus::Ok => ("Success", None, Some(finished("Finished"))),
        RunStatus::RuntimeError
        | RunStatus::MemoryLimitExceeded
        | RunStatus::OutputLimitExceeded => ("Failed", None, Some(finished("Finished"))),
        RunStatus::TimeLimitExceeded => ("Failed", None, Some(finished("TimeLimitExceeded"))),
        // The program never ran: report the failure as the compile step's, which is
        // where SandboxFusion's clients (verl) look for compile errors.
        RunStatus::CompileError => (
            "Failed",
            Some(CommandRunResult {
                status: "Finished",
                execution_time: secs(run.wall_ms),
                return_code: Some(1),
                stdout: Some(run.stdout.clone()),
                stderr: Some(run.stderr.clone()),
            }),
            None,
        ),
        RunStatus::SandboxError => ("SandboxError", None, Some(finished("Error"))),
    };
    RunCodeResponse {
        status,
        message: run.message.clone().unwrap_or_default(),
        compile_result,
        run_result,
        executor_pod_name: pod,
        files: BTreeMap::new(),
        crucible,
    }
}

/// `POST /run_code`.
pub(crate) async fn run_code(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    check_declared_length(&st, req.headers())?;
    let mut tickets = st.admit(1, "body")?;
    let bytes = read_body(&st, req.into_body()).await?;
    let r: RunCodeRequest = parse_body(&bytes)?;
    drop(bytes);
    let language = profile_name(&r.language).to_string();
    let info = st.language(&language, "language")?;
    timeout_ms("compile_timeout", r.compile_timeout)?;
    let patch = run_patch(r.run_timeout, r.memory_limit_mb)?;
    if let Some(name) = r.files.keys().next() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported",
            Some(&format!("files.{name}")),
            "extra files are not supported by this server yet; send the program alone",
        ));
    }
    if !r.fetch_files.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported",
            Some("fetch_files"),
            "fetching files after the run is not supported by this server yet",
        ));
    }
    let (limits, clamped) = st.effective_limits(info.limits, Some(&patch), "limits")?;
    let ticket = tickets.pop().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            "no ticket",
        )
    })?;
    let started = Instant::now();
    let lang = language.clone();
    let code = r.code;
    let stdin = r.stdin.unwrap_or_default();
    let run = match st
        .execute(ticket, move |b| {
            b.run_source(&lang, &code, stdin.as_bytes(), limits)
        })
        .await
    {
        Ok(Ok(run)) => run,
        Ok(Err(e)) => return Err(crate::state::judge_error(e)),
        Err(why) => RunReport::sandbox_error(why),
    };
    st.metrics
        .execution(&language, run.status.verdict(), started.elapsed());
    let mut resp = json(
        StatusCode::OK,
        &run_response(&run, st.config.pod_name.clone()),
    );
    if !clamped.is_empty() {
        // The patch was built from seconds, so name the request's own fields.
        let names: Vec<&str> = clamped
            .iter()
            .map(|f| match *f {
                "memory_bytes" => "memory_limit_MB",
                _ => "run_timeout",
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Ok(v) = HeaderValue::from_str(&names.join(",")) {
            resp.headers_mut().insert(CLAMPED_HEADER, v);
        }
    }
    Ok(resp)
}

/// SandboxFusion's TestConfig (the fields Crucible reads; others are ignored).
#[derive(Debug, Default, Deserialize)]
struct TestConfig {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    run_timeout: Option<f64>,
    #[serde(default)]
    compile_timeout: Option<f64>,
    #[serde(default)]
    custom_extract_logic: Option<String>,
    #[serde(default)]
    provided_data: Option<Value>,
}

/// SandboxFusion's SubmitRequest.
#[derive(Debug, Deserialize)]
struct SubmitRequest {
    dataset: String,
    id: Value,
    completion: String,
    #[serde(default)]
    config: TestConfig,
}

#[derive(Debug, Serialize)]
struct EvalTestCase {
    passed: bool,
    exec_info: RunCodeResponse,
    test_info: Value,
}

/// SandboxFusion's EvalResult.
#[derive(Debug, Serialize)]
struct EvalResult {
    id: Value,
    accepted: bool,
    extracted_code: String,
    full_code: Option<String>,
    test_code: Option<String>,
    tests: Vec<EvalTestCase>,
    extracted_type: Option<&'static str>,
    extra: Value,
}

/// The code in a model's answer: the first fenced block in `language` (or untagged, or
/// any), an unclosed fence's rest, or the whole text when there is no fence. Returns the
/// code and SandboxFusion's name for how it was found.
pub(crate) fn extract_code(text: &str, language: &str) -> (String, Option<&'static str>) {
    let mut blocks: Vec<(String, String, bool)> = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(tag)) => open = Some((tag.trim().to_lowercase(), Vec::new())),
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                if let Some((tag, lines)) = open.take() {
                    blocks.push((tag, lines.join("\n") + "\n", true));
                }
            }
            (Some((_, lines)), _) => lines.push(line),
            (None, None) => {}
        }
    }
    if let Some((tag, lines)) = open.take() {
        blocks.push((tag, lines.join("\n") + "\n", false));
    }
    if text.trim().is_empty() {
        return (String::new(), Some("empty"));
    }
    let lang = language.to_lowercase();
    let wanted = |tag: &str| tag == lang || (lang == "python" && matches!(tag, "py" | "python3"));
    let pick = blocks
        .iter()
        .find(|(t, _, _)| wanted(t))
        .or_else(|| blocks.iter().find(|(t, _, _)| t.is_empty()))
        .or_else(|| blocks.first());
    match pick {
        Some((_, code, true)) => (code.clone(), Some("fenced")),
        Some((_, code, false)) => (code.clone(), Some("incomplete_fenced")),
        None => (text.to_string(), None),
    }
}

fn test_exec(o: &TestOutcome, pod: Option<String>) -> RunCodeResponse {
    let message = o.message.clone().unwrap_or_default();
    let result = |status: &'static str, rc: Option<i32>| CommandRunResult {
        status,
        execution_time: secs(o.wall_ms),
        return_code: rc,
        stdout: None,
        stderr: Some(message.clone()),
    };
    let (status, compile_result, run_result) = match o.verdict {
        Verdict::Accepted | Verdict::WrongAnswer => {
            ("Success", None, Some(result("Finished", Some(0))))
        }
        Verdict::RuntimeError | Verdict::MemoryLimitExceeded | Verdict::OutputLimitExceeded => {
            ("Failed", None, Some(result("Finished", Some(1))))
        }
        Verdict::TimeLimitExceeded => ("Failed", None, Some(result("TimeLimitExceeded", None))),
        Verdict::CompileError => ("Failed", Some(result("Finished", Some(1))), None),
        Verdict::SandboxError => ("SandboxError", None, Some(result("Error", None))),
    };
    RunCodeResponse {
        status,
        message: if o.verdict == Verdict::SandboxError {
            message.clone()
        } else {
            String::new()
        },
        compile_result,
        run_result,
        executor_pod_name: pod,
        files: BTreeMap::new(),
        crucible: CrucibleRun {
            status: o.verdict.as_str().to_string(),
            cpu_ms: o.cpu_ms,
            wall_ms: o.wall_ms,
            memory_kb: o.memory_kb,
            stdout_truncated: false,
            stderr_truncated: false,
        },
    }
}

fn eval_result(
    id: Value,
    code: String,
    kind: Option<&'static str>,
    problem: &Problem,
    report: &Report,
    pod: Option<String>,
) -> EvalResult {
    let tests = report
        .tests
        .iter()
        .map(|o| EvalTestCase {
            passed: o.verdict.is_accepted(),
            exec_info: test_exec(o, pod.clone()),
            test_info: serde_json::json!({"id": o.id, "verdict": o.verdict, "message": o.message}),
        })
        .collect();
    EvalResult {
        id,
        accepted: report.verdict.is_accepted(),
        full_code: Some(problem.program(&code)),
        extracted_code: code,
        test_code: None,
        tests,
        extracted_type: kind,
        extra: serde_json::json!({ "crucible": report }),
    }
}

/// `POST /submit`: a completion for a problem of a dataset the server loaded (or, with
/// `config.provided_data`, a Crucible problem sent inline).
///
/// A sandbox failure is answered 503 rather than SandboxFusion's `accepted: false`: a
/// script that reads `accepted` as the reward would otherwise score an infrastructure
/// failure as a wrong program.
pub(crate) async fn submit(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    check_declared_length(&st, req.headers())?;
    let mut tickets = st.admit(1, "body")?;
    let bytes = read_body(&st, req.into_body()).await?;
    let r: SubmitRequest = parse_body(&bytes)?;
    drop(bytes);
    if r.config.custom_extract_logic.is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported",
            Some("config.custom_extract_logic"),
            "custom extraction code is not run by this server",
        ));
    }
    let id = match &r.id {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return Err(ApiError::invalid("id", "must be a string or an integer")),
    };
    let problem = match &r.config.provided_data {
        Some(data) => {
            let p: Problem = serde_json::from_value(data.clone()).map_err(|e| {
                ApiError::invalid(
                    "config.provided_data",
                    format!("not a Crucible problem: {e}"),
                )
            })?;
            Arc::new(p)
        }
        None => st.datasets.get(&r.dataset, &id, "dataset", "id")?,
    };
    let language = match &r.config.language {
        Some(l) => profile_name(l).to_string(),
        None => problem.language.clone(),
    };
    let info = st.language(&language, "config.language")?;
    if let Some(t) = r.config.compile_timeout {
        timeout_ms("config.compile_timeout", t)?;
    }
    let patch = match r.config.run_timeout {
        Some(t) => Some(run_patch(t, None).map_err(|e| ApiError {
            field: Some("config.run_timeout".into()),
            ..e
        })?),
        None => None,
    };
    let base = problem.limits.unwrap_or(info.limits);
    let (limits, clamped) = st.effective_limits(base, patch.as_ref(), "config")?;
    let (code, kind) = extract_code(&r.completion, &language);
    if code.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_code",
            Some("completion"),
            "no code found in the completion",
        ));
    }
    let mut judged = (*problem).clone();
    judged.limits = Some(limits);
    let prepared = Prepared {
        submission: Submission {
            task_id: problem.id.clone(),
            sample: 0,
            language,
            completion: code.clone(),
        },
        problem: Arc::new(judged),
        reward: crucible_core::RewardSpec::Binary,
        clamped,
    };
    let ticket = tickets.pop().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            "no ticket",
        )
    })?;
    let report = st.judge(ticket, prepared).await?;
    if report.verdict == Verdict::SandboxError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sandbox_error",
            None,
            format!(
                "the sandbox failed; the submission was not judged: {}",
                report.message.as_deref().unwrap_or("no detail")
            ),
        );
        e.retry_after = Some(1);
        return Err(e);
    }
    let result = eval_result(
        r.id,
        code,
        kind,
        &problem,
        &report,
        st.config.pod_name.clone(),
    );
    Ok(json(StatusCode::OK, &result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus, exit: Option<i32>, signal: Option<i32>) -> RunReport {
        RunReport {
            status,
            exit_code: exit,
            signal,
            stdout: "out".into(),
            stderr: "err".into(),
            stdout_truncated: false,
            stderr_truncated: false,
            cpu_ms: 12,
            wall_ms: 1500,
            memory_kb: 900,
            message: None,
            fuel_used: None,
        }
    }

    fn value(r: &RunCodeResponse) -> Value {
        serde_json::to_value(r).unwrap()
    }

    #[test]
    fn run_status_mapping_follows_the_schema() {
        let ok = value(&run_response(
            &run(RunStatus::Ok, Some(0), None),
            Some("pod-1".into()),
        ));
        assert_eq!(ok["status"], "Success");
        assert_eq!(ok["message"], "");
        assert_eq!(ok["compile_result"], Value::Null);
        assert_eq!(ok["run_result"]["status"], "Finished");
        assert_eq!(ok["run_result"]["return_code"], 0);
        assert_eq!(ok["run_result"]["execution_time"], 1.5);
        assert_eq!(ok["run_result"]["stdout"], "out");
        assert_eq!(ok["executor_pod_name"], "pod-1");
        assert_eq!(ok["files"], serde_json::json!({}));

        let re = value(&run_response(
            &run(RunStatus::RuntimeError, None, Some(11)),
            None,
        ));
        assert_eq!(re["status"], "Failed");
        assert_eq!(re["run_result"]["status"], "Finished");
        assert_eq!(re["run_result"]["return_code"], -11);

        let tle = value(&run_response(
            &run(RunStatus::TimeLimitExceeded, None, Some(9)),
            None,
        ));
        assert_eq!(tle["status"], "Failed");
        assert_eq!(tle["run_result"]["status"], "TimeLimitExceeded");

        let ce = value(&run_response(
            &run(RunStatus::CompileError, Some(97), None),
            None,
        ));
        assert_eq!(ce["status"], "Failed");
        assert_eq!(ce["run_result"], Value::Null);
        assert_eq!(ce["compile_result"]["status"], "Finished");
        assert_eq!(ce["compile_result"]["return_code"], 1);

        let mut se = run(RunStatus::SandboxError, None, None);
        se.message = Some("clone failed".into());
        let se = value(&run_response(&se, None));
        assert_eq!(se["status"], "SandboxError");
        assert_eq!(se["message"], "clone failed");
        assert_eq!(se["run_result"]["status"], "Error");

        let mle = value(&run_response(
            &run(RunStatus::MemoryLimitExceeded, None, Some(9)),
            None,
        ));
        assert_eq!(mle["status"], "Failed");
        assert_eq!(mle["crucible"]["status"], "memory_limit_exceeded");
    }

    #[test]
    fn timeouts_and_memory_are_checked() {
        assert_eq!(timeout_ms("run_timeout", 1.5).unwrap(), 1500);
        for bad in [0.0, -1.0, f64::INFINITY, 1e300] {
            let e = timeout_ms("run_timeout", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("run_timeout"), "{bad}");
        }
        let p = run_patch(2.0, Some(-1.0)).unwrap();
        assert_eq!(p.cpu_time_ms, Some(2000));
        assert_eq!(p.wall_time_ms, Some(5000));
        assert_eq!(p.memory_bytes, None);
        assert_eq!(
            run_patch(2.0, Some(64.0)).unwrap().memory_bytes,
            Some(64 << 20)
        );
        let e = run_patch(2.0, Some(-5.0)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("memory_limit_MB"));
    }

    #[test]
    fn code_extraction() {
        let (c, k) = extract_code(
            "Here:\n```python\nprint(1)\n```\nand\n```\nx\n```",
            "python",
        );
        assert_eq!((c.as_str(), k), ("print(1)\n", Some("fenced")));
        let (c, k) = extract_code("```cpp\nint x;\n```\n```py\nprint(2)\n```", "python");
        assert_eq!((c.as_str(), k), ("print(2)\n", Some("fenced")));
        let (c, k) = extract_code("```python\nprint(3)\n", "python");
        assert_eq!((c.as_str(), k), ("print(3)\n", Some("incomplete_fenced")));
        let (c, k) = extract_code("    return a + b\n", "python");
        assert_eq!((c.as_str(), k), ("    return a + b\n", None));
        assert_eq!(extract_code("  \n", "python").1, Some("empty"));
    }
}
