//! `system.*`: the live state of the logger and the store, computed at scan time.
//!
//! | table | one row per | what |
//! |---|---|---|
//! | `queue` | - | fill, capacity, overflow, batches and rows written, last flush |
//! | `drops` | level | accepted, rejected (invalid), dropped by reason |
//! | `kill_switch` | - | tripped, trips, when it last tripped |
//! | `writer` | - | WAL, hot, lake and journal sequences, lag, rolls, errors, and each component's state (`ok` or `stalled: <reason>`) |
//! | `lake_files` | file | table, date, symbol, rows, bytes, sequence range |
//! | `quarantined_files` | file | where it was, where it is, why |
//! | `holes` | range | WAL sequences a consumer found missing, and whether they were refilled or lost |
//! | `retention_plan` | table and day that a retention pass would remove now (one row with a null `date` for a table losing nothing) | policy, newest row, reference, cutoff, first day kept, files, rows, bytes; the hot window's cutoff and rows past it (per table, repeated on its rows) |
//!
//! `system.retention_deletions` (one row per lake file retention removed) is,
//! like `alert_deliveries`, a SQLite table (`retention.sqlite`,
//! `store::lake::deletions`) registered in [`crate::query`].
//!
//! `system.alert_deliveries` (one row per delivery attempt of an alert) is
//! not computed here: it is the outbox's SQLite table (`store::outbox`),
//! registered in [`crate::query`] like the journal's tables. `system.health`
//! and `system.definitions` are the application layer's
//! (`crate::app::health`), registered as [`LiveTable`]s.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::event::Level;
use crate::ingest::{Logger, LoggerStats};
use crate::store::Store;

/// What the system tables read from.
#[derive(Clone)]
pub struct SystemSources {
    pub logger: Option<Logger>,
    pub store: Arc<Store>,
}

impl SystemSources {
    fn logger_stats(&self) -> LoggerStats {
        self.logger.as_ref().map(Logger::stats).unwrap_or_default()
    }
}

type Producer = fn(&SystemSources) -> Result<Vec<ArrayRef>>;

/// A system table: a schema and a function that fills it from live state.
pub struct SystemTable {
    schema: SchemaRef,
    produce: Producer,
    sources: SystemSources,
}

impl std::fmt::Debug for SystemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemTable")
            .field("schema", &self.schema)
            .finish()
    }
}

fn ts_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    )
}

fn u64s(values: impl IntoIterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(values))
}

fn strs<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn ts(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

fn u64_field(name: &str) -> Field {
    Field::new(name, DataType::UInt64, false)
}

fn utf8_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

/// Every system table: (name, table).
pub fn tables(sources: &SystemSources) -> Vec<(&'static str, SystemTable)> {
    let defs: [(&'static str, Vec<Field>, Producer); 8] = [
        ("queue", queue_fields(), queue_columns),
        ("drops", drops_fields(), drops_columns),
        ("kill_switch", kill_switch_fields(), kill_switch_columns),
        ("writer", writer_fields(), writer_columns),
        ("lake_files", lake_files_fields(), lake_files_columns),
        (
            "quarantined_files",
            quarantined_files_fields(),
            quarantined_files_columns,
        ),
        ("holes", holes_fields(), holes_columns),
        (
            "retention_plan",
            retention_plan_fields(),
            retention_plan_columns,
        ),
    ];
    defs.into_iter()
        .map(|(name, fields, produce)| {
            (
                name,
                SystemTable {
                    schema: Arc::new(Schema::new(fields)),
                    produce,
                    sources: sources.clone(),
                },
            )
        })
        .collect()
}

fn queue_fields() -> Vec<Field> {
    vec![
        u64_field("queue_len"),
        u64_field("queue_capacity"),
        Field::new("fill", DataType::Float64, false),
        u64_field("overflow_len"),
        u64_field("overflow_accepted"),
        u64_field("ingest_queue_len"),
        u64_field("ingest_queue_capacity"),
        u64_field("ingest_accepted"),
        u64_field("batches_written"),
        u64_field("rows_written"),
        u64_field("write_errors"),
        ts_field("last_flush"),
    ]
}

fn queue_columns(s: &SystemSources) -> Result<Vec<ArrayRef>> {
    let st = s.logger_stats();
    Ok(vec![
        u64s([st.queue_len as u64]),
        u64s([st.queue_capacity as u64]),
        Arc::new(Float64Array::from(vec![st.fill()])),
        u64s([st.overflow_len as u64]),
        u64s([st.overflow_accepted]),
        u64s([st.ingest_queue_len as u64]),
        u64s([st.ingest_queue_capacity as u64]),
        u64s([st.ingest_accepted]),
        u64s([st.batches_written]),
        u64s([st.rows_written]),
        u64s([st.write_errors]),
        ts([st.last_write_us]),
    ])
}

fn drops_fields() -> Vec<Field> {
    vec![
        utf8_field("level"),
        u64_field("accepted"),
        u64_field("rejected_invalid"),
        u64_field("dropped_debug_shed"),
        u64_field("dropped_kill_switch"),
        u64_field("dropped_queue_full"),
        u64_field("dropped_closed"),
        u64_field("dropped_total"),
    ]
}

fn drops_columns(s: &SystemSources) -> Result<Vec<ArrayRef>> {
    let st = s.logger_stats();
    let levels = Level::ALL;
    let shed = |l: &Level| {
        if *l == Level::Debug {
            st.dropped_debug_shed
        } else {
            0
        }
    };
    Ok(vec![
        strs(levels.iter().map(|l| l.as_str())),
        u64s(levels.iter().map(|l| st.accepted.get(*l))),
        u64s(levels.iter().map(|l| st.rejected_invalid.get(*l))),
        u64s(levels.iter().map(shed)),
        u64s(levels.iter().map(|l| st.dropped_kill_switch.get(*l))),
        u64s(levels.iter().map(|l| st.dropped_queue_full.get(*l))),
        u64s(levels.iter().map(|l| st.dropped_closed.get(*l))),
        u64s(levels.iter().map(|l| st.dropped(*l))),
    ])
}

fn kill_switch_fields() -> Vec<Field> {
    vec![
        Field::new("tripped", DataType::Boolean, false),
        u64_field("trips"),
        ts_field("last_tripped_at"),
        Field::new("queue_fill", DataType::Float64, false),
    ]
}

fn kill_switch_columns(s: &SystemSources) -> Result<Vec<ArrayRef>> {
    let st = s.logger_stats();
    Ok(vec![
        Arc::new(BooleanArray::from(vec![st.kill_switch_tripped])),
        u64s([st.kill_switch_trips]),
        ts([st.kill_switch_tripped_at_us]),
        Arc::new(Float64Array::from(vec![st.fill()])),
    ])
}

fn writer_fields() -> Vec<Field> {
    vec![
        u64_field("wal_seq"),
        u64_field("hot_seq"),
        u64_field("lake_seq"),
        u64_field("journal_seq"),
        u64_field("hot_lag_batches"),
        u64_field("lake_lag_batches"),
        u64_field("journal_lag_batches"),
        u64_field("hot_rows_applied"),
        u64_field("hot_apply_errors"),
        u64_field("lake_pending_rows"),
        u64_field("lake_rows_rolled"),
        u64_field("lake_rolls"),
        u64_field("lake_compactions"),
        u64_field("lake_refilled_rows"),
        u64_field("lake_errors"),
        u64_field("lake_files"),
        u64_field("lake_version"),
        u64_field("feed_bytes"),
        utf8_field("wal_state"),
        utf8_field("hot_state"),
        utf8_field("lake_state"),
        utf8_field("journal_state"),
        u64_field("holes"),
    ]
}

fn writer_columns(s: &SystemSources) -> Result<Vec<ArrayRef>> {
    let st = s.store.stats();
    Ok(vec![
        u64s([st.wal_seq]),
        u64s([st.hot_seq]),
        u64s([st.lake_seq]),
        u64s([st.journal_seq]),
        u64s([st.wal_seq.saturating_sub(st.hot_seq)]),
        u64s([st.wal_seq.saturating_sub(st.lake_seq)]),
        u64s([st.wal_seq.saturating_sub(st.journal_seq)]),
        u64s([st.hot_rows_applied]),
        u64s([st.hot_apply_errors]),
        u64s([st.lake_pending_rows]),
        u64s([st.lake_rows_rolled]),
        u64s([st.lake_rolls]),
        u64s([st.lake_compactions]),
        u64s([st.lake_refilled_rows]),
        u64s([st.lake_errors]),
        u64s([st.lake_files]),
        u64s([st.lake_version]),
        u64s([st.feed_bytes]),
        strs([st.wal_state.as_str()]),
        strs([st.hot_state.as_str()]),
        strs([st.lake_state.as_str()]),
        strs([st.journal_state.as_str()]),
        u64s([st.holes]),
    ])
}

fn lake_files_fields() -> Vec<Field> {
    vec![
        utf8_field("table_name"),
        Field::new("date", DataType::Date32, false),
        utf8_field("symbol"),
        utf8_field("path"),
        u64_field("rows"),
        u64_field("bytes"),
        u64_field("seq_from"),
        u64_field("seq_to"),
    ]
}

fn lake_files_columns(s: &SystemSources) -> Result<Vec<ArrayRef>> {
    let snap = s.store.lake.snapshot();
    let f = &snap.files;
    let paths: Vec<String> = f
        .iter()
        .map(|x| x.path.to_string_lossy().into_owned())
        .collect();
    Ok(vec![
        strs(f.iter().map(|x| x.table.name())),
        Arc::new(Date32Array::from_iter_values(f.iter().map(|x| {
            use chrono::Datelike;
            x.date.num_days_from_ce() - 719_163
        }))),
        strs(f.iter().map(|x| x.symbol.as_str())),
        strs(paths.iter().map(String::as_str)),
        u64s(f.iter().map(|x| x.rows)),
        u64s(f.iter().map(|x| x.bytes)),
        u64s(f.iter().map(|x| x.seq_from)),
        u64s(f.iter().map(|x| x.seq_to)),
    ])
}

fn quarantined_files_fields() -> Vec<Field> {
    vec![
        utf8_field("original_path"),
        utf8_field("quarantine_path"),
        utf8_field("reason"),
        ts_field("quarantined_at"),
    ]
}

fn quarantined_files_columns(s: &SystemSources) -> Result<Vec<ArrayRef>> {
    let q = s.store.lake.quarantined();
    let orig: Vec<String> = q
        .iter()
        .map(|x| x.original.to_string_lossy().into_owned())
        .collect();
    let moved: Vec<String> = q
        .iter()
        .map(|x| x.moved_to.to_string_lossy().into_owned())
        .collect();
    Ok(vec![
        strs(orig.iter().map(String::as_str)),
        strs(moved.iter().map(String::as_str)),
        strs(q.iter().map(|x| x.reason.as_str())),
        ts(q.iter().map(|x| Some(x.at_us))),
    ])
}

fn holes_fields() -> Vec<Field> {
    vec![
        utf8_field("component"),
        Field::new("table_name", DataType::Utf8, true),
        u64_field("seq_from"),
        u64_field("seq_to"),
        Field::new("rows", DataType::UInt64, true),
        utf8_field("status"),
        ts_field("detected_at"),
        utf8_field("detail"),
    ]
}

fn holes_columns(s: &SystemSources) -> Result<Vec<ArrayRef>> {
    let h = s.store.status.holes();
    Ok(vec![
        strs(h.iter().map(|x| x.component)),
        Arc::new(StringArray::from_iter(
            h.iter().map(|x| x.table.map(|t| t.name())),
        )),
        u64s(h.iter().map(|x| x.seq_from)),
        u64s(h.iter().map(|x| x.seq_to)),
        Arc::new(UInt64Array::from_iter(h.iter().map(|x| x.rows))),
        strs(h.iter().map(|x| x.status.as_str())),
        ts(h.iter().map(|x| Some(x.detected_at_us))),
        strs(h.iter().map(|x| x.detail.as_str())),
    ])
}

/// A system table filled at each scan by a function of a layer above the
/// query engine (the health monitor's `system.health`).
pub struct LiveTable {
    schema: SchemaRef,
    produce: Box<dyn Fn() -> arrow::error::Result<RecordBatch> + Send + Sync>,
}

impl LiveTable {
    pub fn new(
        schema: SchemaRef,
        produce: impl Fn() -> arrow::error::Result<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        Self {
            schema,
            produce: Box::new(produce),
        }
    }
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTable")
            .field("schema", &self.schema)
            .finish()
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The producers read atomics and small locks, or stat a few files;
        // cheap enough to run on the planning thread.
        let batch = (self.produce)()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

fn retention_plan_fields() -> Vec<Field> {
    vec![
        utf8_field("table_name"),
        Field::new("lake_days", DataType::UInt32, true),
        ts_field("now_ts"),
        ts_field("newest_ts"),
        ts_field("reference_ts"),
        ts_field("cutoff_ts"),
        Field::new("keep_from", DataType::Date32, true),
        Field::new("date", DataType::Date32, true),
        u64_field("files"),
        u64_field("rows"),
        u64_field("bytes"),
        ts_field("hot_cutoff_ts"),
        u64_field("hot_rows_past_window"),
        u64_field("lake_version"),
        Field::new("blocked", DataType::Utf8, true),
    ]
}

/// The plan of a retention pass at scan time ([`Store::plan_retention`]):
/// it reads the newest day's footers and the hot store, on the query's
/// thread (a few small reads, like the other system tables' state).
fn retention_plan_columns(s: &SystemSources) -> Result<Vec<ArrayRef>> {
    use crate::store::lake::partition::day_of_date;
    let plan = s
        .store
        .plan_retention()
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    // One row per (table, day that goes), or one with no day.
    let rows: Vec<(
        &crate::store::lake::retention::TablePlan,
        Option<&crate::store::lake::retention::DayPlan>,
    )> = plan
        .tables
        .iter()
        .flat_map(|t| {
            if t.days.is_empty() {
                vec![(t, None)]
            } else {
                t.days.iter().map(|d| (t, Some(d))).collect()
            }
        })
        .collect();
    Ok(vec![
        strs(rows.iter().map(|(t, _)| t.table.name())),
        Arc::new(arrow::array::UInt32Array::from_iter(
            rows.iter().map(|(t, _)| t.lake_days),
        )),
        ts(rows.iter().map(|_| Some(plan.now.0))),
        ts(rows.iter().map(|(t, _)| t.newest.map(|x| x.0))),
        ts(rows.iter().map(|(t, _)| t.reference.map(|x| x.0))),
        ts(rows.iter().map(|(t, _)| t.cutoff.map(|x| x.0))),
        Arc::new(Date32Array::from_iter(
            rows.iter().map(|(t, _)| t.keep_from.map(day_of_date)),
        )),
        Arc::new(Date32Array::from_iter(
            rows.iter().map(|(_, d)| d.map(|d| day_of_date(d.date))),
        )),
        u64s(rows.iter().map(|(_, d)| d.map_or(0, |d| d.files))),
        u64s(rows.iter().map(|(_, d)| d.map_or(0, |d| d.rows))),
        u64s(rows.iter().map(|(_, d)| d.map_or(0, |d| d.bytes))),
        ts(rows.iter().map(|(t, _)| Some(t.hot_cutoff.0))),
        u64s(rows.iter().map(|(t, _)| t.hot_rows_past_window)),
        u64s(rows.iter().map(|_| plan.version)),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|_| plan.blocked.as_deref()),
        )),
    ])
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let columns = (self.produce)(&self.sources)?;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
