//! Priority tiers with a stalled writer: DEBUG shed from 80%, the kill switch at
//! 95%, WARNING dropped only when full, CRITICAL never; re-arm by the rule.

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
