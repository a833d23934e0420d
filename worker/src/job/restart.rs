//! What to do when a task fails (Flink's restart strategies).

use std::time::Duration;

/// How often and after how long a failed job runs again.
#[derive(Clone, Debug, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job at the first failure.
    None,
    /// Restart up to `attempts` times, waiting `delay` before each.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restart up to `attempts` times, the wait growing by `multiplier` from
    /// `initial` up to `max`.
    ExponentialDelay {
        /// Wait before the first restart.
        initial: Duration,
        /// Longest wait.
        max: Duration,
        /// Growth of the wait per restart; below 1 counts as 1.
        multiplier: f64,
        /// Restarts allowed.
        attempts: u32,
    },
}

impl RestartStrategy {
    /// The wait before restart number `attempt` (1-based), or `None` when no
    /// restart is left.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        match *self {
            Self::None => None,
            Self::FixedDelay { attempts, delay } => (attempt <= attempts).then_some(delay),
            Self::ExponentialDelay { initial, max, multiplier, attempts } => (attempt <= attempts).then(|| {
                let factor = multiplier.max(1.0).powi(attempt.saturating_sub(1).min(64) as i32);
                initial.mul_f64(factor).min(max)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_follow_the_strategy() {
        assert_eq!(RestartStrategy::None.delay(1), None);
        let fixed = RestartStrategy::FixedDelay { attempts: 2, delay: Duration::from_millis(10) };
        assert_eq!(
            (fixed.delay(1), fixed.delay(2), fixed.delay(3)),
            (Some(Duration::from_millis(10)), Some(Duration::from_millis(10)), None)
        );
        let exponential = RestartStrategy::ExponentialDelay {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            multiplier: 2.0,
            attempts: 4,
        };
        let delays: Vec<_> = (1..=5).map(|attempt| exponential.delay(attempt)).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(delays, vec![ms(100), ms(200), ms(300), ms(300), None]);
    }
}
