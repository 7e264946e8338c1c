//! `quiver report [--date D] [--out FILE]`: the day's report as one
//! self-contained HTML file (inline SVG charts, no script, no network),
//! with the verified council summary. For cron: the day defaults to
//! yesterday, the file is written whole or not at all, and the exit code is
//! 0 when it was written, 1 when it could not be (no metric values for the
//! day, a query or the write failed).

use std::path::PathBuf;

use anyhow::Context;

use crate::app::{Load, Session, council, report};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The day, YYYY-MM-DD (UTC; default yesterday).
    #[arg(long)]
    pub date: Option<String>,
    /// Where to write it (default quiver-report-DAY.html here).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Read through this Flight SQL server instead of the data dir.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let day = match &args.date {
        Some(text) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .with_context(|| format!("--date {text:?}: expected YYYY-MM-DD"))?,
        None => report::yesterday(),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("quiver-report-{day}.html")));
    let gates = config.definition_paths().gates()?;
    let mut session = Session::open(&config, args.server.as_deref(), Load::Skip).await?;
    let gathered = async {
        let packet = council::packet(&mut session, day).await?;
        anyhow::ensure!(
            !packet.metrics.is_empty(),
            "no metric values for {day}: the report reads what `quiver metrics compute --date {day}` stores; run it first"
        );
        report::gather(&mut session, packet, gates).await
    }
    .await;
    session.close().await?;
    let data = gathered?;
    let council_config = config.council.clone();
    let packet = data.packet.clone();
    let run = tokio::task::spawn_blocking(move || council::run(&packet, &council_config))
        .await
        .context("the council panicked")?;
    let html = report::html(&data, &run);
    // Whole or not at all: a cron job never leaves half a report.
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, &html).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("renaming to {}", out.display()))?;
    println!(
        "{}: report for {day} ({} bytes; {} of {} council claims verified)",
        out.display(),
        html.len(),
        run.outcome.verified.len(),
        run.outcome.claims
    );
    Ok(())
}
