//! The `crucible` binary end to end: bad input gets a clear error naming the place and
//! does not stop the rest; `run --json` has the documented shape; exit codes hold; the
//! cgroups of a judge killed mid-run are removed by the next one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn crucible(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crucible"))
        .args(args)
        .env("CRUCIBLE_LOG", "error")
        .output()
        .expect("run crucible")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const PROBLEMS: &str = r#"{"id":"add","tests":[{"kind":"call","function":"add","args":[1,2],"expected":3},{"kind":"assert","code":"assert add(2, 2) == 4"}],"reference":"def add(a, b):\n    return a + b\n"}
{"id":"echo","tests":[{"kind":"stdio","stdin":"hi\n","expected_stdout":"hi\n"}],"reference":"print(input())\n"}
"#;

fn reports(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is a JSON report"))
        .collect()
}

#[test]
fn canonical_native_dataset_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let ds = write(dir.path(), "p.jsonl", PROBLEMS);
    let out = crucible(&[
        "judge",
        "--dataset",
        &format!("crucible={}", ds.display()),
        "--no-progress",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = reports(&out.stdout);
    assert_eq!(r.len(), 2);
    for rep in &r {
        assert_eq!(rep["verdict"], "accepted", "{rep}");
        assert_eq!(rep["reward"], 1.0);
        assert!(rep["tests"].as_array().is_some_and(|t| !t.is_empty()));
    }
    assert!(
        stderr.contains("accepted") && stderr.contains("programs/s"),
        "summary table: {stderr}"
    );
}

#[test]
fn bad_samples_are_reported_and_the_rest_judged() {
    let dir = tempfile::tempdir().unwrap();
    let ds = write(dir.path(), "p.jsonl", PROBLEMS);
    let samples = write(
        dir.path(),
        "s.jsonl",
        concat!(
            "{\"task_id\":\"add\",\"completion\":\"def add(a, b):\\n    return a - b\\n\"}\n",
            "{not json\n",
            "{\"task_id\":\"nope\",\"completion\":\"x = 1\"}\n",
            "{\"task_id\":\"add\"}\n",
            "{\"task_id\":\"add\",\"completion\":\"   \"}\n",
            "{\"task_id\":\"add\",\"completion\":\"def add(a, b):\\n    return a + b\\n\",\"language\":\"cobol\"}\n",
            "{\"task_id\":\"echo\",\"completion\":\"print(input())\\n\"}\n",
        ),
    );
    let out = crucible(&[
        "judge",
        "--dataset",
        &format!("crucible={}", ds.display()),
        "--solutions",
        samples.to_str().unwrap(),
        "--no-progress",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "bad input exits 1: {stderr}");
    let r = reports(&out.stdout);
    assert_eq!(r.len(), 2, "the two good samples are judged: {stderr}");
    assert_eq!(r[0]["task_id"], "add");
    assert_eq!(r[0]["verdict"], "wrong_answer");
    assert_eq!(r[1]["task_id"], "echo");
    assert_eq!(r[1]["verdict"], "accepted");
    assert!(
        stderr.contains("s.jsonl:2"),
        "malformed JSON names its line: {stderr}"
    );
    assert!(
        stderr.contains("s.jsonl:3: field \"task_id\""),
        "unknown task: {stderr}"
    );
    assert!(
        stderr.contains("s.jsonl:4") && stderr.contains("completion"),
        "missing field: {stderr}"
    );
    assert!(stderr.contains("s.jsonl:5"), "empty code: {stderr}");
    assert!(
        stderr.contains("s.jsonl:6: field \"language\"") && stderr.contains("cobol"),
        "unknown language: {stderr}"
    );
}

#[test]
fn broken_dataset_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let ds = write(
        dir.path(),
        "bad.jsonl",
        "{\"id\":\"a\",\"tests\":[{\"kind\":\"assert\",\"code\":\"pass\"}]}\n{\"id\":\"b\",\"tests\":[{\"kind\":\"stdio\"}]}\n",
    );
    let out = crucible(&["judge", "--dataset", &format!("crucible={}", ds.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.jsonl:2"), "{stderr}");
    assert!(stderr.contains("expected_stdout"), "{stderr}");
}

#[test]
fn unknown_language_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = write(dir.path(), "a.py", "print(1)\n");
    let out = crucible(&["run", "--lang", "cobol", src.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("cobol") && stderr.contains("python"),
        "{stderr}"
    );
}

#[test]
fn empty_program_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let src = write(dir.path(), "a.py", "\n\n");
    let out = crucible(&["run", "--lang", "python", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a.py"));
}

#[test]
fn run_json_shape_and_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(
        dir.path(),
        "ok.py",
        "import sys\nprint(sys.stdin.read().upper(), end='')\n",
    );
    let input = write(dir.path(), "in.txt", "hello");
    let out = crucible(&[
        "run",
        "--lang",
        "python",
        "--json",
        "--stdin",
        input.to_str().unwrap(),
        ok.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["stdout"], "HELLO");
    assert_eq!(v["exit_code"], 0);
    for key in ["signal", "stderr", "cpu_ms", "wall_ms", "memory_kb"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }

    let cases = [
        ("raise ValueError('x')\n", "runtime_error", vec![]),
        (
            "while True:\n    pass\n",
            "time_limit_exceeded",
            vec!["--time-limit", "1"],
        ),
        ("def f(:\n", "compile_error", vec![]),
        (
            "x = bytearray(1 << 30)\n",
            "memory_limit_exceeded",
            vec!["--memory-limit", "128"],
        ),
    ];
    for (code, status, extra) in cases {
        let src = write(dir.path(), "p.py", code);
        let mut args = vec!["run", "--lang", "python", "--json"];
        args.extend(extra);
        args.push(src.to_str().unwrap());
        let out = crucible(&args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], status, "{code}: {v}");
        assert_eq!(out.status.code(), Some(1), "{code}");
    }
}

/// The run cgroups under every crucible parent cgroup (v1 hierarchies and v2) whose
/// owner, as the name gives it (`run-NS.PID-...`), is `pid`.
fn run_cgroups_of(pid: u32) -> Vec<PathBuf> {
    let mut parents = vec![PathBuf::from("/sys/fs/cgroup/crucible")];
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        parents.extend(hierarchies.flatten().map(|h| h.path().join("crucible")));
    }
    let mine = format!(".{pid}-");
    let mut found = Vec::new();
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("run-") && name.contains(&mine) {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn cgroups_of_a_judge_killed_mid_run_are_removed_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let ds = write(dir.path(), "p.jsonl", PROBLEMS);
    let samples = write(
        dir.path(),
        "s.jsonl",
        "{\"task_id\":\"add\",\"completion\":\"import time\\ntime.sleep(60)\\n\"}\n",
    );
    let mut victim = Command::new(env!("CARGO_BIN_EXE_crucible"))
        .args(["judge", "--dataset", &format!("crucible={}", ds.display())])
        .args(["--solutions", samples.to_str().unwrap(), "--no-progress"])
        .env("CRUCIBLE_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start crucible");
    let pid = victim.id();
    // Its sandboxes are up once their cgroups are; none without root or cgroups.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while run_cgroups_of(pid).is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if run_cgroups_of(pid).is_empty() {
        let _ = victim.kill();
        let _ = victim.wait();
        eprintln!("skipped: crucible made no cgroups here (no root or no cgroup hierarchy)");
        return;
    }
    // SIGKILL: no destructor runs, so it cannot remove its cgroups itself.
    victim.kill().unwrap();
    victim.wait().unwrap();
    let left = run_cgroups_of(pid);
    assert!(!left.is_empty(), "a killed judge leaves its cgroups");
    // Its sandboxes die with it (parent-death signal); wait until they are gone.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let busy = |p: &PathBuf| {
        std::fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|t| !t.trim().is_empty())
    };
    while left.iter().any(busy) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = crucible(&[
        "judge",
        "--dataset",
        &format!("crucible={}", ds.display()),
        "--no-progress",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(run_cgroups_of(pid), Vec::<PathBuf>::new(), "left behind");
}
