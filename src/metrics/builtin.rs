//! The definitions shipped in the binary, and a data dir's own copy of them.
//!
//! A data dir keeps the definitions it was created with in `configs/`
//! ([`Layout::configs`]): `metrics.yaml`, `gates.yaml` and `analysis/*.sql`.
//! So an installed binary works from any directory, and an upgrade of Quiver
//! never changes a dir's metrics under it. The copy is written once, when the
//! dir has no `configs/` (the first start, or after it was deleted to restore
//! the built-in definitions); from then on it is the dir's to edit, and a file
//! missing from it is an error, never an empty catalog.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use crate::gates::BUILTIN_GATES_YAML;
use crate::store::Layout;

/// `configs/metrics.yaml` as shipped.
pub const METRICS_YAML: &str = include_str!("../../configs/metrics.yaml");

/// `sql/analysis/*.sql` as shipped: file name and text.
pub const ANALYSES: &[(&str, &str)] = &[
    (
        "blocked_counterfactual_pnl.sql",
        include_str!("../../sql/analysis/blocked_counterfactual_pnl.sql"),
    ),
    (
        "events_per_day.sql",
        include_str!("../../sql/analysis/events_per_day.sql"),
    ),
    (
        "gate_block_quality.sql",
        include_str!("../../sql/analysis/gate_block_quality.sql"),
    ),
    (
        "gate_explanations.sql",
        include_str!("../../sql/analysis/gate_explanations.sql"),
    ),
    (
        "gate_threshold_sweep.sql",
        include_str!("../../sql/analysis/gate_threshold_sweep.sql"),
    ),
    (
        "market_context_asof.sql",
        include_str!("../../sql/analysis/market_context_asof.sql"),
    ),
    (
        "multi_gate_blocks.sql",
        include_str!("../../sql/analysis/multi_gate_blocks.sql"),
    ),
    (
        "recent_trades.sql",
        include_str!("../../sql/analysis/recent_trades.sql"),
    ),
    (
        "shadow_trade_summary.sql",
        include_str!("../../sql/analysis/shadow_trade_summary.sql"),
    ),
    (
        "signal_outcomes.sql",
        include_str!("../../sql/analysis/signal_outcomes.sql"),
    ),
    (
        "trace_bottlenecks.sql",
        include_str!("../../sql/analysis/trace_bottlenecks.sql"),
    ),
    (
        "trace_step_stats.sql",
        include_str!("../../sql/analysis/trace_step_stats.sql"),
    ),
    (
        "trace_totals.sql",
        include_str!("../../sql/analysis/trace_totals.sql"),
    ),
    (
        "win_rate_by_mode.sql",
        include_str!("../../sql/analysis/win_rate_by_mode.sql"),
    ),
    (
        "win_rate_by_regime.sql",
        include_str!("../../sql/analysis/win_rate_by_regime.sql"),
    ),
];

/// Writes the built-in definitions into the dir's `configs/` if it has none.
/// Returns whether it wrote them. The files are written and fsynced in a
/// temporary directory that then takes the name `configs`, so a crash or a
/// second process seeding at the same time leaves the complete copy or none.
pub fn seed(layout: &Layout) -> io::Result<bool> {
    let target = layout.configs();
    if target.exists() {
        return Ok(false);
    }
    let tmp = crate::store::fsio::temp_path_for(&target);
    let written = (|| {
        let analysis = tmp.join("analysis");
        std::fs::create_dir_all(&analysis)?;
        write_synced(&tmp.join("metrics.yaml"), METRICS_YAML)?;
        write_synced(&tmp.join("gates.yaml"), BUILTIN_GATES_YAML)?;
        for (name, text) in ANALYSES {
            write_synced(&analysis.join(name), text)?;
        }
        sync_dir(&analysis)?;
        sync_dir(&tmp)?;
        std::fs::rename(&tmp, &target)
    })();
    match written {
        Ok(()) => {
            sync_dir(layout.root())?;
            Ok(true)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another process seeded first: its copy stands.
            if target.is_dir() { Ok(false) } else { Err(e) }
        }
    }
}

/// Before data dirs kept their own copy, Quiver read `./configs/` of the
/// working directory. A copy there that differs from what a dir was just
/// seeded with may hold a user's edits: say so, naming both paths.
pub fn warn_about_working_directory_copies(layout: &Layout) {
    for (old, new) in [
        ("configs/metrics.yaml", layout.metrics_file()),
        ("configs/gates.yaml", layout.gates_file()),
    ] {
        let (Ok(old_text), Ok(new_text)) =
            (std::fs::read_to_string(old), std::fs::read_to_string(&new))
        else {
            continue;
        };
        if old_text != new_text {
            tracing::warn!(
                "./{old} differs from the built-in definitions now in {}; Quiver reads the data \
                 dir's copy (or [metrics] paths), not ./configs: copy it there if it holds your edits",
                new.display()
            );
        }
    }
}

fn write_synced(path: &Path, text: &str) -> io::Result<()> {
    let mut file = File::create_new(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped analysis is built in, so a new `sql/analysis/*.sql` cannot
    /// be forgotten here.
    #[test]
    fn every_shipped_analysis_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/analysis");
        let mut shipped: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        shipped.sort();
        let built_in: Vec<String> = ANALYSES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(built_in, shipped);
    }

    #[test]
    fn seeds_once_and_never_over_an_existing_copy() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert!(seed(&layout).unwrap());
        assert_eq!(
            std::fs::read_to_string(layout.metrics_file()).unwrap(),
            METRICS_YAML
        );
        assert_eq!(
            std::fs::read_dir(layout.analysis_dir()).unwrap().count(),
            ANALYSES.len()
        );
        std::fs::write(layout.metrics_file(), "edited").unwrap();
        assert!(!seed(&layout).unwrap());
        assert_eq!(
            std::fs::read_to_string(layout.metrics_file()).unwrap(),
            "edited"
        );
        // Nothing is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["configs"]);
    }
}
