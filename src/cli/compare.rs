//! `quiver models compare A B`: two models side by side. Their registered
//! metrics, their calibration on labelled predictions, the change in feature
//! importance between their latest training sessions, how their predictions
//! did per regime, and the trades taken while each held an alias (from the
//! alias history). Every delta is B - A. The queries are
//! [`crate::app::compare`]'s; this resolves the models and prints.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::output::{self, Format};
use crate::analytics::compare::{Row, registered_metrics, side_by_side};
use crate::app::compare;
use crate::app::{Load, Session};
use crate::config::Config;
use crate::store::Registry;
use crate::store::registry::{Alias, ModelId, is_model_id};

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The first model: id, unique id prefix, or alias.
    pub a: String,
    /// The second model; deltas are B - A.
    pub b: String,
    /// The alias whose history says when each model was live.
    #[arg(long, default_value = "production")]
    pub alias: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Query a running Flight SQL server instead of the data dir.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

fn round(v: Option<f64>, decimals: i32) -> Option<f64> {
    let scale = 10f64.powi(decimals);
    v.map(|v| (v * scale).round() / scale)
}

/// The rows as a table; values and deltas rounded to 4 decimals, changes
/// to 1.
fn table(rows: &[Row]) -> anyhow::Result<RecordBatch> {
    let f = |name: &str| Field::new(name, DataType::Float64, true);
    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        f("a"),
        f("b"),
        f("delta"),
        f("change_pct"),
    ]));
    let column = |get: &dyn Fn(&Row) -> Option<f64>, decimals: i32| {
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| round(get(r), decimals)),
        ))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.name))),
            column(&|r| r.a, 4),
            column(&|r| r.b, 4),
            column(&Row::delta, 4),
            column(&Row::change_pct, 1),
        ],
    )?)
}

fn describe(id: &str, model: Option<&serde_json::Value>) -> String {
    let field = |k: &str| {
        model
            .and_then(|m| m.get(k))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default()
    };
    match model {
        Some(_) => format!(
            "{id} ({}, registered {}, status {})",
            field("name"),
            field("registered_ts"),
            field("status")
        ),
        None => format!("{id} (not in the registry; seen in predictions only)"),
    }
}

pub async fn run(config: &Config, args: &CompareArgs) -> anyhow::Result<()> {
    let registry = Registry::open_read_only(&config.data_dir)?;
    // Models that scored predictions but were never registered are taken by
    // full id.
    let resolve = |m: &str| match registry.resolve(m) {
        Ok(id) => Ok(id),
        Err(_) if is_model_id(m) => Ok(ModelId::parse(m)?),
        Err(e) => Err(anyhow::Error::new(e).context(format!("model {m:?}"))),
    };
    let (a, b) = (resolve(&args.a)?, resolve(&args.b)?);
    anyhow::ensure!(a != b, "A and B are the same model ({a})");
    let alias = Alias::parse(&args.alias)
        .map_err(|_| anyhow::anyhow!("--alias {:?}: letters, digits, - _ . only", args.alias))?;
    let (model_a, model_b) = (registry.model(&a)?, registry.model(&b)?);
    drop(registry);

    let mut out = std::io::stdout();
    writeln!(out, "A = {}", describe(a.as_str(), model_a.as_ref()))?;
    writeln!(out, "B = {}", describe(b.as_str(), model_b.as_ref()))?;

    let registered = |model: Option<&serde_json::Value>| {
        model
            .and_then(|m| m.get("metrics"))
            .and_then(|m| m.as_str())
            .map(registered_metrics)
            .unwrap_or_default()
    };
    let registered = side_by_side(&registered(model_a.as_ref()), &registered(model_b.as_ref()));
    writeln!(out, "\nRegistered metrics:")?;
    output::print_or_say(
        &[table(&registered)?],
        args.format,
        "no registered metrics for A or B",
    )?;

    let mut session = Session::open(config, args.server.as_deref(), Load::Skip).await?;
    let result = compare_in(&mut session, a.as_str(), b.as_str(), &alias, args, &mut out).await;
    session.close().await?;
    result
}

async fn compare_in(
    session: &mut Session,
    a: &str,
    b: &str,
    alias: &Alias,
    args: &CompareArgs,
    out: &mut std::io::Stdout,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "\nFeature importance (latest training session of each):"
    )?;
    let rows = compare::feature_importance(session, a, b).await?;
    output::print_or_say(
        &[table(&rows)?],
        args.format,
        "no training session with feature importances for A or B",
    )?;

    let rows = compare::calibration(session, a, b).await?;
    writeln!(out, "\nCalibration on labelled predictions (10 bins):")?;
    output::print_or_say(
        &[table(&rows)?],
        args.format,
        "no labelled predictions for A or B",
    )?;

    writeln!(out, "\nPredictions by regime (labelled):")?;
    output::print_or_say(
        &compare::by_regime(session, a, b).await?,
        args.format,
        "no labelled predictions for A or B",
    )?;

    writeln!(
        out,
        "\nClosed trades opened while each held the {} alias (regime empty: all):",
        args.alias
    )?;
    let live = compare::while_live(session, a, b, alias.as_str()).await?;
    output::print_or_say(
        &live,
        args.format,
        &format!(
            "no closed trades opened while A or B held the {} alias",
            args.alias
        ),
    )
}
