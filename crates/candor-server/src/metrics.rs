//! Prometheus metrics in the text exposition format (version 0.0.4), kept with plain
//! atomics: the log exports a handful of series and needs no metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    // Sum stored as f64 bits; updated with a CAS loop.
    sum_bits: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            if v <= *bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut cur = self.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match self.sum_bits.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = f64::from_bits(self.sum_bits.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every series the log exports at `GET /metrics`.
#[derive(Debug)]
pub struct Metrics {
    /// New entries appended to the tree.
    pub entries_total: AtomicU64,
    /// Submissions answered with an existing index (identical resubmissions).
    pub duplicates_total: AtomicU64,
    /// Checkpoints signed.
    pub checkpoints_total: AtomicU64,
    /// Failed store appends or checkpoint writes.
    pub store_errors_total: AtomicU64,
    /// Current published tree size.
    pub tree_size: AtomicU64,
    /// Entries waiting in the pool.
    pub pool_entries: AtomicU64,
    /// Entries per sequenced batch.
    pub batch_size: Histogram,
    /// Seconds from a submission entering the pool to its receipt.
    pub sequencing_seconds: Histogram,
    http_responses: Mutex<BTreeMap<u16, u64>>,
}

const BATCH_BOUNDS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0];
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All series at zero.
    pub fn new() -> Metrics {
        Metrics {
            entries_total: AtomicU64::new(0),
            duplicates_total: AtomicU64::new(0),
            checkpoints_total: AtomicU64::new(0),
            store_errors_total: AtomicU64::new(0),
            tree_size: AtomicU64::new(0),
            pool_entries: AtomicU64::new(0),
            batch_size: Histogram::new(BATCH_BOUNDS),
            sequencing_seconds: Histogram::new(LATENCY_BOUNDS),
            http_responses: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one HTTP response with `status`.
    pub fn count_response(&self, status: u16) {
        // A poisoned lock only means another thread panicked mid-increment; the map
        // itself is still a valid map of counters.
        let mut map = self
            .http_responses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *map.entry(status).or_insert(0) += 1;
    }

    /// Records one submission's sequencing latency.
    pub fn observe_latency(&self, d: Duration) {
        self.sequencing_seconds.observe(d.as_secs_f64());
    }

    /// Renders every series in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64, kind: &str| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "candor_entries_total",
            "Entries appended to the log.",
            &self.entries_total,
            "counter",
        );
        counter(
            &mut out,
            "candor_duplicate_submissions_total",
            "Submissions answered with an existing index.",
            &self.duplicates_total,
            "counter",
        );
        counter(
            &mut out,
            "candor_checkpoints_signed_total",
            "Checkpoints signed.",
            &self.checkpoints_total,
            "counter",
        );
        counter(
            &mut out,
            "candor_store_errors_total",
            "Failed durable writes.",
            &self.store_errors_total,
            "counter",
        );
        counter(
            &mut out,
            "candor_tree_size",
            "Size of the latest published checkpoint.",
            &self.tree_size,
            "gauge",
        );
        counter(
            &mut out,
            "candor_pool_entries",
            "Entries waiting to be sequenced.",
            &self.pool_entries,
            "gauge",
        );
        self.batch_size.render(
            &mut out,
            "candor_batch_size",
            "Entries per sequenced batch.",
        );
        self.sequencing_seconds.render(
            &mut out,
            "candor_sequencing_seconds",
            "Time from a submission entering the pool to its receipt.",
        );
        let _ = writeln!(
            out,
            "# HELP candor_http_responses_total HTTP responses by status code.\n# TYPE candor_http_responses_total counter"
        );
        let map = self
            .http_responses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (status, n) in map.iter() {
            let _ = writeln!(
                out,
                "candor_http_responses_total{{status=\"{status}\"}} {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_rendered() {
        let m = Metrics::new();
        m.batch_size.observe(3.0);
        m.batch_size.observe(300.0);
        m.count_response(200);
        m.count_response(200);
        m.count_response(429);
        let text = m.render();
        assert!(
            text.contains("candor_batch_size_bucket{le=\"4\"} 1"),
            "{text}"
        );
        assert!(text.contains("candor_batch_size_bucket{le=\"1024\"} 2"));
        assert!(text.contains("candor_batch_size_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("candor_batch_size_sum 303"));
        assert!(text.contains("candor_http_responses_total{status=\"200\"} 2"));
        assert!(text.contains("candor_http_responses_total{status=\"429\"} 1"));
    }
}
