//! The insights report: the queries its findings rest on, with their values
//! bound, run through a session and decoded into rows for
//! [`crate::analytics::insights::findings`] (which is pure).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use chrono::{Days, NaiveDate};
use datafusion::common::ScalarValue;

use super::Session;
use crate::analytics::insights::*;
use crate::query::param;

/// A query the findings rest on.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub name: &'static str,
    pub sql: &'static str,
    /// The values of `$1`, `$2`, ...
    pub params: Vec<ScalarValue>,
}

/// The queries behind the findings for `day`: `$1` is the day; `$2` the
/// day a week before it, or the samples a model needs.
pub fn queries(day: NaiveDate) -> Vec<Query> {
    let week_before = day.checked_sub_days(Days::new(7)).unwrap_or(day);
    let on_day = || vec![param::date(day)];
    let and_week_before = || vec![param::date(day), param::date(week_before)];
    vec![
        Query {
            name: GATE_BLOCKS,
            sql: "SELECT blocked_by AS gate, count(*) AS resolved_blocks, \
                        sum(CASE WHEN outcome_pnl_bps > 0 THEN 1 ELSE 0 END) AS bad_blocks, \
                        round(sum(CASE WHEN outcome_pnl_bps > 0 THEN outcome_pnl_bps ELSE 0 END), 2) \
                            AS missed_bps, \
                        round(sum(CASE WHEN outcome_pnl_bps <= 0 THEN -outcome_pnl_bps ELSE 0 END), 2) \
                            AS saved_bps, \
                        round(avg(CASE WHEN outcome_pnl_bps <= 0 THEN 1.0 ELSE 0.0 END), 4) \
                            AS good_block_rate \
                 FROM events.shadow_trades \
                 WHERE kind = 'RESOLVED' AND outcome_pnl_bps IS NOT NULL AND date = $1 \
                 GROUP BY blocked_by ORDER BY missed_bps DESC, gate",
            params: on_day(),
        },
        Query {
            name: REGIMES,
            sql: "SELECT regime, count(*) AS trades, \
                        round(win_rate(pnl_bps), 4) AS win_rate, \
                        round(sum(pnl_bps), 2) AS total_pnl_bps, \
                        round(avg(pnl_bps), 2) AS avg_pnl_bps \
                 FROM events.trades \
                 WHERE kind = 'CLOSE' AND pnl_bps IS NOT NULL AND date = $1 \
                 GROUP BY regime ORDER BY total_pnl_bps, regime",
            params: on_day(),
        },
        Query {
            name: LATENCY,
            sql: "WITH s AS ( \
                     SELECT step, count(*) AS steps, sum(duration_ms) AS total_ms, \
                            avg(duration_ms) AS avg_ms, \
                            percentile_cont(duration_ms, 0.95) AS p95_ms \
                     FROM events.trace_steps WHERE date = $1 GROUP BY step), \
                 t AS (SELECT sum(total_ms) AS all_ms FROM s) \
                 SELECT step, steps, round(avg_ms, 2) AS avg_ms, round(p95_ms, 2) AS p95_ms, \
                        round(total_ms / all_ms, 4) AS share \
                 FROM s CROSS JOIN t ORDER BY share DESC, step",
            params: on_day(),
        },
        Query {
            name: LATENCY_BEFORE,
            sql: "SELECT step, count(*) AS steps, \
                        round(percentile_cont(duration_ms, 0.95), 2) AS p95_ms \
                 FROM events.trace_steps \
                 WHERE date >= $2 AND date < $1 GROUP BY step",
            params: and_week_before(),
        },
        Query {
            name: CALIBRATION,
            sql: "SELECT period, sum(samples) AS samples, \
                        round(sum(ece * samples) / sum(samples), 4) AS ece \
                 FROM (SELECT CASE WHEN day = $1 THEN 'day' ELSE 'previous_7_days' END \
                                  AS period, samples, ece \
                       FROM learning.calibration WHERE day >= $2 AND day <= $1) \
                 GROUP BY period",
            params: and_week_before(),
        },
        Query {
            name: MODEL_CALIBRATION,
            sql: "SELECT substr(model_id, 1, 12) AS model, samples, round(ece, 4) AS ece \
                 FROM learning.calibration \
                 WHERE day = $1 AND samples >= $2 \
                 ORDER BY ece DESC, model LIMIT 1",
            params: vec![
                param::date(day),
                ScalarValue::Int64(Some(MODEL_SAMPLES_MIN)),
            ],
        },
    ]
}

/// Runs the day's queries; their rows by query name.
pub async fn run(
    session: &mut Session,
    queries: &[Query],
) -> anyhow::Result<BTreeMap<&'static str, Vec<Row>>> {
    let mut results = BTreeMap::new();
    for q in queries {
        let batches = session
            .query_with(q.sql, q.params.clone())
            .await
            .map_err(|e| e.context(format!("query {}", q.name)))?;
        results.insert(q.name, rows(&batches)?);
    }
    Ok(results)
}

/// Result rows by column name: integers, floats, NULL, everything else as
/// text.
pub fn rows(batches: &[RecordBatch]) -> anyhow::Result<Vec<Row>> {
    let mut out = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            let values: Vec<Value> = if array.data_type().is_integer() {
                let a = arrow::compute::cast(array, &DataType::Int64)?;
                let a = a.as_primitive::<Int64Type>();
                (0..a.len())
                    .map(|i| a.is_valid(i).then(|| Value::Int(a.value(i))))
                    .map(|v| v.unwrap_or(Value::Null))
                    .collect()
            } else if array.data_type().is_floating() {
                let a = arrow::compute::cast(array, &DataType::Float64)?;
                let a = a.as_primitive::<Float64Type>();
                (0..a.len())
                    .map(|i| a.is_valid(i).then(|| Value::Float(a.value(i))))
                    .map(|v| v.unwrap_or(Value::Null))
                    .collect()
            } else {
                super::rows::strings(batch, field.name())?
                    .into_iter()
                    .zip(0..)
                    .map(|(s, i)| {
                        if array.is_null(i) {
                            Value::Null
                        } else {
                            Value::Text(s)
                        }
                    })
                    .collect()
            };
            columns.push((field.name().clone(), values));
        }
        for i in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|(name, values)| (name.clone(), values[i].clone()))
                    .collect(),
            );
        }
    }
    Ok(out)
}
