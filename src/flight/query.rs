//! Running a statement for DoGet: plan, execute on the query runtime under the
//! limits, stream Flight data. Nothing is kept once the stream ends.
//!
//! Execution runs on its own Tokio runtime, apart from the threads that serve
//! gRPC, so a heavy query cannot starve the server's I/O. Batches cross over a
//! channel of eight, which keeps execution and encoding overlapped (two
//! streamed ~10% slower). When a client disconnects its stream is dropped,
//! the send fails, the DataFusion stream is dropped with it, and the query's
//! memory comes back.
//!
//! A client that stops reading without going away fills the channel (HTTP/2
//! flow control stops the encoder); past `result_stall_timeout` its query
//! stops and its slot is freed. The batches already in the channel stay with
//! the response until the client reads them and then the stall's error, or
//! goes away.
//!
//! How a query ended travels apart from its batches, on a oneshot sent once
//! its slot is free: a client that retries on the error is never refused, and
//! a stopped query can always say why, however full the channel.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use datafusion::dataframe::DataFrame;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::error::FlightError;
use super::handle::StatementHandle;
use crate::query::{QueryEngine, QueryError};

/// Limits on every query from the network. Keys of the `[flight]` section of
/// `quiver.toml`, flattened into [`FlightConfig`](super::FlightConfig); a
/// missing key keeps its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLimits {
    /// Queries executing at once; one more is refused with ResourceExhausted.
    /// Default 16.
    pub queries_max: usize,
    /// Longest a query may run, streaming included, a duration (`"10m"`).
    /// Default 10 min.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Longest planning a statement may take (GetFlightInfo, prepare, and
    /// DoGet before it executes), a duration (`"30s"`); past it
    /// DeadlineExceeded. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub plan_timeout: Duration,
    /// Longest a result may wait for a client that stopped reading, a
    /// duration (`"30s"`): past it the query stops, its slot is freed, and
    /// the stream ends with DeadlineExceeded. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub result_stall_timeout: Duration,
    /// Memory one query may hold, in bytes (all queries share the engine's
    /// pool too). Default 512 MiB.
    pub query_memory_bytes_max: usize,
    /// Most rows one result may send. Default 100 000 000.
    pub result_rows_max: u64,
    /// Bytes of Arrow data one result may send. Default 16 GiB.
    pub result_bytes_max: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            queries_max: 16,
            query_timeout: Duration::from_secs(600),
            plan_timeout: Duration::from_secs(30),
            result_stall_timeout: Duration::from_secs(30),
            query_memory_bytes_max: 512 << 20,
            result_rows_max: 100_000_000,
            result_bytes_max: 16 << 30,
        }
    }
}

pub type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// The runtime queries execute on. Dropped without blocking, since it may be
/// dropped from inside the server's own runtime.
pub struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        // Planning runs here too, and DataFusion plans recursively: the
        // stack of the server's own runtime (main.rs), not tokio's 2 MiB.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_stack_size(8 << 20)
            .thread_name("quiver-query")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> Result<&tokio::runtime::Handle, FlightError> {
        self.0
            .as_ref()
            .map(|r| r.handle())
            .ok_or_else(|| FlightError::Internal("the query runtime has stopped".into()))
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

pub struct Runner {
    engine: QueryEngine,
    limits: QueryLimits,
    permits: Arc<Semaphore>,
    runtime: QueryRuntime,
    stats: Arc<super::stats::QueryStats>,
}

impl Runner {
    pub fn new(engine: QueryEngine, limits: QueryLimits, runtime: QueryRuntime) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.queries_max.max(1))),
            engine,
            limits,
            runtime,
            stats: Arc::default(),
        }
    }

    pub fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    /// Counts and durations of the queries run so far.
    pub fn stats(&self) -> Arc<super::stats::QueryStats> {
        self.stats.clone()
    }

    /// Plans the statement and binds its parameters, if any.
    ///
    /// Planning is CPU work (parsing, analysis, optimizer passes) that cannot
    /// be preempted, so it runs on the query runtime and the gRPC threads stay
    /// free; its deadline is kept here, on the server's runtime, and a plan
    /// past it is aborted at its next yield.
    ///
    /// A statement that does not plan (bad SQL, too deep, past the deadline)
    /// counts as a failed query.
    pub async fn plan(&self, handle: &StatementHandle) -> Result<DataFrame, FlightError> {
        let started = std::time::Instant::now();
        let planned = self.plan_untimed(handle).await;
        if planned.is_err() {
            let took = started.elapsed();
            self.stats.record(super::stats::Outcome::Failed, Some(took));
        }
        planned
    }

    async fn plan_untimed(&self, handle: &StatementHandle) -> Result<DataFrame, FlightError> {
        let engine = self.engine.clone();
        let handle = handle.clone();
        let mut task = AbortOnDrop(Some(self.runtime.handle()?.spawn(async move {
            let df = engine.sql(&handle.sql).await.map_err(FlightError::Plan)?;
            match &handle.params {
                Some(params) => QueryEngine::bind(df, params).map_err(FlightError::Plan),
                None => Ok(df),
            }
        })));
        let timeout = self.limits.plan_timeout;
        match tokio::time::timeout(timeout, task.join()).await {
            Ok(Some(Ok(planned))) => planned,
            Ok(_) => Err(FlightError::Internal(
                "planning stopped unexpectedly".into(),
            )),
            Err(_) => Err(FlightError::PlanDeadline(timeout)),
        }
    }

    /// The result schema, without running anything.
    pub async fn schema(&self, handle: &StatementHandle) -> Result<Schema, FlightError> {
        Ok(self.plan(handle).await?.schema().as_arrow().clone())
    }

    /// Executes the statement and streams its result as Flight data.
    pub async fn stream(&self, handle: &StatementHandle) -> Result<FlightDataStream, FlightError> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            self.stats.record(super::stats::Outcome::Refused, None);
            FlightError::TooManyQueries {
                max: self.limits.queries_max,
            }
        })?;
        let started = std::time::Instant::now();
        let stats = self.stats.clone();
        let df = self.plan(handle).await?;
        // GetFlightInfo announced the logical plan's schema; the physical plan
        // can say less about nullability (a constant-folded function call is
        // a non-null literal), so batches are sent in the announced schema.
        let announced: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let runtime = self.runtime.handle()?;
        let (schema_tx, schema_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel::<RecordBatch>(8);
        let (outcome_tx, outcome_rx) = oneshot::channel::<Result<(), FlightError>>();
        let engine = self.engine.clone();
        let limits = self.limits.clone();
        // The deadline is also enforced here, on the server's own runtime: one
        // poll of a plan can compute for seconds (a large cross join), and a
        // timer on the query runtime would not fire until it returns.
        let deadline = tokio::time::Instant::now() + limits.query_timeout;
        let task = runtime.spawn(async move {
            // The query's slot: held while this task runs, so `queries_max`
            // counts queries computing, not responses.
            let permit = permit;
            let run = async {
                let mut stream = engine
                    .execute(df, limits.query_memory_bytes_max)
                    .await
                    .map_err(FlightError::Execute)?;
                let physical = stream.schema();
                let conform = physical != announced
                    && physical.fields().len() == announced.fields().len()
                    && physical
                        .fields()
                        .iter()
                        .zip(announced.fields())
                        .all(|(p, a)| {
                            p.data_type() == a.data_type() && (a.is_nullable() || !p.is_nullable())
                        });
                let schema = if conform { announced.clone() } else { physical };
                if schema_tx.send(schema.clone()).is_err() {
                    return Ok(());
                }
                let mut rows = 0u64;
                while let Some(batch) = stream.next().await {
                    let mut batch =
                        batch.map_err(|e| FlightError::Execute(QueryError::Execute(e)))?;
                    if conform {
                        batch = batch
                            .with_schema(schema.clone())
                            .map_err(|e| FlightError::Internal(format!("result schema: {e}")))?;
                    }
                    rows += batch.num_rows() as u64;
                    if rows > limits.result_rows_max {
                        return Err(FlightError::ResultTooLarge {
                            limit: format!("{} rows", limits.result_rows_max),
                        });
                    }
                    // The send waits while the client is not reading: the
                    // stall timeout bounds how long it holds the slot so.
                    let stall = limits.result_stall_timeout;
                    match tokio::time::timeout(stall, tx.send(batch)).await {
                        Ok(Ok(())) => {}
                        // The client went away; dropping `stream` cancels the query.
                        Ok(Err(_)) => return Ok(()),
                        Err(_) => return Err(FlightError::ResultStalled(stall)),
                    }
                }
                Ok(())
            };
            let outcome = tokio::time::timeout(limits.query_timeout, run)
                .await
                .unwrap_or(Err(FlightError::Deadline(limits.query_timeout)));
            // The slot is free before the outcome is told, so a retry on an
            // error is not refused.
            drop(permit);
            let counted = if outcome.is_ok() {
                super::stats::Outcome::Ok
            } else {
                super::stats::Outcome::Failed
            };
            stats.record(counted, Some(started.elapsed()));
            let _ = outcome_tx.send(outcome);
        });
        let mut task = AbortOnDrop(Some(task));
        let timeout = self.limits.query_timeout;
        let schema = match tokio::time::timeout_at(deadline, schema_rx).await {
            Ok(Ok(schema)) => schema,
            // The query ended before its first batch; its outcome says why.
            Ok(Err(_)) => {
                return Err(match outcome_rx.await {
                    Ok(Err(e)) => e,
                    _ => FlightError::Internal("the query ended before it started".into()),
                });
            }
            Err(_) => {
                task.stop().await;
                return Err(FlightError::Deadline(timeout));
            }
        };
        let batches = ReceiverStream::new(rx)
            .map(Ok)
            .chain(futures::stream::once(last_item(outcome_rx)).filter_map(std::future::ready))
            .map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(e.into())));
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches);
        Ok(limit(
            flight,
            task,
            deadline,
            timeout,
            self.limits.result_bytes_max,
        ))
    }
}

/// What follows the batches: nothing after a query that ended well, else
/// its error. A query stopped without an outcome (a panic) must not pass
/// for a complete result.
async fn last_item(
    outcome: oneshot::Receiver<Result<(), FlightError>>,
) -> Option<Result<RecordBatch, FlightError>> {
    match outcome.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(Err(e)),
        Err(_) => Some(Err(FlightError::Internal(
            "the query stopped without an outcome".into(),
        ))),
    }
}

/// Aborts a task on the query runtime (a query, a plan) when dropped (a
/// client gone, a limit hit), at its next yield.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    /// Waits for the task's end: its output, or why it has none.
    async fn join(&mut self) -> Option<Result<T, tokio::task::JoinError>> {
        match &mut self.0 {
            Some(handle) => Some(handle.await),
            None => None,
        }
    }

    /// Aborts the task and waits (a moment at most) until it has stopped and
    /// given back its slot, so the error that follows does not race a retry.
    /// A task stuck in one long poll keeps its slot until it yields.
    async fn stop(&mut self) {
        const STOP_WAIT: Duration = Duration::from_secs(1);
        if let Some(mut handle) = self.0.take() {
            handle.abort();
            let _ = tokio::time::timeout(STOP_WAIT, &mut handle).await;
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Ends the stream with DeadlineExceeded at the deadline, or with
/// ResourceExhausted once more than `bytes_max` bytes of Arrow data have gone
/// out. Before any error goes out (a limit's, the query's, the encoder's) the
/// query is stopped, so a client that retries on the error finds its slot
/// free.
fn limit<S>(
    flight: S,
    task: AbortOnDrop<()>,
    deadline: tokio::time::Instant,
    timeout: Duration,
    bytes_max: u64,
) -> FlightDataStream
where
    S: Stream<Item = Result<FlightData, arrow_flight::error::FlightError>> + Send + 'static,
{
    /// What the stream carries between items. One timer for the whole
    /// stream, not one per message: this is DoGet's hot path.
    struct Limited<S> {
        flight: Pin<Box<S>>,
        deadline: Pin<Box<tokio::time::Sleep>>,
        task: AbortOnDrop<()>,
        sent_bytes: u64,
        done: bool,
    }
    impl<S> Limited<S> {
        /// Stops the query, then lets the error go out.
        async fn fail(mut self, status: Status) -> Option<(Result<FlightData, Status>, Self)> {
            self.task.stop().await;
            Some((Err(status), self))
        }
    }
    let state = Limited {
        flight: Box::pin(flight),
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        task,
        sent_bytes: 0,
        done: false,
    };
    Box::pin(futures::stream::unfold(
        state,
        move |mut state| async move {
            if state.done {
                return None;
            }
            state.done = true; // unless an item goes out below
            let next = tokio::select! {
                biased;
                next = state.flight.next() => next?,
                _ = &mut state.deadline => {
                    return state.fail(FlightError::Deadline(timeout).into()).await;
                }
            };
            let data = match next {
                Ok(data) => data,
                // The query's own error comes once its task has given back its
                // slot, but the encoder's would come while the task still
                // computes: stop it either way.
                Err(e) => return state.fail(Status::from(e)).await,
            };
            state.sent_bytes += (data.data_body.len() + data.data_header.len()) as u64;
            if state.sent_bytes > bytes_max {
                let e = FlightError::ResultTooLarge {
                    limit: format!("{bytes_max} bytes"),
                };
                return state.fail(e.into()).await;
            }
            state.done = false;
            Some((Ok(data), state))
        },
    ))
}

/// Streams one small batch (metadata results).
pub fn batch_stream(batch: RecordBatch) -> FlightDataStream {
    let schema = batch.schema();
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Box::pin(flight)
}
