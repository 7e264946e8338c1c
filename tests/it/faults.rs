//! Storage faults (issue "Nothing acknowledged is ever lost"): each failure the
//! issue lists has a test here that fails without its protection, and after
//! every fault every acknowledged event is in `events.*` exactly once, with every
//! row of `hot.*` among them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use quiver::event::{Level, Table};
use quiver::ingest::{DropReason, LogOutcome, Logger, LoggerConfig};
use quiver::store::faultfs::{Errno, Fault, FaultConfig, FaultFs, Op};
use quiver::store::{Store, StoreConfig, StoreError, lake};

use crate::common::*;

fn roomy() -> LoggerConfig {
    LoggerConfig {
        queue_capacity: 1_000_000,
        ..fast_logger_config()
    }
}

/// A store that rolls only when asked.
fn manual_roll(dir: &Path) -> StoreConfig {
    let mut c = small_store_config(dir);
    c.lake.roll_rows_max = usize::MAX;
    c
}

fn with_fs(mut c: StoreConfig, fs: &FaultFs) -> StoreConfig {
    c.fs = Arc::new(fs.clone());
    c
}

/// A FaultFs over a (new) data dir.
fn fault_fs(tmp: &Path, config: FaultConfig) -> (PathBuf, FaultFs) {
    let dir = tmp.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = std::fs::canonicalize(dir).unwrap();
    let ffs = FaultFs::new(&dir, &tmp.join("graves"), config).unwrap();
    (dir, ffs)
}

/// Logs `n` market events with ids from `from` and waits until they are durable.
async fn log_durable(h: &Harness, from: u64, n: u64) {
    for i in from..from + n {
        assert!(h.logger.log(market_event(i, Level::Info)).is_accepted());
    }
    h.logger.flush().await.unwrap();
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(60)));
}

fn market_ids(from: u64, n: u64) -> BTreeSet<String> {
    (from..from + n).map(|i| format!("ev-{i:012}")).collect()
}

/// Cuts the power: the disk keeps only what was fsynced, then the process's
/// store and logger are dropped (every later write fails, as on a dead machine).
fn power_loss(h: Harness, ffs: &FaultFs) {
    ffs.power_loss().unwrap();
    let Harness {
        store,
        logger,
        engine,
    } = h;
    drop(engine);
    let _ = logger.close();
    drop(logger);
    drop(store);
}

async fn reopen_and_check(dir: &Path, expected: &BTreeSet<String>, stage: &str) -> Harness {
    let h = Harness::open(small_store_config(dir), roomy());
    let ids = event_ids(&h, "market_context").await;
    let missing: Vec<_> = expected.difference(&ids).take(5).collect();
    assert!(
        missing.is_empty(),
        "{stage}: acknowledged events missing, e.g. {missing:?}"
    );
    assert_eq!(
        h.scalar("SELECT count(*) FROM market_context").await,
        ids.len() as i64,
        "{stage}"
    );
    assert_hot_within_events(&h, stage).await;
    h
}

// 1. A missing or stale commit record never deletes the lake.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_without_its_commit_log_refuses_to_start_and_keeps_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(manual_roll(dir.path()), roomy());
    log_durable(&h, 0, 3_000).await;
    h.store.roll_lake().unwrap();
    h.close();
    let lake = dir.path().join("lake");
    let files = parquet_files(&lake);
    assert!(!files.is_empty());
    std::fs::rename(lake.join("_log"), dir.path().join("_log.moved")).unwrap();

    let err = Store::open(small_store_config(dir.path())).unwrap_err();
    assert!(
        matches!(err, StoreError::Lake(lake::LakeError::NeedsRepair { .. })),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("quiver repair lake --data-dir"), "{text}");
    assert!(text.contains("commit log (lake/_log) is missing"), "{text}");
    assert_eq!(
        parquet_files(&lake),
        files,
        "recovery changed the lake on a guess"
    );

    let report = lake::repair(
        &lake,
        &dir.path().join("quarantine"),
        quiver::store::fsio::std_fs(),
        false,
    )
    .unwrap();
    assert_eq!(report.files_kept, files.len());
    let h = reopen_and_check(dir.path(), &market_ids(0, 3_000), "after repair").await;
    h.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_commit_log_is_caught_up_from_the_hot_store_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(manual_roll(dir.path()), roomy());
    log_durable(&h, 0, 1_000).await;
    h.store.roll_lake().unwrap();
    h.close();
    // A backup of the log, then more data rolled and the WAL deleted behind it.
    let lake = dir.path().join("lake");
    let backup = dir.path().join("log-backup");
    copy_dir(&lake.join("_log"), &backup);
    let h = Harness::open(manual_roll(dir.path()), roomy());
    log_durable(&h, 1_000, 1_000).await;
    h.store.roll_lake().unwrap();
    h.close();
    let restore = |from: &Path| {
        std::fs::remove_dir_all(lake.join("_log")).unwrap();
        copy_dir(from, &lake.join("_log"));
    };
    let newest = dir.path().join("log-newest");
    copy_dir(&lake.join("_log"), &newest);

    // The hot store still holds the newer rows: they are rolled again, once.
    restore(&backup);
    let h = reopen_and_check(dir.path(), &market_ids(0, 2_000), "stale log, hot intact").await;
    h.close();

    // Without the hot store nothing can vouch for the newer files: refuse.
    restore(&backup);
    let files = parquet_files(&lake);
    for name in ["hot.duckdb", "hot.duckdb.wal"] {
        let _ = std::fs::remove_file(dir.path().join(name));
    }
    let err = Store::open(small_store_config(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("looks stale"), "{err}");
    assert!(err.contains("quiver repair lake"), "{err}");
    assert_eq!(
        parquet_files(&lake),
        files,
        "a refused start changed the lake"
    );
    let report = lake::repair(
        &lake,
        &dir.path().join("quarantine"),
        quiver::store::fsio::std_fs(),
        false,
    )
    .unwrap();
    assert!(report.lake_seq > 0);
    let h = reopen_and_check(dir.path(), &market_ids(0, 2_000), "after repair").await;
    h.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_of_the_old_format_is_taken_over_and_one_without_its_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(manual_roll(dir.path()), roomy());
    log_durable(&h, 0, 2_000).await;
    h.store.roll_lake().unwrap();
    let lake_seq = h.scalar("SELECT lake_seq FROM system.writer").await;
    h.close();
    let lake = dir.path().join("lake");
    std::fs::remove_dir_all(lake.join("_log")).unwrap();
    // The old format without its state file: the reproduction.
    let files = parquet_files(&lake);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "sql",
            "select 1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("quiver repair lake"), "{stderr}");
    assert_eq!(parquet_files(&lake), files);
    // With it: migrated, nothing lost.
    std::fs::write(
        lake.join("_state.json"),
        format!("{{\"lake_seq\": {lake_seq}}}"),
    )
    .unwrap();
    let h = reopen_and_check(dir.path(), &market_ids(0, 2_000), "migrated").await;
    assert!(!lake.join("_state.json").exists());
    h.close();
}

// 2. WAL segment names are never reused.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_wal_segment_at_the_next_name_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ffs) = fault_fs(tmp.path(), FaultConfig::default());
    let h = Harness::open(with_fs(manual_roll(&dir), &ffs), roomy());
    log_durable(&h, 0, 2_000).await;
    let next = h.scalar("SELECT wal_seq FROM system.writer").await + 1;
    power_loss(h, &ffs);
    // A crash between creating the next segment and writing to it, in both
    // naming schemes.
    std::fs::write(dir.join("wal").join(format!("{next:020}.wal")), b"").unwrap();
    std::fs::write(
        dir.join("wal")
            .join(format!("{next:020}-00000000000000000001-00000001.wal")),
        b"",
    )
    .unwrap();
    let h = Harness::open(manual_roll(&dir), roomy());
    log_durable(&h, 2_000, 2_000).await;
    h.store.roll_lake().unwrap();
    h.close();
    // Once more across a restart and a roll: the measured loss was here.
    let h = reopen_and_check(&dir, &market_ids(0, 4_000), "after restart and roll").await;
    h.close();
}

// 3. `events.*` never hides a row the hot store holds.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_that_lost_its_segments_is_filled_from_the_hot_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ffs) = fault_fs(tmp.path(), FaultConfig::default());
    let h = Harness::open(with_fs(manual_roll(&dir), &ffs), roomy());
    log_durable(&h, 0, 1_000).await;
    h.store.roll_lake().unwrap();
    log_durable(&h, 1_000, 3_000).await; // in the WAL and the hot store only
    power_loss(h, &ffs);
    std::fs::remove_dir_all(dir.join("wal")).unwrap();
    let h = reopen_and_check(&dir, &market_ids(0, 4_000), "WAL lost").await;
    // The lake rolls past the gap and the rows stay visible.
    h.store.roll_lake().unwrap();
    assert_hot_within_events(&h, "after a roll past the gap").await;
    assert_eq!(h.scalar("SELECT count(*) FROM market_context").await, 4_000);
    let refilled = h
        .scalar(
            "SELECT count(*) FROM system.holes WHERE component = 'lake' AND status = 'refilled'",
        )
        .await;
    assert!(refilled >= 1);
    h.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_wal_record_is_read_back_from_the_hot_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ffs) = fault_fs(tmp.path(), FaultConfig::default());
    let mut config = manual_roll(&dir);
    config.wal_segment_bytes_max = u64::MAX;
    let h = Harness::open(with_fs(config, &ffs), roomy());
    log_durable(&h, 0, 3_000).await;
    power_loss(h, &ffs);
    let segment = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let h = reopen_and_check(&dir, &market_ids(0, 3_000), "a corrupt record").await;
    h.store.roll_lake().unwrap();
    assert_eq!(h.scalar("SELECT count(*) FROM market_context").await, 3_000);
    assert_hot_within_events(&h, "after the roll").await;
    h.close();
}

/// A data dir holding 3,000 market events rolled into the lake, one of whose
/// Parquet files is then cut in half. Returns the file's path and its bytes.
async fn lake_with_a_truncated_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let h = Harness::open(manual_roll(dir), roomy());
    log_durable(&h, 0, 3_000).await;
    h.store.roll_lake().unwrap();
    h.close();
    let victim = parquet_files(&dir.join("lake").join("market_context"))
        .into_iter()
        .next()
        .unwrap();
    let good = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &good[..good.len() / 2]).unwrap();
    (victim, good)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_file_is_written_back_from_the_hot_store() {
    let dir = tempfile::tempdir().unwrap();
    let (victim, _) = lake_with_a_truncated_file(dir.path()).await;
    let h = reopen_and_check(dir.path(), &market_ids(0, 3_000), "a quarantined file").await;
    assert!(!victim.exists());
    assert_eq!(
        h.scalar("SELECT count(*) FROM system.quarantined_files")
            .await,
        1
    );
    assert!(
        h.scalar("SELECT lake_refilled_rows FROM system.writer")
            .await
            > 0
    );
    h.close();
    // And the refill is itself durable: the next start finds nothing to do.
    let h = reopen_and_check(dir.path(), &market_ids(0, 3_000), "restart").await;
    assert_eq!(
        h.scalar("SELECT lake_refilled_rows FROM system.writer")
            .await,
        0
    );
    h.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_finds_no_hole_even_without_trade_events() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(manual_roll(dir.path()), roomy());
    log_durable(&h, 0, 2_000).await; // no trade events: the journal writes nothing
    h.store.roll_lake().unwrap();
    assert!(h.store.wait_journal_caught_up(Duration::from_secs(30)));
    // Let the WAL be trimmed behind every consumer.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    h.close();
    let h = reopen_and_check(dir.path(), &market_ids(0, 2_000), "restart").await;
    assert_eq!(h.scalar("SELECT count(*) FROM system.holes").await, 0);
    h.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_file_put_back_is_quarantined_again_not_deleted_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let (victim, good) = lake_with_a_truncated_file(dir.path()).await;
    let h = reopen_and_check(dir.path(), &market_ids(0, 3_000), "quarantined").await;
    h.close();
    // An operator restores the good copy where it was.
    std::fs::write(&victim, &good).unwrap();
    let h = reopen_and_check(dir.path(), &market_ids(0, 3_000), "put back").await;
    assert!(victim.exists() || !parquet_files(&dir.path().join("quarantine")).is_empty());
    assert!(
        !victim.exists(),
        "a file removed from the lake came back into it"
    );
    h.close();
}

// 4. The slowest consumer never stalls the durability point.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_journal_never_stalls_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let logger = LoggerConfig {
        queue_capacity: 1_000_000,
        batch_rows_max: 50,
        flush_interval: Duration::from_millis(5),
        ..LoggerConfig::default()
    };
    let h = Harness::open(manual_roll(dir.path()), logger);
    let mut blocker = rusqlite::Connection::open(dir.path().join("journal.sqlite")).unwrap();
    let tx = blocker
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    // Enough writes for thousands of WAL records: the old writer blocked once
    // 4,096 were queued for the journal.
    let events = sim_events(11, 8_000);
    let n = events.len();
    for e in events {
        assert!(h.logger.log(e).is_accepted());
    }
    let flushed = tokio::time::timeout(Duration::from_secs(120), h.logger.flush()).await;
    assert!(flushed.is_ok(), "flush() waited on the locked journal");
    let stats = h.logger.stats();
    assert_eq!(stats.dropped_total(), 0);
    assert!(!stats.kill_switch_tripped);
    let state = wait_for_state(&h, "journal_state", "locked").await;
    assert!(state.starts_with("stalled: locked"), "{state}");
    let wal_seq = h.scalar("SELECT wal_seq FROM system.writer").await;
    assert!(wal_seq > 4_096, "only {wal_seq} WAL records for {n} events");
    assert!(
        h.scalar("SELECT journal_lag_batches FROM system.writer")
            .await
            > 0
    );
    tx.rollback().unwrap();
    drop(blocker);
    assert!(h.store.wait_journal_caught_up(Duration::from_secs(120)));
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(300)));
    let trades = h
        .scalar("SELECT count(DISTINCT trade_id) FROM events.trades")
        .await;
    assert_eq!(
        h.scalar("SELECT count(*) FROM journal.trades").await,
        trades
    );
    h.close();
}

// 5. A partly failed compaction retires nothing it did not replace.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_failed_compaction_keeps_every_live_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ffs) = fault_fs(tmp.path(), FaultConfig::default());
    let mut config = with_fs(manual_roll(&dir), &ffs);
    config.lake.compact_trigger_files = usize::MAX;
    config.lake.retired_file_grace = Duration::ZERO;
    let h = Harness::open(config, roomy());
    for round in 0..3 {
        log_durable(&h, round * 1_000, 1_000).await;
        h.store.roll_lake().unwrap();
    }
    // Three symbols, three partitions to merge: the second merge's output
    // cannot be named.
    ffs.add_fault(Fault {
        op: Op::Link,
        path_contains: "part-".into(),
        nth: 2,
        repeat: 1,
        errno: Errno::NoSpace,
    });
    let err = h.store.compact(2).unwrap_err();
    assert!(err.to_string().contains("lake"), "{err}");
    // Let the grace (zero) pass and the lake thread run.
    std::thread::sleep(Duration::from_millis(300));
    for f in h
        .query("SELECT path FROM system.lake_files")
        .await
        .iter()
        .flat_map(|b| {
            let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
            col.as_string::<i32>()
                .iter()
                .flatten()
                .map(String::from)
                .collect::<Vec<_>>()
        })
    {
        assert!(Path::new(&f).exists(), "a live file was deleted: {f}");
    }
    assert_eq!(h.scalar("SELECT count(*) FROM market_context").await, 3_000);
    h.close();
    let h = reopen_and_check(&dir, &market_ids(0, 3_000), "after restart").await;
    assert!(h.store.compact(2).unwrap() > 0);
    assert_eq!(h.scalar("SELECT count(*) FROM market_context").await, 3_000);
    h.close();
}

// 6. flush() confirms only what it covers.

/// A sink whose first write waits at a gate and then fails.
#[derive(Clone, Default)]
struct FlakySink {
    inner: MemorySink,
    writes: Arc<AtomicUsize>,
    gate_open: Arc<AtomicBool>,
    first_started: Arc<AtomicBool>,
}

impl quiver::ingest::BatchSink for FlakySink {
    fn write(
        &mut self,
        batches: &[(Table, arrow::array::RecordBatch)],
    ) -> Result<(), quiver::ingest::SinkError> {
        if self.writes.fetch_add(1, Ordering::AcqRel) == 0 {
            self.first_started.store(true, Ordering::Release);
            while !self.gate_open.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            return Err(quiver::ingest::SinkError(Box::new(std::io::Error::other(
                "disk says no",
            ))));
        }
        self.inner.write(batches)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_after_a_failed_write_waits_for_its_own_events() {
    let sink = FlakySink::default();
    let logger = Logger::start(
        LoggerConfig {
            flush_interval: Duration::from_secs(3600),
            ..LoggerConfig::default()
        },
        sink.clone(),
    )
    .unwrap();
    assert!(logger.log(market_event(1, Level::Info)).is_accepted());
    let first = {
        let l = logger.clone();
        tokio::spawn(async move { l.flush().await })
    };
    while !sink.first_started.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // A second event and flush while the first batch's write is failing: the
    // retry of that batch must not confirm the second flush.
    assert!(logger.log(market_event(2, Level::Info)).is_accepted());
    let second = {
        let l = logger.clone();
        tokio::spawn(async move { l.flush().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    sink.gate_open.store(true, Ordering::Release);
    second.await.unwrap().unwrap();
    assert_eq!(
        sink.inner.rows(),
        2,
        "the second flush returned before its own event was durable"
    );
    first.await.unwrap().unwrap();
    logger.close().unwrap();
}

// 7. + a failed fsync: new directories and segments survive a power loss.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wal_fsync_loses_nothing_and_the_segment_is_never_touched_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ffs) = fault_fs(tmp.path(), FaultConfig::default());
    ffs.add_fault(Fault {
        op: Op::SyncFile,
        path_contains: ".wal".into(),
        nth: 3,
        repeat: 2,
        errno: Errno::Io,
    });
    let h = Harness::open(with_fs(manual_roll(&dir), &ffs), roomy());
    for round in 0..6 {
        log_durable(&h, round * 300, 300).await;
    }
    h.store.roll_lake().unwrap();
    log_durable(&h, 1_800, 200).await;
    assert!(ffs.violations().is_empty(), "{:?}", ffs.violations());
    power_loss(h, &ffs);
    let h = reopen_and_check(&dir, &market_ids(0, 2_000), "after a power loss").await;
    h.close();
}

// 8. Symbols that differ only by case never share a directory.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_that_differ_only_by_case_get_their_own_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ffs) = fault_fs(
        tmp.path(),
        FaultConfig {
            case_insensitive: true,
            ..FaultConfig::default()
        },
    );
    let h = Harness::open(with_fs(manual_roll(&dir), &ffs), roomy());
    for (i, symbol) in ["BTC", "btc", "Btc", "ETH"].iter().enumerate() {
        for j in 0..50u64 {
            let mut e = market_event(i as u64 * 1_000 + j, Level::Info);
            if let quiver::event::Event::MarketContext(m) = &mut e {
                m.header.symbol = symbol.to_string();
            }
            assert!(h.logger.log(e).is_accepted());
        }
    }
    h.logger.flush().await.unwrap();
    h.store.roll_lake().unwrap();
    assert!(ffs.violations().is_empty(), "{:?}", ffs.violations());
    for symbol in ["BTC", "btc", "Btc", "ETH"] {
        assert_eq!(
            h.scalar(&format!(
                "SELECT count(*) FROM market_context WHERE symbol = '{symbol}'"
            ))
            .await,
            50,
            "{symbol}"
        );
    }
    h.close();
    // Four directories whose names stay distinct when case is folded, each
    // naming its symbol (hive readers percent-decode; tests/python checks DuckDB).
    let mut names: Vec<String> = std::fs::read_dir(dir.join("lake/market_context"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let folded: BTreeSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    assert_eq!(folded.len(), 4, "{names:?}");
    let decoded: BTreeSet<String> = names
        .iter()
        .map(|n| lake::partition::decode_symbol(n.strip_prefix("symbol=").unwrap()).unwrap())
        .collect();
    assert_eq!(
        decoded,
        ["BTC", "Btc", "ETH", "btc"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

// 9. Disk full and I/O errors.

async fn wait_for_state(h: &Harness, column: &str, want: &str) -> String {
    let started = Instant::now();
    loop {
        let b = h
            .query(&format!("SELECT {column} FROM system.writer"))
            .await;
        let col = arrow::compute::cast(b[0].column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let state = col.as_string::<i32>().value(0).to_string();
        if state.contains(want) || started.elapsed() > Duration::from_secs(30) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stalls_visibly_keeps_log_answering_and_recovers_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ffs) = fault_fs(tmp.path(), FaultConfig::default());
    let logger = LoggerConfig {
        queue_capacity: 2_000,
        ..fast_logger_config()
    };
    let h = Harness::open(with_fs(manual_roll(&dir), &ffs), logger);
    log_durable(&h, 0, 500).await;
    ffs.set_disk_full(true);
    let mut accepted = market_ids(0, 500);
    let mut dropped_full = 0;
    for i in 500..10_500u64 {
        match h.logger.log(market_event(i, Level::Info)) {
            LogOutcome::Accepted => {
                accepted.insert(format!("ev-{i:012}"));
            }
            LogOutcome::Dropped(DropReason::QueueFull | DropReason::KillSwitch) => {
                dropped_full += 1
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        dropped_full > 0,
        "the queue never filled while the disk was full"
    );
    assert!(h.logger.kill_switch_tripped());
    assert_eq!(
        wait_for_state(&h, "wal_state", "disk full").await,
        "stalled: disk full"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), h.logger.flush())
            .await
            .is_err(),
        "flush() confirmed writes to a full disk"
    );
    // A roll fails too, leaving no file at a final path.
    assert!(h.store.roll_lake().is_err());
    assert!(parquet_files(&dir.join("lake")).is_empty());
    ffs.set_disk_full(false);
    tokio::time::timeout(Duration::from_secs(60), h.logger.flush())
        .await
        .expect("ingest did not resume")
        .unwrap();
    assert_eq!(wait_for_state(&h, "wal_state", "ok").await, "ok");
    h.store.roll_lake().unwrap();
    assert_eq!(wait_for_state(&h, "lake_state", "ok").await, "ok");
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(60)));
    let ids = event_ids(&h, "market_context").await;
    assert_eq!(ids, accepted);
    h.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_publishing_a_lake_file_is_retried_and_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ffs) = fault_fs(tmp.path(), FaultConfig::default());
    let h = Harness::open(with_fs(manual_roll(&dir), &ffs), roomy());
    log_durable(&h, 0, 1_000).await;
    ffs.add_fault(Fault {
        op: Op::SyncFile,
        path_contains: "part-".into(),
        nth: 1,
        repeat: 1,
        errno: Errno::Io,
    });
    ffs.add_fault(Fault {
        op: Op::Link,
        path_contains: "_log".into(),
        nth: 1,
        repeat: 1,
        errno: Errno::NoSpace,
    });
    assert!(h.store.roll_lake().is_err()); // a file's fsync
    assert!(parquet_files(&dir.join("lake")).is_empty());
    assert!(h.store.roll_lake().is_err()); // the commit's name
    assert!(parquet_files(&dir.join("lake")).is_empty());
    h.store.roll_lake().unwrap();
    assert!(ffs.violations().is_empty(), "{:?}", ffs.violations());
    assert_eq!(h.scalar("SELECT count(*) FROM market_context").await, 1_000);
    power_loss(h, &ffs);
    let h = reopen_and_check(&dir, &market_ids(0, 1_000), "after a power loss").await;
    h.close();
}

/// A size-limited tmpfs the test mounts (needs CAP_SYS_ADMIN), unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if out.status.success() {
            Ok(Self(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_full_disk_stalls_ingest_and_it_resumes_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = match SmallFs::mount(&tmp.path().join("small"), "96m") {
        Ok(m) => m,
        Err(reason) => {
            eprintln!(
                "SKIPPED a_real_full_disk_stalls_ingest...: cannot mount a tmpfs here ({reason})"
            );
            return;
        }
    };
    let dir = mount.0.join("data");
    let logger = LoggerConfig {
        queue_capacity: 5_000,
        ..fast_logger_config()
    };
    let mut config = manual_roll(&dir);
    config.wal_segment_bytes_max = 1 << 20;
    let h = Harness::open(config, logger);
    log_durable(&h, 0, 500).await;
    // Fill the disk, leaving a little room.
    let ballast = mount.0.join("ballast");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let mut accepted = market_ids(0, 500);
    let mut i = 500u64;
    let started = Instant::now();
    loop {
        if h.logger.log(market_event(i, Level::Info)).is_accepted() {
            accepted.insert(format!("ev-{i:012}"));
        }
        i += 1;
        if i.is_multiple_of(1_000) {
            let state = wait_for_state(&h, "wal_state", "").await;
            if state.contains("disk full") || started.elapsed() > Duration::from_secs(60) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(
        wait_for_state(&h, "wal_state", "disk full").await,
        "stalled: disk full"
    );
    std::fs::remove_file(&ballast).unwrap();
    tokio::time::timeout(Duration::from_secs(120), h.logger.flush())
        .await
        .expect("ingest did not resume once space returned")
        .unwrap();
    assert!(h.store.wait_hot_caught_up(Duration::from_secs(120)));
    h.store.roll_lake().unwrap();
    for f in parquet_files(&dir.join("lake")) {
        let file = std::fs::File::open(&f).unwrap();
        parquet::file::reader::SerializedFileReader::new(file)
            .unwrap_or_else(|e| panic!("partial file at a final path {}: {e}", f.display()));
    }
    let ids = event_ids(&h, "market_context").await;
    let missing: Vec<_> = accepted.difference(&ids).take(5).collect();
    assert!(missing.is_empty(), "acknowledged events lost: {missing:?}");
    assert_eq!(ids.len(), accepted.len());
    assert_hot_within_events(&h, "after the disk filled up").await;
    h.close();
    drop(mount);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `system.health` (the monitor over the same store) during a full disk:
/// the WAL critical, the kill switch tripped, INFO drops counted in the
/// window; every check ok again once space returns, and each change reported
/// as a transition (what the server puts in the alert outbox).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_turns_system_health_critical_and_back_to_ok() {
    use quiver::app::DefinitionsStatus;
    use quiver::app::health::{self, HealthMonitor, HealthSources, State};
    use quiver::config::HealthSection;

    let tmp = tempfile::tempdir().unwrap();
    let (dir, ffs) = fault_fs(tmp.path(), FaultConfig::default());
    let logger = LoggerConfig {
        queue_capacity: 2_000,
        ..fast_logger_config()
    };
    let h = Harness::open(with_fs(manual_roll(&dir), &ffs), logger);
    let config = HealthSection {
        window: Duration::from_secs(2),
        interval: Duration::from_secs(1),
        // The machine's own disk is not what this test is about.
        disk_free_warn_bytes: 0,
        disk_free_critical_bytes: 0,
        ..HealthSection::default()
    };
    let monitor = HealthMonitor::new(
        config,
        Duration::from_secs(600),
        HealthSources {
            logger: Some(h.logger.clone()),
            store: h.store.clone(),
            queries: Default::default(),
            definitions: Arc::new(DefinitionsStatus::default()),
        },
    );
    health::register(&h.engine, &monitor).unwrap();
    let state_of = |check: &'static str| {
        let h = &h;
        async move {
            let batches = h
                .query_with(
                    "SELECT state FROM system.health WHERE \"check\" = $1",
                    vec![datafusion::common::ScalarValue::from(check)],
                )
                .await;
            batches[0].column(0).as_string::<i32>().value(0).to_string()
        }
    };
    let wait_state = |check: &'static str, want: &'static str| {
        let state_of = &state_of;
        async move {
            let started = Instant::now();
            loop {
                let state = state_of(check).await;
                if state == want || started.elapsed() > Duration::from_secs(30) {
                    return state;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    log_durable(&h, 0, 500).await;
    for check in ["wal", "kill_switch", "queue_fill", "drops.info", "lag.hot"] {
        assert_eq!(state_of(check).await, "ok", "{check} before the fault");
    }
    // No definitions were loaded into this engine: the only warning.
    let first = monitor.sample();
    let not_ok: Vec<&str> = first
        .checks
        .iter()
        .filter(|c| c.state != State::Ok)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(not_ok, ["definitions"], "{first:#?}");
    monitor.take_transitions();

    ffs.set_disk_full(true);
    // First the committer takes one event and sticks in its retries, so
    // every event after it stays in the backlog: had it taken a few groups
    // of the burst at once, the backlog would fall under the re-arm fill and
    // the kill switch re-arm a second later, as it should with room again.
    let errors_before = h.logger.stats().write_errors;
    assert!(h.logger.log(market_event(500, Level::Info)).is_accepted());
    let started = Instant::now();
    while h.logger.stats().write_errors == errors_before {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no write failed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut dropped = 0;
    for i in 501..10_500u64 {
        if !h.logger.log(market_event(i, Level::Info)).is_accepted() {
            dropped += 1;
        }
    }
    assert!(dropped > 0);
    assert_eq!(wait_state("wal", "critical").await, "critical");
    assert_eq!(state_of("kill_switch").await, "critical");
    assert_eq!(state_of("drops.info").await, "warning");
    let report = monitor.sample();
    assert_eq!(report.state, State::Critical);
    let changed: Vec<(String, State)> = monitor
        .take_transitions()
        .into_iter()
        .map(|t| (t.check.name, t.check.state))
        .collect();
    assert!(
        changed.contains(&("wal".into(), State::Critical))
            && changed.contains(&("kill_switch".into(), State::Critical)),
        "{changed:?}"
    );

    ffs.set_disk_full(false);
    tokio::time::timeout(Duration::from_secs(60), h.logger.flush())
        .await
        .expect("ingest did not resume")
        .unwrap();
    assert_eq!(wait_state("wal", "ok").await, "ok");
    assert_eq!(wait_state("kill_switch", "ok").await, "ok");
    // The drops leave the 2 s window.
    assert_eq!(wait_state("drops.info", "ok").await, "ok");
    let back: Vec<(String, State)> = monitor
        .take_transitions()
        .into_iter()
        .map(|t| (t.check.name, t.check.state))
        .collect();
    assert!(back.contains(&("wal".into(), State::Ok)), "{back:?}");
    drop(monitor);
    h.close();
}
