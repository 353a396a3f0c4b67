//! apalis `Backend` on our Redis queue: a fetcher claims only as many jobs as there are
//! free slots, one timer per worker renews every lease it holds and sweeps expired ones
//! back (never within a lease period of its own reconnect to Redis, so live workers
//! renew first), and a stage dropped without settling (panic, shutdown) is released at
//! once.

use super::{Claim, QueueError};
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::task_id::RandomId;
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tower_layer::Identity;

mod fetch;
mod upkeep;

pub use fetch::start_fetcher;
pub use upkeep::{hand_back, maintain_leases, maintain_once, release_abandoned};

/// Leases this process holds (job id → token), plus stages dropped without settling.
#[derive(Debug, Default)]
pub struct LeaseTable {
    held: Mutex<HashMap<String, String>>,
    abandoned: Mutex<Vec<(String, String)>>,
    nonce: AtomicU64,
    /// Signalled when the table gains a lease while it held none, or a stage is abandoned:
    /// the lease timer, which looks rarely while nothing is held, starts its rounds.
    busy: tokio::sync::Notify,
    /// When the fetcher last lost contact with Redis (a failed claim or wait), not yet
    /// seen by the lease timer: an idle worker's timer, which looks rarely, must still
    /// know of an outage before it sweeps (see `upkeep::SweepGate`).
    lost: Mutex<Option<std::time::Instant>>,
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

    /// The fetcher could not reach Redis.
    pub fn note_lost(&self) {
        self.lost
            .lock()
            .expect("lease table")
            .get_or_insert_with(std::time::Instant::now);
    }

    fn take_lost(&self) -> Option<std::time::Instant> {
        self.lost.lock().expect("lease table").take()
    }

    fn has_abandoned(&self) -> bool {
        !self.abandoned.lock().expect("lease table").is_empty()
    }

    fn take_abandoned(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.abandoned.lock().expect("lease table"))
    }

    /// Stops renewing `id` — only under `token`: a stage whose lease was lost must not
    /// drop the lease of a newer claim of the same job in this process.
    fn forget(&self, id: &str, token: &str) {
        let mut held = self.held.lock().expect("lease table");
        if held.get(id).is_some_and(|t| t == token) {
            held.remove(id);
        }
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
        let was_empty = {
            let mut held = table.held.lock().expect("lease table");
            let was_empty = held.is_empty();
            held.insert(claim.job_id.clone(), claim.token.clone());
            was_empty
        };
        if was_empty {
            table.busy.notify_one();
        }
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
        self.table.forget(&self.job_id, &self.token);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.settled {
            self.table.forget(&self.job_id, &self.token);
            self.table
                .abandoned
                .lock()
                .expect("lease table")
                .push((self.job_id.clone(), self.token.clone()));
            self.table.busy.notify_one();
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

#[cfg(test)]
mod lease_tests {
    use super::*;

    fn claim(id: &str, token: &str) -> Claim {
        Claim {
            job_id: id.into(),
            token: token.into(),
            record: Err(crate::job::BadRecord {
                job_id: id.into(),
                state_text: None,
                reason: "not read".into(),
                counted: true,
            }),
        }
    }

    #[test]
    fn an_old_lease_settling_leaves_a_newer_claim_of_the_same_job_alone() {
        let table = Arc::new(LeaseTable::default());
        let mut old = Lease::new(&claim("j", "w#1.a"), table.clone(), None);
        let _new = Lease::new(&claim("j", "w#2.b"), table.clone(), None);
        old.settle();
        assert!(
            table.holds("j", "w#2.b"),
            "the newer claim is still renewed"
        );
        drop(old);
        assert_eq!(table.len(), 1);
    }
}
