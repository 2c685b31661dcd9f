//! Errors: [`ApiError`] for answers to HTTP clients, [`ServerError`] for set-up.

use crate::wire::{ErrorBody, ErrorInfo};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;

/// An error answered to an HTTP client: a status and a JSON [`ErrorBody`] naming the
/// field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {code}{}: {message}", field.as_deref().map(|f| format!(" ({f})")).unwrap_or_default())]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable kind (see [`ErrorInfo::code`]).
    pub code: &'static str,
    /// The field at fault, as a path.
    pub field: Option<String>,
    /// A sentence for a person.
    pub message: String,
    /// Seconds after which a retry may succeed (429 and 503 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 4xx/5xx error with `code`, blaming `field`.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            field: field.map(str::to_string),
            message: message.into(),
            retry_after: None,
        }
    }

    /// 422: `field` has a value the server cannot use.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
            message,
        )
    }

    /// The same error with the field path put under `prefix` (for batch items).
    pub fn under(mut self, prefix: &str) -> ApiError {
        self.field = Some(match self.field.take() {
            Some(f) if !f.is_empty() => format!("{prefix}.{f}"),
            _ => prefix.to_string(),
        });
        self
    }

    /// The error as it appears in a body or a batch line.
    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            code: self.code.to_string(),
            field: self.field.clone(),
            message: self.message.clone(),
        }
    }

    /// The full JSON body.
    pub fn body(&self) -> ErrorBody {
        // FastAPI names where a field lives: the token is a header, all else the body.
        let place = if self.field.as_deref() == Some("authorization") {
            "header"
        } else {
            "body"
        };
        let mut loc = vec![serde_json::Value::from(place)];
        if let Some(f) = &self.field {
            if f != "body" {
                loc.extend(path_segments(f));
            }
        }
        ErrorBody {
            error: self.info(),
            detail: vec![serde_json::json!({
                "loc": loc, "msg": self.message, "type": self.code,
            })],
        }
    }
}

/// `a.b[3].c` as FastAPI locations: `["a", "b", 3, "c"]`.
fn path_segments(path: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(serde_json::Value::from(&rest[..i]));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                match stripped[..end].parse::<u64>() {
                    Ok(n) => out.push(serde_json::Value::from(n)),
                    Err(_) => out.push(serde_json::Value::from(&stripped[..end])),
                }
                rest = &stripped[end + 1..];
            }
        } else if !rest.is_empty() {
            out.push(serde_json::Value::from(rest));
        }
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Errors setting the server up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A dataset given to the server could not be loaded.
    #[error("dataset {name:?}: {source}")]
    Dataset {
        /// The name requests use for it.
        name: String,
        /// Why loading failed (boxed: dataset errors are large, and set-up errors rare).
        #[source]
        source: Box<crucible_datasets::DatasetError>,
    },
    /// Two datasets were given the same name.
    #[error("dataset name {0:?} is given twice")]
    DuplicateDataset(String),
    /// The token file could not be read or is empty.
    #[error("token file {path}: {message}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The listening socket failed.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_follow_fastapi() {
        assert_eq!(
            serde_json::Value::from(path_segments("submissions[3].limits.cpu_time_ms")),
            serde_json::json!(["submissions", 3, "limits", "cpu_time_ms"])
        );
        let e = ApiError::invalid("language", "unknown").under("submissions[1]");
        assert_eq!(e.field.as_deref(), Some("submissions[1].language"));
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            body["detail"][0]["loc"],
            serde_json::json!(["body", "submissions", 1, "language"])
        );
        assert_eq!(body["error"]["field"], "submissions[1].language");
    }
}
