//! Two models side by side: rows of (name, A, B) with B - A and the change
//! in % of A, from registered metrics, calibration and feature importance.

use super::{Calibration, ReliabilityBin};

/// One compared quantity; either side may be missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
}

impl Row {
    pub fn new(name: impl Into<String>, a: Option<f64>, b: Option<f64>) -> Self {
        Self {
            name: name.into(),
            a,
            b,
        }
    }

    /// B - A, if both are known.
    pub fn delta(&self) -> Option<f64> {
        Some(self.b? - self.a?)
    }

    /// B - A in % of |A|, if both are known and A is not 0.
    pub fn change_pct(&self) -> Option<f64> {
        let a = self.a?;
        (a != 0.0).then(|| self.delta().map(|d| d / a.abs() * 100.0))?
    }
}

/// The names of both lists in order of first appearance, each with its
/// value on either side (the first, if a list names it twice).
pub fn side_by_side(a: &[(String, f64)], b: &[(String, f64)]) -> Vec<Row> {
    let value =
        |list: &[(String, f64)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let mut rows: Vec<Row> = Vec::new();
    for (name, _) in a.iter().chain(b) {
        if !rows.iter().any(|r| &r.name == name) {
            rows.push(Row::new(name.clone(), value(a, name), value(b, name)));
        }
    }
    rows
}

/// Orders rows by how much they changed: one-sided rows (a feature only one
/// model has) first, then by |B - A|, largest first; ties by name.
pub fn by_largest_change(rows: &mut [Row]) {
    let change = |r: &Row| r.delta().map_or(f64::INFINITY, f64::abs);
    rows.sort_by(|x, y| {
        change(y)
            .total_cmp(&change(x))
            .then_with(|| x.name.cmp(&y.name))
    });
}

/// The numeric entries of a registered model's `metrics` JSON object
/// (anything else in it is left out).
pub fn registered_metrics(metrics_json: &str) -> Vec<(String, f64)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(metrics_json) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| v.as_f64().map(|v| (k, v)))
        .collect()
}

/// Calibration of two models: labelled predictions, mean prediction,
/// observed win rate, ECE, MCE and Brier score.
pub fn calibration_rows(a: Option<&Calibration>, b: Option<&Calibration>) -> Vec<Row> {
    let mean = |c: &Calibration, get: fn(&ReliabilityBin) -> f64| {
        let n: u64 = c.bins.iter().map(|b| b.count).sum();
        c.bins.iter().map(|b| get(b) * b.count as f64).sum::<f64>() / n.max(1) as f64
    };
    let row =
        |name: &str, get: &dyn Fn(&Calibration) -> f64| Row::new(name, a.map(get), b.map(get));
    vec![
        row("labelled_predictions", &|c| c.samples as f64),
        row("avg_predicted", &|c| mean(c, |b| b.avg_predicted)),
        row("observed_win_rate", &|c| mean(c, |b| b.observed_rate)),
        row("ece", &|c| c.ece),
        row("mce", &|c| c.mce),
        row("brier", &|c| c.brier),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    #[test]
    fn rows_pair_names_and_work_out_deltas() {
        let rows = side_by_side(
            &named(&[("auc", 0.6), ("ece", 0.05)]),
            &named(&[("ece", 0.03), ("brier", 0.2)]),
        );
        assert_eq!(
            rows,
            vec![
                Row::new("auc", Some(0.6), None),
                Row::new("ece", Some(0.05), Some(0.03)),
                Row::new("brier", None, Some(0.2)),
            ]
        );
        assert!((rows[1].delta().unwrap() + 0.02).abs() < 1e-12);
        assert!((rows[1].change_pct().unwrap() + 40.0).abs() < 1e-9);
        assert_eq!(rows[0].delta(), None);
        assert_eq!(Row::new("x", Some(0.0), Some(1.0)).change_pct(), None);
    }

    #[test]
    fn largest_changes_come_first() {
        let mut rows = vec![
            Row::new("small", Some(1.0), Some(1.1)),
            Row::new("big", Some(1.0), Some(0.2)),
            Row::new("only_b", None, Some(0.5)),
            Row::new("only_a", Some(0.5), None),
        ];
        by_largest_change(&mut rows);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["only_a", "only_b", "big", "small"]);
    }

    #[test]
    fn registered_metrics_keep_numbers_only() {
        assert_eq!(
            registered_metrics(r#"{"auc": 0.6, "note": "x", "n": 3}"#),
            named(&[("auc", 0.6), ("n", 3.0)])
        );
        assert!(registered_metrics("not json").is_empty());
        assert!(registered_metrics("[1, 2]").is_empty());
    }
}
