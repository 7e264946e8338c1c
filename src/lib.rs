//! Quiver: the flight recorder and analytics engine of an algorithmic trading bot.
//!
//! The bot logs what it does (signals, gate decisions, trades, shadow trades,
//! decision-trace steps, model updates, market context, predictions) through a
//! [`ingest::Logger`] that never blocks; Quiver makes every accepted event durable
//! in a write-ahead log, keeps a recent window in a DuckDB hot store, rolls
//! everything into a hive-partitioned Parquet lake, and answers SQL over all of it
//! with DataFusion.
//!
//! # Data flow
//!
//! ```text
//! bot --log(event)--> ingest::Logger: validation, bounded queue, tiers, kill switch
//! Flight SQL ingest --> flight::ingest: streamed, deduped by event_id (flight::dedup)
//!                        '--> Logger::ingest: a lane of its own, outside the tiers
//!                        |
//!                        v  writer thread: batches of <= 5,000 events or <= 1 s
//!                     store::StoreSink
//!                        |-> WAL (Arrow IPC records, fsync per write) = durability point
//!                        '-> WAL feed (recent records in memory; older ones from the WAL files)
//!                              each consumer reads at its own pace, never holding the writer:
//!                              |-> hot thread: DuckDB appends + applied seq, one transaction
//!                              |-> lake thread: Parquet rolls, commit log (lake/_log), compaction,
//!                              |     retention: whole days past [retention] (retention.sqlite)
//!                              '-> journal thread: trade events -> journal.sqlite (+ applied seq)
//!                     store::Registry: models (content-addressed), aliases, configs, learning
//!                        |
//!                        v
//!                     query::QueryEngine: catalog `quiver`
//!                        events.*  lake files <= lake_seq  UNION  hot rows > lake_seq
//!                        hot.*     DuckDB tables
//!                        system.*  queue, drops, kill switch, writer, lake files,
//!                                  alert deliveries (alerts.sqlite), retention plan
//!                                  and deletions (retention.sqlite); health and
//!                                  definitions (app::health, from the app layer)
//!                        journal.* registry.* learning.*  SQLite, filters pushed down
//!
//! cluster (quiver cluster scheduler|executor, quiver sql --cluster): Ballista over the
//!   lake alone: lake.* (= events.*) planned over lake/_log's committed files, metrics.*,
//!   analysis.*; the hot store and SQLite stay on the ingest server
//! ```
//!
//! # Layout
//!
//! Data flows one way; a module uses only those above it.
//!
//! - [`event`]: the eight event tables as Rust types and Arrow schemas, validation.
//! - [`gates`]: `configs/gates.yaml`, the six gates' thresholds, their history and
//!   explanation templates (the spec the simulator, explainer and metrics share).
//! - [`ingest`]: the logger, priority tiers, kill switch, the writer thread, and the
//!   [`ingest::BatchSink`] trait it writes through.
//! - [`store`]: WAL, DuckDB hot store, Parquet lake, recovery; implements the sink.
//!   The SQLite journal and model registry.
//! - [`analytics`]: trading statistics and calibration, as pure functions: the
//!   one definition of each number (win rate, drawdown, ECE, Brier), which the
//!   SQL aggregates call.
//! - [`metrics`]: metric definitions and SQL analyses, compiled into views; the
//!   built-in definitions, copied into each data dir's `configs/`; the SQL
//!   aggregates `win_rate`, `max_drawdown` and `calibration`.
//! - [`council`]: the AI council's pure core: the day's metrics packet, the
//!   number verifier, the built-in analysts and judge.
//! - [`query`]: the DataFusion session and its table providers.
//! - [`flight`]: the Arrow Flight SQL endpoint (queries, metadata, bulk ingest,
//!   live tails of the WAL).
//! - [`cluster`]: distributed queries over the lake on Ballista: the
//!   scheduler and executor processes with Quiver's codec and functions, and
//!   the client catalog (`lake.*`, and the metric and analysis views over it).
//! - [`sim`]: a seeded simulator of a realistic bot, for demos and tests.
//! - [`config`]: layered configuration (defaults < `quiver.toml` < env < flags).
//! - [`app`]: the application layer: the pipeline and its server, the local or
//!   remote query session, the metrics job, alert delivery (outbox, Telegram,
//!   Discord, webhooks), the health monitor (`system.health`, `quiver status`),
//!   Prometheus `/metrics`, and each report's SQL and typed rows (explain,
//!   insights, ...); for the CLI and for embedders.
//! - [`cli`]: the `quiver` command, one file per subcommand: parses, calls
//!   [`app`], prints. `cli::dashboard` (a folder: state, feed, ui) is the
//!   terminal UI over a running server.
//!
//! # Example
//!
//! ```no_run
//! use quiver::{event::*, ingest::{Logger, LoggerConfig}, store::{Store, StoreConfig}};
//! use quiver::query::{QueryConfig, QueryEngine};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (store, sink) = Store::open(StoreConfig::new("./quiver-data"))?;
//! let logger = Logger::start(LoggerConfig::default(), sink)?;
//! let outcome = logger.log(MarketContext {
//!     header: EventHeader::new("BTC-USD", Level::Info),
//!     price: 64_000.0, spread_bps: 1.2, volume: 3.5, volatility: 0.45,
//!     regime: Regime::Trend,
//! });
//! assert!(outcome.is_accepted());
//! logger.flush().await?; // durable in the WAL
//!
//! let store = Arc::new(store);
//! let engine = QueryEngine::new(store.clone(), Some(logger.clone()), &QueryConfig::default())?;
//! let batches = engine.query("SELECT symbol, count(*) FROM market_context GROUP BY symbol").await?;
//! println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
//! logger.close()?;
//! # Ok(()) }
//! ```

pub mod analytics;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod council;
pub mod event;
pub mod flight;
pub mod gates;
pub mod histogram;
pub mod ingest;
pub mod metrics;
mod newtype;
pub mod query;
pub mod sim;
pub mod store;
