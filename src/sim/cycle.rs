//! One signal cycle, stage by stage: market context -> signal and prediction
//! -> gate decisions -> outcome -> trade or shadow trade -> trace -> label.
//!
//! Every stage draws from the simulator's one random stream, so the stages run
//! in this order and each draws in the order written: same seed, same events.

use rand::Rng;
use rand_distr::{Beta, LogNormal, Normal, StudentT};

use super::{FIRST_RETRAIN_AFTER, RETRAIN_EVERY};
use super::{Market, Simulator, round2, round3, round4, sample};
use crate::event::*;

/// The fee every trade pays, in basis points.
const FEES_BPS: f64 = 5.0;

/// The market as the bot sees it when a signal comes in (unrounded; the
/// logged context is rounded).
struct Conditions {
    spread_bps: f64,
    volume: f64,
    volatility: f64,
}

/// One cycle's signal and what the later stages read from it.
struct CycleSignal {
    now: Ts,
    market: Market,
    conditions: Conditions,
    mode: Mode,
    side: Side,
    strength: f64,
    /// The model's probability that the trade wins.
    predicted: f64,
    /// The true probability that it wins.
    true_p: f64,
    signal_id: String,
    trace_id: String,
    hold_s: f64,
    /// When the trade closes and the prediction is labelled.
    close_at: Ts,
    model: String,
}

impl CycleSignal {
    /// The edge the bot expects from the model's probability, net of half the
    /// spread.
    fn expected_edge_bps(&self) -> f64 {
        let typical_move_bps = match self.mode {
            Mode::Scalp => 40.0,
            Mode::Runner => 120.0,
        };
        (self.predicted - 0.5) * 2.0 * typical_move_bps - self.conditions.spread_bps / 2.0
    }

    /// The value `gate` judges and the inputs its decision records.
    fn gate_input(&self, gate: Gate, regime_allowed: bool) -> (f64, String) {
        let predicted = self.predicted;
        let strength = self.strength;
        let model = &self.model;
        let mode = self.mode;
        let Conditions {
            spread_bps, volume, ..
        } = self.conditions;
        let expected_edge = self.expected_edge_bps();
        match gate {
            Gate::MetaLabel => (
                predicted,
                format!("{{\"win_probability\":{predicted:.4},\"model_id\":\"{model}\"}}"),
            ),
            Gate::CostGate => (
                expected_edge,
                format!(
                    "{{\"expected_edge_bps\":{expected_edge:.3},\"fees_bps\":{FEES_BPS},\"spread_bps\":{spread_bps:.3}}}"
                ),
            ),
            Gate::ConfidenceGate => (strength, format!("{{\"signal_strength\":{strength:.4}}}")),
            Gate::RegimeGate => (
                f64::from(u8::from(regime_allowed)),
                format!(
                    "{{\"regime\":\"{}\",\"mode\":\"{mode}\"}}",
                    self.market.regime
                ),
            ),
            Gate::SpreadGate => (spread_bps, format!("{{\"spread_bps\":{spread_bps:.3}}}")),
            Gate::VolumeGate => (volume, format!("{{\"volume_musd\":{volume:.4}}}")),
        }
    }
}

/// How the trade (or the shadow trade) would end, in basis points.
struct Outcome {
    gross: f64,
    pnl_bps: f64,
    mae: f64,
    mfe: f64,
}

impl Simulator {
    /// Runs one signal cycle at `now`, appending its events (and everything that
    /// came due) to `out`.
    pub fn cycle(&mut self, now: Ts, out: &mut Vec<Event>) {
        self.due(now, out);
        self.totals.cycles += 1;
        let m = self.rng.random_range(0..self.markets.len());
        self.step_market(m);
        let market = self.markets[m].clone();
        let conditions = self.market_context(&market, now, out);
        let signal = self.signal(market, conditions, now, out);
        let mut trace = self.start_trace(&signal);
        let first_fail = self.gate_decisions(&signal, &mut trace, out);
        let outcome = self.outcome(&signal);
        match first_fail {
            None => self.trade(&signal, &outcome, &mut trace, out),
            Some(gate) => self.shadow_trade(&signal, gate, &outcome, &mut trace, out),
        }
        out.extend(trace.events(self));
        self.schedule_label(signal, &outcome);
        self.count_toward_retraining(now, out);
    }

    /// Draws the market's spread, volume and volatility for its regime and
    /// logs them.
    fn market_context(&mut self, market: &Market, now: Ts, out: &mut Vec<Event>) -> Conditions {
        let (spread_mu, vol_base) = match market.regime {
            Regime::Trend => (1.0_f64.ln(), 0.55),
            Regime::Range => (0.7_f64.ln(), 0.35),
            Regime::Panic => (2.3_f64.ln(), 1.40),
        };
        let spread_bps = sample(&mut self.rng, LogNormal::new(spread_mu + 0.6, 0.45)).max(0.1);
        let volume = sample(&mut self.rng, LogNormal::new(0.3, 0.8));
        let volatility = vol_base * sample(&mut self.rng, LogNormal::new(0.0, 0.15));
        let h = self.header(market.symbol, Level::Debug, now);
        out.push(Event::MarketContext(MarketContext {
            header: h,
            price: market.price,
            spread_bps: round2(spread_bps),
            volume: round2(volume),
            volatility: round3(volatility),
            regime: market.regime,
        }));
        Conditions {
            spread_bps,
            volume,
            volatility,
        }
    }

    /// Draws the signal, the production model's prediction and the true
    /// probability behind it, and logs the signal and the prediction.
    fn signal(
        &mut self,
        market: Market,
        conditions: Conditions,
        now: Ts,
        out: &mut Vec<Event>,
    ) -> CycleSignal {
        let sym = market.symbol;
        let mode = if self.rng.random_bool(0.7) {
            Mode::Scalp
        } else {
            Mode::Runner
        };
        let side = if self
            .rng
            .random_bool(if market.drift_sign > 0.0 { 0.65 } else { 0.35 })
        {
            Side::Buy
        } else {
            Side::Sell
        };
        let strength = sample(&mut self.rng, Beta::new(6.0, 2.5));
        // The model sees part of the regime's effect; the rest is its blind spot.
        let (seen, unseen) = match market.regime {
            Regime::Trend => (0.02, 0.01),
            Regime::Range => (0.0, 0.0),
            Regime::Panic => (-0.03, -0.09),
        };
        let predicted =
            (0.56 + 0.15 * (strength - 0.7) + seen + sample(&mut self.rng, Normal::new(0.0, 0.06)))
                .clamp(0.01, 0.99);
        // The true probability of a profitable trade (the label the model
        // predicts): the model is slightly overconfident (2 pp), and more so
        // in PANIC, its blind spot.
        let true_p = (predicted - 0.02 + unseen + sample(&mut self.rng, Normal::new(0.0, 0.04)))
            .clamp(0.05, 0.95);
        let signal_id = self.id();
        let trace_id = self.id();
        let hold_s = match mode {
            Mode::Scalp => sample(&mut self.rng, LogNormal::new(90f64.ln(), 0.6)),
            Mode::Runner => sample(&mut self.rng, LogNormal::new(1_500f64.ln(), 0.5)),
        };
        let close_at = Ts(now.0 + (hold_s * 1e6) as i64);
        let model = self.production_model.clone();
        let h = self.header(sym, Level::Info, now);
        out.push(Event::Signal(Signal {
            header: h,
            signal_id: signal_id.clone(),
            mode,
            side,
            price: market.price,
            strength: round3(strength),
            model_id: model.clone(),
            regime: market.regime,
            decision_ts: now,
            label_cutoff_ts: close_at,
        }));
        let h = self.header(sym, Level::Info, now);
        out.push(Event::Prediction(Prediction {
            header: h,
            model_id: model.clone(),
            signal_id: signal_id.clone(),
            kind: PredictionKind::Predicted,
            predicted_prob: Some(round3(predicted)),
            label: None,
            decision_ts: now,
            label_cutoff_ts: close_at,
        }));
        CycleSignal {
            now,
            market,
            conditions,
            mode,
            side,
            strength,
            predicted,
            true_p,
            signal_id,
            trace_id,
            hold_s,
            close_at,
            model,
        }
    }

    /// The signal's decision trace, with its first steps: signal received,
    /// features.
    fn start_trace(&mut self, s: &CycleSignal) -> Trace {
        let mut trace = Trace::new(
            s.trace_id.clone(),
            s.signal_id.clone(),
            s.market.symbol,
            s.now,
        );
        let d = self.latency(0.08, 0.3);
        trace.step("signal_received", d, "ok");
        let d = self.latency(1.6, 0.35);
        trace.step("feature_calc", d, "ok");
        trace
    }

    /// Runs every gate on the signal, logging each decision and tracing each
    /// step; returns the first gate that failed.
    fn gate_decisions(
        &mut self,
        s: &CycleSignal,
        trace: &mut Trace,
        out: &mut Vec<Event>,
    ) -> Option<Gate> {
        let mode = s.mode;
        let allowed = self
            .gates
            .get(Gate::RegimeGate)
            .and_then(|g| g.allowed_regimes.as_ref())
            .is_some_and(|a| a.get(mode).contains(&s.market.regime));
        let mut first_fail: Option<Gate> = None;
        let gate_defs = self.gates.gates.clone();
        for def in &gate_defs {
            let (value, inputs) = s.gate_input(def.gate, allowed);
            let pass = def.passes(mode, value);
            if !pass && first_fail.is_none() {
                first_fail = Some(def.gate);
            }
            let median = if def.gate == Gate::MetaLabel {
                2.2
            } else {
                0.25
            };
            let d = self.latency(median, 0.4);
            trace.step(def.gate.as_str(), d, if pass { "PASS" } else { "FAIL" });
            let decision_id = self.id();
            let h = self.header(s.market.symbol, Level::Info, s.now);
            out.push(Event::GateDecision(GateDecision {
                header: h,
                decision_id,
                signal_id: s.signal_id.clone(),
                trace_id: s.trace_id.clone(),
                gate: def.gate,
                result: if pass {
                    GateResult::Pass
                } else {
                    GateResult::Fail
                },
                value: round4(value),
                threshold: *def.thresholds.get(mode),
                direction: def.direction,
                mode,
                regime: s.market.regime,
                inputs,
            }));
        }
        first_fail
    }

    /// Draws the trade's (or shadow trade's) outcome: fat-tailed, centred on
    /// the edge.
    fn outcome(&mut self, s: &CycleSignal) -> Outcome {
        let scale = match s.mode {
            Mode::Scalp => 14.0,
            Mode::Runner => 45.0,
        } * if s.market.regime == Regime::Panic {
            2.0
        } else {
            1.0
        };
        // A win clears its costs: the trade is profitable exactly when it wins,
        // so the model's probability is that of its label (pnl_bps > 0).
        let win = self.rng.random_bool(s.true_p);
        let magnitude = sample(&mut self.rng, StudentT::new(3.0)).abs() * scale * 0.8 + 1.0;
        let cost_bps = FEES_BPS * 2.0 * 0.3;
        let gross = if win {
            magnitude + cost_bps
        } else {
            -magnitude
        };
        let pnl_bps = round2(gross - cost_bps);
        let mae = round2(-(magnitude * self.rng.random_range(0.1..0.9)).abs());
        let mfe = round2((magnitude * self.rng.random_range(0.1..1.2)).abs());
        Outcome {
            gross,
            pnl_bps,
            mae,
            mfe,
        }
    }

    /// Every gate passed: executes the trade, logs its open and schedules its
    /// close.
    fn trade(
        &mut self,
        s: &CycleSignal,
        outcome: &Outcome,
        trace: &mut Trace,
        out: &mut Vec<Event>,
    ) {
        let CycleSignal {
            now,
            ref market,
            mode,
            side,
            strength,
            predicted,
            hold_s,
            close_at,
            ..
        } = *s;
        let Conditions {
            spread_bps,
            volume,
            volatility,
        } = s.conditions;
        let expected_edge = s.expected_edge_bps();
        let sym = market.symbol;
        let fees_bps = FEES_BPS;
        let Outcome {
            gross,
            pnl_bps,
            mae,
            mfe,
        } = *outcome;
        let exec_ms = self.latency(38.0, 0.45);
        trace.step("trade_execution", exec_ms, "FILLED");
        let trade_id = self.id();
        let qty = round4(1_000.0 / market.price * self.rng.random_range(1.0..10.0));
        let h = self.header(sym, Level::Critical, now);
        out.push(Event::Trade(Trade {
            header: h,
            trade_id: trade_id.clone(),
            signal_id: s.signal_id.clone(),
            kind: TradeKind::Open,
            side,
            qty,
            price: market.price,
            fees_bps,
            pnl_bps: None,
            duration_s: None,
            mode,
            regime: market.regime,
            mae_bps: None,
            mfe_bps: None,
            features: Some(format!(
                "{{\"win_probability\":{predicted:.4},\"signal_strength\":{strength:.4},\"expected_edge_bps\":{expected_edge:.3},\"spread_bps\":{spread_bps:.3},\"volume_musd\":{volume:.4},\"volatility\":{volatility:.4}}}"
            )),
        }));
        self.totals.trades_opened += 1;
        if pnl_bps > 0.0 {
            self.totals.wins += 1;
        }
        let exit_price = market.price * (1.0 + gross / 10_000.0 * side_sign(side));
        let h = self.header(sym, Level::Critical, close_at);
        let close = Event::Trade(Trade {
            header: h,
            trade_id,
            signal_id: s.signal_id.clone(),
            kind: TradeKind::Close,
            side,
            qty,
            price: round4(exit_price.max(0.0001)),
            fees_bps,
            pnl_bps: Some(pnl_bps),
            duration_s: Some(round2(hold_s)),
            mode,
            regime: market.regime,
            mae_bps: Some(mae),
            mfe_bps: Some(mfe),
            features: None,
        });
        self.later(close_at, close);
        self.totals.trades_closed += 1;
    }

    /// `gate` blocked the signal: logs a shadow trade and schedules its
    /// resolution.
    fn shadow_trade(
        &mut self,
        s: &CycleSignal,
        gate: Gate,
        outcome: &Outcome,
        trace: &mut Trace,
        out: &mut Vec<Event>,
    ) {
        let sym = s.market.symbol;
        let d = self.latency(0.2, 0.3);
        trace.step("shadow_record", d, "BLOCKED");
        self.totals.blocked += 1;
        let shadow_id = self.id();
        let h = self.header(sym, Level::Info, s.now);
        out.push(Event::ShadowTrade(ShadowTrade {
            header: h,
            shadow_id: shadow_id.clone(),
            signal_id: s.signal_id.clone(),
            kind: ShadowKind::Blocked,
            blocked_by: gate,
            side: s.side,
            hypothetical_entry: s.market.price,
            outcome_pnl_bps: None,
            mode: s.mode,
            regime: s.market.regime,
        }));
        let h = self.header(sym, Level::Info, s.close_at);
        let resolved = Event::ShadowTrade(ShadowTrade {
            header: h,
            shadow_id,
            signal_id: s.signal_id.clone(),
            kind: ShadowKind::Resolved,
            blocked_by: gate,
            side: s.side,
            hypothetical_entry: s.market.price,
            outcome_pnl_bps: Some(outcome.pnl_bps),
            mode: s.mode,
            regime: s.market.regime,
        });
        self.later(s.close_at, resolved);
    }

    /// Schedules the prediction's label for when the trade closes.
    fn schedule_label(&mut self, s: CycleSignal, outcome: &Outcome) {
        let h = self.header(s.market.symbol, Level::Info, s.close_at);
        let label = Event::Prediction(Prediction {
            header: h,
            model_id: s.model,
            signal_id: s.signal_id,
            kind: PredictionKind::Labeled,
            predicted_prob: None,
            label: Some(i32::from(outcome.pnl_bps > 0.0)),
            decision_ts: s.now,
            label_cutoff_ts: s.close_at,
        });
        self.later(s.close_at, label);
    }

    /// Counts the signal; retrains once enough have come in since the last
    /// training.
    fn count_toward_retraining(&mut self, now: Ts, out: &mut Vec<Event>) {
        self.signals_since_training += 1;
        let due = if self.models.len() == 1 {
            FIRST_RETRAIN_AFTER
        } else {
            RETRAIN_EVERY
        };
        if self.signals_since_training >= due {
            self.signals_since_training = 0;
            self.retrain(now, out);
        }
    }
}

/// A cycle's decision trace: steps timed back to back from the signal.
struct Trace {
    trace_id: String,
    signal_id: String,
    symbol: &'static str,
    ts: Ts,
    steps: Vec<(String, f64, f64, String)>,
    offset_ms: f64,
}

impl Trace {
    fn new(trace_id: String, signal_id: String, symbol: &'static str, ts: Ts) -> Self {
        Self {
            trace_id,
            signal_id,
            symbol,
            ts,
            steps: Vec::new(),
            offset_ms: 0.0,
        }
    }

    fn step(&mut self, name: &str, duration_ms: f64, result: &str) {
        self.steps.push((
            name.to_string(),
            round3(self.offset_ms),
            duration_ms,
            result.to_string(),
        ));
        self.offset_ms += duration_ms;
    }

    fn events(self, sim: &mut Simulator) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.steps.len());
        for (i, (step, start_ms, duration_ms, result)) in self.steps.into_iter().enumerate() {
            let ts = Ts(self.ts.0 + (start_ms * 1_000.0) as i64);
            let h = sim.header(self.symbol, Level::Debug, ts);
            out.push(Event::TraceStep(TraceStep {
                header: h,
                trace_id: self.trace_id.clone(),
                signal_id: self.signal_id.clone(),
                step,
                seq: i32::try_from(i).unwrap_or(i32::MAX),
                start_ms,
                duration_ms,
                result,
            }));
        }
        out
    }
}

fn side_sign(side: Side) -> f64 {
    match side {
        Side::Buy => 1.0,
        Side::Sell => -1.0,
    }
}
