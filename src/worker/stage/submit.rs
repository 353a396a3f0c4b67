//! The submit stage: admission (pause, budget, slot, rate), the durable `submitting`
//! mark, the POST, and recording the upstream id in the step that parks the job (rule 1).
//! An ambiguous POST is resolved by a lookup where the provider has one.

use super::step::{outcome, Step};
use crate::admission::Gate;
use crate::cost;
use crate::job::{After, Field, JobState, Transition, WaitList};
use crate::model::{BatchShared, GenerationRequest, JobPayload, ProviderName};
use crate::queue::{Budget, LatencyKey, Recorded};
use crate::upstream::{ErrorClass, Lookup, UpstreamError};
use crate::worker::media::{batch_media, MediaError};
use std::time::Duration;
use tracing::{info, warn};

/// Rule 1: the upstream id is the first thing recorded, in the same step that parks the
/// job until its first poll. Rule 9: when the lease was lost meanwhile (a pause, a long
/// stall), the id is recorded anyway, fenced by this submit's own id, so a generation
/// that was paid for is polled rather than given up or bought again.
async fn record_submitted(
    step: &Step<'_>,
    provider: ProviderName,
    key: &LatencyKey,
    upstream_id: &str,
    submit_id: Option<&str>,
) {
    let first = crate::worker::latency::poll_wait(step.rt, provider, key, Duration::ZERO, 0).await;
    // No first wait passes the deadline, where the last poll is due.
    let first = first.min(step.rt.settings.provider(provider).poll.deadline);
    let now = step.rt.queue.now_ms();
    let at = now + first.as_millis() as u64;
    info!(job_id = %step.job_id, upstream_id = %upstream_id, "Submitted.");
    let tx = Transition::to(JobState::Polling, After::ParkUntil(at))
        .set(Field::UpstreamId, upstream_id)
        .set(Field::SubmittedAt, now.to_string())
        .set(Field::Polls, "0")
        .set(Field::LastPollAt, "")
        .set(Field::Attempts, "0")
        .set(Field::Error, "")
        .durable();
    if step.go(tx).await {
        return;
    }
    let (Some(submit_id), Some(slot)) = (submit_id, step.slot.as_ref()) else {
        warn!(job_id = %step.job_id, upstream_id = %upstream_id,
            "Submitted, but the lease was lost before the upstream id was recorded.");
        return;
    };
    let q = &step.rt.queue;
    match q
        .record_upstream(step.job_id, submit_id, upstream_id, slot, at)
        .await
    {
        Ok(Recorded::Cancelled) => {
            let cancelled = match step.rt.upstreams.get(&provider) {
                Some(up) => up.cancel(upstream_id).await,
                None => Ok(false),
            };
            info!(job_id = %step.job_id, upstream_id = %upstream_id, cancelled_upstream = ?cancelled,
                "Cancelled while the POST was out: the generation's id is recorded.");
        }
        Ok(r) => info!(job_id = %step.job_id, upstream_id = %upstream_id, outcome = ?r,
            "Lease lost during the POST; the upstream id was recorded, fenced by the submit."),
        Err(e) => warn!(job_id = %step.job_id, upstream_id = %upstream_id, error = %e,
            "Lease lost during the POST and the upstream id could not be recorded."),
    }
}

/// The POST's outcome is unknown. Where the provider can look the job up by our id,
/// ask it: found → poll that generation; certainly absent → submitting again is safe.
/// Elsewhere the job is `submit_unknown` and never re-POSTed automatically.
pub(super) async fn resolve_unknown(
    step: &Step<'_>,
    payload: &JobPayload,
    client_id: &str,
    provider: ProviderName,
    key: &LatencyKey,
    reason: &str,
) {
    let lookup = match step.rt.upstreams.get(&provider) {
        Some(up) => up.lookup(client_id).await,
        None => Ok(Lookup::Unsupported),
    };
    match lookup {
        Ok(Lookup::Found(upstream_id)) => {
            info!(job_id = %step.job_id, client_id = %client_id, upstream_id = %upstream_id, "Ambiguous submit resolved by lookup.");
            let sid = step.rec.submit_id.clone();
            record_submitted(step, provider, key, &upstream_id, sid.as_deref()).await;
        }
        Ok(Lookup::NotFound) => {
            let e = UpstreamError::new(
                ErrorClass::Retryable,
                format!("{reason}; the provider has no such job, submitting again"),
            );
            step.retry_or_die(payload, JobState::Queued, &e).await;
        }
        Ok(Lookup::Unsupported) => {
            let reason = format!("{reason}; not re-submitted (restyle reconcile decides)");
            step.terminal(payload, JobState::SubmitUnknown, &[(Field::Error, reason)])
                .await;
        }
        Err(e) => {
            // The lookup itself failed: try it again later from the same state.
            warn!(job_id = %step.job_id, error = %e, "Lookup after an ambiguous submit failed.");
            step.retry_or_die(payload, JobState::Submitting, &e).await;
        }
    }
}

/// The gate before a POST, in one round trip (pause, budget, slot, rate). `true`: go;
/// `false`: the job was parked or left to be redelivered.
async fn admitted(
    step: &Step<'_>,
    payload: &JobPayload,
    shared: &BatchShared,
    cost: Option<crate::money::Usd>,
) -> bool {
    let provider = shared.provider;
    let gate = step
        .rt
        .admission
        .submit_gate(provider, &payload.batch_id, step.job_id, cost)
        .await;
    let why = match gate {
        Ok(Gate::Go) => return true,
        Ok(Gate::Paused(until)) => {
            step.wait_for_resume(provider, JobState::Queued, until)
                .await;
            return false;
        }
        Ok(Gate::SlotFull) => {
            // At the in-flight cap: wait on the provider's list, woken when a slot frees.
            let safety = step.rt.queue.now_ms() + 30_000;
            let list = WaitList::Slot(provider.to_string());
            step.go(Transition::to(JobState::Queued, After::Wait(list, safety)))
                .await;
            return false;
        }
        Ok(Gate::Later(d)) => {
            step.park_for(JobState::Queued, d, &[]).await;
            return false;
        }
        Ok(Gate::Budget(Budget::Exceeded)) => {
            "budget: submitting would pass the batch's max_cost (raise it with restyle budget)"
                .to_string()
        }
        Ok(Gate::Budget(_)) => format!(
            "budget: the batch has a max_cost but the cost is unknown \
             (set providers.{provider}.price_per_second.{})",
            shared.model
        ),
        Err(e) => {
            warn!(job_id = %step.job_id, error = %e, "Admission failed; the job will be redelivered.");
            return false;
        }
    };
    let list = WaitList::Budget(payload.batch_id.clone());
    let safety = step.rt.queue.now_ms() + 300_000;
    let tx = Transition::to(JobState::Queued, After::Wait(list, safety))
        .set(Field::WaitReason, "budget")
        .set(Field::Error, why);
    step.go(tx).await;
    false
}

/// The batch's media could not be had: a Redis or upload failure is retried, media that
/// are gone or corrupt end the job (dead, with the reason), an upload refused for the
/// account pauses the provider. Nothing was submitted.
async fn media_failed(
    step: &Step<'_>,
    payload: &JobPayload,
    provider: ProviderName,
    e: MediaError,
) {
    let e = match e {
        MediaError::Broken(reason) => {
            warn!(job_id = %step.job_id, reason = %reason, "Batch media unusable; the job is dead.");
            let reason = format!("batch media: {reason}");
            step.terminal(payload, JobState::Dead, &[(Field::Error, reason)])
                .await;
            return;
        }
        MediaError::Queue(q) => {
            UpstreamError::new(ErrorClass::Retryable, format!("batch media: {q}"))
        }
        MediaError::Upload(e) => e,
    };
    match e.class {
        ErrorClass::RateLimited { retry_after } => {
            step.rate_limited(provider, JobState::Queued, retry_after, &e)
                .await
        }
        ErrorClass::Retryable | ErrorClass::Ambiguous => {
            step.retry_or_die(payload, JobState::Queued, &e).await
        }
        ErrorClass::Job => {
            let reason = e.message.clone();
            step.terminal(payload, JobState::Failed, &[(Field::Error, reason)])
                .await
        }
        ErrorClass::Account => {
            step.pause_account(provider, JobState::Queued, &e, u64::MAX)
                .await
        }
    }
}

pub(super) async fn submit(step: &Step<'_>, payload: &JobPayload, shared: &BatchShared) {
    let rt = step.rt;
    let provider = shared.provider;
    let key = LatencyKey::new(provider, shared.model, shared.duration);
    let Some(up) = rt.upstreams.get(&provider) else {
        return step.wait_for_credentials(provider).await;
    };
    // Before admission: reading (or uploading) the batch's media is not a generation.
    let media = match batch_media(rt, up.as_ref(), &payload.batch_id, shared).await {
        Ok(m) => m,
        Err(e) => return media_failed(step, payload, provider, e).await,
    };
    let req = GenerationRequest::with_media(
        shared,
        &media,
        step.job_id.to_string(),
        payload.prompt.clone(),
    );
    let cost = cost::estimate(&rt.settings, shared);
    if !admitted(step, payload, shared, cost).await {
        return;
    }
    // Unique per attempt: what this worker may still record if it loses the lease.
    let submit_id = uuid::Uuid::new_v4().simple().to_string();
    let req = &req.for_attempt(Some(&submit_id));
    let tx = Transition::to(JobState::Submitting, After::Keep)
        .set(Field::SubmitId, submit_id.as_str())
        .set(Field::Provider, provider.as_str())
        .set(Field::Model, req.model.as_str())
        .set(
            Field::EstimatedCost,
            cost.map(|c| c.to_wire()).unwrap_or_default(),
        )
        .set(Field::WaitReason, "")
        .durable();
    if !step.go(tx).await {
        return;
    }
    let t = std::time::Instant::now();
    let res = up.submit(req).await;
    crate::metrics::upstream(provider, "submit", outcome(&res), t.elapsed().as_secs_f64());
    let e = match res {
        Ok(upstream_id) => {
            return record_submitted(step, provider, &key, &upstream_id, Some(&submit_id)).await
        }
        Err(e) => e,
    };
    if e.class != ErrorClass::Ambiguous {
        // Certainly nothing was created: a cancel that came meanwhile gets its budget back.
        if let Err(err) = rt.queue.release_if_cancelled(step.job_id).await {
            warn!(job_id = %step.job_id, error = %err, "Could not release a cancelled job's reservation.");
        }
    }
    match e.class {
        ErrorClass::RateLimited { retry_after } => {
            step.rate_limited(provider, JobState::Queued, retry_after, &e)
                .await
        }
        ErrorClass::Retryable => step.retry_or_die(payload, JobState::Queued, &e).await,
        ErrorClass::Ambiguous => {
            let reason = format!("submit outcome unknown: {}", e.message);
            resolve_unknown(step, payload, &req.client_id, provider, &key, &reason).await;
        }
        ErrorClass::Job => {
            step.terminal(
                payload,
                JobState::Failed,
                &[(Field::Error, e.message.clone())],
            )
            .await;
        }
        ErrorClass::Account => {
            step.pause_account(provider, JobState::Queued, &e, u64::MAX)
                .await
        }
    }
}
