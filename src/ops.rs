//! Operator commands on a batch: cancel, retry, reconcile ambiguous submits, list the
//! dead set. Each is one atomic script call per chunk of jobs (see `queue::admin_move`).

use crate::job::{job_id, JobState};
use crate::queue::{BatchInfo, Queue, QueueError};
use crate::upstream::Upstreams;
use serde::Serialize;

/// States a job can be cancelled from (everything not terminal).
pub fn cancellable() -> Vec<JobState> {
    JobState::ALL
        .into_iter()
        .filter(|s| !s.is_terminal())
        .collect()
}

/// Every job id of a batch (`info.total` of them: as [`Queue::batch`] confirmed it, the
/// number of job indices the batch's records cover, never more).
pub fn job_ids(info: &BatchInfo) -> Vec<String> {
    job_id_chunks(info, usize::MAX).flatten().collect()
}

/// A batch's job ids in index order, `chunk` at a time, made as they are read: readers
/// that go through a batch (export, status) hold one chunk of ids, not all of them.
pub fn job_id_chunks(info: &BatchInfo, chunk: usize) -> impl Iterator<Item = Vec<String>> + '_ {
    let total = info.total.min(u64::from(u32::MAX) + 1);
    let chunk = chunk.clamp(1, u32::MAX as usize) as u64;
    (0..total.div_ceil(chunk)).map(move |c| {
        let end = ((c + 1) * chunk).min(total);
        (c * chunk..end)
            .map(|i| job_id(&info.batch_id, i as u32))
            .collect()
    })
}

/// What `cancel` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cancelled {
    pub cancelled: usize,
    /// Jobs also cancelled upstream (only providers with a cancel call).
    pub cancelled_upstream: usize,
    /// Jobs with an upstream generation that the provider cannot cancel.
    pub left_running_upstream: usize,
    /// Jobs cancelled while their POST was out: the submitting worker records the
    /// generation (if one was created) and cancels it upstream where the provider can;
    /// their budget stays reserved until that is known.
    pub submit_pending: usize,
}

/// Cancels every job not yet terminal. Pending jobs are never submitted; running ones are
/// marked cancelled (their stage stops at its next step) and cancelled upstream where the
/// provider can.
pub async fn cancel(
    queue: &Queue,
    ups: &Upstreams,
    info: &BatchInfo,
) -> Result<Cancelled, QueueError> {
    let moved = queue
        .admin_move(
            &job_ids(info),
            &cancellable(),
            JobState::Cancelled,
            "cancelled by operator",
        )
        .await?;
    let mut out = Cancelled {
        cancelled: moved.len(),
        ..Cancelled::default()
    };
    for rec in queue.jobs(&moved).await?.into_iter().flatten() {
        let Some(upstream_id) = rec.upstream_id.as_deref() else {
            if rec.cancel_requested {
                out.submit_pending += 1;
            }
            continue;
        };
        match rec.provider.and_then(|p| ups.get(&p)) {
            Some(up) => match up.cancel(upstream_id).await {
                Ok(true) => out.cancelled_upstream += 1,
                Ok(false) => out.left_running_upstream += 1,
                Err(e) => {
                    tracing::warn!(job_id = %rec.job_id, error = %e, "Upstream cancel failed.");
                    out.left_running_upstream += 1;
                }
            },
            None => out.left_running_upstream += 1,
        }
    }
    Ok(out)
}

/// Requeues the batch's jobs in the given states (never touching succeeded ones).
pub async fn retry(
    queue: &Queue,
    info: &BatchInfo,
    states: &[JobState],
) -> Result<usize, QueueError> {
    let states: Vec<JobState> = states
        .iter()
        .copied()
        .filter(|s| JobState::RETRYABLE.contains(s))
        .collect();
    Ok(queue
        .admin_move(&job_ids(info), &states, JobState::Queued, "")
        .await?
        .len())
}

/// How to settle jobs whose submit outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// Only list them.
    List,
    /// Submit again: the operator accepts that the provider may run (and bill) it twice.
    Resubmit,
    /// Mark them failed.
    Fail,
}

/// Lists or settles the batch's `submit_unknown` jobs; returns their ids.
pub async fn reconcile(
    queue: &Queue,
    info: &BatchInfo,
    how: Reconcile,
) -> Result<Vec<String>, QueueError> {
    // A job whose generation id is known is never submitted again: ADMIN_MOVE polls it
    // instead (this build does not hold such jobs as unknown; older records may).
    let unknown: Vec<String> = queue
        .jobs(&job_ids(info))
        .await?
        .into_iter()
        .flatten()
        .filter(|r| r.state == JobState::SubmitUnknown)
        .map(|r| r.job_id)
        .collect();
    let from = [JobState::SubmitUnknown];
    match how {
        Reconcile::List => Ok(unknown),
        Reconcile::Resubmit => {
            queue
                .admin_move(&unknown, &from, JobState::Queued, "")
                .await
        }
        Reconcile::Fail => {
            queue
                .admin_move(
                    &unknown,
                    &from,
                    JobState::Failed,
                    "submit outcome unknown; marked failed by reconcile --fail",
                )
                .await
        }
    }
}

/// One entry of the dead set.
#[derive(Debug, Clone, Serialize)]
pub struct DeadJob {
    pub job_id: String,
    pub died_at: u64,
    pub reason: String,
}

/// The newest `limit` dead jobs with their reasons. An id that is not UTF-8 (garbage
/// pushed raw) is shown with replacement characters, its reason read by its bytes.
pub async fn dead(queue: &Queue, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
    let dead = queue.dead_raw(limit).await?;
    let ids: Vec<String> = dead
        .iter()
        .filter_map(|(id, _)| String::from_utf8(id.clone()).ok())
        .collect();
    // One pipelined read of the records (readable: its error; unreadable: why); only ids
    // without a readable record need the reason the claim recorded in the orphans hash.
    let records: std::collections::HashMap<String, Result<String, String>> = queue
        .jobs(&ids)
        .await?
        .into_iter()
        .map(|r| match r {
            Ok(r) => (r.job_id.clone(), Ok(r.error.unwrap_or_default())),
            Err(bad) => (bad.job_id.clone(), Err(bad.to_string())),
        })
        .collect();
    let mut out = Vec::with_capacity(dead.len());
    for (raw, at) in dead {
        let id = String::from_utf8_lossy(&raw).into_owned();
        let known = records.get(&id).filter(|_| id.as_bytes() == raw.as_slice());
        let reason = match known {
            Some(Ok(error)) => error.clone(),
            unreadable => match queue.orphan_reason(&raw).await? {
                Some(why) => why,
                None => unreadable.and_then(|r| r.clone().err()).unwrap_or_default(),
            },
        };
        out.push(DeadJob {
            job_id: id,
            died_at: at,
            reason,
        });
    }
    Ok(out)
}
