//! The council's packet from the data, and a council run: the analysts'
//! claims through the verifier, the judge's summary through it again
//! ([`crate::council`] decides what stands; this module fetches and runs).

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::NaiveDate;
use serde::Serialize;

use super::Session;
use super::insights as insight_queries;
use crate::analytics::insights::{Value, findings};
use crate::council::analysts::BUILT_IN;
use crate::council::judge::{self, DroppedSentence, Sentence};
use crate::council::packet::{MetricRef, Packet, PacketAlert, PacketInsight, PacketValue};
use crate::council::verify::{Claim, Dropped, Verifier};
use crate::query::param;

const METRIC_VALUES_SQL: &str = "SELECT metric, dimensions, value, unit, status, target \
     FROM metrics.metric_values WHERE date = $1 ORDER BY metric, dimensions";

const ALERTS_SQL: &str = "SELECT rule, metric, severity, value, threshold, dimensions, message \
     FROM metrics.alerts WHERE date = $1 ORDER BY fired_at, rule, dimensions";

/// The packet for `day`: what `metrics compute` stored for it, and the
/// day's insights. Empty metrics mean the day was never computed.
pub async fn packet(session: &mut Session, day: NaiveDate) -> anyhow::Result<Packet> {
    let values = session
        .query_with(METRIC_VALUES_SQL, vec![param::date(day)])
        .await
        .context("reading metrics.metric_values")?;
    let mut metrics = Vec::new();
    for row in insight_queries::rows(&values)? {
        metrics.push(PacketValue {
            of: metric_ref(&row, "metric")?,
            value: number(&row, "value"),
            unit: text(&row, "unit"),
            status: text(&row, "status"),
            target: number(&row, "target"),
        });
    }
    let fired = session
        .query_with(ALERTS_SQL, vec![param::date(day)])
        .await
        .context("reading metrics.alerts")?;
    let mut alerts = Vec::new();
    for row in insight_queries::rows(&fired)? {
        alerts.push(PacketAlert {
            rule: text(&row, "rule"),
            severity: text(&row, "severity"),
            of: metric_ref(&row, "metric")?,
            value: number(&row, "value"),
            threshold: number(&row, "threshold"),
            message: text(&row, "message"),
        });
    }
    let results = insight_queries::run(session, &insight_queries::queries(day)).await?;
    let insights = findings(&results)
        .into_iter()
        .enumerate()
        .map(|(rank, f)| PacketInsight {
            id: format!("insight:{}", rank + 1),
            severity: f.severity.as_str().to_string(),
            text: f.text,
            rests_on: f.rests_on.iter().map(ToString::to_string).collect(),
        })
        .collect();
    Ok(Packet {
        date: day,
        metrics,
        insights,
        alerts,
    })
}

fn text(row: &BTreeMap<String, Value>, column: &str) -> String {
    match row.get(column) {
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn number(row: &BTreeMap<String, Value>, column: &str) -> Option<f64> {
    row.get(column).and_then(Value::as_f64)
}

/// The metric of a row and its dimensions (stored as a JSON object).
fn metric_ref(row: &BTreeMap<String, Value>, column: &str) -> anyhow::Result<MetricRef> {
    let metric = text(row, column);
    let json = text(row, "dimensions");
    let dims: BTreeMap<String, serde_json::Value> = if json.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_str(&json)
            .with_context(|| format!("{metric}: dimensions {json:?} are not a JSON object"))?
    };
    Ok(MetricRef {
        metric,
        dimensions: dims
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
    })
}

/// What a council run decided.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub date: NaiveDate,
    /// Claims made, by every analyst.
    pub claims: usize,
    pub verified: Vec<Claim>,
    pub dropped: Vec<Dropped>,
    pub summary: Vec<Sentence>,
    pub dropped_sentences: Vec<DroppedSentence>,
    pub markdown: String,
}

/// The council on `packet` with the built-in analysts and judge.
pub fn offline(packet: &Packet) -> Outcome {
    let claims: Vec<Claim> = BUILT_IN.iter().flat_map(|a| a.claims(packet)).collect();
    decide(packet, claims, |verified| judge::merge(packet, verified))
}

/// Verifies `claims`, lets `judge` merge the verified ones, verifies its
/// sentences, and writes the markdown.
pub fn decide(
    packet: &Packet,
    claims: Vec<Claim>,
    judge: impl FnOnce(&[Claim]) -> Vec<Sentence>,
) -> Outcome {
    let verifier = Verifier::new(packet);
    let made = claims.len();
    let (verified, dropped) = verifier.sort(claims);
    let sentences = judge(&verified);
    let (summary, dropped_sentences) = judge::verify(&verifier, sentences, &verified);
    let markdown = judge::markdown(packet, &summary, &dropped, &dropped_sentences);
    Outcome {
        date: packet.date,
        claims: made,
        verified,
        dropped,
        summary,
        dropped_sentences,
        markdown,
    }
}
