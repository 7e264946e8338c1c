//! `[health]`: how often the health monitor (`crate::app::health`) samples
//! the pipeline and where each of its checks turns `warning` or `critical`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[health]`: the monitor's sampling and its thresholds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// How often a server samples (and alerts on changes). At least 1 s.
    /// Default 5 s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Drops and query refusals count over this trailing window. Default 1 min.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Queue fill (0..1) at which `queue_fill` warns. Default 0.8 (where
    /// DEBUG starts to be shed).
    pub queue_fill_warn: f64,
    /// ... and is critical. Default 0.95 (where the kill switch trips).
    pub queue_fill_critical: f64,
    /// Age of the oldest WAL record the hot store or the journal has not
    /// applied yet at which `lag.*` warns. The lake rolls every
    /// `lake.roll_interval` by design, so its thresholds are these plus
    /// that interval. Default 1 min.
    #[serde(with = "humantime_serde")]
    pub lag_warn: Duration,
    /// ... and is critical. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub lag_critical: Duration,
    /// Free bytes in the data dir's file system under which `disk_free`
    /// warns. Default 2 GiB.
    pub disk_free_warn_bytes: u64,
    /// ... and is critical (the WAL then stalls soon). Default 256 MiB.
    pub disk_free_critical_bytes: u64,
    /// Samples kept for the lag and the windows, at most (one per
    /// `interval`, and at most one a second from queries of
    /// `system.health`). Default 4096.
    pub history_max: usize,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            window: Duration::from_secs(60),
            queue_fill_warn: 0.8,
            queue_fill_critical: 0.95,
            lag_warn: Duration::from_secs(60),
            lag_critical: Duration::from_secs(600),
            disk_free_warn_bytes: 2 << 30,
            disk_free_critical_bytes: 256 << 20,
            history_max: 4096,
        }
    }
}

impl HealthSection {
    /// Checks what serde cannot: ranges and the order of each pair.
    pub fn check(&self) -> Result<(), String> {
        if self.interval < Duration::from_secs(1) {
            return Err("health.interval must be at least 1s".into());
        }
        if self.window < self.interval {
            return Err("health.window must be at least health.interval".into());
        }
        let fill = 0.0..=1.0;
        if !fill.contains(&self.queue_fill_warn) || !fill.contains(&self.queue_fill_critical) {
            return Err("health.queue_fill_warn and queue_fill_critical must be in [0, 1]".into());
        }
        if self.queue_fill_warn > self.queue_fill_critical {
            return Err("health.queue_fill_warn must not be above queue_fill_critical".into());
        }
        if self.lag_warn > self.lag_critical {
            return Err("health.lag_warn must not be above lag_critical".into());
        }
        if self.disk_free_warn_bytes < self.disk_free_critical_bytes {
            return Err(
                "health.disk_free_warn_bytes must not be below disk_free_critical_bytes".into(),
            );
        }
        if !(2..=1_000_000).contains(&self.history_max) {
            return Err("health.history_max must be in 2..=1000000".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_inverted_pairs_are_refused() {
        assert_eq!(HealthSection::default().check(), Ok(()));
        let bad = [
            HealthSection {
                interval: Duration::from_millis(10),
                ..Default::default()
            },
            HealthSection {
                queue_fill_warn: 0.99,
                ..Default::default()
            },
            HealthSection {
                queue_fill_critical: 1.5,
                ..Default::default()
            },
            HealthSection {
                lag_warn: Duration::from_secs(3600),
                ..Default::default()
            },
            HealthSection {
                disk_free_warn_bytes: 1,
                ..Default::default()
            },
            HealthSection {
                history_max: 1,
                ..Default::default()
            },
            HealthSection {
                window: Duration::from_secs(1),
                ..Default::default()
            },
        ];
        for section in bad {
            let err = section.check().unwrap_err();
            assert!(err.starts_with("health."), "{err}");
        }
    }
}
