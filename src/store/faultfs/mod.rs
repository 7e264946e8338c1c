//! A fault-injecting [`FileSystem`] for tests, after SQLite's crash-simulating VFS.
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
//! Only operations through the [`FileSystem`] port are tracked: DuckDB and
//! SQLite do their own I/O and their own fsyncs, and are left as they are.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fsio::{FileSystem, FsFile};

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// What a fault or crash fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    NoSpace,
    Io,
}

impl Errno {
    fn error(self) -> io::Error {
        match self {
            Errno::NoSpace => io::Error::from_raw_os_error(ENOSPC),
            Errno::Io => io::Error::from_raw_os_error(EIO),
        }
    }
}

/// The operations a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Write,
    SyncFile,
    SyncDir,
    Rename,
    Link,
    Remove,
    CreateDir,
}

/// Fail the `nth` (1-based) operation of kind `op` whose path contains
/// `path_contains`, and the `repeat - 1` matching ones after it.
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: Op,
    pub path_contains: String,
    pub nth: u64,
    pub repeat: u64,
    pub errno: Errno,
}

impl Fault {
    pub fn once(op: Op, path_contains: &str, nth: u64, errno: Errno) -> Self {
        Self {
            op,
            path_contains: path_contains.to_string(),
            nth,
            repeat: 1,
            errno,
        }
    }
}

/// What happens at the crash point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashAction {
    /// Put the disk into its durable state and exit the process (status 86).
    PowerLossAndExit,
    /// Fail every later operation with EIO; call [`FaultFs::power_loss`] yourself.
    Freeze,
}

/// The exit status of a process that crashed at its crash point.
pub const CRASH_EXIT_CODE: i32 = 86;

#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Crash at this sync (1-based, file and directory syncs counted together).
    pub crash_at_sync: Option<u64>,
    pub crash_action: Option<CrashAction>,
    /// Syncs succeed but make nothing durable: a machine where fsync does
    /// nothing. At a power loss the files this layer does not track (DuckDB's,
    /// SQLite's) are then put back as they were when it started, too.
    pub ignore_sync: bool,
    /// Record names that differ only by ASCII case from a sibling.
    pub case_insensitive: bool,
    /// At a power loss, keep half of each file's unsynced tail (a torn write)
    /// instead of none of it.
    pub torn_tails: bool,
    /// Print each rule breach as a `VIOLATION ...` line on stdout as it happens
    /// (for a child process whose parent checks).
    pub print_violations: bool,
    pub faults: Vec<Fault>,
}

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

    /// Moves a file about to lose its last name into the graveyard.
    fn bury(&mut self, path: &Path, id: u64) -> io::Result<()> {
        let grave = self.graveyard.join(id.to_string());
        fs::rename(path, &grave)?;
        self.graves.insert(id, grave);
        Ok(())
    }

    /// Where the bytes of file `id` can be read now.
    fn bytes_of(&self, id: u64) -> Option<PathBuf> {
        self.live
            .iter()
            .find(|(_, e)| **e == Entry::File(id))
            .map(|(p, _)| p.clone())
            .or_else(|| self.graves.get(&id).cloned())
    }

    fn revert_to_durable(&mut self) -> io::Result<()> {
        // The durable tree: a path is durable if its parent's last fsync
        // listed it and the parent itself is durable (or is a root).
        let roots: Vec<PathBuf> = self
            .durable
            .keys()
            .filter(|d| {
                d.parent()
                    .is_none_or(|p| !self.durable.contains_key(p) && !self.live.contains_key(*d))
            })
            .cloned()
            .collect();
        let mut want: BTreeMap<PathBuf, Entry> = BTreeMap::new();
        let mut stack = roots.clone();
        while let Some(dir) = stack.pop() {
            if let Some(entries) = self.durable.get(&dir) {
                for (name, entry) in entries {
                    let path = dir.join(name);
                    if *entry == Entry::Dir {
                        stack.push(path.clone());
                    }
                    want.insert(path, *entry);
                }
            }
        }
        // Copy out the durable bytes of every file that must be restored.
        let mut contents: HashMap<u64, Vec<u8>> = HashMap::new();
        for (path, entry) in &want {
            if let Entry::File(id) = entry
                && self.live.get(path) != Some(entry)
                && !contents.contains_key(id)
            {
                let durable_len = self.files.get(id).map_or(0, |f| f.durable_len) as usize;
                let mut bytes = match self.bytes_of(*id) {
                    Some(p) => fs::read(&p).unwrap_or_default(),
                    None => Vec::new(),
                };
                bytes.truncate(durable_len);
                contents.insert(*id, bytes);
            }
        }
        // Remove what the durable tree does not hold (deepest first).
        let live: Vec<(PathBuf, Entry)> = self.live.iter().map(|(p, e)| (p.clone(), *e)).collect();
        for (path, entry) in live.iter().rev() {
            if want.get(path) != Some(entry) {
                match entry {
                    Entry::Dir if !want.contains_key(path) => {
                        let _ = fs::remove_dir_all(path);
                    }
                    Entry::Dir => {}
                    Entry::File(_) => {
                        let _ = fs::remove_file(path);
                    }
                }
            }
        }
        // Recreate the durable tree (shallowest first): restored entries get
        // their durable bytes, files written here lose their unsynced tail.
        for (path, entry) in &want {
            match entry {
                Entry::Dir => fs::create_dir_all(path)?,
                Entry::File(id) if self.live.get(path) == Some(entry) => {
                    if let Some(f) = self.files.get(id)
                        && f.created_here
                        && f.live_len > f.durable_len
                    {
                        let keep = if self.config.torn_tails {
                            f.durable_len + (f.live_len - f.durable_len) / 2
                        } else {
                            f.durable_len
                        };
                        OpenOptions::new().write(true).open(path)?.set_len(keep)?;
                    }
                }
                Entry::File(id) => {
                    if let Some(parent) = path.parent() {
                        fs::create_dir_all(parent)?;
                    }
                    let mut file = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(path)?;
                    file.write_all(contents.get(id).map_or(&[][..], Vec::as_slice))?;
                    file.sync_all()?;
                }
            }
        }
        self.live = want;
        if let Some(start) = &self.untracked_at_start {
            // No fsync anywhere: the other programs' files are lost as well.
            for path in all_files(&self.root) {
                if self.live.contains_key(&path) {
                    continue;
                }
                match start.get(&path) {
                    Some(bytes) => fs::write(&path, bytes)?,
                    None => fs::remove_file(&path)?,
                }
            }
        }
        Ok(())
    }
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(all_files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

struct FaultFile {
    fs: FaultFs,
    id: u64,
    path: PathBuf,
    file: File,
}

impl Write for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = lock(&self.fs.state);
        self.fs.check(&mut s, Op::Write, &self.path)?;
        if s.files.get(&self.id).is_some_and(|f| f.failed) {
            s.violations.push(format!(
                "write after a failed fsync: {}",
                self.path.display()
            ));
        }
        let n = self.file.write(buf)?;
        if let Some(f) = s.files.get_mut(&self.id) {
            f.live_len += n as u64;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl FaultFile {
    fn sync(&mut self) -> io::Result<()> {
        let fs = self.fs.clone();
        let mut s = lock(&fs.state);
        if s.files.get(&self.id).is_some_and(|f| f.failed) {
            s.violations.push(format!(
                "fsync after a failed fsync: {}",
                self.path.display()
            ));
        }
        fs.sync_point(&mut s)?;
        if let Err(e) = fs.check(&mut s, Op::SyncFile, &self.path) {
            // The worst case: the dirty bytes are gone (the kernel dropped the
            // pages) and the error is cleared.
            if let Some(f) = s.files.get_mut(&self.id) {
                f.failed = true;
                f.live_len = f.durable_len;
                let _ = self.file.set_len(f.durable_len);
            }
            return Err(e);
        }
        self.file.sync_data()?;
        if !s.config.ignore_sync
            && let Some(f) = s.files.get_mut(&self.id)
        {
            f.durable_len = f.live_len;
        }
        Ok(())
    }
}

impl FsFile for FaultFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.sync()
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.sync()
    }
}

impl FileSystem for FaultFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut s = lock(&self.state);
        self.check(&mut s, Op::Create, path)?;
        Self::note_collision(&mut s, path);
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        let id = s.new_file(0);
        if let Some(f) = s.files.get_mut(&id) {
            f.created_here = true;
        }
        s.live.insert(path.to_path_buf(), Entry::File(id));
        Ok(Box::new(FaultFile {
            fs: self.clone(),
            id,
            path: path.to_path_buf(),
            file,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        self.check(&mut s, Op::Rename, from)?;
        Self::note_collision(&mut s, to);
        let moved = s.live.get(from).copied();
        if let Some(Entry::File(old)) = s.live.get(to).copied() {
            s.live.remove(to);
            if !s.is_linked(old) {
                s.bury(to, old)?;
            }
        }
        fs::rename(from, to)?;
        s.live.remove(from);
        if let Some(entry) = moved {
            s.live.insert(to.to_path_buf(), entry);
        }
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        self.check(&mut s, Op::Link, to)?;
        Self::note_collision(&mut s, to);
        fs::hard_link(from, to)?;
        if let Some(entry) = s.live.get(from).copied() {
            s.live.insert(to.to_path_buf(), entry);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        self.check(&mut s, Op::Remove, path)?;
        match s.live.remove(path) {
            Some(Entry::File(id)) if !s.is_linked(id) => s.bury(path, id),
            _ => fs::remove_file(path),
        }
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        self.check(&mut s, Op::CreateDir, path)?;
        Self::note_collision(&mut s, path);
        fs::create_dir(path)?;
        s.live.insert(path.to_path_buf(), Entry::Dir);
        s.durable.entry(path.to_path_buf()).or_default();
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        self.sync_point(&mut s)?;
        self.check(&mut s, Op::SyncDir, path)?;
        File::open(path)?.sync_all()?;
        if !s.config.ignore_sync {
            let entries = s.entries_of(path);
            s.durable.insert(path.to_path_buf(), entries);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
