//! `/metrics` for Prometheus: the OpenMetrics text format on a port of its own
//! (`[prometheus]`, off by default, loopback by default), read from the live
//! counters at each scrape, so a scrape costs nothing between scrapes and
//! never disagrees with `system.*`.
//!
//! What it exports: events accepted, refused and dropped by level (and reason),
//! network ingest, the queue and its fill, the kill switch, the writer, and
//! how far each consumer of the WAL (hot store, lake, journal) is behind,
//! Flight SQL queries (counts, durations) and live tails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use crate::app::alerts::DeliveryStats;
use crate::app::health::HealthMonitor;
use crate::event::{Level, Table};
use crate::flight::stats::QueryStats;
use crate::flight::tail::TailStats;
use crate::histogram::HistogramSnapshot;
use crate::ingest::Logger;
use crate::store::Store;

/// The Content-Type of an OpenMetrics text scrape (Prometheus 3 refuses a
/// scrape without one).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the exporter reads at each scrape: the pipeline's live counters.
#[derive(Debug)]
pub struct Sources {
    pub logger: Logger,
    pub store: Arc<Store>,
    pub queries: Arc<QueryStats>,
    pub tails: Arc<TailStats>,
    /// Alert deliveries, when receivers are configured.
    pub alerts: Option<Arc<DeliveryStats>>,
    /// The health checks' states.
    pub health: Option<Arc<HealthMonitor>>,
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One family: a counter or gauge with its values by label set.
fn family<V: Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: &[(Labels<'_>, V)],
    encode: impl Fn(V, prometheus_client::encoding::MetricEncoder) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    if let [(labels, value)] = values
        && labels.is_empty()
    {
        return encode(*value, metric);
    }
    for (labels, value) in values {
        encode(*value, metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels<'_>, u64)],
) -> std::fmt::Result {
    family(encoder, name, help, MetricType::Counter, values, |v, e| {
        ConstCounter::new(v).encode(e)
    })
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels<'_>, f64)],
) -> std::fmt::Result {
    family(encoder, name, help, MetricType::Gauge, values, |v, e| {
        ConstGauge::new(v).encode(e)
    })
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    // Per bucket, not cumulative: the encoder sums them.
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        h.sum_s, h.count, &h.buckets, None,
    )
}

fn by_level(count: impl Fn(Level) -> u64) -> Vec<(Labels<'static>, u64)> {
    Level::ALL
        .iter()
        .map(|&l| (vec![("level", l.as_str())], count(l)))
        .collect()
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let l = self.logger.stats();
        let s = self.store.stats();
        counter(
            &mut e,
            "quiver_events_accepted",
            "Events accepted, by level (network ingest included).",
            &by_level(|lv| l.accepted.get(lv)),
        )?;
        counter(
            &mut e,
            "quiver_events_rejected_invalid",
            "Events refused by validation, by level.",
            &by_level(|lv| l.rejected_invalid.get(lv)),
        )?;
        let mut dropped = Vec::new();
        for &lv in Level::ALL.iter() {
            let level = lv.as_str();
            if lv == Level::Debug {
                dropped.push((
                    vec![("level", level), ("reason", "debug_shed")],
                    l.dropped_debug_shed,
                ));
            }
            dropped.push((
                vec![("level", level), ("reason", "kill_switch")],
                l.dropped_kill_switch.get(lv),
            ));
            dropped.push((
                vec![("level", level), ("reason", "queue_full")],
                l.dropped_queue_full.get(lv),
            ));
            dropped.push((
                vec![("level", level), ("reason", "closed")],
                l.dropped_closed.get(lv),
            ));
        }
        counter(
            &mut e,
            "quiver_events_dropped",
            "Events dropped after validation, by level and reason.",
            &dropped,
        )?;
        counter(
            &mut e,
            "quiver_ingest_rows",
            "Rows taken by network ingest (Flight SQL), in their own lane.",
            &[(vec![], l.ingest_accepted)],
        )?;
        gauge(
            &mut e,
            "quiver_queue_events",
            "Events in the bot's queue.",
            &[(vec![], l.queue_len as f64)],
        )?;
        gauge(
            &mut e,
            "quiver_queue_capacity_events",
            "The bot's queue capacity.",
            &[(vec![], l.queue_capacity as f64)],
        )?;
        gauge(
            &mut e,
            "quiver_queue_fill_ratio",
            "The bot's queue fill, 0 to 1: DEBUG is shed from 0.8, the kill switch trips at 0.95.",
            &[(vec![], l.fill())],
        )?;
        gauge(
            &mut e,
            "quiver_ingest_queue_events",
            "Network ingest events waiting in their lane.",
            &[(vec![], l.ingest_queue_len as f64)],
        )?;
        gauge(
            &mut e,
            "quiver_kill_switch_tripped",
            "1 while the kill switch is tripped: the bot should stop opening positions.",
            &[(vec![], f64::from(u8::from(l.kill_switch_tripped)))],
        )?;
        counter(
            &mut e,
            "quiver_kill_switch_trips",
            "Times the kill switch tripped.",
            &[(vec![], l.kill_switch_trips)],
        )?;
        let by_table: Vec<(Labels<'static>, u64)> = Table::ALL
            .iter()
            .map(|t| {
                (
                    vec![("table", t.name())],
                    l.rows_written_by_table[t.index()],
                )
            })
            .collect();
        counter(
            &mut e,
            "quiver_writer_rows",
            "Rows made durable in the WAL, by table.",
            &by_table,
        )?;
        counter(
            &mut e,
            "quiver_writer_batches",
            "Batches made durable in the WAL.",
            &[(vec![], l.batches_written)],
        )?;
        counter(
            &mut e,
            "quiver_writer_write_errors",
            "Failed WAL writes (each retried until it succeeds).",
            &[(vec![], l.write_errors)],
        )?;
        gauge(
            &mut e,
            "quiver_wal_seq",
            "The WAL's last durable record sequence.",
            &[(vec![], s.wal_seq as f64)],
        )?;
        gauge(
            &mut e,
            "quiver_lag_records",
            "WAL records a consumer has not applied yet.",
            &[
                (
                    vec![("consumer", "hot")],
                    s.wal_seq.saturating_sub(s.hot_seq) as f64,
                ),
                (
                    vec![("consumer", "lake")],
                    s.wal_seq.saturating_sub(s.lake_seq) as f64,
                ),
                (
                    vec![("consumer", "journal")],
                    s.wal_seq.saturating_sub(s.journal_seq) as f64,
                ),
            ],
        )?;
        gauge(
            &mut e,
            "quiver_lake_files",
            "Parquet files in the lake.",
            &[(vec![], s.lake_files as f64)],
        )?;
        counter(
            &mut e,
            "quiver_store_errors",
            "Errors of the hot store's applies and of the lake (each retried).",
            &[
                (vec![("component", "hot")], s.hot_apply_errors),
                (vec![("component", "lake")], s.lake_errors),
            ],
        )?;
        let q = self.queries.snapshot();
        counter(
            &mut e,
            "quiver_queries",
            "Flight SQL queries by outcome (refused: all queries_max slots were taken).",
            &[
                (vec![("outcome", "ok")], q.ok),
                (vec![("outcome", "failed")], q.failed),
                (vec![("outcome", "refused")], q.refused),
            ],
        )?;
        histogram(
            &mut e,
            "quiver_query_duration_seconds",
            "Time from a query's start to its end (planning, execution and streaming).",
            &q.durations,
        )?;
        histogram(
            &mut e,
            "quiver_wal_sync_duration_seconds",
            "Time to write and fsync one WAL append (the batch is durable at its end).",
            &self.store.status.wal_sync.snapshot(),
        )?;
        self.encode_tails(&mut e)?;
        self.encode_alerts(&mut e)?;
        self.encode_health(&mut e)
    }
}

impl Sources {
    fn encode_health(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let Some(monitor) = &self.health else {
            return Ok(());
        };
        let report = monitor.report();
        let states: Vec<(Labels<'_>, f64)> = report
            .checks
            .iter()
            .map(|c| (vec![("check", c.name.as_str())], c.state as u8 as f64))
            .collect();
        gauge(
            e,
            "quiver_health_state",
            "Each health check's state: 0 ok, 1 warning, 2 critical (system.health).",
            &states,
        )?;
        let free: Vec<(Labels<'_>, f64)> = report
            .checks
            .iter()
            .filter(|c| c.name == "disk_free")
            .filter_map(|c| Some((vec![], c.value?)))
            .collect();
        gauge(
            e,
            "quiver_disk_free_bytes",
            "Free bytes in the data dir's file system.",
            &free,
        )
    }

    fn encode_alerts(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let Some(a) = &self.alerts else {
            return Ok(());
        };
        let attempts = a.attempts();
        let by_receiver: Vec<(Labels<'_>, u64)> = attempts
            .iter()
            .map(|c| {
                (
                    vec![("receiver", c.receiver.as_str()), ("outcome", c.outcome)],
                    c.attempts,
                )
            })
            .collect();
        counter(
            e,
            "quiver_alert_deliveries",
            "Alert delivery attempts by receiver and outcome (sent, retry, gave_up, failed).",
            &by_receiver,
        )?;
        counter(
            e,
            "quiver_alerts_refused",
            "Alert notices the outbox refused (alerts.outbox_max).",
            &[(vec![], a.refused())],
        )?;
        counter(
            e,
            "quiver_alerts_cooled_down",
            "Alert notices dropped inside their cooldown.",
            &[(vec![], a.cooled_down())],
        )
    }

    fn encode_tails(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let t = &self.tails;
        gauge(
            e,
            "quiver_tails_open",
            "Live tails open (flight.tails_max at most).",
            &[(vec![], t.open.load(Ordering::Relaxed) as f64)],
        )?;
        gauge(
            e,
            "quiver_tail_buffered_bytes",
            "Bytes queued for live-tail clients, every tail together \
             (flight.tail_buffer_bytes each at most).",
            &[(vec![], t.buffered_bytes.load(Ordering::Relaxed) as f64)],
        )?;
        counter(
            e,
            "quiver_tail_events",
            "Event rows sent to live tails.",
            &[(vec![], t.events_sent.load(Ordering::Relaxed))],
        )?;
        counter(
            e,
            "quiver_tail_slow_reader_gaps",
            "Gaps sent to live tails that read too slowly.",
            &[(vec![], t.slow_reader_gaps.load(Ordering::Relaxed))],
        )
    }
}

/// The scrape body: every family, then `# EOF`.
fn scrape(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// A running `/metrics` endpoint.
pub struct Exporter {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Exporter {
    /// Binds `listen` and serves `/metrics` until [`Exporter::stop`].
    pub async fn start(listen: SocketAddr, sources: Sources) -> anyhow::Result<Self> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(sources));
        let registry = Arc::new(registry);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move {
                    match scrape(&registry) {
                        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the Prometheus endpoint on {listen}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self { addr, stop, task })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?.context("serving /metrics")?;
        Ok(())
    }
}
