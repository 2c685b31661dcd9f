//! Prometheus metrics, kept by hand: a few gauges, counters and histograms need no
//! registry crate.

use crucible_core::Verdict;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in BUCKETS.iter().zip(self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// The server's metrics. Shared by the handlers and the work tickets.
#[derive(Debug, Default)]
pub struct Metrics {
    queued: AtomicI64,
    in_flight: AtomicI64,
    rejected_full: AtomicU64,
    /// Smoothed seconds per judgement, in microseconds (for Retry-After).
    job_ewma_us: AtomicU64,
    executions: Mutex<BTreeMap<(String, Verdict), u64>>,
    job_latency: Mutex<BTreeMap<String, Histogram>>,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    request_latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves counters that are still valid numbers.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Submissions admitted and waiting for a worker.
    pub fn queue_depth(&self) -> i64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Submissions being judged now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn enqueued(&self, n: i64) {
        self.queued.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn started(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected_full(&self) {
        self.rejected_full.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one judgement or run: its verdict, language and time.
    pub(crate) fn execution(&self, language: &str, verdict: Verdict, took: Duration) {
        *lock(&self.executions)
            .entry((language.to_string(), verdict))
            .or_insert(0) += 1;
        lock(&self.job_latency)
            .entry(language.to_string())
            .or_default()
            .observe(took.as_secs_f64());
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        // An exponentially weighted mean (1/16 weight for the new value); races between
        // workers lose an update now and then, which a hint can afford.
        let old = self.job_ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            us
        } else {
            old - old / 16 + us / 16
        };
        self.job_ewma_us.store(new, Ordering::Relaxed);
    }

    /// Smoothed seconds one judgement takes (0 before the first).
    pub fn mean_job_secs(&self) -> f64 {
        self.job_ewma_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Records one answered HTTP request.
    pub(crate) fn request(&self, endpoint: &'static str, status: u16, took: Duration) {
        *lock(&self.requests).entry((endpoint, status)).or_insert(0) += 1;
        lock(&self.request_latency)
            .entry(endpoint)
            .or_default()
            .observe(took.as_secs_f64());
    }

    /// Count of executions with `verdict` in `language` so far.
    pub fn executions(&self, language: &str, verdict: Verdict) -> u64 {
        lock(&self.executions)
            .get(&(language.to_string(), verdict))
            .copied()
            .unwrap_or(0)
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self, workers: usize, capacity: usize) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "crucible_queue_depth",
            "Submissions admitted and waiting for a worker.",
            self.queue_depth(),
        );
        gauge(
            &mut out,
            "crucible_in_flight",
            "Submissions being judged now.",
            self.in_flight(),
        );
        gauge(
            &mut out,
            "crucible_workers",
            "Judgements that may run at once.",
            workers as i64,
        );
        gauge(
            &mut out,
            "crucible_capacity",
            "Submissions that may wait or run at once.",
            capacity as i64,
        );
        let _ = writeln!(
            out,
            "# HELP crucible_rejected_queue_full_total Submissions answered 429 because the queue was full.\n# TYPE crucible_rejected_queue_full_total counter\ncrucible_rejected_queue_full_total {}",
            self.rejected_full.load(Ordering::Relaxed)
        );

        let _ = writeln!(out, "# HELP crucible_executions_total Judgements and runs finished, by language and verdict.\n# TYPE crucible_executions_total counter");
        for ((lang, verdict), n) in lock(&self.executions).iter() {
            let _ = writeln!(
                out,
                "crucible_executions_total{{language=\"{}\",verdict=\"{}\"}} {n}",
                escape(lang),
                verdict.as_str()
            );
        }
        let _ = writeln!(out, "# HELP crucible_execution_duration_seconds Time to judge one submission or run one program, by language.\n# TYPE crucible_execution_duration_seconds histogram");
        for (lang, h) in lock(&self.job_latency).iter() {
            h.render(
                &mut out,
                "crucible_execution_duration_seconds",
                &format!("language=\"{}\"", escape(lang)),
            );
        }
        let _ = writeln!(out, "# HELP crucible_http_requests_total HTTP requests answered, by endpoint and status.\n# TYPE crucible_http_requests_total counter");
        for ((endpoint, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "crucible_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP crucible_http_request_duration_seconds Time from request to answer head (a batch: to the head of its stream), by endpoint.\n# TYPE crucible_http_request_duration_seconds histogram");
        for (endpoint, h) in lock(&self.request_latency).iter() {
            h.render(
                &mut out,
                "crucible_http_request_duration_seconds",
                &format!("endpoint=\"{endpoint}\""),
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.execution("python", Verdict::Accepted, Duration::from_millis(20));
        m.execution("python", Verdict::Accepted, Duration::from_millis(300));
        m.execution("python", Verdict::WrongAnswer, Duration::from_millis(3));
        m.request("judge", 200, Duration::from_millis(30));
        m.enqueued(3);
        m.started();
        let text = m.render(2, 10);
        assert!(text.contains("crucible_queue_depth 2\n"), "{text}");
        assert!(text.contains("crucible_in_flight 1\n"), "{text}");
        assert!(text
            .contains("crucible_executions_total{language=\"python\",verdict=\"accepted\"} 2\n"));
        assert!(text.contains(
            "crucible_executions_total{language=\"python\",verdict=\"wrong_answer\"} 1\n"
        ));
        assert!(
            text.contains(
                "crucible_execution_duration_seconds_bucket{language=\"python\",le=\"0.025\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "crucible_execution_duration_seconds_bucket{language=\"python\",le=\"+Inf\"} 3\n"
        ));
        assert!(
            text.contains("crucible_http_requests_total{endpoint=\"judge\",status=\"200\"} 1\n")
        );
        assert_eq!(m.executions("python", Verdict::Accepted), 2);
    }
}
