//! MBPP, full (`mbpp.jsonl`) and sanitized (`sanitized-mbpp.json`).

use crate::dataset::load_problems;
use crate::error::DatasetError;
use crucible_core::{Problem, TestCase};
use std::path::Path;

/// Loads full MBPP (`mbpp.jsonl`: text, code, task_id, test_setup_code, test_list,
/// challenge_test_list) in file order.
///
/// Each problem gets id = `task_id` as a decimal string (`"11"`), prompt = `text`, an
/// empty `completion_prefix` (completions are whole programs), reference = `code`,
/// test_setup = `test_setup_code`, language `python`, and one assert test per
/// `test_list` line, followed by one per `challenge_test_list` line when
/// `include_challenge_tests` is set (they are not part of the standard benchmark).
/// `test_setup_code` and `challenge_test_list` may be absent. Returns the first error;
/// see [`crate::load`] for why a bad record fails the file.
pub fn load_mbpp(path: &Path, include_challenge_tests: bool) -> Result<Vec<Problem>, DatasetError> {
    load_problems(path, "mbpp", "task_id", true, |f| {
        let id = f.int_id("task_id")?;
        let text = f.string("text")?;
        let code = f.nonblank("code")?;
        let setup = f.opt_string("test_setup_code")?.unwrap_or_default();
        let mut tests = f.code_list("test_list")?;
        if include_challenge_tests {
            tests.extend(f.opt_string_list("challenge_test_list")?);
        }
        Ok(problem(id, text, code, setup, tests))
    })
}

/// Loads sanitized MBPP (`sanitized-mbpp.json`: a JSON array of source_file, task_id,
/// prompt, code, test_imports, test_list) in array order. A JSONL file with the same
/// fields is read as well.
///
/// The mapping is that of [`load_mbpp`], with prompt = `prompt` and test_setup = the
/// `test_imports` lines joined by newlines. Errors name the array index
/// (`sanitized-mbpp.json[16]: ...`), since the whole array is usually on one line.
pub fn load_mbpp_sanitized(path: &Path) -> Result<Vec<Problem>, DatasetError> {
    load_problems(path, "mbpp-sanitized", "task_id", true, |f| {
        Ok(problem(
            f.int_id("task_id")?,
            f.string("prompt")?,
            f.nonblank("code")?,
            &f.opt_string_list("test_imports")?.join("\n"),
            f.code_list("test_list")?,
        ))
    })
}

fn problem(id: String, prompt: &str, code: &str, setup: &str, tests: Vec<String>) -> Problem {
    Problem {
        id,
        prompt: Some(prompt.to_string()),
        completion_prefix: String::new(),
        test_setup: setup.to_string(),
        tests: tests
            .into_iter()
            .map(|code| TestCase::Assert {
                code,
                entry_point: None,
            })
            .collect(),
        reference: Some(code.to_string()),
        language: "python".to_string(),
        limits: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::write;
    use serde_json::{json, Value};

    fn full(id: u64) -> Value {
        json!({
            "text": "Write a function to add two numbers.",
            "code": "def add(a, b):\r\n    return a + b",
            "task_id": id,
            "test_setup_code": "",
            "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
            "challenge_test_list": ["assert add(-1, 1) == 0"],
        })
    }

    fn sanitized(id: u64) -> Value {
        json!({
            "source_file": "Benchmark Questions Verification V2.ipynb",
            "task_id": id,
            "prompt": "Write a function to compute a square root.",
            "code": "import math\ndef root(x):\n    return math.sqrt(x)",
            "test_imports": ["import math", "import cmath"],
            "test_list": ["assert math.isclose(root(4), 2)"],
        })
    }

    fn jsonl(records: &[Value]) -> String {
        records.iter().map(|v| format!("{v}\n")).collect()
    }

    /// The error for `body` in a file called `name`, without the temp directory.
    fn error_of(
        name: &str,
        body: &str,
        load: fn(&Path) -> Result<Vec<Problem>, DatasetError>,
    ) -> String {
        let (_d, p) = write(name, body.as_bytes());
        let e = load(&p).unwrap_err();
        let dir = format!("{}/", p.parent().unwrap().display());
        e.to_string().strip_prefix(&dir).unwrap().to_string()
    }

    fn mbpp(p: &Path) -> Result<Vec<Problem>, DatasetError> {
        load_mbpp(p, false)
    }

    #[test]
    fn full_mapping() {
        let (_d, p) = write("mbpp.jsonl", jsonl(&[full(11), full(12)]).as_bytes());
        let ps = load_mbpp(&p, false).unwrap();
        assert_eq!(ps.len(), 2);
        let p0 = &ps[0];
        assert_eq!(p0.id, "11");
        assert_eq!(ps[1].id, "12");
        assert_eq!(
            p0.prompt.as_deref(),
            Some("Write a function to add two numbers.")
        );
        assert_eq!(p0.completion_prefix, "");
        assert_eq!(
            p0.reference.as_deref(),
            Some("def add(a, b):\r\n    return a + b")
        );
        assert_eq!(p0.test_setup, "");
        assert_eq!(p0.language, "python");
        assert_eq!(
            p0.tests,
            vec![
                TestCase::Assert {
                    code: "assert add(1, 2) == 3".into(),
                    entry_point: None
                },
                TestCase::Assert {
                    code: "assert add(0, 0) == 0".into(),
                    entry_point: None
                },
            ]
        );
    }

    #[test]
    fn challenge_tests_only_on_request() {
        let (_d, p) = write("mbpp.jsonl", jsonl(&[full(11)]).as_bytes());
        let ps = load_mbpp(&p, true).unwrap();
        assert_eq!(ps[0].tests.len(), 3);
        assert_eq!(
            ps[0].tests[2],
            TestCase::Assert {
                code: "assert add(-1, 1) == 0".into(),
                entry_point: None
            }
        );
    }

    #[test]
    fn optional_full_fields_may_be_absent() {
        let mut r = full(11);
        let o = r.as_object_mut().unwrap();
        o.remove("test_setup_code");
        o.remove("challenge_test_list");
        let (_d, p) = write("mbpp.jsonl", jsonl(&[r]).as_bytes());
        assert_eq!(load_mbpp(&p, true).unwrap()[0].tests.len(), 2);
    }

    #[test]
    fn test_setup_is_kept() {
        let mut r = full(11);
        r["test_setup_code"] = json!("root = Node(1)");
        let (_d, p) = write("mbpp.jsonl", jsonl(&[r]).as_bytes());
        assert_eq!(
            load_mbpp(&p, false).unwrap()[0].test_setup,
            "root = Node(1)"
        );
    }

    #[test]
    fn full_errors() {
        let mut bad = full(12);
        bad["test_list"] = json!("assert add(1, 2) == 3");
        assert_eq!(
            error_of("mbpp.jsonl", &jsonl(&[full(11), bad]), mbpp),
            r#"mbpp.jsonl:2: field "test_list": expected an array of strings, found a string"#
        );
        let mut bad = full(11);
        bad["task_id"] = json!("11");
        assert_eq!(
            error_of("mbpp.jsonl", &jsonl(&[bad]), mbpp),
            r#"mbpp.jsonl:1: field "task_id": expected a non-negative integer, found "11""#
        );
        let mut bad = full(11);
        bad["code"] = json!("");
        assert_eq!(
            error_of("mbpp.jsonl", &jsonl(&[bad]), mbpp),
            r#"mbpp.jsonl:1: field "code": is empty or only whitespace"#
        );
        let mut bad = full(11);
        bad.as_object_mut().unwrap().remove("text");
        assert_eq!(
            error_of("mbpp.jsonl", &jsonl(&[bad]), mbpp),
            r#"mbpp.jsonl:1: field "text": missing"#
        );
        let mut bad = full(11);
        bad["challenge_test_list"] = json!([1]);
        // Only checked when the challenge tests are wanted.
        let body = jsonl(&[bad]);
        let (_d, p) = write("mbpp.jsonl", body.as_bytes());
        assert!(load_mbpp(&p, false).is_ok());
        assert!(load_mbpp(&p, true).unwrap_err().to_string().ends_with(
            r#"mbpp.jsonl:1: field "challenge_test_list": expected an array of strings, but element 0 is a number"#
        ));
        assert_eq!(
            error_of("mbpp.jsonl", &jsonl(&[full(11), full(12), full(11)]), mbpp),
            r#"mbpp.jsonl:3: field "task_id": duplicate problem id "11" (first at line 1)"#
        );
        assert_eq!(
            error_of("mbpp.jsonl", "{\"task_id\": 1,}\n", mbpp),
            "mbpp.jsonl:1: invalid JSON: trailing comma (column 15)"
        );
    }

    #[test]
    fn sanitized_mapping() {
        let body = serde_json::to_string(&json!([sanitized(2), sanitized(3)])).unwrap();
        let (_d, p) = write("sanitized-mbpp.json", body.as_bytes());
        let ps = load_mbpp_sanitized(&p).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].id, "2");
        assert_eq!(ps[1].id, "3");
        assert_eq!(
            ps[0].prompt.as_deref(),
            Some("Write a function to compute a square root.")
        );
        assert_eq!(ps[0].test_setup, "import math\nimport cmath");
        assert_eq!(ps[0].completion_prefix, "");
        assert_eq!(
            ps[0].tests,
            vec![TestCase::Assert {
                code: "assert math.isclose(root(4), 2)".into(),
                entry_point: None
            }]
        );
        // The same records as JSONL load the same.
        let (_d2, p2) = write(
            "sanitized.jsonl",
            jsonl(&[sanitized(2), sanitized(3)]).as_bytes(),
        );
        assert_eq!(load_mbpp_sanitized(&p2).unwrap(), ps);
    }

    #[test]
    fn sanitized_errors_name_the_index() {
        let mut bad = sanitized(3);
        bad["test_imports"] = json!("import math");
        let body = json!([sanitized(2), bad]).to_string();
        assert_eq!(
            error_of("sanitized-mbpp.json", &body, load_mbpp_sanitized),
            r#"sanitized-mbpp.json[1]: field "test_imports": expected an array of strings, found a string"#
        );
        let mut bad = sanitized(3);
        bad["code"] = json!(" ");
        let body = json!([bad]).to_string();
        assert_eq!(
            error_of("sanitized-mbpp.json", &body, load_mbpp_sanitized),
            r#"sanitized-mbpp.json[0]: field "code": is empty or only whitespace"#
        );
        let body = json!([sanitized(2), sanitized(2)]).to_string();
        assert_eq!(
            error_of("sanitized-mbpp.json", &body, load_mbpp_sanitized),
            r#"sanitized-mbpp.json[1]: field "task_id": duplicate problem id "2" (first at index 0)"#
        );
        let body = json!([sanitized(2), "oops"]).to_string();
        assert_eq!(
            error_of("sanitized-mbpp.json", &body, load_mbpp_sanitized),
            "sanitized-mbpp.json[1]: expected a JSON object, found a string"
        );
        assert_eq!(
            error_of(
                "sanitized-mbpp.json",
                "[\n{\"task_id\": 2\n",
                load_mbpp_sanitized
            ),
            "sanitized-mbpp.json:3: invalid JSON: EOF while parsing an object (column 0)"
        );
    }
}
