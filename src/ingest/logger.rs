//! [`Logger`]: the non-blocking front door, and the writer thread behind it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use crossbeam_queue::{ArrayQueue, SegQueue};
use tokio::sync::watch;

use super::stats::{Counters, LoggerStats};
use super::{BatchSink, SinkError};
use crate::event::{Event, EventBuffers, Level, Table, Ts, ValidationError, ValidationLimits};

/// How the logger queues and batches. See the module docs for the tier rules.
#[derive(Debug, Clone)]
pub struct LoggerConfig {
    /// Events the queue holds (CRITICAL overflow aside).
    pub queue_capacity: usize,
    /// Most events in one writer batch (over all tables).
    pub batch_rows_max: usize,
    /// Longest an accepted event waits before its batch is made durable.
    pub flush_interval: Duration,
    /// Fill at which DEBUG events are dropped.
    pub debug_shed_fill: f64,
    /// Fill at which the kill switch trips.
    pub kill_switch_trip_fill: f64,
    /// Fill at or below which a tripped kill switch may re-arm.
    pub kill_switch_rearm_fill: f64,
    /// Least time a tripped kill switch stays tripped.
    pub kill_switch_rearm_hold: Duration,
    /// CRITICAL events the overflow lane holds when the queue is full. Reached
    /// only when the durability point itself has stalled (a full disk) for a
    /// long time; past it CRITICAL events are dropped as queue-full, counted.
    pub critical_overflow_max: usize,
    pub validation: ValidationLimits,
}

impl Default for LoggerConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            batch_rows_max: 5_000,
            flush_interval: Duration::from_secs(1),
            debug_shed_fill: 0.80,
            kill_switch_trip_fill: 0.95,
            kill_switch_rearm_fill: 0.50,
            kill_switch_rearm_hold: Duration::from_secs(1),
            critical_overflow_max: 1_000_000,
            validation: ValidationLimits::default(),
        }
    }
}

/// What `log()` did with an event. Returned at once.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum LogOutcome {
    /// Queued; durable within the flush interval (or after `flush()`).
    Accepted,
    Dropped(DropReason),
}

impl LogOutcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, LogOutcome::Accepted)
    }
}

/// Why an event was not accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum DropReason {
    /// The event broke a validation rule; it names the field.
    Invalid(Box<ValidationError>),
    /// DEBUG event while the queue was at or above the shed fill.
    DebugShed,
    /// DEBUG or INFO event while the kill switch was tripped.
    KillSwitch,
    /// WARNING or ERROR event with the queue full.
    QueueFull,
    /// The logger is shut down.
    Closed,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Invalid(e) => write!(f, "invalid: {e}"),
            DropReason::DebugShed => write!(f, "DEBUG shed: queue above the shed fill"),
            DropReason::KillSwitch => write!(f, "kill switch tripped"),
            DropReason::QueueFull => write!(f, "queue full"),
            DropReason::Closed => write!(f, "logger closed"),
        }
    }
}

/// Why [`Logger::submit`] wrote nothing, or could not confirm durability.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Rows that broke a rule, by index in the submitted order; nothing was
    /// written.
    #[error("{} invalid row(s), nothing written; {}", .0.len(), summarize_invalid(.0))]
    Invalid(Vec<(usize, ValidationError)>),
    #[error("the logger is shut down")]
    Closed,
    #[error("making the rows durable")]
    Flush(#[source] LoggerError),
}

/// The first few invalid rows, for an error message that stays short.
fn summarize_invalid(rows: &[(usize, ValidationError)]) -> String {
    const SHOWN_MAX: usize = 3;
    let mut text = rows
        .iter()
        .take(SHOWN_MAX)
        .map(|(row, e)| format!("row {row}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    if rows.len() > SHOWN_MAX {
        text.push_str(&format!("; and {} more", rows.len() - SHOWN_MAX));
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    #[error("the writer thread has stopped")]
    WriterStopped,
    #[error("starting the writer thread")]
    SpawnWriter(#[source] std::io::Error),
    #[error("the writer thread panicked")]
    WriterPanicked,
    #[error("closing the sink")]
    CloseSink(#[source] SinkError),
}

struct Shared {
    queue: ArrayQueue<Event>,
    /// CRITICAL events that found the queue full, up to `overflow_max`.
    overflow: SegQueue<Event>,
    overflow_max: usize,
    debug_shed_len: usize,
    trip_len: usize,
    rearm_len: usize,
    rearm_hold_us: i64,
    limits: ValidationLimits,
    counters: Counters,
    kill_switch: AtomicBool,
    kill_switch_tripped_at_us: AtomicI64,
    flush_requested: AtomicU64,
    flush_done: watch::Sender<u64>,
    /// The writer gave up (at close, on a sink that kept failing): flushes
    /// still waiting get an error, never a false confirmation.
    writer_failed: AtomicBool,
    closed: AtomicBool,
    /// `log()`/`submit()` calls between their check of `closed` and their push:
    /// the writer's last drain waits for them (with `closed`, a Dekker pair, so
    /// no event is accepted after the writer's last look at the queue).
    in_flight: AtomicUsize,
    writer: Mutex<Option<JoinHandle<Result<(), SinkError>>>>,
}

impl Shared {
    fn now_us() -> i64 {
        Ts::now().0
    }

    fn trip(&self) {
        if !self.kill_switch.swap(true, Ordering::AcqRel) {
            self.kill_switch_tripped_at_us
                .store(Self::now_us(), Ordering::Release);
            self.counters
                .kill_switch_trips
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The re-arm rule: fill at or below the re-arm fill, and tripped long enough.
    fn maybe_rearm(&self, len: usize) {
        if len <= self.rearm_len
            && self.kill_switch.load(Ordering::Acquire)
            && Self::now_us() - self.kill_switch_tripped_at_us.load(Ordering::Acquire)
                >= self.rearm_hold_us
        {
            self.kill_switch.store(false, Ordering::Release);
        }
    }

    fn unpark_writer(&self) {
        if let Ok(guard) = self.writer.lock()
            && let Some(handle) = guard.as_ref()
        {
            handle.thread().unpark();
        }
    }
}

/// The bot's logger. Cheap to clone; all clones share one queue and writer.
///
/// ```no_run
/// # async fn demo(logger: quiver::ingest::Logger, event: quiver::event::Event) -> Result<(), Box<dyn std::error::Error>> {
/// let outcome = logger.log(event);          // never blocks
/// assert!(outcome.is_accepted() || !outcome.is_accepted());
/// logger.flush().await?;                    // everything accepted so far is durable
/// if logger.kill_switch_tripped() { /* stop opening positions */ }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Logger {
    shared: Arc<Shared>,
    /// Closes the logger when the last clone is dropped.
    _close_on_drop: Arc<CloseOnDrop>,
}

struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Err(e) = close_shared(&self.0) {
            tracing::error!(error = %e, "closing the logger on drop");
        }
    }
}

/// Stops accepting, drains, closes the sink and joins the writer. Idempotent.
fn close_shared(shared: &Shared) -> Result<(), LoggerError> {
    shared.closed.store(true, Ordering::SeqCst);
    let handle = shared.writer.lock().ok().and_then(|mut g| g.take());
    let Some(handle) = handle else {
        return Ok(());
    };
    handle.thread().unpark();
    match handle.join() {
        Ok(result) => result.map_err(LoggerError::CloseSink),
        Err(_) => Err(LoggerError::WriterPanicked),
    }
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("queue_len", &self.shared.queue.len())
            .finish()
    }
}

impl Logger {
    /// Starts the writer thread, which owns `sink`.
    pub fn start(config: LoggerConfig, sink: impl BatchSink) -> Result<Self, LoggerError> {
        let capacity = config.queue_capacity.max(1);
        let len_at = |fill: f64| ((capacity as f64) * fill).ceil() as usize;
        let (flush_done, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(capacity),
            overflow: SegQueue::new(),
            overflow_max: config.critical_overflow_max,
            debug_shed_len: len_at(config.debug_shed_fill),
            trip_len: len_at(config.kill_switch_trip_fill),
            rearm_len: (capacity as f64 * config.kill_switch_rearm_fill).floor() as usize,
            rearm_hold_us: i64::try_from(config.kill_switch_rearm_hold.as_micros())
                .unwrap_or(i64::MAX),
            limits: config.validation.clone(),
            counters: Counters::default(),
            kill_switch: AtomicBool::new(false),
            kill_switch_tripped_at_us: AtomicI64::new(0),
            flush_requested: AtomicU64::new(0),
            flush_done,
            writer_failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            writer: Mutex::new(None),
        });
        let writer = Writer {
            shared: shared.clone(),
            sink,
            batch_rows_max: config.batch_rows_max.max(1),
            flush_interval: config.flush_interval,
        };
        let handle = std::thread::Builder::new()
            .name("quiver-writer".into())
            .spawn(move || {
                let _exit = WriterExit(writer.shared.clone());
                writer.run()
            })
            .map_err(LoggerError::SpawnWriter)?;
        if let Ok(mut guard) = shared.writer.lock() {
            *guard = Some(handle);
        }
        Ok(Self {
            _close_on_drop: Arc::new(CloseOnDrop(shared.clone())),
            shared,
        })
    }

    /// Validates and enqueues one event. Never blocks, never waits for I/O, and
    /// takes no lock: the queue is a lock-free ring.
    pub fn log(&self, event: impl Into<Event>) -> LogOutcome {
        let s = &*self.shared;
        s.in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = self.admit(event.into());
        s.in_flight.fetch_sub(1, Ordering::Release);
        outcome
    }

    fn admit(&self, event: Event) -> LogOutcome {
        let s = &*self.shared;
        let level = event.header().level;
        if s.closed.load(Ordering::SeqCst) {
            s.counters.dropped_closed.incr(level);
            return LogOutcome::Dropped(DropReason::Closed);
        }
        if let Err(e) = event.validate(&s.limits, Ts::now()) {
            s.counters.rejected_invalid.incr(level);
            return LogOutcome::Dropped(DropReason::Invalid(Box::new(e)));
        }
        let len = s.queue.len();
        if len >= s.trip_len {
            s.trip();
        } else if len <= s.rearm_len {
            s.maybe_rearm(len);
        }
        match level {
            Level::Critical => {
                if let Err(event) = s.queue.push(event) {
                    if s.overflow.len() >= s.overflow_max {
                        s.counters.dropped_queue_full.incr(level);
                        return LogOutcome::Dropped(DropReason::QueueFull);
                    }
                    s.overflow.push(event);
                    s.counters.overflow_accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Level::Debug | Level::Info if s.kill_switch.load(Ordering::Acquire) => {
                s.counters.dropped_kill_switch.incr(level);
                return LogOutcome::Dropped(DropReason::KillSwitch);
            }
            Level::Debug if len >= s.debug_shed_len => {
                s.counters
                    .dropped_debug_shed
                    .fetch_add(1, Ordering::Relaxed);
                return LogOutcome::Dropped(DropReason::DebugShed);
            }
            _ => {
                if s.queue.push(event).is_err() {
                    s.trip();
                    s.counters.dropped_queue_full.incr(level);
                    return LogOutcome::Dropped(DropReason::QueueFull);
                }
            }
        }
        s.counters.accepted.incr(level);
        LogOutcome::Accepted
    }

    /// A bulk load (Flight SQL ingest): validates every event first and
    /// accepts all or none, enqueues them, and returns their count once they
    /// are durable.
    ///
    /// Unlike [`Logger::log`] it never sheds by level: the rows are a request
    /// someone waits on, so back-pressure goes to that caller instead. It waits
    /// whenever the queue is at the DEBUG shed fill or above, which leaves the
    /// rest of the queue to the bot's own `log()` calls.
    pub async fn submit(&self, events: Vec<Event>) -> Result<usize, SubmitError> {
        let s = &*self.shared;
        let now = Ts::now();
        let invalid: Vec<(usize, ValidationError)> = events
            .iter()
            .enumerate()
            .filter_map(|(row, e)| e.validate(&s.limits, now).err().map(|err| (row, err)))
            .collect();
        if !invalid.is_empty() {
            for (row, _) in &invalid {
                s.counters
                    .rejected_invalid
                    .incr(events[*row].header().level);
            }
            return Err(SubmitError::Invalid(invalid));
        }
        let count = events.len();
        for mut event in events {
            loop {
                s.in_flight.fetch_add(1, Ordering::SeqCst);
                if s.closed.load(Ordering::SeqCst) {
                    s.in_flight.fetch_sub(1, Ordering::Release);
                    return Err(SubmitError::Closed);
                }
                if s.queue.len() < s.debug_shed_len {
                    let level = event.header().level;
                    match s.queue.push(event) {
                        Ok(()) => {
                            s.counters.accepted.incr(level);
                            s.in_flight.fetch_sub(1, Ordering::Release);
                            break;
                        }
                        Err(back) => event = back,
                    }
                }
                s.in_flight.fetch_sub(1, Ordering::Release);
                s.unpark_writer();
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        self.flush().await.map_err(SubmitError::Flush)?;
        Ok(count)
    }

    /// Waits until every event accepted before this call is durable.
    pub async fn flush(&self) -> Result<(), LoggerError> {
        let ticket = self.shared.flush_requested.fetch_add(1, Ordering::AcqRel) + 1;
        let mut done = self.shared.flush_done.subscribe();
        self.shared.unpark_writer();
        let failed = &self.shared.writer_failed;
        done.wait_for(|&d| d >= ticket || failed.load(Ordering::Acquire))
            .await
            .map_err(|_| LoggerError::WriterStopped)?;
        if *done.borrow() >= ticket {
            Ok(())
        } else {
            Err(LoggerError::WriterStopped)
        }
    }

    /// [`Logger::flush`] for callers outside an async runtime.
    pub fn flush_blocking(&self) -> Result<(), LoggerError> {
        futures::executor::block_on(self.flush())
    }

    /// Whether the kill switch is tripped: the bot should stop opening positions.
    pub fn kill_switch_tripped(&self) -> bool {
        self.shared.kill_switch.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> LoggerStats {
        let s = &*self.shared;
        let c = &s.counters;
        let tripped_at = s.kill_switch_tripped_at_us.load(Ordering::Acquire);
        let last_write = c.writer.last_write_us.load(Ordering::Acquire);
        LoggerStats {
            queue_len: s.queue.len(),
            overflow_len: s.overflow.len(),
            queue_capacity: s.queue.capacity(),
            accepted: c.accepted.snapshot(),
            rejected_invalid: c.rejected_invalid.snapshot(),
            dropped_debug_shed: c.dropped_debug_shed.load(Ordering::Relaxed),
            dropped_kill_switch: c.dropped_kill_switch.snapshot(),
            dropped_queue_full: c.dropped_queue_full.snapshot(),
            dropped_closed: c.dropped_closed.snapshot(),
            overflow_accepted: c.overflow_accepted.load(Ordering::Relaxed),
            kill_switch_tripped: s.kill_switch.load(Ordering::Acquire),
            kill_switch_trips: c.kill_switch_trips.load(Ordering::Relaxed),
            kill_switch_tripped_at_us: (tripped_at != 0).then_some(tripped_at),
            batches_written: c.writer.batches_written.load(Ordering::Relaxed),
            rows_written: c.writer.rows_written.load(Ordering::Relaxed),
            write_errors: c.writer.write_errors.load(Ordering::Relaxed),
            last_write_us: (last_write != 0).then_some(last_write),
        }
    }

    /// Stops accepting events, makes everything accepted durable, closes the sink
    /// and joins the writer. Blocking; idempotent. Dropping the last clone does
    /// the same.
    pub fn close(&self) -> Result<(), LoggerError> {
        close_shared(&self.shared)
    }
}

/// Fails waiting flushes if the writer thread dies by a panic (they would
/// otherwise wait forever on a confirmation that cannot come).
struct WriterExit(Arc<Shared>);

impl Drop for WriterExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.writer_failed.store(true, Ordering::Release);
            self.0.flush_done.send_modify(|_| {});
        }
    }
}

/// The writer thread: drains the queue into per-table batches and writes them.
struct Writer<S> {
    shared: Arc<Shared>,
    sink: S,
    batch_rows_max: usize,
    flush_interval: Duration,
}

/// How long the writer sleeps when there is nothing to do. `log()` does not wake
/// it (a wake-up costs a syscall on the bot's thread); `flush()` and `close()` do.
const IDLE_PARK: Duration = Duration::from_millis(2);
const TICK_EVERY: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long `close()` keeps retrying a failing sink before it gives up (the
/// events in those batches were accepted but never acknowledged durable).
const CLOSE_GIVE_UP: Duration = Duration::from_secs(30);

impl<S: BatchSink> Writer<S> {
    fn run(mut self) -> Result<(), SinkError> {
        let mut buffers = EventBuffers::default();
        let mut sealed: Vec<(Table, RecordBatch)> = Vec::new();
        let mut pending_since: Option<Instant> = None;
        let mut last_tick = Instant::now();
        // The newest flush ticket whose events are all in `buffers`/`sealed`
        // (or written): confirmed once those are durable, never earlier.
        let mut covering: Option<u64> = None;
        let mut backoff = RETRY_BACKOFF_MIN;
        let mut failing_since: Option<Instant> = None;
        let mut closing_since: Option<Instant> = None;
        // One handle for the thread's life (not an Arc clone per iteration); the
        // loop body also needs `&mut self`.
        let shared = self.shared.clone();
        loop {
            let s = &*shared;
            let ticket = s.flush_requested.load(Ordering::Acquire);
            let flushing = ticket > *s.flush_done.borrow();
            let closing = s.closed.load(Ordering::SeqCst);
            if closing {
                closing_since.get_or_insert_with(Instant::now);
            }

            let mut popped = 0usize;
            if sealed.is_empty() {
                // CRITICAL overflow first, then the queue. When flushing, take at
                // least what the queue held when the flush was seen: every event
                // accepted before the flush call is in that prefix.
                let must_take = if flushing || closing {
                    s.queue.len()
                } else {
                    0
                };
                while let Some(event) = s.overflow.pop() {
                    self.push(&mut buffers, &mut sealed, event, &mut pending_since);
                    popped += 1;
                }
                let mut taken = 0usize;
                while taken < must_take
                    || (sealed.is_empty() && buffers.len() < self.batch_rows_max)
                {
                    let Some(event) = s.queue.pop() else { break };
                    self.push(&mut buffers, &mut sealed, event, &mut pending_since);
                    taken += 1;
                }
                popped += taken;
                if flushing || closing {
                    covering = Some(ticket);
                }
                s.maybe_rearm(s.queue.len());
                let due = pending_since.is_some_and(|t| t.elapsed() >= self.flush_interval);
                if !buffers.is_empty()
                    && (buffers.len() >= self.batch_rows_max || due || flushing || closing)
                {
                    self.seal(&mut buffers, &mut sealed);
                    pending_since = None;
                }
            }

            if !sealed.is_empty() {
                if let Err(e) = self.write(&sealed) {
                    s.counters
                        .writer
                        .write_errors
                        .fetch_add(1, Ordering::Relaxed);
                    // The sink reports the stall itself; here only the first
                    // failure of a streak is an error, the retries are quiet.
                    if failing_since.is_none() {
                        tracing::error!(error = %e, "writing a batch failed; retrying with backoff");
                        failing_since = Some(Instant::now());
                    } else {
                        tracing::debug!(error = %e, "writing a batch failed again");
                    }
                    std::thread::park_timeout(backoff);
                    backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                    if closing_since.is_some_and(|t| t.elapsed() >= CLOSE_GIVE_UP) {
                        tracing::error!(
                            rows = sealed.iter().map(|(_, b)| b.num_rows()).sum::<usize>(),
                            "closing with batches that could not be made durable"
                        );
                        s.writer_failed.store(true, Ordering::Release);
                        s.flush_done.send_modify(|_| {});
                        return Err(e);
                    }
                    continue;
                }
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        after_s = since.elapsed().as_secs_f64(),
                        "writing batches works again"
                    );
                }
                backoff = RETRY_BACKOFF_MIN;
                sealed.clear();
            }

            if buffers.is_empty()
                && let Some(t) = covering.take()
            {
                s.flush_done.send_replace(t);
            }
            if last_tick.elapsed() >= TICK_EVERY {
                last_tick = Instant::now();
                if let Err(e) = self.sink.tick() {
                    tracing::warn!(error = %e, "sink maintenance failed");
                }
            }
            if closing && buffers.is_empty() && s.queue.is_empty() && s.overflow.is_empty() {
                // A producer that read `closed == false` may still be pushing:
                // wait for it, then drain once more.
                if s.in_flight.load(Ordering::SeqCst) > 0 {
                    std::thread::yield_now();
                    continue;
                }
                if s.queue.is_empty() && s.overflow.is_empty() {
                    let result = self.sink.close();
                    s.flush_done.send_replace(u64::MAX);
                    return result;
                }
                continue;
            }
            if popped == 0 && !flushing {
                std::thread::park_timeout(IDLE_PARK);
            }
        }
    }

    fn push(
        &self,
        buffers: &mut EventBuffers,
        sealed: &mut Vec<(Table, RecordBatch)>,
        event: Event,
        pending_since: &mut Option<Instant>,
    ) {
        if pending_since.is_none() {
            *pending_since = Some(Instant::now());
        }
        buffers.push(event);
        if buffers.len() >= self.batch_rows_max {
            self.seal(buffers, sealed);
        }
    }

    fn seal(&self, buffers: &mut EventBuffers, sealed: &mut Vec<(Table, RecordBatch)>) {
        match buffers.take_batches() {
            Ok(batches) => sealed.extend(batches),
            // The builders only fail on a schema mismatch, which the table
            // declarations rule out; count it rather than lose the thread.
            Err(e) => {
                self.shared
                    .counters
                    .writer
                    .write_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "building a record batch failed");
            }
        }
    }

    fn write(&mut self, sealed: &[(Table, RecordBatch)]) -> Result<(), SinkError> {
        self.sink.write(sealed)?;
        let c = &self.shared.counters;
        let rows: usize = sealed.iter().map(|(_, b)| b.num_rows()).sum();
        c.writer
            .batches_written
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        c.writer
            .rows_written
            .fetch_add(rows as u64, Ordering::Relaxed);
        c.writer
            .last_write_us
            .store(Shared::now_us(), Ordering::Release);
        Ok(())
    }
}
