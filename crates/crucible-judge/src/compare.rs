use crucible_core::Comparator;
use serde_json::Value;

/// Compares a program's stdout with the expected output. Returns `Ok(())` on a match,
/// or `Err(reason)` with a short description of the first difference.
pub fn compare_stdout(cmp: &Comparator, actual: &str, expected: &str) -> Result<(), String> {
    match *cmp {
        Comparator::Exact => {
            if actual == expected {
                Ok(())
            } else {
                Err(first_difference(actual, expected))
            }
        }
        Comparator::Line => {
            let a = significant_lines(actual);
            let e = significant_lines(expected);
            // Compare counts first: zipping the two lists would let a prefix pass.
            for (i, (x, y)) in a.iter().zip(e.iter()).enumerate() {
                if x != y {
                    return Err(format!(
                        "line {}: expected {:?}, got {:?}",
                        i + 1,
                        clip(y),
                        clip(x)
                    ));
                }
            }
            if a.len() != e.len() {
                return Err(format!("expected {} lines, got {}", e.len(), a.len()));
            }
            Ok(())
        }
        Comparator::Token => compare_tokens(actual, expected, None),
        Comparator::Float { abs, rel } => compare_tokens(actual, expected, Some((abs, rel))),
        Comparator::Preset { ref name, atol } => match name.parse::<crate::ParityPreset>() {
            Ok(p) => p.compare(actual, expected, atol),
            Err(e) => Err(e.to_string()),
        },
        // A checker is a program: the judge runs it in the sandbox (see checker.rs).
        Comparator::Checker { .. } => {
            Err("a checker comparator is run by the judge, not compared as text".into())
        }
    }
}

/// Lines with trailing whitespace removed, without trailing empty lines.
fn significant_lines(s: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = s.lines().map(|l| l.trim_end()).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

fn compare_tokens(actual: &str, expected: &str, tol: Option<(f64, f64)>) -> Result<(), String> {
    let a: Vec<&str> = actual.split_whitespace().collect();
    let e: Vec<&str> = expected.split_whitespace().collect();
    for (i, (x, y)) in a.iter().zip(e.iter()).enumerate() {
        let equal = match tol {
            Some((abs, rel)) => tokens_close(x, y, abs, rel),
            None => x == y,
        };
        if !equal {
            return Err(format!(
                "token {}: expected {:?}, got {:?}",
                i + 1,
                clip(y),
                clip(x)
            ));
        }
    }
    if a.len() != e.len() {
        return Err(format!("expected {} tokens, got {}", e.len(), a.len()));
    }
    Ok(())
}

/// Equal as text, or both numbers within the absolute or relative tolerance.
fn tokens_close(a: &str, b: &str, abs: f64, rel: f64) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            let diff = (x - y).abs();
            diff <= abs || diff <= rel * y.abs()
        }
        _ => false,
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

fn first_difference(actual: &str, expected: &str) -> String {
    let pos = actual
        .bytes()
        .zip(expected.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| actual.len().min(expected.len()));
    let line = expected[..pos.min(expected.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1;
    format!(
        "differs at byte {pos} (line {line}); expected {} bytes, got {}",
        expected.len(),
        actual.len()
    )
}

/// JSON equality for call tests. Numbers compare by value (so `1` equals `1.0`, as in
/// Python), within `atol` when given; booleans never equal numbers (unlike Python's
/// `True == 1`, which would let a wrong type pass).
pub fn json_matches(actual: &Value, expected: &Value, atol: Option<f64>) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => match atol {
                Some(t) => ((x as f64) - (y as f64)).abs() <= t,
                None => x == y,
            },
            _ => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => match atol {
                    Some(t) => (x - y).abs() <= t || x == y,
                    None => x == y,
                },
                _ => false,
            },
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_matches(x, y, atol))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| json_matches(v, w, atol)))
        }
        _ => actual == expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact() {
        assert!(compare_stdout(&Comparator::Exact, "a\n", "a\n").is_ok());
        assert!(compare_stdout(&Comparator::Exact, "a", "a\n").is_err());
        assert!(compare_stdout(&Comparator::Exact, "A\n", "a\n").is_err());
    }

    #[test]
    fn line_ignores_trailing_whitespace_only() {
        let c = Comparator::Line;
        assert!(compare_stdout(&c, "1 2  \n3\n\n\n", "1 2\n3").is_ok());
        assert!(
            compare_stdout(&c, " 1 2\n3", "1 2\n3").is_err(),
            "leading space matters"
        );
        assert!(
            compare_stdout(&c, "1 2\n", "1 2\n3\n").is_err(),
            "a prefix must fail"
        );
        assert!(
            compare_stdout(&c, "1 2\n3\n4\n", "1 2\n3\n").is_err(),
            "extra output fails"
        );
        assert!(compare_stdout(&c, "", "").is_ok());
        assert!(compare_stdout(&c, "x", "").is_err());
    }

    #[test]
    fn token() {
        let c = Comparator::Token;
        assert!(compare_stdout(&c, "1   2\n\n3 ", "1 2 3").is_ok());
        assert!(compare_stdout(&c, "1 2", "1 2 3").is_err());
        assert!(compare_stdout(&c, "1.0", "1").is_err());
    }

    #[test]
    fn float() {
        let c = Comparator::Float {
            abs: 1e-6,
            rel: 1e-6,
        };
        assert!(compare_stdout(&c, "0.3333333", "0.33333333").is_ok());
        assert!(
            compare_stdout(&c, "1000000.5", "1000000.0").is_ok(),
            "relative"
        );
        assert!(compare_stdout(&c, "0.34", "0.33").is_err());
        assert!(compare_stdout(&c, "yes 1.0", "yes 1").is_ok());
        assert!(compare_stdout(&c, "nan", "nan").is_ok(), "identical text");
        assert!(compare_stdout(&c, "inf", "1e308").is_err());
        assert!(compare_stdout(&c, "1.0", "1.0 2.0").is_err());
    }

    #[test]
    fn json() {
        assert!(json_matches(&json!(1), &json!(1.0), None));
        assert!(json_matches(
            &json!([1, [2, "a"]]),
            &json!([1, [2, "a"]]),
            None
        ));
        assert!(!json_matches(&json!([1, 2]), &json!([1, 2, 3]), None));
        assert!(!json_matches(&json!(true), &json!(1), None));
        assert!(json_matches(&json!(0.1 + 0.2), &json!(0.3), Some(1e-9)));
        assert!(!json_matches(&json!(0.1 + 0.2), &json!(0.3), None));
        assert!(json_matches(&json!({"a": 1}), &json!({"a": 1.0}), None));
        assert!(!json_matches(&json!({"a": 1}), &json!({"b": 1}), None));
        assert!(!json_matches(&json!(null), &json!(0), None));
    }
}
