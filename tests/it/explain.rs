//! The gate explainer: each of the six gates PASS and FAIL, with and without
//! a resolved outcome, against text, margins and verdicts worked out by hand
//! (in the comments), through `analysis.gate_explanations` and through
//! `quiver explain`; the market context as-of join; hostile ids.

use std::time::Duration;

use chrono::NaiveDate;
use quiver::event::*;
use quiver::metrics::Definitions;

use crate::cli::run_in;
use crate::common::*;
use crate::metrics::{rows_of, shipped_paths};

fn at(hour: u32, minute: u32, second: u32) -> Ts {
    Ts(NaiveDate::from_ymd_opt(2026, 11, 3)
        .unwrap()
        .and_hms_opt(hour, minute, second)
        .unwrap()
        .and_utc()
        .timestamp_micros())
}

fn header(ts: Ts) -> EventHeader {
    EventHeader {
        ts,
        ..EventHeader::new("SOL-USD", Level::Info)
    }
}

/// A decision at 09:00:00, id `{signal}-{gate}`, recorded with `threshold`.
fn decision(signal: &str, gate: Gate, pass: bool, value: f64, threshold: f64, mode: Mode) -> Event {
    let regime = if gate == Gate::RegimeGate && !pass {
        Regime::Range
    } else {
        Regime::Trend
    };
    Event::GateDecision(GateDecision {
        header: header(at(9, 0, 0)),
        decision_id: format!("{signal}-{gate}"),
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
        direction: if gate == Gate::SpreadGate {
            Direction::Max
        } else {
            Direction::Min
        },
        mode,
        regime,
        inputs: "{}".into(),
    })
}

fn shadow(signal: &str, gate: Gate, outcome: Option<f64>) -> Event {
    Event::ShadowTrade(ShadowTrade {
        header: header(at(if outcome.is_some() { 10 } else { 9 }, 0, 0)),
        shadow_id: format!("sh-{signal}"),
        signal_id: signal.into(),
        kind: if outcome.is_some() {
            ShadowKind::Resolved
        } else {
            ShadowKind::Blocked
        },
        blocked_by: gate,
        side: Side::Buy,
        hypothetical_entry: 100.0,
        outcome_pnl_bps: outcome,
        mode: Mode::Scalp,
        regime: Regime::Trend,
    })
}

fn trade(signal: &str, kind: TradeKind, ts: Ts, pnl: Option<f64>) -> Event {
    Event::Trade(Trade {
        header: header(ts),
        trade_id: format!("t-{signal}"),
        signal_id: signal.into(),
        kind,
        side: Side::Buy,
        qty: 1.0,
        price: 100.0,
        fees_bps: 5.0,
        pnl_bps: pnl,
        duration_s: pnl.map(|_| 60.0),
        mode: Mode::Scalp,
        regime: Regime::Trend,
        mae_bps: None,
        mfe_bps: None,
        features: None,
    })
}

fn market(ts: Ts, regime: Regime, spread: f64) -> Event {
    Event::MarketContext(MarketContext {
        header: header(ts),
        price: 101.5,
        spread_bps: spread,
        volume: 1.25,
        volatility: 0.42,
        regime,
    })
}

/// The gates, their FAIL values (with the thresholds recorded) and the
/// resolved shadow P&L of the `f-{gate}-r` signals.
const FAILS: [(Gate, f64, f64, Mode, f64); 6] = [
    (Gate::MetaLabel, 0.42, 0.45, Mode::Scalp, -8.0),
    (Gate::CostGate, 1.8, 3.0, Mode::Scalp, 15.0),
    (Gate::ConfidenceGate, 0.63, 0.7, Mode::Runner, 0.0),
    (Gate::RegimeGate, 0.0, 1.0, Mode::Runner, -20.0),
    (Gate::SpreadGate, 7.2, 5.0, Mode::Scalp, 3.25),
    (Gate::VolumeGate, 0.36, 0.8, Mode::Scalp, -4.5),
];

/// The PASS values of the `win` and `open` signals.
const PASSES: [(Gate, f64, f64); 6] = [
    (Gate::MetaLabel, 0.60, 0.55),
    (Gate::CostGate, 4.5, 3.0),
    (Gate::ConfidenceGate, 0.75, 0.6),
    (Gate::RegimeGate, 1.0, 1.0),
    (Gate::SpreadGate, 2.5, 5.0),
    (Gate::VolumeGate, 1.2, 0.8),
];

fn fixture() -> Vec<Event> {
    let mut events = Vec::new();
    // Each gate fails alone: `f-{gate}-r` resolved, `f-{gate}-p` pending.
    for (gate, value, threshold, mode, pnl) in FAILS {
        let resolved = format!("f-{gate}-r");
        let pending = format!("f-{gate}-p");
        events.push(decision(&resolved, gate, false, value, threshold, mode));
        events.push(decision(&pending, gate, false, value, threshold, mode));
        events.push(shadow(&resolved, gate, None));
        events.push(shadow(&resolved, gate, Some(pnl)));
        events.push(shadow(&pending, gate, None));
    }
    // `win` passed every gate and closed at +12.5; `open` is still open.
    for (gate, value, threshold) in PASSES {
        events.push(decision("win", gate, true, value, threshold, Mode::Scalp));
        events.push(decision("open", gate, true, value, threshold, Mode::Scalp));
    }
    events.push(trade("win", TradeKind::Open, at(9, 0, 0), None));
    events.push(trade("win", TradeKind::Close, at(9, 1, 0), Some(12.5)));
    events.push(trade("open", TradeKind::Open, at(9, 0, 0), None));
    // meta_label passed a signal the spread gate then blocked.
    events.push(decision(
        "f-spread_gate-r",
        Gate::MetaLabel,
        true,
        0.58,
        0.55,
        Mode::Scalp,
    ));
    // The market: 08:59:00 is in force at 09:00:00; 09:00:30 is after it
    // and must not be taken; 09:00:45 is in force for the close at 09:01.
    events.push(market(at(8, 59, 0), Regime::Trend, 2.5));
    events.push(market(at(9, 0, 30), Regime::Panic, 30.0));
    events.push(market(at(9, 0, 45), Regime::Range, 3.5));
    // Another symbol's snapshot is never taken; ADA-USD has none at all.
    let mut other = market(at(8, 59, 30), Regime::Panic, 50.0);
    let mut ada = trade("ada", TradeKind::Open, at(9, 0, 0), None);
    for (event, symbol) in [(&mut other, "ETH-USD"), (&mut ada, "ADA-USD")] {
        match event {
            Event::MarketContext(m) => m.header.symbol = symbol.into(),
            Event::Trade(t) => t.header.symbol = symbol.into(),
            _ => {}
        }
    }
    events.extend([other, ada]);
    events
}

/// decision_id, reason, margin, margin_pct, outcome_pnl_bps, verdict,
/// outcome, suggestion: worked out by hand from the values above and the
/// templates of configs/gates.yaml.
const EXPECTED: &[[&str; 8]] = &[
    // confidence (runner): 0.63 - 0.7 = -0.07, -10%; a 0 bps outcome is a
    // good block (nothing was lost by blocking).
    [
        "f-confidence_gate-p-confidence_gate",
        "confidence_gate REJECTED: signal strength 0.63 below 0.7",
        "-0.07",
        "-10",
        "NULL",
        "pending",
        "pending: the shadow trade has not resolved yet",
        "needs signal strength >= 0.7, now 0.63",
    ],
    [
        "f-confidence_gate-r-confidence_gate",
        "confidence_gate REJECTED: signal strength 0.63 below 0.7",
        "-0.07",
        "-10",
        "0",
        "good_block",
        "good block: the trade would have broken even",
        "needs signal strength >= 0.7, now 0.63",
    ],
    // cost: 1.8 - 3 = -1.2, -1.2 / 3 = -40%.
    [
        "f-cost_gate-p-cost_gate",
        "cost_gate REJECTED: expected edge 1.8 bps below the 3 bps minimum",
        "-1.2",
        "-40",
        "NULL",
        "pending",
        "pending: the shadow trade has not resolved yet",
        "needs expected edge >= 3 bps after costs, now 1.8 bps",
    ],
    [
        "f-cost_gate-r-cost_gate",
        "cost_gate REJECTED: expected edge 1.8 bps below the 3 bps minimum",
        "-1.2",
        "-40",
        "15",
        "bad_block",
        "bad block: the trade would have made +15 bps",
        "needs expected edge >= 3 bps after costs, now 1.8 bps",
    ],
    // meta_label: 0.42 - 0.45 = -0.03 (-3 pp), -0.03 / 0.45 = -6.67%.
    [
        "f-meta_label-p-meta_label",
        "meta_label REJECTED: win probability 42.0% below threshold 45.0%",
        "-0.03",
        "-6.67",
        "NULL",
        "pending",
        "pending: the shadow trade has not resolved yet",
        "needs win probability >= 45.0%, now 42.0%",
    ],
    [
        "f-meta_label-r-meta_label",
        "meta_label REJECTED: win probability 42.0% below threshold 45.0%",
        "-0.03",
        "-6.67",
        "-8",
        "good_block",
        "good block: the trade would have lost 8 bps",
        "needs win probability >= 45.0%, now 42.0%",
    ],
    // regime (runner in RANGE): a yes/no gate, 0 - 1 = -1, no percentage.
    [
        "f-regime_gate-p-regime_gate",
        "regime_gate REJECTED: runner does not trade in RANGE",
        "-1",
        "NULL",
        "NULL",
        "pending",
        "pending: the shadow trade has not resolved yet",
        "wait for TREND (runner does not trade in RANGE)",
    ],
    [
        "f-regime_gate-r-regime_gate",
        "regime_gate REJECTED: runner does not trade in RANGE",
        "-1",
        "NULL",
        "-20",
        "good_block",
        "good block: the trade would have lost 20 bps",
        "wait for TREND (runner does not trade in RANGE)",
    ],
    [
        "f-spread_gate-p-spread_gate",
        "spread_gate REJECTED: spread 7.2 bps above the 5 bps maximum",
        "-2.2",
        "-44",
        "NULL",
        "pending",
        "pending: the shadow trade has not resolved yet",
        "needs spread <= 5 bps, now 7.2",
    ],
    // meta_label passed (0.58 - 0.55 = +3 pp, +5.45%) but spread blocked.
    [
        "f-spread_gate-r-meta_label",
        "meta_label PASSED: win probability 58.0% >= threshold 55.0% (margin +5.5%)",
        "0.03",
        "5.45",
        "3.25",
        "good_pass",
        "good pass: another gate blocked the signal; the trade would have made +3.25 bps",
        "NULL",
    ],
    // spread is a maximum: 5 - 7.2 = -2.2, -44%.
    [
        "f-spread_gate-r-spread_gate",
        "spread_gate REJECTED: spread 7.2 bps above the 5 bps maximum",
        "-2.2",
        "-44",
        "3.25",
        "bad_block",
        "bad block: the trade would have made +3.25 bps",
        "needs spread <= 5 bps, now 7.2",
    ],
    // volume: 0.36 - 0.8 = -0.44, -55%.
    [
        "f-volume_gate-p-volume_gate",
        "volume_gate REJECTED: volume 0.36M below the 0.8M minimum",
        "-0.44",
        "-55",
        "NULL",
        "pending",
        "pending: the shadow trade has not resolved yet",
        "needs 1-minute volume >= 0.8M, now 0.36M",
    ],
    [
        "f-volume_gate-r-volume_gate",
        "volume_gate REJECTED: volume 0.36M below the 0.8M minimum",
        "-0.44",
        "-55",
        "-4.5",
        "good_block",
        "good block: the trade would have lost 4.5 bps",
        "needs 1-minute volume >= 0.8M, now 0.36M",
    ],
    // The open trade: every gate passed, nothing to judge by yet.
    [
        "open-confidence_gate",
        "confidence_gate PASSED: signal strength 0.75 >= 0.6",
        "0.15",
        "25",
        "NULL",
        "pending",
        "pending: the signal has no closed or resolved trade yet",
        "NULL",
    ],
    [
        "open-cost_gate",
        "cost_gate PASSED: expected edge 4.5 bps >= 3 bps",
        "1.5",
        "50",
        "NULL",
        "pending",
        "pending: the signal has no closed or resolved trade yet",
        "NULL",
    ],
    [
        "open-meta_label",
        "meta_label PASSED: win probability 60.0% >= threshold 55.0% (margin +9.1%)",
        "0.05",
        "9.09",
        "NULL",
        "pending",
        "pending: the signal has no closed or resolved trade yet",
        "NULL",
    ],
    [
        "open-regime_gate",
        "regime_gate PASSED: scalp may trade in TREND",
        "0",
        "NULL",
        "NULL",
        "pending",
        "pending: the signal has no closed or resolved trade yet",
        "NULL",
    ],
    [
        "open-spread_gate",
        "spread_gate PASSED: spread 2.5 bps <= 5 bps",
        "2.5",
        "50",
        "NULL",
        "pending",
        "pending: the signal has no closed or resolved trade yet",
        "NULL",
    ],
    [
        "open-volume_gate",
        "volume_gate PASSED: volume 1.2M >= 0.8M",
        "0.4",
        "50",
        "NULL",
        "pending",
        "pending: the signal has no closed or resolved trade yet",
        "NULL",
    ],
    // The winner closed at +12.5: every pass was a good one.
    [
        "win-confidence_gate",
        "confidence_gate PASSED: signal strength 0.75 >= 0.6",
        "0.15",
        "25",
        "12.5",
        "good_pass",
        "good pass: the trade made +12.5 bps",
        "NULL",
    ],
    [
        "win-cost_gate",
        "cost_gate PASSED: expected edge 4.5 bps >= 3 bps",
        "1.5",
        "50",
        "12.5",
        "good_pass",
        "good pass: the trade made +12.5 bps",
        "NULL",
    ],
    [
        "win-meta_label",
        "meta_label PASSED: win probability 60.0% >= threshold 55.0% (margin +9.1%)",
        "0.05",
        "9.09",
        "12.5",
        "good_pass",
        "good pass: the trade made +12.5 bps",
        "NULL",
    ],
    [
        "win-regime_gate",
        "regime_gate PASSED: scalp may trade in TREND",
        "0",
        "NULL",
        "12.5",
        "good_pass",
        "good pass: the trade made +12.5 bps",
        "NULL",
    ],
    [
        "win-spread_gate",
        "spread_gate PASSED: spread 2.5 bps <= 5 bps",
        "2.5",
        "50",
        "12.5",
        "good_pass",
        "good pass: the trade made +12.5 bps",
        "NULL",
    ],
    [
        "win-volume_gate",
        "volume_gate PASSED: volume 1.2M >= 0.8M",
        "0.4",
        "50",
        "12.5",
        "good_pass",
        "good pass: the trade made +12.5 bps",
        "NULL",
    ],
];

/// A pipeline over `data` holding `events`, all visible to queries.
async fn logged(data: &std::path::Path, events: Vec<Event>) -> Harness {
    let h = Harness::open(small_store_config(data), fast_logger_config());
    // In chunks, so the logger's queue never fills.
    for chunk in events.chunks(2_000) {
        for event in chunk {
            assert!(h.logger.log(event.clone()).is_accepted());
        }
        h.logger.flush().await.unwrap();
    }
    assert!(h.engine.wait_visible(Duration::from_secs(60)).await);
    h
}

/// Equal as numbers within 0.005 (margins are worked to 2 decimals), or as
/// text.
fn same(actual: &str, expected: &str) -> bool {
    match (actual.parse::<f64>(), expected.parse::<f64>()) {
        (Ok(a), Ok(e)) => (a - e).abs() < 0.005,
        _ => actual == expected,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gate_explained_pass_and_fail_with_and_without_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let h = logged(&data, fixture()).await;
    h.engine
        .install_definitions(Definitions::load(&shipped_paths()).unwrap())
        .unwrap();

    let rows = rows_of(
        &h.query(
            "SELECT decision_id, reason, margin, margin_pct, outcome_pnl_bps, verdict, outcome, \
                    suggestion \
             FROM analysis.gate_explanations ORDER BY decision_id",
        )
        .await,
    );
    assert_eq!(rows.len(), EXPECTED.len(), "{rows:#?}");
    for (row, expected) in rows.iter().zip(EXPECTED) {
        for (column, (actual, want)) in row.iter().zip(expected).enumerate() {
            assert!(
                same(actual, want),
                "{} column {column}: {actual:?}, expected {want:?}",
                expected[0]
            );
        }
    }
    // Each gate is covered PASS and FAIL, resolved and pending.
    for gate in Gate::ALL {
        for (result, verdicts) in [
            ("REJECTED", ["pending", "block"]),
            ("PASSED", ["pending", "good_pass"]),
        ] {
            for verdict in verdicts {
                assert!(
                    EXPECTED
                        .iter()
                        .any(|e| e[1].starts_with(&format!("{gate} {result}"))
                            && e[5].contains(verdict)),
                    "{gate} {result} {verdict}"
                );
            }
        }
    }

    // The as-of join: the snapshot at or before each event, never after.
    let context = rows_of(
        &h.query(
            "SELECT source, id, kind, CAST(context_ts AS VARCHAR), context_age_s, market_regime, \
                    spread_bps, volume, volatility, price \
             FROM analysis.market_context_asof \
             WHERE id IN ('win-spread_gate', 't-win', 't-ada') ORDER BY id, kind",
        )
        .await,
    );
    assert_eq!(
        context,
        vec![
            vec![
                "trades", "t-ada", "OPEN", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL"
            ],
            vec![
                "trades",
                "t-win",
                "CLOSE",
                "2026-11-03T09:00:45Z",
                "15",
                "RANGE",
                "3.5",
                "1.25",
                "0.42",
                "101.5"
            ],
            vec![
                "trades",
                "t-win",
                "OPEN",
                "2026-11-03T08:59:00Z",
                "60",
                "TREND",
                "2.5",
                "1.25",
                "0.42",
                "101.5"
            ],
            vec![
                "gate_decisions",
                "win-spread_gate",
                "spread_gate",
                "2026-11-03T08:59:00Z",
                "60",
                "TREND",
                "2.5",
                "1.25",
                "0.42",
                "101.5"
            ],
        ]
    );
    // The SQL function: a NULL input explains nothing; a value that is not
    // a gate, result, direction, mode or regime is an error naming it.
    let nulls = rows_of(
        &h.query(
            "SELECT explain_gate(NULL, 'FAIL', 1.0, 2.0, 'min', 'scalp', 'TREND', NULL, false) \
                    IS NULL",
        )
        .await,
    );
    assert_eq!(nulls, vec![vec!["true"]]);
    for (args, error) in [
        (
            "'evil', 'FAIL', 1, 2, 'min', 'scalp', 'TREND', NULL, false",
            "\"evil\" is not a gate",
        ),
        (
            "'cost_gate', 'MAYBE', 1, 2, 'min', 'scalp', 'TREND', NULL, false",
            "\"MAYBE\" is not a gate result",
        ),
        (
            "'cost_gate', 'FAIL', 1, 2, 'up', 'scalp', 'TREND', NULL, false",
            "\"up\" is not a direction",
        ),
        (
            "'cost_gate', 'FAIL', 1, 2, 'min', 'swing', 'TREND', NULL, false",
            "\"swing\" is not a mode",
        ),
        (
            "'cost_gate', 'FAIL', 1, 2, 'min', 'scalp', 'MOON', NULL, false",
            "\"MOON\" is not a regime",
        ),
        ("'cost_gate'", "explain_gate"),
    ] {
        let err = h
            .engine
            .query(&format!("SELECT explain_gate({args})"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(error), "{args}: {err}");
    }
    h.close();

    // The CLI: one decision, in words.
    let (ok, out, err) = run_in(&data, &["explain", "f-spread_gate-r-spread_gate"]);
    assert!(ok, "{err}");
    let expected = "signal f-spread_gate-r  SOL-USD  2026-11-03T09:00:00Z  scalp in TREND\n\
        \n\
        decision f-spread_gate-r-spread_gate\n  \
        spread_gate REJECTED: spread 7.2 bps above the 5 bps maximum\n  \
        margin -2.2 bps (-44.0% of the threshold)\n  \
        bad block: the trade would have made +3.25 bps\n  \
        suggestion: needs spread <= 5 bps, now 7.2\n\
        \n\
        market: TREND spread 2.5 bps, volatility 0.42, volume 1.25M, price 101.5 \
        (snapshot at 2026-11-03T08:59:00Z, 60.000 s before)\n";
    assert_eq!(out, expected);

    // Every gate of one signal, in pipeline order, and a summary.
    let (ok, out, err) = run_in(&data, &["explain", "--signal", "f-spread_gate-r"]);
    assert!(ok, "{err}");
    let meta = out.find("meta_label PASSED").unwrap();
    let spread = out.find("spread_gate REJECTED").unwrap();
    assert!(meta < spread, "{out}");
    assert!(
        out.contains("  margin +3 pp (+5.5% of the threshold)\n"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "summary: blocked by spread_gate; 1 of 2 gates failed: spread_gate; \
             the shadow trade resolved at +3.25 bps\n"
        ),
        "{out}"
    );
    let (ok, out, _) = run_in(&data, &["explain", "--signal", "win"]);
    assert!(ok);
    assert!(
        out.ends_with("summary: passed all 6 gates; the trade made +12.5 bps\n"),
        "{out}"
    );
    // A decision made under an older threshold says what it is now.
    let (ok, out, _) = run_in(&data, &["explain", "f-meta_label-r-meta_label"]);
    assert!(ok);
    assert!(
        out.contains(
            "  suggestion: needs win probability >= 45.0%, now 42.0%\n  \
             the scalp threshold was 45.0% then; it is 55.0% since 2025-10-28 09:30 UTC \
             (recalibrated model v7; ECE 0.021)\n"
        ),
        "{out}"
    );
    // The yes/no gate has no margin line.
    let (ok, out, _) = run_in(&data, &["explain", "f-regime_gate-p-regime_gate"]);
    assert!(ok);
    assert!(!out.contains("margin"), "{out}");
    assert!(
        out.contains("  suggestion: wait for TREND (runner does not trade in RANGE)\n"),
        "{out}"
    );

    // Hostile and unknown ids: one clear error each, nothing run.
    for (args, error) in [
        (&["explain", "x' OR '1'='1"][..], "is not a decision id"),
        (
            &["explain", "--signal", "s'; DROP TABLE x; --"][..],
            "is not a signal id",
        ),
        (&["explain", &"a".repeat(200)][..], "is not a decision id"),
        (
            &["explain", "no-such-decision"][..],
            "no gate decision with decision_id no-such-decision",
        ),
        (&["explain"][..], "required"),
        (
            &["explain", "a", "--signal", "b"][..],
            "cannot be used with",
        ),
    ] {
        let (ok, out, err) = run_in(&data, args);
        assert!(!ok, "{args:?}: {out}");
        assert!(err.contains(error), "{args:?}: {err}");
    }
}

fn signal(id: &str, regime: Regime, ts: Ts, model: &str) -> Event {
    Event::Signal(Signal {
        header: header(ts),
        signal_id: id.into(),
        mode: Mode::Scalp,
        side: Side::Buy,
        price: 100.0,
        strength: 0.7,
        model_id: model.into(),
        regime,
        decision_ts: ts,
        label_cutoff_ts: ts,
    })
}

fn prediction(model: &str, signal: &str, ts: Ts, prob: Option<f64>, label: Option<i32>) -> Event {
    Event::Prediction(Prediction {
        header: header(ts),
        model_id: model.into(),
        signal_id: signal.into(),
        kind: if label.is_some() {
            PredictionKind::Labeled
        } else {
            PredictionKind::Predicted
        },
        predicted_prob: prob,
        label,
        decision_ts: ts,
        label_cutoff_ts: ts,
    })
}

/// A closed trade opened at `opened`, for the alias-history join.
fn round_trip(id: &str, opened: Ts, regime: Regime, pnl: f64) -> [Event; 2] {
    let mut open = trade(id, TradeKind::Open, opened, None);
    let mut close = trade(id, TradeKind::Close, Ts(opened.0 + 60_000_000), Some(pnl));
    for e in [&mut open, &mut close] {
        if let Event::Trade(t) = e {
            t.regime = regime;
        }
    }
    [open, close]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_compare_side_by_side_with_hand_worked_values() {
    use quiver::store::Registry;
    use quiver::store::registry::{ModelMeta, TrainingSession};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut registry = Registry::open(&data).unwrap();
    let meta = |metrics: &str| ModelMeta {
        name: "meta-label".into(),
        git_sha: "abc".into(),
        data_manifest: "lake/x.parquet\n".into(),
        params: "{}".into(),
        metrics: metrics.into(),
        parent_id: None,
        tags: vec![],
    };
    let a = registry
        .register(b"model a", &meta(r#"{"auc":0.6,"ece":0.05}"#))
        .unwrap();
    let b = registry
        .register(b"model b", &meta(r#"{"auc":0.65,"ece":0.03,"brier":0.2}"#))
        .unwrap();
    // A is live from 09:00, B from 10:00.
    registry
        .set_alias_at("production", &a, "first", at(9, 0, 0).0)
        .unwrap();
    registry
        .set_alias_at("production", &b, "better", at(10, 0, 0).0)
        .unwrap();
    for (session, model, hour, importance) in [
        (
            "tA",
            &a,
            8,
            vec![
                ("win_probability", 0.5),
                ("spread_bps", 0.3),
                ("volume_musd", 0.2),
            ],
        ),
        (
            "tB",
            &b,
            9,
            vec![
                ("win_probability", 0.4),
                ("spread_bps", 0.1),
                ("volatility", 0.5),
            ],
        ),
    ] {
        let importance: Vec<(String, f64)> = importance
            .into_iter()
            .map(|(f, v)| (f.to_string(), v))
            .collect();
        registry
            .record_training(
                &TrainingSession {
                    session_id: session.into(),
                    model_id: Some(model.clone()),
                    started_ts: at(hour, 0, 0).0,
                    duration_s: 1.0,
                    samples: 100,
                    auc: None,
                    logloss: None,
                    metrics: "{}".into(),
                },
                &importance,
            )
            .unwrap();
    }
    drop(registry);

    let mut events = Vec::new();
    // A: 0.8 -> won, 0.6 -> lost (TREND), 0.3 -> lost (RANGE).
    // B: 0.7 -> won twice (TREND).
    for (sig, model, regime, p, y) in [
        ("pa1", &a, Regime::Trend, 0.8, 1),
        ("pa2", &a, Regime::Trend, 0.6, 0),
        ("pa3", &a, Regime::Range, 0.3, 0),
        ("pb1", &b, Regime::Trend, 0.7, 1),
        ("pb2", &b, Regime::Trend, 0.7, 1),
    ] {
        events.push(signal(sig, regime, at(9, 30, 0), model));
        events.push(prediction(model, sig, at(9, 30, 0), Some(p), None));
        events.push(prediction(model, sig, at(9, 40, 0), None, Some(y)));
    }
    // Opened before any alias (not counted), under A twice, under B once.
    events.extend(round_trip("early", at(8, 30, 0), Regime::Trend, 100.0));
    events.extend(round_trip("a1", at(9, 10, 0), Regime::Trend, 10.0));
    events.extend(round_trip("a2", at(9, 20, 0), Regime::Range, -4.0));
    events.extend(round_trip("b1", at(10, 5, 0), Regime::Trend, 6.0));
    logged(&data, events).await.close();

    let (ok, out, err) = run_in(
        &data,
        &[
            "models",
            "compare",
            &a[..10],
            "production",
            "--format",
            "csv",
        ],
    );
    assert!(ok, "{err}");
    let expect = |text: &str| assert!(out.contains(text), "missing {text:?} in\n{out}");
    expect(&format!("A = {a} (meta-label,"));
    expect(&format!("B = {b} (meta-label,"));
    // Registered metrics: deltas B - A, change in % of A.
    expect(
        "metric,a,b,delta,change_pct\nauc,0.6,0.65,0.05,8.3\nece,0.05,0.03,-0.02,-40.0\nbrier,,0.2,,\n",
    );
    // Features: one model only first (by name), then by |delta|.
    expect(
        "metric,a,b,delta,change_pct\nvolatility,,0.5,,\nvolume_musd,0.2,,,\n\
         spread_bps,0.3,0.1,-0.2,-66.7\nwin_probability,0.5,0.4,-0.1,-20.0\n",
    );
    // Calibration. A: bins 3, 6, 8 with gaps 0.3, 0.6, 0.2: ECE 1.1 / 3 =
    // 0.3667, MCE 0.6, Brier (0.09 + 0.36 + 0.04) / 3 = 0.1633; mean
    // prediction 1.7 / 3 = 0.5667, win rate 1/3. B: one bin, gap 0.3.
    expect(
        "labelled_predictions,3.0,2.0,-1.0,-33.3\navg_predicted,0.5667,0.7,0.1333,23.5\n\
         observed_win_rate,0.3333,1.0,0.6667,200.0\nece,0.3667,0.3,-0.0667,-18.2\n\
         mce,0.6,0.3,-0.3,-50.0\nbrier,0.1633,0.09,-0.0733,-44.9\n",
    );
    // By regime: A's TREND pair has Brier (0.04 + 0.36) / 2 = 0.2.
    expect("RANGE,1,,0.0,,0.09,,\nTREND,2,2,0.5,1.0,0.2,0.09,-0.11\n");
    // Trades opened while each was live: A 10 and -4, B 6; the early one
    // belongs to neither.
    expect(
        "A,RANGE,1,0.0,-4.0,-4.0\nA,TREND,1,1.0,10.0,10.0\nA,,2,0.5,3.0,6.0\nB,TREND,1,1.0,6.0,6.0\nB,,1,1.0,6.0,6.0\n",
    );

    for (args, error) in [
        (&["models", "compare", &a, &a][..], "are the same model"),
        (&["models", "compare", &a, "nope"][..], "model \"nope\""),
        (
            &["models", "compare", &a, &b, "--alias", "x' OR 1=1"][..],
            "--alias",
        ),
        (
            &["models", "compare", "'; DROP TABLE models; --", &b][..],
            "DROP TABLE",
        ),
    ] {
        let (ok, out, err) = run_in(&data, args);
        assert!(!ok, "{args:?}: {out}");
        assert!(err.contains(error), "{args:?}: {err}");
    }
}

/// Two models with nothing recorded but their registration: each empty
/// section says what is missing instead of printing an empty table.
#[test]
fn models_compare_says_what_is_missing() {
    use quiver::store::Registry;
    use quiver::store::registry::ModelMeta;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut registry = Registry::open(&data).unwrap();
    let meta = ModelMeta {
        name: "meta-label".into(),
        git_sha: "abc".into(),
        data_manifest: "lake/x.parquet\n".into(),
        params: "{}".into(),
        metrics: "{}".into(),
        parent_id: None,
        tags: vec![],
    };
    let a = registry.register(b"model a", &meta).unwrap();
    let b = registry.register(b"model b", &meta).unwrap();
    drop(registry);
    let (ok, out, err) = run_in(&data, &["models", "compare", &a, &b]);
    assert!(ok, "{err}");
    for said in [
        "(no registered metrics for A or B)",
        "(no training session with feature importances for A or B)",
        "(no labelled predictions for A or B)",
        "(no closed trades opened while A or B held the production alias)",
    ] {
        assert!(out.contains(said), "missing {said:?} in\n{out}");
    }
    assert!(!out.contains("++"), "{out}");
    // CSV keeps its empty form for programs: a header, or nothing.
    let (ok, out, err) = run_in(&data, &["models", "compare", &a, &b, "--format", "csv"]);
    assert!(ok, "{err}");
    assert!(!out.contains("(no "), "{out}");
}

/// The numbers of `text`: tokens that are numbers (`-12`, `0.5`, `69.8`
/// in `69.8%`) and hex ids (`9f86d081884c`), skipping the `#N` ranks.
fn numbers_in(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | ':' | ';'))
        .map(|t| t.trim_end_matches('.'))
        .filter(|t| !t.is_empty() && !t.starts_with('#'))
        .filter(|t| {
            let numeric = t.trim_start_matches('-').trim_end_matches('%');
            let is_number = !numeric.is_empty()
                && numeric.chars().all(|c| c.is_ascii_digit() || c == '.')
                && numeric.chars().next().is_some_and(|c| c.is_ascii_digit());
            let is_hex_id = t.len() >= 8
                && t.chars().all(|c| c.is_ascii_hexdigit())
                && t.chars().any(|c| c.is_ascii_digit());
            is_number || is_hex_id
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_number_in_insights_is_in_a_query_result() {
    use quiver::app::insights::queries;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let h = logged(&data, sim_events(11, 4_000)).await;
    // Yesterday is a whole simulated day, with a day before it.
    let day = chrono::Utc::now().date_naive().pred_opt().unwrap();
    let mut cells: Vec<String> = Vec::new();
    for q in queries(day) {
        for row in rows_of(&h.query_with(q.sql, q.params).await) {
            cells.extend(row);
        }
    }
    h.close();
    assert!(cells.len() > 20, "the queries found data: {cells:?}");

    let (ok, out, err) = run_in(&data, &["insights", "--date", &day.to_string()]);
    assert!(ok, "{err}");
    for finding in [
        "has the highest bad-block cost",
        "The bot loses in",
        "is the biggest latency bottleneck",
        "Calibration: ECE",
    ] {
        let found = out.contains(finding)
            || (finding == "The bot loses in" && out.contains("No regime lost money"));
        assert!(found, "{finding:?} missing from\n{out}");
    }
    // The date heads the report; every other number is a value the
    // queries returned.
    let body = out.replacen(&day.to_string(), "", 1);
    let numbers = numbers_in(&body);
    assert!(numbers.len() >= 15, "{numbers:?}\n{out}");
    // A percentage is a ratio the query returned, times 100 (rounded to the
    // two decimals it prints).
    for n in &numbers {
        let found = cells.iter().any(|cell| match n.strip_suffix('%') {
            Some(pct) => matches!((cell.parse::<f64>(), pct.parse::<f64>()),
                (Ok(a), Ok(b)) if (a * 100.0 - b).abs() < 0.005),
            None => {
                cell == n
                    || matches!((cell.parse::<f64>(), n.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
            }
        });
        assert!(
            found,
            "{n} is in the insights but in no query result:\n{out}"
        );
    }

    // The fixture of the explainer, by hand: cost_gate missed +15 bps on
    // its one resolved block and saved nothing; the one closed trade made
    // +12.5 in TREND.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let h = logged(&data, fixture()).await;
    h.close();
    let (ok, out, err) = run_in(&data, &["insights", "--date", "2026-11-03"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "Insights for 2026-11-03, warnings first, then by P&L at stake:\n\
         #1 [warning] cost_gate has the highest bad-block cost: 1 of its 1 resolved blocks \
         would have won, missing 15.00 bps against 0.00 bps its good blocks saved \
         (good-block rate 0.00%); it cost more than it saved.\n   rests on: gate_blocks\n\
         #2 [info] No regime lost money; the weakest was TREND: 1 closed trades, win rate \
         100.00%, 12.50 bps in total (12.50 bps per trade).\n   rests on: regime_pnl\n"
    );
    let (ok, out, _) = run_in(&data, &["insights", "--date", "2026-11-04"]);
    assert!(ok);
    assert!(out.starts_with("No findings for 2026-11-04"), "{out}");
    for bad in ["2026-13-01", "yesterday", "2026-11-03' OR 1=1 --"] {
        let (ok, _, err) = run_in(&data, &["insights", "--date", bad]);
        assert!(!ok && err.contains("expected YYYY-MM-DD"), "{bad}: {err}");
    }
}

/// `quiver explain` (the app's explain report) and `analysis.gate_explanations`
/// agree on every decision: the hand-worked fixture and two simulated days,
/// signal by signal, on reason, margin, verdict, outcome and suggestion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_and_the_view_agree_on_every_decision() {
    use quiver::app::Session;
    use quiver::app::explain::{Subject, report};
    use quiver::app::rows::{opt_floats, strings};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut events = fixture();
    events.extend(sim_events(23, 150));
    let h = logged(&data, events).await;
    let paths = shipped_paths();
    let gates = paths.gates().unwrap();
    h.engine
        .install_definitions(Definitions::load(&paths).unwrap())
        .unwrap();

    let batches = h
        .query(
            "SELECT decision_id, signal_id, reason, margin, margin_pct, verdict, outcome, \
                    suggestion, outcome_pnl_bps \
             FROM analysis.gate_explanations",
        )
        .await;
    let mut view = std::collections::BTreeMap::new();
    for b in &batches {
        let text = |c: &str| strings(b, c).unwrap();
        let num = |c: &str| opt_floats(b, c).unwrap();
        let (ids, signals, reasons, verdicts, outcomes, suggestions) = (
            text("decision_id"),
            text("signal_id"),
            text("reason"),
            text("verdict"),
            text("outcome"),
            text("suggestion"),
        );
        let (margins, pcts, pnls) = (num("margin"), num("margin_pct"), num("outcome_pnl_bps"));
        for i in 0..b.num_rows() {
            view.insert(
                ids[i].clone(),
                (
                    signals[i].clone(),
                    reasons[i].clone(),
                    margins[i],
                    pcts[i],
                    verdicts[i].clone(),
                    outcomes[i].clone(),
                    suggestions[i].clone(),
                    pnls[i],
                ),
            );
        }
    }
    let signals: std::collections::BTreeSet<String> =
        view.values().map(|row| row.0.clone()).collect();
    assert!(view.len() > 500, "{} decisions", view.len());

    let mut session = Session::Local {
        store: h.store.clone(),
        engine: h.engine.clone(),
    };
    let mut compared = 0;
    let mut verdicts = std::collections::BTreeSet::new();
    for signal in &signals {
        let r = report(&mut session, &gates, Subject::Signal(signal))
            .await
            .unwrap_or_else(|e| panic!("signal {signal}: {e:#}"));
        for d in &r.decisions {
            let e = &d.explanation;
            let (_, reason, margin, pct, verdict, outcome, suggestion, pnl) = view
                .get(&d.decision_id)
                .unwrap_or_else(|| panic!("{} is not in the view", d.decision_id));
            let id = &d.decision_id;
            assert_eq!(&e.reason, reason, "{id}: reason");
            assert_eq!(Some(e.margin), *margin, "{id}: margin");
            assert_eq!(e.margin_pct, *pct, "{id}: margin_pct");
            assert_eq!(e.verdict.as_str(), verdict, "{id}: verdict");
            assert_eq!(&e.outcome, outcome, "{id}: outcome");
            assert_eq!(
                e.suggestion.clone().unwrap_or_default(),
                *suggestion,
                "{id}: suggestion"
            );
            assert_eq!(e.pnl_bps, *pnl, "{id}: outcome P&L");
            verdicts.insert(verdict.clone());
            compared += 1;
        }
    }
    assert_eq!(
        compared,
        view.len(),
        "every decision of the view was explained"
    );
    // The data has every verdict, so the agreement covers each way to reach one.
    for v in [
        "good_block",
        "bad_block",
        "good_pass",
        "bad_pass",
        "pending",
    ] {
        assert!(verdicts.contains(v), "no {v} decision: {verdicts:?}");
    }
    drop(session);
    h.close();
}
