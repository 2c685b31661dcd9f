//! For the dataset-wide tests: where the shared datasets are, and judging a batch through
//! the real scheduler with the reports back in input order.

use crucible_core::{Problem, Report, Submission};
use crucible_judge::{Job, Judge, Scheduler};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// `rel` under the shared datasets folder (`$CRUCIBLE_SHARED_DATASETS`, else
/// `../shared/datasets` beside the repository), or None, with a "skipped" message, when
/// it is not there.
pub fn shared_dataset(rel: &str) -> Option<PathBuf> {
    let base = std::env::var_os("CRUCIBLE_SHARED_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    let path = base.join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is not there", path.display());
        None
    }
}

/// Judges every submission against its problem (by task id) through a [`Scheduler`] of
/// `concurrency` (0: one per core) and returns the reports in the order of `subs`.
/// Panics when a submission cannot be judged or gets no report.
pub fn judge_in_order(
    judge: Arc<Judge>,
    concurrency: usize,
    problems: &[Problem],
    subs: Vec<Submission>,
) -> Vec<Report> {
    let scheduler = Scheduler::new(judge, concurrency);
    let by_id: BTreeMap<&str, Arc<Problem>> = problems
        .iter()
        .map(|p| (p.id.as_str(), Arc::new(p.clone())))
        .collect();
    let jobs: Vec<Job> = subs
        .into_iter()
        .map(|s| Job {
            problem: by_id[s.task_id.as_str()].clone(),
            submission: s,
        })
        .collect();
    let n = jobs.len();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut out: Vec<(usize, Report)> = rt.block_on(async {
        scheduler
            .judge_all(jobs)
            .map(|(i, r)| (i, r.expect("judgeable")))
            .collect()
            .await
    });
    out.sort_by_key(|(i, _)| *i);
    assert_eq!(out.len(), n, "every submission gets a report");
    out.into_iter().map(|(_, r)| r).collect()
}
