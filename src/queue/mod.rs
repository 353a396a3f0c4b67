//! The Redis queue: owns every key name and Lua script (job records, batch counters,
//! ready list, parked set, leases, dead set). Others call these methods; nobody else
//! builds a key. [`backend`] adapts it to apalis's `Backend`.

pub mod backend;
mod conn;
mod records;
mod scripts;

pub use records::{is_terminal, BatchInfo, JobRecord, STATES};

pub use scripts::Scripts;

use crate::config::{QueueSettings, RedisSettings};
pub use conn::Conn;
use redis::{AsyncCommands, RedisError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A Redis failure, with the URL redacted.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot reach Redis at {url}: {reason}")]
    Unavailable { url: String, reason: String },
    #[error("Redis error: {0}")]
    Redis(String),
    #[error(
        "batch {0} already exists with different content; give the new batch another batch_id"
    )]
    BatchConflict(String),
    /// A batch a command was asked about is not in Redis.
    #[error("no batch {0}")]
    NoBatch(String),
    /// Writing something derived from the queue (contact sheet, export) failed.
    #[error("{0}")]
    Io(String),
}

impl QueueError {
    fn from_redis(e: &RedisError) -> Self {
        QueueError::Redis(e.to_string())
    }
}

/// Whether a failed Redis call is worth retrying (connection trouble, restarts, loading).
fn transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                | redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                | redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown)
                | redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
                // A replica being promoted answers READONLY for a moment.
                | redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        )
        // A full Redis (noeviction) refuses writes until memory frees: wait, do not crash.
        || e.code() == Some("OOM")
}

/// How a caller wants Redis trouble handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMode {
    /// Workers: back off and retry until Redis is back; never give up.
    Persistent,
    /// Producers and CLI: a few quick tries, then a clear error.
    FailFast,
}

/// Milliseconds since the Unix epoch (the unit of every timestamp in Redis).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Key names for one namespace. All share the hash tag `{restyle:<ns>}`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Keys {
            prefix: format!("{{restyle:{namespace}}}:"),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn ready(&self) -> String {
        format!("{}ready", self.prefix)
    }
    pub fn parked(&self) -> String {
        format!("{}parked", self.prefix)
    }
    pub fn leases(&self) -> String {
        format!("{}leases", self.prefix)
    }
    pub fn dead(&self) -> String {
        format!("{}dead", self.prefix)
    }
    pub fn orphans(&self) -> String {
        format!("{}orphans", self.prefix)
    }
    pub fn stats(&self) -> String {
        format!("{}stats", self.prefix)
    }
    pub fn batches(&self) -> String {
        format!("{}batches", self.prefix)
    }
    pub fn job(&self, id: &str) -> String {
        format!("{}job:{id}", self.prefix)
    }
    pub fn batch(&self, id: &str) -> String {
        format!("{}batch:{id}", self.prefix)
    }
    pub fn pause(&self, provider: &str) -> String {
        format!("{}pause:{provider}", self.prefix)
    }
}

/// A provider paused for every worker after an account error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProviderPause {
    pub message: String,
    /// Epoch ms when jobs try again.
    pub until: u64,
}

/// How a transition leaves the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Keep the lease (the stage goes on) and extend it.
    Keep,
    /// Park until the given time (ms); any worker picks it up then.
    ParkUntil(u64),
    /// Back to the ready list now (e.g. shutdown), without a state change.
    Release,
    /// Terminal.
    Done,
    /// Onto a wait list until woken (a freed slot, a resumed provider), with a safety-net
    /// park until the given time (ms).
    Wait(WaitList, u64),
}

/// Lists jobs wait on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitList {
    /// Waiting for an in-flight slot of a provider; woken when one frees.
    Slot(String),
    /// Waiting for a provider's account pause to end; woken by `resume`.
    Pause(String),
    /// Waiting for budget in a batch; woken by `restyle budget` or a released reservation.
    Budget(String),
}

/// What a batch carries besides its spec and jobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchExtras {
    /// Budget in USD.
    pub max_cost: Option<f64>,
    /// Announce each completion (webhook / command): a `batch_done` job is queued.
    pub on_done: bool,
}

/// What a budget check said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Within budget (reserved), or the batch has none.
    Go,
    /// Submitting would pass the budget.
    Exceeded,
    /// The batch has a budget but the job's cost is unknown (no price configured).
    UnknownCost,
}

/// The provider slot a transition maintains (see the TRANSITION script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotCtx {
    pub provider: String,
    /// The provider's in-flight cap (0 = none), to wake a waiter at once if under it.
    pub cap: u32,
    /// How long past the job's next due time its slot stays valid untouched.
    pub ttl_ms: u64,
}

/// A provider's admission state, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProviderView {
    pub in_flight: u64,
    pub waiting_for_slot: u64,
    pub waiting_for_resume: u64,
    /// Requests admitted in the last full second.
    pub rate_last_second: u64,
    /// Milliseconds of fleet-wide cool-down left.
    pub cooldown_ms: u64,
}

/// What a transition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transitioned {
    /// Applied; `batch_finished` is true for the transition that finished the batch.
    Ok { batch_finished: bool },
    /// The lease was lost (swept and maybe claimed elsewhere); stop working on the job.
    Lost { state: String },
}

/// One claimed job: the record as read under a fresh lease token.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job_id: String,
    pub token: String,
    pub record: JobRecord,
}

/// Handle to one namespace of the queue. Cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct Queue {
    conn: Conn,
    keys: Keys,
    scripts: Arc<Scripts>,
    mode: RetryMode,
    url: String,
    pub settings: QueueSettings,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("url", &self.url)
            .field("prefix", &self.keys.prefix)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Queue {
    /// Connects (with timeouts) and checks the server answers.
    pub async fn connect(
        redis: &RedisSettings,
        settings: &QueueSettings,
        mode: RetryMode,
    ) -> Result<Queue, QueueError> {
        let url = redis.redacted_url();
        let unavailable = |e: RedisError| QueueError::Unavailable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let retries = if mode == RetryMode::FailFast { 1 } else { 6 };
        let connect = async {
            loop {
                match conn::open(redis, retries).await {
                    Ok(c) => return Ok(c),
                    Err(e) if mode == RetryMode::Persistent && transient(&e) => {
                        tracing::warn!(redis = %url, error = %e, "Redis unreachable, retrying.");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let conn = connect.await.map_err(unavailable)?;
        let q = Queue {
            conn,
            keys: Keys::new(&redis.namespace),
            scripts: Arc::new(Scripts::new()),
            mode,
            url,
            settings: settings.clone(),
        };
        q.retry(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await?;
        Ok(q)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A raw connection for read-only inspection (status, tests, benchmarks).
    pub fn connection(&self) -> Conn {
        self.conn.clone()
    }

    /// Runs a Redis call, retrying transient failures per the retry mode.
    pub async fn retry<T, F, Fut>(&self, f: F) -> Result<T, QueueError>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let mut delay = Duration::from_millis(50);
        let mut tries = 0u32;
        loop {
            match f(self.conn.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) => {
                    tries += 1;
                    if self.mode == RetryMode::FailFast && tries >= 2 {
                        return Err(QueueError::Unavailable {
                            url: self.url.clone(),
                            reason: e.to_string(),
                        });
                    }
                    if tries == 1 || tries.is_multiple_of(10) {
                        tracing::warn!(redis = %self.url, error = %e, attempt = tries,
                            "Redis call failed, retrying.");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(QueueError::from_redis(&e)),
            }
        }
    }

    /// Enqueues a batch: the batch hash once, and each job that does not exist yet, in one
    /// MULTI/EXEC of chunked script calls (a round trip per batch, not per job).
    /// Returns how many jobs were added (0 when the batch was enqueued before).
    pub async fn enqueue_batch(
        &self,
        batch_id: &str,
        spec_json: &str,
        digest: &str,
        extras: &BatchExtras,
        jobs: &[(String, String)],
    ) -> Result<u64, QueueError> {
        let max_cost = extras.max_cost.map(|c| c.to_string()).unwrap_or_default();
        let on_done = if extras.on_done { "1" } else { "" };
        let (max_cost, on_done) = (max_cost.as_str(), on_done);
        const CHUNK: usize = 1000;
        let now = now_ms();
        let total = jobs.len();
        let chunks: Vec<&[(String, String)]> = if jobs.is_empty() {
            vec![&[]]
        } else {
            jobs.chunks(CHUNK).collect()
        };
        let invocation = |chunk: &[(String, String)]| {
            let mut inv = self.scripts.enqueue.key(self.keys.ready());
            inv.arg(self.keys.prefix())
                .arg(batch_id)
                .arg(spec_json)
                .arg(total)
                .arg(now)
                .arg(digest)
                .arg(max_cost)
                .arg(on_done);
            for (id, payload) in chunk {
                inv.arg(id).arg(payload);
            }
            inv
        };
        let results: Vec<i64> = if matches!(self.conn, Conn::Cluster(_)) {
            // A cluster takes no MULTI across script loads: one atomic script call per
            // chunk (a re-run enqueue fills in whatever a crash left out).
            let mut out = Vec::new();
            for chunk in &chunks {
                let inv = invocation(chunk);
                out.push(
                    self.retry(|mut c| {
                        let inv = &inv;
                        async move { inv.invoke_async(&mut c).await }
                    })
                    .await?,
                );
            }
            out
        } else {
            let chunks = &chunks;
            self.retry(|mut c| async move {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for chunk in chunks {
                    let mut inv = redis::cmd("EVALSHA");
                    inv.arg(self.scripts.enqueue.get_hash())
                        .arg(1)
                        .arg(self.keys.ready())
                        .arg(self.keys.prefix())
                        .arg(batch_id)
                        .arg(spec_json)
                        .arg(total)
                        .arg(now)
                        .arg(digest)
                        .arg(max_cost)
                        .arg(on_done);
                    for (id, payload) in *chunk {
                        inv.arg(id).arg(payload);
                    }
                    pipe.add_command(inv);
                }
                // EVALSHA inside MULTI cannot fall back to EVAL: load first (cheap).
                self.scripts.enqueue.load_async(&mut c).await?;
                pipe.query_async::<Vec<i64>>(&mut c).await
            })
            .await?
        };
        if results.contains(&-1) {
            return Err(QueueError::BatchConflict(batch_id.to_string()));
        }
        Ok(results.iter().map(|&n| n.max(0) as u64).sum())
    }

    /// Claims up to `max` jobs for `worker` (promoting due parked jobs first).
    pub async fn claim(&self, worker: &str, max: usize) -> Result<Vec<Claim>, QueueError> {
        let raw: Vec<Vec<String>> = self
            .retry(|mut c| async move {
                let now = now_ms();
                self.scripts
                    .claim
                    .key(self.keys.ready())
                    .arg(self.keys.prefix())
                    .arg(now)
                    .arg(now + self.settings.lease.as_millis() as u64)
                    .arg(worker)
                    .arg(max)
                    .arg(self.settings.promote_chunk)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|mut row| {
                if row.len() < 2 {
                    return None;
                }
                let rest = row.split_off(2);
                let token = row.pop()?;
                let job_id = row.pop()?;
                Some(Claim {
                    record: JobRecord::from_pairs(&job_id, rest),
                    job_id,
                    token,
                })
            })
            .collect())
    }

    /// Renews the given leases; returns the ids whose lease was lost.
    pub async fn renew(&self, held: &[(String, String)]) -> Result<Vec<String>, QueueError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        self.retry(|mut c| async move {
            let mut inv = self.scripts.renew.key(self.keys.ready());
            inv.arg(self.keys.prefix())
                .arg(now_ms() + self.settings.lease.as_millis() as u64);
            for (id, tok) in held {
                inv.arg(id).arg(tok);
            }
            inv.invoke_async(&mut c).await
        })
        .await
    }

    /// Returns expired leases to the ready list; the count recovered.
    pub async fn sweep(&self) -> Result<u64, QueueError> {
        self.retry(|mut c| async move {
            self.scripts
                .sweep
                .key(self.keys.ready())
                .arg(self.keys.prefix())
                .arg(now_ms())
                .arg(self.settings.sweep_chunk)
                .invoke_async(&mut c)
                .await
        })
        .await
    }

    /// Applies one transition under the claim's lease token (see the Lua doc).
    /// `nonce` must be unique per call for this claim; a retried call is recognised by it.
    pub async fn transition(
        &self,
        job_id: &str,
        token: &str,
        nonce: &str,
        new_state: &str,
        after: After,
        fields: &[(&str, String)],
    ) -> Result<Transitioned, QueueError> {
        self.transition_with(job_id, token, nonce, new_state, after, fields, None)
            .await
    }

    /// [`Queue::transition`] that also keeps the job's provider slot right.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_with(
        &self,
        job_id: &str,
        token: &str,
        nonce: &str,
        new_state: &str,
        after: After,
        fields: &[(&str, String)],
        slot: Option<&SlotCtx>,
    ) -> Result<Transitioned, QueueError> {
        let mut list = String::new();
        let (mode, at) = match &after {
            After::Keep => ("keep", now_ms() + self.settings.lease.as_millis() as u64),
            After::ParkUntil(t) => ("park", *t),
            After::Release => ("release", 0),
            After::Done => ("done", 0),
            After::Wait(w, t) => {
                list = match w {
                    WaitList::Slot(p) => format!("waiting:{p}"),
                    WaitList::Pause(p) => format!("paused:{p}"),
                    WaitList::Budget(b) => format!("budget:{b}"),
                };
                ("wait", *t)
            }
        };
        let (prov, cap, ttl) = match slot {
            Some(s) => (s.provider.as_str(), s.cap, s.ttl_ms),
            None => ("", 0, 0),
        };
        let list = list.as_str();
        let reply: (String, redis::Value) = self
            .retry(|mut c| async move {
                let mut inv = self.scripts.transition.key(self.keys.ready());
                inv.arg(self.keys.prefix())
                    .arg(job_id)
                    .arg(token)
                    .arg(nonce)
                    .arg(new_state)
                    .arg(mode)
                    .arg(at)
                    .arg(now_ms())
                    .arg(prov)
                    .arg(cap)
                    .arg(ttl)
                    .arg(list);
                for (k, v) in fields {
                    inv.arg(*k).arg(v.as_str());
                }
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(match reply {
            (s, v) if s == "ok" => Transitioned::Ok {
                batch_finished: matches!(v, redis::Value::Int(1)),
            },
            (_, v) => Transitioned::Lost {
                state: redis::from_redis_value::<String>(v).unwrap_or_default(),
            },
        })
    }

    /// Asks the fleet-wide limiter for one request: 0 = go now, else ms to wait.
    /// `interval_ms` = 1000 / rate (0 = no rate limit), `tolerance_ms` = (burst − 1) × interval.
    pub async fn admit(
        &self,
        provider: &str,
        interval_ms: f64,
        tolerance_ms: f64,
    ) -> Result<u64, QueueError> {
        self.retry(|mut c| async move {
            self.scripts
                .admit
                .key(self.keys.ready())
                .arg(self.keys.prefix())
                .arg(provider)
                .arg(interval_ms)
                .arg(tolerance_ms)
                .invoke_async(&mut c)
                .await
        })
        .await
    }

    /// Pauses every request to the provider for `ms` (extends, never shortens).
    /// Returns the end of the cool-down (Redis clock, ms).
    pub async fn cooldown(&self, provider: &str, ms: u64) -> Result<u64, QueueError> {
        self.retry(|mut c| async move {
            self.scripts
                .cooldown
                .key(self.keys.ready())
                .arg(self.keys.prefix())
                .arg(provider)
                .arg(ms)
                .invoke_async(&mut c)
                .await
        })
        .await
    }

    /// Takes or refreshes the job's in-flight slot; false when the provider is full.
    pub async fn slot(
        &self,
        provider: &str,
        job_id: &str,
        cap: u32,
        ttl_ms: u64,
    ) -> Result<bool, QueueError> {
        let held: i64 = self
            .retry(|mut c| async move {
                self.scripts
                    .slot
                    .key(self.keys.ready())
                    .arg(self.keys.prefix())
                    .arg(provider)
                    .arg(job_id)
                    .arg(cap)
                    .arg(ttl_ms)
                    .arg(now_ms())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(held == 1)
    }

    /// Reserves the job's estimated cost (`None` = unknown) against its batch's budget.
    pub async fn reserve_budget(
        &self,
        batch_id: &str,
        job_id: &str,
        cost: Option<f64>,
    ) -> Result<Budget, QueueError> {
        let cost = cost.unwrap_or(-1.0);
        let r: i64 = self
            .retry(|mut c| async move {
                self.scripts
                    .reserve
                    .key(self.keys.ready())
                    .arg(self.keys.prefix())
                    .arg(batch_id)
                    .arg(job_id)
                    .arg(cost)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(match r {
            1 => Budget::Go,
            0 => Budget::Exceeded,
            _ => Budget::UnknownCost,
        })
    }

    /// Sets a batch's budget; returns how many jobs that waited for budget were woken.
    pub async fn set_budget(&self, batch_id: &str, max_cost: f64) -> Result<u64, QueueError> {
        self.retry(|mut c| async move {
            self.scripts
                .set_budget
                .key(self.keys.ready())
                .arg(self.keys.prefix())
                .arg(batch_id)
                .arg(max_cost)
                .invoke_async(&mut c)
                .await
        })
        .await
    }

    /// Jobs of the batch waiting for budget.
    pub async fn budget_waiting(&self, batch_id: &str) -> Result<u64, QueueError> {
        let key = format!("{}budget:{batch_id}", self.keys.prefix());
        self.retry(|mut c| {
            let key = key.clone();
            async move { c.llen(key).await }
        })
        .await
    }

    /// A provider event: the job of `upstream_id`, if parked, becomes due now.
    pub async fn poke(&self, provider: &str, upstream_id: &str) -> Result<bool, QueueError> {
        let moved: i64 = self
            .retry(|mut c| async move {
                self.scripts
                    .poke
                    .key(self.keys.ready())
                    .arg(self.keys.prefix())
                    .arg(provider)
                    .arg(upstream_id)
                    .arg(now_ms())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(moved == 1)
    }

    /// Lifts a provider's account pause; returns how many waiting jobs were woken.
    pub async fn resume_provider(&self, provider: &str) -> Result<u64, QueueError> {
        self.retry(|mut c| async move {
            self.scripts
                .resume
                .key(self.keys.ready())
                .arg(self.keys.prefix())
                .arg(provider)
                .invoke_async(&mut c)
                .await
        })
        .await
    }

    /// A provider's admission state (in flight, waiters, rate, cool-down).
    pub async fn provider_view(&self, provider: &str) -> Result<ProviderView, QueueError> {
        let p = self.keys.prefix().to_string();
        let (in_flight, waiting, paused, cooldown, time): (u64, u64, u64, Option<u64>, (u64, u64)) =
            self.retry(|mut c| {
                let p = p.clone();
                async move {
                    redis::pipe()
                        .zcount(format!("{p}slots:{provider}"), now_ms(), "+inf")
                        .llen(format!("{p}waiting:{provider}"))
                        .llen(format!("{p}paused:{provider}"))
                        .get(format!("{p}cooldown:{provider}"))
                        .cmd("TIME")
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        let now = time.0 * 1000 + time.1 / 1000;
        let last_sec = now / 1000 - 1;
        let key = format!("{p}rate:{provider}:{last_sec}");
        let rate: Option<u64> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { c.get(key).await }
            })
            .await?;
        Ok(ProviderView {
            in_flight,
            waiting_for_slot: waiting,
            waiting_for_resume: paused,
            rate_last_second: rate.unwrap_or(0),
            cooldown_ms: cooldown.map_or(0, |c| c.saturating_sub(now)),
        })
    }

    /// Reads one job record.
    pub async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, QueueError> {
        let key = self.keys.job(job_id);
        let pairs: Vec<String> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { c.hgetall::<_, Vec<String>>(key).await }
            })
            .await?;
        Ok((!pairs.is_empty()).then(|| JobRecord::from_pairs(job_id, pairs)))
    }

    /// Reads many job records in one pipeline.
    pub async fn jobs(&self, ids: &[String]) -> Result<Vec<JobRecord>, QueueError> {
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

    /// The pause recorded for a provider, if any (expired pauses included).
    pub async fn provider_pause(
        &self,
        provider: &str,
    ) -> Result<Option<ProviderPause>, QueueError> {
        let key = self.keys.pause(provider);
        let (message, until): (Option<String>, Option<u64>) = self
            .retry(|mut c| {
                let key = key.clone();
                async move {
                    redis::cmd("HMGET")
                        .arg(key)
                        .arg("message")
                        .arg("until")
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Ok(match (message, until) {
            (Some(message), Some(until)) => Some(ProviderPause { message, until }),
            _ => None,
        })
    }

    /// Pauses a provider for every worker until `until` (ms).
    pub async fn set_provider_pause(
        &self,
        provider: &str,
        message: &str,
        until: u64,
    ) -> Result<(), QueueError> {
        let key = self.keys.pause(provider);
        self.retry(|mut c| {
            let key = key.clone();
            async move {
                redis::cmd("HSET")
                    .arg(key)
                    .arg("message")
                    .arg(message)
                    .arg("until")
                    .arg(until)
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
    }

    /// Lifts a provider pause.
    pub async fn clear_provider_pause(&self, provider: &str) -> Result<(), QueueError> {
        let key = self.keys.pause(provider);
        self.retry(|mut c| {
            let key = key.clone();
            async move { c.del::<_, ()>(key).await }
        })
        .await
    }

    /// Moves the given jobs to `to` when their state is one of `from` (operator commands).
    /// Returns the ids moved.
    pub async fn admin_move(
        &self,
        ids: &[String],
        from: &[&str],
        to: &str,
        reason: &str,
    ) -> Result<Vec<String>, QueueError> {
        let allowed = from.join(",");
        let mut moved = Vec::new();
        for chunk in ids.chunks(1000) {
            let allowed = allowed.as_str();
            let part: Vec<String> = self
                .retry(|mut c| async move {
                    let mut inv = self.scripts.admin_move.key(self.keys.ready());
                    inv.arg(self.keys.prefix())
                        .arg(now_ms())
                        .arg(to)
                        .arg(reason)
                        .arg(allowed);
                    for id in chunk {
                        inv.arg(id);
                    }
                    inv.invoke_async(&mut c).await
                })
                .await?;
            moved.extend(part);
        }
        Ok(moved)
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
}
