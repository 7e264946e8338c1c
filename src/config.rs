//! Layered configuration: built-in defaults < `quiver.toml` < `QUIVER_*`
//! environment variables < command-line flags. Unknown keys are errors at every
//! layer, so a typo fails loudly.
//!
//! Environment variables name a key by its path, sections joined by `__`:
//! `QUIVER_DATA_DIR=/srv/q`, `QUIVER_LOGGER__QUEUE_CAPACITY=20000`,
//! `QUIVER_LAKE__ROLL_INTERVAL=5m`. A value takes the type of the key it sets:
//! a string or path key keeps the text as written (`QUIVER_FLIGHT__PASSWORD=1234`
//! is the string "1234"), a list key takes a TOML array or comma-separated
//! items (`QUIVER_VALIDATION__SYMBOLS_ALLOWED=BTC-USD,ETH-USD`), and any other
//! key reads the text as a TOML scalar (numbers, booleans).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::ValidationLimits;
use crate::flight::{Credentials, FlightConfig, QueryLimits, TlsFiles};
use crate::ingest::LoggerConfig;
use crate::query::QueryConfig;
use crate::store::{HotConfig, LakeConfig, StoreConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The whole configuration. Every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the WAL, hot store and lake live.
    pub data_dir: PathBuf,
    /// Flight SQL listen address. Non-loopback addresses need credentials.
    pub listen: SocketAddr,
    pub logger: LoggerSection,
    pub validation: ValidationSection,
    pub hot: HotSection,
    pub lake: LakeSection,
    pub query: QuerySection,
    pub flight: FlightSection,
    pub metrics: MetricsSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./quiver-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            logger: LoggerSection::default(),
            validation: ValidationSection::default(),
            hot: HotSection::default(),
            lake: LakeSection::default(),
            query: QuerySection::default(),
            flight: FlightSection::default(),
            metrics: MetricsSection::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggerSection {
    pub queue_capacity: usize,
    pub batch_rows_max: usize,
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    pub debug_shed_fill: f64,
    pub kill_switch_trip_fill: f64,
    pub kill_switch_rearm_fill: f64,
    #[serde(with = "humantime_serde")]
    pub kill_switch_rearm_hold: Duration,
    pub critical_overflow_max: usize,
}

impl Default for LoggerSection {
    fn default() -> Self {
        let d = LoggerConfig::default();
        Self {
            queue_capacity: d.queue_capacity,
            batch_rows_max: d.batch_rows_max,
            flush_interval: d.flush_interval,
            debug_shed_fill: d.debug_shed_fill,
            kill_switch_trip_fill: d.kill_switch_trip_fill,
            kill_switch_rearm_fill: d.kill_switch_rearm_fill,
            kill_switch_rearm_hold: d.kill_switch_rearm_hold,
            critical_overflow_max: d.critical_overflow_max,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSection {
    #[serde(with = "humantime_serde")]
    pub future_skew_max: Duration,
    pub string_bytes_max: usize,
    pub json_bytes_max: usize,
    /// If non-empty, only these symbols are accepted.
    pub symbols_allowed: Vec<String>,
}

impl Default for ValidationSection {
    fn default() -> Self {
        let d = ValidationLimits::default();
        Self {
            future_skew_max: d.future_skew_max,
            string_bytes_max: d.string_bytes_max,
            json_bytes_max: d.json_bytes_max,
            symbols_allowed: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotSection {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
}

impl Default for HotSection {
    fn default() -> Self {
        let d = HotConfig::default();
        Self {
            retention: d.retention,
            checkpoint_interval: d.checkpoint_interval,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSection {
    pub roll_rows_max: usize,
    #[serde(with = "humantime_serde")]
    pub roll_interval: Duration,
    pub compact_trigger_files: usize,
    pub zstd_level: i32,
    pub row_group_rows_max: usize,
    pub wal_segment_bytes_max: u64,
    /// Bytes of recent WAL records kept in memory for the hot store, lake and
    /// journal; one that falls further behind reads the WAL files.
    pub wal_feed_bytes_max: usize,
    #[serde(with = "humantime_serde")]
    pub retired_file_grace: Duration,
}

impl Default for LakeSection {
    fn default() -> Self {
        let d = LakeConfig::default();
        let store = StoreConfig::new("");
        Self {
            roll_rows_max: d.roll_rows_max,
            roll_interval: d.roll_interval,
            compact_trigger_files: d.compact_trigger_files,
            zstd_level: d.zstd_level,
            row_group_rows_max: d.row_group_rows_max,
            wal_segment_bytes_max: store.wal_segment_bytes_max,
            wal_feed_bytes_max: store.feed_bytes_max,
            retired_file_grace: d.retired_file_grace,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerySection {
    pub memory_bytes_max: usize,
}

impl Default for QuerySection {
    fn default() -> Self {
        Self {
            memory_bytes_max: QueryConfig::default().memory_bytes_max,
        }
    }
}

/// Metric definitions and SQL analyses, reloaded while the server runs.
/// Unset paths are the data dir's own copy (`<data_dir>/configs/`, written
/// from the built-in definitions when the dir is first used); a path that is
/// set must exist.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Metric formulas, thresholds and alert rules.
    pub file: Option<PathBuf>,
    /// `*.sql` analyses, one view each.
    pub analysis_dir: Option<PathBuf>,
    /// The gates file whose `explain` templates the gate explainer uses.
    pub gates_file: Option<PathBuf>,
    /// How often a running server looks for edits of all three.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            file: None,
            analysis_dir: None,
            gates_file: None,
            reload_interval: Duration::from_secs(1),
        }
    }
}

/// The Flight SQL server: credentials, TLS and the limits on each query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlightSection {
    /// Empty: no authentication (then only loopback addresses are allowed).
    pub username: String,
    pub password: String,
    /// How long a bearer token from the handshake stays valid.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// PEM certificate chain; with `tls_key`, the server speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub queries_max: usize,
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    pub query_memory_bytes_max: usize,
    pub result_rows_max: u64,
    pub result_bytes_max: u64,
    pub ingest_rows_max: usize,
    pub message_bytes_max: usize,
}

impl Default for FlightSection {
    fn default() -> Self {
        let d = FlightConfig::default();
        Self {
            username: String::new(),
            password: String::new(),
            token_ttl: d.token_ttl,
            tls_cert: None,
            tls_key: None,
            queries_max: d.limits.queries_max,
            query_timeout: d.limits.query_timeout,
            query_memory_bytes_max: d.limits.query_memory_bytes_max,
            result_rows_max: d.limits.result_rows_max,
            result_bytes_max: d.limits.result_bytes_max,
            ingest_rows_max: d.ingest_rows_max,
            message_bytes_max: d.message_bytes_max,
        }
    }
}

fn invalid(origin: impl Into<String>, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.into(),
        message: message.to_string(),
    }
}

/// Merges `over` into `base`, key by key.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(child) = entry {
                insert_path(child, rest, value);
            }
        }
    }
}

/// The value at `path` in `value`, if any.
fn value_at<'a>(value: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_table().and_then(|t| t.get(key)))
}

/// `text` as a TOML value, if it is one.
fn parse_toml_value(text: &str) -> Option<toml::Value> {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
}

/// The environment's layer, each value typed by the key it sets in
/// `defaults` (see the module header).
fn env_layer(vars: impl Iterator<Item = (String, String)>, defaults: &toml::Value) -> toml::Value {
    let mut root = toml::Table::new();
    for (key, text) in vars {
        let Some(path) = key.strip_prefix("QUIVER_") else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let value = match value_at(defaults, &parts) {
            // Strings, and the optional paths that have no default: as
            // written, unless written as a quoted TOML string.
            Some(toml::Value::String(_)) | None => match parse_toml_value(&text) {
                Some(quoted @ toml::Value::String(_)) => quoted,
                _ => toml::Value::String(text),
            },
            Some(toml::Value::Array(_)) => match parse_toml_value(&text) {
                Some(array @ toml::Value::Array(_)) => array,
                _ => toml::Value::Array(
                    text.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                ),
            },
            Some(_) => parse_toml_value(&text).unwrap_or(toml::Value::String(text)),
        };
        insert_path(&mut root, &parts, value);
    }
    toml::Value::Table(root)
}

/// Flag values that override everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
}

impl Config {
    /// Loads the layers. `file` is `--config`, else `./quiver.toml` if present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars(), overrides)
    }

    pub fn load_from(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut value = toml::Value::try_from(Config::default())
            .map_err(|e| invalid("built-in defaults", e))?;
        let default_file = Path::new("quiver.toml");
        let file = file.or_else(|| default_file.exists().then_some(default_file));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let layer: toml::Value = text
                .parse::<toml::Table>()
                .map(toml::Value::Table)
                .map_err(|e| invalid(path.display().to_string(), e))?;
            // Check the file alone first so its errors name the file.
            layer
                .clone()
                .try_into::<Config>()
                .map_err(|e| invalid(path.display().to_string(), e))?;
            merge(&mut value, layer);
        }
        let defaults = value.clone();
        let env_value = env_layer(env, &defaults);
        merge(&mut value, env_value);
        let mut config: Config = value
            .try_into()
            .map_err(|e| invalid("QUIVER_* environment", e))?;
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let l = &self.logger;
        let fill = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(invalid(format!("logger.{name}"), "must be in [0, 1]"))
            }
        };
        fill("debug_shed_fill", l.debug_shed_fill)?;
        fill("kill_switch_trip_fill", l.kill_switch_trip_fill)?;
        fill("kill_switch_rearm_fill", l.kill_switch_rearm_fill)?;
        if l.kill_switch_rearm_fill >= l.kill_switch_trip_fill {
            return Err(invalid(
                "logger.kill_switch_rearm_fill",
                "must be below kill_switch_trip_fill (hysteresis)",
            ));
        }
        if l.queue_capacity == 0 || l.batch_rows_max == 0 {
            return Err(invalid(
                "logger",
                "queue_capacity and batch_rows_max must be > 0",
            ));
        }
        let f = &self.flight;
        if f.username.is_empty() != f.password.is_empty() {
            return Err(invalid(
                "flight",
                "set both username and password, or neither",
            ));
        }
        if f.tls_cert.is_some() != f.tls_key.is_some() {
            return Err(invalid(
                "flight",
                "set both tls_cert and tls_key, or neither",
            ));
        }
        if f.queries_max == 0 || f.query_memory_bytes_max == 0 || f.ingest_rows_max == 0 {
            return Err(invalid(
                "flight",
                "queries_max, query_memory_bytes_max and ingest_rows_max must be > 0",
            ));
        }
        for s in &self.validation.symbols_allowed {
            if !crate::event::is_valid_symbol(s) {
                return Err(invalid(
                    "validation.symbols_allowed",
                    format!("bad symbol {s:?}"),
                ));
            }
        }
        Ok(())
    }

    pub fn logger_config(&self) -> LoggerConfig {
        let l = &self.logger;
        let v = &self.validation;
        LoggerConfig {
            queue_capacity: l.queue_capacity,
            batch_rows_max: l.batch_rows_max,
            flush_interval: l.flush_interval,
            debug_shed_fill: l.debug_shed_fill,
            kill_switch_trip_fill: l.kill_switch_trip_fill,
            kill_switch_rearm_fill: l.kill_switch_rearm_fill,
            kill_switch_rearm_hold: l.kill_switch_rearm_hold,
            critical_overflow_max: l.critical_overflow_max,
            validation: ValidationLimits {
                future_skew_max: v.future_skew_max,
                string_bytes_max: v.string_bytes_max,
                json_bytes_max: v.json_bytes_max,
                symbols_allowed: (!v.symbols_allowed.is_empty())
                    .then(|| v.symbols_allowed.iter().cloned().collect::<HashSet<_>>()),
                ..ValidationLimits::default()
            },
        }
    }

    pub fn store_config(&self) -> StoreConfig {
        let mut c = StoreConfig::new(self.data_dir.clone());
        c.wal_segment_bytes_max = self.lake.wal_segment_bytes_max;
        c.feed_bytes_max = self.lake.wal_feed_bytes_max;
        c.hot = HotConfig {
            retention: self.hot.retention,
            checkpoint_interval: self.hot.checkpoint_interval,
        };
        c.lake = LakeConfig {
            roll_rows_max: self.lake.roll_rows_max,
            roll_interval: self.lake.roll_interval,
            compact_trigger_files: self.lake.compact_trigger_files,
            zstd_level: self.lake.zstd_level,
            row_group_rows_max: self.lake.row_group_rows_max,
            retired_file_grace: self.lake.retired_file_grace,
        };
        c
    }

    pub fn flight_config(&self) -> FlightConfig {
        let f = &self.flight;
        FlightConfig {
            listen: self.listen,
            credentials: (!f.username.is_empty()).then(|| Credentials {
                username: f.username.clone(),
                password: f.password.clone(),
            }),
            token_ttl: f.token_ttl,
            tls: f
                .tls_cert
                .clone()
                .zip(f.tls_key.clone())
                .map(|(cert, key)| TlsFiles { cert, key }),
            limits: QueryLimits {
                queries_max: f.queries_max,
                query_timeout: f.query_timeout,
                query_memory_bytes_max: f.query_memory_bytes_max,
                result_rows_max: f.result_rows_max,
                result_bytes_max: f.result_bytes_max,
            },
            ingest_rows_max: f.ingest_rows_max,
            message_bytes_max: f.message_bytes_max,
            ..FlightConfig::default()
        }
    }

    /// The definitions' paths: those set, else the data dir's copy.
    pub fn definition_paths(&self) -> crate::metrics::DefinitionPaths {
        let m = &self.metrics;
        let mut paths = crate::metrics::DefinitionPaths::in_data_dir(&self.data_dir);
        if let Some(file) = &m.file {
            paths.metrics_file = file.clone();
        }
        if let Some(dir) = &m.analysis_dir {
            paths.analysis_dir = dir.clone();
        }
        if let Some(file) = &m.gates_file {
            paths.gates_file = file.clone();
        }
        if m.file.is_some() && m.analysis_dir.is_some() && m.gates_file.is_some() {
            paths.data_dir = None;
        }
        paths
    }

    pub fn query_config(&self) -> QueryConfig {
        QueryConfig {
            memory_bytes_max: self.query.memory_bytes_max,
            ..QueryConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[logger]\nqueue_capacity = 123\nflush_interval = \"250ms\"\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[("QUIVER_LOGGER__QUEUE_CAPACITY", "456"), ("HOME", "/x")]),
            &Overrides {
                data_dir: Some("/from/flag".into()),
                listen: None,
            },
        )
        .unwrap();
        assert_eq!(c.logger.queue_capacity, 456);
        assert_eq!(c.logger.flush_interval, Duration::from_millis(250));
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(c.logger.batch_rows_max, 5_000);
    }

    /// Each layer's own defaults are the config's defaults: no copy drifts.
    #[test]
    fn defaults_are_each_layers_own() {
        let c = Config::default();
        assert_eq!(
            format!("{:?}", c.logger_config()),
            format!("{:?}", LoggerConfig::default())
        );
        assert_eq!(
            format!("{:?}", c.store_config()),
            format!("{:?}", StoreConfig::new(c.data_dir.clone()))
        );
        assert_eq!(
            format!("{:?}", c.query_config()),
            format!("{:?}", QueryConfig::default())
        );
        assert_eq!(
            format!("{:?}", c.flight_config()),
            format!("{:?}", FlightConfig::default())
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.toml");
        std::fs::write(&file, "[logger]\nqueue_capacty = 1\n").unwrap();
        let err = Config::load_from(Some(&file), env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("q.toml") && err.contains("queue_capacty"),
            "{err}"
        );

        let err = Config::load_from(
            None,
            env(&[("QUIVER_LOGER__X", "1")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("environment") && err.contains("loger"),
            "{err}"
        );
    }

    #[test]
    fn environment_values_take_the_type_of_their_key() {
        let c = Config::load_from(
            None,
            env(&[
                ("QUIVER_FLIGHT__USERNAME", "007"),
                ("QUIVER_FLIGHT__PASSWORD", "1234"),
                ("QUIVER_FLIGHT__TLS_CERT", "/etc/quiver/cert.pem"),
                ("QUIVER_FLIGHT__TLS_KEY", "true"),
                ("QUIVER_HOT__RETENTION", "\"3days\""),
                ("QUIVER_DATA_DIR", "2026"),
                ("QUIVER_VALIDATION__SYMBOLS_ALLOWED", "BTC-USD, ETH-USD"),
                ("QUIVER_LOGGER__QUEUE_CAPACITY", "456"),
                ("QUIVER_LAKE__ROLL_INTERVAL", "5m"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.flight.username, "007");
        assert_eq!(c.flight.password, "1234");
        assert_eq!(
            c.flight.tls_cert,
            Some(PathBuf::from("/etc/quiver/cert.pem"))
        );
        assert_eq!(c.flight.tls_key, Some(PathBuf::from("true")));
        assert_eq!(c.hot.retention, Duration::from_secs(3 * 86_400));
        assert_eq!(c.data_dir, PathBuf::from("2026"));
        assert_eq!(c.validation.symbols_allowed, ["BTC-USD", "ETH-USD"]);
        assert_eq!(c.logger.queue_capacity, 456);
        assert_eq!(c.lake.roll_interval, Duration::from_secs(300));
        let c = Config::load_from(
            None,
            env(&[("QUIVER_VALIDATION__SYMBOLS_ALLOWED", "[\"SOL-USD\"]")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.validation.symbols_allowed, ["SOL-USD"]);
        // A number key still refuses text, naming the layer.
        let err = Config::load_from(
            None,
            env(&[("QUIVER_LOGGER__QUEUE_CAPACITY", "many")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("environment") && err.contains("many"), "{err}");
    }

    #[test]
    fn rearm_must_be_below_trip() {
        let err = Config::load_from(
            None,
            env(&[("QUIVER_LOGGER__KILL_SWITCH_REARM_FILL", "0.99")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("hysteresis"), "{err}");
    }
}
