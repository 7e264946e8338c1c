//! The gate explainer: why one gate passed or rejected one signal, by how
//! much, what the signal would have made, whether the gate was right, and
//! what would have changed its mind. The sentences come from the `explain`
//! templates of `configs/gates.yaml`; the numbers from the decision as it was
//! logged (its value, and the threshold in force at the time).
//!
//! ```
//! use quiver::analytics::explain::{Decision, Outcome, Verdict, explain};
//! use quiver::event::{Direction, Gate, GateResult, Mode, Regime};
//! use quiver::gates::GatesConfig;
//!
//! let gates = GatesConfig::builtin().unwrap();
//! let decision = Decision {
//!     gate: Gate::SpreadGate,
//!     result: GateResult::Fail,
//!     value: 7.2,
//!     threshold: 5.0,
//!     direction: Direction::Max,
//!     mode: Mode::Scalp,
//!     regime: Regime::Trend,
//! };
//! let e = explain(&gates, &decision, Outcome::Shadow(-12.5)).unwrap();
//! assert_eq!(e.reason, "spread_gate REJECTED: spread 7.2 bps above the 5 bps maximum");
//! assert_eq!(e.suggestion.as_deref(), Some("needs spread <= 5 bps, now 7.2"));
//! assert_eq!(e.verdict, Verdict::GoodBlock);
//! assert_eq!(e.outcome, "good block: the trade would have lost 12.5 bps");
//! ```

use crate::event::{Direction, Gate, GateResult, Mode, Regime};
use crate::gates::template::render;
use crate::gates::{GateDef, GatesConfig};

/// One gate decision, as logged in `events.gate_decisions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub gate: Gate,
    pub result: GateResult,
    pub value: f64,
    pub threshold: f64,
    pub direction: Direction,
    pub mode: Mode,
    pub regime: Regime,
}

/// What became of the decision's signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// No closed trade and no resolved shadow trade (yet).
    Unknown,
    /// The signal was traded; the closed trade's P&L in bps.
    Traded(f64),
    /// The signal was blocked; the resolved shadow trade's P&L in bps.
    Shadow(f64),
}

impl Outcome {
    /// From the columns the SQL side has: the P&L (closed or shadow) and
    /// whether it was a real trade.
    pub fn from_parts(pnl_bps: Option<f64>, traded: bool) -> Self {
        match pnl_bps {
            None => Outcome::Unknown,
            Some(p) if traded => Outcome::Traded(p),
            Some(p) => Outcome::Shadow(p),
        }
    }

    pub fn pnl_bps(self) -> Option<f64> {
        match self {
            Outcome::Unknown => None,
            Outcome::Traded(p) | Outcome::Shadow(p) => Some(p),
        }
    }
}

/// Whether the gate was right, once the outcome is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Rejected, and the trade would have lost (or broken even).
    GoodBlock,
    /// Rejected, and the trade would have won.
    BadBlock,
    /// Passed, and the trade won.
    GoodPass,
    /// Passed, and the trade lost (or broke even).
    BadPass,
    /// The outcome is not known yet.
    Pending,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::GoodBlock => "good_block",
            Verdict::BadBlock => "bad_block",
            Verdict::GoodPass => "good_pass",
            Verdict::BadPass => "bad_pass",
            Verdict::Pending => "pending",
        }
    }
}

/// One decision explained.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The gate's `pass` or `fail` template, filled in.
    pub reason: String,
    /// How far the value was on the passing side of the threshold (negative:
    /// how far it missed), in the value's unit.
    pub margin: f64,
    /// `margin` as a percentage of the threshold; `None` for a zero
    /// threshold and for yes/no gates.
    pub margin_pct: Option<f64>,
    pub verdict: Verdict,
    /// The verdict in words, with the P&L it rests on.
    pub outcome: String,
    /// The counterfactual (shadow) or actual P&L in bps, if known.
    pub pnl_bps: Option<f64>,
    /// For a rejection: the gate's `suggestion` template, filled in.
    pub suggestion: Option<String>,
}

/// A number with at most `decimals` decimals, trailing zeros dropped.
fn trimmed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

fn signed(text: String) -> String {
    if text.starts_with('-') || text == "0" {
        text
    } else {
        format!("+{text}")
    }
}

/// A value in its gate's unit, as the templates show it (without the unit
/// word, which the template writes).
pub fn format_value(unit: &str, v: f64) -> String {
    match unit {
        "probability" => format!("{:.1}%", v * 100.0),
        "bps" | "usd" => trimmed(v, 2),
        "ratio" => trimmed(v, 3),
        "flag" => if v >= 0.5 { "yes" } else { "no" }.to_string(),
        _ => trimmed(v, 4),
    }
}

/// A margin in its gate's unit, signed; probabilities in percentage points.
pub fn format_margin(unit: &str, margin: f64) -> String {
    match unit {
        "probability" => format!("{} pp", signed(trimmed(margin * 100.0, 1))),
        "flag" => signed(trimmed(margin, 0)),
        _ => signed(format_value(unit, margin)),
    }
}

fn format_pct(pct: Option<f64>) -> String {
    pct.map_or_else(
        || "n/a".to_string(),
        |p| format!("{}%", signed(trimmed(p, 1))),
    )
}

fn format_bps(v: f64) -> String {
    trimmed(v.abs(), 2)
}

/// How far `value` is on the passing side of `threshold`.
pub fn margin(direction: Direction, value: f64, threshold: f64) -> f64 {
    match direction {
        Direction::Min => value - threshold,
        Direction::Max => threshold - value,
    }
}

fn verdict(result: GateResult, outcome: Outcome) -> (Verdict, String) {
    let Some(pnl) = outcome.pnl_bps() else {
        let text = match result {
            GateResult::Fail => "pending: the shadow trade has not resolved yet",
            GateResult::Pass => "pending: the signal has no closed or resolved trade yet",
        };
        return (Verdict::Pending, text.to_string());
    };
    let won = crate::analytics::is_win(pnl);
    let made = if won {
        format!("made +{} bps", format_bps(pnl))
    } else if pnl == 0.0 {
        "broken even".to_string()
    } else {
        format!("lost {} bps", format_bps(pnl))
    };
    match (result, outcome) {
        (GateResult::Fail, _) if won => (
            Verdict::BadBlock,
            format!("bad block: the trade would have {made}"),
        ),
        (GateResult::Fail, _) => (
            Verdict::GoodBlock,
            format!("good block: the trade would have {made}"),
        ),
        (GateResult::Pass, Outcome::Traded(_)) => {
            let has = if pnl == 0.0 {
                "broke even".into()
            } else {
                made
            };
            if won {
                (Verdict::GoodPass, format!("good pass: the trade {has}"))
            } else {
                (Verdict::BadPass, format!("bad pass: the trade {has}"))
            }
        }
        (GateResult::Pass, _) => {
            let v = if won {
                Verdict::GoodPass
            } else {
                Verdict::BadPass
            };
            let word = if won { "good pass" } else { "bad pass" };
            (
                v,
                format!("{word}: another gate blocked the signal; the trade would have {made}"),
            )
        }
    }
}

/// Explains one decision with its gate's templates.
pub fn explain_with(def: &GateDef, decision: &Decision, outcome: Outcome) -> Explanation {
    let unit = def.unit.as_str();
    let margin = margin(decision.direction, decision.value, decision.threshold);
    let margin_pct = if unit == "flag" || decision.threshold == 0.0 {
        None
    } else {
        Some(margin / decision.threshold.abs() * 100.0)
    };
    let allowed = def.allowed_regimes.as_ref().map(|a| {
        a.get(decision.mode)
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join("/")
    });
    let fill = |name: &str| -> Option<String> {
        Some(match name {
            "gate" => decision.gate.as_str().to_string(),
            "value" => format_value(unit, decision.value),
            "threshold" => format_value(unit, decision.threshold),
            "margin" => format_margin(unit, margin),
            "margin_pct" => format_pct(margin_pct),
            "unit" => unit.to_string(),
            "regime" => decision.regime.as_str().to_string(),
            "mode" => decision.mode.as_str().to_string(),
            "allowed" => allowed.clone().unwrap_or_else(|| "any".into()),
            _ => return None,
        })
    };
    let (reason, suggestion) = match decision.result {
        GateResult::Pass => (render(&def.explain.pass, fill), None),
        GateResult::Fail => (
            render(&def.explain.fail, fill),
            Some(render(&def.explain.suggestion, fill)),
        ),
    };
    let (verdict, outcome_text) = verdict(decision.result, outcome);
    Explanation {
        reason,
        margin,
        margin_pct,
        verdict,
        outcome: outcome_text,
        pnl_bps: outcome.pnl_bps(),
        suggestion,
    }
}

/// When the gate's threshold for `mode` is no longer the one a decision
/// used (`recorded`): the current one, and the change in the gate's history
/// that set it.
pub fn threshold_note(def: &GateDef, mode: Mode, recorded: f64) -> Option<String> {
    let now = *def.thresholds.get(mode);
    if now == recorded {
        return None;
    }
    let unit = def.unit.as_str();
    let since = def
        .history
        .iter()
        .rev()
        .find(|c| *c.thresholds.get(mode) == now)
        .map(|c| {
            format!(
                " since {} ({})",
                c.at.format("%Y-%m-%d %H:%M UTC"),
                c.reason
            )
        })
        .unwrap_or_default();
    Some(format!(
        "the {mode} threshold was {} then; it is {}{since}",
        format_value(unit, recorded),
        format_value(unit, now)
    ))
}

/// Explains one decision with the templates of `gates` (`None` if `gates`
/// has no definition of the decision's gate).
pub fn explain(gates: &GatesConfig, decision: &Decision, outcome: Outcome) -> Option<Explanation> {
    gates
        .get(decision.gate)
        .map(|def| explain_with(def, decision, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(gate: Gate, result: GateResult, value: f64, threshold: f64) -> Decision {
        let direction = if gate == Gate::SpreadGate {
            Direction::Max
        } else {
            Direction::Min
        };
        Decision {
            gate,
            result,
            value,
            threshold,
            direction,
            mode: Mode::Scalp,
            regime: Regime::Range,
        }
    }

    #[test]
    fn numbers_are_trimmed_and_signed() {
        assert_eq!(trimmed(5.0, 2), "5");
        assert_eq!(trimmed(7.2, 2), "7.2");
        assert_eq!(trimmed(-0.001, 2), "0");
        assert_eq!(format_value("probability", 0.42), "42.0%");
        assert_eq!(format_margin("probability", -0.03), "-3 pp");
        assert_eq!(format_margin("bps", 2.25), "+2.25");
        assert_eq!(format_pct(Some(-44.0)), "-44%");
        assert_eq!(format_pct(None), "n/a");
    }

    #[test]
    fn the_issue_examples_read_as_written() {
        let gates = GatesConfig::builtin().unwrap();
        let e = explain(
            &gates,
            &decision(Gate::MetaLabel, GateResult::Fail, 0.42, 0.45),
            Outcome::Unknown,
        )
        .unwrap();
        assert_eq!(
            e.reason,
            "meta_label REJECTED: win probability 42.0% below threshold 45.0%"
        );
        assert_eq!(e.verdict, Verdict::Pending);
        let e = explain(
            &gates,
            &decision(Gate::SpreadGate, GateResult::Fail, 7.2, 5.0),
            Outcome::Shadow(-12.5),
        )
        .unwrap();
        assert_eq!(
            e.suggestion.as_deref(),
            Some("needs spread <= 5 bps, now 7.2")
        );
        // 5 - 7.2 = -2.2 bps, -44% of 5.
        assert!((e.margin + 2.2).abs() < 1e-12);
        assert!((e.margin_pct.unwrap() + 44.0).abs() < 1e-9);
        assert_eq!(e.verdict, Verdict::GoodBlock);
        assert_eq!(e.outcome, "good block: the trade would have lost 12.5 bps");
    }

    #[test]
    fn verdicts_cover_blocks_passes_and_break_even() {
        let fail = GateResult::Fail;
        let pass = GateResult::Pass;
        assert_eq!(verdict(fail, Outcome::Shadow(3.0)).0, Verdict::BadBlock);
        assert_eq!(verdict(fail, Outcome::Shadow(0.0)).0, Verdict::GoodBlock);
        assert_eq!(
            verdict(fail, Outcome::Shadow(0.0)).1,
            "good block: the trade would have broken even"
        );
        assert_eq!(
            verdict(pass, Outcome::Traded(0.0)).1,
            "bad pass: the trade broke even"
        );
        assert_eq!(verdict(pass, Outcome::Traded(4.5)).0, Verdict::GoodPass);
        assert_eq!(
            verdict(pass, Outcome::Shadow(-2.0)).1,
            "bad pass: another gate blocked the signal; the trade would have lost 2 bps"
        );
        assert_eq!(verdict(pass, Outcome::Unknown).0, Verdict::Pending);
    }

    #[test]
    fn a_changed_threshold_names_the_change() {
        let gates = GatesConfig::builtin().unwrap();
        let meta = gates.get(Gate::MetaLabel).unwrap();
        assert_eq!(threshold_note(meta, Mode::Scalp, 0.55), None);
        assert_eq!(
            threshold_note(meta, Mode::Scalp, 0.53).as_deref(),
            Some(
                "the scalp threshold was 53.0% then; it is 55.0% since 2025-10-28 09:30 UTC \
                 (recalibrated model v7; ECE 0.021)"
            )
        );
    }
}
