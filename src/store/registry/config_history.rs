//! Config history: each version of a config file recorded once, with its
//! difference from the previous one.

use rusqlite::{OptionalExtension, params};
use serde_json::Value as Json;

use super::{Registry, RegistryError, sha256_hex};
use crate::store::sqlite;

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

impl Registry {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
