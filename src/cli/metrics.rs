//! `quiver metrics check|list|show|compute`.
//!
//! `check`, `list` and `show` compile the definitions against the catalog of
//! an empty scratch data dir, so they work anywhere, also while a server
//! holds the real one. `compute` runs each metric's view for each day, on the
//! data dir or through the server that holds it, and replaces that day's
//! files of the lake tables `metric_values` and `alerts`.

use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::{NaiveDate, Utc};

use super::output::{self, Format};
use crate::app::alerts::{self, Outbox};
use crate::app::metrics_job::{DayOutcome, MetricsJob};
use crate::config::Config;
use crate::metrics::{Definitions, MetricSource};
use crate::query::QueryEngine;
use crate::query::definitions::Loaded;
use crate::store::{Store, StoreConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate and compile metrics.yaml and sql/analysis/; exit 1 on the first error.
    Check,
    /// List the metrics: unit, source, dimensions, thresholds.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one metric (or analysis): its definition and the SQL it compiles to.
    Show { name: String },
    /// Materialize every metric for a day (or a range) into metric_values and
    /// evaluate the alert rules into alerts. Re-running a day replaces it.
    Compute {
        /// The day (default: today, UTC).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        date: Option<NaiveDate>,
        /// First day of a range (with --to).
        #[arg(long, requires = "to")]
        from: Option<NaiveDate>,
        /// Last day of a range, included.
        #[arg(long, requires = "from")]
        to: Option<NaiveDate>,
        /// Compute through this Flight SQL server.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Metric queries in flight at once on the data dir (through a
        /// server: one at a time).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
    },
}

/// Longest range one `compute` run takes.
const DAYS_MAX: i64 = 366;

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Check => {
            let loaded = compile_scratch(&config).await?;
            let paths = config.definition_paths();
            let d = &loaded.definitions;
            println!(
                "ok: {} metrics, {} alert rules ({}); {} analyses ({})",
                d.metrics.metrics.len(),
                d.metrics.alerts.len(),
                paths.metrics_file.display(),
                d.analyses.len(),
                paths.analysis_dir.display()
            );
            Ok(())
        }
        Command::List { format } => {
            let loaded = compile_scratch(&config).await?;
            output::print(&[list_batch(&loaded)?], *format)
        }
        Command::Show { name } => {
            let loaded = compile_scratch(&config).await?;
            show(&loaded, name)
        }
        Command::Compute {
            date,
            from,
            to,
            server,
            jobs,
        } => {
            let days = match (date, from, to) {
                (Some(d), _, _) => vec![*d],
                (None, Some(from), Some(to)) => {
                    let span = (*to - *from).num_days();
                    if span < 0 {
                        bail!("--from {from} is after --to {to}");
                    }
                    if span >= DAYS_MAX {
                        bail!("{} days; compute at most {DAYS_MAX} at once", span + 1);
                    }
                    from.iter_days().take(span as usize + 1).collect()
                }
                _ => vec![Utc::now().date_naive()],
            };
            compute(&config, server.as_deref(), &days, usize::from(*jobs)).await
        }
    }
}

/// Loads and compiles the definitions against an empty scratch data dir.
async fn compile_scratch(config: &Config) -> anyhow::Result<Arc<Loaded>> {
    let paths = config.definition_paths();
    let query = config.query_config();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Arc<Loaded>> {
        let definitions = Definitions::load(&paths)?;
        let scratch = tempfile::tempdir().context("creating a scratch data dir")?;
        let (store, sink) =
            Store::open(StoreConfig::new(scratch.path())).context("opening a scratch data dir")?;
        drop(sink);
        let store = Arc::new(store);
        let engine = QueryEngine::new(store.clone(), None, &query)?;
        let loaded = engine.install_definitions(definitions);
        drop(engine);
        if let Ok(store) = Arc::try_unwrap(store) {
            store.close()?;
        }
        Ok(loaded?)
    })
    .await?
}

fn list_batch(loaded: &Loaded) -> anyhow::Result<RecordBatch> {
    let metrics = &loaded.definitions.metrics.metrics;
    let column = |f: &dyn Fn(&crate::metrics::MetricDef) -> String| {
        Arc::new(StringArray::from_iter_values(metrics.iter().map(f)))
    };
    let schema = Schema::new(
        [
            "metric",
            "unit",
            "source",
            "dimensions",
            "thresholds",
            "description",
        ]
        .map(|n| Field::new(n, DataType::Utf8, false))
        .to_vec(),
    );
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            column(&|m| m.name.to_string()),
            column(&|m| m.unit.clone()),
            column(&|m| match &m.source {
                MetricSource::Table {
                    schema,
                    table,
                    time,
                } => match time {
                    None => format!("{schema}.{table} (snapshot)"),
                    Some(_) => format!("{schema}.{table}"),
                },
                MetricSource::Derived { inputs } => format!("= {}", inputs.join(", ")),
            }),
            column(&|m| m.dimensions.join(", ")),
            column(&|m| thresholds_text(m)),
            column(&|m| m.description.clone()),
        ],
    )?)
}

fn thresholds_text(m: &crate::metrics::MetricDef) -> String {
    let Some(t) = &m.thresholds else {
        return String::new();
    };
    let op = match t.direction {
        crate::metrics::def::Direction::Above => ">=",
        crate::metrics::def::Direction::Below => "<=",
    };
    let mut parts = Vec::new();
    if let Some(w) = t.warning {
        parts.push(format!("warning {op} {w}"));
    }
    if let Some(c) = t.critical {
        parts.push(format!("critical {op} {c}"));
    }
    parts.join(", ")
}

fn show(loaded: &Loaded, name: &str) -> anyhow::Result<()> {
    if let Some(metric) = loaded.metrics.iter().find(|m| m.def.name == name) {
        let def = &metric.def;
        println!("metric      {}", def.name);
        println!("            {}", def.description);
        println!("unit        {}", def.unit);
        match &def.source {
            MetricSource::Table {
                schema,
                table,
                time,
            } => {
                println!("source      {schema}.{table}");
                println!(
                    "time        {}",
                    time.as_deref().unwrap_or("none (a snapshot of now)")
                );
            }
            MetricSource::Derived { inputs } => println!("inputs      {}", inputs.join(", ")),
        }
        if let Some(filter) = &def.filter {
            println!("filter      {filter}");
        }
        println!("formula     {}", def.formula);
        println!(
            "dimensions  day{}",
            def.dimensions
                .iter()
                .map(|d| format!(", {d}"))
                .collect::<String>()
        );
        let thresholds = thresholds_text(def);
        if !thresholds.is_empty() {
            println!("thresholds  {thresholds}");
        }
        if !def.targets.is_empty() {
            let targets: Vec<String> = def
                .targets
                .iter()
                .map(|(m, v)| format!("{m} {v}"))
                .collect();
            println!("targets     {}", targets.join(", "));
        }
        println!("\n-- metrics.{} compiles to:\n{};", def.name, metric.sql);
        return Ok(());
    }
    if let Some(analysis) = loaded.definitions.analyses.iter().find(|a| a.name == name) {
        println!(
            "-- analysis.{} ({})",
            analysis.name,
            analysis.path.display()
        );
        println!("{}", analysis.sql.trim_end());
        return Ok(());
    }
    bail!("no metric or analysis is named `{name}` (see `quiver metrics list`)")
}

async fn compute(
    config: &Config,
    server: Option<&str>,
    days: &[NaiveDate],
    jobs: usize,
) -> anyhow::Result<()> {
    let opened = std::time::Instant::now();
    let mut job = MetricsJob::open(config, server, jobs).await?;
    tracing::debug!(
        elapsed_ms = opened.elapsed().as_secs_f64() * 1e3,
        "session open"
    );
    // The server delivers only if it holds this data dir (and so its
    // outbox); one named by --server elsewhere does not.
    let through_server = job.server_url().is_some_and(|url| {
        crate::app::Advert::read(&config.data_dir).is_some_and(|advert| advert.url == url)
    });
    if let Some(url) = job.server_url() {
        eprintln!("computing through the server at {url}");
    }
    // Alerts go to the outbox whoever delivers them (see app::alerts).
    let outbox = if config.alerts.receivers.is_empty() {
        None
    } else {
        Some(Outbox::open(&config.data_dir, &config.alerts)?)
    };
    let mut enqueued = Vec::new();
    let metrics = job.metrics().len();
    let bar = indicatif::ProgressBar::new((days.len() * metrics) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut failed_days = Vec::new();
    for &day in days {
        bar.set_message(day.to_string());
        let outcome = match job.compute_day(day, || bar.inc(1)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                bar.finish_and_clear();
                job.close().await?;
                return Err(e);
            }
        };
        bar.suspend(|| print_day(day, metrics, &outcome));
        if let (Some(outbox), DayOutcome::Written { alerts, .. }) = (&outbox, &outcome) {
            let report = outbox.enqueue(&alerts::notices_from_alerts(alerts))?;
            bar.suspend(|| print_enqueued(&report));
            enqueued.extend(report.ids);
        }
        if matches!(outcome, DayOutcome::Failed { .. }) {
            failed_days.push(day);
        }
    }
    bar.finish_and_clear();
    job.close().await?;
    if let Some(outbox) = outbox
        && !enqueued.is_empty()
    {
        deliver_enqueued(config, outbox, enqueued, through_server).await?;
    }
    if !failed_days.is_empty() {
        let list: Vec<String> = failed_days.iter().map(|d| d.to_string()).collect();
        bail!("metrics compute failed for {}", list.join(", "));
    }
    Ok(())
}

fn print_enqueued(report: &alerts::EnqueueReport) {
    println!(
        "  alerts: {} message(s) to the outbox, {} in their cooldown, {} refused (outbox full)",
        report.ids.len(),
        report.cooled_down,
        report.refused
    );
}

/// Through a server, the server's delivery worker sends them; else this
/// process does, for at most `alerts.deliver_wait`.
async fn deliver_enqueued(
    config: &Config,
    outbox: Outbox,
    ids: Vec<i64>,
    through_server: bool,
) -> anyhow::Result<()> {
    if through_server {
        println!("alerts: the server delivers the {} message(s)", ids.len());
        return Ok(());
    }
    let config = config.clone();
    let total = ids.len();
    let left =
        tokio::task::spawn_blocking(move || alerts::deliver_here(&config, &outbox, &ids)).await??;
    println!(
        "alerts: {} of {total} message(s) done (sent, failed or given up); {left} left in the outbox for the next run",
        total - left
    );
    Ok(())
}

/// One day's line, and the alerts it fired (the first 20).
fn print_day(day: NaiveDate, metrics: usize, outcome: &DayOutcome) {
    match outcome {
        DayOutcome::Failed { errors } => {
            eprintln!("{day}: not written; {} metrics failed:", errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
        }
        DayOutcome::Written {
            values,
            alerts,
            values_path,
        } => {
            let count = |status: &str| values.iter().filter(|v| v.status == status).count();
            println!(
                "{day}: {} values of {metrics} metrics ({} warning, {} critical, {} no data); {} alerts -> {}",
                values.len(),
                count("warning"),
                count("critical"),
                count("no_data"),
                alerts.len(),
                values_path.display()
            );
            const ALERTS_SHOWN: usize = 20;
            for alert in alerts.iter().take(ALERTS_SHOWN) {
                println!(
                    "  {:<8} {}: {}",
                    alert.severity.to_uppercase(),
                    alert.rule,
                    alert.message
                );
            }
            if alerts.len() > ALERTS_SHOWN {
                println!(
                    "  ... and {} more: SELECT * FROM metrics.alerts WHERE date = DATE '{day}'",
                    alerts.len() - ALERTS_SHOWN
                );
            }
        }
    }
}
