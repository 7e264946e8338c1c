//! The Parquet lake: `<data>/lake/<table>/date=YYYY-MM-DD/symbol=SYM/part-*.parquet`,
//! the system of record, readable as-is by any engine with hive partitioning
//! (the layout is in [`partition`]).
//!
//! # The commit protocol
//!
//! The lake holds exactly the files its commit log ([`log`], `lake/_log/`) names,
//! and every row of every WAL sequence up to the log's `lake_seq`.
//!
//! - **Roll.** The lake thread reads durable records from the WAL feed and keeps
//!   them pending in memory. It rolls them when they reach `roll_rows_max` rows,
//!   when the oldest is `roll_interval` old, on request and at clean shutdown:
//!   one new file per (table, date, symbol) holding that partition's rows of
//!   sequences `lake_seq+1 ..= to`, sorted by `ts`, each written to a temp name,
//!   fsynced and linked to a never-used name. Then one commit adds them all and
//!   sets `lake_seq = to`. Until that commit is durable none of the files
//!   exists for any reader, and the WAL keeps every record above `lake_seq`.
//! - **Compaction.** A partition's files are merged into one new file named
//!   for their whole range; one commit adds it and removes the inputs. The
//!   inputs stay on disk for `retired_file_grace` (queries planned on the older
//!   snapshot may still read them) and are deleted only after that commit.
//! - **Retention.** Day partitions of a table past its `[retention]` policy
//!   ([`retention`] states the rule: whole days older than min(now, newest)
//!   minus N days) are removed by one `Retention` commit that also records
//!   the table's first day kept (the hole check never writes an earlier day
//!   back). Like compaction inputs, the files stay on disk for
//!   `retired_file_grace` and are deleted only after that commit; each is
//!   recorded in the retention history ([`deletions`]) before the commit
//!   (pending), after it (committed) and once it left the disk. Nothing above
//!   `lake_seq` and nothing while `holes_clear` is false is removed.
//! - **File invariant.** A file of partition P named for sequences `a..=b` holds
//!   every row of P whose sequence is in `a..=b` (a roll reads every record of
//!   its range; a compaction merges every committed file of P in its range).
//!
//! # Recovery (opening the lake)
//!
//! The state is read from the log; then every Parquet file on disk that the log
//! does not name is accounted for, and only a file recovery can prove redundant
//! is deleted:
//!
//! | file on disk, not in the log | proof | action |
//! |---|---|---|
//! | a temp name (`*.tmp`) | never committed by construction | deleted |
//! | removed by a commit (tombstone), or its range `<= lake_seq` and covered by committed files of its partition that read | its rows are in those files | deleted |
//! | its range above `lake_seq`, every sequence still in the WAL or the hot store | the next roll writes them again | deleted |
//! | its range above `lake_seq`, sequences in neither | none: the log looks stale (restored from a backup?) | **startup refused**, repair command printed |
//! | anything else | none | moved to `quarantine/`, reported |
//!
//! A committed file that is missing or unreadable is removed from the state by a
//! commit (unreadable ones are moved to `quarantine/`), and its rows are then
//! written back from the hot store where it still holds them ([`writer`]'s
//! hole check, which runs at every start and after every quarantine). A lake
//! with files but no log (the log moved away, or a lake of the old
//! `_state.json` format with that file missing) refuses to start: nothing is
//! deleted, and `quiver repair lake` rebuilds the log from the files on disk. A
//! lake of the old format with its `_state.json` is taken over by one
//! `migrate` commit under the same rules.
//!
//! # Readers
//!
//! Quiver's query engine reads the lake only through a published
//! [`LakeSnapshot`]: the committed files and `lake_seq`. Rows with a higher
//! sequence are served from the hot store, so each event is seen exactly once.
//! An external reader globbing the lake sees compacted rows twice during the
//! grace period (and days removed by retention until it ends);
//! `system.lake_files` always lists exactly the live files.

pub mod deletions;
pub mod log;
pub mod parquet;
pub mod partition;
pub mod recovery;
pub mod retention;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::event::Table;
pub use parquet::file_schema;
pub use recovery::{RepairReport, open, repair};
pub use writer::{LakeRequest, LakeWriter};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing Parquet {path}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: ::parquet::errors::ParquetError,
    },
    #[error("preparing rows for the lake")]
    Arrow(#[source] arrow::error::ArrowError),
    #[error("reading the lake's commit log {path}: {message}")]
    Log { path: PathBuf, message: String },
    #[error("lake commit {version} already exists ({path}): is a second Quiver writing this lake?")]
    Conflict { version: u64, path: PathBuf },
    #[error(
        "a lake commit failed after its file was named ({path}); whether it committed is \
         decided at the next start: the lake stops committing until Quiver restarts \
         (nothing is lost: the WAL and the hot store keep the rows)"
    )]
    CommitUnknown { path: PathBuf },
    #[error(
        "the lake at {root} needs repair: {problem}. Nothing was changed. Run \
         `quiver repair lake --data-dir {data_dir}` to rebuild its commit log from the \
         files on disk (`--dry-run` shows what it would do)",
        data_dir = root.parent().unwrap_or(root).display()
    )]
    NeedsRepair { root: PathBuf, problem: String },
    #[error("reading the hot store for the lake")]
    Hot(#[source] Box<crate::store::hot::HotError>),
    #[error("the retention history")]
    History(#[source] Box<crate::store::SqliteError>),
    #[error("the lake thread has stopped")]
    Stopped,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// When the lake rolls, compacts and how it writes Parquet (see the module
/// docs). Also the `[lake]` section of `quiver.toml`, a key per field, beside
/// two WAL keys that the config adds to that section (`config::LakeSection`);
/// a missing key keeps its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// Pending rows at which the lake rolls them into Parquet files.
    /// Default 1 000 000.
    pub roll_rows_max: usize,
    /// Age of the oldest pending row at which the lake rolls, a duration
    /// (`"10m"`). Default 10 min.
    #[serde(with = "humantime_serde")]
    pub roll_interval: Duration,
    /// Files of one partition at which a roll compacts that partition into
    /// one file (at least 2). Default 8.
    pub compact_trigger_files: usize,
    /// Zstandard level of the Parquet files (an invalid level falls back to
    /// the codec's default). Default 3.
    pub zstd_level: i32,
    /// Most rows in one Parquet row group. Default 1 048 576.
    pub row_group_rows_max: usize,
    /// How long compacted-away files stay on disk for queries still reading
    /// them, a duration. Default 120 s.
    #[serde(with = "humantime_serde")]
    pub retired_file_grace: Duration,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            roll_rows_max: 1_000_000,
            roll_interval: Duration::from_secs(600),
            compact_trigger_files: 8,
            zstd_level: 3,
            row_group_rows_max: 1 << 20,
            retired_file_grace: Duration::from_secs(120),
        }
    }
}

/// One committed Parquet file.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeFile {
    pub table: Table,
    pub date: NaiveDate,
    pub symbol: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub rows: u64,
    pub seq_from: u64,
    pub seq_to: u64,
}

impl LakeFile {
    /// Whether this file is of the partition (`table`, `date`, `symbol`).
    pub fn is_in(&self, table: Table, date: NaiveDate, symbol: &str) -> bool {
        self.table == table && self.date == date && self.symbol == symbol
    }
}

/// A file moved out of the lake because it could not be read or accounted for.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub original: PathBuf,
    pub moved_to: PathBuf,
    pub reason: String,
    pub at_us: i64,
}

/// What readers see: the committed files and the sequence they cover.
#[derive(Debug, Clone, Default)]
pub struct LakeSnapshot {
    pub lake_seq: u64,
    pub version: u64,
    pub files: Vec<LakeFile>,
    /// Per table, the first day retention keeps ([`retention`]).
    pub keep_from: std::collections::BTreeMap<Table, NaiveDate>,
}

/// Lake state shared with readers.
#[derive(Debug, Default)]
pub struct LakeShared {
    snapshot: RwLock<Arc<LakeSnapshot>>,
    /// The committed `lake_seq`, also read by the hot store's pruning.
    pub lake_seq: Arc<AtomicU64>,
    pub pending_rows: AtomicU64,
    pub rows_rolled: AtomicU64,
    pub rolls: AtomicU64,
    pub compactions: AtomicU64,
    pub refilled_rows: AtomicU64,
    pub errors: AtomicU64,
    /// Every row the hot store holds at or below `lake_seq` is in a committed
    /// file (the last check against the hot store found nothing missing). While
    /// false, compaction waits and the hot store prunes nothing.
    pub holes_clear: std::sync::atomic::AtomicBool,
    quarantined: Mutex<Vec<Quarantined>>,
}

impl LakeShared {
    pub fn snapshot(&self) -> Arc<LakeSnapshot> {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn publish(&self, state: &log::LakeState) {
        self.lake_seq.store(state.lake_seq, Ordering::Release);
        if let Ok(mut guard) = self.snapshot.write() {
            *guard = Arc::new(LakeSnapshot {
                lake_seq: state.lake_seq,
                version: state.version,
                files: state.files.clone(),
                keep_from: state.keep_from.clone(),
            });
        }
    }

    pub fn quarantined(&self) -> Vec<Quarantined> {
        self.quarantined
            .lock()
            .map(|q| q.clone())
            .unwrap_or_default()
    }

    pub(crate) fn add_quarantined(&self, q: Quarantined) {
        if let Ok(mut list) = self.quarantined.lock() {
            list.push(q);
        }
    }
}
