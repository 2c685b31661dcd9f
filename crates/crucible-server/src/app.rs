//! The axum application: routes, the native handlers, authentication, request metrics,
//! and serving with graceful shutdown.

use crate::compat;
use crate::error::{ApiError, ServerError};
use crate::limits::parse_body;
use crate::state::AppState;
use crate::wire::{
    BatchLine, BatchRequest, Health, JudgeRequest, LanguageEntry, LanguagesResponse,
};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Paths answered without a token even when one is set: probes and scrapers of a
/// deployment should not need the trainer's secret, and neither leaks work.
const OPEN_PATHS: [&str; 2] = ["/v1/health", "/metrics"];

/// The application with every route, over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/judge", post(judge))
        .route("/v1/judge/batch", post(judge_batch))
        .route("/v1/languages", get(languages))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/run_code", post(compat::run_code))
        .route("/submit", post(compat::submit))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then stops accepting
/// connections and finishes every request in flight (a batch streams to its end) before
/// returning. Health answers 503 from the moment `shutdown` completes.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: F,
) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = router(state.clone());
    let draining = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.start_draining();
            tracing::info!(
                queued = draining.metrics().queue_depth(),
                in_flight = draining.metrics().in_flight(),
                "shutting down: finishing the work in flight"
            );
        })
        .await?;
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// The metrics label of a path; unknown paths share one label so that scanners cannot
/// grow the metrics without bound.
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/judge" => "judge",
        "/v1/judge/batch" => "judge_batch",
        "/v1/languages" => "languages",
        "/v1/health" => "health",
        "/metrics" => "metrics",
        "/run_code" => "run_code",
        "/submit" => "submit",
        _ => "other",
    }
}

async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let endpoint = endpoint_label(req.uri().path());
    let started = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .request(endpoint, resp.status().as_u16(), started.elapsed());
    if resp.status().is_server_error() {
        tracing::warn!(
            endpoint,
            status = resp.status().as_u16(),
            "server error answered"
        );
    }
    resp
}

async fn authenticate(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.config.token {
        if !OPEN_PATHS.contains(&req.uri().path()) && !bearer_matches(req.headers(), token) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                Some("authorization"),
                "missing or wrong bearer token (send `Authorization: Bearer <token>`)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    // Compare in time independent of where the first difference is, so the token cannot
    // be guessed byte by byte from answer times.
    let want = token.as_bytes();
    let mut diff = given.len() ^ want.len();
    for (i, &w) in want.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ w);
    }
    diff == 0
}

/// 413 when the request says up front that its body is over the limit.
pub(crate) fn check_declared_length(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > st.config.body_limit as u64 => Err(too_large(st.config.body_limit)),
        _ => Ok(()),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        Some("body"),
        format!("request body over the limit of {limit} bytes"),
    )
}

/// Reads a body of at most the configured limit.
pub(crate) async fn read_body(st: &AppState, body: Body) -> Result<Bytes, ApiError> {
    match Limited::new(body, st.config.body_limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large(st.config.body_limit))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            Some("body"),
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// `value` as a JSON answer with `status`.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut resp = (status, bytes).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            format!("cannot encode the answer: {e}"),
        )
        .into_response(),
    }
}

/// Header naming the limits that were lowered to the server's maxima.
pub(crate) const CLAMPED_HEADER: &str = "x-crucible-clamped";

fn add_clamped(resp: &mut Response, clamped: &[&str]) {
    if !clamped.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&clamped.join(",")) {
            resp.headers_mut().insert(CLAMPED_HEADER, v);
        }
    }
}

async fn judge(State(st): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    check_declared_length(&st, req.headers())?;
    // Admit before reading the body, so waiting bodies never exceed the queue.
    let mut tickets = st.admit(1, "body")?;
    let bytes = read_body(&st, req.into_body()).await?;
    let request: JudgeRequest = parse_body(&bytes)?;
    drop(bytes);
    let prepared = st.prepare(request)?;
    let clamped = prepared.clamped.clone();
    let ticket = tickets.pop().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            "no ticket",
        )
    })?;
    let report = st.judge(ticket, prepared).await?;
    let mut resp = json(StatusCode::OK, &report);
    add_clamped(&mut resp, &clamped);
    Ok(resp)
}

async fn judge_batch(State(st): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    check_declared_length(&st, req.headers())?;
    let first = st.admit(1, "body")?;
    let bytes = read_body(&st, req.into_body()).await?;
    let batch: BatchRequest = parse_body(&bytes)?;
    drop(bytes);
    let n = batch.submissions.len();
    if n == 0 {
        return Err(ApiError::invalid("submissions", "is empty"));
    }
    if n > st.capacity {
        return Err(ApiError::invalid(
            "submissions",
            format!(
                "{n} submissions; this server takes at most {} per batch",
                st.capacity
            ),
        ));
    }
    let mut tickets = first;
    if n > 1 {
        tickets.extend(st.admit(n - 1, "submissions")?);
    }

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(n);
    let mut jobs = Vec::with_capacity(n);
    for (index, item) in batch.submissions.into_iter().enumerate() {
        match st.prepare(item) {
            Ok(job) => jobs.push((index, job)),
            Err(e) => {
                // Capacity n holds every line, so this cannot fail for want of room.
                let line = BatchLine {
                    index,
                    report: None,
                    error: Some(e.under(&format!("submissions[{index}]")).info()),
                };
                let _ = tx.try_send(ndjson(&line));
            }
        }
    }
    // Tickets of rejected items go back now; each prepared job takes one.
    tickets.truncate(jobs.len());
    for ((index, job), ticket) in jobs.into_iter().zip(tickets) {
        let st = st.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            // A client that went away stops the items still waiting for a worker.
            let result = tokio::select! {
                r = st.judge(ticket, job) => r,
                _ = tx.closed() => return,
            };
            let line = match result {
                Ok(report) => BatchLine {
                    index,
                    report: Some(report),
                    error: None,
                },
                Err(e) => BatchLine {
                    index,
                    report: None,
                    error: Some(e.under(&format!("submissions[{index}]")).info()),
                },
            };
            let _ = tx.send(ndjson(&line)).await;
        });
    }
    drop(tx);
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|line| line.map(Ok::<Bytes, std::convert::Infallible>))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

fn ndjson<T: Serialize>(value: &T) -> Bytes {
    let mut v = serde_json::to_vec(value).unwrap_or_else(|e| {
        format!("{{\"error\":{{\"code\":\"internal\",\"message\":\"cannot encode: {e}\"}}}}")
            .into_bytes()
    });
    v.push(b'\n');
    Bytes::from(v)
}

async fn languages(State(st): State<Arc<AppState>>) -> Response {
    let max = st.config.max_limits;
    let languages = st
        .languages
        .values()
        .map(|l| LanguageEntry {
            name: l.name.clone(),
            display: l.display.clone(),
            version: l.version.clone(),
            default_limits: l.limits.clamped_to(&max),
        })
        .collect();
    json(
        StatusCode::OK,
        &LanguagesResponse {
            languages,
            max_limits: max,
        },
    )
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let draining = st.is_draining();
    let body = Health {
        status: if draining { "draining" } else { "ok" }.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        workers: st.workers,
        capacity: st.capacity,
        queue_depth: st.metrics.queue_depth(),
        in_flight: st.metrics.in_flight(),
        languages: st.languages.keys().cloned().collect(),
        uptime_s: st.uptime().as_secs(),
    };
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json(status, &body)
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut resp = st.metrics.render(st.workers, st.capacity).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
        format!("no endpoint {} {}", req.method(), req.uri().path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_comparison() {
        let mut h = HeaderMap::new();
        assert!(!bearer_matches(&h, "secret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        assert!(bearer_matches(&h, "secret"));
        assert!(!bearer_matches(&h, "secre"));
        assert!(!bearer_matches(&h, "secrets"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic secret"),
        );
        assert!(!bearer_matches(&h, "secret"));
    }
}
