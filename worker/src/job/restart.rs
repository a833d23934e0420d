//! What to do when a job's run fails (Flink's restart strategies). The
//! decision looks at the job's failure history, the times of its failed runs
//! in milliseconds since the epoch, so a cluster's coordinator can hand the
//! history to whichever process decides next.

use std::time::Duration;

/// How often and after how long a failed job runs again.
#[derive(Clone, Debug, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job at the first failure.
    None,
    /// Restart up to `attempts` times over the job's life, waiting `delay` before each.
    FixedDelay {
        /// Restarts allowed in all.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restart with a wait growing by `multiplier` from `initial` up to
    /// `max`; a run that lasted `reset_after` starts the count (and the wait)
    /// again, so a long-running job survives occasional failures.
    ExponentialDelay {
        /// Wait before the first restart.
        initial: Duration,
        /// Longest wait.
        max: Duration,
        /// Growth of the wait per restart; below 1 counts as 1.
        multiplier: f64,
        /// Restarts allowed since the count last started again.
        attempts: u32,
        /// A gap this long between two failures starts the count again.
        reset_after: Duration,
    },
    /// Restart after `delay` unless more than `max_failures` failures fell
    /// within the last `interval` (Flink's failure-rate strategy).
    FailureRate {
        /// Failures tolerated within one interval.
        max_failures: u32,
        /// The window failures are counted in.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl RestartStrategy {
    /// Flink's default for a checkpointed job: exponential delay from 1 s by
    /// 1.5 up to 1 minute, without a limit, starting again after an hour
    /// without failure.
    pub const DEFAULT_WITH_CHECKPOINTS: Self = Self::ExponentialDelay {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        multiplier: 1.5,
        attempts: u32::MAX,
        reset_after: Duration::from_secs(3600),
    };

    /// The wait before restarting after the last of `failures` (epoch
    /// milliseconds, oldest first, the failure being decided on last), or
    /// `None` when no restart is left.
    pub fn delay_after(&self, failures: &[u64]) -> Option<Duration> {
        let latest = *failures.last()?;
        match *self {
            Self::None => None,
            Self::FixedDelay { attempts, delay } => (failures.len() as u64 <= u64::from(attempts)).then_some(delay),
            Self::ExponentialDelay { initial, max, multiplier, attempts, reset_after } => {
                let streak = streak(failures, reset_after);
                (streak <= u64::from(attempts)).then(|| {
                    let factor = multiplier.max(1.0).powi(streak.saturating_sub(1).min(64) as i32);
                    initial.mul_f64(factor).min(max)
                })
            }
            Self::FailureRate { max_failures, interval, delay } => {
                let window = interval.as_millis() as u64;
                let recent = failures.iter().filter(|time| time.saturating_add(window) > latest).count() as u64;
                (recent <= u64::from(max_failures)).then_some(delay)
            }
        }
    }
}

/// How many of the last failures follow each other with gaps shorter than
/// `reset_after` (at least 1: the latest).
fn streak(failures: &[u64], reset_after: Duration) -> u64 {
    let reset = reset_after.as_millis() as u64;
    let gaps = failures.windows(2).rev().take_while(|pair| pair[1].saturating_sub(pair[0]) < reset).count();
    gaps as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Option<Duration> = |ms| Some(Duration::from_millis(ms));

    #[test]
    fn fixed_delay_counts_every_failure_of_the_job() {
        assert_eq!(RestartStrategy::None.delay_after(&[5]), None);
        let fixed = RestartStrategy::FixedDelay { attempts: 2, delay: Duration::from_millis(10) };
        assert_eq!(
            (fixed.delay_after(&[1]), fixed.delay_after(&[1, 2]), fixed.delay_after(&[1, 2, 3])),
            (MS(10), MS(10), None)
        );
    }

    #[test]
    fn exponential_delay_grows_and_starts_again_after_a_quiet_spell() {
        let exponential = RestartStrategy::ExponentialDelay {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            multiplier: 2.0,
            attempts: 4,
            reset_after: Duration::from_secs(60),
        };
        let close: Vec<u64> = (0..5).map(|n| n * 1_000).collect();
        let delays: Vec<_> = (1..=5).map(|n| exponential.delay_after(&close[..n])).collect();
        assert_eq!(delays, vec![MS(100), MS(200), MS(300), MS(300), None]);
        // A minute and more without failure: the fifth failure counts as the first again.
        let spread = [0, 1_000, 2_000, 3_000, 3_000 + 60_000];
        assert_eq!(exponential.delay_after(&spread), MS(100));
    }

    #[test]
    fn failure_rate_tolerates_failures_spread_over_time_but_not_a_burst() {
        let rate = RestartStrategy::FailureRate {
            max_failures: 3,
            interval: Duration::from_secs(60),
            delay: Duration::from_millis(50),
        };
        let spread: Vec<u64> = (0..20).map(|n| n * 30_000).collect();
        assert_eq!(rate.delay_after(&spread), MS(50), "two failures a minute, every minute");
        assert_eq!(rate.delay_after(&[0, 1_000, 2_000, 3_000]), None, "four within a minute");
    }

    #[test]
    fn the_default_never_gives_up_on_a_job_that_fails_now_and_then() {
        let failures: Vec<u64> = (0..1_000).map(|n| n * 10_000).collect();
        assert_eq!(RestartStrategy::DEFAULT_WITH_CHECKPOINTS.delay_after(&failures), Some(Duration::from_secs(60)));
    }
}
