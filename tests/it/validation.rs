//! Bad input at the edge: each rule names its field; valid events beside invalid
//! ones are all stored; hostile symbols never reach a path; a truncated Parquet
//! file is quarantined and everything else stays queryable.

use std::collections::HashSet;
use std::time::Duration;

use quiver::event::*;
use quiver::ingest::{DropReason, LogOutcome, LoggerConfig};

use crate::common::*;

fn now() -> Ts {
    Ts::now()
}

fn header(symbol: &str) -> EventHeader {
    EventHeader {
        event_id: "e-1".into(),
        ts: now(),
        symbol: symbol.into(),
        level: Level::Info,
    }
}

fn signal() -> Signal {
    Signal {
        header: header("BTC-USD"),
        signal_id: "s-1".into(),
        mode: Mode::Scalp,
        side: Side::Buy,
        price: 100.0,
        strength: 0.7,
        model_id: "m-1".into(),
        regime: Regime::Trend,
        decision_ts: now(),
        label_cutoff_ts: Ts(now().0 + 1_000_000),
    }
}

fn trade() -> Trade {
    Trade {
        header: header("BTC-USD"),
        trade_id: "t-1".into(),
        signal_id: "s-1".into(),
        kind: TradeKind::Close,
        side: Side::Buy,
        qty: 1.0,
        price: 100.0,
        fees_bps: 5.0,
        pnl_bps: Some(3.0),
        duration_s: Some(60.0),
        mode: Mode::Scalp,
        regime: Regime::Trend,
        mae_bps: Some(-2.0),
        mfe_bps: Some(5.0),
        features: Some(r#"{"spread_bps": 2.5}"#.into()),
    }
}

fn gate_decision() -> GateDecision {
    GateDecision {
        header: header("BTC-USD"),
        decision_id: "d-1".into(),
        signal_id: "s-1".into(),
        trace_id: "t-1".into(),
        gate: Gate::SpreadGate,
        result: GateResult::Fail,
        value: 7.2,
        threshold: 5.0,
        direction: Direction::Max,
        mode: Mode::Scalp,
        regime: Regime::Range,
        inputs: "{\"spread_bps\":7.2}".into(),
    }
}

fn prediction() -> Prediction {
    Prediction {
        header: header("BTC-USD"),
        model_id: "m".into(),
        signal_id: "s".into(),
        kind: PredictionKind::Predicted,
        predicted_prob: Some(0.6),
        label: None,
        decision_ts: now(),
        label_cutoff_ts: Ts(now().0 + 1),
    }
}

fn check(event: impl Into<Event>, table: &str, field: &str) {
    let event = event.into();
    let limits = ValidationLimits {
        symbols_allowed: None,
        ..ValidationLimits::default()
    };
    let err = event
        .validate(&limits, Ts::now())
        .expect_err("expected a validation error");
    assert_eq!((err.table, err.field), (table, field), "{err}");
    assert!(
        err.to_string().starts_with(&format!("{table}.{field}:")),
        "{err}"
    );
}

#[test]
fn each_rule_names_its_field() {
    let mut e = signal();
    e.header.event_id = String::new();
    check(e, "signals", "event_id");

    let mut e = signal();
    e.header.ts = Ts(0);
    check(e, "signals", "ts");

    let mut e = signal();
    e.header.ts = Ts(now().0 + 6_000_000);
    check(e, "signals", "ts");

    for bad in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
        let mut e = signal();
        e.price = bad;
        check(e, "signals", "price");
    }
    let mut e = signal();
    e.strength = 1.5;
    check(e, "signals", "strength");

    // The leakage rule.
    let mut e = signal();
    e.label_cutoff_ts = Ts(e.decision_ts.0 - 1);
    check(e.clone(), "signals", "decision_ts");
    let mut p = prediction();
    p.label_cutoff_ts = Ts(p.decision_ts.0 - 1);
    check(p, "predictions", "decision_ts");

    let mut e = signal();
    e.signal_id = "x".repeat(129);
    check(e, "signals", "signal_id");

    let mut t = trade();
    t.qty = -1.0;
    check(t, "trades", "qty");
    let mut t = trade();
    t.pnl_bps = None;
    check(t, "trades", "pnl_bps");
    let mut t = trade();
    t.fees_bps = f64::NAN;
    check(t, "trades", "fees_bps");

    let mut g = gate_decision();
    g.inputs = "not json".into();
    check(g, "gate_decisions", "inputs");
    let mut g = gate_decision();
    g.inputs = format!("{{\"x\":\"{}\"}}", "a".repeat(20_000));
    check(g, "gate_decisions", "inputs");
    let mut g = gate_decision();
    g.value = f64::NAN;
    check(g, "gate_decisions", "value");

    let mut p = prediction();
    p.predicted_prob = None;
    check(p, "predictions", "predicted_prob");
    let mut p = prediction();
    p.kind = PredictionKind::Labeled;
    p.label = Some(2);
    check(p, "predictions", "label");
}

#[test]
fn hostile_symbols_are_rejected() {
    let long = "A".repeat(300);
    for bad in [
        "../../x",
        "..",
        ".",
        "a/b",
        "a\0b",
        "",
        long.as_str(),
        "BTC USD",
        "é",
    ] {
        let mut e = signal();
        e.header.symbol = bad.to_string();
        check(e, "signals", "symbol");
        assert!(!is_valid_symbol(bad), "{bad:?}");
    }
    assert!(is_valid_symbol("BTC-USD"));
    assert!(is_valid_symbol("es_f.2026"));
}

#[test]
fn the_symbol_allowlist_applies() {
    let limits = ValidationLimits {
        symbols_allowed: Some(HashSet::from(["BTC-USD".to_string()])),
        ..ValidationLimits::default()
    };
    let ok = Event::from(signal());
    ok.validate(&limits, Ts::now()).unwrap();
    let mut e = signal();
    e.header.symbol = "ETH-USD".into();
    let err = Event::from(e).validate(&limits, Ts::now()).unwrap_err();
    assert_eq!(err.field, "symbol");
    assert_eq!(err.violation, Violation::SymbolNotAllowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_stores_exactly_the_valid_events() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(small_store_config(dir.path()), fast_logger_config());
    let mut valid = 0;
    let mut invalid = 0;
    let hostile = ["../../x", "..", "a/b", "a\0b", &"Z".repeat(300)];
    for i in 0..300u64 {
        let mut e = signal();
        e.header.event_id = format!("sig-{i}");
        match i % 5 {
            0 => e.price = f64::NAN,
            1 => e.header.symbol = hostile[(i / 5) as usize % hostile.len()].to_string(),
            _ => {}
        }
        match h.logger.log(e) {
            LogOutcome::Accepted => valid += 1,
            LogOutcome::Dropped(DropReason::Invalid(_)) => invalid += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((valid, invalid), (180, 120));
    h.logger.flush().await.unwrap();
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(30)));
    assert_eq!(h.scalar("SELECT count(*) FROM signals").await, 180);
    assert_eq!(
        h.scalar("SELECT sum(rejected_invalid) FROM system.drops")
            .await,
        120
    );
    h.close();
    // No path was built from a hostile symbol.
    for entry in walk(&dir.path().join("lake")) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(value) = name.strip_prefix("symbol=") {
            let symbol = quiver::store::lake::partition::decode_symbol(value);
            assert!(symbol.is_some_and(|s| is_valid_symbol(&s)), "{name}");
        }
        assert!(entry.starts_with(dir.path()));
    }
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_parquet_file_is_quarantined_and_the_rest_stays_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(
        small_store_config(dir.path()),
        LoggerConfig {
            queue_capacity: 1_000_000,
            ..fast_logger_config()
        },
    );
    let events = sim_events(3, 400);
    let total = events
        .iter()
        .filter(|e| e.table() == Table::MarketContext)
        .count() as i64;
    for e in events {
        assert!(h.logger.log(e).is_accepted());
    }
    h.logger.flush().await.unwrap();
    h.close();

    // Truncate one market_context file.
    let victim = walk(&dir.path().join("lake").join("market_context"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let rows_in_victim = {
        let file = std::fs::File::open(&victim).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        use parquet::file::reader::FileReader;
        reader.metadata().file_metadata().num_rows()
    };
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let h = Harness::open(small_store_config(dir.path()), fast_logger_config());
    assert!(!victim.exists(), "the bad file is still in the lake");
    assert_eq!(
        h.scalar("SELECT count(*) FROM system.quarantined_files")
            .await,
        1
    );
    let batches = h
        .query("SELECT original_path, quarantine_path FROM system.quarantined_files")
        .await;
    let shown = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(shown.contains("quarantine"), "{shown}");
    // The hot store still holds the quarantined file's rows: they are
    // written back into the lake, so nothing is missing from events.*.
    assert!(rows_in_victim > 0);
    assert_eq!(h.scalar("SELECT count(*) FROM market_context").await, total);
    assert_eq!(
        h.scalar("SELECT lake_refilled_rows FROM system.writer")
            .await,
        rows_in_victim
    );
    assert!(h.scalar("SELECT count(*) FROM signals").await > 0);
    h.close();
}

/// `log()` checks event times against a cached clock; the cache must neither
/// let a future event in nor refuse one that only looks ahead of a stale
/// reading (the logger idle for longer than the skew limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_judges_event_times_by_the_real_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_logger_config();
    config.validation.future_skew_max = Duration::from_millis(200);
    config.flush_interval = Duration::from_secs(3600);
    let h = Harness::open(small_store_config(dir.path()), config);
    let at = |id: &str, ts: Ts| {
        let mut e = signal();
        e.header.event_id = id.into();
        e.header.ts = ts;
        e
    };
    assert!(h.logger.log(at("now", Ts::now())).is_accepted());
    let ahead = Ts(Ts::now().0 + 2_000_000);
    match h.logger.log(at("ahead", ahead)) {
        LogOutcome::Dropped(DropReason::Invalid(e)) => {
            assert!(matches!(e.violation, Violation::InFuture { .. }), "{e}")
        }
        other => panic!("an event 2 s ahead was {other:?}"),
    }
    // Idle past the skew limit: the cached reading is stale, the event is not.
    std::thread::sleep(Duration::from_millis(600));
    assert!(h.logger.log(at("later", Ts::now())).is_accepted());
    h.close();
}
