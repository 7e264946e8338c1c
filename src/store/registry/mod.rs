//! The model registry, config history and learning tracker
//! (`<data>/registry.sqlite`), and the model artifacts it names
//! (`<data>/models/sha256/<hex>`).
//!
//! A model's id is the SHA-256 of its bytes, so the same artifact always has
//! the same id and a changed byte makes a new one. Every load hashes the file
//! again and refuses one that no longer matches its name. Aliases
//! (`production`, `shadow`, ...) keep their full history, from when to when, so
//! "which model was live when trade X happened" is one join on time.
//!
//! | file | holds |
//! |---|---|
//! | [`models`] | registering and loading artifacts, resolving ids, aliases and their history |
//! | [`config_history`] | config files recorded on change, with a structured or line diff |
//! | [`learning`] | training sessions and feature importance |
//! | [`manifest`] | data manifests and their snapshot hash |

pub mod config_history;
pub mod ids;
pub mod learning;
pub mod manifest;
pub mod models;

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::RecordBatch;
use rusqlite::Connection;
use rusqlite::types::Value;
use serde_json::Value as Json;

use super::sqlite::{self, Migration, SqliteError};
pub use crate::event::sha256_hex;
pub use config_history::{ConfigDiff, diff_lines, diff_values};
pub use ids::{Alias, AsAlias, AsModelId, ModelId, is_model_id};
pub use learning::{LEARNING_RELATIONS, TrainingSession};
pub use manifest::{data_snapshot, manifest_of, read_manifest};
pub use models::ModelMeta;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../../sql/registry/0001_init.sql"),
}];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Sqlite(#[from] SqliteError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "model artifact {path} is corrupt or was tampered with: its SHA-256 is {actual}, \
         not {expected}; refusing to load it"
    )]
    Tampered {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("no model {0} in the registry")]
    UnknownModel(String),
    #[error("model id {0:?} is not a SHA-256 hex digest (64 characters 0-9a-f)")]
    BadModelId(String),
    #[error("data manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{what} must be a JSON {expected}: {message}")]
    BadJson {
        what: &'static str,
        expected: &'static str,
        message: String,
    },
    #[error("alias {0:?} must be 1-64 characters of [A-Za-z0-9._-]")]
    BadAlias(String),
}

fn check_json_object(what: &'static str, text: &str) -> Result<String, RegistryError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    match serde_json::from_str::<Json>(text) {
        Ok(v @ Json::Object(_)) => Ok(v.to_string()),
        Ok(_) => Err(RegistryError::BadJson {
            what,
            expected: "object",
            message: "not an object".into(),
        }),
        Err(e) => Err(RegistryError::BadJson {
            what,
            expected: "object",
            message: e.to_string(),
        }),
    }
}

/// A connection to the registry, and the artifact directory.
pub struct Registry {
    conn: Connection,
    path: PathBuf,
    models_dir: PathBuf,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish()
    }
}

impl Registry {
    /// Opens (creating and migrating) the registry of a data directory.
    pub fn open(data_dir: &Path) -> Result<Self, RegistryError> {
        let layout = super::Layout::new(data_dir);
        let (path, models_dir) = (layout.registry(), layout.models());
        std::fs::create_dir_all(&models_dir).map_err(|source| RegistryError::Io {
            path: models_dir.clone(),
            source,
        })?;
        Ok(Self {
            conn: sqlite::open_rw(&path, MIGRATIONS)?,
            path,
            models_dir,
        })
    }

    /// Opens an existing registry read-only.
    pub fn open_read_only(data_dir: &Path) -> Result<Self, RegistryError> {
        let layout = super::Layout::new(data_dir);
        let path = layout.registry();
        Ok(Self {
            conn: sqlite::open_ro(&path)?,
            path,
            models_dir: layout.models(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn sql_err(&self, step: &'static str) -> impl Fn(rusqlite::Error) -> RegistryError + '_ {
        move |source| {
            RegistryError::Sqlite(SqliteError::Sql {
                path: self.path.clone(),
                step,
                source,
            })
        }
    }

    fn write<T>(
        &mut self,
        f: impl FnMut(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, RegistryError> {
        let path = self.path.clone();
        Ok(sqlite::write(
            &mut self.conn,
            &path,
            Duration::from_secs(60),
            |waited| {
                tracing::warn!(
                    waited_s = waited.as_secs_f64(),
                    "registry is locked; retrying"
                )
            },
            f,
        )?)
    }

    /// Runs a read query into Arrow, typed by `relation`'s schema projected to
    /// the query's columns.
    pub fn query(
        &self,
        sql: &str,
        params: &[Value],
        relation: &str,
    ) -> Result<Vec<RecordBatch>, RegistryError> {
        query_relation(&self.conn, &self.path, sql, params, relation)
    }
}

/// Runs `sql` (whose columns are all columns of `relation`, by name) into
/// Arrow batches.
pub fn query_relation(
    conn: &Connection,
    path: &Path,
    sql: &str,
    params: &[Value],
    relation: &str,
) -> Result<Vec<RecordBatch>, RegistryError> {
    let rel = sqlite::relations(conn, path)?
        .into_iter()
        .find(|r| r.name == relation)
        .ok_or_else(|| {
            RegistryError::Sqlite(SqliteError::Column {
                path: path.to_path_buf(),
                relation: relation.to_string(),
                column: String::new(),
                message: "no such table or view".into(),
            })
        })?;
    let mut stmt = conn.prepare(sql).map_err(|source| {
        RegistryError::Sqlite(SqliteError::Sql {
            path: path.to_path_buf(),
            step: "preparing a query",
            source,
        })
    })?;
    let fields: Vec<arrow::datatypes::FieldRef> = stmt
        .column_names()
        .map(|name| {
            rel.schema
                .field_with_name(name)
                .map(|f| std::sync::Arc::new(f.clone()))
                .map_err(|_| {
                    RegistryError::Sqlite(SqliteError::Column {
                        path: path.to_path_buf(),
                        relation: relation.to_string(),
                        column: name.to_string(),
                        message: "not a column of the relation".into(),
                    })
                })
        })
        .collect::<Result<_, _>>()?;
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    let mut out = Vec::new();
    sqlite::read_batches(&mut stmt, params, &schema, 8192, path, relation, |b| {
        out.push(b);
        true
    })?;
    if out.is_empty() {
        out.push(RecordBatch::new_empty(schema));
    }
    Ok(out)
}

/// Rows as JSON objects (column name to value).
pub fn batches_to_json(batches: &[RecordBatch]) -> Vec<Json> {
    let mut buf = Vec::new();
    let mut writer = arrow::json::ArrayWriter::new(&mut buf);
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    if writer.write_batches(&refs).is_err() || writer.finish().is_err() {
        return Vec::new();
    }
    match serde_json::from_slice::<Json>(&buf) {
        Ok(Json::Array(rows)) => rows,
        _ => Vec::new(),
    }
}
