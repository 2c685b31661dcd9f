//! `kill -9` of a server in the middle of a load: clients get errors, never wrong
//! rewards, and a restarted server on the same port serves again.
//!
//! The server runs in a child process: this test binary started again with
//! CRUCIBLE_KILL9_CHILD set (so it has its own `main`, `harness = false`). The load is
//! bounded (CRUCIBLE_KILL9_REQUESTS, default 300) and loopback only.

use crucible_core::Submission;
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use crucible_server::load::{self, Expected, LoadConfig, LoadReport};
use crucible_server::{AppState, Datasets, ServerConfig};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "CRUCIBLE_KILL9_CHILD";

fn real_judge() -> Judge {
    let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("process sandbox");
    Judge::new(
        sandbox,
        Profiles::load(None).expect("profiles"),
        JudgeOptions::default(),
    )
}

/// The child: a server on 127.0.0.1:PORT (0 picks one), announcing its port on stdout.
fn child(port: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let state = AppState::new(
            Arc::new(real_judge()),
            ServerConfig {
                workers: 2,
                queue: 256,
                ..ServerConfig::default()
            },
            Datasets::default(),
        )
        .expect("state");
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .expect("bind");
        println!("PORT {}", listener.local_addr().expect("addr").port());
        crucible_server::serve(listener, state, std::future::pending())
            .await
            .expect("serve");
    });
}

fn spawn_server(port: u16) -> (Child, u16) {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("port line");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("server said {line:?}"));
    (child, port)
}

/// How many cgroups the server with `pid` (in our pid namespace) has under the crucible
/// parents: sandbox cgroups are named `run-NS.PID-...` / `probe-NS.PID-...`.
fn cgroups_of(pid: u32) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata("/proc/self/ns/pid").map(|m| m.ino()) else {
        return 0;
    };
    let owner = format!("{ns}.{pid}-");
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return 0;
    };
    let mut bases: Vec<std::path::PathBuf> =
        roots.flatten().map(|e| e.path().join("crucible")).collect();
    bases.push("/sys/fs/cgroup/crucible".into());
    bases
        .iter()
        .flat_map(|b| std::fs::read_dir(b).into_iter().flatten().flatten())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            ["run-", "probe-"]
                .iter()
                .any(|p| name.strip_prefix(p).is_some_and(|r| r.starts_with(&owner)))
        })
        .count()
}

fn expected() -> HashMap<String, Expected> {
    let judge = real_judge();
    load::mix()
        .into_iter()
        .map(|item| {
            let sub = Submission {
                task_id: item.problem.id.clone(),
                sample: 0,
                language: "python".into(),
                completion: item.completion.clone(),
            };
            let r = judge.judge(&item.problem, &sub).expect("judge");
            (
                r.task_id.clone(),
                Expected {
                    verdict: r.verdict,
                    reward: r.reward,
                },
            )
        })
        .collect()
}

fn load_config(port: u16, requests: usize, expected: &HashMap<String, Expected>) -> LoadConfig {
    LoadConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        clients: 30,
        requests,
        expected: expected.clone(),
        max_duration: Duration::from_secs(300),
        // Few, quick retries, so that requests caught by the outage end in errors.
        max_attempts: 2,
        request_deadline: Duration::from_secs(20),
        ..LoadConfig::default()
    }
}

fn summary(name: &str, r: &LoadReport) {
    eprintln!(
        "{name}: sent {} judged {} errors {} mismatches {} (client: {:?})",
        r.sent,
        r.judged,
        r.errors,
        r.mismatches.len(),
        r.client
    );
}

fn kill9_mid_load() {
    let requests: usize = std::env::var("CRUCIBLE_KILL9_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let expected = expected();
    let (mut server, port) = spawn_server(0);
    let killed = server.id();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let during = rt.block_on(async {
        let load = tokio::spawn(load::run(load_config(port, requests, &expected)));
        // Let the load get going, then kill -9 the server with work in flight.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let killed_at = Instant::now();
        server.kill().expect("SIGKILL");
        let status = server.wait().expect("reap");
        assert!(!status.success(), "killed by a signal: {status:?}");
        eprintln!("cgroups left by the killed server: {}", cgroups_of(killed));
        // Down long enough that requests in flight run out of attempts.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (restarted, again) = tokio::task::spawn_blocking(move || spawn_server(port))
            .await
            .expect("restart");
        assert_eq!(again, port, "restarted on the same port");
        eprintln!("server killed and restarted in {:?}", killed_at.elapsed());
        (load.await.expect("load task").expect("load"), restarted)
    });
    let (during, mut restarted) = during;
    summary("during kill -9", &during);
    assert!(
        during.mismatches.is_empty(),
        "wrong rewards: {:?}",
        during.mismatches
    );
    assert!(
        during.errors > 0,
        "the kill came mid-load, so some requests must have failed"
    );
    assert!(during.judged > 0);
    assert_eq!(
        during.client.absent as usize, during.errors,
        "every failure is counted as an absent reward"
    );

    let after = rt
        .block_on(load::run(load_config(port, 60, &expected)))
        .expect("load after restart");
    summary("after restart", &after);
    // The restarted server removed what the killed one left (it could not clean up).
    assert_eq!(
        cgroups_of(killed),
        0,
        "cgroups of the killed server are left"
    );
    // This one's cgroups are swept by the next process that makes a sandbox.
    let _ = restarted.kill();
    let _ = restarted.wait();
    assert_eq!(after.judged, 60, "{:?}", after.sample_errors);
    assert!(after.mismatches.is_empty(), "{:?}", after.mismatches);
}

fn main() {
    if let Ok(port) = std::env::var(CHILD_ENV) {
        child(&port);
        return;
    }
    // `cargo test -- --list` and name filters come through as arguments.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("kill9_mid_load: test");
        return;
    }
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"kill9_mid_load".contains(a.as_str()))
    {
        println!("test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out");
        return;
    }
    println!("running 1 test");
    let started = Instant::now();
    kill9_mid_load();
    println!("test kill9_mid_load ... ok");
    println!(
        "\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s",
        started.elapsed().as_secs_f64()
    );
}
