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

mod alerts;
mod council;
mod health;
mod retention;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::ValidationLimits;
use crate::flight::{Credentials, FlightConfig, TlsFiles};
use crate::ingest::LoggerConfig;
use crate::query::QueryConfig;
use crate::store::{HotConfig, LakeConfig, StoreConfig};
pub use alerts::{
    AlertsSection, MinSeverity, ReceiverConfig, ReceiverKind, Secret, SecretError,
    TELEGRAM_BASE_URL,
};
pub use council::{CouncilSection, ModelEndpoint, ResponseFormat};
pub use health::HealthSection;
pub use retention::RetentionSection;

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
///
/// Each section is the config of the layer it configures, which documents its
/// own keys and defaults; a section type of this module exists only where the
/// file holds keys the layer's struct does not: `[validation]`
/// ([`ValidationSection`]), `[lake]` ([`LakeSection`]), `[flight]`
/// ([`FlightSection`]), and `[metrics]`, `[prometheus]`, `[alerts]`
/// ([`AlertsSection`], in `config/alerts.rs`) and `[health]`
/// ([`HealthSection`], in `config/health.rs`), which no layer below the app
/// owns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the WAL, hot store and lake live.
    pub data_dir: PathBuf,
    /// Flight SQL listen address. Non-loopback addresses need credentials,
    /// and TLS unless `flight.allow_insecure` is set.
    pub listen: SocketAddr,
    /// `[logger]`: the logger's queue and batches. Its `validation` is not a
    /// key of the section; [`Config::logger_config`] takes it from `[validation]`.
    pub logger: LoggerConfig,
    /// `[validation]`: the limits every event is checked against.
    pub validation: ValidationSection,
    /// `[hot]`: the hot store's retention and checkpoints.
    pub hot: HotConfig,
    /// `[lake]`: rolls, compaction, Parquet, and two WAL keys.
    pub lake: LakeSection,
    /// `[query]`: the query engine's memory.
    pub query: QueryConfig,
    /// `[flight]`: the Flight SQL server's credentials, TLS and limits.
    pub flight: FlightSection,
    /// `[metrics]`: where the definitions are and how often they reload.
    pub metrics: MetricsSection,
    /// `[prometheus]`: the `/metrics` endpoint.
    pub prometheus: PrometheusSection,
    /// `[alerts]`: receivers, cooldown, retries and the outbox
    /// ([`alerts`](AlertsSection), used by `crate::app::alerts`).
    pub alerts: AlertsSection,
    /// `[health]`: the health monitor's sampling and thresholds
    /// ([`health`](HealthSection), used by `crate::app::health`).
    pub health: HealthSection,
    /// `[retention]`: each table's lake retention ([`RetentionSection`], in
    /// `config/retention.rs`, validated into the store's `RetentionConfig`).
    pub retention: RetentionSection,
    /// `[council]`: the model endpoints of `quiver council`
    /// ([`CouncilSection`], in `config/council.rs`); none: offline.
    pub council: CouncilSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./quiver-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            logger: LoggerConfig::default(),
            validation: ValidationSection::default(),
            hot: HotConfig::default(),
            lake: LakeSection::default(),
            query: QueryConfig::default(),
            flight: FlightSection::default(),
            metrics: MetricsSection::default(),
            prometheus: PrometheusSection::default(),
            alerts: AlertsSection::default(),
            health: HealthSection::default(),
            retention: RetentionSection::default(),
            council: CouncilSection::default(),
        }
    }
}

// How the sections below keep unknown keys errors. serde does not support
// `deny_unknown_fields` together with `flatten` in general; what it does, and
// what these sections rely on (each is tested by
// `tests::unknown_keys_in_every_section_are_refused`):
// - a struct that flattens collects every key it does not name, hands them to
//   the flattened struct, and with `deny_unknown_fields` refuses whatever is
//   left. A flattened struct with no `flatten` of its own takes only its own
//   keys, so `deny_unknown_fields` goes on the section (`ValidationSection`,
//   `LakeSection`);
// - a flattened struct that itself flattens is handed every key as a map and
//   leaves them all in the section's buffer, so `deny_unknown_fields` on the
//   section would refuse every key; there the flattened struct refuses the
//   leftovers instead (`FlightSection` holds a `FlightConfig`, which flattens
//   `QueryLimits`).

/// `[validation]`: the [`ValidationLimits`] keys, and `symbols_allowed`, kept
/// here because its file form differs: an ordered list, empty for any symbol,
/// which `Config::check` checks symbol by symbol before it becomes the
/// limits' set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSection {
    /// If non-empty, only these symbols are accepted (`["BTC-USD"]`).
    pub symbols_allowed: Vec<String>,
    /// The other keys (`future_skew_max`, `string_bytes_max`,
    /// `json_bytes_max`); its own `symbols_allowed` is not read.
    #[serde(flatten)]
    pub limits: ValidationLimits,
}

impl ValidationSection {
    /// The limits, with the list of symbols as their set.
    pub fn to_limits(&self) -> ValidationLimits {
        ValidationLimits {
            symbols_allowed: (!self.symbols_allowed.is_empty())
                .then(|| self.symbols_allowed.iter().cloned().collect::<HashSet<_>>()),
            ..self.limits.clone()
        }
    }
}

/// `[lake]`: the [`LakeConfig`] keys, and two keys of the WAL's
/// ([`StoreConfig`]) that have always been set in this section. Derefs to the
/// lake's config, so `config.lake.roll_interval` reads like the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSection {
    /// The lake's own keys (`roll_rows_max`, ...).
    #[serde(flatten)]
    pub lake: LakeConfig,
    /// Size at which the WAL starts a new segment file, in bytes. Default 64 MiB.
    pub wal_segment_bytes_max: u64,
    /// Bytes of recent WAL records kept in memory for the hot store, lake and
    /// journal; one that falls further behind reads the WAL files. Default
    /// 128 MiB.
    pub wal_feed_bytes_max: usize,
}

impl Default for LakeSection {
    fn default() -> Self {
        let store = StoreConfig::new("");
        Self {
            lake: store.lake,
            wal_segment_bytes_max: store.wal_segment_bytes_max,
            wal_feed_bytes_max: store.feed_bytes_max,
        }
    }
}

impl std::ops::Deref for LakeSection {
    type Target = LakeConfig;
    fn deref(&self) -> &LakeConfig {
        &self.lake
    }
}

impl std::ops::DerefMut for LakeSection {
    fn deref_mut(&mut self) -> &mut LakeConfig {
        &mut self.lake
    }
}

/// `[flight]`: the [`FlightConfig`] keys, and the four whose file form
/// differs from the server's: `username` and `password` become its
/// [`Credentials`], `tls_cert` and `tls_key` its [`TlsFiles`], each pair both
/// set or neither (`Config::check`). Its `Debug` hides the password.
///
/// No `deny_unknown_fields` here: the flattened [`FlightConfig`] is handed
/// every key this struct does not name and refuses the unknown ones (see the
/// note above [`ValidationSection`]); this struct would refuse them all.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FlightSection {
    /// Empty: no authentication (then only loopback addresses are allowed).
    pub username: String,
    /// The password of `username` (`QUIVER_FLIGHT__PASSWORD` keeps it out of
    /// the file).
    pub password: String,
    /// PEM certificate chain; with `tls_key`, the server speaks TLS only.
    /// (`tls_client_ca` and `allow_insecure` are the server's own keys.)
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The server's own keys (`token_ttl`, `queries_max`, ...).
    #[serde(flatten)]
    pub server: FlightConfig,
}

impl std::fmt::Debug for FlightSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let FlightSection {
            username,
            password,
            tls_cert,
            tls_key,
            server,
        } = self;
        // Destructured, so a new field cannot be left out; the password
        // shows as set or not, as `Credentials` does.
        f.debug_struct("FlightSection")
            .field("username", username)
            .field("password", &if password.is_empty() { "" } else { "***" })
            .field("tls_cert", tls_cert)
            .field("tls_key", tls_key)
            .field("server", server)
            .finish()
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
    /// How often a running server looks for edits of all three; an edit is
    /// loaded once two polls in a row read the same text.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

/// `[prometheus]`: `/metrics` in the OpenMetrics text format, on a port of
/// its own (`crate::app::prometheus`). Off by default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusSection {
    /// Serve `/metrics` (with `quiver serve` and `quiver demo`). Default false.
    pub enabled: bool,
    /// Where it listens. Default 127.0.0.1:9464: the endpoint has no
    /// credentials, so a non-loopback address is refused unless
    /// `allow_open` is set.
    pub listen: SocketAddr,
    /// Lets `listen` be a non-loopback address. Default false.
    pub allow_open: bool,
}

impl Default for PrometheusSection {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            allow_open: false,
        }
    }
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
        if l.queue_capacity == 0 || l.batch_rows_max == 0 || l.ingest_queue_capacity == 0 {
            return Err(invalid(
                "logger",
                "queue_capacity, batch_rows_max and ingest_queue_capacity must be > 0",
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
        if f.server.tls_client_ca.is_some() && f.tls_cert.is_none() {
            return Err(invalid(
                "flight.tls_client_ca",
                "client certificates need TLS: set tls_cert and tls_key too",
            ));
        }
        if f.server.limits.queries_max == 0
            || f.server.limits.query_memory_bytes_max == 0
            || f.server.ingest_rows_max == 0
            || f.server.ingest_bytes_max == 0
            || f.server.params_bytes_max == 0
        {
            return Err(invalid(
                "flight",
                "queries_max, query_memory_bytes_max, ingest_rows_max, ingest_bytes_max and \
                 params_bytes_max must be > 0",
            ));
        }
        self.alerts.check().map_err(|e| invalid("alerts", e))?;
        self.health.check().map_err(|e| invalid("health", e))?;
        self.council.check().map_err(|e| invalid("council", e))?;
        self.retention
            .to_config(self.hot.retention)
            .map_err(|e| invalid("retention", e))?;
        let p = &self.prometheus;
        if p.enabled && !p.listen.ip().is_loopback() && !p.allow_open {
            return Err(invalid(
                "prometheus.listen",
                format!(
                    "{} is not a loopback address and /metrics has no credentials; set \
                     prometheus.allow_open = true to serve it there",
                    p.listen
                ),
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

    /// The logger's config: `[logger]` with `[validation]`.
    pub fn logger_config(&self) -> LoggerConfig {
        LoggerConfig {
            validation: self.validation.to_limits(),
            ..self.logger.clone()
        }
    }

    /// The store's config: `data_dir`, `[hot]`, and `[lake]` with its WAL keys.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            wal_segment_bytes_max: self.lake.wal_segment_bytes_max,
            feed_bytes_max: self.lake.wal_feed_bytes_max,
            hot: self.hot.clone(),
            lake: self.lake.lake.clone(),
            // Checked when the config was loaded (`check`).
            retention: self
                .retention
                .to_config(self.hot.retention)
                .unwrap_or_default(),
            ..StoreConfig::new(self.data_dir.clone())
        }
    }

    /// The server's config: `[flight]` with `listen`, its credentials and TLS
    /// files.
    pub fn flight_config(&self) -> FlightConfig {
        let f = &self.flight;
        FlightConfig {
            listen: self.listen,
            credentials: (!f.username.is_empty()).then(|| Credentials {
                username: f.username.clone(),
                password: f.password.clone(),
            }),
            tls: f
                .tls_cert
                .clone()
                .zip(f.tls_key.clone())
                .map(|(cert, key)| TlsFiles { cert, key }),
            ..f.server.clone()
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

    /// The query engine's config: `[query]`.
    pub fn query_config(&self) -> QueryConfig {
        self.query.clone()
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

    /// A key no struct owns is refused in every section, flattened or not,
    /// from the file and from the environment, and the error names it.
    #[test]
    fn unknown_keys_in_every_section_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.toml");
        for section in [
            "logger",
            "validation",
            "hot",
            "lake",
            "query",
            "flight",
            "metrics",
            "prometheus",
            "alerts",
            "health",
            "retention",
            "council",
        ] {
            std::fs::write(&file, format!("[{section}]\nbogus_key = 1\n")).unwrap();
            let err = Config::load_from(Some(&file), env(&[]), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("q.toml") && err.contains("bogus_key"),
                "[{section}]: {err}"
            );
            let var = format!("QUIVER_{}__BOGUS_KEY", section.to_ascii_uppercase());
            let err = Config::load_from(None, env(&[(&var, "1")]), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("environment") && err.contains("bogus_key"),
                "{var}: {err}"
            );
        }
        std::fs::write(&file, "bogus_key = 1\n").unwrap();
        let err = Config::load_from(Some(&file), env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus_key"), "{err}");
    }

    /// The file's keys, section by section, as they have always been (the
    /// optional paths, unset by default, are not written out).
    #[test]
    fn keys_stay_in_their_sections() {
        let value = toml::Value::try_from(Config::default()).unwrap();
        let keys = |t: &toml::Value| {
            let mut k: Vec<String> = t.as_table().unwrap().keys().cloned().collect();
            k.sort();
            k.join(" ")
        };
        assert_eq!(
            keys(&value),
            "alerts council data_dir flight health hot lake listen logger metrics prometheus query \
             retention validation"
        );
        let expected = [
            (
                "logger",
                "batch_rows_max critical_overflow_max debug_shed_fill flush_interval \
                 ingest_queue_capacity kill_switch_rearm_fill kill_switch_rearm_hold \
                 kill_switch_trip_fill queue_capacity",
            ),
            (
                "validation",
                "future_skew_max json_bytes_max string_bytes_max symbols_allowed",
            ),
            ("hot", "checkpoint_interval retention"),
            (
                "lake",
                "compact_trigger_files retired_file_grace roll_interval roll_rows_max \
                 row_group_rows_max wal_feed_bytes_max wal_segment_bytes_max zstd_level",
            ),
            ("query", "memory_bytes_max sql_depth_max"),
            (
                "flight",
                "allow_insecure connections_max idle_timeout ingest_bytes_max \
                 ingest_dedup_ids_max ingest_dedup_window ingest_rows_max keepalive_interval \
                 keepalive_timeout message_bytes_max params_bytes_max password plan_timeout \
                 queries_max query_memory_bytes_max query_timeout requests_per_connection_max \
                 result_bytes_max result_rows_max result_stall_timeout tail_buffer_bytes \
                 tails_max token_ttl tokens_max upload_idle_timeout username",
            ),
            ("metrics", "reload_interval"),
            ("prometheus", "allow_open enabled listen"),
            (
                "health",
                "disk_free_critical_bytes disk_free_warn_bytes history_max interval lag_critical \
                 lag_warn queue_fill_critical queue_fill_warn window",
            ),
            (
                "alerts",
                "attempts_max cooldown deliver_wait give_up_after outbox_max poll_interval \
                 receivers request_timeout retry_initial retry_max",
            ),
            ("retention", "check_interval history_max lake_days"),
            (
                "council",
                "analysts attempts_max backoff_max max_tokens request_timeout response_bytes_max",
            ),
        ];
        for (section, want) in expected {
            assert_eq!(keys(&value[section]), want, "[{section}]");
        }
    }

    /// The keys of flattened layer structs are read from the file and the
    /// environment into the layer's config.
    #[test]
    fn flattened_keys_reach_their_layer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.toml");
        std::fs::write(
            &file,
            "[validation]\nfuture_skew_max = \"2s\"\nsymbols_allowed = [\"BTC-USD\"]\n\
             [lake]\nroll_rows_max = 7\nwal_segment_bytes_max = 4096\n\
             [flight]\nqueries_max = 3\ntoken_ttl = \"1h\"\nusername = \"u\"\npassword = \"p\"\n\
             [query]\nmemory_bytes_max = 1024\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[
                ("QUIVER_LAKE__WAL_FEED_BYTES_MAX", "8192"),
                ("QUIVER_FLIGHT__QUERY_TIMEOUT", "30s"),
                ("QUIVER_VALIDATION__JSON_BYTES_MAX", "99"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let logger = c.logger_config();
        assert_eq!(logger.validation.future_skew_max, Duration::from_secs(2));
        assert_eq!(logger.validation.json_bytes_max, 99);
        assert_eq!(
            logger.validation.symbols_allowed,
            Some(HashSet::from(["BTC-USD".to_string()]))
        );
        let store = c.store_config();
        assert_eq!(store.lake.roll_rows_max, 7);
        assert_eq!(store.wal_segment_bytes_max, 4096);
        assert_eq!(store.feed_bytes_max, 8192);
        let flight = c.flight_config();
        assert_eq!(flight.limits.queries_max, 3);
        assert_eq!(flight.limits.query_timeout, Duration::from_secs(30));
        assert_eq!(flight.token_ttl, Duration::from_secs(3600));
        assert_eq!(flight.credentials.map(|c| c.username), Some("u".into()));
        assert_eq!(c.query_config().memory_bytes_max, 1024);
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

    /// The TLS keys and `allow_insecure` reach the server's config, from the
    /// file and from the environment (a boolean key takes `true`).
    #[test]
    fn tls_keys_reach_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.toml");
        std::fs::write(
            &file,
            "[flight]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_client_ca = \"ca.pem\"\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[("QUIVER_FLIGHT__ALLOW_INSECURE", "true")]),
            &Overrides::default(),
        )
        .unwrap();
        let flight = c.flight_config();
        let tls = flight.tls.unwrap();
        assert_eq!(
            (tls.cert, tls.key),
            (PathBuf::from("c.pem"), PathBuf::from("k.pem"))
        );
        assert_eq!(flight.tls_client_ca, Some(PathBuf::from("ca.pem")));
        assert!(flight.allow_insecure);
        assert!(!Config::default().flight_config().allow_insecure);
    }

    #[test]
    fn a_client_ca_needs_tls() {
        let err = Config::load_from(
            None,
            env(&[("QUIVER_FLIGHT__TLS_CLIENT_CA", "ca.pem")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("flight.tls_client_ca") && err.contains("tls_cert"),
            "{err}"
        );
    }

    /// Neither the section nor the whole config shows the password.
    #[test]
    fn debug_hides_the_password() {
        let c = Config::load_from(
            None,
            env(&[
                ("QUIVER_FLIGHT__USERNAME", "quant"),
                ("QUIVER_FLIGHT__PASSWORD", "hunter2"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        for text in [
            format!("{:?}", c.flight),
            format!("{c:?}"),
            format!("{:?}", c.flight_config()),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("quant") && text.contains("***"), "{text}");
        }
    }

    #[test]
    fn alerts_defaults_and_receivers_from_the_file() {
        let a = Config::default().alerts;
        assert_eq!(a.cooldown, Duration::from_secs(300));
        assert_eq!(a.retry_initial, Duration::from_secs(1));
        assert_eq!(a.retry_max, Duration::from_secs(300));
        assert_eq!(a.attempts_max, 8);
        assert_eq!(a.give_up_after, Duration::from_secs(3600));
        assert_eq!(a.request_timeout, Duration::from_secs(10));
        assert_eq!(a.outbox_max, 100_000);
        assert_eq!(a.deliver_wait, Duration::from_secs(30));
        assert!(a.receivers.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.toml");
        std::fs::write(
            &file,
            "[alerts]\ncooldown = \"1m\"\n\
             [[alerts.receivers]]\nname = \"ops\"\nkind = \"telegram\"\nchat_id = \"-100\"\n\
             token_env = \"TG_TOKEN\"\nmin_severity = \"critical\"\n\
             [[alerts.receivers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/x\"\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[("QUIVER_ALERTS__ATTEMPTS_MAX", "3")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.alerts.cooldown, Duration::from_secs(60));
        assert_eq!(c.alerts.attempts_max, 3);
        assert_eq!(c.alerts.receivers.len(), 2);
        let ops = c.alerts.receiver("ops").unwrap();
        assert_eq!(ops.kind, ReceiverKind::Telegram);
        assert_eq!(ops.min_severity, MinSeverity::Critical);
        assert_eq!(
            c.alerts.receiver("hook").unwrap().min_severity,
            MinSeverity::Info
        );
    }

    /// A receiver's unknown key, an inline `token`, a bad kind and a
    /// receiver missing its keys are refused, naming the key or receiver.
    #[test]
    fn alerts_receivers_refuse_unknown_keys_and_inline_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.toml");
        for (body, want) in [
            (
                "name = \"a\"\nkind = \"webhook\"\nurl = \"http://x\"\nbogus_key = 1\n",
                "bogus_key",
            ),
            (
                "name = \"a\"\nkind = \"telegram\"\nchat_id = \"1\"\ntoken = \"123:abc\"\n",
                "token",
            ),
            ("name = \"a\"\nkind = \"sms\"\n", "sms"),
            ("name = \"a\"\nkind = \"discord\"\n", "token_env"),
        ] {
            std::fs::write(&file, format!("[[alerts.receivers]]\n{body}")).unwrap();
            let err = Config::load_from(Some(&file), env(&[]), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{body}: {err}");
            assert!(!err.contains("123:abc"), "{err}");
        }
    }

    /// `[retention]` from the file and the environment reaches the store;
    /// a bad value is refused naming its key.
    #[test]
    fn retention_reaches_the_store_and_bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.toml");
        std::fs::write(
            &file,
            "[retention]\nlake_days = { market_context = 90 }\ncheck_interval = \"5m\"\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[("QUIVER_RETENTION__LAKE_DAYS__SIGNALS", "30")]),
            &Overrides::default(),
        )
        .unwrap();
        let r = c.store_config().retention;
        assert_eq!(
            r.lake_days.get(&crate::event::Table::MarketContext),
            Some(&90)
        );
        assert_eq!(r.lake_days.get(&crate::event::Table::Signal), Some(&30));
        assert_eq!(r.check_interval, Duration::from_secs(300));
        for (body, want) in [
            (
                "lake_days = { decision_traces = 30 }",
                "retention.lake_days.decision_traces",
            ),
            ("lake_days = { signals = 0 }", "retention.lake_days.signals"),
            (
                "lake_days = { signals = 2.5 }",
                "retention.lake_days.signals",
            ),
        ] {
            std::fs::write(&file, format!("[retention]\n{body}\n")).unwrap();
            let err = Config::load_from(Some(&file), env(&[]), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
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
