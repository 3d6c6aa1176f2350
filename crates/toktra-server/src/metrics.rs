//! Prometheus text exposition of the ingest counters and the acknowledgement latency
//! histogram. A handful of atomics: a metrics crate would bring a registry we do not
//! need for seven series.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    batches_accepted: AtomicU64,
    batches_duplicate: AtomicU64,
    events_accepted: AtomicU64,
    events_duplicate: AtomicU64,
    enrollments: AtomicU64,
    tls_failures: AtomicU64,
    rejections: Mutex<BTreeMap<&'static str, u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn batch(&self, accepted: u32, duplicates: u32, seconds: f64) {
        if accepted == 0 && duplicates > 0 {
            self.batches_duplicate.fetch_add(1, Relaxed);
        } else {
            self.batches_accepted.fetch_add(1, Relaxed);
        }
        self.events_accepted.fetch_add(accepted.into(), Relaxed);
        self.events_duplicate.fetch_add(duplicates.into(), Relaxed);
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add((seconds * 1e6) as u64, Relaxed);
    }

    pub fn rejection(&self, reason: &'static str) {
        if let Ok(mut m) = self.rejections.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    pub fn enrollment(&self) {
        self.enrollments.fetch_add(1, Relaxed);
    }

    pub fn tls_failure(&self) {
        self.tls_failures.fetch_add(1, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let l = |a: &AtomicU64| a.load(Relaxed);
        let _ = writeln!(
            s,
            "# HELP toktra_ingest_batches_total Batches acknowledged, by outcome."
        );
        let _ = writeln!(s, "# TYPE toktra_ingest_batches_total counter");
        let _ = writeln!(
            s,
            "toktra_ingest_batches_total{{outcome=\"stored\"}} {}",
            l(&self.batches_accepted)
        );
        let _ = writeln!(
            s,
            "toktra_ingest_batches_total{{outcome=\"duplicate\"}} {}",
            l(&self.batches_duplicate)
        );
        let _ = writeln!(
            s,
            "# HELP toktra_ingest_events_total Events acknowledged, by outcome."
        );
        let _ = writeln!(s, "# TYPE toktra_ingest_events_total counter");
        let _ = writeln!(
            s,
            "toktra_ingest_events_total{{outcome=\"accepted\"}} {}",
            l(&self.events_accepted)
        );
        let _ = writeln!(
            s,
            "toktra_ingest_events_total{{outcome=\"duplicate\"}} {}",
            l(&self.events_duplicate)
        );
        let _ = writeln!(
            s,
            "# HELP toktra_rejections_total Requests refused, by reason."
        );
        let _ = writeln!(s, "# TYPE toktra_rejections_total counter");
        let _ = writeln!(
            s,
            "toktra_rejections_total{{reason=\"tls_handshake\"}} {}",
            l(&self.tls_failures)
        );
        if let Ok(m) = self.rejections.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(s, "toktra_rejections_total{{reason=\"{reason}\"}} {n}");
            }
        }
        let _ = writeln!(
            s,
            "# HELP toktra_enrollments_total Device certificates issued."
        );
        let _ = writeln!(s, "# TYPE toktra_enrollments_total counter");
        let _ = writeln!(s, "toktra_enrollments_total {}", l(&self.enrollments));
        let _ = writeln!(
            s,
            "# HELP toktra_ingest_latency_seconds Time from request to acknowledgement of a batch."
        );
        let _ = writeln!(s, "# TYPE toktra_ingest_latency_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "toktra_ingest_latency_seconds_bucket{{le=\"{b}\"}} {}",
                l(&self.latency_buckets[i])
            );
        }
        let count = l(&self.latency_count);
        let _ = writeln!(
            s,
            "toktra_ingest_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "toktra_ingest_latency_seconds_sum {}",
            l(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(s, "toktra_ingest_latency_seconds_count {count}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.batch(50, 0, 0.003);
        m.batch(0, 50, 0.2);
        m.rejection("too_large");
        let t = m.render();
        assert!(
            t.contains("toktra_ingest_latency_seconds_bucket{le=\"0.005\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("toktra_ingest_latency_seconds_bucket{le=\"0.25\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("toktra_ingest_events_total{outcome=\"duplicate\"} 50"),
            "{t}"
        );
        assert!(
            t.contains("toktra_rejections_total{reason=\"too_large\"} 1"),
            "{t}"
        );
    }
}
