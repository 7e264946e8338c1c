//! `quiver trace TRACE_ID` (one decision's timeline, bottlenecks and a
//! recommendation) and `quiver trace --stats [--since T]` (per step: mean,
//! p50, p95, p99; the slowest traces). Through the query engine, or the
//! server that holds the data dir.

use std::collections::HashMap;
use std::io::Write;

use anyhow::bail;
use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int32Type};
use datafusion::common::ScalarValue;

use super::journal::parse_time;
use super::output::{self, Format};
use super::sql::run_bound;
use crate::analytics::trace::{BOTTLENECK_SHARE, Step, TraceReport};
use crate::app::rows::{check_id, column, floats, strings};
use crate::config::Config;
use crate::query::param;

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
    let server = args.server.as_deref();
    if args.stats {
        return stats(&config, args).await;
    }
    let Some(trace_id) = args.trace_id.as_deref() else {
        bail!("give a TRACE_ID or --stats");
    };
    check_id("trace id", trace_id)?;
    // The p95s are over the trace's own day, so the comparison stays cheap
    // and current.
    let steps_sql = "SELECT seq, step, start_ms, duration_ms, result, signal_id, symbol, \
                CAST(ts AS VARCHAR) AS ts, CAST(date AS VARCHAR) AS day \
         FROM events.trace_steps WHERE trace_id = $1 ORDER BY seq";
    let p95_sql = "SELECT step, percentile_cont(duration_ms, 0.95) AS p95_ms FROM events.trace_steps \
         WHERE date IN (SELECT date FROM events.trace_steps WHERE trace_id = $1) \
         GROUP BY step";
    let id = || vec![param::text(trace_id)];
    let mut results = run_bound(&config, server, &[(steps_sql, id()), (p95_sql, id())]).await?;
    let p95_batches = results.remove(1);
    let step_batches = results.remove(0);
    let mut steps = Vec::new();
    let mut header = None;
    for batch in &step_batches {
        let seq = arrow::compute::cast(column(batch, "seq")?, &DataType::Int32)?;
        let seq = seq.as_primitive::<Int32Type>();
        let (names, results) = (strings(batch, "step")?, strings(batch, "result")?);
        let (starts, durations) = (floats(batch, "start_ms")?, floats(batch, "duration_ms")?);
        if header.is_none() && batch.num_rows() > 0 {
            header = Some((
                strings(batch, "signal_id")?.remove(0),
                strings(batch, "symbol")?.remove(0),
                strings(batch, "ts")?.remove(0),
            ));
        }
        for i in 0..batch.num_rows() {
            steps.push(Step {
                seq: seq.value(i),
                step: names[i].clone(),
                start_ms: starts[i],
                duration_ms: durations[i],
                result: results[i].clone(),
            });
        }
    }
    let Some((signal, symbol, ts)) = header else {
        bail!("no trace {trace_id} in events.trace_steps");
    };
    let mut p95 = HashMap::new();
    for batch in &p95_batches {
        for (step, value) in strings(batch, "step")?
            .into_iter()
            .zip(floats(batch, "p95_ms")?)
        {
            p95.insert(step, value);
        }
    }
    let report = TraceReport::new(steps, &p95);
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

async fn stats(config: &Config, args: &Args) -> anyhow::Result<()> {
    let since_us = match &args.since {
        None => None,
        Some(text) => Some(parse_time(text)?.0),
    };
    let (since, n) = match since_us {
        Some(_) => ("WHERE ts >= to_timestamp_micros($1)", "$2"),
        None => ("", "$1"),
    };
    let per_step = format!(
        "SELECT step, count(*) AS steps, avg(duration_ms) AS avg_ms, \
                percentile_cont(duration_ms, 0.5) AS p50_ms, \
                percentile_cont(duration_ms, 0.95) AS p95_ms, \
                percentile_cont(duration_ms, 0.99) AS p99_ms, max(duration_ms) AS max_ms \
         FROM events.trace_steps {since} GROUP BY step ORDER BY avg_ms DESC"
    );
    let slowest = format!(
        "SELECT trace_id, signal_id, symbol, ts, steps, total_ms, slowest_step_ms \
         FROM analysis.trace_totals {since} ORDER BY total_ms DESC, trace_id LIMIT {n}"
    );
    let since: Vec<ScalarValue> = since_us
        .map(|us| ScalarValue::Int64(Some(us)))
        .into_iter()
        .collect();
    let mut slowest_params = since.clone();
    slowest_params.push(ScalarValue::Int64(Some(i64::from(args.slowest))));
    let mut results = run_bound(
        config,
        args.server.as_deref(),
        &[(&per_step, since), (&slowest, slowest_params)],
    )
    .await?;
    let mut out = std::io::stdout();
    writeln!(out, "Per step:")?;
    output::print(&results.remove(0), args.format)?;
    writeln!(out, "The {} slowest traces:", args.slowest)?;
    output::print(&results.remove(0), args.format)
}
