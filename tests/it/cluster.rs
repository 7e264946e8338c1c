//! The lake on a Ballista cluster: a scheduler and two executors, each a
//! `quiver cluster` process on loopback, answer the `.slt` oracle queries
//! (metric views and `explain_gate` among them) as the single node does;
//! views whose sources live only on the ingest server are refused by name;
//! an executor killed mid-query fails the query or it still answers right.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use quiver::cluster::ClusterSession;
use quiver::config::{Config, Overrides};
use sqllogictest::{DefaultColumnType, QueryExpect, Record};

use crate::cli::quiver;
use crate::common::*;
use crate::metrics::{fixture_harness, rows_of};

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the {what} exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the {what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scheduler and executors over `dir`'s lake, killed when dropped.
struct Cluster {
    scheduler: Child,
    executors: Vec<Child>,
    url: String,
    logs: PathBuf,
}

impl Cluster {
    fn start(dir: &Path, executors: usize) -> Cluster {
        let port = free_port();
        let logs = dir.join("cluster-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = |name: &str| Stdio::from(std::fs::File::create(logs.join(name)).unwrap());
        let mut scheduler = quiver()
            .arg("--data-dir")
            .arg(dir)
            .args(["cluster", "scheduler", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--executor-timeout", "8s"])
            .stdout(log("scheduler.out"))
            .stderr(log("scheduler.err"))
            .spawn()
            .unwrap();
        wait_listening(port, "scheduler", &mut scheduler);
        let mut children = Vec::new();
        for i in 0..executors {
            let (flight, grpc) = (free_port(), free_port());
            let mut executor = quiver()
                .arg("--data-dir")
                .arg(dir)
                .args(["cluster", "executor", "--scheduler"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("--flight-port")
                .arg(flight.to_string())
                .arg("--grpc-port")
                .arg(grpc.to_string())
                .args(["--concurrent-tasks", "2"])
                .stdout(log(&format!("executor{i}.out")))
                .stderr(log(&format!("executor{i}.err")))
                .spawn()
                .unwrap();
            wait_listening(flight, "executor", &mut executor);
            children.push(executor);
        }
        // Listening comes just after registering with the scheduler.
        std::thread::sleep(Duration::from_millis(500));
        Cluster {
            scheduler,
            executors: children,
            url: format!("df://127.0.0.1:{port}"),
            logs,
        }
    }

    /// The last lines each process wrote to stderr, for a failure's message.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.logs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "err"))
            .collect();
        names.sort();
        for path in names {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", path.display()));
            for line in &lines[lines.len().saturating_sub(12)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn config_for(dir: &Path) -> Config {
    Config::load(
        None,
        &Overrides {
            data_dir: Some(dir.to_path_buf()),
            listen: None,
        },
    )
    .unwrap()
}

fn slt_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "slt"))
            .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_answers_the_oracle_queries_as_one_node_does() {
    let dir = tempfile::tempdir().unwrap();
    // The fixture, closed cleanly: every row is in the lake, which is all
    // the cluster reads.
    fixture_harness(dir.path()).await.close();
    let cluster = Cluster::start(dir.path(), 2);
    let session = ClusterSession::connect(&config_for(dir.path()), &cluster.url)
        .await
        .unwrap();
    let left_out: Vec<&str> = session.left_out().iter().map(|(n, _)| n.as_str()).collect();
    assert!(left_out.contains(&"metrics.queue_fill"), "{left_out:?}");
    assert!(left_out.contains(&"metrics.model_ece"), "{left_out:?}");

    let (mut answered, mut refused, mut total) = (0, 0, 0);
    for file in slt_files() {
        let records = sqllogictest::parse_file::<DefaultColumnType>(&file).unwrap();
        for record in records {
            let Record::Query {
                loc, sql, expected, ..
            } = record
            else {
                continue;
            };
            let QueryExpect::Results { results, .. } = expected else {
                continue;
            };
            total += 1;
            let named = left_out
                .iter()
                .find(|n| sql.to_ascii_lowercase().contains(&n.to_ascii_lowercase()));
            match session.query(&sql).await {
                Ok(batches) => {
                    let rows = rows_of(&batches);
                    assert!(
                        sqllogictest::default_validator(
                            sqllogictest::default_normalizer,
                            &rows,
                            &results
                        ),
                        "{loc}: {sql}\n  cluster: {rows:?}\n  one node: {results:?}"
                    );
                    answered += 1;
                }
                Err(e) if named.is_some() => {
                    assert!(
                        e.to_string().contains("is not on the cluster"),
                        "{loc}: {e}"
                    );
                    refused += 1;
                }
                Err(e) => panic!("{loc}: {sql}\n  failed on the cluster: {e:#}"),
            }
        }
    }
    eprintln!(
        "cluster: {answered} of {total} oracle queries answered alike, {refused} refused by name"
    );
    // Only the few naming a learning.* or system.* metric are refused.
    assert_eq!(answered + refused, total);
    assert!(
        total >= 40 && refused <= 4,
        "{answered} answered, {refused} refused"
    );

    // explain_gate by hand, and the lake schema by its own name.
    let rows = rows_of(
        &session
            .query(
                "SELECT signal_id, explain_gate(gate, result, value, threshold, direction, mode, \
                 regime, CAST(NULL AS DOUBLE), false)['verdict'] AS verdict \
                 FROM lake.gate_decisions WHERE gate = 'meta_label' ORDER BY signal_id",
            )
            .await
            .unwrap(),
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r[1] == "pending"), "{rows:?}");

    // Writes and hostile SQL get a clear error, not a crash of the cluster.
    for (sql, says) in [
        ("DROP TABLE lake.signals", "DDL not supported"),
        ("SELECT * FROM lake.no_such_table", "no_such_table"),
        ("SELEC 1", "Expected"),
    ] {
        let err = session.query(sql).await.unwrap_err().to_string();
        assert!(err.contains(says), "{sql}: {err}");
    }
    // And the cluster still answers after them.
    let rows = rows_of(
        &session
            .query("SELECT count(*) FROM lake.trades")
            .await
            .unwrap(),
    );
    assert_eq!(rows, vec![vec!["14".to_string()]]);
}

#[test]
fn quiver_sql_submits_to_the_cluster_from_any_directory() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async { fixture_harness(dir.path()).await.close() });
    let cluster = Cluster::start(dir.path(), 1);
    let elsewhere = tempfile::tempdir().unwrap();
    let out = quiver()
        .current_dir(elsewhere.path())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["sql", "--format", "csv", "--cluster", &cluster.url])
        .arg("SELECT mode, count(*) AS n FROM trades WHERE kind = 'CLOSE' GROUP BY mode ORDER BY mode")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "mode,n\nrunner,2\nscalp,5", "{stdout}");

    let refused = quiver()
        .current_dir(elsewhere.path())
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "sql",
            "--cluster",
            &cluster.url,
            "SELECT * FROM metrics.queue_fill",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("metrics.queue_fill is not on the cluster")
            && stderr.contains("system.queue lives on the ingest server"),
        "{stderr}"
    );
    // At the limit: a query that cannot finish in time is given up on, saying so.
    let late = quiver()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["sql", "--cluster", &cluster.url, "--cluster-timeout", "1ms"])
        .arg("SELECT count(*) FROM gate_decisions")
        .output()
        .unwrap();
    assert!(!late.status.success());
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(
        stderr.contains("did not finish on the cluster within 1ms"),
        "{stderr}"
    );

    let bad_url = quiver()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["sql", "--cluster", "grpc://127.0.0.1:1", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!bad_url.status.success());
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("df://HOST:PORT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_query_never_gives_a_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let logger = quiver::ingest::LoggerConfig {
        queue_capacity: 1_000_000,
        ..fast_logger_config()
    };
    let h = Harness::open(small_store_config(dir.path()), logger);
    for e in sim_events(5, 3000) {
        assert!(h.logger.log(e).is_accepted());
    }
    h.logger.flush().await.unwrap();
    assert!(h.engine.wait_visible(Duration::from_secs(60)).await);
    // A query of several stages (a shuffle join and an aggregate) that takes
    // long enough on this build to be interrupted.
    let sql = "SELECT a.symbol, count(*) AS n FROM events.gate_decisions a \
               JOIN events.gate_decisions b ON a.gate = b.gate AND a.symbol = b.symbol \
               GROUP BY a.symbol ORDER BY a.symbol";
    let oracle = rows_of(&h.query(sql).await);
    h.close();
    let mut cluster = Cluster::start(dir.path(), 2);
    let session = ClusterSession::connect(&config_for(dir.path()), &cluster.url)
        .await
        .unwrap();
    // Once on a whole cluster: the same answer.
    assert_eq!(rows_of(&session.query(sql).await.unwrap()), oracle);

    // The client's limit bounds what Ballista cannot recover from.
    let session = session.with_timeout(Duration::from_secs(60));
    let query = tokio::spawn(async move { session.query(sql).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = &mut cluster.executors[0];
    victim.kill().unwrap();
    victim.wait().unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(120), query)
        .await
        .expect("the query neither answered nor failed within 2 minutes")
        .unwrap();
    match outcome {
        Ok(batches) => assert_eq!(rows_of(&batches), oracle, "a wrong answer"),
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains("running the query on the cluster")
                    || message.contains("did not finish on the cluster within 1m"),
                "{message}\n{}",
                cluster.log_tails()
            );
            eprintln!(
                "the query failed clearly: {message}\n{}",
                cluster.log_tails()
            );
        }
    }
}
