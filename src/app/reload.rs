//! Hot reload of `metrics.yaml`, `sql/analysis/` and the explainer's
//! `gates.yaml` while a server runs.
//!
//! Every `reload_interval` the files are read and compared with what is live.
//! A change is acted on once it has settled: the same text in two polls in a
//! row, so an edit caught half-written (an editor or `echo >` writes in
//! pieces) is not loaded; an edit goes live within two intervals. A changed set that compiles replaces the
//! `metrics` and `analysis` schemas and each changed file is recorded in the
//! registry's config history, with the text that was loaded (the files are
//! read again after loading; if they moved meanwhile, the load waits for the
//! next poll). One that does not compile is refused with its error, and the
//! previous definitions stay live. Polling (rather than file-system events)
//! sees edits made by any editor, on any file system, including a directory
//! that appears later.
//!
//! What is live, from which file, and the last refused edit with its error are
//! kept in a [`DefinitionsStatus`], which `system.definitions` and the health
//! monitor read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest;
use tokio::task::JoinHandle;

use crate::event::Ts;
use crate::metrics::{DefinitionPaths, Definitions};
use crate::query::QueryEngine;
use crate::store::Registry;

/// A definition file as it was loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// One live definition: a metric, an alert rule, an analysis or a gate.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinedObject {
    /// `metric`, `alert`, `analysis` or `gate`.
    pub kind: &'static str,
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
}

/// An edit that did not compile; the previous definitions stayed live.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub at_us: i64,
    pub error: String,
    /// The files whose text differed from the live ones.
    pub files: Vec<PathBuf>,
}

/// What [`DefinitionsStatus`] holds at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DefinitionsState {
    pub files: Vec<LoadedFile>,
    pub objects: Vec<DefinedObject>,
    /// When the live set was loaded.
    pub loaded_at_us: Option<i64>,
    /// Sets loaded (the first load included) and edits refused.
    pub loads: u64,
    pub refusals: u64,
    pub last_refused: Option<Refusal>,
    /// The files on disk are still the last refused edit (it is not live).
    pub refused_pending: bool,
}

/// The live definitions' record, shared by the reloader and its readers.
#[derive(Debug, Default)]
pub struct DefinitionsStatus {
    state: Mutex<DefinitionsState>,
}

impl DefinitionsStatus {
    pub fn state(&self) -> DefinitionsState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn loaded(&self, files: &Snapshot, definitions: &Definitions, paths: &DefinitionPaths) {
        let Ok(mut s) = self.state.lock() else { return };
        s.files = files
            .files
            .iter()
            .map(|(path, text)| LoadedFile {
                path: path.clone(),
                sha256: hex::encode(sha2::Sha256::digest(text.as_bytes())),
                bytes: text.len() as u64,
            })
            .collect();
        s.objects = objects(definitions, paths);
        s.loaded_at_us = Some(Ts::now().0);
        s.loads += 1;
        s.refused_pending = false;
    }

    fn reverted(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.refused_pending = false;
        }
    }

    fn refused(&self, live: &Snapshot, edit: &Snapshot, error: String) {
        let Ok(mut s) = self.state.lock() else { return };
        let files = edit
            .files
            .iter()
            .filter(|f| !live.files.contains(f))
            .map(|(p, _)| p.clone())
            .chain(
                // A file that went away is part of the edit too.
                live.files
                    .iter()
                    .filter(|(p, _)| !edit.files.iter().any(|(q, _)| q == p))
                    .map(|(p, _)| p.clone()),
            )
            .collect();
        s.refusals += 1;
        s.last_refused = Some(Refusal {
            at_us: Ts::now().0,
            error,
            files,
        });
        s.refused_pending = true;
    }
}

/// Every live definition and the file it came from.
fn objects(definitions: &Definitions, paths: &DefinitionPaths) -> Vec<DefinedObject> {
    let metrics_file = &definitions.metrics.path;
    let mut out: Vec<DefinedObject> = definitions
        .metrics
        .metrics
        .iter()
        .map(|m| DefinedObject {
            kind: "metric",
            name: m.name.as_str().to_string(),
            path: metrics_file.clone(),
        })
        .collect();
    out.extend(definitions.metrics.alerts.iter().map(|a| DefinedObject {
        kind: "alert",
        name: a.name.clone(),
        path: metrics_file.clone(),
    }));
    out.extend(definitions.analyses.iter().map(|a| DefinedObject {
        kind: "analysis",
        name: a.name.clone(),
        path: a.path.clone(),
    }));
    if let Some(gates) = &definitions.gates {
        out.extend(gates.gates.iter().map(|g| DefinedObject {
            kind: "gate",
            name: g.gate.as_str().to_string(),
            path: paths.gates_file.clone(),
        }));
    }
    out
}

/// Loads the definitions once, as a local session does, recording the
/// outcome in `status` (the same record a server's reloader keeps).
pub fn load_once(
    engine: &QueryEngine,
    paths: &DefinitionPaths,
    status: &DefinitionsStatus,
) -> anyhow::Result<()> {
    paths.prepare()?;
    let files = snapshot(paths);
    let result = Definitions::load(paths)
        .map_err(anyhow::Error::new)
        .and_then(|d| {
            engine
                .install_definitions(d)
                .map_err(anyhow::Error::new)
                .map(|loaded| status.loaded(&files, &loaded.definitions, paths))
        });
    if let Err(e) = &result {
        status.refused(&Snapshot::default(), &files, format!("{e:#}"));
    }
    result
}

/// The text of every definition file, by path; what a reload compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Snapshot {
    files: Vec<(PathBuf, String)>,
}

fn snapshot(paths: &DefinitionPaths) -> Snapshot {
    let mut files = Vec::new();
    for file in [&paths.metrics_file, &paths.gates_file] {
        if let Ok(text) = std::fs::read_to_string(file) {
            files.push((file.clone(), text));
        }
    }
    if let Ok(entries) = std::fs::read_dir(&paths.analysis_dir) {
        let mut sql: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        sql.sort();
        for path in sql {
            // An unreadable file still counts as a change; loading reports it.
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            files.push((path, text));
        }
    }
    Snapshot { files }
}

/// Loads and installs the definitions whose text is `files`; on success
/// records each file in the registry's config history (which keeps a file's
/// content once per change). `Ok(None)`: the files changed while they were
/// read (checked when `stable` is asked for), nothing was installed.
fn load_and_record(
    engine: &QueryEngine,
    paths: &DefinitionPaths,
    data_dir: &Path,
    files: &Snapshot,
    reason: &str,
    stable: bool,
    status: &DefinitionsStatus,
) -> anyhow::Result<Option<String>> {
    let definitions = Definitions::load(paths)?;
    // What was loaded was read between the two snapshots; equal snapshots
    // mean it is the text about to be recorded.
    if stable && snapshot(paths) != *files {
        return Ok(None);
    }
    let loaded = engine.install_definitions(definitions)?;
    status.loaded(files, &loaded.definitions, paths);
    // The definitions are live now; failing to record them is worth a
    // warning, not a refusal.
    match Registry::open(data_dir) {
        Ok(mut registry) => {
            for (path, text) in &files.files {
                // Files of the dir's own copy go by their place in the dir
                // (`configs/metrics.yaml`), whatever the spelling of --data-dir.
                let name = std::fs::canonicalize(path)
                    .ok()
                    .and_then(|p| p.strip_prefix(data_dir).ok().map(Path::to_path_buf))
                    .unwrap_or_else(|| path.clone());
                if let Err(e) = registry.record_config(&name.display().to_string(), text, reason) {
                    tracing::warn!(file = %path.display(), "live but not recorded in the config history: {e}");
                }
            }
        }
        Err(e) => {
            tracing::warn!("definitions are live but not recorded in the config history: {e}")
        }
    }
    Ok(Some(format!(
        "{} metrics, {} alert rules, {} analyses",
        loaded.metrics.len(),
        loaded.definitions.metrics.alerts.len(),
        loaded.definitions.analyses.len()
    )))
}

/// Loads the definitions once (an error fails the start) and returns the
/// task that reloads them on every edit.
pub async fn start(
    engine: QueryEngine,
    paths: DefinitionPaths,
    data_dir: PathBuf,
    interval: Duration,
    status: Arc<DefinitionsStatus>,
) -> anyhow::Result<JoinHandle<()>> {
    paths.prepare()?;
    let (first, summary) = tokio::task::spawn_blocking({
        let (engine, paths, data_dir, status) = (
            engine.clone(),
            paths.clone(),
            data_dir.clone(),
            status.clone(),
        );
        move || -> anyhow::Result<(Snapshot, String)> {
            // At start the files are loaded as they are (a server must come
            // up), retried for up to a second while they change under the
            // load; after that the last text read is loaded and recorded.
            const ATTEMPTS: usize = 20;
            for attempt in 1..=ATTEMPTS {
                let first = snapshot(&paths);
                let stable = attempt < ATTEMPTS;
                if let Some(summary) = load_and_record(
                    &engine,
                    &paths,
                    &data_dir,
                    &first,
                    "loaded at start",
                    stable,
                    &status,
                )? {
                    return Ok((first, summary));
                }
                if attempt == 1 {
                    tracing::warn!("the definition files changed while loading; retrying");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            unreachable!("the last attempt does not check for changes")
        }
    })
    .await??;
    tracing::info!(
        metrics = %paths.metrics_file.display(),
        analyses = %paths.analysis_dir.display(),
        "definitions loaded: {summary}"
    );
    Ok(tokio::spawn(async move {
        let mut live = first;
        // The last snapshot refused, so a broken edit is reported once.
        let mut refused: Option<Snapshot> = None;
        // The previous poll's snapshot: a change is loaded once it settles.
        let mut previous: Option<Snapshot> = None;
        // Polls in a row that saw a change still moving (reported once).
        let mut unsettled = 0usize;
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let paths2 = paths.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || {
                // A deleted copy is written again (and recorded below), never
                // silently replaced by the built-ins.
                if let Err(e) = paths2.prepare() {
                    tracing::warn!("{e}");
                }
                snapshot(&paths2)
            })
            .await
            else {
                continue;
            };
            let settled = previous.as_ref() == Some(&now);
            previous = Some(now.clone());
            if now == live && refused.take().is_some() {
                // The refused edit was undone: what is on disk is live again.
                status.reverted();
            }
            if now == live || refused.as_ref() == Some(&now) {
                unsettled = 0;
                continue;
            }
            if !settled {
                unsettled += 1;
                if unsettled == 10 {
                    tracing::info!(
                        "a definition file changes on every poll; it is loaded once it stops"
                    );
                }
                continue;
            }
            unsettled = 0;
            let result = tokio::task::spawn_blocking({
                let (engine, paths, data_dir, now, status) = (
                    engine.clone(),
                    paths.clone(),
                    data_dir.clone(),
                    now.clone(),
                    status.clone(),
                );
                move || {
                    load_and_record(
                        &engine,
                        &paths,
                        &data_dir,
                        &now,
                        "hot reload",
                        true,
                        &status,
                    )
                }
            })
            .await;
            match result {
                Ok(Ok(Some(summary))) => {
                    tracing::info!("definitions reloaded: {summary}");
                    live = now;
                    refused = None;
                }
                Ok(Ok(None)) => {} // changed while loading: the next poll sees it

                Ok(Err(e)) => {
                    tracing::error!("definitions edit refused; the previous ones stay live: {e:#}");
                    status.refused(&live, &now, format!("{e:#}"));
                    refused = Some(now);
                }
                Err(e) => tracing::error!("definitions reload failed: {e}"),
            }
        }
    }))
}
