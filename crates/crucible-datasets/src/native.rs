//! Crucible's own problem format: one `crucible_core::Problem` per line, as its serde JSON.

use crate::dataset::load_problems;
use crate::error::DatasetError;
use crate::fields::Fields;
use crate::humaneval::is_identifier;
use crucible_core::{Comparator, Limits, Problem, TestCase};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// The keys of `Problem`'s JSON, used only to name the field at fault once serde has
/// rejected a record (a test checks the list against crucible-core).
const PROBLEM_FIELDS: [&str; 8] = [
    "id",
    "prompt",
    "completion_prefix",
    "test_setup",
    "tests",
    "reference",
    "language",
    "limits",
];

/// Loads a Crucible problem file: JSONL (optionally gzip-compressed), one
/// `crucible_core::Problem` per line, blank lines allowed, in file order.
///
/// Beyond what serde checks, a problem must have a non-blank id and language, at least
/// one test, no blank `reference`, assert code or call function, a Python-identifier
/// `entry_point`, and non-negative finite tolerances. Returns the first error, naming
/// the line and field (`tests[2]` for the third test); see [`crate::load`] for why a bad
/// record fails the file.
pub fn load_crucible(path: &Path) -> Result<Vec<Problem>, DatasetError> {
    load_problems(path, "crucible", "id", false, decode)
}

fn decode(f: &Fields) -> Result<Problem, DatasetError> {
    let problem = Problem::deserialize(f.value).map_err(|e| diagnose(f, &e))?;
    validate(&problem).map_err(|(field, message)| f.err(&field, message))?;
    Ok(problem)
}

/// Finds the field that made serde reject the record, by deserializing each field alone;
/// serde's own message says what is wrong but not where.
fn diagnose(f: &Fields, whole: &serde_json::Error) -> DatasetError {
    for required in ["id", "tests"] {
        if f.raw(required).is_none() {
            return f.err(required, "missing");
        }
    }
    fn check<'a, T: Deserialize<'a>>(v: &'a Value) -> Option<String> {
        T::deserialize(v).err().map(|e| e.to_string())
    }
    for field in PROBLEM_FIELDS {
        let Some(v) = f.raw(field) else { continue };
        let problem = match field {
            "id" | "completion_prefix" | "test_setup" | "language" => check::<String>(v),
            "prompt" | "reference" => check::<Option<String>>(v),
            "limits" => check::<Option<Limits>>(v),
            "tests" => match v {
                Value::Array(tests) => {
                    if let Some((i, e)) = tests
                        .iter()
                        .enumerate()
                        .find_map(|(i, t)| check::<TestCase>(t).map(|e| (i, e)))
                    {
                        return f.err(&format!("tests[{i}]"), e);
                    }
                    None
                }
                _ => check::<Vec<TestCase>>(v),
            },
            _ => None,
        };
        if let Some(message) = problem {
            return f.err(field, message);
        }
    }
    if let Some(key) = f.unknown_key(&PROBLEM_FIELDS) {
        return f.err(key, "unknown field");
    }
    DatasetError::at(f.path, f.pos, None, whole.to_string())
}

/// Checks what serde cannot: values that parse but cannot mean anything useful. Returns
/// the field at fault and why.
fn validate(p: &Problem) -> Result<(), (String, String)> {
    fn fail(field: &str, message: &str) -> Result<(), (String, String)> {
        Err((field.to_string(), message.to_string()))
    }
    const BLANK: &str = "is empty or only whitespace";
    if p.id.trim().is_empty() {
        return fail("id", BLANK);
    }
    if p.language.trim().is_empty() {
        return fail("language", BLANK);
    }
    if p.reference.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return fail("reference", BLANK);
    }
    if p.tests.is_empty() {
        return fail("tests", "a problem needs at least one test");
    }
    let tolerance_ok = |t: f64| t.is_finite() && t >= 0.0;
    for (i, test) in p.tests.iter().enumerate() {
        let at = |sub: &str| format!("tests[{i}].{sub}");
        match test {
            TestCase::Stdio {
                comparator: Comparator::Float { abs, rel },
                ..
            } if !tolerance_ok(*abs) || !tolerance_ok(*rel) => {
                return fail(&at("comparator"), "tolerances must be finite and >= 0");
            }
            TestCase::Call { function, .. } if function.trim().is_empty() => {
                return fail(&at("function"), BLANK);
            }
            TestCase::Call {
                atol: Some(atol), ..
            } if !tolerance_ok(*atol) => {
                return fail(&at("atol"), "must be finite and >= 0");
            }
            TestCase::Assert { code, .. } if code.trim().is_empty() => {
                return fail(&at("code"), BLANK);
            }
            TestCase::Assert {
                entry_point: Some(name),
                ..
            } if !is_identifier(name) => {
                return fail(&at("entry_point"), "is not a Python identifier");
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{gzip, write};
    use serde_json::json;

    fn full_problem() -> Problem {
        Problem {
            id: "p1".into(),
            prompt: Some("Add.".into()),
            completion_prefix: "def add(a, b):\n".into(),
            test_setup: "import math".into(),
            tests: vec![
                TestCase::Stdio {
                    stdin: "1 2\n".into(),
                    expected_stdout: "3\n".into(),
                    comparator: Comparator::Float {
                        abs: 1e-3,
                        rel: 0.0,
                    },
                },
                TestCase::Call {
                    function: "add".into(),
                    args: vec![json!(1), json!(2)],
                    expected: json!(3),
                    atol: Some(1e-9),
                },
                TestCase::Assert {
                    code: "assert add(1, 2) == 3".into(),
                    entry_point: None,
                },
            ],
            reference: Some("    return a + b\n".into()),
            language: "python".into(),
            limits: Some(Limits::default().with_time_ms(2_000)),
        }
    }

    #[test]
    fn field_list_matches_core() {
        let v = serde_json::to_value(full_problem()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut known = PROBLEM_FIELDS.to_vec();
        known.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, known);
    }

    #[test]
    fn round_trips_serde_json() {
        let p = full_problem();
        let mut q = p.clone();
        q.id = "p2".into();
        let body = format!(
            "{}\n\n{}\n",
            serde_json::to_string(&p).unwrap(),
            serde_json::to_string(&q).unwrap()
        );
        let (_d, path) = write("c.jsonl", body.as_bytes());
        assert_eq!(load_crucible(&path).unwrap(), vec![p.clone(), q.clone()]);
        let (_d2, gz) = write("c.jsonl.gz", &gzip(body.as_bytes()));
        assert_eq!(load_crucible(&gz).unwrap(), vec![p, q]);
    }

    #[test]
    fn minimal_line_gets_core_defaults() {
        let (_d, path) = write(
            "c.jsonl",
            br#"{"id": "m", "tests": [{"kind": "stdio", "expected_stdout": "hi\n"}]}"#,
        );
        let p = &load_crucible(&path).unwrap()[0];
        assert_eq!(p.language, "python");
        assert_eq!(p.completion_prefix, "");
        assert_eq!(p.reference, None);
    }

    /// The error for one record, without the temp directory.
    fn error_of(records: &[Value]) -> String {
        let body: String = records.iter().map(|v| format!("{v}\n")).collect();
        let (_d, p) = write("c.jsonl", body.as_bytes());
        let e = load_crucible(&p).unwrap_err();
        let dir = format!("{}/", p.parent().unwrap().display());
        e.to_string().strip_prefix(&dir).unwrap().to_string()
    }

    fn good() -> Value {
        serde_json::to_value(full_problem()).unwrap()
    }

    #[test]
    fn serde_errors_name_the_field() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("tests");
        assert_eq!(error_of(&[v]), r#"c.jsonl:1: field "tests": missing"#);

        let mut v = good();
        v["id"] = json!(7);
        assert_eq!(
            error_of(&[good(), v]),
            r#"c.jsonl:2: field "id": invalid type: integer `7`, expected a string"#
        );

        let mut v = good();
        v["tests"][1] = json!({"kind": "call", "args": [1]});
        assert_eq!(
            error_of(&[v]),
            r#"c.jsonl:1: field "tests[1]": missing field `function`"#
        );

        let mut v = good();
        v["tests"][0]["kind"] = json!("stdoi");
        let e = error_of(&[v]);
        assert!(
            e.starts_with(r#"c.jsonl:1: field "tests[0]": unknown variant `stdoi`"#),
            "{e}"
        );

        let mut v = good();
        v["tests"] = json!({"kind": "stdio"});
        let e = error_of(&[v]);
        assert!(
            e.starts_with(r#"c.jsonl:1: field "tests": invalid type: map"#),
            "{e}"
        );

        let mut v = good();
        v["limits"] = json!({"cpu_ms": 5});
        let e = error_of(&[v]);
        assert!(
            e.starts_with(r#"c.jsonl:1: field "limits": unknown field `cpu_ms`"#),
            "{e}"
        );

        let mut v = good();
        v["tset_setup"] = json!("");
        assert_eq!(
            error_of(&[v]),
            r#"c.jsonl:1: field "tset_setup": unknown field"#
        );

        assert_eq!(
            error_of(&[json!(["not", "an", "object"])]),
            "c.jsonl:1: expected a JSON object, found an array"
        );
    }

    #[test]
    fn validation_errors_name_the_field() {
        let cases = [
            (
                "/id",
                json!(" "),
                r#"field "id": is empty or only whitespace"#,
            ),
            (
                "/language",
                json!(""),
                r#"field "language": is empty or only whitespace"#,
            ),
            (
                "/reference",
                json!("\n"),
                r#"field "reference": is empty or only whitespace"#,
            ),
            (
                "/tests",
                json!([]),
                r#"field "tests": a problem needs at least one test"#,
            ),
            (
                "/tests/2/code",
                json!("  "),
                r#"field "tests[2].code": is empty or only whitespace"#,
            ),
            (
                "/tests/2/entry_point",
                json!("check(add)"),
                r#"field "tests[2].entry_point": is not a Python identifier"#,
            ),
            (
                "/tests/1/function",
                json!(""),
                r#"field "tests[1].function": is empty or only whitespace"#,
            ),
            (
                "/tests/1/atol",
                json!(-1.0),
                r#"field "tests[1].atol": must be finite and >= 0"#,
            ),
            (
                "/tests/0/comparator/rel",
                json!(-0.5),
                r#"field "tests[0].comparator": tolerances must be finite and >= 0"#,
            ),
        ];
        for (pointer, value, want) in cases {
            let mut v = good();
            *v.pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{pointer}")) = value;
            assert_eq!(error_of(&[v]), format!("c.jsonl:1: {want}"), "{pointer}");
        }
    }

    #[test]
    fn duplicate_ids_name_both_lines() {
        assert_eq!(
            error_of(&[good(), good()]),
            r#"c.jsonl:2: field "id": duplicate problem id "p1" (first at line 1)"#
        );
    }

    #[test]
    fn comment_lines_are_not_allowed() {
        let body = format!("// a comment\n{}\n", good());
        let (_d, p) = write("c.jsonl", body.as_bytes());
        let e = load_crucible(&p).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.starts_with("invalid JSON"), "{e}");
    }
}
