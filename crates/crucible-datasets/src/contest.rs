//! What the contest-problem adapters (APPS/TACO, CodeContests, LiveCodeBench) share:
//! per-record error handling, fields that hold JSON inside a string, and the call
//! binding for LeetCode-style `class Solution` programs.
//!
//! Unlike the benchmark loaders, these adapters report a bad record as that problem's
//! error and keep the rest: contest datasets are scraped at scale and a few malformed
//! rows (an `input_output` string that is not JSON) are expected, while the other
//! thousands of problems are still worth judging.

use crate::error::{DatasetError, Pos};
use crate::fields::Fields;
use crate::read::{describe, records};
use crucible_core::Problem;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tracing::{debug, info};

/// Problems read from a file whose bad records are reported one by one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProblemsLoad {
    /// The good problems, in file order.
    pub problems: Vec<Problem>,
    /// One error per bad record, naming file, line (or index) and field.
    pub errors: Vec<DatasetError>,
}

/// Reads every record of `path` (JSONL, or one JSON array) with `decode`, which gets
/// the record and its 0-based ordinal among the records. A record that fails is kept as
/// an error, as is a duplicate id (reported at `id_field`). Returns an error only when
/// the file as a whole cannot be read, or holds no records at all.
pub(crate) fn load_each(
    path: &Path,
    format: &str,
    id_field: &str,
    decode: impl Fn(&Fields, usize) -> Result<Problem, DatasetError>,
) -> Result<ProblemsLoad, DatasetError> {
    let mut load = ProblemsLoad::default();
    let mut seen: HashMap<String, Pos> = HashMap::new();
    let records = records(path, true)?;
    if records.is_empty() {
        return Err(DatasetError::file(path, "no problems found"));
    }
    for (ordinal, record) in records.into_iter().enumerate() {
        let decoded = record.and_then(|(pos, value)| {
            let f = Fields::new(path, pos, &value)?;
            let problem = decode(&f, ordinal)?;
            if let Some(first) = seen.get(&problem.id) {
                return Err(f.err(
                    id_field,
                    format!("duplicate problem id {:?} (first at {first})", problem.id),
                ));
            }
            seen.insert(problem.id.clone(), pos);
            Ok(problem)
        });
        match decoded {
            Ok(p) => load.problems.push(p),
            Err(e) => {
                debug!(error = %e, "skipping bad problem");
                load.errors.push(e);
            }
        }
    }
    info!(path = %path.display(), format, problems = load.problems.len(), errors = load.errors.len(), "loaded dataset");
    Ok(load)
}

/// A field that holds JSON, either as a string to parse (the HF exports of APPS, TACO
/// and LiveCodeBench) or already as a value. `None` when absent, null or empty.
pub(crate) fn json_field(f: &Fields, field: &str) -> Result<Option<Value>, DatasetError> {
    match f.opt(field) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| f.err(field, format!("is not valid JSON: {e}"))),
        Some(v) => Ok(Some(v.clone())),
    }
}

/// An id from the first of `fields` present (string or integer), else `fallback`.
pub(crate) fn id_from(
    f: &Fields,
    fields: &[&str],
    fallback: impl FnOnce() -> String,
) -> Result<String, DatasetError> {
    for field in fields {
        if f.opt(field).is_some() {
            return f.string_or_int_id(field);
        }
    }
    Ok(fallback())
}

/// Test setup that lets a call test name a method of a LeetCode-style `class Solution`
/// (APPS, TACO and LiveCodeBench call `Solution().name(...)` when the program defines
/// no top-level function of that name). `name` must be an identifier.
pub(crate) fn solution_binding(name: &str) -> String {
    format!(
        "if {name:?} not in globals() and \"Solution\" in globals():\n    {name} = Solution().{name}\n"
    )
}

/// Describes a JSON value's type, for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    describe(v)
}

/// Decompresses zlib data.
pub(crate) fn zlib_decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(1 << 30)
        .read_to_end(&mut out)
        .map_err(|e| format!("not zlib data: {e}"))?;
    Ok(out)
}

/// The string in a pickle that holds exactly one `str` (what LiveCodeBench's compressed
/// test cases are). Only the opcodes such a pickle uses are understood; anything else
/// is refused rather than guessed at, and no object is ever constructed.
pub(crate) fn pickled_str(data: &[u8]) -> Result<String, String> {
    let mut i = 0usize;
    let mut result: Option<String> = None;
    let take = |i: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = i
            .checked_add(n)
            .filter(|&e| e <= data.len())
            .ok_or("truncated pickle")?;
        let s = &data[*i..end];
        *i = end;
        Ok(s)
    };
    let le = |b: &[u8]| {
        b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
    };
    loop {
        let op = *take(&mut i, 1)?.first().ok_or("truncated pickle")?;
        match op {
            0x80 => {
                take(&mut i, 1)?; // PROTO n
            }
            0x95 => {
                take(&mut i, 8)?; // FRAME length
            }
            0x94 => {} // MEMOIZE
            0x71 => {
                take(&mut i, 1)?; // BINPUT (protocols 1-3)
            }
            0x72 => {
                take(&mut i, 4)?; // LONG_BINPUT
            }
            0x8c | 0x58 | 0x8d => {
                let width = match op {
                    0x8c => 1,
                    0x58 => 4,
                    _ => 8,
                };
                let n = usize::try_from(le(take(&mut i, width)?)).map_err(|_| "string too long")?;
                let bytes = take(&mut i, n)?;
                if result.is_some() {
                    return Err("pickle holds more than one string".into());
                }
                result = Some(
                    String::from_utf8(bytes.to_vec()).map_err(|_| "pickled string is not UTF-8")?,
                );
            }
            b'.' => return result.ok_or_else(|| "pickle holds no string".into()),
            other => return Err(format!("unsupported pickle opcode {other:#04x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickle_of_one_string() {
        // pickle.dumps("[1]", protocol=4) and the same with a 4-byte length.
        let short = b"\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00\x8c\x03[1]\x94.";
        assert_eq!(pickled_str(short).unwrap(), "[1]");
        let v3 = b"\x80\x03X\x03\x00\x00\x00[1]q\x00.";
        assert_eq!(pickled_str(v3).unwrap(), "[1]");
        assert!(pickled_str(b"\x80\x04N.").unwrap_err().contains("0x4e"));
        let plain = b"\x80\x03X\x03\x00\x00\x00[1].";
        assert_eq!(pickled_str(plain).unwrap(), "[1]");
        assert!(pickled_str(b"\x80\x04").is_err());
        assert!(pickled_str(b"\x80\x04N.").is_err());
    }

    #[test]
    fn zlib_errors_are_reported() {
        assert!(zlib_decompress(b"nope").is_err());
    }
}
