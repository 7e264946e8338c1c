//! Exactly once: every accepted event appears once in `events.*`, across batches,
//! lake rolls, compaction and a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use quiver::event::{Level, Table};
use quiver::ingest::{Logger, LoggerConfig};

use crate::common::*;

async fn assert_each_once(h: &Harness, expected: &BTreeMap<Table, i64>, stage: &str) {
    for table in Table::ALL {
        let want = expected.get(table).copied().unwrap_or(0);
        let sql = format!(
            "SELECT count(*) - count(DISTINCT event_id) FROM events.{}",
            table.name()
        );
        assert_eq!(
            h.scalar(&sql).await,
            0,
            "{stage}: duplicate event_id in {}",
            table.name()
        );
        let sql = format!("SELECT count(*) FROM events.{}", table.name());
        assert_eq!(
            h.scalar(&sql).await,
            want,
            "{stage}: count of {}",
            table.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_once_across_rolls_compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let logger_config = LoggerConfig {
        queue_capacity: 1_000_000,
        ..fast_logger_config()
    };
    let h = Harness::open(small_store_config(dir.path()), logger_config.clone());
    let events = sim_events(1, 1_500);
    let mut expected: BTreeMap<Table, i64> = BTreeMap::new();
    for event in events {
        *expected.entry(event.table()).or_default() += 1;
        assert!(h.logger.log(event).is_accepted());
    }
    let total: i64 = expected.values().sum();
    assert!(total > 20_000, "{total} events");
    h.logger.flush().await.unwrap();
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(60)));
    assert_each_once(&h, &expected, "after flush").await;
    // The lake reads the WAL on its own thread: it rolls (every 2,000 rows
    // here) soon after, not before flush() returns.
    let started = std::time::Instant::now();
    while h.scalar("SELECT lake_rolls FROM system.writer").await <= 1
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.scalar("SELECT lake_rolls FROM system.writer").await > 1);

    h.store.roll_lake().unwrap();
    assert_each_once(&h, &expected, "after a roll").await;
    let files_before = h.scalar("SELECT count(*) FROM system.lake_files").await;
    let merged = h.store.compact(2).unwrap();
    assert!(merged > 0);
    let files_after = h.scalar("SELECT count(*) FROM system.lake_files").await;
    assert!(
        files_after < files_before,
        "{files_after} >= {files_before}"
    );
    assert_each_once(&h, &expected, "after compaction").await;
    // Partition pruning keeps the answer right.
    let btc: i64 = h
        .scalar("SELECT count(*) FROM events.market_context WHERE symbol = 'BTC-USD'")
        .await;
    let by_symbol: i64 = h
        .scalar("SELECT sum(n) FROM (SELECT symbol, count(*) AS n FROM events.market_context GROUP BY symbol) WHERE symbol = 'BTC-USD'")
        .await;
    assert_eq!(btc, by_symbol);
    // ... and does prune: the plan reads no other symbol's or date's files.
    let plan = h
        .query("EXPLAIN SELECT count(*) FROM market_context WHERE symbol = 'BTC-USD' AND date = current_date()")
        .await;
    let plan = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(plan.contains("symbol=BTC-USD"), "{plan}");
    assert!(!plan.contains("symbol=ETH-USD"), "{plan}");
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("date=%Y-%m-%d")
        .to_string();
    assert!(!plan.contains(&yesterday), "{plan}");
    h.close();

    let h = Harness::open(small_store_config(dir.path()), logger_config);
    assert_each_once(&h, &expected, "after restart").await;
    assert_eq!(
        h.scalar("SELECT lake_pending_rows FROM system.writer")
            .await,
        0
    );
    h.close();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// produced = stored + dropped: nothing accepted is lost and every drop is
    /// counted; CRITICAL is never dropped.
    #[test]
    fn produced_equals_stored_plus_dropped(levels in prop::collection::vec(0u8..3, 1..3_000), capacity in 16usize..400) {
        let sink = MemorySink::default();
        let logger = Logger::start(
            LoggerConfig { queue_capacity: capacity, batch_rows_max: 64, flush_interval: Duration::from_millis(5), ..LoggerConfig::default() },
            sink.clone(),
        ).unwrap();
        let mut critical = 0usize;
        for (i, l) in levels.iter().enumerate() {
            let level = [Level::Debug, Level::Info, Level::Critical][*l as usize];
            critical += usize::from(level == Level::Critical);
            let _ = logger.log(market_event(i as u64, level));
        }
        logger.flush_blocking().unwrap();
        let stats = logger.stats();
        logger.close().unwrap();
        let stored = sink.rows() as u64;
        prop_assert_eq!(levels.len() as u64, stored + stats.dropped_total());
        prop_assert_eq!(stored, stats.accepted.total());
        prop_assert_eq!(sink.rows_where(|l| l == "CRITICAL"), critical);
        prop_assert_eq!(stats.accepted.get(Level::Critical), critical as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_store_prunes_only_rows_already_in_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_store_config(dir.path());
    config.lake.roll_rows_max = 1_000_000; // roll only when asked
    config.hot.retention = Duration::from_micros(1);
    config.hot.checkpoint_interval = Duration::ZERO;
    let h = Harness::open(config, fast_logger_config());
    for i in 0..300 {
        assert!(h.logger.log(market_event(i, Level::Info)).is_accepted());
    }
    h.logger.flush().await.unwrap();
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(30)));
    // Past retention but not in the lake yet: kept.
    assert!(h.logger.log(market_event(1_000, Level::Info)).is_accepted());
    h.logger.flush().await.unwrap();
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        h.scalar("SELECT count(*) FROM hot.market_context").await,
        301
    );
    // Once the lake holds them, the next maintenance prunes them from the hot store.
    h.store.roll_lake().unwrap();
    assert!(h.logger.log(market_event(2_000, Level::Info)).is_accepted());
    h.logger.flush().await.unwrap();
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(30)));
    let mut hot = i64::MAX;
    for _ in 0..100 {
        hot = h.scalar("SELECT count(*) FROM hot.market_context").await;
        if hot == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(hot, 1, "only the row not yet in the lake stays hot");
    assert_eq!(
        h.scalar("SELECT count(*) FROM events.market_context").await,
        302
    );
    h.close();
}
