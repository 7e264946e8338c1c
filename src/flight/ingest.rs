//! Bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`) into the event
//! tables, through the logger's validation, tiers and durability.
//!
//! **All or nothing per request.** Every row of the request is read and
//! validated before any is written; one bad row rejects the request with an
//! error naming the row (counted from 0 over the whole request) and the field.
//! A client can then fix and resend the same rows without creating duplicates,
//! which keeping the valid part would not allow. The answer (the row count)
//! comes once the rows are durable in the WAL and visible to queries (the
//! hot store has applied them; after 10 s of waiting, durability alone). A request larger than one
//! writer batch is made durable in several WAL writes: a crash in the middle
//! leaves a prefix stored and the client without an answer.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::DataType;
use arrow::util::display::FormatOptions;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use futures::{Stream, TryStreamExt};

use super::error::FlightError;
use crate::event::{Event, SCHEMA_VERSION, Table};
use crate::ingest::Logger;
use crate::query::CATALOG;

/// Which event table a request names, and whether its options can be honoured.
pub fn target_table(cmd: &CommandStatementIngest) -> Result<Table, FlightError> {
    if cmd.temporary {
        return Err(FlightError::Unsupported(
            "ingest: temporary tables are not supported".into(),
        ));
    }
    if cmd.transaction_id.is_some() {
        return Err(FlightError::Unsupported(
            "ingest: transactions are not supported".into(),
        ));
    }
    if let Some(catalog) = cmd.catalog.as_deref().filter(|c| !c.is_empty())
        && catalog != CATALOG
    {
        return Err(FlightError::NotFound(format!(
            "ingest: no catalog {catalog:?} (the catalog is {CATALOG})"
        )));
    }
    if let Some(schema) = cmd.schema.as_deref().filter(|s| !s.is_empty())
        && schema != "events"
    {
        return Err(FlightError::Refused(format!(
            "ingest: only the event tables (schema events) take rows, not schema {schema:?}"
        )));
    }
    let table = Table::from_name(&cmd.table).ok_or_else(|| {
        let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        FlightError::NotFound(format!(
            "ingest: no event table {:?}; tables: {}",
            cmd.table,
            names.join(", ")
        ))
    })?;
    if let Some(options) = &cmd.table_definition_options {
        match TableExistsOption::try_from(options.if_exists) {
            Ok(TableExistsOption::Fail) => {
                return Err(FlightError::AlreadyExists(format!(
                    "ingest: table {} exists; use mode=\"append\"",
                    table.name()
                )));
            }
            Ok(TableExistsOption::Replace) => {
                return Err(FlightError::Refused(format!(
                    "ingest: {} is append-only; use mode=\"append\"",
                    table.name()
                )));
            }
            Ok(TableExistsOption::Append | TableExistsOption::Unspecified) => {}
            Err(_) => {
                return Err(FlightError::BadRequest(
                    "ingest: unknown if_exists option".into(),
                ));
            }
        }
        if TableNotExistOption::try_from(options.if_not_exist).is_err() {
            return Err(FlightError::BadRequest(
                "ingest: unknown if_not_exist option".into(),
            ));
        }
    }
    Ok(table)
}

/// Maps an incoming batch onto the table's schema by column name: casts types
/// (timestamps of any unit and zone, large strings, integers to floats, ...;
/// a timestamp without a zone is refused), fills the
/// columns a client may leave out (`event_id` gets a UUID, `level` INFO,
/// `schema_version` the current one, nullable columns NULL) and refuses
/// unknown columns, so a misspelt column cannot silently lose its values.
pub fn conform(table: Table, batch: &RecordBatch) -> Result<RecordBatch, FlightError> {
    let bad = |message: String| FlightError::IngestBadBatch {
        table: table.name().to_string(),
        message,
    };
    let schema = table.schema();
    for field in batch.schema().fields() {
        if schema.field_with_name(field.name()).is_err() {
            return Err(bad(format!("unknown column {:?}", field.name())));
        }
    }
    let rows = batch.num_rows();
    let cast_options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => column.clone(),
            // An instant without a zone could be local time anywhere; reading
            // it as UTC would shift every row by the sender's offset.
            Some(column) if matches!(column.data_type(), DataType::Timestamp(_, None)) => {
                return Err(bad(format!(
                    "column {}: {} has no time zone, so the instant is ambiguous; send \
                     UTC timestamps (pyarrow: pa.timestamp(\"us\", tz=\"UTC\"); pandas: \
                     .dt.tz_localize(\"UTC\"))",
                    field.name(),
                    column.data_type()
                )));
            }
            Some(column) => {
                cast_with_options(column, field.data_type(), &cast_options).map_err(|e| {
                    bad(format!(
                        "column {}: cannot read {} as {}: {e}",
                        field.name(),
                        column.data_type(),
                        field.data_type()
                    ))
                })?
            }
            None => match field.name().as_str() {
                "event_id" => Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|_| uuid::Uuid::new_v4().to_string()),
                )) as ArrayRef,
                "level" => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    "INFO", rows,
                ))),
                "schema_version" => Arc::new(Int32Array::from(vec![SCHEMA_VERSION; rows])),
                _ if field.is_nullable() => new_null_array(field.data_type(), rows),
                name => return Err(bad(format!("missing required column {name:?}"))),
            },
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| bad(e.to_string()))
}

/// Reads every batch of the request, then submits all rows at once.
pub async fn ingest<S>(
    logger: &Logger,
    table: Table,
    batches: S,
    rows_max: usize,
) -> Result<usize, FlightError>
where
    S: Stream<Item = Result<RecordBatch, arrow_flight::error::FlightError>> + Unpin,
{
    let mut batches = batches;
    let mut events: Vec<Event> = Vec::new();
    while let Some(batch) = batches
        .try_next()
        .await
        .map_err(|e| FlightError::IngestBadBatch {
            table: table.name().to_string(),
            message: format!("reading the uploaded batches: {e}"),
        })?
    {
        if events.len() + batch.num_rows() > rows_max {
            return Err(FlightError::IngestTooLarge { max: rows_max });
        }
        let offset = events.len();
        let conformed = conform(table, &batch)?;
        let rows = table
            .read_events(&conformed)
            .map_err(|e| FlightError::IngestBadBatch {
                table: table.name().to_string(),
                message: format!("row {}: {}: {}", offset + e.row, e.field, e.message),
            })?;
        events.extend(rows);
    }
    logger
        .submit(events)
        .await
        .map_err(|source| FlightError::IngestRejected {
            table: table.name().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, TimestampNanosecondArray};

    fn market_batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn a_minimal_pandas_style_batch_is_conformed() {
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        let batch = market_batch(vec![
            (
                "ts",
                Arc::new(TimestampNanosecondArray::from(vec![now_ns, now_ns]).with_timezone("UTC")),
            ),
            (
                "symbol",
                Arc::new(StringArray::from(vec!["BTC-USD", "ETH-USD"])),
            ),
            ("price", Arc::new(Int64Array::from(vec![64_000, 3_000]))),
            ("spread_bps", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
            ("volume", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
            ("volatility", Arc::new(Float64Array::from(vec![0.1, 0.2]))),
            (
                "regime",
                Arc::new(StringArray::from(vec!["TREND", "RANGE"])),
            ),
        ]);
        let conformed = conform(Table::MarketContext, &batch).unwrap();
        assert_eq!(conformed.schema(), Table::MarketContext.schema());
        let events = Table::MarketContext.read_events(&conformed).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].header().symbol, "ETH-USD");
    }

    #[test]
    fn timestamps_need_a_zone_and_any_zone_is_read_as_its_instant() {
        let ts = |zone: Option<&str>| {
            let array = TimestampNanosecondArray::from(vec![1_764_633_600_000_000_000]);
            let array = match zone {
                Some(zone) => array.with_timezone(zone),
                None => array,
            };
            market_batch(vec![
                ("ts", Arc::new(array) as ArrayRef),
                ("symbol", Arc::new(StringArray::from(vec!["BTC-USD"]))),
                ("price", Arc::new(Float64Array::from(vec![1.0]))),
                ("spread_bps", Arc::new(Float64Array::from(vec![1.0]))),
                ("volume", Arc::new(Float64Array::from(vec![1.0]))),
                ("volatility", Arc::new(Float64Array::from(vec![0.1]))),
                ("regime", Arc::new(StringArray::from(vec!["TREND"]))),
            ])
        };
        let err = conform(Table::MarketContext, &ts(None)).unwrap_err();
        assert!(
            err.to_string().contains("column ts: ") && err.to_string().contains("has no time zone"),
            "{err}"
        );
        assert!(matches!(err, FlightError::IngestBadBatch { .. }));
        let utc = conform(Table::MarketContext, &ts(Some("UTC"))).unwrap();
        let paris = conform(Table::MarketContext, &ts(Some("+01:00"))).unwrap();
        // The same instant, whatever zone it was written in.
        assert_eq!(utc.column_by_name("ts"), paris.column_by_name("ts"));
    }

    #[test]
    fn unknown_and_missing_columns_are_named() {
        let batch = market_batch(vec![
            ("symbol", Arc::new(StringArray::from(vec!["BTC-USD"]))),
            ("prise", Arc::new(Float64Array::from(vec![1.0]))),
        ]);
        let err = conform(Table::MarketContext, &batch).unwrap_err();
        assert!(
            err.to_string().contains("unknown column \"prise\""),
            "{err}"
        );
        let batch = market_batch(vec![(
            "symbol",
            Arc::new(StringArray::from(vec!["BTC-USD"])),
        )]);
        let err = conform(Table::MarketContext, &batch).unwrap_err();
        assert!(
            err.to_string().contains("missing required column \"ts\""),
            "{err}"
        );
    }

    #[test]
    fn options_that_cannot_be_honoured_are_refused() {
        let mut cmd = CommandStatementIngest {
            table: "gate_decisions".into(),
            ..Default::default()
        };
        assert_eq!(target_table(&cmd).unwrap(), Table::GateDecision);
        cmd.table = "users".into();
        assert!(matches!(target_table(&cmd), Err(FlightError::NotFound(_))));
        cmd.table = "trades".into();
        cmd.schema = Some("hot".into());
        assert!(matches!(target_table(&cmd), Err(FlightError::Refused(_))));
        cmd.schema = None;
        cmd.temporary = true;
        assert!(matches!(
            target_table(&cmd),
            Err(FlightError::Unsupported(_))
        ));
    }
}
