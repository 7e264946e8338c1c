//! The writes the journal takes: a trade's entry and exit, a shadow trade
//! and its resolution, and [`JournalChange::from_event`], the write a trade or
//! shadow-trade event implies.

use crate::event::{Event, Gate, Mode, Regime, ShadowKind, Side, TradeKind, Ts};

/// A trade at entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeEntry {
    pub trade_id: String,
    pub signal_id: Option<String>,
    pub symbol: String,
    pub side: Side,
    pub mode: Mode,
    pub regime: Regime,
    pub qty: f64,
    pub entry_ts: Ts,
    pub entry_price: f64,
    pub fees_bps: f64,
}

/// A trade's exit and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeExit {
    pub trade_id: String,
    pub exit_ts: Ts,
    pub exit_price: f64,
    /// Net of fees.
    pub pnl_bps: f64,
    pub fees_bps: f64,
    pub duration_s: f64,
    /// Maximum adverse excursion (<= 0).
    pub mae_bps: Option<f64>,
    /// Maximum favourable excursion (>= 0).
    pub mfe_bps: Option<f64>,
}

/// A blocked signal, followed as if traded.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowEntry {
    pub shadow_id: String,
    pub signal_id: Option<String>,
    pub symbol: String,
    pub side: Side,
    pub mode: Mode,
    pub regime: Regime,
    pub blocked_by: Gate,
    pub blocked_ts: Ts,
    pub hypothetical_entry: f64,
}

/// What a shadow trade would have made.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowResolution {
    pub shadow_id: String,
    pub resolved_ts: Ts,
    pub outcome_pnl_bps: f64,
}

/// One write to the journal.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalChange {
    Entry(TradeEntry, Vec<(String, f64)>),
    Exit(TradeExit),
    Shadow(ShadowEntry),
    Resolve(ShadowResolution),
}

impl JournalChange {
    /// The journal write a trade or shadow-trade event implies, if any.
    pub fn from_event(event: &Event) -> Option<JournalChange> {
        match event {
            Event::Trade(t) => Some(match t.kind {
                TradeKind::Open => JournalChange::Entry(
                    TradeEntry {
                        trade_id: t.trade_id.clone(),
                        signal_id: Some(t.signal_id.clone()),
                        symbol: t.header.symbol.clone(),
                        side: t.side,
                        mode: t.mode,
                        regime: t.regime,
                        qty: t.qty,
                        entry_ts: t.header.ts,
                        entry_price: t.price,
                        fees_bps: t.fees_bps,
                    },
                    t.features
                        .as_deref()
                        .map(parse_features)
                        .unwrap_or_default(),
                ),
                TradeKind::Close => JournalChange::Exit(TradeExit {
                    trade_id: t.trade_id.clone(),
                    exit_ts: t.header.ts,
                    exit_price: t.price,
                    pnl_bps: t.pnl_bps?,
                    fees_bps: t.fees_bps,
                    duration_s: t.duration_s.unwrap_or(0.0),
                    mae_bps: t.mae_bps,
                    mfe_bps: t.mfe_bps,
                }),
            }),
            Event::ShadowTrade(s) => Some(match s.kind {
                ShadowKind::Blocked => JournalChange::Shadow(ShadowEntry {
                    shadow_id: s.shadow_id.clone(),
                    signal_id: Some(s.signal_id.clone()),
                    symbol: s.header.symbol.clone(),
                    side: s.side,
                    mode: s.mode,
                    regime: s.regime,
                    blocked_by: s.blocked_by,
                    blocked_ts: s.header.ts,
                    hypothetical_entry: s.hypothetical_entry,
                }),
                ShadowKind::Resolved => JournalChange::Resolve(ShadowResolution {
                    shadow_id: s.shadow_id.clone(),
                    resolved_ts: s.header.ts,
                    outcome_pnl_bps: s.outcome_pnl_bps?,
                }),
            }),
            _ => None,
        }
    }
}

/// The numeric features of a JSON object (booleans as 0/1); other values and
/// malformed JSON give no features rather than losing the trade.
pub fn parse_features(json: &str) -> Vec<(String, f64)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Number(n) => n.as_f64().map(|x| (k, x)),
            serde_json::Value::Bool(b) => Some((k, f64::from(u8::from(b)))),
            _ => None,
        })
        .collect()
}

/// How a batch of changes went: writes that referred to a trade or shadow
/// trade the journal does not hold are counted, not failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub changes: u64,
    pub orphans: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_keep_numbers_and_survive_bad_json() {
        let f = parse_features(r#"{"a": 1.5, "b": true, "c": "x", "d": null}"#);
        assert_eq!(f, [("a".to_string(), 1.5), ("b".to_string(), 1.0)]);
        assert!(parse_features("{not json").is_empty());
        assert!(parse_features("[1, 2]").is_empty());
    }
}
