//! Running a statement for DoGet: plan, execute on the query runtime under the
//! limits, stream Flight data. Nothing is kept once the stream ends.
//!
//! Execution runs on its own Tokio runtime, apart from the threads that serve
//! gRPC, so a heavy query cannot starve the server's I/O. Batches cross over a
//! channel of eight, which keeps execution and encoding overlapped (two
//! streamed ~10% slower). When a client disconnects its stream is dropped,
//! the send fails, the DataFusion stream is dropped with it, and the query's
//! memory comes back.

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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("quiver-query")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(|r| r.handle())
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
}

impl Runner {
    pub fn new(engine: QueryEngine, limits: QueryLimits, runtime: QueryRuntime) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.queries_max.max(1))),
            engine,
            limits,
            runtime,
        }
    }

    pub fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    /// Plans the statement and binds its parameters, if any.
    pub async fn plan(&self, handle: &StatementHandle) -> Result<DataFrame, FlightError> {
        let df = self
            .engine
            .sql(&handle.sql)
            .await
            .map_err(FlightError::Plan)?;
        match &handle.params {
            Some(params) => QueryEngine::bind(df, params).map_err(FlightError::Plan),
            None => Ok(df),
        }
    }

    /// The result schema, without running anything.
    pub async fn schema(&self, handle: &StatementHandle) -> Result<Schema, FlightError> {
        Ok(self.plan(handle).await?.schema().as_arrow().clone())
    }

    /// Executes the statement and streams its result as Flight data.
    pub async fn stream(&self, handle: &StatementHandle) -> Result<FlightDataStream, FlightError> {
        let permit =
            self.permits
                .clone()
                .try_acquire_owned()
                .map_err(|_| FlightError::TooManyQueries {
                    max: self.limits.queries_max,
                })?;
        let df = self.plan(handle).await?;
        // GetFlightInfo announced the logical plan's schema; the physical plan
        // can say less about nullability (a constant-folded function call is
        // a non-null literal), so batches are sent in the announced schema.
        let announced: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let runtime = self
            .runtime
            .handle()
            .ok_or_else(|| FlightError::Internal("the query runtime has stopped".into()))?;
        let (schema_tx, schema_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel::<Result<RecordBatch, FlightError>>(8);
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
                    if tx.send(Ok(batch)).await.is_err() {
                        // The client went away; dropping `stream` cancels the query.
                        return Ok(());
                    }
                }
                Ok(())
            };
            let outcome = tokio::time::timeout(limits.query_timeout, run)
                .await
                .unwrap_or(Err(FlightError::Deadline(limits.query_timeout)));
            // The slot is free before the error reaches the client, so a
            // retry on it is not refused.
            drop(permit);
            if let Err(e) = outcome {
                let _ = tx.send(Err(e)).await;
            }
        });
        let mut task = AbortOnDrop(Some(task));
        let timeout = self.limits.query_timeout;
        let mut rx = ReceiverStream::new(rx);
        let schema = match tokio::time::timeout_at(deadline, schema_rx).await {
            Ok(Ok(schema)) => schema,
            Ok(Err(_)) => {
                return Err(match rx.next().await {
                    Some(Err(e)) => e,
                    _ => FlightError::Internal("the query ended before it started".into()),
                });
            }
            Err(_) => {
                task.stop().await;
                return Err(FlightError::Deadline(timeout));
            }
        };
        let batches = rx.map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(e.into())));
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

/// Aborts the query's task when the response stream is dropped (a client
/// gone, a limit hit), at its next yield.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
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

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Ends the stream with DeadlineExceeded at the deadline, or with
/// ResourceExhausted once more than `bytes_max` bytes of Arrow data have gone
/// out. Before a limit's error goes out the query is stopped, so a client
/// that retries on the error finds its slot free.
fn limit<S>(
    flight: S,
    task: AbortOnDrop,
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
        task: AbortOnDrop,
        sent_bytes: u64,
        done: bool,
    }
    impl<S> Limited<S> {
        /// Stops the query, then lets its error go out.
        async fn fail(mut self, e: FlightError) -> Option<(Result<FlightData, Status>, Self)> {
            self.task.stop().await;
            Some((Err(Status::from(e)), self))
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
                _ = &mut state.deadline => return state.fail(FlightError::Deadline(timeout)).await,
            };
            let data = match next {
                Ok(data) => data,
                // The query's own error: its task has given back its slot.
                Err(e) => return Some((Err(Status::from(e)), state)),
            };
            state.sent_bytes += (data.data_body.len() + data.data_header.len()) as u64;
            if state.sent_bytes > bytes_max {
                return state
                    .fail(FlightError::ResultTooLarge {
                        limit: format!("{bytes_max} bytes"),
                    })
                    .await;
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
