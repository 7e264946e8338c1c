//! The metrics packet: one day's metric values, insights and alerts as
//! compact JSON, with units and dimensions. It is all an analyst sees (never
//! the raw events), and every number the council writes must be one of its
//! values.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::numbers::{self, Kind};

/// A metric and the dimensions that pick its value (`win_rate` with
/// `{mode: scalp}`); an empty map on a metric with dimensions means any.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetricRef {
    pub metric: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, String>,
}

impl MetricRef {
    pub fn new(metric: &str, dimensions: &[(&str, &str)]) -> Self {
        MetricRef {
            metric: metric.to_string(),
            dimensions: dimensions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Whether a value of `other` is one this reference points at: the same
    /// metric, and every dimension this one names has the same value.
    pub fn covers(&self, other: &MetricRef) -> bool {
        self.metric == other.metric
            && self
                .dimensions
                .iter()
                .all(|(k, v)| other.dimensions.get(k) == Some(v))
    }
}

impl std::fmt::Display for MetricRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.metric)?;
        if !self.dimensions.is_empty() {
            let dims: Vec<String> = self
                .dimensions
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "{{{}}}", dims.join(","))?;
        }
        Ok(())
    }
}

/// One metric's value on the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketValue {
    #[serde(flatten)]
    pub of: MetricRef,
    /// `None`: the metric had no data that day.
    pub value: Option<f64>,
    pub unit: String,
    /// `ok`, `warning`, `critical` or `no data`, against its target.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
}

/// One of the day's insights (`quiver insights`), with the numbers its
/// text quotes so they can be cited like metric values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketInsight {
    /// `insight:1`, `insight:2`, ... in rank order: the name claims cite.
    pub id: String,
    pub severity: String,
    pub text: String,
    pub rests_on: Vec<String>,
}

/// One alert that fired on the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketAlert {
    pub rule: String,
    pub severity: String,
    #[serde(flatten)]
    pub of: MetricRef,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
}

/// The day's packet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Packet {
    pub date: NaiveDate,
    pub metrics: Vec<PacketValue>,
    pub insights: Vec<PacketInsight>,
    pub alerts: Vec<PacketAlert>,
}

/// A number a claim may quote: where it comes from, in its stored unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub of: MetricRef,
    /// Which of the value's numbers: `value`, `target` or `threshold`.
    pub role: &'static str,
    pub value: f64,
    pub unit: String,
}

/// The kind of number a packet unit holds, and the factor from the unit to
/// the kind's base (seconds are compared in milliseconds).
pub fn unit_kind(unit: &str) -> (Kind, f64) {
    match unit {
        "ratio" | "probability" | "%" => (Kind::Ratio, if unit == "%" { 0.01 } else { 1.0 }),
        "bps" => (Kind::Bps, 1.0),
        "ms" => (Kind::Duration, 1.0),
        "s" => (Kind::Duration, 1000.0),
        _ => (Kind::Bare, 1.0),
    }
}

impl Packet {
    /// Every number in the packet, with what it is.
    pub fn facts(&self) -> Vec<Fact> {
        let mut out = Vec::new();
        for m in &self.metrics {
            for (role, v) in [("value", m.value), ("target", m.target)] {
                if let Some(value) = v.filter(|v| v.is_finite()) {
                    out.push(Fact {
                        of: m.of.clone(),
                        role,
                        value,
                        unit: m.unit.clone(),
                    });
                }
            }
        }
        for a in &self.alerts {
            let unit = self
                .value_of(&a.of)
                .map_or_else(String::new, |m| m.unit.clone());
            for (role, v) in [("value", a.value), ("threshold", a.threshold)] {
                if let Some(value) = v.filter(|v| v.is_finite()) {
                    out.push(Fact {
                        of: a.of.clone(),
                        role,
                        value,
                        unit: unit.clone(),
                    });
                }
            }
        }
        for i in &self.insights {
            // An insight's numbers are stated with their units; store them in
            // the base unit of their kind.
            for n in numbers::scan(&i.text).numbers {
                let unit = match n.kind {
                    Kind::Ratio => "ratio",
                    Kind::Bps => "bps",
                    Kind::Duration => "ms",
                    Kind::Bare => "",
                    // Foreign numbers are never scanned into `numbers`.
                    Kind::Foreign => continue,
                };
                out.push(Fact {
                    of: MetricRef::new(&i.id, &[]),
                    role: "value",
                    value: n.value,
                    unit: unit.to_string(),
                });
            }
        }
        out
    }

    /// The packet narrowed to `metrics` (their values and the alerts on
    /// them; no insights); all of it when `metrics` is empty.
    pub fn narrowed(&self, metrics: &[String]) -> Packet {
        if metrics.is_empty() {
            return self.clone();
        }
        let keep = |of: &MetricRef| metrics.contains(&of.metric);
        Packet {
            date: self.date,
            metrics: self
                .metrics
                .iter()
                .filter(|m| keep(&m.of))
                .cloned()
                .collect(),
            insights: Vec::new(),
            alerts: self
                .alerts
                .iter()
                .filter(|a| keep(&a.of))
                .cloned()
                .collect(),
        }
    }

    /// The value of exactly this metric and these dimensions.
    pub fn value_of(&self, of: &MetricRef) -> Option<&PacketValue> {
        self.metrics.iter().find(|m| &m.of == of)
    }

    /// Every text the packet holds verbatim (names, dimension values, ids,
    /// insight and alert texts): a word like `35e8a49d` in a claim is a
    /// name if it is one of these.
    pub fn words(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut add = |of: &MetricRef| {
            out.insert(of.metric.clone());
            out.extend(of.dimensions.values().cloned());
        };
        for m in &self.metrics {
            add(&m.of);
        }
        for a in &self.alerts {
            add(&a.of);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_without_dimensions_covers_every_value_of_its_metric() {
        let scalp = MetricRef::new("win_rate", &[("mode", "scalp")]);
        assert!(MetricRef::new("win_rate", &[]).covers(&scalp));
        assert!(scalp.covers(&scalp));
        assert!(!MetricRef::new("win_rate", &[("mode", "runner")]).covers(&scalp));
        assert!(!MetricRef::new("win_rate_by_regime", &[]).covers(&scalp));
        assert_eq!(scalp.to_string(), "win_rate{mode=scalp}");
    }

    #[test]
    fn the_packet_is_compact_json_that_reads_back() {
        let packet = Packet {
            date: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
            metrics: vec![PacketValue {
                of: MetricRef::new("win_rate", &[("mode", "scalp")]),
                value: Some(0.595),
                unit: "ratio".into(),
                status: "ok".into(),
                target: Some(0.55),
            }],
            insights: vec![],
            alerts: vec![],
        };
        let json = serde_json::to_string(&packet).unwrap();
        assert_eq!(
            json,
            r#"{"date":"2026-12-03","metrics":[{"metric":"win_rate","dimensions":{"mode":"scalp"},"value":0.595,"unit":"ratio","status":"ok","target":0.55}],"insights":[],"alerts":[]}"#
        );
        assert_eq!(serde_json::from_str::<Packet>(&json).unwrap(), packet);
    }
}
