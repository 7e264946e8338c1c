//! Streaming a DuckDB query into DataFusion.
//!
//! The query runs on a blocking thread with its own cloned connection and sends
//! batches through a channel of two, so a slow consumer slows DuckDB down rather
//! than buffering the result, and dropping the stream stops the query.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

use crate::store::HotShared;

/// One DuckDB query as a DataFusion partition. The SQL is built by Quiver from
/// its own table and column names, never from user text.
#[derive(Debug)]
pub struct DuckScan {
    pub schema: SchemaRef,
    pub sql: String,
    pub hot: Arc<HotShared>,
}

impl PartitionStream for DuckScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, DataFusionError>>(2);
        let hot = self.hot.clone();
        let sql = self.sql.clone();
        let schema = self.schema.clone();
        tokio::task::spawn_blocking(move || {
            let run = || -> Result<(), DataFusionError> {
                let ext = |e: duckdb::Error| DataFusionError::External(Box::new(e));
                let conn = hot
                    .connect()
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                let mut stmt = conn.prepare(&sql).map_err(ext)?;
                for batch in stmt.query_arrow([]).map_err(ext)? {
                    let batch = conform(&batch, &schema)?;
                    if tx.blocking_send(Ok(batch)).is_err() {
                        break; // the consumer went away: stop reading
                    }
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Casts DuckDB's output onto the declared schema (zone-less timestamps get UTC).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, DataFusionError> {
    if schema.fields().is_empty() {
        // count(*) and friends: no columns, only a row count.
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &options,
        )?);
    }
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
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A plan that streams `sql` from the hot store as `schema`.
pub fn duck_exec(
    schema: SchemaRef,
    sql: String,
    hot: Arc<HotShared>,
) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
    let scan = DuckScan {
        schema: schema.clone(),
        sql,
        hot,
    };
    Ok(Arc::new(StreamingTableExec::try_new(
        schema,
        vec![Arc::new(scan)],
        None,
        Vec::new(),
        false,
        None,
    )?))
}

/// Quotes an identifier of Quiver's own (table and column names).
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
