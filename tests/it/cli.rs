//! The `quiver` binary end to end: `demo` stops on SIGTERM after flushing, and
//! `quiver sql` then finds every accepted event; while the demo holds the data
//! dir, `quiver sql` goes through its Flight SQL server.

use std::process::{Command, Stdio};
use std::time::Duration;

/// The binary, without the tests' own QUIVER_* variables; it runs in the
/// package root (cargo's working directory for tests), where `configs/` is.
pub fn quiver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quiver"));
    // The config's environment layer would reject unknown QUIVER_* keys.
    for (key, _) in std::env::vars() {
        if key.starts_with("QUIVER_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `cmd`, which must succeed, and returns its stdout.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One query through the binary, as CSV; the query must succeed.
pub fn sql(dir: &std::path::Path, query: &str) -> String {
    stdout_of(
        quiver()
            .arg("--data-dir")
            .arg(dir)
            .args(["sql", "--format", "csv", query]),
    )
}

#[test]
fn demo_flushes_on_sigterm_and_sql_sees_every_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let child = quiver()
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "demo",
            "--rate",
            "2000",
            "--backfill",
            "2m",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The demo advertises its server once the definitions are compiled (a few
    // seconds in a debug build, more on a busy machine), then backfills.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !dir.path().join("flight.json").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not start its server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    // While the demo holds the dir, `quiver sql` on it asks the demo's server
    // (advertised in the dir), and `--server` reaches the same server.
    let live = sql(
        dir.path(),
        "SELECT count(*) > 0 AS has_signals FROM signals",
    );
    assert_eq!(live.lines().nth(1), Some("true"), "{live}");
    let advert = std::fs::read_to_string(dir.path().join("flight.json")).unwrap();
    let url = advert
        .split('"')
        .find(|s| s.starts_with("grpc://"))
        .unwrap();
    let out = quiver()
        .args([
            "sql",
            "--format",
            "csv",
            "--server",
            url,
            "DROP TABLE signals",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("DDL not supported"),
        "{err}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "done: N events logged (A accepted, ..."
    let accepted: i64 = stdout
        .split(" accepted")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    assert!(accepted > 1_000, "{stdout}");
    let tables = [
        "signals",
        "gate_decisions",
        "trades",
        "shadow_trades",
        "trace_steps",
        "model_events",
        "market_context",
        "predictions",
    ];
    let union = tables
        .iter()
        .map(|t| format!("SELECT count(*) AS n FROM {t}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let total = sql(
        dir.path(),
        &format!("SELECT sum(n) AS total FROM ({union})"),
    );
    let total: i64 = total.lines().nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(total, accepted);
    // A clean stop leaves nothing pending: everything is in the lake.
    let pending = sql(dir.path(), "SELECT lake_pending_rows FROM system.writer");
    assert_eq!(pending.lines().nth(1), Some("0"));
    assert!(
        !dir.path().join("flight.json").exists(),
        "a stopped server withdraws its advert"
    );
}

#[test]
fn bad_config_and_bad_sql_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("quiver.toml");
    std::fs::write(&cfg, "[logger]\nqueue_capacty = 5\n").unwrap();
    let out = quiver()
        .arg("--config")
        .arg(&cfg)
        .args(["sql", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quiver.toml") && err.contains("queue_capacty"),
        "{err}"
    );

    let out = quiver()
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .args(["sql", "DROP TABLE events.signals"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.lines().count() <= 3,
        "{err}"
    );
}

#[test]
fn a_relative_data_dir_works_from_simulate_to_sql() {
    let dir = tempfile::tempdir().unwrap();
    let out = quiver()
        .current_dir(dir.path())
        .args([
            "--data-dir",
            "data",
            "simulate",
            "--events",
            "5000",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("events/s durable"), "{stdout}");
    let out = quiver()
        .current_dir(dir.path())
        .args(["--data-dir", "data", "sql", "--format", "json"])
        .arg("SELECT count(*) AS n FROM trace_steps WHERE symbol LIKE '%-USD'")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows[0]["n"].as_i64().unwrap() > 1_000, "{rows}");
}

/// An installed binary works from any directory: a data dir keeps its own
/// copy of the definitions (seeded from the built-in ones), serves what that
/// copy says, and a file missing from it is an error naming the file.
#[test]
fn definitions_travel_with_the_data_dir_not_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| run_from(&elsewhere, &data, args);
    let (ok, _, err) = run(&["simulate", "--events", "20000", "--quiet"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&[
        "sql",
        "--format",
        "csv",
        "SELECT count(*) > 0 AS any FROM metrics.win_rate",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "any\ntrue\n");
    // For people, a ratio metric reads as a percentage.
    let (ok, out, err) = run(&["sql", "SELECT value, unit FROM metrics.win_rate LIMIT 1"]);
    assert!(ok, "{err}");
    assert!(out.contains("% | ratio"), "{out}");
    let (ok, out, err) = run(&["metrics", "list", "--format", "csv"]);
    assert!(ok, "{err}");
    assert!(out.lines().count() > 50, "{out}");
    let configs = data.join("configs");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        std::fs::read_to_string(configs.join("metrics.yaml")).unwrap(),
        std::fs::read_to_string(shipped.join("configs/metrics.yaml")).unwrap()
    );
    assert!(configs.join("analysis/gate_explanations.sql").exists());

    // The dir's copy is what it serves.
    std::fs::write(
        configs.join("metrics.yaml"),
        "version: 1\nmetrics:\n  - { name: only_me, unit: trades, source: events.trades, formula: \"count(*)\" }\n",
    )
    .unwrap();
    let (ok, out, err) = run(&["metrics", "list", "--format", "csv"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("only_me"), "{out}");

    // A missing file is an error naming it, never an empty catalog.
    std::fs::remove_file(configs.join("metrics.yaml")).unwrap();
    for args in [
        &["metrics", "list"][..],
        &["sql", "SELECT * FROM metrics.only_me"][..],
    ] {
        let (ok, out, err) = run(args);
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(
            err.contains(&configs.join("metrics.yaml").display().to_string())
                && err.contains("not found"),
            "{args:?}: {err}"
        );
    }
}

/// Tables round floats for people; CSV and JSON keep every digit.
#[test]
fn tables_format_numbers_for_people_and_csv_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let query = "SELECT 0.5033503509891513 AS r, -5506.47000000001 AS p, 305.0 AS n";
    let (ok, out, err) = run_in(dir.path(), &["sql", query]);
    assert!(ok, "{err}");
    assert!(out.contains("| 0.5034 | -5506.47 | 305 |"), "{out}");
    let (ok, out, err) = run_in(dir.path(), &["sql", "--format", "csv", query]);
    assert!(ok, "{err}");
    assert_eq!(out, "r,p,n\n0.5033503509891513,-5506.47000000001,305.0\n");
}

/// Runs quiver on `dir`; returns (success, stdout, stderr).
pub fn run_in(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    output_of(quiver().arg("--data-dir").arg(dir).args(args))
}

/// [`run_in`] from the working directory `cwd`.
pub fn run_from(
    cwd: &std::path::Path,
    dir: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    output_of(
        quiver()
            .current_dir(cwd)
            .arg("--data-dir")
            .arg(dir)
            .args(args),
    )
}

fn output_of(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn journal_models_and_learning_commands_answer_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run_in(
        dir.path(),
        &[
            "demo",
            "--duration",
            "2s",
            "--backfill",
            "5m",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(ok, "{err}");
    // Closed cleanly: nothing held the store past the end.
    assert!(!err.contains("still in use"), "{err}");
    // The demo filled the registry: trained models, alias moves, sessions.
    let counts = sql(
        dir.path(),
        "SELECT (SELECT count(*) FROM registry.models) AS models,
                (SELECT count(*) FROM registry.model_aliases WHERE alias = 'production') AS promotions,
                (SELECT count(*) FROM learning.training_sessions) AS sessions,
                (SELECT count(*) FROM learning.feature_importance) AS importances,
                (SELECT count(DISTINCT file) FROM registry.config_changes) AS configs",
    );
    let values: Vec<i64> = counts
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        values[0] >= 3 && values[1] >= 2 && values[2] == values[0],
        "{counts}"
    );
    assert_eq!(values[3], 6 * values[2], "{counts}");
    // gates.yaml, metrics.yaml and each analysis, recorded once at start.
    let analyses = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/analysis"))
        .unwrap()
        .count() as i64;
    assert_eq!(values[4], 2 + analyses, "{counts}");

    // Trades, filtered; every row printed matches the filter.
    let (ok, out, err) = run_in(
        dir.path(),
        &[
            "journal",
            "trades",
            "--mode",
            "scalp",
            "--min-return-bps",
            "5",
            "--format",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty() && rows.len() <= 50);
    for row in rows {
        assert_eq!(row["mode"], "scalp");
        assert!(row["pnl_bps"].as_f64().unwrap() >= 5.0, "{row}");
    }
    // Stats per mode plus the overall row, whose count is the sum.
    let (ok, out, err) = run_in(dir.path(), &["journal", "stats", "--format", "json"]);
    assert!(ok, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stats = stats.as_array().unwrap();
    let total: u64 = stats[..stats.len() - 1]
        .iter()
        .map(|r| r["trades"].as_u64().unwrap())
        .sum();
    assert_eq!(stats.last().unwrap()["mode"], "(all)");
    assert_eq!(stats.last().unwrap()["trades"].as_u64().unwrap(), total);
    assert!(total > 0);

    // Calibration of the model that scored most predictions, then the
    // learning summary.
    let ids = sql(
        dir.path(),
        "SELECT model_id FROM learning.calibration GROUP BY model_id ORDER BY sum(samples) DESC LIMIT 1",
    );
    let model = ids.lines().nth(1).unwrap().trim().to_string();
    let (ok, out, err) = run_in(dir.path(), &["learning", "calibration", &model[..12]]);
    assert!(ok, "{err}");
    assert!(
        out.contains("ECE") && out.contains("Reliability bins"),
        "{out}"
    );
    let (ok, out, err) = run_in(dir.path(), &["learning", "summary"]);
    assert!(ok, "{err}");
    assert!(out.contains("labeled_predictions"), "{out}");
    let today = chrono::Utc::now().date_naive().to_string();
    let (ok, out, err) = run_in(dir.path(), &["learning", "summary", "--date", &today]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Training sessions") && out.contains("train-"),
        "{out}"
    );

    // Register, alias, show, history.
    let artifact = dir.path().join("m.bin");
    std::fs::write(&artifact, b"a model").unwrap();
    let manifest = dir.path().join("manifest.txt");
    let (ok, out, err) = run_in(dir.path(), &["models", "manifest"]);
    assert!(ok, "{err}");
    assert!(out.contains(".parquet"), "{out}");
    std::fs::write(&manifest, out).unwrap();
    let register = |extra: &[&str]| {
        let mut args = vec![
            "models",
            "register",
            artifact.to_str().unwrap(),
            "--git-sha",
            "abc123",
            "--data",
            manifest.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_in(dir.path(), &args)
    };
    let (ok, id, err) = register(&["--alias", "production"]);
    assert!(ok, "{err}");
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let (ok, out, err) = run_in(dir.path(), &["models", "show", "production"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("\"git_sha\": \"abc123\"") && out.contains("ok: the artifact"),
        "{out}"
    );
    let (ok, out, err) = run_in(
        dir.path(),
        &["models", "history", "production", "--format", "csv"],
    );
    assert!(ok, "{err}");
    assert!(out.contains(id), "{out}");

    // Hostile input: each a clear error naming what is wrong.
    for (args, expect) in [
        (vec!["journal", "trades", "--mode", "yolo"], "--mode"),
        (
            vec!["journal", "trades", "--since", "yesterday-ish"],
            "is not a time",
        ),
        (
            vec!["journal", "trades", "--regime", "'; DROP TABLE trades; --"],
            "--regime",
        ),
        (vec!["models", "show", "ffff"], "no model"),
        (vec!["models", "alias", "bad alias!", id], "alias"),
        (
            vec!["learning", "summary", "--date", "2026-13-45"],
            "--date",
        ),
        (
            vec!["learning", "calibration", "x'); DROP TABLE t; --"],
            "no model",
        ),
    ] {
        let (ok, _, err) = run_in(dir.path(), &args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let (ok, _, err) = register(&["--params", "[1, 2]"]);
    assert!(!ok && err.contains("params must be a JSON object"), "{err}");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let (ok, _, err) = run_in(
        dir.path(),
        &[
            "models",
            "register",
            artifact.to_str().unwrap(),
            "--git-sha",
            "x",
            "--data",
            empty.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("lists no data files"), "{err}");
    // The journal was not touched by any of it.
    let (ok, out, _) = run_in(dir.path(), &["journal", "stats", "--format", "json"]);
    assert!(ok && out.contains("(all)"));
}

/// `quiver retention --dry-run --now` on a closed data dir prints the days
/// that would go and deletes nothing; without `--dry-run` it removes exactly
/// them (their files leave the disk as the store closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_dry_run_shows_what_would_go_and_deletes_nothing() {
    use crate::common::{Harness, fast_logger_config, parquet_files};
    use quiver::store::Clock;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let clock = Clock::manual(crate::retention::at(6, 12));
        let h = Harness::open(
            crate::retention::config(&data, &clock, 3, Duration::from_secs(1), false),
            fast_logger_config(),
        );
        crate::retention::fill(&h).await;
        h.close();
    }
    let config = dir.path().join("quiver.toml");
    std::fs::write(
        &config,
        "[hot]\nretention = \"1day\"\n[retention]\nlake_days = { market_context = 3 }\n",
    )
    .unwrap();
    let lake = data.join("lake/market_context");
    let before = parquet_files(&lake).len();
    assert_eq!(before, 6 * 3);
    let run = |extra: &[&str]| {
        stdout_of(
            quiver()
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(&data)
                .arg("retention")
                .args(extra),
        )
    };
    // 2025-01-05T00:00 - 3 days = 01-02T00:00: 01-01 would go, every symbol.
    let out = run(&["--dry-run", "--now", "2025-01-05T00:00:00Z"]);
    assert!(out.contains("dry run, nothing changed"), "{out}");
    assert!(
        out.contains("market_context: keep 3 days")
            && out.contains("cutoff 2025-01-02T00:00:00Z; first day kept 2025-01-02"),
        "{out}"
    );
    assert!(out.contains("date=2025-01-01: 3 files, 30 rows"), "{out}");
    assert!(!out.contains("date=2025-01-02"), "{out}");
    assert!(out.contains("kept forever: signals"), "{out}");
    assert_eq!(
        parquet_files(&lake).len(),
        before,
        "a dry run deleted files"
    );
    let json = run(&["--dry-run", "--json", "--now", "2025-01-05T00:00:00Z"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mc = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "market_context")
        .unwrap();
    assert_eq!(mc["files"], 3);
    assert_eq!(mc["days"][0]["date"], "2025-01-01");

    let out = run(&["--now", "2025-01-05T00:00:00Z"]);
    assert!(
        out.contains("removed 1 day partitions: 3 files, 30 rows"),
        "{out}"
    );
    assert_eq!(parquet_files(&lake).len(), before - 3);
    assert!(!lake.join("date=2025-01-01").exists());
}
