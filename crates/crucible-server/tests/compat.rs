//! SandboxFusion compatibility, written from its documented schema:
//!
//! RunCodeRequest {code, language, compile_timeout = 10, run_timeout = 10,
//! memory_limit_MB = -1, stdin?, files: {path: base64}, fetch_files: [path]} ->
//! RunCodeResponse {status: Success|Failed|SandboxError, message, compile_result?,
//! run_result?: {status: Finished|Error|TimeLimitExceeded, execution_time?, return_code?,
//! stdout?, stderr?}, executor_pod_name?, files: {}}.
//!
//! SubmitRequest {dataset, id: int|str, completion, config: TestConfig} -> EvalResult
//! {id, accepted, extracted_code, full_code?, test_code?, tests: [{passed, exec_info:
//! RunCodeResponse, test_info?}], extracted_type?, extra?}.

mod common;

use common::*;
use crucible_core::{Problem, RunStatus};
use crucible_server::{Datasets, ServerConfig};
use serde_json::{json, Value};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

/// The fields verl's sandbox_fusion client reads, with the types it expects.
fn assert_run_code_shape(v: &Value) {
    for k in [
        "status",
        "message",
        "compile_result",
        "run_result",
        "executor_pod_name",
        "files",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert!(
        ["Success", "Failed", "SandboxError"].contains(&v["status"].as_str().unwrap()),
        "{v}"
    );
    assert!(v["message"].is_string());
    assert!(v["files"].is_object());
    for part in ["compile_result", "run_result"] {
        let r = &v[part];
        if r.is_null() {
            continue;
        }
        assert_eq!(
            keys(r),
            vec![
                "execution_time",
                "return_code",
                "status",
                "stderr",
                "stdout"
            ],
            "{part}: {r}"
        );
        assert!(["Finished", "Error", "TimeLimitExceeded"].contains(&r["status"].as_str().unwrap()));
        assert!(r["execution_time"].is_number() || r["execution_time"].is_null());
        assert!(r["return_code"].is_i64() || r["return_code"].is_null());
    }
}

#[tokio::test]
async fn run_code_takes_verls_request_and_answers_the_schema() {
    let fake = Fake::new();
    let srv = start(
        fake.clone(),
        ServerConfig {
            pod_name: Some("crucible-0".into()),
            ..config()
        },
        Datasets::default(),
    )
    .await;
    // Exactly what verl's call_sandbox_api sends, plus a field SandboxFusion ignores.
    let req = json!({
        "compile_timeout": 10, "run_timeout": 3, "code": "print(input())", "stdin": "hi\n",
        "language": "python", "files": {}, "fetch_files": [], "memory_limit_MB": 256,
        "some_future_field": true
    });
    let a = post(&format!("{}/run_code", srv.url()), req.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_run_code_shape(&v);
    assert_eq!(v["status"], "Success");
    assert_eq!(v["compile_result"], Value::Null);
    assert_eq!(v["run_result"]["status"], "Finished");
    assert_eq!(v["run_result"]["return_code"], 0);
    assert_eq!(v["run_result"]["stdout"], "hi\n");
    assert_eq!(v["executor_pod_name"], "crucible-0");
    let limits = fake.seen_limits.lock().unwrap()[0];
    assert_eq!(limits.cpu_time_ms, 3_000);
    assert_eq!(limits.wall_time_ms, 7_000);
    assert_eq!(limits.memory_bytes, 256 << 20);

    // Defaults: only code and language are required.
    let a = post(
        &format!("{}/run_code", srv.url()),
        json!({"code": "x", "language": "python"}).to_string(),
    )
    .await;
    assert_eq!(a.status, 200);
    let limits = fake.seen_limits.lock().unwrap()[1];
    assert_eq!(limits.cpu_time_ms, 10_000, "run_timeout defaults to 10 s");
}

#[tokio::test]
async fn run_code_statuses() {
    let fake = Fake::new();
    let srv = start(fake.clone(), config(), Datasets::default()).await;
    let url = format!("{}/run_code", srv.url());
    let body = json!({"code": "x", "language": "python"}).to_string();
    let cases = [
        (RunStatus::RuntimeError, "Failed", Some("Finished"), false),
        (
            RunStatus::TimeLimitExceeded,
            "Failed",
            Some("TimeLimitExceeded"),
            false,
        ),
        (
            RunStatus::MemoryLimitExceeded,
            "Failed",
            Some("Finished"),
            false,
        ),
        (RunStatus::CompileError, "Failed", None, true),
        (
            RunStatus::SandboxError,
            "SandboxError",
            Some("Error"),
            false,
        ),
    ];
    for (status, top, run, compile) in cases {
        let mut r = run_report(status, "");
        if status == RunStatus::SandboxError {
            r.message = Some("cannot clone".into());
        }
        *fake.run_report.lock().unwrap() = Some(r);
        let v = post(&url, body.clone()).await.json();
        assert_run_code_shape(&v);
        assert_eq!(v["status"], top, "{status:?}: {v}");
        match run {
            Some(s) => assert_eq!(v["run_result"]["status"], s, "{status:?}"),
            None => assert!(v["run_result"].is_null()),
        }
        assert_eq!(!v["compile_result"].is_null(), compile, "{status:?}: {v}");
        if status == RunStatus::SandboxError {
            assert_eq!(v["message"], "cannot clone");
        }
        if status == RunStatus::RuntimeError {
            assert_ne!(v["run_result"]["return_code"], 0);
        }
    }
}

#[tokio::test]
async fn run_code_bad_requests_name_the_field() {
    let srv = start(Fake::new(), config(), Datasets::default()).await;
    let url = format!("{}/run_code", srv.url());
    let cases = [
        (json!({"code": "x", "language": "cobol"}), 422, "language"),
        (json!({"code": "x"}), 422, "language"),
        (json!({"language": "python"}), 422, "code"),
        (
            json!({"code": "x", "language": "python", "run_timeout": -1}),
            422,
            "run_timeout",
        ),
        (
            json!({"code": "x", "language": "python", "run_timeout": 1e300}),
            422,
            "run_timeout",
        ),
        (
            json!({"code": "x", "language": "python", "compile_timeout": 0}),
            422,
            "compile_timeout",
        ),
        (
            json!({"code": "x", "language": "python", "memory_limit_MB": -7}),
            422,
            "memory_limit_MB",
        ),
        (
            json!({"code": "x", "language": "python", "run_timeout": "slow"}),
            422,
            "run_timeout",
        ),
        (
            json!({"code": "x", "language": "python", "files": {"a.txt": "aGk="}}),
            422,
            "files.a.txt",
        ),
        (
            json!({"code": "x", "language": "python", "fetch_files": ["out"]}),
            422,
            "fetch_files",
        ),
    ];
    for (body, status, field) in cases {
        let a = post(&url, body.to_string()).await;
        assert_eq!(a.status, status, "{body}: {}", a.text());
        let v = a.json();
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
        // FastAPI's shape, which SandboxFusion clients parse for 422s.
        assert_eq!(v["detail"][0]["loc"][0], "body");
    }
    let a = post(&url, "{\"code\": ").await;
    assert_eq!(a.status, 400);
    // Huge run_timeout within range is clamped, and said so.
    let a = post(
        &url,
        json!({"code": "x", "language": "python", "run_timeout": 100000}).to_string(),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers.get("x-crucible-clamped").unwrap(), "run_timeout");
}

fn dataset() -> Datasets {
    let p: Problem = serde_json::from_value(json!({
        "id": "HumanEval/0",
        "completion_prefix": "def add(a, b):\n",
        "tests": [{"kind": "assert", "code": "assert add(1, 2) == 3"}, {"kind": "assert", "code": "assert add(2, 2) == 4"}]
    }))
    .unwrap();
    let mut d = Datasets::default();
    d.insert("humaneval_python", vec![p]).unwrap();
    d
}

#[tokio::test]
async fn submit_answers_an_eval_result() {
    let srv = start(Fake::new(), config(), dataset()).await;
    let url = format!("{}/submit", srv.url());
    let req = json!({
        "dataset": "humaneval_python", "id": 0,
        "completion": "Sure:\n```python\n    return a + b  # good\n```\n",
        "config": {"language": "python", "run_timeout": 5, "locale": "en", "extra": {}}
    });
    let a = post(&url, req.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(
        keys(&v),
        vec![
            "accepted",
            "extra",
            "extracted_code",
            "extracted_type",
            "full_code",
            "id",
            "test_code",
            "tests"
        ]
    );
    assert_eq!(v["id"], 0, "the id is echoed as sent");
    assert_eq!(v["accepted"], true);
    assert_eq!(v["extracted_type"], "fenced");
    assert_eq!(v["extracted_code"], "    return a + b  # good\n");
    assert_eq!(v["full_code"], "def add(a, b):\n    return a + b  # good\n");
    assert_eq!(v["tests"].as_array().unwrap().len(), 2);
    for t in v["tests"].as_array().unwrap() {
        assert_eq!(t["passed"], true);
        assert_run_code_shape(&t["exec_info"]);
        assert!(t["test_info"].is_object());
    }
    assert_eq!(v["extra"]["crucible"]["verdict"], "accepted");

    let wrong = json!({"dataset": "humaneval_python", "id": "HumanEval/0", "completion": "    return 0\n", "config": {}});
    let v = post(&url, wrong.to_string()).await.json();
    assert_eq!(v["accepted"], false);
    assert_eq!(v["tests"][1]["passed"], false);
    assert_eq!(
        v["tests"][1]["exec_info"]["status"], "Success",
        "a wrong answer ran fine"
    );
}

#[tokio::test]
async fn submit_refuses_to_score_a_sandbox_failure() {
    let srv = start(Fake::new(), config(), dataset()).await;
    let req = json!({"dataset": "humaneval_python", "id": 0, "completion": "    sandbox\n", "config": {}});
    let a = post(&format!("{}/submit", srv.url()), req.to_string()).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.json()["error"]["code"], "sandbox_error");
    assert!(a.headers.get("retry-after").is_some());
}

#[tokio::test]
async fn submit_bad_requests() {
    let srv = start(Fake::new(), config(), dataset()).await;
    let url = format!("{}/submit", srv.url());
    let cases = [
        (
            json!({"dataset": "mbpp", "id": 1, "completion": "x", "config": {}}),
            "dataset",
        ),
        (
            json!({"dataset": "humaneval_python", "id": 99, "completion": "x", "config": {}}),
            "id",
        ),
        (
            json!({"dataset": "humaneval_python", "id": [1], "completion": "x", "config": {}}),
            "id",
        ),
        (
            json!({"dataset": "humaneval_python", "id": 0, "completion": "x", "config": {"language": "cobol"}}),
            "config.language",
        ),
        (
            json!({"dataset": "humaneval_python", "id": 0, "completion": "x", "config": {"run_timeout": -2}}),
            "config.run_timeout",
        ),
        (
            json!({"dataset": "humaneval_python", "id": 0, "completion": " ", "config": {}}),
            "completion",
        ),
        (
            json!({"dataset": "humaneval_python", "id": 0, "config": {}}),
            "completion",
        ),
        (
            json!({"dataset": "humaneval_python", "id": 0, "completion": "x", "config": {"custom_extract_logic": "x"}}),
            "config.custom_extract_logic",
        ),
    ];
    for (body, field) in cases {
        let a = post(&url, body.to_string()).await;
        assert_eq!(a.status, 422, "{body}: {}", a.text());
        assert_eq!(a.json()["error"]["field"], field, "{body}");
    }
    // An inline Crucible problem in provided_data needs no loaded dataset.
    let inline = json!({
        "dataset": "anything", "id": "p1", "completion": "good",
        "config": {"provided_data": {"id": "p1", "tests": [{"kind": "stdio", "expected_stdout": "1"}]}}
    });
    let a = post(&url, inline.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["accepted"], true);
}
