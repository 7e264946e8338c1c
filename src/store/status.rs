//! What the storage threads report about themselves: a state line per
//! component (for `system.writer` and the log) and the holes they found.
//!
//! A component is `ok` or stalled with a reason ("disk full", "locked"). The
//! change into a stall is logged once at ERROR with `critical = true`, the
//! recovery once at INFO, so a disk that stays full does not flood the log while
//! the thread keeps retrying with backoff.

use std::sync::Mutex;

use crate::event::{Table, Ts};
use crate::histogram::Histogram;

/// One component's state.
#[derive(Debug, Default)]
pub struct ComponentStatus {
    inner: Mutex<Option<Stall>>,
}

#[derive(Debug, Clone)]
struct Stall {
    reason: String,
    since_us: i64,
}

impl ComponentStatus {
    /// Records a stall; logs it the first time (or when the reason changes).
    pub fn stalled(&self, component: &str, reason: &str) {
        let Ok(mut g) = self.inner.lock() else { return };
        if g.as_ref().is_some_and(|s| s.reason == reason) {
            return;
        }
        tracing::error!(
            critical = true,
            component,
            reason,
            "{component} stalled: {reason}; retrying with backoff"
        );
        *g = Some(Stall {
            reason: reason.to_string(),
            since_us: Ts::now().0,
        });
    }

    /// Records that the component works again; logs it if it was stalled.
    pub fn ok(&self, component: &str) {
        let Ok(mut g) = self.inner.lock() else { return };
        if let Some(stall) = g.take() {
            let secs = (Ts::now().0 - stall.since_us) as f64 / 1e6;
            tracing::info!(
                component,
                stalled_s = secs,
                "{component} resumed after: {}",
                stall.reason
            );
        }
    }

    /// `ok`, or `stalled: <reason>`.
    pub fn describe(&self) -> String {
        match self.inner.lock().ok().and_then(|g| g.clone()) {
            None => "ok".to_string(),
            Some(s) => format!("stalled: {}", s.reason),
        }
    }

    pub fn stalled_since_us(&self) -> Option<i64> {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|s| s.since_us))
    }
}

/// What became of a range of WAL sequences a component found missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoleStatus {
    /// Written back from another copy (the hot store).
    Refilled,
    /// Not in this component, but still served from the lake.
    InLake,
    /// In no copy Quiver has: these events are gone.
    Lost,
}

impl HoleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoleStatus::Refilled => "refilled",
            HoleStatus::InLake => "in_lake",
            HoleStatus::Lost => "lost",
        }
    }
}

/// A range of WAL sequences a component found missing, and what was done.
#[derive(Debug, Clone)]
pub struct Hole {
    pub component: &'static str,
    pub table: Option<Table>,
    pub seq_from: u64,
    pub seq_to: u64,
    pub rows: Option<u64>,
    pub status: HoleStatus,
    pub detected_at_us: i64,
    pub detail: String,
}

/// Upper bounds of the WAL append latency buckets, in seconds: an fsync takes
/// tens of microseconds on NVMe, milliseconds on a disk or network volume.
pub const WAL_SYNC_BUCKETS_S: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0,
];

/// Every component's state, and the holes found since the store opened.
#[derive(Debug)]
pub struct StoreStatus {
    pub wal: ComponentStatus,
    /// How long each WAL append (write and fsync) took.
    pub wal_sync: Histogram,
    pub hot: ComponentStatus,
    pub lake: ComponentStatus,
    pub journal: ComponentStatus,
    holes: Mutex<Vec<Hole>>,
}

/// Most holes kept for `system.holes` (the log has every one).
const HOLES_KEPT_MAX: usize = 10_000;

impl Default for StoreStatus {
    fn default() -> Self {
        Self {
            wal: ComponentStatus::default(),
            wal_sync: Histogram::new(&WAL_SYNC_BUCKETS_S),
            hot: ComponentStatus::default(),
            lake: ComponentStatus::default(),
            journal: ComponentStatus::default(),
            holes: Mutex::default(),
        }
    }
}

impl StoreStatus {
    /// Records a hole: logged at ERROR when rows are lost, WARN otherwise.
    pub fn hole(&self, hole: Hole) {
        match hole.status {
            HoleStatus::Lost => tracing::error!(
                component = hole.component,
                seq_from = hole.seq_from,
                seq_to = hole.seq_to,
                table = hole.table.map(|t| t.name()),
                detail = %hole.detail,
                "WAL sequences {}..={} are in no copy Quiver holds: their events are lost",
                hole.seq_from,
                hole.seq_to
            ),
            _ => tracing::warn!(
                component = hole.component,
                seq_from = hole.seq_from,
                seq_to = hole.seq_to,
                table = hole.table.map(|t| t.name()),
                rows = hole.rows,
                status = hole.status.as_str(),
                detail = %hole.detail,
                "{} was missing WAL sequences {}..={}",
                hole.component,
                hole.seq_from,
                hole.seq_to
            ),
        }
        if let Ok(mut h) = self.holes.lock() {
            if h.len() >= HOLES_KEPT_MAX {
                h.remove(0);
            }
            h.push(hole);
        }
    }

    pub fn holes(&self) -> Vec<Hole> {
        self.holes.lock().map(|h| h.clone()).unwrap_or_default()
    }
}
