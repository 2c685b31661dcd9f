//! Per-request limits: partial limits in requests, their validation, and clamping to the
//! server's maxima. Also the JSON body parser that names the field at fault.

use crate::error::ApiError;
use axum::http::StatusCode;
use crucible_core::Limits;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest value any limit may be asked for: 2^53, the largest integer every JSON
/// implementation carries exactly. Anything larger is refused rather than clamped, since
/// it is almost surely a bug (a unit mix-up, an overflow) and not a real wish.
pub const MAX_LIMIT_VALUE: u64 = 1 << 53;

/// Limits a request wants changed; fields left out keep the problem's or the language's
/// value. Every value must be at least 1 and at most [`MAX_LIMIT_VALUE`]; the server then
/// clamps each to its maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    /// CPU time, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time_ms: Option<u64>,
    /// Wall-clock time, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time_ms: Option<u64>,
    /// Memory, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Bytes kept of stdout and of stderr each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// Largest file, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size_bytes: Option<u64>,
    /// Processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u32>,
    /// Open file descriptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u32>,
    /// Work directory size, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir_bytes: Option<u64>,
}

impl LimitsPatch {
    fn fields(&self) -> [(&'static str, Option<u64>); 8] {
        [
            ("cpu_time_ms", self.cpu_time_ms),
            ("wall_time_ms", self.wall_time_ms),
            ("memory_bytes", self.memory_bytes),
            ("output_bytes", self.output_bytes),
            ("file_size_bytes", self.file_size_bytes),
            ("processes", self.processes.map(u64::from)),
            ("open_files", self.open_files.map(u64::from)),
            ("work_dir_bytes", self.work_dir_bytes),
        ]
    }

    /// Checks every given value is in 1..=[`MAX_LIMIT_VALUE`]; the error names the field
    /// under `prefix` (e.g. `limits`).
    pub fn validate(&self, prefix: &str) -> Result<(), ApiError> {
        for (name, value) in self.fields() {
            if let Some(v) = value {
                check_value(&format!("{prefix}.{name}"), v)?;
            }
        }
        Ok(())
    }

    /// `base` with the given fields replaced.
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            cpu_time_ms: self.cpu_time_ms.unwrap_or(base.cpu_time_ms),
            wall_time_ms: self.wall_time_ms.unwrap_or(base.wall_time_ms),
            memory_bytes: self.memory_bytes.unwrap_or(base.memory_bytes),
            output_bytes: self.output_bytes.unwrap_or(base.output_bytes),
            file_size_bytes: self.file_size_bytes.unwrap_or(base.file_size_bytes),
            processes: self.processes.unwrap_or(base.processes),
            open_files: self.open_files.unwrap_or(base.open_files),
            work_dir_bytes: self.work_dir_bytes.unwrap_or(base.work_dir_bytes),
        }
    }
}

fn check_value(field: &str, v: u64) -> Result<(), ApiError> {
    if v == 0 {
        return Err(ApiError::invalid(field, "must be at least 1"));
    }
    if v > MAX_LIMIT_VALUE {
        return Err(ApiError::invalid(
            field,
            format!("{v} is out of range (at most {MAX_LIMIT_VALUE})"),
        ));
    }
    Ok(())
}

fn limit_fields(l: &Limits) -> [(&'static str, u64); 8] {
    [
        ("cpu_time_ms", l.cpu_time_ms),
        ("wall_time_ms", l.wall_time_ms),
        ("memory_bytes", l.memory_bytes),
        ("output_bytes", l.output_bytes),
        ("file_size_bytes", l.file_size_bytes),
        ("processes", u64::from(l.processes)),
        ("open_files", u64::from(l.open_files)),
        ("work_dir_bytes", l.work_dir_bytes),
    ]
}

/// Checks a full set of limits from a request (an inline problem's) the same way as a
/// patch.
pub(crate) fn validate_full(l: &Limits, prefix: &str) -> Result<(), ApiError> {
    for (name, v) in limit_fields(l) {
        check_value(&format!("{prefix}.{name}"), v)?;
    }
    Ok(())
}

/// `limits` clamped to `max`, and the names of the fields that were lowered.
pub(crate) fn clamp(limits: Limits, max: &Limits) -> (Limits, Vec<&'static str>) {
    let clamped = limits.clamped_to(max);
    let changed = limit_fields(&limits)
        .into_iter()
        .zip(limit_fields(&clamped))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, _), _)| name)
        .collect();
    (clamped, changed)
}

/// Parses a JSON body into `T`. Syntax errors answer 400 `malformed_json` (field `body`);
/// a value of the wrong type, a missing or unknown field answer 422 `invalid_field` with
/// the path of the field (`submissions[2].limits.cpu_time_ms`).
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => v,
        Err(e) => return Err(json_error(e)),
    };
    // Trailing garbage after the value is as malformed as a syntax error inside it.
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            Some("body"),
            format!("malformed JSON: {e}"),
        )
    })?;
    Ok(value)
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    use serde_json::error::Category;
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            Some("body"),
            format!("malformed JSON: {inner}"),
        ),
        Category::Data => {
            let msg = inner.to_string();
            // serde reports a missing or unknown field at the struct holding it; name the
            // field itself.
            let named =
                backticked(&msg, "missing field `").or_else(|| backticked(&msg, "unknown field `"));
            let base = if path == "." { String::new() } else { path };
            // serde_path_to_error already ends the path with an unknown field's name.
            let named = named.filter(|n| base.rsplit('.').next() != Some(n));
            let field = match named {
                Some(name) if base.is_empty() => name.to_string(),
                Some(name) => format!("{base}.{name}"),
                None if base.is_empty() => "body".to_string(),
                None => base,
            };
            ApiError::invalid(&field, strip_position(&msg))
        }
    }
}

/// The name in `` `name` `` right after `prefix` in `msg`.
fn backticked<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let start = msg.find(prefix)? + prefix.len();
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

/// serde_json's message without " at line 1 column 42", which means little to a client
/// that sent one line.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{BatchRequest, JudgeRequest};

    fn err<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> ApiError {
        parse_body::<T>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn negative_and_huge_limits_name_the_field() {
        let e = err::<JudgeRequest>(r#"{"completion":"x","limits":{"cpu_time_ms":-1}}"#);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.field.as_deref(), Some("limits.cpu_time_ms"));
        let e = err::<JudgeRequest>(r#"{"completion":"x","limits":{"memory_bytes":1e300}}"#);
        assert_eq!(e.field.as_deref(), Some("limits.memory_bytes"));
        let e = err::<JudgeRequest>(
            r#"{"completion":"x","limits":{"memory_bytes":99999999999999999999999}}"#,
        );
        assert_eq!(e.field.as_deref(), Some("limits.memory_bytes"));
        let e = err::<JudgeRequest>(r#"{"completion":"x","limits":{"processes":4294967296}}"#);
        assert_eq!(e.field.as_deref(), Some("limits.processes"));
        // Fits in u64 but is beyond 2^53: parsed, then refused by validate.
        let r: JudgeRequest =
            parse_body(br#"{"completion":"x","limits":{"wall_time_ms":1000000000000000000}}"#)
                .unwrap();
        let e = r.limits.unwrap().validate("limits").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.wall_time_ms"));
        let zero = LimitsPatch {
            open_files: Some(0),
            ..Default::default()
        };
        assert_eq!(
            zero.validate("limits").unwrap_err().field.as_deref(),
            Some("limits.open_files")
        );
    }

    #[test]
    fn malformed_json_is_400_on_body() {
        let e = err::<JudgeRequest>(r#"{"completion": "x""#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "malformed_json");
        assert_eq!(e.field.as_deref(), Some("body"));
        let e = err::<JudgeRequest>(r#"{"completion": "x"} trailing"#);
        assert_eq!(e.code, "malformed_json");
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let e = err::<JudgeRequest>(r#"{"language":"python"}"#);
        assert_eq!(e.field.as_deref(), Some("completion"));
        let e = err::<JudgeRequest>(r#"{"completion":"x","colour":1}"#);
        assert_eq!(e.field.as_deref(), Some("colour"));
        let e = err::<BatchRequest>(
            r#"{"submissions":[{"completion":"x"},{"completion":"y","limits":{"cpu":1}}]}"#,
        );
        assert_eq!(e.field.as_deref(), Some("submissions[1].limits.cpu"));
        let e = err::<BatchRequest>(r#"{"submissions":[{"completion":7}]}"#);
        assert_eq!(e.field.as_deref(), Some("submissions[0].completion"));
        assert!(!e.message.contains("line 1"), "{}", e.message);
    }

    #[test]
    fn clamp_reports_lowered_fields() {
        let max = Limits::default().with_time_ms(5_000);
        let asked = LimitsPatch {
            cpu_time_ms: Some(60_000),
            memory_bytes: Some(1 << 20),
            ..Default::default()
        }
        .apply(Limits::default().with_time_ms(1_000));
        let (l, changed) = clamp(asked, &max);
        assert_eq!(l.cpu_time_ms, 5_000);
        assert_eq!(l.memory_bytes, 1 << 20);
        assert_eq!(changed, vec!["cpu_time_ms"]);
    }
}
