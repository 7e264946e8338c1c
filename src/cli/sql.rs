//! `quiver sql "SQL"`: one read-only query against a data dir.

use std::sync::Arc;

use anyhow::Context;

use super::output::{self, Format};
use crate::config::Config;
use crate::query::QueryEngine;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The query (read-only: no DDL, DML or statements).
    pub sql: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let store_config = config.store_config();
    // Opening recovers the dir (WAL replay) if no server holds it; if one does,
    // this fails at once with a clear error rather than waiting on DuckDB's lock.
    let (store, sink) = tokio::task::spawn_blocking(move || Store::open(store_config))
        .await?
        .context("opening the data dir")?;
    drop(sink);
    let store = Arc::new(store);
    let engine = QueryEngine::new(store.clone(), None, &config.query_config())?;
    let result = engine.query(&args.sql).await;
    drop(engine);
    let batches = result?;
    output::print(&batches, args.format)?;
    if let Ok(store) = Arc::try_unwrap(store) {
        tokio::task::spawn_blocking(move || store.close()).await??;
    }
    Ok(())
}
