//! A reward client for trainers: spreads requests over several Crucible servers, retries
//! what an infrastructure failure spoiled, and never turns such a failure into a reward.
//!
//! Retried: connection errors and timeouts, 5xx answers, 429 (after its Retry-After, on
//! another server when one is free), and reports whose verdict is `sandbox_error`. Not
//! retried: other 4xx answers, which mean the request itself is wrong. When every attempt
//! failed, the reward is absent and [`ClientStats::absent`] counts it.

use crate::wire::{BatchLine, BatchRequest, ErrorBody, ErrorInfo, JudgeRequest};
use bytes::Bytes;
use crucible_core::{Report, Verdict};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest answer body the client reads.
const MAX_ANSWER: usize = 256 << 20;

/// How a [`RewardClient`] behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Server base URLs (`http://host:port`; `host:port` is taken as http).
    pub endpoints: Vec<String>,
    /// Bearer token to send, if the servers want one.
    pub token: Option<String>,
    /// Attempts per submission that may fail (transport, 5xx, sandbox_error) before the
    /// reward is given up as absent. 429 answers do not use attempts up; `deadline`
    /// bounds them.
    pub max_attempts: u32,
    /// Time allowed for one HTTP exchange.
    pub request_timeout: Duration,
    /// Time allowed for one submission, retries and waits included.
    pub deadline: Duration,
    /// First wait between failed attempts; it doubles each time up to `max_backoff`.
    pub backoff: Duration,
    /// Longest wait between attempts (also caps a server's Retry-After).
    pub max_backoff: Duration,
    /// How long a server that failed is passed over while others are available.
    pub cooldown: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: Vec::new(),
            token: None,
            max_attempts: 4,
            request_timeout: Duration::from_secs(300),
            deadline: Duration::from_secs(900),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            cooldown: Duration::from_secs(2),
        }
    }
}

/// Why the client has no report for a submission.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// No endpoint was configured.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An endpoint is not a usable URL.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// The server refused the request itself (a 4xx other than 429): retrying cannot
    /// help, and the reward is absent.
    #[error("request rejected with {status}: {}", error.as_ref().map_or(body.as_str(), |e| e.message.as_str()))]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's error, when the body was one.
        error: Option<ErrorInfo>,
        /// The raw body otherwise.
        body: String,
    },
    /// Every attempt failed for infrastructure reasons; the reward is absent.
    #[error("no report after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// Counters of what a client has seen. Rewards that are absent are counted, so a trainer
/// can log how many samples it masked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Submissions asked for.
    pub requests: u64,
    /// HTTP exchanges made.
    pub attempts: u64,
    /// Attempts after the first, for any reason.
    pub retries: u64,
    /// Submissions that got a report.
    pub judged: u64,
    /// Submissions left without a report after every attempt (reward absent).
    pub absent: u64,
    /// Submissions the server refused (4xx; reward absent too).
    pub rejected: u64,
    /// Reports with verdict sandbox_error that were retried.
    pub sandbox_errors: u64,
    /// Connection failures and timeouts.
    pub transport_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// 429 answers.
    pub throttled: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    judged: AtomicU64,
    absent: AtomicU64,
    rejected: AtomicU64,
    sandbox_errors: AtomicU64,
    transport_errors: AtomicU64,
    server_errors: AtomicU64,
    throttled: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Endpoint {
    base: String,
    /// Not to be picked before this instant while another endpoint is free.
    unavailable_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn until(&self) -> Option<Instant> {
        *self
            .unavailable_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn hold_off(&self, d: Duration) {
        let t = Instant::now() + d;
        let mut g = self
            .unavailable_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if g.is_none_or(|old| old < t) {
            *g = Some(t);
        }
    }
}

/// A reward from the client: present only when a server judged the submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The reward; `None` when there is no report (infrastructure failure or a refused
    /// request), never 0 in its place.
    pub reward: Option<f64>,
    /// The report, when there is one.
    pub report: Option<Report>,
    /// Why there is no report.
    pub error: Option<ClientError>,
}

/// The outcome of one HTTP exchange.
enum Exchange {
    Answer {
        status: StatusCode,
        retry_after: Option<Duration>,
        body: Bytes,
    },
    Transport(String),
}

/// A client over one or more Crucible servers. Cheap to clone; clones share
/// connections, balancing and counters.
#[derive(Clone)]
pub struct RewardClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    config: ClientConfig,
    counters: Counters,
}

fn normalise(endpoint: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = endpoint.trim();
    let rest = if let Some(rest) = trimmed.strip_prefix("http://") {
        rest
    } else if trimmed.starts_with("https://") {
        return Err(bad("https is not supported; put TLS in front of the servers (a load balancer or a sidecar) and call it over http"));
    } else if trimmed.contains("://") {
        return Err(bad("only http:// is supported"));
    } else {
        trimmed
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(bad("no host"));
    }
    let base = format!("http://{rest}");
    let uri: Uri = format!("{base}/v1/judge")
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(base)
}

impl RewardClient {
    /// A client for `config.endpoints`.
    pub fn new(config: ClientConfig) -> Result<RewardClient, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                Ok(Endpoint {
                    base: normalise(e)?,
                    unavailable_until: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(RewardClient {
            inner: Arc::new(Inner {
                http,
                endpoints,
                next: AtomicUsize::new(0),
                config,
                counters: Counters::default(),
            }),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            requests: get(&c.requests),
            attempts: get(&c.attempts),
            retries: get(&c.retries),
            judged: get(&c.judged),
            absent: get(&c.absent),
            rejected: get(&c.rejected),
            sandbox_errors: get(&c.sandbox_errors),
            transport_errors: get(&c.transport_errors),
            server_errors: get(&c.server_errors),
            throttled: get(&c.throttled),
        }
    }

    /// Picks the next endpoint round-robin, passing over those holding off; when all
    /// are, the one free soonest, and how long to wait for it.
    fn pick(&self) -> (usize, Duration) {
        let n = self.inner.endpoints.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut soonest: Option<(usize, Instant)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            match self.inner.endpoints[i].until() {
                Some(t) if t > now => {
                    if soonest.is_none_or(|(_, s)| t < s) {
                        soonest = Some((i, t));
                    }
                }
                _ => return (i, Duration::ZERO),
            }
        }
        match soonest {
            Some((i, t)) => (i, t - now),
            None => (start % n, Duration::ZERO),
        }
    }

    async fn exchange(&self, endpoint: usize, path: &str, body: Bytes) -> Exchange {
        let cfg = &self.inner.config;
        let uri = format!("{}{path}", self.inner.endpoints[endpoint].base);
        let mut builder = hyper::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, "application/json");
        if let Some(t) = &cfg.token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let request = match builder.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Exchange::Transport(format!("cannot build the request: {e}")),
        };
        let work = async {
            let resp = self
                .inner
                .http
                .request(request)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>(Exchange::Answer {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(cfg.request_timeout, work).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => Exchange::Transport(e),
            Err(_) => Exchange::Transport(format!("no answer within {:?}", cfg.request_timeout)),
        }
    }

    /// Sends `body` to `path` until an answer that is not an infrastructure failure
    /// comes back, and hands it to `accept`, which says whether it is final (`Ok`) or
    /// must be retried (`Err(reason)`).
    async fn call<T>(
        &self,
        path: &str,
        body: Bytes,
        mut accept: impl FnMut(Bytes) -> Result<T, String>,
    ) -> Result<T, ClientError> {
        let cfg = &self.inner.config;
        let c = &self.inner.counters;
        let deadline = Instant::now() + cfg.deadline;
        let mut failures = 0u32;
        let mut exchanges = 0u32;
        let mut last = String::from("not tried");
        let mut wait = Duration::ZERO;
        loop {
            let (endpoint, hold) = self.pick();
            let pause = wait.max(hold).min(cfg.max_backoff);
            if Instant::now() + pause >= deadline {
                last = format!(
                    "deadline of {:?} passed; last failure: {last}",
                    cfg.deadline
                );
                break;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if exchanges > 0 {
                bump(&c.retries);
            }
            exchanges += 1;
            bump(&c.attempts);
            let base = &self.inner.endpoints[endpoint];
            match self.exchange(endpoint, path, body.clone()).await {
                Exchange::Transport(e) => {
                    bump(&c.transport_errors);
                    base.hold_off(cfg.cooldown);
                    last = format!("{}: {e}", base.base);
                }
                Exchange::Answer {
                    status,
                    retry_after,
                    body,
                } => {
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        bump(&c.throttled);
                        let d = retry_after.unwrap_or(cfg.backoff).min(cfg.max_backoff);
                        base.hold_off(d);
                        last = format!("{}: queue full", base.base);
                        // Throttling is not a failure: it waits, within the deadline.
                        wait = Duration::ZERO;
                        continue;
                    }
                    if status.is_server_error() {
                        bump(&c.server_errors);
                        base.hold_off(retry_after.unwrap_or(cfg.cooldown).min(cfg.max_backoff));
                        last = format!("{}: {status}: {}", base.base, snippet(&body));
                    } else if !status.is_success() {
                        bump(&c.rejected);
                        let error = serde_json::from_slice::<ErrorBody>(&body)
                            .ok()
                            .map(|b| b.error);
                        return Err(ClientError::Rejected {
                            status: status.as_u16(),
                            error,
                            body: snippet(&body),
                        });
                    } else {
                        match accept(body) {
                            Ok(v) => return Ok(v),
                            Err(why) => last = format!("{}: {why}", base.base),
                        }
                    }
                }
            }
            failures += 1;
            if failures >= cfg.max_attempts {
                break;
            }
            let doubled = cfg.backoff.saturating_mul(1 << (failures - 1).min(16));
            wait = doubled.min(cfg.max_backoff);
        }
        Err(ClientError::Unavailable {
            attempts: exchanges,
            last,
        })
    }

    /// Judges one submission. A report with verdict sandbox_error is retried like a
    /// failed exchange; when all attempts fail the error is [`ClientError::Unavailable`]
    /// and the submission is counted as absent.
    pub async fn judge(&self, request: &JudgeRequest) -> Result<Report, ClientError> {
        let c = &self.inner.counters;
        bump(&c.requests);
        let body = match serde_json::to_vec(request) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                bump(&c.absent);
                return Err(ClientError::Encode(e.to_string()));
            }
        };
        let result = self
            .call("/v1/judge", body, |bytes| {
                let report: Report = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("unreadable report: {e}"))?;
                if report.verdict == Verdict::SandboxError {
                    bump(&c.sandbox_errors);
                    return Err(format!(
                        "sandbox_error: {}",
                        report.message.as_deref().unwrap_or("no detail")
                    ));
                }
                Ok(report)
            })
            .await;
        match &result {
            Ok(_) => bump(&c.judged),
            Err(ClientError::Rejected { .. }) => {}
            Err(_) => bump(&c.absent),
        }
        result
    }

    /// The reward of one submission: present when judged, absent (and counted) when not.
    pub async fn reward(&self, request: &JudgeRequest) -> Scored {
        match self.judge(request).await {
            Ok(report) => Scored {
                reward: report.reward,
                report: Some(report),
                error: None,
            },
            Err(e) => {
                tracing::warn!(error = %e, "reward absent");
                Scored {
                    reward: None,
                    report: None,
                    error: Some(e),
                }
            }
        }
    }

    /// Judges many submissions in one batch request to one server; the ones the batch
    /// left without a usable report (a lost connection, a sandbox_error, a full queue)
    /// are then judged one by one with [`RewardClient::judge`], over every server. The
    /// results are in input order.
    pub async fn judge_batch(&self, requests: &[JudgeRequest]) -> Vec<Result<Report, ClientError>> {
        let c = &self.inner.counters;
        let mut results: Vec<Option<Result<Report, ClientError>>> = vec![None; requests.len()];
        if requests.is_empty() {
            return Vec::new();
        }
        let batch = BatchRequest {
            submissions: requests.to_vec(),
        };
        let body = serde_json::to_vec(&batch).map(Bytes::from);
        if let Ok(body) = body {
            let (endpoint, _) = self.pick();
            bump(&c.attempts);
            if let Exchange::Answer { status, body, .. } =
                self.exchange(endpoint, "/v1/judge/batch", body).await
            {
                if status.is_success() {
                    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        let Ok(item) = serde_json::from_slice::<BatchLine>(line) else {
                            continue;
                        };
                        let Some(slot) = results.get_mut(item.index) else {
                            continue;
                        };
                        match (item.report, item.error) {
                            (Some(r), _) if r.verdict != Verdict::SandboxError => {
                                bump(&c.requests);
                                bump(&c.judged);
                                *slot = Some(Ok(r));
                            }
                            (None, Some(error)) if error.code != "sandbox_error" => {
                                bump(&c.requests);
                                bump(&c.rejected);
                                *slot = Some(Err(ClientError::Rejected {
                                    status: 422,
                                    body: error.message.clone(),
                                    error: Some(error),
                                }));
                            }
                            (Some(_), _) => bump(&c.sandbox_errors),
                            _ => {}
                        }
                    }
                } else if status.is_server_error() {
                    bump(&c.server_errors);
                } else if status == StatusCode::TOO_MANY_REQUESTS {
                    bump(&c.throttled);
                }
            } else {
                bump(&c.transport_errors);
            }
        }
        let missing: Vec<usize> = (0..requests.len())
            .filter(|&i| results[i].is_none())
            .collect();
        let retried =
            futures::future::join_all(missing.iter().map(|&i| self.judge(&requests[i]))).await;
        for (i, r) in missing.into_iter().zip(retried) {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ClientError::Unavailable {
                        attempts: 0,
                        last: "lost".into(),
                    })
                })
            })
            .collect()
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised_or_refused() {
        assert_eq!(
            normalise("127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalise("http://judge:80").unwrap(), "http://judge:80");
        assert!(matches!(
            normalise("https://x"),
            Err(ClientError::Endpoint { .. })
        ));
        assert!(matches!(
            normalise("ftp://x"),
            Err(ClientError::Endpoint { .. })
        ));
        assert!(matches!(
            normalise("http://"),
            Err(ClientError::Endpoint { .. })
        ));
        assert!(matches!(
            RewardClient::new(ClientConfig::default()),
            Err(ClientError::NoEndpoints)
        ));
    }

    #[tokio::test]
    async fn round_robin_skips_endpoints_holding_off() {
        let client = RewardClient::new(ClientConfig {
            endpoints: vec!["a:1".into(), "b:2".into(), "c:3".into()],
            ..Default::default()
        })
        .unwrap();
        let picks: Vec<usize> = (0..3).map(|_| client.pick().0).collect();
        assert_eq!(picks, vec![0, 1, 2]);
        client.inner.endpoints[1].hold_off(Duration::from_secs(60));
        let picks: Vec<usize> = (0..4).map(|_| client.pick().0).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        for e in &client.inner.endpoints {
            e.hold_off(Duration::from_secs(60));
        }
        client.inner.endpoints[2].hold_off(Duration::from_secs(1));
        // Holding off only ever extends, so endpoint 2 still waits 60 s; all wait.
        let (_, wait) = client.pick();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
    }
}
