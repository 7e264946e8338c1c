//! Opening and closing the whole pipeline (store, logger, query engine).

use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::ingest::Logger;
use crate::query::QueryEngine;
use crate::store::Store;

pub struct Pipeline {
    pub store: Arc<Store>,
    pub logger: Logger,
    pub engine: QueryEngine,
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
        Ok(Self {
            store,
            logger,
            engine,
        })
    }

    /// Flushes and closes the logger, then the store (the lake rolls what is
    /// pending, so the lake is complete for other readers).
    pub async fn close(self) -> anyhow::Result<()> {
        let Pipeline {
            store,
            logger,
            engine,
        } = self;
        drop(engine);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            logger.close().context("closing the logger")?;
            drop(logger);
            if let Ok(store) = Arc::try_unwrap(store) {
                store.close().context("closing the store")?;
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
