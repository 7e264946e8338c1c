//! The durable state: what the last completed syncs cover, and the power loss
//! that rewrites the directory to it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Entry, State};

impl State {
    /// Moves a file about to lose its last name into the graveyard.
    pub(super) fn bury(&mut self, path: &Path, id: u64) -> io::Result<()> {
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

    pub(super) fn revert_to_durable(&mut self) -> io::Result<()> {
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
