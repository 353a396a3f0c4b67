//! The fleet's request rate as `status`, `watch` and the operations page show it. Each
//! worker counts the requests its gates let through, per provider and second of the Redis
//! clock, and adds a second's count to the fleet's counter for it (`rate:<provider>:<s>`,
//! kept 5 s) once that second is over: one script call per flush, where before every gate
//! ran an `INCR` (two commands per job on the full path). Readers take the second before
//! the last, which every running worker has flushed by then ([`FLUSH_EVERY`] after it
//! ended). A flush Redis refuses is dropped: the figure is a display, never a limit (the
//! limit is GCRA, in the gate itself).

use super::Admission;
use crate::model::ProviderName;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a worker adds its finished seconds to the fleet's counters.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Requests let through and not yet added to the fleet's counters, by (provider, second).
#[derive(Debug, Default)]
pub(super) struct Tally {
    counts: Mutex<BTreeMap<(ProviderName, u64), u64>>,
}

impl Tally {
    pub(super) fn count(&self, p: ProviderName, now_ms: u64) {
        let mut counts = self.counts.lock().expect("rate tally");
        *counts.entry((p, now_ms / 1000)).or_default() += 1;
    }

    /// Takes the counts of the seconds before `now_ms`'s (every second with `all`).
    fn take(&self, now_ms: u64, all: bool) -> Vec<(ProviderName, u64, u64)> {
        let mut counts = self.counts.lock().expect("rate tally");
        let now_s = now_ms / 1000;
        let mut done = Vec::new();
        counts.retain(|&(p, s), n| {
            let over = all || s < now_s;
            if over {
                done.push((p, s, *n));
            }
            !over
        });
        done
    }
}

impl Admission {
    /// Adds this worker's finished seconds to the fleet's counters every [`FLUSH_EVERY`]
    /// (nothing is sent while there is nothing to add) until `stop`, then the rest.
    pub async fn report_rates(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush_rates(false).await,
                _ = stop.cancelled() => return self.flush_rates(true).await,
            }
        }
    }

    async fn flush_rates(&self, all: bool) {
        let done = self.tally.take(self.queue.now_ms(), all);
        if done.is_empty() {
            return;
        }
        if let Err(e) = self.queue.add_rates(&done).await {
            tracing::debug!(error = %e, "Could not add this worker's request counts to the fleet's.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_seconds_are_taken_until_all_are() {
        let t = Tally::default();
        t.count(ProviderName::Fal, 10_100);
        t.count(ProviderName::Fal, 10_900);
        t.count(ProviderName::Kling, 10_500);
        t.count(ProviderName::Fal, 11_000);
        let taken = t.take(11_500, false);
        assert_eq!(
            taken,
            vec![(ProviderName::Fal, 10, 2), (ProviderName::Kling, 10, 1)]
        );
        assert!(t.take(11_900, false).is_empty(), "second 11 is not over");
        assert_eq!(t.take(11_900, true), vec![(ProviderName::Fal, 11, 1)]);
        assert!(t.take(99_000, true).is_empty());
    }
}
