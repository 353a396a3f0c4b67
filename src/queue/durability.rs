//! Rule 7, durable before paid. An acknowledged Redis write is not a durable one: under
//! `appendfsync everysec` a host crash loses up to a second, and a failover loses what the
//! replica had not received. Which guarantee this deployment gives is detected once per
//! process ([`Queue::durability`]: `INFO` for the version, AOF and replicas, `CONFIG GET
//! append*` for the fsync policy), and a transition flagged [`Transition::durable`] is
//! confirmed by it before `apply` returns:
//!
//! - [`Durability::WaitAof`] (Redis ≥ 7.2, AOF on): `WAITAOF 1 <replicas> <timeout>`;
//! - [`Durability::WaitReplicas`] (replicas, no WAITAOF): `WAIT <replicas> <timeout>`;
//! - [`Durability::FsyncAlways`]: nothing more, Redis fsyncs each write before it answers;
//! - [`Durability::None`]: nothing can be confirmed; the worker says what can be paid twice.
//!
//! `WAIT` and `WAITAOF` cover the writes of *their own client*, and block that client
//! while they wait. On the queue's one multiplexed connection that would stall every other
//! call of the process (lease renewals, claims) for as long as a replica is late, and after
//! a silent reconnect the new client would have written nothing, so a `WAIT` there would
//! confirm nothing it was asked about. So a durable transition runs on a connection of its
//! own, borrowed from a small pool: the transition script, an `HINCRBY` of the namespace's
//! `stats` field `durable_waits` (a write of this client that always follows the
//! transition, even when a retried script finds its nonce applied and writes nothing) and
//! the wait go out as one pipeline, so the wait costs no extra round trip.

use super::{Owner, Queue, QueueError, SlotCtx, Transition, Transitioned};
use crate::config::RedisSettings;
use crate::job::{After, Field, JobState};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Value};
use secrecy::ExposeSecret;
use std::sync::Mutex;
use std::time::Duration;

/// What this Redis deployment guarantees about an acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// Redis ≥ 7.2 with AOF: each durable write is confirmed fsynced to the primary's AOF
    /// (`local`, 1) and to the AOF of `replicas` replicas (`WAITAOF`).
    WaitAof { local: u32, replicas: u32 },
    /// Each durable write is confirmed received by this many replicas (`WAIT`).
    WaitReplicas(u32),
    /// `appendonly yes` with `appendfsync always`: Redis fsyncs every write to its AOF
    /// before it answers (checked at start; not confirmed per write).
    FsyncAlways,
    /// No guarantee: why not, and how much a host crash or failover can lose.
    None { why: String, loss: String },
}

impl Durability {
    /// Whether some guarantee holds (`redis.require_durable` wants one).
    pub fn holds(&self) -> bool {
        !matches!(self, Durability::None { .. })
    }

    /// A short name for logs, `/readyz` and `check-config`.
    pub fn name(&self) -> &'static str {
        match self {
            Durability::WaitAof { .. } => "waitaof",
            Durability::WaitReplicas(_) => "wait",
            Durability::FsyncAlways => "fsync_always",
            Durability::None { .. } => "none",
        }
    }

    /// What holds, in plain words; for `None`, exactly what can be paid twice.
    pub fn describe(&self) -> String {
        const WRITES: &str = "the submitting mark before each POST and the upstream id after it";
        match self {
            Durability::WaitAof { local, replicas } => {
                let mut s = format!(
                    "WAITAOF {local} {replicas}: {WRITES} are confirmed fsynced to the \
                     primary's AOF"
                );
                if *replicas > 0 {
                    s.push_str(&format!(
                        " and to the AOF of {replicas} replica(s) (each must run \
                         appendonly yes, or no submit is confirmed)"
                    ));
                }
                s.push_str(
                    " before the worker goes on; a job whose mark is not confirmed in time \
                     is not submitted and retries. A host crash or failover loses none of \
                     them",
                );
                s
            }
            Durability::WaitReplicas(n) => format!(
                "WAIT {n}: {WRITES} are confirmed received by {n} replica(s) before the \
                 worker goes on; a job whose mark is not confirmed in time is not submitted \
                 and retries. A failover to one of them loses none of them (a primary that \
                 restarts from its own AOF instead of failing over keeps only what its \
                 appendfsync policy wrote)"
            ),
            Durability::FsyncAlways => format!(
                "appendfsync always: Redis fsyncs every write to its AOF before it answers, \
                 so {WRITES} survive a host crash once acknowledged (checked at start; no \
                 replicas, no WAITAOF before Redis 7.2)"
            ),
            Durability::None { why, loss } => format!(
                "no durability guarantee: {why}. A host crash or failover can lose {loss}; \
                 a job submitted in that window can be submitted again (paid twice). Run \
                 Redis with appendonly yes and appendfsync always, or with a replica \
                 (WAIT), or Redis 7.2+ with AOF (WAITAOF)"
            ),
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name(), self.describe())
    }
}

/// The durable transitions' connections and the detected guarantee, shared by every
/// clone of a [`Queue`].
pub(super) struct Link {
    client: Option<redis::Client>,
    config: AsyncConnectionConfig,
    timeout: Duration,
    idle: Mutex<Vec<MultiplexedConnection>>,
    guarantee: tokio::sync::OnceCell<Durability>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("guarantee", &self.guarantee.get())
            .finish()
    }
}

/// Idle durable connections kept per process (at most one per stage running at once).
const MAX_IDLE: usize = 256;

impl Link {
    pub(super) fn new(redis: &RedisSettings) -> Result<Link, RedisError> {
        let client = if redis.cluster {
            None
        } else {
            let url = redis.url.expose_secret();
            Some(match &redis.tls_ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        RedisError::from((
                            redis::ErrorKind::Io,
                            "cannot read redis.tls_ca_file",
                            format!("{}: {e}", path.display()),
                        ))
                    })?;
                    let certs = redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    };
                    redis::Client::build_with_tls(url, certs)?
                }
                None => redis::Client::open(url)?,
            })
        };
        // The reply waits for WAIT / WAITAOF: allow for it on top of the usual timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(redis.connect_timeout))
            .set_response_timeout(Some(redis.response_timeout + redis.durable_timeout));
        Ok(Link {
            client,
            config,
            timeout: redis.durable_timeout,
            idle: Mutex::new(Vec::new()),
            guarantee: tokio::sync::OnceCell::new(),
        })
    }
}

/// The reply of the TRANSITION script.
type Reply = Vec<Value>;

impl Queue {
    /// The guarantee this deployment gives, detected on first use (worker start,
    /// `check-config`, the first durable transition) and kept for the process.
    pub async fn durability(&self) -> Result<Durability, QueueError> {
        let g = self
            .durable
            .guarantee
            .get_or_try_init(|| self.detect_durability())
            .await?;
        Ok(g.clone())
    }

    /// The guarantee, if it was detected already (for `/readyz`, which must not block).
    pub fn durability_known(&self) -> Option<Durability> {
        self.durable.guarantee.get().cloned()
    }

    /// Runs the TRANSITION script with `args` (one transition's segment) as a durable transition: on a connection of
    /// its own followed by the wait the guarantee calls for, in one round trip. The second
    /// value is `Err(why)` when the wait did not confirm the write in time.
    pub(super) async fn transition_durably(
        &self,
        args: &[Vec<u8>],
    ) -> Result<(Reply, Result<(), String>), QueueError> {
        let g = self.durability().await?;
        let wait = match g {
            Durability::WaitAof { local, replicas } => {
                let mut c = redis::cmd("WAITAOF");
                c.arg(local).arg(replicas).arg(self.wait_ms());
                c
            }
            Durability::WaitReplicas(n) => {
                let mut c = redis::cmd("WAIT");
                c.arg(n).arg(self.wait_ms());
                c
            }
            // Nothing to wait for: acknowledged is as durable as this deployment gets, and
            // the transition can share a group call with others.
            Durability::FsyncAlways | Durability::None { .. } => {
                let reply = if self.mode == super::RetryMode::Persistent {
                    self.transition_grouped(args.to_vec()).await?
                } else {
                    self.transition_one(args).await?
                };
                return Ok((reply, Ok(())));
            }
        };
        let mut all = args![self.now_ms()];
        all.extend(args.iter().cloned());
        let (reply, acked) = self
            .retry(|_| async { self.durable_once(&all, &wait).await })
            .await?;
        let reply = super::commit::check(reply)?;
        let confirmed = match (&g, acked) {
            (_, Err(e)) => Err(format!("{} failed: {e}", g.name().to_uppercase())),
            (Durability::WaitAof { local, replicas }, Ok(v)) => {
                let (l, r): (u32, u32) = redis::from_redis_value(v).unwrap_or((0, 0));
                if l >= *local && r >= *replicas {
                    Ok(())
                } else {
                    Err(format!(
                        "WAITAOF: fsynced on {l} of {local} local and {r} of {replicas} \
                         replica AOFs within {:?}",
                        self.durable.timeout
                    ))
                }
            }
            (Durability::WaitReplicas(n), Ok(v)) => {
                let got: u32 = redis::from_redis_value(v).unwrap_or(0);
                if got >= *n {
                    Ok(())
                } else {
                    Err(format!(
                        "WAIT: {got} of {n} replicas acknowledged within {:?}",
                        self.durable.timeout
                    ))
                }
            }
            _ => Ok(()),
        };
        crate::metrics::durable_wait(confirmed.is_ok());
        Ok((reply, confirmed))
    }

    fn wait_ms(&self) -> u64 {
        (self.durable.timeout.as_millis() as u64).max(1)
    }

    /// One try on a pooled connection: script, `HINCRBY`, wait. The wait's own error (a
    /// replica-less WAITAOF, a refused command) is its answer, not a failed call.
    async fn durable_once(
        &self,
        args: &[Vec<u8>],
        wait: &redis::Cmd,
    ) -> Result<(Reply, Result<Value, String>), RedisError> {
        let client = self.durable.client.as_ref().ok_or_else(|| {
            RedisError::from((redis::ErrorKind::Client, "no durable link on a cluster"))
        })?;
        let pooled = self.durable.idle.lock().expect("durable pool").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let mut c = client
                    .get_multiplexed_async_connection_with_config(&self.durable.config)
                    .await?;
                // Loaded once per connection, so a wait is not spent on a NOSCRIPT reply.
                self.scripts.transition.load_async(&mut c).await?;
                c
            }
        };
        let mut script = redis::cmd("EVALSHA");
        script
            .arg(self.scripts.transition.get_hash())
            .arg(1)
            .arg(self.keys.ready())
            .arg(self.keys.prefix());
        for a in args {
            script.arg(a.as_slice());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .add_command(script)
            .cmd("HINCRBY")
            .arg(self.keys.stats())
            .arg("durable_waits")
            .arg(1)
            .add_command(wait.clone());
        let mut loaded = false;
        let out = loop {
            let mut res: Vec<redis::RedisResult<Value>> = pipe.query_async(&mut conn).await?;
            let (Some(acked), Some(_), Some(reply)) = (res.pop(), res.pop(), res.pop()) else {
                return Err(RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "durable pipeline: short reply",
                )));
            };
            match reply {
                Err(e)
                    if !loaded
                        && e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    // Nothing was written: load the script and send it all again.
                    self.scripts.transition.load_async(&mut conn).await?;
                    loaded = true;
                }
                Err(e) => return Err(e),
                Ok(v) => {
                    let replies: Vec<Reply> = redis::from_redis_value(v)?;
                    let reply = replies.into_iter().next().unwrap_or_default();
                    break (reply, acked.map_err(|e| e.to_string()));
                }
            }
        };
        let mut idle = self.durable.idle.lock().expect("durable pool");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        Ok(out)
    }

    /// A durable transition applied but not confirmed. One that keeps the lease (the
    /// stage is about to make the paid call) is withdrawn — back to `queued`, parked for a
    /// retry — and answered `NotDurable`, so the call is not made. One that let go of the
    /// job (the upstream id recorded and parked) cannot be taken back: it stands, and the
    /// risk is logged.
    pub(super) async fn not_durable(
        &self,
        owner: Owner<'_>,
        nonce: &str,
        tx: &Transition,
        slot: Option<&SlotCtx>,
        why: &str,
    ) -> Result<(), QueueError> {
        if tx.after != After::Keep {
            tracing::warn!(job_id = %owner.job_id, reason = %why,
                "Recorded, but Redis did not confirm it durable: a host crash or failover \
                 now could lose this upstream id and the job be submitted again.");
            return Ok(());
        }
        let base = (self.durable.timeout * 2).max(Duration::from_secs(1));
        let wait = base.mul_f64(0.75 + rand::random::<f64>() / 2.0);
        let until = self.now_ms() + wait.as_millis() as u64;
        let reason = format!("not submitted: Redis did not confirm the mark durable ({why})");
        let back = Transition::to(JobState::Queued, After::ParkUntil(until))
            .set(Field::Error, reason.as_str());
        let withdrawn = Box::pin(self.apply(owner, &format!("{nonce}:nd"), &back, slot)).await;
        tracing::warn!(job_id = %owner.job_id, reason = %why, retry_in_ms = wait.as_millis() as u64,
            withdrawn = matches!(withdrawn, Ok(Transitioned::Ok { .. })),
            "Not submitting: Redis did not confirm the submitting mark durable; the job retries.");
        Err(QueueError::NotDurable(reason))
    }
}

mod detect;
#[cfg(test)]
mod tests;
