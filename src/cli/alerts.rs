//! `quiver alerts test|list`: send a test message through a receiver now;
//! list the outbox's recent messages and their state.

use anyhow::bail;

use crate::app::alerts::{self, Response};
use crate::config::Config;
use crate::store::outbox::OutboxDb;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Send a test message through RECEIVER (a `[[alerts.receivers]]` name)
    /// now, outside the outbox; exit 1 unless it was accepted.
    Test { receiver: String },
    /// The outbox's most recent messages: receiver, rule, state, attempts.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Test { receiver } => {
            let name = receiver.clone();
            let response =
                tokio::task::spawn_blocking(move || alerts::send_test(&config, &name)).await??;
            match response {
                Response::Delivered { status } => {
                    println!("receiver {receiver}: sent (HTTP {status})");
                    Ok(())
                }
                Response::Transient { status, error, .. } => match status {
                    Some(status) => {
                        bail!("receiver {receiver}: failed with HTTP {status}: {error}")
                    }
                    None => bail!("receiver {receiver}: failed: {error}"),
                },
                Response::Permanent { status, error } => {
                    bail!("receiver {receiver}: failed with HTTP {status}: {error}")
                }
            }
        }
        Command::List { limit } => {
            let path = crate::store::Layout::new(&config.data_dir).alerts();
            let limit = *limit;
            let rows = tokio::task::spawn_blocking(move || {
                OutboxDb::open(&path).and_then(|db| db.recent(limit))
            })
            .await??;
            println!(
                "{:>6}  {:<12} {:<24} {:<9} {:<8} {:>3}  {:<20} dimensions",
                "id", "receiver", "rule", "severity", "state", "try", "enqueued"
            );
            for r in rows {
                let at = chrono::DateTime::from_timestamp_micros(r.enqueued_us)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                println!(
                    "{:>6}  {:<12} {:<24} {:<9} {:<8} {:>3}  {:<20} {}",
                    r.id, r.receiver, r.rule, r.severity, r.state, r.attempts, at, r.dimensions
                );
            }
            Ok(())
        }
    }
}
