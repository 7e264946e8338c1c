//! `quiver report`: one self-contained HTML file for a day (no network, no
//! script): equity curve and drawdown, win rate by mode and regime against
//! targets, gate pass rates against targets, good and bad blocks per gate,
//! latency per step, the production model's reliability diagram, the
//! insights, the verified council summary and the day's alerts.
//!
//! [`gather`] runs the queries on a [`Session`]; [`html`] is pure.

pub mod charts;

use chrono::NaiveDate;

use super::Session;
use super::council::Run;
use super::insights as insight_queries;
use crate::analytics::Calibration;
use crate::council::packet::Packet;
use crate::gates::GatesConfig;
use crate::query::param;
use charts::{Bar, html_escape};

const CLOSES_SQL: &str = "SELECT ts, pnl_bps FROM events.trades \
     WHERE kind = 'CLOSE' AND pnl_bps IS NOT NULL AND date = $1 ORDER BY ts, event_id";

const PRODUCTION_SQL: &str = "SELECT model_id FROM registry.v_model_aliases_current \
     WHERE alias = 'production'";

/// With no production alias: the model with the most labelled predictions
/// on the day.
const MOST_LABELLED_SQL: &str = "SELECT model_id, count(*) AS n FROM learning.prediction_outcomes \
     WHERE day = $1 GROUP BY model_id ORDER BY n DESC, model_id LIMIT 1";

const OUTCOMES_SQL: &str = "SELECT predicted_prob, CAST(label AS DOUBLE) AS label \
     FROM learning.prediction_outcomes WHERE model_id = $1 AND day = $2";

/// What the report shows, fetched.
pub struct Data {
    pub packet: Packet,
    /// (hour of the day, cumulative P&L in bps) after each closed trade.
    pub equity: Vec<(f64, f64)>,
    /// (gate, good blocks, bad blocks) of the day's resolved shadow trades.
    pub blocks: Vec<(String, f64, f64)>,
    /// The model whose calibration is drawn (the production model, else the
    /// day's most labelled), what it is, and its calibration on the day.
    pub production: Option<(String, &'static str, Calibration)>,
    pub gates: GatesConfig,
}

/// Fetches the day's data; `packet` is the council's (already read).
pub async fn gather(
    session: &mut Session,
    packet: Packet,
    gates: GatesConfig,
) -> anyhow::Result<Data> {
    let day = packet.date;
    let closes = session
        .query_with(CLOSES_SQL, vec![param::date(day)])
        .await?;
    let mut equity = Vec::new();
    let mut total = 0.0;
    for row in insight_queries::rows(&closes)? {
        let (Some(ts), Some(pnl)) = (row.get("ts"), row.get("pnl_bps").and_then(|v| v.as_f64()))
        else {
            continue;
        };
        total += pnl;
        equity.push((hour_of(&ts.to_string()), total));
    }
    let results = insight_queries::run(
        session,
        &insight_queries::queries(day)
            .into_iter()
            .filter(|q| q.name == crate::analytics::insights::GATE_BLOCKS)
            .collect::<Vec<_>>(),
    )
    .await?;
    let blocks = results
        .get(crate::analytics::insights::GATE_BLOCKS)
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let n = |c: &str| r.get(c).and_then(|v| v.as_f64()).unwrap_or(0.0);
                    let gate = r.get("gate").map(ToString::to_string).unwrap_or_default();
                    (
                        gate,
                        n("resolved_blocks") - n("bad_blocks"),
                        n("bad_blocks"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let production = session.query(PRODUCTION_SQL).await?;
    let mut model = insight_queries::rows(&production)?
        .first()
        .and_then(|r| r.get("model_id").map(ToString::to_string))
        .map(|m| (m, "production"));
    if model.is_none() {
        let most = session
            .query_with(MOST_LABELLED_SQL, vec![param::date(day)])
            .await?;
        model = insight_queries::rows(&most)?
            .first()
            .and_then(|r| r.get("model_id").map(ToString::to_string))
            .map(|m| (m, "most labelled; no production alias"));
    }
    let production = match model {
        Some((model, what)) => {
            let batches = session
                .query_with(OUTCOMES_SQL, vec![param::text(&model), param::date(day)])
                .await?;
            let pairs: Vec<(f64, bool)> = insight_queries::rows(&batches)?
                .iter()
                .filter_map(|r| {
                    let p = r.get("predicted_prob")?.as_f64()?;
                    let y = r.get("label")?.as_f64()?;
                    (y == 0.0 || y == 1.0).then_some((p, y == 1.0))
                })
                .collect();
            Calibration::compute(&pairs, 10).map(|c| (model, what, c))
        }
        None => None,
    };
    Ok(Data {
        packet,
        equity,
        blocks,
        production,
        gates,
    })
}

/// `2026-12-03T09:30:00.5Z` (or with a space) as 9.5008 hours.
fn hour_of(ts: &str) -> f64 {
    let time = ts.split(['T', ' ']).nth(1).unwrap_or("");
    let mut parts = time.trim_end_matches('Z').split(':');
    let h: f64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
    let m: f64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
    let s: f64 = parts
        .next()
        .and_then(|p| {
            p.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    h + m / 60.0 + s / 3600.0
}

fn values<'a>(
    packet: &'a Packet,
    metric: &'a str,
) -> impl Iterator<Item = &'a crate::council::packet::PacketValue> {
    packet
        .metrics
        .iter()
        .filter(move |m| m.of.metric == metric && m.value.is_some())
}

/// The day's report as one HTML document.
pub fn html(data: &Data, council: &Run) -> String {
    let p = &data.packet;
    let mut figures: Vec<(String, String, usize)> = Vec::new();
    let mut add =
        |title: &str, svg: String, points: usize| figures.push((title.to_string(), svg, points));

    // Equity and drawdown.
    let mut peak = 0f64;
    let drawdown: Vec<(f64, f64)> = data
        .equity
        .iter()
        .map(|&(h, e)| {
            peak = peak.max(e);
            (h, e - peak)
        })
        .collect();
    add(
        "Equity curve",
        charts::line("Equity curve (cumulative P&L)", "bps", &data.equity, false),
        data.equity.len(),
    );
    add(
        "Drawdown",
        charts::line("Drawdown from the running peak", "bps", &drawdown, true),
        drawdown.len(),
    );

    // Win rates against their targets.
    let target_of = |m: &crate::council::packet::PacketValue| m.target.map(|t| (t, 1.0));
    for (metric, dim, title) in [
        ("win_rate", "mode", "Win rate by mode"),
        ("win_rate_by_regime", "regime", "Win rate by regime"),
    ] {
        let bars: Vec<Bar> = values(p, metric)
            .map(|m| Bar {
                label: m.of.dimensions.get(dim).cloned().unwrap_or_default(),
                value: m.value.unwrap_or(0.0),
                target: target_of(m),
            })
            .collect();
        add(
            title,
            charts::bars(
                &format!("{title} (bands: target and above)"),
                "%",
                &bars,
                true,
            ),
            bars.len(),
        );
    }

    // Gate pass rates against gates.yaml's target bands.
    let bars: Vec<Bar> = values(p, "gate_pass_rate")
        .map(|m| {
            let gate = m.of.dimensions.get("gate").cloned().unwrap_or_default();
            let mode = m.of.dimensions.get("mode").cloned().unwrap_or_default();
            let target = data
                .gates
                .gates
                .iter()
                .find(|g| g.gate.as_str() == gate)
                .map(|g| {
                    if mode == "runner" {
                        g.pass_rate_target.runner
                    } else {
                        g.pass_rate_target.scalp
                    }
                })
                .map(|[lo, hi]| (lo, hi));
            Bar {
                label: format!("{gate} {mode}"),
                value: m.value.unwrap_or(0.0),
                target,
            }
        })
        .collect();
    add(
        "Gate pass rates",
        charts::bars(
            "Gate pass rates (bands: gates.yaml targets)",
            "%",
            &bars,
            true,
        ),
        bars.len(),
    );
    add(
        "Good and bad blocks",
        charts::pairs(
            "Good and bad blocks per gate (resolved shadow trades)",
            &data.blocks,
            ("good", "bad"),
        ),
        data.blocks.len(),
    );

    // Latency per step.
    let mut steps: Vec<Bar> = values(p, "step_latency_p95_ms")
        .map(|m| Bar {
            label: m.of.dimensions.get("step").cloned().unwrap_or_default(),
            value: m.value.unwrap_or(0.0),
            target: None,
        })
        .collect();
    steps.sort_by(|a, b| b.value.total_cmp(&a.value));
    add(
        "Latency per step",
        charts::bars("Decision-trace step latency, p95", "ms", &steps, false),
        steps.len(),
    );

    // Calibration.
    let (points, model) = match &data.production {
        Some((model, what, c)) => (
            c.bins
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| (b.avg_predicted, b.observed_rate))
                .collect::<Vec<_>>(),
            format!(
                "{} ({what}; ECE {:.4}, {} samples)",
                &model[..model.len().min(12)],
                c.ece,
                c.samples
            ),
        ),
        None => (
            Vec::new(),
            "no production model with labelled predictions".to_string(),
        ),
    };
    add(
        "Calibration",
        charts::reliability(&format!("Reliability: {model}"), &points),
        points.len(),
    );

    let mut out = String::new();
    out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
    out += &format!("<title>Quiver daily report {}</title>\n", p.date);
    out += "<style>body{font-family:sans-serif;max-width:1340px;margin:2em auto;color:#222}\
            figure{display:inline-block;margin:8px;border:1px solid #ddd;padding:4px}\
            figcaption{font-size:13px;color:#555}table{border-collapse:collapse}\
            td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.warning{color:#b36b00}\
            .critical{color:#c00}</style></head><body>\n";
    out += &format!("<h1>Quiver daily report, {}</h1>\n", p.date);
    out += &format!(
        "<p>{} metric values, {} alerts, {} insights. Generated by quiver {}.</p>\n",
        p.metrics.len(),
        p.alerts.len(),
        p.insights.len(),
        env!("CARGO_PKG_VERSION")
    );
    out += "<h2>Charts</h2>\n";
    for (title, svg, points) in &figures {
        out += &format!(
            "<figure class=\"chart\" data-points=\"{points}\">{svg}<figcaption>{} ({points} points)</figcaption></figure>\n",
            html_escape(title)
        );
    }
    out += "<h2>Insights</h2>\n<ul>\n";
    for i in &p.insights {
        out += &format!(
            "<li class=\"{}\">[{}] {}</li>\n",
            html_escape(&i.severity),
            html_escape(&i.severity),
            html_escape(&i.text)
        );
    }
    if p.insights.is_empty() {
        out += "<li>No findings.</li>\n";
    }
    out += "</ul>\n<h2>Council (every number verified against the metrics)</h2>\n<ul>\n";
    for s in &council.outcome.summary {
        let refs: Vec<String> = s
            .rests_on
            .iter()
            .map(|r| format!("<code>{}</code>", html_escape(&r.to_string())))
            .collect();
        out += &format!(
            "<li>{} <small>(rests on {})</small></li>\n",
            html_escape(&s.text),
            refs.join(", ")
        );
    }
    out += "</ul>\n";
    out += &format!(
        "<p><small>{} claims, {} verified, {} dropped by the number verifier; judge: {}.</small></p>\n",
        council.outcome.claims,
        council.outcome.verified.len(),
        council.outcome.dropped.len(),
        html_escape(&council.judge)
    );
    out += "<h2>Alerts of the day</h2>\n<table><tr><th>rule</th><th>severity</th><th>metric</th><th>value</th><th>threshold</th><th>message</th></tr>\n";
    for a in &p.alerts {
        let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        out += &format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            html_escape(&a.severity),
            html_escape(&a.rule),
            html_escape(&a.severity),
            html_escape(&a.of.to_string()),
            num(a.value),
            num(a.threshold),
            html_escape(&a.message)
        );
    }
    out += "</table>\n</body></html>\n";
    out
}

/// The default day of a scheduled report: yesterday (UTC), a finished day.
pub fn yesterday() -> NaiveDate {
    let today = chrono::Utc::now().date_naive();
    today.pred_opt().unwrap_or(today)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_of_timestamps() {
        assert!((hour_of("2026-12-03T09:30:00.5Z") - 9.5).abs() < 0.001);
        assert!((hour_of("2026-12-03 23:59:59") - 23.9997).abs() < 0.001);
        assert_eq!(hour_of("garbage"), 0.0);
    }
}
