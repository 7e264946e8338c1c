//! `quiver insights [--date D]`: the day's findings, ranked, each quoting
//! the query values it rests on (see [`crate::analytics::insights`]).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use chrono::NaiveDate;

use super::rows::strings;
use crate::analytics::insights::{Row, Value, findings, queries};
use crate::app::{Load, Session};
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
                strings(batch, field.name())?
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

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let day = match &args.date {
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .with_context(|| format!("--date {text:?}: expected YYYY-MM-DD"))?,
        None => chrono::Utc::now().date_naive(),
    };
    let queries = queries(day);
    let mut session = Session::open(&config, args.server.as_deref(), Load::Skip).await?;
    let mut results = BTreeMap::new();
    let mut failed = None;
    for q in &queries {
        match session.query(&q.sql).await {
            Ok(batches) => {
                results.insert(q.name, rows(&batches)?);
            }
            Err(e) => {
                failed = Some(e.context(format!("query {}", q.name)));
                break;
            }
        }
    }
    session.close().await?;
    if let Some(e) = failed {
        return Err(e);
    }
    let found = findings(&results);
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
            writeln!(out, "-- {}\n{};", q.name, q.sql)?;
        }
    }
    Ok(())
}
