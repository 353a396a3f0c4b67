//! A bounded Redis: a finished batch's records expire `output.retention` after it
//! finished, its results durable in its sink by then (a stage writes a job's result before
//! its terminal transition, so `done == total` means every result is written). Keys:
//! `retention`, a sorted set of batch ids by the server time (`TIME`, rule 8) they fall
//! due, and `gone:<batch>`, a small tombstone hash (when, how many jobs, where the results
//! are) that `status` shows for a batch no longer in Redis, itself expiring after
//! [`TOMBSTONE_TTL`].
//!
//! [`Queue::schedule_retention`] runs when a transition reports the batch finished;
//! [`Queue::expire_due`] runs from every worker's upkeep timer. A due batch is removed by
//! the same script as `restyle purge`, which refuses a batch that is not finished (one an
//! operator retried after it finished: it leaves the schedule and is scheduled again when
//! it finishes) and one whose completion is still being announced (tried again later).
//! The same pass bounds the dead set: entries older than the retention whose job record
//! is gone (purged batches, garbage ids) are dropped with their recorded reasons.

use super::{Queue, QueueError};
use crate::queue::Purged;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

/// How long a tombstone says where an expired batch's results went.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(365 * 86_400);
/// Batches (and dead entries) one pass handles at most.
pub const PASS_LIMIT: usize = 100;
/// How long a batch still announcing waits before it is tried again.
const ANNOUNCING_RETRY_MS: u64 = 60_000;

/// KEYS[1] the ready list (hash tag); ARGV: prefix, batch, retention ms, sink.
/// Schedules a finished batch; 1 when scheduled, 0 when not finished or gone.
static SCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, bid, after, sink = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local bkey = p .. 'batch:' .. bid
local b = redis.call('HMGET', bkey, 'total', 'done')
if not b[1] then return 0 end
if (tonumber(b[2]) or 0) < (tonumber(b[1]) or 0) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', p .. 'retention', now + after, bid)
redis.call('HSET', bkey, 'sink', sink)
return 1
"#,
    )
});

/// ARGV: prefix, limit. The ids of batches due now, oldest first.
static DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, limit = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', p .. 'retention', '-inf', now, 'LIMIT', 0, limit)
"#,
    )
});

/// ARGV: prefix, batch, tombstone fields (name, value)…, tombstone ttl ms. Writes the
/// tombstone when the batch is still finished (checked atomically with the write).
static TOMBSTONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, bid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[#ARGV])
local b = redis.call('HMGET', p .. 'batch:' .. bid, 'total', 'done')
if not b[1] or (tonumber(b[2]) or 0) < (tonumber(b[1]) or 0) then return 0 end
local gkey = p .. 'gone:' .. bid
redis.call('DEL', gkey)
for i = 3, #ARGV - 1, 2 do redis.call('HSET', gkey, ARGV[i], ARGV[i + 1]) end
local t = redis.call('TIME')
redis.call('HSET', gkey, 'expired_at', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('PEXPIRE', gkey, ttl)
return 1
"#,
    )
});

/// ARGV: prefix, retention ms, limit. Drops dead entries older than the retention whose
/// job record is gone; returns how many.
static TRIM_DEAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, keep, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', p .. 'dead', '-inf', now - keep, 'LIMIT', 0, limit)
local n = 0
for _, id in ipairs(old) do
  if redis.call('EXISTS', p .. 'job:' .. id) == 0 then
    redis.call('ZREM', p .. 'dead', id)
    redis.call('HDEL', p .. 'orphans', id)
    n = n + 1
  end
end
return n
"#,
    )
});

/// What one [`Queue::expire_due`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Batches whose records were removed (a tombstone left for each).
    pub batches: Vec<String>,
    /// Due batches left alone because they are not finished (any more).
    pub unfinished: Vec<String>,
    /// Dead-set entries dropped.
    pub dead_dropped: u64,
}

/// What Redis still says about a batch whose records expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub total: u64,
    /// When its records were removed (server ms).
    pub expired_at: u64,
    /// Where its results are (`s3://bucket/prefix/<batch>/` or a local directory).
    pub sink: String,
    /// The state counts it finished with, `state=n` separated by spaces.
    pub counts: String,
}

impl Queue {
    /// Schedules a finished batch's records to expire `after` from now (server time),
    /// recording `sink` (where its results are) for the tombstone. Zero keeps them.
    pub async fn schedule_retention(
        &self,
        batch_id: &str,
        after: Duration,
        sink: &str,
    ) -> Result<bool, QueueError> {
        if after.is_zero() {
            return Ok(false);
        }
        let a = args![batch_id, after.as_millis() as u64, sink];
        Ok(self.eval::<i64>(&SCHEDULE, &a).await? == 1)
    }

    /// Expires the batches that are due (at most [`PASS_LIMIT`]) and trims the dead set;
    /// `retention` zero does nothing.
    pub async fn expire_due(&self, retention: Duration) -> Result<Expired, QueueError> {
        let mut out = Expired::default();
        if retention.is_zero() {
            return Ok(out);
        }
        let due: Vec<String> = self.eval(&DUE, &args![PASS_LIMIT]).await?;
        for batch_id in due {
            self.expire_one(&batch_id, &mut out).await?;
        }
        let keep = retention.as_millis() as u64;
        let dropped: i64 = self.eval(&TRIM_DEAD, &args![keep, PASS_LIMIT]).await?;
        out.dead_dropped = dropped.max(0) as u64;
        Ok(out)
    }

    async fn expire_one(&self, batch_id: &str, out: &mut Expired) -> Result<(), QueueError> {
        let Some(info) = self.batch(batch_id).await? else {
            return self.unschedule(batch_id).await;
        };
        let bkey = self.keys.batch(batch_id);
        let sink: Option<String> = self
            .retry(|mut c| {
                let bkey = bkey.clone();
                async move {
                    redis::cmd("HGET")
                        .arg(bkey)
                        .arg("sink")
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        let sink = sink.unwrap_or_default();
        let counts: Vec<String> = info
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| format!("{s}={n}"))
            .collect();
        let ttl = TOMBSTONE_TTL.as_millis() as u64;
        let a = args![
            batch_id,
            "total",
            info.total,
            "sink",
            sink.as_str(),
            "counts",
            counts.join(" "),
            ttl
        ];
        if self.eval::<i64>(&TOMBSTONE, &a).await? == 0 {
            out.unfinished.push(batch_id.to_string());
            return self.unschedule(batch_id).await;
        }
        match self.purge_batch(batch_id).await? {
            Purged::Removed(_) => {
                out.batches.push(batch_id.to_string());
                self.unschedule(batch_id).await
            }
            Purged::Running => {
                self.drop_tombstone(batch_id).await?;
                out.unfinished.push(batch_id.to_string());
                self.unschedule(batch_id).await
            }
            Purged::Announcing => {
                self.drop_tombstone(batch_id).await?;
                let key = self.keys.retention();
                let at = self.now_ms() + ANNOUNCING_RETRY_MS;
                self.retry(|mut c| {
                    let key = key.clone();
                    async move {
                        redis::cmd("ZADD")
                            .arg(key)
                            .arg(at)
                            .arg(batch_id)
                            .query_async::<()>(&mut c)
                            .await
                    }
                })
                .await
            }
        }
    }

    async fn unschedule(&self, batch_id: &str) -> Result<(), QueueError> {
        let key = self.keys.retention();
        self.retry(|mut c| {
            let key = key.clone();
            async move {
                redis::cmd("ZREM")
                    .arg(key)
                    .arg(batch_id)
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
    }

    async fn drop_tombstone(&self, batch_id: &str) -> Result<(), QueueError> {
        let key = self.keys.tombstone(batch_id);
        self.retry(|mut c| {
            let key = key.clone();
            async move { redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await }
        })
        .await
    }

    /// The tombstone of a batch whose records expired, if Redis still has it.
    pub async fn tombstone(&self, batch_id: &str) -> Result<Option<Tombstone>, QueueError> {
        let key = self.keys.tombstone(batch_id);
        let fields: Vec<Option<String>> = self
            .retry(|mut c| {
                let key = key.clone();
                async move {
                    redis::cmd("HMGET")
                        .arg(key)
                        .arg(&["total", "expired_at", "sink", "counts"])
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        let get = |i: usize| fields.get(i).cloned().flatten();
        let Some(expired_at) = get(1).and_then(|v| v.parse().ok()) else {
            return Ok(None);
        };
        // Redis contents are re-validated: bounded text, numbers parsed.
        let bound = |s: Option<String>| s.unwrap_or_default().chars().take(1000).collect();
        Ok(Some(Tombstone {
            total: get(0).and_then(|v| v.parse().ok()).unwrap_or(0),
            expired_at,
            sink: bound(get(2)),
            counts: bound(get(3)),
        }))
    }
}
