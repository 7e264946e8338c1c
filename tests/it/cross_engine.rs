//! The lake is open: DuckDB reading it with hive partitioning gets the same
//! counts and sums as Quiver's SQL.

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use quiver::event::Table;
use quiver::ingest::LoggerConfig;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_the_lake_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let config = LoggerConfig {
        queue_capacity: 1_000_000,
        ..fast_logger_config()
    };
    let h = Harness::open(small_store_config(dir.path()), config.clone());
    for e in sim_events(11, 800) {
        assert!(h.logger.log(e).is_accepted());
    }
    h.logger.flush().await.unwrap();
    h.close();
    // Everything is in the lake after a clean close.
    let h = Harness::open(small_store_config(dir.path()), config);
    let duck = duckdb::Connection::open_in_memory().unwrap();
    let lake = dir.path().join("lake");
    for table in Table::ALL {
        let glob = format!("{}/{}/*/*/*.parquet", lake.display(), table.name());
        let duck_count: i64 = duck
            .query_row(
                &format!("SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        let ours = h
            .scalar(&format!("SELECT count(*) FROM events.{}", table.name()))
            .await;
        assert_eq!(duck_count, ours, "{}", table.name());
        assert!(ours > 0, "{} is empty", table.name());
    }
    // Sums and per-partition counts.
    let glob = format!("{}/trades/*/*/*.parquet", lake.display());
    let duck_sum: f64 = duck
        .query_row(
            &format!("SELECT sum(pnl_bps) FROM read_parquet('{glob}', hive_partitioning = true)"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    let ours = h.query("SELECT sum(pnl_bps) FROM trades").await;
    let ours = ours[0].column(0).as_primitive::<Float64Type>().value(0);
    assert!((duck_sum - ours).abs() < 1e-6 * duck_sum.abs().max(1.0), "{duck_sum} vs {ours}");

    let glob = format!("{}/market_context/*/*/*.parquet", lake.display());
    let mut stmt = duck
        .prepare(&format!(
            "SELECT symbol, CAST(date AS VARCHAR), count(*) FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
        ))
        .unwrap();
    let duck_rows: Vec<(String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(duck_rows.len() > 5, "{duck_rows:?}");
    for (symbol, date, n) in duck_rows {
        let ours = h
            .scalar(&format!(
                "SELECT count(*) FROM market_context WHERE symbol = '{symbol}' AND date = DATE '{date}'"
            ))
            .await;
        assert_eq!(ours, n, "{symbol} {date}");
    }
    h.close();
}
