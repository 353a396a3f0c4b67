//! The Redis queue: owns every key name and Lua script (job records, batch counters,
//! ready list, parked set, leases, dead set). Others call these methods; nobody else
//! builds a key. [`backend`] adapts it to apalis's `Backend`.

/// Script arguments, each encoded the way Redis receives it.
macro_rules! args {
    ($($a:expr),* $(,)?) => {{
        let mut v: Vec<Vec<u8>> = Vec::new();
        $( v.extend(redis::ToRedisArgs::to_redis_args(&$a)); )*
        v
    }};
}

mod admission;
mod catalog;
pub mod backend;
mod clock;
mod commit;
mod conn;
mod durability;
mod keys;
mod latency;
mod lifecycle;
mod marks;
mod sessions;
mod media;
mod push;
mod read;
mod records;
pub mod retention;
mod scripts;
mod version;
mod wake;

pub use crate::job::{After, Transition, WaitList};
pub use records::BatchInfo;

pub use admission::GateReply;
pub use catalog::MAX_LISTED;
pub use durability::Durability;
pub use marks::{Mark, MarkSet};
pub use push::PushTarget;
pub use read::Purged;
pub use scripts::Scripts;
pub use sessions::StoredSession;
pub use version::{RedisVersion, REQUIRED as REQUIRED_REDIS};
pub use wake::Waiter;

use crate::config::{QueueSettings, RedisSettings};
use crate::job::{JobState, Loaded};
use crate::money::Usd;
pub use conn::Conn;
pub use keys::Keys;
pub use latency::LatencyKey;
use redis::RedisError;
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
    /// An id given or read is not one the id rules make: nothing is built from it.
    #[error("{0}")]
    BadId(String),
    /// Writing something derived from the queue (contact sheet, export) failed.
    #[error("{0}")]
    Io(String),
    /// A durable transition (rule 7) was not confirmed in time and was withdrawn.
    #[error("{0}")]
    NotDurable(String),
    /// The server is older than the queue needs (see [`version`]).
    #[error(
        "Redis at {url} is version {found}; restyle needs Redis {required} or newer \
         (the claim uses LMPOP)"
    )]
    RedisTooOld {
        url: String,
        found: RedisVersion,
        required: RedisVersion,
    },
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

/// This machine's wall clock in epoch milliseconds. For display and ids only: every time
/// that orders work (leases, parks, slots, pauses, deadlines) is [`Queue::now_ms`], the
/// Redis server's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A provider paused for every worker after an account error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProviderPause {
    pub message: String,
    /// Epoch ms when jobs try again.
    pub until: u64,
}

/// What a batch carries besides its spec and jobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchExtras {
    /// Budget.
    pub max_cost: Option<Usd>,
    /// Announce each completion (webhook / command): a `batch_done` job is queued.
    pub on_done: bool,
    /// Digests of the payloads stored beside the spec ([`Queue::put_media`]), which the
    /// batch's purge deletes with it.
    pub media: Vec<String>,
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
    /// `rerouted`: asked for `submit_unknown`, but the generation's id is known (recorded,
    /// fenced, by a worker that lost its lease mid-POST): the job was parked in `polling`.
    Ok {
        batch_finished: bool,
        rerouted: bool,
    },
    /// The lease was lost (swept and maybe claimed elsewhere); stop working on the job.
    /// `state` is the record's state now (`None` when unreadable or gone).
    Lost { state: Option<JobState> },
}

/// Whether a TRANSITION script's reply says it applied (`{'ok', …}`).
fn reply_is_ok(reply: &[redis::Value]) -> bool {
    reply
        .first()
        .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
        .is_some_and(|s| s == "ok")
}

/// Warns about the damage a script found in Redis and repaired (its `REPAIRED` list, see
/// `scripts`), naming each key and what was done: garbage is treated as absent and
/// overwritten, never an error that stops the work.
fn warn_repaired(context: &str, notes: &redis::Value) {
    let notes: Vec<String> = redis::from_redis_value(notes.clone()).unwrap_or_default();
    if !notes.is_empty() {
        tracing::warn!(context, repaired = %notes.join("; "),
            "Damaged state in Redis repaired (treated as absent and overwritten).");
    }
}

/// What [`Queue::record_upstream`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A later submit owns the job: nothing written.
    Fenced,
    /// The job already has an upstream id.
    Known,
    /// Stored; the job's current owner polls it.
    Recorded,
    /// Stored, and the job (given up as unknown, or requeued) is polled again.
    Revived,
    /// Stored; the job was cancelled while the POST was out: cancel it upstream.
    Cancelled,
}

/// One claimed job: the record as read under a fresh lease token. A record that does not
/// parse is still claimed (so the worker can send it to the dead set with the reason).
#[derive(Debug, Clone)]
pub struct Claim {
    pub job_id: String,
    pub token: String,
    pub record: Loaded,
}

impl Claim {
    /// The lease this claim holds: whose transitions are accepted.
    pub fn owner(&self) -> Owner<'_> {
        Owner {
            job_id: &self.job_id,
            token: &self.token,
        }
    }
}

/// A job id and the lease token a transition is made under.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub job_id: &'a str,
    pub token: &'a str,
}

/// Handle to one namespace of the queue. Cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct Queue {
    conn: Conn,
    keys: Keys,
    scripts: Arc<Scripts>,
    mode: RetryMode,
    url: String,
    clock: Arc<clock::ServerClock>,
    /// Durable transitions' own connections and the detected guarantee.
    durable: Arc<durability::Link>,
    /// This process's group commit of transitions.
    commit: Arc<commit::Committer>,
    /// For connections of their own (an idle worker's blocking wait).
    redis: Arc<RedisSettings>,
    pub settings: QueueSettings,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("url", &self.url)
            .field("prefix", &self.keys.prefix())
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
        let durable = Arc::new(durability::Link::new(redis).map_err(unavailable)?);
        let q = Queue {
            conn,
            keys: Keys::new(&redis.namespace),
            scripts: Arc::new(Scripts::new()),
            mode,
            url,
            clock: Arc::new(clock::ServerClock::new()),
            durable,
            commit: Arc::new(commit::Committer::default()),
            redis: Arc::new(redis.clone()),
            settings: settings.clone(),
        };
        q.sync_clock().await?;
        match q.server_version().await? {
            Some(found) if !found.supported() => {
                return Err(QueueError::RedisTooOld {
                    url: q.url.clone(),
                    found,
                    required: version::REQUIRED,
                })
            }
            Some(_) => {}
            None => tracing::warn!(redis = %q.url,
                "Redis did not say its version (INFO server); restyle needs 7.0 or newer."),
        }
        Ok(q)
    }

    /// The server's version from `INFO server` (on the namespace's shard); `None` when
    /// it does not say one that parses, or may not be asked (an ACL without `INFO`).
    pub async fn server_version(&self) -> Result<Option<RedisVersion>, QueueError> {
        match self.eval::<String>(&self.scripts.info, &[]).await {
            Ok(info) => Ok(RedisVersion::from_info(&info)),
            Err(QueueError::Redis(why)) => {
                tracing::debug!(error = %why, "INFO server refused.");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Epoch milliseconds on the Redis server's clock (see [`clock`]): the one time base
    /// for leases, parks, slots, pauses and deadlines.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Samples the server's `TIME` (on the namespace's shard).
    pub async fn sync_clock(&self) -> Result<(), QueueError> {
        let sent = std::time::Instant::now();
        let (secs, micros): (u64, u64) = self.eval(&self.scripts.clock, &[]).await?;
        self.clock.observe(sent, secs * 1000 + micros / 1000);
        Ok(())
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

    /// Runs one of our scripts with the namespace prefix and `args` (routed by the ready
    /// list's key, so a cluster sends it to the namespace's shard), retrying per mode.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        args: &[Vec<u8>],
    ) -> Result<T, QueueError> {
        self.retry(|mut c| async move {
            let mut inv = script.key(self.keys.ready());
            inv.arg(self.keys.prefix());
            for a in args {
                inv.arg(a.as_slice());
            }
            inv.invoke_async(&mut c).await
        })
        .await
    }
}
