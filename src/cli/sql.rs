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

async fn query_server(config: &Config, url: &str, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let flight = config.flight_config();
    let mut client = Client::connect(
        url,
        flight.credentials.as_ref(),
        config.flight.tls_cert.as_deref(),
    )
    .await?;
    Ok(client.query(sql).await?)
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
    if let Some(url) = server {
        return query_server_all(config, url, sqls).await;
    }
    let store_config = config.store_config();
    // Opening recovers the dir (WAL replay) if no server holds it; if one does,
    // the query goes through that server.
    let opened = tokio::task::spawn_blocking(move || Store::open(store_config)).await?;
    let (store, sink) = match opened {
        Ok(opened) => opened,
        Err(e @ StoreError::DataDirInUse { .. }) => {
            let Some(advert) = Advert::read(&config.data_dir) else {
                return Err(anyhow::Error::new(e).context("opening the data dir"));
            };
            return query_server_all(config, &advert.url, sqls)
                .await
                .with_context(|| {
                    format!(
                        "querying the server that holds the data dir ({})",
                        advert.url
                    )
                });
        }
        Err(e) => return Err(anyhow::Error::new(e).context("opening the data dir")),
    };
    drop(sink);
    let store = Arc::new(store);
    let engine = QueryEngine::new(store.clone(), None, &config.query_config())?;
    let mut results = Vec::with_capacity(sqls.len());
    for sql in sqls {
        match engine.query(sql).await {
            Ok(batches) => results.push(batches),
            Err(e) => {
                drop(engine);
                return Err(e.into());
            }
        }
    }
    drop(engine);
    if let Ok(store) = Arc::try_unwrap(store) {
        tokio::task::spawn_blocking(move || store.close()).await??;
    }
    Ok(results)
}

async fn query_server_all(
    config: &Config,
    url: &str,
    sqls: &[&str],
) -> anyhow::Result<Vec<Vec<RecordBatch>>> {
    let mut results = Vec::with_capacity(sqls.len());
    for sql in sqls {
        results.push(query_server(config, url, sql).await?);
    }
    Ok(results)
}
