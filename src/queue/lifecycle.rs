//! The job lifecycle on the queue: enqueue a batch, claim, renew and sweep leases, apply
//! a transition under a lease, and operator moves. One script call each (see `scripts`).

use super::conn::Conn;
use super::{
    After, BatchExtras, Claim, Owner, Queue, QueueError, Recorded, SlotCtx, Transition,
    Transitioned, WaitList,
};
use crate::job::{Field, JobRecord, JobState};
use crate::money::Usd;

impl Queue {
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
        let max_cost = extras.max_cost.map(Usd::to_wire).unwrap_or_default();
        let on_done = if extras.on_done { "1" } else { "" };
        let media = extras.media.join(" ");
        let (max_cost, on_done, media) = (max_cost.as_str(), on_done, media.as_str());
        const CHUNK: usize = 1000;
        let now = self.now_ms();
        let total = jobs.len();
        let chunks: Vec<&[(String, String)]> = if jobs.is_empty() {
            vec![&[]]
        } else {
            jobs.chunks(CHUNK).collect()
        };
        let chunk_args: Vec<Vec<Vec<u8>>> = chunks
            .iter()
            .map(|chunk| {
                let mut a =
                    args![batch_id, spec_json, total, now, digest, max_cost, on_done, media];
                for (id, payload) in *chunk {
                    a.extend(args![id, payload]);
                }
                a
            })
            .collect();
        let results: Vec<i64> = if matches!(self.conn, Conn::Cluster(_)) {
            // A cluster takes no MULTI across script loads: one atomic script call per
            // chunk (a re-run enqueue fills in whatever a crash left out).
            let mut out = Vec::new();
            for a in &chunk_args {
                out.push(self.eval(&self.scripts.enqueue, a).await?);
            }
            out
        } else {
            let chunk_args = &chunk_args;
            self.retry(|mut c| async move {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for a in chunk_args {
                    let mut inv = redis::cmd("EVALSHA");
                    inv.arg(self.scripts.enqueue.get_hash())
                        .arg(1)
                        .arg(self.keys.ready())
                        .arg(self.keys.prefix());
                    for arg in a {
                        inv.arg(arg.as_slice());
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

    /// Claims up to `max` jobs for `worker` (promoting due parked jobs first). The reply
    /// is read as bytes, so no job's contents can fail the claim of the others: each
    /// record is checked alone ([`JobRecord::from_redis`]); a claimed id that is not even
    /// UTF-8 is sent to the dead set here, by its bytes.
    pub async fn claim(&self, worker: &str, max: usize) -> Result<Vec<Claim>, QueueError> {
        Ok(self.claim_or_idle(worker, max, false, None).await?.0)
    }

    /// A fetcher's claim (see `queue::wake`): like [`Queue::claim`], and when nothing is
    /// claimed and `wait` is given, the worker is listed as idle and the second value is
    /// when (server clock, epoch ms) it should look again on its own: the earliest parked
    /// job's due time, at most `wait` from now. `woken`: the worker waited since its last
    /// claim (a full batch then wakes another idle worker while more work is ready).
    pub async fn claim_or_idle(
        &self,
        worker: &str,
        max: usize,
        woken: bool,
        wait: Option<std::time::Duration>,
    ) -> Result<(Vec<Claim>, Option<u64>), QueueError> {
        let wait_ms = wait.map_or(0, |w| w.as_millis().max(1) as u64);
        let mut raw: Vec<redis::Value> = self
            .retry(|mut c| async move {
                let now = self.now_ms();
                self.scripts
                    .claim
                    .key(self.keys.ready())
                    .arg(self.keys.prefix())
                    .arg(now)
                    .arg(now + self.settings.lease.as_millis() as u64)
                    .arg(worker)
                    .arg(max)
                    .arg(self.settings.promote_chunk)
                    .arg(&uuid::Uuid::new_v4().simple().to_string()[..8])
                    .arg(if woken { "1" } else { "" })
                    .arg(wait_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let wait_until = match raw.first() {
            Some(redis::Value::Int(t)) if *t > 0 => Some(*t as u64),
            _ => None,
        };
        if !raw.is_empty() {
            raw.remove(0);
        }
        let raw: Vec<Vec<Vec<u8>>> = raw
            .into_iter()
            .filter_map(|v| redis::from_redis_value(v).ok())
            .collect();
        let mut claims = Vec::with_capacity(raw.len());
        for mut row in raw {
            if row.len() < 2 {
                continue;
            }
            let rest = row.split_off(2);
            let (Some(token), Some(id)) = (row.pop(), row.pop()) else {
                continue;
            };
            match (String::from_utf8(id), String::from_utf8(token)) {
                (Ok(job_id), Ok(token)) => claims.push(Claim {
                    record: JobRecord::from_redis(&job_id, rest),
                    job_id,
                    token,
                }),
                (Err(id), token) => {
                    let token = token.map_or_else(|e| e.into_bytes(), String::into_bytes);
                    let id = id.into_bytes();
                    if let Err(e) = self.bury(&id, &token, "job id is not UTF-8").await {
                        // The others are claimed: this one's lease lapses, it comes back.
                        tracing::warn!(job_id = %String::from_utf8_lossy(&id), error = %e,
                            "Could not send the poisoned job to the dead set.");
                    }
                }
                (Ok(job_id), Err(_)) => {
                    tracing::warn!(job_id = %job_id, "Claimed with a lease token that is not text; left to lease expiry.");
                }
            }
        }
        Ok((claims, wait_until))
    }

    /// Sends a claimed job to the dead set under its lease by the id's bytes (an id no
    /// string can hold), with the reason on the record and in `orphans`, where
    /// `restyle dead` finds the reasons of ids it cannot read records by.
    async fn bury(&self, id: &[u8], token: &[u8], reason: &str) -> Result<(), QueueError> {
        tracing::warn!(job_id = %String::from_utf8_lossy(id), reason, "Poisoned job sent to the dead set.");
        self.dead_letter(id, token, reason, false).await?;
        let key = self.keys.orphans();
        self.retry(|mut c| {
            let key = key.clone();
            async move {
                redis::cmd("HSET")
                    .arg(key)
                    .arg(id)
                    .arg(reason)
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
    }

    /// Sends a claimed job whose record cannot be used to the dead set, under its lease,
    /// with the reason on the record. Unless the record is `counted` by its batch (see
    /// [`BadRecord::counted`](crate::job::BadRecord)), its `batch` field is removed first:
    /// a forged record leaves the counters of the batch it names alone (it would finish
    /// that batch early otherwise). Returns false when the lease was lost.
    pub async fn dead_letter(
        &self,
        id: &[u8],
        token: &[u8],
        reason: &str,
        counted: bool,
    ) -> Result<bool, QueueError> {
        let step = |state: &str, mode: &str, at: u64, field: &str, value: &str| {
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let none = "";
            args![id, token, nonce, state, mode, at, none, 0u32, 0u64, none, 1u32, field, value]
        };
        if !counted {
            let at = self.now_ms() + self.settings.lease.as_millis() as u64;
            let a = step("", "keep", at, Field::Batch.as_str(), "");
            let reply = self.transition_one(&a).await?;
            if !super::reply_is_ok(&reply) {
                return Ok(false);
            }
        }
        let a = step(
            JobState::Dead.as_str(),
            "done",
            0,
            Field::Error.as_str(),
            reason,
        );
        let reply = self.transition_one(&a).await?;
        if let Some(v) = reply.get(3) {
            super::warn_repaired(&String::from_utf8_lossy(id), v);
        }
        Ok(super::reply_is_ok(&reply))
    }

    /// Renews the given leases; returns the ids whose lease was lost.
    pub async fn renew(&self, held: &[(String, String)]) -> Result<Vec<String>, QueueError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut a = args![self.now_ms() + self.settings.lease.as_millis() as u64];
        for (id, tok) in held {
            a.extend(args![id, tok]);
        }
        self.eval(&self.scripts.renew, &a).await
    }

    /// Returns expired leases to the ready list; the count recovered.
    pub async fn sweep(&self) -> Result<u64, QueueError> {
        Ok(self.sweep_round(true).await?.0)
    }

    /// One round of the lease timer's look at the leases (see SWEEP): returns expired
    /// leases to the ready list when `sweep` (else only looks) and keeps this process's
    /// view of the server clock. Returns (recovered, earliest lease expiry, if any).
    pub async fn sweep_round(&self, sweep: bool) -> Result<(u64, Option<u64>), QueueError> {
        let sent = std::time::Instant::now();
        let chunk = if sweep { self.settings.sweep_chunk } else { 0 };
        let a = args![self.now_ms(), chunk];
        let (n, secs, micros, next): (u64, u64, u64, u64) =
            self.eval(&self.scripts.sweep, &a).await?;
        self.clock.observe(sent, secs * 1000 + micros / 1000);
        Ok((n, (next > 0).then_some(next)))
    }

    /// Applies one transition under the owner's lease token (see the TRANSITION script),
    /// keeping the job's provider slot right when `slot` is given. `nonce` must be unique
    /// per call for this claim; a retried call is recognised by it. A durable transition
    /// ([`Transition::durable`]) returns once the deployment's guarantee confirms it; one
    /// that keeps the lease and is not confirmed is withdrawn (`QueueError::NotDurable`),
    /// see `durability`.
    pub async fn apply(
        &self,
        owner: Owner<'_>,
        nonce: &str,
        tx: &Transition,
        slot: Option<&SlotCtx>,
    ) -> Result<Transitioned, QueueError> {
        let mut list = String::new();
        let (mode, at) = match &tx.after {
            After::Keep => (
                "keep",
                self.now_ms() + self.settings.lease.as_millis() as u64,
            ),
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
        let new_state = tx.to.map_or("", JobState::as_str);
        let mut a = args![
            owner.job_id,
            owner.token,
            nonce,
            new_state,
            mode,
            at,
            prov,
            cap,
            ttl,
            list,
            tx.fields.len()
        ];
        for (k, v) in &tx.fields {
            a.extend(args![k.as_str(), v.as_str()]);
        }
        let reply = if tx.durable {
            let (reply, confirmed) = self.transition_durably(&a).await?;
            if let (Err(why), true) = (confirmed, super::reply_is_ok(&reply)) {
                self.not_durable(owner, nonce, tx, slot, &why).await?;
            }
            reply
        } else if self.mode == super::RetryMode::Persistent {
            self.transition_grouped(a).await?
        } else {
            self.transition_one(&a).await?
        };
        let text = |v: Option<&redis::Value>| {
            v.and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
        };
        let one = |v: Option<&redis::Value>| matches!(v, Some(redis::Value::Int(1)));
        if let Some(v) = reply.get(3) {
            super::warn_repaired(owner.job_id, v);
        }
        Ok(if text(reply.first()).as_deref() == Some("ok") {
            Transitioned::Ok {
                batch_finished: one(reply.get(1)),
                rerouted: one(reply.get(2)),
            }
        } else {
            Transitioned::Lost {
                state: text(reply.get(1)).and_then(|s| JobState::parse(&s)),
            }
        })
    }

    /// After a POST that certainly created nothing: if the job was cancelled meanwhile,
    /// its budget reservation is given back (see `RELEASE_CANCELLED`).
    pub async fn release_if_cancelled(&self, job_id: &str) -> Result<bool, QueueError> {
        let n: i64 = self
            .eval(&self.scripts.release_cancelled, &args![job_id])
            .await?;
        Ok(n == 1)
    }

    /// Records an upstream id learned after the lease was lost, fenced by the submit's id
    /// (see `RECORD_UPSTREAM`). A job already given up as `submit_unknown` (or requeued)
    /// is revived into `polling`, due at `poll_at`.
    pub async fn record_upstream(
        &self,
        job_id: &str,
        submit_id: &str,
        upstream_id: &str,
        slot: &SlotCtx,
        poll_at: u64,
    ) -> Result<Recorded, QueueError> {
        let a = args![
            job_id,
            submit_id,
            upstream_id,
            slot.provider.as_str(),
            self.now_ms(),
            poll_at,
            slot.ttl_ms
        ];
        let r: String = self.eval(&self.scripts.record_upstream, &a).await?;
        Ok(match r.as_str() {
            "fenced" => Recorded::Fenced,
            "known" => Recorded::Known,
            "revived" => Recorded::Revived,
            "was_cancelled" => Recorded::Cancelled,
            _ => Recorded::Recorded,
        })
    }

    /// Moves the given jobs to `to` when their state is one of `from` (operator commands).
    /// Returns the ids moved.
    pub async fn admin_move(
        &self,
        ids: &[String],
        from: &[JobState],
        to: JobState,
        reason: &str,
    ) -> Result<Vec<String>, QueueError> {
        let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let allowed = allowed.join(",");
        let to = to.as_str();
        let mut moved = Vec::new();
        for chunk in ids.chunks(1000) {
            let mut a = args![self.now_ms(), to, reason, allowed.as_str()];
            for id in chunk {
                a.extend(args![id]);
            }
            let part: Vec<String> = self.eval(&self.scripts.admin_move, &a).await?;
            moved.extend(part);
        }
        Ok(moved)
    }
}
