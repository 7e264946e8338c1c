//! Distributed queries over the lake on Apache DataFusion Ballista.
//!
//! ```text
//! quiver sql --cluster df://HOST:50050 "SQL"
//!   client: plans logically over catalog `quiver` (lake.*, events.* = lake.*,
//!           metrics.*, analysis.*), encodes the plan with QuiverCodec
//!      |
//!      v  gRPC
//! quiver cluster scheduler   (bind 127.0.0.1:50050)
//!   decodes lake tables over ITS data dir's lake, reads the commit log,
//!   plans Parquet scans of exactly the committed files, cuts stages
//!      |
//!      v  tasks                                   results (Arrow Flight)
//! quiver cluster executor x N (bind 127.0.0.1, Flight 50060, gRPC 50061)
//!   read the files by path, run Quiver's functions, shuffle  ---> client
//! ```
//!
//! # What the cluster sees
//!
//! Only the lake: the files its commit log names, up to `lake_seq`. Rows
//! still in the WAL and hot store (the last `lake.roll_interval`, ten minutes by
//! default) are not there yet, nor anything in SQLite (journal, registry,
//! learning) or the ingest server's `system.*` tables. `events.*` on the
//! cluster is `lake.*` under the familiar name, so the metric and analysis
//! views compile unchanged; a metric whose source lives on the ingest server
//! (`learning.*`, `system.*`) is left out of `metrics.*` on the cluster, and
//! a query naming it is told why ([`ClusterSession::left_out`]).
//!
//! The scheduler and every executor must see the lake at the same path (one
//! machine, or a shared mount); executors evaluate `explain_gate` with the
//! gates file of their own `--data-dir`, which should be the ingest server's.
//!
//! # Ports
//!
//! Ballista's executor defaults (50051, 50052) would take Quiver's Flight SQL
//! port; Quiver's executors listen on 50060 (Flight) and 50061 (gRPC)
//! instead, the scheduler on Ballista's 50050. All bind loopback unless told
//! otherwise.

pub mod codec;
pub mod lake_table;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow::array::RecordBatch;
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::{TableProvider, ViewTable};
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};

use crate::config::Config;
use crate::event::Table;
use crate::metrics::{Definitions, MetricDef, MetricSource};
use crate::query::CATALOG;
use crate::store::Layout;
use codec::QuiverCodec;
use lake_table::LakeTable;

/// The scheduler's default port (Ballista's).
pub const SCHEDULER_PORT: u16 = 50050;
/// An executor's default Arrow Flight port (results and shuffles).
pub const EXECUTOR_FLIGHT_PORT: u16 = 50060;
/// An executor's default gRPC port (tasks from the scheduler).
pub const EXECUTOR_GRPC_PORT: u16 = 50061;

/// Quiver's SQL functions: the aggregates and `explain_gate` with the data
/// dir's gates file, registered alike on the client, scheduler and executors.
pub struct Functions {
    scalar: Vec<Arc<ScalarUDF>>,
    aggregate: Vec<Arc<AggregateUDF>>,
}

impl Functions {
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let gates = config
            .definition_paths()
            .gates()
            .context("reading the gates file for explain_gate")?;
        Ok(Self {
            scalar: vec![Arc::new(crate::query::explain::explain_gate_udf(Arc::new(
                gates,
            )))],
            aggregate: vec![
                Arc::new(crate::metrics::max_drawdown_udaf()),
                Arc::new(crate::metrics::win_rate_udaf()),
                Arc::new(crate::metrics::calibration_udaf()),
            ],
        })
    }

    /// Adds them to `state` (the scheduler's sessions).
    fn register(&self, state: &mut SessionState) -> datafusion::error::Result<()> {
        use datafusion::execution::FunctionRegistry;
        for f in &self.scalar {
            state.register_udf(f.clone())?;
        }
        for f in &self.aggregate {
            state.register_udaf(f.clone())?;
        }
        Ok(())
    }

    /// What executors resolve plans' functions by: all of DataFusion's (the
    /// nested ones too, which Ballista's default registry lacks: a plan
    /// calling `array_to_string` would fail to decode) and Quiver's.
    fn registry(&self) -> datafusion::error::Result<BallistaFunctionRegistry> {
        let mut state = SessionStateBuilder::new().with_default_features().build();
        self.register(&mut state)?;
        Ok(BallistaFunctionRegistry::from(&state))
    }
}

/// The lake root of `config`'s data dir, absolute: plans carry file paths
/// that executors in other working directories must open.
fn lake_root(config: &Config) -> anyhow::Result<PathBuf> {
    let root = Layout::new(&config.data_dir).lake();
    std::path::absolute(&root).with_context(|| format!("resolving {}", root.display()))
}

/// How the scheduler listens and watches its executors.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind: SocketAddr,
    /// The host name executors and clients are told to reach it by.
    pub external_host: Option<String>,
    /// An executor silent this long is dead: its tasks are run again elsewhere.
    pub executor_timeout: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, SCHEDULER_PORT)),
            external_host: None,
            executor_timeout: Duration::from_secs(30),
        }
    }
}

/// Runs a Ballista scheduler over `config`'s lake until `shutdown` resolves.
pub async fn run_scheduler(
    config: &Config,
    options: &SchedulerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;

    let root = lake_root(config)?;
    let functions = Arc::new(Functions::load(config)?);
    let session_builder = Arc::new(move |session: SessionConfig| {
        let mut state = ballista_core::utils::default_session_builder(session)?;
        functions.register(&mut state)?;
        Ok(state)
    });
    let timeout = options.executor_timeout.as_secs().max(1);
    let scheduler = SchedulerConfig {
        bind_host: options.bind.ip().to_string(),
        bind_port: options.bind.port(),
        external_host: options
            .external_host
            .clone()
            .unwrap_or_else(|| options.bind.ip().to_string()),
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: timeout.div_ceil(3).max(1),
        override_logical_codec: Some(QuiverCodec::new(Some(root.clone()))),
        override_session_builder: Some(session_builder),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&scheduler)
        .await
        .context("starting the scheduler's cluster state")?;
    eprintln!(
        "quiver cluster scheduler on {} over the lake {}",
        options.bind,
        root.display()
    );
    let server = ballista_scheduler::scheduler_process::start_server(
        cluster,
        options.bind,
        Arc::new(scheduler),
    );
    tokio::select! {
        served = server => served.context("the scheduler stopped")?,
        () = shutdown => {}
    }
    Ok(())
}

/// How an executor listens and where its scheduler is.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub bind_host: IpAddr,
    pub external_host: Option<String>,
    pub flight_port: u16,
    pub grpc_port: u16,
    pub scheduler: SocketAddr,
    /// Tasks run at once (0: one per core).
    pub concurrent_tasks: usize,
    /// Where shuffle files go (default: a temp dir).
    pub work_dir: Option<PathBuf>,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            bind_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            external_host: None,
            flight_port: EXECUTOR_FLIGHT_PORT,
            grpc_port: EXECUTOR_GRPC_PORT,
            scheduler: SocketAddr::from((Ipv4Addr::LOCALHOST, SCHEDULER_PORT)),
            concurrent_tasks: 0,
            work_dir: None,
        }
    }
}

/// Runs a Ballista executor with Quiver's functions until its scheduler
/// stops it or `shutdown` resolves. Its memory is bounded by
/// `query.memory_bytes_max`.
pub async fn run_executor(
    config: &Config,
    options: &ExecutorOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};

    let functions = Functions::load(config)?;
    let executor = ExecutorProcessConfig {
        bind_host: options.bind_host.to_string(),
        external_host: options.external_host.clone(),
        port: options.flight_port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler.ip().to_string(),
        scheduler_port: options.scheduler.port(),
        scheduler_connect_timeout_seconds: 30,
        concurrent_tasks: options.concurrent_tasks,
        work_dir: options
            .work_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned()),
        // Well inside the scheduler's --executor-timeout (30 s by default).
        executor_heartbeat_interval_seconds: 2,
        memory_pool_size: Some(config.query_config().memory_bytes_max as u64),
        override_function_registry: Some(Arc::new(functions.registry()?)),
        override_logical_codec: Some(QuiverCodec::new(None)),
        ..ExecutorProcessConfig::default()
    };
    eprintln!(
        "quiver cluster executor on {}:{} (Flight) / {} (gRPC), scheduler {}",
        options.bind_host, options.flight_port, options.grpc_port, options.scheduler
    );
    let process = start_executor_process(Arc::new(executor));
    tokio::select! {
        ran = process => ran.context("the executor stopped")?,
        () = shutdown => {}
    }
    Ok(())
}

/// Stack of the client's threads: planning and encoding a plan recurse over
/// its depth, and the metric and analysis views nest deep (as in
/// [`crate::query::definitions`]).
const CLIENT_STACK_BYTES: usize = 32 << 20;

/// A client of a cluster: catalog `quiver` as the cluster sees it. Plans on
/// threads of its own with a deep stack, so any caller's runtime will do.
pub struct ClusterSession {
    inner: Arc<ClientInner>,
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
}

/// How long [`ClusterSession::query`] waits for an answer by default.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(600);

struct ClientInner {
    ctx: SessionContext,
    left_out: Vec<(String, String)>,
}

impl ClusterSession {
    /// Plans for the scheduler at `url` (`df://HOST:PORT`), with the metric
    /// and analysis definitions of `config`'s data dir. Connects at the first
    /// query.
    pub async fn connect(config: &Config, url: &str) -> anyhow::Result<Self> {
        if !url.starts_with("df://") {
            anyhow::bail!("a cluster is named df://HOST:PORT (the scheduler), not {url:?}");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("quiver-cluster-client")
            .thread_stack_size(CLIENT_STACK_BYTES)
            .enable_all()
            .build()
            .context("starting the cluster client's runtime")?;
        let (config, url) = (config.clone(), url.to_string());
        let inner = runtime
            .spawn(async move { ClientInner::connect(&config, &url).await })
            .await
            .context("the cluster client's planner stopped")??;
        Ok(Self {
            inner: Arc::new(inner),
            runtime: Some(runtime),
            timeout: QUERY_TIMEOUT,
        })
    }

    /// Gives up on a query after `timeout` (default [`QUERY_TIMEOUT`]): the
    /// scheduler retries tasks it could not place for as long as executors
    /// come and go, so without a limit such a query waits forever.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The metric and analysis views not on the cluster, each with why.
    pub fn left_out(&self) -> &[(String, String)] {
        &self.inner.left_out
    }

    /// Runs one read-only query on the cluster.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
        let Some(runtime) = &self.runtime else {
            anyhow::bail!("the cluster session is closed");
        };
        let (inner, sql) = (self.inner.clone(), sql.to_string());
        let timeout = self.timeout;
        let query = runtime.spawn(async move { inner.query(&sql).await });
        let abort = query.abort_handle();
        match tokio::time::timeout(timeout, query).await {
            Ok(done) => done.context("the cluster client's planner stopped")?,
            Err(_) => {
                abort.abort();
                anyhow::bail!(
                    "the query did not finish on the cluster within {} (--cluster-timeout); \
                     the scheduler's log says which tasks it could not run",
                    humantime::format_duration(timeout)
                )
            }
        }
    }
}

impl Drop for ClusterSession {
    fn drop(&mut self) {
        // Dropping a runtime may block; a session is often dropped inside
        // another runtime, where that is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl ClientInner {
    async fn connect(config: &Config, url: &str) -> anyhow::Result<Self> {
        let functions = Functions::load(config)?;
        let session = SessionConfig::new_with_ballista()
            .with_ballista_logical_extension_codec(QuiverCodec::new(None))
            .with_default_catalog_and_schema(CATALOG, "events")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(session)
            .build();
        let ctx = SessionContext::remote_with_state(url, state)
            .await
            .with_context(|| format!("connecting to the cluster at {url}"))?;
        // After the upgrade for Ballista, which resets the function set to
        // DataFusion's.
        for f in &functions.scalar {
            ctx.register_udf(f.as_ref().clone());
        }
        for f in &functions.aggregate {
            ctx.register_udaf(f.as_ref().clone());
        }
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let lake = Arc::new(MemorySchemaProvider::new());
        let events = Arc::new(MemorySchemaProvider::new());
        for table in Table::ALL {
            let provider: Arc<dyn TableProvider> = Arc::new(LakeTable::new(*table, None));
            lake.register_table(table.name().to_string(), provider.clone())?;
            events.register_table(table.name().to_string(), provider)?;
        }
        use datafusion::catalog::CatalogProvider;
        catalog.register_schema("lake", lake)?;
        catalog.register_schema("events", events)?;
        ctx.register_catalog(CATALOG, catalog.clone());
        let definitions = Definitions::load(&config.definition_paths())
            .context("loading the metric and analysis definitions")?;
        let left_out = install_views(&ctx, &catalog, &definitions).await?;
        Ok(Self { ctx, left_out })
    }

    async fn query(&self, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
        if let Some((name, why)) = self.left_out.iter().find(|(name, _)| names(sql, name)) {
            anyhow::bail!("{name} is not on the cluster: {why}");
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = self
            .ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|e| anyhow::anyhow!("planning the query: {}", e.find_root()))?;
        frame
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("running the query on the cluster: {}", e.find_root()))
    }
}

/// Whether `sql` names `name` (`schema.table`, any case), not merely a
/// longer name that starts with it.
fn names(sql: &str, name: &str) -> bool {
    let sql = sql.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    sql.match_indices(&name).any(|(at, _)| {
        let next = sql[at + name.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Registers `metrics.*` and `analysis.*` views over the cluster's tables;
/// returns what could not be (a source on the ingest server only).
async fn install_views(
    ctx: &SessionContext,
    catalog: &MemoryCatalogProvider,
    definitions: &Definitions,
) -> anyhow::Result<Vec<(String, String)>> {
    use datafusion::catalog::CatalogProvider;
    let mut left_out = Vec::new();
    let analysis = Arc::new(MemorySchemaProvider::new());
    let metrics = Arc::new(MemorySchemaProvider::new());
    catalog.register_schema("analysis", analysis.clone())?;
    catalog.register_schema("metrics", metrics.clone())?;
    for table in lake_table::DerivedTable::all() {
        metrics.register_table(table.name().to_string(), Arc::new(table))?;
    }

    // Analyses may read each other: plan until no more succeed.
    let mut pending: Vec<_> = definitions.analyses.iter().collect();
    loop {
        let mut failed = Vec::new();
        for a in pending.iter().copied() {
            match crate::metrics::plan_analysis(ctx, a).await {
                Ok(plan) => {
                    let view = ViewTable::new(plan, Some(a.sql.clone()));
                    analysis.register_table(a.name.clone(), Arc::new(view))?;
                }
                Err(e) => failed.push((a, e)),
            }
        }
        if failed.is_empty() || failed.len() == pending.len() {
            for (a, e) in failed {
                left_out.push((format!("analysis.{}", a.name), e.to_string()));
            }
            break;
        }
        pending = failed.into_iter().map(|(a, _)| a).collect();
    }

    let (kept, dropped) = cluster_metrics(&definitions.metrics.metrics);
    left_out.extend(dropped);
    let compiled = crate::metrics::compile_metrics(ctx, &definitions.metrics.path, &kept).await?;
    for metric in compiled {
        let view = ViewTable::new(metric.plan, Some(metric.sql));
        metrics.register_table(metric.def.name.to_string(), Arc::new(view))?;
    }
    Ok(left_out)
}

/// The metrics whose sources the cluster has (event tables, and metrics
/// derived only from such), in their order; and the others, with why.
fn cluster_metrics(all: &[MetricDef]) -> (Vec<MetricDef>, Vec<(String, String)>) {
    let mut kept: Vec<MetricDef> = Vec::new();
    let mut dropped = Vec::new();
    for def in all {
        let why = match &def.source {
            MetricSource::Table { schema, table, .. } if schema != "events" && schema != "lake" => {
                Some(format!(
                    "its source {schema}.{table} lives on the ingest server; query it there"
                ))
            }
            MetricSource::Table { .. } => None,
            MetricSource::Derived { inputs } => inputs
                .iter()
                .find(|i| !kept.iter().any(|k| &k.name == *i))
                .map(|i| format!("it is derived from metrics.{i}, which is not on the cluster")),
        };
        match why {
            None => kept.push(def.clone()),
            Some(why) => dropped.push((format!("metrics.{}", def.name), why)),
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_left_out_view_is_named_only_by_its_whole_name() {
        assert!(names(
            "SELECT * FROM metrics.queue_depth",
            "metrics.queue_depth"
        ));
        assert!(names(
            "select * from METRICS.Queue_Depth;",
            "metrics.queue_depth"
        ));
        assert!(!names(
            "SELECT * FROM metrics.queue_depth_max",
            "metrics.queue_depth"
        ));
        assert!(!names("SELECT 1", "metrics.queue_depth"));
    }

    #[test]
    fn metrics_on_the_ingest_server_are_left_out_with_what_derives_from_them() {
        let file = crate::metrics::MetricsFile::parse(
            std::path::Path::new("metrics.yaml"),
            crate::metrics::builtin::METRICS_YAML,
        )
        .unwrap();
        let (kept, dropped) = cluster_metrics(&file.metrics);
        assert!(!kept.is_empty());
        assert!(kept.iter().all(|m| match &m.source {
            MetricSource::Table { schema, .. } => schema == "events",
            MetricSource::Derived { .. } => true,
        }));
        let why = |name: &str| {
            dropped
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, w)| w.clone())
        };
        let queue = file
            .metrics
            .iter()
            .find(|m| matches!(&m.source, MetricSource::Table { schema, .. } if schema == "system"))
            .unwrap();
        assert!(
            why(&format!("metrics.{}", queue.name))
                .unwrap()
                .contains("lives on the ingest server"),
            "{dropped:?}"
        );
        assert_eq!(kept.len() + dropped.len(), file.metrics.len());
    }
}
