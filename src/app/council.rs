//! The council's packet from the data, and a council run: the analysts'
//! claims through the verifier, the judge's summary through it again
//! ([`crate::council`] decides what stands; this module fetches and runs).

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::NaiveDate;
use serde::Serialize;

use super::Session;
use super::insights as insight_queries;
use crate::analytics::insights::{Value, findings};
use crate::council::analysts::BUILT_IN;
use crate::council::judge::{self, DroppedSentence, Sentence};
use crate::council::packet::{MetricRef, Packet, PacketAlert, PacketInsight, PacketValue};
use crate::council::verify::{Claim, Dropped, Verifier};
use crate::query::param;

const METRIC_VALUES_SQL: &str = "SELECT metric, dimensions, value, unit, status, target \
     FROM metrics.metric_values WHERE date = $1 ORDER BY metric, dimensions";

const ALERTS_SQL: &str = "SELECT rule, metric, severity, value, threshold, dimensions, message \
     FROM metrics.alerts WHERE date = $1 ORDER BY fired_at, rule, dimensions";

/// The packet for `day`: what `metrics compute` stored for it, and the
/// day's insights. Empty metrics mean the day was never computed.
pub async fn packet(session: &mut Session, day: NaiveDate) -> anyhow::Result<Packet> {
    let values = session
        .query_with(METRIC_VALUES_SQL, vec![param::date(day)])
        .await
        .context("reading metrics.metric_values")?;
    let mut metrics = Vec::new();
    for row in insight_queries::rows(&values)? {
        metrics.push(PacketValue {
            of: metric_ref(&row, "metric")?,
            value: number(&row, "value"),
            unit: text(&row, "unit"),
            status: text(&row, "status"),
            target: number(&row, "target"),
        });
    }
    let fired = session
        .query_with(ALERTS_SQL, vec![param::date(day)])
        .await
        .context("reading metrics.alerts")?;
    let mut alerts = Vec::new();
    for row in insight_queries::rows(&fired)? {
        alerts.push(PacketAlert {
            rule: text(&row, "rule"),
            severity: text(&row, "severity"),
            of: metric_ref(&row, "metric")?,
            value: number(&row, "value"),
            threshold: number(&row, "threshold"),
            message: text(&row, "message"),
        });
    }
    let results = insight_queries::run(session, &insight_queries::queries(day)).await?;
    let insights = findings(&results)
        .into_iter()
        .enumerate()
        .map(|(rank, f)| PacketInsight {
            id: format!("insight:{}", rank + 1),
            severity: f.severity.as_str().to_string(),
            text: f.text,
            rests_on: f.rests_on.iter().map(ToString::to_string).collect(),
        })
        .collect();
    Ok(Packet {
        date: day,
        metrics,
        insights,
        alerts,
    })
}

fn text(row: &BTreeMap<String, Value>, column: &str) -> String {
    match row.get(column) {
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn number(row: &BTreeMap<String, Value>, column: &str) -> Option<f64> {
    row.get(column).and_then(Value::as_f64)
}

/// The metric of a row and its dimensions (stored as a JSON object).
fn metric_ref(row: &BTreeMap<String, Value>, column: &str) -> anyhow::Result<MetricRef> {
    let metric = text(row, column);
    let json = text(row, "dimensions");
    let dims: BTreeMap<String, serde_json::Value> = if json.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_str(&json)
            .with_context(|| format!("{metric}: dimensions {json:?} are not a JSON object"))?
    };
    Ok(MetricRef {
        metric,
        dimensions: dims
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
    })
}

/// What a council run decided.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub date: NaiveDate,
    /// Claims made, by every analyst.
    pub claims: usize,
    pub verified: Vec<Claim>,
    pub dropped: Vec<Dropped>,
    pub summary: Vec<Sentence>,
    pub dropped_sentences: Vec<DroppedSentence>,
    pub markdown: String,
}

/// The council on `packet` with the built-in analysts and judge.
pub fn offline(packet: &Packet) -> Outcome {
    let claims: Vec<Claim> = BUILT_IN.iter().flat_map(|a| a.claims(packet)).collect();
    decide(packet, claims, |verified| judge::merge(packet, verified))
}

/// Verifies `claims`, lets `judge` merge the verified ones, verifies its
/// sentences, and writes the markdown.
pub fn decide(
    packet: &Packet,
    claims: Vec<Claim>,
    judge: impl FnOnce(&[Claim]) -> Vec<Sentence>,
) -> Outcome {
    let verifier = Verifier::new(packet);
    let made = claims.len();
    let (verified, dropped) = verifier.sort(claims);
    let sentences = judge(&verified);
    let (summary, dropped_sentences) = judge::verify(&verifier, sentences, &verified);
    let markdown = judge::markdown(packet, &summary, &dropped, &dropped_sentences);
    Outcome {
        date: packet.date,
        claims: made,
        verified,
        dropped,
        summary,
        dropped_sentences,
        markdown,
    }
}

// ---- Model analysts and judge (OpenAI-compatible chat completions) ----

/// One analyst's part in a run.
#[derive(Debug, Serialize)]
pub struct AnalystRun {
    pub name: String,
    /// `built-in` or the model's name.
    pub source: String,
    pub claims: usize,
    /// Why the analyst gave nothing (its requests failed), if it did not.
    pub error: Option<String>,
}

/// Requests, tokens and cost of a run.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    pub requests: u32,
    pub attempts: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// From the endpoints' prices per 1,000 tokens.
    pub cost: f64,
}

/// A council run with its analysts and the tally.
#[derive(Debug, Serialize)]
pub struct Run {
    pub analysts: Vec<AnalystRun>,
    /// `built-in`, the judge model's name, or `built-in (the model judge failed: ...)`.
    pub judge: String,
    pub tally: Tally,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The council on `packet` with the analysts and judge of `config`: models
/// where configured (called in parallel, each request under the timeout and
/// the retry bound), the built-in ones otherwise. Blocking.
pub fn run(packet: &Packet, config: &crate::config::CouncilSection) -> Run {
    if config.analysts.is_empty() && config.judge.is_none() {
        let outcome = offline(packet);
        let analysts = BUILT_IN
            .iter()
            .map(|a| AnalystRun {
                name: a.name.to_string(),
                source: "built-in".into(),
                claims: outcome
                    .verified
                    .iter()
                    .chain(outcome.dropped.iter().map(|d| &d.claim))
                    .filter(|c| c.analyst == a.name)
                    .count(),
                error: None,
            })
            .collect();
        return Run {
            analysts,
            judge: "built-in".into(),
            tally: Tally::default(),
            outcome,
        };
    }
    let client = llm::Client::new(config);
    let mut analysts = Vec::new();
    let mut claims = Vec::new();
    let mut tally = Tally::default();
    if config.analysts.is_empty() {
        for a in BUILT_IN {
            let made = a.claims(packet);
            analysts.push(AnalystRun {
                name: a.name.to_string(),
                source: "built-in".into(),
                claims: made.len(),
                error: None,
            });
            claims.extend(made);
        }
    } else {
        let answers: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = config
                .analysts
                .iter()
                .map(|endpoint| {
                    let client = &client;
                    let own = serde_json::to_string(&packet.narrowed(&endpoint.metrics))
                        .unwrap_or_default();
                    scope.spawn(move || (endpoint, client.analyst(endpoint, &own)))
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (endpoint, answer) in answers {
            tally.add(endpoint, &answer.usage);
            let (made, error) = match answer.result {
                Ok(mut made) => {
                    for c in &mut made {
                        c.analyst.clone_from(&endpoint.name);
                    }
                    (made, None)
                }
                Err(e) => (Vec::new(), Some(e)),
            };
            analysts.push(AnalystRun {
                name: endpoint.name.clone(),
                source: endpoint.model.clone(),
                claims: made.len(),
                error,
            });
            claims.extend(made);
        }
    }
    let mut judge_name = "built-in".to_string();
    let outcome = decide(packet, claims, |verified| {
        let Some(endpoint) = &config.judge else {
            return judge::merge(packet, verified);
        };
        let mut endpoint = endpoint.clone();
        if endpoint.name.is_empty() {
            "judge".clone_into(&mut endpoint.name);
        }
        let endpoint = &endpoint;
        let answer = client.judge(endpoint, packet.date, verified);
        tally.add(endpoint, &answer.usage);
        match answer.result {
            Ok(mut sentences) => {
                judge_name.clone_from(&endpoint.model);
                for s in &mut sentences {
                    s.attention = s.rests_on.iter().any(|r| {
                        packet.metrics.iter().any(|m| {
                            r.covers(&m.of) && matches!(m.status.as_str(), "warning" | "critical")
                        })
                    });
                }
                sentences
            }
            Err(e) => {
                judge_name = format!("built-in (the model judge failed: {e})");
                judge::merge(packet, verified)
            }
        }
    });
    Run {
        analysts,
        judge: judge_name,
        tally,
        outcome,
    }
}

impl Tally {
    fn add(&mut self, endpoint: &crate::config::ModelEndpoint, usage: &llm::Usage) {
        self.requests += 1;
        self.attempts += usage.attempts;
        self.prompt_tokens += usage.prompt_tokens;
        self.completion_tokens += usage.completion_tokens;
        self.cost += usage.prompt_tokens as f64 / 1000.0 * endpoint.prompt_price_per_1k
            + usage.completion_tokens as f64 / 1000.0 * endpoint.completion_price_per_1k;
    }
}

mod llm {
    //! The chat-completions calls: temperature 0, a JSON schema for the
    //! answer, a deadline per request, bounded retries with backoff.

    use std::time::Duration;

    use serde_json::{Value, json};

    use crate::config::{CouncilSection, ModelEndpoint, ResponseFormat};
    use crate::council::judge::Sentence;
    use crate::council::verify::Claim;

    #[derive(Debug, Default)]
    pub struct Usage {
        pub attempts: u32,
        pub prompt_tokens: u64,
        pub completion_tokens: u64,
    }

    pub struct Answer<T> {
        pub result: Result<T, String>,
        pub usage: Usage,
    }

    pub struct Client {
        agent: ureq::Agent,
        attempts_max: u32,
        backoff_max: Duration,
        max_tokens: u32,
        body_max: u64,
    }

    const ANALYST_RULES: &str = "You are one analyst of a trading bot's daily council. \
        You read only the metrics packet the user sends (JSON: metric values with units, \
        dimensions, status and targets; insights; alerts). Make at most 6 claims about what \
        matters most in your field. Every claim names the metric (and its dimensions) it \
        rests on and its value in the packet's unit; any other metric its text quotes goes \
        in evidence. Every number in a claim's text must be a value of the packet of a \
        metric the claim cites: a number verifier drops any claim with a number it cannot \
        find. Write ratios as percentages or as the packet's decimals; do not compute new \
        numbers. Answer with JSON only.";

    const JUDGE_RULES: &str = "You are the judge of a trading bot's daily council. The user \
        sends the day and the analysts' verified claims. Merge them into a short \
        summary: at most 12 sentences, what is off target first. Each sentence lists in \
        rests_on the metrics (with dimensions) of the claims it uses, and quotes only \
        numbers of those claims; a verifier drops any other. Answer with JSON only.";

    fn metric_ref_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "metric": {"type": "string"},
                "dimensions": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "required": ["metric"]
        })
    }

    fn claims_schema() -> Value {
        json!({
            "type": "object",
            "properties": {"claims": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "value": {"type": "number"},
                    "unit": {"type": "string"},
                    "metric": {"type": "string"},
                    "dimensions": {"type": "object", "additionalProperties": {"type": "string"}},
                    "evidence": {"type": "array", "items": metric_ref_schema()}
                },
                "required": ["text", "value", "unit", "metric"]
            }}},
            "required": ["claims"]
        })
    }

    fn summary_schema() -> Value {
        json!({
            "type": "object",
            "properties": {"summary": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "rests_on": {"type": "array", "items": metric_ref_schema()}
                },
                "required": ["text", "rests_on"]
            }}},
            "required": ["summary"]
        })
    }

    impl Client {
        pub fn new(config: &CouncilSection) -> Self {
            Client {
                agent: crate::app::alerts::receiver::agent(config.request_timeout),
                attempts_max: config.attempts_max,
                backoff_max: config.backoff_max,
                max_tokens: config.max_tokens,
                body_max: config.response_bytes_max,
            }
        }

        pub fn analyst(&self, endpoint: &ModelEndpoint, packet: &str) -> Answer<Vec<Claim>> {
            let mut system = ANALYST_RULES.to_string();
            if let Some(focus) = &endpoint.focus {
                system += &format!(" Your field: {focus}.");
            }
            self.ask(endpoint, &system, packet, "claims", claims_schema(), |v| {
                let items = v
                    .get("claims")
                    .and_then(Value::as_array)
                    .ok_or("the answer has no `claims` array")?;
                items
                    .iter()
                    .map(|c| {
                        serde_json::from_value::<Claim>(c.clone())
                            .map_err(|e| format!("a claim is not of the schema: {e}"))
                    })
                    .collect()
            })
        }

        pub fn judge(
            &self,
            endpoint: &ModelEndpoint,
            date: chrono::NaiveDate,
            verified: &[Claim],
        ) -> Answer<Vec<Sentence>> {
            // The claims carry their values; the packet itself would only
            // cost tokens.
            let user = json!({"date": date, "verified_claims": verified}).to_string();
            self.ask(
                endpoint,
                JUDGE_RULES,
                &user,
                "summary",
                summary_schema(),
                |v| {
                    let items = v
                        .get("summary")
                        .and_then(Value::as_array)
                        .ok_or("the answer has no `summary` array")?;
                    items
                        .iter()
                        .map(|s| {
                            serde_json::from_value::<Sentence>(s.clone())
                                .map_err(|e| format!("a sentence is not of the schema: {e}"))
                        })
                        .collect()
                },
            )
        }

        /// One completion, retried on timeouts, transport errors, 429, 5xx
        /// and answers that do not parse, up to `attempts_max`.
        fn ask<T>(
            &self,
            endpoint: &ModelEndpoint,
            system: &str,
            user: &str,
            schema_name: &str,
            schema: Value,
            parse: impl Fn(&Value) -> Result<T, String>,
        ) -> Answer<T> {
            let mut usage = Usage::default();
            let key = match endpoint.api_key() {
                Ok(key) => key,
                Err(e) => {
                    return Answer {
                        result: Err(e),
                        usage,
                    };
                }
            };
            let url = format!(
                "{}/chat/completions",
                endpoint.base_url.trim_end_matches('/')
            );
            let body = json!({
                "model": endpoint.model,
                "temperature": 0,
                "max_tokens": self.max_tokens,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user}
                ],
                "response_format": match endpoint.response_format {
                    ResponseFormat::JsonSchema => json!({"type": "json_schema",
                        "json_schema": {"name": schema_name, "schema": schema}}),
                    ResponseFormat::JsonObject => json!({"type": "json_object", "schema": schema}),
                }
            })
            .to_string();
            let mut pause = Duration::from_secs(1).min(self.backoff_max);
            let mut last = String::new();
            for attempt in 1..=self.attempts_max {
                usage.attempts = attempt;
                let mut request = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(key) = &key {
                    request = request.header("Authorization", format!("Bearer {key}"));
                }
                let retry = match request.send(body.as_bytes()) {
                    Ok(mut response) => {
                        let status = response.status().as_u16();
                        let text = response
                            .body_mut()
                            .with_config()
                            .limit(self.body_max)
                            .read_to_string();
                        match (status, text) {
                            (200, Ok(text)) => {
                                match completion(&text, &mut usage).and_then(|v| parse(&v)) {
                                    Ok(value) => {
                                        return Answer {
                                            result: Ok(value),
                                            usage,
                                        };
                                    }
                                    Err(e) => {
                                        last = format!("attempt {attempt}: {e}");
                                        true
                                    }
                                }
                            }
                            (200, Err(e)) => {
                                last = format!("attempt {attempt}: reading the answer: {e}");
                                true
                            }
                            (s, text) => {
                                let body: String =
                                    text.unwrap_or_default().chars().take(300).collect();
                                last = format!("attempt {attempt}: HTTP {s}: {body}");
                                s == 429 || s >= 500
                            }
                        }
                    }
                    Err(e) => {
                        last = format!("attempt {attempt}: {e}");
                        true
                    }
                };
                if !retry || attempt == self.attempts_max {
                    break;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(self.backoff_max);
            }
            Answer {
                result: Err(format!("{} ({}): {last}", endpoint.name, endpoint.model)),
                usage,
            }
        }
    }

    /// The JSON object in a completion's message, and its token usage.
    fn completion(text: &str, usage: &mut Usage) -> Result<Value, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("the response is not JSON: {e}"))?;
        if let Some(u) = v.get("usage") {
            usage.prompt_tokens += u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
            usage.completion_tokens += u
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
        let content = v
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or("the response has no choices[0].message.content")?;
        // Some servers wrap JSON in a code fence despite the schema.
        let content = content.trim();
        let content = content
            .strip_prefix("```json")
            .or_else(|| content.strip_prefix("```"))
            .and_then(|c| c.strip_suffix("```"))
            .unwrap_or(content);
        serde_json::from_str(content.trim())
            .map_err(|e| format!("the message is not the JSON asked for: {e}"))
    }
}
