//! The native API over a scripted backend: answers, bad requests, backpressure, auth,
//! batches, metrics, graceful shutdown, and the client's retries.

mod common;

use common::*;
use crucible_core::{Limits, Verdict};
use crucible_server::{
    ClientConfig, ClientError, Datasets, JudgeRequest, RewardClient, ServerConfig,
};
use std::time::Duration;

#[tokio::test]
async fn judge_answers_a_report_with_the_requested_reward() {
    let fake = Fake::new();
    let srv = start(fake.clone(), config(), Datasets::default()).await;
    let a = post(&format!("{}/v1/judge", srv.url()), judge_body("good")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r = a.json();
    assert_eq!(r["verdict"], "accepted");
    assert_eq!(
        r["reward"], 1.0,
        "the server computes the reward, not the backend"
    );
    assert_eq!(r["task_id"], "t/add");

    let body = serde_json::json!({
        "problem": problem_json(), "completion": "wrong", "reward": {"kind": "fraction"}, "sample": 3
    });
    let r = post(&format!("{}/v1/judge", srv.url()), body.to_string())
        .await
        .json();
    assert_eq!(r["verdict"], "wrong_answer");
    assert_eq!(r["reward"], 0.5);
    assert_eq!(r["sample"], 3);
}

#[tokio::test]
async fn sandbox_error_has_null_reward() {
    let srv = start(Fake::new(), config(), Datasets::default()).await;
    let r = post(&format!("{}/v1/judge", srv.url()), judge_body("sandbox")).await;
    assert_eq!(r.status, 200);
    let r = r.json();
    assert_eq!(r["verdict"], "sandbox_error");
    assert!(r["reward"].is_null(), "{r}");
}

#[tokio::test]
async fn bad_requests_get_4xx_naming_the_field_and_the_server_stays_up() {
    let srv = start(Fake::new(), config(), Datasets::default()).await;
    let url = format!("{}/v1/judge", srv.url());
    let cases: Vec<(String, u16, &str)> = vec![
        (r#"{"problem": {"id": "x", "tests": [}"#.into(), 400, "body"),
        ("not json at all".into(), 400, "body"),
        (
            serde_json::json!({"problem": problem_json(), "completion": "good", "language": "cobol"}).to_string(),
            422,
            "language",
        ),
        (
            serde_json::json!({"problem": {"id": "x", "tests": [], "language": "cobol"}, "completion": "good"}).to_string(),
            422,
            "problem.language",
        ),
        (
            serde_json::json!({"problem": problem_json(), "completion": "good", "limits": {"cpu_time_ms": -5}}).to_string(),
            422,
            "limits.cpu_time_ms",
        ),
        (
            serde_json::json!({"problem": problem_json(), "completion": "good", "limits": {"memory_bytes": 1e30}}).to_string(),
            422,
            "limits.memory_bytes",
        ),
        (
            r#"{"problem": {"id":"x","tests":[]}, "completion": "good", "limits": {"wall_time_ms": 100000000000000000000}}"#.into(),
            422,
            "limits.wall_time_ms",
        ),
        (
            serde_json::json!({"problem": problem_json(), "completion": "good", "limits": {"wall_time_ms": 9007199254740993u64}}).to_string(),
            422,
            "limits.wall_time_ms",
        ),
        (
            serde_json::json!({"problem": problem_json(), "completion": "good", "limits": {"processes": 0}}).to_string(),
            422,
            "limits.processes",
        ),
        (
            serde_json::json!({"problem": {"id": "x", "tests": [], "limits": {"cpu_time_ms": -1}}, "completion": "good"}).to_string(),
            422,
            "problem.limits.cpu_time_ms",
        ),
        (serde_json::json!({"problem": problem_json(), "completion": "   "}).to_string(), 422, "completion"),
        (serde_json::json!({"completion": "good"}).to_string(), 422, "problem"),
        (serde_json::json!({"problem": problem_json()}).to_string(), 422, "completion"),
        (serde_json::json!({"problem": problem_json(), "completion": "x", "colour": 1}).to_string(), 422, "colour"),
        (serde_json::json!({"dataset": "nope", "task_id": "1", "completion": "x"}).to_string(), 422, "dataset"),
    ];
    for (body, status, field) in cases {
        let a = post(&url, body.clone()).await;
        assert_eq!(a.status, status, "{body} -> {}", a.text());
        let j = a.json();
        assert_eq!(j["error"]["field"], field, "{body} -> {j}");
        assert!(j["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(
            j["detail"][0]["loc"][0], "body",
            "FastAPI-style detail: {j}"
        );
        // Still serving after each bad request.
        assert_eq!(get(&format!("{}/v1/health", srv.url())).await.status, 200);
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let srv = start(
        Fake::new(),
        ServerConfig {
            body_limit: 1024,
            ..config()
        },
        Datasets::default(),
    )
    .await;
    let big = judge_body(&"good ".repeat(1000));
    let a = post(&format!("{}/v1/judge", srv.url()), big.clone()).await;
    assert_eq!(a.status, 413, "{}", a.text());
    assert_eq!(a.json()["error"]["field"], "body");
    assert_eq!(a.json()["error"]["code"], "body_too_large");

    // Without a Content-Length (chunked), the limit holds while reading.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut req = String::from("POST /v1/judge HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    req.push_str(&format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("\"field\":\"body\""), "{out}");
    assert_eq!(get(&format!("{}/v1/health", srv.url())).await.status, 200);
}

#[tokio::test]
async fn limits_are_clamped_to_the_server_maxima() {
    let fake = Fake::new();
    let max = Limits::default().with_time_ms(2_000);
    let srv = start(
        fake.clone(),
        ServerConfig {
            max_limits: max,
            ..config()
        },
        Datasets::default(),
    )
    .await;
    let body = serde_json::json!({
        "problem": problem_json(), "completion": "good",
        "limits": {"cpu_time_ms": 3_600_000, "memory_bytes": 1048576}
    });
    let a = post(&format!("{}/v1/judge", srv.url()), body.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.headers.get("x-crucible-clamped").unwrap(),
        "cpu_time_ms,wall_time_ms"
    );
    let seen = fake.seen_limits.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].cpu_time_ms, 2_000, "clamped");
    // The profile's wall time (20 s) is over the maximum (5 s) too.
    assert_eq!(seen[0].wall_time_ms, 5_000);
    assert_eq!(seen[0].memory_bytes, 1 << 20, "a smaller ask is kept");
}

#[tokio::test]
async fn full_queue_answers_429_with_retry_after_and_recovers() {
    let fake = Fake::new();
    let srv = start(
        fake.clone(),
        ServerConfig {
            workers: 1,
            queue: 1,
            ..config()
        },
        Datasets::default(),
    )
    .await;
    let url = format!("{}/v1/judge", srv.url());
    let (u1, u2) = (url.clone(), url.clone());
    let first = tokio::spawn(async move { post(&u1, judge_body("good block")).await });
    let f2 = fake.clone();
    eventually("the first job to run", || f2.gate.waiting() == 1).await;
    let second = tokio::spawn(async move { post(&u2, judge_body("good block")).await });
    let st = srv.state.clone();
    eventually("the second job to queue", || {
        st.metrics().queue_depth() == 1
    })
    .await;

    let third = post(&url, judge_body("good")).await;
    assert_eq!(third.status, 429, "{}", third.text());
    assert_eq!(third.json()["error"]["code"], "queue_full");
    let retry: u64 = third
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let m = get(&format!("{}/metrics", srv.url())).await.text();
    assert!(m.contains("crucible_queue_depth 1\n"), "{m}");
    assert!(m.contains("crucible_in_flight 1\n"), "{m}");
    assert!(m.contains("crucible_rejected_queue_full_total 1\n"), "{m}");

    fake.gate.open();
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    assert_eq!(post(&url, judge_body("good")).await.status, 200);
    assert_eq!(srv.state.metrics().queue_depth(), 0);
    assert_eq!(srv.state.metrics().in_flight(), 0);
}

#[tokio::test]
async fn batch_streams_every_index_once_with_per_item_errors() {
    let srv = start(Fake::new(), config(), Datasets::default()).await;
    let items = serde_json::json!({"submissions": [
        {"problem": problem_json(), "completion": "good"},
        {"problem": problem_json(), "completion": "bad"},
        {"problem": problem_json(), "completion": "good", "language": "cobol"},
        {"problem": problem_json(), "completion": "sandbox"},
        {"problem": problem_json(), "completion": "good", "reward": {"kind": "fraction"}},
    ]});
    let a = post(&format!("{}/v1/judge/batch", srv.url()), items.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.headers.get("content-type").unwrap(),
        "application/x-ndjson"
    );
    let lines: Vec<serde_json::Value> = a
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let mut by_index = std::collections::BTreeMap::new();
    for l in &lines {
        assert!(
            by_index
                .insert(l["index"].as_u64().unwrap(), l.clone())
                .is_none(),
            "duplicate index"
        );
    }
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(by_index[&0]["report"]["verdict"], "accepted");
    assert_eq!(by_index[&1]["report"]["verdict"], "wrong_answer");
    assert_eq!(by_index[&2]["error"]["field"], "submissions[2].language");
    assert_eq!(by_index[&2]["error"]["code"], "unknown_language");
    assert!(by_index[&3]["report"]["reward"].is_null());
    assert_eq!(by_index[&4]["report"]["reward"], 1.0);

    let empty = post(
        &format!("{}/v1/judge/batch", srv.url()),
        r#"{"submissions": []}"#,
    )
    .await;
    assert_eq!(empty.status, 422);
    assert_eq!(empty.json()["error"]["field"], "submissions");
    let too_many = serde_json::json!({"submissions": vec![serde_json::json!({"problem": problem_json(), "completion": "good"}); 11]});
    let a = post(
        &format!("{}/v1/judge/batch", srv.url()),
        too_many.to_string(),
    )
    .await;
    assert_eq!(a.status, 422, "capacity is 2 + 8: {}", a.text());
    assert_eq!(a.json()["error"]["field"], "submissions");
}

#[tokio::test]
async fn bearer_token_guards_work_but_not_probes() {
    let srv = start(
        Fake::new(),
        ServerConfig {
            token: Some("s3cret".into()),
            ..config()
        },
        Datasets::default(),
    )
    .await;
    let url = format!("{}/v1/judge", srv.url());
    let a = post(&url, judge_body("good")).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"]["field"], "authorization");
    assert_eq!(
        a.json()["detail"][0]["loc"],
        serde_json::json!(["header", "authorization"])
    );
    assert_eq!(a.headers.get("www-authenticate").unwrap(), "Bearer");
    let wrong = request(
        "POST",
        &url,
        judge_body("good"),
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    let ok = request(
        "POST",
        &url,
        judge_body("good"),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(get(&format!("{}/v1/health", srv.url())).await.status, 200);
    assert_eq!(get(&format!("{}/metrics", srv.url())).await.status, 200);
    assert_eq!(
        get(&format!("{}/v1/languages", srv.url())).await.status,
        401
    );

    let client = RewardClient::new(ClientConfig {
        endpoints: vec![srv.url()],
        token: Some("s3cret".into()),
        ..Default::default()
    })
    .unwrap();
    let req: JudgeRequest = serde_json::from_str(&judge_body("good")).unwrap();
    assert_eq!(client.judge(&req).await.unwrap().verdict, Verdict::Accepted);
}

#[tokio::test]
async fn languages_health_metrics() {
    let srv = start(Fake::new(), config(), Datasets::default()).await;
    let l = get(&format!("{}/v1/languages", srv.url())).await.json();
    assert_eq!(l["languages"][0]["name"], "python");
    assert_eq!(l["max_limits"]["cpu_time_ms"], 30_000);
    let h = get(&format!("{}/v1/health", srv.url())).await.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["workers"], 2);
    assert_eq!(h["capacity"], 10);
    post(&format!("{}/v1/judge", srv.url()), judge_body("good")).await;
    post(&format!("{}/v1/judge", srv.url()), judge_body("bad")).await;
    post(&format!("{}/v1/judge", srv.url()), "{").await;
    let m = get(&format!("{}/metrics", srv.url())).await.text();
    for needle in [
        "crucible_queue_depth 0\n",
        "crucible_in_flight 0\n",
        "crucible_executions_total{language=\"python\",verdict=\"accepted\"} 1\n",
        "crucible_executions_total{language=\"python\",verdict=\"wrong_answer\"} 1\n",
        "crucible_execution_duration_seconds_count{language=\"python\"} 2\n",
        "crucible_http_requests_total{endpoint=\"judge\",status=\"200\"} 2\n",
        "crucible_http_requests_total{endpoint=\"judge\",status=\"400\"} 1\n",
        "crucible_http_request_duration_seconds_bucket{endpoint=\"judge\",le=\"+Inf\"} 3\n",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in\n{m}");
    }
    let nf = get(&format!("{}/nope", srv.url())).await;
    assert_eq!(nf.status, 404);
    assert_eq!(nf.json()["error"]["code"], "not_found");
}

#[tokio::test]
async fn graceful_shutdown_finishes_work_in_flight() {
    let fake = Fake::new();
    let mut srv = start(fake.clone(), config(), Datasets::default()).await;
    let url = format!("{}/v1/judge", srv.url());
    let in_flight = tokio::spawn(async move { post(&url, judge_body("good block")).await });
    let f2 = fake.clone();
    eventually("the job to start", || f2.gate.waiting() == 1).await;
    srv.shutdown();
    // New connections are refused once shutdown began...
    let st = srv.state.clone();
    let addr = srv.addr;
    eventually("the listener to close", || {
        st.metrics().in_flight() == 1 && std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    assert!(
        !srv.handle.is_finished(),
        "serve must wait for the request in flight"
    );
    // ...while the job in flight completes and is answered.
    fake.gate.open();
    let a = in_flight.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["verdict"], "accepted");
    tokio::time::timeout(Duration::from_secs(10), srv.handle)
        .await
        .expect("serve returns after draining")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn panicking_backend_is_a_sandbox_error_not_a_crash() {
    let srv = start(Fake::new(), config(), Datasets::default()).await;
    let a = post(&format!("{}/v1/judge", srv.url()), judge_body("panic")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["verdict"], "sandbox_error");
    assert!(a.json()["reward"].is_null());
    assert_eq!(
        post(&format!("{}/v1/judge", srv.url()), judge_body("good"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn dataset_problems_by_name() {
    let mut ds = Datasets::default();
    let p: crucible_core::Problem = serde_json::from_value(serde_json::json!({
        "id": "HumanEval/7", "tests": [{"kind": "assert", "code": "assert True"}],
        "limits": {"cpu_time_ms": 999999}
    }))
    .unwrap();
    ds.insert("humaneval", vec![p]).unwrap();
    let fake = Fake::new();
    let srv = start(fake.clone(), config(), ds).await;
    let url = format!("{}/v1/judge", srv.url());
    let body =
        serde_json::json!({"dataset": "humaneval", "task_id": "HumanEval/7", "completion": "good"});
    let a = post(&url, body.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["task_id"], "HumanEval/7");
    // A dataset's own limits are clamped too.
    assert_eq!(fake.seen_limits.lock().unwrap()[0].cpu_time_ms, 30_000);
    let body =
        serde_json::json!({"dataset": "humaneval", "task_id": "HumanEval/8", "completion": "good"});
    let a = post(&url, body.to_string()).await;
    assert_eq!(a.status, 422);
    assert_eq!(a.json()["error"]["field"], "task_id");
    assert_eq!(a.json()["error"]["code"], "unknown_task");
}

#[tokio::test]
async fn client_balances_and_never_turns_failures_into_zero() {
    let good = start(Fake::new(), config(), Datasets::default()).await;
    // A port with nothing listening: connection refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let client = RewardClient::new(ClientConfig {
        endpoints: vec![dead_url.clone(), good.url()],
        backoff: Duration::from_millis(5),
        cooldown: Duration::from_secs(30),
        ..Default::default()
    })
    .unwrap();
    let req: JudgeRequest = serde_json::from_str(&judge_body("good")).unwrap();
    for _ in 0..6 {
        let s = client.reward(&req).await;
        assert_eq!(s.reward, Some(1.0));
    }
    let st = client.stats();
    assert_eq!(st.judged, 6);
    assert_eq!(st.absent, 0);
    assert_eq!(
        st.transport_errors, 1,
        "the dead endpoint is passed over after one failure: {st:?}"
    );

    // Every attempt a sandbox error: the reward is absent, never 0, and counted.
    let flaky: JudgeRequest = serde_json::from_str(&judge_body("sandbox")).unwrap();
    let s = client.reward(&flaky).await;
    assert_eq!(s.reward, None);
    assert!(
        matches!(s.error, Some(ClientError::Unavailable { attempts: 4, .. })),
        "{:?}",
        s.error
    );
    let st = client.stats();
    assert_eq!(st.absent, 1);
    assert_eq!(st.sandbox_errors, 4);

    // No server at all.
    let nothing = RewardClient::new(ClientConfig {
        endpoints: vec![dead_url],
        max_attempts: 2,
        backoff: Duration::from_millis(5),
        ..Default::default()
    })
    .unwrap();
    let s = nothing.reward(&req).await;
    assert_eq!(s.reward, None);
    assert_eq!(nothing.stats().absent, 1);

    // A bad request is refused, not retried, and not a zero either.
    let bad: JudgeRequest = serde_json::from_str(
        r#"{"problem": {"id": "x", "tests": [], "language": "cobol"}, "completion": "good"}"#,
    )
    .unwrap();
    match client.judge(&bad).await {
        Err(ClientError::Rejected {
            status: 422,
            error: Some(e),
            ..
        }) => assert_eq!(e.field.as_deref(), Some("problem.language")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn client_waits_out_429_instead_of_failing() {
    let fake = Fake::new();
    let srv = start(
        fake.clone(),
        ServerConfig {
            workers: 1,
            queue: 0,
            ..config()
        },
        Datasets::default(),
    )
    .await;
    let url = format!("{}/v1/judge", srv.url());
    let blocker = tokio::spawn(async move { post(&url, judge_body("good block")).await });
    let f2 = fake.clone();
    eventually("the blocker to run", || f2.gate.waiting() == 1).await;
    let client = RewardClient::new(ClientConfig {
        endpoints: vec![srv.url()],
        max_attempts: 1,
        max_backoff: Duration::from_millis(200),
        ..Default::default()
    })
    .unwrap();
    let req: JudgeRequest = serde_json::from_str(&judge_body("good")).unwrap();
    let waiting = tokio::spawn(async move { (client.reward(&req).await, client.stats()) });
    tokio::time::sleep(Duration::from_millis(700)).await;
    fake.gate.open();
    let (scored, stats) = waiting.await.unwrap();
    assert_eq!(scored.reward, Some(1.0), "{:?}", scored.error);
    assert!(stats.throttled >= 1, "{stats:?}");
    assert_eq!(blocker.await.unwrap().status, 200);
}

#[tokio::test]
async fn client_batch_keeps_input_order_and_retries_sandbox_errors() {
    let srv = start(Fake::new(), config(), Datasets::default()).await;
    let client = RewardClient::new(ClientConfig {
        endpoints: vec![srv.url()],
        max_attempts: 2,
        backoff: Duration::from_millis(5),
        ..Default::default()
    })
    .unwrap();
    let mk = |c: &str| -> JudgeRequest { serde_json::from_str(&judge_body(c)).unwrap() };
    let reqs = vec![mk("good"), mk("bad"), mk("sandbox"), mk("good")];
    let out = client.judge_batch(&reqs).await;
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].as_ref().unwrap().verdict, Verdict::Accepted);
    assert_eq!(out[1].as_ref().unwrap().verdict, Verdict::WrongAnswer);
    assert!(matches!(out[2], Err(ClientError::Unavailable { .. })));
    assert_eq!(out[3].as_ref().unwrap().verdict, Verdict::Accepted);
    let st = client.stats();
    assert_eq!(st.absent, 1);
    assert_eq!(st.judged, 3);
}

#[test]
fn state_refuses_a_zero_body_limit() {
    let r = crucible_server::AppState::new(
        Fake::new(),
        ServerConfig {
            body_limit: 0,
            ..config()
        },
        Datasets::default(),
    );
    assert!(r.is_err());
}
