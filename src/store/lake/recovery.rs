//! Opening the lake: the log read, every file on disk accounted for (the rules
//! are in the [module docs](super)), and `quiver repair lake`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;

use super::log::{Change, CommitOp, LakeLog, LakeState, Tombstone};
use super::parquet::{Footer, check_footer, footer};
use super::partition::{decode_symbol, parse_part_name};
use super::{LakeError, LakeFile, LakeShared, Quarantined, io_err};
use crate::event::{Table, Ts};
use crate::store::fsio::{self, FileSystem, TMP_SUFFIX};
use crate::store::seq::SeqRanges;

/// The legacy commit record of lakes before the commit log.
const LEGACY_STATE: &str = "_state.json";

/// A Parquet file found on disk.
#[derive(Debug, Clone)]
struct DiskFile {
    path: PathBuf,
    table: Table,
    date: NaiveDate,
    symbol: String,
    from: u64,
    to: u64,
}

impl DiskFile {
    fn as_lake_file(&self, rows: u64, bytes: u64) -> LakeFile {
        LakeFile {
            table: self.table,
            date: self.date,
            symbol: self.symbol.clone(),
            path: self.path.clone(),
            bytes,
            rows,
            seq_from: self.from,
            seq_to: self.to,
        }
    }
}

#[derive(Debug, Default)]
struct Disk {
    parts: Vec<DiskFile>,
    temps: Vec<PathBuf>,
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, LakeError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map_err(io_err(dir))?.is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn value_of<'a>(dir: &'a Path, prefix: &str) -> Option<&'a str> {
    dir.file_name()?.to_str()?.strip_prefix(prefix)
}

/// Every part file and temp file under the lake's partition directories.
fn scan_disk(root: &Path) -> Result<Disk, LakeError> {
    let mut disk = Disk::default();
    for table in Table::ALL {
        for date_dir in subdirs(&root.join(table.name()))? {
            let Some(date) = value_of(&date_dir, "date=")
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            else {
                continue;
            };
            for symbol_dir in subdirs(&date_dir)? {
                let Some(symbol) = value_of(&symbol_dir, "symbol=").and_then(decode_symbol) else {
                    continue;
                };
                for entry in fs::read_dir(&symbol_dir).map_err(io_err(&symbol_dir))? {
                    let path = entry.map_err(io_err(&symbol_dir))?.path();
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if name.ends_with(TMP_SUFFIX) {
                        disk.temps.push(path);
                    } else if let Some((from, to)) = parse_part_name(&name) {
                        disk.parts.push(DiskFile {
                            path,
                            table: *table,
                            date,
                            symbol: symbol.clone(),
                            from,
                            to,
                        });
                    }
                }
            }
        }
    }
    disk.parts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(disk)
}

/// Moves a file out of the lake into `quarantine_root`, keeping its relative path.
pub(crate) fn quarantine_file(
    fs: &dyn FileSystem,
    root: &Path,
    quarantine_root: &Path,
    shared: &LakeShared,
    path: &Path,
    reason: String,
) -> Result<PathBuf, LakeError> {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let mut target = quarantine_root.join(relative);
    // Never over an earlier quarantined file of the same name.
    let mut n = 1;
    while target.exists() {
        target = quarantine_root.join(format!("{}.{n}", relative.display()));
        n += 1;
    }
    let parent = target.parent().unwrap_or(quarantine_root);
    fsio::create_dir_durable(fs, parent).map_err(io_err(parent))?;
    fs.rename(path, &target).map_err(io_err(path))?;
    fs.sync_dir(parent).map_err(io_err(parent))?;
    if let Some(from_dir) = path.parent() {
        fs.sync_dir(from_dir).map_err(io_err(from_dir))?;
    }
    tracing::error!(file = %path.display(), moved_to = %target.display(), %reason, "quarantined a lake file");
    shared.add_quarantined(Quarantined {
        original: path.to_path_buf(),
        moved_to: target.clone(),
        reason,
        at_us: Ts::now().0,
    });
    Ok(target)
}

/// What to do with one file the log does not name.
#[derive(Debug)]
enum Verdict {
    Delete(&'static str),
    Quarantine(String),
    Refuse(String),
}

/// Opens the lake under `root`: reads (or creates, or migrates) its commit log
/// and accounts for every file on disk. `available(lake_seq)` says which
/// sequences above `lake_seq` the WAL or the hot store can still supply.
pub fn open(
    root: &Path,
    quarantine_root: &Path,
    fs: Arc<dyn FileSystem>,
    available: &dyn Fn(u64) -> Result<SeqRanges, LakeError>,
) -> Result<(LakeLog, Arc<LakeShared>), LakeError> {
    fsio::create_dir_durable(fs.as_ref(), root).map_err(io_err(root))?;
    let shared = Arc::new(LakeShared::default());
    let disk = scan_disk(root)?;
    let legacy = root.join(LEGACY_STATE);
    let log = match LakeLog::read(root, fs.clone()) {
        Ok(Some(log)) => log,
        Ok(None) if legacy.exists() => migrate(root, fs.clone(), &legacy, &disk)?,
        Ok(None) if disk.parts.is_empty() => {
            LakeLog::create(root, fs.clone(), 0, LakeState::default())?
        }
        Ok(None) => {
            return Err(LakeError::NeedsRepair {
                root: root.to_path_buf(),
                problem: format!(
                    "its commit log (lake/_log) is missing but it holds {} Parquet files",
                    disk.parts.len()
                ),
            });
        }
        Err(LakeError::Log { path, message }) => {
            return Err(LakeError::NeedsRepair {
                root: root.to_path_buf(),
                problem: format!(
                    "its commit log is unreadable: {}: {message}",
                    path.display()
                ),
            });
        }
        Err(e) => return Err(e),
    };
    let mut log = log;
    reconcile(
        &mut log,
        root,
        quarantine_root,
        fs.as_ref(),
        &shared,
        &disk,
        available,
    )?;
    shared.publish(log.state());
    Ok((log, shared))
}

/// Takes over a lake of the old format: files up to its `lake_seq` are
/// committed; everything else is left for [`reconcile`] to account for.
fn migrate(
    root: &Path,
    fs: Arc<dyn FileSystem>,
    legacy: &Path,
    disk: &Disk,
) -> Result<LakeLog, LakeError> {
    let bytes = fs::read(legacy).map_err(io_err(legacy))?;
    let lake_seq = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("lake_seq").and_then(|s| s.as_u64()))
        .ok_or_else(|| LakeError::NeedsRepair {
            root: root.to_path_buf(),
            problem: format!("{} is unreadable", legacy.display()),
        })?;
    let candidates: Vec<&DiskFile> = disk.parts.iter().filter(|f| f.to <= lake_seq).collect();
    let mut files = Vec::new();
    for f in drop_covered(&candidates) {
        // Unreadable files are committed here and quarantined by reconcile.
        let (rows, bytes) = check_footer(&f.path).unwrap_or((0, 0));
        files.push(f.as_lake_file(rows, bytes));
    }
    tracing::info!(
        lake_seq,
        files = files.len(),
        "taking over a lake of the old format"
    );
    let log = LakeLog::create(
        root,
        fs.clone(),
        0,
        LakeState {
            lake_seq,
            files,
            ..LakeState::default()
        },
    )?;
    fs.remove_file(legacy).map_err(io_err(legacy))?;
    fs.sync_dir(root).map_err(io_err(root))?;
    Ok(log)
}

/// The files of one partition not inside another's sequence range.
fn drop_covered<'a>(files: &[&'a DiskFile]) -> Vec<&'a DiskFile> {
    let mut by_partition: BTreeMap<(Table, NaiveDate, &str), Vec<&DiskFile>> = BTreeMap::new();
    for f in files {
        by_partition
            .entry((f.table, f.date, f.symbol.as_str()))
            .or_default()
            .push(f);
    }
    let mut kept = Vec::new();
    for (_, mut group) in by_partition {
        group.sort_by_key(|f| (f.from, std::cmp::Reverse(f.to)));
        let mut keep: Vec<&DiskFile> = Vec::new();
        for f in group {
            if !keep.iter().any(|k| k.from <= f.from && f.to <= k.to) {
                keep.push(f);
            }
        }
        kept.extend(keep);
    }
    kept
}

fn reconcile(
    log: &mut LakeLog,
    root: &Path,
    quarantine_root: &Path,
    fs: &dyn FileSystem,
    shared: &LakeShared,
    disk: &Disk,
    available: &dyn Fn(u64) -> Result<SeqRanges, LakeError>,
) -> Result<(), LakeError> {
    let state = log.state().clone();
    let lake_seq = state.lake_seq;
    // Committed files: readable, missing or unreadable.
    let mut readable: HashSet<PathBuf> = HashSet::new();
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut unreadable: Vec<(PathBuf, String)> = Vec::new();
    for f in &state.files {
        match footer(&f.path).map_err(io_err(&f.path))? {
            Footer::Readable(..) => {
                readable.insert(f.path.clone());
            }
            Footer::Missing => missing.push(f.path.clone()),
            Footer::Corrupt(reason) => unreadable.push((f.path.clone(), reason)),
        }
    }
    let committed: HashSet<&PathBuf> = state.files.iter().map(|f| &f.path).collect();
    let tombstones: BTreeMap<PathBuf, &Tombstone> = state
        .tombstones
        .iter()
        .map(|t| (root.join(&t.path), t))
        .collect();
    // Outputs lost now: their compaction inputs, if still on disk, take their
    // place again (before anything is written back from the hot store, so no
    // row can come back twice).
    let lost_now: HashSet<String> = unreadable
        .iter()
        .map(|(p, _)| p)
        .chain(&missing)
        .map(|p| super::log::relative(root, p))
        .collect();
    let mut restore: Vec<LakeFile> = Vec::new();
    let mut above: Option<SeqRanges> = None;
    let mut available_above = |from: u64, to: u64| -> Result<bool, LakeError> {
        if above.is_none() {
            let mut seqs = available(lake_seq)?;
            for &(a, b) in state.lost.ranges() {
                seqs.insert(a, b);
            }
            above = Some(seqs);
        }
        Ok(above.as_ref().is_some_and(|a| a.contains_range(from, to)))
    };
    // Whether committed files of `f`'s partition that read hold its rows of
    // sequences `from..=to` (the log says the lake holds everything up to
    // lake_seq).
    let covered = |f: &DiskFile, to: u64| {
        let intersecting: Vec<&LakeFile> = state
            .files
            .iter()
            .filter(|c| {
                c.is_in(f.table, f.date, &f.symbol) && c.seq_from <= to && f.from <= c.seq_to
            })
            .collect();
        !intersecting.is_empty() && intersecting.iter().all(|c| readable.contains(&c.path))
    };
    let mut verdicts: Vec<(&DiskFile, Verdict)> = Vec::new();
    for f in disk.parts.iter().filter(|f| !committed.contains(&f.path)) {
        let verdict = if let Some(t) = tombstones.get(&f.path) {
            match t.op {
                CommitOp::Retention => Verdict::Delete("removed by retention"),
                CommitOp::Compact if t.replaced_by.iter().any(|r| lost_now.contains(r)) => {
                    match footer(&f.path).map_err(io_err(&f.path))? {
                        Footer::Readable(rows, bytes) => {
                            restore.push(f.as_lake_file(rows, bytes));
                            continue;
                        }
                        _ => Verdict::Quarantine(
                            "a compaction input whose output is lost, itself unreadable".into(),
                        ),
                    }
                }
                CommitOp::Compact => {
                    // Replaced by files that read, or that were merged again
                    // (tombstoned by a later compaction), or that retention
                    // removed since (their rows were meant to go).
                    let proven = t.replaced_by.iter().all(|r| {
                        let p = root.join(r);
                        readable.contains(&p)
                            || tombstones.get(&p).is_some_and(|t| {
                                matches!(t.op, CommitOp::Compact | CommitOp::Retention)
                            })
                    });
                    if proven {
                        Verdict::Delete("merged into a committed file that reads")
                    } else {
                        Verdict::Quarantine(
                            "a compaction input whose replacement is not readable".into(),
                        )
                    }
                }
                _ => Verdict::Quarantine(format!(
                    "was removed from the lake ({:?}) and came back; its rows may have been written back since",
                    t.op
                )),
            }
        } else if f.to <= lake_seq {
            if covered(f, f.to) {
                Verdict::Delete("its rows are in committed files that read")
            } else {
                Verdict::Quarantine(format!(
                    "not in the commit log, and its sequences {}..={} are not covered by committed files",
                    f.from, f.to
                ))
            }
        } else if f.from > lake_seq {
            if available_above(f.from, f.to)? {
                Verdict::Delete("an unfinished roll; the WAL or the hot store holds its rows")
            } else {
                Verdict::Refuse(format!(
                    "{} is above the log's lake_seq {lake_seq} and its sequences {}..={} are \
                     neither in the WAL nor in the hot store: the commit log looks stale \
                     (restored from a backup?)",
                    f.path.display(),
                    f.from,
                    f.to
                ))
            }
        } else if covered(f, lake_seq) && available_above(lake_seq + 1, f.to)? {
            // A roll retried after a commit whose outcome was unknown: its
            // rows up to lake_seq are committed, the rest is still available.
            Verdict::Delete("a retried roll: its rows are committed or still in the WAL")
        } else {
            Verdict::Refuse(format!(
                "{} spans the log's lake_seq {lake_seq} (sequences {}..={}): the commit log \
                 looks stale",
                f.path.display(),
                f.from,
                f.to
            ))
        };
        verdicts.push((f, verdict));
    }
    let refused: Vec<&String> = verdicts
        .iter()
        .filter_map(|(_, v)| match v {
            Verdict::Refuse(p) => Some(p),
            _ => None,
        })
        .collect();
    if let Some(first) = refused.first() {
        let problem = if refused.len() > 1 {
            format!("{first} (and {} more such files)", refused.len() - 1)
        } else {
            (*first).clone()
        };
        return Err(LakeError::NeedsRepair {
            root: root.to_path_buf(),
            problem,
        });
    }

    // Nothing refused: act.
    let mut touched_dirs: HashSet<PathBuf> = HashSet::new();
    for temp in &disk.temps {
        tracing::info!(file = %temp.display(), "removing an orphan temp file");
        fs.remove_file(temp).map_err(io_err(temp))?;
        touched_dirs.extend(temp.parent().map(Path::to_path_buf));
    }
    for (f, verdict) in &verdicts {
        match verdict {
            Verdict::Delete(why) => {
                tracing::info!(file = %f.path.display(), why, "removing a lake file the log does not name");
                fs.remove_file(&f.path).map_err(io_err(&f.path))?;
                touched_dirs.extend(f.path.parent().map(Path::to_path_buf));
            }
            Verdict::Quarantine(reason) => {
                quarantine_file(fs, root, quarantine_root, shared, &f.path, reason.clone())?;
            }
            Verdict::Refuse(_) => {}
        }
    }
    for dir in touched_dirs {
        fs.sync_dir(&dir).map_err(io_err(&dir))?;
    }
    if !missing.is_empty() || !unreadable.is_empty() {
        for path in &missing {
            tracing::error!(file = %path.display(), "a committed lake file is missing from disk");
        }
        let mut change = Change::new(CommitOp::Quarantine, lake_seq);
        for (path, reason) in unreadable {
            quarantine_file(fs, root, quarantine_root, shared, &path, reason)?;
            change.remove.push(path);
        }
        if !missing.is_empty() {
            // Missing files are their own commit: their tombstones say so.
            let mut gone = Change::new(CommitOp::Missing, lake_seq);
            gone.remove = missing;
            log.commit(gone)?;
        }
        change.add = restore;
        if !change.remove.is_empty() || !change.add.is_empty() {
            log.commit(change)?;
        }
    }
    Ok(())
}

/// What `quiver repair lake` found and did.
#[derive(Debug, Default)]
pub struct RepairReport {
    pub files_kept: usize,
    pub rows_kept: u64,
    /// (file, why) moved to quarantine.
    pub quarantined: Vec<(PathBuf, String)>,
    pub temps_removed: usize,
    pub lake_seq: u64,
    pub version: u64,
    /// Where the old log was moved, if there was one.
    pub old_log_moved_to: Option<PathBuf>,
    pub dry_run: bool,
}

/// Rebuilds the commit log from the files on disk: unreadable files and files
/// whose range lies inside another's (compaction inputs) go to quarantine,
/// nothing is deleted, `lake_seq` becomes the highest sequence a file holds,
/// and the old log (if any) is moved to quarantine. The data dir must not be in
/// use. After a repair, the next start writes back from the hot store any rows
/// the rebuilt lake lacks.
pub fn repair(
    root: &Path,
    quarantine_root: &Path,
    fs: Arc<dyn FileSystem>,
    dry_run: bool,
) -> Result<RepairReport, LakeError> {
    let disk = scan_disk(root)?;
    let mut report = RepairReport {
        dry_run,
        ..RepairReport::default()
    };
    let mut readable: Vec<(&DiskFile, u64, u64)> = Vec::new();
    for f in &disk.parts {
        match check_footer(&f.path) {
            Ok((rows, bytes)) => readable.push((f, rows, bytes)),
            Err(reason) => report
                .quarantined
                .push((f.path.clone(), format!("unreadable: {reason}"))),
        }
    }
    let candidates: Vec<&DiskFile> = readable.iter().map(|(f, _, _)| *f).collect();
    let kept: HashSet<PathBuf> = drop_covered(&candidates)
        .into_iter()
        .map(|f| f.path.clone())
        .collect();
    let mut files = Vec::new();
    for (f, rows, bytes) in &readable {
        if kept.contains(&f.path) {
            files.push(f.as_lake_file(*rows, *bytes));
        } else {
            report.quarantined.push((
                f.path.clone(),
                "its sequence range lies inside another file's (a compaction input)".into(),
            ));
        }
    }
    report.files_kept = files.len();
    report.rows_kept = files.iter().map(|f| f.rows).sum();
    report.lake_seq = files.iter().map(|f| f.seq_to).max().unwrap_or(0);
    let log_dir = LakeLog::dir_of(root);
    report.version = super::log::max_version(&log_dir) + 1;
    report.temps_removed = disk.temps.len();
    if dry_run {
        return Ok(report);
    }
    let shared = LakeShared::default();
    for (path, reason) in &report.quarantined {
        quarantine_file(
            fs.as_ref(),
            root,
            quarantine_root,
            &shared,
            path,
            reason.clone(),
        )?;
    }
    for temp in &disk.temps {
        fs.remove_file(temp).map_err(io_err(temp))?;
    }
    let stamp = Ts::now().0;
    if log_dir.exists() {
        let target = quarantine_root.join(format!("_log-{stamp}"));
        fsio::create_dir_durable(fs.as_ref(), quarantine_root).map_err(io_err(quarantine_root))?;
        fs.rename(&log_dir, &target).map_err(io_err(&log_dir))?;
        report.old_log_moved_to = Some(target);
    }
    let legacy = root.join(LEGACY_STATE);
    if legacy.exists() {
        let target = quarantine_root.join(format!("_state-{stamp}.json"));
        fsio::create_dir_durable(fs.as_ref(), quarantine_root).map_err(io_err(quarantine_root))?;
        fs.rename(&legacy, &target).map_err(io_err(&legacy))?;
    }
    fs.sync_dir(root).map_err(io_err(root))?;
    LakeLog::create(
        root,
        fs,
        report.version,
        LakeState {
            lake_seq: report.lake_seq,
            files,
            ..LakeState::default()
        },
    )?;
    Ok(report)
}
