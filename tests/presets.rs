//! Parity presets on the edge cases where harnesses disagree, through the real judge:
//! each case is one Python program judged against one expected output under every
//! preset (one test per preset). The table here is the one in README.md
//! ("Compiled languages and contest problems").

use crucible_core::{Comparator, Limits, Problem, Submission, TestCase, Verdict};
use crucible_judge::{Judge, JudgeOptions, ParityPreset, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};

/// Presets in README order.
const PRESETS: [ParityPreset; 6] = ParityPreset::ALL;

struct Case {
    what: &'static str,
    /// The program (Python).
    program: &'static str,
    expected: &'static str,
    /// Per preset, in `PRESETS` order: 'A' accepted, 'W' wrong answer, 'R' runtime error.
    want: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "trailing spaces and blank lines",
        program: "print('3   \\n\\n')",
        expected: "3\n",
        want: "WAAAAA",
    },
    Case {
        what: "no final newline",
        program: "print('3', end='')",
        expected: "3\n",
        want: "WAAAAA",
    },
    Case {
        what: "leading space",
        program: "print(' 3')",
        expected: "3\n",
        want: "WAAAAW",
    },
    Case {
        what: "two spaces between tokens",
        program: "print('1  2')",
        expected: "1 2\n",
        want: "WAAAWW",
    },
    Case {
        what: "float within 1e-8",
        program: "print('0.3333333')",
        expected: "0.33333333\n",
        want: "WAWAAW",
    },
    Case {
        what: "1.0 for 1",
        program: "print('1.0')",
        expected: "1\n",
        want: "WAAAAW",
    },
    Case {
        what: "float off by 1e-3",
        program: "print('0.334')",
        expected: "0.333\n",
        want: "WWWWWW",
    },
    Case {
        what: "case",
        program: "print('yes')",
        expected: "YES\n",
        want: "WWWAAW",
    },
    Case {
        what: "empty expected, program raises",
        program: "raise ValueError('no')",
        expected: "",
        want: "RRRRRR",
    },
    Case {
        what: "empty expected, program prints nothing",
        program: "pass",
        expected: "",
        want: "AAAAAA",
    },
    Case {
        what: "prefix of the expected output",
        program: "print(1)\nprint(2)",
        expected: "1\n2\n3\n",
        want: "WWWWWW",
    },
    Case {
        what: "extra output after the expected",
        program: "print(1)\nprint(2)\nprint(3)\nprint(4)",
        expected: "1\n2\n3\n",
        want: "WWWWWW",
    },
];

fn judge() -> Judge {
    Judge::new(
        ProcessSandbox::new(SandboxConfig::default()).expect("sandbox"),
        Profiles::load(None).expect("profiles"),
        JudgeOptions::default(),
    )
}

fn problem(expected: &str, comparators: Vec<Comparator>) -> Problem {
    Problem {
        id: "preset".into(),
        prompt: None,
        completion_prefix: String::new(),
        test_setup: String::new(),
        tests: comparators
            .into_iter()
            .map(|comparator| TestCase::Stdio {
                stdin: String::new(),
                expected_stdout: expected.into(),
                comparator,
            })
            .collect(),
        reference: None,
        language: "python".into(),
        limits: Some(Limits::default().with_time_ms(2_000)),
    }
}

fn verdicts(j: &Judge, p: &Problem, program: &str) -> Vec<Verdict> {
    let s = Submission {
        task_id: p.id.clone(),
        sample: 0,
        language: "python".into(),
        completion: program.into(),
    };
    j.judge(p, &s)
        .expect("judgeable")
        .tests
        .iter()
        .map(|t| t.verdict)
        .collect()
}

#[test]
fn every_preset_on_every_edge_case() {
    let j = judge();
    let comparators: Vec<Comparator> = PRESETS
        .iter()
        .map(|p| Comparator::Preset {
            name: p.name().into(),
            atol: None,
        })
        .collect();
    let mut failures = Vec::new();
    for case in CASES {
        let got = verdicts(
            &j,
            &problem(case.expected, comparators.clone()),
            case.program,
        );
        let got: String = got
            .iter()
            .map(|v| match v {
                Verdict::Accepted => 'A',
                Verdict::WrongAnswer => 'W',
                Verdict::RuntimeError => 'R',
                _ => '?',
            })
            .collect();
        if got != case.want {
            failures.push(format!("{}: want {} got {got}", case.what, case.want));
        }
    }
    assert!(
        failures.is_empty(),
        "presets {:?}\n{}",
        PRESETS.map(|p| p.name()),
        failures.join("\n")
    );
}

#[test]
fn evalplus_takes_the_problems_atol() {
    let j = judge();
    let with = |atol| Comparator::Preset {
        name: "evalplus".into(),
        atol,
    };
    let p = problem("1.0\n", vec![with(None), with(Some(0.01))]);
    assert_eq!(
        verdicts(&j, &p, "print(1.005)"),
        [Verdict::WrongAnswer, Verdict::Accepted]
    );
    // Integers compare exactly whatever the tolerance.
    let p = problem("100000000000000000\n", vec![with(Some(0.5))]);
    assert_eq!(
        verdicts(&j, &p, "print(100000000000000001)"),
        [Verdict::WrongAnswer]
    );
}

#[test]
fn presets_apply_to_compiled_programs_too() {
    let j = judge();
    let p = Problem {
        language: "c".into(),
        ..problem(
            "YES\n",
            vec![Comparator::Preset {
                name: "codecontests".into(),
                atol: None,
            }],
        )
    };
    let s = Submission {
        task_id: p.id.clone(),
        sample: 0,
        language: "c".into(),
        completion: "#include <stdio.h>\nint main(void) { puts(\"yes\"); return 0; }\n".into(),
    };
    assert_eq!(j.judge(&p, &s).unwrap().verdict, Verdict::Accepted);
}
