//! The server over the real process sandbox (needs root or unprivileged user namespaces,
//! like the sandbox's own tests): a bounded load of good, wrong and hostile programs
//! whose verdicts must equal direct judgement (the CLI's code path), and the
//! SandboxFusion endpoints running real Python.
//!
//! CRUCIBLE_LOAD_REQUESTS and CRUCIBLE_LOAD_CLIENTS scale the load (default 150 / 20;
//! scripts/loadtest.sh runs the full 20k / 200 against the release binary).

mod common;

use common::*;
use crucible_core::Submission;
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use crucible_server::load::{self, Expected, LoadConfig};
use crucible_server::{Datasets, ServerConfig};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn real_judge() -> Judge {
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("process sandbox");
    let profiles = Profiles::load(None).expect("profiles");
    Judge::new(sandbox, profiles, JudgeOptions::default())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_mix_over_http_matches_direct_judgement() {
    // Expected outcomes: each mix item judged directly, as `crucible judge` does.
    let direct = real_judge();
    let mut expected = HashMap::new();
    for item in load::mix() {
        let sub = Submission {
            task_id: item.problem.id.clone(),
            sample: 0,
            language: "python".into(),
            completion: item.completion.clone(),
        };
        let r = direct.judge(&item.problem, &sub).expect("judge");
        expected.insert(
            r.task_id.clone(),
            Expected {
                verdict: r.verdict,
                reward: r.reward,
            },
        );
    }
    // The mix really is a mix.
    let verdicts: std::collections::BTreeSet<_> = expected.values().map(|e| e.verdict).collect();
    assert!(verdicts.len() >= 5, "{expected:?}");

    let srv = start(
        Arc::new(real_judge()),
        ServerConfig {
            workers: 2,
            queue: 64,
            ..ServerConfig::default()
        },
        Datasets::default(),
    )
    .await;
    let requests = env_usize("CRUCIBLE_LOAD_REQUESTS", 150);
    let report = load::run(LoadConfig {
        endpoints: vec![srv.url()],
        clients: env_usize("CRUCIBLE_LOAD_CLIENTS", 20),
        requests,
        expected,
        max_duration: Duration::from_secs(600),
        ..LoadConfig::default()
    })
    .await
    .expect("load run");
    eprintln!(
        "load: {} judged, p50 {:.1} ms, p99 {:.1} ms, {:.1} req/s, verdicts {:?}",
        report.judged, report.p50_ms, report.p99_ms, report.throughput_rps, report.by_verdict
    );
    assert_eq!(report.sent, requests);
    assert_eq!(report.lost(), 0, "errors: {:?}", report.sample_errors);
    assert_eq!(report.checked, requests, "every report was checked");
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    assert!(report.p50_ms > 0.0 && report.p99_ms >= report.p50_ms);
    assert_eq!(srv.state.metrics().queue_depth(), 0);
    assert_eq!(srv.state.metrics().in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_code_runs_real_python_like_sandboxfusion() {
    let srv = start(Arc::new(real_judge()), config(), Datasets::default()).await;
    let url = format!("{}/run_code", srv.url());
    let v = post(
        &url,
        json!({"code": "print(input()[::-1])", "stdin": "abc\n", "language": "python"}).to_string(),
    )
    .await
    .json();
    assert_eq!(v["status"], "Success", "{v}");
    assert_eq!(v["run_result"]["status"], "Finished");
    assert_eq!(v["run_result"]["stdout"], "cba\n");
    assert_eq!(v["run_result"]["return_code"], 0);

    let v = post(
        &url,
        json!({"code": "import sys\nsys.exit(3)", "language": "python"}).to_string(),
    )
    .await
    .json();
    assert_eq!(v["status"], "Failed", "{v}");
    assert_eq!(v["run_result"]["return_code"], 3);

    let v = post(
        &url,
        json!({"code": "def f(:\n", "language": "python"}).to_string(),
    )
    .await
    .json();
    assert_eq!(v["status"], "Failed", "{v}");
    assert!(v["run_result"].is_null(), "{v}");
    assert!(
        v["compile_result"]["stderr"]
            .as_str()
            .unwrap()
            .contains("SyntaxError"),
        "{v}"
    );

    let v = post(
        &url,
        json!({"code": "while True: pass", "language": "python", "run_timeout": 0.3}).to_string(),
    )
    .await
    .json();
    assert_eq!(v["status"], "Failed", "{v}");
    assert_eq!(v["run_result"]["status"], "TimeLimitExceeded", "{v}");

    let v = post(
        &url,
        json!({"code": "x = bytearray(1 << 30)", "language": "python", "memory_limit_MB": 64})
            .to_string(),
    )
    .await
    .json();
    assert_eq!(v["status"], "Failed", "{v}");
    assert_eq!(v["crucible"]["status"], "memory_limit_exceeded", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_judges_a_loaded_dataset_problem() {
    let mut ds = Datasets::default();
    let smoke = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/smoke.jsonl");
    let n = ds
        .load("smoke", crucible_datasets::DatasetKind::Crucible, &smoke)
        .expect("smoke dataset");
    assert!(n >= 5);
    let srv = start(Arc::new(real_judge()), config(), ds).await;
    let url = format!("{}/submit", srv.url());
    let good = json!({"dataset": "smoke", "id": "smoke/shout", "config": {},
        "completion": "Here you go:\n```python\nprint(input().upper())\n```"});
    let v = post(&url, good.to_string()).await.json();
    assert_eq!(v["accepted"], true, "{v}");
    assert_eq!(v["tests"].as_array().unwrap().len(), 2);
    let wrong = json!({"dataset": "smoke", "id": "smoke/shout", "config": {}, "completion": "print(input())"});
    let v = post(&url, wrong.to_string()).await.json();
    assert_eq!(v["accepted"], false, "{v}");
    assert_eq!(v["tests"][0]["passed"], false);
    // The native API reaches the same problem by name.
    let native = json!({"dataset": "smoke", "task_id": "smoke/shout", "completion": "print(input().upper())"});
    let v = post(&format!("{}/v1/judge", srv.url()), native.to_string())
        .await
        .json();
    assert_eq!(v["verdict"], "accepted", "{v}");
    assert_eq!(v["reward"], 1.0);
}
