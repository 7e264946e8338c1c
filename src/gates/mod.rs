//! `configs/gates.yaml`: the six gates, their thresholds, history, pass-rate
//! targets and explanation templates. Read into serde mirror structs, then
//! validated into [`GatesConfig`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::event::{Direction, Gate, Mode, Regime};

pub mod template;

/// The gates file shipped with Quiver, used when no file is given.
pub const BUILTIN_GATES_YAML: &str = include_str!("../../configs/gates.yaml");

#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct GatesError {
    pub origin: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u32,
    gates: BTreeMap<String, RawGate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    description: String,
    value: String,
    unit: String,
    direction: Direction,
    thresholds: PerMode<f64>,
    #[serde(default)]
    allowed_regimes: Option<PerMode<Vec<Regime>>>,
    pass_rate_target: PerMode<[f64; 2]>,
    history: Vec<RawChange>,
    explain: Templates,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerMode<T> {
    pub scalp: T,
    pub runner: T,
}

impl<T> PerMode<T> {
    pub fn get(&self, mode: Mode) -> &T {
        match mode {
            Mode::Scalp => &self.scalp,
            Mode::Runner => &self.runner,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChange {
    at: String,
    thresholds: PerMode<f64>,
    reason: String,
}

/// Explanation templates of one gate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    pub pass: String,
    pub fail: String,
    pub suggestion: String,
}

/// One change of a gate's thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdChange {
    pub at: chrono::DateTime<chrono::Utc>,
    pub thresholds: PerMode<f64>,
    pub reason: String,
}

/// One validated gate.
#[derive(Debug, Clone, PartialEq)]
pub struct GateDef {
    pub gate: Gate,
    pub description: String,
    pub value: String,
    pub unit: String,
    pub direction: Direction,
    pub thresholds: PerMode<f64>,
    pub allowed_regimes: Option<PerMode<Vec<Regime>>>,
    pub pass_rate_target: PerMode<[f64; 2]>,
    pub history: Vec<ThresholdChange>,
    pub explain: Templates,
}

impl GateDef {
    /// Whether `value` passes the gate's threshold for `mode`.
    pub fn passes(&self, mode: Mode, value: f64) -> bool {
        let threshold = *self.thresholds.get(mode);
        match self.direction {
            Direction::Min => value >= threshold,
            Direction::Max => value <= threshold,
        }
    }
}

/// All six gates, in pipeline order.
#[derive(Debug, Clone, PartialEq)]
pub struct GatesConfig {
    pub gates: Vec<GateDef>,
}

impl GatesConfig {
    pub fn builtin() -> Result<Self, GatesError> {
        Self::parse(BUILTIN_GATES_YAML, "built-in configs/gates.yaml")
    }

    pub fn load(path: &Path) -> Result<Self, GatesError> {
        let text = std::fs::read_to_string(path).map_err(|e| GatesError {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, GatesError> {
        let err = |message: String| GatesError {
            origin: origin.to_string(),
            message,
        };
        let raw: RawFile = serde_yaml::from_str(text).map_err(|e| err(e.to_string()))?;
        if raw.version != 1 {
            return Err(err(format!(
                "version {} is not supported (expected 1)",
                raw.version
            )));
        }
        let mut gates = Vec::new();
        for gate in Gate::ALL {
            let name = gate.as_str();
            let Some(g) = raw.gates.get(name) else {
                return Err(err(format!("gate {name} is missing")));
            };
            let at = |key: &str, message: String| err(format!("gates.{name}.{key}: {message}"));
            for (mode, t) in [
                ("scalp", g.thresholds.scalp),
                ("runner", g.thresholds.runner),
            ] {
                if !t.is_finite() {
                    return Err(at("thresholds", format!("{mode} is not a finite number")));
                }
            }
            for (mode, [lo, hi]) in [
                ("scalp", g.pass_rate_target.scalp),
                ("runner", g.pass_rate_target.runner),
            ] {
                if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
                    return Err(at(
                        "pass_rate_target",
                        format!("{mode} must be [low, high] within [0, 1]"),
                    ));
                }
            }
            if (*gate == Gate::RegimeGate) != g.allowed_regimes.is_some() {
                return Err(at(
                    "allowed_regimes",
                    "is required for regime_gate and only for it".into(),
                ));
            }
            let mut history = Vec::new();
            for change in &g.history {
                let when = chrono::DateTime::parse_from_rfc3339(&change.at)
                    .map_err(|e| at("history", format!("bad time {:?}: {e}", change.at)))?
                    .with_timezone(&chrono::Utc);
                history.push(ThresholdChange {
                    at: when,
                    thresholds: change.thresholds.clone(),
                    reason: change.reason.clone(),
                });
            }
            const UNITS: [&str; 5] = ["probability", "bps", "ratio", "flag", "usd"];
            if !UNITS.contains(&g.unit.as_str()) {
                return Err(at(
                    "unit",
                    format!("{:?} is not one of {}", g.unit, UNITS.join(", ")),
                ));
            }
            for (key, template) in [
                ("pass", &g.explain.pass),
                ("fail", &g.explain.fail),
                ("suggestion", &g.explain.suggestion),
            ] {
                template::check(template).map_err(|e| at(&format!("explain.{key}"), e))?;
            }
            if history.windows(2).any(|w| w[0].at > w[1].at) {
                return Err(at("history", "must be oldest first".into()));
            }
            gates.push(GateDef {
                gate: *gate,
                description: g.description.clone(),
                value: g.value.clone(),
                unit: g.unit.clone(),
                direction: g.direction,
                thresholds: g.thresholds.clone(),
                allowed_regimes: g.allowed_regimes.clone(),
                pass_rate_target: g.pass_rate_target.clone(),
                history,
                explain: g.explain.clone(),
            });
        }
        if let Some(unknown) = raw.gates.keys().find(|k| k.parse::<Gate>().is_err()) {
            return Err(err(format!("unknown gate {unknown:?}")));
        }
        Ok(Self { gates })
    }

    pub fn get(&self, gate: Gate) -> Option<&GateDef> {
        self.gates.iter().find(|g| g.gate == gate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_file_is_valid_and_complete() {
        let cfg = GatesConfig::builtin().unwrap();
        assert_eq!(cfg.gates.len(), 6);
        let spread = cfg.get(Gate::SpreadGate).unwrap();
        assert!(spread.passes(Mode::Scalp, 4.9));
        assert!(!spread.passes(Mode::Scalp, 5.1));
        assert!(!cfg.get(Gate::MetaLabel).unwrap().history.is_empty());
    }

    #[test]
    fn errors_name_the_gate_and_key() {
        let text = BUILTIN_GATES_YAML.replace(
            "thresholds: { scalp: 3.0, runner: 8.0 }",
            "thresholds: { scalp: .nan, runner: 8.0 }",
        );
        let err = GatesConfig::parse(&text, "g.yaml").unwrap_err().to_string();
        assert!(
            err.contains("g.yaml") && err.contains("cost_gate.thresholds"),
            "{err}"
        );
        let err = GatesConfig::parse("version: 1\ngates: {}\n", "g.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("meta_label is missing"), "{err}");
        let text = BUILTIN_GATES_YAML.replace(
            "suggestion: \"needs spread <= {threshold} bps, now {value}\"",
            "suggestion: \"needs spread <= {threshold} bps, now {value} {__import__}\"",
        );
        let err = GatesConfig::parse(&text, "g.yaml").unwrap_err().to_string();
        assert!(
            err.contains("gates.spread_gate.explain.suggestion: unknown placeholder {__import__}"),
            "{err}"
        );
        let err = GatesConfig::parse("[", "g.yaml").unwrap_err().to_string();
        assert!(err.starts_with("g.yaml:"), "{err}");
    }
}
