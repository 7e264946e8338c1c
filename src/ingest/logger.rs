//! [`Logger`]: the non-blocking front door, and the writer thread behind it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::{ArrayQueue, SegQueue};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::stats::{Counters, LoggerStats};
use super::{BatchSink, SinkError};
use crate::event::{Event, Level, Ts, ValidationError, ValidationLimits};

/// How the logger queues and batches. See the module docs for the tier rules.
///
/// Also the `[logger]` section of `quiver.toml`: every field but `validation`
/// is a key of that name; a missing key keeps its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggerConfig {
    /// Events the queue holds (CRITICAL overflow aside). Default 10 000.
    pub queue_capacity: usize,
    /// Most events in one writer batch (over all tables). Default 5 000.
    pub batch_rows_max: usize,
    /// Longest an accepted event waits before its batch is made durable, a
    /// duration (`"250ms"`). Default 1 s.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Queue fill, a fraction in [0, 1], at which DEBUG events are dropped.
    /// Default 0.80.
    pub debug_shed_fill: f64,
    /// Queue fill, a fraction in [0, 1], at which the kill switch trips.
    /// Default 0.95.
    pub kill_switch_trip_fill: f64,
    /// Queue fill, a fraction in [0, 1] below the trip fill, at or below which
    /// a tripped kill switch may re-arm. Default 0.50.
    pub kill_switch_rearm_fill: f64,
    /// Least time a tripped kill switch stays tripped, a duration. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub kill_switch_rearm_hold: Duration,
    /// CRITICAL events the overflow lane holds when the queue is full. Reached
    /// only when the durability point itself has stalled (a full disk) for a
    /// long time; past it CRITICAL events are dropped as queue-full, counted.
    /// Default 1 000 000.
    pub critical_overflow_max: usize,
    /// Events of network ingest ([`Logger::ingest`]) waiting for the writer,
    /// in a lane of their own: they never count toward the queue's fill, so a
    /// backfill cannot make the bot's `log()` shed or trip the kill switch. At
    /// the cap the ingest waits. Default 10 000.
    pub ingest_queue_capacity: usize,
    /// The limits every event is validated against. Not a `[logger]` key: they
    /// are the file's own `[validation]` section, which the config puts here
    /// (`Config::logger_config`).
    #[serde(skip)]
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
            ingest_queue_capacity: 10_000,
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

/// Events that passed [`Logger::validate`], for [`Logger::ingest`].
#[derive(Debug)]
pub struct Validated(Vec<Event>);

impl Validated {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps the events whose flag in `keep` (one per event, in order) is set.
    pub fn retain(&mut self, keep: &[bool]) {
        debug_assert_eq!(keep.len(), self.0.len());
        let mut flags = keep.iter();
        self.0.retain(|_| flags.next().copied().unwrap_or(false));
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
pub fn summarize_invalid(rows: &[(usize, ValidationError)]) -> String {
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

pub(super) struct Shared {
    pub(super) queue: ArrayQueue<Event>,
    /// CRITICAL events that found the queue full, up to `overflow_max`.
    pub(super) overflow: SegQueue<Event>,
    pub(super) overflow_max: usize,
    /// Network ingest's lane ([`Logger::ingest`]): drained by the writer after
    /// the queue, at most a batch a round, outside `backlog`.
    pub(super) ingest: SegQueue<Event>,
    /// Events in `ingest`, counted before the push, so it never exceeds
    /// `ingest_capacity` by more than one caller's chunk.
    pub(super) ingest_len: AtomicUsize,
    pub(super) ingest_capacity: usize,
    pub(super) capacity: usize,
    pub(super) debug_shed_len: usize,
    pub(super) trip_len: usize,
    pub(super) rearm_len: usize,
    pub(super) rearm_hold_us: i64,
    pub(super) limits: ValidationLimits,
    pub(super) counters: Counters,
    pub(super) kill_switch: AtomicBool,
    pub(super) kill_switch_tripped_at_us: AtomicI64,
    pub(super) flush_requested: AtomicU64,
    pub(super) flush_done: watch::Sender<u64>,
    /// The writer gave up (at close, on a sink that kept failing): flushes
    /// still waiting get an error, never a false confirmation.
    pub(super) writer_failed: AtomicBool,
    pub(super) closed: AtomicBool,
    /// `log()`/`submit()` calls between their check of `closed` and their push:
    /// the writer's last drain waits for them (with `closed`, a Dekker pair, so
    /// no event is accepted after the writer's last look at the queue).
    pub(super) in_flight: AtomicUsize,
    /// Events accepted (outside the CRITICAL overflow lane) that the committer
    /// has not yet taken to write: what the queue's fill, the tiers and
    /// `queue_len` count. The builder may hold a few groups of them while a
    /// write is under way; they are still the queue's.
    pub(super) backlog: AtomicUsize,
    /// A recent reading of the clock (µs), never ahead of it: the builder
    /// refreshes it every round. `log()` checks an event's time against it and
    /// reads the real clock only when the event looks too far ahead, so the
    /// happy path makes no clock call.
    pub(super) clock_floor_us: AtomicI64,
    /// `limits.future_skew_max` in µs.
    future_skew_us: i64,
    pub(super) writer: Mutex<Option<JoinHandle<Result<(), SinkError>>>>,
}

impl Shared {
    /// Puts an event in the queue if the backlog (`len`, just read) has room.
    /// A refused event comes back by value: boxing it would cost every
    /// accepted event an allocation on the bot's thread.
    #[allow(clippy::result_large_err)]
    fn enqueue(&self, event: Event, len: usize) -> Result<(), Event> {
        if len >= self.capacity {
            return Err(event);
        }
        self.backlog.fetch_add(1, Ordering::AcqRel);
        self.queue.push(event).inspect_err(|_| {
            self.backlog.fetch_sub(1, Ordering::AcqRel);
        })
    }

    pub(super) fn now_us() -> i64 {
        Ts::now().0
    }

    /// The `now` to validate an event stamped `ts` against: the cached floor
    /// when `ts` is within the skew limit of it (then it is within the limit
    /// of the real clock too, which is later), else a fresh reading, kept for
    /// the next caller.
    fn now_for(&self, ts: Ts) -> Ts {
        let floor = self.clock_floor_us.load(Ordering::Relaxed);
        if ts.0 <= floor.saturating_add(self.future_skew_us) {
            return Ts(floor);
        }
        let now = Self::now_us();
        self.clock_floor_us.fetch_max(now, Ordering::Relaxed);
        Ts(now)
    }

    /// Called by the builder every round.
    pub(super) fn refresh_clock(&self) {
        self.clock_floor_us.store(Self::now_us(), Ordering::Relaxed);
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
    pub(super) fn maybe_rearm(&self, len: usize) {
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
            .field("queue_len", &self.shared.backlog.load(Ordering::Relaxed))
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
            ingest: SegQueue::new(),
            ingest_len: AtomicUsize::new(0),
            ingest_capacity: config.ingest_queue_capacity.max(1),
            capacity,
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
            backlog: AtomicUsize::new(0),
            clock_floor_us: AtomicI64::new(Ts::now().0),
            future_skew_us: i64::try_from(config.validation.future_skew_max.as_micros())
                .unwrap_or(i64::MAX),
            writer: Mutex::new(None),
        });
        let handle = super::writer::start(
            shared.clone(),
            sink,
            config.batch_rows_max.max(1),
            config.flush_interval,
        )
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
        if let Err(e) = event.validate(&s.limits, s.now_for(event.header().ts)) {
            s.counters.rejected_invalid.incr(level);
            return LogOutcome::Dropped(DropReason::Invalid(Box::new(e)));
        }
        let len = s.backlog.load(Ordering::Relaxed);
        if len >= s.trip_len {
            s.trip();
        } else if len <= s.rearm_len {
            s.maybe_rearm(len);
        }
        match level {
            Level::Critical => {
                if let Err(event) = s.enqueue(event, len) {
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
                if s.enqueue(event, len).is_err() {
                    s.trip();
                    s.counters.dropped_queue_full.incr(level);
                    return LogOutcome::Dropped(DropReason::QueueFull);
                }
            }
        }
        s.counters.accepted.incr(level);
        LogOutcome::Accepted
    }

    /// Checks every event against the validation rules: all pass, or the
    /// error lists the rows that broke one (by index) and nothing is taken.
    pub fn validate(&self, events: Vec<Event>) -> Result<Validated, SubmitError> {
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
        Ok(Validated(events))
    }

    /// Network ingest (Flight SQL): puts validated events in the ingest lane,
    /// waiting while it is full, and returns their count once all are
    /// queued; [`Logger::flush`] makes them durable.
    ///
    /// Unlike [`Logger::log`] it never sheds by level: the rows are a request
    /// someone waits on, so back-pressure goes to that caller instead. The
    /// lane is not the bot's queue: however large the load, the bot's fill,
    /// tiers and kill switch see none of it, and the writer takes the bot's
    /// events first every round.
    pub async fn ingest(&self, events: Validated) -> Result<usize, SubmitError> {
        let s = &*self.shared;
        let events = events.0;
        let count = events.len();
        let mut events = events.into_iter();
        while events.len() > 0 {
            s.in_flight.fetch_add(1, Ordering::SeqCst);
            if s.closed.load(Ordering::SeqCst) {
                s.in_flight.fetch_sub(1, Ordering::Release);
                return Err(SubmitError::Closed);
            }
            // Reserve room before pushing: concurrent ingests together never
            // hold more than the lane's capacity.
            let want = events.len();
            let reserved = s
                .ingest_len
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |len| {
                    let room = s.ingest_capacity.saturating_sub(len);
                    (room > 0).then(|| len + room.min(want))
                })
                .map_or(0, |len| s.ingest_capacity.saturating_sub(len).min(want));
            for event in events.by_ref().take(reserved) {
                s.counters.accepted.incr(event.header().level);
                s.ingest.push(event);
            }
            s.counters
                .ingest_accepted
                .fetch_add(reserved as u64, Ordering::Relaxed);
            s.in_flight.fetch_sub(1, Ordering::Release);
            s.unpark_writer();
            if events.len() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(count)
    }

    /// [`Logger::ingest`], then [`Logger::flush`]: returns once the events are
    /// durable.
    pub async fn submit(&self, events: Vec<Event>) -> Result<usize, SubmitError> {
        let count = self.ingest(self.validate(events)?).await?;
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
            queue_len: s.backlog.load(Ordering::Relaxed),
            overflow_len: s.overflow.len(),
            queue_capacity: s.queue.capacity(),
            ingest_queue_len: s.ingest_len.load(Ordering::Relaxed),
            ingest_queue_capacity: s.ingest_capacity,
            ingest_accepted: c.ingest_accepted.load(Ordering::Relaxed),
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
            rows_written_by_table: std::array::from_fn(|i| {
                c.writer.rows_written_by_table[i].load(Ordering::Relaxed)
            }),
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
