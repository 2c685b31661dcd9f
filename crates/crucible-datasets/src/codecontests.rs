//! DeepMind CodeContests (`deepmind/code_contests`): public, private and generated tests
//! as `{input: [...], output: [...]}`, and solutions by language.

use crate::contest::{kind_of, load_each, ProblemsLoad};
use crate::error::DatasetError;
use crate::fields::Fields;
use crate::read::records;
use crate::samples::SamplesLoad;
use crucible_core::{Comparator, Limits, Problem, Submission, TestCase};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The test groups, in the order their tests are numbered.
pub const TEST_GROUPS: [&str; 3] = ["public_tests", "private_tests", "generated_tests"];

/// CodeContests' language codes and the profiles that run them. Python 2 (1) and Java
/// (4) have no profile here, so their solutions are skipped.
fn language_of(v: &Value) -> Option<&'static str> {
    match v {
        Value::Number(n) => match n.as_u64()? {
            2 => Some("cpp"),
            3 => Some("python"),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_uppercase().as_str() {
            "CPP" => Some("cpp"),
            "PYTHON3" => Some("python"),
            _ => None,
        },
        _ => None,
    }
}

/// Loads CodeContests rows (JSONL, or one JSON array).
///
/// id = `name`, prompt = `description`; the tests are `public_tests`, then
/// `private_tests`, then `generated_tests` (each `{input: [...], output: [...]}`, any of
/// them absent), all stdio and compared with the `codecontests` parity preset. Limits
/// come from `time_limit` (`{seconds, nanos}`) and `memory_limit_bytes` when given. The
/// reference is the first Python 3 solution, else the first C++ one, and the problem's
/// language is that solution's (`python` when there is none). Records with mismatched
/// or empty test lists are reported in [`ProblemsLoad::errors`]; the others load.
pub fn load_codecontests(path: &Path) -> Result<ProblemsLoad, DatasetError> {
    load_each(path, "codecontests", "name", decode)
}

fn decode(f: &Fields, _ordinal: usize) -> Result<Problem, DatasetError> {
    let id = f.nonblank("name")?.to_string();
    let description = f.opt_string("description")?.unwrap_or_default();
    let mut tests = Vec::new();
    for group in TEST_GROUPS {
        let Some(v) = f.opt(group) else { continue };
        let (inputs, outputs) = io_lists(f, group, v)?;
        tests.extend(
            inputs
                .into_iter()
                .zip(outputs)
                .map(|(stdin, expected)| TestCase::Stdio {
                    stdin,
                    expected_stdout: expected,
                    comparator: Comparator::Preset {
                        name: "codecontests".into(),
                        atol: None,
                    },
                }),
        );
    }
    if tests.is_empty() {
        return Err(f.err("public_tests", "the problem has no tests in any group"));
    }
    let solutions = solutions(f, "solutions")?;
    let reference = solutions
        .iter()
        .find(|(l, _)| *l == "python")
        .or_else(|| solutions.iter().find(|(l, _)| *l == "cpp"))
        .cloned();
    Ok(Problem {
        id,
        prompt: Some(description.to_string()),
        completion_prefix: String::new(),
        test_setup: String::new(),
        tests,
        language: reference.as_ref().map_or("python", |r| r.0).to_string(),
        reference: reference.map(|r| r.1),
        limits: limits(f)?,
    })
}

/// The `input` and `output` lists of one test group, of equal length.
fn io_lists(
    f: &Fields,
    group: &str,
    v: &Value,
) -> Result<(Vec<String>, Vec<String>), DatasetError> {
    let Value::Object(obj) = v else {
        return Err(f.err(
            group,
            format!(
                "expected {{\"input\": [...], \"output\": [...]}}, found {}",
                kind_of(v)
            ),
        ));
    };
    let strings = |key: &str| -> Result<Vec<String>, DatasetError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str().map(str::to_string).ok_or_else(|| {
                        f.err(
                            group,
                            format!("{key}[{i}] must be a string, found {}", kind_of(s)),
                        )
                    })
                })
                .collect(),
            Some(other) => Err(f.err(
                group,
                format!("\"{key}\" must be a list, found {}", kind_of(other)),
            )),
        }
    };
    let (inputs, outputs) = (strings("input")?, strings("output")?);
    if inputs.len() != outputs.len() {
        return Err(f.err(
            group,
            format!("{} inputs but {} outputs", inputs.len(), outputs.len()),
        ));
    }
    Ok((inputs, outputs))
}

/// `{language: [code...], solution: [source...]}` as (profile, source) pairs in order,
/// keeping only languages that have a profile.
fn solutions(f: &Fields, field: &str) -> Result<Vec<(&'static str, String)>, DatasetError> {
    let Some(v) = f.opt(field) else {
        return Ok(Vec::new());
    };
    let bad = |why: String| f.err(field, why);
    let Value::Object(obj) = v else {
        return Err(bad(format!("expected an object, found {}", kind_of(v))));
    };
    let empty = Vec::new();
    let langs = match obj.get("language") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => &empty,
        Some(o) => {
            return Err(bad(format!(
                "\"language\" must be a list, found {}",
                kind_of(o)
            )))
        }
    };
    let sources = match obj.get("solution") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => &empty,
        Some(o) => {
            return Err(bad(format!(
                "\"solution\" must be a list, found {}",
                kind_of(o)
            )))
        }
    };
    if langs.len() != sources.len() {
        return Err(bad(format!(
            "{} languages but {} solutions",
            langs.len(),
            sources.len()
        )));
    }
    Ok(langs
        .iter()
        .zip(sources)
        .filter_map(|(l, s)| Some((language_of(l)?, s.as_str()?.to_string())))
        .filter(|(_, s)| !s.trim().is_empty())
        .collect())
}

/// Limits from `time_limit` and `memory_limit_bytes`; None when neither is given.
fn limits(f: &Fields) -> Result<Option<Limits>, DatasetError> {
    let mut limits = Limits::default();
    let mut any = false;
    if let Some(t) = f.opt("time_limit") {
        let secs = t.get("seconds").and_then(Value::as_u64).unwrap_or(0);
        let nanos = t.get("nanos").and_then(Value::as_u64).unwrap_or(0);
        let ms = secs.saturating_mul(1000).saturating_add(nanos / 1_000_000);
        if !t.is_object() {
            return Err(f.err(
                "time_limit",
                format!("expected {{seconds, nanos}}, found {}", kind_of(t)),
            ));
        }
        if ms > 0 {
            limits = limits.with_time_ms(ms);
            any = true;
        }
    }
    if let Some(m) = f.opt("memory_limit_bytes") {
        let bytes = m.as_u64().ok_or_else(|| {
            f.err(
                "memory_limit_bytes",
                format!("expected a number, found {}", kind_of(m)),
            )
        })?;
        if bytes > 0 {
            limits.memory_bytes = bytes;
            any = true;
        }
    }
    Ok(any.then_some(limits))
}

/// Every solution in a CodeContests file as a submission (`solutions`, or
/// `incorrect_solutions` when `incorrect` is set), in languages that have a profile,
/// numbered per task in file order. For checking a judge against the dataset: every
/// correct solution should be accepted, every incorrect one rejected. Records that do
/// not load as problems are skipped here (the problem loader reports them).
pub fn load_codecontests_solutions(
    path: &Path,
    incorrect: bool,
) -> Result<SamplesLoad, DatasetError> {
    let field = if incorrect {
        "incorrect_solutions"
    } else {
        "solutions"
    };
    let mut load = SamplesLoad::default();
    let mut next: HashMap<String, usize> = HashMap::new();
    for record in records(path, true)? {
        let Ok((pos, value)) = record else { continue };
        let f = Fields::new(path, pos, &value)?;
        let Ok(name) = f.nonblank("name") else {
            continue;
        };
        match solutions(&f, field) {
            Ok(list) => {
                for (language, completion) in list {
                    let n = next.entry(name.to_string()).or_insert(0);
                    load.submissions.push(Submission {
                        task_id: name.to_string(),
                        sample: *n,
                        language: language.to_string(),
                        completion,
                    });
                    *n += 1;
                }
            }
            Err(e) => load.errors.push(e),
        }
    }
    Ok(load)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::write;
    use serde_json::json;

    fn row() -> Value {
        json!({
            "name": "1A. Sum",
            "description": "Print a+b.",
            "public_tests": {"input": ["1 2\n"], "output": ["3\n"]},
            "private_tests": {"input": ["5 5\n"], "output": ["10\n"]},
            "generated_tests": {"input": ["0 0\n", "7 1\n"], "output": ["0\n", "8\n"]},
            "solutions": {"language": [4, 2, 3], "solution": ["class A {}", "int main(){}", "print(3)"]},
            "incorrect_solutions": {"language": [3], "solution": ["print(0)"]},
            "time_limit": {"seconds": 2, "nanos": 500000000},
            "memory_limit_bytes": 268435456,
        })
    }

    #[test]
    fn tests_in_group_order_with_limits_and_reference() {
        let (_d, p) = write("cc.jsonl", row().to_string().as_bytes());
        let load = load_codecontests(&p).unwrap();
        assert!(load.errors.is_empty());
        let pr = &load.problems[0];
        let stdins: Vec<&str> = pr
            .tests
            .iter()
            .map(|t| match t {
                TestCase::Stdio { stdin, .. } => stdin.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(stdins, ["1 2\n", "5 5\n", "0 0\n", "7 1\n"]);
        assert_eq!(pr.language, "python");
        assert_eq!(pr.reference.as_deref(), Some("print(3)"));
        let l = pr.limits.unwrap();
        assert_eq!((l.cpu_time_ms, l.memory_bytes), (2500, 268435456));
        let subs = load_codecontests_solutions(&p, false).unwrap().submissions;
        let langs: Vec<&str> = subs.iter().map(|s| s.language.as_str()).collect();
        assert_eq!(langs, ["cpp", "python"]);
        assert_eq!(subs[1].sample, 1);
        let bad = load_codecontests_solutions(&p, true).unwrap().submissions;
        assert_eq!(bad[0].completion, "print(0)");
    }

    #[test]
    fn bad_groups_are_that_problems_error() {
        let mut broken = row();
        broken["name"] = json!("2B");
        broken["private_tests"] = json!({"input": ["1\n"], "output": []});
        let mut empty = row();
        empty["name"] = json!("3C");
        for g in TEST_GROUPS {
            empty[g] = Value::Null;
        }
        let text = format!("{}\n{broken}\n{empty}\n", row());
        let (_d, p) = write("cc.jsonl", text.as_bytes());
        let load = load_codecontests(&p).unwrap();
        assert_eq!(load.problems.len(), 1);
        let e: Vec<String> = load.errors.iter().map(|e| e.to_string()).collect();
        assert!(
            e[0].contains(":2: field \"private_tests\": 1 inputs but 0 outputs"),
            "{e:?}"
        );
        assert!(e[1].contains(":3:") && e[1].contains("no tests"), "{e:?}");
    }
}
