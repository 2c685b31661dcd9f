//! The server's shared state: configuration, loaded problems, the bounded queue, and the
//! path every judgement takes (resolve, clamp, admit, run on the blocking pool).

use crate::backend::{Backend, LanguageInfo};
use crate::error::{ApiError, ServerError};
use crate::limits::{clamp, validate_full, LimitsPatch};
use crate::metrics::Metrics;
use crate::wire::JudgeRequest;
use axum::http::StatusCode;
use crucible_core::{Limits, Problem, Report, RewardSpec, Submission, Verdict};
use crucible_judge::JudgeError;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How a server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Judgements that may run at once (0: one per core).
    pub workers: usize,
    /// Submissions that may wait for a worker beyond those running; past that the server
    /// answers 429.
    pub queue: usize,
    /// Largest request body, bytes. Memory held by requests is at most about
    /// `(workers + queue) * body_limit`, since a body is read only after its request was
    /// admitted.
    pub body_limit: usize,
    /// The largest limits a run may get; larger asks are clamped.
    pub max_limits: Limits,
    /// The reward of requests that name none.
    pub default_reward: RewardSpec,
    /// When set, every endpoint but `/v1/health` and `/metrics` wants
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Name reported as SandboxFusion's `executor_pod_name` (e.g. the pod's name).
    pub pod_name: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workers: 0,
            queue: 256,
            body_limit: 4 << 20,
            max_limits: Limits {
                cpu_time_ms: 30_000,
                wall_time_ms: 60_000,
                memory_bytes: 4 << 30,
                output_bytes: 64 << 20,
                file_size_bytes: 256 << 20,
                processes: 256,
                open_files: 1024,
                work_dir_bytes: 1 << 30,
            },
            default_reward: RewardSpec::Binary,
            token: None,
            pod_name: None,
        }
    }
}

impl ServerConfig {
    /// Reads a bearer token from `path` (surrounding whitespace ignored).
    pub fn read_token(path: &std::path::Path) -> Result<String, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Token {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ServerError::Token {
                path: path.to_path_buf(),
                message: "is empty".into(),
            });
        }
        Ok(token.to_string())
    }
}

/// Problems the server loaded at start-up, by dataset name and problem id, so requests
/// (and SandboxFusion's `/submit`) can name a problem instead of sending it.
#[derive(Debug, Clone, Default)]
pub struct Datasets {
    sets: BTreeMap<String, HashMap<String, Arc<Problem>>>,
}

impl Datasets {
    /// Adds `problems` under `name`.
    pub fn insert(&mut self, name: &str, problems: Vec<Problem>) -> Result<(), ServerError> {
        if self.sets.contains_key(name) {
            return Err(ServerError::DuplicateDataset(name.to_string()));
        }
        let map = problems
            .into_iter()
            .map(|p| (p.id.clone(), Arc::new(p)))
            .collect();
        self.sets.insert(name.to_string(), map);
        Ok(())
    }

    /// Loads a dataset file of `kind` as `name`.
    pub fn load(
        &mut self,
        name: &str,
        kind: crucible_datasets::DatasetKind,
        path: &Path,
    ) -> Result<usize, ServerError> {
        let problems =
            crucible_datasets::load(kind, path).map_err(|source| ServerError::Dataset {
                name: name.to_string(),
                source: Box::new(source),
            })?;
        let n = problems.len();
        self.insert(name, problems)?;
        Ok(n)
    }

    /// Names of the loaded datasets.
    pub fn names(&self) -> Vec<String> {
        self.sets.keys().cloned().collect()
    }

    /// Problem `id` of `dataset`. An id that is not found whole also matches a problem
    /// whose id ends in `/<id>` when exactly one does, so SandboxFusion-style numeric
    /// ids (`0`) find `HumanEval/0`.
    pub(crate) fn get(
        &self,
        dataset: &str,
        id: &str,
        dataset_field: &str,
        id_field: &str,
    ) -> Result<Arc<Problem>, ApiError> {
        let Some(set) = self.sets.get(dataset) else {
            let known = self.names().join(", ");
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_dataset",
                Some(dataset_field),
                format!("no dataset {dataset:?} on this server (loaded: [{known}])"),
            ));
        };
        if let Some(p) = set.get(id) {
            return Ok(p.clone());
        }
        let suffix = format!("/{id}");
        let mut matches = set.iter().filter(|(k, _)| k.ends_with(&suffix));
        if let (Some((_, p)), None) = (matches.next(), matches.next()) {
            return Ok(p.clone());
        }
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_task",
            Some(id_field),
            format!("dataset {dataset:?} has no problem {id:?}"),
        ))
    }
}

/// Everything the handlers share.
pub struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: ServerConfig,
    pub(crate) languages: BTreeMap<String, LanguageInfo>,
    pub(crate) datasets: Datasets,
    pub(crate) metrics: Arc<Metrics>,
    /// Admission: one permit per submission waiting or running.
    admit: Arc<Semaphore>,
    /// Execution: one permit per running judgement.
    run: Arc<Semaphore>,
    pub(crate) workers: usize,
    pub(crate) capacity: usize,
    draining: AtomicBool,
    started: Instant,
}

/// A prepared judgement: everything resolved and clamped, ready to queue.
pub(crate) struct Prepared {
    pub problem: Arc<Problem>,
    pub submission: Submission,
    pub reward: RewardSpec,
    /// Fields of the limits that were lowered to the server's maxima.
    pub clamped: Vec<&'static str>,
}

/// One admitted submission. Dropping it before it ran takes it off the queue gauge;
/// dropping it after it ran takes it off the in-flight gauge. Either way its admission
/// permit returns to the queue.
pub(crate) struct Ticket {
    _admission: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
    started: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.started {
            self.metrics.finished();
        } else {
            self.metrics.dequeued();
        }
    }
}

impl AppState {
    /// A state over `backend`, with `datasets` for requests that name a problem.
    pub fn new(
        backend: Arc<dyn Backend>,
        config: ServerConfig,
        datasets: Datasets,
    ) -> Result<Arc<AppState>, ServerError> {
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        let capacity = workers
            .checked_add(config.queue)
            .filter(|&c| c <= Semaphore::MAX_PERMITS && c <= u32::MAX as usize)
            .ok_or_else(|| ServerError::Config("workers + queue is too large".into()))?;
        if config.body_limit == 0 {
            return Err(ServerError::Config("body limit must be positive".into()));
        }
        let languages = backend
            .languages()
            .into_iter()
            .map(|l| (l.name.clone(), l))
            .collect();
        Ok(Arc::new(AppState {
            backend,
            languages,
            datasets,
            metrics: Arc::new(Metrics::default()),
            admit: Arc::new(Semaphore::new(capacity)),
            run: Arc::new(Semaphore::new(workers)),
            workers,
            capacity,
            config,
            draining: AtomicBool::new(false),
            started: Instant::now(),
        }))
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Marks the server as shutting down: health answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Seconds a client should wait before retrying a 429: the time the queue ahead of it
    /// takes to drain at the recent pace, between 1 and 60.
    fn retry_after(&self) -> u64 {
        let per_job = self.metrics.mean_job_secs().max(0.01);
        let secs = (self.capacity as f64 * per_job / self.workers as f64).ceil();
        (secs as u64).clamp(1, 60)
    }

    /// Admits `n` submissions at once, or answers 429 with Retry-After when the queue
    /// cannot take them all. A request asking for more than the whole capacity can never
    /// be admitted and gets 422 instead.
    pub(crate) fn admit(&self, n: usize, field: &str) -> Result<Vec<Ticket>, ApiError> {
        if n > self.capacity {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{n} submissions in one request; this server takes at most {}",
                    self.capacity
                ),
            ));
        }
        let Ok(permit) = self.admit.clone().try_acquire_many_owned(n as u32) else {
            self.metrics.rejected_full();
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                None,
                format!(
                    "the queue is full ({} submissions waiting or running); retry later",
                    self.capacity
                ),
            );
            e.retry_after = Some(self.retry_after());
            return Err(e);
        };
        self.metrics.enqueued(n as i64);
        let mut tickets = Vec::with_capacity(n);
        let mut rest = permit;
        for _ in 1..n {
            let Some(one) = rest.split(1) else { break };
            tickets.push(self.ticket(one));
        }
        tickets.push(self.ticket(rest));
        Ok(tickets)
    }

    fn ticket(&self, permit: OwnedSemaphorePermit) -> Ticket {
        Ticket {
            _admission: permit,
            metrics: self.metrics.clone(),
            started: false,
        }
    }

    /// Waits for a worker, then runs `work` on the blocking pool. The worker permit and
    /// the ticket move into the blocking task, so a client that goes away mid-run frees
    /// neither before the sandbox is done: `workers` really bounds the runs.
    pub(crate) async fn execute<T, F>(
        self: &Arc<Self>,
        mut ticket: Ticket,
        work: F,
    ) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> T + Send + 'static,
    {
        let worker = self
            .run
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| format!("worker pool closed: {e}"))?;
        ticket.started = true;
        self.metrics.started();
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || {
            let _ticket = ticket;
            let _worker = worker;
            work(&*backend)
        })
        .await
        .map_err(|e| format!("judge worker failed: {e}"))
    }

    /// Resolves a request: its problem, language, limits (clamped) and reward. Errors
    /// name fields relative to the request.
    pub(crate) fn prepare(&self, req: JudgeRequest) -> Result<Prepared, ApiError> {
        let problem = match (&req.problem, &req.dataset, &req.task_id) {
            (Some(_), None, None) => None,
            (None, Some(d), Some(t)) => Some(self.datasets.get(d, t, "dataset", "task_id")?),
            (Some(_), _, _) => {
                return Err(ApiError::invalid(
                    "problem",
                    "give either `problem` or `dataset` + `task_id`, not both",
                ))
            }
            (None, None, _) => {
                return Err(ApiError::invalid(
                    "problem",
                    "missing: give `problem`, or `dataset` + `task_id`",
                ))
            }
            (None, Some(_), None) => return Err(ApiError::invalid("task_id", "missing")),
        };
        let inline = problem.is_none();
        let problem = match (problem, req.problem) {
            (Some(p), _) => p,
            (None, Some(p)) => {
                if let Some(l) = &p.limits {
                    validate_full(l, "problem.limits")?;
                }
                Arc::new(p)
            }
            (None, None) => unreachable!("one of the two is set: checked above"),
        };
        // Blame the field the language came from: the request's, or the inline problem's.
        let field = if req.language.is_none() && inline {
            "problem.language"
        } else {
            "language"
        };
        let language = req.language.unwrap_or_else(|| problem.language.clone());
        let info = self.language(&language, field)?;
        if req.completion.trim().is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty_code",
                Some("completion"),
                "the completion has no code",
            ));
        }
        let (limits, clamped) = self.effective_limits(
            problem.limits.unwrap_or(info.limits),
            req.limits.as_ref(),
            "limits",
        )?;
        let problem = if problem.limits == Some(limits) {
            problem
        } else {
            let mut p = (*problem).clone();
            p.limits = Some(limits);
            Arc::new(p)
        };
        Ok(Prepared {
            submission: Submission {
                task_id: problem.id.clone(),
                sample: req.sample,
                language,
                completion: req.completion,
            },
            problem,
            reward: req.reward.unwrap_or(self.config.default_reward),
            clamped,
        })
    }

    /// The language called `name`, or 422 `unknown_language` on `field`.
    pub(crate) fn language(&self, name: &str, field: &str) -> Result<&LanguageInfo, ApiError> {
        self.languages.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.languages.keys().map(String::as_str).collect();
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_language",
                Some(field),
                format!(
                    "unknown language {name:?} (available: {})",
                    known.join(", ")
                ),
            )
        })
    }

    /// `base` with `patch` applied (validated under `field`), clamped to the maxima.
    pub(crate) fn effective_limits(
        &self,
        base: Limits,
        patch: Option<&LimitsPatch>,
        field: &str,
    ) -> Result<(Limits, Vec<&'static str>), ApiError> {
        let asked = match patch {
            Some(p) => {
                p.validate(field)?;
                p.apply(base)
            }
            None => base,
        };
        Ok(clamp(asked, &self.config.max_limits))
    }

    /// Judges a prepared submission on a worker. An internal failure (a panicking judge)
    /// becomes a sandbox_error report with no reward, as the CLI's scheduler does.
    pub(crate) async fn judge(
        self: &Arc<Self>,
        ticket: Ticket,
        job: Prepared,
    ) -> Result<Report, ApiError> {
        let Prepared {
            problem,
            submission,
            reward,
            ..
        } = job;
        let identity = (
            submission.task_id.clone(),
            submission.sample,
            submission.language.clone(),
        );
        let started = Instant::now();
        let outcome = self
            .execute(ticket, move |b| b.judge(&problem, &submission))
            .await;
        let mut report = match outcome {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(judge_error(e)),
            Err(why) => {
                tracing::error!(task = %identity.0, error = %why, "judgement lost");
                Report::sandbox_error(identity.0, identity.1, identity.2, why)
            }
        };
        // The spec is per request, while the backend's judge has one fixed spec: compute
        // the reward here from the report so both always agree.
        report.reward = reward.reward(&report);
        self.metrics
            .execution(&report.language, report.verdict, started.elapsed());
        if report.verdict == Verdict::SandboxError {
            tracing::warn!(task = %report.task_id, message = ?report.message, "sandbox error");
        }
        Ok(report)
    }
}

/// A judge error (the submission cannot be judged) as a client error.
pub(crate) fn judge_error(e: JudgeError) -> ApiError {
    match e {
        JudgeError::UnknownLanguage { .. } | JudgeError::Unavailable { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_language",
            Some("language"),
            e.to_string(),
        ),
        JudgeError::EmptyCode { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_code",
            Some("completion"),
            e.to_string(),
        ),
        other => {
            tracing::error!(error = %other, "judge failed");
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sandbox_error",
                None,
                other.to_string(),
            );
            err.retry_after = Some(1);
            err
        }
    }
}
