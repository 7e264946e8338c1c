//! One decision trace, explained: its timeline, its bottlenecks (steps over
//! [`BOTTLENECK_SHARE`] of the total) and a recommendation that quotes only
//! numbers from the trace and from the step's own history.

use std::collections::HashMap;
use std::fmt::Write;

/// A step is a bottleneck when it takes more than this share of its trace.
pub const BOTTLENECK_SHARE: f64 = 0.2;

/// One step as logged (`events.trace_steps`).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub seq: i32,
    pub step: String,
    pub start_ms: f64,
    pub duration_ms: f64,
    pub result: String,
}

/// A step in the report: its offset from the trace's first step and its
/// share of the total.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    pub offset_ms: f64,
    pub step: String,
    pub duration_ms: f64,
    pub share: f64,
    pub result: String,
    pub bottleneck: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraceReport {
    /// Sum of the steps' durations.
    pub total_ms: f64,
    pub timeline: Vec<TimelineRow>,
    /// The slowest step, whatever its share.
    pub slowest: Option<TimelineRow>,
    pub recommendation: String,
}

impl TraceReport {
    /// `p95_ms`: each step's 95th percentile duration over the traces it is
    /// compared with (e.g. the same day), when known.
    pub fn new(mut steps: Vec<Step>, p95_ms: &HashMap<String, f64>) -> TraceReport {
        steps.sort_by(|a, b| a.seq.cmp(&b.seq).then(a.start_ms.total_cmp(&b.start_ms)));
        let total_ms: f64 = steps.iter().map(|s| s.duration_ms).sum();
        let first_start = steps.first().map_or(0.0, |s| s.start_ms);
        let timeline: Vec<TimelineRow> = steps
            .into_iter()
            .map(|s| {
                let share = if total_ms > 0.0 {
                    s.duration_ms / total_ms
                } else {
                    0.0
                };
                TimelineRow {
                    offset_ms: s.start_ms - first_start,
                    step: s.step,
                    duration_ms: s.duration_ms,
                    share,
                    result: s.result,
                    bottleneck: share > BOTTLENECK_SHARE,
                }
            })
            .collect();
        let slowest = timeline
            .iter()
            .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))
            .cloned();
        let recommendation = recommend(total_ms, &timeline, slowest.as_ref(), p95_ms);
        TraceReport {
            total_ms,
            timeline,
            slowest,
            recommendation,
        }
    }

    pub fn bottlenecks(&self) -> impl Iterator<Item = &TimelineRow> {
        self.timeline.iter().filter(|r| r.bottleneck)
    }
}

fn recommend(
    total_ms: f64,
    timeline: &[TimelineRow],
    slowest: Option<&TimelineRow>,
    p95_ms: &HashMap<String, f64>,
) -> String {
    let Some(slowest) = slowest else {
        return "no steps were logged for this trace".into();
    };
    let mut text = String::new();
    let _ = write!(
        text,
        "{} takes {:.1}% of this decision ({:.2} of {:.2} ms)",
        slowest.step,
        slowest.share * 100.0,
        slowest.duration_ms,
        total_ms
    );
    match p95_ms.get(&slowest.step) {
        Some(&p95) if slowest.duration_ms > p95 => {
            let _ = write!(
                text,
                "; that is above its p95 of {p95:.2} ms, so this run was unusually slow: \
                 look at what else ran at the time"
            );
        }
        Some(&p95) => {
            let _ = write!(
                text,
                "; that is within its p95 of {p95:.2} ms, so the step is slow every time: \
                 speed it up (cache, precompute or make it cheaper) to shorten every decision"
            );
        }
        None => {}
    }
    if !slowest.bottleneck {
        let _ = write!(
            text,
            "; no step is over {:.0}% of the total",
            BOTTLENECK_SHARE * 100.0
        );
    } else {
        let others = timeline.iter().filter(|r| r.bottleneck).count() - 1;
        if others > 0 {
            let _ = write!(text, "; {others} other step(s) are over 20% too");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(seq: i32, name: &str, start: f64, duration: f64) -> Step {
        Step {
            seq,
            step: name.into(),
            start_ms: start,
            duration_ms: duration,
            result: "ok".into(),
        }
    }

    #[test]
    fn timeline_shares_bottlenecks_and_a_recommendation() {
        // a=1, b=2, c=7 ms: total 10; c is 70% (a bottleneck), b is exactly
        // 20% (not over), a 10%.
        let steps = vec![
            step(2, "c", 13.0, 7.0),
            step(0, "a", 10.0, 1.0),
            step(1, "b", 11.0, 2.0),
        ];
        let p95 = HashMap::from([("c".to_string(), 6.75)]);
        let report = TraceReport::new(steps, &p95);
        assert_eq!(report.total_ms, 10.0);
        let rows: Vec<(&str, f64, f64, bool)> = report
            .timeline
            .iter()
            .map(|r| (r.step.as_str(), r.offset_ms, r.share, r.bottleneck))
            .collect();
        assert_eq!(
            rows,
            [
                ("a", 0.0, 0.1, false),
                ("b", 1.0, 0.2, false),
                ("c", 3.0, 0.7, true)
            ]
        );
        assert_eq!(
            report.recommendation,
            "c takes 70.0% of this decision (7.00 of 10.00 ms); that is above its p95 of 6.75 ms, \
             so this run was unusually slow: look at what else ran at the time"
        );
    }

    #[test]
    fn a_step_slow_every_time_and_an_even_trace() {
        let steps = vec![
            step(0, "a", 0.0, 1.0),
            step(1, "b", 1.0, 1.0),
            step(2, "c", 2.0, 2.0),
        ];
        let report = TraceReport::new(steps, &HashMap::from([("c".to_string(), 6.75)]));
        // 1/4, 1/4, 2/4: all over 20%.
        assert_eq!(report.bottlenecks().count(), 3);
        assert!(report.recommendation.starts_with(
            "c takes 50.0% of this decision (2.00 of 4.00 ms); that is within its p95 of 6.75 ms"
        ));
        assert!(
            report
                .recommendation
                .ends_with("; 2 other step(s) are over 20% too")
        );

        let even: Vec<Step> = (0..6)
            .map(|i| step(i, &format!("s{i}"), f64::from(i), 1.0))
            .collect();
        let report = TraceReport::new(even, &HashMap::new());
        assert_eq!(report.bottlenecks().count(), 0);
        assert!(
            report
                .recommendation
                .ends_with("no step is over 20% of the total")
        );
        assert_eq!(
            TraceReport::new(vec![], &HashMap::new()).recommendation,
            "no steps were logged for this trace"
        );
    }
}
