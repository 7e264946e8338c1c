//! The model registry, config history and learning tracker
//! (`<data>/registry.sqlite`), and the model artifacts it names
//! (`<data>/models/sha256/<hex>`).
//!
//! A model's id is the SHA-256 of its bytes, so the same artifact always has
//! the same id and a changed byte makes a new one. Every load hashes the file
//! again and refuses one that no longer matches its name. Aliases
//! (`production`, `shadow`, ...) keep their full history, from when to when, so
//! "which model was live when trade X happened" is one join on time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::RecordBatch;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value as Json;

use super::fsio;
use super::sqlite::{self, Migration, SqliteError};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../sql/registry/0001_init.sql"),
}];

/// The registry file's relations that belong to schema `learning`; the rest
/// are schema `registry`.
pub const LEARNING_RELATIONS: &[&str] = &[
    "training_sessions",
    "feature_importance",
    "v_feature_importance_evolution",
    "v_daily_training",
    "v_learning_curve",
];

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

/// What is known about a model besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct ModelMeta {
    pub name: String,
    pub git_sha: String,
    /// The data manifest: one lake file per line (see [`data_snapshot`]).
    pub data_manifest: String,
    /// JSON object.
    pub params: String,
    /// JSON object.
    pub metrics: String,
    pub parent_id: Option<String>,
    pub tags: Vec<String>,
}

/// One training run, for the learning tracker.
#[derive(Debug, Clone)]
pub struct TrainingSession {
    pub session_id: String,
    pub model_id: Option<String>,
    pub started_ts: i64,
    pub duration_s: f64,
    pub samples: i64,
    pub auc: Option<f64>,
    pub logloss: Option<f64>,
    /// JSON object.
    pub metrics: String,
}

pub use crate::event::sha256_hex;

/// The data snapshot hash of a manifest: the lines (lake file paths, one per
/// line, blank lines and `#` comments ignored) trimmed, sorted and
/// de-duplicated, then hashed. Order and spacing do not change the hash; any
/// file added or removed does.
pub fn data_snapshot(manifest: &str) -> String {
    let mut lines: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort_unstable();
    lines.dedup();
    sha256_hex(lines.join("\n").as_bytes())
}

/// Whether `id` has the form of a model id: 64 lowercase hex characters (a
/// SHA-256), which also means it cannot carry SQL or a path.
pub fn is_model_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_model_id(id: &str) -> Result<(), RegistryError> {
    if is_model_id(id) {
        Ok(())
    } else {
        Err(RegistryError::BadModelId(id.to_string()))
    }
}

fn check_alias(alias: &str) -> Result<(), RegistryError> {
    let ok = (1..=64).contains(&alias.len())
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::BadAlias(alias.to_string()))
    }
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

/// One change between two versions of a config file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfigDiff {
    /// Dotted path to the value (`gates.meta_label.thresholds.scalp`).
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub op: &'static str,
    pub old: Option<Json>,
    pub new: Option<Json>,
}

/// The structured difference between two JSON values (parsed YAML); with no
/// old value, the whole new document is one `added` entry.
pub fn diff_values(old: Option<&Json>, new: &Json) -> Vec<ConfigDiff> {
    fn walk(path: &str, old: Option<&Json>, new: Option<&Json>, out: &mut Vec<ConfigDiff>) {
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match (old, new) {
            (Some(Json::Object(a)), Some(Json::Object(b))) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    walk(&join(k), a.get(k), b.get(k), out);
                }
            }
            (Some(Json::Array(a)), Some(Json::Array(b))) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(&join(&i.to_string()), Some(x), Some(y), out);
                }
            }
            (Some(a), Some(b)) if a == b => {}
            (a, b) => out.push(ConfigDiff {
                path: path.to_string(),
                op: match (a, b) {
                    (None, _) => "added",
                    (_, None) => "removed",
                    _ => "changed",
                },
                old: a.cloned(),
                new: b.cloned(),
            }),
        }
    }
    let mut out = Vec::new();
    walk("", old, Some(new), &mut out);
    out
}

/// The line-by-line difference between two versions of a text file (an
/// analysis's SQL): each added or removed line, numbered in its version.
pub fn diff_lines(old: Option<&str>, new: &str) -> Vec<ConfigDiff> {
    let old = old.unwrap_or("");
    similar::TextDiff::from_lines(old, new)
        .iter_all_changes()
        .filter_map(|change| {
            let text = Json::String(change.value().trim_end_matches('\n').to_string());
            match change.tag() {
                similar::ChangeTag::Equal => None,
                similar::ChangeTag::Delete => Some(ConfigDiff {
                    path: format!("line {}", change.old_index().map_or(0, |i| i + 1)),
                    op: "removed",
                    old: Some(text),
                    new: None,
                }),
                similar::ChangeTag::Insert => Some(ConfigDiff {
                    path: format!("line {}", change.new_index().map_or(0, |i| i + 1)),
                    op: "added",
                    old: None,
                    new: Some(text),
                }),
            }
        })
        .collect()
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

    /// Where the artifact of `model_id` lives.
    pub fn artifact_path(&self, model_id: &str) -> PathBuf {
        self.models_dir.join(model_id)
    }

    /// Stores `bytes` under their SHA-256 (atomically, fsynced) and records the
    /// model. Registering the same bytes again returns the same id and keeps
    /// the first metadata.
    pub fn register(&mut self, bytes: &[u8], meta: &ModelMeta) -> Result<String, RegistryError> {
        let id = sha256_hex(bytes);
        let params = check_json_object("params", &meta.params)?;
        let metrics = check_json_object("metrics", &meta.metrics)?;
        if let Some(parent) = &meta.parent_id {
            check_model_id(parent)?;
            if self.model(parent)?.is_none() {
                return Err(RegistryError::UnknownModel(parent.clone()));
            }
        }
        let path = self.artifact_path(&id);
        // A stored copy that no longer hashes to its name (damaged on disk) is
        // replaced by these bytes, which do.
        let intact = std::fs::read(&path).is_ok_and(|stored| sha256_hex(&stored) == id);
        if !intact {
            fsio::write_bytes_atomic(&path, bytes).map_err(|source| RegistryError::Io {
                path: path.clone(),
                source,
            })?;
        }
        let tags = serde_json::to_string(&meta.tags).unwrap_or_else(|_| "[]".into());
        let snapshot = data_snapshot(&meta.data_manifest);
        let now = sqlite::now_us();
        let name = if meta.name.is_empty() {
            id[..12].to_string()
        } else {
            meta.name.clone()
        };
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO models (model_id, name, size_bytes, git_sha, data_snapshot,
                     data_manifest, params, metrics, parent_id, tags, registered_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    id,
                    name,
                    bytes.len() as i64,
                    meta.git_sha,
                    snapshot,
                    meta.data_manifest,
                    params,
                    metrics,
                    meta.parent_id,
                    tags,
                    now
                ],
            )
        })?;
        Ok(id)
    }

    /// Reads a model's artifact, refusing it unless its bytes still hash to
    /// its id.
    pub fn load(&self, model_id: &str) -> Result<Vec<u8>, RegistryError> {
        check_model_id(model_id)?;
        let path = self.artifact_path(model_id);
        let bytes = std::fs::read(&path).map_err(|source| RegistryError::Io {
            path: path.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if actual != model_id {
            return Err(RegistryError::Tampered {
                path,
                expected: model_id.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// A model's row as a JSON object, if registered.
    pub fn model(&self, model_id: &str) -> Result<Option<Json>, RegistryError> {
        let batches = self.query(
            "SELECT * FROM models WHERE model_id = ?1",
            &[Value::Text(model_id.to_string())],
            "models",
        )?;
        Ok(batches_to_json(&batches).into_iter().next())
    }

    /// Resolves a full id, a unique prefix of one (at least 6 characters), or
    /// an alias to a model id.
    pub fn resolve(&self, id_or_alias: &str) -> Result<String, RegistryError> {
        if let Some(id) = self
            .conn
            .query_row(
                "SELECT model_id FROM model_aliases WHERE alias = ?1 AND to_ts IS NULL",
                [id_or_alias],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(self.sql_err("resolving alias"))?
        {
            return Ok(id);
        }
        if id_or_alias.len() >= 6 {
            let mut stmt = self
                .conn
                .prepare("SELECT model_id FROM models WHERE substr(model_id, 1, ?2) = ?1 LIMIT 2")
                .map_err(self.sql_err("resolving id"))?;
            let ids: Vec<String> = stmt
                .query_map(params![id_or_alias, id_or_alias.len() as i64], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err("resolving id"))?;
            if let [id] = ids.as_slice() {
                return Ok(id.clone());
            }
        }
        Err(RegistryError::UnknownModel(id_or_alias.to_string()))
    }

    /// Gives `alias` to `model_id` from now on, closing the previous holder's
    /// interval. The model's status follows the `production`/`shadow` aliases.
    pub fn set_alias(
        &mut self,
        alias: &str,
        model_id: &str,
        reason: &str,
    ) -> Result<(), RegistryError> {
        self.set_alias_at(alias, model_id, reason, sqlite::now_us())
    }

    /// [`Registry::set_alias`] at a given time (µs), for replays and tests.
    /// Times per alias only move forward: an earlier `at` is taken as just
    /// after the current holder's start.
    pub fn set_alias_at(
        &mut self,
        alias: &str,
        model_id: &str,
        reason: &str,
        at: i64,
    ) -> Result<(), RegistryError> {
        check_alias(alias)?;
        check_model_id(model_id)?;
        if self.model(model_id)?.is_none() {
            return Err(RegistryError::UnknownModel(model_id.to_string()));
        }
        self.write(|tx| {
            let current: Option<(String, i64)> = tx
                .query_row(
                    "SELECT model_id, from_ts FROM model_aliases WHERE alias = ?1 AND to_ts IS NULL",
                    [alias],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if current.as_ref().is_some_and(|(id, _)| id == model_id) {
                return Ok(());
            }
            let at = current.as_ref().map_or(at, |(_, from)| at.max(from + 1));
            if let Some((previous, _)) = &current {
                tx.execute(
                    "UPDATE model_aliases SET to_ts = ?2 WHERE alias = ?1 AND to_ts IS NULL",
                    params![alias, at],
                )?;
                if matches!(alias, "production" | "shadow") {
                    tx.execute(
                        "UPDATE models SET status = 'archived'
                         WHERE model_id = ?1 AND NOT EXISTS (
                             SELECT 1 FROM model_aliases WHERE model_id = ?1 AND to_ts IS NULL)",
                        [previous],
                    )?;
                }
            }
            tx.execute(
                "INSERT INTO model_aliases (alias, model_id, from_ts, reason) VALUES (?1, ?2, ?3, ?4)",
                params![alias, model_id, at, reason],
            )?;
            if matches!(alias, "production" | "shadow") {
                tx.execute(
                    "UPDATE models SET status = ?2 WHERE model_id = ?1",
                    params![model_id, alias],
                )?;
            }
            Ok(())
        })
    }

    /// The model that held `alias` at time `at` (µs), if any.
    pub fn alias_at(&self, alias: &str, at: i64) -> Result<Option<String>, RegistryError> {
        self.conn
            .query_row(
                "SELECT model_id FROM model_aliases
                 WHERE alias = ?1 AND from_ts <= ?2 AND (to_ts IS NULL OR ?2 < to_ts)",
                params![alias, at],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_err("reading alias history"))
    }

    /// Every model, newest first, without the manifest.
    pub fn list(&self) -> Result<Vec<RecordBatch>, RegistryError> {
        self.query(
            "SELECT model_id, name, status, registered_ts, size_bytes, git_sha, data_snapshot,
                    parent_id, tags, metrics
             FROM models ORDER BY registered_ts DESC, model_id",
            &[],
            "models",
        )
    }

    /// Which models held `alias`, from when to when, newest first.
    pub fn alias_history(&self, alias: &str) -> Result<Vec<RecordBatch>, RegistryError> {
        self.query(
            "SELECT alias, model_id, from_ts, to_ts, reason FROM model_aliases
             WHERE alias = ?1 ORDER BY from_ts DESC",
            &[Value::Text(alias.to_string())],
            "model_aliases",
        )
    }

    /// Every alias interval of one model.
    pub fn aliases_of(&self, model_id: &str) -> Result<Vec<RecordBatch>, RegistryError> {
        self.query(
            "SELECT alias, model_id, from_ts, to_ts, reason FROM model_aliases
             WHERE model_id = ?1 ORDER BY from_ts",
            &[Value::Text(model_id.to_string())],
            "model_aliases",
        )
    }

    /// A model's training sessions and their feature importance.
    pub fn feature_importance_of(&self, model_id: &str) -> Result<Vec<RecordBatch>, RegistryError> {
        self.query(
            "SELECT feature, importance, rank, importance_change FROM v_feature_importance_evolution
             WHERE model_id = ?1 ORDER BY rank",
            &[Value::Text(model_id.to_string())],
            "v_feature_importance_evolution",
        )
    }

    /// Training sessions started in [from, to) (µs), oldest first.
    pub fn training_between(&self, from: i64, to: i64) -> Result<Vec<RecordBatch>, RegistryError> {
        self.query(
            "SELECT session_id, model_id, started_ts, duration_s, samples, auc, logloss
             FROM training_sessions WHERE started_ts >= ?1 AND started_ts < ?2
             ORDER BY started_ts",
            &[Value::Integer(from), Value::Integer(to)],
            "training_sessions",
        )
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

    /// Records a config file's content if it differs from the last recorded
    /// version, with a diff: structured for YAML (`*.yaml`, `*.yml`, which
    /// must parse: only accepted configs are recorded), line by line for any
    /// other text (SQL analyses). Returns the change id, or None when nothing
    /// changed.
    pub fn record_config(
        &mut self,
        file: &str,
        content: &str,
        reason: &str,
    ) -> Result<Option<i64>, RegistryError> {
        let sha = sha256_hex(content.as_bytes());
        let last: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT content_sha256, content FROM config_changes WHERE file = ?1
                 ORDER BY change_id DESC LIMIT 1",
                [file],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql_err("reading config history"))?;
        if last.as_ref().is_some_and(|(s, _)| *s == sha) {
            return Ok(None);
        }
        let parse = |text: &str| -> Result<Json, RegistryError> {
            serde_yaml::from_str::<Json>(text).map_err(|e| RegistryError::BadJson {
                what: "config",
                expected: "YAML document",
                message: e.to_string(),
            })
        };
        let is_yaml = file.ends_with(".yaml") || file.ends_with(".yml");
        let changes = if is_yaml {
            let new = parse(content)?;
            // The previous version was valid when recorded; if it no longer
            // parses (a newer YAML parser, say), the diff shows the whole
            // document.
            let old = last.as_ref().and_then(|(_, text)| parse(text).ok());
            diff_values(old.as_ref(), &new)
        } else {
            diff_lines(last.as_ref().map(|(_, text)| text.as_str()), content)
        };
        let diff = serde_json::to_string(&changes).unwrap_or_else(|_| "[]".into());
        let previous = last.map(|(s, _)| s);
        let now = sqlite::now_us();
        let id = self.write(|tx| {
            tx.execute(
                "INSERT INTO config_changes (file, changed_ts, content_sha256, previous_sha256,
                     diff, reason, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![file, now, sha, previous, diff, reason, content],
            )?;
            Ok(tx.last_insert_rowid())
        })?;
        Ok(Some(id))
    }

    /// Records a training run and its feature importance (ranked by value).
    pub fn record_training(
        &mut self,
        session: &TrainingSession,
        importance: &[(String, f64)],
    ) -> Result<(), RegistryError> {
        let metrics = check_json_object("metrics", &session.metrics)?;
        let mut ranked: Vec<(String, f64)> = importance.to_vec();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO training_sessions (session_id, model_id, started_ts,
                     duration_s, samples, auc, logloss, metrics)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    session.session_id,
                    session.model_id,
                    session.started_ts,
                    session.duration_s.max(0.0),
                    session.samples.max(0),
                    session.auc,
                    session.logloss,
                    metrics
                ],
            )?;
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO feature_importance (session_id, feature, importance, rank)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (rank, (feature, value)) in ranked.iter().enumerate() {
                stmt.execute(params![session.session_id, feature, value, rank as i64 + 1])?;
            }
            Ok(())
        })
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

/// Lake files as a data manifest, one path per line relative to the data dir.
pub fn manifest_of(files: impl IntoIterator<Item = String>) -> String {
    let mut lines: Vec<String> = files.into_iter().collect();
    lines.sort_unstable();
    lines.dedup();
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Reads a manifest file, checking that it lists at least one file.
pub fn read_manifest(path: &Path) -> Result<String, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
    {
        return Err(RegistryError::Manifest {
            path: path.to_path_buf(),
            message: "lists no data files (one lake file path per line)".into(),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ModelMeta {
        ModelMeta {
            name: "meta-label".into(),
            git_sha: "abc123".into(),
            data_manifest: "lake/signals/date=2026-11-30/symbol=BTC-USD/a.parquet\n".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ids_are_stable_and_change_with_one_byte() {
        let mut bytes = b"weights: [0.1, 0.2, 0.3]".to_vec();
        let a = sha256_hex(&bytes);
        assert_eq!(a, sha256_hex(&bytes.clone()));
        // Known answer: SHA-256 of the empty string.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        bytes[3] ^= 1;
        assert_ne!(a, sha256_hex(&bytes));
    }

    #[test]
    fn a_tampered_artifact_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(dir.path()).unwrap();
        let id = reg.register(b"model bytes", &meta()).unwrap();
        assert_eq!(reg.load(&id).unwrap(), b"model bytes");
        // Registering the same bytes again gives the same id.
        assert_eq!(reg.register(b"model bytes", &meta()).unwrap(), id);
        let path = reg.artifact_path(&id);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let err = reg.load(&id).unwrap_err();
        assert!(matches!(err, RegistryError::Tampered { .. }), "{err}");
        assert!(err.to_string().contains("tampered"), "{err}");
        // Registering the true bytes again repairs the stored copy.
        reg.register(b"model bytes", &meta()).unwrap();
        assert_eq!(reg.load(&id).unwrap(), b"model bytes");
        assert!(matches!(
            reg.load("../../etc/passwd"),
            Err(RegistryError::BadModelId(_))
        ));
    }

    #[test]
    fn alias_history_answers_who_was_live_when() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(dir.path()).unwrap();
        let a = reg.register(b"a", &meta()).unwrap();
        let b = reg
            .register(
                b"b",
                &ModelMeta {
                    parent_id: Some(a.clone()),
                    ..meta()
                },
            )
            .unwrap();
        reg.set_alias_at("production", &a, "first", 100).unwrap();
        reg.set_alias_at("production", &b, "better auc", 200)
            .unwrap();
        assert_eq!(reg.alias_at("production", 50).unwrap(), None);
        assert_eq!(reg.alias_at("production", 100).unwrap(), Some(a.clone()));
        assert_eq!(reg.alias_at("production", 199).unwrap(), Some(a.clone()));
        assert_eq!(reg.alias_at("production", 200).unwrap(), Some(b.clone()));
        assert_eq!(reg.resolve("production").unwrap(), b);
        assert_eq!(reg.resolve(&a[..8]).unwrap(), a);
        let status = |id: &str| reg.model(id).unwrap().unwrap()["status"].clone();
        assert_eq!(status(&a), "archived");
        assert_eq!(status(&b), "production");
        assert!(matches!(
            reg.set_alias("bad alias!", &a, ""),
            Err(RegistryError::BadAlias(_))
        ));
        let unknown = "0".repeat(64);
        assert!(matches!(
            reg.set_alias("production", &unknown, ""),
            Err(RegistryError::UnknownModel(_))
        ));
    }

    #[test]
    fn bad_metadata_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(dir.path()).unwrap();
        let bad = ModelMeta {
            params: "[1, 2]".into(),
            ..meta()
        };
        assert!(matches!(
            reg.register(b"x", &bad),
            Err(RegistryError::BadJson { what: "params", .. })
        ));
        let orphan = ModelMeta {
            parent_id: Some("f".repeat(64)),
            ..meta()
        };
        assert!(matches!(
            reg.register(b"x", &orphan),
            Err(RegistryError::UnknownModel(_))
        ));
    }

    #[test]
    fn config_changes_are_recorded_once_with_a_diff() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(dir.path()).unwrap();
        let v1 = "gates:\n  spread_gate:\n    max: 5\n    modes: [scalp]\n";
        let v2 =
            "gates:\n  spread_gate:\n    max: 6\n    modes: [scalp]\n  volume_gate:\n    min: 1\n";
        assert!(
            reg.record_config("gates.yaml", v1, "initial")
                .unwrap()
                .is_some()
        );
        assert!(
            reg.record_config("gates.yaml", v1, "same")
                .unwrap()
                .is_none()
        );
        assert!(
            reg.record_config("gates.yaml", v2, "widen spread")
                .unwrap()
                .is_some()
        );
        let diff: String = reg
            .connection()
            .query_row(
                "SELECT diff FROM config_changes ORDER BY change_id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let diff: Json = serde_json::from_str(&diff).unwrap();
        assert_eq!(
            diff,
            serde_json::json!([
                {"path": "gates.spread_gate.max", "op": "changed", "old": 5, "new": 6},
                {"path": "gates.volume_gate", "op": "added", "old": null, "new": {"min": 1}},
            ])
        );
        assert!(reg.record_config("gates.yaml", "a: [", "broken").is_err());
    }

    #[test]
    fn sql_files_are_recorded_with_a_line_diff() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(dir.path()).unwrap();
        let v1 = "-- what\nSELECT a\nFROM t\n";
        let v2 = "-- what\nSELECT b\nFROM t\n";
        reg.record_config("sql/analysis/x.sql", v1, "start")
            .unwrap();
        reg.record_config("sql/analysis/x.sql", v2, "edit")
            .unwrap()
            .unwrap();
        assert!(
            reg.record_config("sql/analysis/x.sql", v2, "same")
                .unwrap()
                .is_none()
        );
        let diff: String = reg
            .conn
            .query_row(
                "SELECT diff FROM config_changes WHERE reason = 'edit'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Json>(&diff).unwrap(),
            serde_json::json!([
                {"path": "line 2", "op": "removed", "old": "SELECT a", "new": null},
                {"path": "line 2", "op": "added", "old": null, "new": "SELECT b"},
            ])
        );
    }

    #[test]
    fn manifests_hash_the_same_in_any_order() {
        assert_eq!(
            data_snapshot("b\na\n"),
            data_snapshot("# files\na\n\n b \na")
        );
        assert_ne!(data_snapshot("a\n"), data_snapshot("a\nc\n"));
    }
}
