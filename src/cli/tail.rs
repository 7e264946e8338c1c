//! `quiver tail`: new events as they commit, like `tail -f`, from the server
//! that holds the data dir (or `--server URL`).
//!
//! The stream is the server's live tail ([`crate::flight::tail`]). When the
//! connection drops (the server restarts), `tail` reconnects from the
//! sequence after the last one it saw, so nothing is missed or printed twice
//! while the server's WAL holds the records. Gaps (a reader too slow, records
//! no longer in the WAL) are said on stderr with the `--from-seq` that reads
//! them again.

use std::time::Duration;

use anyhow::Context;
use arrow::array::RecordBatch;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::app::{Advert, shutdown_signal};
use crate::config::Config;
use crate::event::HEADER_COLUMNS;
use crate::flight::client::Client;
use crate::flight::tail::TailRequest;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this event table (its columns come as columns).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// Only rows where this SQL expression is true, e.g. "symbol = 'BTC-USD'".
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Start at this WAL sequence (default: what commits from now on).
    #[arg(long, value_name = "N")]
    pub from_seq: Option<u64>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// One JSON object per line, heartbeats and gaps included, for scripts.
    #[arg(long)]
    pub json: bool,
    /// The server to follow: grpc://HOST:PORT or grpc+tls://HOST:PORT
    /// (default: the one holding the data dir).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// How long to wait before reconnecting to a server that went away.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let url = Advert::server_url(
        &config.data_dir,
        args.server.as_deref(),
        "a live tail follows a running server's WAL",
    )?;
    let mut follow = Follow {
        request: TailRequest {
            table: args.table.clone(),
            filter: args.filter.clone(),
            from_seq: args.from_seq,
        },
        events_left: args.count,
        json: args.json,
    };
    tokio::select! {
        result = follow.run(&config, &url) => result,
        () = shutdown_signal() => Ok(()),
    }
}

struct Follow {
    request: TailRequest,
    events_left: Option<u64>,
    json: bool,
}

impl Follow {
    /// Follows the tail, reconnecting after a dropped connection; a refusal
    /// (a bad filter, too many tails) ends it with the server's message.
    async fn run(&mut self, config: &Config, url: &str) -> anyhow::Result<()> {
        let flight = config.flight_config();
        let mut connected_once = false;
        loop {
            let client = Client::connect(
                url,
                flight.credentials.as_ref(),
                config.flight.tls_cert.as_deref(),
            )
            .await;
            let mut client = match client {
                Ok(c) => c,
                Err(e) if connected_once => {
                    eprintln!("tail: {e:#}; retrying");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("connecting to {url}")),
            };
            let mut stream = client.tail(&self.request).await?;
            connected_once = true;
            while let Some(batch) = stream.next().await {
                match batch {
                    Ok(batch) => {
                        if self.print(&batch)? {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        eprintln!("tail: {e}; reconnecting");
                        break;
                    }
                }
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }

    /// Prints a batch's rows and moves the resume point past them; true
    /// once `--count` events are out.
    fn print(&mut self, batch: &RecordBatch) -> anyhow::Result<bool> {
        for row in rows(batch)? {
            let kind = row.get("_kind").and_then(Value::as_str).unwrap_or("");
            let seq = row.get("_seq").and_then(Value::as_u64).unwrap_or(0);
            self.request.from_seq = Some(seq + 1);
            if self.json {
                println!("{}", Value::Object(row.clone()));
            }
            match kind {
                "event" => {
                    if !self.json {
                        println!("{}", event_line(&row, self.request.table.as_deref()));
                    }
                    if let Some(left) = self.events_left.as_mut() {
                        *left = left.saturating_sub(1);
                        if *left == 0 {
                            return Ok(true);
                        }
                    }
                }
                "gap" if !self.json => {
                    let detail = row.get("_detail").and_then(Value::as_str).unwrap_or("");
                    let detail: Value = serde_json::from_str(detail).unwrap_or(Value::Null);
                    eprintln!(
                        "tail: sequences {}..={} not shown ({}); read them with --from-seq {}",
                        detail["from"], detail["to"], detail["reason"], detail["from"]
                    );
                }
                _ => {}
            }
        }
        Ok(false)
    }
}

/// A batch's rows as JSON objects (nulls left out).
pub(super) fn rows(batch: &RecordBatch) -> anyhow::Result<Vec<Map<String, Value>>> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    let rows: Vec<Map<String, Value>> = serde_json::from_slice(&writer.into_inner())?;
    Ok(rows)
}

/// `#SEQ TS TABLE SYMBOL LEVEL key=value ...`
fn event_line(row: &Map<String, Value>, table: Option<&str>) -> String {
    let text = |key: &str| match row.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let mut line = format!(
        "#{} {} {} {} {}",
        text("_seq"),
        text("ts"),
        table.map_or_else(|| text("table"), str::to_owned),
        text("symbol"),
        text("level")
    );
    line.push_str(&fields_text(row));
    line
}

/// ` key=value ...` of an event's own columns (not its header): from the
/// `row` JSON of an all-tables tail, or the row itself for one table's.
pub(super) fn fields_text(row: &Map<String, Value>) -> String {
    let fields = match row.get("row").and_then(Value::as_str) {
        Some(json) => serde_json::from_str::<Map<String, Value>>(json).unwrap_or_default(),
        None => row.clone(),
    };
    let mut text = String::new();
    for (key, value) in &fields {
        let skip = key.starts_with('_')
            || key == "table"
            || key == "row"
            || HEADER_COLUMNS.contains(&key.as_str());
        if !skip {
            text.push_str(&format!(" {key}={value}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_has_the_header_then_the_event_fields() {
        let row: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "_kind": "event", "_seq": 42, "table": "signals", "ts": "2026-12-02T08:00:00Z",
            "symbol": "BTC-USD", "level": "INFO", "event_id": "e1",
            "row": "{\"event_id\":\"e1\",\"symbol\":\"BTC-USD\",\"confidence\":0.7}"
        }))
        .unwrap();
        assert_eq!(
            event_line(&row, None),
            "#42 2026-12-02T08:00:00Z signals BTC-USD INFO confidence=0.7"
        );
    }
}
