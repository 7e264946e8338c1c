//! [`DeliveryWorker`]: the thread that sends what the outbox holds, one
//! message at a time: claim, send, record.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::backoff::{Next, RetryPolicy};
use super::outbox::{Outbox, Wake};
use super::receiver::{self, Receiver, Response};
use super::stats::DeliveryStats;
use crate::config::AlertsSection;
use crate::store::outbox::{Attempt, Claimed, OutboxDb, Outcome};
use crate::store::sqlite::now_us;

/// Everything one delivery needs, owned by the thread that delivers.
pub(crate) struct Deliverer {
    db: OutboxDb,
    receivers: HashMap<String, Receiver>,
    agent: ureq::Agent,
    policy: RetryPolicy,
    /// How long a claim holds: longer than a request can take, so a live
    /// sender never loses its row; after a crash the row waits this long.
    lease: Duration,
    stats: Arc<DeliveryStats>,
}

impl Deliverer {
    /// Reads every receiver's secret (an error names the receiver and the
    /// variable or file) and opens its own outbox connection.
    pub(crate) fn new(
        data_dir: &Path,
        alerts: &AlertsSection,
        stats: Arc<DeliveryStats>,
    ) -> anyhow::Result<Self> {
        let mut receivers = HashMap::new();
        for config in &alerts.receivers {
            receivers.insert(config.name.clone(), Receiver::from_config(config)?);
        }
        let path = crate::store::Layout::new(data_dir).alerts();
        Ok(Self {
            db: OutboxDb::open(&path).with_context(|| format!("opening {}", path.display()))?,
            receivers,
            agent: receiver::agent(alerts.request_timeout),
            policy: RetryPolicy::from_config(alerts),
            lease: alerts.request_timeout * 2 + Duration::from_secs(5),
            stats,
        })
    }

    /// Claims and sends the message due first; false when none is due.
    pub(crate) fn deliver_one(&mut self) -> anyhow::Result<bool> {
        let Some(claimed) = self.db.claim(now_us(), self.lease)? else {
            return Ok(false);
        };
        let started_us = now_us();
        let response = match self.receivers.get(&claimed.receiver) {
            Some(r) => r.send(&self.agent, &claimed),
            None => Response::Permanent {
                status: 0,
                error: format!(
                    "no receiver {:?} in [alerts] (removed since it was enqueued)",
                    claimed.receiver
                ),
            },
        };
        let attempt = self.attempt(&claimed, started_us, response);
        self.stats.count_attempt(&claimed.receiver, attempt.outcome);
        log_attempt(&claimed, &attempt);
        if !self.db.record(&claimed, &attempt)? {
            tracing::warn!(
                notice = claimed.id,
                "the claim lapsed during the attempt; another sender took the notice"
            );
        }
        Ok(true)
    }

    fn attempt(&self, claimed: &Claimed, started_us: i64, response: Response) -> Attempt {
        let finished_us = now_us();
        let http_status = response.status().filter(|s| *s != 0);
        let (outcome, error, next_attempt_us) = match response {
            Response::Delivered { .. } => (Outcome::Sent, None, None),
            Response::Permanent { error, .. } => (Outcome::Failed, Some(error), None),
            Response::Transient {
                retry_after, error, ..
            } => {
                let age = Duration::from_micros(
                    u64::try_from(finished_us - claimed.enqueued_at_us).unwrap_or(0),
                );
                match self.policy.after_failure(claimed.attempt, retry_after, age) {
                    Next::GiveUp => (Outcome::GaveUp, Some(error), None),
                    Next::RetryIn(delay) => {
                        let delay_us = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
                        (
                            Outcome::Retry,
                            Some(error),
                            Some(finished_us.saturating_add(delay_us)),
                        )
                    }
                }
            }
        };
        Attempt {
            started_us,
            finished_us,
            http_status,
            outcome,
            error,
            next_attempt_us,
        }
    }

    /// Delivers until none of `ids` is open or `wait` has passed (for
    /// `metrics compute` without a server). Returns how many stay open.
    pub(crate) fn deliver_until_done(
        &mut self,
        outbox: &Outbox,
        ids: &[i64],
        wait: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + wait;
        loop {
            let open = outbox.open_among(ids)?;
            if open == 0 || Instant::now() >= deadline {
                return Ok(open);
            }
            if !self.deliver_one()? {
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(left.min(Duration::from_millis(100)));
            }
        }
    }
}

fn log_attempt(claimed: &Claimed, attempt: &Attempt) {
    let error = attempt.error.as_deref().unwrap_or("");
    match attempt.outcome {
        Outcome::Sent => tracing::info!(
            receiver = %claimed.receiver, rule = %claimed.rule, notice = claimed.id,
            attempt = claimed.attempt, "alert delivered"
        ),
        Outcome::Retry => tracing::warn!(
            receiver = %claimed.receiver, rule = %claimed.rule, notice = claimed.id,
            attempt = claimed.attempt, error, "alert delivery failed; will retry"
        ),
        Outcome::GaveUp | Outcome::Failed => tracing::error!(
            receiver = %claimed.receiver, rule = %claimed.rule, notice = claimed.id,
            attempt = claimed.attempt, outcome = attempt.outcome.as_str(), error,
            "alert not delivered"
        ),
    }
}

/// The delivery thread of a server (`quiver serve`, `quiver demo`).
pub struct DeliveryWorker {
    outbox: Arc<Outbox>,
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    thread: JoinHandle<()>,
}

impl DeliveryWorker {
    /// Starts the thread: it delivers whatever is due, then sleeps until an
    /// enqueue in this process wakes it or `poll_interval` passes (another
    /// process, e.g. `metrics compute` through the server, may have
    /// enqueued).
    pub fn start(data_dir: &Path, alerts: &AlertsSection) -> anyhow::Result<Self> {
        let outbox = Arc::new(Outbox::open(data_dir, alerts)?);
        let mut deliverer = Deliverer::new(data_dir, alerts, outbox.stats())?;
        let stop = Arc::new(AtomicBool::new(false));
        let wake = outbox.wake();
        let poll = alerts.poll_interval;
        let thread = std::thread::Builder::new()
            .name("quiver-alerts".into())
            .spawn({
                let (stop, wake) = (stop.clone(), wake.clone());
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        match deliverer.deliver_one() {
                            Ok(true) => continue,
                            Ok(false) => {}
                            Err(e) => tracing::error!(error = %format!("{e:#}"), "alert outbox"),
                        }
                        wake.wait(poll);
                    }
                }
            })
            .context("starting the alert delivery thread")?;
        Ok(Self {
            outbox,
            stop,
            wake,
            thread,
        })
    }

    /// Where producers in this process enqueue (wakes this worker).
    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    /// Delivery counts for `/metrics`.
    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.outbox.stats()
    }

    /// Stops after the attempt in progress (at most `request_timeout`);
    /// what is pending stays in the outbox.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify();
        if self.thread.join().is_err() {
            tracing::error!("the alert delivery thread panicked");
        }
    }
}
