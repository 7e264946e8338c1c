//! The day's findings, ranked: the gate whose blocks cost the most, the
//! regime where the bot loses, the biggest latency bottleneck, and
//! calibration drift. Each finding is written from the rows of the queries
//! it names, and quotes their values as the queries return them (rounded in
//! SQL), written for people in their unit ([`crate::analytics::format`]:
//! ratios as percentages, bps and ms with two decimals), so every number in
//! the text is a number in a query result. The queries, and running them, are
//! [`crate::app::insights`]'s.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::analytics::format::with_unit;

/// One value of a query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => write!(f, "NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(s) => write!(f, "{s}"),
        }
    }
}

/// One result row, by column name.
pub type Row = BTreeMap<String, Value>;

pub const GATE_BLOCKS: &str = "gate_blocks";
pub const REGIMES: &str = "regime_pnl";
pub const LATENCY: &str = "step_latency";
pub const LATENCY_BEFORE: &str = "step_latency_previous_7_days";
pub const CALIBRATION: &str = "calibration";
pub const MODEL_CALIBRATION: &str = "model_calibration";

/// Labelled predictions a model needs on the day before its calibration is
/// judged (as the metrics' ECE needs).
pub const MODEL_SAMPLES_MIN: i64 = 100;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    /// P&L at stake, in bps (0 for findings about latency or models); ranks
    /// findings of the same severity.
    pub impact_bps: f64,
    pub text: String,
    /// The queries whose values the text quotes.
    pub rests_on: Vec<&'static str>,
}

fn get<'a>(row: &'a Row, column: &str) -> &'a Value {
    row.get(column).unwrap_or(&Value::Null)
}

fn num(row: &Row, column: &str) -> f64 {
    get(row, column).as_f64().unwrap_or(0.0)
}

/// A numeric cell in `unit` for a sentence (`40.00%`, `-80.00 bps`); a
/// missing value reads "n/a".
fn quote(row: &Row, column: &str, unit: &str) -> String {
    get(row, column)
        .as_f64()
        .map_or_else(|| "n/a".to_string(), |v| with_unit(v, unit))
}

fn gate_finding(rows: &[Row]) -> Option<Finding> {
    // Ordered by missed_bps, largest first.
    let top = rows.first()?;
    if num(top, "bad_blocks") <= 0.0 {
        return None;
    }
    let (missed, saved) = (num(top, "missed_bps"), num(top, "saved_bps"));
    let severity = if missed > saved {
        Severity::Warning
    } else {
        Severity::Info
    };
    let mut text = format!(
        "{} has the highest bad-block cost: {} of its {} resolved blocks would have won, \
         missing {} against {} its good blocks saved (good-block rate {})",
        get(top, "gate"),
        get(top, "bad_blocks"),
        get(top, "resolved_blocks"),
        quote(top, "missed_bps", "bps"),
        quote(top, "saved_bps", "bps"),
        quote(top, "good_block_rate", "ratio"),
    );
    if severity == Severity::Warning {
        text.push_str("; it cost more than it saved");
    }
    text.push('.');
    Some(Finding {
        severity,
        impact_bps: missed,
        text,
        rests_on: vec![GATE_BLOCKS],
    })
}

fn regime_finding(rows: &[Row]) -> Option<Finding> {
    // Ordered by total P&L, lowest first.
    let worst = rows.first()?;
    let total = num(worst, "total_pnl_bps");
    let facts = format!(
        "{} closed trades, win rate {}, {} in total ({} per trade)",
        get(worst, "trades"),
        quote(worst, "win_rate", "ratio"),
        quote(worst, "total_pnl_bps", "bps"),
        quote(worst, "avg_pnl_bps", "bps"),
    );
    Some(if total < 0.0 {
        Finding {
            severity: Severity::Warning,
            impact_bps: -total,
            text: format!("The bot loses in {}: {facts}.", get(worst, "regime")),
            rests_on: vec![REGIMES],
        }
    } else {
        Finding {
            severity: Severity::Info,
            impact_bps: 0.0,
            text: format!(
                "No regime lost money; the weakest was {}: {facts}.",
                get(worst, "regime")
            ),
            rests_on: vec![REGIMES],
        }
    })
}

fn latency_finding(rows: &[Row], before: &[Row]) -> Option<Finding> {
    // Ordered by share of the day's decision time, largest first.
    let top = rows.first()?;
    let step = get(top, "step").to_string();
    let mut text = format!(
        "{step} is the biggest latency bottleneck: {} of the day's decision time over {} steps, \
         mean {}, 95th percentile {}",
        quote(top, "share", "ratio"),
        get(top, "steps"),
        quote(top, "avg_ms", "ms"),
        quote(top, "p95_ms", "ms"),
    );
    let previous = before.iter().find(|r| get(r, "step").to_string() == step);
    let mut severity = Severity::Info;
    if let Some(prev) = previous {
        let (now, then) = (num(top, "p95_ms"), num(prev, "p95_ms"));
        // Slower by half again is drift worth a look.
        if then > 0.0 && now > then * 1.5 {
            severity = Severity::Warning;
            let _ = write!(
                text,
                ", up from {} over the previous week",
                quote(prev, "p95_ms", "ms")
            );
        } else {
            let _ = write!(text, " (previous week: {})", quote(prev, "p95_ms", "ms"));
        }
    }
    text.push('.');
    Some(Finding {
        severity,
        impact_bps: 0.0,
        text,
        rests_on: vec![LATENCY, LATENCY_BEFORE],
    })
}

fn calibration_finding(periods: &[Row], worst: &[Row]) -> Option<Finding> {
    let of = |period: &str| {
        periods
            .iter()
            .find(|r| get(r, "period").to_string() == period)
    };
    let day = of("day")?;
    let mut text = format!(
        "Calibration: ECE {} over {} labelled predictions",
        quote(day, "ece", "ratio"),
        get(day, "samples"),
    );
    let mut severity = Severity::Info;
    if let Some(before) = of("previous_7_days") {
        let (now, then) = (num(day, "ece"), num(before, "ece"));
        // Worse by half again is drift.
        let drift = then > 0.0 && now > then * 1.5;
        if drift {
            severity = Severity::Warning;
        }
        let _ = write!(
            text,
            "{} {} over the previous week ({} predictions)",
            if drift {
                ", drifting from"
            } else {
                ", against"
            },
            quote(before, "ece", "ratio"),
            get(before, "samples"),
        );
    }
    if let Some(model) = worst.first() {
        let _ = write!(
            text,
            "; least calibrated model {} at ECE {} ({} predictions)",
            get(model, "model"),
            quote(model, "ece", "ratio"),
            get(model, "samples"),
        );
    }
    text.push('.');
    Some(Finding {
        severity,
        impact_bps: 0.0,
        text,
        rests_on: vec![CALIBRATION, MODEL_CALIBRATION],
    })
}

/// The findings for the results of [`queries`] (by query name), ranked:
/// warnings first, then by P&L at stake.
pub fn findings(results: &BTreeMap<&str, Vec<Row>>) -> Vec<Finding> {
    let rows = |name: &str| results.get(name).map_or(&[][..], |r| r.as_slice());
    let mut found: Vec<Finding> = [
        gate_finding(rows(GATE_BLOCKS)),
        regime_finding(rows(REGIMES)),
        latency_finding(rows(LATENCY), rows(LATENCY_BEFORE)),
        calibration_finding(rows(CALIBRATION), rows(MODEL_CALIBRATION)),
    ]
    .into_iter()
    .flatten()
    .collect();
    found.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.impact_bps.total_cmp(&a.impact_bps))
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[(&str, Value)]) -> Row {
        cells
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn findings_rank_warnings_then_bps_and_quote_their_rows() {
        let mut results = BTreeMap::new();
        results.insert(
            GATE_BLOCKS,
            vec![row(&[
                ("gate", Value::Text("spread_gate".into())),
                ("resolved_blocks", Value::Int(5)),
                ("bad_blocks", Value::Int(3)),
                ("missed_bps", Value::Float(45.5)),
                ("saved_bps", Value::Float(12.25)),
                ("good_block_rate", Value::Float(0.4)),
            ])],
        );
        results.insert(
            REGIMES,
            vec![row(&[
                ("regime", Value::Text("PANIC".into())),
                ("trades", Value::Int(4)),
                ("win_rate", Value::Float(0.25)),
                ("total_pnl_bps", Value::Float(-80.0)),
                ("avg_pnl_bps", Value::Float(-20.0)),
            ])],
        );
        let found = findings(&results);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].text,
            "The bot loses in PANIC: 4 closed trades, win rate 25.00%, -80.00 bps in total \
             (-20.00 bps per trade)."
        );
        assert_eq!(found[1].severity, Severity::Warning);
        assert!(
            found[1]
                .text
                .starts_with("spread_gate has the highest bad-block cost: 3 of its 5")
        );
        assert!(
            found[1]
                .text
                .ends_with("(good-block rate 40.00%); it cost more than it saved.")
        );
        // No rows, no findings.
        assert!(findings(&BTreeMap::new()).is_empty());
    }
}
