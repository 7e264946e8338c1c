//! Where a row lives in the lake: partition directories and file names.
//!
//! ```text
//! <table>/date=YYYY-MM-DD/symbol=<value>/part-<seq_from:020>-<seq_to:020>-<nonce:016x>.parquet
//! ```
//!
//! **Symbols on case-insensitive file systems.** macOS and Windows fold case,
//! so `symbol=BTC` and `symbol=btc` would be one directory and two symbols would
//! share (and overwrite) each other's files. The value is therefore written
//! with every lowercase ASCII letter percent-encoded (`btc` -> `%62%74%63`,
//! `BTC-USD` unchanged). Distinct symbols then have directory names that still
//! differ after case folding, and hive readers (DuckDB, pyarrow, polars, Spark)
//! percent-decode partition values, so they read the symbol as it was logged.
//! Directories written before this rule (`symbol=btc`) are still read.
//!
//! **File names** carry the WAL sequence range of their rows and a random
//! nonce: a name is never used twice in the life of a data dir, so a file left
//! by a crashed roll can never be mistaken for (or overwritten by) the retry.

use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use chrono::NaiveDate;

use super::LakeError;
use crate::event::{SYMBOL_COLUMN, Table, is_valid_symbol};

/// The directory name's value for a symbol (see the module docs).
pub fn encode_symbol(symbol: &str) -> String {
    let mut out = String::with_capacity(symbol.len() * 3);
    for b in symbol.bytes() {
        if b.is_ascii_lowercase() {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// The symbol a directory value names: percent-decoded, and valid.
pub fn decode_symbol(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| is_valid_symbol(s))
}

/// `<root>/<table>`: every file of one lake table is under it.
pub fn table_dir(root: &Path, table: &str) -> PathBuf {
    root.join(table)
}

/// `<root>/<table>/date=YYYY-MM-DD`.
pub fn date_dir(root: &Path, table: &str, date: NaiveDate) -> PathBuf {
    table_dir(root, table).join(format!("date={}", date.format("%Y-%m-%d")))
}

/// `<root>/<table>/date=.../symbol=...`.
pub fn partition_dir(root: &Path, table: Table, date: NaiveDate, symbol: &str) -> PathBuf {
    date_dir(root, table.name(), date).join(format!("symbol={}", encode_symbol(symbol)))
}

/// The one file of a day of a table derived from events (`metric_values`,
/// `alerts`): `<root>/<table>/date=.../<table>.parquet`, replaced whole when
/// the day is computed again.
pub fn day_file(root: &Path, table: &str, date: NaiveDate) -> PathBuf {
    date_dir(root, table, date).join(format!("{table}.parquet"))
}

/// A new, never used file name for rows of sequences `from..=to`.
pub fn part_name(from: u64, to: u64) -> String {
    format!(
        "part-{from:020}-{to:020}-{:016x}.parquet",
        rand::random::<u64>()
    )
}

/// The sequence range a part file's name announces (old names without a nonce
/// included).
pub fn parse_part_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let mut parts = rest.split('-');
    let from = parts.next()?.parse().ok()?;
    let to = parts.next()?.parse().ok()?;
    match parts.next() {
        None => {}
        Some(nonce) if nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit()) => {}
        Some(_) => return None,
    }
    (parts.next().is_none() && from <= to).then_some((from, to))
}

/// The (table, date, symbol, seq range) a path under the lake root names.
pub fn parse_path(root: &Path, path: &Path) -> Option<(Table, NaiveDate, String, u64, u64)> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts = rel.iter().map(|p| p.to_str());
    let table = Table::from_name(parts.next()??)?;
    let date = NaiveDate::parse_from_str(parts.next()??.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    let symbol = decode_symbol(parts.next()??.strip_prefix("symbol=")?)?;
    let (from, to) = parse_part_name(parts.next()??)?;
    parts
        .next()
        .is_none()
        .then_some((table, date, symbol, from, to))
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Sorts a table batch by (symbol, ts) and splits it into (date, symbol) runs.
pub fn split_partitions(
    batch: &RecordBatch,
) -> Result<Vec<(NaiveDate, String, RecordBatch)>, LakeError> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let sort = [
        SortColumn {
            values: batch.column(SYMBOL_COLUMN).clone(),
            options: None,
        },
        SortColumn {
            values: batch.column(1).clone(),
            options: None,
        },
    ];
    let indices = lexsort_to_indices(&sort, None).map_err(LakeError::Arrow)?;
    let sorted = take_record_batch(batch, &indices).map_err(LakeError::Arrow)?;
    let symbols = as_strings(sorted.column(SYMBOL_COLUMN))?;
    let ts = sorted
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| schema_error("ts is not a microsecond timestamp"))?;
    let day = |i: usize| ts.value(i).div_euclid(MICROS_PER_DAY);
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=sorted.num_rows() {
        let boundary = i == sorted.num_rows()
            || symbols.value(i) != symbols.value(start)
            || day(i) != day(start);
        if boundary {
            out.push((
                date_of_day(day(start)),
                symbols.value(start).to_owned(),
                sorted.slice(start, i - start),
            ));
            start = i;
        }
    }
    Ok(out)
}

/// The calendar date of a day number since 1970-01-01.
pub fn date_of_day(day: i64) -> NaiveDate {
    let days = i32::try_from(day).unwrap_or(0);
    NaiveDate::from_num_days_from_ce_opt(days + 719_163).unwrap_or_default()
}

/// The day number since 1970-01-01 of a date.
pub fn day_of_date(date: NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - 719_163
}

fn schema_error(message: &str) -> LakeError {
    LakeError::Arrow(arrow::error::ArrowError::SchemaError(message.into()))
}

fn as_strings(array: &ArrayRef) -> Result<&StringArray, LakeError> {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| schema_error("symbol is not Utf8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uppercase_symbols_keep_their_names() {
        assert_eq!(encode_symbol("BTC-USD"), "BTC-USD");
        assert_eq!(encode_symbol("btc"), "%62%74%63");
        assert_eq!(decode_symbol("%62%74%63").as_deref(), Some("btc"));
        // Directories of the old form are still read.
        assert_eq!(decode_symbol("btc").as_deref(), Some("btc"));
        assert_eq!(decode_symbol("%2F"), None);
        assert_eq!(decode_symbol("%zz"), None);
        assert_eq!(decode_symbol("%6"), None);
    }

    #[test]
    fn part_names_are_unique_and_parse() {
        let (a, b) = (part_name(3, 17), part_name(3, 17));
        assert_ne!(a, b);
        assert_eq!(parse_part_name(&a), Some((3, 17)));
        assert_eq!(
            parse_part_name("part-00000000000000000003-00000000000000000017.parquet"),
            Some((3, 17))
        );
        assert_eq!(parse_part_name("part-1.parquet"), None);
        assert_eq!(parse_part_name("part-5-3.parquet"), None);
        assert_eq!(parse_part_name("part-1-2-xyz.parquet"), None);
        assert_eq!(parse_part_name("x.parquet"), None);
    }

    fn symbol() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._-]{1,32}".prop_filter("not . or ..", |s| s != "." && s != "..")
    }

    proptest! {
        /// Every valid symbol round-trips through its directory name.
        #[test]
        fn symbols_round_trip(s in symbol()) {
            prop_assert_eq!(decode_symbol(&encode_symbol(&s)), Some(s));
        }

        /// Distinct symbols get directory names that stay distinct when a file
        /// system folds case.
        #[test]
        fn distinct_symbols_never_collide_when_case_is_folded(a in symbol(), b in symbol()) {
            prop_assume!(a != b);
            prop_assert_ne!(encode_symbol(&a).to_ascii_lowercase(), encode_symbol(&b).to_ascii_lowercase());
        }

        /// Paths round-trip: table, date, symbol and range come back.
        #[test]
        fn paths_round_trip(s in symbol(), day in 0i64..40_000, from in 0u64..1_000_000, len in 0u64..1_000) {
            let root = Path::new("/lake");
            let date = date_of_day(day);
            let path = partition_dir(root, Table::Trade, date, &s).join(part_name(from, from + len));
            prop_assert_eq!(parse_path(root, &path), Some((Table::Trade, date, s, from, from + len)));
        }
    }
}
