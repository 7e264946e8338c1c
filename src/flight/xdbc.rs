//! GetXdbcTypeInfo: the SQL types Quiver returns, for ODBC/JDBC tools.

use arrow_flight::sql::metadata::{XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{Nullable, Searchable, XdbcDataType};

use super::error::FlightError;

/// One row per type that appears in Quiver's tables and usual results.
pub fn xdbc_type_info() -> Result<XdbcTypeInfoData, FlightError> {
    let row = |type_name: &str, data_type: XdbcDataType, column_size: Option<i32>| XdbcTypeInfo {
        type_name: type_name.to_string(),
        data_type,
        column_size,
        literal_prefix: None,
        literal_suffix: None,
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: false,
        searchable: Searchable::Full,
        unsigned_attribute: None,
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(type_name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    };
    let quoted = |mut info: XdbcTypeInfo| {
        info.literal_prefix = Some("'".into());
        info.literal_suffix = Some("'".into());
        info.case_sensitive = true;
        info
    };
    let numeric = |mut info: XdbcTypeInfo| {
        info.unsigned_attribute = Some(false);
        info.num_prec_radix = Some(10);
        info
    };
    let mut b = XdbcTypeInfoDataBuilder::new();
    b.append(row("BOOLEAN", XdbcDataType::XdbcBit, Some(1)));
    b.append(numeric(row("TINYINT", XdbcDataType::XdbcTinyint, Some(3))));
    b.append(numeric(row(
        "SMALLINT",
        XdbcDataType::XdbcSmallint,
        Some(5),
    )));
    b.append(numeric(row("INTEGER", XdbcDataType::XdbcInteger, Some(10))));
    b.append(numeric(row("BIGINT", XdbcDataType::XdbcBigint, Some(19))));
    b.append(numeric(row("REAL", XdbcDataType::XdbcReal, Some(7))));
    b.append(numeric(row("DOUBLE", XdbcDataType::XdbcDouble, Some(15))));
    b.append(numeric(row("DECIMAL", XdbcDataType::XdbcDecimal, Some(38))));
    b.append(quoted(row("VARCHAR", XdbcDataType::XdbcVarchar, None)));
    b.append(row("VARBINARY", XdbcDataType::XdbcVarbinary, None));
    b.append(quoted(row("DATE", XdbcDataType::XdbcDate, Some(10))));
    b.append(quoted(row(
        "TIMESTAMP",
        XdbcDataType::XdbcTimestamp,
        Some(32),
    )));
    b.build()
        .map_err(|e| FlightError::Internal(format!("building XdbcTypeInfo: {e}")))
}
