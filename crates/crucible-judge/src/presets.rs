//! Parity presets: the output-comparison rules of common harnesses, by name, so a program
//! scores under Crucible as it does there (`{"kind": "preset", "name": "livecodebench"}`).
//!
//! Each preset follows its harness on whitespace, case and number formatting. Where a
//! harness has a known defect that passes wrong programs, the preset does not copy it:
//! a program that exits with an error fails whatever the expected output (the judge
//! looks at the run before any comparison), output that is only a prefix of the
//! expected output fails, and so does extra output after it.

use std::fmt;
use std::str::FromStr;

/// A named set of comparison rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParityPreset {
    /// OpenAI human-eval: results are compared with `==`, nothing normalised. As stdout:
    /// byte-for-byte equality.
    HumanEval,
    /// EvalPlus: values equal, floats within `atol` (the problem's, else 1e-6) plus
    /// 1e-7 relative (numpy's `allclose` rule); integers exact. As stdout: whitespace
    /// tokens, each compared as a value.
    EvalPlus,
    /// LiveCodeBench: output and each line stripped, same number of lines, each line
    /// equal as text or as a list of exact decimals (`1.0` equals `1`, `0.30` equals
    /// `0.3`, no tolerance).
    LiveCodeBench,
    /// DeepMind CodeContests: whitespace-separated tokens, case-insensitive, numbers
    /// within an absolute 1e-5.
    CodeContests,
    /// SandboxFusion: output stripped, lines stripped and lower-cased, each line equal
    /// as text or as one number within a relative 1e-5.
    SandboxFusion,
    /// verl's prime_code reward: equal after removing trailing whitespace from the whole
    /// output; no float tolerance, case-sensitive.
    VerlPrimeCode,
}

impl ParityPreset {
    /// Every preset, in the order of the README table.
    pub const ALL: [ParityPreset; 6] = [
        ParityPreset::HumanEval,
        ParityPreset::EvalPlus,
        ParityPreset::LiveCodeBench,
        ParityPreset::CodeContests,
        ParityPreset::SandboxFusion,
        ParityPreset::VerlPrimeCode,
    ];

    /// The name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ParityPreset::HumanEval => "human-eval",
            ParityPreset::EvalPlus => "evalplus",
            ParityPreset::LiveCodeBench => "livecodebench",
            ParityPreset::CodeContests => "codecontests",
            ParityPreset::SandboxFusion => "sandboxfusion",
            ParityPreset::VerlPrimeCode => "verl-prime-code",
        }
    }

    /// Every preset name, comma-separated (for error messages).
    pub fn names() -> String {
        ParityPreset::ALL.map(ParityPreset::name).join(", ")
    }

    /// Compares `actual` stdout with `expected` under this preset. `atol` is the
    /// problem's absolute tolerance (used by `evalplus`). Returns the first difference.
    pub fn compare(self, actual: &str, expected: &str, atol: Option<f64>) -> Result<(), String> {
        match self {
            ParityPreset::HumanEval => {
                if actual == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "output differs (human-eval compares exactly): expected {}, got {}",
                        quote(expected),
                        quote(actual)
                    ))
                }
            }
            ParityPreset::EvalPlus => tokens(actual, expected, |a, e| {
                evalplus_equal(a, e, atol.unwrap_or(0.0))
            }),
            ParityPreset::LiveCodeBench => livecodebench(actual, expected),
            ParityPreset::CodeContests => tokens(actual, expected, |a, e| {
                a.eq_ignore_ascii_case(e) || numbers_within(a, e, 1e-5, 0.0)
            }),
            ParityPreset::SandboxFusion => sandboxfusion(actual, expected),
            ParityPreset::VerlPrimeCode => {
                if actual.trim_end() == expected.trim_end() {
                    Ok(())
                } else {
                    Err(format!(
                        "output differs after removing trailing whitespace: expected {}, got {}",
                        quote(expected.trim_end()),
                        quote(actual.trim_end())
                    ))
                }
            }
        }
    }
}

impl fmt::Display for ParityPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A preset name no preset has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown comparator preset {0:?} (known: {names})", names = ParityPreset::names())]
pub struct UnknownPreset(pub String);

impl FromStr for ParityPreset {
    type Err = UnknownPreset;

    /// Parses a name, ignoring case and treating `_` as `-`; `humaneval` and
    /// `prime_code` are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.trim().to_ascii_lowercase().replace('_', "-");
        let found = match n.as_str() {
            "humaneval" => Some(ParityPreset::HumanEval),
            "prime-code" | "verl" => Some(ParityPreset::VerlPrimeCode),
            "code-contests" => Some(ParityPreset::CodeContests),
            "sandbox-fusion" => Some(ParityPreset::SandboxFusion),
            _ => ParityPreset::ALL.into_iter().find(|p| p.name() == n),
        };
        found.ok_or_else(|| UnknownPreset(s.to_string()))
    }
}

/// Parses a comparator as given on a command line: a preset name, `exact`, `line`,
/// `token`, `float` (default tolerances), or a comparator's JSON
/// (`{"kind": "float", "abs": 1e-4}`). Preset names are checked here.
pub fn parse_comparator(s: &str) -> Result<crucible_core::Comparator, String> {
    use crucible_core::Comparator;
    let t = s.trim();
    let c = if t.starts_with('{') {
        serde_json::from_str::<Comparator>(t).map_err(|e| format!("not a comparator: {e}"))?
    } else {
        match t.to_ascii_lowercase().as_str() {
            "exact" => Comparator::Exact,
            "line" => Comparator::Line,
            "token" => Comparator::Token,
            "float" => Comparator::Float {
                abs: 1e-6,
                rel: 1e-6,
            },
            _ => Comparator::Preset {
                name: t
                    .parse::<ParityPreset>()
                    .map_err(|e| e.to_string())?
                    .name()
                    .into(),
                atol: None,
            },
        }
    };
    if let Comparator::Preset { name, .. } = &c {
        name.parse::<ParityPreset>().map_err(|e| e.to_string())?;
    }
    Ok(c)
}

/// Whitespace tokens, pairwise `equal`, same count (checked last so the first differing
/// token is what is reported, but a prefix never passes).
fn tokens(actual: &str, expected: &str, equal: impl Fn(&str, &str) -> bool) -> Result<(), String> {
    let a: Vec<&str> = actual.split_whitespace().collect();
    let e: Vec<&str> = expected.split_whitespace().collect();
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        if !equal(x, y) {
            return Err(format!(
                "token {}: expected {}, got {}",
                i + 1,
                quote(y),
                quote(x)
            ));
        }
    }
    if a.len() != e.len() {
        return Err(format!("expected {} tokens, got {}", e.len(), a.len()));
    }
    Ok(())
}

/// Both finite numbers, within `abs` or `rel` of the expected value.
fn numbers_within(a: &str, e: &str, abs: f64, rel: f64) -> bool {
    match (a.parse::<f64>(), e.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            let d = (x - y).abs();
            d <= abs || d <= rel * y.abs()
        }
        _ => false,
    }
}

/// EvalPlus's value equality on one token: integers exactly; other numbers equal, or
/// within `atol + 1e-7 * |expected|` where `atol` is at least 1e-6 (EvalPlus enforces
/// that much for float results); anything else as text.
fn evalplus_equal(a: &str, e: &str, atol: f64) -> bool {
    if a == e {
        return true;
    }
    if let (Ok(x), Ok(y)) = (a.parse::<i128>(), e.parse::<i128>()) {
        return x == y;
    }
    match (a.parse::<f64>(), e.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            x == y || (x - y).abs() <= atol.max(1e-6) + 1e-7 * y.abs()
        }
        _ => false,
    }
}

/// LiveCodeBench's rule for stdin problems.
fn livecodebench(actual: &str, expected: &str) -> Result<(), String> {
    let a: Vec<&str> = actual.trim().split('\n').map(str::trim).collect();
    let e: Vec<&str> = expected.trim().split('\n').map(str::trim).collect();
    if a.len() != e.len() {
        return Err(format!("expected {} lines, got {}", e.len(), a.len()));
    }
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        if x == y {
            continue;
        }
        let same = match (decimal_line(x), decimal_line(y)) {
            (Some(p), Some(q)) => p == q,
            _ => false,
        };
        if !same {
            return Err(format!(
                "line {}: expected {}, got {}",
                i + 1,
                quote(y),
                quote(x)
            ));
        }
    }
    Ok(())
}

/// SandboxFusion's rule: stripped, lower-cased lines, each equal or one number within
/// a relative 1e-5. Unlike SandboxFusion, the line counts must match.
fn sandboxfusion(actual: &str, expected: &str) -> Result<(), String> {
    let lines = |s: &str| -> Vec<String> {
        s.trim()
            .split('\n')
            .map(|l| l.trim().to_lowercase())
            .collect()
    };
    let a = lines(actual);
    let e = lines(expected);
    if a.len() != e.len() {
        return Err(format!("expected {} lines, got {}", e.len(), a.len()));
    }
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        if x != y && !numbers_within(x, y, 0.0, 1e-5) {
            return Err(format!(
                "line {}: expected {}, got {}",
                i + 1,
                quote(y),
                quote(x)
            ));
        }
    }
    Ok(())
}

/// An exact decimal as (negative, significant digits without leading or trailing
/// zeros, exponent of the last digit), so `1.50`, `1.5` and `15e-1` are one value.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

/// Every whitespace token of `line` as a decimal, or None when one is not a number.
fn decimal_line(line: &str) -> Option<Vec<Decimal>> {
    line.split_whitespace().map(decimal).collect()
}

fn decimal(token: &str) -> Option<Decimal> {
    let (negative, rest) = match token.as_bytes().first()? {
        b'-' => (true, &token[1..]),
        b'+' => (false, &token[1..]),
        _ => (false, token),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = format!("{int}{frac}");
    let mut exponent = exp.checked_sub(i64::try_from(frac.len()).ok()?)?;
    let trimmed = digits.trim_start_matches('0').len();
    digits.drain(..digits.len() - trimmed);
    while digits.ends_with('0') {
        digits.pop();
        exponent += 1;
    }
    if digits.is_empty() {
        // Zero, whatever its sign or exponent.
        return Some(Decimal {
            negative: false,
            digits,
            exponent: 0,
        });
    }
    Some(Decimal {
        negative,
        digits,
        exponent,
    })
}

fn quote(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let t: String = s.chars().take(MAX).collect();
        format!("{t:?}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in ParityPreset::ALL {
            assert_eq!(p.name().parse::<ParityPreset>().unwrap(), p);
        }
        assert_eq!(
            "Verl_Prime_Code".parse::<ParityPreset>().unwrap(),
            ParityPreset::VerlPrimeCode
        );
        assert_eq!(
            "humaneval".parse::<ParityPreset>().unwrap(),
            ParityPreset::HumanEval
        );
        let e = "fuzzy".parse::<ParityPreset>().unwrap_err().to_string();
        assert!(e.contains("fuzzy") && e.contains("livecodebench"), "{e}");
    }

    #[test]
    fn comparator_flags() {
        use crucible_core::Comparator;
        assert_eq!(parse_comparator("token").unwrap(), Comparator::Token);
        assert_eq!(
            parse_comparator("LiveCodeBench").unwrap(),
            Comparator::Preset {
                name: "livecodebench".into(),
                atol: None
            }
        );
        assert!(matches!(
            parse_comparator(r#"{"kind":"float","abs":0.01}"#).unwrap(),
            Comparator::Float { abs, .. } if abs == 0.01
        ));
        assert!(parse_comparator("fuzzy").unwrap_err().contains("fuzzy"));
        assert!(parse_comparator(r#"{"kind":"preset","name":"fuzzy"}"#).is_err());
        assert!(parse_comparator(r#"{"kind":"nope"}"#).is_err());
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal("1.50"), decimal("1.5"));
        assert_eq!(decimal("15e-1"), decimal("1.5"));
        assert_eq!(decimal("-0.0"), decimal("0"));
        assert_eq!(decimal("100"), decimal("1e2"));
        assert_ne!(decimal("0.3333333"), decimal("0.33333333"));
        assert_eq!(decimal("abc"), None);
        assert_eq!(decimal("."), None);
        assert_eq!(decimal("1.2.3"), None);
    }
}
