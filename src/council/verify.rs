//! The number verifier: a claim stands only if every number its text states
//! is a value of the packet, of the metrics the claim cites.
//!
//! # The rule
//!
//! A stated number `x` (after unit normalization: `50.3%` is 0.503, `2 s`
//! is 2,000 ms) matches a packet value `v` of a compatible unit when
//!
//! ```text
//! |x - v| <= rounding(x) + 1e-9 * max(1, |v|)     and     |x - v| <= 5% of |v|
//! ```
//!
//! where `rounding(x)` is half a unit of the last digit written (`50.3%`
//! may stand for 0.5025..0.5035, `50%` for 0.495..0.505). The 5% bound keeps
//! a coarse figure from standing for a different one (`0.5` is not 0.54). A
//! number written without a sign also matches `-v` on a loss-like metric
//! (drawdown, loss, worst, cost, MAE: `a drawdown of 350 bps`). A target
//! matches only in a text that says `target`, an alert's threshold only in
//! one that says `threshold` or `alert`.
//! Units are compatible when they measure the same thing: `%` and `x` a
//! ratio, `bps` basis points, `ms` and `s` durations; a number written without
//! a unit is compared in the value's own unit (a count, or `0.503` as a
//! ratio).
//!
//! A claim is dropped, with the reason, when:
//!
//! - it cites a metric (and dimensions) the packet does not have, or its
//!   `value` is not that metric's value;
//! - a number matches no packet value (**invented**), or only values of
//!   metrics the claim does not cite (**wrong metric**);
//! - its evidence is not a value of the packet (a metric without the
//!   dimensions of one of its values);
//! - it names a day other than the packet's (**wrong day**), a time of day,
//!   a number in a unit the packet does not use (`min`, `µs`, `pct`, `$`),
//!   digits the scanner does not read (`٩٩`, `５０`, `¾`), or a word with
//!   digits that is no name in the packet (`73pct`, `USD5000`; `p99` is a
//!   percentile's name).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::numbers::{self, Kind, Stated};
use super::packet::{Fact, MetricRef, Packet, unit_kind};

/// Relative bound on any match (see the module docs).
pub const RELATIVE_MAX: f64 = 0.05;

/// What an analyst says: a sentence, the value it rests on, and everything
/// else it cites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The analyst who made it (set by the council, not by the model).
    #[serde(default)]
    pub analyst: String,
    pub text: String,
    /// The main value, in `unit`, of `metric` with `dimensions`.
    pub value: f64,
    pub unit: String,
    #[serde(flatten)]
    pub of: MetricRef,
    /// Further metrics whose values the text quotes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<MetricRef>,
}

impl Claim {
    /// The metric and everything else it cites.
    pub fn cites(&self) -> Vec<MetricRef> {
        std::iter::once(self.of.clone())
            .chain(self.evidence.iter().cloned())
            .collect()
    }
}

/// A claim the verifier dropped, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dropped {
    pub claim: Claim,
    pub reason: String,
}

/// The verifier for one packet.
pub struct Verifier<'a> {
    packet: &'a Packet,
    facts: Vec<Fact>,
    words: BTreeSet<String>,
}

impl<'a> Verifier<'a> {
    pub fn new(packet: &'a Packet) -> Self {
        Verifier {
            packet,
            facts: packet.facts(),
            words: packet.words(),
        }
    }

    /// `Ok` if the claim stands, else the reason it does not.
    pub fn check_claim(&self, claim: &Claim) -> Result<(), String> {
        let Some(cited) = self.packet.value_of(&claim.of) else {
            return Err(format!(
                "cites {}, which the packet does not have",
                claim.of
            ));
        };
        let Some(value) = cited.value else {
            return Err(format!("cites {}, which had no data that day", claim.of));
        };
        let (claim_kind, claim_scale) = unit_kind(&claim.unit);
        let (kind, scale) = unit_kind(&cited.unit);
        let same_kind = claim_kind == kind || claim.unit == cited.unit;
        let claimed = claim.value * claim_scale;
        let actual = value * scale;
        // Written so that a NaN anywhere fails it.
        let close = (claimed - actual).abs() <= 0.005 * actual.abs().max(1e-9);
        if !same_kind || !claimed.is_finite() || !actual.is_finite() || !close {
            return Err(format!(
                "its value {} {} is not {}'s {} {}",
                claim.value, claim.unit, claim.of, value, cited.unit
            ));
        }
        // Evidence names values the packet has, dimensions and all: a bare
        // metric would let a claim quote any of its values.
        if let Some(e) = claim
            .evidence
            .iter()
            .find(|e| !self.facts.iter().any(|f| f.of == **e))
        {
            return Err(format!(
                "its evidence {e} is no value of the packet (name the metric with its dimensions)"
            ));
        }
        self.check_text(&claim.text, &claim.cites())
    }

    /// `Ok` if every number, date and digit-led word in `text` is a value
    /// of the packet under one of `cites`; else the first that is not.
    pub fn check_text(&self, text: &str, cites: &[MetricRef]) -> Result<(), String> {
        let found = numbers::scan(text);
        if let Some(day) = found.dates.iter().find(|d| **d != self.packet.date) {
            return Err(format!(
                "wrong day: it names {day}, the packet is {}",
                self.packet.date
            ));
        }
        if let Some(token) = found.unverifiable.first() {
            return Err(format!("unverifiable: `{token}` is no value in the packet"));
        }
        if let Some(token) = found.glued.iter().find(|w| !self.words.contains(*w)) {
            return Err(format!(
                "`{token}`: digits glued to letters, and no name in the packet"
            ));
        }
        let lower = text.to_lowercase();
        let says = Says {
            target: lower.contains("target"),
            threshold: lower.contains("threshold") || lower.contains("alert"),
        };
        for stated in &found.numbers {
            let matching: Vec<&Fact> = self
                .facts
                .iter()
                .filter(|f| matches(stated, f, says))
                .collect();
            if matching.is_empty() {
                return Err(format!(
                    "invented: {} is no value in the packet",
                    stated.text
                ));
            }
            if !matching
                .iter()
                .any(|f| cites.iter().any(|c| c.covers(&f.of)))
            {
                let cited: Vec<String> = cites.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "wrong metric: {} is {}'s {}, not a value of {}",
                    stated.text,
                    matching[0].of,
                    matching[0].role,
                    cited.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Splits claims into those that stand and those dropped, with reasons.
    pub fn sort(&self, claims: Vec<Claim>) -> (Vec<Claim>, Vec<Dropped>) {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for claim in claims {
            match self.check_claim(&claim) {
                Ok(()) => kept.push(claim),
                Err(reason) => dropped.push(Dropped { claim, reason }),
            }
        }
        (kept, dropped)
    }
}

/// What a text says it quotes besides values.
#[derive(Clone, Copy)]
struct Says {
    /// A target (`target`).
    target: bool,
    /// An alert's threshold (`threshold`, `alert`).
    threshold: bool,
}

/// Metrics whose values are losses, quoted as magnitudes (`a drawdown of
/// 350 bps` for -350): only these match an unsigned figure by its absolute value.
fn is_loss(metric: &str) -> bool {
    ["drawdown", "loss", "worst", "cost", "mae"]
        .iter()
        .any(|w| metric.contains(w))
}

/// Whether a stated number is this fact (the rule in the module docs).
fn matches(stated: &Stated, fact: &Fact, says: Says) -> bool {
    match fact.role {
        "target" if !says.target => return false,
        "threshold" if !says.threshold => return false,
        _ => {}
    }
    let (kind, scale) = unit_kind(&fact.unit);
    let value = match stated.kind {
        Kind::Foreign => return false,
        // Without a unit the number is read in the fact's own unit.
        Kind::Bare => fact.value,
        k if k == kind => fact.value * scale,
        _ => return false,
    };
    let close = |v: f64| {
        let diff = (stated.value - v).abs();
        diff <= stated.rounding + 1e-9 * v.abs().max(1.0) && diff <= RELATIVE_MAX * v.abs()
            || diff <= 1e-12
    };
    close(value) || (!stated.signed && is_loss(&fact.of.metric) && close(-value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::council::packet::{PacketAlert, PacketInsight, PacketValue};
    use chrono::NaiveDate;

    fn value(metric: &str, dims: &[(&str, &str)], v: f64, unit: &str) -> PacketValue {
        PacketValue {
            of: MetricRef::new(metric, dims),
            value: Some(v),
            unit: unit.into(),
            status: "ok".into(),
            target: None,
        }
    }

    fn packet() -> Packet {
        let mut win = value("win_rate", &[("mode", "scalp")], 0.50312, "ratio");
        win.target = Some(0.55);
        Packet {
            date: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
            metrics: vec![
                win,
                value("win_rate", &[("mode", "runner")], 0.6667, "ratio"),
                value("trades_closed", &[("mode", "scalp")], 1256.0, "trades"),
                value("max_drawdown_bps", &[("mode", "scalp")], -350.4, "bps"),
                value("trace_latency_p99_ms", &[], 91.327, "ms"),
                value("avg_hold_s", &[("mode", "scalp")], 2.5, "s"),
                value("profit_factor", &[("mode", "scalp")], 1.84, "ratio"),
                value("model_ece", &[("model_id", "35e8a49d")], 0.0344, "ratio"),
            ],
            insights: vec![PacketInsight {
                id: "insight:1".into(),
                severity: "warning".into(),
                text: "volume_gate missed 120.50 bps against 80.25 bps saved".into(),
                rests_on: vec!["gate_blocks".into()],
            }],
            alerts: vec![PacketAlert {
                rule: "slow_decisions".into(),
                severity: "warning".into(),
                of: MetricRef::new("trace_latency_p99_ms", &[]),
                value: Some(91.327),
                threshold: Some(80.0),
                message: String::new(),
            }],
        }
    }

    fn claim(text: &str, metric: &str, dims: &[(&str, &str)], v: f64, unit: &str) -> Claim {
        Claim {
            analyst: "test".into(),
            text: text.into(),
            value: v,
            unit: unit.into(),
            of: MetricRef::new(metric, dims),
            evidence: vec![],
        }
    }

    fn check(c: &Claim) -> Result<(), String> {
        Verifier::new(&packet()).check_claim(c)
    }

    const SCALP: &[(&str, &str)] = &[("mode", "scalp")];

    #[test]
    fn rounded_and_rescaled_figures_of_the_cited_metric_stand() {
        for text in [
            "Scalp won 50.3% of its trades.",
            "Scalp won 50% of its trades.",
            "Scalp won 50.31% of its trades.",
            "Scalp's win rate was 0.503.",
            "Scalp's win rate was 0.50, against a target of 55%.",
            "The scalp win rate is 50.3 %, on 2026-12-03.",
        ] {
            assert_eq!(
                check(&claim(text, "win_rate", SCALP, 0.503, "ratio")),
                Ok(()),
                "{text}"
            );
        }
        // The claim's value may come in percent.
        assert_eq!(
            check(&claim("Won 50.3%.", "win_rate", SCALP, 50.3, "%")),
            Ok(())
        );
        // Units: seconds as ms, a drawdown without its sign, thousands, `x`.
        let ok = [
            claim(
                "Holds last 2,500 ms on average.",
                "avg_hold_s",
                SCALP,
                2.5,
                "s",
            ),
            claim(
                "Holds last 2.5 s on average.",
                "avg_hold_s",
                SCALP,
                2.5,
                "s",
            ),
            claim(
                "A drawdown of 350 bps.",
                "max_drawdown_bps",
                SCALP,
                -350.4,
                "bps",
            ),
            claim(
                "The drawdown reached -350.4 bps.",
                "max_drawdown_bps",
                SCALP,
                -350.4,
                "bps",
            ),
            claim(
                "1,256 trades closed.",
                "trades_closed",
                SCALP,
                1256.0,
                "trades",
            ),
            claim(
                "Profit factor 1.84x.",
                "profit_factor",
                SCALP,
                1.84,
                "ratio",
            ),
            claim(
                "p99 latency was 91.33 ms, over its alert threshold of 80 ms.",
                "trace_latency_p99_ms",
                &[],
                91.327,
                "ms",
            ),
            claim(
                "Model 35e8a49d has an ECE of 0.034.",
                "model_ece",
                &[("model_id", "35e8a49d")],
                0.0344,
                "ratio",
            ),
        ];
        for c in &ok {
            assert_eq!(check(c), Ok(()), "{}", c.text);
        }
    }

    #[test]
    fn invented_numbers_are_dropped() {
        for (text, number) in [
            ("Scalp won 53.1% of its trades.", "53.1%"),
            // Rounded too far: 0.5 may stand for 0.45..0.55, but not at 5% off.
            ("Scalp won 48% of its trades.", "48%"),
            ("Scalp's win rate, 0.503, beat 2,000 trades.", "2,000"),
            (
                "Scalp won 50.3% of its trades, 12 more than yesterday.",
                "12",
            ),
            // A sign written is a sign checked.
            ("The drawdown reached +350.4 bps.", "+350.4 bps"),
            // The right figure in the wrong unit.
            ("Scalp won 50.3 bps.", "50.3 bps"),
            ("Scalp won 0.503% of its trades.", "0.503%"),
        ] {
            let err = check(&claim(text, "win_rate", SCALP, 0.503, "ratio")).unwrap_err();
            assert!(
                err.starts_with("invented") && err.contains(number),
                "{text}: {err}"
            );
        }
        let err = check(&claim("Won 0.503.", "win_rate", SCALP, 0.61, "ratio")).unwrap_err();
        assert!(err.starts_with("its value 0.61"), "{err}");
    }

    #[test]
    fn numbers_of_other_metrics_are_the_wrong_metric() {
        // 66.7% is runner's win rate; the claim cites scalp's.
        let c = claim(
            "Scalp won 66.7% of its trades.",
            "win_rate",
            SCALP,
            0.503,
            "ratio",
        );
        let err = check(&c).unwrap_err();
        assert!(
            err.starts_with("wrong metric: 66.7% is win_rate{mode=runner}"),
            "{err}"
        );
        // Citing it as evidence makes it stand.
        let mut cited = c.clone();
        cited.text = "Scalp won 50.3%, runner 66.7%.".into();
        cited.evidence = vec![MetricRef::new("win_rate", &[("mode", "runner")])];
        assert_eq!(check(&cited), Ok(()));
        // A claim on a metric the packet lacks, or on the wrong dimensions.
        let err = check(&claim(
            "Won 50.3%.",
            "win_rate",
            &[("mode", "swing")],
            0.503,
            "ratio",
        ))
        .unwrap_err();
        assert!(err.contains("does not have"), "{err}");
        // Insight and alert numbers belong to what they come from.
        let err = check(&claim(
            "Won 50.3%; the alert fires at 80 ms.",
            "win_rate",
            SCALP,
            0.503,
            "ratio",
        ))
        .unwrap_err();
        assert!(err.contains("trace_latency_p99_ms's threshold"), "{err}");
        let mut insight = claim(
            "volume_gate missed 120.5 bps.",
            "win_rate",
            SCALP,
            0.503,
            "ratio",
        );
        assert!(check(&insight).unwrap_err().contains("insight:1"));
        insight.evidence = vec![MetricRef::new("insight:1", &[])];
        assert_eq!(check(&insight), Ok(()));
    }

    #[test]
    fn other_days_times_and_disguised_numbers_are_dropped() {
        let cases = [
            (
                "On 2026-12-02 scalp won 50.3%.",
                "wrong day: it names 2026-12-02",
            ),
            ("Scalp won 50.3% by 14:30.", "unverifiable: `14:30`"),
            ("Scalp won 50.3%, that is 73pct of target.", "`73pct`"),
            ("Model 82505442 won 50.3%.", "invented: 82505442"),
        ];
        for (text, reason) in cases {
            let err = check(&claim(text, "win_rate", SCALP, 0.503, "ratio")).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
        }
        // Percentiles are names; other words with digits must be the packet's.
        let c = claim(
            "p99 aside, scalp won 50.3%.",
            "win_rate",
            SCALP,
            0.503,
            "ratio",
        );
        assert_eq!(check(&c), Ok(()));
        let c = claim(
            "Scalp won 50.3% on ETH2.",
            "win_rate",
            SCALP,
            0.503,
            "ratio",
        );
        assert!(check(&c).unwrap_err().contains("`ETH2`"));
    }

    #[test]
    fn the_reviewers_loopholes_stay_closed() {
        for text in [
            "Scalp won ٩٩٪ of its trades.",
            "Scalp won ５０% of its trades.",
            "Scalp won .99 of its trades.",
            "Scalp won USD5000.",
            "Scalp's win rate 50.3%, ETH2,99%.",
            "Scalp's win rate was 0.503\u{a0}%.",
            "Scalp held 2.5 minutes.",
            "Scalp made $350.",
            "Scalp made 1.84 M USD.",
            "On 2026-12-02Z scalp won 50.3%.",
            "Scalp won 50.3% by 9:30am.",
            // 55% is the target: quoted as the value, it is not.
            "Scalp won 55% of its trades.",
        ] {
            assert!(
                check(&claim(text, "win_rate", SCALP, 0.503, "ratio")).is_err(),
                "{text}"
            );
        }
        // Drawdowns are quoted as magnitudes; a gain is not a loss's magnitude.
        let dd = claim(
            "A drawdown of 350.4 bps.",
            "max_drawdown_bps",
            SCALP,
            -350.4,
            "bps",
        );
        assert_eq!(check(&dd), Ok(()));
        let mut p = packet();
        p.metrics.push(value(
            "total_return_bps",
            &[("mode", "scalp")],
            -350.4,
            "bps",
        ));
        let v = Verifier::new(&p);
        let gain = claim(
            "A gain of 350.4 bps.",
            "total_return_bps",
            SCALP,
            -350.4,
            "bps",
        );
        assert!(v.check_claim(&gain).is_err());
        // A threshold is not the value.
        let c = claim(
            "p99 latency was 80 ms.",
            "trace_latency_p99_ms",
            &[],
            91.327,
            "ms",
        );
        assert!(check(&c).is_err());
        // A NaN in the packet accepts no value.
        p.metrics.push(value(
            "sharpe_per_trade",
            &[("mode", "scalp")],
            f64::NAN,
            "ratio",
        ));
        let v = Verifier::new(&p);
        let c = claim("Sharpe held.", "sharpe_per_trade", SCALP, 123.0, "ratio");
        assert!(v.check_claim(&c).is_err());
        // Evidence must name a value, dimensions and all.
        let mut c = claim(
            "Scalp won 50.3%, and 66.7%.",
            "win_rate",
            SCALP,
            0.503,
            "ratio",
        );
        c.evidence = vec![MetricRef::new("win_rate", &[])];
        assert!(
            check(&c)
                .unwrap_err()
                .contains("evidence win_rate is no value")
        );
    }

    #[test]
    fn sort_keeps_the_good_and_reports_the_dropped() {
        let (kept, dropped) = Verifier::new(&packet()).sort(vec![
            claim("Scalp won 50.3%.", "win_rate", SCALP, 0.503, "ratio"),
            claim("Scalp won 99%.", "win_rate", SCALP, 0.503, "ratio"),
        ]);
        assert_eq!(kept.len(), 1);
        assert_eq!(dropped.len(), 1);
        assert!(dropped[0].reason.contains("99%"), "{:?}", dropped[0]);
    }
}
