//! Crash safety: a child process ingests while we SIGKILL it at random points
//! (landing in WAL appends, hot-store applies, lake rolls, compactions and
//! recovery), over and over. Every event acknowledged by `flush()` before a kill
//! must be present exactly once afterwards, and no partial Parquet file may ever
//! sit at a final path.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quiver::event::Level;
use quiver::ingest::{Logger, LoggerConfig};
use quiver::store::Store;
use rand::{Rng, SeedableRng};

use crate::common::*;
use crate::validation::walk;

const ROUND_IDS: u64 = 10_000_000;

/// The child's role; does nothing unless started by `kill_nine_at_random_points`.
#[test]
#[ignore = "started as a child process by kill_nine_at_random_points"]
fn crash_child() {
    let (Ok(dir), Ok(round)) = (
        std::env::var("CRASH_TEST_DIR"),
        std::env::var("CRASH_TEST_ROUND"),
    ) else {
        return;
    };
    let round: u64 = round.parse().unwrap();
    let (store, sink) = Store::open(small_store_config(dir.as_ref())).unwrap();
    let logger = Logger::start(
        LoggerConfig {
            queue_capacity: 100_000,
            ..fast_logger_config()
        },
        sink,
    )
    .unwrap();
    let mut n = 0u64;
    loop {
        for _ in 0..250 {
            let level = if n.is_multiple_of(7) {
                Level::Critical
            } else {
                Level::Info
            };
            assert!(
                logger
                    .log(market_event(round * ROUND_IDS + n, level))
                    .is_accepted()
            );
            n += 1;
        }
        // One trade per flush, so kills also land in journal writes.
        let trade =
            crate::journal::open_trade(&format!("tr-{round}-{n}"), quiver::event::Ts::now());
        assert!(logger.log(trade).is_accepted());
        logger.flush_blocking().unwrap();
        println!("ACK {n}");
        let _ = &store;
    }
}

fn assert_no_partial_parquet(dir: &std::path::Path) {
    for path in walk(&dir.join("lake")) {
        if path.extension().is_some_and(|e| e == "parquet") {
            let file = std::fs::File::open(&path).unwrap();
            parquet::file::reader::SerializedFileReader::new(file)
                .unwrap_or_else(|e| panic!("partial file at a final path {}: {e}", path.display()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_random_points() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    // `scripts/crash-rounds.sh` runs 200 of them; CI runs 12.
    let rounds: u64 = std::env::var("QUIVER_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12);
    let mut acked = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CRASH_TEST_DIR", dir.path())
            .env("CRASH_TEST_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let last_ack = Arc::new(AtomicU64::new(0));
        let stdout = child.stdout.take().unwrap();
        let reader = {
            let last_ack = last_ack.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(n) = line.strip_prefix("ACK ") {
                        last_ack.store(n.trim().parse().unwrap(), Ordering::Release);
                    }
                }
            })
        };
        // Every fourth round is killed at a random time from its start, which can
        // land in recovery; the others wait for the first acknowledgement (so the
        // round has something to check, however loaded the machine) and are then
        // killed at a random point of ingest, rolls and compactions.
        if round % 4 == 3 {
            std::thread::sleep(Duration::from_millis(rng.random_range(50..1_500)));
        } else {
            let started = std::time::Instant::now();
            while last_ack.load(Ordering::Acquire) == 0
                && started.elapsed() < Duration::from_secs(120)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..1_500)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let n = last_ack.load(Ordering::Acquire);
        acked.push(n);
        assert_no_partial_parquet(dir.path());
    }
    eprintln!("events acknowledged per round before SIGKILL: {acked:?}");
    assert!(
        acked.iter().filter(|n| **n > 0).count() as u64 >= rounds * 3 / 4,
        "too few rounds acknowledged anything: {acked:?}"
    );

    let h = Harness::open(small_store_config(dir.path()), fast_logger_config());
    assert_eq!(
        h.scalar("SELECT count(*) - count(DISTINCT event_id) FROM market_context")
            .await,
        0,
        "duplicates after crashes"
    );
    for (round, n) in acked.iter().enumerate() {
        let from = round as u64 * ROUND_IDS;
        let sql = format!(
            "SELECT count(*) FROM market_context WHERE event_id >= 'ev-{from:012}' AND event_id < 'ev-{:012}'",
            from + n
        );
        assert_eq!(
            h.scalar(&sql).await,
            *n as i64,
            "round {round}: acknowledged events missing"
        );
    }
    let rolls = h.scalar("SELECT count(*) FROM system.lake_files").await;
    assert!(rolls > 0, "no lake file was ever committed");
    // The lake rolls past the last restart: nothing the hot store holds is
    // hidden from events.*.
    h.store.roll_lake().unwrap();
    assert_hot_within_events(&h, "after the crashes and a roll").await;
    let total: u64 = acked.iter().sum();
    let hot = h.scalar("SELECT count(*) FROM hot.market_context").await;
    let events = h.scalar("SELECT count(*) FROM events.market_context").await;
    eprintln!(
        "TALLY rounds={rounds} acknowledged={total} in_events={events} in_hot={hot} lost=0 duplicated=0"
    );
    // The journal holds every durable trade event exactly once.
    assert!(h.store.wait_journal_caught_up(Duration::from_secs(60)));
    let trades = h.scalar("SELECT count(*) FROM events.trades").await;
    assert!(trades > 0);
    assert_eq!(
        h.scalar("SELECT count(*) FROM journal.trades").await,
        trades
    );
    assert_eq!(
        h.scalar(
            "SELECT count(*) FROM journal.trades j JOIN events.trades e ON e.trade_id = j.trade_id"
        )
        .await,
        trades
    );
    h.close();
}
