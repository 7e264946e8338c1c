//! Catalog metadata for DBeaver and ADBC: catalogs, schemas, tables (with
//! their Arrow schemas and column descriptions), table types, and keys. Rows
//! come from arrow-flight's `sql::metadata` builders, so column names are the
//! spec's.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetTablesBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables,
};
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;

use super::error::FlightError;
use crate::event::Table;

fn build_error<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> FlightError + '_ {
    move |e| FlightError::Internal(format!("building {what}: {e}"))
}

pub fn catalogs(
    ctx: &SessionContext,
    _cmd: CommandGetCatalogs,
) -> Result<RecordBatch, FlightError> {
    let mut b = GetCatalogsBuilder::new();
    for name in ctx.catalog_names() {
        b.append(name);
    }
    b.build().map_err(build_error("GetCatalogs"))
}

pub fn schemas(ctx: &SessionContext, cmd: CommandGetDbSchemas) -> Result<RecordBatch, FlightError> {
    let mut b = cmd.into_builder();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            b.append(&catalog_name, schema_name);
        }
    }
    b.build().map_err(build_error("GetDbSchemas"))
}

pub async fn tables(
    ctx: &SessionContext,
    cmd: CommandGetTables,
) -> Result<RecordBatch, FlightError> {
    let mut b: GetTablesBuilder = cmd.into_builder();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for table_name in names {
                let provider = schema
                    .table(&table_name)
                    .await
                    .map_err(|e| FlightError::Internal(format!("table {table_name}: {e}")))?;
                let Some(provider) = provider else {
                    continue;
                };
                let kind = match provider.table_type() {
                    TableType::Base => "TABLE",
                    TableType::View => "VIEW",
                    TableType::Temporary => "LOCAL TEMPORARY",
                };
                let described =
                    describe(&catalog_name, &schema_name, &table_name, &provider.schema());
                b.append(&catalog_name, &schema_name, &table_name, kind, &described)
                    .map_err(build_error("GetTables"))?;
            }
        }
    }
    b.build().map_err(build_error("GetTables"))
}

pub fn table_types() -> Result<RecordBatch, FlightError> {
    let mut b = arrow_flight::sql::CommandGetTableTypes {}.into_builder();
    b.append("TABLE");
    b.append("VIEW");
    b.build().map_err(build_error("GetTableTypes"))
}

/// The SQL type name, precision and scale JDBC shows for an Arrow type.
fn sql_type(data_type: &DataType) -> (String, Option<i32>, Option<i32>) {
    match data_type {
        DataType::Boolean => ("BOOLEAN".into(), Some(1), None),
        DataType::Int8 => ("TINYINT".into(), Some(3), Some(0)),
        DataType::Int16 | DataType::UInt8 => ("SMALLINT".into(), Some(5), Some(0)),
        DataType::Int32 | DataType::UInt16 => ("INTEGER".into(), Some(10), Some(0)),
        DataType::Int64 | DataType::UInt32 => ("BIGINT".into(), Some(19), Some(0)),
        DataType::UInt64 => ("BIGINT UNSIGNED".into(), Some(20), Some(0)),
        DataType::Float16 | DataType::Float32 => ("REAL".into(), Some(7), None),
        DataType::Float64 => ("DOUBLE".into(), Some(15), None),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            ("DECIMAL".into(), Some(i32::from(*p)), Some(i32::from(*s)))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("VARCHAR".into(), None, None),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            ("VARBINARY".into(), None, None)
        }
        DataType::Date32 | DataType::Date64 => ("DATE".into(), Some(10), None),
        DataType::Timestamp(_, Some(_)) => ("TIMESTAMP WITH TIME ZONE".into(), Some(32), Some(6)),
        DataType::Timestamp(_, None) => ("TIMESTAMP".into(), Some(26), Some(6)),
        other => (other.to_string(), None, None),
    }
}

/// What a column holds, where Quiver knows it.
fn column_description(schema: &str, table: &str, column: &str) -> Option<&'static str> {
    static EVENT_COLUMNS: LazyLock<HashMap<(&'static str, &'static str), &'static str>> =
        LazyLock::new(|| {
            Table::ALL
                .iter()
                .flat_map(|t| {
                    t.column_descriptions()
                        .iter()
                        .map(move |(column, text)| ((t.name(), *column), *text))
                })
                .collect()
        });
    if !matches!(schema, "events" | "hot") {
        return None;
    }
    match column {
        "date" => Some("UTC day of ts; the lake's date= partition."),
        "_seq" => Some("Sequence number of the write that stored the row."),
        _ => EVENT_COLUMNS
            .get(&(table, column))
            .copied()
            .filter(|text| !text.is_empty()),
    }
}

/// The table's schema with the `ARROW:FLIGHT:SQL:*` field metadata JDBC reads.
fn describe(catalog: &str, schema: &str, table: &str, arrow_schema: &SchemaRef) -> Schema {
    let fields: Vec<Field> = arrow_schema
        .fields()
        .iter()
        .map(|field| {
            let (type_name, precision, scale) = sql_type(field.data_type());
            let mut metadata = field.metadata().clone();
            let mut put = |key: &str, value: String| {
                metadata.insert(format!("ARROW:FLIGHT:SQL:{key}"), value);
            };
            put("CATALOG_NAME", catalog.to_string());
            put("DB_SCHEMA_NAME", schema.to_string());
            put("TABLE_NAME", table.to_string());
            put("TYPE_NAME", type_name);
            if let Some(p) = precision {
                put("PRECISION", p.to_string());
            }
            if let Some(s) = scale {
                put("SCALE", s.to_string());
            }
            if let Some(text) = column_description(schema, table, field.name()) {
                put("REMARKS", text.to_string());
            }
            field.as_ref().clone().with_metadata(metadata)
        })
        .collect();
    Schema::new(fields)
}

/// GetPrimaryKeys' result schema, from the Flight SQL spec.
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The primary key of one table (GetPrimaryKeys names exactly one table;
/// catalog and schema default to Quiver's).
pub async fn primary_keys(
    ctx: &SessionContext,
    cmd: &CommandGetPrimaryKeys,
) -> Result<RecordBatch, FlightError> {
    let schema = primary_keys_schema();
    let catalog = cmd.catalog.as_deref().unwrap_or(crate::query::CATALOG);
    let db_schema = cmd.db_schema.as_deref().unwrap_or("events");
    let provider = match ctx.catalog(catalog).and_then(|c| c.schema(db_schema)) {
        Some(s) => s.table(&cmd.table).await.ok().flatten(),
        None => None,
    };
    let mut rows: Vec<(String, i32)> = Vec::new();
    if let Some(provider) = provider
        && let Some(constraints) = provider.constraints()
    {
        let table_schema = provider.schema();
        for constraint in constraints.iter() {
            if let datafusion::common::Constraint::PrimaryKey(indices) = constraint {
                for (seq, i) in indices.iter().enumerate() {
                    rows.push((table_schema.field(*i).name().clone(), seq as i32 + 1));
                }
            }
        }
    }
    let n = rows.len();
    let repeat = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    RecordBatch::try_new(
        schema,
        vec![
            repeat(catalog),
            repeat(db_schema),
            repeat(&cmd.table),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .map_err(|e| FlightError::Internal(e.to_string()))
}

/// GetImportedKeys', GetExportedKeys' and GetCrossReference's result schema.
pub fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_columns_carry_their_descriptions() {
        let schema = Table::Trade.schema();
        let described = describe("quiver", "events", "trades", &schema);
        let pnl = described.field_with_name("pnl_bps").unwrap();
        assert_eq!(
            pnl.metadata()["ARROW:FLIGHT:SQL:REMARKS"],
            "Net P&L in basis points (on CLOSE)."
        );
        assert_eq!(pnl.metadata()["ARROW:FLIGHT:SQL:TYPE_NAME"], "DOUBLE");
        let ts = described.field_with_name("ts").unwrap();
        assert_eq!(
            ts.metadata()["ARROW:FLIGHT:SQL:TYPE_NAME"],
            "TIMESTAMP WITH TIME ZONE"
        );
        assert!(ts.metadata().contains_key("ARROW:FLIGHT:SQL:REMARKS"));
    }
}
