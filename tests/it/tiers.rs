//! Priority tiers with a stalled writer: DEBUG shed from 80%, the kill switch at
//! 95%, WARNING dropped only when full, CRITICAL never; re-arm by the rule.
//! Network ingest in its own lane: a backfill never sheds the bot's events.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use quiver::event::Level;
use quiver::ingest::{DropReason, LogOutcome, Logger, LoggerConfig};

use crate::common::*;

fn reason(outcome: LogOutcome) -> Option<DropReason> {
    match outcome {
        LogOutcome::Accepted => None,
        LogOutcome::Dropped(r) => Some(r),
    }
}

#[test]
fn stalled_writer_sheds_debug_keeps_critical_and_trips_the_kill_switch() {
    let sink = MemorySink::default();
    sink.stalled.store(true, Ordering::Release);
    let hold = Duration::from_secs(2);
    let logger = Logger::start(
        LoggerConfig {
            queue_capacity: 1_000,
            batch_rows_max: 100,
            flush_interval: Duration::from_millis(10),
            kill_switch_rearm_hold: hold,
            ..LoggerConfig::default()
        },
        sink.clone(),
    )
    .unwrap();
    // One event that the writer takes and then blocks on: from here the queue
    // only grows.
    assert!(logger.log(market_event(0, Level::Info)).is_accepted());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(logger.stats().queue_len, 0);

    let mut id = 1;
    let mut log = |level| {
        id += 1;
        logger.log(market_event(id, level))
    };
    for _ in 0..799 {
        assert!(log(Level::Info).is_accepted());
    }
    // 799 queued (79.9%): DEBUG still accepted; at 800 (80%) it is shed.
    assert!(log(Level::Debug).is_accepted());
    assert_eq!(reason(log(Level::Debug)), Some(DropReason::DebugShed));
    assert!(log(Level::Info).is_accepted());
    for _ in 0..149 {
        assert!(log(Level::Info).is_accepted());
    }
    assert!(!logger.kill_switch_tripped(), "tripped below 95%");
    assert_eq!(logger.stats().queue_len, 950);
    // At 95% the kill switch trips: INFO and DEBUG are dropped, WARNING is not.
    assert_eq!(reason(log(Level::Info)), Some(DropReason::KillSwitch));
    assert!(logger.kill_switch_tripped());
    let tripped_at = Instant::now();
    assert_eq!(reason(log(Level::Debug)), Some(DropReason::KillSwitch));
    for _ in 0..50 {
        assert!(log(Level::Warning).is_accepted());
    }
    assert_eq!(reason(log(Level::Warning)), Some(DropReason::QueueFull));
    assert_eq!(reason(log(Level::Error)), Some(DropReason::QueueFull));
    // CRITICAL always gets in, through the overflow lane.
    for _ in 0..100 {
        assert!(log(Level::Critical).is_accepted());
    }
    let stats = logger.stats();
    assert_eq!(stats.overflow_accepted, 100);
    assert_eq!(stats.dropped_debug_shed, 1);
    assert_eq!(stats.dropped_kill_switch.get(Level::Info), 1);
    assert_eq!(stats.dropped_kill_switch.get(Level::Debug), 1);
    assert_eq!(stats.dropped_queue_full.get(Level::Warning), 1);
    assert_eq!(stats.dropped_queue_full.get(Level::Error), 1);

    // Release the writer: the queue drains, but the switch holds until the
    // re-arm hold has passed since it tripped.
    sink.stalled.store(false, Ordering::Release);
    logger.flush_blocking().unwrap();
    assert_eq!(logger.stats().queue_len, 0);
    if tripped_at.elapsed() < hold - Duration::from_millis(300) {
        assert!(logger.kill_switch_tripped(), "re-armed before the hold");
    }
    while tripped_at.elapsed() < hold + Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !logger.kill_switch_tripped(),
        "did not re-arm after the hold at 0% fill"
    );
    assert!(log(Level::Info).is_accepted());
    logger.flush_blocking().unwrap();
    logger.close().unwrap();

    assert_eq!(sink.rows_where(|l| l == "CRITICAL"), 100);
    assert_eq!(sink.rows_where(|l| l == "DEBUG"), 1);
    assert_eq!(sink.rows_where(|l| l == "WARNING"), 50);
    assert_eq!(sink.rows(), 1 + 799 + 1 + 1 + 149 + 50 + 100 + 1);
}

#[test]
fn closed_logger_drops_and_flush_after_close_returns() {
    let sink = MemorySink::default();
    let logger = Logger::start(LoggerConfig::default(), sink.clone()).unwrap();
    assert!(logger.log(market_event(1, Level::Info)).is_accepted());
    logger.close().unwrap();
    assert_eq!(sink.rows(), 1, "close flushes");
    assert_eq!(
        reason(logger.log(market_event(2, Level::Critical))),
        Some(DropReason::Closed)
    );
    logger.flush_blocking().unwrap();
}

/// A backfill through the ingest lane while the bot logs: the bot's queue
/// never sees the backfill, so nothing of the bot's is shed and the kill
/// switch never trips, first with the writer stalled, then with a slow one.
/// (When ingest shared the bot's queue and held it at 80%, the bot's first
/// DEBUG event was shed.)
#[test]
fn a_backfill_never_sheds_the_bots_events_nor_trips_the_kill_switch() {
    let sink = MemorySink::default();
    sink.stalled.store(true, Ordering::Release);
    let logger = Logger::start(
        LoggerConfig {
            queue_capacity: 1_000,
            batch_rows_max: 100,
            ingest_queue_capacity: 1_000,
            flush_interval: Duration::from_millis(10),
            ..LoggerConfig::default()
        },
        sink.clone(),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    const BACKFILL: u64 = 50_000;
    let backfill: Vec<_> = (0..BACKFILL)
        .map(|i| market_event(1_000_000 + i, Level::Info))
        .collect();
    let loader = logger.clone();
    let backfill = runtime.spawn(async move { loader.submit(backfill).await });

    // Stalled: the lane fills to its cap and the backfill waits there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while logger.stats().ingest_queue_len < 1_000 {
        assert!(Instant::now() < deadline, "the ingest lane never filled");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        logger.stats().queue_len,
        0,
        "the backfill is in the bot's queue"
    );
    let mut bot = 0u64;
    let mut log = |level| {
        bot += 1;
        let outcome = logger.log(market_event(bot, level));
        assert_eq!(reason(outcome), None, "bot event {bot} ({level:?}) dropped");
    };
    for i in 0..500 {
        log(if i % 2 == 0 {
            Level::Debug
        } else {
            Level::Info
        });
    }

    // A slow writer: the backfill drains while the bot keeps logging.
    sink.write_delay_us.store(2_000, Ordering::Release);
    sink.stalled.store(false, Ordering::Release);
    let mut max_fill = 0.0f64;
    while !backfill.is_finished() {
        for i in 0..20 {
            log(if i % 2 == 0 {
                Level::Debug
            } else {
                Level::Info
            });
        }
        let stats = logger.stats();
        max_fill = max_fill.max(stats.fill());
        assert!(!stats.kill_switch_tripped, "the kill switch tripped");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        runtime.block_on(backfill).unwrap().unwrap(),
        BACKFILL as usize
    );
    logger.flush_blocking().unwrap();
    let stats = logger.stats();
    assert_eq!(stats.dropped_total(), 0);
    assert_eq!(stats.kill_switch_trips, 0);
    assert_eq!(stats.ingest_accepted, BACKFILL);
    assert!(max_fill < 0.8, "the bot's queue reached {max_fill:.2}");
    logger.close().unwrap();
    assert_eq!(sink.rows() as u64, BACKFILL + bot);
}
