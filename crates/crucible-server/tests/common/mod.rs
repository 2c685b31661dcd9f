//! Helpers for the server's tests: a scriptable backend, a server on a loopback port,
//! and a raw HTTP client that can send anything (malformed bodies included).

#![allow(dead_code)]

use bytes::Bytes;
use crucible_core::{
    Limits, Problem, Report, RunReport, RunStatus, Submission, TestOutcome, Verdict,
};
use crucible_judge::JudgeError;
use crucible_server::{AppState, Backend, Datasets, LanguageInfo, ServerConfig};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A gate that blocks backend calls until opened.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    waiting: Mutex<usize>,
}

impl Gate {
    pub fn wait(&self) {
        *self.waiting.lock().unwrap() += 1;
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }

    pub fn waiting(&self) -> usize {
        *self.waiting.lock().unwrap()
    }
}

/// A backend whose verdicts come from the completion: `good` anywhere is accepted,
/// `sandbox` is a sandbox error, `block` waits on the gate first, `panic` panics;
/// anything else is a wrong answer with 1 of 2 tests passed.
pub struct Fake {
    pub gate: Gate,
    pub seen_limits: Mutex<Vec<Limits>>,
    pub calls: Mutex<usize>,
    pub run_report: Mutex<Option<RunReport>>,
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        Arc::new(Fake {
            gate: Gate::default(),
            seen_limits: Mutex::new(Vec::new()),
            calls: Mutex::new(0),
            run_report: Mutex::new(None),
        })
    }
}

pub fn outcome(id: &str, verdict: Verdict) -> TestOutcome {
    TestOutcome {
        id: id.into(),
        verdict,
        message: None,
        cpu_ms: 1,
        wall_ms: 2,
        memory_kb: 3,
        score: None,
    }
}

pub fn run_report(status: RunStatus, stdout: &str) -> RunReport {
    RunReport {
        status,
        exit_code: Some(if status == RunStatus::Ok { 0 } else { 1 }),
        signal: None,
        stdout: stdout.into(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        cpu_ms: 5,
        wall_ms: 7,
        memory_kb: 1000,
        message: None,
        fuel_used: None,
    }
}

impl Backend for Fake {
    fn judge(&self, problem: &Problem, sub: &Submission) -> Result<Report, JudgeError> {
        *self.calls.lock().unwrap() += 1;
        if let Some(l) = problem.limits {
            self.seen_limits.lock().unwrap().push(l);
        }
        let code = &sub.completion;
        if code.contains("block") {
            self.gate.wait();
        }
        if code.contains("panic") {
            panic!("backend panicked on purpose");
        }
        let (verdict, tests) = if code.contains("good") {
            (
                Verdict::Accepted,
                vec![
                    outcome("0", Verdict::Accepted),
                    outcome("1", Verdict::Accepted),
                ],
            )
        } else if code.contains("sandbox") {
            (
                Verdict::SandboxError,
                vec![outcome("0", Verdict::SandboxError)],
            )
        } else {
            (
                Verdict::WrongAnswer,
                vec![
                    outcome("0", Verdict::Accepted),
                    outcome("1", Verdict::WrongAnswer),
                ],
            )
        };
        Ok(Report {
            task_id: sub.task_id.clone(),
            sample: sub.sample,
            language: sub.language.clone(),
            verdict,
            // Deliberately wrong: the server must compute the reward itself.
            reward: Some(42.0),
            passed: tests.iter().filter(|t| t.verdict.is_accepted()).count(),
            total: tests.len(),
            tests,
            cpu_ms: 1,
            wall_ms: 2,
            memory_kb: 3,
            message: None,
            fuel_used: None,
            compile: None,
        })
    }

    fn run_source(
        &self,
        _l: &str,
        source: &str,
        stdin: &[u8],
        limits: Limits,
    ) -> Result<RunReport, JudgeError> {
        self.seen_limits.lock().unwrap().push(limits);
        if source.contains("block") {
            self.gate.wait();
        }
        if let Some(r) = self.run_report.lock().unwrap().clone() {
            return Ok(r);
        }
        Ok(run_report(RunStatus::Ok, &String::from_utf8_lossy(stdin)))
    }

    fn languages(&self) -> Vec<LanguageInfo> {
        vec![LanguageInfo {
            name: "python".into(),
            display: "Python (fake)".into(),
            version: Some("3.0".into()),
            limits: Limits::default(),
        }]
    }
}

/// A running server and the means to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<Result<(), crucible_server::ServerError>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Begins graceful shutdown.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn start(backend: Arc<dyn Backend>, config: ServerConfig, datasets: Datasets) -> Server {
    let state = AppState::new(backend, config, datasets).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(crucible_server::serve(
        listener,
        state.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        state,
        stop: Some(tx),
        handle,
    }
}

pub fn config() -> ServerConfig {
    ServerConfig {
        workers: 2,
        queue: 8,
        ..ServerConfig::default()
    }
}

pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn request(
    method: &str,
    url: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Answer {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(body.into())).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn post(url: &str, body: impl Into<Bytes>) -> Answer {
    request("POST", url, body, &[("content-type", "application/json")]).await
}

pub async fn get(url: &str) -> Answer {
    request("GET", url, Bytes::new(), &[]).await
}

/// A small inline stdio problem as JSON.
pub fn problem_json() -> serde_json::Value {
    serde_json::json!({
        "id": "t/add",
        "tests": [
            {"kind": "stdio", "stdin": "1 2\n", "expected_stdout": "3\n"},
            {"kind": "stdio", "stdin": "2 2\n", "expected_stdout": "4\n"}
        ]
    })
}

pub fn judge_body(completion: &str) -> String {
    serde_json::json!({"problem": problem_json(), "completion": completion}).to_string()
}

/// Waits until `cond` holds, or panics after 10 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
