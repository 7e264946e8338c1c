//! The lake thread: rolls records from the WAL feed into Parquet, compacts,
//! removes day partitions past their retention ([`super::retention`]),
//! retires compacted and removed files after their grace, and fills holes
//! from the hot store.
//!
//! It is a consumer like the hot store: it reads the feed at its own pace (from
//! memory, or from the WAL files once it falls behind), so a long roll or
//! compaction is lag, never a stalled writer. A range of sequences the WAL no
//! longer has ([`Fetched::Gap`]) is read back from the hot store; what the hot
//! store does not have either is recorded as lost in the next roll's commit and
//! in `system.holes`, never skipped silently. A failed roll or compaction is
//! retried with backoff; inputs are retired only after the commit that replaces
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use chrono::NaiveDate;

use super::deletions::{Deletion, DeletionLog};
use super::log::{Change, CommitOp, LakeLog};
use super::parquet::{
    check_footer, file_columns, file_schema, write_merged, write_new, writer_properties,
};
use super::partition::{part_name, partition_dir, split_partitions};
use super::recovery::quarantine_file;
use super::retention::{self, PlanInputs, RetentionConfig, RetentionPlan};
use super::{LakeConfig, LakeError, LakeFile, LakeShared};
use crate::event::{Table, Ts};
use crate::store::Clock;
use crate::store::fsio::{self, FileSystem};
use crate::store::hot::HotShared;
use crate::store::seq::SeqRanges;
use crate::store::status::{Hole, HoleStatus, StoreStatus};
use crate::store::wal::{Fetched, WalCursor, WalFeed, WalRecord};

/// Requests to the lake thread.
pub enum LakeRequest {
    /// Merge every partition with at least `min_files` files; answer with the
    /// number of partitions compacted.
    Compact {
        min_files: usize,
        reply: SyncSender<Result<usize, LakeError>>,
    },
    /// Roll everything durable now.
    Roll {
        reply: SyncSender<Result<(), LakeError>>,
    },
    /// Run a retention pass now (or only plan it); answer with the plan.
    Retention {
        dry_run: bool,
        reply: SyncSender<Result<RetentionPlan, LakeError>>,
    },
}

/// A file out of the lake's state, waiting out its grace before deletion.
struct Retired {
    at: Instant,
    path: PathBuf,
    /// Removed by retention (its deletion is recorded in the history).
    by_retention: bool,
}

/// Records read from the feed in one go.
const FETCH_RECORDS_MAX: usize = 256;
/// Sequences read back from the hot store at a time when filling a WAL gap.
const GAP_CHUNK_SEQS: u64 = 1024;
/// How often a failed check against the hot store is tried again.
const HOLE_CHECK_RETRY: Duration = Duration::from_secs(60);
/// How long the thread waits for a record before looking at its timers.
const FETCH_WAIT: Duration = Duration::from_millis(50);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The lake thread's state.
pub struct LakeWriter {
    root: PathBuf,
    quarantine_root: PathBuf,
    config: LakeConfig,
    fs: Arc<dyn FileSystem>,
    shared: Arc<LakeShared>,
    log: LakeLog,
    hot: Arc<HotShared>,
    status: Arc<StoreStatus>,
    pending: BTreeMap<Table, Vec<RecordBatch>>,
    pending_rows: usize,
    /// Every sequence up to here has been read from the feed (or found lost).
    read_to: u64,
    pending_since: Option<Instant>,
    /// Sequences in no copy, recorded by the next roll's commit.
    lost: Vec<(u64, u64)>,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Compaction inputs and files removed by retention, waiting out the
    /// grace period.
    retired: Vec<Retired>,
    retention: RetentionConfig,
    hot_window: Duration,
    clock: Clock,
    deletions: DeletionLog,
    last_retention: Option<Instant>,
}

/// What a [`LakeWriter`] is built from.
pub struct LakeWriterParts {
    pub root: PathBuf,
    pub quarantine_root: PathBuf,
    pub config: LakeConfig,
    pub fs: Arc<dyn FileSystem>,
    pub shared: Arc<LakeShared>,
    pub log: LakeLog,
    pub hot: Arc<HotShared>,
    pub status: Arc<StoreStatus>,
    pub retention: RetentionConfig,
    /// The hot store's window (`hot.retention`), for retention plans.
    pub hot_window: Duration,
    pub clock: Clock,
    /// The retention history, reconciled with the log.
    pub deletions: DeletionLog,
    /// Files retention removed that are still on disk (from the history's
    /// reconciliation): deleted after their grace.
    pub lingering: Vec<PathBuf>,
}

impl LakeWriter {
    pub fn new(parts: LakeWriterParts) -> Self {
        let read_to = parts.log.state().lake_seq;
        Self {
            root: parts.root,
            quarantine_root: parts.quarantine_root,
            config: parts.config,
            fs: parts.fs,
            shared: parts.shared,
            log: parts.log,
            hot: parts.hot,
            status: parts.status,
            pending: BTreeMap::new(),
            pending_rows: 0,
            read_to,
            pending_since: None,
            lost: Vec::new(),
            retry_at: None,
            backoff: BACKOFF_MIN,
            retired: parts
                .lingering
                .into_iter()
                .map(|path| Retired {
                    at: Instant::now(),
                    path,
                    by_retention: true,
                })
                .collect(),
            retention: parts.retention,
            hot_window: parts.hot_window,
            clock: parts.clock,
            deletions: parts.deletions,
            last_retention: None,
        }
    }

    pub fn lake_seq(&self) -> u64 {
        self.log.state().lake_seq
    }

    pub fn run(mut self, mut cursor: WalCursor, requests: Receiver<LakeRequest>) {
        let mut last_hole_check = Instant::now();
        loop {
            while let Ok(request) = requests.try_recv() {
                self.handle(request, &mut cursor);
            }
            if self.log.is_poisoned() {
                // Nothing more can be committed until a restart reads the log
                // again; reading on would only grow `pending`.
                self.status.lake.stalled(
                    "lake",
                    "a commit's outcome is unknown after an I/O error: restart Quiver",
                );
                if cursor.feed().is_closed() {
                    return;
                }
                std::thread::sleep(FETCH_WAIT * 10);
                continue;
            }
            match cursor.fetch(FETCH_RECORDS_MAX, FETCH_WAIT) {
                Ok(Fetched::Records(records)) => {
                    for r in records {
                        self.add(r);
                    }
                }
                Ok(Fetched::Gap { from, to }) => {
                    if !self.fill_gap(from, to, cursor.feed()) {
                        // Closing before the gap could be read back: roll what
                        // precedes it; the next start reads it again.
                        self.finish();
                        return;
                    }
                }
                Ok(Fetched::Idle) => {}
                Ok(Fetched::Closed) => {
                    self.finish();
                    return;
                }
                Err(e) => {
                    self.status
                        .lake
                        .stalled("lake", &format!("reading the WAL: {e}"));
                    if cursor.feed().is_closed() {
                        self.finish();
                        return;
                    }
                    std::thread::sleep(BACKOFF_MIN);
                    continue;
                }
            }
            if !self.retired.is_empty() {
                self.delete_retired(false);
            }
            if self.retention.automatic
                && !self.retention.lake_days.is_empty()
                && self
                    .last_retention
                    .is_none_or(|t| t.elapsed() >= self.retention.check_interval)
            {
                self.last_retention = Some(Instant::now());
                if let Err(e) = self.retention(false) {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "lake retention pass failed; retrying at the next check");
                }
            }
            if !self.shared.holes_clear.load(Ordering::Acquire)
                && last_hole_check.elapsed() >= HOLE_CHECK_RETRY
            {
                last_hole_check = Instant::now();
                if let Err(e) = self.check_holes() {
                    tracing::warn!(error = %e, "checking the lake against the hot store failed; retrying");
                }
            }
            let due = self.pending_rows >= self.config.roll_rows_max
                || self
                    .pending_since
                    .is_some_and(|t| t.elapsed() >= self.config.roll_interval);
            if due && self.retry_at.is_none_or(|t| Instant::now() >= t) {
                let result = self.roll();
                self.after(result.map(|_| ()), "roll");
            }
        }
    }

    /// The last roll and the retired files' deletion, at shutdown.
    fn finish(&mut self) {
        if let Err(e) = self.roll() {
            tracing::error!(error = %e, "final lake roll failed; rows stay in the WAL");
        }
        self.delete_retired(true);
    }

    /// Records how an operation went: backoff and a stalled state on failure.
    fn after(&mut self, result: Result<(), LakeError>, what: &str) {
        match result {
            Ok(()) => {
                self.retry_at = None;
                self.backoff = BACKOFF_MIN;
                self.status.lake.ok("lake");
            }
            Err(e) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                let reason = describe(&e);
                tracing::warn!(error = %e, "lake {what} failed; retrying in {:?}", self.backoff);
                self.status
                    .lake
                    .stalled("lake", &format!("{what} failed: {reason}"));
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    fn handle(&mut self, request: LakeRequest, cursor: &mut WalCursor) {
        match request {
            LakeRequest::Roll { reply } => {
                let result = self.catch_up(cursor).and_then(|()| self.roll());
                let _ = reply.send(result);
            }
            LakeRequest::Compact { min_files, reply } => {
                let _ = reply.send(self.compact(min_files, None));
            }
            LakeRequest::Retention { dry_run, reply } => {
                let _ = reply.send(self.retention(dry_run));
            }
        }
    }

    /// Reads everything durable now.
    fn catch_up(&mut self, cursor: &mut WalCursor) -> Result<(), LakeError> {
        let target = cursor.feed().durable_seq();
        while cursor.next_seq() <= target {
            match cursor.fetch(FETCH_RECORDS_MAX, Duration::ZERO) {
                Ok(Fetched::Records(records)) => {
                    for r in records {
                        self.add(r);
                    }
                }
                Ok(Fetched::Gap { from, to }) => {
                    if !self.fill_gap(from, to, cursor.feed()) {
                        break;
                    }
                }
                Ok(Fetched::Idle | Fetched::Closed) => break,
                Err(e) => {
                    return Err(LakeError::Io {
                        path: self.root.join("../wal"),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, record: WalRecord) {
        if record.seq <= self.read_to {
            return;
        }
        self.read_to = record.seq;
        if record.batch.num_rows() == 0 {
            return;
        }
        self.pending_rows += record.batch.num_rows();
        self.pending_since.get_or_insert_with(Instant::now);
        self.pending
            .entry(record.table)
            .or_default()
            .push(record.batch);
        self.shared
            .pending_rows
            .store(self.pending_rows as u64, Ordering::Relaxed);
    }

    /// Sequences `from..=to` are in no WAL segment: take them from the hot
    /// store, once it has passed them (it applies the same WAL, so what it lacks
    /// then is in no copy), in chunks so a long gap is never held whole. A read
    /// that fails is retried, never taken as a loss. Returns false if the store
    /// closed first (nothing past `from` is then taken as read).
    fn fill_gap(&mut self, from: u64, to: u64, feed: &WalFeed) -> bool {
        let mut at = from;
        let mut backoff = Duration::from_millis(100);
        let (mut found_rows, mut found_any) = (0u64, false);
        while at <= to {
            let end = to.min(at.saturating_add(GAP_CHUNK_SEQS - 1));
            let ready = self.hot.applied_seq.load(Ordering::Acquire) >= end;
            let result = if ready {
                self.hot.read_seq_range(at, end, Table::ALL)
            } else {
                Err(crate::store::hot::HotError::NotYet)
            };
            let records = match result {
                Ok(r) => r,
                Err(e) => {
                    if feed.is_closed() {
                        return false;
                    }
                    if !matches!(e, crate::store::hot::HotError::NotYet) {
                        tracing::warn!(error = %e, "reading a WAL gap back from the hot store; retrying");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let found = SeqRanges::from_ranges(records.iter().map(|r| (r.seq, r.seq)));
            found_rows += records
                .iter()
                .map(|r| r.batch.num_rows() as u64)
                .sum::<u64>();
            found_any |= !found.is_empty();
            for r in records {
                self.add(r);
            }
            for (a, b) in found.missing_in(at, end) {
                self.lost.push((a, b));
                self.status.hole(Hole {
                    component: "lake",
                    table: None,
                    seq_from: a,
                    seq_to: b,
                    rows: None,
                    status: HoleStatus::Lost,
                    detected_at_us: Ts::now().0,
                    detail: "in neither the WAL nor the hot store".into(),
                });
            }
            self.read_to = self.read_to.max(end);
            at = end + 1;
            if self.pending_rows >= self.config.roll_rows_max {
                let result = self.roll();
                self.after(result, "roll");
            }
        }
        if found_any {
            self.status.hole(Hole {
                component: "lake",
                table: None,
                seq_from: from,
                seq_to: to,
                rows: Some(found_rows),
                status: HoleStatus::Refilled,
                detected_at_us: Ts::now().0,
                detail: "not in the WAL; read back from the hot store".into(),
            });
        }
        true
    }

    /// Writes everything read so far into the lake and commits it.
    pub fn roll(&mut self) -> Result<(), LakeError> {
        let lake_seq = self.lake_seq();
        if self.read_to <= lake_seq {
            return Ok(());
        }
        self.refuse_if_poisoned()?;
        let (from, to) = (lake_seq + 1, self.read_to);
        let props = writer_properties(&self.config);
        let mut written: Vec<LakeFile> = Vec::new();
        let result = (|| {
            for (table, batches) in &self.pending {
                let all = concat_batches(&table.schema(), batches).map_err(LakeError::Arrow)?;
                for (date, symbol, rows) in split_partitions(&all)? {
                    let path =
                        partition_dir(&self.root, *table, date, &symbol).join(part_name(from, to));
                    let n = rows.num_rows() as u64;
                    let file_rows = rows
                        .project(&file_columns(&rows))
                        .map_err(LakeError::Arrow)?;
                    let bytes = write_new(
                        self.fs.as_ref(),
                        &path,
                        &[file_rows],
                        &file_schema(*table),
                        &props,
                    )
                    .inspect_err(|_| {
                        let _ = self.fs.remove_file(&path);
                    })?;
                    written.push(LakeFile {
                        table: *table,
                        date,
                        symbol,
                        path,
                        bytes,
                        rows: n,
                        seq_from: from,
                        seq_to: to,
                    });
                }
            }
            let mut change = Change::new(CommitOp::Roll, to);
            change.add = written.clone();
            change.lost = self.lost.clone();
            self.log.commit(change)
        })();
        if let Err(e) = result {
            if !matches!(e, LakeError::CommitUnknown { .. }) {
                // Never committed: these files are ours to take back.
                for f in &written {
                    let _ = self.fs.remove_file(&f.path);
                }
            }
            return Err(e);
        }
        let rows: u64 = written.iter().map(|f| f.rows).sum();
        let touched: Vec<(Table, NaiveDate, String)> = written
            .iter()
            .map(|f| (f.table, f.date, f.symbol.clone()))
            .collect();
        self.shared.publish(self.log.state());
        self.pending.clear();
        self.pending_rows = 0;
        self.pending_since = None;
        self.lost.clear();
        self.shared.pending_rows.store(0, Ordering::Relaxed);
        self.shared.rows_rolled.fetch_add(rows, Ordering::Relaxed);
        self.shared.rolls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.compact(self.config.compact_trigger_files, Some(&touched)) {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "automatic compaction failed");
        }
        Ok(())
    }

    /// Merges each partition holding at least `min_files` files (among `only`,
    /// if given) into one file, one commit per partition. Returns the number of
    /// partitions merged; on error, the partitions before it stay merged.
    pub fn compact(
        &mut self,
        min_files: usize,
        only: Option<&[(Table, NaiveDate, String)]>,
    ) -> Result<usize, LakeError> {
        self.refuse_if_poisoned()?;
        // A merged file is named for its inputs' whole range: merging across
        // rows not yet written back would claim them. Wait for the check.
        if !self.shared.holes_clear.load(Ordering::Acquire) {
            return Ok(0);
        }
        let min_files = min_files.max(2);
        let mut groups: BTreeMap<(Table, NaiveDate, String), Vec<LakeFile>> = BTreeMap::new();
        for file in &self.log.state().files {
            groups
                .entry((file.table, file.date, file.symbol.clone()))
                .or_default()
                .push(file.clone());
        }
        let props = writer_properties(&self.config);
        let mut merged = 0;
        for (key, mut inputs) in groups {
            if inputs.len() < min_files || only.is_some_and(|o| !o.contains(&key)) {
                continue;
            }
            let (table, date, symbol) = key;
            // An unreadable input is quarantined and its rows refilled; the
            // partition is merged on a later pass.
            let bad: Vec<(PathBuf, String)> = inputs
                .iter()
                .filter_map(|f| check_footer(&f.path).err().map(|r| (f.path.clone(), r)))
                .collect();
            if !bad.is_empty() {
                self.quarantine_committed(bad)?;
                continue;
            }
            inputs.sort_by_key(|f| f.seq_from);
            let from = inputs.iter().map(|f| f.seq_from).min().unwrap_or(0);
            let to = inputs.iter().map(|f| f.seq_to).max().unwrap_or(0);
            let path = partition_dir(&self.root, table, date, &symbol).join(part_name(from, to));
            let input_paths: Vec<&Path> = inputs.iter().map(|f| f.path.as_path()).collect();
            let bytes = write_merged(
                self.fs.as_ref(),
                &path,
                &input_paths,
                &file_schema(table),
                &props,
            )
            .inspect_err(|_| {
                let _ = self.fs.remove_file(&path);
            })?;
            let output = LakeFile {
                table,
                date,
                symbol,
                path: path.clone(),
                bytes,
                rows: inputs.iter().map(|f| f.rows).sum(),
                seq_from: from,
                seq_to: to,
            };
            let mut change = Change::new(CommitOp::Compact, self.lake_seq());
            change.add.push(output);
            change.remove = inputs.iter().map(|f| f.path.clone()).collect();
            if let Err(e) = self.log.commit(change) {
                if !matches!(e, LakeError::CommitUnknown { .. }) {
                    let _ = self.fs.remove_file(&path);
                }
                return Err(e);
            }
            // Committed: only now may the inputs go, after their grace.
            let now = Instant::now();
            self.retired.extend(inputs.iter().map(|input| Retired {
                at: now,
                path: input.path.clone(),
                by_retention: false,
            }));
            self.shared.publish(self.log.state());
            merged += 1;
            self.shared.compactions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(merged)
    }

    fn refuse_if_poisoned(&self) -> Result<(), LakeError> {
        if self.log.is_poisoned() {
            return Err(LakeError::CommitUnknown {
                path: self.root.join("_log"),
            });
        }
        Ok(())
    }

    /// Moves unreadable committed files to quarantine (one commit), then writes
    /// back from the hot store what it still holds of their rows.
    fn quarantine_committed(&mut self, bad: Vec<(PathBuf, String)>) -> Result<(), LakeError> {
        let mut change = Change::new(CommitOp::Quarantine, self.lake_seq());
        for (path, reason) in bad {
            quarantine_file(
                self.fs.as_ref(),
                &self.root,
                &self.quarantine_root,
                &self.shared,
                &path,
                reason,
            )?;
            change.remove.push(path);
        }
        self.shared.holes_clear.store(false, Ordering::Release);
        self.log.commit(change)?;
        self.shared.publish(self.log.state());
        self.check_holes()?;
        Ok(())
    }

    /// Deletes retired files whose grace period is over (all of them if
    /// `all`), and records in the retention history when those removed by
    /// retention left the disk.
    fn delete_retired(&mut self, all: bool) {
        let grace = self.config.retired_file_grace;
        let fs = self.fs.clone();
        let mut dirs = Vec::new();
        let mut gone = Vec::new();
        self.retired.retain(|r| {
            if !all && r.at.elapsed() < grace {
                return true;
            }
            match fs.remove_file(&r.path) {
                Ok(()) => dirs.extend(r.path.parent().map(Path::to_path_buf)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, file = %r.path.display(), "could not delete a retired lake file");
                    return true;
                }
            }
            if r.by_retention {
                gone.push(r.path.clone());
            }
            false
        });
        dirs.sort();
        dirs.dedup();
        for dir in &dirs {
            let _ = fs.sync_dir(dir);
        }
        if !gone.is_empty() {
            for path in &gone {
                tracing::info!(file = %path.display(), "deleted a lake file removed by retention");
                // An emptied `symbol=` and `date=` directory goes too, or a
                // year of retention would leave a year of empty directories
                // (remove_dir refuses a directory that still holds a file;
                // only this thread writes partition directories).
                let symbol_dir = path.parent();
                let date_dir = symbol_dir.and_then(Path::parent);
                for dir in [symbol_dir, date_dir].into_iter().flatten() {
                    if std::fs::remove_dir(dir).is_err() {
                        break;
                    }
                }
            }
            // Synced above: the files are durably gone before the history says so.
            if let Err(e) = self.deletions.deleted(&gone, Ts::now().0) {
                tracing::warn!(error = %e, "recording retention deletions failed; the next start records them");
            }
        }
    }

    /// Plans a retention pass and, unless `dry_run`, applies it: one
    /// `Retention` commit removing every expired day partition, recorded in
    /// the history before (pending) and after (committed) it; the files are
    /// deleted after their grace. Nothing is removed while `holes_clear` is
    /// false (the plan says why). Returns the plan.
    pub fn retention(&mut self, dry_run: bool) -> Result<RetentionPlan, LakeError> {
        self.refuse_if_poisoned()?;
        let state = self.log.state();
        let plan = retention::plan(&PlanInputs {
            config: &self.retention,
            hot_window: self.hot_window,
            now: self.clock.now(),
            files: &state.files,
            lake_seq: state.lake_seq,
            version: state.version,
            holes_clear: self.shared.holes_clear.load(Ordering::Acquire),
            hot: &self.hot,
        })?;
        if dry_run || plan.blocked.is_some() || plan.files() == 0 {
            return Ok(plan);
        }
        let version = state.version + 1;
        let mut change = Change::new(CommitOp::Retention, state.lake_seq);
        let mut rows: Vec<Deletion> = Vec::new();
        for t in &plan.tables {
            let (Some(keep), Some(days), Some(reference), Some(cutoff)) =
                (t.keep_from, t.lake_days, t.reference, t.cutoff)
            else {
                continue;
            };
            if t.days.is_empty() {
                continue;
            }
            change.keep_from.insert(t.table, keep);
            for f in state
                .files
                .iter()
                .filter(|f| f.table == t.table && f.date < keep)
            {
                change.remove.push(f.path.clone());
                rows.push(Deletion {
                    table: t.table.name().to_string(),
                    date: f.date,
                    symbol: f.symbol.clone(),
                    path: f.path.clone(),
                    rows: f.rows,
                    bytes: f.bytes,
                    lake_days: days,
                    reference_us: reference.0,
                    cutoff_us: cutoff.0,
                    version,
                });
            }
        }
        // The hot store's copies of those days go first (rows at or below
        // lake_seq: the lake holds them until the commit, and the hot window,
        // shorter than any policy, would drop them anyway): `hot.*` never
        // shows a row `events.*` no longer has.
        for (table, keep) in &change.keep_from {
            let midnight = i64::from(super::partition::day_of_date(*keep)) * 86_400_000_000;
            self.hot
                .delete_before(*table, midnight, state.lake_seq)
                .map_err(|e| LakeError::Hot(Box::new(e)))?;
        }
        self.deletions
            .add_pending(&rows)
            .map_err(|e| LakeError::History(Box::new(e)))?;
        if let Err(e) = self.log.commit(change) {
            if !matches!(e, LakeError::CommitUnknown { .. })
                && let Err(h) = self.deletions.discard(version)
            {
                tracing::warn!(error = %h, "forgetting an uncommitted retention in the history failed; the next start does");
            }
            return Err(e);
        }
        // Committed: readers no longer see these files.
        self.shared.publish(self.log.state());
        if let Err(e) = self.deletions.committed(version, Ts::now().0) {
            tracing::warn!(error = %e, "recording a retention commit in the history failed; the next start records it");
        }
        for t in plan.tables.iter().filter(|t| !t.days.is_empty()) {
            for d in &t.days {
                tracing::info!(
                    table = t.table.name(),
                    date = %d.date,
                    files = d.files,
                    rows = d.rows,
                    bytes = d.bytes,
                    lake_days = t.lake_days,
                    reference = ?t.reference.map(|r| r.0),
                    cutoff = ?t.cutoff.map(|c| c.0),
                    version,
                    "retention removed a day partition from the lake"
                );
            }
        }
        let now = Instant::now();
        self.retired.extend(rows.into_iter().map(|d| Retired {
            at: now,
            path: d.path,
            by_retention: true,
        }));
        Ok(plan)
    }

    /// Finds rows the hot store holds at or below `lake_seq` that no committed
    /// file of their partition covers (a quarantined or missing file, a WAL
    /// record lost before it reached the lake, a rebuilt log) and writes them
    /// back into the lake in one commit. Returns the rows written back.
    pub fn check_holes(&mut self) -> Result<u64, LakeError> {
        self.refuse_if_poisoned()?;
        let lake_seq = self.lake_seq();
        let props = writer_properties(&self.config);
        let mut written: Vec<LakeFile> = Vec::new();
        let mut holes: Vec<Hole> = Vec::new();
        let mut ranges: std::collections::HashMap<(Table, NaiveDate, String), Vec<(u64, u64)>> =
            std::collections::HashMap::new();
        for f in &self.log.state().files {
            ranges
                .entry((f.table, f.date, f.symbol.clone()))
                .or_default()
                .push((f.seq_from, f.seq_to));
        }
        for r in ranges.values_mut() {
            r.sort_unstable();
        }
        let no_ranges = Vec::new();
        let result = (|| {
            for table in Table::ALL {
                let groups = self
                    .hot
                    .partition_seqs(*table, lake_seq)
                    .map_err(|e| LakeError::Hot(Box::new(e)))?;
                let mut missing: BTreeMap<(NaiveDate, String), Vec<u64>> = BTreeMap::new();
                let keep_from = self.log.state().keep_from.get(table).copied();
                for (seq, date, symbol) in groups {
                    // A day retention removed is never written back.
                    if keep_from.is_some_and(|k| date < k) {
                        continue;
                    }
                    let key = (*table, date, symbol);
                    let covered = ranges.get(&key).is_some_and(|r| covers(r, seq));
                    if !covered {
                        missing.entry((key.1, key.2)).or_default().push(seq);
                    }
                }
                for ((date, symbol), mut seqs) in missing {
                    seqs.sort_unstable();
                    let committed = ranges
                        .get(&(*table, date, symbol.clone()))
                        .unwrap_or(&no_ranges);
                    for (a, b) in runs(&seqs, committed) {
                        let batch = self
                            .hot
                            .read_partition(*table, date, &symbol, a, b)
                            .map_err(|e| LakeError::Hot(Box::new(e)))?;
                        if batch.num_rows() == 0 {
                            continue;
                        }
                        let sorted = split_partitions(&batch)?;
                        let rows: Vec<RecordBatch> = sorted
                            .into_iter()
                            .map(|(_, _, b)| b.project(&file_columns(&b)).map_err(LakeError::Arrow))
                            .collect::<Result<_, _>>()?;
                        let n: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
                        let path =
                            partition_dir(&self.root, *table, date, &symbol).join(part_name(a, b));
                        let bytes =
                            write_new(self.fs.as_ref(), &path, &rows, &file_schema(*table), &props)
                                .inspect_err(|_| {
                                    let _ = self.fs.remove_file(&path);
                                })?;
                        written.push(LakeFile {
                            table: *table,
                            date,
                            symbol: symbol.clone(),
                            path,
                            bytes,
                            rows: n,
                            seq_from: a,
                            seq_to: b,
                        });
                        holes.push(Hole {
                            component: "lake",
                            table: Some(*table),
                            seq_from: a,
                            seq_to: b,
                            rows: Some(n),
                            status: HoleStatus::Refilled,
                            detected_at_us: Ts::now().0,
                            detail: format!(
                                "rows of {date} {symbol} below lake_seq in no committed file; written back from the hot store"
                            ),
                        });
                    }
                }
            }
            if written.is_empty() {
                return Ok(());
            }
            let mut change = Change::new(CommitOp::Refill, lake_seq);
            change.add = written.clone();
            self.log.commit(change)
        })();
        if let Err(e) = result {
            if !matches!(e, LakeError::CommitUnknown { .. }) {
                for f in &written {
                    let _ = self.fs.remove_file(&f.path);
                }
            }
            return Err(e);
        }
        let rows: u64 = written.iter().map(|f| f.rows).sum();
        for hole in holes {
            self.status.hole(hole);
        }
        if rows > 0 {
            self.shared.refilled_rows.fetch_add(rows, Ordering::Relaxed);
            self.shared.publish(self.log.state());
        }
        self.shared.holes_clear.store(true, Ordering::Release);
        Ok(rows)
    }
}

/// Whether sorted, possibly overlapping ranges contain `seq`.
fn covers(ranges: &[(u64, u64)], seq: u64) -> bool {
    // Ranges are sorted by start; any that starts at or before `seq` may hold it.
    let end = ranges.partition_point(|r| r.0 <= seq);
    ranges[..end].iter().rev().any(|r| r.1 >= seq)
}

/// Splits sorted missing sequences into ranges that no committed range of the
/// partition intersects (so a refill file never claims sequences another file
/// holds: the file invariant).
fn runs(missing: &[u64], committed: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in missing {
        match out.last_mut() {
            Some(last) if !committed.iter().any(|&(a, b)| a <= s && last.1 < b) => last.1 = s,
            _ => out.push((s, s)),
        }
    }
    out
}

fn describe(e: &LakeError) -> String {
    match e {
        LakeError::Io { source, .. } => fsio::describe_io(source),
        LakeError::Parquet { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn refill_runs_never_span_a_committed_range() {
        assert_eq!(runs(&[3, 4, 5, 9], &[]), vec![(3, 9)]);
        assert_eq!(runs(&[3, 4, 9, 10], &[(6, 7)]), vec![(3, 4), (9, 10)]);
        assert_eq!(runs(&[3, 9], &[(1, 2), (11, 12)]), vec![(3, 9)]);
    }
}
