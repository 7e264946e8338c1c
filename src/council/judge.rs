//! The judge: merges the analysts' verified claims into one summary, each
//! sentence naming the metrics it rests on. A judge (built in, or a model)
//! may only rest sentences on verified claims, and its sentences pass the
//! same verifier.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::packet::{MetricRef, Packet};
use super::verify::{Claim, Dropped, Verifier};

/// One sentence of the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentence {
    pub text: String,
    pub rests_on: Vec<MetricRef>,
    /// Off target (a `warning` or `critical` metric): listed first.
    #[serde(default)]
    pub attention: bool,
}

/// A sentence of the judge that the verifier dropped, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DroppedSentence {
    pub sentence: Sentence,
    pub reason: String,
}

/// How many sentences the built-in judge keeps.
pub const SENTENCES_MAX: usize = 24;

/// The built-in judge: one sentence per metric and dimensions (the first
/// analyst to make a claim on it wins), what is off target first, critical
/// before warning.
pub fn merge(packet: &Packet, claims: &[Claim]) -> Vec<Sentence> {
    let status = |c: &Claim| {
        packet
            .value_of(&c.of)
            .map_or("ok", |m| m.status.as_str())
            .to_string()
    };
    let mut seen = BTreeSet::new();
    let mut ranked: Vec<(u8, usize, Sentence)> = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        if !seen.insert(c.of.clone()) {
            continue;
        }
        let s = status(c);
        let order = match s.as_str() {
            "critical" => 0,
            "warning" => 1,
            _ => 2,
        };
        ranked.push((
            order,
            i,
            Sentence {
                text: c.text.clone(),
                rests_on: c.cites(),
                attention: order < 2,
            },
        ));
    }
    ranked.sort_by_key(|(order, i, _)| (*order, *i));
    ranked
        .into_iter()
        .map(|(_, _, s)| s)
        .take(SENTENCES_MAX)
        .collect()
}

/// Keeps the sentences that rest only on verified claims and whose numbers
/// the verifier finds under what they rest on.
pub fn verify(
    verifier: &Verifier<'_>,
    sentences: Vec<Sentence>,
    verified: &[Claim],
) -> (Vec<Sentence>, Vec<DroppedSentence>) {
    let allowed: Vec<MetricRef> = verified.iter().flat_map(Claim::cites).collect();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for sentence in sentences {
        let unbacked = sentence
            .rests_on
            .iter()
            // Exactly what a verified claim cites: a bare metric would let
            // the judge quote any of its values.
            .find(|r| !allowed.contains(r));
        let outcome = match (sentence.rests_on.is_empty(), unbacked) {
            (true, _) => Err("rests on no metric".to_string()),
            (false, Some(r)) => Err(format!("rests on {r}, which no verified claim cites")),
            (false, None) => verifier.check_text(&sentence.text, &sentence.rests_on),
        };
        match outcome {
            Ok(()) => kept.push(sentence),
            Err(reason) => dropped.push(DroppedSentence { sentence, reason }),
        }
    }
    (kept, dropped)
}

/// The council's outcome as markdown: the summary (each sentence with the
/// metrics it rests on), then everything dropped and why.
pub fn markdown(
    packet: &Packet,
    summary: &[Sentence],
    dropped_claims: &[Dropped],
    dropped_sentences: &[DroppedSentence],
) -> String {
    let mut out = format!("# Council summary for {}\n\n", packet.date);
    let line = |s: &Sentence| {
        let refs: Vec<String> = s.rests_on.iter().map(|r| format!("`{r}`")).collect();
        format!("- {} _(rests on {})_\n", s.text, refs.join(", "))
    };
    let (attention, figures): (Vec<&Sentence>, Vec<&Sentence>) =
        summary.iter().partition(|s| s.attention);
    if summary.is_empty() {
        out += "No verified claims: the packet has no values, or every claim was dropped.\n";
    }
    if !attention.is_empty() {
        out += "## Needs attention\n\n";
        attention.iter().for_each(|s| out += &line(s));
        out.push('\n');
    }
    if !figures.is_empty() {
        out += "## Figures\n\n";
        figures.iter().for_each(|s| out += &line(s));
        out.push('\n');
    }
    if !dropped_claims.is_empty() || !dropped_sentences.is_empty() {
        out += "## Dropped by the number verifier\n\n";
        for d in dropped_claims {
            out += &format!(
                "- {} claimed \"{}\": {}\n",
                d.claim.analyst, d.claim.text, d.reason
            );
        }
        for d in dropped_sentences {
            out += &format!("- the judge wrote \"{}\": {}\n", d.sentence.text, d.reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::council::packet::PacketValue;
    use chrono::NaiveDate;

    fn packet() -> Packet {
        let v = |metric: &str, dims: &[(&str, &str)], value: f64, status: &str| PacketValue {
            of: MetricRef::new(metric, dims),
            value: Some(value),
            unit: "ratio".into(),
            status: status.into(),
            target: None,
        };
        Packet {
            date: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
            metrics: vec![
                v("win_rate", &[("mode", "scalp")], 0.595, "ok"),
                v("queue_fill", &[], 0.91, "critical"),
            ],
            insights: vec![],
            alerts: vec![],
        }
    }

    fn claim(text: &str, metric: &str, dims: &[(&str, &str)], value: f64) -> Claim {
        Claim {
            analyst: "a".into(),
            text: text.into(),
            value,
            unit: "ratio".into(),
            of: MetricRef::new(metric, dims),
            evidence: vec![],
        }
    }

    #[test]
    fn the_judge_puts_what_is_off_target_first_and_says_each_metric_once() {
        let p = packet();
        let claims = vec![
            claim("Scalp won 59.5%.", "win_rate", &[("mode", "scalp")], 0.595),
            claim("Again 59.5%.", "win_rate", &[("mode", "scalp")], 0.595),
            claim("The queue is 91.0% full.", "queue_fill", &[], 0.91),
        ];
        let summary = merge(&p, &claims);
        let texts: Vec<&str> = summary.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, vec!["The queue is 91.0% full.", "Scalp won 59.5%."]);
        let md = markdown(&p, &summary, &[], &[]);
        assert!(
            md.contains(
                "## Needs attention\n\n- The queue is 91.0% full. _(rests on `queue_fill`)_"
            ),
            "{md}"
        );
        assert!(
            md.contains("## Figures\n\n- Scalp won 59.5%. _(rests on `win_rate{mode=scalp}`)_"),
            "{md}"
        );
    }

    #[test]
    fn a_judge_sentence_must_rest_on_verified_claims_and_pass_the_verifier() {
        let p = packet();
        let verifier = Verifier::new(&p);
        let verified = vec![claim(
            "Scalp won 59.5%.",
            "win_rate",
            &[("mode", "scalp")],
            0.595,
        )];
        let sentence = |text: &str, rests: Vec<MetricRef>| Sentence {
            text: text.into(),
            rests_on: rests,
            attention: false,
        };
        let scalp = MetricRef::new("win_rate", &[("mode", "scalp")]);
        let (kept, dropped) = verify(
            &verifier,
            vec![
                sentence("Scalp won 59.5%, a good day.", vec![scalp.clone()]),
                sentence("Scalp won 61%.", vec![scalp.clone()]),
                sentence(
                    "The queue is 91% full.",
                    vec![MetricRef::new("queue_fill", &[])],
                ),
                sentence("All is well.", vec![]),
                // A bare metric is not what the verified claim cites.
                sentence("Runner won 66.7%.", vec![MetricRef::new("win_rate", &[])]),
            ],
            &verified,
        );
        assert_eq!(kept.len(), 1, "{dropped:#?}");
        let reasons: Vec<&str> = dropped.iter().map(|d| d.reason.as_str()).collect();
        assert!(reasons[0].starts_with("invented: 61%"), "{reasons:?}");
        assert!(
            reasons[1].contains("no verified claim cites"),
            "{reasons:?}"
        );
        assert_eq!(reasons[2], "rests on no metric");
        assert!(
            reasons[3].contains("rests on win_rate, which no verified claim cites"),
            "{reasons:?}"
        );
    }
}
