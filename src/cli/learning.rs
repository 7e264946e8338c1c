//! `quiver learning summary|calibration`: how the models learn and how well
//! their probabilities hold up. Calibration reads the `predictions` events, so
//! these go through the query engine (or the server holding the data dir).

use std::sync::Arc;

use std::io::Write;

use anyhow::Context;
use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;

use super::output::{self, Format};
use super::sql::{run_bound, run_queries};
use crate::analytics::Calibration;
use crate::config::Config;
use crate::query::param;
use crate::store::Registry;
use crate::store::registry::is_model_id;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// Query a running Flight SQL server instead of the data dir.
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Per day: calibration of the labelled predictions and the training done
    /// (the last 30 days, or one day with its sessions and models).
    Summary {
        /// YYYY-MM-DD (UTC).
        #[arg(long)]
        date: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// ECE, MCE, Brier score and the reliability bins of one model (id, prefix
    /// or alias), overall and per day.
    Calibration {
        model: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Reliability bins, as in `learning.calibration_bins`.
const BINS: usize = 10;

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let server = args.server.as_deref();
    match &args.command {
        Command::Summary { date, format } => {
            let Some(date) = date else {
                let sql = "SELECT * FROM learning.daily_summary \
                           WHERE day >= current_date - INTERVAL '30 days' ORDER BY day";
                let mut r = run_queries(&config, server, &[sql]).await?;
                return output::print(&r.remove(0), *format);
            };
            let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .with_context(|| format!("--date {date:?}: expected YYYY-MM-DD"))?;
            let summary = "SELECT * FROM learning.daily_summary WHERE day = $1";
            let per_model = "SELECT model_id, samples, ece, mce, brier FROM learning.calibration \
                 WHERE day = $1 ORDER BY samples DESC";
            let on_day = || vec![param::date(day)];
            let mut r = run_bound(
                &config,
                server,
                &[(summary, on_day()), (per_model, on_day())],
            )
            .await?;
            writeln!(std::io::stdout(), "Learning on {day}:")?;
            output::print(&r.remove(0), *format)?;
            writeln!(std::io::stdout(), "Calibration per model:")?;
            output::print(&r.remove(0), *format)?;
            let registry = Registry::open_read_only(&config.data_dir)?;
            let from = day
                .and_hms_opt(0, 0, 0)
                .context("midnight")?
                .and_utc()
                .timestamp_micros();
            writeln!(std::io::stdout(), "Training sessions:")?;
            output::print(
                &registry.training_between(from, from + 86_400_000_000)?,
                *format,
            )
        }
        Command::Calibration { model, format } => {
            let registry = Registry::open_read_only(&config.data_dir)?;
            // Predictions may name models that were never registered; a full
            // id is taken as it is.
            let id = match registry.resolve(model) {
                Ok(id) => id,
                Err(_) if is_model_id(model) => model.clone(),
                Err(e) => return Err(e.into()),
            };
            let per_day = "SELECT day, samples, ece, mce, brier FROM learning.calibration \
                 WHERE model_id = $1 ORDER BY day";
            let pairs = "SELECT predicted_prob, label FROM learning.prediction_outcomes \
                 WHERE model_id = $1";
            let of_model = || vec![param::text(&id)];
            let mut r = run_bound(
                &config,
                server,
                &[(per_day, of_model()), (pairs, of_model())],
            )
            .await?;
            let per_day = r.remove(0);
            let pairs = outcome_pairs(&r.remove(0))?;
            let Some(c) = Calibration::compute(&pairs, BINS) else {
                writeln!(std::io::stdout(), "model {id}: no labelled predictions yet")?;
                return Ok(());
            };
            writeln!(
                std::io::stdout(),
                "model {id}: {} labelled predictions, ECE {:.4}, MCE {:.4}, Brier {:.4}",
                c.samples,
                c.ece,
                c.mce,
                c.brier
            )?;
            writeln!(std::io::stdout(), "Reliability bins:")?;
            output::print(&[bins_batch(&c)?], *format)?;
            writeln!(std::io::stdout(), "Per day:")?;
            output::print(&per_day, *format)
        }
    }
}

/// (probability, outcome) pairs from `predicted_prob, label` rows.
fn outcome_pairs(batches: &[RecordBatch]) -> anyhow::Result<Vec<(f64, bool)>> {
    let mut out = Vec::new();
    for b in batches {
        let p = b
            .column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .context("predicted_prob is not Float64")?;
        let y = b
            .column(1)
            .as_any()
            .downcast_ref::<Int32Array>()
            .context("label is not Int32")?;
        for i in 0..b.num_rows() {
            if p.is_valid(i) && y.is_valid(i) {
                out.push((p.value(i), y.value(i) == 1));
            }
        }
    }
    Ok(out)
}

fn bins_batch(c: &Calibration) -> anyhow::Result<RecordBatch> {
    let f = |name: &str| Field::new(name, DataType::Float64, false);
    let schema = Arc::new(Schema::new(vec![
        Field::new("bin", DataType::Int64, false),
        f("lower"),
        f("upper"),
        Field::new("samples", DataType::UInt64, false),
        f("avg_predicted"),
        f("observed_rate"),
        f("gap"),
    ]));
    let col = |get: &dyn Fn(&crate::analytics::ReliabilityBin) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(c.bins.iter().map(get)))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(
                c.bins.iter().map(|b| b.bin as i64),
            )),
            col(&|b| b.lower),
            col(&|b| b.upper),
            Arc::new(UInt64Array::from_iter_values(
                c.bins.iter().map(|b| b.count),
            )),
            col(&|b| b.avg_predicted),
            col(&|b| b.observed_rate),
            col(&|b| (b.avg_predicted - b.observed_rate).abs()),
        ],
    )?)
}
