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

    fn lake_plan(
        &self,
        files: Vec<&LakeFile>,
        columns: &[usize],
        state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partition_fields = vec![
            Arc::new(Field::new(DATE_COLUMN, DataType::Date32, false)),
            Arc::new(Field::new("symbol", DataType::Utf8, false)),
        ];
        let table_schema = TableSchema::new(lake::file_schema(self.table), partition_fields);
        // Lake files never change once written: their footers are read once
        // per process (the runtime's metadata cache), not once per query.
        let store = state
            .runtime_env()
            .object_store(ObjectStoreUrl::local_filesystem())?;
        let metadata_cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        let source = Arc::new(
            ParquetSource::new(table_schema).with_parquet_file_reader_factory(Arc::new(
                CachedParquetFileReaderFactory::new(store, metadata_cache),
            )),
        );
        let target = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); target.min(files.len()).max(1)];
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
        let exprs = columns
            .iter()
            .map(|&i| self.schema.field(i))
            .map(|f| {
                let index = scan_schema.index_of(f.name())?;
                let col: Arc<dyn PhysicalExpr> = Arc::new(Column::new(f.name(), index));
                Ok((col, f.name().clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
    }

    /// The hot rows not yet in the lake, only the projected columns: DuckDB
    /// reads and converts just those (strings such as `inputs` are costly).
    fn hot_plan(&self, lake_seq: u64, columns: &[usize]) -> Result<Arc<dyn ExecutionPlan>> {
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
        let sql = format!(
            "SELECT {} FROM {} WHERE {} > {lake_seq}",
            select.join(", "),
            quote(self.table.name()),
            quote(SEQ_COLUMN),
        );
        let schema = Arc::new(self.schema.project(columns)?);
        duck_exec(schema, sql, self.hot.clone())
    }
}

fn days_since_epoch(date: chrono::NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - 719_163
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
        let files: Vec<&LakeFile> = snapshot
            .files
            .iter()
            .filter(|f| f.table == self.table)
            .collect();
        let files = prune(files, filters, state)?;
        // Both sides read only the projected columns. A projection of no
        // columns (count(*)) still needs rows: read `ts`, then drop it.
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let wanted: &[usize] = projection.map_or(&all, |p| p.as_slice());
        let ts = [self.schema.index_of("ts")?];
        let columns: &[usize] = if wanted.is_empty() { &ts } else { wanted };
        let mut inputs = Vec::with_capacity(2);
        if !files.is_empty() {
            inputs.push(self.lake_plan(files, columns, state)?);
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
            inputs.push(self.hot_plan(snapshot.lake_seq, columns)?);
        }
        let union = UnionExec::try_new(inputs)?;
        if !wanted.is_empty() {
            return Ok(union);
        }
        Ok(Arc::new(ProjectionExec::try_new(
            Vec::<(Arc<dyn PhysicalExpr>, String)>::new(),
            union,
        )?))
    }
}
