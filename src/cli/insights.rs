//! `quiver insights [--date D]`: the day's findings, ranked, each quoting
//! the query values it rests on (see [`crate::analytics::insights`]).

use std::io::Write;

use anyhow::Context;
use chrono::NaiveDate;

use crate::analytics::insights::findings;
use crate::app::{Load, Session, insights};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The day, YYYY-MM-DD (UTC; default today).
    #[arg(long)]
    pub date: Option<String>,
    /// Also print the queries the findings rest on.
    #[arg(long)]
    pub sql: bool,
    /// Query a running Flight SQL server instead of the data dir.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let day = match &args.date {
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .with_context(|| format!("--date {text:?}: expected YYYY-MM-DD"))?,
        None => chrono::Utc::now().date_naive(),
    };
    let queries = insights::queries(day);
    let mut session = Session::open(&config, args.server.as_deref(), Load::Skip).await?;
    let results = insights::run(&mut session, &queries).await;
    session.close().await?;
    let found = findings(&results?);
    let mut out = std::io::stdout().lock();
    if found.is_empty() {
        writeln!(
            out,
            "No findings for {day}: no resolved blocks, closed trades, traces or labelled \
             predictions that day."
        )?;
    } else {
        writeln!(
            out,
            "Insights for {day}, warnings first, then by P&L at stake:"
        )?;
        for (rank, f) in found.iter().enumerate() {
            writeln!(out, "#{} [{}] {}", rank + 1, f.severity.as_str(), f.text)?;
            writeln!(out, "   rests on: {}", f.rests_on.join(", "))?;
        }
    }
    if args.sql {
        writeln!(out, "\nQueries:")?;
        for q in &queries {
            let values: Vec<String> = q
                .params
                .iter()
                .enumerate()
                .map(|(i, v)| format!("${} = {v}", i + 1))
                .collect();
            writeln!(out, "-- {} ({})\n{};", q.name, values.join(", "), q.sql)?;
        }
    }
    Ok(())
}
