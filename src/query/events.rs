//! `events.<table>`: the lake and the hot store as one table, each event once.
//!
//! A scan takes one [`LakeSnapshot`](crate::store::LakeSnapshot): its committed
//! files (pruned on `date` and `symbol`) plus the hot rows with
//! `_seq > lake_seq`. Rows at or below `lake_seq` are read from the lake only,
//! rows above it from the hot store only, so a row moving between them is
//! counted once whichever side it is on when the query starts.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;

use super::duck_scan::{duck_exec, quote};
use crate::event::Table;
use crate::store::hot::SEQ_COLUMN;
use crate::store::{HotShared, LakeFile, LakeShared, lake};

/// The partition column Quiver adds to every event table.
pub const DATE_COLUMN: &str = "date";

/// The schema of `events.<table>`: the event columns, then `date`.
pub fn events_schema(table: Table) -> SchemaRef {
    let mut fields: Vec<Field> = table
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(DATE_COLUMN, DataType::Date32, false));
    Arc::new(Schema::new(fields))
}

#[derive(Debug)]
pub struct EventsTable {
    table: Table,
    schema: SchemaRef,
    lake: Arc<LakeShared>,
    hot: Arc<HotShared>,
}

impl EventsTable {
    pub fn new(table: Table, lake: Arc<LakeShared>, hot: Arc<HotShared>) -> Self {
        Self {
            table,
            schema: events_schema(table),
            lake,
            hot,
        }
    }

    /// The hot rows not yet in the lake, only the projected columns: DuckDB
    /// reads and converts just those (strings such as `inputs` are costly).
    fn hot_plan(
        &self,
        lake_seq: u64,
        columns: &[usize],
        bounds: TsBounds,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let select: Vec<String> = columns
            .iter()
            .map(|&i| {
                let name = self.schema.field(i).name();
                if name == DATE_COLUMN {
                    format!("CAST({} AS DATE) AS {}", quote("ts"), quote(DATE_COLUMN))
                } else {
                    quote(name)
                }
            })
            .collect();
        let mut sql = format!(
            "SELECT {} FROM {} WHERE {} > {lake_seq}",
            select.join(", "),
            quote(self.table.name()),
            quote(SEQ_COLUMN),
        );
        // The hot store keeps `ts` as a TIMESTAMP holding UTC microseconds.
        if let Some(lo) = bounds.lo_us {
            sql.push_str(&format!(
                " AND {} >= make_timestamp({lo}::BIGINT)",
                quote("ts")
            ));
        }
        if let Some(hi) = bounds.hi_us {
            sql.push_str(&format!(
                " AND {} <= make_timestamp({hi}::BIGINT)",
                quote("ts")
            ));
        }
        let schema = Arc::new(self.schema.project(columns)?);
        duck_exec(schema, sql, self.hot.clone())
    }
}

fn days_since_epoch(date: chrono::NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - 719_163
}

/// The range of `ts` the filters allow, inclusive, in UTC microseconds, where
/// they say it plainly (`ts >= <timestamp>`, `ts BETWEEN .. AND ..`, ...).
/// It only narrows what is read: DataFusion still applies every filter, so a
/// bound it cannot see is simply no bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TsBounds {
    lo_us: Option<i64>,
    hi_us: Option<i64>,
}

impl TsBounds {
    fn from_filters(filters: &[Expr]) -> Self {
        let mut bounds = Self::default();
        for filter in filters {
            bounds.narrow(filter);
        }
        bounds
    }

    fn narrow(&mut self, filter: &Expr) {
        use datafusion::logical_expr::{Between, BinaryExpr, Operator};
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, value) = match (is_ts(left), is_ts(right)) {
                    (true, false) => (*op, right.as_ref()),
                    (false, true) => match op.swap() {
                        Some(op) => (op, left.as_ref()),
                        None => return,
                    },
                    _ => return,
                };
                match op {
                    Operator::Gt | Operator::GtEq => self.raise_lo(micros(value, false)),
                    Operator::Lt | Operator::LtEq => self.lower_hi(micros(value, true)),
                    Operator::Eq => {
                        self.raise_lo(micros(value, false));
                        self.lower_hi(micros(value, true));
                    }
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_ts(expr) => {
                self.raise_lo(micros(low, false));
                self.lower_hi(micros(high, true));
            }
            _ => {}
        }
    }

    fn raise_lo(&mut self, us: Option<i64>) {
        if let Some(us) = us {
            self.lo_us = Some(self.lo_us.map_or(us, |lo| lo.max(us)));
        }
    }

    fn lower_hi(&mut self, us: Option<i64>) {
        if let Some(us) = us {
            self.hi_us = Some(self.hi_us.map_or(us, |hi| hi.min(us)));
        }
    }

    /// Whether a lake file of day `date` (UTC) may hold rows in range.
    fn may_hold(&self, date: chrono::NaiveDate) -> bool {
        let day_us = 86_400_000_000i64;
        let start = i64::from(days_since_epoch(date)) * day_us;
        self.lo_us.is_none_or(|lo| lo < start + day_us) && self.hi_us.is_none_or(|hi| hi >= start)
    }
}

fn is_ts(expr: &Expr) -> bool {
    matches!(expr, Expr::Column(c) if c.name == "ts")
}

/// A timestamp literal in microseconds, rounded outward (`up` for an upper
/// bound) so the range only ever widens.
fn micros(expr: &Expr, up: bool) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let scaled = |v: i64, per_us: i64| {
        if up {
            v.checked_add(per_us - 1).map(|v| v.div_euclid(per_us))
        } else {
            Some(v.div_euclid(per_us))
        }
    };
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => scaled(*v, 1_000),
        _ => None,
    }
}

/// Whether an expression uses only the partition columns.
fn is_partition_filter(expr: &Expr) -> bool {
    let cols = expr.column_refs();
    !cols.is_empty()
        && cols
            .iter()
            .all(|c| c.name == DATE_COLUMN || c.name == "symbol")
}

/// Keeps the files whose (date, symbol) satisfy every partition-only filter.
fn prune<'a>(
    files: Vec<&'a LakeFile>,
    filters: &[Expr],
    state: &dyn Session,
) -> Result<Vec<&'a LakeFile>> {
    let filters: Vec<&Expr> = filters.iter().filter(|f| is_partition_filter(f)).collect();
    if filters.is_empty() || files.is_empty() {
        return Ok(files);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(DATE_COLUMN, DataType::Date32, false),
        Field::new("symbol", DataType::Utf8, false),
    ]));
    let dates: ArrayRef = Arc::new(Date32Array::from(
        files
            .iter()
            .map(|f| days_since_epoch(f.date))
            .collect::<Vec<_>>(),
    ));
    let symbols: ArrayRef = Arc::new(StringArray::from(
        files.iter().map(|f| f.symbol.as_str()).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), vec![dates, symbols])?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let mut keep = vec![true; files.len()];
    for filter in filters {
        let physical = create_physical_expr(filter, &df_schema, state.execution_props())?;
        let result = physical.evaluate(&batch)?.into_array(batch.num_rows())?;
        let Some(mask) = result.as_any().downcast_ref::<BooleanArray>() else {
            continue;
        };
        for (i, k) in keep.iter_mut().enumerate() {
            *k &= mask.is_valid(i) && mask.value(i);
        }
    }
    Ok(files
        .into_iter()
        .zip(keep)
        .filter_map(|(f, k)| k.then_some(f))
        .collect())
}

/// The committed `files` of `table` that may hold rows matching `filters`:
/// pruned on `date` and `symbol`, and on days outside the filters' `ts` range.
pub(crate) fn select_files<'a>(
    table: Table,
    files: &'a [LakeFile],
    filters: &[Expr],
    state: &dyn Session,
) -> Result<Vec<&'a LakeFile>> {
    let files: Vec<&LakeFile> = files.iter().filter(|f| f.table == table).collect();
    let bounds = TsBounds::from_filters(filters);
    Ok(prune(files, filters, state)?
        .into_iter()
        .filter(|f| bounds.may_hold(f.date))
        .collect())
}

/// The columns a scan reads for a projection: the projected ones; for a
/// projection of none (`count(*)`), which still needs rows, `ts` alone, which
/// [`ScanColumns::finish`] then drops.
pub(crate) struct ScanColumns {
    pub read: Vec<usize>,
    none: bool,
}

impl ScanColumns {
    pub(crate) fn of(schema: &Schema, projection: Option<&Vec<usize>>) -> Result<Self> {
        let read: Vec<usize> = match projection {
            Some(p) if p.is_empty() => {
                return Ok(Self {
                    read: vec![schema.index_of("ts")?],
                    none: true,
                });
            }
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        Ok(Self { read, none: false })
    }

    /// The projected columns (none for `count(*)`).
    pub(crate) fn wanted(&self) -> &[usize] {
        if self.none { &[] } else { &self.read }
    }

    /// `plan`, which yields [`Self::read`], as the projection wants it.
    pub(crate) fn finish(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.none {
            return Ok(plan);
        }
        Ok(Arc::new(ProjectionExec::try_new(
            Vec::<(Arc<dyn PhysicalExpr>, String)>::new(),
            plan,
        )?))
    }
}

/// A scan of lake `files` of `table` (committed ones, already pruned) that
/// yields `columns` of [`events_schema`], in order. With `reader_cache` the
/// files' footers come from the runtime's metadata cache; the cluster goes
/// without (its plans cross process boundaries, the cache does not).
pub(crate) fn lake_files_plan(
    table: Table,
    files: Vec<&LakeFile>,
    columns: &[usize],
    state: &dyn Session,
    reader_cache: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    let partition_fields = vec![
        Arc::new(Field::new(DATE_COLUMN, DataType::Date32, false)),
        Arc::new(Field::new("symbol", DataType::Utf8, false)),
    ];
    let table_schema = TableSchema::new(lake::file_schema(table), partition_fields);
    let mut source = ParquetSource::new(table_schema);
    if reader_cache {
        // Lake files never change once written: their footers are read once
        // per process (the runtime's metadata cache), not once per query.
        let store = state
            .runtime_env()
            .object_store(ObjectStoreUrl::local_filesystem())?;
        let metadata_cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        source = source.with_parquet_file_reader_factory(Arc::new(
            CachedParquetFileReaderFactory::new(store, metadata_cache),
        ));
    }
    let source = Arc::new(source);
    let target = state.config().target_partitions().max(1);
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); target.min(files.len()).max(1)];
    for (i, file) in files.into_iter().enumerate() {
        let days = days_since_epoch(file.date);
        // An object-store path made from the file-system path, so that
        // percent-encoded partition values (`symbol=%62tc`) name the file
        // on disk rather than being encoded a second time.
        let location = object_store::path::Path::from_absolute_path(&file.path)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let pf = PartitionedFile::new_from_meta(object_store::ObjectMeta {
            location,
            last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            size: file.bytes,
            e_tag: None,
            version: None,
        })
        .with_partition_values(vec![
            ScalarValue::Date32(Some(days)),
            ScalarValue::Utf8(Some(file.symbol.clone())),
        ]);
        let n = groups.len();
        groups[i % n].push(pf);
    }
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
        .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
        .build();
    let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
    // File columns + [date, symbol] -> the projected columns, in order.
    let scan_schema = scan.schema();
    let schema = events_schema(table);
    let exprs = columns
        .iter()
        .map(|&i| schema.field(i))
        .map(|f| {
            let index = scan_schema.index_of(f.name())?;
            let col: Arc<dyn PhysicalExpr> = Arc::new(Column::new(f.name(), index));
            Ok((col, f.name().clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
}

#[async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Partition filters prune files; DataFusion still applies every filter.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = self.lake.snapshot();
        let files = select_files(self.table, &snapshot.files, filters, state)?;
        let bounds = TsBounds::from_filters(filters);
        // Both sides read only the projected columns.
        let columns = ScanColumns::of(&self.schema, projection)?;
        let mut inputs = Vec::with_capacity(2);
        if !files.is_empty() {
            inputs.push(lake_files_plan(
                self.table,
                files,
                &columns.read,
                state,
                true,
            )?);
        }
        // Rows newer than the lake snapshot exist only once the hot store
        // has applied past it; otherwise skip the DuckDB query (a few ms per
        // scan). A batch applied after this check is simply not yet visible:
        // it is above the snapshot's sequence, so it is in neither side.
        let hot_is_newer = self
            .hot
            .applied_seq
            .load(std::sync::atomic::Ordering::Acquire)
            > snapshot.lake_seq;
        if hot_is_newer || inputs.is_empty() {
            inputs.push(self.hot_plan(snapshot.lake_seq, &columns.read, bounds)?);
        }
        columns.finish(UnionExec::try_new(inputs)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(us: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn ts_bounds_come_from_plain_comparisons_and_only_widen() {
        let bounds = TsBounds::from_filters(&[col("ts").gt_eq(ts(10)), col("ts").lt(ts(20))]);
        assert_eq!((bounds.lo_us, bounds.hi_us), (Some(10), Some(20)));
        // Flipped sides, BETWEEN, and the tighter of two bounds.
        let bounds =
            TsBounds::from_filters(&[ts(15).lt_eq(col("ts")), col("ts").between(ts(5), ts(18))]);
        assert_eq!((bounds.lo_us, bounds.hi_us), (Some(15), Some(18)));
        // Nanoseconds round outward.
        let ns = |v| lit(ScalarValue::TimestampNanosecond(Some(v), None));
        let bounds = TsBounds::from_filters(&[col("ts").gt(ns(1_999)), col("ts").lt(ns(3_001))]);
        assert_eq!((bounds.lo_us, bounds.hi_us), (Some(1), Some(4)));
        // What it cannot read is no bound.
        let bounds = TsBounds::from_filters(&[
            col("ts").not_eq(ts(3)),
            col("symbol").eq(lit("BTC-USD")),
            col("ts").not_between(ts(1), ts(2)),
        ]);
        assert_eq!(bounds, TsBounds::default());
    }

    #[test]
    fn a_day_is_kept_when_it_may_hold_rows_in_range() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let start = i64::from(days_since_epoch(day)) * 86_400_000_000;
        let range = |lo, hi| TsBounds {
            lo_us: Some(lo),
            hi_us: Some(hi),
        };
        assert!(range(start, start).may_hold(day));
        assert!(range(start + 86_399_999_999, start + 86_400_000_000).may_hold(day));
        assert!(!range(start + 86_400_000_000, i64::MAX).may_hold(day));
        assert!(!range(0, start - 1).may_hold(day));
        assert!(TsBounds::default().may_hold(day));
    }
}
