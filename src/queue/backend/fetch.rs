//! The fetcher: claims only as many jobs as there are free slots and hands them to the
//! apalis worker; a claim that fails is tried again after a pause that grows with each
//! failure in a row (capped), so a Redis that keeps refusing is not asked hundreds of
//! times a second.

use super::{Claimed, Lease, LeaseTable, RedisBackend};
use crate::queue::Queue;
use apalis_core::task::Task;
use std::sync::Arc;
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
            let claims = match queue.claim(&worker_id, permits.len()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "Claim failed; retrying.");
                    Vec::new()
                }
            };
            let idle = claims.is_empty();
            for claim in claims {
                let lease = Lease::new(&claim, table.clone(), permits.pop());
                if tx.send(Task::new(Claimed { claim, lease })).await.is_err() {
                    return;
                }
            }
            drop(permits);
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(queue.settings.idle_poll) => {}
                    _ = table.settled.notified() => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    });
    (RedisBackend { rx }, handle)
}
