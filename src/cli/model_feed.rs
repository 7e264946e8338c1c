//! The demo bot's training, recorded in the registry: each trained model's
//! artifact, metadata, training session and feature importance, and every
//! alias move. One thread owns the registry connection, fed by a channel, so
//! the bot's loop never waits on SQLite.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use anyhow::Context;

use crate::sim::ModelUpdates;
use crate::store::Registry;
use crate::store::registry::{Alias, ModelId, ModelMeta, TrainingSession};

/// The git commit the demo claims its training code is at.
const DEMO_GIT_SHA: &str = "0000000demo";

pub struct ModelFeed {
    tx: Option<SyncSender<(ModelUpdates, String)>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ModelFeed {
    pub fn start(registry: Registry) -> anyhow::Result<Self> {
        let (tx, rx) = sync_channel(256);
        let thread = std::thread::Builder::new()
            .name("quiver-model-feed".into())
            .spawn(move || run(registry, rx))
            .context("starting the model feed thread")?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `updates`, with the data manifest their training used.
    pub fn send(&self, updates: ModelUpdates, manifest: String) {
        if updates.trained.is_empty() && updates.aliases.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx
            && tx.send((updates, manifest)).is_err()
        {
            tracing::error!("the model feed thread has stopped");
        }
    }

    /// Applies what is queued and stops.
    pub fn close(mut self) -> anyhow::Result<()> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the model feed thread panicked"))?,
            None => Ok(()),
        }
    }
}

fn run(mut registry: Registry, rx: Receiver<(ModelUpdates, String)>) -> anyhow::Result<()> {
    while let Ok((updates, manifest)) = rx.recv() {
        for m in &updates.trained {
            let metrics = serde_json::json!({
                "auc": m.auc, "logloss": m.logloss, "ece": m.ece, "samples": m.samples,
            });
            let meta = ModelMeta {
                name: "meta-label".into(),
                git_sha: DEMO_GIT_SHA.into(),
                data_manifest: manifest.clone(),
                params: m.params.clone(),
                metrics: metrics.to_string(),
                parent_id: m.parent_id.as_deref().map(ModelId::parse).transpose()?,
                tags: vec!["demo".into()],
            };
            let id = registry.register(&m.artifact, &meta)?;
            registry.record_training(
                &TrainingSession {
                    session_id: format!("train-{}", &id[..16]),
                    model_id: Some(id),
                    started_ts: m.trained_ts.0,
                    duration_s: m.duration_s,
                    samples: m.samples,
                    auc: Some(m.auc),
                    logloss: Some(m.logloss),
                    metrics: metrics.to_string(),
                },
                &m.importance,
            )?;
        }
        for a in &updates.aliases {
            let (alias, id) = (Alias::parse(a.alias)?, ModelId::parse(&a.model_id)?);
            registry.set_alias_at(&alias, &id, a.reason, a.ts.0)?;
        }
    }
    Ok(())
}
