//! The AI council: analysts read the day's metrics packet (never the raw
//! events), a judge merges their findings, and a number verifier drops any
//! claim whose numbers are not the packet's.
//!
//! Pure: no SQL, no network. The packet is built and the model endpoints
//! are called in [`crate::app`]; this module decides what stands.
//!
//! - [`packet`]: the packet (metric values, insights, alerts) and the facts
//!   (numbers) it holds.
//! - [`numbers`]: reads the numbers, dates and digit-led words of a text.
//! - [`verify`]: claims, and the rule that keeps or drops each.
//! - [`analysts`]: the built-in deterministic analysts (risk, gates, models,
//!   latency, regimes, execution, data quality).
//! - [`judge`]: merges verified claims into a summary whose sentences name
//!   their metrics, verifies a judge's sentences, renders markdown.

pub mod analysts;
pub mod judge;
pub mod numbers;
pub mod packet;
pub mod verify;
