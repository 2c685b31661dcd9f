//! scripts/crucible_client.py against a server with a scripted backend: scores, the
//! verl-compatible compute_score, balancing past a dead server, and absent (never zero)
//! rewards on infrastructure failure.

mod common;

use common::*;
use crucible_server::Datasets;
use std::path::PathBuf;
use std::process::Command;

const SCRIPT: &str = r#"
import json, sys
import crucible_client as cc
dead, url = sys.argv[1], sys.argv[2]
c = cc.CrucibleClient([dead, url], backoff=0.01, cooldown=30, max_attempts=3)
gt = {"inputs": ["1 2\n", "2 2\n"], "outputs": ["3\n", "4\n"]}
out = {}
out["good"] = cc._score(c, "x", "Answer:\n```python\nprint('good')\n```\n", json.dumps(gt), None)
out["wrong"] = cc._score(c, "x", "print('nope')", gt, {"reward": {"kind": "fraction"}})
try:
    cc._score(c, "x", "sandbox", gt, None)
    out["sandbox"] = "scored"
except cc.CrucibleUnavailable:
    out["sandbox"] = "unavailable"
out["reward_absent"] = c.reward({"problem": cc.problem_from_ground_truth(gt), "completion": "sandbox"})
try:
    c.judge({"problem": {"id": "x", "tests": [], "language": "cobol"}, "completion": "x"})
except cc.CrucibleRejected as e:
    out["rejected"] = [e.status, e.field]
out["run_code"] = c.run_code("print(input())", stdin="hi\n")["run_result"]["stdout"]
out["stats"] = dict(c.stats)
out["compute_score"] = cc.compute_score("x", "good", gt)
out["batch"] = [r["score"] for r in cc.compute_score_batch(["a", "b"], ["good", "bad"], [gt, gt])]
out["asserts"] = cc.problem_from_ground_truth(["assert f(1) == 2"])["tests"][0]["kind"]
out["call"] = cc.problem_from_ground_truth({"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"})["tests"][0]
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn python_client_scores_balances_and_never_zeroes_failures() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: no python3");
        return;
    }
    let srv = start(Fake::new(), config(), Datasets::default()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    let url = srv.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(&dead_url)
            .arg(&url)
            .env("PYTHONPATH", &scripts)
            .env("CRUCIBLE_ENDPOINTS", &url)
            .env_remove("CRUCIBLE_TOKEN")
            .env_remove("CRUCIBLE_TOKEN_FILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout {stdout}\nstderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["good"]["score"], 1.0, "{v}");
    assert_eq!(v["good"]["acc"], true);
    assert_eq!(
        v["wrong"]["score"], 0.5,
        "fraction reward from extra_info: {v}"
    );
    assert_eq!(v["wrong"]["verdict"], "wrong_answer");
    assert_eq!(
        v["sandbox"], "unavailable",
        "an infrastructure failure is not a score"
    );
    assert!(v["reward_absent"].is_null(), "{v}");
    assert_eq!(v["rejected"], serde_json::json!([422, "problem.language"]));
    assert_eq!(v["run_code"], "hi\n");
    let stats = &v["stats"];
    assert_eq!(stats["absent"], 2, "{stats}");
    assert_eq!(
        stats["sandbox_errors"], 6,
        "3 attempts for each of 2 submissions: {stats}"
    );
    assert_eq!(
        stats["transport_errors"], 1,
        "the dead server is passed over after one failure: {stats}"
    );
    assert_eq!(stats["rejected"], 1);
    assert_eq!(v["compute_score"]["score"], 1.0);
    assert_eq!(v["batch"], serde_json::json!([1.0, 0.0]));
    assert_eq!(v["asserts"], "assert");
    assert_eq!(
        v["call"],
        serde_json::json!({"kind": "call", "function": "add", "args": [1, 2], "expected": 3})
    );
}
