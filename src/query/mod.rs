//! The query engine: one DataFusion `SessionContext` with catalog `quiver`.
//!
//! | schema | tables |
//! |---|---|
//! | `events` | every event table: lake + hot store, each event exactly once, plus `date` |
//! | `hot` | the DuckDB hot store's tables as they are, with `_seq` |
//! | `system` | queue, drops, kill switch, writer, lake files, quarantined files |
//!
//! The default schema is `events`, so `SELECT count(*) FROM signals` works.
//! Every query runs under a memory limit (a `FairSpillPool`), and SQL given to
//! [`QueryEngine::sql`] is read-only: no DDL, DML or statements.

mod duck_scan;
pub mod events;
mod hot;
pub mod system;

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};

use crate::event::Table;
use crate::ingest::Logger;
use crate::store::Store;

/// Name of Quiver's catalog.
pub const CATALOG: &str = "quiver";

/// Errors carry DataFusion's innermost message only: its nested errors repeat
/// the same text at every layer, which buries what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("building the catalog: {}", .0.find_root())]
    Catalog(DataFusionError),
    #[error("planning the query: {}", .0.find_root())]
    Plan(DataFusionError),
    #[error("executing the query: {}", .0.find_root())]
    Execute(DataFusionError),
}

#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Memory all running queries may use before they spill or fail.
    pub memory_bytes_max: usize,
    pub target_partitions: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_bytes_max: 1 << 30,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// The SQL options for untrusted SQL: queries only.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The `quiver` catalog over one store.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish()
    }
}

impl QueryEngine {
    pub fn new(
        store: Arc<Store>,
        logger: Option<Logger>,
        config: &QueryConfig,
    ) -> Result<Self, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_bytes_max)))
            .build_arc()
            .map_err(QueryError::Catalog)?;
        let session = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "events")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(config.target_partitions.max(1));
        let ctx = SessionContext::new_with_config_rt(session, runtime);

        let catalog = Arc::new(MemoryCatalogProvider::new());
        let events = Arc::new(MemorySchemaProvider::new());
        let hot_schema = Arc::new(MemorySchemaProvider::new());
        for table in Table::ALL {
            events
                .register_table(
                    table.name().to_string(),
                    Arc::new(events::EventsTable::new(
                        *table,
                        store.lake.clone(),
                        store.hot.clone(),
                    )),
                )
                .map_err(QueryError::Catalog)?;
            hot_schema
                .register_table(
                    table.name().to_string(),
                    Arc::new(hot::HotTable::new(*table, store.hot.clone())),
                )
                .map_err(QueryError::Catalog)?;
        }
        let system = Arc::new(MemorySchemaProvider::new());
        let sources = system::SystemSources { logger, store };
        for (name, table) in system::tables(&sources) {
            system
                .register_table(name.to_string(), Arc::new(table))
                .map_err(QueryError::Catalog)?;
        }
        catalog
            .register_schema("events", events)
            .map_err(QueryError::Catalog)?;
        catalog
            .register_schema("hot", hot_schema)
            .map_err(QueryError::Catalog)?;
        catalog
            .register_schema("system", system)
            .map_err(QueryError::Catalog)?;
        ctx.register_catalog(CATALOG, catalog);
        Ok(Self { ctx })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans read-only SQL.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame, QueryError> {
        self.ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(QueryError::Plan)
    }

    /// Runs read-only SQL and streams the result.
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream, QueryError> {
        self.sql(sql)
            .await?
            .execute_stream()
            .await
            .map_err(QueryError::Execute)
    }

    /// Runs read-only SQL and collects the result.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        self.sql(sql)
            .await?
            .collect()
            .await
            .map_err(QueryError::Execute)
    }
}
