//! Latency histograms as plain atomics: recorded on hot paths (a WAL fsync, a
//! query) without a lock, read by the application layer (`/metrics`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A histogram of durations over fixed upper bounds, in seconds (Prometheus's
/// `le` labels); a last, unbounded bucket holds the rest.
#[derive(Debug)]
pub struct Histogram {
    bounds_s: &'static [f64],
    /// Per bucket (not cumulative), the last unbounded.
    buckets: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

/// A copy of a [`Histogram`] at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations in that bucket alone), the last bound
    /// infinite.
    pub buckets: Vec<(f64, u64)>,
    /// Observations: the sum of the buckets.
    pub count: u64,
    pub sum_s: f64,
}

impl Histogram {
    pub fn new(bounds_s: &'static [f64]) -> Self {
        Self {
            bounds_s,
            buckets: (0..=bounds_s.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn record(&self, took: Duration) {
        let s = took.as_secs_f64();
        let bucket = self
            .bounds_s
            .iter()
            .position(|&le| s <= le)
            .unwrap_or(self.bounds_s.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds_s
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter().map(|b| b.load(Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
            sum_s: self.sum_us.load(Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_bucket() {
        static BOUNDS: [f64; 2] = [0.005, 0.01];
        let h = Histogram::new(&BOUNDS);
        h.record(Duration::from_millis(3));
        h.record(Duration::from_millis(10));
        h.record(Duration::from_secs(900));
        let s = h.snapshot();
        assert_eq!(
            s.buckets,
            vec![(0.005, 1), (0.01, 1), (f64::INFINITY, 1)],
            "3 ms <= 5 ms, 10 ms <= 10 ms, 900 s past the last bound"
        );
        assert_eq!(s.count, 3);
        assert!((s.sum_s - 900.013).abs() < 1e-9);
    }
}
