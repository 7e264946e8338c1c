//! [`MetricName`]: a metric's name, checked once when made. A name is a
//! lower-case SQL identifier Quiver does not reserve, so code that holds one
//! may use it as a view name (`metrics.<name>`), a column or a key without
//! checking or quoting it again.

use serde::Serialize;

use crate::newtype::text_newtype;

/// Names the `metrics` schema keeps for its own tables.
pub const RESERVED_NAMES: &[&str] = &["metric_values", "alerts"];

/// The longest name, in characters (PostgreSQL's identifier length; the
/// limit metric names always had).
pub const NAME_CHARS_MAX: usize = 63;

/// A metric name: 1-63 characters of `[a-z0-9_]`, starting with a letter,
/// not one of [`RESERVED_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MetricName(String);

/// Why text is not a metric name; says the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMetricName {
    #[error("use lower case letters, digits and _, starting with a letter (at most 63)")]
    Shape,
    #[error("this name is reserved for Quiver's own table")]
    Reserved,
}

impl MetricName {
    pub fn parse(name: &str) -> Result<Self, BadMetricName> {
        if !is_identifier(name) {
            return Err(BadMetricName::Shape);
        }
        if RESERVED_NAMES.contains(&name) {
            return Err(BadMetricName::Reserved);
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype!(MetricName, BadMetricName);

/// A lower-case identifier: a letter, then letters, digits and `_`, at most
/// [`NAME_CHARS_MAX`] long. Alert rule names follow the same rule.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= NAME_CHARS_MAX
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identifiers_that_are_not_reserved_are_names() {
        let name = MetricName::parse("win_rate").unwrap();
        assert_eq!(name, "win_rate");
        assert_eq!(name.to_string(), "win_rate");
        assert!(MetricName::parse(&"a".repeat(NAME_CHARS_MAX)).is_ok());
        for bad in [
            "",
            "Win_rate",
            "1st",
            "_x",
            "win rate",
            "x; DROP VIEW metrics.y",
            "x\"",
            &"a".repeat(NAME_CHARS_MAX + 1),
        ] {
            assert_eq!(MetricName::parse(bad), Err(BadMetricName::Shape), "{bad:?}");
        }
        assert_eq!(
            MetricName::parse("metric_values"),
            Err(BadMetricName::Reserved)
        );
    }
}
