//! The store's clock: what "now" is for lake retention and the hot store's
//! window. The system clock in production; a manual one that tests (and
//! `quiver retention --now`) set and step, so a policy can be seen crossing
//! its boundary without waiting days.
//!
//! Only the retention rules read it. Commit records, WAL records and event
//! validation keep the wall clock: a clock set for testing a policy must not
//! date the data itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::event::Ts;

/// Where the store's "now" comes from.
#[derive(Clone, Default)]
pub enum Clock {
    /// The wall clock.
    #[default]
    System,
    /// A time that moves only when set (shared by every clone).
    Manual(Arc<AtomicI64>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clock::System => f.write_str("System"),
            Clock::Manual(at) => write!(f, "Manual({})", at.load(Ordering::Acquire)),
        }
    }
}

impl Clock {
    /// A manual clock standing at `at`.
    pub fn manual(at: Ts) -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(at.0)))
    }

    pub fn now(&self) -> Ts {
        match self {
            Clock::System => Ts::now(),
            Clock::Manual(at) => Ts(at.load(Ordering::Acquire)),
        }
    }

    /// Sets a manual clock (and every clone of it) to `at`; the system clock
    /// cannot be set, and says so by returning false.
    pub fn set(&self, at: Ts) -> bool {
        match self {
            Clock::System => false,
            Clock::Manual(now) => {
                now.store(at.0, Ordering::Release);
                true
            }
        }
    }

    /// Moves a manual clock forward by `by` (false for the system clock).
    pub fn advance(&self, by: Duration) -> bool {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.set(Ts(self.now().0.saturating_add(by)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_set_and_clones_share_it() {
        let clock = Clock::manual(Ts(1_000));
        let other = clock.clone();
        assert_eq!(other.now(), Ts(1_000));
        assert!(clock.advance(Duration::from_millis(2)));
        assert_eq!(other.now(), Ts(3_000));
        assert!(!Clock::System.set(Ts(0)));
        assert!(Clock::System.now().0 > 1_700_000_000_000_000);
    }
}
