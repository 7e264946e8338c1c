//! `lake.<table>` on the cluster: the lake's committed files, read from its
//! commit log when the scheduler plans a query; and [`DerivedTable`], the
//! tables `metrics compute` writes into the lake.
//!
//! The client only names the table (the codec carries the name); the
//! scheduler, which has the lake's root, reads the log's checkpoint and
//! commits at planning time and plans a Parquet scan of exactly the files
//! they name, pruned on `date`, `symbol` and `ts` like `events.*`. Executors
//! then read those files by path. Files a compaction retired stay on disk for
//! `lake.retired_file_grace`, so a query planned before the compaction still
//! reads them; a query running longer than that may find one gone and fails
//! saying so (it never answers from a mix of snapshots).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

use crate::event::Table;
use crate::query::events::{ScanColumns, events_schema, lake_files_plan, select_files};
use crate::store::LakeFile;
use crate::store::fsio::StdFs;
use crate::store::lake::log::LakeLog;

/// How often the commit log is read again when a read fails: a checkpoint
/// may remove the commits it folds in between listing and reading them.
const LOG_READ_ATTEMPTS: usize = 5;

#[derive(Debug)]
pub struct LakeTable {
    table: Table,
    schema: SchemaRef,
    /// The lake's root (`<data>/lake`), absolute; `None` in a process that
    /// only plans logically (the client) and never scans.
    root: Option<PathBuf>,
}

impl LakeTable {
    pub fn new(table: Table, root: Option<PathBuf>) -> Self {
        Self {
            table,
            schema: events_schema(table),
            root,
        }
    }

    pub fn table(&self) -> Table {
        self.table
    }

    /// The files the lake's commit log names now (none for a lake that has
    /// no log yet). The log is read off the async runtime.
    async fn committed_files(&self) -> Result<Vec<LakeFile>> {
        let Some(root) = self.root.clone() else {
            return Err(DataFusionError::Plan(format!(
                "lake.{} is scanned on the cluster's scheduler; this process has no lake",
                self.table.name()
            )));
        };
        let mut last = None;
        for attempt in 0..LOG_READ_ATTEMPTS {
            let read = {
                let root = root.clone();
                tokio::task::spawn_blocking(move || LakeLog::read(&root, Arc::new(StdFs)))
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?
            };
            match read {
                Ok(None) => return Ok(Vec::new()),
                Ok(Some(log)) => return Ok(log.state().files.clone()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
        }
        let e = last.map_or_else(|| "unknown".to_string(), |e| e.to_string());
        Err(DataFusionError::Execution(format!(
            "reading the lake's commit log under {}: {e}",
            root.display()
        )))
    }
}

#[async_trait]
impl TableProvider for LakeTable {
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
        let committed = self.committed_files().await?;
        let files = select_files(self.table, &committed, filters, state)?;
        let columns = ScanColumns::of(&self.schema, projection)?;
        if files.is_empty() {
            let projected = Arc::new(self.schema.project(columns.wanted())?);
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        columns.finish(lake_files_plan(
            self.table,
            files,
            &columns.read,
            state,
            false,
        )?)
    }
}

/// `metrics.metric_values` or `metrics.alerts` as the client names it: only
/// a name and a schema. The codec carries the name; the scheduler reads the
/// table from its own lake (a listing of `<lake>/<name>/date=*/`).
#[derive(Debug)]
pub struct DerivedTable {
    name: &'static str,
    schema: SchemaRef,
}

impl DerivedTable {
    /// The derived tables there are, by name, with their schemas.
    pub fn all() -> [DerivedTable; 2] {
        use crate::metrics::values::{ALERTS, METRIC_VALUES, alerts_schema, metric_values_schema};
        [
            DerivedTable {
                name: METRIC_VALUES,
                schema: metric_values_schema(),
            },
            DerivedTable {
                name: ALERTS,
                schema: alerts_schema(),
            },
        ]
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The table over the lake at `root` (on the scheduler).
    pub fn over(&self, root: &std::path::Path) -> Result<Arc<dyn TableProvider>> {
        crate::query::definitions::lake_table(root, self.name, self.schema.clone())
    }
}

#[async_trait]
impl TableProvider for DerivedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(format!(
            "metrics.{} is scanned on the cluster's scheduler; this process has no lake",
            self.name
        )))
    }
}
