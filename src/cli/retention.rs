//! `quiver retention [--dry-run] [--now TS] [--json]`: what the lake's
//! retention policy (`[retention]` in quiver.toml) removes now, per table:
//! the policy, the newest row, the reference (min(now, newest)), the cutoff,
//! the first day kept and the day partitions (files, rows, bytes) that go,
//! with the hot rows past the hot window. Without `--dry-run` it applies the
//! pass now (the running lake thread also applies it every
//! `retention.check_interval`).
//!
//! On a closed data dir it opens the store, with the lake thread's own passes
//! off so that a dry run changes nothing; an applied pass's files are deleted
//! when the store closes (no other reader can hold them). When a running
//! server holds the dir, `--dry-run` reads `system.retention_plan` through
//! that server (the plan is computed there, at scan time, with the server's
//! clock); applying, or `--now`, needs the dir closed and says so: the
//! server applies its policy by itself.
//!
//! `--now` sets the store's clock for this run, to see what a policy would
//! do on another day: for testing a policy, not for daily use.

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type, UInt64Type};
use chrono::NaiveDate;

use crate::app::{Advert, Load, Session};
use crate::config::Config;
use crate::event::{Table, Ts};
use crate::store::lake::partition::date_of_day;
use crate::store::lake::retention::{DayPlan, RetentionPlan, TablePlan};
use crate::store::{Clock, Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Take this time (RFC 3339, `2026-03-10T00:00:00Z`) as now, for testing
    /// a policy. Needs the data dir closed.
    #[arg(long, value_name = "TS")]
    pub now: Option<String>,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let now = args
        .now
        .as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Ts(t.timestamp_micros()))
                .with_context(|| {
                    format!("--now {s:?}: expected RFC 3339, like 2026-03-10T00:00:00Z")
                })
        })
        .transpose()?;
    let mut store_config = config.store_config();
    store_config.retention.automatic = false;
    if let Some(now) = now {
        store_config.clock = Clock::manual(now);
    }
    let dry_run = args.dry_run;
    let opened = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let (store, sink) = Store::open(store_config)?;
        drop(sink);
        let plan = if dry_run {
            store.plan_retention()
        } else {
            store.apply_retention()
        };
        let closed = store.close();
        let plan = plan?;
        closed?;
        Ok(plan)
    })
    .await?;
    let plan = match opened {
        Ok(plan) => plan,
        Err(e @ StoreError::DataDirInUse { .. }) => {
            if !dry_run || now.is_some() {
                bail!(
                    "{e}. The server applies the retention policy itself every \
                     retention.check_interval; `quiver retention --dry-run` (without --now) \
                     shows its plan through the server. To apply now or try --now, stop the \
                     server first"
                );
            }
            let Some(advert) = Advert::read(&config.data_dir) else {
                return Err(anyhow::Error::new(e).context("opening the data dir"));
            };
            let mut session = Session::open(&config, Some(&advert.url), Load::Skip).await?;
            let batches = session
                .query("SELECT * FROM system.retention_plan")
                .await
                .with_context(|| format!("reading the retention plan from {}", advert.url))?;
            session.close().await?;
            decode(&batches)?
        }
        Err(e) => return Err(anyhow::Error::new(e).context("retention")),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&plan, dry_run))?
        );
    } else {
        print!("{}", render(&plan, dry_run));
    }
    Ok(())
}

fn time(ts: Option<Ts>) -> String {
    ts.and_then(|t| chrono::DateTime::from_timestamp_micros(t.0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| "-".into())
}

/// The plan as text: a line per table with a policy, a line per day that goes.
pub fn render(plan: &RetentionPlan, dry_run: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verb = if dry_run { "would remove" } else { "removed" };
    let _ = writeln!(
        out,
        "retention at {} (lake version {}){}",
        time(Some(plan.now)),
        plan.version,
        if dry_run {
            ": dry run, nothing changed"
        } else {
            ""
        }
    );
    if let Some(why) = &plan.blocked {
        let _ = writeln!(out, "no pass runs now: {why}");
    }
    let with_policy: Vec<&TablePlan> = plan
        .tables
        .iter()
        .filter(|t| t.lake_days.is_some())
        .collect();
    if with_policy.is_empty() {
        let _ = writeln!(
            out,
            "no table has a lake retention policy ([retention] lake_days): the lake keeps everything"
        );
    }
    for t in &with_policy {
        let _ = writeln!(
            out,
            "{}: keep {} days; newest {}; reference {}; cutoff {}; first day kept {}",
            t.table.name(),
            t.lake_days.unwrap_or_default(),
            time(t.newest),
            time(t.reference),
            time(t.cutoff),
            t.keep_from.map_or_else(|| "-".into(), |d| d.to_string()),
        );
        if t.days.is_empty() {
            let _ = writeln!(out, "  nothing to remove");
            continue;
        }
        let _ = writeln!(
            out,
            "  {verb} {} day partitions: {} files, {} rows, {} bytes",
            t.days.len(),
            t.files(),
            t.rows(),
            t.bytes()
        );
        for d in &t.days {
            let _ = writeln!(
                out,
                "    date={}: {} files, {} rows, {} bytes",
                d.date, d.files, d.rows, d.bytes
            );
        }
    }
    let forever: Vec<&str> = plan
        .tables
        .iter()
        .filter(|t| t.lake_days.is_none())
        .map(|t| t.table.name())
        .collect();
    if !forever.is_empty() && !with_policy.is_empty() {
        let _ = writeln!(out, "kept forever: {}", forever.join(", "));
    }
    if let Some(hot) = plan.tables.first() {
        let past: u64 = plan.tables.iter().map(|t| t.hot_rows_past_window).sum();
        let _ = writeln!(
            out,
            "hot store: {past} rows older than its window (before {}) go at its next pruning",
            time(Some(hot.hot_cutoff))
        );
    }
    out
}

fn to_json(plan: &RetentionPlan, dry_run: bool) -> serde_json::Value {
    let ts = |t: Option<Ts>| t.map(|t| t.0);
    serde_json::json!({
        "dry_run": dry_run,
        "now_us": plan.now.0,
        "lake_version": plan.version,
        "blocked": plan.blocked,
        "tables": plan.tables.iter().map(|t| serde_json::json!({
            "table": t.table.name(),
            "lake_days": t.lake_days,
            "newest_us": ts(t.newest),
            "reference_us": ts(t.reference),
            "cutoff_us": ts(t.cutoff),
            "keep_from": t.keep_from.map(|d| d.to_string()),
            "files": t.files(),
            "rows": t.rows(),
            "bytes": t.bytes(),
            "days": t.days.iter().map(|d| serde_json::json!({
                "date": d.date.to_string(), "files": d.files, "rows": d.rows, "bytes": d.bytes,
            })).collect::<Vec<_>>(),
            "hot_cutoff_us": t.hot_cutoff.0,
            "hot_rows_past_window": t.hot_rows_past_window,
        })).collect::<Vec<_>>(),
    })
}

/// `system.retention_plan`'s rows (one per table and day that goes, or one
/// with no day) back into a plan.
fn decode(batches: &[RecordBatch]) -> anyhow::Result<RetentionPlan> {
    let mut plan = RetentionPlan {
        now: Ts(0),
        version: 0,
        blocked: None,
        tables: Vec::new(),
    };
    for b in batches {
        let col = |name: &str, to: &DataType| -> anyhow::Result<arrow::array::ArrayRef> {
            let c = b
                .column_by_name(name)
                .with_context(|| format!("system.retention_plan has no column {name}"))?;
            Ok(arrow::compute::cast(c, to)?)
        };
        let i64s = |name: &str| col(name, &DataType::Int64);
        let (table, days) = (col("table_name", &DataType::Utf8)?, i64s("lake_days")?);
        let (now, newest, reference, cutoff) = (
            i64s("now_ts")?,
            i64s("newest_ts")?,
            i64s("reference_ts")?,
            i64s("cutoff_ts")?,
        );
        let (keep, date) = (
            col("keep_from", &DataType::Int32)?,
            col("date", &DataType::Int32)?,
        );
        let (files, rows, bytes) = (
            col("files", &DataType::UInt64)?,
            col("rows", &DataType::UInt64)?,
            col("bytes", &DataType::UInt64)?,
        );
        let (hot_cutoff, hot_rows, version, blocked) = (
            i64s("hot_cutoff_ts")?,
            col("hot_rows_past_window", &DataType::UInt64)?,
            col("lake_version", &DataType::UInt64)?,
            col("blocked", &DataType::Utf8)?,
        );
        let opt_ts = |a: &arrow::array::ArrayRef, i: usize| {
            let a = a.as_primitive::<Int64Type>();
            (!a.is_null(i)).then(|| Ts(a.value(i)))
        };
        let opt_date = |a: &arrow::array::ArrayRef, i: usize| -> Option<NaiveDate> {
            let a = a.as_primitive::<Int32Type>();
            (!a.is_null(i)).then(|| date_of_day(i64::from(a.value(i))))
        };
        let u = |a: &arrow::array::ArrayRef, i: usize| a.as_primitive::<UInt64Type>().value(i);
        for i in 0..b.num_rows() {
            let name = table.as_string::<i32>().value(i);
            let t = Table::from_name(name)
                .with_context(|| format!("system.retention_plan names a table {name:?}"))?;
            plan.now = opt_ts(&now, i).unwrap_or(plan.now);
            plan.version = u(&version, i);
            let blocked = blocked.as_string::<i32>();
            if !blocked.is_null(i) {
                plan.blocked = Some(blocked.value(i).to_string());
            }
            if plan.tables.last().is_none_or(|last| last.table != t) {
                let d = days.as_primitive::<Int64Type>();
                plan.tables.push(TablePlan {
                    table: t,
                    lake_days: (!d.is_null(i)).then(|| u32::try_from(d.value(i)).unwrap_or(0)),
                    newest: opt_ts(&newest, i),
                    reference: opt_ts(&reference, i),
                    cutoff: opt_ts(&cutoff, i),
                    keep_from: opt_date(&keep, i),
                    days: Vec::new(),
                    hot_cutoff: opt_ts(&hot_cutoff, i).unwrap_or_default(),
                    hot_rows_past_window: u(&hot_rows, i),
                });
            }
            if let (Some(day), Some(last)) = (opt_date(&date, i), plan.tables.last_mut()) {
                last.days.push(DayPlan {
                    date: day,
                    files: u(&files, i),
                    rows: u(&rows, i),
                    bytes: u(&bytes, i),
                });
            }
        }
    }
    Ok(plan)
}
