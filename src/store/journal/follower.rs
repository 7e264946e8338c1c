//! The [`JournalFollower`] thread: keeps the journal up to date from the
//! trade and shadow-trade events of the WAL feed, reading back from the hot
//! store what the WAL no longer has.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Journal, JournalChange};
use crate::event::{Table, Ts};
use crate::store::hot::{HotError, HotShared};
use crate::store::sqlite::SqliteError;
use crate::store::status::{Hole, HoleStatus, StoreStatus};
use crate::store::wal::{Fetched, WalCursor, WalFeed, WalRecord};

/// What the follower thread shares with the store.
#[derive(Debug, Default)]
pub struct JournalShared {
    /// Every WAL sequence up to this one is in the journal (or held nothing for it).
    pub applied_seq: AtomicU64,
    /// The part of `applied_seq` recorded in journal.sqlite, where the next start
    /// resumes: WAL segments may go only up to here.
    pub persisted_seq: AtomicU64,
    pub changes: AtomicU64,
    pub orphans: AtomicU64,
    pub busy_retries: AtomicU64,
    pub errors: AtomicU64,
}

/// The thread that keeps the journal up to date from trade events, reading the
/// WAL feed like the hot store (a locked journal is lag, never back-pressure).
pub struct JournalFollower {
    pub journal: Journal,
    pub shared: Arc<JournalShared>,
    /// Where trade events the WAL no longer has are read back from.
    pub hot: Arc<HotShared>,
    pub status: Arc<StoreStatus>,
}

/// Records read from the feed in one go (most are other tables', only counted).
const FETCH_RECORDS_MAX: usize = 1024;
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often progress over records without trade events is recorded.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Attempts once the store is closing, before the rows are left to the WAL.
const CLOSING_ATTEMPTS_MAX: u32 = 3;

impl JournalFollower {
    pub fn run(mut self, mut cursor: WalCursor) {
        // Writes wait for a lock a while, then back off: a batch is never
        // skipped, because the sequence only advances past what was applied.
        self.journal.busy_wait_max = Duration::from_secs(5);
        let mut last_persist = std::time::Instant::now();
        loop {
            // Progress over records without trade events is recorded now and
            // then, so a restart does not read the WAL again for it.
            if last_persist.elapsed() >= PERSIST_EVERY {
                last_persist = std::time::Instant::now();
                self.persist_progress();
            }
            let fetched = cursor.fetch(FETCH_RECORDS_MAX, Duration::from_millis(200));
            let (records, last) = match fetched {
                Ok(Fetched::Records(records)) => {
                    let last = records.last().map_or(0, |r| r.seq);
                    (records, last)
                }
                Ok(Fetched::Gap { from, to }) => {
                    let records = self.read_back(from, to, cursor.feed());
                    if records.is_empty() && cursor.feed().is_closed() {
                        self.persist_progress();
                        return; // the gap is not recorded as applied: the next start retries
                    }
                    (records, to)
                }
                Ok(Fetched::Idle) => continue,
                Ok(Fetched::Closed) => {
                    self.persist_progress();
                    return;
                }
                Err(e) => {
                    self.status
                        .journal
                        .stalled("journal", &format!("reading the WAL: {e}"));
                    if cursor.feed().is_closed() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let mut changes: Vec<JournalChange> = Vec::new();
            for r in records
                .iter()
                .filter(|r| matches!(r.table, Table::Trade | Table::ShadowTrade))
            {
                match r.table.read_events(&r.batch) {
                    Ok(events) => {
                        changes.extend(events.iter().filter_map(JournalChange::from_event))
                    }
                    Err(e) => {
                        // The batch passed validation before the WAL; this is a bug.
                        tracing::error!(error = %e, seq = r.seq, "journal: unreadable batch");
                        self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if changes.is_empty() {
                self.shared.applied_seq.fetch_max(last, Ordering::AcqRel);
                continue;
            }
            if !self.apply_with_retry(&changes, last, cursor.feed()) {
                return;
            }
        }
    }

    /// Records `applied_seq` in journal.sqlite if it is ahead of what is there
    /// (a failure is tried again later: the WAL keeps what the journal needs).
    fn persist_progress(&mut self) {
        let applied = self.shared.applied_seq.load(Ordering::Acquire);
        if applied > self.shared.persisted_seq.load(Ordering::Acquire)
            && self.journal.apply(&[], Some(applied)).is_ok()
        {
            self.shared
                .persisted_seq
                .fetch_max(applied, Ordering::AcqRel);
        }
    }

    /// Trade events of sequences the WAL no longer has, from the hot store,
    /// once the hot store has passed them (it applies the same WAL, so what it
    /// lacks then is lost). A failed read is retried, never taken as a loss.
    fn read_back(&self, from: u64, to: u64, feed: &WalFeed) -> Vec<WalRecord> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let hot_done = self.hot.applied_seq.load(Ordering::Acquire) >= to;
            let result = if hot_done {
                self.hot
                    .read_seq_range(from, to, &[Table::Trade, Table::ShadowTrade])
            } else {
                Err(HotError::NotYet)
            };
            match result {
                Ok(records) => {
                    let rows: u64 = records.iter().map(|r| r.batch.num_rows() as u64).sum();
                    self.status.hole(Hole {
                        component: "journal",
                        table: None,
                        seq_from: from,
                        seq_to: to,
                        rows: Some(rows),
                        status: HoleStatus::Refilled,
                        detected_at_us: Ts::now().0,
                        detail: "not in the WAL; trade events read back from the hot store".into(),
                    });
                    return records;
                }
                Err(e) if feed.is_closed() => {
                    tracing::warn!(error = %e, from, to, "journal: closing before sequences missing from the WAL were read back; the next start tries again");
                    return Vec::new();
                }
                Err(e) => {
                    if !matches!(e, HotError::NotYet) {
                        tracing::warn!(error = %e, "journal: reading missing sequences from the hot store; retrying");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Applies changes in one transaction that records `seq`, retrying with
    /// backoff. Returns false if the store closed before they could be applied.
    fn apply_with_retry(&mut self, changes: &[JournalChange], seq: u64, feed: &WalFeed) -> bool {
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0u32;
        loop {
            let before = self.journal.busy_retries();
            let result = self.journal.apply(changes, Some(seq));
            self.shared
                .busy_retries
                .fetch_add(self.journal.busy_retries() - before, Ordering::Relaxed);
            let reason = match result {
                Ok(applied) => {
                    self.shared
                        .changes
                        .fetch_add(applied.changes, Ordering::Relaxed);
                    if applied.orphans > 0 {
                        tracing::warn!(
                            orphans = applied.orphans,
                            "journal: exits or resolutions for unknown trades"
                        );
                        self.shared
                            .orphans
                            .fetch_add(applied.orphans, Ordering::Relaxed);
                    }
                    self.shared.applied_seq.fetch_max(seq, Ordering::AcqRel);
                    self.shared.persisted_seq.fetch_max(seq, Ordering::AcqRel);
                    self.status.journal.ok("journal");
                    return true;
                }
                Err(SqliteError::Busy { waited, .. }) => {
                    self.shared.busy_retries.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "locked by another connection (waited {:.1} s)",
                        waited.as_secs_f64()
                    )
                }
                Err(e) => {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    e.describe()
                }
            };
            attempts += 1;
            self.status.journal.stalled("journal", &reason);
            if feed.is_closed() && attempts >= CLOSING_ATTEMPTS_MAX {
                tracing::error!(
                    seq,
                    reason,
                    "journal write failed at close; the rows stay in the WAL"
                );
                return false;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}
