//! APPS and TACO: `input_output` is a JSON string `{"inputs", "outputs", "fn_name"?}`.

use crate::contest::{id_from, json_field, kind_of, load_each, solution_binding, ProblemsLoad};
use crate::error::DatasetError;
use crate::fields::Fields;
use crate::humaneval::is_identifier;
use crucible_core::{Comparator, Problem, TestCase};
use serde_json::Value;
use std::path::Path;

/// How APPS stdio outputs are compared: tokens, with numbers within numpy `allclose`'s
/// default tolerances (APPS falls back to whitespace-split and `np.allclose`
/// comparisons; it does not compare token *sets*, which would pass reordered output).
pub const APPS_STDIO_COMPARATOR: Comparator = Comparator::Float {
    abs: 1e-8,
    rel: 1e-5,
};

/// Loads APPS or TACO rows (JSONL, or one JSON array, as exported from the Hugging Face
/// datasets `codeparrot/apps` and `BAAI/TACO`).
///
/// id = `problem_id` (or `id`; TACO rows have neither, so their 0-based position), prompt
/// = `question` (with `starter_code` appended when present), reference = the first of
/// `solutions` (a JSON string holding a list of Python programs), language `python`.
/// `input_output` (a JSON string, or an object) gives the tests:
/// - without `fn_name`, each `inputs[i]` is stdin and `outputs[i]` the expected stdout
///   (a list of lines is joined with newlines), compared with
///   [`APPS_STDIO_COMPARATOR`];
/// - with `fn_name`, each `inputs[i]` is the argument list of a call to `fn_name` (a
///   method of `class Solution` when the program defines no such function, as in APPS),
///   and the result must equal `outputs[i]`, or its only element when `outputs[i]` is
///   a one-element list (APPS wraps return values that way). Tuples compare as lists.
///
/// Rows reformatted by MapCoder (`test_list: [{input, output}]`, `starter_code`,
/// `description`) are read too: see [`decode_test_list`].
///
/// A record with a malformed `input_output` (not JSON, lists of different lengths, no
/// tests, a bad `fn_name`) is reported in [`ProblemsLoad::errors`]; the others load.
pub fn load_apps(path: &Path) -> Result<ProblemsLoad, DatasetError> {
    load_each(path, "apps", "problem_id", decode)
}

fn decode(f: &Fields, ordinal: usize) -> Result<Problem, DatasetError> {
    let id = id_from(f, &["problem_id", "id"], || ordinal.to_string())?;
    if f.opt("input_output").is_none() && f.opt("test_list").is_some() {
        return decode_test_list(f, id);
    }
    let question = f.opt_string("question")?.unwrap_or_default();
    let starter = f.opt_string("starter_code")?.unwrap_or_default();
    let Some(io) = json_field(f, "input_output")? else {
        return Err(f.err("input_output", "missing"));
    };
    let Value::Object(io) = io else {
        return Err(f.err(
            "input_output",
            format!("expected a JSON object, found {}", kind_of(&io)),
        ));
    };
    let list = |name: &str| -> Result<Vec<Value>, DatasetError> {
        match io.get(name) {
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(other) => Err(f.err(
                "input_output",
                format!("\"{name}\" must be a list, found {}", kind_of(other)),
            )),
            None => Err(f.err("input_output", format!("\"{name}\" is missing"))),
        }
    };
    let inputs = list("inputs")?;
    let outputs = list("outputs")?;
    if inputs.len() != outputs.len() {
        return Err(f.err(
            "input_output",
            format!("{} inputs but {} outputs", inputs.len(), outputs.len()),
        ));
    }
    if inputs.is_empty() {
        return Err(f.err("input_output", "has no tests"));
    }
    let fn_name = match io.get("fn_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_identifier(s) => Some(s.clone()),
        Some(other) => {
            return Err(f.err(
                "input_output",
                format!("\"fn_name\" must be a Python identifier, found {other}"),
            ))
        }
    };
    let mut tests = Vec::with_capacity(inputs.len());
    for (i, (input, output)) in inputs.into_iter().zip(outputs).enumerate() {
        let test = match &fn_name {
            Some(name) => {
                let args = match input {
                    Value::Array(args) => args,
                    other => {
                        return Err(f.err(
                            "input_output",
                            format!(
                                "inputs[{i}] must be the list of arguments of {name}, found {}",
                                kind_of(&other)
                            ),
                        ))
                    }
                };
                TestCase::Call {
                    function: name.clone(),
                    args,
                    expected: unwrap_single(output),
                    atol: None,
                }
            }
            None => TestCase::Stdio {
                stdin: text(f, &format!("inputs[{i}]"), input)?,
                expected_stdout: text(f, &format!("outputs[{i}]"), output)?,
                comparator: APPS_STDIO_COMPARATOR,
            },
        };
        tests.push(test);
    }
    let reference = match json_field(f, "solutions") {
        Ok(Some(Value::Array(s))) => s
            .into_iter()
            .find_map(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.trim().is_empty()),
        // Solutions are only a convenience; a bad list must not cost the problem.
        _ => None,
    };
    Ok(Problem {
        id,
        prompt: Some(with_starter(question, starter)),
        completion_prefix: String::new(),
        test_setup: fn_name.as_deref().map(solution_binding).unwrap_or_default(),
        tests,
        reference,
        language: "python".to_string(),
        limits: None,
    })
}

/// MapCoder's reformatted APPS rows: `test_list` of `{input, output}` with `output` a
/// one-element list. Rows with a `def NAME(` in `starter_code` are call problems whose
/// `input` has one argument per line, written as a Python literal, or as bare text for a
/// string (the reformatting dropped the quotes, so a line that parses as a literal is
/// taken as one: a string argument that looks like a number comes out as a number).
/// Other rows are stdin/stdout problems.
fn decode_test_list(f: &Fields, id: String) -> Result<Problem, DatasetError> {
    let description = f.opt_string("description")?.unwrap_or_default();
    let starter = f.opt_string("starter_code")?.unwrap_or_default();
    let fn_name = starter
        .split("def ")
        .nth(1)
        .and_then(|rest| rest.split('(').next())
        .map(str::trim)
        .filter(|n| is_identifier(n))
        .map(str::to_string);
    let Some(Value::Array(cases)) = f.opt("test_list") else {
        return Err(f.err("test_list", "expected a list of {input, output}"));
    };
    if cases.is_empty() {
        return Err(f.err("test_list", "has no tests"));
    }
    let mut tests = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let bad = |why: &str| f.err("test_list", format!("element {i}: {why}"));
        let input = case
            .get("input")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("\"input\" must be a string"))?;
        let output = match case.get("output") {
            Some(Value::Array(items)) if items.len() == 1 => items[0].clone(),
            _ => return Err(bad("\"output\" must be a one-element list")),
        };
        tests.push(match &fn_name {
            Some(name) => TestCase::Call {
                function: name.clone(),
                args: input
                    .split('\n')
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        crate::pyliteral::parse(l).unwrap_or_else(|| Value::String(l.to_string()))
                    })
                    .collect(),
                expected: output,
                atol: None,
            },
            None => TestCase::Stdio {
                stdin: input.to_string(),
                expected_stdout: output
                    .as_str()
                    .ok_or_else(|| bad("a stdin problem's output must be a string"))?
                    .to_string(),
                comparator: APPS_STDIO_COMPARATOR,
            },
        });
    }
    Ok(Problem {
        id,
        prompt: Some(with_starter(description, starter)),
        completion_prefix: String::new(),
        test_setup: fn_name.as_deref().map(solution_binding).unwrap_or_default(),
        tests,
        reference: None,
        language: "python".to_string(),
        limits: None,
    })
}

/// APPS wraps each call's expected value in a one-element list.
fn unwrap_single(v: Value) -> Value {
    match v {
        Value::Array(mut items) if items.len() == 1 => items.remove(0),
        other => other,
    }
}

/// A stdin or stdout value: a string, or a list of lines (joined with newlines).
fn text(f: &Fields, what: &str, v: Value) -> Result<String, DatasetError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Array(lines) if lines.iter().all(Value::is_string) => Ok(lines
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n")),
        other => Err(f.err(
            "input_output",
            format!("{what} must be a string, found {}", kind_of(&other)),
        )),
    }
}

/// The statement, then the starter code (when there is one) after a blank line.
fn with_starter(statement: &str, starter: &str) -> String {
    if starter.trim().is_empty() {
        statement.to_string()
    } else {
        format!("{statement}\n\n{starter}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::write;
    use serde_json::json;

    fn row(id: u64, io: Value) -> String {
        json!({
            "problem_id": id,
            "question": "Add.",
            "solutions": "[\"print(sum(map(int, input().split())))\"]",
            "input_output": io.to_string(),
            "starter_code": "",
        })
        .to_string()
    }

    #[test]
    fn stdio_and_call_rows() {
        let text = [
            row(1, json!({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})),
            row(
                2,
                json!({"fn_name": "add", "inputs": [[1, 2], [[1], [2]]], "outputs": [[3], [[1, 2]]]}),
            ),
        ]
        .join("\n");
        let (_d, p) = write("apps.jsonl", text.as_bytes());
        let load = load_apps(&p).unwrap();
        assert!(load.errors.is_empty(), "{:?}", load.errors);
        let [a, b] = &load.problems[..] else {
            panic!("two problems")
        };
        assert_eq!(a.id, "1");
        assert_eq!(
            a.reference.as_deref(),
            Some("print(sum(map(int, input().split())))")
        );
        assert!(
            matches!(&a.tests[1], TestCase::Stdio { stdin, expected_stdout, .. } if stdin == "3 4\n" && expected_stdout == "7\n")
        );
        assert!(
            matches!(&b.tests[0], TestCase::Call { function, args, expected, .. } if function == "add" && args == &vec![json!(1), json!(2)] && expected == &json!(3))
        );
        assert!(
            matches!(&b.tests[1], TestCase::Call { expected, .. } if expected == &json!([1, 2]))
        );
        assert!(b.test_setup.contains("Solution().add"));
    }

    #[test]
    fn malformed_rows_are_errors_and_the_rest_load() {
        let mut bad_json = json!({"problem_id": 2, "input_output": "{\"inputs\": [1,"});
        bad_json["question"] = json!("q");
        let text = [
            row(1, json!({"inputs": ["1\n"], "outputs": ["1\n"]})),
            bad_json.to_string(),
            row(3, json!({"inputs": ["1\n"], "outputs": []})),
            row(
                4,
                json!({"fn_name": "x; import os", "inputs": [[1]], "outputs": [[1]]}),
            ),
            row(5, json!({"fn_name": "f", "inputs": [1], "outputs": [[1]]})),
            row(6, json!({"inputs": [], "outputs": []})),
            row(7, json!({"inputs": ["2\n"], "outputs": [["2", "3"]]})),
        ]
        .join("\n");
        let (_d, p) = write("apps.jsonl", text.as_bytes());
        let load = load_apps(&p).unwrap();
        let ids: Vec<&str> = load.problems.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["1", "7"]);
        assert!(
            matches!(&load.problems[1].tests[0], TestCase::Stdio { expected_stdout, .. } if expected_stdout == "2\n3")
        );
        let errors: Vec<String> = load.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(
            errors[0].starts_with("")
                && errors[0].contains(":2: field \"input_output\": is not valid JSON"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].contains(":3:") && errors[1].contains("1 inputs but 0 outputs"),
            "{}",
            errors[1]
        );
        assert!(errors[2].contains("Python identifier"), "{}", errors[2]);
        assert!(
            errors[3].contains("inputs[0] must be the list of arguments"),
            "{}",
            errors[3]
        );
        assert!(errors[4].contains("has no tests"), "{}", errors[4]);
    }

    #[test]
    fn mapcoder_rows() {
        let call = json!({"name": "1", "id": 1, "description": "d", "difficulty": "introductory",
            "sample_io": [], "starter_code": "\ndef anagrams(word, words):\n\t",
            "test_list": [{"input": "abba\n['aabb', 'abcd']", "output": [["aabb"]]}]});
        let stdio = json!({"name": "2", "id": 2, "description": "d", "difficulty": "interview",
            "sample_io": [], "starter_code": "",
            "test_list": [{"input": "1 1\n.\n", "output": ["1\n"]}]});
        let text = format!("{call}\n{stdio}\n");
        let (_d, p) = write("selected.jsonl", text.as_bytes());
        let load = load_apps(&p).unwrap();
        assert!(load.errors.is_empty(), "{:?}", load.errors);
        assert!(
            matches!(&load.problems[0].tests[0], TestCase::Call { function, args, expected, .. }
            if function == "anagrams" && args == &vec![json!("abba"), json!(["aabb", "abcd"])] && expected == &json!(["aabb"]))
        );
        assert!(
            matches!(&load.problems[1].tests[0], TestCase::Stdio { stdin, expected_stdout, .. }
            if stdin == "1 1\n.\n" && expected_stdout == "1\n")
        );
    }

    #[test]
    fn taco_rows_without_ids_use_their_position() {
        let r = json!({"question": "q", "input_output": {"inputs": ["1\n"], "outputs": ["1\n"]}});
        let (_d, p) = write("taco.json", format!("[{r}, {r}]").as_bytes());
        let load = load_apps(&p).unwrap();
        let ids: Vec<&str> = load.problems.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["0", "1"]);
    }
}
