//! What the journal and the registry share: opening a SQLite file the safe way,
//! versioned migrations, write transactions that survive a busy database, and
//! reading any table or view into Arrow.
//!
//! Every write runs in `BEGIN IMMEDIATE`: a deferred transaction that upgrades
//! to a write gets "database is locked" at once, ignoring the busy timeout.
//! Files are in WAL mode with `synchronous=FULL`, so a committed write survives
//! a crash and readers (other processes included) never block the writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("opening {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: migration {version} failed")]
    Migrate {
        path: PathBuf,
        version: u32,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path} has schema version {found}, newer than this build knows ({known}); \
         use a newer quiver"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("{path}: the database stayed locked for {waited:?}; the write was not made")]
    Busy { path: PathBuf, waited: Duration },
    #[error("{path}: {step}")]
    Sql {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {relation}.{column}: {message}")]
    Column {
        path: PathBuf,
        relation: String,
        column: String,
        message: String,
    },
}

impl SqliteError {
    /// A short reason for status lines ("disk full" where SQLite says so).
    pub fn describe(&self) -> String {
        let full =
            |e: &rusqlite::Error| e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
        match self {
            SqliteError::Open { source, .. }
            | SqliteError::Migrate { source, .. }
            | SqliteError::Sql { source, .. }
                if full(source) =>
            {
                "disk full".to_string()
            }
            SqliteError::Sql { step, source, .. } => format!("{step}: {source}"),
            other => other.to_string(),
        }
    }
}

/// One migration: applied in order of `version`, each in its own transaction.
pub struct Migration {
    pub version: u32,
    pub sql: &'static str,
}

/// How long one statement waits for a lock before SQLite reports busy.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens `path` for reading and writing, creating it, and brings its schema up
/// to date.
pub fn open_rw(path: &Path, migrations: &[Migration]) -> Result<Connection, SqliteError> {
    let open = |source| SqliteError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    // WAL must be set outside a transaction and returns a row.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(open)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, not wal"
        ))));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(open)?;
    set_cache(&conn).map_err(open)?;
    migrate(&mut conn, path, migrations)?;
    Ok(conn)
}

/// Opens `path` read-only (it must exist), for queries and the CLI. Works while
/// another process writes.
pub fn open_ro(path: &Path) -> Result<Connection, SqliteError> {
    let open = |source| SqliteError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    set_cache(&conn).map_err(open)?;
    Ok(conn)
}

/// Page cache per connection. Trade ids are random (UUIDs), so joins and
/// inserts by id touch pages all over the B-tree; SQLite's default 2 MiB
/// cache made `journal stats` over 1M trades and batched inserts several
/// times slower (see benches/journal.rs).
const CACHE_KIB: i64 = 64 * 1024;

fn set_cache(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("PRAGMA cache_size = -{CACHE_KIB};"))
}

fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[Migration],
) -> Result<(), SqliteError> {
    let known = migrations.last().map_or(0, |m| m.version);
    let err = |version| {
        move |source| SqliteError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        }
    };
    let current: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err(0))?;
    if current > known {
        return Err(SqliteError::TooNew {
            path: path.to_path_buf(),
            found: current,
            known,
        });
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err(m.version))?;
        tx.execute_batch(m.sql).map_err(err(m.version))?;
        // PRAGMA takes no parameters; the version is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", m.version))
            .map_err(err(m.version))?;
        tx.commit().map_err(err(m.version))?;
    }
    Ok(())
}

/// Whether an error means another connection holds the write lock.
pub fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits. While another
/// connection holds the lock, waits (the busy timeout, retried) up to
/// `wait_max`; each retry calls `on_retry` so the caller can report it.
pub fn write<T>(
    conn: &mut Connection,
    path: &Path,
    wait_max: Duration,
    mut on_retry: impl FnMut(Duration),
    mut f: impl FnMut(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
) -> Result<T, SqliteError> {
    let started = Instant::now();
    loop {
        let attempt = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        match attempt {
            Ok(value) => return Ok(value),
            Err(e) if is_busy(&e) => {
                let waited = started.elapsed();
                if waited >= wait_max {
                    return Err(SqliteError::Busy {
                        path: path.to_path_buf(),
                        waited,
                    });
                }
                on_retry(waited);
            }
            Err(source) => {
                return Err(SqliteError::Sql {
                    path: path.to_path_buf(),
                    step: "write",
                    source,
                });
            }
        }
    }
}

/// Microseconds since the Unix epoch, the journal's time unit.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The Arrow type of a SQLite column. Columns named `ts` or `*_ts` hold
/// microseconds since the epoch and read as UTC timestamps.
fn arrow_type(column: &str, declared: &str) -> Option<DataType> {
    let declared = declared.to_ascii_uppercase();
    if declared.contains("INT") {
        if column == "ts" || column.ends_with("_ts") {
            Some(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into()),
            ))
        } else {
            Some(DataType::Int64)
        }
    } else if declared.contains("REAL") || declared.contains("FLOA") || declared.contains("DOUB") {
        Some(DataType::Float64)
    } else if declared.contains("TEXT") || declared.contains("CHAR") {
        Some(DataType::Utf8)
    } else {
        None
    }
}

/// A table or view that queries may read.
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub is_view: bool,
    pub schema: SchemaRef,
    /// Indices of the primary key's columns, in key order; empty for views
    /// and tables without a key SQLite enforces as unique and not null.
    pub primary_key: Vec<usize>,
}

/// Every table and view in the database except internal ones (`_*`,
/// `sqlite_*`), with Arrow schemas. A view's computed columns have no declared
/// type in SQLite, so the migrations declare them in `_quiver_column_types`.
pub fn relations(conn: &Connection, path: &Path) -> Result<Vec<Relation>, SqliteError> {
    let sql_err = |step| {
        move |source| SqliteError::Sql {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    let mut stmt = conn
        .prepare(
            "SELECT name, type = 'view' FROM sqlite_master \
             WHERE type IN ('table', 'view') AND name NOT LIKE '\\_%' ESCAPE '\\' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .map_err(sql_err("listing relations"))?;
    let names: Vec<(String, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(sql_err("listing relations"))?;
    let mut declared = conn
        .prepare("SELECT type FROM _quiver_column_types WHERE relation = ?1 AND column = ?2")
        .map_err(sql_err("reading _quiver_column_types"))?;
    let mut out = Vec::with_capacity(names.len());
    for (name, is_view) in names {
        let mut info = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")
            .map_err(sql_err("reading table_info"))?;
        let columns: Vec<(String, String, bool, i64)> = info
            .query_map([&name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(sql_err("reading table_info"))?;
        let mut key: Vec<(i64, usize, bool)> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.3 > 0)
            .map(|(i, c)| (c.3, i, c.2))
            .collect();
        key.sort_unstable();
        // SQLite lets a non-INTEGER primary key hold NULLs unless declared NOT
        // NULL; only a key that is unique and never null is reported.
        let rowid_alias = key.len() == 1 && columns[key[0].1].1.eq_ignore_ascii_case("INTEGER");
        let primary_key: Vec<usize> = if !is_view && (rowid_alias || key.iter().all(|k| k.2)) {
            key.iter().map(|k| k.1).collect()
        } else {
            Vec::new()
        };
        let mut fields = Vec::with_capacity(columns.len());
        for (i, (column, ty, not_null, _)) in columns.into_iter().enumerate() {
            let not_null = not_null || primary_key.contains(&i);
            let ty = if ty.is_empty() {
                declared
                    .query_row([&name, &column], |r| r.get::<_, String>(0))
                    .unwrap_or_default()
            } else {
                ty
            };
            let data_type = arrow_type(&column, &ty).ok_or_else(|| SqliteError::Column {
                path: path.to_path_buf(),
                relation: name.clone(),
                column: column.clone(),
                message: format!(
                    "type {ty:?} has no Arrow mapping; declare it in _quiver_column_types"
                ),
            })?;
            fields.push(Field::new(column, data_type, !not_null));
        }
        out.push(Relation {
            name,
            is_view,
            schema: Arc::new(Schema::new(fields)),
            primary_key,
        });
    }
    Ok(out)
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Ts(TimestampMicrosecondBuilder),
}

/// Reads the rows of a prepared query into batches of `batch_rows` rows, with
/// `schema` giving each result column's type. A value that does not fit its
/// column (text in an INTEGER column of a hand-edited file, say) is an error
/// naming the column, never a panic or a silent NULL.
pub fn read_batches(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[rusqlite::types::Value],
    schema: &SchemaRef,
    batch_rows: usize,
    path: &Path,
    relation: &str,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> Result<(), SqliteError> {
    let sql_err = |source| SqliteError::Sql {
        path: path.to_path_buf(),
        step: "reading rows",
        source,
    };
    let new_builders = || -> Vec<Builder> {
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int64 => Builder::Int(Int64Builder::with_capacity(batch_rows)),
                DataType::Float64 => Builder::Float(Float64Builder::with_capacity(batch_rows)),
                DataType::Timestamp(..) => {
                    Builder::Ts(TimestampMicrosecondBuilder::with_capacity(batch_rows))
                }
                _ => Builder::Text(StringBuilder::with_capacity(batch_rows, batch_rows * 16)),
            })
            .collect()
    };
    let finish = |builders: &mut Vec<Builder>| -> Result<RecordBatch, SqliteError> {
        let arrays: Vec<ArrayRef> = builders
            .iter_mut()
            .zip(schema.fields())
            .map(|(b, f)| -> ArrayRef {
                match b {
                    Builder::Int(b) => Arc::new(b.finish()),
                    Builder::Float(b) => Arc::new(b.finish()),
                    Builder::Text(b) => Arc::new(b.finish()),
                    Builder::Ts(b) => {
                        let tz = match f.data_type() {
                            DataType::Timestamp(_, tz) => tz.clone(),
                            _ => None,
                        };
                        Arc::new(b.finish().with_timezone_opt(tz))
                    }
                }
            })
            .collect();
        RecordBatch::try_new(schema.clone(), arrays).map_err(|e| SqliteError::Column {
            path: path.to_path_buf(),
            relation: relation.to_string(),
            column: String::new(),
            message: e.to_string(),
        })
    };
    let mut builders = new_builders();
    let mut rows_in_batch = 0;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(sql_err)?;
    while let Some(row) = rows.next().map_err(sql_err)? {
        for (i, builder) in builders.iter_mut().enumerate() {
            let value = row.get_ref(i).map_err(sql_err)?;
            let mismatch = || SqliteError::Column {
                path: path.to_path_buf(),
                relation: relation.to_string(),
                column: schema.field(i).name().clone(),
                message: format!("unexpected {:?} value", value.data_type()),
            };
            match (builder, value) {
                (Builder::Int(b), ValueRef::Null) => b.append_null(),
                (Builder::Float(b), ValueRef::Null) => b.append_null(),
                (Builder::Text(b), ValueRef::Null) => b.append_null(),
                (Builder::Ts(b), ValueRef::Null) => b.append_null(),
                (Builder::Int(b), ValueRef::Integer(v)) => b.append_value(v),
                (Builder::Ts(b), ValueRef::Integer(v)) => b.append_value(v),
                (Builder::Float(b), ValueRef::Real(v)) => b.append_value(v),
                // SQLite stores whole REAL values as integers in some paths.
                (Builder::Float(b), ValueRef::Integer(v)) => b.append_value(v as f64),
                (Builder::Text(b), ValueRef::Text(v)) => {
                    b.append_value(std::str::from_utf8(v).map_err(|_| mismatch())?)
                }
                _ => return Err(mismatch()),
            }
        }
        rows_in_batch += 1;
        if rows_in_batch == batch_rows {
            rows_in_batch = 0;
            if !emit(finish(&mut builders)?) {
                return Ok(());
            }
        }
    }
    if rows_in_batch > 0 || schema.fields().is_empty() {
        emit(finish(&mut builders)?);
    }
    Ok(())
}

/// A value bound to a query parameter, so the query layer can push filters
/// down without naming rusqlite.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<&SqlValue> for rusqlite::types::Value {
    fn from(v: &SqlValue) -> Self {
        match v {
            SqlValue::Int(i) => Self::Integer(*i),
            SqlValue::Real(x) => Self::Real(*x),
            SqlValue::Text(s) => Self::Text(s.clone()),
        }
    }
}

/// Quotes an identifier for SQLite (names come from the file's own schema).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Lists the relations of the SQLite file at `path`, opened read-only.
pub fn list_relations(path: &Path) -> Result<Vec<Relation>, SqliteError> {
    relations(&open_ro(path)?, path)
}

/// Runs a read-only query on the file at `path` (its own read-only
/// connection) and hands each batch of `batch_rows` rows to `emit`, which
/// returns false to stop early.
pub fn scan(
    path: &Path,
    relation: &str,
    sql: &str,
    params: &[SqlValue],
    schema: &SchemaRef,
    batch_rows: usize,
    emit: impl FnMut(RecordBatch) -> bool,
) -> Result<(), SqliteError> {
    let conn = open_ro(path)?;
    let mut stmt = conn.prepare(sql).map_err(|source| SqliteError::Sql {
        path: path.to_path_buf(),
        step: "preparing a scan",
        source,
    })?;
    let values: Vec<rusqlite::types::Value> = params.iter().map(Into::into).collect();
    read_batches(&mut stmt, &values, schema, batch_rows, path, relation, emit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: &[Migration] = &[
        Migration {
            version: 1,
            sql: "CREATE TABLE _quiver_column_types (relation TEXT, column TEXT, type TEXT);
                  CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, x REAL, at_ts INTEGER);
                  CREATE TABLE k (a TEXT NOT NULL, b INTEGER NOT NULL, PRIMARY KEY (b, a));",
        },
        Migration {
            version: 2,
            sql: "CREATE VIEW v AS SELECT count(*) AS rows_total FROM t;
                  INSERT INTO _quiver_column_types VALUES ('v', 'rows_total', 'INTEGER');",
        },
    ];

    #[test]
    fn migrations_apply_once_and_a_newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        drop(open_rw(&path, &MIGRATIONS[..1]).unwrap());
        let conn = open_rw(&path, MIGRATIONS).unwrap();
        let v: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        let err = open_rw(&path, &MIGRATIONS[..1]).unwrap_err();
        assert!(
            matches!(
                err,
                SqliteError::TooNew {
                    found: 2,
                    known: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn relations_map_declared_and_view_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        let conn = open_rw(&path, MIGRATIONS).unwrap();
        let rels = relations(&conn, &path).unwrap();
        let names: Vec<&str> = rels.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["k", "t", "v"]);
        // Key order, not column order.
        assert_eq!(rels[0].primary_key, [1, 0]);
        let rels = &rels[1..];
        let t = &rels[0].schema;
        assert_eq!(t.field(1).data_type(), &DataType::Int64);
        assert!(!t.field(1).is_nullable());
        assert_eq!(t.field(2).data_type(), &DataType::Float64);
        assert!(matches!(t.field(3).data_type(), DataType::Timestamp(..)));
        assert_eq!(rels[1].schema.field(0).data_type(), &DataType::Int64);
        assert!(rels[1].is_view);
        // `id TEXT PRIMARY KEY` may hold NULL in SQLite: not reported as a key.
        assert!(rels[0].primary_key.is_empty());
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        let conn = open_rw(&path, MIGRATIONS).unwrap();
        // SQLite's type affinity lets a hand-edited file hold text in INTEGER.
        conn.execute("INSERT INTO t VALUES ('a', 'many', 1.5, 0)", [])
            .unwrap();
        let rels = relations(&conn, &path).unwrap();
        let t = rels.iter().find(|r| r.name == "t").unwrap();
        let mut stmt = conn.prepare("SELECT id, n, x, at_ts FROM t").unwrap();
        let err = read_batches(&mut stmt, &[], &t.schema, 10, &path, "t", |_| true).unwrap_err();
        assert!(err.to_string().contains("t.n: unexpected Text"), "{err}");
    }

    #[test]
    fn a_write_waits_out_a_short_lock_and_reports_a_long_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        let mut conn = open_rw(&path, MIGRATIONS).unwrap();
        conn.busy_timeout(Duration::from_millis(50)).unwrap();
        let mut other = open_rw(&path, MIGRATIONS).unwrap();
        let holder = other
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let mut retries = 0;
        let err = write(
            &mut conn,
            &path,
            Duration::from_millis(200),
            |_| retries += 1,
            |tx| tx.execute("INSERT INTO t (id, n) VALUES ('b', 1)", []),
        )
        .unwrap_err();
        assert!(matches!(err, SqliteError::Busy { .. }), "{err}");
        assert!(retries >= 2);
        holder.commit().unwrap();
        write(
            &mut conn,
            &path,
            Duration::from_secs(1),
            |_| {},
            |tx| tx.execute("INSERT INTO t (id, n) VALUES ('b', 1)", []),
        )
        .unwrap();
    }
}
