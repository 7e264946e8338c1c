//! Models: artifacts stored under their SHA-256 and checked on every load,
//! ids resolved from prefixes or aliases, and each alias's history.

use std::path::PathBuf;

use arrow::array::RecordBatch;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};
use serde_json::Value as Json;

use super::ids::{AsAlias, AsModelId};
use super::{
    ModelId, Registry, RegistryError, batches_to_json, check_json_object, data_snapshot, sha256_hex,
};
use crate::store::fsio;
use crate::store::sqlite;

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
    pub parent_id: Option<ModelId>,
    pub tags: Vec<String>,
}

impl Registry {
    /// Where the artifact of `model_id` lives.
    pub fn artifact_path(&self, model_id: &ModelId) -> PathBuf {
        self.models_dir.join(model_id.as_str())
    }

    /// Stores `bytes` under their SHA-256 (atomically, fsynced) and records the
    /// model. Registering the same bytes again returns the same id and keeps
    /// the first metadata.
    pub fn register(&mut self, bytes: &[u8], meta: &ModelMeta) -> Result<ModelId, RegistryError> {
        let id = ModelId::of_bytes(bytes);
        let params = check_json_object("params", &meta.params)?;
        let metrics = check_json_object("metrics", &meta.metrics)?;
        if let Some(parent) = &meta.parent_id
            && self.model(parent)?.is_none()
        {
            return Err(RegistryError::UnknownModel(parent.to_string()));
        }
        let path = self.artifact_path(&id);
        // A stored copy that no longer hashes to its name (damaged on disk) is
        // replaced by these bytes, which do.
        let intact = std::fs::read(&path).is_ok_and(|stored| sha256_hex(&stored) == id.as_str());
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
            id.short().to_string()
        } else {
            meta.name.clone()
        };
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO models (model_id, name, size_bytes, git_sha, data_snapshot,
                     data_manifest, params, metrics, parent_id, tags, registered_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    id.as_str(),
                    name,
                    bytes.len() as i64,
                    meta.git_sha,
                    snapshot,
                    meta.data_manifest,
                    params,
                    metrics,
                    meta.parent_id.as_deref(),
                    tags,
                    now
                ],
            )
        })?;
        Ok(id)
    }

    /// Reads a model's artifact, refusing it unless its bytes still hash to
    /// its id.
    pub fn load(&self, model_id: &(impl AsModelId + ?Sized)) -> Result<Vec<u8>, RegistryError> {
        let model_id = &*model_id.as_model_id()?;
        let path = self.artifact_path(model_id);
        let bytes = std::fs::read(&path).map_err(|source| RegistryError::Io {
            path: path.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if *model_id != actual.as_str() {
            return Err(RegistryError::Tampered {
                path,
                expected: model_id.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// A model's row as a JSON object, if registered.
    pub fn model(
        &self,
        model_id: &(impl AsModelId + ?Sized),
    ) -> Result<Option<Json>, RegistryError> {
        let model_id = &*model_id.as_model_id()?;
        let batches = self.query(
            "SELECT * FROM models WHERE model_id = ?1",
            &[Value::Text(model_id.to_string())],
            "models",
        )?;
        Ok(batches_to_json(&batches).into_iter().next())
    }

    /// Resolves a full id, a unique prefix of one (at least 6 characters), or
    /// an alias to a model id.
    pub fn resolve(&self, id_or_alias: &str) -> Result<ModelId, RegistryError> {
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
            return ModelId::parse(&id);
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
                return ModelId::parse(id);
            }
        }
        Err(RegistryError::UnknownModel(id_or_alias.to_string()))
    }

    /// Gives `alias` to `model_id` from now on, closing the previous holder's
    /// interval. The model's status follows the `production`/`shadow` aliases.
    pub fn set_alias(
        &mut self,
        alias: &(impl AsAlias + ?Sized),
        model_id: &(impl AsModelId + ?Sized),
        reason: &str,
    ) -> Result<(), RegistryError> {
        self.set_alias_at(alias, model_id, reason, sqlite::now_us())
    }

    /// [`Registry::set_alias`] at a given time (µs), for replays and tests.
    /// Times per alias only move forward: an earlier `at` is taken as just
    /// after the current holder's start.
    pub fn set_alias_at(
        &mut self,
        alias: &(impl AsAlias + ?Sized),
        model_id: &(impl AsModelId + ?Sized),
        reason: &str,
        at: i64,
    ) -> Result<(), RegistryError> {
        let (alias, model_id) = (&*alias.as_alias()?, &*model_id.as_model_id()?);
        let sets_status = alias.sets_status();
        let (alias, id) = (alias.as_str(), model_id.as_str());
        if self.model(model_id)?.is_none() {
            return Err(RegistryError::UnknownModel(id.to_string()));
        }
        self.write(|tx| {
            let current: Option<(String, i64)> = tx
                .query_row(
                    "SELECT model_id, from_ts FROM model_aliases WHERE alias = ?1 AND to_ts IS NULL",
                    [alias],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if current.as_ref().is_some_and(|(current, _)| current == id) {
                return Ok(());
            }
            let at = current.as_ref().map_or(at, |(_, from)| at.max(from + 1));
            if let Some((previous, _)) = &current {
                tx.execute(
                    "UPDATE model_aliases SET to_ts = ?2 WHERE alias = ?1 AND to_ts IS NULL",
                    params![alias, at],
                )?;
                if sets_status {
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
                params![alias, id, at, reason],
            )?;
            if sets_status {
                tx.execute(
                    "UPDATE models SET status = ?2 WHERE model_id = ?1",
                    params![id, alias],
                )?;
            }
            Ok(())
        })
    }

    /// The model that held `alias` at time `at` (µs), if any.
    pub fn alias_at(
        &self,
        alias: &(impl AsAlias + ?Sized),
        at: i64,
    ) -> Result<Option<ModelId>, RegistryError> {
        let alias = &*alias.as_alias()?;
        let id: Option<String> = self
            .conn
            .query_row(
                "SELECT model_id FROM model_aliases
                 WHERE alias = ?1 AND from_ts <= ?2 AND (to_ts IS NULL OR ?2 < to_ts)",
                params![alias.as_str(), at],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_err("reading alias history"))?;
        id.as_deref().map(ModelId::parse).transpose()
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
    pub fn alias_history(
        &self,
        alias: &(impl AsAlias + ?Sized),
    ) -> Result<Vec<RecordBatch>, RegistryError> {
        let alias = &*alias.as_alias()?;
        self.query(
            "SELECT alias, model_id, from_ts, to_ts, reason FROM model_aliases
             WHERE alias = ?1 ORDER BY from_ts DESC",
            &[Value::Text(alias.to_string())],
            "model_aliases",
        )
    }

    /// Every alias interval of one model.
    pub fn aliases_of(
        &self,
        model_id: &(impl AsModelId + ?Sized),
    ) -> Result<Vec<RecordBatch>, RegistryError> {
        let model_id = &*model_id.as_model_id()?;
        self.query(
            "SELECT alias, model_id, from_ts, to_ts, reason FROM model_aliases
             WHERE model_id = ?1 ORDER BY from_ts",
            &[Value::Text(model_id.to_string())],
            "model_aliases",
        )
    }
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
            parent_id: Some(ModelId::parse(&"f".repeat(64)).unwrap()),
            ..meta()
        };
        assert!(matches!(
            reg.register(b"x", &orphan),
            Err(RegistryError::UnknownModel(_))
        ));
    }
}
