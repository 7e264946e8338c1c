//! `quiver sql "SQL"`: one read-only query, against a data dir or a server.
//!
//! With `--server URL` the query goes to that Flight SQL server. Without it,
//! Quiver opens the data dir itself; if a running `serve` or `demo` holds the
//! dir, the query goes through that process's server instead (it advertises
//! its URL in the data dir).

use std::sync::Arc;

use anyhow::Context;
use arrow::array::RecordBatch;

use super::output::{self, Format};
use super::pipeline::Advert;
use crate::config::Config;
use crate::flight::client::Client;
use crate::query::QueryEngine;
use crate::store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The query (read-only: no DDL, DML or statements).
    pub sql: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Query a running Flight SQL server: grpc://HOST:PORT or grpc+tls://HOST:PORT.
    /// Credentials come from the config's [flight] username and password.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let mut results = run_queries(&config, args.server.as_deref(), &[args.sql.as_str()]).await?;
    output::print(&results.remove(0), args.format)
}

/// Runs read-only queries against `server`, or the data dir, or (when a
/// running `serve` or `demo` holds the data dir) that process's server.
pub async fn run_queries(
    config: &Config,
    server: Option<&str>,
    sqls: &[&str],
) -> anyhow::Result<Vec<Vec<RecordBatch>>> {
    // Compiling the definitions takes a moment (~170 ms in a release build);
    // a query that cannot name the metrics or analysis schemas goes without,
    // and one that names them fails if they do not load (saying why, rather
    // than that the table does not exist).
    let mentions = |names: &[&str]| {
        sqls.iter().any(|s| {
            let s = s.to_ascii_lowercase();
            names.iter().any(|schema| s.contains(schema))
        })
    };
    let definitions = if mentions(&["metrics", "analysis"]) {
        Definitions::Required
    } else if mentions(&["information_schema"]) {
        Definitions::BestEffort
    } else {
        Definitions::Skip
    };
    let mut session = Session::open(config, server, definitions).await?;
    let mut results = Vec::with_capacity(sqls.len());
    for sql in sqls {
        match session.query(sql).await {
            Ok(batches) => results.push(batches),
            Err(e) => {
                session.close().await?;
                return Err(e);
            }
        }
    }
    session.close().await?;
    Ok(results)
}

/// What a local session does with `metrics.yaml` and `sql/analysis/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definitions {
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
        definitions: Definitions,
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
        if definitions == Definitions::Skip {
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
                Definitions::Required => {
                    let session = Session::Local { store, engine };
                    session.close().await?;
                    return Err(anyhow::Error::new(e).context("loading the metric definitions"));
                }
                Definitions::BestEffort | Definitions::Skip => {
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
        match self {
            Session::Local { engine, .. } => Ok(engine.query(sql).await?),
            Session::Remote { client, url } => client
                .query(sql)
                .await
                .with_context(|| format!("querying {url}")),
        }
    }

    /// Runs `sqls`, up to `concurrency` at a time on a local engine (one at a
    /// time through a server, which has its own limit on running queries),
    /// calling `done` as each finishes. Results come back in order.
    pub async fn query_all(
        &mut self,
        sqls: Vec<String>,
        concurrency: usize,
        done: impl Fn(),
    ) -> Vec<anyhow::Result<Vec<RecordBatch>>> {
        use futures::StreamExt;
        match self {
            Session::Local { engine, .. } => {
                let tasks = sqls.into_iter().map(|sql| {
                    let engine = engine.clone();
                    // A task each, so the queries' own work spreads over the
                    // runtime's threads.
                    tokio::spawn(async move { engine.query(&sql).await })
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
                for sql in &sqls {
                    results.push(self.query(sql).await);
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
