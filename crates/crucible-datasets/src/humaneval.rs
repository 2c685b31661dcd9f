//! OpenAI HumanEval: `{task_id, prompt, entry_point, canonical_solution, test}` per line.

use crate::dataset::load_problems;
use crate::error::DatasetError;
use crate::fields::Fields;
use crucible_core::{Problem, TestCase};
use std::path::Path;

/// Loads a HumanEval file (`.jsonl.gz` or `.jsonl`) in file order.
///
/// Each problem gets id = `task_id`, prompt and `completion_prefix` = `prompt`,
/// reference = `canonical_solution`, language `python`, and one assert test whose code is
/// `test` (which defines `check(candidate)`) with `entry_point` as the function under
/// test. Extra fields (HumanEval+'s `plus_input`, ...) are ignored. Returns the first
/// error; see [`crate::load`] for why a bad record fails the file.
pub fn load_humaneval(path: &Path) -> Result<Vec<Problem>, DatasetError> {
    load_problems(path, "humaneval", "task_id", false, decode)
}

fn decode(f: &Fields) -> Result<Problem, DatasetError> {
    let id = f.nonblank("task_id")?;
    // An empty prompt is allowed: then completions are whole programs.
    let prompt = f.string("prompt")?;
    let entry_point = f.nonblank("entry_point")?;
    if !is_identifier(entry_point) {
        return Err(f.err("entry_point", "is not a Python identifier"));
    }
    let solution = f.nonblank("canonical_solution")?;
    let test = f.nonblank("test")?;
    Ok(Problem {
        id: id.to_string(),
        prompt: Some(prompt.to_string()),
        completion_prefix: prompt.to_string(),
        test_setup: String::new(),
        tests: vec![TestCase::Assert {
            code: test.to_string(),
            entry_point: Some(entry_point.to_string()),
        }],
        reference: Some(solution.to_string()),
        language: "python".to_string(),
        limits: None,
    })
}

/// ASCII identifier check; enough to catch a field holding code or a call instead of a
/// name, which would otherwise surface as a confusing NameError for every submission.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{gzip, write};
    use serde_json::json;

    fn line(v: serde_json::Value) -> String {
        format!("{v}\n")
    }

    fn good(id: &str) -> serde_json::Value {
        json!({
            "task_id": id,
            "prompt": "def add(a, b):\n",
            "entry_point": "add",
            "canonical_solution": "    return a + b\n",
            "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
        })
    }

    #[test]
    fn loads_plain_and_gzip() {
        let body = line(good("HumanEval/0")) + "\n" + &line(good("HumanEval/1"));
        let (_d, plain) = write("h.jsonl", body.as_bytes());
        let (_d2, gz) = write("h.jsonl.gz", &gzip(body.as_bytes()));
        for p in [plain, gz] {
            let ps = load_humaneval(&p).unwrap();
            assert_eq!(ps.len(), 2);
            let p0 = &ps[0];
            assert_eq!(p0.id, "HumanEval/0");
            assert_eq!(ps[1].id, "HumanEval/1");
            assert_eq!(p0.prompt.as_deref(), Some("def add(a, b):\n"));
            assert_eq!(p0.completion_prefix, "def add(a, b):\n");
            assert_eq!(p0.reference.as_deref(), Some("    return a + b\n"));
            assert_eq!(p0.language, "python");
            assert_eq!(p0.test_setup, "");
            assert_eq!(p0.limits, None);
            assert_eq!(
                p0.tests,
                vec![TestCase::Assert {
                    code: "def check(candidate):\n    assert candidate(1, 2) == 3\n".into(),
                    entry_point: Some("add".into()),
                }]
            );
        }
    }

    fn error_of(records: &[serde_json::Value]) -> String {
        let body: String = records.iter().map(|v| line(v.clone())).collect();
        let (_d, p) = write("he.jsonl", body.as_bytes());
        let e = load_humaneval(&p).unwrap_err();
        let shown = e.to_string();
        let file = p.display().to_string();
        shown.strip_prefix(&file).unwrap().to_string()
    }

    #[test]
    fn field_errors_name_line_and_field() {
        let mut missing = good("b");
        missing.as_object_mut().unwrap().remove("test");
        assert_eq!(
            error_of(&[good("a"), missing]),
            r#":2: field "test": missing"#
        );
        let mut wrong = good("a");
        wrong["prompt"] = json!(["def f():"]);
        assert_eq!(
            error_of(&[wrong]),
            r#":1: field "prompt": expected a string, found an array"#
        );
        let mut empty = good("a");
        empty["canonical_solution"] = json!("  \n");
        assert_eq!(
            error_of(&[empty]),
            r#":1: field "canonical_solution": is empty or only whitespace"#
        );
        let mut call = good("a");
        call["entry_point"] = json!("add(1)");
        assert_eq!(
            error_of(&[call]),
            r#":1: field "entry_point": is not a Python identifier"#
        );
    }

    #[test]
    fn duplicate_id_names_both_lines() {
        assert_eq!(
            error_of(&[good("a"), good("b"), good("a")]),
            r#":3: field "task_id": duplicate problem id "a" (first at line 1)"#
        );
    }

    #[test]
    fn malformed_json_fails_the_file() {
        let body = line(good("a")) + "{\"task_id\": \n";
        let (_d, p) = write("he.jsonl", body.as_bytes());
        let e = load_humaneval(&p).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.starts_with("invalid JSON: "), "{e}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let (_d, p) = write("he.jsonl", b"\n");
        let e = load_humaneval(&p).unwrap_err();
        assert_eq!(e.message, "no problems found");
    }

    #[test]
    fn corrupt_gzip_fails_the_file() {
        let body: String = (0..500).map(|i| line(good(&format!("t/{i}")))).collect();
        let mut gz = gzip(body.as_bytes());
        let mid = gz.len() / 2;
        for b in &mut gz[mid..mid + 64] {
            *b ^= 0x5a;
        }
        let (_d, p) = write("he.jsonl.gz", &gz);
        let e = load_humaneval(&p).unwrap_err();
        assert!(e.message.starts_with("cannot decompress gzip data"), "{e}");
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("has_close_elements"));
        assert!(is_identifier("_f1"));
        assert!(!is_identifier("1f"));
        assert!(!is_identifier("f x"));
        assert!(!is_identifier(""));
    }
}
