//! What [`FaultFs`](super::FaultFs) injects: errors on chosen operations,
//! a crash at the N-th sync, and how syncs and power losses behave.

use std::io;

pub(super) const ENOSPC: i32 = 28;
pub(super) const EIO: i32 = 5;

/// What a fault or crash fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    NoSpace,
    Io,
}

impl Errno {
    pub(super) fn error(self) -> io::Error {
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
