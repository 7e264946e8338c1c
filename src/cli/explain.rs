//! `quiver explain DECISION_ID` (one gate decision) and `quiver explain
//! --signal SIGNAL_ID` (every gate of one signal): the reason in words, the
//! margin, the signal's outcome and the verdict, a suggestion for a
//! rejection, and the market the decision was made in. The report is
//! [`crate::app::explain`]'s; this prints it.

use std::io::Write;

use crate::analytics::explain::{Explanation, Outcome, format_margin};
use crate::app::explain::{Market, Report, Subject, report};
use crate::app::{Load, Session};
use crate::config::Config;
use crate::event::Gate;
use crate::gates::GatesConfig;

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

/// The margin with its unit, or `None` for a yes/no gate.
fn margin_line(gates: &GatesConfig, gate: Gate, e: &Explanation) -> Option<String> {
    let unit = gates.get(gate).map_or("", |g| g.unit.as_str());
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
    let subject = match (&args.decision_id, &args.signal) {
        (Some(id), None) => Subject::Decision(id),
        (None, Some(id)) => Subject::Signal(id),
        _ => anyhow::bail!("give a DECISION_ID or --signal SIGNAL_ID"),
    };
    let report = report(session, gates, subject).await?;
    let text = render(gates, &report, matches!(subject, Subject::Signal(_)));
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// The report as `quiver explain` prints it (and `quiver dashboard` shows a
/// selected rejection): the signal, each decision's reason, margin, outcome,
/// suggestion and threshold note, the market, and with `summary` the
/// signal's fate.
pub(super) fn render(gates: &GatesConfig, report: &Report, summary: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "signal {}  {}  {}  {} in {}",
        report.signal_id, report.symbol, report.ts, report.mode, report.regime
    );
    for d in &report.decisions {
        let e = &d.explanation;
        let _ = writeln!(out);
        let _ = writeln!(out, "decision {}", d.decision_id);
        let _ = writeln!(out, "  {}", e.reason);
        if let Some(margin) = margin_line(gates, d.decision.gate, e) {
            let _ = writeln!(out, "  {margin}");
        }
        let _ = writeln!(out, "  {}", e.outcome);
        if let Some(s) = &e.suggestion {
            let _ = writeln!(out, "  suggestion: {s}");
        }
        if let Some(note) = &d.threshold_note {
            let _ = writeln!(out, "  {note}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", market_line(report.market.as_ref()));
    if summary {
        let _ = writeln!(out, "summary: {}", self::summary(report));
    }
    out
}

/// Which gates blocked the signal, and what it made.
fn summary(report: &Report) -> String {
    let failed: Vec<&str> = report.failed().iter().map(|g| g.as_str()).collect();
    let total = report.decisions.len();
    let gates = match (failed.len(), &report.fate.blocked_by) {
        (0, _) => format!("passed all {total} gates"),
        (n, Some(first)) => format!(
            "blocked by {first}; {n} of {total} gates failed: {}",
            failed.join(", ")
        ),
        (n, None) => format!("{n} of {total} gates failed: {}", failed.join(", ")),
    };
    let pnl = match report.fate.outcome() {
        Outcome::Traded(p) => format!("the trade made {p:+} bps"),
        Outcome::Shadow(p) => format!("the shadow trade resolved at {p:+} bps"),
        Outcome::Unknown => "no closed or resolved trade yet".into(),
    };
    format!("{gates}; {pnl}")
}
