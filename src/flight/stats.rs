//! What the server's queries did: counts by outcome and a histogram of their
//! durations, as plain atomics the application layer exports (`/metrics`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the duration buckets, in seconds (Prometheus's
/// `le` labels); a last, unbounded bucket holds the rest.
pub const DURATION_BUCKETS_S: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
];

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Streamed whole (or the client went away).
    Ok,
    /// Ended by an error: a limit, a deadline, bad SQL at execution.
    Failed,
    /// Refused before it ran: all `queries_max` slots were taken.
    Refused,
}

#[derive(Debug, Default)]
pub struct QueryStats {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    /// Per bucket, the last unbounded.
    buckets: [AtomicU64; DURATION_BUCKETS_S.len() + 1],
    sum_us: AtomicU64,
}

/// A copy of [`QueryStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuerySnapshot {
    pub ok: u64,
    pub failed: u64,
    pub refused: u64,
    /// Queries per bucket of [`DURATION_BUCKETS_S`] (not cumulative), then
    /// those slower than the last bound.
    pub buckets: Vec<u64>,
    /// Queries timed: the sum of `buckets`.
    pub count: u64,
    pub sum_s: f64,
}

impl QueryStats {
    pub fn record(&self, outcome: Outcome, took: Option<Duration>) {
        match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Failed => &self.failed,
            Outcome::Refused => &self.refused,
        }
        .fetch_add(1, Relaxed);
        if let Some(took) = took {
            let s = took.as_secs_f64();
            let bucket = DURATION_BUCKETS_S
                .iter()
                .position(|&le| s <= le)
                .unwrap_or(DURATION_BUCKETS_S.len());
            self.buckets[bucket].fetch_add(1, Relaxed);
            self.sum_us
                .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
        }
    }

    pub fn snapshot(&self) -> QuerySnapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        QuerySnapshot {
            ok: self.ok.load(Relaxed),
            failed: self.failed.load(Relaxed),
            refused: self.refused.load(Relaxed),
            count: buckets.iter().sum(),
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
        let stats = QueryStats::default();
        stats.record(Outcome::Ok, Some(Duration::from_millis(3)));
        stats.record(Outcome::Ok, Some(Duration::from_millis(10)));
        stats.record(Outcome::Failed, Some(Duration::from_secs(900)));
        stats.record(Outcome::Refused, None);
        let s = stats.snapshot();
        assert_eq!((s.ok, s.failed, s.refused), (2, 1, 1));
        assert_eq!(s.buckets[0], 1, "3 ms <= 5 ms");
        assert_eq!(s.buckets[1], 1, "10 ms <= 10 ms");
        assert_eq!(*s.buckets.last().unwrap(), 1, "900 s > the last bound");
        assert_eq!(s.count, 3, "every timed query");
        assert!((s.sum_s - 900.013).abs() < 1e-9);
    }
}
