//! Power loss at every fsync boundary (the SQLite crash-VFS method): a child
//! process runs a scripted workload (ingest, rolls, compaction, a clean close,
//! a restart) on [`FaultFs`], which at its N-th sync puts the disk into the
//! state a power loss could leave (only fsynced bytes and directory entries)
//! and kills the process. The parent then opens the data dir as a restarted
//! machine would and checks that every acknowledged event is there exactly
//! once. N runs over every sync the workload passes. A control run with fsync
//! disabled must be caught losing data, or the test has no teeth.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use quiver::event::{Event, EventHeader, Level, MarketContext, Regime, Ts};
use quiver::ingest::{Logger, LoggerConfig};
use quiver::store::faultfs::{CrashAction, FaultConfig, FaultFs};
use quiver::store::{Store, StoreConfig};

use crate::common::*;

const STEPS: u64 = 5;
const PER_STEP: u64 = 60;

fn event(id: u64) -> Event {
    Event::MarketContext(MarketContext {
        header: EventHeader {
            event_id: format!("pl-{id:08}"),
            ts: Ts::now(),
            symbol: "BTC-USD".into(),
            level: if id.is_multiple_of(5) {
                Level::Critical
            } else {
                Level::Info
            },
        },
        price: 100.0 + id as f64,
        spread_bps: 1.0,
        volume: 1.0,
        volatility: 0.2,
        regime: Regime::Trend,
    })
}

fn store_config(dir: &Path, fs: &FaultFs) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.lake.roll_rows_max = usize::MAX;
    c.lake.compact_trigger_files = usize::MAX;
    c.lake.retired_file_grace = Duration::ZERO;
    c.wal_segment_bytes_max = 24 * 1024;
    c.fs = Arc::new(fs.clone());
    c
}

fn logger_config() -> LoggerConfig {
    LoggerConfig {
        flush_interval: Duration::from_secs(3600),
        queue_capacity: 100_000,
        ..LoggerConfig::default()
    }
}

/// One phase of the workload on a fresh FaultFs whose crash point is `crash_at`
/// syncs into this phase. Returns the syncs the phase made.
fn phase(
    dir: &Path,
    graves: &Path,
    crash_at: Option<u64>,
    ignore_sync: bool,
    first: u64,
    steps: u64,
) -> u64 {
    let ffs = FaultFs::new(
        dir,
        graves,
        FaultConfig {
            crash_at_sync: crash_at,
            crash_action: Some(CrashAction::PowerLossAndExit),
            ignore_sync,
            torn_tails: true,
            print_violations: true,
            ..FaultConfig::default()
        },
    )
    .unwrap();
    let (store, sink) = Store::open(store_config(dir, &ffs)).unwrap();
    let logger = Logger::start(logger_config(), sink).unwrap();
    let mut next = first;
    for step in 0..steps {
        for _ in 0..PER_STEP {
            assert!(logger.log(event(next)).is_accepted());
            next += 1;
        }
        let trade = crate::journal::open_trade(&format!("pl-trade-{next}"), Ts::now());
        assert!(logger.log(trade).is_accepted());
        logger.flush_blocking().unwrap();
        println!("ACK {next}");
        if step % 2 == 1 {
            store.roll_lake().unwrap();
        }
        if step == 4 {
            store.compact(2).unwrap();
        }
    }
    logger.close().unwrap();
    drop(logger);
    store.close().unwrap();
    let syncs = ffs.syncs();
    // The power goes right after the clean close too: whatever the close left
    // unsynced is lost before the restart sees it.
    ffs.power_loss().unwrap();
    syncs
}

/// The child's role; does nothing unless started by the tests below.
#[test]
#[ignore = "started as a child process by power_loss_at_every_fsync"]
fn power_loss_child() {
    let (Ok(dir), Ok(graves)) = (std::env::var("PL_DIR"), std::env::var("PL_GRAVES")) else {
        return;
    };
    let crash_at: u64 = std::env::var("PL_CRASH_AT").unwrap().parse().unwrap();
    let ignore_sync = std::env::var("PL_IGNORE_SYNC").is_ok();
    let (dir, graves) = (Path::new(&dir), Path::new(&graves));
    let at = |done: u64| (crash_at > done).then(|| crash_at - done);
    let first = phase(dir, graves, at(0), ignore_sync, 0, STEPS);
    // The restart: recovery itself is crashed into too.
    let second = phase(
        dir,
        &graves.with_extension("restart"),
        at(first),
        ignore_sync,
        STEPS * PER_STEP,
        2,
    );
    println!("SYNCS {}", first + second);
}

struct Trial {
    acked: u64,
    syncs: Option<u64>,
    crashed: bool,
    violations: Vec<String>,
}

fn run_child(dir: &Path, crash_at: u64, ignore_sync: bool) -> Trial {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "power_loss::power_loss_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PL_DIR", dir.join("data"))
    .env("PL_GRAVES", dir.join("graves"))
    .env("PL_CRASH_AT", crash_at.to_string())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if ignore_sync {
        cmd.env("PL_IGNORE_SYNC", "1");
    }
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut child = cmd.spawn().unwrap();
    let mut trial = Trial {
        acked: 0,
        syncs: None,
        crashed: false,
        violations: Vec::new(),
    };
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if let Some(n) = line.strip_prefix("ACK ") {
            trial.acked = n.trim().parse().unwrap();
        } else if let Some(n) = line.strip_prefix("SYNCS ") {
            trial.syncs = Some(n.trim().parse().unwrap());
        } else if let Some(v) = line.strip_prefix("VIOLATION ") {
            trial.violations.push(v.to_string());
        }
    }
    let status = child.wait().unwrap();
    trial.crashed = status.code() == Some(quiver::store::faultfs::CRASH_EXIT_CODE);
    assert!(status.success() || trial.crashed, "child failed: {status}");
    trial
}

/// The ids the child acknowledged: every market event below `acked` (trade
/// events are checked against the journal).
fn acked_ids(acked: u64) -> BTreeSet<String> {
    (0..acked).map(|i| format!("pl-{i:08}")).collect()
}

/// Opens the data dir as a restarted machine would and checks exactly-once.
async fn verify(dir: &Path, acked: u64) -> Result<(), String> {
    let (store, sink) =
        Store::open(StoreConfig::new(dir.join("data"))).map_err(|e| e.to_string())?;
    let store = Arc::new(store);
    let logger = Logger::start(logger_config(), sink).map_err(|e| e.to_string())?;
    let engine =
        quiver::query::QueryEngine::new(store.clone(), Some(logger.clone()), &Default::default())
            .map_err(|e| e.to_string())?;
    let h = Harness {
        store,
        logger,
        engine,
    };
    let ids = event_ids(&h, "market_context").await;
    let want = acked_ids(acked);
    let total = h.scalar("SELECT count(*) FROM market_context").await;
    let result = (|| {
        let missing: Vec<&String> = want.difference(&ids).collect();
        if !missing.is_empty() {
            return Err(format!(
                "{} acknowledged events missing, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(3)]
            ));
        }
        if total != ids.len() as i64 {
            return Err(format!("{total} rows for {} ids: duplicates", ids.len()));
        }
        Ok(())
    })();
    let result = match result {
        Ok(()) => {
            // The lake must be whole by itself: recovery never had to fall
            // back on the hot store's copy.
            let holes = h.scalar("SELECT count(*) FROM system.holes").await;
            let quarantined = h
                .scalar("SELECT count(*) FROM system.quarantined_files")
                .await;
            let refilled = h
                .scalar("SELECT lake_refilled_rows FROM system.writer")
                .await;
            if holes + quarantined + refilled > 0 {
                Err(format!(
                    "recovery needed the hot store: {holes} holes, {quarantined} quarantined files, {refilled} rows written back"
                ))
            } else {
                Ok(())
            }
        }
        Err(e) => Err(e),
    };
    if result.is_ok() {
        assert_hot_within_events(&h, "after a power loss").await;
        assert!(h.store.wait_journal_caught_up(Duration::from_secs(60)));
        let trades = h.scalar("SELECT count(*) FROM events.trades").await;
        assert_eq!(
            h.scalar("SELECT count(*) FROM journal.trades").await,
            trades
        );
    }
    h.close();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_at_every_fsync_loses_no_acknowledged_event() {
    let reference = tempfile::tempdir().unwrap();
    let clean = run_child(reference.path(), 0, false);
    let syncs = clean.syncs.expect("the reference run did not finish");
    assert!(syncs > 20, "only {syncs} syncs");
    verify(reference.path(), clean.acked).await.unwrap();

    let mut tally = Vec::new();
    // Two trials at a time: one per core.
    let points: Vec<u64> = (1..=syncs).collect();
    for pair in points.chunks(2) {
        let dirs: Vec<_> = pair.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        let trials: Vec<Trial> = std::thread::scope(|s| {
            let handles: Vec<_> = pair
                .iter()
                .zip(&dirs)
                .map(|(k, d)| s.spawn(move || run_child(d.path(), *k, false)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for ((k, d), t) in pair.iter().zip(&dirs).zip(trials) {
            assert!(t.violations.is_empty(), "sync {k}: {:?}", t.violations);
            if let Err(e) = verify(d.path(), t.acked).await {
                panic!("power loss at sync {k} (acked {}): {e}", t.acked);
            }
            tally.push((*k, t.acked, t.crashed));
        }
    }
    let crashed = tally.iter().filter(|t| t.2).count();
    eprintln!(
        "power loss at each of {syncs} syncs: {crashed} crashed mid-run, every acknowledged event present once"
    );
    assert!(
        crashed as u64 >= syncs * 3 / 4,
        "most crash points were never reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fsync_a_power_loss_is_caught_losing_data() {
    let reference = tempfile::tempdir().unwrap();
    let clean = run_child(reference.path(), 0, false);
    let syncs = clean.syncs.unwrap();
    // Crash two thirds of the way in, with fsync a no-op.
    let dir = tempfile::tempdir().unwrap();
    let trial = run_child(dir.path(), syncs * 2 / 3, true);
    assert!(trial.crashed && trial.acked > 0);
    let err = verify(dir.path(), trial.acked).await.unwrap_err();
    assert!(err.contains("missing"), "{err}");
}
