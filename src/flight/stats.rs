//! What the server's queries did: counts by outcome and a histogram of their
//! durations, as plain atomics the application layer exports (`/metrics`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::histogram::{Histogram, HistogramSnapshot};

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

#[derive(Debug)]
pub struct QueryStats {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    durations: Histogram,
}

impl Default for QueryStats {
    fn default() -> Self {
        Self {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            durations: Histogram::new(&DURATION_BUCKETS_S),
        }
    }
}

/// A copy of [`QueryStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuerySnapshot {
    pub ok: u64,
    pub failed: u64,
    pub refused: u64,
    /// The timed queries' durations.
    pub durations: HistogramSnapshot,
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
            self.durations.record(took);
        }
    }

    pub fn snapshot(&self) -> QuerySnapshot {
        QuerySnapshot {
            ok: self.ok.load(Relaxed),
            failed: self.failed.load(Relaxed),
            refused: self.refused.load(Relaxed),
            durations: self.durations.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_and_timed_queries_timed() {
        let stats = QueryStats::default();
        stats.record(Outcome::Ok, Some(Duration::from_millis(3)));
        stats.record(Outcome::Ok, Some(Duration::from_millis(10)));
        stats.record(Outcome::Failed, Some(Duration::from_secs(900)));
        stats.record(Outcome::Refused, None);
        let s = stats.snapshot();
        assert_eq!((s.ok, s.failed, s.refused), (2, 1, 1));
        assert_eq!(s.durations.count, 3, "every timed query");
    }
}
