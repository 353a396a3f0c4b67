//! Reading the queue: job records, batches, the dead set and depth, for status, reports
//! and probes; and forgetting a finished batch.

use super::{BatchInfo, Queue, QueueError};
use crate::job::{BadRecord, JobRecord, Loaded};
use redis::AsyncCommands;

/// Job records read per pipeline.
const READ_CHUNK: usize = 1000;
/// Job indices probed per pipeline when a batch's records are walked to find their end.
const WALK_CHUNK: u64 = 500;

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
                        counted: true,
                    })),
                }
            }
        }
        Ok(out)
    }

    /// Reads a batch's hash (spec, totals, per-state counters), its `total` confirmed by
    /// the batch's records: the last job it claims exists (one round trip), or its records
    /// end within a chunk of it. Otherwise — a total that is no number, or one far past
    /// the records (seen: 10^12) — the batch is `damaged` and its `total` is the number
    /// of job indices its records cover, found by walking them a chunk at a time and
    /// stopping at the first chunk without any: never a read sized by the stored number.
    pub async fn batch(&self, batch_id: &str) -> Result<Option<BatchInfo>, QueueError> {
        let key = self.keys.batch(batch_id);
        let pairs: Vec<Vec<u8>> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { c.hgetall(key).await }
            })
            .await?;
        if pairs.is_empty() {
            return Ok(None);
        }
        let mut info = BatchInfo::from_raw(batch_id, pairs);
        let claimed = info.damaged.is_none().then_some(info.total);
        // Job indices are u32 (`job_id`): past them no record can exist.
        let limit = claimed.unwrap_or(u64::MAX).min(u64::from(u32::MAX) + 1);
        if let Some(t) = claimed.filter(|t| *t > 0 && *t <= limit) {
            let last = crate::job::job_id(batch_id, (t - 1) as u32);
            if self.exist(&[last]).await?[0] {
                return Ok(Some(info));
            }
        }
        if claimed == Some(0) {
            return Ok(Some(info));
        }
        let mut end = 0u64;
        let mut start = 0u64;
        while start < limit {
            let stop = (start + WALK_CHUNK).min(limit);
            let ids: Vec<String> = (start..stop)
                .map(|i| crate::job::job_id(batch_id, i as u32))
                .collect();
            match self.exist(&ids).await?.iter().rposition(|e| *e) {
                Some(i) => end = start + i as u64 + 1,
                None => break,
            }
            start = stop;
        }
        match claimed {
            // The last records are gone, the rest are there: the total stands.
            Some(t) if t <= end + WALK_CHUNK => {}
            _ => {
                let said = match (claimed, &info.damaged) {
                    (Some(t), _) => format!("field total says {t} jobs"),
                    (None, Some(why)) => why.clone(),
                    (None, None) => String::new(),
                };
                info.damaged = Some(format!(
                    "{said}, but the batch's job records end at index {end}"
                ));
                info.total = end;
            }
        }
        Ok(Some(info))
    }

    /// Whether each job of a batch has a record (one pipeline).
    async fn exist(&self, ids: &[String]) -> Result<Vec<bool>, QueueError> {
        self.retry(|mut c| async move {
            let mut pipe = redis::pipe();
            for id in ids {
                pipe.exists(self.keys.job(id));
            }
            pipe.query_async(&mut c).await
        })
        .await
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
        // The script deletes the records the batch really has, never `total` as stored.
        let Some(info) = self.batch(batch_id).await? else {
            return Ok(Purged::Removed(0));
        };
        let n: i64 = self
            .eval(&self.scripts.purge, &args![batch_id, info.total])
            .await?;
        Ok(match n {
            -1 => Purged::Running,
            -2 => Purged::Announcing,
            n => Purged::Removed(n.max(0) as u64),
        })
    }
}
