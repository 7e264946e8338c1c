//! The [`FileSystem`] port on [`FaultFs`]: every operation is checked
//! against the faults first, then done on the real directory and tracked.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Entry, FaultFs, Op, lock};
use crate::store::fsio::{FileSystem, FsFile};

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
