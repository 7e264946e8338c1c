//! Writing and checking the lake's Parquet files.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::{LakeConfig, LakeError};
use crate::event::{SYMBOL_COLUMN, Table};
use crate::store::fsio::{self, FileSystem};

/// The schema of a table's Parquet files: the table schema without `symbol`,
/// which (with `date`) lives in the path.
pub fn file_schema(table: Table) -> SchemaRef {
    let schema = table.schema();
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != SYMBOL_COLUMN)
        .map(|(_, f)| f.clone())
        .collect();
    Arc::new(Schema::new(fields))
}

/// Indices of the file columns of a table batch (all but `symbol`).
pub fn file_columns(batch: &RecordBatch) -> Vec<usize> {
    (0..batch.num_columns())
        .filter(|i| *i != SYMBOL_COLUMN)
        .collect()
}

/// What every lake file shares. Spelled out: parquet-rs writes uncompressed
/// unless told.
fn lake_properties(config: &LakeConfig) -> WriterPropertiesBuilder {
    let level = ZstdLevel::try_new(config.zstd_level).unwrap_or_default();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(config.row_group_rows_max))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("quiver {}", env!("CARGO_PKG_VERSION")))
}

/// The properties of an event table's files.
pub fn writer_properties(config: &LakeConfig) -> WriterProperties {
    lake_properties(config)
        // Files are sorted by ts (column 1 of the file schema).
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 1,
            descending: false,
            nulls_first: false,
        }]))
        .build()
}

/// The properties of a derived table's files (metric values, alerts): the
/// same compression and row groups, no sort order.
pub fn derived_writer_properties(config: &LakeConfig) -> WriterProperties {
    lake_properties(config).build()
}

/// Replaces the file at `path` with `batch`, atomically and durably
/// ([`fsio::write_atomic`]): a reader sees the old file or the new one, never
/// a mix or a torn file. For derived tables, whose day is recomputed whole.
pub fn write_replacing(
    path: &Path,
    batch: &RecordBatch,
    props: &WriterProperties,
) -> Result<(), LakeError> {
    fsio::write_atomic(path, |file| {
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props.clone()))
            .map_err(std::io::Error::other)?;
        writer.write(batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })
    .map_err(|e| to_lake_error(path, e))
}

fn to_lake_error(path: &Path, e: std::io::Error) -> LakeError {
    match e.downcast::<parquet::errors::ParquetError>() {
        Ok(source) => LakeError::Parquet {
            path: path.to_path_buf(),
            source,
        },
        Err(source) => LakeError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Writes `batches` as a new file at `path` ([`fsio::publish_new`]). Returns its size.
pub fn write_new(
    fs: &dyn FileSystem,
    path: &Path,
    batches: &[RecordBatch],
    schema: &SchemaRef,
    props: &WriterProperties,
) -> Result<u64, LakeError> {
    fsio::publish_new(fs, path, |file| {
        let mut counter = CountingWriter {
            inner: file,
            bytes: 0,
        };
        let mut writer = ArrowWriter::try_new(&mut counter, schema.clone(), Some(props.clone()))
            .map_err(std::io::Error::other)?;
        for batch in batches {
            writer.write(batch).map_err(std::io::Error::other)?;
        }
        writer.close().map_err(std::io::Error::other)?;
        Ok(counter.bytes)
    })
    .map_err(|e| to_lake_error(path, e))
}

/// Streams `inputs` (oldest first) into one new file, adapting older files to
/// the current schema (missing nullable columns become NULL).
pub fn write_merged(
    fs: &dyn FileSystem,
    path: &Path,
    inputs: &[&Path],
    schema: &SchemaRef,
    props: &WriterProperties,
) -> Result<u64, LakeError> {
    fsio::publish_new(fs, path, |file| {
        let mut counter = CountingWriter {
            inner: file,
            bytes: 0,
        };
        let mut writer = ArrowWriter::try_new(&mut counter, schema.clone(), Some(props.clone()))
            .map_err(std::io::Error::other)?;
        for input in inputs {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(input)?)
                .map_err(std::io::Error::other)?
                .with_batch_size(64 * 1024)
                .build()
                .map_err(std::io::Error::other)?;
            for batch in reader {
                let batch = batch.map_err(std::io::Error::other)?;
                let batch = adapt(&batch, schema).map_err(std::io::Error::other)?;
                writer.write(&batch).map_err(std::io::Error::other)?;
            }
        }
        writer.close().map_err(std::io::Error::other)?;
        Ok(counter.bytes)
    })
    .map_err(|e| to_lake_error(path, e))
}

/// Counts the bytes written (the file's size, without a metadata call).
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Maps a batch onto `schema` by column name; missing columns become NULL.
fn adapt(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(col) if col.data_type() == field.data_type() => Ok(col.clone()),
            Some(col) => arrow::compute::cast(col, field.data_type()),
            None => Ok(arrow::array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// What reading a file's footer found.
#[derive(Debug)]
pub enum Footer {
    /// Rows and bytes.
    Readable(u64, u64),
    /// Not there.
    Missing,
    /// There, but not a Parquet file that reads: why.
    Corrupt(String),
}

/// Reads a file's footer. An I/O error that says nothing about the file itself
/// (permissions, too many open files, EIO) is an error, never a verdict on it.
pub fn footer(path: &Path) -> Result<Footer, std::io::Error> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Footer::Missing),
        Err(e) => return Err(e),
    };
    let bytes = file.metadata()?.len();
    match SerializedFileReader::new(file) {
        Ok(reader) => Ok(Footer::Readable(
            u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0),
            bytes,
        )),
        Err(parquet::errors::ParquetError::External(e)) => Err(std::io::Error::other(e)),
        Err(e) => Ok(Footer::Corrupt(e.to_string())),
    }
}

/// Row count and size from the footer, or why the file is unreadable.
pub fn check_footer(path: &Path) -> Result<(u64, u64), String> {
    match footer(path) {
        Ok(Footer::Readable(rows, bytes)) => Ok((rows, bytes)),
        Ok(Footer::Missing) => Err("missing".into()),
        Ok(Footer::Corrupt(reason)) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

/// The largest `ts` in a file, from its footer's statistics (no data page is
/// read): `None` if the file has no rows or no statistics for `ts`.
pub fn ts_max(path: &Path) -> Result<Option<i64>, LakeError> {
    let file = File::open(path).map_err(super::io_err(path))?;
    let reader = SerializedFileReader::new(file).map_err(|source| LakeError::Parquet {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = reader.metadata();
    let mut max: Option<i64> = None;
    for rg in meta.row_groups() {
        let Some(col) = rg
            .columns()
            .iter()
            .find(|c| c.column_descr().name() == "ts")
        else {
            continue;
        };
        if let Some(parquet::file::statistics::Statistics::Int64(s)) = col.statistics()
            && let Some(&v) = s.max_opt()
        {
            max = Some(max.map_or(v, |m| m.max(v)));
        }
    }
    Ok(max)
}
