//! Where everything lives in a data directory: the one place that spells its
//! file and directory names (the table in [`crate::store`]'s header).

use std::path::{Path, PathBuf};

/// The paths of one data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Held (flock) by the one process that owns the dir.
    pub fn lock(&self) -> PathBuf {
        self.root.join("quiver.lock")
    }

    pub fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }

    pub fn hot(&self) -> PathBuf {
        self.root.join("hot.duckdb")
    }

    pub fn journal(&self) -> PathBuf {
        self.root.join("journal.sqlite")
    }

    pub fn registry(&self) -> PathBuf {
        self.root.join("registry.sqlite")
    }

    /// The alert outbox (SQLite): notices waiting for delivery, the
    /// cooldowns, and every delivery attempt (`system.alert_deliveries`).
    pub fn alerts(&self) -> PathBuf {
        self.root.join("alerts.sqlite")
    }

    /// The lake retention history (SQLite): every file retention removed,
    /// when, and when it left the disk (`system.retention_deletions`).
    pub fn retention(&self) -> PathBuf {
        self.root.join("retention.sqlite")
    }

    /// Model artifacts, by SHA-256.
    pub fn models(&self) -> PathBuf {
        self.root.join("models").join("sha256")
    }

    pub fn lake(&self) -> PathBuf {
        self.root.join("lake")
    }

    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// The address of the server holding the dir (`quiver serve`, `demo`).
    pub fn advert(&self) -> PathBuf {
        self.root.join("flight.json")
    }

    /// The dir's own copy of its definitions, seeded from the built-in ones
    /// when the dir is first used: `metrics.yaml`, `gates.yaml`, `analysis/`.
    pub fn configs(&self) -> PathBuf {
        self.root.join("configs")
    }

    pub fn metrics_file(&self) -> PathBuf {
        self.configs().join("metrics.yaml")
    }

    pub fn gates_file(&self) -> PathBuf {
        self.configs().join("gates.yaml")
    }

    pub fn analysis_dir(&self) -> PathBuf {
        self.configs().join("analysis")
    }
}
