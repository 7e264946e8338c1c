//! The explain report: one gate decision, or every gate decision of one
//! signal, explained (reason, margin, verdict, suggestion, threshold note),
//! with the signal's fate and the market it was decided in. The SQL and the
//! decoding live here; the sentences come from [`crate::analytics::explain`],
//! the same functions `analysis.gate_explanations` calls through
//! `explain_gate`, so the two agree on every decision (pinned by
//! `explain::the_report_and_the_view_agree_on_every_decision`).

use anyhow::Context;
use arrow::array::RecordBatch;
use chrono::NaiveDate;
use datafusion::common::ScalarValue;

use super::Session;
use super::rows::{check_id, floats, opt_floats, strings};
use crate::analytics::explain::{Decision, Explanation, Outcome, explain, threshold_note};
use crate::event::{Gate, GateResult, Mode, Regime};
use crate::gates::GatesConfig;
use crate::query::param;

/// What to explain.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// One decision, by `decision_id`.
    Decision(&'a str),
    /// Every gate decision of one signal, by `signal_id`.
    Signal(&'a str),
}

/// The explained decisions of one signal.
#[derive(Debug, Clone)]
pub struct Report {
    pub signal_id: String,
    pub symbol: String,
    /// When the first decision was made (as the engine prints a timestamp).
    pub ts: String,
    pub mode: Mode,
    pub regime: Regime,
    /// In pipeline order (the order of the gates file).
    pub decisions: Vec<Explained>,
    pub fate: Fate,
    /// The market snapshot in force at the first decision.
    pub market: Option<Market>,
}

/// One decision and its explanation.
#[derive(Debug, Clone)]
pub struct Explained {
    pub decision_id: String,
    pub decision: Decision,
    pub explanation: Explanation,
    /// When the gate's threshold has changed since the decision.
    pub threshold_note: Option<String>,
}

/// The signal's fate: its closed trade, or its resolved shadow trade.
#[derive(Debug, Clone, PartialEq)]
pub struct Fate {
    pub traded_pnl: Option<f64>,
    pub shadow_pnl: Option<f64>,
    /// The gate that blocked the signal, if one did.
    pub blocked_by: Option<String>,
}

impl Fate {
    /// The outcome the explanations rest on: a closed trade's P&L wins over
    /// a shadow trade's.
    pub fn outcome(&self) -> Outcome {
        match (self.traded_pnl, self.shadow_pnl) {
            (Some(p), _) => Outcome::Traded(p),
            (None, Some(p)) => Outcome::Shadow(p),
            (None, None) => Outcome::Unknown,
        }
    }
}

/// The latest market snapshot of the signal's symbol at or before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Market {
    pub ts: String,
    /// How old the snapshot was at the decision, in seconds.
    pub age_s: f64,
    pub regime: String,
    pub price: f64,
    pub spread_bps: f64,
    pub volatility: f64,
    pub volume: f64,
}

impl Report {
    /// The gates that failed, in pipeline order.
    pub fn failed(&self) -> Vec<Gate> {
        self.decisions
            .iter()
            .filter(|d| d.decision.result == GateResult::Fail)
            .map(|d| d.decision.gate)
            .collect()
    }
}

/// Explains `subject` with the templates of `gates`. An id that is not an
/// id, or that names no decision, is an error.
pub async fn report(
    session: &mut Session,
    gates: &GatesConfig,
    subject: Subject<'_>,
) -> anyhow::Result<Report> {
    let (filter, id) = match subject {
        Subject::Decision(id) => ("decision_id", check_id("decision id", id)?),
        Subject::Signal(id) => ("signal_id", check_id("signal id", id)?),
    };
    // The column is one of two names; the id is bound.
    let sql = format!(
        "SELECT decision_id, signal_id, symbol, CAST(ts AS VARCHAR) AS ts, \
                CAST(ts AS BIGINT) AS ts_us, CAST(date AS VARCHAR) AS day, \
                gate, result, value, threshold, direction, mode, regime \
         FROM events.gate_decisions WHERE {filter} = $1"
    );
    let rows = read_rows(&session.query_with(&sql, vec![param::text(id)]).await?)?;
    let Some(first) = rows.first() else {
        anyhow::bail!("no gate decision with {filter} {id} in events.gate_decisions");
    };
    let fate = fate(session, &first.signal_id).await?;
    let market = market(session, first).await?;
    let outcome = fate.outcome();
    let decisions = rows
        .iter()
        .filter_map(|row| {
            let d = &row.decision;
            let def = gates.get(d.gate)?;
            Some(Explained {
                decision_id: row.decision_id.clone(),
                decision: d.clone(),
                explanation: explain(gates, d, outcome)?,
                threshold_note: threshold_note(def, d.mode, d.threshold),
            })
        })
        .collect();
    Ok(Report {
        signal_id: first.signal_id.clone(),
        symbol: first.symbol.clone(),
        ts: first.ts.clone(),
        mode: first.decision.mode,
        regime: first.decision.regime,
        decisions,
        fate,
        market,
    })
}

/// One decision as read back.
struct Row {
    decision_id: String,
    signal_id: String,
    symbol: String,
    ts: String,
    ts_us: i64,
    day: String,
    decision: Decision,
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

/// The signal's closed trade and resolved shadow trade, as
/// `analysis.gate_explanations` takes them (the largest of each).
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
