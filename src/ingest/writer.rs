//! Behind the [`Logger`](super::Logger): two threads, so that building the next
//! batches overlaps making the last ones durable.
//!
//! - The **builder** (`quiver-writer`) drains the queue (CRITICAL overflow
//!   first, network ingest's lane last, a batch's worth a round) into
//!   per-table Arrow builders and seals a group of batches when
//!   `batch_rows_max` events are buffered, when the oldest has waited
//!   `flush_interval`, or when a flush or close asks. It hands each group to the
//!   committer through a channel of [`GROUPS_IN_FLIGHT`]; when that is full it
//!   waits, the queue fills, and the tiers shed load as documented in
//!   [`super`].
//! - The **committer** (`quiver-commit`) owns the [`BatchSink`]. It takes every
//!   group waiting and writes them in one `write` call (group commit: one fsync
//!   for all), retrying with backoff until it succeeds.
//!
//! **Flush rule.** A flush ticket travels with the group that holds the last
//! events accepted before it (an empty group when there were none), and the
//! committer confirms it only after that group and every one before it are
//! durable. Groups are written in order, so a confirmation never covers events
//! still queued or still being built, also after a failed write.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use super::logger::Shared;
use super::{BatchSink, SinkError};
use crate::event::{Event, EventBuffers, Table};

/// Groups sealed but not yet taken by the committer.
pub const GROUPS_IN_FLIGHT: usize = 4;
/// Events the builder takes from the queue between looks at flushes and close.
const POPS_PER_ROUND_MAX: usize = 50_000;
/// How long the builder sleeps when there is nothing to do. `log()` does not
/// wake it (a wake-up costs a syscall on the bot's thread); `flush()` and
/// `close()` do.
const IDLE_PARK: Duration = Duration::from_millis(2);
const TICK_EVERY: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a closing logger keeps retrying a failing sink before it gives up
/// (the events in those batches were accepted but never acknowledged durable).
const CLOSE_GIVE_UP: Duration = Duration::from_secs(30);

/// Batches sealed together, and the flush they complete, if any.
struct Group {
    batches: Vec<(Table, RecordBatch)>,
    /// Events of these batches that came through the queue (not the overflow
    /// lane): they leave the backlog when the committer takes the group.
    from_queue: usize,
    ticket: Option<u64>,
}

/// Starts both threads; the returned handle is the builder's, whose result is
/// the committer's.
pub(super) fn start<S: BatchSink>(
    shared: Arc<Shared>,
    sink: S,
    batch_rows_max: usize,
    flush_interval: Duration,
) -> std::io::Result<JoinHandle<Result<(), SinkError>>> {
    let (tx, rx) = sync_channel::<Group>(GROUPS_IN_FLIGHT);
    let committer = Committer {
        shared: shared.clone(),
        sink,
    };
    let commit_handle = std::thread::Builder::new()
        .name("quiver-commit".into())
        .spawn(move || {
            let _exit = FailOnPanic(committer.shared.clone());
            committer.run(rx)
        })?;
    let builder = Builder {
        shared,
        tx: Some(tx),
        batch_rows_max,
        flush_interval,
        sent_ticket: 0,
        buffered_from_queue: 0,
    };
    std::thread::Builder::new()
        .name("quiver-writer".into())
        .spawn(move || {
            let _exit = FailOnPanic(builder.shared.clone());
            builder.run();
            commit_handle.join().unwrap_or_else(|_| {
                Err(SinkError(Box::new(std::io::Error::other(
                    "the commit thread panicked",
                ))))
            })
        })
}

/// Fails waiting flushes if a writer thread dies by a panic (they would
/// otherwise wait forever on a confirmation that cannot come).
struct FailOnPanic(Arc<Shared>);

impl Drop for FailOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.writer_failed.store(true, Ordering::Release);
            self.0.flush_done.send_modify(|_| {});
        }
    }
}

struct Builder {
    shared: Arc<Shared>,
    /// Dropped to tell the committer that nothing more comes.
    tx: Option<SyncSender<Group>>,
    batch_rows_max: usize,
    flush_interval: Duration,
    /// The newest flush ticket handed to the committer.
    sent_ticket: u64,
    /// Events in the buffers that came through the queue.
    buffered_from_queue: usize,
}

impl Builder {
    fn run(mut self) {
        let mut buffers = EventBuffers::default();
        let mut pending_since: Option<Instant> = None;
        let shared = self.shared.clone();
        loop {
            let s = &*shared;
            s.refresh_clock();
            let ticket = s.flush_requested.load(Ordering::Acquire);
            let flushing = ticket > self.sent_ticket;
            let closing = s.closed.load(Ordering::SeqCst);

            // When flushing, take at least what the queue held when the flush
            // was seen: every event accepted before the flush call is in it.
            // Otherwise a bounded amount, so flushes and close are seen soon.
            let must_take = if flushing || closing {
                s.queue.len()
            } else {
                0
            };
            let take_max = must_take.max(POPS_PER_ROUND_MAX);
            let mut popped = 0usize;
            while let Some(event) = s.overflow.pop() {
                self.push(&mut buffers, event, &mut pending_since, false);
                popped += 1;
            }
            while popped < take_max {
                let Some(event) = s.queue.pop() else { break };
                self.push(&mut buffers, event, &mut pending_since, true);
                popped += 1;
            }
            // Network ingest after the bot's events, a batch's worth a round
            // (all it held when flushing), so a backfill waits behind the bot
            // and never in its queue.
            let ingest_max = if flushing || closing {
                s.ingest_len
                    .load(Ordering::Acquire)
                    .max(self.batch_rows_max)
            } else {
                self.batch_rows_max
            };
            for _ in 0..ingest_max {
                let Some(event) = s.ingest.pop() else { break };
                s.ingest_len.fetch_sub(1, Ordering::AcqRel);
                self.push(&mut buffers, event, &mut pending_since, false);
                popped += 1;
            }
            s.maybe_rearm(s.backlog.load(Ordering::Relaxed));
            let due = pending_since.is_some_and(|t| t.elapsed() >= self.flush_interval);
            if !buffers.is_empty() && (due || flushing || closing) {
                self.seal(&mut buffers, None);
                pending_since = None;
            }
            if flushing {
                // Everything before the flush is in groups sent by now.
                self.send(Group {
                    batches: Vec::new(),
                    from_queue: 0,
                    ticket: Some(ticket),
                });
                self.sent_ticket = ticket;
            }
            if closing
                && buffers.is_empty()
                && s.queue.is_empty()
                && s.overflow.is_empty()
                && s.ingest.is_empty()
                && s.in_flight.load(Ordering::SeqCst) == 0
            {
                // No producer is between its check of `closed` and its push
                // (see Shared::in_flight): one last look, then stop.
                if s.queue.is_empty() && s.overflow.is_empty() && s.ingest.is_empty() {
                    self.tx = None;
                    return;
                }
                continue;
            }
            if popped == 0 && !flushing {
                if closing {
                    std::thread::yield_now();
                } else {
                    std::thread::park_timeout(IDLE_PARK);
                }
            }
        }
    }

    fn push(
        &mut self,
        buffers: &mut EventBuffers,
        event: Event,
        pending_since: &mut Option<Instant>,
        from_queue: bool,
    ) {
        pending_since.get_or_insert_with(Instant::now);
        buffers.push(event);
        self.buffered_from_queue += usize::from(from_queue);
        if buffers.len() >= self.batch_rows_max {
            self.seal(buffers, None);
            *pending_since = None;
        }
    }

    fn seal(&mut self, buffers: &mut EventBuffers, ticket: Option<u64>) {
        let from_queue = std::mem::take(&mut self.buffered_from_queue);
        match buffers.take_batches() {
            Ok(batches) => self.send(Group {
                batches,
                from_queue,
                ticket,
            }),
            // The builders only fail on a schema mismatch, which the table
            // declarations rule out; count it rather than lose the thread.
            Err(e) => {
                self.shared.backlog.fetch_sub(from_queue, Ordering::AcqRel);
                self.shared
                    .counters
                    .writer
                    .write_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "building a record batch failed");
            }
        }
    }

    /// Hands a group to the committer, waiting while GROUPS_IN_FLIGHT are.
    fn send(&mut self, group: Group) {
        let Some(tx) = &self.tx else { return };
        if tx.send(group).is_err() {
            // The committer gave up (a sink that kept failing at close).
            self.tx = None;
        }
    }
}

struct Committer<S> {
    shared: Arc<Shared>,
    sink: S,
}

impl<S: BatchSink> Committer<S> {
    fn run(mut self, rx: Receiver<Group>) -> Result<(), SinkError> {
        let mut last_tick = Instant::now();
        loop {
            let first = match rx.recv_timeout(TICK_EVERY) {
                Ok(group) => group,
                Err(RecvTimeoutError::Timeout) => {
                    self.tick(&mut last_tick);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let result = self.sink.close();
                    self.shared.flush_done.send_replace(u64::MAX);
                    return result;
                }
            };
            // Group commit: everything waiting goes in one write. Taken groups
            // leave the queue's backlog (as the old single writer's batch did).
            let mut batches = first.batches;
            let mut ticket = first.ticket;
            let mut from_queue = first.from_queue;
            while let Ok(next) = rx.try_recv() {
                batches.extend(next.batches);
                ticket = next.ticket.or(ticket);
                from_queue += next.from_queue;
            }
            self.shared.backlog.fetch_sub(from_queue, Ordering::AcqRel);
            self.write_until_durable(&batches)?;
            if let Some(t) = ticket {
                self.shared.flush_done.send_if_modified(|done| {
                    let newer = t > *done;
                    *done = (*done).max(t);
                    newer
                });
            }
            self.tick(&mut last_tick);
        }
    }

    fn tick(&mut self, last_tick: &mut Instant) {
        if last_tick.elapsed() >= TICK_EVERY {
            *last_tick = Instant::now();
            if let Err(e) = self.sink.tick() {
                tracing::warn!(error = %e, "sink maintenance failed");
            }
        }
    }

    /// Writes `batches`, retrying with backoff until the sink takes them. Fails
    /// only when the logger has been closing for CLOSE_GIVE_UP.
    fn write_until_durable(&mut self, batches: &[(Table, RecordBatch)]) -> Result<(), SinkError> {
        if batches.is_empty() {
            return Ok(());
        }
        let s = &*self.shared;
        let mut backoff = RETRY_BACKOFF_MIN;
        let mut failing_since: Option<Instant> = None;
        let mut closing_since: Option<Instant> = None;
        loop {
            match self.sink.write(batches) {
                Ok(()) => break,
                Err(e) => {
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
                    if s.closed.load(Ordering::SeqCst) {
                        closing_since.get_or_insert_with(Instant::now);
                    }
                    if closing_since.is_some_and(|t| t.elapsed() >= CLOSE_GIVE_UP) {
                        tracing::error!(
                            rows = batches.iter().map(|(_, b)| b.num_rows()).sum::<usize>(),
                            "closing with batches that could not be made durable"
                        );
                        s.writer_failed.store(true, Ordering::Release);
                        s.flush_done.send_modify(|_| {});
                        return Err(e);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                }
            }
        }
        if let Some(since) = failing_since {
            tracing::info!(
                after_s = since.elapsed().as_secs_f64(),
                "writing batches works again"
            );
        }
        let c = &s.counters.writer;
        let rows: usize = batches.iter().map(|(_, b)| b.num_rows()).sum();
        c.batches_written
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        c.rows_written.fetch_add(rows as u64, Ordering::Relaxed);
        for (table, batch) in batches {
            c.rows_written_by_table[table.index()]
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        }
        c.last_write_us.store(Shared::now_us(), Ordering::Release);
        Ok(())
    }
}
