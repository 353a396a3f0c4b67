//! The poll stage: admission for the poll, one poll, and what follows: park until the
//! next poll on the schedule, hand over to finish, or end the job. At the deadline the
//! job is polled once more — a generation that finished in time is kept — and only then
//! cancelled upstream (where the provider can) and marked `timed_out`.

use super::finish::finish;
use super::step::{outcome, Step};
use crate::admission::Gate;
use crate::job::{After, Field, JobState, Transition};
use crate::model::{JobPayload, ProviderName};
use crate::queue::LatencyKey;
use crate::upstream::{ErrorClass, PollStatus};
use crate::worker::latency;
use std::time::Duration;
use tracing::{debug, warn};

/// How late the deadline's last poll may run when the rate limit or a transient error
/// delays it; past this the job times out without it.
const LAST_POLL_GRACE: Duration = Duration::from_secs(60);

/// Times the job out: cancel upstream where the provider can, then `timed_out`.
async fn time_out(step: &Step<'_>, payload: &JobPayload, provider: ProviderName, id: &str) {
    if let Some(up) = step.rt.upstreams.get(&provider) {
        if let Err(e) = up.cancel(id).await {
            warn!(job_id = %step.job_id, error = %e, "Upstream cancel after deadline failed.");
        }
    }
    let deadline = step.rt.settings.provider(provider).poll.deadline;
    let reason = format!("no result within the {}s deadline", deadline.as_secs());
    step.terminal(payload, JobState::TimedOut, &[(Field::Error, reason)])
        .await;
}

pub(super) async fn poll(
    step: &Step<'_>,
    payload: &JobPayload,
    provider: ProviderName,
    key: &LatencyKey,
) {
    let rt = step.rt;
    let rec = &step.rec;
    let Some(upstream_id) = rec.upstream_id.clone() else {
        let reason = "polling without an upstream id".to_string();
        step.terminal(payload, JobState::Dead, &[(Field::Error, reason)])
            .await;
        return;
    };
    let sched = rt.settings.provider(provider).poll;
    let deadline_at = rec.submitted_at.unwrap_or(0) + sched.deadline.as_millis() as u64;
    let now = rt.queue.now_ms();
    // At or past the deadline this is the last poll; past the grace there is none.
    let last = now >= deadline_at;
    if now >= deadline_at + LAST_POLL_GRACE.as_millis() as u64 {
        return time_out(step, payload, provider, &upstream_id).await;
    }
    let Some(up) = rt.upstreams.get(&provider) else {
        return step.wait_for_credentials(provider).await;
    };
    // Before the deadline no wait runs past it; the last poll may wait out the grace.
    let wait_cap = if last {
        deadline_at + LAST_POLL_GRACE.as_millis() as u64
    } else {
        deadline_at
    };
    match rt.admission.poll_gate(provider).await {
        Ok(Gate::Paused(_)) if last => {
            return time_out(step, payload, provider, &upstream_id).await;
        }
        Ok(Gate::Paused(until)) => {
            step.wait_for_resume(provider, JobState::Polling, until.min(deadline_at))
                .await;
            return;
        }
        Ok(Gate::Later(d)) => {
            let at = (rt.queue.now_ms() + d.as_millis() as u64).min(wait_cap);
            step.go(Transition::to(JobState::Polling, After::ParkUntil(at)))
                .await;
            return;
        }
        Ok(_) => {}
        Err(e) => {
            warn!(job_id = %step.job_id, error = %e, "Admission failed; the job will be redelivered.");
            return;
        }
    }
    let t = std::time::Instant::now();
    let res = up.poll(&upstream_id).await;
    crate::metrics::upstream(provider, "poll", outcome(&res), t.elapsed().as_secs_f64());
    let e = match res {
        Ok(PollStatus::Pending { .. }) if last => {
            return time_out(step, payload, provider, &upstream_id).await;
        }
        Ok(PollStatus::Pending { status }) => {
            let polls = rec.polls + 1;
            let now = rt.queue.now_ms();
            let since = Duration::from_millis(now.saturating_sub(rec.submitted_at.unwrap_or(now)));
            let wait = latency::poll_wait(rt, provider, key, since, polls).await;
            let at = (now + wait.as_millis() as u64).min(deadline_at);
            debug!(job_id = %step.job_id, upstream_status = %status, next_in_ms = wait.as_millis() as u64, "Still running.");
            let tx = Transition::to(JobState::Polling, After::ParkUntil(at))
                .set(Field::Polls, polls.to_string())
                .set(Field::LastPollAt, now.to_string())
                .set(Field::Attempts, "0");
            step.go(tx).await;
            return;
        }
        Ok(PollStatus::Succeeded { url }) => {
            let mut tx =
                Transition::to(JobState::Finishing, After::Keep).set(Field::OutputUrl, url);
            // The first success starts the download's attempts afresh. A job back here
            // because its link failed (it has one) keeps counting, or a link that always
            // fails would poll and download forever.
            let fresh = rec.output_url.is_none();
            if fresh {
                tx = tx.set(Field::Attempts, "0");
            }
            if let Some(next) = step.advance(tx).await {
                // A completion seen for the first time is a sample for the learned schedule.
                if fresh {
                    latency::record(rt, provider, key, rec).await;
                }
                finish(&next, payload, provider).await;
            }
            return;
        }
        Ok(PollStatus::Failed { reason }) => {
            step.terminal(payload, JobState::Failed, &[(Field::Error, reason)])
                .await;
            return;
        }
        Err(e) => e,
    };
    match e.class {
        ErrorClass::RateLimited { retry_after } => {
            step.rate_limited(provider, JobState::Polling, retry_after, &e)
                .await
        }
        ErrorClass::Account if last => time_out(step, payload, provider, &upstream_id).await,
        ErrorClass::Account => {
            step.pause_account(provider, JobState::Polling, &e, deadline_at)
                .await
        }
        ErrorClass::Job => {
            step.terminal(
                payload,
                JobState::Failed,
                &[(Field::Error, e.message.clone())],
            )
            .await;
        }
        _ => step.retry_or_die(payload, JobState::Polling, &e).await,
    }
}
