//! SQLite tables and views (the journal, the registry, the learning tracker)
//! as DataFusion tables, with projections, filters and limits pushed down.
//!
//! Filters are translated into a WHERE clause with bound parameters, never
//! pasted values, and reported as `Inexact`: DataFusion applies them again, so
//! a difference between SQLite's and DataFusion's comparison rules can only
//! make SQLite return extra rows, never lose one. A filter that cannot be
//! translated is left to DataFusion.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, Constraint, Constraints, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

use crate::store::sqlite::{self, Relation, SqlValue};

/// Rows per batch read from SQLite.
const BATCH_ROWS: usize = 8192;

/// One SQLite table or view.
#[derive(Debug)]
pub struct SqliteTable {
    path: PathBuf,
    relation: Relation,
    /// The primary key SQLite enforces, for the optimizer and for Flight SQL's
    /// GetPrimaryKeys.
    constraints: Constraints,
}

impl SqliteTable {
    pub fn new(path: PathBuf, relation: Relation) -> Self {
        let constraints = if relation.primary_key.is_empty() {
            Constraints::default()
        } else {
            Constraints::new_unverified(vec![Constraint::PrimaryKey(relation.primary_key.clone())])
        };
        Self {
            path,
            relation,
            constraints,
        }
    }

    /// The SQL for a filter, if it can be pushed down.
    fn filter_sql(&self, expr: &Expr, params: &mut Vec<SqlValue>) -> Option<String> {
        let column = |e: &Expr| -> Option<(String, DataType)> {
            let Expr::Column(Column { name, .. }) = e else {
                return None;
            };
            let field = self.relation.schema.field_with_name(name).ok()?;
            Some((sqlite::quote_ident(name), field.data_type().clone()))
        };
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And | Operator::Or => {
                    let mut p = params.clone();
                    let l = self.filter_sql(left, &mut p)?;
                    let r = self.filter_sql(right, &mut p)?;
                    *params = p;
                    let word = if *op == Operator::And { "AND" } else { "OR" };
                    Some(format!("({l} {word} {r})"))
                }
                Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq => {
                    let (col, lit, op) = match (left.as_ref(), right.as_ref()) {
                        (c @ Expr::Column(_), Expr::Literal(v, _)) => (c, v, *op),
                        (Expr::Literal(v, _), c @ Expr::Column(_)) => (c, v, op.swap()?),
                        _ => return None,
                    };
                    let (name, ty) = column(col)?;
                    let value = to_sql_value(lit, &ty)?;
                    let sym = match op {
                        Operator::Eq => "=",
                        Operator::NotEq => "<>",
                        Operator::Lt => "<",
                        Operator::LtEq => "<=",
                        Operator::Gt => ">",
                        _ => ">=",
                    };
                    params.push(value);
                    Some(format!("{name} {sym} ?"))
                }
                _ => None,
            },
            Expr::IsNull(e) => Some(format!("{} IS NULL", column(e)?.0)),
            Expr::IsNotNull(e) => Some(format!("{} IS NOT NULL", column(e)?.0)),
            Expr::InList(InList {
                expr,
                list,
                negated,
            }) if !list.is_empty() && list.len() <= 1000 => {
                let (name, ty) = column(expr)?;
                let values: Option<Vec<SqlValue>> = list
                    .iter()
                    .map(|e| match e {
                        Expr::Literal(v, _) => to_sql_value(v, &ty),
                        _ => None,
                    })
                    .collect();
                let values = values?;
                let marks = vec!["?"; values.len()].join(", ");
                params.extend(values);
                let not = if *negated { "NOT " } else { "" };
                Some(format!("{name} {not}IN ({marks})"))
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                let (name, ty) = column(expr)?;
                let (Expr::Literal(lo, _), Expr::Literal(hi, _)) = (low.as_ref(), high.as_ref())
                else {
                    return None;
                };
                let (lo, hi) = (to_sql_value(lo, &ty)?, to_sql_value(hi, &ty)?);
                params.push(lo);
                params.push(hi);
                Some(format!("{name} BETWEEN ? AND ?"))
            }
            _ => None,
        }
    }
}

/// A literal as a SQLite value comparable with a column of type `column`.
/// Timestamps become microseconds, and only when exact (a nanosecond bound
/// that is not a whole microsecond is left to DataFusion).
fn to_sql_value(v: &ScalarValue, column: &DataType) -> Option<SqlValue> {
    let micros = |value: i64, per_micro: Option<i64>, scale: i64| -> Option<SqlValue> {
        match per_micro {
            Some(d) => (value % d == 0).then(|| SqlValue::Int(value / d)),
            None => value.checked_mul(scale).map(SqlValue::Int),
        }
    };
    match (v, column) {
        (
            ScalarValue::TimestampMicrosecond(Some(x), _),
            DataType::Timestamp(TimeUnit::Microsecond, _),
        ) => Some(SqlValue::Int(*x)),
        (ScalarValue::TimestampNanosecond(Some(x), _), DataType::Timestamp(..)) => {
            micros(*x, Some(1000), 1)
        }
        (ScalarValue::TimestampMillisecond(Some(x), _), DataType::Timestamp(..)) => {
            micros(*x, None, 1000)
        }
        (ScalarValue::TimestampSecond(Some(x), _), DataType::Timestamp(..)) => {
            micros(*x, None, 1_000_000)
        }
        (_, DataType::Timestamp(..)) => None,
        (
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            DataType::Utf8,
        ) => Some(SqlValue::Text(s.clone())),
        (ScalarValue::Int64(Some(x)), DataType::Int64 | DataType::Float64) => {
            Some(SqlValue::Int(*x))
        }
        (ScalarValue::Int32(Some(x)), DataType::Int64 | DataType::Float64) => {
            Some(SqlValue::Int(i64::from(*x)))
        }
        (ScalarValue::Float64(Some(x)), DataType::Int64 | DataType::Float64) if x.is_finite() => {
            Some(SqlValue::Real(*x))
        }
        _ => None,
    }
}

#[async_trait]
impl TableProvider for SqliteTable {
    fn schema(&self) -> SchemaRef {
        self.relation.schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        if self.relation.is_view {
            TableType::View
        } else {
            TableType::Base
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.filter_sql(f, &mut Vec::new()).is_some() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.relation.schema.project(p)?),
            None => self.relation.schema.clone(),
        };
        // An empty projection (count(*)) still needs one column to count rows;
        // SQLite's `1` is not a column of the schema, so read NULL-free rowcount
        // through the first column and let DataFusion project it away.
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| sqlite::quote_ident(f.name()))
            .collect();
        let select = if columns.is_empty() {
            "NULL".to_string()
        } else {
            columns.join(", ")
        };
        let mut params = Vec::new();
        let terms: Vec<String> = filters
            .iter()
            .filter_map(|f| self.filter_sql(f, &mut params))
            .collect();
        let mut sql = format!(
            "SELECT {select} FROM {}",
            sqlite::quote_ident(&self.relation.name)
        );
        if !terms.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&terms.join(" AND "));
        }
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {}", limit.min(i64::MAX as usize)));
        }
        let partition = Arc::new(SqliteScan {
            path: self.path.clone(),
            relation: self.relation.name.clone(),
            sql,
            params,
            schema: schema.clone(),
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![partition],
            None,
            Vec::new(),
            false,
            limit,
        )?))
    }
}

/// One SQLite query as a DataFusion partition, read on a blocking thread.
#[derive(Debug)]
struct SqliteScan {
    path: PathBuf,
    relation: String,
    sql: String,
    params: Vec<SqlValue>,
    schema: SchemaRef,
}

impl PartitionStream for SqliteScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let tx = builder.tx();
        let (path, relation, sql, params, schema) = (
            self.path.clone(),
            self.relation.clone(),
            self.sql.clone(),
            self.params.clone(),
            self.schema.clone(),
        );
        builder.spawn_blocking(move || {
            // An empty projection reads one NULL column per row; the batches
            // carry only the row count.
            let (read_schema, empty) = if schema.fields().is_empty() {
                let s = Arc::new(arrow::datatypes::Schema::new(vec![
                    arrow::datatypes::Field::new("_", DataType::Utf8, true),
                ]));
                (s, true)
            } else {
                (schema.clone(), false)
            };
            let result = sqlite::scan(
                &path,
                &relation,
                &sql,
                &params,
                &read_schema,
                BATCH_ROWS,
                |batch| {
                    let batch = if empty {
                        match arrow::array::RecordBatch::try_new_with_options(
                            schema.clone(),
                            vec![],
                            &arrow::array::RecordBatchOptions::new()
                                .with_row_count(Some(batch.num_rows())),
                        ) {
                            Ok(b) => b,
                            Err(e) => {
                                let _ = tx.blocking_send(Err(e.into()));
                                return false;
                            }
                        }
                    } else {
                        batch
                    };
                    tx.blocking_send(Ok(batch)).is_ok()
                },
            );
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(DataFusionError::External(Box::new(e))));
            }
            Ok(())
        });
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn table() -> SqliteTable {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("mode", DataType::Utf8, false),
            arrow::datatypes::Field::new("pnl_bps", DataType::Float64, true),
            arrow::datatypes::Field::new(
                "entry_ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        SqliteTable::new(
            PathBuf::from("/nonexistent"),
            Relation {
                name: "t".into(),
                is_view: false,
                schema,
                primary_key: vec![],
            },
        )
    }

    #[test]
    fn simple_filters_translate_with_bound_values() {
        let t = table();
        let mut p = Vec::new();
        let e = col("mode")
            .eq(lit("scalp"))
            .and(col("pnl_bps").gt(lit(5.0)));
        assert_eq!(
            t.filter_sql(&e, &mut p).unwrap(),
            "(\"mode\" = ? AND \"pnl_bps\" > ?)"
        );
        assert_eq!(p, [SqlValue::Text("scalp".into()), SqlValue::Real(5.0)]);
        let mut p = Vec::new();
        let e = lit(3.0).lt_eq(col("pnl_bps"));
        assert_eq!(t.filter_sql(&e, &mut p).unwrap(), "\"pnl_bps\" >= ?");
        let mut p = Vec::new();
        let e = col("mode").in_list(vec![lit("a"), lit("b")], true);
        assert_eq!(t.filter_sql(&e, &mut p).unwrap(), "\"mode\" NOT IN (?, ?)");
    }

    #[test]
    fn hostile_or_untranslatable_filters_stay_with_datafusion() {
        let t = table();
        let mut p = Vec::new();
        // A value full of SQL is bound, not pasted.
        let e = col("mode").eq(lit("x' OR 1=1; DROP TABLE trades; --"));
        assert_eq!(t.filter_sql(&e, &mut p).unwrap(), "\"mode\" = ?");
        // Unknown column, function calls, LIKE: not pushed.
        assert!(t.filter_sql(&col("nope").eq(lit(1)), &mut p).is_none());
        assert!(t.filter_sql(&col("mode").like(lit("s%")), &mut p).is_none());
        // A nanosecond bound that is not a whole microsecond is not pushed.
        let ns = Expr::Literal(ScalarValue::TimestampNanosecond(Some(1_500), None), None);
        assert!(t.filter_sql(&col("entry_ts").lt(ns), &mut p).is_none());
        // An OR with one untranslatable side is not pushed at all.
        let e = col("mode").eq(lit("a")).or(col("nope").eq(lit(1)));
        let mut p = Vec::new();
        assert!(t.filter_sql(&e, &mut p).is_none());
        assert!(p.is_empty());
    }
}
