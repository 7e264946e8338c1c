//! The application layer: what a Quiver process is made of, for the `quiver`
//! command, a bot that embeds Quiver, and the tools built on it.
//!
//! - [`Pipeline`]: the data dir opened for writing (store, logger, query
//!   engine, definitions reloaded on every edit) and its Flight SQL server,
//!   advertised in the data dir ([`Advert`]).
//! - [`Session`]: where queries go: an engine over the data dir, or the server
//!   that holds it, or any server by URL.
//! - [`alerts`]: alerts that reach people: the durable outbox producers
//!   enqueue into, the delivery worker, Telegram, Discord and webhook
//!   receivers, delivery counts.
//! - [`health`]: the health monitor: samples the pipeline against the
//!   `[health]` thresholds into `system.health` (and `system.definitions`
//!   from the reloader's [`DefinitionsStatus`]), alerts on every change.
//! - [`prometheus`]: `/metrics` in the OpenMetrics text format, read from the
//!   live counters at each scrape.
//! - [`explain`]: the explain report: gate decisions explained, with the
//!   signal's fate and market.
//! - [`compare`]: `models compare`: two models' feature importances,
//!   calibration, predictions per regime and trades while live.
//! - [`insights`]: the insights report's queries, bound and run.
//! - [`council`]: the council's packet from `metrics.metric_values`,
//!   `metrics.alerts` and the insights; a run through the verifier and judge
//!   of [`crate::council`].
//! - [`report`]: `quiver report`: the day's data and one self-contained HTML
//!   file with inline SVG charts (plotters).
//! - [`learning`]: the learning reports: per day, and one model's
//!   calibration.
//! - [`metrics_job`]: `metrics compute`: the day's metric values and alerts,
//!   retried one by one when they ran out of memory together, written to the
//!   lake.
//! - [`trace`]: the trace report (one trace's timeline and bottlenecks) and
//!   the trace statistics.
//!
//! `cli/` parses arguments, calls these, and prints.
//!
//! Each report has one home here: its SQL (values always bound), the queries
//! run on a [`Session`], and the decoding into typed rows; the sentences and
//! numbers come from the pure [`crate::analytics`]. The team's design notes
//! (DESIGN.md, outside this repository) put
//! report homes in `query/`; they live here because a report runs on a
//! `Session`, local or through a server, and `query/` sits below `app/`.

pub mod alerts;
pub mod compare;
pub mod council;
pub mod explain;
pub mod health;
pub mod insights;
pub mod learning;
pub mod metrics_job;
mod pipeline;
pub mod prometheus;
mod reload;
pub mod report;
pub mod rows;
mod session;
pub mod trace;

pub use pipeline::{Advert, Pipeline, RunningServer, shutdown_signal};
pub use reload::{DefinitionsState, DefinitionsStatus};
pub use session::{Load, Session};
