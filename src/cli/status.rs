//! `quiver status`: the health checks and the live definitions, through the
//! server that holds the data dir (or `--server URL`), or on a closed data
//! dir by opening it (which replays its WAL, as any local command does).
//!
//! Exit code 0 whatever the state, unless `--check`: then 0 ok, 1 warning,
//! 2 critical (the monitoring-plugin convention), so a cron job or a probe
//! can act on it.

use crate::app::health::{self, State, StatusReport};
use crate::app::{Load, Session};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON for scripts: {state, server, sampled_at, checks, definitions}.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 on warning and 2 on critical.
    #[arg(long)]
    pub check: bool,
    /// Ask this server (grpc://HOST:PORT) instead of the data dir's.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// `quiver status --check` found the pipeline unhealthy: the exit code to
/// leave with (1 warning, 2 critical), the report already printed.
#[derive(Debug, thiserror::Error)]
#[error("status {0}")]
pub struct Unhealthy(pub u8);

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let mut session = Session::open(&config, args.server.as_deref(), Load::Skip).await?;
    let report = async {
        health::attach_local(&config, &session)?;
        health::status(&mut session).await
    }
    .await;
    session.close().await?;
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&config, &report);
    }
    match report.state() {
        State::Ok => Ok(()),
        _ if !args.check => Ok(()),
        State::Warning => Err(Unhealthy(1).into()),
        State::Critical => Err(Unhealthy(2).into()),
    }
}

fn value(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else {
        return "-".into();
    };
    match unit {
        "ratio" => format!("{:.1}%", v * 100.0),
        "bytes" => {
            let gib = v / f64::from(1u32 << 30);
            if gib >= 1.0 {
                format!("{gib:.1} GiB")
            } else {
                format!("{:.1} MiB", v / f64::from(1u32 << 20))
            }
        }
        "s" => format!("{v:.0} s"),
        "per_s" => format!("{v:.2}/s"),
        "bool" => (if v > 0.0 { "yes" } else { "no" }).into(),
        _ => format!("{v}"),
    }
}

/// `2026-12-02T18:46:57.759126Z` as `2026-12-02T18:46:57Z`.
fn to_seconds(ts: &str) -> String {
    match ts.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => ts.to_string(),
    }
}

fn print_report(config: &Config, r: &StatusReport) {
    let through = match &r.server {
        Some(url) => format!("through the server at {url}"),
        None => "data dir closed; opened for this report".to_string(),
    };
    println!(
        "{}: {} ({through}, sampled {})",
        config.data_dir.display(),
        r.state.to_ascii_uppercase(),
        r.sampled_at.as_deref().map_or("-".into(), to_seconds)
    );
    let width = r.checks.iter().map(|c| c.check.len()).max().unwrap_or(5);
    println!(
        "  {:width$}  {:8}  {:>10}  {:20}  DETAIL",
        "CHECK", "STATE", "VALUE", "SINCE"
    );
    for c in &r.checks {
        println!(
            "  {:width$}  {:8}  {:>10}  {:20}  {}",
            c.check,
            c.state,
            value(c.value, &c.unit),
            to_seconds(&c.since),
            c.detail
        );
    }
    let count = |kind: &str| r.definitions.iter().filter(|d| d.kind == kind).count();
    let mut files: Vec<&str> = r
        .definitions
        .iter()
        .filter(|d| d.kind != "file")
        .map(|d| d.path.as_str())
        .collect();
    files.sort_unstable();
    files.dedup();
    println!(
        "definitions: {} metrics, {} alert rules, {} analyses, {} gates from {} files{}",
        count("metric"),
        count("alert"),
        count("analysis"),
        count("gate"),
        files.len(),
        r.definitions
            .iter()
            .find_map(|d| d.loaded_at.as_deref())
            .map(|at| format!(", loaded {at}"))
            .unwrap_or_default()
    );
    let mut refused: Vec<(&str, &str, &str)> = r
        .definitions
        .iter()
        .filter_map(|d| {
            Some((
                d.path.as_str(),
                d.refused_at.as_deref()?,
                d.refused_error.as_deref()?,
            ))
        })
        .collect();
    refused.sort_unstable();
    refused.dedup();
    for (path, at, error) in refused {
        println!("  edit of {path} refused at {at} (the previous definitions stay live): {error}");
    }
}
