//! Load generation against Crucible servers: a fixed mix of good, wrong and hostile
//! programs, and a driver that sends them from many concurrent clients, checks every
//! verdict against the expected one (the CLI's, on the same inputs), and measures
//! latency and throughput. Used by `crucible-loadgen`, scripts/loadtest.sh and the
//! crate's tests.

use crate::client::{ClientConfig, ClientError, ClientStats, RewardClient};
use crate::wire::JudgeRequest;
use crucible_core::{Limits, Problem, Report, TestCase, Verdict};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One program of the mix, as its own problem, so the CLI can judge it the same way.
#[derive(Debug, Clone)]
pub struct MixItem {
    /// `good`, `wrong` or `hostile`.
    pub class: &'static str,
    /// The problem (its id names the item).
    pub problem: Problem,
    /// The completion sent.
    pub completion: String,
    /// Relative frequency in the load.
    pub weight: u32,
}

fn stdio(stdin: &str, out: &str) -> TestCase {
    TestCase::Stdio {
        stdin: stdin.into(),
        expected_stdout: out.into(),
        comparator: Default::default(),
    }
}

fn call(function: &str, arg: i64, expected: i64) -> TestCase {
    TestCase::Call {
        function: function.into(),
        args: vec![arg.into()],
        expected: expected.into(),
        atol: None,
    }
}

fn problem(id: &str, tests: Vec<TestCase>, limits: Option<Limits>) -> Problem {
    Problem {
        id: format!("mix/{id}"),
        prompt: None,
        completion_prefix: String::new(),
        test_setup: String::new(),
        tests,
        reference: None,
        language: "python".into(),
        limits,
    }
}

/// The mix: trivial correct programs most of the time, wrong answers, crashes and
/// syntax errors, and hostile programs (an early exit, an always-equal object, an
/// endless loop, a memory hog, an output flood, reading secrets). The hostile ones carry
/// tight limits, so each costs a fraction of a second at most.
pub fn mix() -> Vec<MixItem> {
    let add_tests = || vec![stdio("1 2\n", "3\n"), stdio("-5 5\n", "0\n")];
    let square_tests = || vec![call("square", 3, 9), call("square", -4, 16)];
    let check = TestCase::Assert {
        code: "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n    assert candidate(-1, 1) == 0\n".into(),
        entry_point: Some("add".into()),
    };
    let tight = Limits::default().with_time_ms(200).with_memory_mb(64);
    let tight = Limits {
        output_bytes: 64 << 10,
        ..tight
    };
    // The memory hog dies at 64 MiB after ~55 ms of CPU here; a 200 ms time limit left
    // a slow moment (a noisy host) able to turn its verdict into a time-out, and the
    // mix's expected verdicts must not depend on the machine's speed.
    let roomy_time = Limits {
        cpu_time_ms: 2_000,
        wall_time_ms: 5_000,
        ..tight
    };
    let item = |class, weight, p: Problem, completion: &str| MixItem {
        class,
        problem: p,
        completion: completion.to_string(),
        weight,
    };
    vec![
        // Weight 0: not in the default load; `--only trivial` selects it for benchmarks.
        item("good", 0, problem("trivial", vec![stdio("hi\n", "hi\n")], None),
            "print(input())\n"),
        item("good", 30, problem("add-good", add_tests(), None),
            "a, b = map(int, input().split())\nprint(a + b)\n"),
        item("wrong", 15, problem("add-wrong", add_tests(), None),
            "a, b = map(int, input().split())\nprint(a - b)\n"),
        item("good", 15, problem("square-good", square_tests(), None),
            "def square(x):\n    return x * x\n"),
        item("wrong", 10, problem("square-wrong", square_tests(), None),
            "def square(x):\n    return x * 2\n"),
        item("good", 10, problem("check-good", vec![check.clone()], None),
            "def add(a, b):\n    return a + b\n"),
        item("wrong", 5, problem("runtime-error", add_tests(), None),
            "raise ValueError('no')\n"),
        item("wrong", 5, problem("syntax-error", add_tests(), None),
            "def f(:\n    pass\n"),
        item("hostile", 3, problem("exit-early", vec![check.clone()], None),
            "import sys\ndef add(a, b):\n    return 0\nsys.exit(0)\n"),
        item("hostile", 2, problem("always-equal", square_tests(), None),
            "class Eq:\n    def __eq__(self, other):\n        return True\ndef square(x):\n    return Eq()\n"),
        item("hostile", 1, problem("endless-loop", add_tests(), Some(tight)),
            "while True:\n    pass\n"),
        item("hostile", 2, problem("memory-hog", add_tests(), Some(roomy_time)),
            "hog = bytearray(1 << 30)\nprint(len(hog))\n"),
        item("hostile", 2, problem("output-flood", add_tests(), Some(tight)),
            "import sys\nwhile True:\n    sys.stdout.write('x' * 4096)\n"),
        item("hostile", 2, problem("read-secrets", add_tests(), Some(tight)),
            "print(open('/etc/shadow').read())\n"),
    ]
}

/// Which item request `i` sends: weights laid out once, then visited in a fixed
/// scrambled order so that costly items are spread over the run.
fn schedule(items: &[MixItem]) -> Vec<usize> {
    let mut slots = Vec::new();
    for (i, it) in items.iter().enumerate() {
        slots.extend(std::iter::repeat_n(i, it.weight as usize));
    }
    if slots.is_empty() {
        // Only weight-0 items were selected: send them evenly.
        slots.extend(0..items.len());
    }
    let n = slots.len();
    // A multiplier coprime with n visits every slot once per n requests.
    let mut step = 7919 % n.max(1);
    while step == 0 || gcd(step, n) != 1 {
        step += 1;
    }
    (0..n).map(|k| slots[(k * step) % n]).collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// What the expected outcome of an item is: the CLI's verdict and reward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    /// The verdict.
    pub verdict: Verdict,
    /// The reward.
    pub reward: Option<f64>,
}

/// Expected outcomes by task id, read from `crucible judge` reports (JSONL).
pub fn expected_from_reports(jsonl: &str) -> Result<HashMap<String, Expected>, String> {
    let mut out = HashMap::new();
    for (n, line) in jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let r: Report = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        out.insert(
            r.task_id.clone(),
            Expected {
                verdict: r.verdict,
                reward: r.reward,
            },
        );
    }
    Ok(out)
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Servers to spread the load over.
    pub endpoints: Vec<String>,
    /// Concurrent clients (each sends its next request when the last one is answered).
    pub clients: usize,
    /// Requests in all.
    pub requests: usize,
    /// Bearer token, if the servers want one.
    pub token: Option<String>,
    /// Only send items whose id ends with one of these names (all when empty).
    pub only: Vec<String>,
    /// Expected outcomes by task id; items without one are not checked.
    pub expected: HashMap<String, Expected>,
    /// Stop sending new requests after this long.
    pub max_duration: Duration,
    /// Failed attempts per request before its reward is given up as absent.
    pub max_attempts: u32,
    /// Time one request may take, retries included.
    pub request_deadline: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            endpoints: Vec::new(),
            clients: 200,
            requests: 20_000,
            token: None,
            only: Vec::new(),
            expected: HashMap::new(),
            max_duration: Duration::from_secs(1800),
            max_attempts: 4,
            request_deadline: Duration::from_secs(120),
        }
    }
}

/// One request whose outcome differs from the expected one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    /// The item.
    pub task_id: String,
    /// Expected verdict.
    pub expected: Verdict,
    /// Verdict received.
    pub got: Verdict,
    /// Expected reward.
    pub expected_reward: Option<f64>,
    /// Reward received.
    pub got_reward: Option<f64>,
}

/// What a load run saw.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: usize,
    /// Requests answered with a report.
    pub judged: usize,
    /// Requests with no report after every retry (reward absent).
    pub errors: usize,
    /// Requests not sent because `max_duration` passed.
    pub not_sent: usize,
    /// Reports whose verdict or reward differs from the expected.
    pub mismatches: Vec<Mismatch>,
    /// Reports checked against an expectation.
    pub checked: usize,
    /// Reports by verdict.
    pub by_verdict: BTreeMap<String, usize>,
    /// Requests by item class.
    pub by_class: BTreeMap<String, usize>,
    /// Latency percentiles of judged requests, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Judged requests per second over the run.
    pub throughput_rps: f64,
    /// Length of the run, seconds.
    pub elapsed_s: f64,
    /// First few error messages.
    pub sample_errors: Vec<String>,
    /// The client's counters.
    #[serde(skip)]
    pub client: ClientStats,
}

impl LoadReport {
    /// Requests sent that got no report.
    pub fn lost(&self) -> usize {
        self.sent - self.judged
    }
}

/// Percentile `q` (0..=1) of sorted `v`, nearest rank.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    judged: usize,
    errors: usize,
    checked: usize,
    mismatches: Vec<Mismatch>,
    by_verdict: BTreeMap<String, usize>,
    by_class: BTreeMap<String, usize>,
    sample_errors: Vec<String>,
}

/// Runs a load: `clients` tasks send `requests` requests in all, each judged request is
/// checked against `expected`. Returns when every request was answered (or given up), or
/// when `max_duration` passed and the requests in flight were answered.
pub async fn run(config: LoadConfig) -> Result<LoadReport, ClientError> {
    let client = RewardClient::new(ClientConfig {
        endpoints: config.endpoints.clone(),
        token: config.token.clone(),
        max_attempts: config.max_attempts,
        deadline: config.request_deadline,
        request_timeout: config.request_deadline,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(2),
        cooldown: Duration::from_millis(500),
    })?;
    let items: Vec<MixItem> = mix()
        .into_iter()
        .filter(|it| {
            config.only.is_empty()
                || config
                    .only
                    .iter()
                    .any(|o| it.problem.id.ends_with(o.as_str()))
        })
        .collect();
    if items.is_empty() {
        return Err(ClientError::Encode("no mix item matches --only".into()));
    }
    let requests: Arc<Vec<(JudgeRequest, &'static str)>> = Arc::new(
        items
            .iter()
            .map(|it| {
                (
                    JudgeRequest::inline(it.problem.clone(), it.completion.clone()),
                    it.class,
                )
            })
            .collect(),
    );
    let order = Arc::new(schedule(&items));
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let expected = Arc::new(config.expected.clone());
    let started = Instant::now();
    let stop_at = started + config.max_duration;
    let mut tasks = Vec::with_capacity(config.clients);
    for _ in 0..config.clients.max(1) {
        let (client, requests, order, next, tally, expected) = (
            client.clone(),
            requests.clone(),
            order.clone(),
            next.clone(),
            tally.clone(),
            expected.clone(),
        );
        let total = config.requests;
        tasks.push(tokio::spawn(async move {
            loop {
                if Instant::now() >= stop_at {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let (req, class) = &requests[order[i % order.len()]];
                let t0 = Instant::now();
                let result = client.judge(req).await;
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                *t.by_class.entry(class.to_string()).or_insert(0) += 1;
                match result {
                    Ok(report) => {
                        t.judged += 1;
                        t.latencies.push(ms);
                        *t.by_verdict
                            .entry(report.verdict.as_str().to_string())
                            .or_insert(0) += 1;
                        if let Some(want) = expected.get(&report.task_id) {
                            t.checked += 1;
                            if want.verdict != report.verdict || want.reward != report.reward {
                                t.mismatches.push(Mismatch {
                                    task_id: report.task_id.clone(),
                                    expected: want.verdict,
                                    got: report.verdict,
                                    expected_reward: want.reward,
                                    got_reward: report.reward,
                                });
                            }
                        }
                    }
                    Err(e) => {
                        t.errors += 1;
                        if t.sample_errors.len() < 5 {
                            t.sample_errors.push(e.to_string());
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        // A client task only ends by returning; a panic in one is a bug worth surfacing.
        if let Err(e) = t.await {
            return Err(ClientError::Unavailable {
                attempts: 0,
                last: format!("load client task failed: {e}"),
            });
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    t.latencies.sort_by(|a, b| a.total_cmp(b));
    let sent = t.judged + t.errors;
    Ok(LoadReport {
        sent,
        judged: t.judged,
        errors: t.errors,
        not_sent: config.requests.saturating_sub(sent),
        mismatches: t.mismatches,
        checked: t.checked,
        by_verdict: t.by_verdict,
        by_class: t.by_class,
        p50_ms: percentile(&t.latencies, 0.50),
        p90_ms: percentile(&t.latencies, 0.90),
        p99_ms: percentile(&t.latencies, 0.99),
        max_ms: t.latencies.last().copied().unwrap_or(0.0),
        throughput_rps: if elapsed > 0.0 {
            t.judged as f64 / elapsed
        } else {
            0.0
        },
        elapsed_s: elapsed,
        sample_errors: t.sample_errors,
        client: client.stats(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_honours_weights_and_spreads() {
        let items = mix();
        let s = schedule(&items);
        let total: u32 = items.iter().map(|i| i.weight).sum();
        assert_eq!(s.len(), total as usize);
        for (i, it) in items.iter().enumerate() {
            assert_eq!(s.iter().filter(|&&x| x == i).count(), it.weight as usize);
        }
        // The 30 slots of the most frequent item are not all at the front.
        let add = items.iter().position(|i| i.weight == 30).unwrap();
        assert!(s[..30].iter().filter(|&&x| x == add).count() < 20);
        let trivial: Vec<MixItem> = items.into_iter().filter(|i| i.weight == 0).collect();
        assert_eq!(schedule(&trivial), vec![0]);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn mix_ids_are_unique() {
        let items = mix();
        let mut ids: Vec<&str> = items.iter().map(|i| i.problem.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), items.len());
    }
}
