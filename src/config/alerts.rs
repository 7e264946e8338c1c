//! `[alerts]`: where alerts go and how hard delivery tries (used by
//! `crate::app::alerts`). Secrets are never keys of the file: a receiver names
//! an environment variable (`token_env`) or a file (`token_file`) that holds
//! its token (Telegram) or its webhook URL (Discord), read when a receiver is
//! built; errors name the variable or the file, never the value, and `Debug`
//! shows only where a secret comes from.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[alerts]`: delivery settings and the receivers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// After a receiver got a notice of a rule with some dimensions, further
    /// notices of the same (receiver, rule, dimensions) are dropped for this
    /// long. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// The wait before the first retry; it doubles with each attempt.
    /// Default 1 s.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// The longest backoff between two attempts (a receiver's own
    /// `retry_after` may ask for longer and is honoured). Default 5 min.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Attempts per notice before it is given up. Default 8.
    pub attempts_max: u32,
    /// A notice not delivered this long after it was enqueued is given up.
    /// Default 1 h.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Time one HTTP request may take, connect to last byte. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Notices waiting in the outbox at most; an enqueue over it is refused
    /// (logged and counted), never waited for. Default 100 000.
    pub outbox_max: u64,
    /// How often the delivery worker looks at the outbox when nothing woke
    /// it (another process may have enqueued). Default 500 ms.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long `metrics compute`, when no server holds the data dir,
    /// delivers what it enqueued before it exits; what is left stays in the
    /// outbox for the next run. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub deliver_wait: Duration,
    /// `[[alerts.receivers]]`: none by default (alerts then stay in the lake
    /// only).
    pub receivers: Vec<ReceiverConfig>,
}

impl Default for AlertsSection {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(5 * 60),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(5 * 60),
            attempts_max: 8,
            give_up_after: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
            outbox_max: 100_000,
            poll_interval: Duration::from_millis(500),
            deliver_wait: Duration::from_secs(30),
            receivers: Vec::new(),
        }
    }
}

impl AlertsSection {
    /// Checks what serde cannot: unique names, each kind's keys, a secret
    /// where one is needed, limits above zero.
    pub fn check(&self) -> Result<(), String> {
        if self.attempts_max == 0 {
            return Err("alerts.attempts_max must be at least 1".into());
        }
        if self.outbox_max == 0 {
            return Err("alerts.outbox_max must be at least 1".into());
        }
        if self.request_timeout.is_zero() || self.poll_interval.is_zero() {
            return Err("alerts.request_timeout and alerts.poll_interval must be above 0".into());
        }
        if self.retry_initial > self.retry_max {
            return Err("alerts.retry_initial is above alerts.retry_max".into());
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.receivers {
            if !seen.insert(r.name.as_str()) {
                return Err(format!(
                    "alerts.receivers: two receivers are named {:?}",
                    r.name
                ));
            }
            r.check()
                .map_err(|e| format!("alerts.receivers {:?}: {e}", r.name))?;
        }
        Ok(())
    }

    pub fn receiver(&self, name: &str) -> Option<&ReceiverConfig> {
        self.receivers.iter().find(|r| r.name == name)
    }
}

/// What a receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// Telegram's bot API: the secret is the bot token; `chat_id` is needed.
    Telegram,
    /// A Discord webhook: the secret is the webhook URL.
    Discord,
    /// A generic JSON webhook (Alertmanager's payload) at `url`; a secret,
    /// if given, is sent as `Authorization: Bearer`.
    Webhook,
}

/// The severities a receiver can ask for, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinSeverity {
    Info,
    Warning,
    Critical,
}

impl MinSeverity {
    /// Whether a notice of `severity` (as metrics.yaml spells it) reaches a
    /// receiver asking for `self`; an unknown severity counts as critical,
    /// so nothing is lost to a spelling.
    pub fn admits(self, severity: &str) -> bool {
        let level = match severity {
            "info" => MinSeverity::Info,
            "warning" => MinSeverity::Warning,
            _ => MinSeverity::Critical,
        };
        level >= self
    }
}

/// `[[alerts.receivers]]`: one destination.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Names the receiver in the outbox, `system.alert_deliveries`,
    /// `quiver alerts test NAME` and logs.
    pub name: String,
    pub kind: ReceiverKind,
    /// The generic webhook's URL (not secret; use `token_env` for a bearer
    /// token). Telegram and Discord take no `url`.
    #[serde(default)]
    pub url: Option<String>,
    /// Telegram's API base. Default `https://api.telegram.org`. (Discord's
    /// whole URL is its secret.)
    #[serde(default)]
    pub base_url: Option<String>,
    /// Telegram's chat.
    #[serde(default)]
    pub chat_id: Option<String>,
    /// Notices below this severity skip the receiver. Default info.
    #[serde(default = "min_severity_default")]
    pub min_severity: MinSeverity,
    /// The environment variable holding the secret.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The file holding the secret (trailing whitespace ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

fn min_severity_default() -> MinSeverity {
    MinSeverity::Info
}

/// The default Telegram API base.
pub const TELEGRAM_BASE_URL: &str = "https://api.telegram.org";

impl ReceiverConfig {
    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err("name must be 1 to 64 characters".into());
        }
        if self.token_env.is_some() && self.token_file.is_some() {
            return Err("set token_env or token_file, not both".into());
        }
        let has_secret = self.token_env.is_some() || self.token_file.is_some();
        match self.kind {
            ReceiverKind::Telegram => {
                if !has_secret {
                    return Err("telegram needs the bot token in token_env or token_file".into());
                }
                if self.chat_id.as_deref().unwrap_or("").is_empty() {
                    return Err("telegram needs chat_id".into());
                }
                if self.url.is_some() {
                    return Err("telegram takes base_url, not url".into());
                }
            }
            ReceiverKind::Discord => {
                if !has_secret {
                    return Err(
                        "discord needs the webhook URL (its secret) in token_env or token_file"
                            .into(),
                    );
                }
                if self.url.is_some() || self.base_url.is_some() || self.chat_id.is_some() {
                    return Err(
                        "discord takes no url, base_url or chat_id: its URL is the secret".into(),
                    );
                }
            }
            ReceiverKind::Webhook => {
                if self.url.as_deref().unwrap_or("").is_empty() {
                    return Err("webhook needs url".into());
                }
                if self.base_url.is_some() || self.chat_id.is_some() {
                    return Err("webhook takes url only (no base_url, chat_id)".into());
                }
            }
        }
        Ok(())
    }

    /// The receiver's secret, if it has one, read from its variable or file
    /// through `env` (the process environment in production).
    pub fn secret_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, SecretError> {
        if let Some(var) = &self.token_env {
            let value = env(var).ok_or_else(|| SecretError::EnvMissing {
                receiver: self.name.clone(),
                var: var.clone(),
            })?;
            return Secret::non_empty(value.trim(), || SecretError::EnvEmpty {
                receiver: self.name.clone(),
                var: var.clone(),
            })
            .map(Some);
        }
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                receiver: self.name.clone(),
                path: path.clone(),
                source,
            })?;
            return Secret::non_empty(text.trim(), || SecretError::FileEmpty {
                receiver: self.name.clone(),
                path: path.clone(),
            })
            .map(Some);
        }
        Ok(None)
    }

    /// [`Self::secret_with`] the process environment.
    pub fn secret(&self) -> Result<Option<Secret>, SecretError> {
        self.secret_with(|var| std::env::var(var).ok())
    }
}

impl std::fmt::Debug for ReceiverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a new field cannot be left out. Nothing here is a
        // secret value (those are read later), but say so explicitly.
        let ReceiverConfig {
            name,
            kind,
            url,
            base_url,
            chat_id,
            min_severity,
            token_env,
            token_file,
        } = self;
        f.debug_struct("ReceiverConfig")
            .field("name", name)
            .field("kind", kind)
            .field("url", url)
            .field("base_url", base_url)
            .field("chat_id", chat_id)
            .field("min_severity", min_severity)
            .field("token_env", token_env)
            .field("token_file", token_file)
            .finish()
    }
}

/// A secret value; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    fn non_empty(value: &str, empty: impl FnOnce() -> SecretError) -> Result<Self, SecretError> {
        if value.is_empty() {
            Err(empty())
        } else {
            Ok(Self(value.to_string()))
        }
    }

    /// The value, for the one place that puts it in a request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced by `***` (error
    /// texts of HTTP clients may quote the URL the secret is part of).
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "***")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A receiver's secret could not be read. Names the variable or file, never
/// a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("receiver {receiver:?}: environment variable {var} (token_env) is not set")]
    EnvMissing { receiver: String, var: String },
    #[error("receiver {receiver:?}: environment variable {var} (token_env) is empty")]
    EnvEmpty { receiver: String, var: String },
    #[error("receiver {receiver:?}: reading token_file {path}")]
    File {
        receiver: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("receiver {receiver:?}: token_file {path} is empty")]
    FileEmpty { receiver: String, path: PathBuf },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telegram() -> ReceiverConfig {
        ReceiverConfig {
            name: "ops".into(),
            kind: ReceiverKind::Telegram,
            url: None,
            base_url: None,
            chat_id: Some("42".into()),
            min_severity: MinSeverity::Warning,
            token_env: Some("QUIVER_TEST_TG_TOKEN".into()),
            token_file: None,
        }
    }

    #[test]
    fn a_secret_comes_from_the_environment_and_errors_name_the_variable() {
        let r = telegram();
        let secret = r
            .secret_with(|v| (v == "QUIVER_TEST_TG_TOKEN").then(|| "123:abc\n".into()))
            .unwrap()
            .unwrap();
        assert_eq!(secret.expose(), "123:abc");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
        let err = r.secret_with(|_| None).unwrap_err().to_string();
        assert!(
            err.contains("QUIVER_TEST_TG_TOKEN") && err.contains("ops"),
            "{err}"
        );
        let err = r.secret_with(|_| Some(" ".into())).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn a_secret_comes_from_a_file_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-url\n").unwrap();
        let r = ReceiverConfig {
            token_env: None,
            token_file: Some(path.clone()),
            ..telegram()
        };
        let secret = r.secret_with(|_| None).unwrap().unwrap();
        assert_eq!(secret.expose(), "s3cret-url");
        assert_eq!(secret.redact("GET s3cret-url/x failed"), "GET ***/x failed");
        let missing = ReceiverConfig {
            token_file: Some(dir.path().join("nope")),
            ..r
        };
        let err = missing.secret_with(|_| None).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("token_file"), "{err}");
    }

    #[test]
    fn each_kind_checks_its_keys() {
        assert!(telegram().check().is_ok());
        let no_chat = ReceiverConfig {
            chat_id: None,
            ..telegram()
        };
        assert!(no_chat.check().unwrap_err().contains("chat_id"));
        let discord_with_url = ReceiverConfig {
            kind: ReceiverKind::Discord,
            chat_id: None,
            url: Some("http://x".into()),
            ..telegram()
        };
        assert!(discord_with_url.check().unwrap_err().contains("secret"));
        let webhook = ReceiverConfig {
            kind: ReceiverKind::Webhook,
            chat_id: None,
            token_env: None,
            url: None,
            ..telegram()
        };
        assert!(webhook.check().unwrap_err().contains("url"));
        let both = ReceiverConfig {
            token_file: Some("f".into()),
            ..telegram()
        };
        assert!(both.check().unwrap_err().contains("not both"));
    }

    #[test]
    fn min_severity_admits_that_and_above() {
        assert!(MinSeverity::Warning.admits("critical"));
        assert!(MinSeverity::Warning.admits("warning"));
        assert!(!MinSeverity::Warning.admits("info"));
        assert!(MinSeverity::Critical.admits("unheard-of"));
    }
}
