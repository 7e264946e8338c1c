//! `quiver learning summary|calibration`: how the models learn and how well
//! their probabilities hold up. Calibration reads the `predictions` events, so
//! these go through the query engine (or the server holding the data dir).
//! The queries are [`crate::app::learning`]'s; this prints them.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;

use super::output::{self, Format};
use crate::analytics::Calibration;
use crate::app::learning;
use crate::app::{Load, Session};
use crate::config::Config;
use crate::store::Registry;
use crate::store::registry::{ModelId, is_model_id};

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

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let server = args.server.as_deref();
    match &args.command {
        Command::Summary { date, format } => {
            let Some(date) = date else {
                let mut session = Session::open(&config, server, Load::Skip).await?;
                let result = learning::recent_days(&mut session).await;
                session.close().await?;
                return output::print(&result?, *format);
            };
            let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .with_context(|| format!("--date {date:?}: expected YYYY-MM-DD"))?;
            let mut session = Session::open(&config, server, Load::Skip).await?;
            let result = learning::day(&mut session, day).await;
            session.close().await?;
            let report = result?;
            writeln!(std::io::stdout(), "Learning on {day}:")?;
            output::print(&report.summary, *format)?;
            writeln!(std::io::stdout(), "Calibration per model:")?;
            output::print(&report.per_model, *format)?;
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
                Err(_) if is_model_id(model) => ModelId::parse(model)?,
                Err(e) => return Err(e.into()),
            };
            let mut session = Session::open(&config, server, Load::Skip).await?;
            let result = learning::model_calibration(&mut session, id.as_str()).await;
            session.close().await?;
            let calibration = result?;
            let Some(c) = calibration.overall else {
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
            output::print(&calibration.per_day, *format)
        }
    }
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
