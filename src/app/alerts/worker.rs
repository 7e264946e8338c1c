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
            lease: alerts
                .request_timeout
                .saturating_mul(2)
                .saturating_add(Duration::from_secs(5)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MinSeverity, ReceiverConfig, ReceiverKind};
    use crate::store::outbox::Notice;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::Mutex;

    /// A local HTTP server answering each request with the next of
    /// `script` (status, extra header line), recording when each came.
    fn serve(script: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<Instant>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for (stream, (status, header)) in listener.incoming().zip(script) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                record.lock().unwrap().push(Instant::now());
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\n{header}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                )
                .unwrap();
            }
        });
        (url, seen)
    }

    fn alerts(url: &str) -> AlertsSection {
        AlertsSection {
            retry_initial: Duration::from_millis(20),
            request_timeout: Duration::from_secs(5),
            receivers: vec![ReceiverConfig {
                name: "hook".into(),
                kind: ReceiverKind::Webhook,
                url: Some(url.into()),
                base_url: None,
                chat_id: None,
                min_severity: MinSeverity::Warning,
                token_env: None,
                token_file: None,
            }],
            ..AlertsSection::default()
        }
    }

    fn notice(severity: &str) -> Notice {
        Notice {
            source: "health".into(),
            rule: "wal_lag".into(),
            severity: severity.into(),
            dimensions: Default::default(),
            message: "the WAL lags".into(),
            value: None,
            fired_at: chrono::Utc::now(),
        }
    }

    fn deliver(alerts: &AlertsSection, dir: &Path, wait: Duration) -> (Arc<DeliveryStats>, usize) {
        let outbox = Outbox::open(dir, alerts).unwrap();
        let report = outbox
            .enqueue(&[notice("critical"), notice("info")])
            .unwrap();
        // The info notice is below the receiver's min_severity.
        assert_eq!(report.ids.len(), 1);
        let mut deliverer = Deliverer::new(dir, alerts, outbox.stats()).unwrap();
        let left = deliverer
            .deliver_until_done(&outbox, &report.ids, wait)
            .unwrap();
        (outbox.stats(), left)
    }

    fn count(stats: &DeliveryStats, outcome: &str) -> u64 {
        stats
            .attempts()
            .iter()
            .find(|c| c.outcome == outcome)
            .map_or(0, |c| c.attempts)
    }

    #[test]
    fn a_429_waits_its_retry_after_then_the_notice_is_sent() {
        let (url, seen) = serve(vec![(429, "Retry-After: 0.3\r\n"), (200, "")]);
        let dir = tempfile::tempdir().unwrap();
        let (stats, left) = deliver(&alerts(&url), dir.path(), Duration::from_secs(10));
        assert_eq!(left, 0);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[1] - seen[0] >= Duration::from_millis(290));
        assert_eq!((count(&stats, "retry"), count(&stats, "sent")), (1, 1));
    }

    #[test]
    fn a_4xx_fails_at_once_and_5xx_give_up_after_attempts_max() {
        let (url, seen) = serve(vec![(400, "")]);
        let dir = tempfile::tempdir().unwrap();
        let (stats, left) = deliver(&alerts(&url), dir.path(), Duration::from_secs(10));
        assert_eq!((left, seen.lock().unwrap().len()), (0, 1));
        assert_eq!(count(&stats, "failed"), 1);

        let (url, seen) = serve(vec![(500, ""), (503, ""), (502, ""), (200, "")]);
        let dir = tempfile::tempdir().unwrap();
        let config = AlertsSection {
            attempts_max: 3,
            ..alerts(&url)
        };
        let (stats, left) = deliver(&config, dir.path(), Duration::from_secs(10));
        assert_eq!((left, seen.lock().unwrap().len()), (0, 3));
        assert_eq!((count(&stats, "retry"), count(&stats, "gave_up")), (2, 1));
    }
}
