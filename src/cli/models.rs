//! `quiver models ...`: the model registry. Writes (register, alias) go
//! straight to `<data>/registry.sqlite`, safely beside a running server.

use std::path::{Path, PathBuf};

use std::io::Write;

use anyhow::Context;

use super::output::{self, Format};
use crate::config::Config;
use crate::store::registry::{Alias, ModelMeta, batches_to_json, manifest_of, read_manifest};
use crate::store::{Layout, Registry};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Store a model artifact under its SHA-256 and record its metadata.
    Register(RegisterArgs),
    /// Every model, newest first.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One model (id, unique id prefix, or alias): metadata, lineage, aliases,
    /// feature importance; its artifact is verified against its id.
    Show { id: String },
    /// Give ALIAS to a model from now on (the previous holder's interval closes).
    Alias {
        name: String,
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Which models held an alias, from when to when.
    History {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print the lake's current files as a data manifest for `register --data`.
    Manifest,
    /// Two models side by side: registered metrics, feature importance,
    /// calibration, predictions by regime, and the trades taken while each
    /// held an alias. Deltas are B - A.
    Compare(super::compare::CompareArgs),
}

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// The artifact file.
    pub file: PathBuf,
    /// Commit of the training code.
    #[arg(long)]
    pub git_sha: String,
    /// Data manifest: the lake files the model was trained on, one per line
    /// (`quiver models manifest` prints the current ones).
    #[arg(long, value_name = "MANIFEST")]
    pub data: PathBuf,
    #[arg(long, default_value = "")]
    pub name: String,
    /// Training parameters, a JSON object.
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// Evaluation metrics, a JSON object.
    #[arg(long, default_value = "{}")]
    pub metrics: String,
    /// The model this one was trained from (id, prefix or alias).
    #[arg(long)]
    pub parent: Option<String>,
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Give the new model this alias at once.
    #[arg(long)]
    pub alias: Option<String>,
}

fn open_registry(config: &Config) -> anyhow::Result<Registry> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    Ok(Registry::open(&config.data_dir)?)
}

/// The lake's Parquet files, relative to the data dir.
fn lake_files(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![Layout::new(data_dir).lake()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let rel = path.strip_prefix(data_dir).unwrap_or(&path);
                out.push(rel.display().to_string());
            }
        }
    }
    Ok(out)
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    if let Command::Compare(compare) = &args.command {
        return super::compare::run(&config, compare).await;
    }
    // SQLite is synchronous; these are short calls on a CLI's own thread.
    let mut registry = open_registry(&config)?;
    match &args.command {
        Command::Register(a) => {
            let bytes =
                std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
            let manifest = read_manifest(&a.data)?;
            // Checked before anything is stored.
            let alias = a.alias.as_deref().map(Alias::parse).transpose()?;
            let parent = a
                .parent
                .as_deref()
                .map(|p| registry.resolve(p))
                .transpose()?;
            let id = registry.register(
                &bytes,
                &ModelMeta {
                    name: a.name.clone(),
                    git_sha: a.git_sha.clone(),
                    data_manifest: manifest,
                    params: a.params.clone(),
                    metrics: a.metrics.clone(),
                    parent_id: parent,
                    tags: a.tags.clone(),
                },
            )?;
            if let Some(alias) = &alias {
                registry.set_alias(alias, &id, "set at registration")?;
            }
            writeln!(std::io::stdout(), "{id}")?;
        }
        Command::List { format } => output::print(&registry.list()?, *format)?,
        Command::Show { id } => {
            let id = registry.resolve(id)?;
            let mut model = registry
                .model(&id)?
                .with_context(|| format!("no model {id}"))?;
            let verified = match registry.load(&id) {
                Ok(_) => "ok: the artifact's SHA-256 matches its id".to_string(),
                Err(e) => format!("FAILED: {e}"),
            };
            if let Some(obj) = model.as_object_mut() {
                for key in ["params", "metrics", "tags"] {
                    if let Some(text) = obj.get(key).and_then(|v| v.as_str())
                        && let Ok(parsed) = serde_json::from_str::<serde_json::Value>(text)
                    {
                        obj.insert(key.into(), parsed);
                    }
                }
                obj.insert(
                    "artifact".into(),
                    registry.artifact_path(&id).display().to_string().into(),
                );
                obj.insert("artifact_check".into(), verified.into());
                obj.insert(
                    "aliases".into(),
                    batches_to_json(&registry.aliases_of(&id)?).into(),
                );
                obj.insert(
                    "feature_importance".into(),
                    batches_to_json(&registry.feature_importance_of(&id)?).into(),
                );
            }
            writeln!(
                std::io::stdout(),
                "{}",
                serde_json::to_string_pretty(&model)?
            )?;
        }
        Command::Alias { name, id, reason } => {
            let alias = Alias::parse(name)?;
            let id = registry.resolve(id)?;
            registry.set_alias(&alias, &id, reason)?;
            writeln!(std::io::stdout(), "{name} -> {id}")?;
        }
        Command::History { name, format } => {
            output::print(&registry.alias_history(&Alias::parse(name)?)?, *format)?
        }
        // Handled above, before the registry is opened for writing.
        Command::Compare(_) => {}
        Command::Manifest => write!(
            std::io::stdout(),
            "{}",
            manifest_of(lake_files(&config.data_dir)?)
        )?,
    }
    Ok(())
}
