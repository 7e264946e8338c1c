//! Compiles validated metrics into DataFusion plans, and plans analyses.
//!
//! A formula or filter is first parsed on its own (one expression, nothing
//! after it) and walked: functions from [`FUNCTIONS`] only; no subqueries,
//! window functions, parameters or qualified function names; at most
//! [`EXPR_NODES_MAX`] nodes nested at most [`EXPR_DEPTH_MAX`] deep. Then
//! DataFusion resolves it against the source's schema and the view is built
//! with the `DataFrame` API:
//!
//! ```text
//! source -> filter -> aggregate(day, dimensions; the formula's aggregates)
//!        -> project(metric, day, dimensions, value, unit, status, target)
//! ```
//!
//! A derived metric joins its inputs' plans on day and dimensions and
//! computes its formula row by row. Its plan contains its inputs' plans, so
//! every metric's SQL (the unparser's rendering) stands alone.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, ScalarValue, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::utils::{expr_as_column_expr, find_aggregate_exprs};
use datafusion::logical_expr::{Expr, LogicalPlan, cast, ident, lit, when};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArguments, Value, visit_expressions,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;
use datafusion::sql::unparser::Unparser;

use super::def::{Direction, MetricDef, MetricSource, Thresholds};
use super::{Analysis, MetricName, MetricsError};

/// Deepest nesting a formula may have (parentheses, CASE, function calls).
pub const EXPR_DEPTH_MAX: usize = 32;
/// Most AST nodes a formula may have.
pub const EXPR_NODES_MAX: usize = 1000;

/// Functions a formula or filter may call: aggregates, then scalars.
pub const FUNCTIONS: &[&str] = &[
    // aggregates
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "median",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "var",
    "var_samp",
    "var_pop",
    "variance",
    "percentile_cont",
    "quantile_cont",
    "approx_percentile_cont",
    "approx_median",
    "approx_distinct",
    "bool_and",
    "bool_or",
    "corr",
    "covar",
    "covar_samp",
    "covar_pop",
    "first_value",
    "last_value",
    "max_drawdown",
    "win_rate",
    "calibration",
    // scalars
    "abs",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "round",
    "trunc",
    "floor",
    "ceil",
    "sqrt",
    "cbrt",
    "power",
    "pow",
    "exp",
    "ln",
    "log",
    "log2",
    "log10",
    "signum",
    "isnan",
    "nanvl",
    "date_trunc",
    "date_part",
    "current_date",
    "now",
    "lower",
    "upper",
    "length",
];

/// Where an expression appears: decides whether it must, or must not,
/// aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprRole {
    /// A table metric's formula: aggregates rows into one value per day and
    /// dimension.
    Formula,
    /// A derived metric's formula: row by row over its inputs' values.
    Derived,
    /// A filter: row by row over the source.
    Filter,
}

/// Parses `text` as exactly one SQL expression and checks it against the
/// allowlist. Returns a message fit to follow "key `formula`: ".
pub fn check_expr(text: &str) -> Result<(), String> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(EXPR_DEPTH_MAX)
        .try_with_sql(text)
        .map_err(parse_message)?;
    let expr = parser.parse_expr().map_err(parse_message)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(format!(
            "one expression only: unexpected `{}` after `{expr}`",
            next.token
        ));
    }
    let mut nodes = 0usize;
    let walk = visit_expressions(&expr, |e| {
        nodes += 1;
        if nodes > EXPR_NODES_MAX {
            return ControlFlow::Break(format!(
                "more than {EXPR_NODES_MAX} terms; split it into derived metrics"
            ));
        }
        match e {
            SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. } => {
                ControlFlow::Break("subqueries are not allowed; use a source view".into())
            }
            SqlExpr::Value(v) if matches!(v.value, Value::Placeholder(_)) => {
                ControlFlow::Break(format!("parameters ({}) are not allowed", v.value))
            }
            SqlExpr::Function(f) => {
                let name = f.name.to_string().to_ascii_lowercase();
                if f.name.0.len() != 1 {
                    return ControlFlow::Break(format!(
                        "`{}`: qualified function names are not allowed",
                        f.name
                    ));
                }
                if !FUNCTIONS.contains(&name.as_str()) {
                    return ControlFlow::Break(format!(
                        "function `{name}` is not allowed (allowed: {})",
                        FUNCTIONS.join(", ")
                    ));
                }
                if f.over.is_some() {
                    return ControlFlow::Break(format!(
                        "`{name}(...) OVER`: window functions are not allowed"
                    ));
                }
                if matches!(f.args, FunctionArguments::Subquery(_))
                    || matches!(f.parameters, FunctionArguments::Subquery(_))
                {
                    return ControlFlow::Break("subqueries are not allowed".into());
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    });
    match walk {
        ControlFlow::Break(message) => Err(message),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn parse_message(e: ParserError) -> String {
    match e {
        ParserError::RecursionLimitExceeded => {
            format!("nested more than {EXPR_DEPTH_MAX} levels deep")
        }
        other => format!("does not parse: {other}"),
    }
}

/// One metric, compiled.
#[derive(Debug, Clone)]
pub struct CompiledMetric {
    pub def: MetricDef,
    /// Columns: metric, day, the dimensions, value, unit, status, target.
    pub plan: LogicalPlan,
    /// The plan as SQL (DataFusion's unparser).
    pub sql: String,
}

fn root(e: &DataFusionError) -> String {
    e.find_root().to_string()
}

/// Compiles every metric (in the file's dependency order) against `ctx`'s
/// catalog; all or nothing.
pub async fn compile_metrics(
    ctx: &SessionContext,
    file: &Path,
    metrics: &[MetricDef],
) -> Result<Vec<CompiledMetric>, MetricsError> {
    let mut compiled: HashMap<MetricName, CompiledMetric> = HashMap::new();
    let mut out = Vec::with_capacity(metrics.len());
    for def in metrics {
        let metric = compile_metric(ctx, file, def, &compiled).await?;
        compiled.insert(def.name.clone(), metric.clone());
        out.push(metric);
    }
    Ok(out)
}

/// Errors about one metric, each at the key that is wrong.
#[derive(Clone, Copy)]
struct MetricErr<'a> {
    file: &'a Path,
    metric: &'a str,
}

impl<'a> MetricErr<'a> {
    fn at(self, key: &str, message: String) -> MetricsError {
        MetricsError::key(self.file, Some(self.metric), key, message)
    }

    /// A DataFusion error at `key`, by its root cause.
    fn df(self, key: &'static str) -> impl Fn(DataFusionError) -> MetricsError + 'a {
        move |e| self.at(key, root(&e))
    }
}

/// Compiles one metric; `compiled` holds the metrics before it in dependency
/// order, which a derived metric reads.
async fn compile_metric(
    ctx: &SessionContext,
    file: &Path,
    def: &MetricDef,
    compiled: &HashMap<MetricName, CompiledMetric>,
) -> Result<CompiledMetric, MetricsError> {
    let err = MetricErr {
        file,
        metric: &def.name,
    };
    check_expr(&def.formula).map_err(|m| err.at("formula", m))?;
    let values = match &def.source {
        MetricSource::Table {
            schema,
            table,
            time,
        } => table_values(ctx, def, schema, table, time.as_deref(), err).await?,
        MetricSource::Derived { inputs } => derived_values(ctx, def, inputs, compiled, err)?,
    };
    let plan = metric_plan(def, values, err)?;
    let sql =
        plan_sql(&plan).map_err(|e| err.at("formula", format!("rendering SQL: {}", root(&e))))?;
    check_plans_back(ctx, &plan, &sql, err).await?;
    Ok(CompiledMetric {
        def: def.clone(),
        plan,
        sql,
    })
}

/// A table metric's values (columns day, dimensions, value): the source's
/// rows, filtered, grouped by day and dimensions, the formula over each group.
async fn table_values(
    ctx: &SessionContext,
    def: &MetricDef,
    schema: &str,
    table: &str,
    time: Option<&str>,
    err: MetricErr<'_>,
) -> Result<DataFrame, MetricsError> {
    let reference = TableReference::partial(schema, table);
    let mut df = ctx
        .table(reference)
        .await
        .map_err(|e| err.at("source", format!("`{schema}.{table}`: {}", root(&e))))?;
    let day = day_expr(&df, schema, table, time, err)?;
    if let Some(filter) = &def.filter {
        df = filter_rows(df, filter, err)?;
    }
    for dimension in &def.dimensions {
        if !df.schema().has_column_with_unqualified_name(dimension) {
            return Err(err.at(
                "dimensions",
                format!("`{schema}.{table}` has no column `{dimension}`"),
            ));
        }
    }
    aggregate_formula(df, day, def, err)
}

/// The day a row falls on: its `time` column as a date, or today for a
/// snapshot (`time: none`).
fn day_expr(
    df: &DataFrame,
    schema: &str,
    table: &str,
    time: Option<&str>,
    err: MetricErr<'_>,
) -> Result<Expr, MetricsError> {
    let Some(column) = time else {
        return Ok(datafusion::functions::expr_fn::current_date());
    };
    let field = df
        .schema()
        .field_with_unqualified_name(column)
        .map_err(|_| {
            err.at(
                "time",
                format!("`{schema}.{table}` has no column `{column}`"),
            )
        })?;
    match field.data_type() {
        DataType::Date32 => Ok(ident(column)),
        DataType::Timestamp(..) | DataType::Date64 => {
            // Event tables carry their day as the partition column `date`:
            // grouping on it prunes files.
            let partition = df.schema().field_with_unqualified_name("date");
            Ok(match partition {
                Ok(f) if column == "ts" && f.data_type() == &DataType::Date32 => ident("date"),
                _ => cast(ident(column), DataType::Date32),
            })
        }
        other => Err(err.at(
            "time",
            format!("`{column}` is {other}, not a timestamp or date"),
        )),
    }
}

/// The rows `filter` picks; a filter may not aggregate.
fn filter_rows(df: DataFrame, filter: &str, err: MetricErr<'_>) -> Result<DataFrame, MetricsError> {
    check_expr(filter).map_err(|m| err.at("filter", m))?;
    let predicate = df.parse_sql_expr(filter).map_err(err.df("filter"))?;
    if !find_aggregate_exprs([&predicate]).is_empty() {
        return Err(err.at("filter", "a filter picks rows; it cannot aggregate".into()));
    }
    df.filter(predicate).map_err(err.df("filter"))
}

/// Groups `df` by `day` and the dimensions and computes the formula, which
/// must aggregate, over each group: columns day, dimensions, value.
fn aggregate_formula(
    df: DataFrame,
    day: Expr,
    def: &MetricDef,
    err: MetricErr<'_>,
) -> Result<DataFrame, MetricsError> {
    let formula = df.parse_sql_expr(&def.formula).map_err(err.df("formula"))?;
    let aggregates = find_aggregate_exprs([&formula]);
    if aggregates.is_empty() {
        return Err(err.at(
            "formula",
            "must aggregate rows (e.g. avg(pnl_bps)): a metric is one value per day and dimension"
                .into(),
        ));
    }
    // Aliases leave the columns unqualified above the aggregate, so
    // the rendered SQL names no table outside its own scope.
    let mut group = vec![day.alias("day")];
    group.extend(
        def.dimensions
            .iter()
            .map(|d| ident(d.as_str()).alias(d.as_str())),
    );
    let grouped = df
        .aggregate(group, aggregates.clone())
        .map_err(err.df("formula"))?;
    let value = formula
        .transform_down(|node| {
            if aggregates.contains(&node) {
                let column = expr_as_column_expr(&node, grouped.logical_plan())?;
                Ok(Transformed::new(column, true, TreeNodeRecursion::Jump))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map_err(err.df("formula"))?
        .data;
    let mut columns = vec![ident("day")];
    columns.extend(def.dimensions.iter().map(|d| ident(d.as_str())));
    columns.push(cast(value, DataType::Float64).alias("value"));
    grouped.select(columns).map_err(err.df("formula"))
}

/// A derived metric's values (columns day, dimensions, value): its inputs
/// joined, the formula row by row, which may not aggregate.
fn derived_values(
    ctx: &SessionContext,
    def: &MetricDef,
    inputs: &[MetricName],
    compiled: &HashMap<MetricName, CompiledMetric>,
    err: MetricErr<'_>,
) -> Result<DataFrame, MetricsError> {
    let joined = join_inputs(ctx, def, inputs, compiled, err)?;
    let first = inputs.first().map(MetricName::as_str).unwrap_or_default();
    let formula = joined
        .parse_sql_expr(&def.formula)
        .map_err(err.df("formula"))?;
    if !find_aggregate_exprs([&formula]).is_empty() {
        return Err(err.at(
            "formula",
            "a derived metric combines its inputs' values row by row; it cannot aggregate".into(),
        ));
    }
    let qualified = |name: &str| Expr::Column(Column::new(Some(TableReference::bare(first)), name));
    let mut columns = vec![qualified("day").alias("day")];
    columns.extend(
        def.dimensions
            .iter()
            .map(|d| qualified(d).alias(d.as_str())),
    );
    columns.push(cast(formula, DataType::Float64).alias("value"));
    joined.select(columns).map_err(err.df("formula"))
}

/// The inputs' plans, each aliased by its name with its value renamed to it,
/// inner-joined on day and dimensions (the first input's columns on the left).
fn join_inputs(
    ctx: &SessionContext,
    def: &MetricDef,
    inputs: &[MetricName],
    compiled: &HashMap<MetricName, CompiledMetric>,
    err: MetricErr<'_>,
) -> Result<DataFrame, MetricsError> {
    let mut joined: Option<DataFrame> = None;
    let first = inputs.first().map(MetricName::as_str).unwrap_or_default();
    for input in inputs {
        let Some(metric) = compiled.get(input) else {
            return Err(err.at("inputs", format!("no metric is named `{input}`")));
        };
        let mut columns = vec![ident("day")];
        columns.extend(def.dimensions.iter().map(|d| ident(d.as_str())));
        columns.push(ident("value").alias(input.as_str()));
        let side = DataFrame::new(ctx.state(), metric.plan.clone())
            .select(columns)
            .and_then(|df| df.alias(input))
            .map_err(err.df("inputs"))?;
        joined = Some(match joined {
            None => side,
            Some(left) => {
                let keys: Vec<String> = std::iter::once("day")
                    .chain(def.dimensions.iter().map(String::as_str))
                    .map(String::from)
                    .collect();
                let left_keys: Vec<String> = keys.iter().map(|k| format!("{first}.{k}")).collect();
                let right_keys: Vec<String> = keys.iter().map(|k| format!("{input}.{k}")).collect();
                let l: Vec<&str> = left_keys.iter().map(String::as_str).collect();
                let r: Vec<&str> = right_keys.iter().map(String::as_str).collect();
                left.join(side, JoinType::Inner, &l, &r, None)
                    .map_err(err.df("inputs"))?
            }
        });
    }
    joined.ok_or_else(|| err.at("inputs", "empty".into()))
}

/// The metric's view over its values: metric, day, dimensions, value, unit,
/// status, target.
fn metric_plan(
    def: &MetricDef,
    values: DataFrame,
    err: MetricErr<'_>,
) -> Result<LogicalPlan, MetricsError> {
    let mut columns = vec![lit(def.name.as_str()).alias("metric"), ident("day")];
    columns.extend(def.dimensions.iter().map(|d| ident(d.as_str())));
    columns.push(ident("value"));
    columns.push(lit(def.unit.as_str()).alias("unit"));
    columns.push(status_expr(def.thresholds.as_ref()).alias("status"));
    columns.push(target_expr(def).alias("target"));
    Ok(values
        .select(columns)
        .map_err(err.df("formula"))?
        .into_unoptimized_plan())
}

/// The SQL is what `metrics show` prints and what a client may run; it must
/// mean the same plan. The unparser cannot render every form (e.g.
/// `percentile_cont(p) WITHIN GROUP (ORDER BY x)`), so this checks that `sql`
/// plans back to `plan`'s columns.
async fn check_plans_back(
    ctx: &SessionContext,
    plan: &LogicalPlan,
    sql: &str,
    err: MetricErr<'_>,
) -> Result<(), MetricsError> {
    let replanned = ctx.state().create_logical_plan(sql).await.map_err(|e| {
        err.at(
            "formula",
            format!(
                "compiles to SQL that does not plan back ({}); write it another way \
                     (e.g. percentile_cont(x, 0.95) rather than WITHIN GROUP)",
                root(&e)
            ),
        )
    })?;
    let names = |p: &LogicalPlan| -> Vec<String> {
        p.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    if names(&replanned) != names(plan) {
        return Err(err.at(
            "formula",
            format!(
                "compiles to SQL whose columns ({}) differ from the plan's ({})",
                names(&replanned).join(", "),
                names(plan).join(", ")
            ),
        ));
    }
    Ok(())
}

/// `no_data`, then `critical`, then `warning`, else `ok`.
fn status_expr(thresholds: Option<&Thresholds>) -> Expr {
    let value = ident("value");
    let mut case = when(value.clone().is_null(), lit("no_data"));
    if let Some(t) = thresholds {
        let bad = |threshold: f64| match t.direction {
            Direction::Above => value.clone().gt_eq(lit(threshold)),
            Direction::Below => value.clone().lt_eq(lit(threshold)),
        };
        for (threshold, status) in [(t.critical, "critical"), (t.warning, "warning")] {
            if let Some(threshold) = threshold {
                case = case.when(bad(threshold), lit(status));
            }
        }
    }
    // `otherwise` fails only if no WHEN was added; one always is.
    case.otherwise(lit("ok")).unwrap_or_else(|_| lit("ok"))
}

fn target_expr(def: &MetricDef) -> Expr {
    let none = lit(ScalarValue::Float64(None));
    let mut targets = def.targets.iter();
    let Some((mode, target)) = targets.next() else {
        return none;
    };
    let mut case = when(ident("mode").eq(lit(mode.as_str())), lit(*target));
    for (mode, target) in targets {
        case = case.when(ident("mode").eq(lit(mode.as_str())), lit(*target));
    }
    case.otherwise(none.clone()).unwrap_or(none)
}

/// The plan as readable SQL that DataFusion parses back to the same plan.
pub fn plan_sql(plan: &LogicalPlan) -> Result<String, DataFusionError> {
    let statement = Unparser::default().with_pretty(true).plan_to_sql(plan)?;
    Ok(format!("{statement:#}"))
}

/// Plans every analysis against `ctx` (whose `analysis` schema `register`
/// fills as they succeed, so an analysis may read another); all or nothing.
pub async fn plan_analyses(
    ctx: &SessionContext,
    analyses: &[Analysis],
    mut register: impl FnMut(&Analysis, LogicalPlan) -> Result<(), DataFusionError>,
) -> Result<(), MetricsError> {
    let mut pending: Vec<&Analysis> = analyses.iter().collect();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut first_error = None;
        for analysis in pending.iter().copied() {
            match plan_analysis(ctx, analysis).await {
                Ok(plan) => register(analysis, plan).map_err(|e| {
                    MetricsError::analysis(&analysis.path, &analysis.name, root(&e))
                })?,
                Err(e) => {
                    first_error.get_or_insert(e);
                    failed.push(analysis);
                }
            }
        }
        if failed.len() == pending.len() {
            // No progress: what is left fails on its own, not for want of
            // another analysis.
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        pending = failed;
    }
    Ok(())
}

pub async fn plan_analysis(
    ctx: &SessionContext,
    analysis: &Analysis,
) -> Result<LogicalPlan, MetricsError> {
    let err = |e: DataFusionError| MetricsError::analysis(&analysis.path, &analysis.name, root(&e));
    let state = ctx.state();
    let plan = state
        .create_logical_plan(&analysis.sql)
        .await
        .map_err(err)?;
    datafusion::prelude::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(err)?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_formulas_are_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("1); DROP TABLE x; --", "unexpected `)`"),
            ("avg(x); DROP TABLE x", "unexpected `;`"),
            ("(SELECT max(x) FROM t)", "subqueries"),
            ("x IN (SELECT 1)", "subqueries"),
            ("EXISTS (SELECT 1)", "subqueries"),
            (
                "read_parquet('/etc/passwd')",
                "function `read_parquet` is not allowed",
            ),
            ("sum(x) OVER (ORDER BY ts)", "window functions"),
            ("pg_catalog.sum(x)", "qualified"),
            ("avg(x) + $1", "parameters"),
            ("COPY t TO '/tmp/x'", "one expression only"),
            ("", "does not parse"),
        ];
        for (formula, expected) in cases {
            let message = check_expr(formula).unwrap_err();
            assert!(message.contains(expected), "{formula}: {message}");
        }
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(
            check_expr(&deep)
                .unwrap_err()
                .contains("nested more than 32")
        );
        let long = vec!["x"; 2000].join(" + ");
        assert!(
            check_expr(&long)
                .unwrap_err()
                .contains("more than 1000 terms")
        );
    }

    #[test]
    fn ordinary_formulas_pass() {
        for formula in [
            "avg(CASE WHEN pnl_bps > 0 THEN 1.0 ELSE 0.0 END)",
            "sum(pnl_bps) FILTER (WHERE pnl_bps > 0) / -sum(pnl_bps) FILTER (WHERE pnl_bps < 0)",
            "percentile_cont(duration_ms, 0.95)",
            "count(DISTINCT signal_id)",
            "max_drawdown(pnl_bps, ts)",
            "win_rate(pnl_bps)",
            "calibration(predicted_prob, label)['ece']",
        ] {
            check_expr(formula).unwrap();
        }
    }
}
