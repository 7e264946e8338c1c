//! `hot.<table>`: the DuckDB hot store's tables as they are (the retention
//! window, including rows already in the lake), with their `_seq` column.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::duck_scan::{duck_exec, quote};
use crate::event::Table;
use crate::store::HotShared;
use crate::store::hot::SEQ_COLUMN;

#[derive(Debug)]
pub struct HotTable {
    table: Table,
    schema: SchemaRef,
    hot: Arc<HotShared>,
}

impl HotTable {
    pub fn new(table: Table, hot: Arc<HotShared>) -> Self {
        let mut fields: Vec<Field> = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false));
        Self {
            table,
            schema: Arc::new(Schema::new(fields)),
            hot,
        }
    }
}

#[async_trait]
impl TableProvider for HotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let columns: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
        let select = if columns.is_empty() {
            "1 AS one".to_string()
        } else {
            columns.join(", ")
        };
        let mut sql = format!("SELECT {select} FROM {}", quote(self.table.name()));
        // Filters are not pushed into DuckDB, so a LIMIT may only be pushed when
        // there are none (DataFusion applies them above this scan).
        if let (Some(limit), true) = (limit, filters.is_empty()) {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        duck_exec(schema, sql, self.hot.clone())
    }
}
