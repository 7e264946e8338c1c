//! The dashboard's data, fetched off the draw loop.
//!
//! Two tasks on the runtime send [`Update`]s over one bounded channel:
//! - the **poller** runs the status panels and the visible tab's panels
//!   ([`sql`]) every `refresh`, and at once when the tab changes; each query
//!   under `query_timeout`. A failed or timed-out query leaves its panel's
//!   last rows and says why; a lost server is reported and reconnected at
//!   the next round. It also explains the rejection the gates tab selects,
//!   with the report `quiver explain` prints.
//! - the **follower** reads the live tail and, after a dropped connection,
//!   resumes from the sequence after the last one it saw, so a server
//!   restart shows no gap and no duplicate while the WAL holds the records.
//!
//! The channel is bounded ([`UPDATES_MAX`]): if the screen falls behind, the
//! follower waits, the server's bounded tail buffer fills, and the server
//! sends a gap marker, which the screen counts. Memory stays bounded.

use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

use super::state::{Panel, Wants};
use crate::app::explain::{Subject, report};
use crate::app::{Load, Session};
use crate::config::Config;
use crate::flight::client::Client;
use crate::flight::tail::TailRequest;
use crate::gates::GatesConfig;

/// Updates in flight between the feed and the screen.
pub const UPDATES_MAX: usize = 1024;
/// The most updates the screen applies between two draws.
pub const UPDATES_PER_DRAW_MAX: usize = 4096;
/// How long the follower waits before reconnecting.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// A query's answer, a row per JSON object (nulls left out).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub rows: Vec<Map<String, Value>>,
}

/// One event of the live tail, as the feed shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRow {
    pub seq: u64,
    pub ts: String,
    pub table: String,
    pub symbol: String,
    pub level: String,
    /// ` key=value ...` of the event's own columns.
    pub text: String,
}

#[derive(Debug, Clone)]
pub enum Update {
    /// The server answered (`Ok`) or could not be reached.
    Connection(Result<(), String>),
    Panel(Panel, Result<Rows, String>),
    Events(Vec<FeedRow>),
    /// The tail's last sequence, each second.
    Heartbeat(u64),
    /// Sequences the tail did not show.
    Gap {
        from: u64,
        to: u64,
    },
    /// A decision's explanation, or why there is none.
    Explanation(String, Result<String, String>),
}

pub struct FeedConfig {
    pub config: Config,
    pub url: String,
    pub gates: GatesConfig,
    pub refresh: Duration,
    pub query_timeout: Duration,
}

pub struct Feed {
    updates: mpsc::Receiver<Update>,
    wants: watch::Sender<Option<Wants>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Feed {
    /// Starts the poller and the follower on the current runtime.
    pub fn start(config: FeedConfig) -> Feed {
        let (tx, updates) = mpsc::channel(UPDATES_MAX);
        let (wants, wants_rx) = watch::channel(None);
        let follower = tokio::spawn(follow(
            config.config.clone(),
            config.url.clone(),
            tx.clone(),
        ));
        let poller = tokio::spawn(poll(config, wants_rx, tx));
        Feed {
            updates,
            wants,
            tasks: vec![poller, follower],
        }
    }

    /// The next update, if one is waiting.
    pub fn try_next(&mut self) -> Option<Update> {
        self.updates.try_recv().ok()
    }

    /// Tells the poller what the screen shows; wakes it only on a change.
    pub fn want(&self, wants: Wants) {
        self.wants.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&wants);
            if changed {
                *current = Some(wants);
            }
            changed
        });
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Today's closed trades by one column: their count, win rate and P&L.
macro_rules! closed_today_by {
    ($column:literal) => {
        concat!(
            "SELECT ",
            $column,
            ", count(*) AS trades, win_rate(pnl_bps) AS win_rate, ",
            "sum(pnl_bps) AS pnl_bps FROM journal.v_closed_trades ",
            "WHERE exit_ts >= date_trunc('day', now()) ",
            "GROUP BY ",
            $column,
            " ORDER BY ",
            $column
        )
    };
}

/// The query behind each panel, with its bound parameters. Values from the
/// screen (the sweep's gate and mode) are bound, never pasted.
pub fn sql(panel: Panel, wants: &Wants) -> (&'static str, Vec<ScalarValue>) {
    let none = Vec::new();
    match panel {
        Panel::Queue => (
            "SELECT queue_len, queue_capacity, fill, ingest_queue_len, rows_written, write_errors \
             FROM system.queue",
            none,
        ),
        Panel::Drops => (
            "SELECT sum(accepted) AS accepted, sum(dropped_total) AS dropped, \
             sum(dropped_debug_shed) AS debug_shed, sum(rejected_invalid) AS invalid \
             FROM system.drops",
            none,
        ),
        Panel::KillSwitch => (
            "SELECT tripped, trips, last_tripped_at FROM system.kill_switch",
            none,
        ),
        Panel::Health => (
            "SELECT \"check\", state, value, unit, detail FROM system.health \
             ORDER BY CASE state WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, \"check\"",
            none,
        ),
        Panel::Pnl => (
            "SELECT date_trunc('minute', exit_ts) AS minute, sum(pnl_bps) AS pnl_bps, \
             count(*) AS trades \
             FROM journal.v_closed_trades WHERE exit_ts >= now() - INTERVAL '30 minutes' \
             GROUP BY 1 ORDER BY 1",
            none,
        ),
        Panel::GatePassRate => (
            "SELECT day, gate, mode, value FROM metrics.gate_pass_rate \
             WHERE day = (SELECT max(day) FROM metrics.gate_pass_rate) ORDER BY gate, mode",
            none,
        ),
        Panel::BlockQuality => (
            "SELECT gate, mode, good_blocks, bad_blocks, saved_bps, missed_bps, net_saved_bps \
             FROM analysis.gate_block_quality",
            none,
        ),
        Panel::Rejections => (
            "SELECT decision_id, ts, symbol, gate, mode, regime, value, threshold \
             FROM events.gate_decisions \
             WHERE result = 'FAIL' AND date >= current_date - INTERVAL '1 day' \
             ORDER BY ts DESC, decision_id LIMIT 200",
            none,
        ),
        Panel::Shadow => (
            "SELECT shadow_id, blocked_ts, symbol, mode, regime, blocked_by, \
             CASE WHEN resolved_ts IS NULL THEN 'pending' ELSE 'resolved' END AS resolution, \
             CASE WHEN outcome_pnl_bps IS NULL THEN NULL \
                  WHEN outcome_pnl_bps <= 0 THEN 'good' ELSE 'bad' END AS block, \
             outcome_pnl_bps \
             FROM journal.shadow_trades ORDER BY blocked_ts DESC LIMIT 500",
            none,
        ),
        Panel::Sweep => (
            "SELECT delta, threshold, moved_threshold, decisions, pass_rate, signals_traded, \
             pnl_bps FROM analysis.gate_threshold_sweep WHERE gate = $1 AND mode = $2 \
             ORDER BY delta",
            vec![
                ScalarValue::Utf8(Some(wants.sweep_gate.clone())),
                ScalarValue::Utf8(Some(wants.sweep_mode.as_str().to_string())),
            ],
        ),
        Panel::OpenTrades => (
            "SELECT trade_id, symbol, side, mode, regime, qty, entry_ts, entry_price \
             FROM journal.v_trades WHERE status = 'OPEN' ORDER BY entry_ts DESC LIMIT 100",
            none,
        ),
        Panel::ClosedToday => (
            "SELECT trade_id, symbol, mode, regime, exit_ts, duration_s, pnl_bps \
             FROM journal.v_closed_trades WHERE exit_ts >= date_trunc('day', now()) \
             ORDER BY exit_ts DESC LIMIT 100",
            none,
        ),
        Panel::WinByMode => (closed_today_by!("mode"), none),
        Panel::WinByRegime => (closed_today_by!("regime"), none),
        Panel::Production => (
            "SELECT a.model_id, a.from_ts, a.reason, m.name, m.registered_ts \
             FROM registry.v_model_aliases_current a \
             LEFT JOIN registry.models m ON m.model_id = a.model_id \
             WHERE a.alias = 'production'",
            none,
        ),
        Panel::Calibration => (
            "SELECT model_id, day, samples, ece, mce, brier FROM learning.calibration \
             ORDER BY day DESC, samples DESC LIMIT 10",
            none,
        ),
        Panel::StepStats => (
            "SELECT step, steps, avg_ms, p50_ms, p95_ms, p99_ms, max_ms, day \
             FROM analysis.trace_step_stats \
             WHERE day = (SELECT max(day) FROM analysis.trace_step_stats) \
             ORDER BY p95_ms DESC",
            none,
        ),
        Panel::Bottlenecks => (
            "SELECT step, traces, bottleneck_traces, bottleneck_rate, avg_ms, p95_ms, \
             avg_share_of_total FROM analysis.trace_bottlenecks ORDER BY bottleneck_rate DESC",
            none,
        ),
        Panel::Alerts => (
            "SELECT fired_at, severity, rule, metric, value, threshold, dimensions, message \
             FROM metrics.alerts ORDER BY fired_at DESC LIMIT 100",
            none,
        ),
        Panel::Deliveries => (
            "SELECT started_ts, receiver, rule, dimensions, attempt, outcome, http_status, error \
             FROM system.alert_deliveries ORDER BY id DESC LIMIT 100",
            none,
        ),
    }
}

/// A batch's rows as JSON objects.
fn to_rows(batches: &[RecordBatch]) -> Result<Rows, String> {
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(super::super::tail::rows(batch).map_err(|e| format!("{e:#}"))?);
    }
    Ok(Rows { rows })
}

/// Whether an error means the server is gone (rather than a bad query).
fn is_disconnect(error: &str) -> bool {
    ["Unavailable", "transport error", "connection", "Cancelled"]
        .iter()
        .any(|s| error.contains(s))
}

async fn poll(
    feed: FeedConfig,
    mut wants: watch::Receiver<Option<Wants>>,
    tx: mpsc::Sender<Update>,
) {
    let timeout = feed.query_timeout;
    let mut session: Option<Session> = None;
    let mut explained: Option<String> = None;
    loop {
        let current = wants.borrow_and_update().clone();
        if session.is_none() {
            let opened = tokio::time::timeout(
                timeout,
                Session::open(&feed.config, Some(feed.url.as_str()), Load::Skip),
            )
            .await;
            match opened {
                Ok(Ok(s)) => {
                    session = Some(s);
                    explained = None;
                    if tx.send(Update::Connection(Ok(()))).await.is_err() {
                        return;
                    }
                }
                Ok(Err(e)) => {
                    let e = format!("{e:#}");
                    if tx.send(Update::Connection(Err(e))).await.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let e = format!("no answer from {} within {timeout:?}", feed.url);
                    if tx.send(Update::Connection(Err(e))).await.is_err() {
                        return;
                    }
                }
            }
        }
        if let (Some(s), Some(w)) = (session.as_mut(), current.as_ref()) {
            let mut lost = None;
            for &panel in Panel::STATUS.iter().chain(Panel::of(w.tab)) {
                let (query, params) = sql(panel, w);
                let result = match tokio::time::timeout(timeout, s.query_with(query, params)).await
                {
                    Ok(Ok(batches)) => to_rows(&batches),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                if let Err(e) = &result
                    && is_disconnect(e)
                {
                    lost = Some(e.clone());
                    break;
                }
                if tx.send(Update::Panel(panel, result)).await.is_err() {
                    return;
                }
            }
            if lost.is_none()
                && let Some(id) = w.explain.as_ref()
                && explained.as_ref() != Some(id)
            {
                let text = match tokio::time::timeout(
                    timeout,
                    report(s, &feed.gates, Subject::Decision(id)),
                )
                .await
                {
                    Ok(Ok(r)) => Ok(super::super::explain::render(&feed.gates, &r, false)),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                explained = Some(id.clone());
                if tx
                    .send(Update::Explanation(id.clone(), text))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if let Some(e) = lost {
                session = None;
                if tx.send(Update::Connection(Err(e))).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(feed.refresh) => {}
            changed = wants.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Follows the live tail; after a drop, resumes from the next sequence.
async fn follow(config: Config, url: String, tx: mpsc::Sender<Update>) {
    let flight = config.flight_config();
    let mut request = TailRequest {
        table: None,
        filter: None,
        from_seq: None,
    };
    loop {
        let client = Client::connect(
            &url,
            flight.credentials.as_ref(),
            config.flight.tls_cert.as_deref(),
        )
        .await;
        if let Ok(mut client) = client
            && let Ok(mut stream) = client.tail(&request).await
        {
            while let Some(Ok(batch)) = stream.next().await {
                let Ok(rows) = super::super::tail::rows(&batch) else {
                    continue;
                };
                let mut events = Vec::new();
                for row in &rows {
                    let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or("");
                    let seq = row.get("_seq").and_then(Value::as_u64).unwrap_or(0);
                    request.from_seq = Some(seq + 1);
                    match text("_kind") {
                        "event" => events.push(FeedRow {
                            seq,
                            ts: text("ts").to_string(),
                            table: text("table").to_string(),
                            symbol: text("symbol").to_string(),
                            level: text("level").to_string(),
                            text: super::super::tail::fields_text(row),
                        }),
                        "gap" => {
                            let detail: Value =
                                serde_json::from_str(text("_detail")).unwrap_or(Value::Null);
                            let from = detail["from"].as_u64().unwrap_or(seq);
                            let to = detail["to"].as_u64().unwrap_or(seq);
                            request.from_seq = Some(to + 1);
                            if tx.send(Update::Gap { from, to }).await.is_err() {
                                return;
                            }
                        }
                        "heartbeat" if tx.send(Update::Heartbeat(seq)).await.is_err() => return,
                        _ => {}
                    }
                }
                if !events.is_empty() && tx.send(Update::Events(events)).await.is_err() {
                    return;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_servers_are_told_from_bad_queries() {
        assert!(is_disconnect(
            "Unavailable: error trying to connect: tcp connect error"
        ));
        assert!(!is_disconnect(
            "InvalidArgument: table 'quiver.system.health' not found"
        ));
    }
}
