//! LiveCodeBench code generation (`livecodebench/code_generation_lite`): public and
//! private test cases with `testtype` `stdin` or `functional`, `metadata.func_name`.

use crate::contest::{
    json_field, kind_of, load_each, pickled_str, solution_binding, zlib_decompress, ProblemsLoad,
};
use crate::error::DatasetError;
use crate::fields::Fields;
use crate::humaneval::is_identifier;
use crucible_core::{base64_decode, Comparator, Problem, TestCase};
use serde_json::Value;
use std::path::Path;

/// Loads LiveCodeBench code-generation rows (JSONL, or one JSON array).
///
/// id = `question_id`, prompt = `question_content` (with `starter_code` appended when
/// present), language `python`, no reference. The tests are `public_test_cases`, then
/// `private_test_cases`: each a JSON string (or list) of `{input, output, testtype}`;
/// the private list may also be in the release's compressed form (base64 of zlib of a
/// pickled JSON string), which is decoded without running any pickle code.
/// - `stdin` tests compare stdout with the `livecodebench` parity preset;
/// - `functional` tests call `metadata.func_name` (a method of `class Solution`, as in
///   LeetCode) with one argument per line of `input`, each line JSON, and compare the
///   result with the JSON `output`.
///
/// A record whose tests cannot be read is reported in [`ProblemsLoad::errors`]; the
/// others load.
pub fn load_livecodebench(path: &Path) -> Result<ProblemsLoad, DatasetError> {
    load_each(path, "livecodebench", "question_id", decode)
}

fn decode(f: &Fields, _ordinal: usize) -> Result<Problem, DatasetError> {
    let id = f.string_or_int_id("question_id")?;
    let content = f.opt_string("question_content")?.unwrap_or_default();
    let starter = f.opt_string("starter_code")?.unwrap_or_default();
    let func_name = match json_field(f, "metadata")? {
        Some(Value::Object(m)) => match m.get("func_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if is_identifier(s) => Some(s.clone()),
            Some(other) => {
                return Err(f.err(
                    "metadata",
                    format!("\"func_name\" must be a Python identifier, found {other}"),
                ))
            }
        },
        Some(other) => {
            return Err(f.err(
                "metadata",
                format!("expected a JSON object, found {}", kind_of(&other)),
            ))
        }
        None => None,
    };
    let mut tests = Vec::new();
    for field in ["public_test_cases", "private_test_cases"] {
        for (i, case) in test_cases(f, field)?.into_iter().enumerate() {
            tests.push(test(f, field, i, &case, func_name.as_deref())?);
        }
    }
    if tests.is_empty() {
        return Err(f.err("public_test_cases", "the problem has no test cases"));
    }
    let mut prompt = content.to_string();
    if !starter.trim().is_empty() {
        prompt.push_str("\n\n");
        prompt.push_str(starter);
    }
    let calls = tests.iter().any(|t| matches!(t, TestCase::Call { .. }));
    Ok(Problem {
        id,
        prompt: Some(prompt),
        completion_prefix: String::new(),
        test_setup: match (&func_name, calls) {
            (Some(name), true) => solution_binding(name),
            _ => String::new(),
        },
        tests,
        reference: None,
        language: "python".to_string(),
        limits: None,
    })
}

/// The list of test cases in `field`: a JSON string, a list, or the compressed form.
fn test_cases(f: &Fields, field: &str) -> Result<Vec<Value>, DatasetError> {
    let value = match f.opt(field) {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) if !s.trim_start().starts_with('[') => {
            let json = base64_decode(s)
                .and_then(|z| zlib_decompress(&z))
                .and_then(|p| pickled_str(&p))
                .map_err(|why| {
                    f.err(
                        field,
                        format!("is neither a JSON list nor the compressed form ({why})"),
                    )
                })?;
            serde_json::from_str(&json)
                .map_err(|e| f.err(field, format!("decompressed, is not valid JSON: {e}")))?
        }
        Some(_) => json_field(f, field)?.unwrap_or(Value::Null),
    };
    match value {
        Value::Array(items) => Ok(items),
        other => Err(f.err(
            field,
            format!("expected a list of test cases, found {}", kind_of(&other)),
        )),
    }
}

fn test(
    f: &Fields,
    field: &str,
    i: usize,
    case: &Value,
    func_name: Option<&str>,
) -> Result<TestCase, DatasetError> {
    let err = |why: String| f.err(field, format!("test case {i}: {why}"));
    let get = |key: &str| -> Result<&str, DatasetError> {
        case.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("\"{key}\" must be a string")))
    };
    let (input, output) = (get("input")?, get("output")?);
    match case.get("testtype").and_then(Value::as_str) {
        Some("stdin") | None => Ok(TestCase::Stdio {
            stdin: input.to_string(),
            expected_stdout: output.to_string(),
            comparator: Comparator::Preset {
                name: "livecodebench".into(),
                atol: None,
            },
        }),
        Some("functional") => {
            let Some(function) = func_name else {
                return Err(err("a functional test needs metadata.func_name".into()));
            };
            let args = input
                .split('\n')
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(k, line)| {
                    serde_json::from_str::<Value>(line)
                        .map_err(|e| err(format!("argument {k} is not JSON: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let expected = serde_json::from_str::<Value>(output)
                .map_err(|e| err(format!("output is not JSON: {e}")))?;
            Ok(TestCase::Call {
                function: function.to_string(),
                args,
                expected,
                atol: None,
            })
        }
        Some(other) => Err(err(format!(
            "unknown testtype {other:?} (expected stdin or functional)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::write;
    use serde_json::json;

    #[test]
    fn stdin_and_functional_rows() {
        let stdin = json!({
            "question_id": "abc001_a",
            "question_content": "Add.",
            "public_test_cases": json!([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]).to_string(),
            "private_test_cases": json!([{"input": "2 2\n", "output": "4\n", "testtype": "stdin"}]).to_string(),
            "metadata": "{}",
        });
        let functional = json!({
            "question_id": "2847",
            "question_content": "Two sum.",
            "starter_code": "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
            "public_test_cases": json!([{"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"}]).to_string(),
            "private_test_cases": "",
            "metadata": json!({"func_name": "twoSum"}).to_string(),
        });
        let (_d, p) = write("lcb.jsonl", format!("{stdin}\n{functional}\n").as_bytes());
        let load = load_livecodebench(&p).unwrap();
        assert!(load.errors.is_empty(), "{:?}", load.errors);
        let [a, b] = &load.problems[..] else {
            panic!("two problems")
        };
        assert_eq!(a.tests.len(), 2);
        assert!(a.test_setup.is_empty());
        assert!(
            matches!(&b.tests[0], TestCase::Call { function, args, expected, .. }
            if function == "twoSum" && args == &vec![json!([2, 7, 11, 15]), json!(9)] && expected == &json!([0, 1]))
        );
        assert!(b.test_setup.contains("Solution().twoSum"));
        assert!(b.prompt.as_deref().unwrap().contains("class Solution"));
    }

    #[test]
    fn compressed_private_cases_are_decoded() {
        // base64(zlib(pickle.dumps(json.dumps([...])))) as LiveCodeBench releases them.
        let compressed =
            "eJxrYJlqwwABPRbR1UqZeQWlJUpWCkqGMXlKOgpK+aUlUAEjiEBJanFJSWVBKkiouCQlM0+pNnaKHgCVCRRG";
        let row = json!({
            "question_id": 7,
            "public_test_cases": "[]",
            "private_test_cases": compressed,
            "metadata": "{}",
        });
        let (_d, p) = write("lcb.jsonl", row.to_string().as_bytes());
        let load = load_livecodebench(&p).unwrap();
        assert!(load.errors.is_empty(), "{:?}", load.errors);
        assert!(
            matches!(&load.problems[0].tests[0], TestCase::Stdio { stdin, expected_stdout, .. }
            if stdin == "1\n" && expected_stdout == "2\n")
        );
    }

    #[test]
    fn bad_rows_are_reported() {
        let rows = [
            json!({"question_id": "a", "public_test_cases": "[{\"input\": \"1\", \"output\": \"1\", \"testtype\": \"functional\"}]", "metadata": "{}"}),
            json!({"question_id": "b", "public_test_cases": "not json at all", "metadata": "{}"}),
            json!({"question_id": "c", "public_test_cases": "[{\"input\": \"1\", \"output\": \"1\", \"testtype\": \"batch\"}]"}),
            json!({"question_id": "d", "public_test_cases": "[{\"input\": \"1\", \"output\": \"1\"}]"}),
        ]
        .map(|r| r.to_string())
        .join("\n");
        let (_d, p) = write("lcb.jsonl", rows.as_bytes());
        let load = load_livecodebench(&p).unwrap();
        assert_eq!(load.problems.len(), 1);
        let e: Vec<String> = load.errors.iter().map(|e| e.to_string()).collect();
        assert!(e[0].contains("needs metadata.func_name"), "{e:?}");
        assert!(
            e[1].contains("neither a JSON list nor the compressed form"),
            "{e:?}"
        );
        assert!(e[2].contains("unknown testtype \"batch\""), "{e:?}");
    }
}
