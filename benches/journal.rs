//! Journal benchmarks, run on demand (never in CI):
//!
//! ```text
//! cargo bench --bench journal -- record    # trades/s through the API vs one durable SQLite commit
//! cargo bench --bench journal -- follow    # trades/s as the store applies them (batched)
//! cargo bench --bench journal -- demo10x   # the pipeline at 10x the demo's rate: journal lag
//! cargo bench --bench journal -- stats     # `journal stats` over 1M trades vs SQLite's own GROUP BY
//! cargo bench --bench journal              # all of them
//! ```
//!
//! Baselines run in the same process, on the same disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use quiver::analytics::{TradeStats, group_stats};
use quiver::event::*;
use quiver::gates::GatesConfig;
use quiver::ingest::{Logger, LoggerConfig};
use quiver::query::{QueryConfig, QueryEngine};
use quiver::sim::Simulator;
use quiver::store::journal::{Journal, JournalChange, TradeEntry, TradeExit, TradeFilter};
use quiver::store::{Store, StoreConfig};

const MODES: [Mode; 2] = [Mode::Scalp, Mode::Runner];
const REGIMES: [Regime; 3] = [Regime::Trend, Regime::Range, Regime::Panic];
const SYMBOLS: [&str; 4] = ["BTC-USD", "ETH-USD", "SOL-USD", "AVAX-USD"];

fn features() -> Vec<(String, f64)> {
    quiver::sim::FEATURES
        .iter()
        .enumerate()
        .map(|(i, f)| (f.to_string(), 0.1 * i as f64))
        .collect()
}

/// A UUID-shaped id in no particular order, as real trade ids are (sequential
/// ids would make every B-tree lookup hit the same pages).
fn trade_id(i: u64) -> String {
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29) ^ 0x5bd1_e995;
    format!("{:016x}-{:016x}", h, i)
}

fn entry(i: u64) -> TradeEntry {
    TradeEntry {
        trade_id: trade_id(i),
        signal_id: Some(format!("sig-{i:012}")),
        symbol: SYMBOLS[(i % 4) as usize].into(),
        side: if i.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        mode: MODES[(i % 7 % 2) as usize],
        regime: REGIMES[(i % 3) as usize],
        qty: 1.0,
        entry_ts: Ts(1_700_000_000_000_000 + i as i64 * 1_000_000),
        entry_price: 100.0,
        fees_bps: 5.0,
    }
}

fn exit(i: u64) -> TradeExit {
    // A deterministic spread of returns around zero.
    let pnl = ((i * 7919) % 200) as f64 / 4.0 - 24.0;
    TradeExit {
        trade_id: trade_id(i),
        exit_ts: Ts(1_700_000_000_000_000 + i as i64 * 1_000_000 + 60_000_000),
        exit_price: 100.1,
        pnl_bps: pnl,
        fees_bps: 5.0,
        duration_s: 60.0,
        mae_bps: Some(-3.0),
        mfe_bps: Some(8.0),
    }
}

fn record() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let f = features();
    let run_for = Duration::from_secs(5);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < run_for {
        j.record_entry(&entry(n), &f).unwrap();
        j.record_exit(&exit(n)).unwrap();
        n += 1;
    }
    let ours = n as f64 / started.elapsed().as_secs_f64();

    // Baseline: one durable commit per row (WAL, synchronous=FULL), nothing else.
    let conn = rusqlite::Connection::open(dir.path().join("baseline.sqlite")).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch("PRAGMA synchronous=FULL; CREATE TABLE t (id TEXT PRIMARY KEY, pnl REAL);")
        .unwrap();
    let started = Instant::now();
    let mut m = 0u64;
    while started.elapsed() < run_for {
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            rusqlite::params![format!("b-{m}"), 1.0],
        )
        .unwrap();
        m += 1;
    }
    let commits = m as f64 / started.elapsed().as_secs_f64();
    println!(
        "record: {ours:.0} trades/s through the API (entry + 6 features, then exit: 2 commits per trade)"
    );
    println!(
        "        baseline, one durable SQLite commit of one row: {commits:.0} commits/s; ratio {:.2} (2 commits per trade is 0.50)",
        ours / commits
    );
}

fn follow() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let f = features();
    let batch = 1_000u64;
    let total = 200_000u64;
    let started = Instant::now();
    for start in (0..total).step_by(batch as usize) {
        let changes: Vec<JournalChange> = (start..start + batch)
            .flat_map(|i| {
                [
                    JournalChange::Entry(entry(i), f.clone()),
                    JournalChange::Exit(exit(i)),
                ]
            })
            .collect();
        j.apply(&changes, Some(start)).unwrap();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!(
        "follow: {rate:.0} trades/s applied in transactions of {batch} trades (entry + 6 features + exit each)"
    );
    rate
}

fn demo10x() {
    let rate = 5_000.0; // ten times `quiver demo`'s default 500 events/s
    let seconds = 30.0;
    let dir = tempfile::tempdir().unwrap();
    let (store, sink) = Store::open(StoreConfig::new(dir.path())).unwrap();
    let store = Arc::new(store);
    let logger = Logger::start(LoggerConfig::default(), sink).unwrap();
    let mut sim = Simulator::new(7, GatesConfig::builtin().unwrap());
    let mut buffer = Vec::new();
    let started = Instant::now();
    let mut produced = 0u64;
    let mut journal_events = 0u64;
    let mut lag_max = 0u64;
    let mut next_sample = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        let target = (started.elapsed().as_secs_f64() * rate) as u64;
        while produced < target {
            if buffer.is_empty() {
                sim.cycle(Ts::now(), &mut buffer);
                buffer.reverse();
            }
            let Some(event) = buffer.pop() else { break };
            if matches!(event, Event::Trade(_) | Event::ShadowTrade(_)) {
                journal_events += 1;
            }
            let _ = logger.log(event);
            produced += 1;
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_millis(100);
            let s = store.stats();
            lag_max = lag_max.max(
                s.wal_seq
                    .saturating_sub(store.journal.applied_seq.load(Ordering::Acquire)),
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let flushed = Instant::now();
    logger.flush_blocking().unwrap();
    assert!(store.wait_journal_caught_up(Duration::from_secs(60)));
    let catch_up = flushed.elapsed();
    let changes = store.journal.changes.load(Ordering::Relaxed);
    println!(
        "demo10x: {produced} events in {seconds:.0} s ({:.0}/s), {journal_events} trade and shadow-trade events ({:.0}/s) -> {changes} journal changes",
        produced as f64 / seconds,
        journal_events as f64 / seconds
    );
    println!(
        "         journal behind the WAL by at most {lag_max} batches (sampled every 100 ms); caught up {:.0} ms after the final flush",
        catch_up.as_secs_f64() * 1e3
    );
    logger.close().unwrap();
    drop(logger);
    Arc::try_unwrap(store).unwrap().close().unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn stats() {
    let dir = tempfile::tempdir().unwrap();
    // The store creates the journal; it is filled through the API beside it.
    let (store, sink) = Store::open(StoreConfig::new(dir.path())).unwrap();
    drop(sink);
    let store = Arc::new(store);
    let mut j = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let f = features();
    let total = 1_000_000u64;
    let started = Instant::now();
    for start in (0..total).step_by(5_000) {
        let changes: Vec<JournalChange> = (start..start + 5_000)
            .flat_map(|i| {
                [
                    JournalChange::Entry(entry(i), f.clone()),
                    JournalChange::Exit(exit(i)),
                ]
            })
            .collect();
        j.apply(&changes, None).unwrap();
    }
    println!(
        "stats: filled 1,000,000 closed trades in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let runs = 5;
    let time = |f: &mut dyn FnMut()| -> f64 {
        let mut ms = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            f();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        median(ms)
    };
    let ours = time(&mut || {
        let rows = j.closed_returns(&TradeFilter::default()).unwrap();
        let g = group_stats(rows.iter().map(|r| (r.mode.as_str(), r.pnl_bps)));
        let all: Vec<f64> = rows.iter().map(|r| r.pnl_bps).collect();
        let s = TradeStats::from_returns(&all);
        assert_eq!(s.trades, total);
        assert_eq!(g.len(), 2);
    });
    let scalp = time(&mut || {
        let rows = j
            .closed_returns(&TradeFilter {
                mode: Some(Mode::Scalp),
                ..Default::default()
            })
            .unwrap();
        let all: Vec<f64> = rows.iter().map(|r| r.pnl_bps).collect();
        assert!(TradeStats::from_returns(&all).trades > 0);
    });
    let baseline = time(&mut || {
        let mut stmt = j
            .connection()
            .prepare(
                "SELECT mode, count(*), avg(pnl_bps > 0), avg(pnl_bps), sum(pnl_bps)
                 FROM v_closed_trades GROUP BY mode",
            )
            .unwrap();
        let n: usize = stmt.query_map([], |_| Ok(())).unwrap().count();
        assert_eq!(n, 2);
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = QueryEngine::new(store.clone(), None, &QueryConfig::default()).unwrap();
    let datafusion = time(&mut || {
        rt.block_on(async {
            let b = engine
                .query(
                    "SELECT mode, count(*), avg(CASE WHEN pnl_bps > 0 THEN 1.0 ELSE 0.0 END),
                            avg(pnl_bps), sum(pnl_bps), median(pnl_bps)
                     FROM journal.v_closed_trades GROUP BY mode",
                )
                .await
                .unwrap();
            assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        })
    });
    println!(
        "       `journal stats` (all 1M: count, win rate, avg, median, profit factor, Sharpe, max drawdown; per mode and overall): median {ours:.0} ms of {runs}"
    );
    println!("       the same with --mode scalp: median {scalp:.0} ms");
    println!(
        "       baseline, SQLite's own GROUP BY mode (count, win rate, avg, sum only): median {baseline:.0} ms; ratio {:.2}",
        ours / baseline
    );
    println!(
        "       SQL through DataFusion (journal.v_closed_trades, with median): median {datafusion:.0} ms"
    );
    drop(engine);
    drop(j);
    Arc::try_unwrap(store).unwrap().close().unwrap();
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    let want = |name: &str| all || which.iter().any(|w| w == name);
    if want("record") {
        record();
    }
    if want("follow") {
        follow();
    }
    if want("demo10x") {
        demo10x();
    }
    if want("stats") {
        stats();
    }
    let _ = std::io::stdout().flush();
}
