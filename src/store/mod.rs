//! Storage: the WAL, the DuckDB hot store and the Parquet lake behind one data
//! directory, and the [`StoreSink`] the logger writes through.
//!
//! ```text
//! <data>/quiver.lock     held (flock) by the one process that owns the dir
//! <data>/wal/            append-only WAL segments: the durability point
//! <data>/hot.duckdb      DuckDB hot store (recent window), fed from the WAL
//! <data>/journal.sqlite  trade journal (SQLite), fed from the WAL's trade events
//! <data>/registry.sqlite model registry, config history, learning tables
//! <data>/alerts.sqlite   alert outbox, cooldowns, delivery attempts (app::alerts)
//! <data>/retention.sqlite every lake file retention removed (lake::deletions)
//! <data>/models/sha256/  model artifacts, content-addressed
//! <data>/lake/           Parquet lake, hive-partitioned, rolled from the WAL
//! <data>/lake/_log/      the lake's commit log
//! <data>/quarantine/     files recovery could not read or account for
//! <data>/configs/        the dir's own metrics.yaml, gates.yaml, analysis/*.sql
//! <data>/flight.json     the address of the server holding the dir
//! ```
//!
//! [`layout::Layout`] is the one place that spells these names.
//!
//! # What ties them together
//!
//! Every durable write to the [`wal`] gets the next sequence number; that
//! fsync is the acknowledgement point. The writer then publishes the records to
//! the [`wal::WalFeed`] and returns: it never waits for a consumer. Three
//! consumers read the feed at their own pace, from memory or, once behind, from
//! the WAL files, and each records the last sequence it holds in the same
//! transaction as the data: the hot store (DuckDB), the lake (its commit log)
//! and the journal (SQLite). A slow or failing consumer is lag in
//! `system.writer`, never a blocked writer. WAL segments are deleted once all
//! three hold them.
//!
//! On open each consumer starts right after its own sequence, so nothing is
//! applied twice. A durable sequence the WAL no longer has (a corrupt record,
//! lost segments) reaches a consumer as a gap: the lake and the journal read it
//! back from the hot store, and what no copy holds is reported in
//! `system.holes` and the log, never skipped silently. The lake's own recovery
//! rules are in [`lake`]; the file-level rules in [`fsio`].
//!
//! # Faults
//!
//! Every write of the WAL and the lake goes through [`fsio::FileSystem`]; the
//! tests run them on [`faultfs::FaultFs`] (power loss at every fsync, ENOSPC,
//! EIO). A failing component retries with backoff and shows its state
//! (`wal stalled: disk full`) in `system.writer`; it resumes by itself when the
//! fault clears.

pub mod clock;
pub mod faultfs;
pub mod fsio;
pub mod hot;
pub mod journal;
pub mod lake;
pub mod layout;
pub mod outbox;
pub mod registry;
pub mod seq;
pub mod sqlite;
pub mod status;
pub mod wal;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use crate::event::Table;
use crate::ingest::{BatchSink, SinkError};
pub use clock::Clock;
pub use fsio::FileSystem;
pub use hot::{HotConfig, HotShared};
pub use journal::{Journal, JournalShared};
pub use lake::retention::{RetentionConfig, RetentionPlan};
pub use lake::{LakeConfig, LakeFile, LakeShared, LakeSnapshot, Quarantined};
pub use layout::Layout;
pub use registry::Registry;
pub use sqlite::SqliteError;
pub use status::{Hole, HoleStatus, StoreStatus};
use wal::{Wal, WalFeed, WalRecord, WalScan};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "data dir {path} is in use by another Quiver process ({holder}); \
         query it through that process's server, or stop it first"
    )]
    DataDirInUse { path: PathBuf, holder: String },
    #[error("data dir {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error(transparent)]
    Hot(#[from] hot::HotError),
    #[error(transparent)]
    Lake(#[from] lake::LakeError),
    #[error(transparent)]
    Sqlite(#[from] SqliteError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error("the {0} thread has stopped")]
    ThreadStopped(&'static str),
    #[error("the hot store did not catch up with the WAL within {0:?}")]
    ReplayTimeout(Duration),
}

/// Where and how the store keeps data.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub wal_segment_bytes_max: u64,
    /// Bytes of recent WAL records kept in memory for the consumers; one that
    /// falls further behind reads the WAL files.
    pub feed_bytes_max: usize,
    /// Longest `open` waits for the hot store to apply the WAL.
    pub open_catch_up_max: Duration,
    pub hot: HotConfig,
    pub lake: LakeConfig,
    /// Each table's lake retention and how often it is applied.
    pub retention: RetentionConfig,
    /// What "now" is for retention and the hot window: the system clock,
    /// or a manual one in tests and `quiver retention --now`.
    pub clock: Clock,
    /// The file layer of the WAL and the lake (the real one, or a
    /// fault-injecting one in tests).
    pub fs: Arc<dyn FileSystem>,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            wal_segment_bytes_max: 64 << 20,
            feed_bytes_max: 128 << 20,
            open_catch_up_max: Duration::from_secs(300),
            hot: HotConfig::default(),
            lake: LakeConfig::default(),
            retention: RetentionConfig::default(),
            clock: Clock::System,
            fs: fsio::std_fs(),
        }
    }
}

/// Counters of the storage side, for `system.*`.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub wal_seq: u64,
    pub hot_seq: u64,
    pub lake_seq: u64,
    pub journal_seq: u64,
    pub hot_rows_applied: u64,
    pub hot_apply_errors: u64,
    pub lake_pending_rows: u64,
    pub lake_rows_rolled: u64,
    pub lake_rolls: u64,
    pub lake_compactions: u64,
    pub lake_refilled_rows: u64,
    pub lake_errors: u64,
    pub lake_files: u64,
    pub lake_version: u64,
    pub feed_bytes: u64,
    pub wal_state: String,
    pub hot_state: String,
    pub lake_state: String,
    pub journal_state: String,
    pub holes: u64,
}

/// An open data directory. Dropping it (or [`Store::close`]) stops its threads
/// after they have applied and rolled everything durable.
pub struct Store {
    pub data_dir: PathBuf,
    pub hot: Arc<HotShared>,
    pub lake: Arc<LakeShared>,
    pub journal: Arc<JournalShared>,
    pub status: Arc<StoreStatus>,
    fs: Arc<dyn FileSystem>,
    feed: Arc<WalFeed>,
    wal_seq: Arc<AtomicU64>,
    lake_tx: Option<SyncSender<lake::LakeRequest>>,
    threads: ConsumerThreads,
    retention: RetentionConfig,
    hot_window: Duration,
    clock: Clock,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

/// Takes the data dir's lock (held while the returned file is open).
pub fn lock_data_dir(dir: &Path) -> Result<File, StoreError> {
    let path = Layout::new(dir).lock();
    let io = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = if holder.trim().is_empty() {
            "unknown process".to_string()
        } else {
            holder.trim().to_string()
        };
        return Err(StoreError::DataDirInUse {
            path: dir.to_path_buf(),
            holder,
        });
    }
    let me = format!(
        "pid {} ({})",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(me.as_bytes()).map_err(io)?;
    Ok(file)
}

impl Store {
    /// Opens (creating if needed) a data directory: takes its lock, scans the
    /// WAL, opens the hot store, recovers the lake (refusing to start when it
    /// cannot account for a file: see [`lake`]), writes back from the hot store
    /// any rows the lake lacks below its `lake_seq`, starts the consumers at
    /// their own positions, and waits until the hot store has applied the WAL.
    pub fn open(config: StoreConfig) -> Result<(Store, StoreSink), StoreError> {
        let fs = config.fs.clone();
        let dir = &create_data_dir(fs.as_ref(), &config.data_dir)?;
        let lock = lock_data_dir(dir)?;
        let layout = Layout::new(dir);
        let status = Arc::new(StoreStatus::default());
        let wal_dir = layout.wal();
        let wal_scan = WalScan::run(&wal_dir, fs.as_ref(), &layout.quarantine().join("wal"))?;
        let consumers = Consumers::open(&layout, &fs, &wal_scan)?;
        // Created here so that readers (the query engine, the CLI) find it.
        drop(Registry::open(dir)?);

        // Everything up to here is durable somewhere; the next write follows it.
        let last_seq = wal_scan.max_seq().max(consumers.last_seq());
        let feed = WalFeed::new(&wal_dir, last_seq, config.feed_bytes_max);
        let hot_shared = consumers.hot.clone();
        let lake_shared = consumers.lake.clone();
        let journal_shared = consumers.journal_shared.clone();
        let (threads, lake_tx) = consumers.start(&layout, &config, &fs, &status, &feed)?;
        let wal_seq = Arc::new(AtomicU64::new(last_seq));
        let store = Store {
            data_dir: dir.clone(),
            hot: hot_shared.clone(),
            lake: lake_shared.clone(),
            journal: journal_shared.clone(),
            status: status.clone(),
            fs: fs.clone(),
            feed: feed.clone(),
            wal_seq: wal_seq.clone(),
            lake_tx: Some(lake_tx),
            threads,
            retention: config.retention.clone(),
            hot_window: config.hot.retention,
            clock: config.clock.clone(),
            _lock: lock,
        };
        if !store.wait_hot_caught_up(config.open_catch_up_max) {
            return Err(StoreError::ReplayTimeout(config.open_catch_up_max));
        }
        let sink = StoreSink {
            wal: Wal::open(&wal_dir, fs, config.wal_segment_bytes_max, &wal_scan),
            next_seq: last_seq + 1,
            wal_seq,
            feed,
            status,
            hot: hot_shared,
            lake: lake_shared,
            journal: journal_shared,
        };
        Ok((store, sink))
    }

    pub fn stats(&self) -> StoreStats {
        let h = &self.hot;
        let l = &self.lake;
        let snapshot = l.snapshot();
        StoreStats {
            wal_seq: self.wal_seq.load(Ordering::Acquire),
            hot_seq: h.applied_seq.load(Ordering::Acquire),
            lake_seq: snapshot.lake_seq,
            journal_seq: self.journal.applied_seq.load(Ordering::Acquire),
            hot_rows_applied: h.rows_applied.load(Ordering::Relaxed),
            hot_apply_errors: h.apply_errors.load(Ordering::Relaxed),
            lake_pending_rows: l.pending_rows.load(Ordering::Relaxed),
            lake_rows_rolled: l.rows_rolled.load(Ordering::Relaxed),
            lake_rolls: l.rolls.load(Ordering::Relaxed),
            lake_compactions: l.compactions.load(Ordering::Relaxed),
            lake_refilled_rows: l.refilled_rows.load(Ordering::Relaxed),
            lake_errors: l.errors.load(Ordering::Relaxed),
            lake_files: snapshot.files.len() as u64,
            lake_version: snapshot.version,
            feed_bytes: self.feed.recent_bytes() as u64,
            wal_state: self.status.wal.describe(),
            hot_state: self.status.hot.describe(),
            lake_state: self.status.lake.describe(),
            journal_state: self.status.journal.describe(),
            holes: self.status.holes().len() as u64,
        }
    }

    fn lake_request<T>(
        &self,
        msg: impl FnOnce(SyncSender<Result<T, lake::LakeError>>) -> lake::LakeRequest,
    ) -> Result<T, StoreError> {
        let tx = self
            .lake_tx
            .as_ref()
            .ok_or(StoreError::ThreadStopped("lake"))?;
        let (reply_tx, reply_rx) = sync_channel(1);
        tx.send(msg(reply_tx))
            .map_err(|_| StoreError::ThreadStopped("lake"))?;
        self.feed.wake();
        reply_rx
            .recv()
            .map_err(|_| StoreError::ThreadStopped("lake"))?
            .map_err(StoreError::from)
    }

    /// Merges every lake partition holding at least `min_files` files into one
    /// file (one commit per partition). Returns how many partitions were merged.
    pub fn compact(&self, min_files: usize) -> Result<usize, StoreError> {
        self.lake_request(|reply| lake::LakeRequest::Compact { min_files, reply })
    }

    /// What a retention pass would remove now, from the published lake
    /// snapshot and the hot store, computed on the calling thread (this is
    /// what `system.retention_plan` shows). Changes nothing.
    pub fn plan_retention(&self) -> Result<RetentionPlan, StoreError> {
        let snapshot = self.lake.snapshot();
        Ok(lake::retention::plan(&lake::retention::PlanInputs {
            config: &self.retention,
            hot_window: self.hot_window,
            now: self.clock.now(),
            files: &snapshot.files,
            lake_seq: snapshot.lake_seq,
            version: snapshot.version,
            holes_clear: self.lake.holes_clear.load(Ordering::Acquire),
            hot: &self.hot,
        })?)
    }

    /// Runs a retention pass now on the lake thread (see
    /// [`lake::retention`]); returns what it removed.
    pub fn apply_retention(&self) -> Result<RetentionPlan, StoreError> {
        self.lake_request(|reply| lake::LakeRequest::Retention {
            dry_run: false,
            reply,
        })
    }

    /// The store's clock (see [`StoreConfig::clock`]).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The retention policy this store applies.
    pub fn retention_config(&self) -> &RetentionConfig {
        &self.retention
    }

    /// Rolls every durable batch not yet in the lake into it now.
    pub fn roll_lake(&self) -> Result<(), StoreError> {
        self.lake_request(|reply| lake::LakeRequest::Roll { reply })
    }

    /// The last sequence durable in the WAL.
    pub fn durable_seq(&self) -> u64 {
        self.feed.durable_seq()
    }

    /// The WAL's durable end and recent records, for readers outside the
    /// store (a live tail) that follow it with their own [`wal::WalCursor`].
    pub fn wal_feed(&self) -> &Arc<WalFeed> {
        &self.feed
    }

    /// Waits until the hot store has applied everything durable in the WAL.
    pub fn wait_hot_caught_up(&self, timeout: Duration) -> bool {
        self.wait_for(&self.hot.applied_seq, timeout)
    }

    /// Waits until the journal holds every durable trade event.
    pub fn wait_journal_caught_up(&self, timeout: Duration) -> bool {
        self.wait_for(&self.journal.applied_seq, timeout)
    }

    fn wait_for(&self, applied: &AtomicU64, timeout: Duration) -> bool {
        let target = self.feed.durable_seq();
        let started = Instant::now();
        while applied.load(Ordering::Acquire) < target {
            if started.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Stops the consumers once they have applied and rolled everything
    /// durable, then deletes WAL segments all of them hold. The logger using
    /// this store's sink must be closed first.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        self.lake_tx = None;
        self.feed.close();
        let mut result = Ok(());
        for (name, handle) in self.threads.drain(..) {
            if handle.join().is_err() {
                result = Err(StoreError::ThreadStopped(name));
            }
        }
        let applied = held_by_all(&self.hot, &self.lake, &self.journal);
        let wal_dir = self.data_dir.join("wal");
        let scan = WalScan::run(
            &wal_dir,
            self.fs.as_ref(),
            &self.data_dir.join("quarantine").join("wal"),
        )?;
        let mut wal = Wal::open(&wal_dir, self.fs.clone(), u64::MAX, &scan);
        wal.delete_through(applied)?;
        result
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.threads.is_empty()
            && let Err(e) = self.shutdown()
        {
            tracing::error!(error = %e, "closing the store");
        }
    }
}

/// The last WAL sequence every consumer holds: segments up to it may go.
fn held_by_all(hot: &HotShared, lake: &LakeShared, journal: &JournalShared) -> u64 {
    hot.applied_seq
        .load(Ordering::Acquire)
        .min(lake.lake_seq.load(Ordering::Acquire))
        .min(journal.persisted_seq.load(Ordering::Acquire))
}

/// Creates the data dir (durably) and returns its absolute path.
fn create_data_dir(fs: &dyn FileSystem, data_dir: &Path) -> Result<PathBuf, StoreError> {
    let io = |source| StoreError::Io {
        path: data_dir.to_path_buf(),
        source,
    };
    fsio::create_dir_durable(fs, data_dir).map_err(io)?;
    // Absolute paths from here on: the lake's files are read through an
    // object store rooted at `/`, and messages should say where things are.
    std::fs::canonicalize(data_dir).map_err(io)
}

/// The three consumers of the WAL feed, opened and recovered, each at its own
/// position, not yet running.
struct Consumers {
    hot_conn: duckdb::Connection,
    hot: Arc<HotShared>,
    lake_log: lake::log::LakeLog,
    lake: Arc<LakeShared>,
    journal: Journal,
    journal_shared: Arc<JournalShared>,
    journal_seq: u64,
}

impl Consumers {
    /// Opens the hot store, recovers the lake against what the hot store and
    /// the WAL hold, and opens the journal.
    fn open(
        layout: &Layout,
        fs: &Arc<dyn FileSystem>,
        wal_scan: &WalScan,
    ) -> Result<Self, StoreError> {
        let (hot_conn, hot) = hot::open(&layout.hot())?;
        let available = |lake_seq: u64| {
            let mut seqs = hot
                .seqs_above(lake_seq)
                .map_err(|e| lake::LakeError::Hot(Box::new(e)))?;
            for &(a, b) in wal_scan.coverage.ranges() {
                seqs.insert(a, b);
            }
            Ok(seqs)
        };
        let (lake_log, lake) =
            lake::open(&layout.lake(), &layout.quarantine(), fs.clone(), &available)?;
        let journal = Journal::open(&layout.journal())?;
        let journal_shared = Arc::new(JournalShared::default());
        let journal_seq = journal.applied_seq()?;
        journal_shared
            .applied_seq
            .store(journal_seq, Ordering::Release);
        journal_shared
            .persisted_seq
            .store(journal_seq, Ordering::Release);
        Ok(Self {
            hot_conn,
            hot,
            lake_log,
            lake,
            journal,
            journal_shared,
            journal_seq,
        })
    }

    fn hot_seq(&self) -> u64 {
        self.hot.applied_seq.load(Ordering::Acquire)
    }

    fn lake_seq(&self) -> u64 {
        self.lake_log.state().lake_seq
    }

    /// The last sequence any consumer holds.
    fn last_seq(&self) -> u64 {
        self.hot_seq().max(self.lake_seq()).max(self.journal_seq)
    }

    /// Starts the hot, lake and journal threads, each reading the feed right
    /// after its own sequence. Returns them and the lake thread's request
    /// channel.
    fn start(
        self,
        layout: &Layout,
        config: &StoreConfig,
        fs: &Arc<dyn FileSystem>,
        status: &Arc<StoreStatus>,
        feed: &Arc<WalFeed>,
    ) -> Result<(ConsumerThreads, SyncSender<lake::LakeRequest>), StoreError> {
        let (hot_seq, lake_seq, journal_seq) = (self.hot_seq(), self.lake_seq(), self.journal_seq);
        // After the lake's recovery: what a crash left unfinished in the
        // retention history is settled against the log.
        let mut deletions =
            lake::deletions::DeletionLog::open(&layout.retention(), config.retention.history_max)?;
        let lingering = deletions.reconcile(self.lake_log.state(), crate::event::Ts::now().0)?;
        let mut lake_writer = lake::LakeWriter::new(lake::writer::LakeWriterParts {
            root: layout.lake(),
            quarantine_root: layout.quarantine(),
            config: config.lake.clone(),
            fs: fs.clone(),
            shared: self.lake.clone(),
            log: self.lake_log,
            hot: self.hot.clone(),
            status: status.clone(),
            retention: config.retention.clone(),
            hot_window: config.hot.retention,
            clock: config.clock.clone(),
            deletions,
            lingering,
        });
        if let Err(e) = lake_writer.check_holes() {
            tracing::error!(error = %e, "checking the lake against the hot store failed; rows the lake lacks may be hidden until the next start");
        }
        let follower = journal::JournalFollower {
            journal: self.journal,
            shared: self.journal_shared,
            hot: self.hot.clone(),
            status: status.clone(),
        };
        let hot_writer = hot::HotWriter {
            conn: self.hot_conn,
            shared: self.hot,
            config: config.hot.clone(),
            lake: self.lake,
            status: status.clone(),
            clock: config.clock.clone(),
        };
        let (lake_tx, lake_rx) = sync_channel(16);
        let hot_cursor = feed.cursor(hot_seq + 1);
        let lake_cursor = feed.cursor(lake_seq + 1);
        let journal_cursor = feed.cursor(journal_seq + 1);
        let threads = vec![
            spawn_consumer("hot", Box::new(move || hot_writer.run(hot_cursor)))?,
            spawn_consumer(
                "lake",
                Box::new(move || lake_writer.run(lake_cursor, lake_rx)),
            )?,
            spawn_consumer("journal", Box::new(move || follower.run(journal_cursor)))?,
        ];
        Ok((threads, lake_tx))
    }
}

/// The consumer threads, by name.
type ConsumerThreads = Vec<(&'static str, JoinHandle<()>)>;

/// Starts one consumer thread, named `quiver-<name>`.
fn spawn_consumer(
    name: &'static str,
    f: Box<dyn FnOnce() + Send>,
) -> Result<(&'static str, JoinHandle<()>), StoreError> {
    std::thread::Builder::new()
        .name(format!("quiver-{name}"))
        .spawn(f)
        .map(|h| (name, h))
        .map_err(|source| StoreError::Io {
            path: PathBuf::from(name),
            source,
        })
}

/// The logger's sink: assigns sequence numbers, appends to the WAL (fsync),
/// then publishes the records to the feed the consumers read. It never waits
/// for a consumer.
pub struct StoreSink {
    wal: Wal,
    next_seq: u64,
    wal_seq: Arc<AtomicU64>,
    feed: Arc<WalFeed>,
    status: Arc<StoreStatus>,
    hot: Arc<HotShared>,
    lake: Arc<LakeShared>,
    journal: Arc<JournalShared>,
}

impl std::fmt::Debug for StoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSink")
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl BatchSink for StoreSink {
    fn write(&mut self, batches: &[(Table, RecordBatch)]) -> Result<(), SinkError> {
        if self.feed.is_closed() {
            // The store is closing (or closed): its WAL may be trimmed under
            // this writer, so nothing more is acknowledged.
            return Err(SinkError(Box::new(StoreError::ThreadStopped("store"))));
        }
        let records: Vec<(u64, Table, &RecordBatch)> = batches
            .iter()
            .enumerate()
            .map(|(i, (table, batch))| (self.next_seq + i as u64, *table, batch))
            .collect();
        let started = std::time::Instant::now();
        let appended = self.wal.append(&records);
        self.status.wal_sync.record(started.elapsed());
        if let Err(e) = appended {
            let reason = e.io().map_or_else(|| e.to_string(), fsio::describe_io);
            self.status.wal.stalled("wal", &reason);
            return Err(SinkError(Box::new(e)));
        }
        self.status.wal.ok("wal");
        // Durable from here on: never report an error past this point, or the
        // writer would write the same batches again under new sequences.
        self.next_seq += records.len() as u64;
        if let Some(&(last, _, _)) = records.last() {
            self.wal_seq.store(last, Ordering::Release);
        }
        self.feed
            .publish(records.into_iter().map(|(seq, table, batch)| WalRecord {
                seq,
                table,
                batch: batch.clone(),
            }));
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        let applied = held_by_all(&self.hot, &self.lake, &self.journal);
        self.wal
            .delete_through(applied)
            .map(|_| ())
            .map_err(|e| SinkError(Box::new(e)))
    }
}
