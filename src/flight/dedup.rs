//! Idempotent ingest: a row whose `event_id` the server already holds is
//! counted as stored, not stored twice, so a client that lost an answer can
//! resend the whole request.
//!
//! Two checks, in order:
//! - the [`Ledger`]: every `event_id` ingested in the last
//!   `ingest_dedup_window` (up to `ingest_dedup_ids_max` of them), claimed
//!   *before* its row is queued. It covers the moment between queueing and the
//!   row becoming queryable, and two requests racing with the same rows: one
//!   claims, the other counts.
//! - the stored tables: ids new to the ledger are looked up in
//!   `events.<table>` among rows stamped within the batch's time range
//!   ([`crate::query::QueryEngine::stored_event_ids`]). That covers resends
//!   from before the window or a restart, for as long as the first copy is
//!   stored.
//!
//! Rows sent without an `event_id` get one derived from their content
//! ([`content_ids`]) and from how many equal rows came before it in its
//! batch: resending the same rows without ids is caught too, and equal rows
//! sent together stay separate events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, StringArray};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use sha2::{Digest, Sha256};

use crate::event::Table;

/// An `event_id` of a table, as the ledger keeps it: 128 bits of its SHA-256,
/// so a client cannot make one id pass for another.
pub type Key = u128;

pub fn key(table: Table, event_id: &str) -> Key {
    let mut hasher = Sha256::new();
    hasher.update(table.name().as_bytes());
    hasher.update([0u8]);
    hasher.update(event_id.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}

/// The `event_id`s claimed recently, oldest first.
#[derive(Debug)]
pub struct Ledger {
    inner: Mutex<Inner>,
    window: Duration,
    ids_max: usize,
    started: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    held: HashSet<Key>,
    /// Claims in order, with the second (since `started`) they were made.
    order: VecDeque<(u32, Key)>,
}

impl Ledger {
    pub fn new(window: Duration, ids_max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            window,
            ids_max,
            started: Instant::now(),
        }
    }

    fn now_s(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Claims every key not already held; says for each whether this call
    /// claimed it. A key repeated within `keys` is claimed by its first
    /// occurrence only.
    pub fn claim(&self, keys: &[Key]) -> Vec<bool> {
        let now = self.now_s();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.expire(&mut inner, now);
        let claimed = keys
            .iter()
            .map(|&k| {
                let new = inner.held.insert(k);
                if new {
                    inner.order.push_back((now, k));
                }
                new
            })
            .collect();
        while inner.order.len() > self.ids_max {
            if let Some((_, k)) = inner.order.pop_front() {
                inner.held.remove(&k);
            }
        }
        claimed
    }

    /// Gives back claims whose rows were not queued after all (the request
    /// failed before), so a resend is not taken for a duplicate.
    pub fn release(&self, keys: impl IntoIterator<Item = Key>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            // Its entry in `order` stays until it expires; forgetting a
            // re-claimed key a little early only sends its next resend to the
            // stored tables.
            inner.held.remove(&k);
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .held
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets claims older than the window.
    fn expire(&self, inner: &mut Inner, now: u32) {
        let window_s = u32::try_from(self.window.as_secs()).unwrap_or(u32::MAX);
        while let Some(&(at, k)) = inner.order.front() {
            if now.saturating_sub(at) < window_s {
                break;
            }
            inner.order.pop_front();
            inner.held.remove(&k);
        }
    }
}

/// Ids for rows sent without an `event_id`: a UUID (version 8, RFC 9562)
/// made of the SHA-256 of the table and the row's other columns, as
/// conformed to the table's schema, so the same row always gets the same id.
/// Equal rows in one batch stay separate events: the k-th copy's id also
/// hashes k. A resend of the same batches therefore gets the same ids.
pub fn content_ids(
    table: Table,
    columns: &[ArrayRef],
    rows: usize,
) -> Result<ArrayRef, ArrowError> {
    let converter = RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let encoded = converter.convert_columns(columns)?;
    let mut copies: HashMap<[u8; 32], u64> = HashMap::new();
    let ids = (0..rows).map(|i| {
        let mut hasher = Sha256::new();
        hasher.update(table.name().as_bytes());
        hasher.update([0u8]);
        hasher.update(encoded.row(i).as_ref());
        let mut digest: [u8; 32] = hasher.finalize().into();
        let copy = copies.entry(digest).or_insert(0);
        if *copy > 0 {
            let mut hasher = Sha256::new();
            hasher.update(digest);
            hasher.update(copy.to_le_bytes());
            *copy += 1;
            digest = hasher.finalize().into();
        } else {
            *copy = 1;
        }
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8: custom
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // the RFC 9562 variant
        uuid::Uuid::from_bytes(bytes).to_string()
    });
    Ok(std::sync::Arc::new(StringArray::from_iter_values(ids)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;
    use std::sync::Arc;

    #[test]
    fn a_key_is_claimed_once_until_released() {
        let ledger = Ledger::new(Duration::from_secs(600), 100);
        let a = key(Table::Trade, "a");
        let b = key(Table::Trade, "b");
        assert_ne!(a, key(Table::Signal, "a"), "the table is part of the key");
        assert_eq!(ledger.claim(&[a, b, a]), vec![true, true, false]);
        assert_eq!(ledger.claim(&[b]), vec![false]);
        ledger.release([b]);
        assert_eq!(ledger.claim(&[b]), vec![true]);
        assert_eq!(ledger.len(), 2);
    }

    #[test]
    fn the_ledger_holds_at_most_ids_max_forgetting_the_oldest() {
        let ledger = Ledger::new(Duration::from_secs(600), 3);
        let keys: Vec<Key> = (0..5).map(|i| key(Table::Trade, &i.to_string())).collect();
        assert!(ledger.claim(&keys[..3]).iter().all(|&new| new));
        assert!(ledger.claim(&keys[3..]).iter().all(|&new| new));
        assert_eq!(ledger.len(), 3);
        // 0 and 1 were forgotten; 2, 3 and 4 are held.
        assert_eq!(ledger.claim(&keys[2..3]), vec![false]);
        assert_eq!(ledger.claim(&keys[..1]), vec![true]);
    }

    #[test]
    fn claims_expire_after_the_window() {
        let ledger = Ledger::new(Duration::ZERO, 100);
        let a = key(Table::Trade, "a");
        assert_eq!(ledger.claim(&[a]), vec![true]);
        // A zero window forgets at the next claim.
        assert_eq!(ledger.claim(&[a]), vec![true]);
    }

    #[test]
    fn content_ids_are_stable_and_count_equal_rows_apart() {
        let prices: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0, 1.0]));
        let ids = content_ids(Table::MarketContext, std::slice::from_ref(&prices), 3).unwrap();
        let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
        // Equal rows in one batch are separate events; every id differs.
        let distinct: HashSet<&str> = ids.iter().flatten().collect();
        assert_eq!(distinct.len(), 3);
        // The same row alone gets the id of its first copy.
        let first: ArrayRef = Arc::new(Float64Array::from(vec![1.0]));
        let alone = content_ids(Table::MarketContext, &[first], 1).unwrap();
        assert_eq!(
            alone
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0),
            ids.value(0)
        );
        let parsed = uuid::Uuid::parse_str(ids.value(0)).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        let again = content_ids(Table::MarketContext, std::slice::from_ref(&prices), 3).unwrap();
        assert_eq!(again.as_ref(), ids as &dyn arrow::array::Array);
        let other_table = content_ids(Table::Trade, &[prices], 3).unwrap();
        let other_table = other_table.as_any().downcast_ref::<StringArray>().unwrap();
        assert_ne!(other_table.value(0), ids.value(0));
    }
}
