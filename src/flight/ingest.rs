//! Bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`) into the event
//! tables, through the logger's validation and durability.
//!
//! **Streamed, batch by batch.** Each uploaded batch is conformed to the
//! table, validated and handed to the logger's ingest lane as it arrives, so a
//! request holds one batch in memory whatever its size (bounded in bytes and
//! rows per request, see [`super::upload`]). A batch with a bad row is refused
//! whole, with the row (counted from 0 over the request) and the field; the
//! batches before it are stored.
//!
//! **Idempotent by `event_id`** ([`super::dedup`]): rows already stored are
//! counted, not stored again, so a client resends a request that failed, or
//! whose answer it lost, as it was. The answer (the row count) counts every
//! row of the request and comes once its rows are durable in the WAL and
//! visible to queries (after 10 s of waiting, durability alone).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray, new_null_array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::DataType;
use arrow::util::display::FormatOptions;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use futures::{Stream, TryStreamExt};

use super::dedup::{self, Ledger};
use super::error::FlightError;
use crate::event::{SCHEMA_VERSION, Table};
use crate::ingest::{Logger, SubmitError, summarize_invalid};
use crate::query::{CATALOG, QueryEngine};

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
/// a timestamp without a zone is refused), fills the columns a client may
/// leave out (`level` INFO, `schema_version` the current one, nullable columns
/// NULL, then `event_id` a UUID derived from the row, [`dedup::content_ids`])
/// and refuses unknown columns, so a misspelt column cannot silently lose its
/// values.
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
    let mut columns: Vec<Option<ArrayRef>> = Vec::with_capacity(schema.fields().len());
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
                // Derived from the other columns once they are all conformed.
                "event_id" => {
                    columns.push(None);
                    continue;
                }
                "level" => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    "INFO", rows,
                ))) as ArrayRef,
                "schema_version" => Arc::new(Int32Array::from(vec![SCHEMA_VERSION; rows])),
                _ if field.is_nullable() => new_null_array(field.data_type(), rows),
                name => return Err(bad(format!("missing required column {name:?}"))),
            },
        };
        columns.push(Some(column));
    }
    if let Some(slot) = columns.iter().position(Option::is_none) {
        let content: Vec<ArrayRef> = columns.iter().flatten().cloned().collect();
        let ids = dedup::content_ids(table, &content, rows)
            .map_err(|e| bad(format!("deriving event ids: {e}")))?;
        columns[slot] = Some(ids);
    }
    RecordBatch::try_new(schema, columns.into_iter().flatten().collect())
        .map_err(|e| bad(e.to_string()))
}

/// What an ingest needs from the server (cheap clones of it).
#[derive(Clone)]
pub struct Ingest {
    pub logger: Logger,
    pub engine: QueryEngine,
    pub ledger: Arc<Ledger>,
    pub rows_max: usize,
}

/// The outcome of a request: every row is stored, some were already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Rows of the request, stored by it or before it.
    pub rows: usize,
    /// Rows that were stored before (resent), or repeated within it.
    pub already_stored: usize,
}

/// Reads the request batch by batch, storing each batch's new rows, and
/// returns once all of them are durable.
pub async fn ingest<S>(ctx: &Ingest, table: Table, batches: S) -> Result<Ingested, FlightError>
where
    S: Stream<Item = Result<RecordBatch, arrow_flight::error::FlightError>> + Unpin,
{
    let mut batches = batches;
    let mut done = Ingested {
        rows: 0,
        already_stored: 0,
    };
    while let Some(batch) = batches
        .try_next()
        .await
        .map_err(|e| super::upload::decode_error(&format!("ingest into {}", table.name()), e))?
    {
        if done.rows + batch.num_rows() > ctx.rows_max {
            return Err(FlightError::IngestTooLarge { max: ctx.rows_max });
        }
        // Its own task: a client that goes away mid-batch drops this
        // handler, never a batch half done (its ids claimed, its rows not
        // queued, so that a resend would count them as stored).
        let batch_rows = batch.num_rows();
        let task = tokio::spawn(store_batch(ctx.clone(), table, batch, done.rows));
        let new = task
            .await
            .map_err(|e| FlightError::Internal(format!("ingest: storing a batch: {e}")))??;
        done.already_stored += batch_rows - new;
        done.rows += batch_rows;
    }
    ctx.logger
        .flush()
        .await
        .map_err(|e| FlightError::IngestRejected {
            table: table.name().to_string(),
            source: SubmitError::Flush(e),
        })?;
    Ok(done)
}

/// Conforms, validates and dedupes one batch (its first row is row `offset`
/// of the request), queues its new rows and returns how many there were.
async fn store_batch(
    ctx: Ingest,
    table: Table,
    batch: RecordBatch,
    offset: usize,
) -> Result<usize, FlightError> {
    let rejected = |source| FlightError::IngestRejected {
        table: table.name().to_string(),
        source,
    };
    let conformed = conform(table, &batch)?;
    let events = table
        .read_events(&conformed)
        .map_err(|e| FlightError::IngestBadBatch {
            table: table.name().to_string(),
            message: format!("row {}: {}: {}", offset + e.row, e.field, e.message),
        })?;
    let mut events = ctx.logger.validate(events).map_err(|e| match e {
        SubmitError::Invalid(rows) => {
            let rows: Vec<_> = rows.into_iter().map(|(r, e)| (offset + r, e)).collect();
            FlightError::IngestBadBatch {
                table: table.name().to_string(),
                message: invalid_rows_message(&rows, offset),
            }
        }
        other => rejected(other),
    })?;
    let ids = conformed
        .column_by_name("event_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| FlightError::Internal("ingest: event_id is not text".into()))?;
    let keys: Vec<dedup::Key> = ids
        .iter()
        .map(|id| dedup::key(table, id.unwrap_or("")))
        .collect();
    let claimed = ctx.ledger.claim(&keys);
    let stored = match stored_before(&ctx, table, &conformed, ids, &claimed).await {
        Ok(stored) => stored,
        Err(e) => {
            ctx.ledger.release(claimed_keys(&keys, &claimed));
            return Err(e);
        }
    };
    let keep: Vec<bool> = (0..keys.len()).map(|i| claimed[i] && !stored[i]).collect();
    events.retain(&keep);
    let new = events.len();
    if let Err(e) = ctx.logger.ingest(events).await {
        ctx.ledger.release(claimed_keys(&keys, &keep));
        return Err(rejected(e));
    }
    Ok(new)
}

fn claimed_keys<'k>(
    keys: &'k [dedup::Key],
    flags: &'k [bool],
) -> impl Iterator<Item = dedup::Key> + 'k {
    keys.iter().zip(flags).filter(|(_, f)| **f).map(|(k, _)| *k)
}

/// Which rows, of those this request claimed, the stored tables hold already
/// (stored before the ledger's window, or before a restart).
async fn stored_before(
    ctx: &Ingest,
    table: Table,
    conformed: &RecordBatch,
    ids: &StringArray,
    claimed: &[bool],
) -> Result<Vec<bool>, FlightError> {
    let mut stored = vec![false; claimed.len()];
    if !claimed.contains(&true) {
        return Ok(stored);
    }
    let ts = conformed
        .column_by_name("ts")
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .ok_or_else(|| FlightError::Internal("ingest: ts is not in microseconds".into()))?;
    let (Some(lo), Some(hi)) = (arrow::compute::min(ts), arrow::compute::max(ts)) else {
        return Ok(stored);
    };
    let candidates: ArrayRef = Arc::new(
        arrow::compute::filter(ids, &arrow::array::BooleanArray::from(claimed.to_vec()))
            .map_err(|e| FlightError::Internal(format!("ingest: {e}")))?,
    );
    let found = ctx
        .engine
        .stored_event_ids(table, candidates, lo, hi)
        .await
        .map_err(|e| FlightError::Internal(format!("ingest: looking up stored event ids: {e}")))?;
    if found.is_empty() {
        return Ok(stored);
    }
    for (i, id) in ids.iter().enumerate() {
        stored[i] = claimed[i] && id.is_some_and(|id| found.contains(id));
    }
    Ok(stored)
}

/// The message of a batch refused for invalid rows: which rows, and what of
/// the request is stored.
fn invalid_rows_message(rows: &[(usize, crate::event::ValidationError)], offset: usize) -> String {
    let kept = if offset == 0 {
        "nothing was stored".to_string()
    } else {
        format!(
            "rows before {offset} are stored; resend the request corrected (stored rows are \
             counted, not stored again)"
        )
    };
    format!(
        "{} invalid row(s), {kept}; {}",
        rows.len(),
        summarize_invalid(rows)
    )
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
