//! The logger: what the bot calls. `log(event)` validates, applies the priority
//! tiers and enqueues without blocking; a writer thread drains the queue into
//! record batches and hands them to a [`BatchSink`] (implemented by `store`),
//! which makes them durable.
//!
//! # Tiers and the kill switch
//!
//! With queue capacity `C` (default 10,000):
//! - fill >= `debug_shed_fill` (80%): DEBUG events are dropped;
//! - fill >= `kill_switch_trip_fill` (95%): the kill switch trips. While it is
//!   tripped, DEBUG and INFO events are dropped and the bot is expected to stop
//!   opening positions ([`Logger::kill_switch_tripped`], `system.kill_switch`);
//! - queue full: WARNING and ERROR events are dropped;
//! - CRITICAL events are never dropped: when the queue is full they take an
//!   unbounded overflow lane that the writer drains first.
//!
//! **Re-arm rule** (hysteresis): the kill switch re-arms once the fill has fallen to
//! `kill_switch_rearm_fill` (50%) or below *and* it has been tripped for at least
//! `kill_switch_rearm_hold` (1 s). Both the writer and `log()` check the rule, so it
//! re-arms even when the bot is quiet.
//!
//! # Network ingest
//!
//! Rows from the network ([`Logger::ingest`], Flight SQL bulk ingest) take a
//! lane of their own, `ingest_queue_capacity` (10,000) events, outside the
//! fill above: a backfill waits for the writer, never sheds, and cannot push
//! the bot's `log()` into shedding or the kill switch. The writer takes the
//! bot's events first and then at most a batch from the lane each round.

mod logger;
mod stats;
mod writer;

pub use logger::{
    DropReason, LogOutcome, Logger, LoggerConfig, LoggerError, SubmitError, Validated,
    summarize_invalid,
};
pub use stats::{LevelCounts, LoggerStats};

use arrow::array::RecordBatch;

use crate::event::Table;

/// Where the writer sends sealed batches. `store` implements it; the logger never
/// names a storage engine.
pub trait BatchSink: Send + 'static {
    /// Makes `batches` durable. Returns once they are (the acknowledgement point
    /// of every event in them). On error the writer keeps the batches and retries.
    fn write(&mut self, batches: &[(Table, RecordBatch)]) -> Result<(), SinkError>;

    /// Called by the writer about every 100 ms, whether or not there is data, so
    /// the sink can do time-based work.
    fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called once when the logger shuts down, after the last `write`.
    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink failure, as the writer reports it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(#[source] pub Box<dyn std::error::Error + Send + Sync>);
