//! `quiver compact`: merge every lake partition's files into one, atomically.

use anyhow::Context;

use crate::config::Config;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Merge partitions holding at least this many files.
    #[arg(long, default_value_t = 2)]
    pub min_files: usize,
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let store_config = config.store_config();
    let min_files = args.min_files;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let (store, sink) = Store::open(store_config).context("opening the data dir")?;
        drop(sink);
        let before = store.stats().lake_files;
        let merged = store.compact(min_files).context("compacting the lake")?;
        let after = store.stats().lake_files;
        println!("compacted {merged} partitions: {before} files -> {after} files");
        store.close()?;
        Ok(())
    })
    .await?
}
