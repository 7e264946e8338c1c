//! The catalog: schemas and tables exist, SQL is read-only, `system.*` tells the
//! truth (the kill switch included), `hot.*` serves the DuckDB tables.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quiver::event::{Level, Table};
use quiver::ingest::{Logger, LoggerConfig};
use quiver::query::{QueryConfig, QueryEngine};
use quiver::store::Store;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_every_table_and_rejects_writes() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(small_store_config(dir.path()), fast_logger_config());
    let tables = h
        .scalar("SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'quiver' AND table_schema IN ('events', 'hot')")
        .await;
    assert_eq!(tables, 2 * Table::ALL.len() as i64);
    for system in [
        "queue",
        "drops",
        "kill_switch",
        "writer",
        "lake_files",
        "quarantined_files",
        "alert_deliveries",
    ] {
        h.query(&format!("SELECT * FROM system.{system}")).await;
    }
    for sql in [
        "CREATE TABLE x (a INT)",
        "INSERT INTO events.signals SELECT * FROM events.signals",
        "DROP TABLE events.signals",
        "SET datafusion.execution.batch_size = 1",
        "COPY (SELECT 1) TO '/tmp/quiver-should-not-exist.csv'",
    ] {
        let err = h.engine.query(sql).await.expect_err(sql).to_string();
        assert!(
            err.contains("not supported")
                || err.contains("not allowed")
                || err.contains("Unsupported"),
            "{sql}: {err}"
        );
    }
    for i in 0..10 {
        assert!(h.logger.log(market_event(i, Level::Info)).is_accepted());
    }
    h.logger.flush().await.unwrap();
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(30)));
    assert_eq!(
        h.scalar("SELECT count(*) FROM hot.market_context").await,
        10
    );
    assert_eq!(
        h.scalar("SELECT count(*) FROM events.market_context").await,
        10
    );
    assert_eq!(
        h.scalar("SELECT count(*) FROM quiver.events.market_context WHERE date = current_date()")
            .await,
        10
    );
    assert_eq!(h.scalar("SELECT sum(accepted) FROM system.drops").await, 10);
    assert_eq!(h.scalar("SELECT rows_written FROM system.queue").await, 10);
    let last: i64 = h
        .scalar("SELECT count(*) FROM system.queue WHERE last_flush IS NOT NULL")
        .await;
    assert_eq!(last, 1);
    h.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_state_is_visible_in_sql() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sink) = Store::open(small_store_config(dir.path())).unwrap();
    drop(sink);
    let store = Arc::new(store);
    let stalled = MemorySink::default();
    stalled.stalled.store(true, Ordering::Release);
    let logger = Logger::start(
        LoggerConfig {
            queue_capacity: 100,
            flush_interval: Duration::from_millis(5),
            ..LoggerConfig::default()
        },
        stalled.clone(),
    )
    .unwrap();
    let engine =
        QueryEngine::new(store.clone(), Some(logger.clone()), &QueryConfig::default()).unwrap();
    let tripped = || async {
        let batches = engine
            .query("SELECT CAST(tripped AS INT) FROM system.kill_switch")
            .await
            .unwrap();
        let col =
            arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
        use arrow::array::AsArray;
        col.as_primitive::<arrow::datatypes::Int64Type>().value(0)
    };
    assert_eq!(tripped().await, 0);
    let _ = logger.log(market_event(0, Level::Info));
    std::thread::sleep(Duration::from_millis(50));
    for i in 1..200 {
        let _ = logger.log(market_event(i, Level::Warning));
    }
    assert!(logger.kill_switch_tripped());
    assert_eq!(tripped().await, 1);
    let trips = engine
        .query("SELECT trips FROM system.kill_switch")
        .await
        .unwrap();
    assert_eq!(trips[0].num_rows(), 1);
    stalled.stalled.store(false, Ordering::Release);
    drop(engine);
    logger.close().unwrap();
    Arc::try_unwrap(store).unwrap().close().unwrap();
}

#[test]
fn a_second_open_of_the_data_dir_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _sink) = Store::open(small_store_config(dir.path())).unwrap();
    let started = std::time::Instant::now();
    let err = Store::open(small_store_config(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("in use by another Quiver process"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(_sink);
    store.close().unwrap();
}

/// A query nested past `query.sql_depth_max` is refused with the key named;
/// before the limit, 5 000 terms or UNION branches overflowed the planner's
/// stack and aborted the process. Queries at the limit still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_nested_too_deep_is_refused_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(small_store_config(dir.path()), fast_logger_config());
    let max = QueryConfig::default().sql_depth_max;
    let sum = |n: usize| format!("SELECT {} AS x", vec!["1"; n].join(" + "));
    let union = |n: usize| vec!["SELECT 1 AS x"; n].join(" UNION ALL ");
    let nested = |n: usize| format!("{}1{}", "(SELECT ".repeat(n), ")".repeat(n));
    for deep in [sum(5_000), union(5_000), sum(max + 1), union(max + 1)] {
        let err = h.engine.query(&deep).await.unwrap_err();
        assert!(
            err.to_string().contains("query.sql_depth_max"),
            "{}: {err}",
            &deep[..40]
        );
    }
    // The parser's own limit comes first for parentheses.
    assert!(h.engine.query(&nested(5_000)).await.is_err());
    assert_eq!(h.scalar(&sum(max / 2)).await as usize, max / 2);
    let rows: usize = h
        .engine
        .query(&union(max - 1))
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, max - 1);
    h.close();
}
