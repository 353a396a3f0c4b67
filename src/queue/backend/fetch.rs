//! The fetcher: claims only as many jobs as there are free slots and hands them to the
//! apalis worker; when it claims nothing it blocks on Redis until work is made ready or
//! the earliest parked job falls due (see `queue::wake`), never longer than
//! `queue.idle_poll`; a claim that fails is tried again after a pause that grows with each
//! failure in a row (capped), so a Redis that keeps refusing is not asked hundreds of
//! times a second.

use super::{Claimed, Lease, LeaseTable, RedisBackend};
use crate::queue::Queue;
use apalis_core::task::Task;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken as CancelToken;

/// Starts the fetcher that feeds a [`RedisBackend`]: it claims only when a slot is free
/// (so nothing waits in a local buffer) and stops claiming on `shutdown`.
pub fn start_fetcher(
    queue: Queue,
    worker_id: String,
    table: Arc<LeaseTable>,
    slots: Arc<Semaphore>,
    shutdown: CancelToken,
) -> (RedisBackend, tokio::task::JoinHandle<()>) {
    const MAX_CLAIM: usize = 64;
    let (tx, rx) = mpsc::channel(MAX_CLAIM);
    let handle = tokio::spawn(async move {
        let mut backoff = ClaimBackoff::default();
        let mut waiter = queue.waiter();
        let idle_poll = queue.settings.idle_poll;
        // Whether the worker waited since its last claim.
        let mut woken = false;
        loop {
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            let mut permits = vec![first];
            while permits.len() < MAX_CLAIM {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let claimed = queue
                .claim_or_idle(&worker_id, permits.len(), woken, Some(idle_poll))
                .await;
            let (claims, wait_until) = match claimed {
                Ok(c) => {
                    backoff.reset();
                    c
                }
                Err(e) => {
                    table.note_lost();
                    drop(permits);
                    let pause = backoff.failed(rand::random());
                    tracing::warn!(error = %e, failures = backoff.failures,
                        retry_in_ms = pause.as_millis() as u64, "Claim failed; retrying after a pause.");
                    crate::metrics::claim_error();
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            };
            woken = claims.is_empty();
            for claim in claims {
                let lease = Lease::new(&claim, table.clone(), permits.pop());
                if tx.send(Task::new(Claimed { claim, lease })).await.is_err() {
                    return;
                }
            }
            drop(permits);
            if woken {
                let timeout = wait_until.map_or(idle_poll, |t| {
                    Duration::from_millis(t.saturating_sub(queue.now_ms()))
                });
                tokio::select! {
                    r = waiter.wait(timeout.min(idle_poll)) => if let Err(e) = r {
                        table.note_lost();
                        // The claim that follows meets the same trouble and backs off.
                        tracing::debug!(error = %e, "Waiting for work failed.");
                        let pause = timeout.min(FIRST_PAUSE);
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = shutdown.cancelled() => break,
                        }
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    });
    (RedisBackend { rx }, handle)
}

/// The pause after the first failed claim.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two failed claims.
pub const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Pauses between claims that fail in a row: doubling from [`FIRST_PAUSE`] up to
/// [`MAX_PAUSE`], each drawn from its upper half so a fleet does not retry in step.
#[derive(Debug, Default)]
struct ClaimBackoff {
    /// Claims failed in a row.
    failures: u32,
}

impl ClaimBackoff {
    /// One more claim failed: how long to wait before the next (`jitter` in [0, 1)).
    fn failed(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doubled = FIRST_PAUSE.saturating_mul(1 << (self.failures - 1).min(16));
        let ceiling = doubled.min(MAX_PAUSE);
        ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// A claim went through.
    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_to_a_cap_and_start_over_after_a_success() {
        let mut b = ClaimBackoff::default();
        let top: Vec<Duration> = (0..10).map(|_| b.failed(1.0)).collect();
        assert_eq!(top[0], FIRST_PAUSE);
        assert_eq!(top[1], FIRST_PAUSE * 2);
        assert_eq!(top[2], FIRST_PAUSE * 4);
        assert!(top.windows(2).all(|w| w[0] <= w[1]), "{top:?}");
        assert_eq!(top[9], MAX_PAUSE);
        assert_eq!(
            b.failed(0.0),
            MAX_PAUSE / 2,
            "jitter stays in the upper half"
        );
        b.reset();
        assert_eq!(b.failed(1.0), FIRST_PAUSE);
        for _ in 0..100 {
            assert!(b.failed(1.0) <= MAX_PAUSE);
        }
    }
}
