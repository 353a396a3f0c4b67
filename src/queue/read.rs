//! Reading the queue: job records, batches, the dead set and depth, for status, reports
//! and probes; and forgetting a finished batch.

use super::{BatchInfo, Queue, QueueError};
use crate::job::{JobRecord, Loaded};
use redis::AsyncCommands;

/// What `purge` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purged {
    /// The batch is forgotten: this many job records were deleted.
    Removed(u64),
    /// Refused: the batch is not finished.
    Running,
    /// Refused: a completion announcement of the batch is still being delivered.
    Announcing,
}

impl Queue {
    /// Reads one job record (`None` when there is none; `Some(Err)` when it is unreadable).
    pub async fn job(&self, job_id: &str) -> Result<Option<Loaded>, QueueError> {
        let key = self.keys.job(job_id);
        let pairs: Vec<String> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { c.hgetall::<_, Vec<String>>(key).await }
            })
            .await?;
        Ok((!pairs.is_empty()).then(|| JobRecord::from_pairs(job_id, pairs)))
    }

    /// Reads many job records in one pipeline (missing ones are left out; unreadable ones
    /// are returned as such).
    pub async fn jobs(&self, ids: &[String]) -> Result<Vec<Loaded>, QueueError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let rows: Vec<Vec<String>> = self
                .retry(|mut c| async move {
                    let mut pipe = redis::pipe();
                    for id in chunk {
                        pipe.hgetall(self.keys.job(id));
                    }
                    pipe.query_async(&mut c).await
                })
                .await?;
            for (id, pairs) in chunk.iter().zip(rows) {
                if !pairs.is_empty() {
                    out.push(JobRecord::from_pairs(id, pairs));
                }
            }
        }
        Ok(out)
    }

    /// Reads a batch's hash (spec, totals, per-state counters).
    pub async fn batch(&self, batch_id: &str) -> Result<Option<BatchInfo>, QueueError> {
        let key = self.keys.batch(batch_id);
        let pairs: Vec<String> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { c.hgetall::<_, Vec<String>>(key).await }
            })
            .await?;
        Ok((!pairs.is_empty()).then(|| BatchInfo::from_pairs(batch_id, pairs)))
    }

    /// Ids of the dead set, newest first, with the time each died.
    pub async fn dead(&self, limit: usize) -> Result<Vec<(String, u64)>, QueueError> {
        let key = self.keys.dead();
        self.retry(|mut c| {
            let key = key.clone();
            async move {
                c.zrevrange_withscores::<_, Vec<(String, u64)>>(key, 0, limit as isize - 1)
                    .await
            }
        })
        .await
    }

    /// One PING without retries: is Redis answering right now? (`/readyz`)
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| QueueError::from_redis(&e))
    }

    /// Queue depth without retries (for gauges, which skip a beat during an outage).
    pub async fn depth_once(&self) -> Result<(u64, u64, u64), QueueError> {
        let mut c = self.conn.clone();
        redis::pipe()
            .llen(self.keys.ready())
            .zcard(self.keys.parked())
            .zcard(self.keys.leases())
            .query_async(&mut c)
            .await
            .map_err(|e| QueueError::from_redis(&e))
    }

    /// Queue depth: (ready, parked, leased).
    pub async fn depth(&self) -> Result<(u64, u64, u64), QueueError> {
        self.retry(|mut c| async move {
            redis::pipe()
                .llen(self.keys.ready())
                .zcard(self.keys.parked())
                .zcard(self.keys.leases())
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// The reason recorded for a dead id that has no job record (garbage pushed raw).
    pub async fn orphan_reason(&self, id: &str) -> Result<Option<String>, QueueError> {
        let key = self.keys.orphans();
        self.retry(|mut c| {
            let key = key.clone();
            async move { c.hget::<_, _, Option<String>>(key, id).await }
        })
        .await
    }

    /// Forgets a finished batch's records in Redis (files and results on disk stay).
    pub async fn purge_batch(&self, batch_id: &str) -> Result<Purged, QueueError> {
        let n: i64 = self.eval(&self.scripts.purge, &args![batch_id]).await?;
        Ok(match n {
            -1 => Purged::Running,
            -2 => Purged::Announcing,
            n => Purged::Removed(n.max(0) as u64),
        })
    }
}
