//! Alerts that reach people: notices from the metrics rules (`metrics
//! compute`) and the health monitor, delivered to Telegram, Discord and
//! generic (Alertmanager-style) webhooks.
//!
//! ```text
//! producer --Outbox::enqueue(&[Notice])--> <data>/alerts.sqlite  (store::outbox)
//!              severity filter per receiver;         |
//!              one message per (receiver, rule);     |  DeliveryWorker thread
//!              cooldown + outbox_max, one txn        |  (serve, demo; or
//!                                                    v   metrics compute itself)
//!                                  claim (lease) -> HTTP (ureq) -> record attempt
//!                                                    |
//!                                  system.alert_deliveries: every attempt
//! ```
//!
//! # Decisions
//!
//! - **Durable first.** A notice is in SQLite (WAL mode, `synchronous=FULL`,
//!   busy timeout) before any send; the cooldown check and the insert are one
//!   transaction, so concurrent producers (a server and a `metrics compute`
//!   beside it) cannot both pass a cooldown. The rules are stated in
//!   [`crate::store::outbox`], where they are enforced; SQLite stays in `store`.
//! - **Cooldown** is per (receiver, rule, dimensions), counted from the
//!   enqueue: a notice dropped by it is counted
//!   ([`DeliveryStats::cooled_down`]), not stored. A notice later given up
//!   still holds its cooldown (a receiver that is down is not flooded when
//!   it comes back).
//! - **Grouping**: the notices of one rule in one `enqueue` call go to each
//!   receiver as one message listing every dimension set; that message is the
//!   unit of retry, of the cooldown's bookkeeping and of `alert_deliveries`.
//!   Its outbox id is the notice id.
//! - **Retries**: 429, 408, 5xx, timeouts and connection errors are retried
//!   with exponential backoff (`retry_initial` doubling to `retry_max`); a
//!   receiver's `retry_after` (Telegram's `parameters.retry_after`,
//!   Discord's `retry_after` and `Retry-After`) is waited at least, even past
//!   `retry_max`. Other 4xx fail at once (retrying a bad token helps no one).
//!   `attempts_max` and `give_up_after` bound every notice ([`backoff`]).
//! - **At-least-once, in one window only.** A sender claims a row (state
//!   `sending`, a lease of twice `request_timeout` + 5 s) before the request
//!   and records the result after. Killed between the two, the row is
//!   claimed again once the lease lapses and sent again; every other crash
//!   point sends nothing twice. The generic webhook gets the notice id as
//!   `Idempotency-Key` so a receiver can drop that resend; Telegram and
//!   Discord have no such key, so there the window can show a duplicate.
//! - **One delivery thread per process**, one request at a time, blocking
//!   HTTP: delivery volumes are small, and a hang costs at most
//!   `request_timeout`. ureq uses rustls with ring, the TLS stack already in
//!   the tree.
//! - **Who delivers**: `quiver serve` and `quiver demo` run a
//!   [`DeliveryWorker`] (polling every `poll_interval`, woken at once by an
//!   enqueue in the process). `metrics compute` enqueues; through a server it
//!   leaves delivery to it, else it delivers what it enqueued itself for at
//!   most `deliver_wait` and leaves the rest for the next run.
//! - **Secrets** come from `token_env` or `token_file`, never the file's
//!   text; errors name the variable or file; [`crate::config::Secret`]
//!   prints `***`, and every error text from a response or the HTTP client is
//!   redacted of the secret (Telegram's token is part of its URL).
//! - **Counts for `/metrics`**: [`DeliveryWorker::stats`] is an
//!   `Arc<DeliveryStats>` of this process's attempts by receiver and outcome
//!   ([`DeliveryStats::attempts`]), and the notices refused at `outbox_max`
//!   or dropped by a cooldown here. Attempts made by another process
//!   (`metrics compute` delivering itself) are in `system.alert_deliveries`,
//!   not in these counters.
//! - **Config types live in `crate::config`** (`config/alerts.rs`): `config`
//!   sits below `app`, and every section is parsed there.

pub mod backoff;
mod outbox;
pub mod receiver;
mod stats;
mod worker;

pub use crate::store::outbox::{EnqueueReport, Notice, Outcome};
pub use outbox::Outbox;
pub use receiver::{Receiver, Response};
pub use stats::{DeliveryCount, DeliveryStats};
pub use worker::DeliveryWorker;

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::Utc;

use crate::config::Config;
use crate::metrics::values::Alert;
use crate::store::outbox::Claimed;

/// The metrics job's alerts as notices (fired now).
pub fn notices_from_alerts(alerts: &[Alert]) -> Vec<Notice> {
    let fired_at = Utc::now();
    alerts
        .iter()
        .map(|a| Notice {
            source: "metrics".into(),
            rule: a.rule.clone(),
            severity: a.severity.clone(),
            dimensions: serde_json::from_str::<BTreeMap<String, String>>(&a.dimensions)
                .unwrap_or_default(),
            message: a.message.clone(),
            value: a.value,
            fired_at,
        })
        .collect()
}

/// Delivers the messages `ids` from this process until all are done or
/// `alerts.deliver_wait` passes; returns how many are left in the outbox.
pub fn deliver_here(config: &Config, outbox: &Outbox, ids: &[i64]) -> anyhow::Result<usize> {
    let mut deliverer = worker::Deliverer::new(&config.data_dir, &config.alerts, outbox.stats())?;
    deliverer.deliver_until_done(outbox, ids, config.alerts.deliver_wait)
}

/// Sends a test message through the receiver `name` now, outside the
/// outbox (no cooldown, no retry), and returns its answer.
pub fn send_test(config: &Config, name: &str) -> anyhow::Result<Response> {
    let receiver_config = config.alerts.receiver(name).with_context(|| {
        let names: Vec<&str> = config
            .alerts
            .receivers
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        format!(
            "no receiver {name:?} in [alerts] (receivers: {})",
            names.join(", ")
        )
    })?;
    let receiver = Receiver::from_config(receiver_config)?;
    let message = Claimed {
        id: 0,
        receiver: name.to_string(),
        rule: "quiver_test".into(),
        severity: "info".into(),
        notices: vec![Notice {
            source: "test".into(),
            rule: "quiver_test".into(),
            severity: "info".into(),
            dimensions: BTreeMap::new(),
            message: format!("test message from quiver to receiver {name}"),
            value: None,
            fired_at: Utc::now(),
        }],
        attempt: 1,
        enqueued_at_us: crate::store::sqlite::now_us(),
    };
    let agent = receiver::agent(config.alerts.request_timeout);
    Ok(receiver.send(&agent, &message))
}
