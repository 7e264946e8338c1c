//! A session: where queries go. Either a query engine over the data dir this
//! process opened, or a Flight SQL server: `--server URL`, or the server of a
//! running `serve` or `demo` that holds the data dir (found by its advert).

use std::sync::Arc;

use anyhow::Context;
use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;

use super::Advert;
use crate::config::Config;
use crate::flight::client::Client;
use crate::query::QueryEngine;
use crate::store::{Store, StoreError};

/// What a local session does with the metric and analysis definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Do not load them.
    Skip,
    /// Load them; if they do not compile, warn and go on without them.
    BestEffort,
    /// Load them; if they do not compile, fail.
    Required,
}

/// Where queries go: a query engine over the data dir, or a server.
pub enum Session {
    Local {
        store: Arc<Store>,
        engine: QueryEngine,
    },
    Remote {
        client: Client,
        url: String,
    },
}

impl Session {
    /// Opens the data dir, or connects to `server`, or (when a running
    /// `serve` or `demo` holds the data dir) to that process's server.
    pub async fn open(
        config: &Config,
        server: Option<&str>,
        definitions: Load,
    ) -> anyhow::Result<Session> {
        if let Some(url) = server {
            return Session::connect(config, url).await;
        }
        let store_config = config.store_config();
        // Opening recovers the dir (WAL replay) if no server holds it; if one
        // does, queries go through that server.
        let opened = tokio::task::spawn_blocking(move || Store::open(store_config)).await?;
        let (store, sink) = match opened {
            Ok(opened) => opened,
            Err(e @ StoreError::DataDirInUse { .. }) => {
                let Some(advert) = Advert::read(&config.data_dir) else {
                    return Err(anyhow::Error::new(e).context("opening the data dir"));
                };
                return Session::connect(config, &advert.url)
                    .await
                    .with_context(|| {
                        format!(
                            "connecting to the server that holds the data dir ({})",
                            advert.url
                        )
                    });
            }
            Err(e) => return Err(anyhow::Error::new(e).context("opening the data dir")),
        };
        drop(sink);
        let store = Arc::new(store);
        let engine = QueryEngine::new(store.clone(), None, &config.query_config())?;
        if definitions == Load::Skip {
            return Ok(Session::Local { store, engine });
        }
        let paths = config.definition_paths();
        let installed = tokio::task::spawn_blocking({
            let engine = engine.clone();
            move || {
                paths.prepare()?;
                let definitions = crate::metrics::Definitions::load(&paths)?;
                engine.install_definitions(definitions)
            }
        })
        .await?;
        if let Err(e) = installed {
            match definitions {
                Load::Required => {
                    let session = Session::Local { store, engine };
                    session.close().await?;
                    return Err(anyhow::Error::new(e).context("loading the metric definitions"));
                }
                Load::BestEffort | Load::Skip => {
                    tracing::warn!("metrics and analyses not loaded: {e}");
                }
            }
        }
        Ok(Session::Local { store, engine })
    }

    async fn connect(config: &Config, url: &str) -> anyhow::Result<Session> {
        let flight = config.flight_config();
        let client = Client::connect(
            url,
            flight.credentials.as_ref(),
            config.flight.tls_cert.as_deref(),
        )
        .await?;
        Ok(Session::Remote {
            client,
            url: url.to_string(),
        })
    }

    /// The server's URL, if queries go to one.
    pub fn server_url(&self) -> Option<&str> {
        match self {
            Session::Local { .. } => None,
            Session::Remote { url, .. } => Some(url),
        }
    }

    pub async fn query(&mut self, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
        self.query_with(sql, Vec::new()).await
    }

    /// Runs `sql` with its parameters (`$1`, `$2`, ...) bound to `params`:
    /// DataFusion's binding locally, a prepared statement through a server.
    /// Values are never pasted into the text.
    pub async fn query_with(
        &mut self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> anyhow::Result<Vec<RecordBatch>> {
        match self {
            Session::Local { engine, .. } => Ok(engine.query_with(sql, params).await?),
            Session::Remote { client, url } => client
                .query_with(sql, params)
                .await
                .with_context(|| format!("querying {url}")),
        }
    }

    /// Runs `sqls`, up to `concurrency` at a time on a local engine (one at a
    /// time through a server, which has its own limit on running queries),
    /// calling `done` as each finishes. Results come back in order.
    pub async fn query_all(
        &mut self,
        sqls: Vec<(String, Vec<ScalarValue>)>,
        concurrency: usize,
        done: impl Fn(),
    ) -> Vec<anyhow::Result<Vec<RecordBatch>>> {
        use futures::StreamExt;
        match self {
            Session::Local { engine, .. } => {
                let tasks = sqls.into_iter().map(|(sql, params)| {
                    let engine = engine.clone();
                    // A task each, so the queries' own work spreads over the
                    // runtime's threads.
                    tokio::spawn(async move { engine.query_with(&sql, params).await })
                });
                futures::stream::iter(tasks)
                    .buffered(concurrency.max(1))
                    .map(|joined| {
                        done();
                        match joined {
                            Ok(result) => result.map_err(anyhow::Error::from),
                            Err(e) => Err(anyhow::Error::from(e)),
                        }
                    })
                    .collect()
                    .await
            }
            Session::Remote { .. } => {
                let mut results = Vec::with_capacity(sqls.len());
                for (sql, params) in sqls {
                    results.push(self.query_with(&sql, params).await);
                    done();
                }
                results
            }
        }
    }

    /// Closes the store if this session opened it.
    pub async fn close(self) -> anyhow::Result<()> {
        if let Session::Local { store, engine } = self {
            drop(engine);
            if let Ok(store) = Arc::try_unwrap(store) {
                tokio::task::spawn_blocking(move || store.close()).await??;
            }
        }
        Ok(())
    }
}
