//! Metrics and analyses: the `.slt` files in `tests/slt/` on a small fixed
//! dataset whose values are worked out by hand (in the files' comments);
//! hostile definitions; a dozen metrics against hand-written DuckDB queries
//! over the same Parquet; and `metrics compute` and hot reload end to end.
//!
//! `SLT_COMPLETE=1 cargo test --test it metrics::slt` rewrites the expected
//! results of the `.slt` files from what the engine answers (check the diff
//! against the hand-worked values before committing it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::NaiveDate;
use quiver::event::*;
use quiver::metrics::{DefinitionPaths, Definitions};
use quiver::query::{QueryEngine, QueryError};
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn shipped_paths() -> DefinitionPaths {
    DefinitionPaths {
        metrics_file: repo("configs/metrics.yaml"),
        analysis_dir: repo("sql/analysis"),
        gates_file: repo("configs/gates.yaml"),
        data_dir: None,
    }
}

/// The fixture's day: Monday 2026-11-02.
pub const DAY: &str = "2026-11-02";

fn at(hour: u32, minute: u32, second: u32) -> Ts {
    Ts(NaiveDate::from_ymd_opt(2026, 11, 2)
        .unwrap()
        .and_hms_opt(hour, minute, second)
        .unwrap()
        .and_utc()
        .timestamp_micros())
}

fn header(symbol: &str, ts: Ts) -> EventHeader {
    EventHeader {
        ts,
        ..EventHeader::new(symbol, Level::Info)
    }
}

#[allow(clippy::too_many_arguments)]
fn close(
    id: &str,
    signal: &str,
    minute: u32,
    mode: Mode,
    regime: Regime,
    pnl: f64,
    hold: f64,
) -> Event {
    Event::Trade(Trade {
        header: header("BTC-USD", at(10, minute, 0)),
        trade_id: id.into(),
        signal_id: signal.into(),
        kind: TradeKind::Close,
        side: Side::Buy,
        qty: 1.0,
        price: 100.0,
        fees_bps: 4.0,
        pnl_bps: Some(pnl),
        duration_s: Some(hold),
        mode,
        regime,
        mae_bps: Some(-pnl.abs() / 2.0),
        mfe_bps: Some(pnl.abs() * 2.0),
        features: None,
    })
}

fn open(id: &str, signal: &str, minute: u32, mode: Mode) -> Event {
    Event::Trade(Trade {
        header: header("BTC-USD", at(9, minute, 0)),
        trade_id: id.into(),
        signal_id: signal.into(),
        kind: TradeKind::Open,
        side: Side::Buy,
        qty: 1.0,
        price: 100.0,
        fees_bps: 4.0,
        pnl_bps: None,
        duration_s: None,
        mode,
        regime: Regime::Trend,
        mae_bps: None,
        mfe_bps: None,
        features: None,
    })
}

#[allow(clippy::too_many_arguments)]
fn decision(
    signal: &str,
    gate: Gate,
    pass: bool,
    value: f64,
    threshold: f64,
    direction: Direction,
    mode: Mode,
) -> Event {
    Event::GateDecision(GateDecision {
        header: header("ETH-USD", at(8, 0, 0)),
        decision_id: format!("{signal}-{}", gate.as_str()),
        signal_id: signal.into(),
        trace_id: format!("tr-{signal}"),
        gate,
        result: if pass {
            GateResult::Pass
        } else {
            GateResult::Fail
        },
        value,
        threshold,
        direction,
        mode,
        regime: Regime::Trend,
        inputs: "{}".into(),
    })
}

fn shadow(signal: &str, kind: ShadowKind, gate: Gate, mode: Mode, outcome: Option<f64>) -> Event {
    Event::ShadowTrade(ShadowTrade {
        header: header("ETH-USD", at(if outcome.is_some() { 12 } else { 8 }, 0, 0)),
        shadow_id: format!("sh-{signal}"),
        signal_id: signal.into(),
        kind,
        blocked_by: gate,
        side: Side::Buy,
        hypothetical_entry: 100.0,
        outcome_pnl_bps: outcome,
        mode,
        regime: Regime::Trend,
    })
}

fn step(trace: &str, seq: i32, name: &str, start_ms: f64, duration_ms: f64) -> Event {
    Event::TraceStep(TraceStep {
        header: header("ETH-USD", at(8, 0, 0)),
        trace_id: trace.into(),
        signal_id: format!("sig-{trace}"),
        step: name.into(),
        seq,
        start_ms,
        duration_ms,
        result: "ok".into(),
    })
}

fn market(minute: u32, regime: Regime, spread: f64) -> Event {
    Event::MarketContext(MarketContext {
        header: header("BTC-USD", at(7, minute, 0)),
        price: 100.0,
        spread_bps: spread,
        volume: 2.0,
        volatility: 0.01,
        regime,
    })
}

/// The fixed dataset of the `.slt` files (every value is in their comments).
pub fn fixture() -> Vec<Event> {
    use Direction::{Max, Min};
    use Gate::{MetaLabel, SpreadGate};
    use Mode::{Runner, Scalp};
    let mut events = vec![
        // Scalp closes, in time order: 10, -5, 20, -15, 5.
        close("t1", "s1", 1, Scalp, Regime::Trend, 10.0, 30.0),
        close("t2", "x2", 2, Scalp, Regime::Trend, -5.0, 60.0),
        close("t3", "x3", 3, Scalp, Regime::Range, 20.0, 90.0),
        close("t4", "x4", 4, Scalp, Regime::Range, -15.0, 120.0),
        close("t5", "x5", 5, Scalp, Regime::Trend, 5.0, 150.0),
        // Runner closes: 40, -60.
        close("t6", "x6", 6, Runner, Regime::Trend, 40.0, 600.0),
        close("t7", "x7", 7, Runner, Regime::Panic, -60.0, 1200.0),
    ];
    for (i, (id, mode)) in [
        ("t1", Scalp),
        ("t2", Scalp),
        ("t3", Scalp),
        ("t4", Scalp),
        ("t5", Scalp),
        ("t6", Runner),
        ("t7", Runner),
    ]
    .into_iter()
    .enumerate()
    {
        events.push(open(id, &format!("open-{id}"), i as u32, mode));
    }
    events.extend([
        // s1 passes both gates (and became t1); s2 fails meta_label; s3
        // fails both; s4 (runner) fails spread_gate.
        decision("s1", MetaLabel, true, 0.60, 0.55, Min, Scalp),
        decision("s1", SpreadGate, true, 3.0, 5.0, Max, Scalp),
        decision("s2", MetaLabel, false, 0.50, 0.55, Min, Scalp),
        decision("s2", SpreadGate, true, 4.0, 5.0, Max, Scalp),
        decision("s3", MetaLabel, false, 0.40, 0.55, Min, Scalp),
        decision("s3", SpreadGate, false, 6.0, 5.0, Max, Scalp),
        decision("s4", MetaLabel, true, 0.60, 0.52, Min, Runner),
        decision("s4", SpreadGate, false, 5.2, 5.0, Max, Runner),
        shadow("s2", ShadowKind::Blocked, MetaLabel, Scalp, None),
        shadow("s3", ShadowKind::Blocked, MetaLabel, Scalp, None),
        shadow("s4", ShadowKind::Blocked, SpreadGate, Runner, None),
        shadow("s2", ShadowKind::Resolved, MetaLabel, Scalp, Some(-8.0)),
        shadow("s3", ShadowKind::Resolved, MetaLabel, Scalp, Some(12.0)),
        shadow("s4", ShadowKind::Resolved, SpreadGate, Runner, Some(4.0)),
        // Trace tr1: 1 + 2 + 7 = 10 ms; tr2: 1 + 1 + 2 = 4 ms.
        step("tr1", 0, "a", 0.0, 1.0),
        step("tr1", 1, "b", 1.0, 2.0),
        step("tr1", 2, "c", 3.0, 7.0),
        step("tr2", 0, "a", 0.0, 1.0),
        step("tr2", 1, "b", 1.0, 1.0),
        step("tr2", 2, "c", 2.0, 2.0),
        market(0, Regime::Trend, 2.0),
        market(1, Regime::Trend, 4.0),
        market(2, Regime::Range, 10.0),
    ]);
    events
}

/// A pipeline holding the fixture, with the shipped definitions installed.
pub async fn fixture_harness(dir: &Path) -> Harness {
    let h = Harness::open(small_store_config(dir), fast_logger_config());
    for event in fixture() {
        assert!(h.logger.log(event).is_accepted());
    }
    h.logger.flush().await.unwrap();
    assert!(h.engine.wait_visible(Duration::from_secs(30)).await);
    h.engine
        .install_definitions(Definitions::load(&shipped_paths()).unwrap())
        .unwrap();
    h
}

struct Db {
    engine: QueryEngine,
}

pub fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, column)| {
                        // Floats as Rust prints them: 10 rather than 10.0.
                        if let Some(floats) =
                            column.as_primitive_opt::<arrow::datatypes::Float64Type>()
                            && floats.is_valid(row)
                        {
                            return format!("{}", floats.value(row));
                        }
                        let text = f.value(row).to_string();
                        if text.is_empty() {
                            "(empty)".into()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let df = self.engine.sql(sql).await?;
        let columns = df.schema().fields().len();
        let batches = df.collect().await.map_err(QueryError::Execute)?;
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows: rows_of(&batches),
        })
    }

    async fn shutdown(&mut self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt() {
    let dir = tempfile::tempdir().unwrap();
    let h = fixture_harness(dir.path()).await;
    let complete = std::env::var_os("SLT_COMPLETE").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("tests/slt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in &files {
        let engine = h.engine.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move { Ok(Db { engine }) }
        });
        if complete {
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap();
        } else {
            runner
                .run_file_async(file)
                .await
                .unwrap_or_else(|e| panic!("{}: {}", file.display(), e.display(true)));
        }
    }
    h.close();
}

/// Writes `text` as a metrics file in `dir` and returns the paths (with an
/// analysis dir and the built-in gates file beside it).
fn definitions_in(dir: &Path, metrics: &str) -> DefinitionPaths {
    std::fs::create_dir_all(dir.join("analysis")).unwrap();
    std::fs::write(dir.join("metrics.yaml"), metrics).unwrap();
    std::fs::write(dir.join("gates.yaml"), quiver::gates::BUILTIN_GATES_YAML).unwrap();
    DefinitionPaths {
        metrics_file: dir.join("metrics.yaml"),
        analysis_dir: dir.join("analysis"),
        gates_file: dir.join("gates.yaml"),
        data_dir: None,
    }
}

fn one_metric(formula: &str, extra: &str) -> String {
    format!(
        "version: 1\nmetrics:\n  - name: evil\n    unit: bps\n    source: events.trades\n    formula: {}\n{extra}",
        serde_json::to_string(formula).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_definitions_are_refused_and_the_live_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let h = fixture_harness(&dir.path().join("data")).await;
    let live = h.engine.definitions().metrics.len();
    assert!(live >= 50, "{live}");
    let nested = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let nested_short = format!("{}1{}", "(".repeat(2_000), ")".repeat(2_000));
    let huge = format!("sum({})", "1 + ".repeat(262_144));
    // A billion laughs inside a field that is read, so the aliases expand.
    let mut bomb = String::from("version: 1\nmetrics:\n  - &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = format!("*a{}", i - 1);
        bomb.push_str(&format!("  - &a{i} [{}]\n", [p.as_str(); 10].join(", ")));
    }
    let cases: Vec<(String, &str)> = vec![
        (one_metric("1); DROP TABLE x; --", ""), "unexpected `)`"),
        (one_metric("avg(pnl_bps); DROP TABLE trades", ""), "one expression only"),
        (one_metric("(SELECT max(pnl_bps) FROM events.trades)", ""), "subqueries"),
        (one_metric("avg(pnl_bps) + (SELECT 1)", ""), "subqueries"),
        (one_metric("count(read_parquet('/etc/passwd'))", ""), "function `read_parquet` is not allowed"),
        (one_metric("COPY trades TO '/tmp/x'", ""), "one expression only"),
        (one_metric("sum(pnl_bps) OVER ()", ""), "window functions"),
        (one_metric(&nested, ""), "20001 bytes; at most 4096"),
        (one_metric(&nested_short, ""), "nested more than 32 levels"),
        (one_metric(&huge, ""), "at most 4096"),
        (bomb, "repetition limit exceeded"),
        (one_metric("avg(no_such_column)", ""), "no_such_column"),
        (one_metric("pnl_bps", ""), "must aggregate"),
        (one_metric("avg(pnl_bps)", "    filter: \"sum(pnl_bps) > 0\"\n"), "cannot aggregate"),
        (one_metric("avg(pnl_bps)", "    dimensions: [nope]\n"), "has no column `nope`"),
        (one_metric("avg(pnl_bps)", "    dimensions: [\"mode; DROP\"]\n"), "not a column name"),
        (
            "version: 1\nmetrics:\n  - { name: evil, unit: x, source: \"events.trades; DROP TABLE x\", formula: count(*) }\n".into(),
            "key `source`",
        ),
        (
            "version: 1\nmetrics:\n  - { name: evil, unit: x, source: hot.trades, formula: count(*) }\n".into(),
            "a source is a table or view in one of",
        ),
        (
            "version: 1\nmetrics:\n  - { name: evil, unit: x, source: events.nope, formula: count(*) }\n".into(),
            "events.nope",
        ),
        (
            "version: 1\nmetrics:\n  - { name: \"Evil\\u0000\", unit: x, source: events.trades, formula: count(*) }\n".into(),
            "key `name`",
        ),
        (
            "version: 1\nmetrics:\n  - { name: evil, unit: x, inputs: [evil2], formula: evil2 }\n  - { name: evil2, unit: x, inputs: [evil], formula: evil }\n".into(),
            "cycle: evil -> evil2 -> evil",
        ),
        ("version: 1\nmetrics: {}\n".into(), "metrics.yaml"),
        ("version: 2\nmetrics: []\n".into(), "version 2 is not supported"),
        ("\u{0}\u{1}garbage: [".into(), "metrics.yaml"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let case_dir = dir.path().join(format!("case{i}"));
        let paths = definitions_in(&case_dir, text);
        let error = match Definitions::load(&paths) {
            Err(e) => e,
            Ok(definitions) => h.engine.install_definitions(definitions).unwrap_err(),
        };
        let message = error.to_string();
        assert!(
            message.contains("metrics.yaml") && message.contains(expected),
            "case {i}: expected {expected:?} in {message}"
        );
        assert!(message.len() < 2_000, "case {i}: a 2 kB message: {message}");
        // Nothing registered; the shipped definitions are still live.
        assert_eq!(h.engine.definitions().metrics.len(), live, "case {i}");
        assert_eq!(
            h.scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'metrics' AND table_name = 'evil'")
                .await,
            0
        );
        assert_eq!(h.scalar("SELECT count(*) FROM metrics.win_rate").await, 2);
    }

    // Analyses: one SELECT under a header comment, planned read-only.
    for (i, (sql, expected)) in [
        ("-- x\nDROP TABLE events.trades", "one SELECT"),
        ("-- x\nSELECT 1; SELECT 2", "2 statements"),
        ("-- x\nCOPY (SELECT 1) TO '/tmp/x.csv'", "one SELECT"),
        ("SELECT 1", "comment"),
        (
            "-- x\nSELECT * FROM read_parquet('/etc/passwd')",
            "read_parquet",
        ),
        ("-- x\nSELECT * FROM '/etc/passwd'", "/etc/passwd"),
        ("-- x\nSELECT nope FROM events.trades", "nope"),
    ]
    .into_iter()
    .enumerate()
    {
        let case_dir = dir.path().join(format!("analysis{i}"));
        let paths = definitions_in(&case_dir, "version: 1\n");
        std::fs::write(paths.analysis_dir.join("evil.sql"), sql).unwrap();
        let error = match Definitions::load(&paths) {
            Err(e) => e,
            Ok(definitions) => h.engine.install_definitions(definitions).unwrap_err(),
        };
        let message = error.to_string();
        assert!(
            message.contains("evil.sql: analysis `evil`") && message.contains(expected),
            "analysis {i}: expected {expected:?} in {message}"
        );
        assert_eq!(h.engine.definitions().metrics.len(), live);
        assert_eq!(
            h.scalar("SELECT count(*) FROM analysis.trace_totals").await,
            2
        );
    }
    h.close();
}

/// Each metric's rendered SQL (what `metrics show` prints) answers what its
/// view answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_sql_answers_like_its_view() {
    let dir = tempfile::tempdir().unwrap();
    let h = fixture_harness(dir.path()).await;
    let loaded = h.engine.definitions();
    for metric in &loaded.metrics {
        if metric.def.is_snapshot() {
            continue;
        }
        let name = &metric.def.name;
        let view = h
            .query(&format!("SELECT * FROM metrics.{name} ORDER BY 2, 3"))
            .await;
        let sql = h
            .query(&format!("SELECT * FROM ({}) ORDER BY 2, 3", metric.sql))
            .await;
        assert_eq!(rows_of(&view), rows_of(&sql), "{name}");
    }
    // Snapshot metrics' plans hold the system tables, which hold the store.
    drop(loaded);
    h.close();
}

/// Runs `queries` with DuckDB (the test virtualenv's) over `lake`; each
/// returns (key, value) rows.
pub fn duckdb_queries(lake: &Path, queries: &[(&str, String)]) -> serde_json::Value {
    use std::io::Write;
    let request = serde_json::json!({
        "lake": lake,
        "queries": queries.iter().map(|(n, q)| (n.to_string(), serde_json::Value::from(q.as_str()))).collect::<serde_json::Map<_, _>>(),
    });
    let mut child = Command::new(crate::cross_engine::test_python())
        .arg(repo("tests/python/duck_queries.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn duck_rows(result: &serde_json::Value) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = result
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| Some((row[0].as_str()?.to_string(), row[1].as_f64()?)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn quiver_rows(h: &Harness, metric: &str, key: &str) -> Vec<(String, f64)> {
    let sql = format!(
        "SELECT CAST({key} AS VARCHAR) AS k, value FROM metrics.{metric} WHERE value IS NOT NULL"
    );
    let batches = h.query(&sql).await;
    let mut out = Vec::new();
    for batch in &batches {
        let keys =
            arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let keys = keys.as_string::<i32>();
        let values = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Float64Type>();
        for i in 0..batch.num_rows() {
            out.push((keys.value(i).to_string(), values.value(i)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

use arrow::array::AsArray;

/// A dozen metrics on simulated bot data equal hand-written DuckDB queries
/// over the same lake files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dozen_metrics_equal_hand_written_duckdb_over_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let roomy = quiver::ingest::LoggerConfig {
        queue_capacity: 1_000_000,
        ..fast_logger_config()
    };
    let h = Harness::open(small_store_config(dir.path()), roomy.clone());
    for e in sim_events(23, 4_000) {
        assert!(h.logger.log(e).is_accepted());
    }
    h.logger.flush().await.unwrap();
    h.close();
    let h = Harness::open(small_store_config(dir.path()), roomy);
    h.engine
        .install_definitions(Definitions::load(&shipped_paths()).unwrap())
        .unwrap();
    let lake = dir.path().join("lake");
    let k2 = "CAST(date AS VARCHAR) || '|' || ";
    let cases: Vec<(&str, &str, String)> = vec![
        ("win_rate", "CAST(day AS VARCHAR) || '|' || mode",
         format!("SELECT {k2} mode, avg(CASE WHEN pnl_bps > 0 THEN 1.0 ELSE 0.0 END) FROM trades WHERE kind = 'CLOSE' GROUP BY ALL")),
        ("avg_return_bps", "CAST(day AS VARCHAR) || '|' || mode",
         format!("SELECT {k2} mode, avg(pnl_bps) FROM trades WHERE kind = 'CLOSE' GROUP BY ALL")),
        ("median_return_bps", "CAST(day AS VARCHAR) || '|' || mode",
         format!("SELECT {k2} mode, median(pnl_bps) FROM trades WHERE kind = 'CLOSE' GROUP BY ALL")),
        // A day with losses but no wins has profit factor 0, not NULL (the first
        // day is a few hours long when the test runs late in the day).
        ("profit_factor", "CAST(day AS VARCHAR) || '|' || mode",
         format!("SELECT {k2} mode, coalesce(sum(pnl_bps) FILTER (pnl_bps > 0), 0) / -sum(pnl_bps) FILTER (pnl_bps < 0) FROM trades WHERE kind = 'CLOSE' GROUP BY ALL")),
        ("expectancy_bps", "CAST(day AS VARCHAR) || '|' || mode",
         format!("SELECT {k2} mode, avg(CASE WHEN pnl_bps > 0 THEN 1.0 ELSE 0.0 END) * avg(pnl_bps) FILTER (pnl_bps > 0) + (1 - avg(CASE WHEN pnl_bps > 0 THEN 1.0 ELSE 0.0 END)) * avg(pnl_bps) FILTER (pnl_bps < 0) FROM trades WHERE kind = 'CLOSE' GROUP BY ALL")),
        ("sharpe_per_trade", "CAST(day AS VARCHAR) || '|' || mode",
         format!("SELECT {k2} mode, avg(pnl_bps) / stddev_samp(pnl_bps) FROM trades WHERE kind = 'CLOSE' GROUP BY ALL")),
        ("max_drawdown_bps", "CAST(day AS VARCHAR) || '|' || mode",
         "WITH e AS (SELECT date, mode, ts, pnl_bps, sum(pnl_bps) OVER w AS equity FROM trades WHERE kind = 'CLOSE'
                     WINDOW w AS (PARTITION BY date, mode ORDER BY ts, pnl_bps ROWS UNBOUNDED PRECEDING)),
               p AS (SELECT date, mode, equity, greatest(max(equity) OVER w, 0) AS peak FROM e
                     WINDOW w AS (PARTITION BY date, mode ORDER BY ts, pnl_bps ROWS UNBOUNDED PRECEDING))
          SELECT CAST(date AS VARCHAR) || '|' || mode, max(peak - equity) FROM p GROUP BY ALL".into()),
        ("gate_pass_rate", "CAST(day AS VARCHAR) || '|' || gate || '|' || mode",
         format!("SELECT {k2} gate || '|' || mode, avg(CASE WHEN result = 'PASS' THEN 1.0 ELSE 0.0 END) FROM gate_decisions GROUP BY ALL")),
        ("shadow_good_block_rate", "CAST(day AS VARCHAR) || '|' || blocked_by",
         format!("SELECT {k2} blocked_by, avg(CASE WHEN outcome_pnl_bps <= 0 THEN 1.0 ELSE 0.0 END) FROM shadow_trades WHERE kind = 'RESOLVED' GROUP BY ALL")),
        ("step_latency_p95_ms", "CAST(day AS VARCHAR) || '|' || step",
         format!("SELECT {k2} step, quantile_cont(duration_ms, 0.95) FROM trace_steps GROUP BY ALL")),
        ("avg_spread_bps", "CAST(day AS VARCHAR) || '|' || regime",
         format!("SELECT {k2} regime, avg(spread_bps) FROM market_context GROUP BY ALL")),
        ("trace_latency_p99_ms", "CAST(day AS VARCHAR)",
         "SELECT CAST(date AS VARCHAR), quantile_cont(total, 0.99) FROM (SELECT trace_id, min(date) AS date, sum(duration_ms) AS total FROM trace_steps GROUP BY trace_id) GROUP BY ALL".into()),
    ];
    assert_eq!(cases.len(), 12);
    let queries: Vec<(&str, String)> = cases.iter().map(|(m, _, sql)| (*m, sql.clone())).collect();
    let duck = duckdb_queries(&lake, &queries);
    for (metric, key, _) in &cases {
        let ours = quiver_rows(&h, metric, key).await;
        let theirs = duck_rows(&duck[*metric]);
        assert!(!ours.is_empty(), "{metric}: no values");
        assert_eq!(
            ours.iter().map(|r| &r.0).collect::<Vec<_>>(),
            theirs.iter().map(|r| &r.0).collect::<Vec<_>>(),
            "{metric}: keys"
        );
        // DataFusion's percentile_cont quantizes the interpolation weight to
        // 6 decimals (percentile_cont.rs, INTERPOLATION_PRECISION); DuckDB does
        // not. Exact aggregates must agree to rounding.
        let tolerance = if metric.contains("latency") {
            1e-6
        } else {
            1e-9
        };
        for ((k, a), (_, b)) in ours.iter().zip(&theirs) {
            assert!(
                (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0),
                "{metric} {k}: quiver {a} vs duckdb {b}"
            );
        }
    }
    h.close();
}

use crate::cli::{quiver as quiver_cmd, run_in as run, sql as csv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_materializes_a_day_once_and_fires_its_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fixture_harness(&data).await.close();

    let (ok, out, err) = run(&data, &["metrics", "compute", "--date", DAY]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("{DAY}: ")), "{out}");
    let count = "SELECT count(*) AS n, count(DISTINCT metric) AS metrics FROM metrics.metric_values WHERE date = DATE '2026-11-02'";
    let first = csv(&data, count);
    // Again: the day is replaced, not added to.
    let (ok, _, err) = run(&data, &["metrics", "compute", "--date", DAY]);
    assert!(ok, "{err}");
    assert_eq!(csv(&data, count), first);
    let n: i64 = first
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 40, "{first}");

    // Values as the views give them, with their dimensions and status.
    assert_eq!(
        csv(
            &data,
            "SELECT dimensions, value, status, target FROM metrics.metric_values WHERE metric = 'win_rate' ORDER BY dimensions"
        ),
        "dimensions,value,status,target\n\"{\"\"mode\"\":\"\"runner\"\"}\",0.5,ok,0.45\n\"{\"\"mode\"\":\"\"scalp\"\"}\",0.6,ok,0.55\n"
    );
    // Alerts on a Monday: negative_expectancy (runner -10 <= 0), bad_blocks
    // (meta_label 0.5 warning, spread_gate 0 critical); the weekly rule waits
    // for Sunday; snapshot metrics (queue, drops) belong to today only.
    assert_eq!(
        csv(
            &data,
            "SELECT rule, severity, status, dimensions FROM metrics.alerts ORDER BY rule, dimensions"
        ),
        "rule,severity,status,dimensions\n\
         bad_blocks,warning,warning,\"{\"\"blocked_by\"\":\"\"meta_label\"\"}\"\n\
         bad_blocks,warning,critical,\"{\"\"blocked_by\"\":\"\"spread_gate\"\"}\"\n\
         negative_expectancy,warning,critical,\"{\"\"mode\"\":\"\"runner\"\"}\"\n"
    );
    assert!(out.contains("negative_expectancy"), "{out}");

    // A range: days without data are computed as empty, the fixture's day
    // unchanged.
    let (ok, out, err) = run(
        &data,
        &[
            "metrics",
            "compute",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-03",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("2026-11-0")).count(),
        3,
        "{out}"
    );
    assert_eq!(csv(&data, count), first);

    // The lake files are plain hive-partitioned Parquet.
    let duck = duckdb_queries(
        &data.join("lake"),
        &[(
            "n",
            "SELECT 'n', count(*) FROM metric_values WHERE date = DATE '2026-11-02'".into(),
        )],
    );
    assert_eq!(duck["n"][0][1].as_i64(), Some(n));

    // Errors: a reversed range, a broken metrics file (nothing written).
    let (ok, _, err) = run(
        &data,
        &[
            "metrics",
            "compute",
            "--from",
            "2026-11-03",
            "--to",
            "2026-11-01",
        ],
    );
    assert!(!ok && err.contains("is after"), "{err}");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "version: 1\nmetrics:\n  - { name: x, unit: u, source: events.trades, formula: \"(SELECT 1)\" }\n").unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nfile = {:?}\n", broken.display().to_string()),
    )
    .unwrap();
    let out = quiver_cmd()
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["metrics", "compute", "--date", "2026-11-05"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("broken.yaml: metric `x`, key `formula`: subqueries"),
        "{err}"
    );
    assert!(!data.join("lake/metric_values/date=2026-11-05").exists());
}

#[test]
fn check_list_and_show_work_without_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("unused");
    let (ok, out, err) = run(&data, &["metrics", "check"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("ok: "), "{out}");
    let (ok, out, _) = run(&data, &["metrics", "list", "--format", "csv"]);
    assert!(ok);
    assert!(out.lines().count() > 50, "{out}");
    assert!(
        out.contains("expectancy_bps,bps,\"= win_rate, avg_win_bps, avg_loss_bps\",mode"),
        "{out}"
    );
    let (ok, out, _) = run(&data, &["metrics", "show", "profit_factor"]);
    assert!(ok);
    assert!(
        out.contains("FROM\n") && out.contains("events.trades"),
        "{out}"
    );
    let (ok, out, _) = run(&data, &["metrics", "show", "trace_bottlenecks"]);
    assert!(ok && out.contains("-- analysis.trace_bottlenecks"), "{out}");
    let (ok, _, err) = run(&data, &["metrics", "show", "nope"]);
    assert!(
        !ok && err.contains("no metric or analysis is named `nope`"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "check, list and show must not create the data dir"
    );
}

/// `serve` picks up edits of metrics.yaml and sql/analysis/ while it runs,
/// refuses a broken edit (the previous definitions stay live), and records
/// each accepted change in the registry's config history.
#[test]
fn serve_reloads_valid_edits_and_keeps_the_last_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let defs = dir.path().join("defs");
    let metric = |name: &str| {
        format!(
            "  - {{ name: {name}, unit: trades, source: events.trades, formula: \"count(*)\" }}\n"
        )
    };
    let paths = definitions_in(&defs, &format!("version: 1\nmetrics:\n{}", metric("m1")));
    std::fs::write(
        paths.analysis_dir.join("a1.sql"),
        "-- one\nSELECT 1 AS one\n",
    )
    .unwrap();
    let config = dir.path().join("quiver.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\nfile = {:?}\nanalysis_dir = {:?}\ngates_file = {:?}\n\
             reload_interval = \"100ms\"\n",
            paths.metrics_file.display().to_string(),
            paths.analysis_dir.display().to_string(),
            paths.gates_file.display().to_string(),
        ),
    )
    .unwrap();
    let gates = std::fs::read_to_string(repo("configs/gates.yaml")).unwrap();
    std::fs::write(&paths.gates_file, &gates).unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut serve = quiver_cmd()
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("flight.json").exists() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let tables = |schema: &str| {
        csv(
            &data,
            &format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}' ORDER BY table_name"
            ),
        )
    };
    let wait_for = |schema: &str, expected: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = tables(schema);
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{schema}: still {now:?}, want {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("metrics", "table_name\nalerts\nm1\nmetric_values\n");
    wait_for("analysis", "table_name\na1\n");

    std::fs::write(
        &paths.metrics_file,
        format!("version: 1\nmetrics:\n{}{}", metric("m1"), metric("m2")),
    )
    .unwrap();
    wait_for("metrics", "table_name\nalerts\nm1\nm2\nmetric_values\n");
    std::fs::write(
        paths.analysis_dir.join("a2.sql"),
        "-- two\nSELECT 2 AS two\n",
    )
    .unwrap();
    wait_for("analysis", "table_name\na1\na2\n");

    // A broken edit: refused, logged, m1 and m2 stay.
    std::fs::write(
        &paths.metrics_file,
        format!("version: 1\nmetrics:\n{}  - {{ name: m3, unit: x, source: events.trades, formula: \"(SELECT 1)\" }}\n", metric("m1")),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(dir.path().join("serve.log"))
        .unwrap()
        .contains("refused")
    {
        assert!(
            Instant::now() < deadline,
            "the broken edit was not reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logged = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        logged.contains("metric `m3`, key `formula`: subqueries"),
        "{logged}"
    );
    assert_eq!(
        tables("metrics"),
        "table_name\nalerts\nm1\nm2\nmetric_values\n"
    );
    // A broken analysis likewise.
    std::fs::write(
        paths.analysis_dir.join("a3.sql"),
        "-- three\nDROP TABLE events.trades\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(tables("analysis"), "table_name\na1\na2\n");
    std::fs::remove_file(paths.analysis_dir.join("a3.sql")).unwrap();

    // The explainer's templates reload with the rest (all or nothing, so
    // metrics.yaml is mended first); a template with an unknown placeholder
    // is refused and the last good one stays.
    std::fs::write(
        &paths.metrics_file,
        format!("version: 1\nmetrics:\n{}{}", metric("m1"), metric("m2")),
    )
    .unwrap();
    let reason = || {
        csv(
            &data,
            "SELECT explain_gate('spread_gate', 'FAIL', 7.2, 5.0, 'max', 'scalp', 'TREND', \
                                 NULL, false)['reason'] AS r",
        )
    };
    assert_eq!(
        reason(),
        "r\nspread_gate REJECTED: spread 7.2 bps above the 5 bps maximum\n"
    );
    let edit = |to: &str| {
        std::fs::write(
            &paths.gates_file,
            gates.replace("above the {threshold} bps maximum", to),
        )
        .unwrap()
    };
    edit("wider than {threshold} bps");
    let wider = "r\nspread_gate REJECTED: spread 7.2 bps wider than 5 bps\n";
    let deadline = Instant::now() + Duration::from_secs(20);
    while reason() != wider {
        assert!(
            Instant::now() < deadline,
            "the template edit did not go live"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    edit("{nope}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(dir.path().join("serve.log"))
        .unwrap()
        .contains("gates.spread_gate.explain.fail: unknown placeholder {nope}")
    {
        assert!(
            Instant::now() < deadline,
            "the broken template was not reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(reason(), wider);

    // The config history: the start and the accepted edit of metrics.yaml,
    // never the refused one.
    let file = paths.metrics_file.display().to_string();
    let history = csv(
        &data,
        &format!(
            "SELECT reason, content LIKE '%m3%' AS refused FROM registry.config_changes WHERE file = '{file}' ORDER BY change_id"
        ),
    );
    assert_eq!(
        history, "reason,refused\nloaded at start,false\nhot reload,false\n",
        "{history}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let status = serve.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap()
    );
}

/// `quiver trace` on the fixture: timelines, bottlenecks and percentiles as
/// worked out by hand (tr1: a=1 b=2 c=7 ms; tr2: a=1 b=1 c=2 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_shows_timelines_bottlenecks_and_step_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fixture_harness(&data).await.close();

    let (ok, out, err) = run(&data, &["trace", "tr1"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(
            "trace tr1  signal sig-tr1  ETH-USD  2026-11-02T08:00:00Z  total 10.00 ms in 3 steps\n"
        ),
        "{out}"
    );
    // Offsets from the first step's start; shares of 10 ms; the day's p95s.
    assert!(
        out.contains(
            "      0.00  a                           1.00   10.0%  ok                 1.00\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "      1.00  b                           2.00   20.0%  ok                 1.95\n"
        ),
        "{out}"
    );
    assert!(out.contains("      3.00  c                           7.00   70.0%  ok                 6.75  <- bottleneck\n"), "{out}");
    assert!(
        out.contains("bottlenecks (over 20% of the total): c 7.00 ms (70.0%)\n"),
        "{out}"
    );
    assert!(out.contains("recommendation: c takes 70.0% of this decision (7.00 of 10.00 ms); that is above its p95 of 6.75 ms"), "{out}");

    let (ok, out, _) = run(&data, &["trace", "tr2"]);
    assert!(ok);
    assert!(out.contains("bottlenecks (over 20% of the total): a 1.00 ms (25.0%), b 1.00 ms (25.0%), c 2.00 ms (50.0%)\n"), "{out}");
    assert!(out.contains("that is within its p95 of 6.75 ms"), "{out}");

    let (ok, out, err) = run(
        &data,
        &[
            "trace",
            "--stats",
            "--since",
            DAY,
            "--format",
            "csv",
            "--slowest",
            "1",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("step,steps,avg_ms,p50_ms,p95_ms,p99_ms,max_ms\nc,2,4.5,4.5,6.75,6.95,7.0\n"),
        "{out}"
    );
    assert!(out.contains("\ntr1,sig-tr1,ETH-USD,"), "{out}");
    // Nothing since the day after.
    let (ok, out, _) = run(
        &data,
        &[
            "trace",
            "--stats",
            "--since",
            "2026-11-03",
            "--format",
            "csv",
        ],
    );
    assert!(ok && !out.contains("tr1"), "{out}");

    for (args, expected) in [
        (&["trace", "x' OR '1'='1"][..], "is not a trace id"),
        (&["trace", "nope"][..], "no trace nope"),
        (
            &["trace", "--stats", "--since", "yesterday"][..],
            "is not a time",
        ),
    ] {
        let (ok, _, err) = run(&data, args);
        assert!(!ok && err.contains(expected), "{args:?}: {err}");
    }
}
