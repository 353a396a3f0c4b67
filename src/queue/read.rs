//! Reading the queue: job records, batches, the dead set and depth, for status, reports
//! and probes; and forgetting a finished batch.

use super::{BatchInfo, Queue, QueueError};
use crate::job::{BadRecord, JobRecord, Loaded};
use redis::AsyncCommands;

/// Job records read per pipeline.
const READ_CHUNK: usize = 1000;

/// Why a job key could not be read as a record.
fn unreadable(e: &redis::RedisError) -> String {
    if e.code() == Some("WRONGTYPE") {
        "job record is not a hash".to_string()
    } else {
        format!("job record unreadable: {e}")
    }
}

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
        Ok(self.jobs(&[job_id.to_string()]).await?.pop())
    }

    /// Reads many job records in one pipeline (missing ones are left out; unreadable ones
    /// are returned as such). Records are read as bytes and checked one by one
    /// ([`JobRecord::from_redis`]): one that is not UTF-8, or a key that is not a hash,
    /// is that job's [`BadRecord`](crate::job::BadRecord), never the whole read's error.
    pub async fn jobs(&self, ids: &[String]) -> Result<Vec<Loaded>, QueueError> {
        let mut out = Vec::with_capacity(ids.len().min(READ_CHUNK));
        for chunk in ids.chunks(READ_CHUNK) {
            let rows: Vec<redis::RedisResult<Vec<Vec<u8>>>> = self
                .retry(|mut c| async move {
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    for id in chunk {
                        pipe.hgetall(self.keys.job(id));
                    }
                    pipe.query_async(&mut c).await
                })
                .await?;
            for (id, row) in chunk.iter().zip(rows) {
                match row {
                    Ok(pairs) if pairs.is_empty() => {}
                    Ok(pairs) => out.push(JobRecord::from_redis(id, pairs)),
                    Err(e) => out.push(Err(BadRecord {
                        job_id: id.clone(),
                        state_text: None,
                        reason: unreadable(&e),
                    })),
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

    /// Ids of the dead set, newest first, with the time each died (an id that is not
    /// UTF-8 shown with replacement characters; see [`Queue::dead_raw`]).
    pub async fn dead(&self, limit: usize) -> Result<Vec<(String, u64)>, QueueError> {
        let raw = self.dead_raw(limit).await?;
        Ok(raw
            .into_iter()
            .map(|(id, at)| (String::from_utf8_lossy(&id).into_owned(), at))
            .collect())
    }

    /// Ids of the dead set as stored (bytes: an id pushed raw need not be text), newest
    /// first, with the time each died.
    pub async fn dead_raw(&self, limit: usize) -> Result<Vec<(Vec<u8>, u64)>, QueueError> {
        let key = self.keys.dead();
        let raw: Vec<(Vec<u8>, f64)> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { c.zrevrange_withscores(key, 0, limit as isize - 1).await }
            })
            .await?;
        Ok(raw
            .into_iter()
            .map(|(id, at)| (id, at.max(0.0) as u64))
            .collect())
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

    /// The reason recorded for a dead id that has no readable job record (garbage pushed
    /// raw, a key that is not a hash, an id that is not UTF-8).
    pub async fn orphan_reason(&self, id: &[u8]) -> Result<Option<String>, QueueError> {
        let key = self.keys.orphans();
        let reason: Option<Vec<u8>> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { c.hget(key, id).await }
            })
            .await?;
        Ok(reason.map(|r| String::from_utf8_lossy(&r).into_owned()))
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
