//! Shared helpers: a pipeline in a temp dir, simulated events, count queries.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use quiver::event::{Event, Ts};
use quiver::gates::GatesConfig;
use quiver::ingest::{Logger, LoggerConfig};
use quiver::query::{QueryConfig, QueryEngine};
use quiver::sim::Simulator;
use quiver::store::{LakeConfig, Store, StoreConfig};

/// A store config that rolls and compacts often, so tests cross every path.
pub fn small_store_config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.lake = LakeConfig {
        roll_rows_max: 2_000,
        roll_interval: Duration::from_secs(600),
        compact_trigger_files: 4,
        ..LakeConfig::default()
    };
    c.wal_segment_bytes_max = 256 * 1024;
    c
}

pub fn fast_logger_config() -> LoggerConfig {
    LoggerConfig {
        flush_interval: Duration::from_millis(20),
        batch_rows_max: 500,
        ..LoggerConfig::default()
    }
}

pub struct Harness {
    pub store: Arc<Store>,
    pub logger: Logger,
    pub engine: QueryEngine,
}

impl Harness {
    pub fn open(store_config: StoreConfig, logger_config: LoggerConfig) -> Self {
        let (store, sink) = Store::open(store_config).unwrap();
        let store = Arc::new(store);
        let logger = Logger::start(logger_config, sink).unwrap();
        let engine =
            QueryEngine::new(store.clone(), Some(logger.clone()), &QueryConfig::default()).unwrap();
        Self {
            store,
            logger,
            engine,
        }
    }

    /// Closes the logger and the store (the lake rolls everything pending).
    pub fn close(self) {
        let Harness {
            store,
            logger,
            engine,
        } = self;
        drop(engine);
        logger.close().unwrap();
        drop(logger);
        Arc::try_unwrap(store).unwrap().close().unwrap();
    }

    pub async fn query(&self, sql: &str) -> Vec<RecordBatch> {
        self.engine
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A query with its parameters bound.
    pub async fn query_with(
        &self,
        sql: &str,
        params: Vec<datafusion::common::ScalarValue>,
    ) -> Vec<RecordBatch> {
        self.engine
            .query_with(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The single i64 a query returns.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let batches = self.query(sql).await;
        let batch = batches.iter().find(|b| b.num_rows() > 0).unwrap();
        let col =
            arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Int64).unwrap();
        let col = col.as_primitive::<Int64Type>();
        assert!(!col.is_null(0), "{sql} returned NULL");
        col.value(0)
    }
}

/// `cycles` signal cycles of the demo bot on a simulated clock ending about now,
/// plus everything that resolved by now.
pub fn sim_events(seed: u64, cycles: usize) -> Vec<Event> {
    let mut sim = Simulator::new(seed, GatesConfig::builtin().unwrap());
    let now = Ts::now().0;
    // Spread over ~two days so the lake gets several date partitions.
    let step = (2 * 86_400_000_000i64) / cycles.max(1) as i64;
    let start = now - 2 * 86_400_000_000i64 - 3_600_000_000;
    let mut out = Vec::new();
    for i in 0..cycles {
        sim.cycle(Ts(start + i as i64 * step), &mut out);
    }
    sim.due(Ts(now), &mut out);
    out
}

/// A sink that keeps batches in memory and can be stalled, for logger tests.
#[derive(Clone, Default)]
pub struct MemorySink {
    pub batches: Arc<std::sync::Mutex<Vec<(quiver::event::Table, RecordBatch)>>>,
    /// While true, `write` blocks (a stalled writer).
    pub stalled: Arc<std::sync::atomic::AtomicBool>,
    /// Microseconds each `write` takes (a slow disk).
    pub write_delay_us: Arc<std::sync::atomic::AtomicU64>,
}

impl MemorySink {
    pub fn rows(&self) -> usize {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.num_rows())
            .sum()
    }

    pub fn rows_where(&self, pred: impl Fn(&str) -> bool) -> usize {
        let batches = self.batches.lock().unwrap();
        let mut n = 0;
        for (_, b) in batches.iter() {
            let levels = b.column_by_name("level").unwrap().as_string::<i32>();
            n += levels.iter().filter(|l| l.is_some_and(&pred)).count();
        }
        n
    }
}

impl quiver::ingest::BatchSink for MemorySink {
    fn write(
        &mut self,
        batches: &[(quiver::event::Table, RecordBatch)],
    ) -> Result<(), quiver::ingest::SinkError> {
        while self.stalled.load(std::sync::atomic::Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let delay = self
            .write_delay_us
            .load(std::sync::atomic::Ordering::Acquire);
        std::thread::sleep(Duration::from_micros(delay));
        self.batches.lock().unwrap().extend(batches.iter().cloned());
        Ok(())
    }
}

/// A valid market-context event at `ts` with the given id and level.
pub fn market_event(id: u64, level: quiver::event::Level) -> Event {
    use quiver::event::*;
    Event::MarketContext(MarketContext {
        header: EventHeader {
            event_id: format!("ev-{id:012}"),
            ts: Ts::now(),
            symbol: ["BTC-USD", "ETH-USD", "SOL-USD"][(id % 3) as usize].to_string(),
            level,
        },
        price: 100.0 + (id % 1000) as f64,
        spread_bps: 1.5,
        volume: 2.0,
        volatility: 0.3,
        regime: Regime::Range,
    })
}

/// Invariant 9, after any fault: every `event_id` of `hot.<t>` is in
/// `events.<t>`, and `events.<t>` holds each event once.
pub async fn assert_hot_within_events(h: &Harness, stage: &str) {
    for table in quiver::event::Table::ALL {
        let t = table.name();
        let dup = h
            .scalar(&format!(
                "SELECT count(*) - count(DISTINCT event_id) FROM events.{t}"
            ))
            .await;
        assert_eq!(dup, 0, "{stage}: duplicates in events.{t}");
        let hidden = h
            .scalar(&format!(
                "SELECT count(*) FROM hot.{t} h WHERE NOT EXISTS \
                 (SELECT 1 FROM events.{t} e WHERE e.event_id = h.event_id)"
            ))
            .await;
        assert_eq!(
            hidden, 0,
            "{stage}: rows of hot.{t} missing from events.{t}"
        );
    }
}

/// The event ids of `events.<table>`.
pub async fn event_ids(h: &Harness, table: &str) -> std::collections::BTreeSet<String> {
    let batches = h
        .query(&format!("SELECT event_id FROM events.{table}"))
        .await;
    let mut out = std::collections::BTreeSet::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        for v in col.as_string::<i32>().iter().flatten() {
            out.insert(v.to_string());
        }
    }
    out
}

/// Parquet files under `dir`, recursively.
pub fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    crate::validation::walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}
