//! The worker's retention timer: every worker process runs [`Queue::expire_due`] now and
//! then, so finished batches leave Redis `output.retention` after they finished (see
//! [`crate::queue::retention`]) with nobody running `restyle purge`. Any number of workers
//! may run it at once: each step is one script, and a batch removed twice is removed once.

use crate::queue::Queue;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The pause between two passes: a fraction of the retention, within bounds.
pub fn every(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(50), Duration::from_secs(60))
}

/// Runs passes until `stop`; a failed pass is logged and the next one tries again.
pub async fn run(queue: Queue, retention: Duration, stop: CancellationToken) {
    if retention.is_zero() {
        return;
    }
    loop {
        match queue.expire_due(retention).await {
            Ok(e) => {
                for b in &e.batches {
                    tracing::info!(batch_id = %b, "Finished batch's records expired from Redis (tombstone kept).");
                }
                if e.dead_dropped > 0 {
                    tracing::debug!(
                        dropped = e.dead_dropped,
                        "Old dead-set entries without records dropped."
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "Retention pass failed; trying again later."),
        }
        tokio::select! {
            _ = tokio::time::sleep(every(retention)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
