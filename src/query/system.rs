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

/// Every system table: (name, description, schema, producer).
pub fn tables(sources: &SystemSources) -> Vec<(&'static str, SystemTable)> {
    let u = |n: &str| Field::new(n, DataType::UInt64, false);
    let defs: Vec<(&'static str, Vec<Field>, Producer)> = vec![
        (
            "queue",
            vec![
                u("queue_len"),
                u("queue_capacity"),
                Field::new("fill", DataType::Float64, false),
                u("overflow_len"),
                u("overflow_accepted"),
                u("batches_written"),
                u("rows_written"),
                u("write_errors"),
                ts_field("last_flush"),
            ],
            |s| {
                let st = s.logger_stats();
                Ok(vec![
                    u64s([st.queue_len as u64]),
                    u64s([st.queue_capacity as u64]),
                    Arc::new(Float64Array::from(vec![st.fill()])),
                    u64s([st.overflow_len as u64]),
                    u64s([st.overflow_accepted]),
                    u64s([st.batches_written]),
                    u64s([st.rows_written]),
                    u64s([st.write_errors]),
                    ts([st.last_write_us]),
                ])
            },
        ),
        (
            "drops",
            vec![
                Field::new("level", DataType::Utf8, false),
                u("accepted"),
                u("rejected_invalid"),
                u("dropped_debug_shed"),
                u("dropped_kill_switch"),
                u("dropped_queue_full"),
                u("dropped_closed"),
                u("dropped_total"),
            ],
            |s| {
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
            },
        ),
        (
            "kill_switch",
            vec![
                Field::new("tripped", DataType::Boolean, false),
                u("trips"),
                ts_field("last_tripped_at"),
                Field::new("queue_fill", DataType::Float64, false),
            ],
            |s| {
                let st = s.logger_stats();
                Ok(vec![
                    Arc::new(BooleanArray::from(vec![st.kill_switch_tripped])),
                    u64s([st.kill_switch_trips]),
                    ts([st.kill_switch_tripped_at_us]),
                    Arc::new(Float64Array::from(vec![st.fill()])),
                ])
            },
        ),
        (
            "writer",
            vec![
                u("wal_seq"),
                u("hot_seq"),
                u("lake_seq"),
                u("journal_seq"),
                u("hot_lag_batches"),
                u("lake_lag_batches"),
                u("journal_lag_batches"),
                u("hot_rows_applied"),
                u("hot_apply_errors"),
                u("lake_pending_rows"),
                u("lake_rows_rolled"),
                u("lake_rolls"),
                u("lake_compactions"),
                u("lake_refilled_rows"),
                u("lake_errors"),
                u("lake_files"),
                u("lake_version"),
                u("feed_bytes"),
                Field::new("wal_state", DataType::Utf8, false),
                Field::new("hot_state", DataType::Utf8, false),
                Field::new("lake_state", DataType::Utf8, false),
                Field::new("journal_state", DataType::Utf8, false),
                u("holes"),
            ],
            |s| {
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
            },
        ),
        (
            "lake_files",
            vec![
                Field::new("table_name", DataType::Utf8, false),
                Field::new("date", DataType::Date32, false),
                Field::new("symbol", DataType::Utf8, false),
                Field::new("path", DataType::Utf8, false),
                u("rows"),
                u("bytes"),
                u("seq_from"),
                u("seq_to"),
            ],
            |s| {
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
            },
        ),
        (
            "quarantined_files",
            vec![
                Field::new("original_path", DataType::Utf8, false),
                Field::new("quarantine_path", DataType::Utf8, false),
                Field::new("reason", DataType::Utf8, false),
                ts_field("quarantined_at"),
            ],
            |s| {
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
            },
        ),
        (
            "holes",
            vec![
                Field::new("component", DataType::Utf8, false),
                Field::new("table_name", DataType::Utf8, true),
                u("seq_from"),
                u("seq_to"),
                Field::new("rows", DataType::UInt64, true),
                Field::new("status", DataType::Utf8, false),
                ts_field("detected_at"),
                Field::new("detail", DataType::Utf8, false),
            ],
            |s| {
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
            },
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
