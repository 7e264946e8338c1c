//! `[retention]`: how long the lake keeps each event table (used by the lake
//! thread, `crate::store::lake::retention`, which states the rule).
//!
//! ```toml
//! [retention]
//! lake_days = { default = 365, market_context = 90, trades = "forever" }
//! check_interval = "1h"
//! history_max = 100000
//! ```
//!
//! `lake_days` maps a table to the whole days its lake keeps; `default`
//! applies to every table not named, `"forever"` exempts a table from it,
//! and with no entry at all (the default) everything is kept forever. Each
//! value must be an integer from 1 to 36 525 and longer than the hot window
//! (`hot.retention`): the hot store keeps a copy of its window until the lake
//! holds it, and a shorter lake policy would leave rows in `hot.*` that
//! `events.*` no longer has. Files are deleted `lake.retired_file_grace`
//! after their removal, the grace compacted files get: the same reason (a
//! query planned on the older snapshot may still read them), so one key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::Table;
use crate::store::RetentionConfig;
use crate::store::lake::retention::LAKE_DAYS_MAX;

/// The key of `lake_days` that applies to tables not named.
const DEFAULT_KEY: &str = "default";
/// The value that keeps a table forever.
const FOREVER: &str = "forever";
/// The most deletion records `history_max` may ask for.
const HISTORY_MAX_LIMIT: u64 = 10_000_000;

/// `[retention]`, as the file spells it; [`RetentionSection::to_config`]
/// validates it into the store's [`RetentionConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Table name (or `default`) -> whole days, or `"forever"`. Empty by
    /// default: the lake keeps everything.
    pub lake_days: BTreeMap<String, toml::Value>,
    /// Time between two retention passes of the lake thread (the first runs
    /// when it starts), a duration. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Deletion records kept in `system.retention_deletions`; the oldest
    /// finished ones go beyond it. Default 100 000.
    pub history_max: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        let store = RetentionConfig::default();
        Self {
            lake_days: BTreeMap::new(),
            check_interval: store.check_interval,
            history_max: store.history_max,
        }
    }
}

impl RetentionSection {
    /// The store's policy, every key checked; errors name the key.
    /// `hot_window` is `hot.retention`, which each policy must exceed.
    pub fn to_config(&self, hot_window: Duration) -> Result<RetentionConfig, String> {
        let mut named: BTreeMap<Table, Option<u32>> = BTreeMap::new();
        let mut default: Option<u32> = None;
        for (key, value) in &self.lake_days {
            let days = days_of(key, value)?;
            if let Some(d) = days {
                let span = Duration::from_secs(u64::from(d) * 86_400);
                if span <= hot_window {
                    return Err(format!(
                        "retention.lake_days.{key}: {d} days is not longer than the hot window \
                         (hot.retention = {}); the hot store would keep rows the lake has \
                         removed. Lengthen the policy or shorten hot.retention",
                        humantime::format_duration(hot_window)
                    ));
                }
            }
            if key == DEFAULT_KEY {
                default = days
                    .ok_or_else(|| {
                        "retention.lake_days.default: \"forever\" is what no default means; \
                     remove the key"
                            .to_string()
                    })
                    .map(Some)?;
                continue;
            }
            let table = Table::from_name(key).ok_or_else(|| {
                let known: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "retention.lake_days.{key}: no such table (known: {}, or default)",
                    known.join(", ")
                )
            })?;
            named.insert(table, days);
        }
        if self.check_interval < Duration::from_secs(1) {
            return Err("retention.check_interval must be at least 1 s".into());
        }
        if self.history_max == 0 || self.history_max > HISTORY_MAX_LIMIT {
            return Err(format!(
                "retention.history_max must be from 1 to {HISTORY_MAX_LIMIT}"
            ));
        }
        let lake_days = Table::ALL
            .iter()
            .filter_map(|t| match named.get(t) {
                Some(days) => days.map(|d| (*t, d)),
                None => default.map(|d| (*t, d)),
            })
            .collect();
        Ok(RetentionConfig {
            lake_days,
            check_interval: self.check_interval,
            history_max: self.history_max,
            ..RetentionConfig::default()
        })
    }
}

/// One `lake_days` value: whole days, or `None` for "forever". A string of
/// digits counts as its number (the environment layer passes a key it has no
/// default for as text: `QUIVER_RETENTION__LAKE_DAYS__SIGNALS=30`).
fn days_of(key: &str, value: &toml::Value) -> Result<Option<u32>, String> {
    let bad = |what: String| {
        format!(
            "retention.lake_days.{key}: {what}; expected whole days from 1 to {LAKE_DAYS_MAX}, \
             or \"{FOREVER}\""
        )
    };
    let n: i64 = match value {
        toml::Value::Integer(n) => *n,
        toml::Value::String(s) if s == FOREVER => return Ok(None),
        toml::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| bad(format!("{s:?} is not a number of days")))?,
        other => return Err(bad(format!("{other} is not a whole number"))),
    };
    if n < 1 || n > i64::from(LAKE_DAYS_MAX) {
        return Err(bad(format!("{n} is out of range")));
    }
    Ok(Some(u32::try_from(n).unwrap_or(LAKE_DAYS_MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    fn section(text: &str) -> Result<RetentionSection, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn default_applies_to_tables_not_named_and_forever_exempts_one() {
        let s = section(
            "lake_days = { default = 365, market_context = 90, trades = \"forever\" }\n\
             check_interval = \"10m\"\n",
        )
        .unwrap();
        let c = s.to_config(WEEK).unwrap();
        assert_eq!(c.lake_days.get(&Table::MarketContext), Some(&90));
        assert_eq!(c.lake_days.get(&Table::Signal), Some(&365));
        assert_eq!(c.lake_days.get(&Table::Trade), None);
        assert_eq!(c.check_interval, Duration::from_secs(600));
        assert!(
            RetentionSection::default()
                .to_config(WEEK)
                .unwrap()
                .lake_days
                .is_empty()
        );
    }

    /// Hostile values: each error names the key.
    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (text, want) in [
            (
                "lake_days = { decision_traces = 30 }",
                "lake_days.decision_traces: no such table",
            ),
            (
                "lake_days = { signals = 0 }",
                "lake_days.signals: 0 is out of range",
            ),
            (
                "lake_days = { signals = -3 }",
                "lake_days.signals: -3 is out of range",
            ),
            (
                "lake_days = { signals = 1.5 }",
                "lake_days.signals: 1.5 is not a whole number",
            ),
            (
                "lake_days = { signals = \"30d\" }",
                "lake_days.signals: \"30d\" is not a number",
            ),
            (
                "lake_days = { signals = 99999999 }",
                "lake_days.signals: 99999999 is out of range",
            ),
            (
                "lake_days = { signals = true }",
                "lake_days.signals: true is not a whole number",
            ),
            (
                "lake_days = { signals = 7 }",
                "lake_days.signals: 7 days is not longer than the hot window",
            ),
            ("lake_days = { default = \"forever\" }", "lake_days.default"),
            ("history_max = 0", "retention.history_max"),
            ("check_interval = \"0s\"", "retention.check_interval"),
        ] {
            let err = section(text).and_then(|s| s.to_config(WEEK).map(|_| ()));
            let err = err.unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        // A string of digits is a number (the environment's form).
        let s = section("lake_days = { signals = \"30\" }").unwrap();
        assert_eq!(s.to_config(WEEK).unwrap().lake_days[&Table::Signal], 30);
    }
}
