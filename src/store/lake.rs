//! The Parquet lake: `<data>/lake/<table>/date=YYYY-MM-DD/symbol=SYM/part-<from>-<to>.parquet`,
//! the system of record, readable as-is by any engine with hive partitioning.
//!
//! # When rows move to the lake (the roll rule)
//!
//! The lake thread receives every durable batch from the writer and keeps it in
//! memory (it is also in the WAL). It *rolls* them into Parquet when either
//! - the pending rows reach `roll_rows_max` (default 1,000,000), or
//! - the oldest pending batch is `roll_interval` old (default 10 minutes), or
//! - the store shuts down cleanly.
//!
//! A roll writes one file per (table, date, symbol) holding that partition's rows
//! of WAL sequences `from..=to`, sorted by `ts`, each file written atomically
//! ([`super::fsio::write_atomic`]). It then commits by writing `lake/_state.json`
//! with `lake_seq = to`. A file whose `to` is above the committed `lake_seq` is
//! an unfinished roll: recovery deletes it and the rows come back from the WAL.
//!
//! # Compaction
//!
//! Compaction merges a partition's files into one `part-<min from>-<max to>`
//! file and publishes a snapshot without the inputs. The inputs are *covered* by
//! the output's range: recovery drops covered files, so no row is ever counted
//! twice by Quiver. They stay on disk for `retired_file_grace` (default 2
//! minutes) so queries planned on the previous snapshot can still read them,
//! then are deleted (and at clean shutdown). An external reader globbing the lake
//! during that window sees the merged rows twice; `system.lake_files` always
//! lists exactly the live files. A partition is compacted automatically once it
//! holds `compact_trigger_files` files, and on demand by `quiver compact`.
//!
//! # Readers
//!
//! Quiver's query engine reads the lake only through a published
//! [`LakeSnapshot`]: the committed files and `lake_seq`. Rows with a higher
//! sequence are served from the hot store, so each event is seen exactly once.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::fsio::{self, TMP_SUFFIX};
use crate::event::{SYMBOL_COLUMN, Table, is_valid_symbol};

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
        source: parquet::errors::ParquetError,
    },
    #[error("preparing rows for the lake")]
    Arrow(#[source] arrow::error::ArrowError),
    #[error("reading the lake state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("the lake thread has stopped")]
    Stopped,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct LakeConfig {
    pub roll_rows_max: usize,
    pub roll_interval: Duration,
    pub compact_trigger_files: usize,
    pub zstd_level: i32,
    pub row_group_rows_max: usize,
    /// How long compacted-away files stay on disk for queries still reading them.
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

/// A file moved out of the lake because it could not be read.
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
    pub files: Vec<LakeFile>,
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
    pub errors: AtomicU64,
    quarantined: Mutex<Vec<Quarantined>>,
}

impl LakeShared {
    pub fn snapshot(&self) -> Arc<LakeSnapshot> {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn publish(&self, snapshot: LakeSnapshot) {
        self.lake_seq.store(snapshot.lake_seq, Ordering::Release);
        if let Ok(mut guard) = self.snapshot.write() {
            *guard = Arc::new(snapshot);
        }
    }

    pub fn quarantined(&self) -> Vec<Quarantined> {
        self.quarantined
            .lock()
            .map(|q| q.clone())
            .unwrap_or_default()
    }
}

/// The schema of a table's Parquet files: the table schema without `symbol`,
/// which (with `date`) lives in the path.
pub fn file_schema(table: Table) -> SchemaRef {
    let schema = table.schema();
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != SYMBOL_COLUMN)
        .map(|(_, f)| f.clone())
        .collect();
    Arc::new(Schema::new(fields))
}

fn writer_properties(config: &LakeConfig) -> WriterProperties {
    let level = ZstdLevel::try_new(config.zstd_level).unwrap_or_default();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(config.row_group_rows_max))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        // Files are sorted by ts (column 1 of the file schema).
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 1,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by(format!("quiver {}", env!("CARGO_PKG_VERSION")))
        .build()
}

fn state_path(root: &Path) -> PathBuf {
    root.join("_state.json")
}

fn partition_dir(root: &Path, table: Table, date: NaiveDate, symbol: &str) -> PathBuf {
    root.join(table.name())
        .join(format!("date={}", date.format("%Y-%m-%d")))
        .join(format!("symbol={symbol}"))
}

fn part_name(from: u64, to: u64) -> String {
    format!("part-{from:020}-{to:020}.parquet")
}

fn parse_part_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (from, to) = rest.split_once('-')?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

fn read_lake_seq(root: &Path) -> Result<u64, LakeError> {
    let path = state_path(root);
    match fs::read(&path) {
        Ok(bytes) => {
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| LakeError::State {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            value
                .get("lake_seq")
                .and_then(|v| v.as_u64())
                .ok_or_else(|| LakeError::State {
                    path,
                    message: "no lake_seq".into(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(LakeError::Io { path, source: e }),
    }
}

fn write_lake_seq(root: &Path, lake_seq: u64) -> Result<(), LakeError> {
    let path = state_path(root);
    let body = serde_json::json!({ "lake_seq": lake_seq }).to_string();
    fsio::write_bytes_atomic(&path, body.as_bytes()).map_err(io_err(&path))
}

/// Row count from the footer, or why the file is unreadable.
fn check_footer(path: &Path) -> Result<u64, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
    Ok(u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0))
}

/// Opens the lake: sweeps temp files and unfinished rolls, drops files covered by
/// a compaction, quarantines unreadable files, and publishes the first snapshot.
pub fn open(root: &Path, quarantine_root: &Path) -> Result<Arc<LakeShared>, LakeError> {
    fs::create_dir_all(root).map_err(io_err(root))?;
    let lake_seq = read_lake_seq(root)?;
    let shared = Arc::new(LakeShared::default());
    let mut files = Vec::new();
    for table in Table::ALL {
        let table_dir = root.join(table.name());
        for date_dir in read_subdirs(&table_dir)? {
            let Some(date) = dir_value(&date_dir, "date=")
                .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
            else {
                continue;
            };
            for symbol_dir in read_subdirs(&date_dir)? {
                let Some(symbol) = dir_value(&symbol_dir, "symbol=").filter(|s| is_valid_symbol(s))
                else {
                    continue;
                };
                let mut partition = Vec::new();
                for entry in fs::read_dir(&symbol_dir).map_err(io_err(&symbol_dir))? {
                    let path = entry.map_err(io_err(&symbol_dir))?.path();
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if name.ends_with(TMP_SUFFIX) {
                        tracing::info!(file = %path.display(), "removing an orphan temp file");
                        fs::remove_file(&path).map_err(io_err(&path))?;
                        continue;
                    }
                    let Some((from, to)) = parse_part_name(&name) else {
                        continue;
                    };
                    if to > lake_seq {
                        tracing::info!(file = %path.display(), "removing a file of an unfinished roll");
                        fs::remove_file(&path).map_err(io_err(&path))?;
                        continue;
                    }
                    partition.push(LakeFile {
                        table: *table,
                        date,
                        symbol: symbol.clone(),
                        bytes: 0,
                        rows: 0,
                        path,
                        seq_from: from,
                        seq_to: to,
                    });
                }
                for file in drop_covered(partition) {
                    let checked = check_footer(&file.path).and_then(|rows| {
                        let bytes = fs::metadata(&file.path).map_err(|e| e.to_string())?.len();
                        Ok((rows, bytes))
                    });
                    match checked {
                        Ok((rows, bytes)) => files.push(LakeFile {
                            bytes,
                            rows,
                            ..file
                        }),
                        Err(reason) => {
                            quarantine(root, quarantine_root, &shared, &file.path, reason)?
                        }
                    }
                }
                fsio::sync_dir(&symbol_dir).map_err(io_err(&symbol_dir))?;
            }
        }
    }
    shared.publish(LakeSnapshot { lake_seq, files });
    Ok(shared)
}

/// Files of one partition minus those whose seq range lies inside another's
/// (inputs of a compaction that finished writing its output); the covered files
/// are deleted.
fn drop_covered(mut files: Vec<LakeFile>) -> Vec<LakeFile> {
    files.sort_by_key(|f| (f.seq_from, std::cmp::Reverse(f.seq_to)));
    let mut kept: Vec<LakeFile> = Vec::with_capacity(files.len());
    for file in files {
        let covered = kept
            .iter()
            .any(|k| k.seq_from <= file.seq_from && file.seq_to <= k.seq_to);
        if covered {
            tracing::info!(file = %file.path.display(), "removing a file already merged by compaction");
            if let Err(e) = fs::remove_file(&file.path) {
                tracing::warn!(error = %e, file = %file.path.display(), "could not remove a merged file");
            }
        } else {
            kept.push(file);
        }
    }
    kept
}

fn quarantine(
    root: &Path,
    quarantine_root: &Path,
    shared: &LakeShared,
    path: &Path,
    reason: String,
) -> Result<(), LakeError> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let target = quarantine_root.join(relative);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    fs::rename(path, &target).map_err(io_err(path))?;
    tracing::error!(file = %path.display(), moved_to = %target.display(), %reason, "quarantined an unreadable Parquet file");
    if let Ok(mut q) = shared.quarantined.lock() {
        q.push(Quarantined {
            original: path.to_path_buf(),
            moved_to: target,
            reason,
            at_us: crate::event::Ts::now().0,
        });
    }
    Ok(())
}

fn read_subdirs(dir: &Path) -> Result<Vec<PathBuf>, LakeError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map_err(io_err(dir))?.is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn dir_value(dir: &Path, prefix: &str) -> Option<String> {
    dir.file_name()?
        .to_str()?
        .strip_prefix(prefix)
        .map(str::to_owned)
}

/// Messages to the lake thread.
pub enum LakeMsg {
    Batch {
        seq: u64,
        table: Table,
        batch: RecordBatch,
    },
    /// Merge every partition with at least `min_files` files; answer with the
    /// number of partitions compacted.
    Compact {
        min_files: usize,
        reply: SyncSender<Result<usize, LakeError>>,
    },
    /// Roll everything pending now.
    Roll {
        reply: SyncSender<Result<(), LakeError>>,
    },
}

/// The lake thread.
pub struct LakeWriter {
    pub root: PathBuf,
    pub config: LakeConfig,
    pub shared: Arc<LakeShared>,
    pending: BTreeMap<Table, Vec<RecordBatch>>,
    pending_rows: usize,
    pending_max_seq: u64,
    pending_since: Option<Instant>,
    retry_at: Option<Instant>,
    /// Compaction inputs waiting out the grace period: (retired at, path).
    retired: Vec<(Instant, PathBuf)>,
}

impl LakeWriter {
    pub fn new(root: PathBuf, config: LakeConfig, shared: Arc<LakeShared>) -> Self {
        Self {
            root,
            config,
            shared,
            pending: BTreeMap::new(),
            pending_rows: 0,
            pending_max_seq: 0,
            pending_since: None,
            retry_at: None,
            retired: Vec::new(),
        }
    }

    /// Deletes retired files whose grace period is over (all of them if `all`).
    fn delete_retired(&mut self, all: bool) {
        let grace = self.config.retired_file_grace;
        self.retired.retain(|(at, path)| {
            if !all && at.elapsed() < grace {
                return true;
            }
            if let Err(e) = fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, file = %path.display(), "could not delete a compacted file");
            }
            false
        });
    }

    pub fn run(mut self, rx: Receiver<LakeMsg>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(LakeMsg::Batch { seq, table, batch }) => self.add(seq, table, batch),
                Ok(LakeMsg::Compact { min_files, reply }) => {
                    let _ = reply.send(self.compact(min_files, None));
                }
                Ok(LakeMsg::Roll { reply }) => {
                    let _ = reply.send(self.roll());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if let Err(e) = self.roll() {
                        tracing::error!(error = %e, "final lake roll failed; rows stay in the WAL");
                    }
                    self.delete_retired(true);
                    return;
                }
            }
            if !self.retired.is_empty() {
                self.delete_retired(false);
            }
            let due = self.pending_rows >= self.config.roll_rows_max
                || self
                    .pending_since
                    .is_some_and(|t| t.elapsed() >= self.config.roll_interval);
            let may_retry = self.retry_at.is_none_or(|t| Instant::now() >= t);
            if due && may_retry {
                match self.roll() {
                    Ok(()) => self.retry_at = None,
                    Err(e) => {
                        self.shared.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "lake roll failed; retrying in 5 s");
                        self.retry_at = Some(Instant::now() + Duration::from_secs(5));
                    }
                }
            }
        }
    }

    fn add(&mut self, seq: u64, table: Table, batch: RecordBatch) {
        if seq <= self.shared.lake_seq.load(Ordering::Acquire) || batch.num_rows() == 0 {
            return;
        }
        self.pending_rows += batch.num_rows();
        self.pending_max_seq = self.pending_max_seq.max(seq);
        self.pending_since.get_or_insert_with(Instant::now);
        self.pending.entry(table).or_default().push(batch);
        self.shared
            .pending_rows
            .store(self.pending_rows as u64, Ordering::Relaxed);
    }

    /// Writes everything pending into the lake and commits it.
    pub fn roll(&mut self) -> Result<(), LakeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let before = self.shared.snapshot();
        let from = before.lake_seq + 1;
        let to = self.pending_max_seq;
        let props = writer_properties(&self.config);
        let mut written: Vec<LakeFile> = Vec::new();
        let result = (|| {
            for (table, batches) in &self.pending {
                let schema = table.schema();
                let all = concat_batches(&schema, batches).map_err(LakeError::Arrow)?;
                for (date, symbol, rows) in split_partitions(&all)? {
                    let dir = partition_dir(&self.root, *table, date, &symbol);
                    let path = dir.join(part_name(from, to));
                    let rows_n = rows.num_rows() as u64;
                    let file_rows = rows
                        .project(&file_columns(&rows))
                        .map_err(LakeError::Arrow)?;
                    let bytes = write_parquet(&path, &[file_rows], &file_schema(*table), &props)?;
                    written.push(LakeFile {
                        table: *table,
                        date,
                        symbol,
                        path,
                        bytes,
                        rows: rows_n,
                        seq_from: from,
                        seq_to: to,
                    });
                }
            }
            write_lake_seq(&self.root, to)
        })();
        if let Err(e) = result {
            for file in &written {
                let _ = fs::remove_file(&file.path);
            }
            return Err(e);
        }
        let rows: u64 = written.iter().map(|f| f.rows).sum();
        let touched: Vec<(Table, NaiveDate, String)> = written
            .iter()
            .map(|f| (f.table, f.date, f.symbol.clone()))
            .collect();
        let mut files = before.files.clone();
        files.extend(written);
        self.shared.publish(LakeSnapshot {
            lake_seq: to,
            files,
        });
        self.pending.clear();
        self.pending_rows = 0;
        self.pending_since = None;
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
    /// if given) into one file. Returns the number of partitions merged.
    pub fn compact(
        &mut self,
        min_files: usize,
        only: Option<&[(Table, NaiveDate, String)]>,
    ) -> Result<usize, LakeError> {
        let min_files = min_files.max(2);
        let snapshot = self.shared.snapshot();
        let mut groups: BTreeMap<(Table, NaiveDate, String), Vec<LakeFile>> = BTreeMap::new();
        for file in &snapshot.files {
            groups
                .entry((file.table, file.date, file.symbol.clone()))
                .or_default()
                .push(file.clone());
        }
        let props = writer_properties(&self.config);
        let mut merged = 0;
        let mut files = snapshot.files.clone();
        for (key, mut inputs) in groups {
            if inputs.len() < min_files || only.is_some_and(|o| !o.contains(&key)) {
                continue;
            }
            inputs.sort_by_key(|f| f.seq_from);
            let (table, date, symbol) = key;
            let from = inputs.iter().map(|f| f.seq_from).min().unwrap_or(0);
            let to = inputs.iter().map(|f| f.seq_to).max().unwrap_or(0);
            let dir = partition_dir(&self.root, table, date, &symbol);
            let path = dir.join(part_name(from, to));
            let schema = file_schema(table);
            let bytes = write_merged(&path, &inputs, &schema, &props)?;
            // The output is durable and the inputs are covered by its range:
            // retire them (readers of older snapshots may still be scanning them).
            let now = Instant::now();
            self.retired
                .extend(inputs.iter().map(|input| (now, input.path.clone())));
            let rows = inputs.iter().map(|f| f.rows).sum();
            files.retain(|f| !inputs.iter().any(|i| i.path == f.path));
            files.push(LakeFile {
                table,
                date,
                symbol,
                path,
                bytes,
                rows,
                seq_from: from,
                seq_to: to,
            });
            merged += 1;
            self.shared.compactions.fetch_add(1, Ordering::Relaxed);
        }
        if merged > 0 {
            self.shared.publish(LakeSnapshot {
                lake_seq: snapshot.lake_seq,
                files,
            });
        }
        Ok(merged)
    }
}

/// Indices of the file columns (all but `symbol`).
fn file_columns(batch: &RecordBatch) -> Vec<usize> {
    (0..batch.num_columns())
        .filter(|i| *i != SYMBOL_COLUMN)
        .collect()
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Sorts a table batch by (symbol, ts) and splits it into (date, symbol) runs.
fn split_partitions(
    batch: &RecordBatch,
) -> Result<Vec<(NaiveDate, String, RecordBatch)>, LakeError> {
    let sort = [
        SortColumn {
            values: batch.column(SYMBOL_COLUMN).clone(),
            options: None,
        },
        SortColumn {
            values: batch.column(1).clone(),
            options: None,
        },
    ];
    let indices = lexsort_to_indices(&sort, None).map_err(LakeError::Arrow)?;
    let sorted = take_record_batch(batch, &indices).map_err(LakeError::Arrow)?;
    let symbols = as_strings(sorted.column(SYMBOL_COLUMN))?;
    let ts = sorted
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| {
            LakeError::Arrow(arrow::error::ArrowError::SchemaError(
                "ts is not a microsecond timestamp".into(),
            ))
        })?;
    let day = |i: usize| ts.value(i).div_euclid(MICROS_PER_DAY);
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=sorted.num_rows() {
        let boundary = i == sorted.num_rows()
            || symbols.value(i) != symbols.value(start)
            || day(i) != day(start);
        if boundary {
            let days = i32::try_from(day(start)).unwrap_or(0);
            let date = NaiveDate::from_num_days_from_ce_opt(days + 719_163).unwrap_or_default();
            out.push((
                date,
                symbols.value(start).to_owned(),
                sorted.slice(start, i - start),
            ));
            start = i;
        }
    }
    Ok(out)
}

fn as_strings(array: &ArrayRef) -> Result<&StringArray, LakeError> {
    array.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
        LakeError::Arrow(arrow::error::ArrowError::SchemaError(
            "symbol is not Utf8".into(),
        ))
    })
}

fn write_parquet(
    path: &Path,
    batches: &[RecordBatch],
    schema: &SchemaRef,
    props: &WriterProperties,
) -> Result<u64, LakeError> {
    let parquet_err = |source| LakeError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    fsio::write_atomic(path, |file| {
        let mut writer = ArrowWriter::try_new(&mut *file, schema.clone(), Some(props.clone()))
            .map_err(std::io::Error::other)?;
        for batch in batches {
            writer.write(batch).map_err(std::io::Error::other)?;
        }
        writer.close().map_err(std::io::Error::other)?;
        file.metadata().map(|m| m.len())
    })
    .map_err(|e| match e.downcast::<parquet::errors::ParquetError>() {
        Ok(pe) => parquet_err(pe),
        Err(e) => LakeError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

/// Streams the inputs (oldest first) into one file, adapting older files to the
/// current schema (missing nullable columns become NULL).
fn write_merged(
    path: &Path,
    inputs: &[LakeFile],
    schema: &SchemaRef,
    props: &WriterProperties,
) -> Result<u64, LakeError> {
    fsio::write_atomic(path, |file| {
        let mut writer = ArrowWriter::try_new(&mut *file, schema.clone(), Some(props.clone()))
            .map_err(std::io::Error::other)?;
        for input in inputs {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&input.path)?)
                .map_err(std::io::Error::other)?
                .with_batch_size(64 * 1024)
                .build()
                .map_err(std::io::Error::other)?;
            for batch in reader {
                let batch = batch.map_err(std::io::Error::other)?;
                let batch = adapt(&batch, schema).map_err(std::io::Error::other)?;
                writer.write(&batch).map_err(std::io::Error::other)?;
            }
        }
        writer.close().map_err(std::io::Error::other)?;
        file.metadata().map(|m| m.len())
    })
    .map_err(io_err(path))
}

/// Maps a batch onto `schema` by column name; missing columns become NULL.
fn adapt(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(col) if col.data_type() == field.data_type() => Ok(col.clone()),
            Some(col) => arrow::compute::cast(col, field.data_type()),
            None => Ok(arrow::array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip() {
        assert_eq!(parse_part_name(&part_name(3, 17)), Some((3, 17)));
        assert_eq!(parse_part_name("part-1.parquet"), None);
        assert_eq!(parse_part_name("x.parquet"), None);
    }

    #[test]
    fn covered_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |from, to| {
            let path = dir.path().join(part_name(from, to));
            fs::write(&path, b"x").unwrap();
            LakeFile {
                table: Table::Signal,
                date: NaiveDate::default(),
                symbol: "A".into(),
                path,
                bytes: 0,
                rows: 0,
                seq_from: from,
                seq_to: to,
            }
        };
        let kept = drop_covered(vec![mk(1, 5), mk(1, 9), mk(6, 9), mk(10, 12)]);
        let ranges: Vec<_> = kept.iter().map(|f| (f.seq_from, f.seq_to)).collect();
        assert_eq!(ranges, vec![(1, 9), (10, 12)]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
