//! Opening and closing the whole pipeline (store, logger, query engine).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::health::{HealthMonitor, HealthSources};
use super::reload::DefinitionsStatus;
use crate::config::Config;
use crate::flight::{FlightServer, ServeError};
use crate::ingest::Logger;
use crate::query::QueryEngine;
use crate::store::{Layout, Store};

/// Where a running server advertises itself inside the data dir it holds
/// ([`Layout::advert`]), so `quiver sql` on the same dir can query through it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Advert {
    pub url: String,
    pub pid: u32,
}

impl Advert {
    pub fn read(data_dir: &Path) -> Option<Advert> {
        let text = std::fs::read_to_string(Layout::new(data_dir).advert()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The server a client command talks to: `explicit` (its `--server`)
    /// when given, else the one holding `data_dir`. `watcher` names what
    /// the command needs a live server for, in the error when there is none.
    pub fn server_url(
        data_dir: &Path,
        explicit: Option<&str>,
        watcher: &str,
    ) -> anyhow::Result<String> {
        if let Some(url) = explicit {
            return Ok(url.to_owned());
        }
        Advert::read(data_dir).map(|a| a.url).with_context(|| {
            format!(
                "no server holds {}: {watcher}; start `quiver serve` (or `quiver demo`) \
                 there, or pass --server URL",
                data_dir.display()
            )
        })
    }
}

/// A Flight SQL server serving a pipeline's engine.
pub struct RunningServer {
    pub url: String,
    /// Its queries' counts and durations, for `/metrics`.
    pub query_stats: Arc<crate::flight::stats::QueryStats>,
    /// Its live tails, for `/metrics`.
    pub tail_stats: Arc<crate::flight::tail::TailStats>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
    advert: PathBuf,
}

impl RunningServer {
    /// Stops accepting, gives running calls a moment to finish, and removes
    /// the advert.
    pub async fn stop(self) -> anyhow::Result<()> {
        const DRAIN_MAX: Duration = Duration::from_secs(10);
        let _ = std::fs::remove_file(&self.advert);
        let _ = self.stop.send(());
        let mut task = self.task;
        match tokio::time::timeout(DRAIN_MAX, &mut task).await {
            Ok(result) => result?.context("the Flight SQL server failed")?,
            Err(_) => {
                tracing::warn!(
                    "Flight SQL calls still running after {DRAIN_MAX:?}; cutting them off"
                );
                task.abort();
            }
        }
        Ok(())
    }
}

pub struct Pipeline {
    pub store: Arc<Store>,
    pub logger: Logger,
    pub engine: QueryEngine,
    /// Samples the pipeline for `system.health`; [`Pipeline::start_health`]
    /// makes it sample on its own and alert.
    pub health: Arc<HealthMonitor>,
    /// Reloads metrics.yaml and sql/analysis/ on every edit.
    reloader: JoinHandle<()>,
    health_task: Option<JoinHandle<()>>,
}

impl Pipeline {
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let store_config = config.store_config();
        let (store, sink) = tokio::task::spawn_blocking(move || Store::open(store_config))
            .await?
            .context("opening the data dir")?;
        let store = Arc::new(store);
        let logger = Logger::start(config.logger_config(), sink)?;
        let engine = QueryEngine::new(store.clone(), Some(logger.clone()), &config.query_config())?;
        let definitions = Arc::new(DefinitionsStatus::default());
        let health = HealthMonitor::new(
            config.health.clone(),
            config.lake.roll_interval,
            HealthSources {
                logger: Some(logger.clone()),
                store: store.clone(),
                queries: OnceLock::new(),
                definitions: definitions.clone(),
            },
        );
        let mut pipeline = Self {
            store,
            logger,
            engine,
            health,
            reloader: tokio::spawn(async {}),
            health_task: None,
        };
        if let Err(e) = super::health::register(&pipeline.engine, &pipeline.health) {
            pipeline.close().await?;
            return Err(anyhow::Error::new(e).context("registering system.health"));
        }
        match super::reload::start(
            pipeline.engine.clone(),
            config.definition_paths(),
            pipeline.store.data_dir.clone(),
            config.metrics.reload_interval,
            definitions,
        )
        .await
        {
            Ok(reloader) => pipeline.reloader = reloader,
            Err(e) => {
                pipeline.close().await?;
                return Err(e.context("loading metrics.yaml and sql/analysis/"));
            }
        };
        Ok(pipeline)
    }

    /// Makes the health monitor sample every `health.interval` and put each
    /// change of state into the alert outbox of `alerts` (if receivers are
    /// configured); it stops when the pipeline closes.
    pub fn start_health(&mut self, alerts: Option<&super::alerts::DeliveryWorker>) {
        if self.health_task.is_none() {
            let outbox = alerts.map(|a| a.outbox());
            self.health_task = Some(self.health.clone().run(outbox));
        }
    }

    /// Starts the Flight SQL server on the configured address.
    pub async fn start_flight(&self, config: &Config) -> anyhow::Result<RunningServer> {
        let flight = config.flight_config();
        let server = FlightServer::bind(&flight, self.engine.clone(), self.logger.clone()).await?;
        let addr = server.local_addr();
        let query_stats = server.query_stats();
        self.health.attach_queries(query_stats.clone());
        let tail_stats = server.tail_stats();
        let host = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        let scheme = if flight.tls.is_some() {
            "grpc+tls"
        } else {
            "grpc"
        };
        let url = format!("{scheme}://{host}");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let advert = Layout::new(&self.store.data_dir).advert();
        let text = serde_json::to_string(&Advert {
            url: url.clone(),
            pid: std::process::id(),
        })?;
        std::fs::write(&advert, text).with_context(|| format!("writing {}", advert.display()))?;
        Ok(RunningServer {
            url,
            query_stats,
            tail_stats,
            stop,
            task,
            advert,
        })
    }

    /// Starts `/metrics` when `[prometheus]` enables it, and says where.
    pub async fn start_prometheus(
        &self,
        config: &Config,
        server: &RunningServer,
        alerts: Option<&super::alerts::DeliveryWorker>,
    ) -> anyhow::Result<Option<super::prometheus::Exporter>> {
        if !config.prometheus.enabled {
            return Ok(None);
        }
        let sources = super::prometheus::Sources {
            logger: self.logger.clone(),
            store: self.store.clone(),
            queries: server.query_stats.clone(),
            tails: server.tail_stats.clone(),
            alerts: alerts.map(|a| a.stats()),
            health: Some(self.health.clone()),
        };
        let exporter =
            super::prometheus::Exporter::start(config.prometheus.listen, sources).await?;
        println!("  Prometheus on http://{}/metrics", exporter.addr);
        Ok(Some(exporter))
    }

    /// Starts delivering alerts from the outbox when `[alerts]` has
    /// receivers; its [`alerts::DeliveryWorker::outbox`] is where producers
    /// in this process enqueue, its `stats()` the counts for `/metrics`.
    ///
    /// [`alerts::DeliveryWorker::outbox`]: super::alerts::DeliveryWorker::outbox
    pub fn start_alerts(
        &self,
        config: &Config,
    ) -> anyhow::Result<Option<super::alerts::DeliveryWorker>> {
        if config.alerts.receivers.is_empty() {
            return Ok(None);
        }
        let worker = super::alerts::DeliveryWorker::start(&self.store.data_dir, &config.alerts)?;
        println!("  Alerts to {} receiver(s)", config.alerts.receivers.len());
        Ok(Some(worker))
    }

    /// Flushes and closes the logger, then the store (the lake rolls what is
    /// pending, so the lake is complete for other readers).
    pub async fn close(self) -> anyhow::Result<()> {
        let Pipeline {
            store,
            logger,
            engine,
            health,
            reloader,
            health_task,
        } = self;
        reloader.abort();
        let _ = reloader.await;
        if let Some(task) = health_task {
            task.abort();
            let _ = task.await;
        }
        // The monitor (and the engine's system.health) hold the store.
        drop(health);
        drop(engine);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            logger.close().context("closing the logger")?;
            drop(logger);
            // Queries that were running when the server stopped may hold the
            // store a moment longer while their tasks wind down.
            let waited = Instant::now();
            let mut store = store;
            loop {
                match Arc::try_unwrap(store) {
                    Ok(store) => {
                        store.close().context("closing the store")?;
                        break;
                    }
                    Err(shared) if waited.elapsed() < Duration::from_secs(10) => {
                        store = shared;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => {
                        tracing::warn!(
                            "the store is still in use; the WAL has every event and the next start replays it"
                        );
                        break;
                    }
                }
            }
            Ok(())
        })
        .await?
    }
}

/// Resolves when Ctrl-C or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
