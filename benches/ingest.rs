//! Ingest benchmarks, run on demand (never in CI):
//!
//! ```text
//! cargo bench --bench ingest -- latency     # log() vs tokio mpsc try_send
//! cargo bench --bench ingest -- ack         # acknowledged (WAL-fsynced) ingest vs IPC+fdatasync
//! cargo bench --bench ingest -- sustained   # 60 s end to end vs ArrowWriter / DuckDB appender alone
//! cargo bench --bench ingest -- freshness   # log() -> visible in SQL, p99
//! cargo bench --bench ingest                # all of them
//! ```
//!
//! Every figure is printed beside its baseline, measured in the same process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use quiver::event::*;
use quiver::ingest::{Logger, LoggerConfig};
use quiver::query::{QueryConfig, QueryEngine};
use quiver::store::{Store, StoreConfig};

fn gate_event(i: u64, ts: Ts) -> Event {
    Event::GateDecision(GateDecision {
        header: EventHeader {
            event_id: format!("0b5e{i:012x}-7c1d-4f0e-9a4b-5d2e8f6a1c3b"),
            ts,
            symbol: ["BTC-USD", "ETH-USD", "SOL-USD", "AVAX-USD"][(i % 4) as usize].into(),
            level: Level::Info,
        },
        decision_id: format!("d-{i:016x}"),
        signal_id: format!("s-{:016x}", i / 6),
        trace_id: format!("t-{:016x}", i / 6),
        gate: Gate::ALL[(i % 6) as usize],
        result: if i.is_multiple_of(3) {
            GateResult::Fail
        } else {
            GateResult::Pass
        },
        value: 0.5 + (i % 100) as f64 / 1000.0,
        threshold: 0.55,
        direction: Direction::Min,
        mode: Mode::Scalp,
        regime: Regime::Trend,
        inputs: "{\"win_probability\":0.5731}".into(),
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut ns: Vec<u64>) -> (u64, u64, u64) {
    ns.sort_unstable();
    let (p50, p99, p999) = (
        percentile(&ns, 0.5),
        percentile(&ns, 0.99),
        percentile(&ns, 0.999),
    );
    println!(
        "  {name:<28} n={:<8} p50 {p50:>6} ns  p99 {p99:>7} ns  p99.9 {p999:>8} ns",
        ns.len()
    );
    (p50, p99, p999)
}

fn open(dir: &std::path::Path, logger: LoggerConfig) -> (Arc<Store>, Logger) {
    let (store, sink) = Store::open(StoreConfig::new(dir)).unwrap();
    (Arc::new(store), Logger::start(logger, sink).unwrap())
}

fn close(store: Arc<Store>, logger: Logger) {
    logger.close().unwrap();
    drop(logger);
    if let Ok(s) = Arc::try_unwrap(store) {
        s.close().unwrap();
    }
}

/// log() latency with the writer busy, burst and paced, beside try_send.
fn latency() {
    println!("log() latency (writer busy on the other core), vs tokio mpsc try_send");
    let dir = tempfile::tempdir().unwrap();
    let (store, logger) = open(dir.path(), LoggerConfig::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(10_000);
    rt.spawn(async move { while rx.recv().await.is_some() {} });

    for (regime, bursts, per_burst, pause) in [
        ("burst", 200usize, 5_000usize, Duration::from_millis(30)),
        ("paced 1/ms", 10_000, 1, Duration::from_millis(1)),
    ] {
        let mut ours = Vec::with_capacity(bursts * per_burst);
        let mut base = Vec::with_capacity(bursts * per_burst);
        let mut i = 0u64;
        for _ in 0..bursts {
            let events: Vec<Event> = (0..per_burst * 2)
                .map(|k| gate_event(i + k as u64, Ts::now()))
                .collect();
            i += events.len() as u64;
            let mut it = events.into_iter();
            for _ in 0..per_burst {
                let a = it.next().unwrap();
                let b = it.next().unwrap();
                let t = Instant::now();
                let _ = std::hint::black_box(logger.log(a));
                ours.push(t.elapsed().as_nanos() as u64);
                let t = Instant::now();
                let _ = std::hint::black_box(tx.try_send(b));
                base.push(t.elapsed().as_nanos() as u64);
            }
            std::thread::sleep(pause);
        }
        println!(" {regime}:");
        let (o50, o99, o999) = report("Logger::log", ours);
        let (b50, b99, b999) = report("mpsc::Sender::try_send", base);
        println!(
            "  ratio to baseline: p50 {:.2}  p99 {:.2}  p99.9 {:.2}",
            o50 as f64 / b50.max(1) as f64,
            o99 as f64 / b99.max(1) as f64,
            o999 as f64 / b999.max(1) as f64
        );
    }
    let st = logger.stats();
    println!(
        "  (accepted {}, dropped {})",
        st.accepted.total(),
        st.dropped_total()
    );
    close(store, logger);
}

/// Acknowledged ingest: events/s made durable in the WAL, over 10 s bursts.
fn ack() {
    println!("acknowledged ingest (WAL fsync) for 10 s, vs Arrow IPC append + fdatasync per batch");
    let dir = tempfile::tempdir().unwrap();
    let config = LoggerConfig {
        queue_capacity: 200_000,
        ..LoggerConfig::default()
    };
    let (store, logger) = open(dir.path(), config);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let logger = logger.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            let ts = Ts::now();
            while !stop.load(Ordering::Relaxed) {
                if logger.log(gate_event(i, ts)).is_accepted() {
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            i
        })
    };
    let started = Instant::now();
    let before = logger.stats().rows_written;
    std::thread::sleep(Duration::from_secs(10));
    let written = logger.stats().rows_written - before;
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let produced = producer.join().unwrap();
    println!(
        "  Quiver acknowledged: {:.0} events/s ({written} in {secs:.1}s; {produced} produced)",
        written as f64 / secs
    );
    close(store, logger);

    // Baseline: the same batches into one IPC stream file, fdatasync per batch.
    let batch = batch_of(5_000);
    let path = dir.path().join("baseline.arrows");
    let file = File::create(&path).unwrap();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(file, &batch.schema()).unwrap();
    let started = Instant::now();
    let mut rows = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let fresh = batch_of(5_000); // building the batch is part of the work
        writer.write(&fresh).unwrap();
        writer.get_mut().flush().unwrap();
        writer.get_ref().sync_data().unwrap();
        rows += fresh.num_rows();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  baseline IPC+fdatasync: {:.0} events/s (batch building included)",
        rows as f64 / secs
    );
}

fn batch_of(n: usize) -> RecordBatch {
    let ts = Ts::now();
    let rows: Vec<GateDecision> = (0..n as u64)
        .map(|i| match gate_event(i, ts) {
            Event::GateDecision(g) => g,
            _ => unreachable!(),
        })
        .collect();
    GateDecision::to_batch(&rows).unwrap()
}

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// 60 s end to end with the hot store and lake keeping up.
fn sustained() {
    let secs_total = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60u64);
    println!(
        "sustained end to end for {secs_total} s (WAL + hot store + lake), vs ArrowWriter alone and DuckDB appender alone"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = LoggerConfig {
        queue_capacity: 200_000,
        ..LoggerConfig::default()
    };
    let (store, logger) = open(dir.path(), config);
    let stop = Arc::new(AtomicBool::new(false));
    let max_lag = Arc::new(AtomicU64::new(0));
    let producer = {
        let logger = logger.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ts = Ts::now();
                for _ in 0..1000 {
                    if logger.log(gate_event(i, ts)).is_accepted() {
                        i += 1;
                    }
                }
                while logger.stats().queue_len > 100_000 {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        })
    };
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let before = logger.stats().rows_written;
    while started.elapsed() < Duration::from_secs(secs_total) {
        std::thread::sleep(Duration::from_millis(500));
        let s = store.stats();
        max_lag.fetch_max(s.wal_seq.saturating_sub(s.hot_seq), Ordering::Relaxed);
    }
    let written = logger.stats().rows_written - before;
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    let cpu = cpu_seconds() - cpu0;
    let s = store.stats();
    println!(
        "  Quiver: {:.0} events/s, {:.2} CPU-us/event, max hot lag {} batches, lake pending {} rows at the end, peak RSS {:.0} MiB",
        written as f64 / secs,
        cpu * 1e6 / written.max(1) as f64,
        max_lag.load(Ordering::Relaxed),
        s.lake_pending_rows,
        peak_rss_mib()
    );
    close(store, logger);

    // Baselines on the same batches.
    let batches: Vec<RecordBatch> = (0..40).map(|_| batch_of(5_000)).collect();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(
            parquet::basic::ZstdLevel::try_new(3).unwrap(),
        ))
        .build();
    let t = Instant::now();
    let file = File::create(dir.path().join("baseline.parquet")).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    println!(
        "  baseline parquet ArrowWriter (zstd 3): {:.0} rows/s",
        rows as f64 / t.elapsed().as_secs_f64()
    );

    let conn = duckdb::Connection::open(dir.path().join("baseline.duckdb")).unwrap();
    conn.execute_batch("SET checkpoint_threshold = '4GB'")
        .unwrap();
    let cols: Vec<String> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| {
            format!(
                "\"{}\" {}",
                f.name(),
                if matches!(f.data_type(), arrow::datatypes::DataType::Utf8) {
                    "VARCHAR"
                } else if matches!(f.data_type(), arrow::datatypes::DataType::Float64) {
                    "DOUBLE"
                } else if matches!(f.data_type(), arrow::datatypes::DataType::Int32) {
                    "INTEGER"
                } else {
                    "TIMESTAMPTZ"
                }
            )
        })
        .collect();
    conn.execute_batch(&format!("CREATE TABLE g ({})", cols.join(", ")))
        .unwrap();
    let t = Instant::now();
    for b in &batches {
        conn.execute_batch("BEGIN").unwrap();
        let mut app = conn.appender("g").unwrap();
        app.append_record_batch(b.clone()).unwrap();
        app.flush().unwrap();
        drop(app);
        conn.execute_batch("COMMIT").unwrap();
    }
    println!(
        "  baseline DuckDB appender (checkpoints deferred): {:.0} rows/s",
        rows as f64 / t.elapsed().as_secs_f64()
    );
}

/// Time from log() to visible in SQL.
fn freshness() {
    println!("freshness: log() -> visible in events.* (flush interval 1 s)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rates: Vec<u64> = std::env::var("BENCH_FRESH_RATES")
        .unwrap_or_else(|_| "500,500000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    for rate in rates {
        let label = format!("{rate} events/s");
        let dir = tempfile::tempdir().unwrap();
        let config = LoggerConfig {
            queue_capacity: 200_000,
            ..LoggerConfig::default()
        };
        let (store, logger) = open(dir.path(), config);
        let engine =
            QueryEngine::new(store.clone(), Some(logger.clone()), &QueryConfig::default()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let background = {
            let logger = logger.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 1u64 << 40;
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                    while i - (1u64 << 40) < due {
                        let _ = logger.log(gate_event(i, Ts::now()));
                        i += 1;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let mut samples = Vec::new();
        for k in 0..30u64 {
            // Probes are CRITICAL so the tiers never shed them at high rates.
            let mut event = gate_event(k, Ts::now());
            if let Event::GateDecision(g) = &mut event {
                g.header.level = Level::Critical;
            }
            let id = event.header().event_id.clone();
            let t = Instant::now();
            assert!(logger.log(event).is_accepted());
            let deadline = Duration::from_secs(30);
            while t.elapsed() < deadline {
                let sql = format!("SELECT count(*) FROM gate_decisions WHERE event_id = '{id}'");
                let n = rt.block_on(engine.query(&sql)).unwrap();
                let n = arrow::compute::cast(n[0].column(0), &arrow::datatypes::DataType::Int64)
                    .unwrap();
                use arrow::array::AsArray;
                if n.as_primitive::<arrow::datatypes::Int64Type>().value(0) > 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            samples.push(t.elapsed().as_micros() as u64);
            std::thread::sleep(Duration::from_millis(137));
        }
        stop.store(true, Ordering::Relaxed);
        background.join().unwrap();
        samples.sort_unstable();
        let behind = logger.stats().dropped_total();
        println!(
            "  {label:<18} p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms (target p99 <= 1100 ms; 30 s = not seen; {behind} background events shed)",
            percentile(&samples, 0.5) as f64 / 1e3,
            percentile(&samples, 0.99) as f64 / 1e3,
            *samples.last().unwrap() as f64 / 1e3
        );
        drop(engine);
        close(store, logger);
    }
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    let want = |name: &str| all || which.iter().any(|w| w == name);
    if want("latency") {
        latency();
    }
    if want("ack") {
        ack();
    }
    if want("sustained") {
        sustained();
    }
    if want("freshness") {
        freshness();
    }
    let _ = std::io::stdout().flush();
}
