//! `quiver explain DECISION_ID` (one gate decision) and `quiver explain
//! --signal SIGNAL_ID` (every gate of one signal): the reason in words, the
//! margin, the signal's outcome and the verdict, a suggestion for a
//! rejection, and the market the decision was made in. The sentences come
//! from [`crate::analytics::explain`]; the facts from the data dir or the
//! server that holds it.

use std::io::Write;

use anyhow::Context;
use arrow::array::RecordBatch;
use chrono::NaiveDate;
use datafusion::common::ScalarValue;

use crate::analytics::explain::{
    Decision, Explanation, Outcome, explain, format_margin, threshold_note,
};
use crate::app::rows::{check_id, floats, opt_floats, strings};
use crate::app::{Load, Session};
use crate::config::Config;
use crate::event::{Gate, GateResult};
use crate::gates::GatesConfig;
use crate::query::param;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The decision to explain (`decision_id` of `events.gate_decisions`).
    #[arg(required_unless_present = "signal", conflicts_with = "signal")]
    pub decision_id: Option<String>,
    /// Explain every gate decision of this signal instead.
    #[arg(long, value_name = "SIGNAL_ID")]
    pub signal: Option<String>,
    /// Query a running Flight SQL server instead of the data dir.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// One decision as read back, with what the explainer needs.
struct Row {
    decision_id: String,
    signal_id: String,
    symbol: String,
    ts: String,
    ts_us: i64,
    day: String,
    decision: Decision,
}

/// The signal's fate: its closed trade, or its resolved shadow trade.
struct Fate {
    traded_pnl: Option<f64>,
    shadow_pnl: Option<f64>,
    blocked_by: Option<String>,
}

impl Fate {
    fn outcome(&self) -> Outcome {
        match (self.traded_pnl, self.shadow_pnl) {
            (Some(p), _) => Outcome::Traded(p),
            (None, Some(p)) => Outcome::Shadow(p),
            (None, None) => Outcome::Unknown,
        }
    }
}

/// The market snapshot in force at the decision.
struct Market {
    ts: String,
    age_s: f64,
    regime: String,
    price: f64,
    spread_bps: f64,
    volatility: f64,
    volume: f64,
}

fn parse_field<T: std::str::FromStr>(id: &str, what: &str, text: &str) -> anyhow::Result<T> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("decision {id}: {what} {text:?} is not valid"))
}

fn read_rows(batches: &[RecordBatch]) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for batch in batches {
        let text = |name: &str| strings(batch, name);
        let (ids, signals, symbols, ts, days) = (
            text("decision_id")?,
            text("signal_id")?,
            text("symbol")?,
            text("ts")?,
            text("day")?,
        );
        let (gates, results, directions, modes, regimes) = (
            text("gate")?,
            text("result")?,
            text("direction")?,
            text("mode")?,
            text("regime")?,
        );
        let (values, thresholds, ts_us) = (
            floats(batch, "value")?,
            floats(batch, "threshold")?,
            floats(batch, "ts_us")?,
        );
        for i in 0..batch.num_rows() {
            let id = &ids[i];
            rows.push(Row {
                decision_id: ids[i].clone(),
                signal_id: signals[i].clone(),
                symbol: symbols[i].clone(),
                ts: ts[i].clone(),
                ts_us: ts_us[i] as i64,
                day: days[i].clone(),
                decision: Decision {
                    gate: parse_field(id, "gate", &gates[i])?,
                    result: parse_field(id, "result", &results[i])?,
                    value: values[i],
                    threshold: thresholds[i],
                    direction: parse_field(id, "direction", &directions[i])?,
                    mode: parse_field(id, "mode", &modes[i])?,
                    regime: parse_field(id, "regime", &regimes[i])?,
                },
            });
        }
    }
    // Pipeline order: the order of the gates file, which is Gate::ALL's.
    rows.sort_by_key(|r| {
        Gate::ALL
            .iter()
            .position(|g| *g == r.decision.gate)
            .unwrap_or(usize::MAX)
    });
    Ok(rows)
}

async fn fate(session: &mut Session, signal_id: &str) -> anyhow::Result<Fate> {
    const FATE: &str = "SELECT (SELECT max(pnl_bps) FROM events.trades \
                 WHERE signal_id = $1 AND kind = 'CLOSE') AS traded_pnl, \
                (SELECT max(outcome_pnl_bps) FROM events.shadow_trades \
                 WHERE signal_id = $1 AND kind = 'RESOLVED') AS shadow_pnl, \
                (SELECT min(blocked_by) FROM events.shadow_trades \
                 WHERE signal_id = $1) AS blocked_by";
    let batches = session
        .query_with(FATE, vec![param::text(signal_id)])
        .await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .context("the outcome query returned no row")?;
    let blocked_by = strings(batch, "blocked_by")?.remove(0);
    Ok(Fate {
        traded_pnl: opt_floats(batch, "traded_pnl")?.remove(0),
        shadow_pnl: opt_floats(batch, "shadow_pnl")?.remove(0),
        blocked_by: (!blocked_by.is_empty()).then_some(blocked_by),
    })
}

/// The latest market snapshot of `row`'s symbol at or before it, looking
/// back to the start of the previous day (two partitions at most).
async fn market(session: &mut Session, row: &Row) -> anyhow::Result<Option<Market>> {
    let day: NaiveDate = row
        .day
        .parse()
        .with_context(|| format!("decision {}: day {:?}", row.decision_id, row.day))?;
    let before = day.pred_opt().unwrap_or(day);
    // $1 the symbol, $2 and $3 the days, $4 the decision's time (µs).
    const MARKET: &str = "SELECT CAST(ts AS VARCHAR) AS ts, \
                CAST($4 - CAST(ts AS BIGINT) AS DOUBLE) / 1e6 AS age_s, \
                regime, price, spread_bps, volatility, volume \
         FROM events.market_context \
         WHERE symbol = $1 AND date IN ($2, $3) \
           AND ts <= to_timestamp_micros($4) \
         ORDER BY ts DESC LIMIT 1";
    let params = vec![
        param::text(&row.symbol),
        param::date(before),
        param::date(day),
        ScalarValue::Int64(Some(row.ts_us)),
    ];
    let batches = session.query_with(MARKET, params).await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    Ok(Some(Market {
        ts: strings(batch, "ts")?.remove(0),
        age_s: floats(batch, "age_s")?.remove(0),
        regime: strings(batch, "regime")?.remove(0),
        price: floats(batch, "price")?.remove(0),
        spread_bps: floats(batch, "spread_bps")?.remove(0),
        volatility: floats(batch, "volatility")?.remove(0),
        volume: floats(batch, "volume")?.remove(0),
    }))
}

/// The margin with its unit, or `None` for a yes/no gate.
fn margin_line(gates: &GatesConfig, row: &Row, e: &Explanation) -> Option<String> {
    let unit = gates.get(row.decision.gate).map_or("", |g| g.unit.as_str());
    let suffix = match unit {
        "flag" => return None,
        "bps" => " bps",
        "usd" => "M",
        _ => "",
    };
    let pct = e
        .margin_pct
        .map_or_else(String::new, |p| format!(" ({p:+.1}% of the threshold)"));
    Some(format!(
        "margin {}{suffix}{pct}",
        format_margin(unit, e.margin)
    ))
}

fn market_line(m: Option<&Market>) -> String {
    match m {
        None => "market: no snapshot of this symbol since the day before".into(),
        Some(m) => format!(
            "market: {} spread {} bps, volatility {}, volume {}M, price {} (snapshot at {}, {:.3} s before)",
            m.regime, m.spread_bps, m.volatility, m.volume, m.price, m.ts, m.age_s
        ),
    }
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let gates = config.definition_paths().gates()?;
    let mut session = Session::open(&config, args.server.as_deref(), Load::Skip).await?;
    let result = explain_in(&mut session, &gates, args).await;
    session.close().await?;
    result
}

async fn explain_in(session: &mut Session, gates: &GatesConfig, args: &Args) -> anyhow::Result<()> {
    let (filter, what) = match (&args.decision_id, &args.signal) {
        (Some(id), None) => ("decision_id", check_id("decision id", id)?),
        (None, Some(id)) => ("signal_id", check_id("signal id", id)?),
        _ => anyhow::bail!("give a DECISION_ID or --signal SIGNAL_ID"),
    };
    // The column is one of two names; the id is bound.
    let sql = format!(
        "SELECT decision_id, signal_id, symbol, CAST(ts AS VARCHAR) AS ts, \
                CAST(ts AS BIGINT) AS ts_us, CAST(date AS VARCHAR) AS day, \
                gate, result, value, threshold, direction, mode, regime \
         FROM events.gate_decisions WHERE {filter} = $1"
    );
    let rows = read_rows(&session.query_with(&sql, vec![param::text(what)]).await?)?;
    let Some(first) = rows.first() else {
        anyhow::bail!("no gate decision with {filter} {what} in events.gate_decisions");
    };
    let fate = fate(session, &first.signal_id).await?;
    let market = market(session, first).await?;
    let outcome = fate.outcome();
    let mut out = std::io::stdout().lock();
    let d = &first.decision;
    writeln!(
        out,
        "signal {}  {}  {}  {} in {}",
        first.signal_id, first.symbol, first.ts, d.mode, d.regime
    )?;
    for row in &rows {
        let Some(e) = explain(gates, &row.decision, outcome) else {
            continue;
        };
        writeln!(out)?;
        writeln!(out, "decision {}", row.decision_id)?;
        writeln!(out, "  {}", e.reason)?;
        if let Some(margin) = margin_line(gates, row, &e) {
            writeln!(out, "  {margin}")?;
        }
        writeln!(out, "  {}", e.outcome)?;
        if let Some(s) = &e.suggestion {
            writeln!(out, "  suggestion: {s}")?;
        }
        let d = &row.decision;
        if let Some(note) = gates
            .get(d.gate)
            .and_then(|def| threshold_note(def, d.mode, d.threshold))
        {
            writeln!(out, "  {note}")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "{}", market_line(market.as_ref()))?;
    if args.signal.is_some() {
        let failed: Vec<&str> = rows
            .iter()
            .filter(|r| r.decision.result == GateResult::Fail)
            .map(|r| r.decision.gate.as_str())
            .collect();
        let summary = match (failed.len(), &fate.blocked_by) {
            (0, _) => format!("passed all {} gates", rows.len()),
            (n, Some(first)) => format!(
                "blocked by {first}; {n} of {} gates failed: {}",
                rows.len(),
                failed.join(", ")
            ),
            (n, None) => format!("{n} of {} gates failed: {}", rows.len(), failed.join(", ")),
        };
        let pnl = match outcome {
            Outcome::Traded(p) => format!("the trade made {p:+} bps"),
            Outcome::Shadow(p) => format!("the shadow trade resolved at {p:+} bps"),
            Outcome::Unknown => "no closed or resolved trade yet".into(),
        };
        writeln!(out, "summary: {summary}; {pnl}")?;
    }
    Ok(())
}
