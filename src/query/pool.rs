//! A per-query memory limit on top of the engine's shared pool.
//!
//! Every query's reservations go to the shared [`FairSpillPool`] (so all
//! queries together stay under `memory_bytes_max`) and are also counted
//! against the query's own limit, so one query cannot take the whole pool.
//!
//! [`FairSpillPool`]: datafusion::execution::memory_pool::FairSpillPool

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

#[derive(Debug)]
pub struct QueryPool {
    shared: Arc<dyn MemoryPool>,
    limit_bytes: usize,
    used_bytes: AtomicUsize,
}

impl QueryPool {
    pub fn new(shared: Arc<dyn MemoryPool>, limit_bytes: usize) -> Self {
        Self {
            shared,
            limit_bytes,
            used_bytes: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QueryPool({} of {} bytes)",
            self.used_bytes.load(Ordering::Relaxed),
            self.limit_bytes
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "QueryPool"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.used_bytes.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.used_bytes.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let claimed = self
            .used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(additional)
                    .filter(|&total| total <= self.limit_bytes)
            });
        if claimed.is_err() {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query needs more than its memory limit of {} MiB \
                 ({} wants {additional} bytes more)",
                self.limit_bytes >> 20,
                reservation.consumer().name()
            )));
        }
        if let Err(e) = self.shared.try_grow(reservation, additional) {
            self.used_bytes.fetch_sub(additional, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    #[test]
    fn the_query_limit_and_the_shared_limit_both_hold() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let a: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(shared.clone(), 600));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(shared.clone(), 600));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(500).unwrap();
        assert!(ra.try_grow(200).is_err(), "over the query's own 600");
        assert!(rb.try_grow(600).is_err(), "over the shared 1000");
        rb.try_grow(400).unwrap();
        assert_eq!(shared.reserved(), 900);
        drop(ra);
        drop(rb);
        assert_eq!(shared.reserved(), 0);
        assert_eq!(a.reserved(), 0);
    }
}
