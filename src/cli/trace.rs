//! `quiver trace TRACE_ID` (one decision's timeline, bottlenecks and a
//! recommendation) and `quiver trace --stats [--since T]` (per step: mean,
//! p50, p95, p99; the slowest traces). Through the query engine, or the
//! server that holds the data dir. The queries are [`crate::app::trace`]'s;
//! this prints them.

use std::io::Write;

use anyhow::bail;

use super::journal::parse_time;
use super::output::{self, Format};
use crate::analytics::trace::BOTTLENECK_SHARE;
use crate::app::rows::check_id;
use crate::app::trace::{Trace, stats, trace};
use crate::app::{Load, Session};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trace to show (`trace_id` of `events.trace_steps`).
    #[arg(required_unless_present = "stats", conflicts_with = "stats")]
    pub trace_id: Option<String>,
    /// Per step over all traces (or those since --since): mean, p50, p95,
    /// p99; and the slowest traces.
    #[arg(long)]
    pub stats: bool,
    /// With --stats: only traces from this time on (RFC 3339 or YYYY-MM-DD).
    #[arg(long, requires = "stats")]
    pub since: Option<String>,
    /// With --stats: how many of the slowest traces to list.
    #[arg(long, default_value_t = 10, requires = "stats")]
    pub slowest: u32,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Query a running Flight SQL server instead of the data dir.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    if args.stats {
        return print_stats(&config, args).await;
    }
    let Some(trace_id) = args.trace_id.as_deref() else {
        bail!("give a TRACE_ID or --stats");
    };
    // Checked before the data dir is opened, as well as where it is bound.
    check_id("trace id", trace_id)?;
    let mut session = Session::open(&config, args.server.as_deref(), Load::Skip).await?;
    let result = trace(&mut session, trace_id).await;
    session.close().await?;
    print_trace(&result?)
}

fn print_trace(trace: &Trace) -> anyhow::Result<()> {
    let Trace {
        trace_id,
        signal_id: signal,
        symbol,
        ts,
        p95_ms: p95,
        report,
    } = trace;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "trace {trace_id}  signal {signal}  {symbol}  {ts}  total {:.2} ms in {} steps",
        report.total_ms,
        report.timeline.len()
    )?;
    writeln!(
        out,
        "{:>10}  {:<20} {:>11} {:>7}  {:<10} {:>12}",
        "offset_ms", "step", "duration_ms", "share", "result", "p95_that_day"
    )?;
    for row in &report.timeline {
        let p95 = p95
            .get(&row.step)
            .map_or_else(String::new, |p| format!("{p:.2}"));
        writeln!(
            out,
            "{:>10.2}  {:<20} {:>11.2} {:>6.1}%  {:<10} {:>12}{}",
            row.offset_ms,
            row.step,
            row.duration_ms,
            row.share * 100.0,
            row.result,
            p95,
            if row.bottleneck {
                "  <- bottleneck"
            } else {
                ""
            }
        )?;
    }
    let bottlenecks: Vec<String> = report
        .bottlenecks()
        .map(|r| {
            format!(
                "{} {:.2} ms ({:.1}%)",
                r.step,
                r.duration_ms,
                r.share * 100.0
            )
        })
        .collect();
    writeln!(
        out,
        "bottlenecks (over {:.0}% of the total): {}",
        BOTTLENECK_SHARE * 100.0,
        if bottlenecks.is_empty() {
            "none".to_string()
        } else {
            bottlenecks.join(", ")
        }
    )?;
    writeln!(out, "recommendation: {}", report.recommendation)?;
    Ok(())
}

async fn print_stats(config: &Config, args: &Args) -> anyhow::Result<()> {
    let since_us = match &args.since {
        None => None,
        Some(text) => Some(parse_time(text)?.0),
    };
    // analysis.trace_totals needs the definitions.
    let mut session = Session::open(config, args.server.as_deref(), Load::Required).await?;
    let result = stats(&mut session, since_us, args.slowest).await;
    session.close().await?;
    let stats = result?;
    let mut out = std::io::stdout();
    writeln!(out, "Per step:")?;
    output::print(&stats.per_step, args.format)?;
    writeln!(out, "The {} slowest traces:", args.slowest)?;
    output::print(&stats.slowest, args.format)
}
