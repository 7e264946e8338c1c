//! Live tail: events streamed as they commit, over one long-lived DoGet that
//! any Flight client can read (`quiver tail`, pyarrow's `FlightClient.do_get`).
//!
//! # Asking
//!
//! The ticket is JSON, every field optional:
//! `{"tail": {"table": "signals", "where": "symbol = 'BTC-USD'", "from_seq": 120}}`.
//! Without `from_seq` the tail starts after the last durable WAL record.
//!
//! # What comes back
//!
//! One stream of one schema. Its first three columns say what a row is:
//!
//! - `_kind = 'event'`: a row of an event. Each WAL record (one table's batch,
//!   one sequence number) with rows that pass the filter comes as one batch,
//!   every row carrying the record's `_seq`.
//! - `_kind = 'heartbeat'`, once a second: `_seq` is the last sequence looked
//!   at (sent or filtered out).
//! - `_kind = 'gap'`: sequences `from..=to` were not sent; `_seq` is `to`
//!   and `_detail` says `{"from", "to", "reason"}`. The reason is
//!   `"slow reader"` (below) or `"not in the WAL"` (asked for records whose
//!   segments are gone).
//!
//! With a `table`, the table's columns follow (nullable: heartbeat and gap
//! rows have them null). Without, `table, event_id, ts, symbol, level` and
//! `row`, the whole event as JSON.
//!
//! **Resuming**: reconnect with `from_seq` = the last `_seq` seen + 1. A
//! record is one batch, sent whole or not at all, and the WAL holds its
//! sequence for good, so there is no gap and no duplicate across reconnects
//! (while the WAL still holds the records; older ones come back as a gap).
//!
//! # A slow reader
//!
//! Each tail buffers at most `flight.tail_buffer_bytes` of batches between
//! the WAL and the client. A record that does not fit is not queued: the tail
//! stops reading, waits for the client to drain half the buffer, sends one gap
//! row for everything it skipped and goes on live from the WAL's end
//! (CloudWatch Live Tail's rule: a tail shows what is happening now, and says
//! what it left out). The skipped records can be read again with `from_seq`.
//! The server's memory per tail is therefore bounded whatever the client does.
//!
//! # The filter
//!
//! `where` is a SQL boolean expression over the table's columns, or, without
//! a table, over `table, event_id, ts, symbol, level`. The query engine
//! compiles it once, under the depth limit of client SQL
//! ([`QueryEngine::compile_filter`]); `now()` is the time the tail started.
//!
//! Each tail reads the WAL on a thread of its own; `flight.tails_max` of them
//! run at once. A tail ends when the client goes away or the server stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array, new_null_array,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use datafusion::physical_expr::PhysicalExpr;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::error::FlightError;
use super::query::FlightDataStream;
use crate::event::Table;
use crate::query::QueryEngine;
use crate::store::wal::{Fetched, WalCursor, WalFeed, WalRecord};

/// How often a tail says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Most WAL records read at a time.
const FETCH_RECORDS: usize = 64;

/// What a client asks for; the ticket is `{"tail": TailRequest}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// A SQL boolean expression over the rows.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The first sequence to send; default the one after the durable end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TailTicket {
    tail: TailRequest,
}

impl TailRequest {
    /// The DoGet ticket that asks for this tail.
    pub fn ticket(&self) -> Vec<u8> {
        serde_json::to_vec(&TailTicket { tail: self.clone() }).unwrap_or_default()
    }

    /// The request in `ticket`, if it is a tail's: `None` for any other
    /// ticket (a Flight SQL ticket is protobuf, which never starts with `{`).
    pub fn from_ticket(ticket: &[u8]) -> Option<Result<Self, FlightError>> {
        let first = ticket.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        Some(
            serde_json::from_slice::<TailTicket>(ticket)
                .map(|t| t.tail)
                .map_err(|e| {
                    FlightError::BadRequest(format!(
                        "a tail ticket is {{\"tail\": {{\"table\": ..., \"where\": ..., \
                         \"from_seq\": ...}}}}: {e}"
                    ))
                }),
        )
    }
}

/// Limits of the live tails (keys of `[flight]`).
#[derive(Debug, Clone)]
pub struct TailLimits {
    /// Tails open at once.
    pub tails_max: usize,
    /// Bytes of batches one tail holds for a client that reads slowly.
    pub buffer_bytes: usize,
}

/// What the tails are doing, for `/metrics`.
#[derive(Debug, Default)]
pub struct TailStats {
    /// Tails open now.
    pub open: AtomicUsize,
    /// Bytes of batches queued for clients, every tail together.
    pub buffered_bytes: AtomicUsize,
    /// Event rows sent.
    pub events_sent: AtomicU64,
    /// Gap rows sent because a client read too slowly.
    pub slow_reader_gaps: AtomicU64,
}

/// Opens tails over one engine's WAL.
pub struct Tails {
    engine: QueryEngine,
    limits: TailLimits,
    stats: Arc<TailStats>,
    stopping: Arc<AtomicBool>,
}

impl Tails {
    pub fn new(engine: QueryEngine, limits: TailLimits) -> Self {
        Self {
            engine,
            limits,
            stats: Arc::default(),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn stats(&self) -> Arc<TailStats> {
        self.stats.clone()
    }

    /// Ends every tail (the server is stopping): each stream finishes
    /// cleanly within a heartbeat, and its client may resume elsewhere.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.engine.store().wal_feed().wake();
    }

    /// Starts the tail `request` asks for.
    pub fn start(&self, request: &TailRequest) -> Result<FlightDataStream, FlightError> {
        let shape = Shape::new(request.table.as_deref())?;
        let filter = match request.filter.as_deref().map(str::trim) {
            Some(sql) if !sql.is_empty() => Some(
                self.engine
                    .compile_filter(sql, &shape.filter_schema())
                    .map_err(FlightError::Plan)?,
            ),
            _ => None,
        };
        let slot = Slot::take(&self.stats, self.limits.tails_max)?;
        let feed = self.engine.store().wal_feed().clone();
        let next = request
            .from_seq
            .unwrap_or_else(|| feed.durable_seq() + 1)
            .max(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let schema = shape.schema.clone();
        let producer = Producer {
            cursor: feed.cursor(next),
            feed,
            shape,
            filter,
            out: Outbox {
                tx,
                buffered: Arc::new(AtomicUsize::new(0)),
                bytes_max: self.limits.buffer_bytes.max(1),
                stats: self.stats.clone(),
            },
            stopping: self.stopping.clone(),
            _slot: slot,
        };
        std::thread::Builder::new()
            .name("quiver-tail".into())
            .spawn(move || producer.run())
            .map_err(|e| FlightError::Internal(format!("starting a tail's thread: {e}")))?;
        let batches = futures::stream::unfold(rx, |mut rx| async move {
            let item = rx.recv().await?;
            Some((item, rx))
        })
        .map(|item| {
            item.map(Queued::take)
                .map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(Status::from(e))))
        });
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Box::pin(flight))
    }
}

/// One of `tails_max` places, given back when the tail's thread ends.
struct Slot(Arc<TailStats>);

impl Slot {
    fn take(stats: &Arc<TailStats>, max: usize) -> Result<Self, FlightError> {
        let taken = stats
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Slot(stats.clone())),
            Err(_) => Err(FlightError::TooManyTails { max }),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The stream's schema, and how a WAL record becomes its rows.
struct Shape {
    /// `None`: every table, in the envelope with `row` as JSON.
    table: Option<Table>,
    schema: SchemaRef,
}

const KIND: &str = "_kind";
const SEQ: &str = "_seq";
const DETAIL: &str = "_detail";

fn envelope() -> Vec<Field> {
    vec![
        Field::new(KIND, DataType::Utf8, false),
        Field::new(SEQ, DataType::UInt64, false),
        Field::new(DETAIL, DataType::Utf8, true),
    ]
}

/// The columns every table shares, and the filter sees without a table.
fn header_fields() -> Vec<Field> {
    let header = Table::MarketContext.schema();
    let mut fields = vec![Field::new("table", DataType::Utf8, false)];
    for name in ["event_id", "ts", "symbol", "level"] {
        if let Ok(field) = header.field_with_name(name) {
            fields.push(field.clone());
        }
    }
    fields
}

impl Shape {
    fn new(table: Option<&str>) -> Result<Self, FlightError> {
        let table = match table {
            None => None,
            Some(name) => Some(Table::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
                FlightError::BadRequest(format!(
                    "tail: no event table {name:?}; the tables are {}",
                    names.join(", ")
                ))
            })?),
        };
        let mut fields = envelope();
        match table {
            Some(t) => fields.extend(
                t.schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true)),
            ),
            None => {
                fields.extend(header_fields().into_iter().map(|f| f.with_nullable(true)));
                fields.push(Field::new("row", DataType::Utf8, true));
            }
        }
        Ok(Self {
            table,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// What a filter is compiled against.
    fn filter_schema(&self) -> SchemaRef {
        match self.table {
            Some(t) => t.schema(),
            None => Arc::new(Schema::new(header_fields())),
        }
    }

    /// The columns a filter reads from `record`.
    fn filter_input(&self, record: &WalRecord) -> Result<RecordBatch, FlightError> {
        match self.table {
            Some(_) => Ok(record.batch.clone()),
            None => {
                let schema = self.filter_schema();
                let rows = record.batch.num_rows();
                let mut columns: Vec<ArrayRef> =
                    vec![Arc::new(StringArray::from(vec![record.table.name(); rows]))];
                for field in schema.fields().iter().skip(1) {
                    columns.push(column_or_null(&record.batch, field, rows));
                }
                RecordBatch::try_new(schema, columns).map_err(internal)
            }
        }
    }

    /// Whether a record of `table` belongs in the stream at all.
    fn wants(&self, table: Table) -> bool {
        self.table.is_none_or(|t| t == table)
    }

    /// The rows of `record` (already filtered, in `input`'s row order, with
    /// the filter's own columns `header`), as the stream's batch.
    fn events(
        &self,
        seq: u64,
        table: Table,
        batch: &RecordBatch,
        header: &RecordBatch,
    ) -> Result<RecordBatch, FlightError> {
        let rows = batch.num_rows();
        let mut columns = envelope_columns("event", seq, None, rows);
        match self.table {
            Some(_) => {
                for field in self.schema.fields().iter().skip(3) {
                    columns.push(column_or_null(batch, field, rows));
                }
            }
            None => {
                for field in self.schema.fields().iter().skip(3) {
                    if field.name() == "row" {
                        columns.push(Arc::new(StringArray::from(rows_as_json(batch)?)));
                    } else if field.name() == "table" {
                        columns.push(Arc::new(StringArray::from(vec![table.name(); rows])));
                    } else {
                        columns.push(column_or_null(header, field, rows));
                    }
                }
            }
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(internal)
    }

    /// A heartbeat or gap row: the envelope, everything else null.
    fn marker(&self, kind: &str, seq: u64, detail: Option<String>) -> RecordBatch {
        let mut columns = envelope_columns(kind, seq, detail, 1);
        for field in self.schema.fields().iter().skip(3) {
            columns.push(new_null_array(field.data_type(), 1));
        }
        // Every column has one row and the schema's type.
        RecordBatch::try_new(self.schema.clone(), columns)
            .unwrap_or_else(|_| RecordBatch::new_empty(self.schema.clone()))
    }

    fn gap(&self, from: u64, to: u64, reason: &str) -> RecordBatch {
        let detail = serde_json::json!({"from": from, "to": to, "reason": reason}).to_string();
        self.marker("gap", to, Some(detail))
    }
}

fn envelope_columns(kind: &str, seq: u64, detail: Option<String>, rows: usize) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from(vec![kind; rows])),
        Arc::new(UInt64Array::from(vec![seq; rows])),
        Arc::new(StringArray::from(vec![detail; rows])),
    ]
}

/// `field`'s column of `batch`, or nulls where the batch lacks it.
fn column_or_null(batch: &RecordBatch, field: &Field, rows: usize) -> ArrayRef {
    match batch.column_by_name(field.name()) {
        Some(c) if c.data_type() == field.data_type() => c.clone(),
        _ => new_null_array(field.data_type(), rows),
    }
}

/// Each row of `batch` as a JSON object.
fn rows_as_json(batch: &RecordBatch) -> Result<Vec<String>, FlightError> {
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(batch).map_err(internal)?;
    writer.finish().map_err(internal)?;
    let text = String::from_utf8(writer.into_inner()).map_err(internal)?;
    Ok(text.lines().map(str::to_owned).collect())
}

fn internal(e: impl std::fmt::Display) -> FlightError {
    FlightError::Internal(format!("tail: {e}"))
}

/// A batch on its way to the client, counted in its tail's buffer and the
/// stats until it leaves the queue (taken by the stream, or dropped with
/// the queue when the client goes away).
struct Queued {
    batch: RecordBatch,
    size: usize,
    buffered: Arc<AtomicUsize>,
    stats: Arc<TailStats>,
}

impl Queued {
    fn take(self) -> RecordBatch {
        self.batch.clone()
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.buffered.fetch_sub(self.size, Ordering::Relaxed);
        self.stats
            .buffered_bytes
            .fetch_sub(self.size, Ordering::Relaxed);
    }
}

/// The batches on their way to the client, bounded in bytes.
struct Outbox {
    tx: mpsc::UnboundedSender<Result<Queued, FlightError>>,
    /// Bytes queued and not yet taken by the stream.
    buffered: Arc<AtomicUsize>,
    bytes_max: usize,
    stats: Arc<TailStats>,
}

impl Outbox {
    /// Queues `batch` if it fits (one batch always fits an empty buffer).
    fn try_send(&self, batch: RecordBatch) -> bool {
        let size = batch.get_array_memory_size();
        let queued = self.buffered.load(Ordering::Relaxed);
        if queued > 0 && queued + size > self.bytes_max {
            return false;
        }
        self.buffered.fetch_add(size, Ordering::Relaxed);
        self.stats.buffered_bytes.fetch_add(size, Ordering::Relaxed);
        let events = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .is_some_and(|k| !k.is_empty() && k.value(0) == "event");
        let rows = batch.num_rows() as u64;
        let queued = Queued {
            batch,
            size,
            buffered: self.buffered.clone(),
            stats: self.stats.clone(),
        };
        let sent = self.tx.send(Ok(queued)).is_ok();
        if sent && events {
            self.stats.events_sent.fetch_add(rows, Ordering::Relaxed);
        }
        sent
    }

    /// Whether the client has drained the buffer to half.
    fn has_room(&self) -> bool {
        self.buffered.load(Ordering::Relaxed) <= self.bytes_max / 2
    }

    fn closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// One tail's reader: follows the WAL, filters, and fills the outbox.
struct Producer {
    feed: Arc<WalFeed>,
    cursor: WalCursor,
    shape: Shape,
    filter: Option<Arc<dyn PhysicalExpr>>,
    out: Outbox,
    stopping: Arc<AtomicBool>,
    _slot: Slot,
}

/// Where the producer is.
enum State {
    Live,
    /// Records from this sequence on were not sent: the client is behind.
    Skipping {
        from: u64,
    },
}

impl Producer {
    fn run(mut self) {
        if let Err(e) = self.follow() {
            let _ = self.out.tx.send(Err(e));
        }
    }

    fn follow(&mut self) -> Result<(), FlightError> {
        let mut state = State::Live;
        let mut next_heartbeat = Instant::now() + HEARTBEAT;
        loop {
            if self.out.closed() || self.stopping.load(Ordering::Relaxed) {
                return Ok(());
            }
            if let State::Skipping { from } = state {
                if !self.out.has_room() {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let to = self.feed.durable_seq();
                self.cursor = self.feed.cursor(to + 1);
                self.out.try_send(self.shape.gap(from, to, "slow reader"));
                self.out
                    .stats
                    .slow_reader_gaps
                    .fetch_add(1, Ordering::Relaxed);
                state = State::Live;
                next_heartbeat = Instant::now() + HEARTBEAT;
                continue;
            }
            let wait = next_heartbeat.saturating_duration_since(Instant::now());
            let fetched = self
                .cursor
                .fetch(FETCH_RECORDS, wait)
                .map_err(|e| FlightError::Internal(format!("tail: reading the WAL: {e}")))?;
            match fetched {
                Fetched::Records(records) => {
                    for record in &records {
                        if let Some(batch) = self.render(record)?
                            && !self.out.try_send(batch)
                        {
                            state = State::Skipping { from: record.seq };
                            break;
                        }
                    }
                }
                Fetched::Gap { from, to } => {
                    if !self
                        .out
                        .try_send(self.shape.gap(from, to, "not in the WAL"))
                    {
                        state = State::Skipping { from };
                    }
                }
                Fetched::Idle => {}
                Fetched::Closed => return Ok(()),
            }
            if matches!(state, State::Live) && Instant::now() >= next_heartbeat {
                let last = self.cursor.next_seq().saturating_sub(1);
                // A full buffer has data for the client already; skip the beat.
                self.out
                    .try_send(self.shape.marker("heartbeat", last, None));
                next_heartbeat = Instant::now() + HEARTBEAT;
            }
        }
    }

    /// The stream's batch for `record`: `None` when no row of it is wanted.
    fn render(&self, record: &WalRecord) -> Result<Option<RecordBatch>, FlightError> {
        if !self.shape.wants(record.table) || record.batch.num_rows() == 0 {
            return Ok(None);
        }
        let input = self.shape.filter_input(record)?;
        let (batch, header) = match &self.filter {
            None => (record.batch.clone(), input),
            Some(filter) => {
                let mask = filter
                    .evaluate(&input)
                    .and_then(|v| v.into_array(input.num_rows()))
                    .map_err(|e| FlightError::BadRequest(format!("tail: the filter: {e}")))?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| internal("the filter gave no booleans"))?;
                (
                    filter_record_batch(&record.batch, mask).map_err(internal)?,
                    filter_record_batch(&input, mask).map_err(internal)?,
                )
            }
        };
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        self.shape
            .events(record.seq, record.table, &batch, &header)
            .map(Some)
    }
}

/// The service the server runs: `S` (Flight SQL), with tail tickets taken
/// out of DoGet first. Flight SQL reads every ticket as protobuf and has no
/// hook for one that is not, so the tail sits in front of it.
pub struct WithTails<S> {
    pub inner: S,
    pub tails: Arc<Tails>,
}

#[tonic::async_trait]
impl<S: FlightService> FlightService for WithTails<S> {
    type HandshakeStream = S::HandshakeStream;
    type ListFlightsStream = S::ListFlightsStream;
    type DoGetStream = FlightDataStream;
    type DoPutStream = S::DoPutStream;
    type DoActionStream = S::DoActionStream;
    type ListActionsStream = S::ListActionsStream;
    type DoExchangeStream = S::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.inner.handshake(request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.inner.list_flights(request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.inner.get_flight_info(request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.inner.poll_flight_info(request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.inner.get_schema(request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        match TailRequest::from_ticket(&request.get_ref().ticket) {
            Some(tail) => Ok(Response::new(self.tails.start(&tail?)?)),
            None => {
                let inner = self.inner.do_get(request).await?;
                Ok(inner.map(|s| Box::pin(s) as FlightDataStream))
            }
        }
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.inner.do_put(request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.inner.do_action(request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.inner.list_actions(request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.inner.do_exchange(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::HEADER_COLUMNS;

    #[test]
    fn a_tail_ticket_is_json_and_others_are_not_tails() {
        let request = TailRequest {
            table: Some("signals".into()),
            filter: Some("symbol = 'BTC-USD'".into()),
            from_seq: Some(7),
        };
        let ticket = request.ticket();
        assert!(ticket.starts_with(b"{\"tail\""));
        assert_eq!(
            TailRequest::from_ticket(&ticket).map(|r| r.ok()),
            Some(Some(request))
        );
        // A Flight SQL ticket (a protobuf Any) starts with field 1's tag.
        assert!(TailRequest::from_ticket(b"\x0a\x05hello").is_none());
        assert!(TailRequest::from_ticket(b"").is_none());
        let bad = TailRequest::from_ticket(b"{\"tail\": {\"tabel\": \"x\"}}");
        let message = bad.and_then(|r| r.err()).map(|e| e.to_string());
        assert!(message.is_some_and(|m| m.contains("tabel")));
        assert!(TailRequest::from_ticket(b" {not json").is_some_and(|r| r.is_err()));
    }

    #[test]
    fn an_unknown_table_names_the_tables() {
        let Err(e) = Shape::new(Some("trade")) else {
            panic!("a bad table name was accepted");
        };
        let text = e.to_string();
        assert!(
            text.contains("\"trade\"") && text.contains("trades"),
            "{text}"
        );
    }

    #[test]
    fn markers_fill_every_column_with_null_but_the_envelope() {
        for table in [None, Some("signals")] {
            let shape = Shape::new(table).unwrap();
            let gap = shape.gap(3, 9, "slow reader");
            assert_eq!(gap.num_rows(), 1);
            assert_eq!(gap.schema(), shape.schema);
            let seq = gap
                .column(1)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .unwrap();
            assert_eq!(seq.value(0), 9);
            assert!(gap.columns()[3..].iter().all(|c| c.is_null(0)));
        }
    }

    #[test]
    fn the_outbox_refuses_past_its_bytes_but_always_takes_one() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let shape = Shape::new(None).unwrap();
        let one = shape.marker("heartbeat", 1, None);
        let out = Outbox {
            tx,
            buffered: Arc::new(AtomicUsize::new(0)),
            bytes_max: 1,
            stats: Arc::default(),
        };
        assert!(out.try_send(one.clone()), "an empty buffer takes a batch");
        assert!(!out.try_send(one), "a full one does not");
        assert!(!out.has_room());
    }

    #[test]
    fn header_columns_are_in_every_table() {
        for table in Table::ALL {
            let schema = table.schema();
            for name in HEADER_COLUMNS {
                assert!(schema.field_with_name(name).is_ok(), "{table:?} {name}");
            }
        }
    }
}
