//! GetSqlInfo: what the server is and what its SQL supports. DBeaver and the
//! JDBC driver read this once on connect; older drivers throw on a missing
//! keyword or function list, so every list is filled.

use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransaction,
    SupportedSqlGrammar,
};
use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;

use super::error::FlightError;

/// Function names of the session, by the JDBC list they belong to. The
/// grouping comes from DataFusion's own documentation sections.
struct FunctionLists {
    numeric: Vec<String>,
    string: Vec<String>,
    datetime: Vec<String>,
    system: Vec<String>,
}

fn function_lists(state: &SessionState) -> FunctionLists {
    let mut lists = FunctionLists {
        numeric: Vec::new(),
        string: Vec::new(),
        datetime: Vec::new(),
        system: Vec::new(),
    };
    for (name, udf) in state.scalar_functions() {
        let section = udf.documentation().map(|d| d.doc_section.label);
        let list = match section {
            Some("Math Functions") => &mut lists.numeric,
            Some(
                "String Functions" | "Regular Expression Functions" | "Binary String Functions",
            ) => &mut lists.string,
            Some("Time and Date Functions") => &mut lists.datetime,
            _ => &mut lists.system,
        };
        list.push(name.to_ascii_uppercase());
    }
    for list in [
        &mut lists.numeric,
        &mut lists.string,
        &mut lists.datetime,
        &mut lists.system,
    ] {
        list.sort();
        list.dedup();
    }
    lists
}

/// Builds the server's SqlInfo table once, at startup.
pub fn sql_info(state: &SessionState) -> Result<SqlInfoData, FlightError> {
    let functions = function_lists(state);
    let keywords: Vec<String> = ALL_KEYWORDS.iter().map(|k| k.to_string()).collect();
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Quiver");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    // DataFusion folds unquoted identifiers to lower case; quoted ones keep theirs.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, keywords);
    b.append(SqlInfo::SqlNumericFunctions, functions.numeric);
    b.append(SqlInfo::SqlStringFunctions, functions.string);
    b.append(SqlInfo::SqlSystemFunctions, functions.system);
    b.append(SqlInfo::SqlDatetimeFunctions, functions.datetime);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        SupportedSqlGrammar::SqlCoreGrammar as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(
        SqlInfo::SqlMaxStatementLength,
        super::handle::SQL_BYTES_MAX as i32,
    );
    b.build()
        .map_err(|e| FlightError::Internal(format!("building SqlInfo: {e}")))
}
