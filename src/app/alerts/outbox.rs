//! [`Outbox`]: the producers' side, where a notice is made durable before
//! anything is sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::stats::DeliveryStats;
use crate::config::{AlertsSection, MinSeverity};
use crate::store::outbox::{EnqueueReport, Group, Notice, OutboxDb};
use crate::store::sqlite::now_us;

/// Wakes the delivery worker early (an enqueue in this process).
#[derive(Debug, Default)]
pub(crate) struct Wake {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Wake {
    pub(crate) fn notify(&self) {
        if let Ok(mut woken) = self.woken.lock() {
            *woken = true;
            self.cond.notify_all();
        }
    }

    /// Waits until notified or `timeout` passes.
    pub(crate) fn wait(&self, timeout: Duration) {
        let Ok(woken) = self.woken.lock() else {
            return;
        };
        if let Ok((mut woken, _)) = self.cond.wait_timeout_while(woken, timeout, |w| !*w) {
            *woken = false;
        }
    }
}

/// The alert outbox of a data dir, for any producer: the metrics job, the
/// health monitor, a bot embedding Quiver. Cheap to share (`Arc<Outbox>`).
#[derive(Debug)]
pub struct Outbox {
    // A std Mutex: enqueue is a short SQLite transaction, never held across
    // an await; one connection per Outbox keeps rusqlite's `!Sync` inside.
    db: Mutex<OutboxDb>,
    /// (receiver, lowest severity it takes).
    routes: Vec<(String, MinSeverity)>,
    cooldown: Duration,
    outbox_max: u64,
    stats: Arc<DeliveryStats>,
    wake: Arc<Wake>,
}

impl Outbox {
    /// Opens `<data_dir>/alerts.sqlite` for the receivers of `[alerts]`.
    pub fn open(data_dir: &std::path::Path, alerts: &AlertsSection) -> anyhow::Result<Self> {
        let stats = DeliveryStats::new(alerts.receivers.iter().map(|r| r.name.as_str()));
        Self::with_stats(data_dir, alerts, Arc::new(stats))
    }

    pub(crate) fn with_stats(
        data_dir: &std::path::Path,
        alerts: &AlertsSection,
        stats: Arc<DeliveryStats>,
    ) -> anyhow::Result<Self> {
        let path = crate::store::Layout::new(data_dir).alerts();
        let db = OutboxDb::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            db: Mutex::new(db),
            routes: alerts
                .receivers
                .iter()
                .map(|r| (r.name.clone(), r.min_severity))
                .collect(),
            cooldown: alerts.cooldown,
            outbox_max: alerts.outbox_max,
            stats,
            wake: Arc::new(Wake::default()),
        })
    }

    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    pub(crate) fn wake(&self) -> Arc<Wake> {
        self.wake.clone()
    }

    /// Makes `notices` durable for every receiver whose `min_severity` they
    /// reach, the notices of one rule as one message per receiver, minus
    /// those in their cooldown. Over `outbox_max` the rest is refused:
    /// logged, counted, and reported, never waited for. Wakes this process's
    /// delivery worker.
    ///
    /// Blocking: one short SQLite transaction, which waits (busy timeout, at
    /// most 10 s) while another process writes the outbox; from async code,
    /// call it in `spawn_blocking`.
    pub fn enqueue(&self, notices: &[Notice]) -> anyhow::Result<EnqueueReport> {
        let groups = self.groups(notices);
        if groups.is_empty() {
            return Ok(EnqueueReport::default());
        }
        let report = {
            let mut db = self
                .db
                .lock()
                .map_err(|_| anyhow::anyhow!("the outbox's connection was poisoned"))?;
            let path = db.path().display().to_string();
            db.enqueue(&groups, now_us(), self.cooldown, self.outbox_max)
                .with_context(|| format!("enqueueing alerts into {path}"))?
        };
        self.stats.count_cooled_down(report.cooled_down);
        if report.refused > 0 {
            self.stats.count_refused(report.refused);
            tracing::error!(
                refused = report.refused,
                outbox_max = self.outbox_max,
                "the alert outbox is full (alerts.outbox_max); notices refused"
            );
        }
        if !report.ids.is_empty() {
            self.wake.notify();
        }
        Ok(report)
    }

    /// One group per (receiver, rule), in the notices' order.
    fn groups(&self, notices: &[Notice]) -> Vec<Group> {
        let mut groups: BTreeMap<(usize, &str), Vec<Notice>> = BTreeMap::new();
        for (r, (_, min)) in self.routes.iter().enumerate() {
            for n in notices.iter().filter(|n| min.admits(&n.severity)) {
                groups
                    .entry((r, n.rule.as_str()))
                    .or_default()
                    .push(n.clone());
            }
        }
        groups
            .into_iter()
            .map(|((r, rule), notices)| Group {
                receiver: self.routes[r].0.clone(),
                rule: rule.to_string(),
                notices,
            })
            .collect()
    }

    /// How many of `ids` are not delivered, given up or failed yet.
    pub fn open_among(&self, ids: &[i64]) -> anyhow::Result<usize> {
        let db = self
            .db
            .lock()
            .map_err(|_| anyhow::anyhow!("the outbox's connection was poisoned"))?;
        Ok(db.open_among(ids)?)
    }
}
