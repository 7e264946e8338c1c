//! `quiver sql "SQL"`: one read-only query, against a data dir or a server.
//!
//! With `--server URL` the query goes to that Flight SQL server. Without it,
//! Quiver opens the data dir itself; if a running `serve` or `demo` holds the
//! dir, the query goes through that process's server instead (it advertises
//! its URL in the data dir).

use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;

use super::output::{self, Format};
use crate::app::{Load, Session};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The query (read-only: no DDL, DML or statements).
    pub sql: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Query a running Flight SQL server: grpc://HOST:PORT or grpc+tls://HOST:PORT.
    /// Credentials come from the config's [flight] username and password.
    #[arg(long, value_name = "URL", conflicts_with = "cluster")]
    pub server: Option<String>,
    /// Run on a Ballista cluster: df://HOST:PORT, its scheduler. The cluster
    /// reads the lake only (see `quiver cluster --help`); metrics and
    /// analyses come from this data dir's definitions.
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// With --cluster: give up on the query after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub cluster_timeout: std::time::Duration,
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    if let Some(url) = &args.cluster {
        let session = crate::cluster::ClusterSession::connect(&config, url)
            .await?
            .with_timeout(args.cluster_timeout);
        return output::print(&session.query(&args.sql).await?, args.format);
    }
    let mut results = run_queries(&config, args.server.as_deref(), &[args.sql.as_str()]).await?;
    output::print(&results.remove(0), args.format)
}

/// Runs read-only queries against `server`, or the data dir, or (when a
/// running `serve` or `demo` holds the data dir) that process's server.
pub async fn run_queries(
    config: &Config,
    server: Option<&str>,
    sqls: &[&str],
) -> anyhow::Result<Vec<Vec<RecordBatch>>> {
    let bound: Vec<(&str, Vec<ScalarValue>)> = sqls.iter().map(|s| (*s, Vec::new())).collect();
    run_bound(config, server, &bound).await
}

/// [`run_queries`] with each query's parameters (`$1`, ...) bound to values.
pub async fn run_bound(
    config: &Config,
    server: Option<&str>,
    sqls: &[(&str, Vec<ScalarValue>)],
) -> anyhow::Result<Vec<Vec<RecordBatch>>> {
    // Compiling the definitions takes a moment (~170 ms in a release build);
    // a query that cannot name the metrics or analysis schemas goes without,
    // and one that names them fails if they do not load (saying why, rather
    // than that the table does not exist).
    let mentions = |names: &[&str]| {
        sqls.iter().any(|(s, _)| {
            let s = s.to_ascii_lowercase();
            names.iter().any(|schema| s.contains(schema))
        })
    };
    let definitions = if mentions(&["metrics.", "analysis.", "metrics\".", "analysis\"."]) {
        Load::Required
    } else if mentions(&["metrics", "analysis", "information_schema"]) {
        Load::BestEffort
    } else {
        Load::Skip
    };
    let mut session = Session::open(config, server, definitions).await?;
    let mut results = Vec::with_capacity(sqls.len());
    for (sql, params) in sqls {
        match session.query_with(sql, params.clone()).await {
            Ok(batches) => results.push(batches),
            Err(e) => {
                session.close().await?;
                return Err(e);
            }
        }
    }
    session.close().await?;
    Ok(results)
}
