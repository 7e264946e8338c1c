//! The built-in analysts: deterministic readers of the packet, one per
//! field, so `quiver council` gives a useful result with no network and no
//! key. Each says what is off target in its field first, then its field's
//! headline figures, every number formatted from a packet value so the
//! verifier can check it like any model's.

use super::packet::{Packet, PacketValue};
use super::verify::Claim;

/// A built-in analyst: its name and the metrics it reads, headline first.
pub struct Analyst {
    pub name: &'static str,
    pub metrics: &'static [&'static str],
}

pub const BUILT_IN: &[Analyst] = &[
    Analyst {
        name: "risk",
        metrics: &[
            "total_return_bps",
            "max_drawdown_total_bps",
            "max_drawdown_bps",
            "worst_trade_bps",
            "return_stddev_bps",
            "sharpe_per_trade",
            "sortino_per_trade",
            "expectancy_bps",
            "profit_factor",
        ],
    },
    Analyst {
        name: "gates",
        metrics: &[
            "gate_pass_rate",
            "shadow_good_block_rate",
            "shadow_bad_block_cost_bps",
            "shadow_net_saved_bps",
            "gate_near_miss_rate",
        ],
    },
    Analyst {
        name: "models",
        metrics: &[
            "model_ece",
            "model_brier",
            "model_mce",
            "prediction_drift",
            "labeled_predictions",
        ],
    },
    Analyst {
        name: "latency",
        metrics: &[
            "trace_latency_p99_ms",
            "trace_latency_p95_ms",
            "step_latency_p95_ms",
            "slow_trace_rate",
        ],
    },
    Analyst {
        name: "regimes",
        metrics: &[
            "win_rate_by_regime",
            "total_return_by_regime_bps",
            "avg_spread_bps",
            "avg_volatility",
        ],
    },
    Analyst {
        name: "execution",
        metrics: &[
            "win_rate",
            "trades_closed",
            "avg_return_bps",
            "avg_fees_bps",
            "mfe_capture_ratio",
            "avg_hold_s",
            "signal_conversion_rate",
        ],
    },
    Analyst {
        name: "data_quality",
        metrics: &[
            "events_dropped",
            "events_rejected_invalid",
            "kill_switch_trips",
            "queue_fill",
            "writer_lake_pending_rows",
            "events_per_s",
        ],
    },
];

/// How many claims an analyst makes at most: everything off target, then
/// headlines up to this.
pub const CLAIMS_MAX: usize = 6;

impl Analyst {
    /// This analyst's claims on `packet`.
    pub fn claims(&self, packet: &Packet) -> Vec<Claim> {
        let mine = |m: &&PacketValue| self.metrics.contains(&m.of.metric.as_str());
        let rank = |m: &PacketValue| {
            self.metrics
                .iter()
                .position(|name| *name == m.of.metric)
                .unwrap_or(usize::MAX)
        };
        let mut off: Vec<&PacketValue> = packet
            .metrics
            .iter()
            .filter(mine)
            .filter(|m| m.value.is_some() && matches!(m.status.as_str(), "warning" | "critical"))
            .collect();
        off.sort_by_key(|m| (m.status != "critical", rank(m)));
        let mut claims: Vec<Claim> = off.iter().filter_map(|m| self.claim(m)).collect();
        // Headlines: the first value of each metric, in this analyst's order.
        for name in self.metrics {
            if claims.len() >= CLAIMS_MAX {
                break;
            }
            let Some(m) = packet
                .metrics
                .iter()
                .filter(|m| m.of.metric == *name && m.value.is_some())
                .max_by(|a, b| weight(a).total_cmp(&weight(b)))
            else {
                continue;
            };
            if claims.iter().all(|c| c.of != m.of)
                && let Some(c) = self.claim(m)
            {
                claims.push(c);
            }
        }
        claims.truncate(CLAIMS_MAX.max(off.len()));
        claims
    }

    fn claim(&self, m: &PacketValue) -> Option<Claim> {
        let value = m.value?;
        let mut text = format!("{} was {}", m.of, quote(m, value));
        match (m.status.as_str(), m.target) {
            ("warning" | "critical", Some(target)) => {
                text += &format!(", {} against its target of {}", m.status, quote(m, target));
            }
            ("warning" | "critical", None) => text += &format!(", {}", m.status),
            (_, Some(target)) => text += &format!(", on target ({})", quote(m, target)),
            _ => {}
        }
        text.push('.');
        Some(Claim {
            analyst: self.name.to_string(),
            text,
            value,
            unit: m.unit.clone(),
            of: m.of.clone(),
            evidence: Vec::new(),
        })
    }
}

/// Which of a metric's values leads its headline: the one with the most
/// at stake (the largest magnitude).
fn weight(m: &PacketValue) -> f64 {
    m.value.map_or(0.0, f64::abs)
}

/// Whether a `ratio` metric reads as a percentage (rates, fills) or as a
/// plain ratio (profit factor, Sharpe, ECE).
fn is_percentage(metric: &str) -> bool {
    metric.ends_with("_rate")
        || metric.contains("_rate_")
        || metric == "win_rate"
        || metric == "queue_fill"
        || metric == "mfe_capture_ratio"
}

/// A value of `m` as a sentence states it.
pub fn quote(m: &PacketValue, v: f64) -> String {
    match m.unit.as_str() {
        "ratio" if is_percentage(&m.of.metric) => format!("{}%", fixed(v * 100.0, 1)),
        "ratio" | "probability" => fixed(v, 3),
        "bps" => format!("{} bps", fixed(v, 1)),
        "ms" => format!("{} ms", fixed(v, 2)),
        "s" => format!("{} s", fixed(v, 1)),
        _ if v.fract() == 0.0 && v.abs() < 1e15 => thousands(v as i64),
        _ => fixed(v, 2),
    }
}

/// `v` with at least `decimals` decimals, and more for a small value so it
/// keeps three significant digits (0.000428, not 0.00, which would state a
/// different number).
fn fixed(v: f64, decimals: usize) -> String {
    let magnitude = if v == 0.0 || !v.is_finite() {
        0
    } else {
        v.abs().log10().floor() as i32
    };
    let needed = (2 - magnitude).clamp(0, 12) as usize;
    format!("{v:.*}", decimals.max(needed))
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::council::packet::MetricRef;
    use crate::council::verify::Verifier;
    use chrono::NaiveDate;

    fn value(metric: &str, dims: &[(&str, &str)], v: f64, unit: &str, status: &str) -> PacketValue {
        PacketValue {
            of: MetricRef::new(metric, dims),
            value: Some(v),
            unit: unit.into(),
            status: status.into(),
            target: (status != "ok").then_some(0.5),
        }
    }

    #[test]
    fn every_built_in_claim_passes_the_verifier() {
        let packet = Packet {
            date: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
            metrics: vec![
                value(
                    "shadow_good_block_rate",
                    &[("blocked_by", "volume_gate")],
                    0.372,
                    "ratio",
                    "warning",
                ),
                value(
                    "gate_pass_rate",
                    &[("gate", "meta_label"), ("mode", "scalp")],
                    0.5951,
                    "ratio",
                    "ok",
                ),
                value(
                    "trades_closed",
                    &[("mode", "scalp")],
                    2314.0,
                    "trades",
                    "ok",
                ),
                value("avg_hold_s", &[("mode", "scalp")], 81.26, "s", "ok"),
                value("trace_latency_p99_ms", &[], 91.327, "ms", "critical"),
                value("max_drawdown_total_bps", &[], -412.77, "bps", "ok"),
                value("profit_factor", &[("mode", "scalp")], 1.3762, "ratio", "ok"),
                value(
                    "events_dropped",
                    &[("level", "DEBUG")],
                    1_204_311.0,
                    "events",
                    "warning",
                ),
            ],
            insights: vec![],
            alerts: vec![],
        };
        let verifier = Verifier::new(&packet);
        let mut all = Vec::new();
        for analyst in BUILT_IN {
            all.extend(analyst.claims(&packet));
        }
        assert!(all.len() >= 7, "{all:#?}");
        let (_, dropped) = verifier.sort(all.clone());
        assert_eq!(dropped, vec![], "built-in analysts invent nothing");
        let texts: Vec<&str> = all.iter().map(|c| c.text.as_str()).collect();
        assert!(texts.contains(&"shadow_good_block_rate{blocked_by=volume_gate} was 37.2%, warning against its target of 50.0%."), "{texts:#?}");
        assert!(
            texts.contains(
                &"events_dropped{level=DEBUG} was 1,204,311, warning against its target of 0.500."
            ),
            "{texts:#?}"
        );
        // The latency analyst leads with what is critical.
        let latency = BUILT_IN
            .iter()
            .find(|a| a.name == "latency")
            .unwrap()
            .claims(&packet);
        assert!(
            latency[0]
                .text
                .starts_with("trace_latency_p99_ms was 91.33 ms, critical"),
            "{latency:#?}"
        );
    }

    #[test]
    fn small_values_keep_three_significant_digits() {
        assert_eq!(fixed(0.000428, 2), "0.000428");
        assert_eq!(fixed(0.0344, 3), "0.0344");
        assert_eq!(fixed(59.51, 1), "59.5");
        assert_eq!(fixed(0.0, 2), "0.00");
        assert_eq!(fixed(-0.00512, 1), "-0.00512");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
    }
}
