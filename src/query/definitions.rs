//! The `metrics` and `analysis` schemas: views compiled from the definitions,
//! swapped whole when they are reloaded, plus the lake tables
//! `metrics.metric_values` and `metrics.alerts` that `metrics compute` writes.
//!
//! A reload compiles everything in a staging session whose catalog shares
//! every other schema with the live one; only when all of it compiles are the
//! two schemas' tables replaced, each in one step. A query already planned
//! keeps the views it was planned with.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::datasource::ViewTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use super::explain::{builtin_explain_gate, explain_gate_udf};
use crate::metrics::values::{ALERTS, METRIC_VALUES, alerts_schema, metric_values_schema};
use crate::metrics::{CompiledMetric, Definitions, MetricsError, compile_metrics, plan_analyses};

type Tables = HashMap<String, Arc<dyn TableProvider>>;

/// A schema whose tables are replaced all at once.
#[derive(Debug, Default)]
pub struct SwapSchema {
    tables: RwLock<Arc<Tables>>,
}

impl SwapSchema {
    fn snapshot(&self) -> Arc<Tables> {
        match self.tables.read() {
            Ok(tables) => tables.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, tables: Tables) {
        let tables = Arc::new(tables);
        match self.tables.write() {
            Ok(mut slot) => *slot = tables,
            Err(poisoned) => *poisoned.into_inner() = tables,
        }
    }
}

#[async_trait]
impl SchemaProvider for SwapSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.snapshot().keys().cloned().collect();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.snapshot().get(name).cloned())
    }

    fn table_exist(&self, name: &str) -> bool {
        self.snapshot().contains_key(name)
    }
}

/// What is live: the definitions and their compiled metrics.
#[derive(Debug, Default)]
pub struct Loaded {
    pub definitions: Definitions,
    pub metrics: Vec<CompiledMetric>,
}

/// The live definitions of one engine.
#[derive(Debug)]
pub struct DefinitionSchemas {
    pub metrics: Arc<SwapSchema>,
    pub analysis: Arc<SwapSchema>,
    /// The lake tables in `metrics`, kept across reloads.
    fixed: Tables,
    loaded: RwLock<Arc<Loaded>>,
}

pub(crate) fn lake_table(
    lake_root: &Path,
    table: &str,
    schema: arrow::datatypes::SchemaRef,
) -> Result<Arc<dyn TableProvider>> {
    let dir = crate::store::lake::partition::table_dir(lake_root, table);
    std::fs::create_dir_all(&dir).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("date".to_string(), DataType::Date32)]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

impl DefinitionSchemas {
    pub fn new(lake_root: &Path) -> Result<Self> {
        let mut fixed = Tables::new();
        fixed.insert(
            METRIC_VALUES.into(),
            lake_table(lake_root, METRIC_VALUES, metric_values_schema())?,
        );
        fixed.insert(
            ALERTS.into(),
            lake_table(lake_root, ALERTS, alerts_schema())?,
        );
        let metrics = Arc::new(SwapSchema::default());
        metrics.replace(fixed.clone());
        Ok(Self {
            metrics,
            analysis: Arc::new(SwapSchema::default()),
            fixed,
            loaded: RwLock::new(Arc::new(Loaded::default())),
        })
    }

    pub fn loaded(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Compiles `definitions` against `live`'s catalog and, if every one
    /// compiles, makes them live. On error nothing changes.
    pub fn install(
        &self,
        live: &SessionContext,
        catalog_name: &str,
        definitions: Definitions,
    ) -> Result<Arc<Loaded>, MetricsError> {
        // Planning and unparsing recurse over nested plans; a thread of its
        // own gives them room whatever thread calls this. Planning is async
        // (a table provider may do I/O to resolve), so the thread runs it on
        // a runtime of its own: this may be called from inside another
        // runtime, which cannot block on a future.
        const STACK_BYTES: usize = 32 << 20;
        let path = definitions.metrics.path.clone();
        let compile = || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    MetricsError::file(&path, format!("starting the compiler's runtime: {e}"))
                })?;
            runtime.block_on(self.install_here(live, catalog_name, definitions))
        };
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("quiver-definitions".into())
                .stack_size(STACK_BYTES)
                .spawn_scoped(scope, compile)
                .map_err(|e| {
                    MetricsError::file(&path, format!("starting the compiler thread: {e}"))
                })?
                .join()
                .map_err(|_| MetricsError::file(&path, "the compiler thread panicked".into()))?
        })
    }

    async fn install_here(
        &self,
        live: &SessionContext,
        catalog_name: &str,
        definitions: Definitions,
    ) -> Result<Arc<Loaded>, MetricsError> {
        let staging = SessionContext::new_with_config(live.copied_config());
        for udaf in live.state().aggregate_functions().values() {
            staging.register_udaf(udaf.as_ref().clone());
        }
        let explain_gate = match &definitions.gates {
            Some(gates) => explain_gate_udf(Arc::new(gates.clone())),
            None => builtin_explain_gate()
                .map_err(|e| MetricsError::file(&definitions.metrics.path, e.to_string()))?,
        };
        staging.register_udf(explain_gate.clone());
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let internal = |e: DataFusionError| {
            MetricsError::file(
                &definitions.metrics.path,
                format!("staging the catalog: {}", e.find_root()),
            )
        };
        if let Some(live_catalog) = live.catalog(catalog_name) {
            for name in live_catalog.schema_names() {
                if name == "metrics" || name == "analysis" {
                    continue;
                }
                if let Some(schema) = live_catalog.schema(&name) {
                    catalog.register_schema(&name, schema).map_err(internal)?;
                }
            }
        }
        let analysis = Arc::new(MemorySchemaProvider::new());
        let metrics = Arc::new(MemorySchemaProvider::new());
        catalog
            .register_schema("analysis", analysis.clone())
            .map_err(internal)?;
        catalog
            .register_schema("metrics", metrics.clone())
            .map_err(internal)?;
        staging.register_catalog(catalog_name, catalog);

        let mut analysis_tables = Tables::new();
        plan_analyses(&staging, &definitions.analyses, |a, plan| {
            let view: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, Some(a.sql.clone())));
            analysis.register_table(a.name.clone(), view.clone())?;
            analysis_tables.insert(a.name.clone(), view);
            Ok(())
        })
        .await?;
        let compiled = compile_metrics(
            &staging,
            &definitions.metrics.path,
            &definitions.metrics.metrics,
        )
        .await?;
        let mut metric_tables = self.fixed.clone();
        for metric in &compiled {
            let view: Arc<dyn TableProvider> = Arc::new(ViewTable::new(
                metric.plan.clone(),
                Some(metric.sql.clone()),
            ));
            metric_tables.insert(metric.def.name.to_string(), view);
        }
        live.register_udf(explain_gate);
        self.analysis.replace(analysis_tables);
        self.metrics.replace(metric_tables);
        let loaded = Arc::new(Loaded {
            definitions,
            metrics: compiled,
        });
        match self.loaded.write() {
            Ok(mut slot) => *slot = loaded.clone(),
            Err(poisoned) => *poisoned.into_inner() = loaded.clone(),
        }
        Ok(loaded)
    }
}
