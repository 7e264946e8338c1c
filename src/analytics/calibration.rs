//! Calibration of predicted probabilities against outcomes: ECE, MCE, Brier
//! score and the reliability diagram's bins.

use serde::Serialize;

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    /// Bin index; bin i holds predictions in [i/bins, (i+1)/bins), the last bin
    /// includes 1.0.
    pub bin: usize,
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    pub avg_predicted: f64,
    /// Share of outcomes that were 1.
    pub observed_rate: f64,
}

/// Calibration of a set of (predicted probability, outcome) pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub samples: u64,
    /// Expected calibration error: the count-weighted mean of
    /// |avg predicted - observed rate| over bins.
    pub ece: f64,
    /// Maximum calibration error: the largest of those gaps over non-empty bins.
    pub mce: f64,
    /// Mean squared error of the probabilities.
    pub brier: f64,
    pub bins: Vec<ReliabilityBin>,
}

/// The running sums calibration is computed from, per bin: what the SQL
/// aggregate `calibration(prob, label)` keeps per group and merges across
/// partitions, and what [`Calibration::compute`] fills from a slice. The one
/// definition of ECE, MCE and Brier is [`CalibrationSums::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSums {
    pub count: Vec<u64>,
    pub sum_predicted: Vec<f64>,
    pub sum_observed: Vec<f64>,
    /// Sum of squared errors over every pair.
    pub squared_error: f64,
}

impl CalibrationSums {
    /// Empty sums over `bins` equal-width bins (at least one).
    pub fn new(bins: usize) -> Self {
        let bins = bins.max(1);
        Self {
            count: vec![0; bins],
            sum_predicted: vec![0.0; bins],
            sum_observed: vec![0.0; bins],
            squared_error: 0.0,
        }
    }

    pub fn bins(&self) -> usize {
        self.count.len()
    }

    /// Adds one prediction and its outcome. A probability outside [0, 1]
    /// (or NaN) is skipped.
    pub fn add(&mut self, p: f64, outcome: bool) {
        if !(0.0..=1.0).contains(&p) {
            return;
        }
        let bins = self.bins();
        let y = f64::from(u8::from(outcome));
        let b = ((p * bins as f64).floor() as usize).min(bins - 1);
        self.count[b] += 1;
        self.sum_predicted[b] += p;
        self.sum_observed[b] += y;
        self.squared_error += (p - y).powi(2);
    }

    /// Adds sums kept elsewhere (another partition's) over the same bins.
    pub fn merge(&mut self, other: &CalibrationSums) {
        for b in 0..self.bins().min(other.bins()) {
            self.count[b] += other.count[b];
            self.sum_predicted[b] += other.sum_predicted[b];
            self.sum_observed[b] += other.sum_observed[b];
        }
        self.squared_error += other.squared_error;
    }

    /// The calibration the sums describe; `None` if no pair was added.
    pub fn finish(&self) -> Option<Calibration> {
        let n: u64 = self.count.iter().sum();
        if n == 0 {
            return None;
        }
        let bins = self.bins();
        let mut ece = 0.0;
        let mut mce = 0.0_f64;
        let mut out = Vec::new();
        for b in 0..bins {
            if self.count[b] == 0 {
                continue;
            }
            let c = self.count[b] as f64;
            let (avg_p, rate) = (self.sum_predicted[b] / c, self.sum_observed[b] / c);
            let gap = (avg_p - rate).abs();
            ece += c / n as f64 * gap;
            mce = mce.max(gap);
            out.push(ReliabilityBin {
                bin: b,
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: self.count[b],
                avg_predicted: avg_p,
                observed_rate: rate,
            });
        }
        Some(Calibration {
            samples: n,
            ece,
            mce,
            brier: self.squared_error / n as f64,
            bins: out,
        })
    }
}

impl Calibration {
    /// Calibration over `bins` equal-width bins. Pairs whose probability is
    /// outside [0, 1] or not finite are skipped; None if none remain.
    pub fn compute(pairs: &[(f64, bool)], bins: usize) -> Option<Self> {
        let mut sums = CalibrationSums::new(bins);
        for &(p, y) in pairs {
            sums.add(p, y);
        }
        sums.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_ece_mce_brier() {
        // Bin 1 ([0.1, 0.2)): p 0.1, 0.1 with outcomes 0, 1: avg 0.1, rate 0.5, gap 0.4.
        // Bin 8 ([0.8, 0.9)): p 0.8, 0.8, 0.8 with outcomes 1, 1, 0: avg 0.8,
        //   rate 2/3, gap 0.1333...
        // Bin 9 ([0.9, 1.0]): p 1.0 with outcome 1: gap 0.
        let pairs = [
            (0.1, false),
            (0.1, true),
            (0.8, true),
            (0.8, true),
            (0.8, false),
            (1.0, true),
        ];
        let c = Calibration::compute(&pairs, 10).unwrap();
        assert_eq!(c.samples, 6);
        assert_eq!(c.bins.len(), 3);
        assert_eq!(c.bins[2].bin, 9);
        // ECE = (2*0.4 + 3*(0.8 - 2/3) + 1*0) / 6 = (0.8 + 0.4) / 6 = 0.2.
        assert!(close(c.ece, 0.2), "{}", c.ece);
        assert!(close(c.mce, 0.4), "{}", c.mce);
        // Brier = (0.01 + 0.81 + 0.04 + 0.04 + 0.64 + 0) / 6 = 1.54 / 6.
        assert!(close(c.brier, 1.54 / 6.0), "{}", c.brier);
    }

    #[test]
    fn perfect_and_empty() {
        let c = Calibration::compute(&[(0.0, false), (1.0, true)], 10).unwrap();
        assert_eq!((c.ece, c.mce, c.brier), (0.0, 0.0, 0.0));
        assert!(Calibration::compute(&[], 10).is_none());
        assert!(Calibration::compute(&[(f64::NAN, true), (1.5, false)], 10).is_none());
    }
}
