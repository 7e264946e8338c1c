//! `quiver serve`: the pipeline without the demo bot. It owns the data dir (and
//! so DuckDB's hot store) until Ctrl-C or SIGTERM, then flushes and exits.

use std::net::SocketAddr;
use std::time::Duration;

use crate::app::{Pipeline, shutdown_signal};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Flight SQL listen address (default 127.0.0.1:50051).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

pub async fn run(config: Config, _args: &Args) -> anyhow::Result<()> {
    let mut pipeline = Pipeline::open(&config).await?;
    println!(
        "quiver serve: data in {}; Ctrl-C or SIGTERM stops",
        pipeline.store.data_dir.display()
    );
    // Before the server advertises itself: a receiver's missing secret
    // stops the start with nothing to clean up.
    let alerts = pipeline.start_alerts(&config)?;
    pipeline.start_health(alerts.as_ref());
    let server = pipeline.start_flight(&config).await?;
    println!("  Flight SQL on {}", server.url);
    let exporter = pipeline
        .start_prometheus(&config, &server, alerts.as_ref())
        .await?;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut status = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = status.tick() => {
                let s = pipeline.store.stats();
                tracing::info!(wal_seq = s.wal_seq, hot_seq = s.hot_seq, lake_seq = s.lake_seq, lake_files = s.lake_files, "status");
            }
        }
    }
    server.stop().await?;
    if let Some(exporter) = exporter {
        exporter.stop().await?;
    }
    if let Some(alerts) = alerts {
        tokio::task::spawn_blocking(move || alerts.stop()).await?;
    }
    pipeline.logger.flush().await?;
    pipeline.close().await
}
