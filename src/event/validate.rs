//! Validation at the edge: an event that breaks a rule is rejected with an error
//! naming its table and field, and never reaches storage.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Event, Table, Ts};

/// Limits applied to every event.
///
/// Also the `[validation]` section of `quiver.toml`, but for two fields: see
/// each. A missing key keeps its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationLimits {
    /// Earliest accepted timestamp (default 2000-01-01T00:00:00Z). Not a
    /// config key: a floor of the event model, not a deployment's choice.
    #[serde(skip)]
    pub ts_min: Ts,
    /// How far ahead of the server's clock a timestamp may be, a duration
    /// (`"5s"`). Default 5 s.
    #[serde(with = "humantime_serde")]
    pub future_skew_max: Duration,
    /// Longest id or short text field, in bytes. Default 128.
    pub string_bytes_max: usize,
    /// Longest JSON payload (`inputs`, `metrics`), in bytes. Default 16 KiB.
    pub json_bytes_max: usize,
    /// If set, only these symbols are accepted. Skipped here: in the file it
    /// is a list (`symbols_allowed = ["BTC-USD"]`, empty for any symbol) that
    /// the config reads and checks symbol by symbol before it builds this set
    /// (`config::ValidationSection`).
    #[serde(skip)]
    pub symbols_allowed: Option<HashSet<String>>,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        Self {
            ts_min: Ts(946_684_800_000_000),
            future_skew_max: Duration::from_secs(5),
            string_bytes_max: 128,
            json_bytes_max: 16 * 1024,
            symbols_allowed: None,
        }
    }
}

/// What was wrong with a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    Empty,
    TooLong {
        bytes: usize,
        max: usize,
    },
    NotFinite,
    NotPositive,
    OutOfRange {
        min: f64,
        max: f64,
    },
    BadSymbol,
    SymbolNotAllowed,
    BeforeMin {
        min: Ts,
    },
    InFuture {
        ahead_ms: i64,
    },
    Leakage {
        decision_ts: Ts,
        label_cutoff_ts: Ts,
    },
    NotJsonObject,
    Missing,
}

/// An event that failed validation: which table, which field, what rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{table}.{field}: {violation}")]
pub struct ValidationError {
    pub table: &'static str,
    pub field: &'static str,
    pub violation: Violation,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Empty => write!(f, "must not be empty"),
            Violation::TooLong { bytes, max } => write!(f, "is {bytes} bytes, more than {max}"),
            Violation::NotFinite => write!(f, "must be a finite number"),
            Violation::NotPositive => write!(f, "must be > 0"),
            Violation::OutOfRange { min, max } => write!(f, "must be in [{min}, {max}]"),
            Violation::BadSymbol => write!(
                f,
                "must match [A-Za-z0-9._-]{{1,32}} and not be '.' or '..'"
            ),
            Violation::SymbolNotAllowed => write!(f, "is not in the symbol allowlist"),
            Violation::BeforeMin { min } => write!(f, "is before {}", fmt_ts(*min)),
            Violation::InFuture { ahead_ms } => {
                write!(
                    f,
                    "is {ahead_ms} ms in the future (clock skew limit exceeded)"
                )
            }
            Violation::Leakage {
                decision_ts,
                label_cutoff_ts,
            } => write!(
                f,
                "label leakage: decision_ts {} is after label_cutoff_ts {}",
                fmt_ts(*decision_ts),
                fmt_ts(*label_cutoff_ts)
            ),
            Violation::NotJsonObject => write!(f, "must be a JSON object"),
            Violation::Missing => write!(f, "is required"),
        }
    }
}

fn fmt_ts(ts: Ts) -> String {
    chrono::DateTime::from_timestamp_micros(ts.0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| format!("{}us", ts.0))
}

/// Whether `symbol` is safe as a partition value and a path segment:
/// `[A-Za-z0-9._-]{1,32}`, and neither `.` nor `..`.
pub fn is_valid_symbol(symbol: &str) -> bool {
    (1..=32).contains(&symbol.len())
        && symbol != "."
        && symbol != ".."
        && symbol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

struct Checker<'a> {
    table: Table,
    limits: &'a ValidationLimits,
    now: Ts,
}

type Check = Result<(), ValidationError>;

impl Checker<'_> {
    fn fail(&self, field: &'static str, violation: Violation) -> Check {
        Err(ValidationError {
            table: self.table.name(),
            field,
            violation,
        })
    }

    fn id(&self, field: &'static str, value: &str) -> Check {
        if value.is_empty() {
            return self.fail(field, Violation::Empty);
        }
        self.text(field, value)
    }

    fn text(&self, field: &'static str, value: &str) -> Check {
        if value.len() > self.limits.string_bytes_max {
            return self.fail(
                field,
                Violation::TooLong {
                    bytes: value.len(),
                    max: self.limits.string_bytes_max,
                },
            );
        }
        Ok(())
    }

    fn json_object(&self, field: &'static str, value: &str) -> Check {
        if value.len() > self.limits.json_bytes_max {
            return self.fail(
                field,
                Violation::TooLong {
                    bytes: value.len(),
                    max: self.limits.json_bytes_max,
                },
            );
        }
        // A cheap shape check on the hot path; the full parse is left to readers.
        let trimmed = value.trim();
        if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
            return self.fail(field, Violation::NotJsonObject);
        }
        Ok(())
    }

    fn finite(&self, field: &'static str, value: f64) -> Check {
        if !value.is_finite() {
            return self.fail(field, Violation::NotFinite);
        }
        Ok(())
    }

    fn opt_finite(&self, field: &'static str, value: Option<f64>) -> Check {
        value.map_or(Ok(()), |v| self.finite(field, v))
    }

    fn positive(&self, field: &'static str, value: f64) -> Check {
        self.finite(field, value)?;
        if value <= 0.0 {
            return self.fail(field, Violation::NotPositive);
        }
        Ok(())
    }

    fn non_negative(&self, field: &'static str, value: f64) -> Check {
        self.range(field, value, 0.0, f64::MAX)
    }

    fn range(&self, field: &'static str, value: f64, min: f64, max: f64) -> Check {
        self.finite(field, value)?;
        if value < min || value > max {
            return self.fail(field, Violation::OutOfRange { min, max });
        }
        Ok(())
    }

    fn ts(&self, field: &'static str, ts: Ts) -> Check {
        if ts < self.limits.ts_min {
            return self.fail(
                field,
                Violation::BeforeMin {
                    min: self.limits.ts_min,
                },
            );
        }
        let skew_us = i64::try_from(self.limits.future_skew_max.as_micros()).unwrap_or(i64::MAX);
        if ts.0 > self.now.0.saturating_add(skew_us) {
            return self.fail(
                field,
                Violation::InFuture {
                    ahead_ms: (ts.0 - self.now.0) / 1_000,
                },
            );
        }
        Ok(())
    }

    fn no_leakage(&self, decision_ts: Ts, label_cutoff_ts: Ts) -> Check {
        self.ts("decision_ts", decision_ts)?;
        if decision_ts > label_cutoff_ts {
            return self.fail(
                "decision_ts",
                Violation::Leakage {
                    decision_ts,
                    label_cutoff_ts,
                },
            );
        }
        Ok(())
    }
}

impl Event {
    /// Checks every rule of the event's table. `now` is the server's clock.
    pub fn validate(&self, limits: &ValidationLimits, now: Ts) -> Result<(), ValidationError> {
        let c = Checker {
            table: self.table(),
            limits,
            now,
        };
        let h = self.header();
        c.id("event_id", &h.event_id)?;
        c.ts("ts", h.ts)?;
        if !is_valid_symbol(&h.symbol) {
            return c.fail("symbol", Violation::BadSymbol);
        }
        if let Some(allowed) = &limits.symbols_allowed
            && !allowed.contains(&h.symbol)
        {
            return c.fail("symbol", Violation::SymbolNotAllowed);
        }
        match self {
            Event::Signal(e) => {
                c.id("signal_id", &e.signal_id)?;
                c.positive("price", e.price)?;
                c.range("strength", e.strength, 0.0, 1.0)?;
                c.id("model_id", &e.model_id)?;
                c.no_leakage(e.decision_ts, e.label_cutoff_ts)
            }
            Event::GateDecision(e) => {
                c.id("decision_id", &e.decision_id)?;
                c.id("signal_id", &e.signal_id)?;
                c.id("trace_id", &e.trace_id)?;
                c.finite("value", e.value)?;
                c.finite("threshold", e.threshold)?;
                c.json_object("inputs", &e.inputs)
            }
            Event::Trade(e) => {
                c.id("trade_id", &e.trade_id)?;
                c.id("signal_id", &e.signal_id)?;
                c.positive("qty", e.qty)?;
                c.positive("price", e.price)?;
                c.non_negative("fees_bps", e.fees_bps)?;
                c.opt_finite("pnl_bps", e.pnl_bps)?;
                if let Some(d) = e.duration_s {
                    c.non_negative("duration_s", d)?;
                }
                c.opt_finite("mae_bps", e.mae_bps)?;
                c.opt_finite("mfe_bps", e.mfe_bps)?;
                if let Some(features) = &e.features {
                    c.json_object("features", features)?;
                }
                if e.kind == super::TradeKind::Close && e.pnl_bps.is_none() {
                    return c.fail("pnl_bps", Violation::Missing);
                }
                Ok(())
            }
            Event::ShadowTrade(e) => {
                c.id("shadow_id", &e.shadow_id)?;
                c.id("signal_id", &e.signal_id)?;
                c.positive("hypothetical_entry", e.hypothetical_entry)?;
                c.opt_finite("outcome_pnl_bps", e.outcome_pnl_bps)?;
                if e.kind == super::ShadowKind::Resolved && e.outcome_pnl_bps.is_none() {
                    return c.fail("outcome_pnl_bps", Violation::Missing);
                }
                Ok(())
            }
            Event::TraceStep(e) => {
                c.id("trace_id", &e.trace_id)?;
                c.id("signal_id", &e.signal_id)?;
                c.id("step", &e.step)?;
                c.text("result", &e.result)?;
                if e.seq < 0 {
                    return c.fail(
                        "seq",
                        Violation::OutOfRange {
                            min: 0.0,
                            max: f64::from(i32::MAX),
                        },
                    );
                }
                c.non_negative("start_ms", e.start_ms)?;
                c.non_negative("duration_ms", e.duration_ms)
            }
            Event::ModelEvent(e) => {
                c.id("model_id", &e.model_id)?;
                c.json_object("metrics", &e.metrics)?;
                if let Some(alias) = &e.alias {
                    c.id("alias", alias)?;
                }
                Ok(())
            }
            Event::MarketContext(e) => {
                c.positive("price", e.price)?;
                c.non_negative("spread_bps", e.spread_bps)?;
                c.non_negative("volume", e.volume)?;
                c.non_negative("volatility", e.volatility)
            }
            Event::Prediction(e) => {
                c.id("model_id", &e.model_id)?;
                c.id("signal_id", &e.signal_id)?;
                if let Some(p) = e.predicted_prob {
                    c.range("predicted_prob", p, 0.0, 1.0)?;
                }
                if let Some(label) = e.label
                    && !(0..=1).contains(&label)
                {
                    return c.fail("label", Violation::OutOfRange { min: 0.0, max: 1.0 });
                }
                match e.kind {
                    super::PredictionKind::Predicted if e.predicted_prob.is_none() => {
                        return c.fail("predicted_prob", Violation::Missing);
                    }
                    super::PredictionKind::Labeled if e.label.is_none() => {
                        return c.fail("label", Violation::Missing);
                    }
                    _ => {}
                }
                c.no_leakage(e.decision_ts, e.label_cutoff_ts)
            }
        }
    }
}
