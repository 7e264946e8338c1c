//! Delivery counts for `/metrics`: attempts by receiver and outcome, and the
//! notices the outbox refused or a cooldown dropped. Lock-free reads of
//! counters fixed when the worker starts.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::outbox::Outcome;

/// One receiver's attempt counters, by [`Outcome::ALL`] order.
#[derive(Debug)]
struct ReceiverCounts {
    name: String,
    outcomes: [AtomicU64; 4],
}

/// Counts of this process's deliveries (shared as `Arc<DeliveryStats>`).
#[derive(Debug, Default)]
pub struct DeliveryStats {
    receivers: Vec<ReceiverCounts>,
    refused: AtomicU64,
    cooled_down: AtomicU64,
}

/// One count, as `/metrics` would label it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryCount {
    pub receiver: String,
    /// `sent`, `retry`, `gave_up` or `failed`.
    pub outcome: &'static str,
    pub attempts: u64,
}

fn index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Sent => 0,
        Outcome::Retry => 1,
        Outcome::GaveUp => 2,
        Outcome::Failed => 3,
    }
}

impl DeliveryStats {
    /// Counters for these receivers, all zero.
    pub fn new<'a>(receivers: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            receivers: receivers
                .into_iter()
                .map(|name| ReceiverCounts {
                    name: name.to_string(),
                    outcomes: Default::default(),
                })
                .collect(),
            ..Self::default()
        }
    }

    pub(crate) fn count_attempt(&self, receiver: &str, outcome: Outcome) {
        if let Some(r) = self.receivers.iter().find(|r| r.name == receiver) {
            r.outcomes[index(outcome)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_refused(&self, notices: usize) {
        self.refused.fetch_add(notices as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_cooled_down(&self, notices: usize) {
        self.cooled_down
            .fetch_add(notices as u64, Ordering::Relaxed);
    }

    /// Attempts by receiver and outcome, every pair listed (zeros too), for
    /// a counter `quiver_alert_deliveries_total{receiver, outcome}`.
    pub fn attempts(&self) -> Vec<DeliveryCount> {
        self.receivers
            .iter()
            .flat_map(|r| {
                Outcome::ALL.map(|outcome| DeliveryCount {
                    receiver: r.name.clone(),
                    outcome: outcome.as_str(),
                    attempts: r.outcomes[index(outcome)].load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// Notices refused because the outbox was at `outbox_max`.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Notices dropped by a cooldown.
    pub fn cooled_down(&self) -> u64 {
        self.cooled_down.load(Ordering::Relaxed)
    }
}
