//! `quiver repair lake`: rebuild the lake's commit log from the files on disk,
//! for a lake that refuses to start (its log missing, unreadable or stale).

use anyhow::Context;

use crate::config::Config;
use crate::store::{Layout, fsio, lake, lock_data_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Rebuild lake/_log from the Parquet files on disk. Unreadable files and
    /// compaction inputs go to quarantine/ (nothing is deleted); the old log is
    /// moved there too. The next start writes back from the hot store any rows
    /// the rebuilt lake lacks.
    Lake {
        /// Show what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let What::Lake { dry_run } = args.what;
    let dir = config.data_dir.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let dir =
            std::fs::canonicalize(&dir).with_context(|| format!("data dir {}", dir.display()))?;
        let _lock = lock_data_dir(&dir)?;
        let report = lake::repair(
            &Layout::new(&dir).lake(),
            &Layout::new(&dir).quarantine(),
            fsio::std_fs(),
            dry_run,
        )
        .context("repairing the lake")?;
        let verb = if report.dry_run { "would keep" } else { "kept" };
        println!(
            "{verb} {} files ({} rows); lake_seq {}; commit log version {}",
            report.files_kept, report.rows_kept, report.lake_seq, report.version
        );
        let moved = if report.dry_run {
            "would move"
        } else {
            "moved"
        };
        for (path, why) in &report.quarantined {
            println!("{moved} to quarantine: {} ({why})", path.display());
        }
        if let Some(old) = &report.old_log_moved_to {
            println!("the old commit log is in {}", old.display());
        }
        if report.temps_removed > 0 {
            println!(
                "{} orphan temp files {}",
                report.temps_removed,
                if report.dry_run {
                    "would be removed"
                } else {
                    "removed"
                }
            );
        }
        Ok(())
    })
    .await?
}
