//! The eight event tables, declared once.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

use super::column::{Column, ReadColumn, ReadError, UTC, ts_type};
use super::{
    Direction, EventHeader, Gate, GateResult, Level, Mode, ModelEventKind, PredictionKind, Regime,
    SCHEMA_VERSION, ShadowKind, Side, TradeKind, Ts,
};

/// Names of the header columns, in table order.
pub const HEADER_COLUMNS: [&str; 5] = ["event_id", "ts", "symbol", "level", "schema_version"];

/// What the header columns hold.
const HEADER_DESCRIPTIONS: [(&str, &str); 5] = [
    ("event_id", "Unique id of the event (a UUID by convention)."),
    ("ts", "When the event happened, UTC."),
    ("symbol", "Instrument; also the lake's symbol= partition."),
    (
        "level",
        "Priority: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    ),
    (
        "schema_version",
        "Version of the event schema that wrote the row.",
    ),
];

/// Position of `symbol` in every table schema.
pub const SYMBOL_COLUMN: usize = 2;

fn header_fields() -> Vec<Field> {
    vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("ts", ts_type(), false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("level", DataType::Utf8, false),
        Field::new("schema_version", DataType::Int32, false),
    ]
}

struct HeaderBuilders {
    event_id: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    symbol: StringBuilder,
    level: StringBuilder,
    rows: usize,
}

impl HeaderBuilders {
    fn with_capacity(rows: usize) -> Self {
        Self {
            event_id: StringBuilder::with_capacity(rows, rows * 36),
            ts: TimestampMicrosecondBuilder::with_capacity(rows),
            symbol: StringBuilder::with_capacity(rows, rows * 8),
            level: StringBuilder::with_capacity(rows, rows * 5),
            rows: 0,
        }
    }

    fn append(&mut self, h: &EventHeader) {
        self.event_id.append_value(&h.event_id);
        self.ts.append_value(h.ts.0);
        self.symbol.append_value(&h.symbol);
        self.level.append_value(h.level.as_str());
        self.rows += 1;
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.ts.finish().with_timezone(UTC)),
            Arc::new(self.symbol.finish()),
            Arc::new(self.level.finish()),
            Arc::new(Int32Array::from(vec![SCHEMA_VERSION; self.rows])),
        ]
    }
}

/// Reads one named column of a batch back into values.
fn read_column<T: ReadColumn>(
    batch: &RecordBatch,
    name: &'static str,
) -> Result<Vec<T>, ReadError> {
    let array = batch.column_by_name(name).ok_or_else(|| ReadError {
        row: 0,
        field: name,
        message: "column is missing".into(),
    })?;
    T::read_all(array.as_ref(), name)
}

/// Reads the header columns of a batch.
fn read_headers(batch: &RecordBatch) -> Result<Vec<EventHeader>, ReadError> {
    let event_id: Vec<String> = read_column(batch, "event_id")?;
    let ts: Vec<Ts> = read_column(batch, "ts")?;
    let symbol: Vec<String> = read_column(batch, "symbol")?;
    let level: Vec<Level> = read_column(batch, "level")?;
    Ok(event_id
        .into_iter()
        .zip(ts)
        .zip(symbol)
        .zip(level)
        .map(|(((event_id, ts), symbol), level)| EventHeader {
            event_id,
            ts,
            symbol,
            level,
        })
        .collect())
}

macro_rules! event_tables {
    ($(
        $(#[$doc:meta])*
        $variant:ident($ty:ident) => $table:literal {
            $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty ),* $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
            pub struct $ty {
                pub header: EventHeader,
                $( $(#[doc = $fdoc])* pub $field: $fty, )*
            }

            impl $ty {
                fn fields() -> Vec<Field> {
                    let mut fields = header_fields();
                    $( fields.push(Field::new(
                        stringify!($field),
                        <$fty as Column>::data_type(),
                        <$fty as Column>::NULLABLE,
                    )); )*
                    fields
                }

                /// Builds one record batch (in the table's schema) from rows of this table.
                pub fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
                    let mut header = HeaderBuilders::with_capacity(rows.len());
                    $( let mut $field = <$fty as Column>::builder(rows.len()); )*
                    for row in rows {
                        header.append(&row.header);
                        $( row.$field.append_to(&mut $field); )*
                    }
                    #[allow(unused_mut)]
                    let mut columns = header.finish();
                    $( columns.push(<$fty as Column>::finish(&mut $field)); )*
                    RecordBatch::try_new(Table::$variant.schema(), columns)
                }

                /// Reads rows back from a batch whose columns have this table's
                /// names and types (extra columns are ignored).
                pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ReadError> {
                    let header = read_headers(batch)?;
                    $( let mut $field =
                        read_column::<$fty>(batch, stringify!($field))?.into_iter(); )*
                    let mut out = Vec::with_capacity(batch.num_rows());
                    for (row, header) in header.into_iter().enumerate() {
                        out.push(Self {
                            header,
                            $( $field: $field.next().ok_or_else(|| ReadError {
                                row,
                                field: stringify!($field),
                                message: "column is shorter than the batch".into(),
                            })?, )*
                        });
                    }
                    Ok(out)
                }
            }

            impl From<$ty> for Event {
                fn from(e: $ty) -> Self {
                    Event::$variant(e)
                }
            }
        )*

        /// The event tables.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Table { $($variant),* }

        impl Table {
            pub const ALL: &'static [Table] = &[$(Table::$variant),*];

            /// The table's SQL name.
            pub fn name(self) -> &'static str {
                match self { $(Table::$variant => $table),* }
            }

            pub fn from_name(name: &str) -> Option<Table> {
                match name { $($table => Some(Table::$variant),)* _ => None }
            }

            /// Dense index, for per-table arrays.
            pub fn index(self) -> usize {
                self as usize
            }

            /// Reads a batch in this table's schema back into events.
            pub fn read_events(self, batch: &RecordBatch) -> Result<Vec<Event>, ReadError> {
                match self {
                    $(Table::$variant => Ok($ty::from_batch(batch)?.into_iter().map(Event::$variant).collect()),)*
                }
            }

            /// Each column's description (from its doc comment), header first.
            pub fn column_descriptions(self) -> &'static [(&'static str, &'static str)] {
                static DESCRIPTIONS: LazyLock<Vec<Vec<(&'static str, &'static str)>>> =
                    LazyLock::new(|| vec![$({
                        let mut d = HEADER_DESCRIPTIONS.to_vec();
                        $( d.push((stringify!($field), concat!($($fdoc),*).trim())); )*
                        d
                    }),*]);
                &DESCRIPTIONS[self.index()]
            }

            /// The table's Arrow schema (header columns first).
            pub fn schema(self) -> SchemaRef {
                static SCHEMAS: LazyLock<Vec<SchemaRef>> = LazyLock::new(|| {
                    vec![$(Arc::new(Schema::new($ty::fields()))),*]
                });
                SCHEMAS[self.index()].clone()
            }
        }

        /// One event of any table: what [`crate::ingest::Logger::log`] takes.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "table", rename_all = "snake_case")]
        pub enum Event { $($variant($ty)),* }

        impl Event {
            pub fn header(&self) -> &EventHeader {
                match self { $(Event::$variant(e) => &e.header),* }
            }

            pub fn table(&self) -> Table {
                match self { $(Event::$variant(_) => Table::$variant),* }
            }
        }

        /// Events waiting to become record batches, one typed buffer per table.
        #[derive(Debug, Default)]
        #[allow(non_snake_case)]
        pub struct EventBuffers {
            $( $variant: Vec<$ty>, )*
            len: usize,
        }

        impl EventBuffers {
            pub fn push(&mut self, event: Event) {
                self.len += 1;
                match event { $(Event::$variant(e) => self.$variant.push(e)),* }
            }

            /// Number of buffered events over all tables.
            pub fn len(&self) -> usize {
                self.len
            }

            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            /// Turns every non-empty buffer into one record batch and empties it.
            pub fn take_batches(&mut self) -> Result<Vec<(Table, RecordBatch)>, ArrowError> {
                let mut out = Vec::new();
                $(
                    if !self.$variant.is_empty() {
                        out.push((Table::$variant, $ty::to_batch(&self.$variant)?));
                        self.$variant.clear();
                    }
                )*
                self.len = 0;
                Ok(out)
            }
        }
    };
}

event_tables! {
    /// A trading signal produced by the strategy.
    Signal(Signal) => "signals" {
        signal_id: String,
        mode: Mode,
        side: Side,
        /// Price when the signal fired.
        price: f64,
        /// Strategy-defined strength in [0, 1].
        strength: f64,
        model_id: String,
        regime: Regime,
        /// When the decision was made: no feature may come from after it.
        decision_ts: Ts,
        /// Latest time a label may use; must be >= decision_ts (leakage rule).
        label_cutoff_ts: Ts,
    }

    /// One gate's verdict on one signal.
    GateDecision(GateDecision) => "gate_decisions" {
        decision_id: String,
        signal_id: String,
        trace_id: String,
        gate: Gate,
        result: GateResult,
        /// The measured value the gate compared.
        value: f64,
        threshold: f64,
        direction: Direction,
        mode: Mode,
        regime: Regime,
        /// The gate's inputs as a JSON object.
        inputs: String,
    }

    /// An opened or closed (real) trade.
    Trade(Trade) => "trades" {
        trade_id: String,
        signal_id: String,
        kind: TradeKind,
        side: Side,
        qty: f64,
        price: f64,
        fees_bps: f64,
        /// Net P&L in basis points (on CLOSE).
        pnl_bps: Option<f64>,
        /// Holding time in seconds (on CLOSE).
        duration_s: Option<f64>,
        mode: Mode,
        regime: Regime,
        /// Maximum adverse excursion in bps (on CLOSE).
        mae_bps: Option<f64>,
        /// Maximum favourable excursion in bps (on CLOSE).
        mfe_bps: Option<f64>,
        /// The features the bot saw at entry, a JSON object of name to number
        /// (on OPEN; added in schema version 2).
        features: Option<String>,
    }

    /// A signal the gates blocked, tracked as if it had been traded.
    ShadowTrade(ShadowTrade) => "shadow_trades" {
        shadow_id: String,
        signal_id: String,
        kind: ShadowKind,
        /// The (first) gate that blocked the signal.
        blocked_by: Gate,
        side: Side,
        hypothetical_entry: f64,
        /// What the trade would have made, in bps (on RESOLVED).
        outcome_pnl_bps: Option<f64>,
        mode: Mode,
        regime: Regime,
    }

    /// One timed step of a decision trace (signal -> gates -> execution).
    TraceStep(TraceStep) => "trace_steps" {
        trace_id: String,
        signal_id: String,
        step: String,
        /// Order of the step within its trace, from 0.
        seq: i32,
        /// Offset of the step from the start of the trace.
        start_ms: f64,
        duration_ms: f64,
        result: String,
    }

    /// A model was trained, deployed or rolled back.
    ModelEvent(ModelEvent) => "model_events" {
        model_id: String,
        kind: ModelEventKind,
        /// Training or evaluation metrics as a JSON object.
        metrics: String,
        /// Alias the model took or left (`production`, `shadow`), if any.
        alias: Option<String>,
    }

    /// A snapshot of the market for one symbol.
    MarketContext(MarketContext) => "market_context" {
        price: f64,
        spread_bps: f64,
        volume: f64,
        /// Annualised volatility, as a fraction.
        volatility: f64,
        regime: Regime,
    }

    /// A model's prediction for a signal, and later its label.
    Prediction(Prediction) => "predictions" {
        model_id: String,
        signal_id: String,
        kind: PredictionKind,
        /// Predicted win probability (on PREDICTED).
        predicted_prob: Option<f64>,
        /// 1 if the signal won, 0 if not (on LABELED).
        label: Option<i32>,
        decision_ts: Ts,
        label_cutoff_ts: Ts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Level;

    #[test]
    fn every_table_starts_with_the_header_and_names_are_unique() {
        for table in Table::ALL {
            let schema = table.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(&names[..5], &HEADER_COLUMNS, "{}", table.name());
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{}", table.name());
            assert_eq!(Table::from_name(table.name()), Some(*table));
        }
    }

    #[test]
    fn batch_has_the_table_schema_and_the_values() {
        let row = MarketContext {
            header: EventHeader {
                event_id: "e1".into(),
                ts: Ts(1_700_000_000_000_000),
                symbol: "BTC-USD".into(),
                level: Level::Info,
            },
            price: 100.0,
            spread_bps: 2.5,
            volume: 10.0,
            volatility: 0.4,
            regime: Regime::Trend,
        };
        let batch = MarketContext::to_batch(&[row.clone(), row]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), Table::MarketContext.schema());
        let formatted = arrow::util::pretty::pretty_format_batches(&[batch])
            .unwrap()
            .to_string();
        assert!(formatted.contains("2023-11-14T22:13:20Z"), "{formatted}");
        assert!(formatted.contains("| e1 "), "{formatted}");
    }

    #[test]
    fn every_table_reads_back_what_it_wrote() {
        let mut sim = crate::sim::Simulator::new(7, crate::gates::GatesConfig::builtin().unwrap());
        let mut events = Vec::new();
        for i in 0..400 {
            sim.cycle(Ts(1_700_000_000_000_000 + i * 1_000_000), &mut events);
        }
        let mut buffers = EventBuffers::default();
        let mut by_table: std::collections::BTreeMap<Table, Vec<Event>> = Default::default();
        for event in events {
            by_table
                .entry(event.table())
                .or_default()
                .push(event.clone());
            buffers.push(event);
        }
        let batches = buffers.take_batches().unwrap();
        assert_eq!(
            batches.len(),
            Table::ALL.len(),
            "the simulator feeds every table"
        );
        for (table, batch) in batches {
            assert_eq!(
                table.read_events(&batch).unwrap(),
                by_table[&table],
                "{}",
                table.name()
            );
        }
    }

    #[test]
    fn reading_names_the_row_and_field_of_a_bad_value() {
        let row = MarketContext {
            header: EventHeader::new("ETH-USD", Level::Info),
            price: 1.0,
            spread_bps: 1.0,
            volume: 1.0,
            volatility: 0.1,
            regime: Regime::Range,
        };
        let batch = MarketContext::to_batch(&[row.clone(), row]).unwrap();
        let mut columns = batch.columns().to_vec();
        columns[9] = Arc::new(arrow::array::StringArray::from(vec!["RANGE", "SIDEWAYS"]));
        let bad = RecordBatch::try_new(batch.schema(), columns).unwrap();
        let err = Table::MarketContext.read_events(&bad).unwrap_err();
        assert_eq!(err.row, 1);
        assert_eq!(err.field, "regime");
        assert!(err.message.contains("TREND, RANGE, PANIC"), "{err}");
    }
}
