//! The lake is open: DuckDB (Python, from the test virtualenv) reading it with
//! hive partitioning gets the same counts and sums as Quiver's SQL.

use std::process::Command;

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use quiver::event::Table;
use quiver::ingest::LoggerConfig;

use crate::common::*;

/// The test virtualenv's Python: `TEST_PYTHON`, else `./.venv/bin/python`.
pub fn test_python() -> String {
    if let Ok(python) = std::env::var("TEST_PYTHON") {
        return python;
    }
    let local = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    assert!(
        std::path::Path::new(local).exists(),
        "no test virtualenv: run scripts/test.sh once (it creates .venv), or set TEST_PYTHON"
    );
    local.to_string()
}

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
    let lake = dir.path().join("lake");
    let output = Command::new(test_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/lake_stats.py"
        ))
        .arg(&lake)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let duck: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let h = Harness::open(small_store_config(dir.path()), config);
    for table in Table::ALL {
        let ours = h
            .scalar(&format!("SELECT count(*) FROM events.{}", table.name()))
            .await;
        assert!(ours > 0, "{} is empty", table.name());
        assert_eq!(
            duck["counts"][table.name()].as_i64(),
            Some(ours),
            "{}",
            table.name()
        );
    }
    let ours = h.query("SELECT sum(pnl_bps) FROM trades").await;
    let ours = ours[0].column(0).as_primitive::<Float64Type>().value(0);
    let theirs = duck["pnl_sum"].as_f64().unwrap();
    assert!(
        (theirs - ours).abs() < 1e-6 * theirs.abs().max(1.0),
        "{theirs} vs {ours}"
    );

    let partitions = duck["market_by_partition"].as_array().unwrap();
    assert!(partitions.len() > 5, "{partitions:?}");
    for row in partitions {
        let (symbol, date, n) = (
            row[0].as_str().unwrap(),
            row[1].as_str().unwrap(),
            row[2].as_i64().unwrap(),
        );
        let ours = h
            .scalar(&format!(
                "SELECT count(*) FROM market_context WHERE symbol = '{symbol}' AND date = DATE '{date}'"
            ))
            .await;
        assert_eq!(ours, n, "{symbol} {date}");
    }
    h.close();
}
