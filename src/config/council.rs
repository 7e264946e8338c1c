//! `[council]`: the model endpoints of `quiver council` (used by
//! `crate::app::council`). With no analysts configured (the default) the
//! council runs offline on its built-in analysts and judge.
//!
//! ```toml
//! [council]
//! request_timeout = "60s"
//! attempts_max = 3
//! [[council.analysts]]
//! name = "risk"
//! base_url = "https://api.openai.com/v1"   # any OpenAI-compatible server
//! model = "gpt-4o-mini"
//! api_key_env = "OPENAI_API_KEY"           # or none, for a local server
//! focus = "drawdown, tail risk and P&L dispersion"
//! metrics = ["max_drawdown_bps", "worst_trade_bps"]   # default: the whole packet
//! [council.judge]
//! base_url = "http://127.0.0.1:8080/v1"
//! model = "local"
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Analysts a council may have.
pub const ANALYSTS_MAX: usize = 7;

/// `[council]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CouncilSection {
    /// Up to 7 model analysts; none: the built-in ones.
    pub analysts: Vec<ModelEndpoint>,
    /// The judge that merges verified claims; none: the built-in judge.
    pub judge: Option<ModelEndpoint>,
    /// One request's deadline, a duration. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Tries per request (a timeout, a transport error, a 429 or 5xx, or an
    /// answer that is not the JSON asked for), 1..=10. Default 3.
    pub attempts_max: u32,
    /// The longest pause between two tries (they double from 1 s). Default 10 s.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// `max_tokens` of each completion. Default 1 024.
    pub max_tokens: u32,
    /// The largest response body read. Default 1 MiB.
    pub response_bytes_max: u64,
}

impl Default for CouncilSection {
    fn default() -> Self {
        Self {
            analysts: Vec::new(),
            judge: None,
            request_timeout: Duration::from_secs(60),
            attempts_max: 3,
            backoff_max: Duration::from_secs(10),
            max_tokens: 1024,
            response_bytes_max: 1 << 20,
        }
    }
}

/// One chat-completions endpoint and model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEndpoint {
    /// The analyst's name in claims and reports (the judge's is `judge`).
    #[serde(default)]
    pub name: String,
    /// The API base, up to `/v1`: `{base_url}/chat/completions` is called.
    pub base_url: String,
    pub model: String,
    /// The variable holding the API key (sent as a bearer token); none for
    /// a local server without keys.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// What this analyst looks at, told to the model.
    #[serde(default)]
    pub focus: Option<String>,
    /// How the answer's JSON schema is asked for: `json_schema` (OpenAI's
    /// structured outputs, the default) or `json_object` (`{"type":
    /// "json_object", "schema": ...}`, what llama.cpp's Python server takes).
    #[serde(default)]
    pub response_format: ResponseFormat,
    /// The metrics this analyst is sent (their values, and the alerts on
    /// them); empty: the whole packet. Fewer tokens, and a packet a small
    /// model's context holds.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Prices per 1,000 prompt and completion tokens, for the run's cost
    /// tally (default 0: a local model).
    #[serde(default)]
    pub prompt_price_per_1k: f64,
    #[serde(default)]
    pub completion_price_per_1k: f64,
}

/// See [`ModelEndpoint::response_format`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    #[default]
    JsonSchema,
    JsonObject,
}

impl CouncilSection {
    pub fn check(&self) -> Result<(), String> {
        if self.analysts.len() > ANALYSTS_MAX {
            return Err(format!(
                "{} analysts: a council has at most {ANALYSTS_MAX}",
                self.analysts.len()
            ));
        }
        if !(1..=10).contains(&self.attempts_max) {
            return Err("attempts_max must be from 1 to 10".into());
        }
        if self.request_timeout.is_zero() || self.max_tokens == 0 || self.response_bytes_max == 0 {
            return Err("request_timeout, max_tokens and response_bytes_max must be > 0".into());
        }
        let mut names = BTreeSet::new();
        for a in &self.analysts {
            if a.name.is_empty()
                || !a
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "analyst name {:?}: letters, digits, _ and - only",
                    a.name
                ));
            }
            if !names.insert(a.name.as_str()) {
                return Err(format!("two analysts are named {:?}", a.name));
            }
            a.check().map_err(|e| format!("analyst {}: {e}", a.name))?;
        }
        if let Some(judge) = &self.judge {
            judge.check().map_err(|e| format!("judge: {e}"))?;
        }
        Ok(())
    }
}

impl ModelEndpoint {
    fn check(&self) -> Result<(), String> {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(format!(
                "base_url {:?} is not an http(s) URL",
                self.base_url
            ));
        }
        if self.model.is_empty() {
            return Err("model is empty".into());
        }
        if !(self.prompt_price_per_1k >= 0.0 && self.completion_price_per_1k >= 0.0) {
            return Err("prices must be >= 0".into());
        }
        Ok(())
    }

    /// The API key, if the endpoint has one, from its variable.
    pub fn api_key(&self) -> Result<Option<String>, String> {
        match &self.api_key_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
                _ => Err(format!(
                    "{}: the API key variable {var} is unset or empty",
                    self.name
                )),
            },
        }
    }
}
