//! The three receivers: what each is sent (Telegram's `sendMessage`, a
//! Discord webhook's `content`, Alertmanager's webhook payload) and how its
//! answer is read (status, `retry_after`). Blocking HTTP (ureq), for the
//! delivery thread and the CLI only.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{MinSeverity, ReceiverConfig, ReceiverKind, Secret, SecretError};
use crate::store::outbox::Claimed;

/// Longest text of one Telegram or Discord message (Discord's limit is
/// 2000 characters, Telegram's 4096).
const TEXT_CHARS_MAX: usize = 1900;
/// Bytes of a response body read (for `retry_after` and error texts).
const BODY_BYTES_MAX: u64 = 64 * 1024;
/// Characters of a response body kept in an error text.
const ERROR_BODY_CHARS_MAX: usize = 200;

/// A receiver ready to send: its config with the secret read.
pub struct Receiver {
    pub name: String,
    kind: ReceiverKind,
    /// Telegram's base, Discord's secret URL, the webhook's URL.
    url: String,
    chat_id: String,
    pub min_severity: MinSeverity,
    secret: Option<Secret>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Discord's URL is its secret: shown only for the others.
        let url = match self.kind {
            ReceiverKind::Discord => "***",
            _ => self.url.as_str(),
        };
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &url)
            .field("secret", &self.secret)
            .finish()
    }
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// 2xx.
    Delivered { status: u16 },
    /// Worth another try: 429, 5xx, a timeout, no connection.
    Transient {
        status: Option<u16>,
        retry_after: Option<Duration>,
        error: String,
    },
    /// Another try would fail the same way (other 4xx).
    Permanent { status: u16, error: String },
}

impl Response {
    pub fn status(&self) -> Option<u16> {
        match self {
            Response::Delivered { status } | Response::Permanent { status, .. } => Some(*status),
            Response::Transient { status, .. } => *status,
        }
    }
}

impl Receiver {
    /// Reads the receiver's secret.
    pub fn from_config(config: &ReceiverConfig) -> Result<Self, SecretError> {
        Self::with_secret(config, config.secret()?)
    }

    fn with_secret(config: &ReceiverConfig, secret: Option<Secret>) -> Result<Self, SecretError> {
        let url = match config.kind {
            ReceiverKind::Telegram => config
                .base_url
                .clone()
                .unwrap_or_else(|| crate::config::TELEGRAM_BASE_URL.to_string()),
            ReceiverKind::Discord => secret
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
            ReceiverKind::Webhook => config.url.clone().unwrap_or_default(),
        };
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            url: url.trim_end_matches('/').to_string(),
            chat_id: config.chat_id.clone().unwrap_or_default(),
            min_severity: config.min_severity,
            secret,
        })
    }

    /// Sends `message` once.
    pub fn send(&self, agent: &ureq::Agent, message: &Claimed) -> Response {
        let (url, body) = match self.kind {
            ReceiverKind::Telegram => (
                format!(
                    "{}/bot{}/sendMessage",
                    self.url,
                    self.secret.as_ref().map_or("", |s| s.expose())
                ),
                json!({ "chat_id": self.chat_id, "text": text(message) }),
            ),
            ReceiverKind::Discord => (self.url.clone(), json!({ "content": text(message) })),
            ReceiverKind::Webhook => (self.url.clone(), alertmanager_payload(&self.name, message)),
        };
        let mut request = agent
            .post(&url)
            .header("Content-Type", "application/json")
            // The notice id: a receiver that saw it already (we were killed
            // between its answer and our record) can drop the resend.
            .header("Idempotency-Key", message.id.to_string());
        if let (ReceiverKind::Webhook, Some(token)) = (self.kind, &self.secret) {
            request = request.header("Authorization", format!("Bearer {}", token.expose()));
        }
        match request.send(body.to_string().as_bytes()) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let header = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(BODY_BYTES_MAX)
                    .read_to_string()
                    .unwrap_or_default();
                self.classify(status, header.as_deref(), &text)
            }
            Err(e) => Response::Transient {
                status: None,
                retry_after: None,
                error: self.redact(&e.to_string()),
            },
        }
    }

    fn classify(&self, status: u16, retry_after_header: Option<&str>, body: &str) -> Response {
        if (200..300).contains(&status) {
            return Response::Delivered { status };
        }
        let excerpt: String = body.chars().take(ERROR_BODY_CHARS_MAX).collect();
        let error = self.redact(&format!("HTTP {status}: {excerpt}"));
        if status == 429 || status >= 500 || status == 408 {
            Response::Transient {
                status: Some(status),
                retry_after: retry_after(retry_after_header, body),
                error,
            }
        } else {
            Response::Permanent { status, error }
        }
    }

    fn redact(&self, text: &str) -> String {
        self.secret
            .as_ref()
            .map_or_else(|| text.to_string(), |s| s.redact(text))
    }
}

/// The wait a receiver asks for: the `Retry-After` header (seconds), or
/// the body's `retry_after` (Discord: seconds, a float) or
/// `parameters.retry_after` (Telegram); the longest if several.
pub fn retry_after(header: Option<&str>, body: &str) -> Option<Duration> {
    let from_header = header.and_then(|h| h.trim().parse::<f64>().ok());
    let json: Option<Value> = serde_json::from_str(body).ok();
    let from_body = json.as_ref().and_then(|j| {
        j.get("retry_after")
            .or_else(|| j.get("parameters").and_then(|p| p.get("retry_after")))
            .and_then(Value::as_f64)
    });
    [from_header, from_body]
        .into_iter()
        .flatten()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
        .max()
}

/// The text of a Telegram or Discord message: the rule, then one line per
/// dimension set, cut to [`TEXT_CHARS_MAX`].
pub fn text(message: &Claimed) -> String {
    let mut out = format!(
        "[{}] {} ({} alert{})",
        message.severity.to_uppercase(),
        message.rule,
        message.notices.len(),
        if message.notices.len() == 1 { "" } else { "s" }
    );
    for (i, notice) in message.notices.iter().enumerate() {
        let dims: Vec<String> = notice
            .dimensions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let line = format!("\n- {}: {}", dims.join(" "), notice.message);
        if out.chars().count() + line.chars().count() > TEXT_CHARS_MAX {
            out.push_str(&format!("\n... and {} more", message.notices.len() - i));
            break;
        }
        out.push_str(&line);
    }
    out
}

/// Alertmanager's webhook payload (version 4): one alert per dimension set,
/// labelled with the rule, severity, source and dimensions.
pub fn alertmanager_payload(receiver: &str, message: &Claimed) -> Value {
    let alerts: Vec<Value> = message
        .notices
        .iter()
        .map(|n| {
            let mut labels = serde_json::Map::new();
            for (k, v) in &n.dimensions {
                labels.insert(k.clone(), json!(v));
            }
            labels.insert("alertname".into(), json!(n.rule));
            labels.insert("severity".into(), json!(n.severity));
            labels.insert("source".into(), json!(n.source));
            json!({
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "summary": n.message,
                    "value": n.value.map(|v| v.to_string()),
                },
                "startsAt": n.fired_at.to_rfc3339(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{receiver}/{}/{}", message.rule, message.id),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver,
        "groupLabels": { "alertname": message.rule },
        "commonLabels": { "alertname": message.rule, "severity": message.severity },
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": alerts,
    })
}

/// An HTTP agent whose every request ends within `timeout`; statuses are
/// answers, not errors.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::Notice;
    use std::collections::BTreeMap;

    #[test]
    fn retry_after_from_telegram_discord_and_the_header() {
        let tg = r#"{"ok":false,"error_code":429,"parameters":{"retry_after":3}}"#;
        assert_eq!(retry_after(None, tg), Some(Duration::from_secs(3)));
        let discord = r#"{"message":"rate limited","retry_after":1.5,"global":false}"#;
        assert_eq!(
            retry_after(None, discord),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(Some("2"), discord),
            Some(Duration::from_secs(2))
        );
        assert_eq!(retry_after(Some("soon"), "not json"), None);
        assert_eq!(retry_after(None, r#"{"retry_after":-1}"#), None);
    }

    fn claimed(n: usize) -> Claimed {
        let notices = (0..n)
            .map(|i| Notice {
                source: "metrics".into(),
                rule: "win_rate_low".into(),
                severity: "warning".into(),
                dimensions: BTreeMap::from([("mode".to_string(), format!("m{i}"))]),
                message: "win rate below target band".into(),
                value: Some(0.41),
                fired_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            })
            .collect();
        Claimed {
            id: 7,
            receiver: "ops".into(),
            rule: "win_rate_low".into(),
            severity: "warning".into(),
            notices,
            attempt: 1,
            enqueued_at_us: 0,
        }
    }

    #[test]
    fn a_group_is_one_text_listing_each_dimension_set_cut_to_the_limit() {
        let t = text(&claimed(2));
        assert!(t.starts_with("[WARNING] win_rate_low (2 alerts)"), "{t}");
        assert!(t.contains("mode=m0") && t.contains("mode=m1"), "{t}");
        let long = text(&claimed(500));
        assert!(
            long.chars().count() <= TEXT_CHARS_MAX + 30,
            "{}",
            long.len()
        );
        assert!(long.contains("more"), "{long}");
    }

    #[test]
    fn the_webhook_payload_is_alertmanagers() {
        let p = alertmanager_payload("hook", &claimed(2));
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["receiver"], "hook");
        assert_eq!(p["alerts"].as_array().unwrap().len(), 2);
        assert_eq!(p["alerts"][1]["labels"]["mode"], "m1");
        assert_eq!(p["alerts"][0]["labels"]["alertname"], "win_rate_low");
        assert_eq!(p["alerts"][0]["startsAt"], "2023-11-14T22:13:20+00:00");
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let config = ReceiverConfig {
            name: "ops".into(),
            kind: ReceiverKind::Telegram,
            url: None,
            base_url: Some("http://127.0.0.1:9".into()),
            chat_id: Some("1".into()),
            min_severity: MinSeverity::Info,
            token_env: Some("X".into()),
            token_file: None,
        };
        let secret = config
            .secret_with(|_| Some("123:topsecret".into()))
            .unwrap();
        let r = Receiver::with_secret(&config, secret).unwrap();
        assert!(!format!("{r:?}").contains("topsecret"));
        let response = r.classify(401, None, "bad token 123:topsecret");
        let Response::Permanent { status, error } = response else {
            panic!("{response:?}");
        };
        assert_eq!(status, 401);
        assert!(
            error.contains("401") && !error.contains("topsecret"),
            "{error}"
        );
        // Nothing listens on port 9: a transient error, redacted.
        let response = r.send(&agent(Duration::from_secs(2)), &claimed(1));
        let Response::Transient { status, error, .. } = response else {
            panic!("{response:?}");
        };
        assert_eq!(status, None);
        assert!(!error.contains("topsecret"), "{error}");
    }
}
