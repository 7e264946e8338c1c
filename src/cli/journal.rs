//! `quiver journal trades|stats`: the trade journal, read straight from
//! `<data>/journal.sqlite` (SQLite lets it be read while a server writes it).

use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::{DateTime, NaiveDate, Utc};

use super::output::{self, Format};
use crate::analytics::TradeStats;
use crate::config::Config;
use crate::event::{Mode, Regime, Ts};
use crate::store::Layout;
use crate::store::journal::{Journal, TradeFilter};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List trades (open and closed), newest first.
    Trades(TradesArgs),
    /// Count, win rate, average and median return, profit factor, Sharpe and
    /// max drawdown of closed trades, per group.
    Stats(StatsArgs),
}

#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// scalp or runner.
    #[arg(long)]
    pub mode: Option<String>,
    /// TREND, RANGE or PANIC.
    #[arg(long)]
    pub regime: Option<String>,
    #[arg(long)]
    pub symbol: Option<String>,
    /// Closed trades returning at least this (bps, net).
    #[arg(long, allow_negative_numbers = true)]
    pub min_return_bps: Option<f64>,
    /// Closed trades returning at most this (bps, net).
    #[arg(long, allow_negative_numbers = true)]
    pub max_return_bps: Option<f64>,
    /// Entered at or after: RFC 3339 time or YYYY-MM-DD (UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Entered before: RFC 3339 time or YYYY-MM-DD (UTC).
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct TradesArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Most trades to show.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// scalp or runner.
    #[arg(long)]
    pub mode: Option<String>,
    /// Only trades entered in the last N days.
    #[arg(long)]
    pub days: Option<u32>,
    /// Group by mode, regime or symbol.
    #[arg(long, value_enum, default_value_t = GroupBy::Mode)]
    pub by: GroupBy,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GroupBy {
    Mode,
    Regime,
    Symbol,
}

/// A time bound: RFC 3339, or a date meaning its midnight UTC.
pub fn parse_time(text: &str) -> anyhow::Result<Ts> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Ts(t.with_timezone(&Utc).timestamp_micros()));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").with_context(|| {
        format!("{text:?} is not a time: use RFC 3339 (2026-11-30T12:00:00Z) or YYYY-MM-DD")
    })?;
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .context("midnight")?
        .and_utc()
        .timestamp_micros();
    Ok(Ts(midnight))
}

fn parse_mode(text: &str) -> anyhow::Result<Mode> {
    text.parse::<Mode>()
        .ok()
        .with_context(|| format!("--mode {text:?}: expected scalp or runner"))
}

impl FilterArgs {
    fn to_filter(&self) -> anyhow::Result<TradeFilter> {
        let regime = match &self.regime {
            Some(r) => Some(
                r.to_ascii_uppercase()
                    .parse::<Regime>()
                    .ok()
                    .with_context(|| format!("--regime {r:?}: expected TREND, RANGE or PANIC"))?,
            ),
            None => None,
        };
        for (name, v) in [
            ("--min-return-bps", self.min_return_bps),
            ("--max-return-bps", self.max_return_bps),
        ] {
            anyhow::ensure!(
                v.is_none_or(f64::is_finite),
                "{name} must be a finite number"
            );
        }
        Ok(TradeFilter {
            mode: self.mode.as_deref().map(parse_mode).transpose()?,
            regime,
            symbol: self.symbol.clone(),
            min_return_bps: self.min_return_bps,
            max_return_bps: self.max_return_bps,
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            limit: None,
        })
    }
}

/// Opens the data dir's journal read-only.
pub fn open_journal(config: &Config) -> anyhow::Result<Journal> {
    let path = Layout::new(&config.data_dir).journal();
    anyhow::ensure!(
        path.exists(),
        "no journal at {}: run `quiver demo` or `quiver serve` on this data dir first",
        path.display()
    );
    Ok(Journal::open_read_only(&path)?)
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let journal = open_journal(&config)?;
    match &args.command {
        Command::Trades(a) => {
            let mut filter = a.filter.to_filter()?;
            filter.limit = Some(a.limit);
            let batches = tokio::task::spawn_blocking(move || journal.trades(&filter)).await??;
            output::print(&batches, a.format)
        }
        Command::Stats(a) => {
            let filter = TradeFilter {
                mode: a.mode.as_deref().map(parse_mode).transpose()?,
                since: a
                    .days
                    .map(|d| Ts(Ts::now().0 - i64::from(d) * 86_400_000_000)),
                ..Default::default()
            };
            let by = a.by;
            let rows =
                tokio::task::spawn_blocking(move || journal.closed_returns(&filter)).await??;
            let mut groups: Vec<(String, TradeStats)> =
                crate::analytics::group_stats(rows.iter().map(|r| {
                    let key = match by {
                        GroupBy::Mode => r.mode.as_str(),
                        GroupBy::Regime => r.regime.as_str(),
                        GroupBy::Symbol => r.symbol.as_str(),
                    };
                    (key, r.pnl_bps)
                }))
                .into_iter()
                .collect();
            let all: Vec<f64> = rows.iter().map(|r| r.pnl_bps).collect();
            groups.push(("(all)".into(), TradeStats::from_returns(&all)));
            let label = match by {
                GroupBy::Mode => "mode",
                GroupBy::Regime => "regime",
                GroupBy::Symbol => "symbol",
            };
            output::print(&[stats_batch(label, &groups)?], a.format)
        }
    }
}

/// Statistics as a table, one row per group.
pub fn stats_batch(label: &str, groups: &[(String, TradeStats)]) -> anyhow::Result<RecordBatch> {
    let f = |name: &str| Field::new(name, DataType::Float64, true);
    let schema = Arc::new(Schema::new(vec![
        Field::new(label, DataType::Utf8, false),
        Field::new("trades", DataType::UInt64, false),
        Field::new("wins", DataType::UInt64, false),
        f("win_rate"),
        f("avg_return_bps"),
        f("median_return_bps"),
        f("total_return_bps"),
        f("profit_factor"),
        f("sharpe"),
        f("max_drawdown_bps"),
    ]));
    let col = |get: &dyn Fn(&TradeStats) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(groups.iter().map(|(_, s)| get(s))))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(groups.iter().map(|(k, _)| k))),
        Arc::new(UInt64Array::from_iter_values(
            groups.iter().map(|(_, s)| s.trades),
        )),
        Arc::new(UInt64Array::from_iter_values(
            groups.iter().map(|(_, s)| s.wins),
        )),
        col(&|s| s.win_rate),
        col(&|s| s.avg_return_bps),
        col(&|s| s.median_return_bps),
        col(&|s| Some(s.total_return_bps)),
        col(&|s| s.profit_factor),
        col(&|s| s.sharpe),
        col(&|s| Some(s.max_drawdown_bps)),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
