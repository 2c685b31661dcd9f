use crate::{Job, Judge, JudgeError};
use crucible_core::Report;
use futures::stream::{self, Stream, StreamExt};
use std::sync::Arc;

/// Runs many judgements at once, at most `concurrency` at a time, on tokio's blocking
/// pool. Memory stays bounded: jobs are pulled from the input only as slots free up.
#[derive(Clone)]
pub struct Scheduler {
    judge: Arc<Judge>,
    concurrency: usize,
}

impl Scheduler {
    /// A scheduler over `judge`. `concurrency` 0 means one per available core.
    pub fn new(judge: Arc<Judge>, concurrency: usize) -> Scheduler {
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            concurrency
        };
        Scheduler { judge, concurrency }
    }

    /// How many judgements may run at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Judges every job. Yields `(index in the input, result)` in completion order, so a
    /// slow job never holds back the others; sort by index for input order. A judgement
    /// that panics yields a sandbox_error report rather than taking the run down.
    pub fn judge_all<I>(&self, jobs: I) -> impl Stream<Item = (usize, Result<Report, JudgeError>)>
    where
        I: IntoIterator<Item = Job>,
        I::IntoIter: Send + 'static,
    {
        let judge = self.judge.clone();
        stream::iter(jobs.into_iter().enumerate())
            .map(move |(index, job)| {
                let judge = judge.clone();
                async move {
                    let identity = (
                        job.submission.task_id.clone(),
                        job.submission.sample,
                        job.submission.language.clone(),
                    );
                    let handle = tokio::task::spawn_blocking(move || {
                        judge.judge(&job.problem, &job.submission)
                    });
                    let result = match handle.await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(task = %identity.0, error = %e, "judgement panicked");
                            Ok(Report::sandbox_error(
                                identity.0,
                                identity.1,
                                identity.2,
                                format!("judge worker failed: {e}"),
                            ))
                        }
                    };
                    (index, result)
                }
            })
            .buffer_unordered(self.concurrency)
    }
}
