//! Assert tests the host judges itself, without a checker process.
//!
//! Most HumanEval and MBPP test units have the form `assert f(LITERALS) == LITERAL`
//! (135 of 164 HumanEval problems and 928 of 974 MBPP problems have nothing else). For
//! such a problem the checker describes every unit once (`checker.py --describe`: the
//! call, its arguments in the channel codec, the expected value, the assert's message);
//! after that the host sends the calls to the program itself, reads the answers and
//! compares them, which saves a second sandboxed process per submission. The program's
//! side is the same harness either way, and it never sees an expected value.
//!
//! The comparison is Python's `==`, written by hand (no crate models it) for exactly the
//! values a plan may expect: None, bool, str, ints that fit 64 bits, floats below 2**53
//! (and infinities), and lists and tuples of these. Whatever the program answers is
//! decoded from the codec; a value of any other kind (a dict, a set, a big int, a handle,
//! an iterator) equals none of those, as in Python.

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// One test unit as the host judges it.
#[derive(Debug, Clone)]
pub(crate) enum HostUnit {
    /// `assert True`: passes without asking the program anything.
    Pass { id: String },
    /// `assert f(args) == expected[, message]`; the call is the plan's next one.
    Call {
        id: String,
        expected: PyValue,
        message: Option<String>,
    },
}

impl HostUnit {
    pub(crate) fn id(&self) -> &str {
        match self {
            HostUnit::Pass { id } | HostUnit::Call { id, .. } => id,
        }
    }
}

/// A problem's harnessed tests as the host judges them: the request to send (an init
/// naming the functions, then every call in one batch, framed) and the units in order.
#[derive(Debug, Clone)]
pub(crate) struct HostPlan {
    request: Vec<u8>,
    pub units: Vec<HostUnit>,
}

/// A plain value as the codec carries it, reduced to what `==` needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Complex(f64, f64),
    Str(String),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    /// Any other value (a dict, a set, bytes, a big int, a handle, ...): equal to none
    /// of the values a plan expects.
    Other,
}

impl PyValue {
    /// Decodes a codec value (see harness/channel.py).
    pub(crate) fn decode(v: &Value) -> PyValue {
        match v {
            Value::Null => PyValue::None,
            Value::Bool(b) => PyValue::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) if !n.is_f64() => PyValue::Int(i),
                (_, Some(f)) if n.is_f64() => PyValue::Float(f),
                _ => PyValue::Other,
            },
            Value::String(s) => PyValue::Str(s.clone()),
            Value::Array(items) => PyValue::List(items.iter().map(PyValue::decode).collect()),
            Value::Object(o) => match (o.get("$").and_then(Value::as_str), o.get("v")) {
                (Some("t"), Some(Value::Array(items))) => {
                    PyValue::Tuple(items.iter().map(PyValue::decode).collect())
                }
                (Some("f"), Some(Value::String(s))) => match s.as_str() {
                    "nan" => PyValue::Float(f64::NAN),
                    "inf" => PyValue::Float(f64::INFINITY),
                    "-inf" => PyValue::Float(f64::NEG_INFINITY),
                    _ => PyValue::Other,
                },
                (Some("c"), Some(Value::Array(parts))) if parts.len() == 2 => {
                    match (
                        PyValue::decode(&parts[0]).as_float(),
                        PyValue::decode(&parts[1]).as_float(),
                    ) {
                        (Some(re), Some(im)) => PyValue::Complex(re, im),
                        _ => PyValue::Other,
                    }
                }
                _ => PyValue::Other,
            },
        }
    }

    fn as_float(&self) -> Option<f64> {
        match self {
            PyValue::Float(f) => Some(*f),
            PyValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The value as a number, if it is one (bool counts as int, as in Python).
    fn number(&self) -> Option<Number> {
        match self {
            PyValue::Bool(b) => Some(Number::Int(i64::from(*b))),
            PyValue::Int(i) => Some(Number::Int(*i)),
            PyValue::Float(f) => Some(Number::Float(*f)),
            PyValue::Complex(re, im) => Some(Number::Complex(*re, *im)),
            _ => None,
        }
    }

    /// Python's `self == other` for these values.
    pub(crate) fn py_eq(&self, other: &PyValue) -> bool {
        if let (Some(a), Some(b)) = (self.number(), other.number()) {
            return a.eq(b);
        }
        match (self, other) {
            (PyValue::None, PyValue::None) => true,
            (PyValue::Str(a), PyValue::Str(b)) => a == b,
            (PyValue::List(a), PyValue::List(b)) | (PyValue::Tuple(a), PyValue::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.py_eq(y))
            }
            _ => false,
        }
    }
}

#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
    Complex(f64, f64),
}

impl Number {
    fn eq(self, other: Number) -> bool {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (Number::Int(i), Number::Float(f)) | (Number::Float(f), Number::Int(i)) => {
                int_eq_float(i, f)
            }
            (Number::Float(a), Number::Float(b)) => a == b,
            (Number::Complex(re, im), other) | (other, Number::Complex(re, im)) => match other {
                Number::Complex(re2, im2) => re == re2 && im == im2,
                Number::Int(i) => im == 0.0 && int_eq_float(i, re),
                Number::Float(f) => im == 0.0 && re == f,
            },
        }
    }
}

/// Python compares an int with a float exactly, not by converting the int.
fn int_eq_float(i: i64, f: f64) -> bool {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if !f.is_finite() || f.fract() != 0.0 || !(-TWO_63..TWO_63).contains(&f) {
        return false;
    }
    f as i64 == i
}

/// A plan from the checker's description of one problem (an entry of the JSON list
/// `checker.py --describe` writes), or None when the problem needs the checker.
pub(crate) fn plan_from(described: &Value) -> Option<HostPlan> {
    let units = described.as_array()?;
    let mut names: Vec<String> = Vec::new();
    let mut calls = Vec::new();
    let mut out = Vec::with_capacity(units.len());
    for u in units {
        let id = u.get("id")?.as_str()?.to_string();
        if u.get("pass").and_then(Value::as_bool) == Some(true) {
            out.push(HostUnit::Pass { id });
            continue;
        }
        let f = u.get("f")?.as_str()?.to_string();
        if !names.contains(&f) {
            names.push(f.clone());
        }
        calls.push(serde_json::json!({"f": f, "a": u.get("a")?.clone()}));
        out.push(HostUnit::Call {
            id,
            expected: PyValue::decode(u.get("x")?),
            message: u.get("m").and_then(Value::as_str).map(str::to_string),
        });
    }
    let mut request = frame(&serde_json::json!({"op": "init", "names": names, "setup": ""}));
    if !calls.is_empty() {
        request.extend(frame(&serde_json::json!({"op": "calls", "c": calls})));
    }
    Some(HostPlan {
        request,
        units: out,
    })
}

/// A message of the channel: a 4-byte big-endian length, then JSON.
fn frame(v: &Value) -> Vec<u8> {
    let body = v.to_string().into_bytes();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend(body);
    out
}

/// Largest answer accepted, as the checker's (harness/channel.py MESSAGE_MAX).
const MESSAGE_MAX: usize = 64 << 20;

/// What judging one unit found, in the checker's terms.
#[derive(Debug, Clone)]
pub(crate) struct UnitResult {
    pub id: String,
    /// "pass", "fail", "error" or "lost".
    pub status: &'static str,
    pub message: Option<String>,
    pub exc: Option<String>,
    pub wall_ms: u64,
}

/// What the host found: a fatal init (compile or program error: kind, message,
/// exception type), or a result per unit.
pub(crate) enum HostOutcome {
    Fatal {
        kind: String,
        message: String,
        exc: String,
    },
    Units(Vec<UnitResult>),
}

/// Sends the plan's request to the program on `channel`, reads its answers and judges
/// each unit. Waits at most until `deadline` for any answer (the program's own limits
/// end it before then); a program that goes away leaves its remaining units "lost".
pub(crate) fn run(plan: &HostPlan, mut channel: UnixStream, deadline: Instant) -> HostOutcome {
    let mut results = Vec::with_capacity(plan.units.len());
    let lost = |from: usize, results: &mut Vec<UnitResult>, status, message: &str| {
        for u in &plan.units[from..] {
            results.push(UnitResult {
                id: u.id().to_string(),
                status,
                message: Some(message.to_string()),
                exc: None,
                wall_ms: 0,
            });
        }
    };
    if channel.write_all(&plan.request).is_err() {
        lost(
            0,
            &mut results,
            "lost",
            "the program ended before answering",
        );
        return HostOutcome::Units(results);
    }
    let mut last = Instant::now();
    match read_message(&mut channel, deadline) {
        Ok(init) => {
            if let Some(kind) = init.get("fatal").and_then(Value::as_str) {
                if kind == "compile_error" || kind == "program_error" {
                    let text = |k: &str| init.get(k).and_then(Value::as_str).unwrap_or("");
                    return HostOutcome::Fatal {
                        kind: kind.to_string(),
                        message: text("m").to_string(),
                        exc: text("e").to_string(),
                    };
                }
            }
            if !init.get("have").is_some_and(Value::is_object) {
                let m = "the program broke the checker protocol: bad init";
                lost(0, &mut results, "error", m);
                return HostOutcome::Units(results);
            }
        }
        Err(Failure::Lost) => {
            lost(
                0,
                &mut results,
                "lost",
                "the program ended before answering",
            );
            return HostOutcome::Units(results);
        }
        Err(Failure::Broken(why)) => {
            lost(0, &mut results, "error", &broken(&why));
            return HostOutcome::Units(results);
        }
    }
    for (i, unit) in plan.units.iter().enumerate() {
        let HostUnit::Call {
            id,
            expected,
            message,
        } = unit
        else {
            results.push(UnitResult {
                id: unit.id().to_string(),
                status: "pass",
                message: None,
                exc: None,
                wall_ms: 0,
            });
            continue;
        };
        let answer = match read_message(&mut channel, deadline) {
            Ok(a) => a,
            Err(Failure::Lost) => {
                lost(
                    i,
                    &mut results,
                    "lost",
                    "the program ended before answering",
                );
                break;
            }
            Err(Failure::Broken(why)) => {
                lost(i, &mut results, "error", &broken(&why));
                break;
            }
        };
        let wall_ms = last.elapsed().as_millis() as u64;
        last = Instant::now();
        let (status, text, exc) = judge_answer(&answer, expected, message.as_deref());
        if status == "broken" {
            lost(i, &mut results, "error", &broken(&text.unwrap_or_default()));
            break;
        }
        results.push(UnitResult {
            id: id.clone(),
            status,
            message: text,
            exc,
            wall_ms,
        });
    }
    HostOutcome::Units(results)
}

fn broken(why: &str) -> String {
    format!("the program broke the checker protocol: {why}")
}

/// One answer against its expected value: the status, its message and exception type.
fn judge_answer(
    answer: &Value,
    expected: &PyValue,
    message: Option<&str>,
) -> (&'static str, Option<String>, Option<String>) {
    let assertion = || match message {
        Some(m) if !m.is_empty() => format!("AssertionError: {m}"),
        _ => "AssertionError".to_string(),
    };
    if let Some(e) = answer.get("e") {
        let (Some(name), Some(m)) = (e.as_str(), answer.get("m").and_then(Value::as_str)) else {
            return ("broken", Some("bad error".into()), None);
        };
        let text = if m.is_empty() {
            name.to_string()
        } else {
            format!("{name}: {m}")
        };
        // As in the checker: an AssertionError out of the call fails the assert.
        let status = if name == "AssertionError" {
            "fail"
        } else {
            "error"
        };
        return (status, Some(text), Some(name.to_string()));
    }
    let Some(value) = answer.get("r") else {
        return ("broken", Some("no result".into()), None);
    };
    if PyValue::decode(value).py_eq(expected) {
        ("pass", None, None)
    } else {
        ("fail", Some(assertion()), Some("AssertionError".into()))
    }
}

enum Failure {
    /// The other end closed, died, or was silent until the deadline.
    Lost,
    /// It sent something that is not a well-formed message.
    Broken(String),
}

fn read_message(channel: &mut UnixStream, deadline: Instant) -> Result<Value, Failure> {
    let mut header = [0u8; 4];
    read_exact(channel, &mut header, deadline)?;
    let size = u32::from_be_bytes(header) as usize;
    if size > MESSAGE_MAX {
        return Err(Failure::Broken(format!(
            "a message of {size} bytes (at most {MESSAGE_MAX})"
        )));
    }
    let mut body = vec![0u8; size];
    read_exact(channel, &mut body, deadline)?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::Broken(format!("undecodable value: {e}")))?;
    if !v.is_object() {
        return Err(Failure::Broken("not an object".into()));
    }
    Ok(v)
}

fn read_exact(channel: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> Result<(), Failure> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Lost);
        }
        let _ = channel.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match channel.read(&mut buf[got..]) {
            Ok(0) => return Err(Failure::Lost),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Failure::Lost),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(j: Value) -> PyValue {
        PyValue::decode(&j)
    }

    #[test]
    fn python_equality_of_plain_values() {
        // As Python: True == 1 == 1.0, a list is not a tuple, nan equals nothing.
        assert!(v(json!(true)).py_eq(&v(json!(1))));
        assert!(v(json!(1)).py_eq(&v(json!(1.0))));
        assert!(v(json!(0)).py_eq(&v(json!(false))));
        assert!(!v(json!([1, 2])).py_eq(&v(json!({"$": "t", "v": [1, 2]}))));
        assert!(v(json!({"$": "t", "v": [1, "a"]})).py_eq(&v(json!({"$": "t", "v": [1.0, "a"]}))));
        assert!(!v(json!({"$": "f", "v": "nan"})).py_eq(&v(json!({"$": "f", "v": "nan"}))));
        assert!(v(json!({"$": "c", "v": [3.0, 0.0]})).py_eq(&v(json!(3))));
        assert!(!v(json!({"$": "c", "v": [3.0, 1.0]})).py_eq(&v(json!(3))));
        assert!(!v(json!(null)).py_eq(&v(json!(0))));
        assert!(!v(json!("1")).py_eq(&v(json!(1))));
        // 2**53 + 1 is not the float 2**53.
        assert!(!v(json!(9_007_199_254_740_993_i64)).py_eq(&v(json!(9_007_199_254_740_992.0))));
        assert!(v(json!(9_007_199_254_740_992_i64)).py_eq(&v(json!(9_007_199_254_740_992.0))));
        // Values of other kinds equal nothing a plan expects.
        for other in [
            json!({"$": "d", "v": []}),
            json!({"$": "s", "v": [1]}),
            json!({"$": "i", "v": "0x10000000000000000"}),
            json!({"$": "h", "v": 0, "n": "Any"}),
            json!({"$": "it", "v": [1, 2]}),
            json!({"a": 1}),
        ] {
            for expected in [
                json!(1),
                json!([1, 2]),
                json!(null),
                json!("a"),
                json!(true),
            ] {
                assert!(!v(other.clone()).py_eq(&v(expected)), "{other}");
            }
        }
    }

    #[test]
    fn answers_are_judged_like_the_checker() {
        let three = PyValue::Int(3);
        assert_eq!(judge_answer(&json!({"r": 3}), &three, None).0, "pass");
        let (s, m, _) = judge_answer(&json!({"r": 4}), &three, Some("off"));
        assert_eq!((s, m.as_deref()), ("fail", Some("AssertionError: off")));
        let (s, m, e) = judge_answer(&json!({"e": "ValueError", "m": "boom"}), &three, None);
        assert_eq!(
            (s, m.as_deref(), e.as_deref()),
            ("error", Some("ValueError: boom"), Some("ValueError"))
        );
        assert_eq!(
            judge_answer(&json!({"e": "AssertionError", "m": ""}), &three, None).0,
            "fail"
        );
        assert_eq!(judge_answer(&json!({"x": 1}), &three, None).0, "broken");
    }
}
