//! `quiver council [--date D] [--json]`: the day's verified council summary
//! (the `[council]` models, or the built-in analysts and judge), with every
//! dropped claim and its reason, the analysts' part and the token tally;
//! `quiver council packet [--date D]`: the packet the analysts read.

use std::io::Write;

use anyhow::Context;
use chrono::NaiveDate;

use crate::app::{Load, Session, council};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub day: Day,
    /// The outcome as JSON (claims, verified, dropped with reasons, summary,
    /// markdown), for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct Day {
    /// The day, YYYY-MM-DD (UTC; default yesterday, a finished day).
    #[arg(long, global = true)]
    pub date: Option<String>,
    /// Read through this Flight SQL server instead of the data dir.
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The day's metrics packet as compact JSON: metric values with units
    /// and dimensions, insights and alerts, the only input analysts see.
    Packet,
}

impl Day {
    pub fn parse(&self) -> anyhow::Result<NaiveDate> {
        match &self.date {
            Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .with_context(|| format!("--date {text:?}: expected YYYY-MM-DD")),
            None => chrono::Utc::now()
                .date_naive()
                .pred_opt()
                .context("no day before today"),
        }
    }
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let day = args.day.parse()?;
    let mut session = Session::open(&config, args.day.server.as_deref(), Load::Skip).await?;
    let packet = council::packet(&mut session, day).await;
    session.close().await?;
    let packet = packet?;
    let mut out = std::io::stdout().lock();
    if let Some(Command::Packet) = args.command {
        writeln!(out, "{}", serde_json::to_string(&packet)?)?;
        if packet.metrics.is_empty() {
            eprintln!(
                "note: no metric values for {day}; `quiver metrics compute --date {day}` stores them"
            );
        }
        return Ok(());
    }
    anyhow::ensure!(
        !packet.metrics.is_empty(),
        "no metric values for {day}: the council reads what `quiver metrics compute --date {day}` stores; run it first"
    );
    let council_config = config.council.clone();
    let run = tokio::task::spawn_blocking(move || council::run(&packet, &council_config))
        .await
        .context("the council panicked")?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&run)?)?;
        return Ok(());
    }
    let o = &run.outcome;
    write!(out, "{}", o.markdown)?;
    writeln!(out, "\n## The council\n")?;
    for a in &run.analysts {
        match &a.error {
            None => writeln!(
                out,
                "- analyst {} ({}): {} claims",
                a.name, a.source, a.claims
            )?,
            Some(e) => writeln!(out, "- analyst {} ({}): no claims, {e}", a.name, a.source)?,
        }
    }
    writeln!(out, "- judge: {}", run.judge)?;
    writeln!(
        out,
        "- {} claims: {} verified, {} dropped; {} summary sentences, {} dropped",
        o.claims,
        o.verified.len(),
        o.dropped.len(),
        o.summary.len(),
        o.dropped_sentences.len()
    )?;
    if run.tally.requests > 0 {
        let t = &run.tally;
        writeln!(
            out,
            "- {} requests ({} attempts), {} prompt + {} completion tokens, cost {:.4}",
            t.requests, t.attempts, t.prompt_tokens, t.completion_tokens, t.cost
        )?;
    }
    Ok(())
}
