//! A fault-injecting [`FileSystem`](crate::store::FileSystem) for tests, after SQLite's crash-simulating VFS.
//!
//! [`FaultFs`] runs the storage code on a real directory and records what a
//! power loss could take away: for every file it created, how many bytes a
//! completed fsync covers; for every directory, which entries a completed
//! directory fsync covers. [`FaultFs::power_loss`] rewrites the directory to that
//! durable state: files truncated to their synced length, entries created or
//! renamed since their directory's last fsync removed, entries removed or
//! replaced since then restored (removed files are kept aside in a graveyard so
//! they can come back). That is the worst case a POSIX file system allows.
//!
//! It can also
//! - crash at the N-th sync (file or directory): the sync does not complete, the
//!   disk is put into its durable state and the process exits at once
//!   ([`CrashAction::PowerLossAndExit`], for child processes) or every later
//!   operation fails ([`CrashAction::Freeze`]);
//! - fail chosen operations with ENOSPC or EIO ([`Fault`]), or every write while
//!   the disk is "full" ([`FaultFs::set_disk_full`]);
//! - ignore fsync entirely (`ignore_sync`), the control run that must be caught
//!   losing data;
//! - flag names that collide on a case-insensitive file system (macOS, Windows).
//!
//! Rule breaches it sees (a write or fsync on a file whose fsync failed, a
//! case-insensitive name collision) are recorded as [`FaultFs::violations`].
//!
//! Only operations through the [`FileSystem`](crate::store::FileSystem) port are tracked: DuckDB and
//! SQLite do their own I/O and their own fsyncs, and are left as they are.
//!
//! | file | holds |
//! |---|---|
//! | [`faults`] | what to inject: [`FaultConfig`], [`Fault`], the crash point |
//! | `ops` | the [`FileSystem`](crate::store::FileSystem) operations, each checked and tracked |
//! | `durable` | the durable state a power loss reverts to |

mod durable;
pub mod faults;
mod ops;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use faults::{CRASH_EXIT_CODE, CrashAction, Errno, Fault, FaultConfig, Op};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Debug, Default)]
struct FileState {
    live_len: u64,
    durable_len: u64,
    /// A sync on this file failed: it must never be written or synced again.
    failed: bool,
    /// Created through this layer (files found at start are left as they are).
    created_here: bool,
}

#[derive(Debug)]
struct State {
    config: FaultConfig,
    graveyard: PathBuf,
    next_id: u64,
    files: HashMap<u64, FileState>,
    /// Every path this layer knows, as it is now.
    live: BTreeMap<PathBuf, Entry>,
    /// Per directory, the entries its last completed fsync covers.
    durable: HashMap<PathBuf, BTreeMap<OsString, Entry>>,
    /// Bytes of files no longer linked anywhere, kept for a power loss.
    graves: HashMap<u64, PathBuf>,
    syncs: u64,
    op_counts: HashMap<(Op, String), u64>,
    disk_full: bool,
    dead: bool,
    violations: Vec<String>,
    root: PathBuf,
    /// With `ignore_sync`: every file under the root as it was at the start.
    untracked_at_start: Option<HashMap<PathBuf, Vec<u8>>>,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent-enough state for a test.
    match state.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl FaultFs {
    /// Tracks everything under `root` (which must exist) as durable. The
    /// graveyard lives outside `root`, in a directory of its own.
    pub fn new(root: &Path, graveyard: &Path, config: FaultConfig) -> io::Result<Self> {
        fs::create_dir_all(graveyard)?;
        let mut state = State {
            config,
            graveyard: graveyard.to_path_buf(),
            next_id: 1,
            files: HashMap::new(),
            live: BTreeMap::new(),
            durable: HashMap::new(),
            graves: HashMap::new(),
            syncs: 0,
            op_counts: HashMap::new(),
            disk_full: false,
            dead: false,
            violations: Vec::new(),
            root: root.to_path_buf(),
            untracked_at_start: None,
        };
        state.register_tree(root)?;
        if state.config.ignore_sync {
            let mut files = HashMap::new();
            for (path, entry) in &state.live {
                if let Entry::File(_) = entry {
                    files.insert(path.clone(), fs::read(path)?);
                }
            }
            state.untracked_at_start = Some(files);
        }
        let dirs: Vec<PathBuf> = state
            .live
            .iter()
            .filter(|(_, e)| **e == Entry::Dir)
            .map(|(p, _)| p.clone())
            .chain(std::iter::once(root.to_path_buf()))
            .collect();
        for dir in dirs {
            let snapshot = state.entries_of(&dir);
            state.durable.insert(dir, snapshot);
        }
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// Number of syncs (file and directory) so far.
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    /// While set, every create, write, link and mkdir fails with ENOSPC.
    pub fn set_disk_full(&self, full: bool) {
        lock(&self.state).disk_full = full;
    }

    pub fn add_fault(&self, fault: Fault) {
        lock(&self.state).config.faults.push(fault);
    }

    /// Puts the disk into its durable state (see the module docs). Later
    /// operations fail: the "machine" is off.
    pub fn power_loss(&self) -> io::Result<()> {
        let mut s = lock(&self.state);
        s.dead = true;
        s.revert_to_durable()
    }

    fn check(&self, s: &mut State, op: Op, path: &Path) -> io::Result<()> {
        if s.dead {
            return Err(Errno::Io.error());
        }
        if s.disk_full
            && matches!(
                op,
                Op::Create | Op::Write | Op::Link | Op::CreateDir | Op::SyncFile
            )
        {
            return Err(Errno::NoSpace.error());
        }
        let text = path.to_string_lossy().into_owned();
        let mut fail = None;
        for (i, fault) in s.config.faults.iter().enumerate() {
            if fault.op == op && text.contains(&fault.path_contains) {
                fail.get_or_insert(i);
            }
        }
        if let Some(i) = fail {
            let key = (op, s.config.faults[i].path_contains.clone());
            let n = {
                let c = s.op_counts.entry(key).or_default();
                *c += 1;
                *c
            };
            let f = &s.config.faults[i];
            if n >= f.nth && n < f.nth + f.repeat {
                return Err(f.errno.error());
            }
        }
        Ok(())
    }

    /// Counts a sync and crashes if this is the crash point.
    fn sync_point(&self, s: &mut State) -> io::Result<()> {
        s.syncs += 1;
        if s.config.crash_at_sync == Some(s.syncs) {
            s.dead = true;
            s.revert_to_durable()?;
            if s.config.crash_action == Some(CrashAction::PowerLossAndExit) {
                let _ = io::stdout().flush();
                std::process::exit(CRASH_EXIT_CODE);
            }
            return Err(Errno::Io.error());
        }
        Ok(())
    }

    fn note_collision(s: &mut State, path: &Path) {
        if !s.config.case_insensitive {
            return;
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        let name = name.to_string_lossy().to_ascii_lowercase();
        let Ok(entries) = fs::read_dir(parent) else {
            return;
        };
        for entry in entries.flatten() {
            let other = entry.file_name().to_string_lossy().into_owned();
            if other.to_ascii_lowercase() == name
                && Some(entry.file_name().as_os_str()) != path.file_name()
            {
                s.violation(format!(
                    "case-insensitive collision: {} and {other}",
                    path.display()
                ));
            }
        }
    }
}

impl State {
    fn violation(&mut self, text: String) {
        if self.config.print_violations {
            println!("VIOLATION {text}");
        }
        self.violations.push(text);
    }

    fn register_tree(&mut self, dir: &Path) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                self.live.insert(path.clone(), Entry::Dir);
                self.register_tree(&path)?;
            } else {
                let len = entry.metadata()?.len();
                let id = self.new_file(len);
                self.live.insert(path, Entry::File(id));
            }
        }
        Ok(())
    }

    fn new_file(&mut self, len: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.files.insert(
            id,
            FileState {
                live_len: len,
                durable_len: len,
                failed: false,
                created_here: false,
            },
        );
        id
    }

    /// The known live entries directly inside `dir`.
    fn entries_of(&self, dir: &Path) -> BTreeMap<OsString, Entry> {
        self.live
            .range(dir.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(dir))
            .filter(|(p, _)| p.parent() == Some(dir))
            .filter_map(|(p, e)| p.file_name().map(|n| (n.to_os_string(), *e)))
            .collect()
    }

    fn is_linked(&self, id: u64) -> bool {
        self.live.values().any(|e| *e == Entry::File(id))
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::faults::EIO;
    use super::*;
    use crate::store::fsio::FileSystem;
    use crate::store::fsio::{create_dir_durable, publish_new};

    fn setup(config: FaultConfig) -> (tempfile::TempDir, PathBuf, FaultFs) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        fs::create_dir(&root).unwrap();
        let ffs = FaultFs::new(&root, &tmp.path().join("graves"), config).unwrap();
        (tmp, root, ffs)
    }

    #[test]
    fn unsynced_bytes_and_entries_vanish_on_power_loss() {
        let (_tmp, root, ffs) = setup(FaultConfig::default());
        let durable = root.join("a.log");
        let mut f = ffs.create_new(&durable).unwrap();
        f.write_all(b"synced").unwrap();
        f.sync_data().unwrap();
        ffs.sync_dir(&root).unwrap();
        f.write_all(b" and not").unwrap();
        let mut g = ffs.create_new(&root.join("b.log")).unwrap();
        g.write_all(b"never synced").unwrap();
        g.sync_data().unwrap(); // the file is synced, its directory entry is not
        ffs.power_loss().unwrap();
        assert_eq!(fs::read(&durable).unwrap(), b"synced");
        assert!(!root.join("b.log").exists());
    }

    #[test]
    fn an_unsynced_unlink_or_rename_is_undone() {
        let (_tmp, root, ffs) = setup(FaultConfig::default());
        publish_new(&ffs, &root.join("keep"), |f| f.write_all(b"one")).unwrap();
        publish_new(&ffs, &root.join("x"), |f| f.write_all(b"x")).unwrap();
        // Neither is followed by a directory fsync.
        ffs.remove_file(&root.join("keep")).unwrap();
        ffs.rename(&root.join("x"), &root.join("y")).unwrap();
        ffs.power_loss().unwrap();
        assert_eq!(fs::read(root.join("keep")).unwrap(), b"one");
        assert_eq!(fs::read(root.join("x")).unwrap(), b"x");
        assert!(!root.join("y").exists());
    }

    #[test]
    fn a_directory_not_synced_into_its_parent_vanishes() {
        let (_tmp, root, ffs) = setup(FaultConfig::default());
        create_dir_durable(&ffs, &root.join("kept").join("deep")).unwrap();
        publish_new(&ffs, &root.join("kept").join("deep").join("f"), |f| {
            f.write_all(b"y")
        })
        .unwrap();
        // Its file is fsynced, and so is the directory's own listing, but the
        // root's listing never names the directory.
        ffs.create_dir(&root.join("lost")).unwrap();
        publish_new(&ffs, &root.join("lost").join("f"), |f| f.write_all(b"x")).unwrap();
        ffs.power_loss().unwrap();
        assert!(!root.join("lost").exists());
        assert_eq!(fs::read(root.join("kept/deep/f")).unwrap(), b"y");
    }

    #[test]
    fn ignore_sync_loses_everything_new() {
        let (_tmp, root, ffs) = setup(FaultConfig {
            ignore_sync: true,
            ..FaultConfig::default()
        });
        publish_new(&ffs, &root.join("f"), |f| f.write_all(b"x")).unwrap();
        ffs.power_loss().unwrap();
        assert!(!root.join("f").exists());
    }

    #[test]
    fn faults_fire_on_the_chosen_operation_and_a_failed_file_is_flagged() {
        let (_tmp, root, ffs) = setup(FaultConfig::default());
        ffs.add_fault(Fault::once(Op::SyncFile, "seg", 2, Errno::Io));
        let mut f = ffs.create_new(&root.join("seg1")).unwrap();
        f.write_all(b"a").unwrap();
        f.sync_data().unwrap();
        f.write_all(b"b").unwrap();
        let err = f.sync_data().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(EIO));
        assert!(ffs.violations().is_empty());
        f.write_all(b"c").unwrap();
        assert_eq!(ffs.violations().len(), 1, "{:?}", ffs.violations());
        ffs.set_disk_full(true);
        let err = ffs.create_new(&root.join("seg2")).err().unwrap();
        assert!(crate::store::fsio::is_disk_full(&err));
    }

    #[test]
    fn crash_point_freezes_before_the_sync_completes() {
        let (_tmp, root, ffs) = setup(FaultConfig {
            crash_at_sync: Some(2),
            crash_action: Some(CrashAction::Freeze),
            ..FaultConfig::default()
        });
        let mut f = ffs.create_new(&root.join("f")).unwrap();
        f.write_all(b"1").unwrap();
        f.sync_data().unwrap(); // sync 1
        f.write_all(b"2").unwrap();
        assert!(f.sync_data().is_err()); // sync 2: the crash
        assert!(f.write_all(b"3").is_err());
        // The directory entry was never synced: the file is gone.
        assert!(!root.join("f").exists());
    }

    #[test]
    fn case_collisions_are_flagged() {
        let (_tmp, root, ffs) = setup(FaultConfig {
            case_insensitive: true,
            ..FaultConfig::default()
        });
        ffs.create_dir(&root.join("symbol=BTC")).unwrap();
        ffs.create_dir(&root.join("symbol=btc")).unwrap();
        assert_eq!(ffs.violations().len(), 1);
    }
}
