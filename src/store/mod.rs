//! Storage: the WAL, the DuckDB hot store and the Parquet lake behind one data
//! directory, and the [`StoreSink`] the logger writes through.
//!
//! ```text
//! <data>/quiver.lock     held (flock) by the one process that owns the dir
//! <data>/wal/            append-only WAL segments: the durability point
//! <data>/hot.duckdb      DuckDB hot store (recent window), fed from the WAL
//! <data>/journal.sqlite  trade journal (SQLite), fed from the WAL's trade events
//! <data>/registry.sqlite model registry, config history, learning tables
//! <data>/models/sha256/  model artifacts, content-addressed
//! <data>/lake/           Parquet lake, hive-partitioned, rolled from the WAL
//! <data>/quarantine/     unreadable Parquet files moved out of the lake
//! ```
//!
//! Sequence numbers tie them together: every durable batch gets the next
//! sequence; the hot store records the last one it applied (in the same DuckDB
//! transaction), the lake the last one it committed and the journal the last
//! one it wrote (in the same SQLite transaction). On open, the WAL is replayed
//! past each of them, so nothing is applied twice; WAL segments are deleted
//! once all three hold them.

pub mod fsio;
pub mod hot;
pub mod journal;
pub mod lake;
pub mod registry;
pub mod sqlite;
pub mod wal;

use std::fs::{self, File, OpenOptions};
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
pub use hot::{HotConfig, HotShared};
pub use journal::{Journal, JournalShared};
pub use lake::{LakeConfig, LakeFile, LakeShared, LakeSnapshot, Quarantined};
pub use registry::Registry;
pub use sqlite::SqliteError;

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
    #[error("the hot store did not catch up with the WAL replay within {0:?}")]
    ReplayTimeout(Duration),
}

/// Where and how the store keeps data.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub wal_segment_bytes_max: u64,
    pub hot: HotConfig,
    pub lake: LakeConfig,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            wal_segment_bytes_max: 64 << 20,
            hot: HotConfig::default(),
            lake: LakeConfig::default(),
        }
    }
}

/// Counters of the storage side, for `system.*`.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub wal_seq: u64,
    pub hot_seq: u64,
    pub lake_seq: u64,
    pub hot_rows_applied: u64,
    pub hot_apply_errors: u64,
    pub lake_pending_rows: u64,
    pub lake_rows_rolled: u64,
    pub lake_rolls: u64,
    pub lake_compactions: u64,
    pub lake_errors: u64,
    pub lake_files: u64,
}

/// An open data directory. Dropping it (or [`Store::close`]) stops its threads
/// after they have applied and rolled everything they were sent.
pub struct Store {
    pub data_dir: PathBuf,
    pub hot: Arc<HotShared>,
    pub lake: Arc<LakeShared>,
    pub journal: Arc<JournalShared>,
    wal_seq: Arc<AtomicU64>,
    lake_tx: Option<SyncSender<lake::LakeMsg>>,
    hot_tx: Option<SyncSender<hot::HotApply>>,
    journal_tx: Option<SyncSender<journal::JournalApply>>,
    threads: Vec<(&'static str, JoinHandle<()>)>,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

/// Batches in flight between the writer and each of the hot and lake threads.
const CHANNEL_BATCHES: usize = 64;

/// Batches in flight to the journal thread. Larger: most are other tables'
/// batches it only counts, and a journal locked by another connection for a
/// while should not stall ingest.
const JOURNAL_CHANNEL_BATCHES: usize = 4096;

fn lock_data_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("quiver.lock");
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
    /// Opens (creating if needed) a data directory: takes its lock, recovers the
    /// lake, opens the hot store, replays the WAL past what each of them holds,
    /// and waits until the hot store has applied the replay.
    pub fn open(config: StoreConfig) -> Result<(Store, StoreSink), StoreError> {
        fs::create_dir_all(&config.data_dir).map_err(|source| StoreError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        // Absolute paths from here on: the lake's files are read through an
        // object store rooted at `/`, and messages should say where things are.
        let dir = &fs::canonicalize(&config.data_dir).map_err(|source| StoreError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        let lock = lock_data_dir(dir)?;
        let lake_root = dir.join("lake");
        let lake_shared = lake::open(&lake_root, &dir.join("quarantine"))?;
        let (conn, hot_shared) = hot::open(&dir.join("hot.duckdb"))?;
        let journal = Journal::open(&dir.join("journal.sqlite"))?;
        let journal_shared = Arc::new(JournalShared::default());
        let journal_seq = journal.applied_seq()?;
        journal_shared
            .applied_seq
            .store(journal_seq, Ordering::Release);
        // Created here so that readers (the query engine, the CLI) find it.
        drop(Registry::open(dir)?);

        let (hot_tx, hot_rx) = sync_channel(CHANNEL_BATCHES);
        let (lake_tx, lake_rx) = sync_channel(CHANNEL_BATCHES);
        let (journal_tx, journal_rx) = sync_channel(JOURNAL_CHANNEL_BATCHES);
        let follower = journal::JournalFollower {
            journal,
            shared: journal_shared.clone(),
        };
        let hot_writer = hot::HotWriter {
            conn,
            shared: hot_shared.clone(),
            config: config.hot.clone(),
            lake_seq: lake_shared.lake_seq.clone(),
        };
        let lake_writer =
            lake::LakeWriter::new(lake_root, config.lake.clone(), lake_shared.clone());
        let spawn = |name: &'static str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("quiver-{name}"))
                .spawn(f)
                .map(|h| (name, h))
                .map_err(|source| StoreError::Io {
                    path: PathBuf::from(name),
                    source,
                })
        };
        let threads = vec![
            spawn("hot", Box::new(move || hot_writer.run(hot_rx)))?,
            spawn("lake", Box::new(move || lake_writer.run(lake_rx)))?,
            spawn("journal", Box::new(move || follower.run(journal_rx)))?,
        ];

        let hot_seq = hot_shared.applied_seq.load(Ordering::Acquire);
        let lake_seq = lake_shared.lake_seq.load(Ordering::Acquire);
        let wal_dir = dir.join("wal");
        let mut replayed_to_hot = 0u64;
        let max_seq = wal::replay(&wal_dir, hot_seq.min(lake_seq).min(journal_seq), |r| {
            if r.seq > hot_seq {
                replayed_to_hot = r.seq;
                hot_tx
                    .send(hot::HotApply {
                        seq: r.seq,
                        table: r.table,
                        batch: r.batch.clone(),
                    })
                    .map_err(|_| wal_stopped("hot"))?;
            }
            if r.seq > journal_seq {
                journal_tx
                    .send(journal::JournalApply::Batch {
                        seq: r.seq,
                        table: r.table,
                        batch: r.batch.clone(),
                    })
                    .map_err(|_| wal_stopped("journal"))?;
            }
            if r.seq > lake_seq {
                lake_tx
                    .send(lake::LakeMsg::Batch {
                        seq: r.seq,
                        table: r.table,
                        batch: r.batch,
                    })
                    .map_err(|_| wal_stopped("lake"))?;
            }
            Ok(())
        })?;
        let wait = Duration::from_secs(300);
        let started = Instant::now();
        while hot_shared.applied_seq.load(Ordering::Acquire) < replayed_to_hot {
            if started.elapsed() > wait {
                return Err(StoreError::ReplayTimeout(wait));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let last_seq = max_seq.max(hot_seq).max(lake_seq).max(journal_seq);
        // Records missing from the WAL below this were deleted, which happens
        // only once every consumer (the journal included) held them.
        journal_tx
            .send(journal::JournalApply::Watermark(last_seq))
            .map_err(|_| StoreError::ThreadStopped("journal"))?;
        let wal_seq = Arc::new(AtomicU64::new(last_seq));
        let sink = StoreSink {
            wal: wal::Wal::open(&wal_dir, config.wal_segment_bytes_max)?,
            next_seq: last_seq + 1,
            wal_seq: wal_seq.clone(),
            hot_tx: Some(hot_tx.clone()),
            lake_tx: Some(lake_tx.clone()),
            journal_tx: Some(journal_tx.clone()),
            hot: hot_shared.clone(),
            lake: lake_shared.clone(),
            journal: journal_shared.clone(),
        };
        let store = Store {
            data_dir: dir.clone(),
            hot: hot_shared,
            lake: lake_shared,
            journal: journal_shared,
            wal_seq,
            lake_tx: Some(lake_tx),
            hot_tx: Some(hot_tx),
            journal_tx: Some(journal_tx),
            threads,
            _lock: lock,
        };
        Ok((store, sink))
    }

    pub fn stats(&self) -> StoreStats {
        let h = &self.hot;
        let l = &self.lake;
        StoreStats {
            wal_seq: self.wal_seq.load(Ordering::Acquire),
            hot_seq: h.applied_seq.load(Ordering::Acquire),
            lake_seq: l.lake_seq.load(Ordering::Acquire),
            hot_rows_applied: h.rows_applied.load(Ordering::Relaxed),
            hot_apply_errors: h.apply_errors.load(Ordering::Relaxed),
            lake_pending_rows: l.pending_rows.load(Ordering::Relaxed),
            lake_rows_rolled: l.rows_rolled.load(Ordering::Relaxed),
            lake_rolls: l.rolls.load(Ordering::Relaxed),
            lake_compactions: l.compactions.load(Ordering::Relaxed),
            lake_errors: l.errors.load(Ordering::Relaxed),
            lake_files: l.snapshot().files.len() as u64,
        }
    }

    fn lake_request<T>(
        &self,
        msg: impl FnOnce(SyncSender<Result<T, lake::LakeError>>) -> lake::LakeMsg,
    ) -> Result<T, StoreError> {
        let tx = self
            .lake_tx
            .as_ref()
            .ok_or(StoreError::ThreadStopped("lake"))?;
        let (reply_tx, reply_rx) = sync_channel(1);
        tx.send(msg(reply_tx))
            .map_err(|_| StoreError::ThreadStopped("lake"))?;
        reply_rx
            .recv()
            .map_err(|_| StoreError::ThreadStopped("lake"))?
            .map_err(StoreError::from)
    }

    /// Merges every lake partition holding at least `min_files` files into one
    /// file (atomically). Returns how many partitions were merged.
    pub fn compact(&self, min_files: usize) -> Result<usize, StoreError> {
        self.lake_request(|reply| lake::LakeMsg::Compact { min_files, reply })
    }

    /// Rolls every durable batch not yet in the lake into it now.
    pub fn roll_lake(&self) -> Result<(), StoreError> {
        self.lake_request(|reply| lake::LakeMsg::Roll { reply })
    }

    /// Waits until the hot store has applied everything durable in the WAL.
    pub fn wait_hot_caught_up(&self, timeout: Duration) -> bool {
        let target = self.wal_seq.load(Ordering::Acquire);
        let started = Instant::now();
        while self.hot.applied_seq.load(Ordering::Acquire) < target {
            if started.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Waits until the journal holds every durable trade event.
    pub fn wait_journal_caught_up(&self, timeout: Duration) -> bool {
        let target = self.wal_seq.load(Ordering::Acquire);
        let started = Instant::now();
        while self.journal.applied_seq.load(Ordering::Acquire) < target {
            if started.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Stops the hot and lake threads once they have drained what they were
    /// sent (the lake rolls what is pending), then deletes WAL segments both hold.
    /// The logger using this store's sink must be closed first.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        self.hot_tx = None;
        self.lake_tx = None;
        self.journal_tx = None;
        let mut result = Ok(());
        for (name, handle) in self.threads.drain(..) {
            if handle.join().is_err() {
                result = Err(StoreError::ThreadStopped(name));
            }
        }
        let applied = held_by_all(&self.hot, &self.lake, &self.journal);
        let mut wal = wal::Wal::open(&self.data_dir.join("wal"), u64::MAX)?;
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
        .min(journal.applied_seq.load(Ordering::Acquire))
}

fn wal_stopped(name: &'static str) -> wal::WalError {
    wal::WalError::Io {
        path: PathBuf::from(name),
        source: std::io::Error::other(format!("the {name} thread has stopped")),
    }
}

/// The logger's sink: assigns sequence numbers, appends to the WAL (fsync), then
/// hands the batches to the hot and lake threads.
pub struct StoreSink {
    wal: wal::Wal,
    next_seq: u64,
    wal_seq: Arc<AtomicU64>,
    hot_tx: Option<SyncSender<hot::HotApply>>,
    lake_tx: Option<SyncSender<lake::LakeMsg>>,
    journal_tx: Option<SyncSender<journal::JournalApply>>,
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
        let records: Vec<(u64, Table, &RecordBatch)> = batches
            .iter()
            .enumerate()
            .map(|(i, (table, batch))| (self.next_seq + i as u64, *table, batch))
            .collect();
        self.wal
            .append(&records)
            .map_err(|e| SinkError(Box::new(e)))?;
        // Durable from here on: never report an error past this point, or the
        // writer would write the same batches again under new sequences.
        self.next_seq += records.len() as u64;
        if let Some(&(last, _, _)) = records.last() {
            self.wal_seq.store(last, Ordering::Release);
        }
        for (seq, table, batch) in records {
            if let Some(tx) = &self.hot_tx
                && tx
                    .send(hot::HotApply {
                        seq,
                        table,
                        batch: batch.clone(),
                    })
                    .is_err()
            {
                tracing::error!("the hot store thread has stopped; batches stay in the WAL");
                self.hot_tx = None;
            }
            if let Some(tx) = &self.lake_tx
                && tx
                    .send(lake::LakeMsg::Batch {
                        seq,
                        table,
                        batch: batch.clone(),
                    })
                    .is_err()
            {
                tracing::error!("the lake thread has stopped; batches stay in the WAL");
                self.lake_tx = None;
            }
            if let Some(tx) = &self.journal_tx
                && tx
                    .send(journal::JournalApply::Batch {
                        seq,
                        table,
                        batch: batch.clone(),
                    })
                    .is_err()
            {
                tracing::error!("the journal thread has stopped; batches stay in the WAL");
                self.journal_tx = None;
            }
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        let applied = held_by_all(&self.hot, &self.lake, &self.journal);
        self.wal
            .delete_through(applied)
            .map(|_| ())
            .map_err(|e| SinkError(Box::new(e)))
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.hot_tx = None;
        self.lake_tx = None;
        self.journal_tx = None;
        Ok(())
    }
}
