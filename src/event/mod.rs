//! The event model: the eight event tables as Rust types and Arrow schemas, and
//! their validation. No I/O happens here.
//!
//! Every table is declared once in [`tables`] and its Arrow schema is derived from
//! that declaration, so names and types have one source of truth.
//!
//! # Schema evolution
//!
//! Every row carries `schema_version` ([`SCHEMA_VERSION`]). Changes are additive
//! only: a new column is appended at the end of a table and is nullable, and the
//! version is bumped. Columns are never renamed, retyped or removed. Readers map
//! older Parquet files onto the current schema by name, filling new columns with
//! NULL (DataFusion's schema adapter does this for the lake), so old files stay
//! readable by Quiver, DuckDB and any other engine.

pub mod column;
mod tables;
mod validate;

pub use column::{Ts, ts_type};
pub use tables::*;
pub use validate::{ValidationError, ValidationLimits, Violation, is_valid_symbol};

/// The hex SHA-256 of `bytes`: a model's id is that of its artifact (the
/// registry's content address), a config version's that of its text.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Version of the event schemas written by this build. See the module docs for
/// the rule on schema changes. Version 2 added `trades.features`.
pub const SCHEMA_VERSION: i32 = 2;

column::string_enum! {
    /// Priority of an event, which decides what the logger drops under pressure.
    Level { Debug => "DEBUG", Info => "INFO", Warning => "WARNING", Error => "ERROR", Critical => "CRITICAL" }
}

impl Level {
    /// Index into per-level counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

column::string_enum! {
    /// Trading mode of a signal or trade.
    Mode { Scalp => "scalp", Runner => "runner" }
}

column::string_enum! {
    /// Market regime as classified by the bot.
    Regime { Trend => "TREND", Range => "RANGE", Panic => "PANIC" }
}

column::string_enum! {
    Side { Buy => "BUY", Sell => "SELL" }
}

column::string_enum! {
    /// The six gates a signal must pass before it becomes a trade.
    Gate {
        MetaLabel => "meta_label",
        CostGate => "cost_gate",
        ConfidenceGate => "confidence_gate",
        RegimeGate => "regime_gate",
        SpreadGate => "spread_gate",
        VolumeGate => "volume_gate",
    }
}

column::string_enum! {
    GateResult { Pass => "PASS", Fail => "FAIL" }
}

column::string_enum! {
    /// Whether a gate's value must be at least (`min`) or at most (`max`) its threshold.
    Direction { Min => "min", Max => "max" }
}

column::string_enum! {
    TradeKind { Open => "OPEN", Close => "CLOSE" }
}

column::string_enum! {
    ShadowKind { Blocked => "BLOCKED", Resolved => "RESOLVED" }
}

column::string_enum! {
    ModelEventKind { Trained => "TRAINED", Deployed => "DEPLOYED", RolledBack => "ROLLED_BACK" }
}

column::string_enum! {
    PredictionKind { Predicted => "PREDICTED", Labeled => "LABELED" }
}

/// The columns every event has, in this order, at the start of every table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventHeader {
    /// Unique id of the event (a UUID by convention).
    pub event_id: String,
    /// When the event happened.
    pub ts: Ts,
    /// Instrument, `[A-Za-z0-9._-]{1,32}`; also the lake's `symbol=` partition.
    pub symbol: String,
    pub level: Level,
}

impl EventHeader {
    /// A header with a fresh random (v4) event id and the current time.
    pub fn new(symbol: impl Into<String>, level: Level) -> Self {
        Self {
            event_id: uuid::Uuid::new_v4().to_string(),
            ts: Ts::now(),
            symbol: symbol.into(),
            level,
        }
    }
}
