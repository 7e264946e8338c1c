//! The trace report: one decision's steps, read back with the p95 of each
//! step on the trace's own day, and made into a timeline with its
//! bottlenecks by [`crate::analytics::trace`] (which is pure); and the trace
//! statistics: per step over all traces (or those since a time), and the
//! slowest traces.

use std::collections::HashMap;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type};
use datafusion::common::ScalarValue;

use super::Session;
use super::rows::{check_id, column, floats, strings};
use crate::analytics::trace::{Step, TraceReport};
use crate::query::param;

/// The steps of one trace, `$1` the trace id.
const STEPS: &str = "SELECT seq, step, start_ms, duration_ms, result, signal_id, symbol, \
            CAST(ts AS VARCHAR) AS ts, CAST(date AS VARCHAR) AS day \
     FROM events.trace_steps WHERE trace_id = $1 ORDER BY seq";

/// The p95 of each step over the days of trace `$1`: the trace's own day,
/// so the comparison stays cheap and current.
const P95: &str = "SELECT step, percentile_cont(duration_ms, 0.95) AS p95_ms FROM events.trace_steps \
     WHERE date IN (SELECT date FROM events.trace_steps WHERE trace_id = $1) \
     GROUP BY step";

/// One trace, explained.
#[derive(Debug, Clone)]
pub struct Trace {
    pub trace_id: String,
    pub signal_id: String,
    pub symbol: String,
    /// When the first step ran (as the engine prints a timestamp).
    pub ts: String,
    /// The p95 of each step on the trace's day, in ms, by step name.
    pub p95_ms: HashMap<String, f64>,
    /// The timeline, its bottlenecks and a recommendation.
    pub report: TraceReport,
}

/// The trace `trace_id`. An id that is not an id, or that names no trace,
/// is an error.
pub async fn trace(session: &mut Session, trace_id: &str) -> anyhow::Result<Trace> {
    let trace_id = check_id("trace id", trace_id)?;
    let id = || vec![param::text(trace_id)];
    let step_batches = session.query_with(STEPS, id()).await?;
    let p95_batches = session.query_with(P95, id()).await?;
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
    let Some((signal_id, symbol, ts)) = header else {
        anyhow::bail!("no trace {trace_id} in events.trace_steps");
    };
    let p95_ms = p95(&p95_batches)?;
    let report = TraceReport::new(steps, &p95_ms);
    Ok(Trace {
        trace_id: trace_id.to_string(),
        signal_id,
        symbol,
        ts,
        p95_ms,
        report,
    })
}

fn p95(batches: &[RecordBatch]) -> anyhow::Result<HashMap<String, f64>> {
    let mut p95 = HashMap::new();
    for batch in batches {
        for (step, value) in strings(batch, "step")?
            .into_iter()
            .zip(floats(batch, "p95_ms")?)
        {
            p95.insert(step, value);
        }
    }
    Ok(p95)
}

/// The trace statistics, as tables.
///
/// Kept as the engine's batches rather than decoded: they are printed as
/// they come (table, CSV or JSON), column types and all.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Per step: steps, avg_ms, p50_ms, p95_ms, p99_ms, max_ms; the slowest
    /// on average first.
    pub per_step: Vec<RecordBatch>,
    /// The `slowest` traces of `analysis.trace_totals`, the slowest first.
    pub slowest: Vec<RecordBatch>,
}

/// Per step over the traces since `since_us` (µs since the epoch; all
/// traces without it), and the `slowest` slowest of them. Reads
/// `analysis.trace_totals`, so the session needs the definitions loaded.
pub async fn stats(
    session: &mut Session,
    since_us: Option<i64>,
    slowest: u32,
) -> anyhow::Result<Stats> {
    // Only fixed text is pasted: the filter is there or not, and says which
    // parameter is the limit; the time and the limit are bound.
    let (filter, limit) = match since_us {
        Some(_) => ("WHERE ts >= to_timestamp_micros($1)", "$2"),
        None => ("", "$1"),
    };
    let per_step_sql = format!(
        "SELECT step, count(*) AS steps, avg(duration_ms) AS avg_ms, \
                percentile_cont(duration_ms, 0.5) AS p50_ms, \
                percentile_cont(duration_ms, 0.95) AS p95_ms, \
                percentile_cont(duration_ms, 0.99) AS p99_ms, max(duration_ms) AS max_ms \
         FROM events.trace_steps {filter} GROUP BY step ORDER BY avg_ms DESC"
    );
    let slowest_sql = format!(
        "SELECT trace_id, signal_id, symbol, ts, steps, total_ms, slowest_step_ms \
         FROM analysis.trace_totals {filter} ORDER BY total_ms DESC, trace_id LIMIT {limit}"
    );
    let since: Vec<ScalarValue> = since_us
        .map(|us| ScalarValue::Int64(Some(us)))
        .into_iter()
        .collect();
    let mut slowest_params = since.clone();
    slowest_params.push(ScalarValue::Int64(Some(i64::from(slowest))));
    let per_step = session.query_with(&per_step_sql, since).await?;
    let slowest = session.query_with(&slowest_sql, slowest_params).await?;
    Ok(Stats { per_step, slowest })
}
