//! Analytics over what the store holds: trading statistics of the journal's
//! closed trades, calibration of the model's predictions, and decision-trace
//! reports. Pure functions over plain values, so every figure can be checked
//! by hand.

mod calibration;
pub mod compare;
pub mod explain;
pub mod format;
pub mod insights;
mod stats;
pub mod trace;

pub use calibration::{Calibration, CalibrationSums, ReliabilityBin};
pub use stats::{TradeStats, group_stats, is_win, max_drawdown, win_rate};
