//! The query engine: one DataFusion `SessionContext` with catalog `quiver`.
//!
//! | schema | tables |
//! |---|---|
//! | `events` | every event table: lake + hot store, each event exactly once, plus `date` |
//! | `hot` | the DuckDB hot store's tables as they are, with `_seq` |
//! | `system` | queue, drops, kill switch, writer, lake files, quarantined files, alert deliveries (alerts.sqlite) |
//! | `journal` | the trade journal (SQLite): trades, features, outcomes, shadow trades, views |
//! | `registry` | models, alias history, config changes (SQLite) |
//! | `learning` | training sessions, feature importance (SQLite); calibration and performance views over `events.predictions` |
//! | `metrics` | one view per metric of `metrics.yaml`; `metric_values` and `alerts` (lake) |
//! | `analysis` | one view per `sql/analysis/*.sql` |
//!
//! The default schema is `events`, so `SELECT count(*) FROM signals` works.
//! Every query runs under a memory limit (a `FairSpillPool`), and SQL given to
//! [`QueryEngine::sql`] is read-only: no DDL, DML or statements.

pub mod definitions;
mod duck_scan;
pub mod events;
pub mod explain;
mod hot;
mod learning;
pub mod param;
mod pool;
mod sqlite;
pub mod system;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Value, visit_expressions_mut};
use serde::{Deserialize, Serialize};

use crate::event::Table;
use crate::ingest::Logger;
use crate::store::{Layout, Store};

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
    #[error("{0}")]
    Parameters(String),
    #[error(
        "the query nests deeper than {max} levels (expressions, UNION chains, subqueries); \
         query.sql_depth_max"
    )]
    TooDeep { max: usize },
}

impl QueryError {
    /// The DataFusion error underneath, if any.
    pub fn datafusion(&self) -> Option<&DataFusionError> {
        match self {
            QueryError::Catalog(e) | QueryError::Plan(e) | QueryError::Execute(e) => {
                Some(e.find_root())
            }
            QueryError::Parameters(_) | QueryError::TooDeep { .. } => None,
        }
    }

    /// Whether the SQL was refused for writing (DDL, DML or a statement).
    pub fn is_read_only_violation(&self) -> bool {
        matches!(
            self.datafusion(),
            Some(DataFusionError::Plan(m)) if m.starts_with("DDL not supported")
                || m.starts_with("DML not supported")
                || m.starts_with("Statement not supported")
        )
    }
}

/// The query engine's resources. Also the `[query]` section of `quiver.toml`;
/// a missing key keeps its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Memory all running queries may use before they spill or fail, in
    /// bytes. Default 1 GiB.
    pub memory_bytes_max: usize,
    /// Deepest nesting a query may have: of expressions (`1 + 1 + ...` is as
    /// deep as it is long), and of UNION / INTERSECT / EXCEPT chains and
    /// subqueries. Planning recurses over that depth, and a deeper query
    /// would overflow the planner's stack and abort the process. Default 256.
    pub sql_depth_max: usize,
    /// Partitions DataFusion splits a plan into. Not a config key: it follows
    /// the machine (its available parallelism).
    #[serde(skip)]
    pub target_partitions: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_bytes_max: 1 << 30,
            sql_depth_max: 256,
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

/// Counts how deep a parsed statement or expression nests, stopping past
/// `max` (see [`QueryConfig::sql_depth_max`]).
struct Depth {
    now: usize,
    max: usize,
}

impl Depth {
    fn enter(&mut self, by: usize) -> std::ops::ControlFlow<()> {
        self.now += by;
        if self.now > self.max {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    }

    /// How deep a query's set operations go, walked without recursion.
    fn set_depth(query: &datafusion::sql::sqlparser::ast::Query) -> usize {
        use datafusion::sql::sqlparser::ast::SetExpr;
        let mut deepest = 0;
        let mut stack = vec![(query.body.as_ref(), 1usize)];
        while let Some((set, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            if let SetExpr::SetOperation { left, right, .. } = set {
                stack.push((left, depth + 1));
                stack.push((right, depth + 1));
            }
        }
        deepest
    }

    /// Refuses `node` if it nests deeper than `max`, before anything
    /// recurses over it more than the parser did.
    fn check(
        node: &impl datafusion::sql::sqlparser::ast::Visit,
        max: usize,
    ) -> Result<(), QueryError> {
        let mut depth = Depth { now: 0, max };
        if node.visit(&mut depth).is_break() {
            return Err(QueryError::TooDeep { max });
        }
        Ok(())
    }
}

impl datafusion::sql::sqlparser::ast::Visitor for Depth {
    type Break = ();
    fn pre_visit_query(
        &mut self,
        query: &datafusion::sql::sqlparser::ast::Query,
    ) -> std::ops::ControlFlow<()> {
        self.enter(Depth::set_depth(query))
    }
    fn post_visit_query(
        &mut self,
        query: &datafusion::sql::sqlparser::ast::Query,
    ) -> std::ops::ControlFlow<()> {
        self.now -= Depth::set_depth(query);
        std::ops::ControlFlow::Continue(())
    }
    fn pre_visit_expr(&mut self, _: &SqlExpr) -> std::ops::ControlFlow<()> {
        self.enter(1)
    }
    fn post_visit_expr(&mut self, _: &SqlExpr) -> std::ops::ControlFlow<()> {
        self.now -= 1;
        std::ops::ControlFlow::Continue(())
    }
}

/// Refuses a statement nested deeper than `max` (see
/// [`QueryConfig::sql_depth_max`]).
fn check_depth(statement: &DfStatement, max: usize) -> Result<(), QueryError> {
    match statement {
        DfStatement::Statement(statement) => Depth::check(statement.as_ref(), max),
        _ => Ok(()),
    }
}

/// Numbers `?` placeholders `$1, $2, ...` in order of appearance, in the
/// parsed statement (never by editing the text). DataFusion reads a bare `?`
/// as one named parameter, so every `?` would take the same value.
fn number_question_marks(statement: &mut DfStatement) -> Result<(), QueryError> {
    let DfStatement::Statement(statement) = statement else {
        return Ok(());
    };
    let mut question_marks = 0usize;
    let mut numbered = false;
    let _ = visit_expressions_mut(statement.as_mut(), |expr| {
        if let SqlExpr::Value(v) = expr
            && let Value::Placeholder(name) = &mut v.value
        {
            if name == "?" {
                question_marks += 1;
                *name = format!("${question_marks}");
            } else {
                numbered = true;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    if question_marks > 0 && numbered {
        return Err(QueryError::Parameters(
            "parameters: use either ? or $1, $2, ..., not both".into(),
        ));
    }
    Ok(())
}

/// The `quiver` catalog over one store.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    sql_depth_max: usize,
    store: Arc<Store>,
    definitions: Arc<definitions::DefinitionSchemas>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish()
    }
}

impl QueryEngine {
    /// A session over `store` (and `logger`, for `system.*`) with every
    /// schema of the `quiver` catalog registered.
    pub fn new(
        store: Arc<Store>,
        logger: Option<Logger>,
        config: &QueryConfig,
    ) -> Result<Self, QueryError> {
        let ctx = new_session(config)?;
        register_functions(&ctx)?;
        let catalog = Arc::new(MemoryCatalogProvider::new());
        register_store_schemas(&catalog, &store, logger)?;
        let layout = Layout::new(&store.data_dir);
        let learning = register_sqlite_schemas(&catalog, &layout)?;
        let definitions = Arc::new(
            definitions::DefinitionSchemas::new(&layout.lake()).map_err(QueryError::Catalog)?,
        );
        catalog
            .register_schema("metrics", definitions.metrics.clone())
            .map_err(QueryError::Catalog)?;
        catalog
            .register_schema("analysis", definitions.analysis.clone())
            .map_err(QueryError::Catalog)?;
        ctx.register_catalog(CATALOG, catalog);
        learning::register_views(&ctx, &learning)?;
        Ok(Self {
            ctx,
            sql_depth_max: config.sql_depth_max,
            store,
            definitions,
        })
    }

    /// Compiles metric definitions and analyses and, if all of them compile,
    /// makes them the `metrics` and `analysis` schemas. On error the previous
    /// definitions stay live.
    pub fn install_definitions(
        &self,
        definitions: crate::metrics::Definitions,
    ) -> Result<Arc<definitions::Loaded>, crate::metrics::MetricsError> {
        self.definitions.install(&self.ctx, CATALOG, definitions)
    }

    /// The live definitions and compiled metrics.
    pub fn definitions(&self) -> Arc<definitions::Loaded> {
        self.definitions.loaded()
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The store the catalog reads.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Adds (or replaces) a table of the `system` schema: for state the
    /// application layer owns (`system.health`, `system.definitions`).
    pub fn register_system_table(
        &self,
        name: &str,
        table: Arc<dyn datafusion::datasource::TableProvider>,
    ) -> Result<(), QueryError> {
        let system = self
            .ctx
            .catalog(CATALOG)
            .and_then(|c| c.schema("system"))
            .ok_or_else(|| QueryError::Catalog(DataFusionError::Plan("no system schema".into())))?;
        system.deregister_table(name).map_err(QueryError::Catalog)?;
        system
            .register_table(name.to_string(), table)
            .map_err(QueryError::Catalog)?;
        Ok(())
    }

    /// Plans read-only SQL: one query, no DDL, DML or statements.
    ///
    /// Positional parameters may be written `$1, $2, ...` or `?` (numbered in
    /// order of appearance, as DB-API and JDBC clients write them); bind them
    /// with [`QueryEngine::bind`].
    pub async fn sql(&self, sql: &str) -> Result<DataFrame, QueryError> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let mut statement = state
            .sql_to_statement(sql, &dialect)
            .map_err(QueryError::Plan)?;
        check_depth(&statement, self.sql_depth_max)?;
        number_question_marks(&mut statement)?;
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(QueryError::Plan)?;
        read_only().verify_plan(&plan).map_err(QueryError::Plan)?;
        Ok(DataFrame::new(state, plan))
    }

    /// Compiles a row filter: a SQL expression over `schema`'s columns that is
    /// true for the rows to keep (a live tail's `where`). It is checked like
    /// client SQL (the same depth limit; it names no table, so it cannot read
    /// one) and compiled once; `now()` is the time of the compile.
    pub fn compile_filter(
        &self,
        sql: &str,
        schema: &arrow::datatypes::SchemaRef,
    ) -> Result<Arc<dyn datafusion::physical_expr::PhysicalExpr>, QueryError> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let parsed = state
            .sql_to_expr_with_alias(sql, &dialect)
            .map_err(QueryError::Plan)?;
        Depth::check(&parsed.expr, self.sql_depth_max)?;
        let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())
            .map_err(QueryError::Plan)?;
        let expr = state
            .create_logical_expr_from_sql_expr(parsed, &df_schema)
            .map_err(QueryError::Plan)?;
        let physical = state
            .create_physical_expr(expr, &df_schema)
            .map_err(QueryError::Plan)?;
        let data_type = physical
            .data_type(schema.as_ref())
            .map_err(QueryError::Plan)?;
        if data_type != DataType::Boolean {
            return Err(QueryError::Plan(DataFusionError::Plan(format!(
                "the filter {sql:?} is {data_type}, not true or false for a row"
            ))));
        }
        Ok(physical)
    }

    /// The parameters a planned query takes, `$1` first, with their types
    /// where DataFusion could infer them (`Null` where it could not).
    pub fn parameter_schema(df: &DataFrame) -> Result<Schema, QueryError> {
        let types = df
            .logical_plan()
            .get_parameter_types()
            .map_err(QueryError::Plan)?;
        let mut names: Vec<(usize, String)> = types
            .keys()
            .map(|name| {
                let position = name
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        QueryError::Parameters(format!(
                            "parameter {name}: use positional parameters ($1, $2, ...) or ?"
                        ))
                    })?;
                Ok((position, name.clone()))
            })
            .collect::<Result<_, QueryError>>()?;
        names.sort();
        Ok(Schema::new(
            names
                .into_iter()
                .map(|(_, name)| {
                    let data_type = types
                        .get(&name)
                        .cloned()
                        .flatten()
                        .unwrap_or(DataType::Null);
                    Field::new(name, data_type, true)
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// Binds positional parameters from one row of `params` (column `i` is
    /// `$i+1`).
    pub fn bind(df: DataFrame, params: &RecordBatch) -> Result<DataFrame, QueryError> {
        if params.num_rows() != 1 {
            return Err(QueryError::Parameters(format!(
                "parameters: expected one row of values, got {}",
                params.num_rows()
            )));
        }
        let values = params
            .columns()
            .iter()
            .map(|column| ScalarValue::try_from_array(column, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(QueryError::Plan)?;
        Self::bind_values(df, values)
    }

    /// Binds positional values (`$1` first), each cast to the type the plan
    /// infers for its parameter (a text value for a `Utf8View` column, an
    /// integer for a float), so callers need not know the storage types.
    pub fn bind_values(df: DataFrame, values: Vec<ScalarValue>) -> Result<DataFrame, QueryError> {
        let types = df
            .logical_plan()
            .get_parameter_types()
            .map_err(QueryError::Plan)?;
        let values = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| match types.get(&format!("${}", i + 1)) {
                Some(Some(t)) if &value.data_type() != t => {
                    let refused = |why: String| {
                        QueryError::Parameters(format!(
                            "parameter ${}: {value} does not fit {t}: {why}",
                            i + 1
                        ))
                    };
                    let cast = value.cast_to(t).map_err(|e| refused(e.to_string()))?;
                    // Lossless only: a float is not truncated into an integer.
                    match cast.cast_to(&value.data_type()) {
                        Ok(back) if back == value => Ok(cast),
                        _ => Err(refused("the conversion loses information".into())),
                    }
                }
                _ => Ok(value),
            })
            .collect::<Result<Vec<_>, _>>()?;
        df.with_param_values(values).map_err(QueryError::Plan)
    }

    /// Executes a planned query under its own memory limit (on top of the
    /// shared pool) and streams the result. Dropping the stream cancels the
    /// query and returns its memory.
    pub async fn execute(
        &self,
        df: DataFrame,
        memory_bytes_max: usize,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        let (state, plan) = df.into_parts();
        let physical = state
            .create_physical_plan(&plan)
            .await
            .map_err(QueryError::Plan)?;
        let shared = state.runtime_env().memory_pool.clone();
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
            .with_memory_pool(Arc::new(pool::QueryPool::new(shared, memory_bytes_max)))
            .build_arc()
            .map_err(QueryError::Execute)?;
        let task = TaskContext::from(&state).with_runtime(runtime);
        execute_stream(physical, Arc::new(task)).map_err(QueryError::Execute)
    }

    /// Waits (up to `timeout`) until everything durable is visible to queries:
    /// the hot store applies the WAL a moment after each write. Returns
    /// whether it caught up.
    pub async fn wait_visible(&self, timeout: std::time::Duration) -> bool {
        let target = self.store.durable_seq();
        let mut applied = self.store.hot.applied();
        tokio::time::timeout(timeout, applied.wait_for(|&seq| seq >= target))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }

    /// Which of `ids` (text) `events.<table>` holds among rows stamped in
    /// `[lo_us, hi_us]`: what idempotent ingest asks of the stored tables. A
    /// semi join, so the ids are hashed once, and the time range prunes lake
    /// days and hot rows.
    pub async fn stored_event_ids(
        &self,
        table: Table,
        ids: arrow::array::ArrayRef,
        lo_us: i64,
        hi_us: i64,
    ) -> Result<std::collections::HashSet<String>, QueryError> {
        use datafusion::common::JoinType;
        use datafusion::prelude::{col, lit};
        let ts = |us: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(us),
                Some("UTC".into()),
            ))
        };
        let candidates = RecordBatch::try_from_iter([("candidate_id", ids)])
            .map_err(|e| QueryError::Execute(e.into()))?;
        let candidates = self.ctx.read_batch(candidates).map_err(QueryError::Plan)?;
        let found = self
            .ctx
            .table(datafusion::sql::TableReference::full(
                CATALOG,
                "events",
                table.name(),
            ))
            .await
            .and_then(|events| events.filter(col("ts").between(ts(lo_us), ts(hi_us))))
            .and_then(|events| events.select_columns(&["event_id"]))
            .and_then(|events| {
                events.join(
                    candidates,
                    JoinType::LeftSemi,
                    &["event_id"],
                    &["candidate_id"],
                    None,
                )
            })
            .map_err(QueryError::Plan)?
            .collect()
            .await
            .map_err(QueryError::Execute)?;
        let mut stored = std::collections::HashSet::new();
        for batch in &found {
            let column = batch.column(0);
            let ids = arrow::array::as_string_array(column);
            stored.extend(ids.iter().flatten().map(str::to_string));
        }
        Ok(stored)
    }

    /// Bytes the running queries hold in the shared memory pool.
    pub fn memory_reserved_bytes(&self) -> usize {
        self.ctx.runtime_env().memory_pool.reserved()
    }

    /// Runs read-only SQL and streams the result.
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream, QueryError> {
        self.sql(sql)
            .await?
            .execute_stream()
            .await
            .map_err(QueryError::Execute)
    }

    /// Runs read-only SQL with its parameters (`$1`, `$2`, ... or `?`) bound
    /// to `params`, and collects the result. Values are never pasted into
    /// the text.
    pub async fn query_with(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        Self::bind_values(self.sql(sql).await?, params)?
            .collect()
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

/// A session under the shared memory pool, defaulting to `quiver.events`.
fn new_session(config: &QueryConfig) -> Result<SessionContext, QueryError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_bytes_max)))
        .build_arc()
        .map_err(QueryError::Catalog)?;
    let session = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, "events")
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        .with_target_partitions(config.target_partitions.max(1));
    Ok(SessionContext::new_with_config_rt(session, runtime))
}

/// Quiver's own aggregate and scalar functions, all registered here.
fn register_functions(ctx: &SessionContext) -> Result<(), QueryError> {
    ctx.register_udaf(crate::metrics::max_drawdown_udaf());
    ctx.register_udaf(crate::metrics::win_rate_udaf());
    ctx.register_udaf(crate::metrics::calibration_udaf());
    // The built-in templates until definitions (with their gates file)
    // are installed.
    ctx.register_udf(
        explain::builtin_explain_gate()
            .map_err(|e| QueryError::Catalog(DataFusionError::External(Box::new(e))))?,
    );
    Ok(())
}

/// The schemas read from the store and the logger: `events`, `hot`, `system`.
fn register_store_schemas(
    catalog: &MemoryCatalogProvider,
    store: &Arc<Store>,
    logger: Option<Logger>,
) -> Result<(), QueryError> {
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
    let sources = system::SystemSources {
        logger,
        store: store.clone(),
    };
    for (name, table) in system::tables(&sources) {
        system
            .register_table(name.to_string(), Arc::new(table))
            .map_err(QueryError::Catalog)?;
    }
    let (name, deliveries) = alert_deliveries_table(&Layout::new(&store.data_dir))?;
    system
        .register_table(name, Arc::new(deliveries))
        .map_err(QueryError::Catalog)?;
    let (name, deletions) = retention_deletions_table(&Layout::new(&store.data_dir))?;
    system
        .register_table(name, Arc::new(deletions))
        .map_err(QueryError::Catalog)?;
    catalog
        .register_schema("events", events)
        .map_err(QueryError::Catalog)?;
    catalog
        .register_schema("hot", hot_schema)
        .map_err(QueryError::Catalog)?;
    catalog
        .register_schema("system", system)
        .map_err(QueryError::Catalog)?;
    Ok(())
}

/// `system.alert_deliveries`: every delivery attempt of the alert outbox
/// (alerts.sqlite, created here if the dir has none yet), read like the
/// journal's tables.
fn alert_deliveries_table(layout: &Layout) -> Result<(String, sqlite::SqliteTable), QueryError> {
    use crate::store::outbox::{DELIVERIES_TABLE, OutboxDb};
    let external =
        |e: crate::store::SqliteError| QueryError::Catalog(DataFusionError::External(Box::new(e)));
    let path = layout.alerts();
    drop(OutboxDb::open(&path).map_err(external)?);
    let relation = crate::store::sqlite::list_relations(&path)
        .map_err(external)?
        .into_iter()
        .find(|r| r.name == DELIVERIES_TABLE)
        .ok_or_else(|| {
            QueryError::Catalog(DataFusionError::Plan(format!(
                "{} has no table {DELIVERIES_TABLE}",
                path.display()
            )))
        })?;
    Ok((
        DELIVERIES_TABLE.to_string(),
        sqlite::SqliteTable::new(path, relation),
    ))
}

/// `system.retention_deletions`: every lake file retention removed
/// (retention.sqlite, which the store creates when it opens), read like the
/// journal's tables.
fn retention_deletions_table(layout: &Layout) -> Result<(String, sqlite::SqliteTable), QueryError> {
    use crate::store::lake::deletions::DELETIONS_TABLE;
    let path = layout.retention();
    let relation = crate::store::sqlite::list_relations(&path)
        .map_err(|e| QueryError::Catalog(DataFusionError::External(Box::new(e))))?
        .into_iter()
        .find(|r| r.name == DELETIONS_TABLE)
        .ok_or_else(|| {
            QueryError::Catalog(DataFusionError::Plan(format!(
                "{} has no table {DELETIONS_TABLE}",
                path.display()
            )))
        })?;
    Ok((
        DELETIONS_TABLE.to_string(),
        sqlite::SqliteTable::new(path, relation),
    ))
}

/// The SQLite schemas: `journal` (journal.sqlite), and `registry` and
/// `learning` (registry.sqlite, split by [`LEARNING_RELATIONS`]). Returns
/// `learning`, which also gets views once the catalog is registered.
///
/// [`LEARNING_RELATIONS`]: crate::store::registry::LEARNING_RELATIONS
fn register_sqlite_schemas(
    catalog: &MemoryCatalogProvider,
    layout: &Layout,
) -> Result<Arc<MemorySchemaProvider>, QueryError> {
    let journal = Arc::new(MemorySchemaProvider::new());
    let registry = Arc::new(MemorySchemaProvider::new());
    let learning = Arc::new(MemorySchemaProvider::new());
    for (path, pick) in [
        (layout.journal(), None),
        (
            layout.registry(),
            Some(crate::store::registry::LEARNING_RELATIONS),
        ),
    ] {
        let relations = crate::store::sqlite::list_relations(&path)
            .map_err(|e| QueryError::Catalog(DataFusionError::External(Box::new(e))))?;
        for relation in relations {
            let schema = match pick {
                None => &journal,
                Some(names) if names.contains(&relation.name.as_str()) => &learning,
                Some(_) => &registry,
            };
            schema
                .register_table(
                    relation.name.clone(),
                    Arc::new(sqlite::SqliteTable::new(path.clone(), relation)),
                )
                .map_err(QueryError::Catalog)?;
        }
    }
    for (name, provider) in [("journal", journal), ("registry", registry)] {
        catalog
            .register_schema(name, provider)
            .map_err(QueryError::Catalog)?;
    }
    catalog
        .register_schema("learning", learning.clone())
        .map_err(QueryError::Catalog)?;
    Ok(learning)
}
