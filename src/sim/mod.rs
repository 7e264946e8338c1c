//! A seeded, deterministic simulator of a realistic trading bot, for `quiver demo`,
//! `quiver simulate`, tests and benchmarks.
//!
//! Each *cycle* is one signal on one symbol, at a time the caller gives:
//! market context -> signal -> prediction -> six gate decisions -> trade or
//! shadow trade, with the decision-trace steps of the cycle. Later cycles emit
//! what resolves by then: trade closes, shadow-trade outcomes, prediction labels.
//! Models retrain after 400 signals, then every 2,500, and move through `shadow` to
//! `production`, sometimes rolling back.
//!
//! The numbers are shaped like a real bot's: regimes follow a Markov chain
//! (TREND, RANGE, rare PANIC with wide spreads and high volatility); returns are
//! Student-t (fat tails) with an edge that depends on the model's probability and
//! the regime, so the win rate of the trades taken sits near 55-60% and PANIC loses; execution dominates
//! the decision latency, with a lognormal tail. Same seed and same clock, same
//! events.
//!
//! A client of the library: it uses only [`crate::event`] and [`crate::gates`].
//! The cycle's stages are in `cycle.rs`; this file holds the bot's state, its
//! markets and its models.

mod cycle;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, StudentT};

use crate::event::*;
use crate::gates::GatesConfig;

/// Instruments the demo bot trades, with a starting price.
pub const SYMBOLS: &[(&str, f64)] = &[
    ("BTC-USD", 64_000.0),
    ("ETH-USD", 3_200.0),
    ("SOL-USD", 145.0),
    ("AVAX-USD", 32.0),
    ("LINK-USD", 14.5),
];

#[derive(Debug, Clone)]
struct Market {
    symbol: &'static str,
    price: f64,
    regime: Regime,
    /// +1 up-trend, -1 down-trend.
    drift_sign: f64,
}

/// Something that happens later: a close, a shadow resolution, a label.
#[derive(Debug)]
struct Pending {
    due: Ts,
    order: u64,
    event: Event,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

/// Counts of what the simulator produced, for the demo's summary.
#[derive(Debug, Default, Clone)]
pub struct SimTotals {
    pub cycles: u64,
    pub trades_opened: u64,
    pub trades_closed: u64,
    pub wins: u64,
    pub blocked: u64,
}

/// A model the bot trained: its artifact and what the registry should know.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// SHA-256 (hex) of `artifact`: the id signals and predictions carry.
    pub model_id: String,
    pub artifact: Vec<u8>,
    pub parent_id: Option<String>,
    pub trained_ts: Ts,
    pub samples: i64,
    pub duration_s: f64,
    pub auc: f64,
    pub logloss: f64,
    pub ece: f64,
    /// JSON object.
    pub params: String,
    pub importance: Vec<(String, f64)>,
}

/// A model took an alias (`production`, `shadow`) at a time.
#[derive(Debug, Clone)]
pub struct AliasChange {
    pub alias: &'static str,
    pub model_id: String,
    pub ts: Ts,
    pub reason: &'static str,
}

/// What the bot's training did since it was last asked, for the registry.
#[derive(Debug, Default)]
pub struct ModelUpdates {
    pub trained: Vec<TrainedModel>,
    pub aliases: Vec<AliasChange>,
}

/// The features the demo model uses (and the demo's trades carry at entry).
pub const FEATURES: [&str; 6] = [
    "win_probability",
    "signal_strength",
    "expected_edge_bps",
    "spread_bps",
    "volume_musd",
    "volatility",
];

/// The demo bot.
pub struct Simulator {
    rng: ChaCha8Rng,
    gates: GatesConfig,
    markets: Vec<Market>,
    pending: BinaryHeap<Reverse<Pending>>,
    order: u64,
    models: Vec<String>,
    production_model: String,
    shadow_model: Option<String>,
    signals_since_training: u64,
    updates: ModelUpdates,
    pub totals: SimTotals,
}

/// Signals between two trainings: at the demo's 500 events/s (26 signals/s)
/// about every 100 s, and each model is judged on ~2,500 labelled
/// predictions, enough that its drift and calibration figures are not noise.
const RETRAIN_EVERY: u64 = 2_500;

/// Signals before the first retraining: the initial model is trained on
/// little data, so its first challenger comes early.
const FIRST_RETRAIN_AFTER: u64 = 400;

impl Simulator {
    pub fn new(seed: u64, gates: GatesConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let markets = SYMBOLS
            .iter()
            .map(|(symbol, price)| Market {
                symbol,
                price: *price,
                regime: Regime::Range,
                drift_sign: 1.0,
            })
            .collect();
        let mut sim = Self {
            rng,
            gates,
            markets,
            pending: BinaryHeap::new(),
            order: 0,
            models: Vec::new(),
            production_model: String::new(),
            shadow_model: None,
            signals_since_training: 0,
            updates: ModelUpdates::default(),
            totals: SimTotals::default(),
        };
        let first = sim.train(Ts(0), None);
        sim.production_model = first.clone();
        sim.updates.aliases.push(AliasChange {
            alias: "production",
            model_id: first,
            ts: Ts(0),
            reason: "initial model",
        });
        sim
    }

    /// Models trained and aliases moved since the last call. The initial
    /// model's times are 0 (the start of the simulated clock); a caller may
    /// set them to the first cycle's time.
    pub fn take_model_updates(&mut self) -> ModelUpdates {
        std::mem::take(&mut self.updates)
    }

    /// Trains a model: a small logistic model over [`FEATURES`] whose artifact
    /// (JSON) is hashed into its id.
    fn train(&mut self, now: Ts, parent: Option<String>) -> String {
        let weights: Vec<f64> = FEATURES
            .iter()
            .map(|_| round4(self.rng.random_range(-1.0..1.0)))
            .collect();
        let bias = round4(self.rng.random_range(-0.2..0.2));
        let artifact = serde_json::json!({
            "kind": "logistic_regression",
            "features": FEATURES,
            "weights": weights,
            "bias": bias,
            "parent": parent,
        })
        .to_string()
        .into_bytes();
        let model_id = sha256_hex(&artifact);
        let total: f64 = weights.iter().map(|w| w.abs()).sum::<f64>().max(1e-9);
        let importance = FEATURES
            .iter()
            .zip(&weights)
            .map(|(f, w)| (f.to_string(), round4(w.abs() / total)))
            .collect();
        let auc = round4(0.60 + self.rng.random_range(0.0..0.08));
        let ece = round4(self.rng.random_range(0.01..0.06));
        self.updates.trained.push(TrainedModel {
            model_id: model_id.clone(),
            artifact,
            parent_id: parent,
            trained_ts: now,
            samples: self.rng.random_range(40_000..60_000),
            duration_s: round2(self.rng.random_range(20.0..90.0)),
            auc,
            logloss: round4(0.69 - (auc - 0.5) * 0.4),
            ece,
            params: format!(
                "{{\"learning_rate\":{:.3},\"l2\":{:.4},\"epochs\":{}}}",
                self.rng.random_range(0.01..0.1),
                self.rng.random_range(0.0001..0.01),
                self.rng.random_range(5..20)
            ),
            importance,
        });
        self.models.push(model_id.clone());
        model_id
    }

    fn id(&mut self) -> String {
        uuid::Uuid::from_u128(self.rng.random()).to_string()
    }

    fn header(&mut self, symbol: &str, level: Level, ts: Ts) -> EventHeader {
        EventHeader {
            event_id: self.id(),
            ts,
            symbol: symbol.to_string(),
            level,
        }
    }

    fn later(&mut self, due: Ts, event: Event) {
        self.order += 1;
        self.pending.push(Reverse(Pending {
            due,
            order: self.order,
            event,
        }));
    }

    /// Events due at or before `now` that were scheduled by earlier cycles.
    pub fn due(&mut self, now: Ts, out: &mut Vec<Event>) {
        while self.pending.peek().is_some_and(|p| p.0.due <= now) {
            if let Some(Reverse(p)) = self.pending.pop() {
                out.push(p.event);
            }
        }
    }

    fn retrain(&mut self, now: Ts, out: &mut Vec<Event>) {
        // The previous shadow model is promoted (or rolled back) first.
        if let Some(shadow) = self.shadow_model.take() {
            let kind = if self.rng.random_bool(0.85) {
                ModelEventKind::Deployed
            } else {
                ModelEventKind::RolledBack
            };
            let alias = match kind {
                ModelEventKind::Deployed => {
                    self.production_model = shadow.clone();
                    self.updates.aliases.push(AliasChange {
                        alias: "production",
                        model_id: shadow.clone(),
                        ts: now,
                        reason: "promoted from shadow",
                    });
                    "production"
                }
                _ => "shadow",
            };
            let h = self.header("BTC-USD", Level::Warning, now);
            out.push(Event::ModelEvent(ModelEvent {
                header: h,
                model_id: shadow,
                kind,
                metrics: "{}".into(),
                alias: Some(alias.into()),
            }));
        }
        let id = self.train(now, Some(self.production_model.clone()));
        let trained = self.updates.trained.last();
        let (auc, ece, samples) = trained.map_or((0.0, 0.0, 0), |t| (t.auc, t.ece, t.samples));
        let metrics = format!(
            "{{\"auc\":{auc:.4},\"ece\":{ece:.4},\"samples\":{samples},\"parent\":\"{}\"}}",
            self.production_model
        );
        self.updates.aliases.push(AliasChange {
            alias: "shadow",
            model_id: id.clone(),
            ts: now,
            reason: "newly trained",
        });
        for (kind, alias) in [
            (ModelEventKind::Trained, None),
            (ModelEventKind::Deployed, Some("shadow".to_string())),
        ] {
            let h = self.header("BTC-USD", Level::Warning, now);
            out.push(Event::ModelEvent(ModelEvent {
                header: h,
                model_id: id.clone(),
                kind,
                metrics: metrics.clone(),
                alias,
            }));
        }
        self.shadow_model = Some(id);
    }

    fn step_market(&mut self, m: usize) {
        let next = {
            let r: f64 = self.rng.random();
            match self.markets[m].regime {
                Regime::Trend if r < 0.010 => Regime::Range,
                Regime::Trend if r < 0.012 => Regime::Panic,
                Regime::Range if r < 0.008 => Regime::Trend,
                Regime::Range if r < 0.010 => Regime::Panic,
                Regime::Panic if r < 0.06 => Regime::Range,
                current => current,
            }
        };
        if next != self.markets[m].regime && next == Regime::Trend {
            self.markets[m].drift_sign = if self.rng.random_bool(0.5) { 1.0 } else { -1.0 };
        }
        self.markets[m].regime = next;
        let (drift, vol) = match next {
            Regime::Trend => (0.00004 * self.markets[m].drift_sign, 0.0008),
            Regime::Range => (0.0, 0.0005),
            Regime::Panic => (-0.0002, 0.003),
        };
        let shock = sample(&mut self.rng, StudentT::new(4.0)) * vol;
        let market = &mut self.markets[m];
        market.price = round4((market.price * (1.0 + drift + shock)).max(0.01));
    }

    /// A lognormal latency in ms with the given median.
    fn latency(&mut self, median_ms: f64, sigma: f64) -> f64 {
        round3(sample(&mut self.rng, LogNormal::new(median_ms.ln(), sigma)))
    }
}

/// Draws from a distribution whose parameters are constants of this module (so
/// construction cannot fail at run time); falls back to 0 if one ever does.
fn sample<D, E>(rng: &mut ChaCha8Rng, dist: Result<D, E>) -> f64
where
    D: Distribution<f64>,
{
    dist.map(|d| d.sample(rng)).unwrap_or(0.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, cycles: usize) -> Vec<Event> {
        let mut sim = Simulator::new(seed, GatesConfig::builtin().unwrap());
        let mut out = Vec::new();
        let start = 1_760_000_000_000_000i64;
        for i in 0..cycles {
            sim.cycle(Ts(start + i as i64 * 100_000), &mut out);
        }
        sim.due(Ts(i64::MAX), &mut out);
        out
    }

    #[test]
    fn same_seed_same_events() {
        assert_eq!(run(7, 300), run(7, 300));
        assert_ne!(run(7, 50), run(8, 50));
    }

    #[test]
    fn events_are_valid_and_look_like_a_bot() {
        let events = run(42, 20_000);
        let limits = ValidationLimits {
            future_skew_max: std::time::Duration::from_secs(u32::MAX as u64),
            ..ValidationLimits::default()
        };
        for e in &events {
            e.validate(&limits, Ts(0)).unwrap();
        }
        let closes: Vec<f64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Trade(t) if t.kind == TradeKind::Close => t.pnl_bps,
                _ => None,
            })
            .collect();
        assert!(closes.len() > 500, "{} trades", closes.len());
        let win_rate = closes.iter().filter(|p| **p > 0.0).count() as f64 / closes.len() as f64;
        assert!((0.40..0.62).contains(&win_rate), "win rate {win_rate}");
        // Fat tails: the worst loss is many times the median absolute move.
        let mut abs: Vec<f64> = closes.iter().map(|p| p.abs()).collect();
        abs.sort_by(f64::total_cmp);
        let median = abs[abs.len() / 2];
        assert!(
            abs[abs.len() - 1] > 6.0 * median,
            "max {} median {median}",
            abs[abs.len() - 1]
        );
        // Execution dominates the trace latency.
        let (mut exec, mut total) = (0.0, 0.0);
        for e in &events {
            if let Event::TraceStep(s) = e {
                total += s.duration_ms;
                if s.step == "trade_execution" {
                    exec += s.duration_ms;
                }
            }
        }
        assert!(exec / total > 0.5, "execution share {}", exec / total);
        assert!(events.iter().any(|e| matches!(e, Event::ModelEvent(_))));
        for regime in Regime::ALL {
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, Event::Signal(s) if s.regime == *regime)),
                "no {regime} signals"
            );
        }
    }
}
