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
//! **Retention**: rows older than `retention` (7 days) before the store's
//! clock ([`crate::store::Clock`]) are deleted, but only those already in the
//! lake (`_seq <= lake_seq`), and only while the lake holds every one of them
//! (`holes_clear`). The lake's own retention ([`crate::store::lake::retention`])
//! is always longer than this window (the config refuses otherwise), so the
//! hot store holds a row of a day the lake removes only when its own pruning
//! has not run yet; retention deletes those copies first
//! ([`HotShared::delete_before`]), so `hot.*` stays within `events.*`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use duckdb::Connection;
use serde::{Deserialize, Serialize};

use crate::event::{Table, Ts};
use crate::store::seq::SeqRanges;
use crate::store::status::{Hole, HoleStatus, StoreStatus};
use crate::store::wal::{Fetched, WalCursor, WalFeed, WalRecord};

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
    #[error("the hot store has not applied those sequences yet")]
    NotYet,
}

fn duck(step: &'static str) -> impl FnOnce(duckdb::Error) -> HotError {
    move |source| HotError::Duck { step, source }
}

impl HotError {
    /// A short reason for status lines ("disk full" where DuckDB says so).
    pub fn describe(&self) -> String {
        let text = format!("{self}: {}", self.source_text());
        if text.contains("No space left") || text.contains("disk full") {
            "disk full".to_string()
        } else {
            text
        }
    }

    fn source_text(&self) -> String {
        match self {
            HotError::Open { source, .. } | HotError::Duck { source, .. } => source.to_string(),
            HotError::Batch(e) => e.to_string(),
            HotError::NotYet => String::new(),
        }
    }
}

/// How the hot store keeps rows (see the module docs). Also the `[hot]`
/// section of `quiver.toml`, a key per field; a missing key keeps its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotConfig {
    /// How long rows stay in the hot store, a duration (`"7days"`); older rows
    /// are deleted once they are in the lake. Default 7 days.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Least time between the hot thread's own DuckDB checkpoints (and
    /// retention passes), taken only when something was applied; a duration.
    /// Default 60 s.
    #[serde(with = "humantime_serde")]
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

/// State the hot thread shares with readers.
pub struct HotShared {
    /// Highest WAL sequence applied and committed.
    pub applied_seq: AtomicU64,
    /// `applied_seq`, for those who wait for it ([`HotShared::applied`]).
    applied_tx: tokio::sync::watch::Sender<u64>,
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
    /// Watches the applied sequence: readers wait on it for their writes to
    /// become visible, without polling.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// Publishes a newly committed sequence.
    fn set_applied(&self, seq: u64) {
        self.applied_seq.fetch_max(seq, Ordering::AcqRel);
        self.applied_tx.send_if_modified(|live| {
            let moved = seq > *live;
            *live = (*live).max(seq);
            moved
        });
    }

    /// A new connection for a reader thread.
    pub fn connect(&self) -> Result<Connection, HotError> {
        let guard = self.template.lock().map_err(|_| HotError::Duck {
            step: "locking the connection template",
            source: duckdb::Error::InvalidQuery,
        })?;
        guard.try_clone().map_err(duck("cloning a read connection"))
    }
}

/// Event columns of `table`, quoted, in schema order.
fn column_list(table: Table) -> String {
    table
        .schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Casts DuckDB's output onto the table schema (zone-less timestamps get UTC).
fn conform(table: Table, batches: &[RecordBatch]) -> Result<RecordBatch, HotError> {
    let schema = table.schema();
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, col)| {
                if col.data_type() == field.data_type() {
                    Ok(col.clone())
                } else {
                    arrow::compute::cast(col, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(HotError::Batch)?;
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(HotError::Batch)?);
    }
    arrow::compute::concat_batches(&schema, &out).map_err(HotError::Batch)
}

fn as_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Reading rows back by WAL sequence, for the lake and the journal when the WAL
/// no longer has them. Each call uses its own read connection.
impl HotShared {
    /// The records of sequences `from..=to` in `tables`, in sequence order (a
    /// sequence is one batch of one table).
    pub fn read_seq_range(
        &self,
        from: u64,
        to: u64,
        tables: &[Table],
    ) -> Result<Vec<WalRecord>, HotError> {
        let conn = self.connect()?;
        let mut out = Vec::new();
        for table in tables {
            let sql = format!(
                "SELECT {}, \"{SEQ_COLUMN}\" FROM \"{}\" WHERE \"{SEQ_COLUMN}\" BETWEEN ? AND ? ORDER BY \"{SEQ_COLUMN}\"",
                column_list(*table),
                table.name()
            );
            let mut stmt = conn
                .prepare(&sql)
                .map_err(duck("reading rows by sequence"))?;
            let batches: Vec<RecordBatch> = stmt
                .query_arrow([as_i64(from), as_i64(to)])
                .map_err(duck("reading rows by sequence"))?
                .collect();
            let seqs: Vec<i64> = batches
                .iter()
                .flat_map(|b| {
                    b.column(b.num_columns() - 1)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .map(|a| a.values().to_vec())
                        .unwrap_or_default()
                })
                .collect();
            let projected: Vec<RecordBatch> = batches
                .iter()
                .map(|b| b.project(&(0..b.num_columns() - 1).collect::<Vec<_>>()))
                .collect::<Result<_, _>>()
                .map_err(HotError::Batch)?;
            let all = conform(*table, &projected)?;
            let mut start = 0;
            for i in 1..=seqs.len() {
                if i == seqs.len() || seqs[i] != seqs[start] {
                    out.push(WalRecord {
                        seq: u64::try_from(seqs[start]).unwrap_or(0),
                        table: *table,
                        batch: all.slice(start, i - start),
                    });
                    start = i;
                }
            }
        }
        out.sort_by_key(|r| r.seq);
        Ok(out)
    }

    /// Every (sequence, date, symbol) of `table` at or below `upto`.
    pub fn partition_seqs(
        &self,
        table: Table,
        upto: u64,
    ) -> Result<Vec<(u64, chrono::NaiveDate, String)>, HotError> {
        let conn = self.connect()?;
        let sql = format!(
            "SELECT DISTINCT \"{SEQ_COLUMN}\", CAST(\"ts\" AS DATE) - DATE '1970-01-01', \"symbol\" FROM \"{}\" WHERE \"{SEQ_COLUMN}\" <= ?",
            table.name()
        );
        let mut stmt = conn
            .prepare(&sql)
            .map_err(duck("listing partitions by sequence"))?;
        let rows = stmt
            .query_map([as_i64(upto)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(duck("listing partitions by sequence"))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, day, symbol) = row.map_err(duck("listing partitions by sequence"))?;
            out.push((
                u64::try_from(seq).unwrap_or(0),
                crate::store::lake::partition::date_of_day(day),
                symbol,
            ));
        }
        Ok(out)
    }

    /// The rows of one partition of `table` with sequences `from..=to`.
    pub fn read_partition(
        &self,
        table: Table,
        date: chrono::NaiveDate,
        symbol: &str,
        from: u64,
        to: u64,
    ) -> Result<RecordBatch, HotError> {
        let conn = self.connect()?;
        let sql = format!(
            "SELECT {} FROM \"{}\" WHERE \"{SEQ_COLUMN}\" BETWEEN ? AND ? AND \"symbol\" = ? \
             AND CAST(\"ts\" AS DATE) - DATE '1970-01-01' = ?",
            column_list(table),
            table.name()
        );
        let day = i64::from(crate::store::lake::partition::day_of_date(date));
        let mut stmt = conn
            .prepare(&sql)
            .map_err(duck("reading a partition back"))?;
        let batches: Vec<RecordBatch> = stmt
            .query_arrow(duckdb::params![as_i64(from), as_i64(to), symbol, day])
            .map_err(duck("reading a partition back"))?
            .collect();
        conform(table, &batches)
    }

    /// The newest `ts` of `table` in the hot store (µs), if it holds a row.
    pub fn ts_max(&self, table: Table) -> Result<Option<i64>, HotError> {
        let conn = self.connect()?;
        let sql = format!("SELECT epoch_us(max(\"ts\")) FROM \"{}\"", table.name());
        conn.query_row(&sql, [], |r| r.get::<_, Option<i64>>(0))
            .map_err(duck("reading the newest timestamp"))
    }

    /// Rows of `table` older than `before_us` at or below sequence `upto`:
    /// what the next pruning of the window deletes.
    pub fn rows_before(&self, table: Table, before_us: i64, upto: u64) -> Result<u64, HotError> {
        let conn = self.connect()?;
        let sql = format!(
            "SELECT count(*) FROM \"{}\" WHERE ts < make_timestamp(?) AND \"{SEQ_COLUMN}\" <= ?",
            table.name()
        );
        let n: i64 = conn
            .query_row(&sql, [before_us, as_i64(upto)], |r| r.get(0))
            .map_err(duck("counting rows past the window"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes the rows of `table` older than `before_us` at or below
    /// sequence `upto`, on a connection of its own (DuckDB lets connections
    /// to one database write side by side; these rows are never the ones the
    /// hot thread appends). For lake retention, which drops the hot store's
    /// copies of a day before the commit that removes the day from the lake.
    pub fn delete_before(&self, table: Table, before_us: i64, upto: u64) -> Result<u64, HotError> {
        let conn = self.connect()?;
        let sql = format!(
            "DELETE FROM \"{}\" WHERE ts < make_timestamp(?) AND \"{SEQ_COLUMN}\" <= ?",
            table.name()
        );
        let n = conn
            .execute(&sql, [before_us, as_i64(upto)])
            .map_err(duck("deleting rows past the lake's retention"))?;
        Ok(n as u64)
    }

    /// Every sequence above `after` the hot store holds.
    pub fn seqs_above(&self, after: u64) -> Result<SeqRanges, HotError> {
        let conn = self.connect()?;
        let mut set = SeqRanges::new();
        for table in Table::ALL {
            let sql = format!(
                "SELECT DISTINCT \"{SEQ_COLUMN}\" FROM \"{}\" WHERE \"{SEQ_COLUMN}\" > ? ORDER BY 1",
                table.name()
            );
            let mut stmt = conn.prepare(&sql).map_err(duck("listing sequences"))?;
            let rows = stmt
                .query_map([as_i64(after)], |r| r.get::<_, i64>(0))
                .map_err(duck("listing sequences"))?;
            for seq in rows {
                let seq = u64::try_from(seq.map_err(duck("listing sequences"))?).unwrap_or(0);
                set.insert(seq, seq);
            }
        }
        Ok(set)
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
    let applied = u64::try_from(applied).unwrap_or(0);
    let shared = Arc::new(HotShared {
        applied_seq: AtomicU64::new(applied),
        applied_tx: tokio::sync::watch::Sender::new(applied),
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

/// The oldest `ts` the hot window keeps at `now`: rows older than this go
/// once they are in the lake. Measured from the store's clock, not from the
/// newest event as the lake's retention is: the window only drops copies the
/// lake already holds, so a future-dated row can cost nothing here, and a
/// window that followed an idle bot's last event would mean a different span
/// on each table.
pub fn window_cutoff(now: Ts, retention: Duration) -> Ts {
    let retention_us = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    Ts(now.0.saturating_sub(retention_us))
}

/// The hot thread: applies records from the WAL feed, checkpoints and prunes.
pub struct HotWriter {
    pub conn: Connection,
    pub shared: Arc<HotShared>,
    pub config: HotConfig,
    /// The lake: rows at or below its committed sequence may be pruned, while
    /// it holds every one of them (`holes_clear`).
    pub lake: Arc<crate::store::LakeShared>,
    pub status: Arc<StoreStatus>,
    /// What "now" is for the window (the store's clock).
    pub clock: crate::store::Clock,
}

/// Most records applied in one transaction.
const GROUP_MAX: usize = 512;
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Attempts at one group once the store is closing, before its rows are left
/// to the WAL (the next start applies them).
const CLOSING_ATTEMPTS_MAX: u32 = 5;

impl HotWriter {
    pub fn run(self, mut cursor: WalCursor) {
        let mut last_maintenance = Instant::now();
        let mut dirty = false;
        loop {
            match cursor.fetch(GROUP_MAX, Duration::from_millis(200)) {
                Ok(Fetched::Records(group)) => {
                    if !self.apply_with_retry(&group, cursor.feed()) {
                        return;
                    }
                    dirty = true;
                }
                Ok(Fetched::Gap { from, to }) => self.gap(from, to, cursor.feed()),
                Ok(Fetched::Idle) => {}
                Ok(Fetched::Closed) => {
                    if dirty && let Err(e) = self.maintain() {
                        tracing::warn!(error = %e, "hot store maintenance failed");
                    }
                    return;
                }
                Err(e) => {
                    self.status
                        .hot
                        .stalled("hot store", &format!("reading the WAL: {e}"));
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            if dirty && last_maintenance.elapsed() >= self.config.checkpoint_interval {
                last_maintenance = Instant::now();
                dirty = false;
                if let Err(e) = self.maintain() {
                    tracing::warn!(error = %e, "hot store maintenance failed");
                }
            }
        }
    }

    /// Applies a group, retrying with backoff until it is applied: skipping it
    /// would leave the hot store and the lake disagreeing about what exists.
    /// Returns false if the store is closing and the group could not be
    /// applied (its rows stay in the WAL for the next start).
    fn apply_with_retry(&self, group: &[WalRecord], feed: &WalFeed) -> bool {
        let mut backoff = Duration::from_millis(50);
        let mut attempts = 0u32;
        loop {
            match self.apply(group) {
                Ok(()) => {
                    self.status.hot.ok("hot store");
                    return true;
                }
                Err(e) => {
                    attempts += 1;
                    self.shared.apply_errors.fetch_add(1, Ordering::Relaxed);
                    self.status.hot.stalled("hot store", &e.describe());
                    if feed.is_closed() && attempts >= CLOSING_ATTEMPTS_MAX {
                        tracing::error!(error = %e, "hot store apply failed at close; the rows stay in the WAL");
                        return false;
                    }
                    tracing::debug!(error = %e, "hot store apply failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Sequences the WAL no longer has: the hot store records them as passed
    /// (so nothing waits for them) and reports what it lacks.
    fn gap(&self, from: u64, to: u64, feed: &WalFeed) {
        let lake_seq = self.lake.lake_seq.load(Ordering::Acquire);
        for (a, b, status) in [
            (from, to.min(lake_seq), HoleStatus::InLake),
            (from.max(lake_seq + 1), to, HoleStatus::Lost),
        ] {
            if a <= b {
                self.status.hole(Hole {
                    component: "hot",
                    table: None,
                    seq_from: a,
                    seq_to: b,
                    rows: None,
                    status,
                    detected_at_us: Ts::now().0,
                    detail: "not in the WAL when the hot store needed them".into(),
                });
            }
        }
        let mut backoff = Duration::from_millis(50);
        let mut attempts = 0;
        while let Err(e) = self.record_applied(to) {
            attempts += 1;
            tracing::warn!(error = %e, "recording the hot store's sequence failed; retrying");
            if feed.is_closed() && attempts >= CLOSING_ATTEMPTS_MAX {
                return;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn record_applied(&self, seq: u64) -> Result<(), HotError> {
        self.conn
            .execute(
                "UPDATE _quiver_state SET value = ? WHERE key = 'applied_seq'",
                [i64::try_from(seq).unwrap_or(i64::MAX)],
            )
            .map_err(duck("recording the applied sequence"))?;
        self.shared.set_applied(seq);
        Ok(())
    }

    fn apply(&self, group: &[WalRecord]) -> Result<(), HotError> {
        let already = self.shared.applied_seq.load(Ordering::Acquire);
        let todo: Vec<&WalRecord> = group.iter().filter(|a| a.seq > already).collect();
        let Some(max_seq) = todo.iter().map(|a| a.seq).max() else {
            return Ok(());
        };
        self.conn
            .execute_batch("BEGIN TRANSACTION")
            .map_err(duck("beginning an apply"))?;
        let result = (|| {
            let mut rows = 0u64;
            // One append per table: an appender costs more than its rows.
            let mut by_table: std::collections::BTreeMap<Table, Vec<RecordBatch>> =
                std::collections::BTreeMap::new();
            for a in &todo {
                by_table
                    .entry(a.table)
                    .or_default()
                    .push(for_append(a.seq, &a.batch)?);
            }
            for (table, batches) in by_table {
                let Some(first) = batches.first() else {
                    continue;
                };
                let batch = arrow::compute::concat_batches(&first.schema(), &batches)
                    .map_err(HotError::Batch)?;
                rows += batch.num_rows() as u64;
                let mut appender = self
                    .conn
                    .appender(table.name())
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
                self.shared.set_applied(max_seq);
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
        let cutoff = window_cutoff(self.clock.now(), self.config.retention).0;
        let lake_seq =
            i64::try_from(self.lake.lake_seq.load(Ordering::Acquire)).unwrap_or(i64::MAX);
        // The hot store may be the only copy of rows the lake lost: keep
        // everything until the lake has been checked whole.
        let prunable = self.lake.holes_clear.load(Ordering::Acquire);
        for table in Table::ALL.iter().filter(|_| prunable) {
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
