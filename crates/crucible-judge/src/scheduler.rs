use crate::{Job, Judge, JudgeError};
use crucible_core::Report;
use futures::stream::{self, Stream};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Runs many judgements at once, at most `concurrency` at a time, each on a judge thread
/// of its own. Memory stays bounded: jobs are pulled from the input only as threads free
/// up, and reports wait in a short queue for the reader.
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
    ///
    /// `concurrency` worker threads each take the next job as soon as they finish one, so
    /// a job starts without a hand-off between threads (on a busy machine every wake-up
    /// of another thread costs the programs CPU). Dropping the stream stops the workers
    /// after the judgements they are in.
    pub fn judge_all<I>(&self, jobs: I) -> impl Stream<Item = (usize, Result<Report, JudgeError>)>
    where
        I: IntoIterator<Item = Job>,
        I::IntoIter: Send + 'static,
    {
        let queue = Arc::new(Mutex::new(jobs.into_iter().enumerate()));
        // Bounded, so a slow reader holds the workers back instead of piling up reports.
        let (tx, rx) = mpsc::channel(self.concurrency * 4);
        for w in 0..self.concurrency {
            let worker = Worker {
                judge: self.judge.clone(),
                queue: queue.clone(),
                results: tx.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("judge-{w}"))
                .spawn(move || worker.run());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a judge thread");
            }
        }
        drop(tx);
        // The channel closes when the workers are done. Jobs still queued then found no
        // worker at all (none could be started): each gets a sandbox_error report.
        stream::unfold((rx, queue), |(mut rx, queue)| async move {
            if let Some(item) = rx.recv().await {
                return Some((item, (rx, queue)));
            }
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let (index, job) = next?;
            let report = unjudged(&job, "no judge thread could be started");
            Some(((index, Ok(report)), (rx, queue)))
        })
    }
}

/// The report for a job that could not be judged, saying why.
fn unjudged(job: &Job, why: &str) -> Report {
    Report::sandbox_error(
        job.submission.task_id.clone(),
        job.submission.sample,
        job.submission.language.clone(),
        format!("judge worker failed: {why}"),
    )
}

/// What one judge thread needs: the judge, the jobs left, and where reports go.
struct Worker<I> {
    judge: Arc<Judge>,
    queue: Arc<Mutex<I>>,
    results: mpsc::Sender<(usize, Result<Report, JudgeError>)>,
}

impl<I: Iterator<Item = (usize, Job)>> Worker<I> {
    /// Judges jobs until there are none left or nobody reads the results.
    fn run(self) {
        loop {
            let next = self.queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((index, job)) = next else { return };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.judge.judge(&job.problem, &job.submission)
            }))
            .unwrap_or_else(|_| {
                tracing::error!(task = %job.submission.task_id, "judgement panicked");
                Ok(unjudged(&job, "the judgement panicked"))
            });
            if self.results.blocking_send((index, result)).is_err() {
                return;
            }
        }
    }
}
