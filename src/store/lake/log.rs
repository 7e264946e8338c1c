//! The lake's commit log, `<lake>/_log/`: the one record of which files the
//! lake holds and which WAL sequence it holds everything up to.
//!
//! ```text
//! _log/<version:020>.checkpoint.json   the whole state as of a version
//! _log/<version:020>.json              one commit: files added and removed, lake_seq
//! ```
//!
//! The state is the newest checkpoint plus every commit after it, which must be
//! consecutive. A commit file is written to a temp name, fsynced and hard-linked
//! to its version's name, which fails if that version exists (a second writer's
//! commit, never overwritten); the directory is then fsynced. So a commit is
//! either wholly there or not at all, and is the commit point of everything it
//! names. Every [`CHECKPOINT_EVERY`] commits a checkpoint is written and the
//! commits it replaces are deleted. A version number is never used twice.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{LakeError, LakeFile, io_err};
use crate::event::{Table, Ts};
use crate::store::fsio::{self, FileSystem};
use crate::store::seq::SeqRanges;

/// Commits between checkpoints.
pub const CHECKPOINT_EVERY: u64 = 64;

const FORMAT: u32 = 1;

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitOp {
    /// A new, empty lake.
    Create,
    /// Rows of WAL sequences `(old lake_seq, lake_seq]` added.
    Roll,
    /// A partition's files merged into one.
    Compact,
    /// Rows missing below lake_seq written back from the hot store.
    Refill,
    /// Unreadable files moved to quarantine.
    Quarantine,
    /// Committed files found missing from disk.
    Missing,
    /// A lake of the old `_state.json` format taken over.
    Migrate,
    /// The log rebuilt from the files on disk by `quiver repair lake`.
    Repair,
    /// Whole day partitions past their retention removed.
    Retention,
}

/// A file as the log records it; paths are relative to the lake root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub table: String,
    pub date: NaiveDate,
    pub symbol: String,
    pub seq_from: u64,
    pub seq_to: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// A file a commit removed, kept in the state until it is gone from disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    pub path: String,
    pub version: u64,
    /// What removed it: a compaction, retention, a quarantine, a missing file.
    pub op: CommitOp,
    /// The files that took its rows (a compaction's output; empty otherwise).
    pub replaced_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommitRecord {
    format: u32,
    version: u64,
    op: CommitOp,
    ts_us: i64,
    lake_seq: u64,
    #[serde(default)]
    add: Vec<FileEntry>,
    #[serde(default)]
    remove: Vec<String>,
    /// Sequences the lake will never hold (found in no WAL segment and not in
    /// the hot store).
    #[serde(default)]
    lost: Vec<(u64, u64)>,
    /// A retention commit's first day kept, per table: days before it are
    /// gone from the lake, and the hole check never writes them back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    keep_from: BTreeMap<String, NaiveDate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointRecord {
    format: u32,
    version: u64,
    ts_us: i64,
    lake_seq: u64,
    files: Vec<FileEntry>,
    #[serde(default)]
    tombstones: Vec<Tombstone>,
    #[serde(default)]
    lost: Vec<(u64, u64)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    keep_from: BTreeMap<String, NaiveDate>,
}

/// The lake's committed state.
#[derive(Debug, Clone, Default)]
pub struct LakeState {
    pub version: u64,
    pub lake_seq: u64,
    pub files: Vec<LakeFile>,
    pub tombstones: Vec<Tombstone>,
    pub lost: SeqRanges,
    /// Per table, the first day retention keeps (earlier days were removed);
    /// it only moves forward.
    pub keep_from: BTreeMap<Table, NaiveDate>,
}

/// A change to commit.
#[derive(Debug, Clone)]
pub struct Change {
    pub op: CommitOp,
    pub lake_seq: u64,
    pub add: Vec<LakeFile>,
    pub remove: Vec<PathBuf>,
    pub lost: Vec<(u64, u64)>,
    /// A retention commit's first day kept, per table.
    pub keep_from: BTreeMap<Table, NaiveDate>,
}

impl Change {
    pub fn new(op: CommitOp, lake_seq: u64) -> Self {
        Self {
            op,
            lake_seq,
            add: Vec::new(),
            remove: Vec::new(),
            lost: Vec::new(),
            keep_from: BTreeMap::new(),
        }
    }
}

fn commit_name(version: u64) -> String {
    format!("{version:020}.json")
}

fn checkpoint_name(version: u64) -> String {
    format!("{version:020}.checkpoint.json")
}

/// A log file's version and kind (true: checkpoint).
fn parse_log_name(name: &str) -> Option<(u64, bool)> {
    if let Some(v) = name.strip_suffix(".checkpoint.json") {
        return (v.len() == 20).then(|| v.parse().ok().map(|v| (v, true)))?;
    }
    let v = name.strip_suffix(".json")?;
    (v.len() == 20).then(|| v.parse().ok().map(|v| (v, false)))?
}

/// The files of one version: (commit, checkpoint).
type VersionFiles = (Option<PathBuf>, Option<PathBuf>);

/// Every log file in `dir`, by version.
fn list(dir: &Path) -> Result<BTreeMap<u64, VersionFiles>, LakeError> {
    let mut out: BTreeMap<u64, VersionFiles> = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let Some((v, checkpoint)) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_log_name)
        else {
            continue;
        };
        let slot = out.entry(v).or_default();
        if checkpoint {
            slot.1 = Some(path);
        } else {
            slot.0 = Some(path);
        }
    }
    Ok(out)
}

/// The highest version named in `dir`, readable or not (versions are never reused).
pub fn max_version(dir: &Path) -> u64 {
    list(dir)
        .ok()
        .and_then(|m| m.keys().next_back().copied())
        .unwrap_or(0)
}

impl FileEntry {
    fn of(root: &Path, f: &LakeFile) -> Self {
        FileEntry {
            path: relative(root, &f.path),
            table: f.table.name().to_string(),
            date: f.date,
            symbol: f.symbol.clone(),
            seq_from: f.seq_from,
            seq_to: f.seq_to,
            rows: f.rows,
            bytes: f.bytes,
        }
    }

    fn to_file(&self, root: &Path, origin: &Path) -> Result<LakeFile, LakeError> {
        let table = Table::from_name(&self.table).ok_or_else(|| LakeError::Log {
            path: origin.to_path_buf(),
            message: format!("unknown table {:?}", self.table),
        })?;
        if self.path.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(LakeError::Log {
                path: origin.to_path_buf(),
                message: format!("file path {:?} leaves the lake", self.path),
            });
        }
        Ok(LakeFile {
            table,
            date: self.date,
            symbol: self.symbol.clone(),
            path: root.join(&self.path),
            bytes: self.bytes,
            rows: self.rows,
            seq_from: self.seq_from,
            seq_to: self.seq_to,
        })
    }
}

/// `path` relative to `root`, with `/` separators.
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The commit log, open for writing by the lake's one writer.
pub struct LakeLog {
    root: PathBuf,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    state: LakeState,
    last_checkpoint: u64,
    /// A commit failed after its name may have reached the disk: its outcome is
    /// unknown until the log is read again at the next start.
    poisoned: bool,
}

impl std::fmt::Debug for LakeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeLog")
            .field("dir", &self.dir)
            .field("version", &self.state.version)
            .finish()
    }
}

impl LakeLog {
    pub fn dir_of(root: &Path) -> PathBuf {
        root.join("_log")
    }

    /// Reads the log, if there is one (`None`: no log file at all).
    pub fn read(root: &Path, fs: Arc<dyn FileSystem>) -> Result<Option<Self>, LakeError> {
        let dir = Self::dir_of(root);
        if !dir.is_dir() {
            return Ok(None);
        }
        let files = list(&dir)?;
        let Some((&cp_version, (_, Some(cp_path)))) =
            files.iter().rev().find(|(_, (_, cp))| cp.is_some())
        else {
            if files.is_empty() {
                return Ok(None);
            }
            return Err(LakeError::Log {
                path: dir,
                message: "commits but no checkpoint".into(),
            });
        };
        let cp: CheckpointRecord = read_json(cp_path)?;
        if cp.version != cp_version {
            return Err(LakeError::Log {
                path: cp_path.clone(),
                message: format!("names version {cp_version} but holds {}", cp.version),
            });
        }
        let mut state = LakeState {
            version: cp.version,
            lake_seq: cp.lake_seq,
            files: cp
                .files
                .iter()
                .map(|f| f.to_file(root, cp_path))
                .collect::<Result<_, _>>()?,
            tombstones: cp.tombstones,
            lost: SeqRanges::from_ranges(cp.lost),
            keep_from: keep_from_of(&cp.keep_from, cp_path)?,
        };
        let mut expected = cp_version + 1;
        for (&v, (commit, _)) in files.range(cp_version + 1..) {
            let Some(path) = commit else { continue };
            if v != expected {
                return Err(LakeError::Log {
                    path: path.clone(),
                    message: format!("commit {expected} is missing before commit {v}"),
                });
            }
            let record: CommitRecord = read_json(path)?;
            if record.version != v {
                return Err(LakeError::Log {
                    path: path.clone(),
                    message: format!("names version {v} but holds {}", record.version),
                });
            }
            apply(&mut state, root, path, &record)?;
            expected += 1;
        }
        Ok(Some(Self {
            root: root.to_path_buf(),
            dir,
            fs,
            state,
            last_checkpoint: cp_version,
            poisoned: false,
        }))
    }

    /// Starts a log at `version` (0 for a new lake; past every version ever
    /// used for a rebuilt one) holding `state`.
    pub fn create(
        root: &Path,
        fs: Arc<dyn FileSystem>,
        version: u64,
        mut state: LakeState,
    ) -> Result<Self, LakeError> {
        let dir = Self::dir_of(root);
        fsio::create_dir_durable(fs.as_ref(), &dir).map_err(io_err(&dir))?;
        state.version = version;
        let log = Self {
            root: root.to_path_buf(),
            dir,
            fs,
            state,
            last_checkpoint: version,
            poisoned: false,
        };
        log.write_checkpoint()?;
        Ok(log)
    }

    pub fn state(&self) -> &LakeState {
        &self.state
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a commit's outcome is unknown (see [`LakeError::CommitUnknown`]).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Commits `change` as the next version. On success the state includes it.
    pub fn commit(&mut self, change: Change) -> Result<(), LakeError> {
        if self.poisoned {
            return Err(LakeError::CommitUnknown {
                path: self.dir.clone(),
            });
        }
        let version = self.state.version + 1;
        let record = CommitRecord {
            format: FORMAT,
            version,
            op: change.op,
            ts_us: Ts::now().0,
            lake_seq: change.lake_seq,
            add: change
                .add
                .iter()
                .map(|f| FileEntry::of(&self.root, f))
                .collect(),
            remove: change
                .remove
                .iter()
                .map(|p| relative(&self.root, p))
                .collect(),
            lost: change.lost.clone(),
            keep_from: change
                .keep_from
                .iter()
                .map(|(t, d)| (t.name().to_string(), *d))
                .collect(),
        };
        let body = serde_json::to_vec_pretty(&record).map_err(|e| LakeError::Log {
            path: self.dir.clone(),
            message: e.to_string(),
        })?;
        let path = self.dir.join(commit_name(version));
        if let Err(source) = fsio::publish_new(self.fs.as_ref(), &path, |f| f.write_all(&body)) {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(LakeError::Conflict { version, path });
            }
            if path.exists() {
                // The name is there but not known durable: whether this
                // version committed is decided when the log is read again.
                self.poisoned = true;
                tracing::error!(error = %source, commit = %path.display(), "lake commit failed after its name was written");
                return Err(LakeError::CommitUnknown { path });
            }
            return Err(LakeError::Io { path, source });
        }
        apply(&mut self.state, &self.root, &path, &record)?;
        if version - self.last_checkpoint >= CHECKPOINT_EVERY
            && let Err(e) = self.checkpoint()
        {
            // The commits stay; the next checkpoint covers them.
            tracing::warn!(error = %e, "writing a lake checkpoint failed");
        }
        Ok(())
    }

    fn write_checkpoint(&self) -> Result<(), LakeError> {
        let s = &self.state;
        let record = CheckpointRecord {
            format: FORMAT,
            version: s.version,
            ts_us: Ts::now().0,
            lake_seq: s.lake_seq,
            files: s
                .files
                .iter()
                .map(|f| FileEntry::of(&self.root, f))
                .collect(),
            tombstones: s.tombstones.clone(),
            lost: s.lost.ranges().to_vec(),
            keep_from: s
                .keep_from
                .iter()
                .map(|(t, d)| (t.name().to_string(), *d))
                .collect(),
        };
        let body = serde_json::to_vec(&record).map_err(|e| LakeError::Log {
            path: self.dir.clone(),
            message: e.to_string(),
        })?;
        let path = self.dir.join(checkpoint_name(s.version));
        fsio::publish_new(self.fs.as_ref(), &path, |f| f.write_all(&body))
            .map_err(|source| LakeError::Io { path, source })
    }

    /// Writes a checkpoint of the current version and deletes the log files it
    /// makes unnecessary (all but this checkpoint, the previous one and the
    /// commits after that).
    pub fn checkpoint(&mut self) -> Result<(), LakeError> {
        let root = self.root.clone();
        self.state
            .tombstones
            .retain(|t| root.join(&t.path).exists());
        self.write_checkpoint()?;
        let previous = self.last_checkpoint;
        self.last_checkpoint = self.state.version;
        let mut removed = false;
        for (v, (commit, cp)) in list(&self.dir)? {
            let old_commit = v <= previous;
            let old_checkpoint = v < previous;
            for (path, old) in [(commit, old_commit), (cp, old_checkpoint)] {
                if let (Some(path), true) = (path, old) {
                    self.fs.remove_file(&path).map_err(io_err(&path))?;
                    removed = true;
                }
            }
        }
        if removed {
            self.fs.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LakeError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| LakeError::Log {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let format = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
    if format != u64::from(FORMAT) {
        return Err(LakeError::Log {
            path: path.to_path_buf(),
            message: format!("format {format}, this Quiver reads format {FORMAT}"),
        });
    }
    serde_json::from_value(value).map_err(|e| LakeError::Log {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A record's `keep_from`, its table names checked.
fn keep_from_of(
    named: &BTreeMap<String, NaiveDate>,
    origin: &Path,
) -> Result<BTreeMap<Table, NaiveDate>, LakeError> {
    named
        .iter()
        .map(|(name, date)| {
            Table::from_name(name)
                .map(|t| (t, *date))
                .ok_or_else(|| LakeError::Log {
                    path: origin.to_path_buf(),
                    message: format!("keep_from names an unknown table {name:?}"),
                })
        })
        .collect()
}

fn apply(
    state: &mut LakeState,
    root: &Path,
    origin: &Path,
    record: &CommitRecord,
) -> Result<(), LakeError> {
    let added: Vec<LakeFile> = record
        .add
        .iter()
        .map(|f| f.to_file(root, origin))
        .collect::<Result<_, _>>()?;
    let replaced_by: Vec<String> = record.add.iter().map(|f| f.path.clone()).collect();
    for rel in &record.remove {
        let path = root.join(rel);
        state.files.retain(|f| f.path != path);
        state.tombstones.push(Tombstone {
            path: rel.clone(),
            version: record.version,
            op: record.op,
            replaced_by: if record.op == CommitOp::Compact {
                replaced_by.clone()
            } else {
                Vec::new()
            },
        });
    }
    state.files.extend(added);
    state.lake_seq = record.lake_seq;
    for &(a, b) in &record.lost {
        state.lost.insert(a, b);
    }
    for (table, date) in keep_from_of(&record.keep_from, origin)? {
        let kept = state.keep_from.entry(table).or_insert(date);
        *kept = (*kept).max(date);
    }
    state.version = record.version;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fsio::StdFs;

    fn file(root: &Path, from: u64, to: u64) -> LakeFile {
        LakeFile {
            table: Table::Signal,
            date: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            symbol: "BTC".into(),
            path: root.join(format!(
                "signals/date=2026-11-30/symbol=BTC/part-{from}-{to}.parquet"
            )),
            bytes: 10,
            rows: 2,
            seq_from: from,
            seq_to: to,
        }
    }

    #[test]
    fn commits_replay_and_checkpoints_prune() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let mut log = LakeLog::create(root, fs.clone(), 0, LakeState::default()).unwrap();
        for i in 0..(2 * CHECKPOINT_EVERY + 3) {
            let mut c = Change::new(CommitOp::Roll, (i + 1) * 10);
            c.add.push(file(root, i * 10 + 1, (i + 1) * 10));
            log.commit(c).unwrap();
        }
        let mut c = Change::new(CommitOp::Compact, log.state().lake_seq);
        c.remove.push(file(root, 1, 10).path);
        c.add.push(file(root, 1, 20));
        log.commit(c).unwrap();
        let read = LakeLog::read(root, fs).unwrap().unwrap();
        assert_eq!(read.state().version, 2 * CHECKPOINT_EVERY + 4);
        assert_eq!(read.state().lake_seq, (2 * CHECKPOINT_EVERY + 3) * 10);
        assert_eq!(read.state().files.len(), log.state().files.len());
        assert_eq!(read.state().tombstones.len(), 1);
        // Only the latest checkpoints and the commits after the older one remain.
        let names = list(&LakeLog::dir_of(root)).unwrap();
        assert_eq!(names.keys().next().copied(), Some(CHECKPOINT_EVERY));
        assert!(names.len() < 2 * CHECKPOINT_EVERY as usize);
    }

    #[test]
    fn a_missing_commit_or_a_bad_one_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let mut log = LakeLog::create(root, fs.clone(), 0, LakeState::default()).unwrap();
        for i in 0..3 {
            log.commit(Change::new(CommitOp::Roll, i + 1)).unwrap();
        }
        let two = LakeLog::dir_of(root).join(commit_name(2));
        let body = fs::read(&two).unwrap();
        fs::remove_file(&two).unwrap();
        let err = LakeLog::read(root, fs.clone()).unwrap_err().to_string();
        assert!(err.contains("commit 2 is missing"), "{err}");
        fs::write(&two, &body[..body.len() / 2]).unwrap();
        assert!(LakeLog::read(root, fs.clone()).is_err());
        fs::write(&two, &body).unwrap();
        assert_eq!(
            LakeLog::read(root, fs).unwrap().unwrap().state().lake_seq,
            3
        );
    }

    #[test]
    fn a_version_is_never_committed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let mut a = LakeLog::create(root, fs.clone(), 0, LakeState::default()).unwrap();
        let mut b = LakeLog::read(root, fs).unwrap().unwrap();
        a.commit(Change::new(CommitOp::Roll, 5)).unwrap();
        let err = b.commit(Change::new(CommitOp::Roll, 7)).unwrap_err();
        assert!(
            matches!(err, LakeError::Conflict { version: 1, .. }),
            "{err}"
        );
    }
}
