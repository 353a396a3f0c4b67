//! apalis `Backend` on our Redis queue: a fetcher claims only as many jobs as there are
//! free slots, one timer per worker renews every lease it holds and sweeps expired ones
//! back, and a stage dropped without settling (panic, shutdown) is released at once.

use super::{After, Claim, Queue, QueueError};
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::task_id::RandomId;
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken as CancelToken;
use tower_layer::Identity;

/// Leases this process holds (job id → token), plus stages dropped without settling.
#[derive(Debug, Default)]
pub struct LeaseTable {
    held: Mutex<HashMap<String, String>>,
    abandoned: Mutex<Vec<(String, String)>>,
    nonce: AtomicU64,
    /// Signalled when a stage settles: its transition may have freed a slot or made work
    /// ready, so an idle fetcher looks again at once instead of after `idle_poll`.
    settled: tokio::sync::Notify,
}

impl LeaseTable {
    /// Snapshot of the leases to renew.
    pub fn held(&self) -> Vec<(String, String)> {
        let g = self.held.lock().expect("lease table");
        g.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// True while this process still holds `id` under `token`.
    pub fn holds(&self, id: &str, token: &str) -> bool {
        self.held
            .lock()
            .expect("lease table")
            .get(id)
            .is_some_and(|t| t == token)
    }

    pub fn len(&self) -> usize {
        self.held.lock().expect("lease table").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_abandoned(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.abandoned.lock().expect("lease table"))
    }

    fn forget(&self, id: &str) {
        self.held.lock().expect("lease table").remove(id);
    }

    /// A process-unique nonce for a transition.
    pub fn nonce(&self, token: &str) -> String {
        format!("{token}/{}", self.nonce.fetch_add(1, Ordering::Relaxed))
    }
}

/// A claimed job's lease while its stage runs. `settle` it after the stage's final
/// transition; dropping it unsettled hands the job back to the queue.
#[derive(Debug)]
pub struct Lease {
    pub job_id: String,
    pub token: String,
    table: Arc<LeaseTable>,
    settled: bool,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Lease {
    pub fn new(claim: &Claim, table: Arc<LeaseTable>, slot: Option<OwnedSemaphorePermit>) -> Self {
        table
            .held
            .lock()
            .expect("lease table")
            .insert(claim.job_id.clone(), claim.token.clone());
        Lease {
            job_id: claim.job_id.clone(),
            token: claim.token.clone(),
            table,
            settled: false,
            _slot: slot,
        }
    }

    /// The stage is over: the job was parked, finished or lost. Stop renewing.
    pub fn settle(&mut self) {
        self.settled = true;
        self.table.forget(&self.job_id);
        self.table.settled.notify_one();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.settled {
            self.table.forget(&self.job_id);
            self.table
                .abandoned
                .lock()
                .expect("lease table")
                .push((self.job_id.clone(), self.token.clone()));
        }
    }
}

/// What the apalis worker receives: a claim and the lease that guards it.
#[derive(Debug)]
pub struct Claimed {
    pub claim: Claim,
    pub lease: Lease,
}

/// The apalis backend: tasks arrive from the fetcher through a channel.
#[derive(Debug)]
pub struct RedisBackend {
    rx: mpsc::Receiver<Task<Claimed>>,
}

impl Backend for RedisBackend {
    type Task = Task<Claimed>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<Result<Task<Claimed>, QueueError>>> {
        self.rx.poll_recv(cx).map(|t| t.map(Ok))
    }

    fn poll_close(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), QueueError>> {
        Poll::Ready(Ok(()))
    }
}

impl BackendConfig for RedisBackend {
    type Args = Claimed;
    type Id = RandomId;
    type Kind = apalis_core::backend::finalize::Ephemeral;
    type Config = ();
    type Layer = Identity;

    fn config(&self) -> &() {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Identity {
        Identity::new()
    }
}

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

/// The one timer per worker process: renews every held lease, releases abandoned
/// stages and sweeps expired leases (of dead workers) back to the ready list.
pub async fn maintain_leases(queue: Queue, table: Arc<LeaseTable>, stop: CancelToken) {
    let mut tick = tokio::time::interval(queue.settings.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        if let Err(e) = maintain_once(&queue, &table).await {
            tracing::warn!(error = %e, "Lease upkeep failed; will retry.");
        }
    }
}

/// One round of lease upkeep (exposed for tests that drive the worker step by step).
pub async fn maintain_once(queue: &Queue, table: &LeaseTable) -> Result<(), QueueError> {
    let held = table.held();
    let lost = queue.renew(&held).await?;
    for id in &lost {
        // A stage that settled between the snapshot and the renewal cleared its own
        // token: not a loss. Only a lease still held here was taken by another worker.
        let token = held.iter().find(|(h, _)| h == id).map(|(_, t)| t.clone());
        if token.is_some() && table.holds(id, token.as_deref().unwrap_or_default()) {
            tracing::warn!(job_id = %id, "Lease lost; another worker owns this job now.");
            table.forget(id);
        }
    }
    release_abandoned(queue, table).await?;
    let recovered = queue.sweep().await?;
    if recovered > 0 {
        crate::metrics::lease_recoveries(recovered);
        tracing::info!(recovered, "Expired leases returned to the queue.");
    }
    Ok(())
}

/// Hands every abandoned stage back to the ready list (state unchanged).
pub async fn release_abandoned(queue: &Queue, table: &LeaseTable) -> Result<usize, QueueError> {
    let abandoned = table.take_abandoned();
    for (id, token) in &abandoned {
        let owner = super::Owner { job_id: id, token };
        let tx = crate::job::Transition::stay(After::Release);
        queue.apply(owner, &table.nonce(token), &tx, None).await?;
        tracing::info!(job_id = %id, "Stage abandoned; job released to the queue.");
    }
    Ok(abandoned.len())
}

/// Hands back what a stopping worker still holds, giving up at `deadline`: what is not
/// released by then (Redis unreachable) is left to lease expiry and a sweep elsewhere.
/// Returns (released, left behind).
pub async fn hand_back(
    queue: &Queue,
    table: &LeaseTable,
    deadline: tokio::time::Instant,
) -> (usize, usize) {
    let abandoned = table.take_abandoned();
    let mut released = 0;
    for (id, token) in &abandoned {
        let owner = super::Owner { job_id: id, token };
        let tx = crate::job::Transition::stay(After::Release);
        let nonce = table.nonce(token);
        match tokio::time::timeout_at(deadline, queue.apply(owner, &nonce, &tx, None)).await {
            Ok(Ok(_)) => {
                released += 1;
                tracing::info!(job_id = %id, "Stage cut off; job released to the queue.");
            }
            Ok(Err(e)) => tracing::warn!(job_id = %id, error = %e,
                "Could not hand the job back; its lease will expire."),
            Err(_) => break,
        }
    }
    (released, abandoned.len() - released)
}
