//! The DuckDB hot store, `<data>/hot.duckdb`: the recent window of every event
//! table, fed from the WAL by one thread that owns the write connection.
//!
//! Each hot table is its event table's columns plus `_seq` (the WAL sequence of
//! the row's batch). Timestamps are stored as `TIMESTAMP` holding UTC, which keeps
//! DuckDB's ICU extension out of the picture; readers re-attach the `UTC` zone.
//!
//! **Apply**: every batch available at once is appended in one transaction that
//! also records the highest applied sequence in `_quiver_state`, so a restart
//! replays the WAL from exactly there.
//!
//! **Checkpoint policy**: DuckDB's automatic checkpoint (every 16 MB of its WAL)
//! cost two thirds of the append throughput in measurements (see DESIGN.md), so it
//! is raised out of the way and the hot thread checkpoints on its own schedule
//! (`checkpoint_interval`, default 60 s, only when something was applied) and on
//! close. Durability does not depend on it: the Quiver WAL is the durability point.
//! DuckDB's memory is capped at 512 MB (its default is 80% of RAM), so the
//! hot store cannot grow the process without bound between checkpoints.
//!
//! **Retention**: rows older than `retention` (7 days) are deleted, but only those
//! already in the lake (`_seq <= lake_seq`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use duckdb::Connection;

use crate::event::{Table, Ts};

/// Name of the sequence column in hot tables.
pub const SEQ_COLUMN: &str = "_seq";

#[derive(Debug, thiserror::Error)]
pub enum HotError {
    #[error("opening the hot store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: duckdb::Error,
    },
    #[error("hot store: {step}")]
    Duck {
        step: &'static str,
        #[source]
        source: duckdb::Error,
    },
    #[error("preparing a batch for the hot store")]
    Batch(#[source] arrow::error::ArrowError),
}

fn duck(step: &'static str) -> impl FnOnce(duckdb::Error) -> HotError {
    move |source| HotError::Duck { step, source }
}

#[derive(Debug, Clone)]
pub struct HotConfig {
    pub retention: Duration,
    pub checkpoint_interval: Duration,
}

impl Default for HotConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// A batch to apply.
pub struct HotApply {
    pub seq: u64,
    pub table: Table,
    pub batch: RecordBatch,
}

/// State the hot thread shares with readers.
pub struct HotShared {
    /// Highest WAL sequence applied and committed.
    pub applied_seq: AtomicU64,
    pub rows_applied: AtomicU64,
    pub apply_errors: AtomicU64,
    /// A connection to clone read connections from (DuckDB connections to one
    /// database share its MVCC state; each reader gets its own clone).
    template: Mutex<Connection>,
}

impl std::fmt::Debug for HotShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotShared")
            .field("applied_seq", &self.applied_seq)
            .finish()
    }
}

impl HotShared {
    /// A new connection for a reader thread.
    pub fn connect(&self) -> Result<Connection, HotError> {
        let guard = self.template.lock().map_err(|_| HotError::Duck {
            step: "locking the connection template",
            source: duckdb::Error::InvalidQuery,
        })?;
        guard.try_clone().map_err(duck("cloning a read connection"))
    }
}

/// The DuckDB type of an event column.
fn duck_type(dt: &DataType) -> &'static str {
    match dt {
        DataType::Utf8 => "VARCHAR",
        DataType::Float64 => "DOUBLE",
        DataType::Int64 => "BIGINT",
        DataType::Int32 => "INTEGER",
        DataType::Boolean => "BOOLEAN",
        DataType::Timestamp(_, _) => "TIMESTAMP",
        DataType::Date32 => "DATE",
        _ => "VARCHAR",
    }
}

/// Opens (creating if needed) the hot store and returns the connection and the
/// last applied sequence.
pub fn open(path: &Path) -> Result<(Connection, Arc<HotShared>), HotError> {
    let conn = Connection::open(path).map_err(|source| HotError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.execute_batch(
        "SET checkpoint_threshold = '4GB';
         SET memory_limit = '512MB';
         CREATE TABLE IF NOT EXISTS _quiver_state (key VARCHAR PRIMARY KEY, value BIGINT NOT NULL);
         INSERT OR IGNORE INTO _quiver_state VALUES ('applied_seq', 0);",
    )
    .map_err(duck("creating the state table"))?;
    for table in Table::ALL {
        ensure_table(&conn, *table)?;
    }
    let applied: i64 = conn
        .query_row(
            "SELECT value FROM _quiver_state WHERE key = 'applied_seq'",
            [],
            |r| r.get(0),
        )
        .map_err(duck("reading the applied sequence"))?;
    let template = conn.try_clone().map_err(duck("cloning the connection"))?;
    let shared = Arc::new(HotShared {
        applied_seq: AtomicU64::new(u64::try_from(applied).unwrap_or(0)),
        rows_applied: AtomicU64::new(0),
        apply_errors: AtomicU64::new(0),
        template: Mutex::new(template),
    });
    Ok((conn, shared))
}

/// Creates a table, or adds the columns a newer schema version appended.
fn ensure_table(conn: &Connection, table: Table) -> Result<(), HotError> {
    let schema = table.schema();
    let cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("\"{}\" {}", f.name(), duck_type(f.data_type())))
        .collect();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{}\" ({}, \"{SEQ_COLUMN}\" BIGINT NOT NULL)",
        table.name(),
        cols.join(", ")
    ))
    .map_err(duck("creating a hot table"))?;
    let mut stmt = conn
        .prepare("SELECT column_name FROM information_schema.columns WHERE table_name = ?")
        .map_err(duck("listing hot columns"))?;
    let existing: Vec<String> = stmt
        .query_map([table.name()], |r| r.get::<_, String>(0))
        .map_err(duck("listing hot columns"))?
        .collect::<Result<_, _>>()
        .map_err(duck("listing hot columns"))?;
    for field in schema.fields() {
        if !existing.iter().any(|c| c == field.name()) {
            conn.execute_batch(&format!(
                "ALTER TABLE \"{}\" ADD COLUMN \"{}\" {}",
                table.name(),
                field.name(),
                duck_type(field.data_type())
            ))
            .map_err(duck("adding a hot column"))?;
        }
    }
    Ok(())
}

/// The batch as appended: timestamps without zone, plus `_seq`.
fn for_append(seq: u64, batch: &RecordBatch) -> Result<RecordBatch, HotError> {
    let mut fields: Vec<Field> = Vec::with_capacity(batch.num_columns() + 1);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns() + 1);
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(unit, Some(_)) => {
                let naive = DataType::Timestamp(*unit, None);
                columns.push(arrow::compute::cast(column, &naive).map_err(HotError::Batch)?);
                fields.push(field.as_ref().clone().with_data_type(naive));
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false));
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    columns.push(Arc::new(Int64Array::from(vec![seq; batch.num_rows()])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(HotError::Batch)
}

/// The hot thread: applies batches as they come, checkpoints and prunes.
pub struct HotWriter {
    pub conn: Connection,
    pub shared: Arc<HotShared>,
    pub config: HotConfig,
    /// The lake's committed sequence: rows at or below it may be pruned.
    pub lake_seq: Arc<AtomicU64>,
}

/// Most batches applied in one transaction.
const GROUP_MAX: usize = 64;

impl HotWriter {
    pub fn run(self, rx: Receiver<HotApply>) {
        let mut last_maintenance = Instant::now();
        let mut dirty = false;
        let mut group: Vec<HotApply> = Vec::with_capacity(GROUP_MAX);
        let mut disconnected = false;
        while !disconnected {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(first) => group.push(first),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                // Retry until applied: skipping a batch would leave the hot store
                // and the lake disagreeing about what exists.
                let mut backoff = Duration::from_millis(50);
                while let Err(e) = self.apply(&group) {
                    self.shared.apply_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "hot store apply failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                group.clear();
                dirty = true;
            }
            if dirty
                && (disconnected || last_maintenance.elapsed() >= self.config.checkpoint_interval)
            {
                last_maintenance = Instant::now();
                dirty = false;
                if let Err(e) = self.maintain() {
                    tracing::warn!(error = %e, "hot store maintenance failed");
                }
            }
        }
    }

    fn apply(&self, group: &[HotApply]) -> Result<(), HotError> {
        let already = self.shared.applied_seq.load(Ordering::Acquire);
        let todo: Vec<&HotApply> = group.iter().filter(|a| a.seq > already).collect();
        let Some(max_seq) = todo.iter().map(|a| a.seq).max() else {
            return Ok(());
        };
        self.conn
            .execute_batch("BEGIN TRANSACTION")
            .map_err(duck("beginning an apply"))?;
        let result = (|| {
            let mut rows = 0u64;
            for a in &todo {
                let batch = for_append(a.seq, &a.batch)?;
                rows += batch.num_rows() as u64;
                let mut appender = self
                    .conn
                    .appender(a.table.name())
                    .map_err(duck("opening an appender"))?;
                appender
                    .append_record_batch(batch)
                    .map_err(duck("appending a batch"))?;
                appender.flush().map_err(duck("flushing an appender"))?;
            }
            self.conn
                .execute(
                    "UPDATE _quiver_state SET value = ? WHERE key = 'applied_seq'",
                    [i64::try_from(max_seq).unwrap_or(i64::MAX)],
                )
                .map_err(duck("recording the applied sequence"))?;
            self.conn
                .execute_batch("COMMIT")
                .map_err(duck("committing an apply"))?;
            Ok(rows)
        })();
        match result {
            Ok(rows) => {
                self.shared.applied_seq.store(max_seq, Ordering::Release);
                self.shared.rows_applied.fetch_add(rows, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn maintain(&self) -> Result<(), HotError> {
        let retention_us = i64::try_from(self.config.retention.as_micros()).unwrap_or(i64::MAX);
        let cutoff = Ts::now().0.saturating_sub(retention_us);
        let lake_seq = i64::try_from(self.lake_seq.load(Ordering::Acquire)).unwrap_or(i64::MAX);
        for table in Table::ALL {
            self.conn
                .execute(
                    &format!(
                        "DELETE FROM \"{}\" WHERE ts < make_timestamp(?) AND \"{SEQ_COLUMN}\" <= ?",
                        table.name()
                    ),
                    [cutoff, lake_seq],
                )
                .map_err(duck("pruning the retention window"))?;
        }
        self.conn
            .execute_batch("CHECKPOINT")
            .map_err(duck("checkpointing"))?;
        Ok(())
    }
}
