//! The WAL record format and its decoder.
//!
//! ```text
//! magic "QWAL" (4) | payload length u32 LE | CRC32 of payload u32 LE | payload
//! payload = seq u64 LE | table name length u8 | table name | Arrow IPC stream (schema + 1 batch)
//! ```
//!
//! Each record carries its own schema, so a segment mixes tables and survives
//! additive schema changes. A decoder trusts a record only when its magic, its
//! length bound, its CRC and its IPC payload all check out; past a bad record
//! it looks for the next magic whose record checks out (LevelDB's recovery
//! rule), so one corrupt record costs that record, not the rest of the segment.

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use super::{WalError, WalRecord};
use crate::event::Table;

pub(super) const MAGIC: &[u8; 4] = b"QWAL";
pub(super) const HEADER_BYTES: usize = 12;
/// The smallest payload: a seq and a table-name length.
const PAYLOAD_BYTES_MIN: usize = 9;
/// A record longer than this is treated as corruption.
pub(super) const RECORD_BYTES_MAX: usize = 1 << 30;

/// Appends one encoded record to `out`.
pub(super) fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    table: Table,
    batch: &RecordBatch,
) -> Result<(), WalError> {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    let name = table.name().as_bytes();
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    {
        let mut writer =
            StreamWriter::try_new(&mut *out, &batch.schema()).map_err(WalError::Encode)?;
        writer.write(batch).map_err(WalError::Encode)?;
        writer.finish().map_err(WalError::Encode)?;
    }
    let payload = &out[start + HEADER_BYTES..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The payload length a header announces, if the header is plausible.
pub(super) fn header_len(header: &[u8; HEADER_BYTES]) -> Option<usize> {
    if &header[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    (PAYLOAD_BYTES_MIN..=RECORD_BYTES_MAX)
        .contains(&len)
        .then_some(len)
}

pub(super) fn header_crc(header: &[u8; HEADER_BYTES]) -> u32 {
    u32::from_le_bytes([header[8], header[9], header[10], header[11]])
}

/// The sequence number of a payload whose CRC already checked out.
pub(super) fn payload_seq(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// Decodes a payload whose CRC checked out; `None` if it is not a record.
pub(super) fn decode_payload(payload: &[u8]) -> Option<WalRecord> {
    let seq = payload_seq(payload)?;
    let name_len = *payload.get(8)? as usize;
    let name = std::str::from_utf8(payload.get(9..9 + name_len)?).ok()?;
    let table = Table::from_name(name)?;
    let mut reader = StreamReader::try_new(payload.get(9 + name_len..)?, None).ok()?;
    let batch = reader.next()?.ok()?;
    Some(WalRecord { seq, table, batch })
}

/// One thing found in a byte range: a record, or bytes that hold none.
#[derive(Debug)]
pub enum Scanned {
    Record {
        offset: usize,
        len: usize,
        record: WalRecord,
    },
    Skipped {
        offset: usize,
        len: usize,
    },
}

/// The valid record starting at `at`, with its total length, if there is one.
fn record_at(bytes: &[u8], at: usize) -> Option<(usize, WalRecord)> {
    let header: &[u8; HEADER_BYTES] = bytes.get(at..at + HEADER_BYTES)?.try_into().ok()?;
    let len = header_len(header)?;
    let payload = bytes.get(at + HEADER_BYTES..at + HEADER_BYTES + len)?;
    if crc32fast::hash(payload) != header_crc(header) {
        return None;
    }
    decode_payload(payload).map(|record| (HEADER_BYTES + len, record))
}

/// Every record in `bytes`, in order, with the ranges that hold none. Never
/// panics, whatever the bytes; every record it returns passed its CRC.
pub fn scan(bytes: &[u8]) -> Vec<Scanned> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut skipped_from: Option<usize> = None;
    while at < bytes.len() {
        if let Some((len, record)) = record_at(bytes, at) {
            if let Some(from) = skipped_from.take() {
                out.push(Scanned::Skipped {
                    offset: from,
                    len: at - from,
                });
            }
            out.push(Scanned::Record {
                offset: at,
                len,
                record,
            });
            at += len;
            continue;
        }
        skipped_from.get_or_insert(at);
        // Resynchronize at the next magic.
        at = match bytes[at + 1..]
            .windows(MAGIC.len())
            .position(|w| w == MAGIC)
        {
            Some(p) => at + 1 + p,
            None => bytes.len(),
        };
    }
    if let Some(from) = skipped_from {
        out.push(Scanned::Skipped {
            offset: from,
            len: bytes.len() - from,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::wal::tests::batch;
    use proptest::prelude::*;

    fn encoded(seqs: &[u64]) -> Vec<u8> {
        let b = batch(2);
        let mut out = Vec::new();
        for s in seqs {
            encode(&mut out, *s, Table::MarketContext, &b).unwrap();
        }
        out
    }

    #[test]
    fn a_corrupt_record_costs_only_itself() {
        let mut bytes = encoded(&[1, 2, 3]);
        let one = bytes.len() / 3;
        bytes[one + 40] ^= 0xff; // inside record 2's payload
        let found: Vec<u64> = scan(&bytes)
            .iter()
            .filter_map(|s| match s {
                Scanned::Record { record, .. } => Some(record.seq),
                Scanned::Skipped { .. } => None,
            })
            .collect();
        assert_eq!(found, vec![1, 3]);
        assert!(
            scan(&bytes)
                .iter()
                .any(|s| matches!(s, Scanned::Skipped { offset, .. } if *offset == one))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes never panic the decoder and never yield a record
        /// whose CRC fails.
        #[test]
        fn arbitrary_bytes_never_yield_a_bad_record(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            for s in scan(&bytes) {
                if let Scanned::Record { offset, len, .. } = s {
                    let header: [u8; HEADER_BYTES] = bytes[offset..offset + HEADER_BYTES].try_into().unwrap();
                    prop_assert_eq!(crc32fast::hash(&bytes[offset + HEADER_BYTES..offset + len]), header_crc(&header));
                }
            }
        }

        /// Valid records with garbage spliced in: every intact record is found,
        /// in order, and nothing else.
        #[test]
        fn garbage_between_records_is_skipped(
            garbage in prop::collection::vec(any::<u8>(), 0..300),
            cut in 0usize..3,
            flip in any::<usize>(),
        ) {
            let mut bytes = encoded(&[10, 11, 12]);
            let one = bytes.len() / 3;
            let mut spliced = bytes[..one * cut].to_vec();
            spliced.extend_from_slice(&garbage);
            spliced.extend_from_slice(&bytes[one * cut..]);
            let found: Vec<u64> = scan(&spliced).iter().filter_map(|s| match s {
                Scanned::Record { record, .. } => Some(record.seq),
                Scanned::Skipped { .. } => None,
            }).collect();
            prop_assert_eq!(found, vec![10, 11, 12]);
            // A flipped byte anywhere costs at most the record it lands in.
            let at = flip % bytes.len();
            bytes[at] ^= 0x5a;
            let found = scan(&bytes).iter().filter(|s| matches!(s, Scanned::Record { .. })).count();
            prop_assert!(found >= 2);
        }
    }
}
