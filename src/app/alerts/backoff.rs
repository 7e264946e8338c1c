//! When to try again after a failed attempt, and when to stop.

use std::time::Duration;

use crate::config::AlertsSection;

/// `[alerts]`'s retry keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub attempts_max: u32,
    pub give_up_after: Duration,
}

/// What to do after a failure worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryIn(Duration),
    GiveUp,
}

impl RetryPolicy {
    pub fn from_config(a: &AlertsSection) -> Self {
        Self {
            initial: a.retry_initial,
            max: a.retry_max,
            attempts_max: a.attempts_max,
            give_up_after: a.give_up_after,
        }
    }

    /// After attempt number `attempt` (from 1) failed, `age` after the
    /// notice was enqueued: wait `initial * 2^(attempt-1)`, at most `max`,
    /// and at least what the receiver asked for (`retry_after`, which may
    /// exceed `max`: a receiver that rate-limits us is obeyed). Give up once
    /// `attempts_max` attempts are spent or the next one would start after
    /// `give_up_after`.
    pub fn after_failure(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        age: Duration,
    ) -> Next {
        if attempt >= self.attempts_max {
            return Next::GiveUp;
        }
        let doublings = attempt.saturating_sub(1).min(30);
        let backoff = self.initial.saturating_mul(1 << doublings).min(self.max);
        let delay = retry_after.map_or(backoff, |asked| asked.max(backoff));
        if age.saturating_add(delay) > self.give_up_after {
            return Next::GiveUp;
        }
        Next::RetryIn(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: S,
            max: 10 * S,
            attempts_max: 8,
            give_up_after: 3600 * S,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        let delays: Vec<Next> = (1..=6).map(|a| p.after_failure(a, None, S)).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 10, 10].map(|s| Next::RetryIn(s * S)).to_vec()
        );
    }

    #[test]
    fn retry_after_is_honoured_even_above_the_cap() {
        let p = policy();
        assert_eq!(
            p.after_failure(1, Some(Duration::from_millis(2500)), S),
            Next::RetryIn(Duration::from_millis(2500))
        );
        // Shorter than the backoff: the backoff wins.
        assert_eq!(p.after_failure(4, Some(S), S), Next::RetryIn(8 * S));
        assert_eq!(p.after_failure(1, Some(60 * S), S), Next::RetryIn(60 * S));
    }

    #[test]
    fn attempts_and_age_are_bounded() {
        let p = policy();
        assert_eq!(p.after_failure(8, None, S), Next::GiveUp);
        assert_eq!(p.after_failure(7, None, S), Next::RetryIn(10 * S));
        assert_eq!(p.after_failure(2, None, 3599 * S), Next::GiveUp);
        assert_eq!(
            p.after_failure(1, Some(3600 * S), Duration::ZERO),
            Next::RetryIn(3600 * S)
        );
        assert_eq!(
            p.after_failure(1, Some(3601 * S), Duration::ZERO),
            Next::GiveUp
        );
        // No overflow however large the attempt number.
        assert_eq!(
            RetryPolicy {
                attempts_max: u32::MAX,
                ..p
            }
            .after_failure(1000, None, S),
            Next::RetryIn(10 * S)
        );
    }
}
