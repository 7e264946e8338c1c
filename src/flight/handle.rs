//! Stateless statement handles: the SQL and its bound parameters travel in the
//! handle itself, so the server keeps no per-statement state and no results.
//!
//! Layout: `QVH1`, the SQL's length (u32 LE), the SQL, then the parameters as
//! an Arrow IPC stream (absent when none are bound). Handles come back from
//! clients, so decoding checks every length.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;

use super::error::FlightError;

const MAGIC: &[u8; 4] = b"QVH1";

/// Longest SQL text accepted, in bytes.
pub const SQL_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct StatementHandle {
    pub sql: String,
    pub params: Option<RecordBatch>,
}

impl StatementHandle {
    pub fn new(sql: impl Into<String>) -> Result<Self, FlightError> {
        let sql = sql.into();
        if sql.len() > SQL_BYTES_MAX {
            return Err(FlightError::BadRequest(format!(
                "the SQL is {} bytes, more than {SQL_BYTES_MAX}",
                sql.len()
            )));
        }
        Ok(Self { sql, params: None })
    }

    pub fn encode(&self) -> Result<Bytes, FlightError> {
        let mut out = Vec::with_capacity(8 + self.sql.len());
        out.extend_from_slice(MAGIC);
        let len = u32::try_from(self.sql.len())
            .map_err(|_| FlightError::BadRequest("the SQL is too long".into()))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(self.sql.as_bytes());
        if let Some(params) = &self.params {
            let ipc = || -> Result<Vec<u8>, arrow::error::ArrowError> {
                let mut writer = StreamWriter::try_new(Vec::new(), &params.schema())?;
                writer.write(params)?;
                writer.into_inner()
            };
            let bytes = ipc().map_err(|e| {
                FlightError::BadRequest(format!("encoding the bound parameters: {e}"))
            })?;
            out.extend_from_slice(&bytes);
        }
        Ok(out.into())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FlightError> {
        let bad = |what: &str| FlightError::BadRequest(format!("invalid statement handle: {what}"));
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a Quiver handle"))?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > SQL_BYTES_MAX || len > rest.len() {
            return Err(bad("bad SQL length"));
        }
        let (sql, params) = rest.split_at(len);
        let sql = std::str::from_utf8(sql)
            .map_err(|_| bad("SQL is not UTF-8"))?
            .to_string();
        let params = if params.is_empty() {
            None
        } else {
            let mut reader = StreamReader::try_new(Cursor::new(params), None)
                .map_err(|e| bad(&format!("parameters: {e}")))?;
            let batch = reader
                .next()
                .ok_or_else(|| bad("parameters: no rows"))?
                .map_err(|e| bad(&format!("parameters: {e}")))?;
            Some(batch)
        };
        Ok(Self { sql, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn a_handle_round_trips_with_and_without_parameters() {
        let plain = StatementHandle::new("SELECT 1").unwrap();
        assert_eq!(
            StatementHandle::decode(&plain.encode().unwrap()).unwrap(),
            plain
        );
        let params = RecordBatch::try_from_iter([
            ("0", Arc::new(Int64Array::from(vec![7])) as _),
            ("1", Arc::new(StringArray::from(vec!["BTC-USD"])) as _),
        ])
        .unwrap();
        let bound = StatementHandle {
            sql: "SELECT $1, $2".into(),
            params: Some(params),
        };
        assert_eq!(
            StatementHandle::decode(&bound.encode().unwrap()).unwrap(),
            bound
        );
    }

    #[test]
    fn hostile_handles_are_bad_requests() {
        let good = StatementHandle::new("SELECT 1").unwrap().encode().unwrap();
        let mut huge_len = good.to_vec();
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut bad_utf8 = good.to_vec();
        bad_utf8[8] = 0xff;
        let mut bad_ipc = good.to_vec();
        bad_ipc.extend_from_slice(b"garbage");
        for bytes in [
            &b""[..],
            b"QVH1",
            b"XXXX\0\0\0\0",
            &good[..6],
            &huge_len,
            &bad_utf8,
            &bad_ipc,
        ] {
            let err = StatementHandle::decode(bytes).unwrap_err();
            assert!(matches!(err, FlightError::BadRequest(_)), "{err}");
        }
        assert!(StatementHandle::new("x".repeat(SQL_BYTES_MAX + 1)).is_err());
    }
}
