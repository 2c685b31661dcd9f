//! Rewards from crucible-judge, in process, on a background thread.
//!
//! [`RewardService::submit`] hands a batch of completions to a judge thread and returns
//! at once, so the learner can generate the next batch while this one is judged;
//! [`RewardService::wait`] collects the results. Within a batch, and across batches
//! through a bounded cache, identical (problem, completion) pairs are judged once: RL
//! samples repeat often once a policy sharpens. A sandbox failure gives no reward
//! (`None`), which the learner masks; it is never turned into 0.

use crucible_core::{Problem, Report, RewardSpec, Submission, Verdict};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use thiserror::Error;

/// What can go wrong setting up the judge.
#[derive(Debug, Error)]
pub enum RewardError {
    /// The language profiles or the sandbox could not be set up.
    #[error("judge set-up: {0}")]
    Setup(String),
    /// The judge thread is gone.
    #[error("the judge thread stopped")]
    Gone,
}

/// One completion to judge.
#[derive(Debug, Clone)]
pub struct RewardJob {
    /// The problem.
    pub problem: Arc<Problem>,
    /// The completion (joined to the problem's `completion_prefix`).
    pub completion: String,
}

/// The outcome for one completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The reward under the service's spec; None when the sandbox failed.
    pub reward: Option<f64>,
    /// Whether every test passed.
    pub passed: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// Whether this result was reused from an identical completion.
    pub reused: bool,
}

impl Judged {
    fn from_report(r: &Report) -> Judged {
        Judged {
            reward: r.reward,
            passed: r.verdict == Verdict::Accepted,
            verdict: r.verdict,
            reused: false,
        }
    }
}

/// A judged batch.
#[derive(Debug, Clone)]
pub struct JudgedBatch {
    /// The caller's id for the batch.
    pub id: u64,
    /// One result per job, in order.
    pub results: Vec<Judged>,
    /// Judgements actually run (the rest were duplicates or cached).
    pub judged: usize,
    /// Seconds the judge spent on the batch.
    pub busy_s: f64,
}

/// Something that turns a (problem, completion) into a report; the real judge, or a
/// stand-in in tests.
pub trait Grader: Send + Sync + 'static {
    /// Judges one completion.
    fn grade(&self, problem: &Problem, completion: &str, sample: usize) -> Report;
}

/// The in-process crucible judge as a [`Grader`].
pub struct JudgeGrader {
    judge: Judge,
}

impl JudgeGrader {
    /// A judge over a fresh process sandbox with the built-in language profiles,
    /// computing rewards with `reward`, with fork-server slots for `workers` runs.
    pub fn new(reward: RewardSpec, workers: usize) -> Result<JudgeGrader, RewardError> {
        let profiles = Profiles::load(None).map_err(|e| RewardError::Setup(e.to_string()))?;
        let sandbox =
            crucible_sandbox::ProcessSandbox::new(crucible_sandbox::SandboxConfig::default())
                .map_err(|e| RewardError::Setup(format!("process sandbox: {e}")))?;
        let mut judge = Judge::new(
            sandbox,
            profiles,
            JudgeOptions {
                reward,
                limits: None,
            },
        );
        judge.set_fork_server_slots(workers);
        Ok(JudgeGrader { judge })
    }
}

impl Grader for JudgeGrader {
    fn grade(&self, problem: &Problem, completion: &str, sample: usize) -> Report {
        let sub = Submission {
            task_id: problem.id.clone(),
            sample,
            language: problem.language.clone(),
            completion: completion.to_owned(),
        };
        match self.judge.judge(problem, &sub) {
            Ok(r) => r,
            // A judge error (not a verdict on the program) has no reward either.
            Err(e) => Report::sandbox_error(sub.task_id, sample, sub.language, e.to_string()),
        }
    }
}

struct Request {
    id: u64,
    jobs: Vec<RewardJob>,
}

/// Judges batches on a background thread with `workers` judgements at once.
pub struct RewardService {
    tx: Option<Sender<Request>>,
    rx: Receiver<JudgedBatch>,
    early: Mutex<Vec<JudgedBatch>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Most (problem, completion) results kept for reuse across batches.
const CACHE_MAX: usize = 200_000;

impl RewardService {
    /// Starts the judge thread.
    pub fn start(grader: Arc<dyn Grader>, workers: usize) -> RewardService {
        let (tx, req_rx) = channel::<Request>();
        let (res_tx, rx) = channel::<JudgedBatch>();
        let thread = std::thread::Builder::new()
            .name("judge".into())
            .spawn(move || serve(grader, workers.max(1), req_rx, res_tx))
            .expect("spawning the judge thread");
        RewardService {
            tx: Some(tx),
            rx,
            early: Mutex::new(Vec::new()),
            thread: Some(thread),
        }
    }

    /// Queues a batch; returns at once.
    pub fn submit(&self, id: u64, jobs: Vec<RewardJob>) -> Result<(), RewardError> {
        self.tx
            .as_ref()
            .ok_or(RewardError::Gone)?
            .send(Request { id, jobs })
            .map_err(|_| RewardError::Gone)
    }

    /// Waits for the next finished batch (batches finish in submission order).
    pub fn wait(&self) -> Result<JudgedBatch, RewardError> {
        self.rx.recv().map_err(|_| RewardError::Gone)
    }

    /// Waits for the batch submitted as `id`, keeping batches that finish before it
    /// for their own callers.
    pub fn wait_for(&self, id: u64) -> Result<JudgedBatch, RewardError> {
        {
            let mut early = self.early.lock().map_err(|_| RewardError::Gone)?;
            if let Some(k) = early.iter().position(|b| b.id == id) {
                return Ok(early.swap_remove(k));
            }
        }
        loop {
            let b = self.wait()?;
            if b.id == id {
                return Ok(b);
            }
            self.early.lock().map_err(|_| RewardError::Gone)?.push(b);
        }
    }

    /// Submits and waits (under an id no training batch uses).
    pub fn judge_now(&self, jobs: Vec<RewardJob>) -> Result<JudgedBatch, RewardError> {
        self.submit(u64::MAX, jobs)?;
        self.wait_for(u64::MAX)
    }
}

impl Drop for RewardService {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(grader: Arc<dyn Grader>, workers: usize, rx: Receiver<Request>, tx: Sender<JudgedBatch>) {
    let mut cache: HashMap<(String, String), Judged> = HashMap::new();
    while let Ok(req) = rx.recv() {
        let started = Instant::now();
        // Unique jobs not already known; every job points at its unique slot.
        let mut slot_of: HashMap<(String, String), usize> = HashMap::new();
        let mut unique: Vec<(usize, &RewardJob)> = Vec::new();
        let mut slots = Vec::with_capacity(req.jobs.len());
        for (i, job) in req.jobs.iter().enumerate() {
            let key = (job.problem.id.clone(), job.completion.clone());
            if cache.contains_key(&key) {
                slots.push(None);
                continue;
            }
            let s = *slot_of.entry(key).or_insert_with(|| {
                unique.push((i, job));
                unique.len() - 1
            });
            slots.push(Some(s));
        }
        let out: Vec<Mutex<Option<Report>>> = (0..unique.len()).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..workers.min(unique.len()) {
                scope.spawn(|| loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(i, job)) = unique.get(k) else {
                        break;
                    };
                    let report = grader.grade(&job.problem, &job.completion, i);
                    if let Ok(mut o) = out[k].lock() {
                        *o = Some(report);
                    }
                });
            }
        });
        let fresh: Vec<Judged> = out
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .ok()
                    .flatten()
                    .map_or_else(lost_worker, |r| Judged::from_report(&r))
            })
            .collect();
        let mut first_use = vec![true; fresh.len()];
        let mut results = Vec::with_capacity(req.jobs.len());
        for (job, slot) in req.jobs.iter().zip(&slots) {
            let key = (job.problem.id.clone(), job.completion.clone());
            let j = match slot {
                Some(s) => {
                    let mut j = fresh[*s].clone();
                    j.reused = !std::mem::take(&mut first_use[*s]);
                    j
                }
                None => {
                    let mut j = cache[&key].clone();
                    j.reused = true;
                    j
                }
            };
            results.push(j);
        }
        for ((_, job), j) in unique.iter().zip(&fresh) {
            // A sandbox failure may not happen again: never cache it.
            if j.reward.is_some() && cache.len() < CACHE_MAX {
                cache.insert((job.problem.id.clone(), job.completion.clone()), j.clone());
            }
        }
        let batch = JudgedBatch {
            id: req.id,
            results,
            judged: unique.len(),
            busy_s: started.elapsed().as_secs_f64(),
        };
        if tx.send(batch).is_err() {
            break;
        }
    }
}

fn lost_worker() -> Judged {
    Judged {
        reward: None,
        passed: false,
        verdict: Verdict::SandboxError,
        reused: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Accepts "ok", fails "bad", and has a sandbox failure on "boom"; counts calls.
    struct Fake(AtomicUsize);

    impl Grader for Fake {
        fn grade(&self, p: &Problem, c: &str, sample: usize) -> Report {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut r = Report::sandbox_error(p.id.clone(), sample, "python", "x");
            match c {
                "ok" => {
                    r.verdict = Verdict::Accepted;
                    r.reward = Some(1.0);
                }
                "bad" => {
                    r.verdict = Verdict::WrongAnswer;
                    r.reward = Some(0.0);
                }
                _ => {}
            }
            r
        }
    }

    fn problem(id: &str) -> Arc<Problem> {
        Arc::new(Problem {
            id: id.into(),
            prompt: None,
            completion_prefix: String::new(),
            test_setup: String::new(),
            tests: vec![],
            reference: None,
            language: "python".into(),
            limits: None,
        })
    }

    #[test]
    fn duplicates_are_judged_once_and_failures_stay_absent() {
        let fake = Arc::new(Fake(AtomicUsize::new(0)));
        let svc = RewardService::start(fake.clone(), 2);
        let (a, b) = (problem("a"), problem("b"));
        let job = |p: &Arc<Problem>, c: &str| RewardJob {
            problem: p.clone(),
            completion: c.into(),
        };
        let jobs = vec![
            job(&a, "ok"),
            job(&a, "ok"),
            job(&b, "ok"),
            job(&a, "bad"),
            job(&a, "boom"),
        ];
        svc.submit(1, jobs.clone()).unwrap();
        // A second batch queued behind the first (overlap): its repeats hit the cache,
        // except the sandbox failure, which is retried.
        svc.submit(2, jobs).unwrap();
        let r1 = svc.wait().unwrap();
        assert_eq!(r1.id, 1);
        assert_eq!(r1.judged, 4);
        let rewards: Vec<_> = r1.results.iter().map(|j| j.reward).collect();
        assert_eq!(
            rewards,
            vec![Some(1.0), Some(1.0), Some(1.0), Some(0.0), None]
        );
        assert!(!r1.results[0].reused && r1.results[1].reused);
        assert!(r1.results[0].passed && !r1.results[3].passed);
        let r2 = svc.wait().unwrap();
        assert_eq!(r2.id, 2);
        assert_eq!(r2.judged, 1);
        assert_eq!(r2.results[4].reward, None);
        assert_eq!(fake.0.load(Ordering::SeqCst), 5);
    }
}
