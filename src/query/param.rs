//! Values bound to a query's parameters (`$1`, `$2`, ...): what callers pass
//! instead of pasting literals into SQL text.

use chrono::{Datelike, NaiveDate};
use datafusion::common::ScalarValue;

/// A date, for `date = $1` and `day = $1`.
pub fn date(day: NaiveDate) -> ScalarValue {
    // Days since 1970-01-01: chrono counts from 0001-01-01 (CE day 1).
    const UNIX_EPOCH_CE_DAY: i32 = 719_163;
    ScalarValue::Date32(Some(day.num_days_from_ce() - UNIX_EPOCH_CE_DAY))
}

/// A text value.
pub fn text(value: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(value.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_from_the_unix_epoch() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        assert_eq!(date(epoch), ScalarValue::Date32(Some(0)));
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(date(day).to_string(), "2026-11-30");
    }
}
