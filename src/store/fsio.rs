//! Crash-safe file writes, behind a [`FileSystem`] port that tests replace.
//!
//! # The rules, enforced here
//!
//! - **A file reaches its final path complete or not at all.** [`publish_new`] writes
//!   a temp file in the same directory, fsyncs it, hard-links it to the final name
//!   (which fails if the name exists: a name is never overwritten), removes the temp
//!   name and fsyncs the directory. [`replace`] does the same with a rename, for the
//!   few files meant to be replaced. object_store 0.13's `LocalFileSystem::put`
//!   renames without any fsync, so nothing durable goes through it.
//! - **A failed fsync loses the file.** Its descriptor is never written or fsynced
//!   again (the kernel may have dropped the dirty pages and cleared the error);
//!   callers start a new file under a new name.
//! - **A new directory is fsynced into its parent** ([`create_dir_durable`]), or a
//!   power loss can take the directory, and every file in it, away.
//! - **Temp names end in [`TMP_SUFFIX`]** and are never committed, so startup
//!   recovery may delete them: that is the only deletion it makes without proof
//!   from a commit record.
//!
//! Writes and renames go through [`FileSystem`] so that tests can run the storage
//! code on [`super::faultfs::FaultFs`], which injects ENOSPC and EIO and simulates
//! power loss. Reads go to `std::fs` directly: the fault layer works on a real
//! directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Suffix of every temp file; anything ending in it is an orphan at startup.
pub const TMP_SUFFIX: &str = ".tmp";

/// A file open for writing (sequential writes only).
pub trait FsFile: Write + Send {
    /// fdatasync: the file's bytes are durable.
    fn sync_data(&mut self) -> io::Result<()>;
    /// fsync: bytes and metadata are durable.
    fn sync_all(&mut self) -> io::Result<()>;
}

/// The mutating file operations of the storage code.
pub trait FileSystem: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a new file for writing; fails if `path` exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// A second name for a file; fails if `to` exists.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates one directory (its parent must exist).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// fsyncs a directory, so the creations, renames and unlinks in it are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl Write for StdFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl FsFile for StdFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl FileSystem for StdFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// The file system the store uses unless told otherwise.
pub fn std_fs() -> Arc<dyn FileSystem> {
    Arc::new(StdFs)
}

/// Whether an I/O error means the disk is full (ENOSPC, EDQUOT).
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// A short description of an I/O failure for status lines: "disk full" or the error.
pub fn describe_io(e: &io::Error) -> String {
    if is_disk_full(e) {
        "disk full".to_string()
    } else {
        e.to_string()
    }
}

/// Directories this process created whose entry in their parent is not yet
/// known durable (the parent's fsync failed, or has not happened yet).
static UNSYNCED_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn unsynced(dir: &Path) -> bool {
    UNSYNCED_DIRS
        .lock()
        .map(|d| d.iter().any(|p| p == dir))
        .unwrap_or(true)
}

fn mark_unsynced(dir: &Path, pending: bool) {
    if let Ok(mut d) = UNSYNCED_DIRS.lock() {
        d.retain(|p| p != dir);
        if pending {
            d.push(dir.to_path_buf());
        }
    }
}

/// Creates `dir` and its missing ancestors, fsyncing each new directory into its
/// parent. A directory that exists is taken as durable, unless this process
/// created it and its parent's fsync did not complete: then the fsync is done
/// again.
pub fn create_dir_durable(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || (dir.is_dir() && !unsynced(dir)) {
        return Ok(());
    }
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", dir.display())))?;
    create_dir_durable(fs, parent)?;
    match fs.create_dir(dir) {
        Ok(()) => mark_unsynced(dir, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    // A relative path's parent may be "" (the working directory).
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    fs.sync_dir(parent)?;
    mark_unsynced(dir, false);
    Ok(())
}

/// Temp path beside `path`, unique per process and call.
pub fn temp_path_for(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}{TMP_SUFFIX}", std::process::id()))
}

/// How a finished temp file takes its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// Hard link: fails if the name exists.
    New,
    /// Rename: replaces what was there.
    Replace,
}

fn write_temp_then<T>(
    fs: &dyn FileSystem,
    path: &Path,
    how: Publish,
    write: impl FnOnce(&mut dyn FsFile) -> io::Result<T>,
) -> io::Result<T> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))?;
    create_dir_durable(fs, dir)?;
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut file = fs.create_new(&tmp)?;
        let value = write(file.as_mut())?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        match how {
            Publish::New => {
                fs.hard_link(&tmp, path)?;
                fs.remove_file(&tmp)?;
            }
            Publish::Replace => fs.rename(&tmp, path)?,
        }
        fs.sync_dir(dir)?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    result
}

/// Writes a new file at `path` atomically and durably; fails if the write fails
/// or `path` already exists. After a failure `path` holds either nothing or the
/// complete file, durable or not (the directory fsync may be what failed): the
/// caller decides what that means for it.
pub fn publish_new<T>(
    fs: &dyn FileSystem,
    path: &Path,
    write: impl FnOnce(&mut dyn FsFile) -> io::Result<T>,
) -> io::Result<T> {
    write_temp_then(fs, path, Publish::New, write)
}

/// Writes `path` atomically and durably, replacing what was there. On any
/// error `path` is untouched.
pub fn replace<T>(
    fs: &dyn FileSystem,
    path: &Path,
    write: impl FnOnce(&mut dyn FsFile) -> io::Result<T>,
) -> io::Result<T> {
    write_temp_then(fs, path, Publish::Replace, write)
}

/// [`replace`] on the real file system, for files outside the store's fault
/// domain (registry blobs, materialized metrics).
pub fn write_atomic<T>(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))?;
    create_dir_durable(&StdFs, dir)?;
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let value = write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        StdFs.sync_dir(dir)?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes small bytes atomically on the real file system.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, |f| f.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temp_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("state.json");
        write_bytes_atomic(&path, b"one").unwrap();
        write_bytes_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_bytes_atomic(&path, b"old").unwrap();
        let err = write_atomic(&path, |_| -> io::Result<()> {
            Err(io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn publish_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x").join("part.parquet");
        publish_new(&StdFs, &path, |f| f.write_all(b"first")).unwrap();
        let err = publish_new(&StdFs, &path, |f| f.write_all(b"second")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        // No temp file is left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
