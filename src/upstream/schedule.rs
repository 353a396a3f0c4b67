//! The poll and retry schedules as pure functions (the random draw is passed in), so
//! they are unit-tested without clocks.

use crate::config::{PollSettings, RetrySettings};
use std::time::Duration;

/// Delay before poll number `n` (0 = the first poll after submit): the first delay, then
/// exponential growth with full jitter (`jitter` in [0, 1]), capped at `max_interval`.
/// A floor of a quarter of the first delay keeps a low draw from hammering the provider.
pub fn poll_delay(p: &PollSettings, n: u32, jitter: f64) -> Duration {
    if n == 0 {
        return p.first_delay;
    }
    let base = p
        .first_delay
        .saturating_mul(1u32 << n.min(20))
        .min(p.max_interval);
    let floor = (p.first_delay / 4).min(base);
    base.mul_f64(jitter.clamp(0.0, 1.0)).max(floor)
}

/// Delay before retry `attempt` (1-based) of a retryable failure: `Retry-After` when the
/// provider sent one, otherwise exponential with full jitter; both capped at `max_delay`
/// (a hostile `Retry-After: 9999999999` must not park a job for centuries).
pub fn retry_delay(
    r: &RetrySettings,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(r.max_delay);
    }
    let base = r
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(r.max_delay);
    base.mul_f64(jitter.clamp(0.0, 1.0))
        .max((r.base_delay / 4).min(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll() -> PollSettings {
        PollSettings {
            first_delay: Duration::from_secs(15),
            max_interval: Duration::from_secs(60),
            deadline: Duration::from_secs(1000),
        }
    }

    #[test]
    fn first_poll_waits_the_first_delay() {
        assert_eq!(poll_delay(&poll(), 0, 0.0), Duration::from_secs(15));
        assert_eq!(poll_delay(&poll(), 0, 1.0), Duration::from_secs(15));
    }

    #[test]
    fn later_polls_grow_and_are_capped() {
        assert_eq!(poll_delay(&poll(), 1, 1.0), Duration::from_secs(30));
        assert_eq!(poll_delay(&poll(), 2, 1.0), Duration::from_secs(60));
        assert_eq!(poll_delay(&poll(), 30, 1.0), Duration::from_secs(60));
        // Full jitter, with a floor.
        assert_eq!(poll_delay(&poll(), 2, 0.5), Duration::from_secs(30));
        assert_eq!(poll_delay(&poll(), 2, 0.0), Duration::from_millis(3750));
    }

    #[test]
    fn retry_after_wins_and_backoff_is_capped() {
        let r = RetrySettings {
            max_attempts: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
            account_pause: Duration::from_secs(60),
        };
        assert_eq!(
            retry_delay(&r, 3, Some(Duration::from_secs(7)), 0.1),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_delay(&r, 3, Some(Duration::from_secs(9_999_999_999)), 0.1),
            Duration::from_secs(10),
            "Retry-After is capped at max_delay"
        );
        assert_eq!(retry_delay(&r, 1, None, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(&r, 3, None, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(&r, 9, None, 1.0), Duration::from_secs(10));
        assert_eq!(retry_delay(&r, 9, None, 0.0), Duration::from_millis(500));
    }
}
