//! SQL analyses: each `sql/analysis/NAME.sql` holds one SELECT under a header
//! comment that says what it answers, and becomes the view `analysis.NAME`.

use std::path::{Path, PathBuf};

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;

use super::MetricsError;

/// A `.sql` file larger than this is refused before parsing.
pub const FILE_BYTES_MAX: u64 = 256 << 10;
pub const ANALYSES_MAX: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub name: String,
    pub path: PathBuf,
    /// The header comment: what the analysis answers.
    pub description: String,
    pub sql: String,
}

/// Reads every `*.sql` file in `dir` (sorted by name); all or nothing.
pub fn load_dir(dir: &Path) -> Result<Vec<Analysis>, MetricsError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| MetricsError::file(dir, format!("cannot read the directory: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| MetricsError::file(dir, format!("cannot read the directory: {e}")))?
            .path();
        if path.extension().is_some_and(|e| e == "sql") {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.len() > ANALYSES_MAX {
        return Err(MetricsError::file(
            dir,
            format!("{} analyses; at most {ANALYSES_MAX}", paths.len()),
        ));
    }
    paths.iter().map(|p| load_file(p)).collect()
}

fn load_file(path: &Path) -> Result<Analysis, MetricsError> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let err = |message: String| MetricsError::analysis(path, &name, message);
    let valid_name = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return Err(err(
            "name the file with lower case letters, digits and _ (it becomes the view's name)"
                .into(),
        ));
    }
    let size = std::fs::metadata(path)
        .map_err(|e| err(format!("cannot read: {e}")))?
        .len();
    if size > FILE_BYTES_MAX {
        return Err(err(format!("{size} bytes; at most {FILE_BYTES_MAX}")));
    }
    let sql = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    parse(path, &name, &sql)
}

/// Checks one analysis's text: a header comment, then exactly one query.
pub fn parse(path: &Path, name: &str, sql: &str) -> Result<Analysis, MetricsError> {
    let err = |message: String| MetricsError::analysis(path, name, message);
    let description = sql
        .lines()
        .map(str::trim)
        .take_while(|l| l.starts_with("--"))
        .map(|l| l.trim_start_matches('-').trim())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string();
    if description.is_empty() {
        return Err(err(
            "start the file with a -- comment that says what the analysis answers".into(),
        ));
    }
    let statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| err(format!("does not parse: {e}")))?;
    if statements.len() != 1 {
        return Err(err(format!(
            "holds {} statements; an analysis is exactly one SELECT",
            statements.len()
        )));
    }
    match statements.front() {
        Some(DfStatement::Statement(s)) if matches!(s.as_ref(), Statement::Query(_)) => {}
        _ => {
            return Err(err(
                "an analysis is one SELECT (or WITH ... SELECT), nothing else".into(),
            ));
        }
    }
    Ok(Analysis {
        name: name.to_string(),
        path: path.to_path_buf(),
        description,
        sql: sql.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Result<Analysis, MetricsError> {
        parse(Path::new("a.sql"), "a", sql)
    }

    #[test]
    fn one_commented_select_is_an_analysis() {
        let a = check("-- How many signals?\n-- Per mode.\nSELECT mode, count(*) FROM signals GROUP BY mode\n")
            .unwrap();
        assert_eq!(a.description, "How many signals? Per mode.");
    }

    #[test]
    fn anything_else_is_refused_with_the_file_named() {
        for (sql, expected) in [
            ("SELECT 1", "-- comment"),
            ("-- x\nSELECT 1; SELECT 2", "2 statements"),
            ("-- x\nDROP TABLE signals", "one SELECT"),
            ("-- x\nCOPY signals TO '/tmp/x.parquet'", "one SELECT"),
            (
                "-- x\nCREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "one SELECT",
            ),
            ("-- x\nSELECT (", "does not parse"),
        ] {
            let e = check(sql).unwrap_err().to_string();
            assert!(e.starts_with("a.sql: analysis `a`: "), "{e}");
            assert!(e.contains(expected), "{sql}: {e}");
        }
    }
}
