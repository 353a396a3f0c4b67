//! The stages submit → poll → finish, one file each. Each runs one upstream interaction
//! for one claimed job and ends with exactly one transition that parks the job or
//! finishes it; the record decides which stage runs, so a redelivered job resumes where
//! it was. This module dispatches a claim to its stage.

mod finish;
mod poll;
mod step;
mod submit;

use crate::job::{After, Field, JobKind, JobRecord, JobState, Transition};
use crate::model::{JobPayload, PAYLOAD_VERSION};
use crate::queue::backend::Claimed;
use crate::worker::Runtime;
use step::Step;
use tracing::warn;

fn parse_payload(rec: &JobRecord) -> Result<JobPayload, String> {
    let raw = rec.payload.as_deref().ok_or("job record has no payload")?;
    let p: JobPayload =
        serde_json::from_str(raw).map_err(|e| format!("unparseable payload: {e}"))?;
    if p.v != PAYLOAD_VERSION {
        return Err(format!(
            "unknown payload version {} (this worker reads {PAYLOAD_VERSION})",
            p.v
        ));
    }
    Ok(p)
}

/// The stage a record calls for (also the metrics label).
fn stage_name(rec: &crate::job::Loaded) -> &'static str {
    match rec {
        Err(_) => "poisoned",
        Ok(r) if matches!(r.kind, JobKind::BatchDone { .. }) => "announce",
        Ok(r) => match r.state {
            JobState::Queued => "submit",
            JobState::Submitting => "resolve",
            JobState::Polling => "poll",
            JobState::Finishing => "finish",
            _ => "other",
        },
    }
}

/// Runs the stage the job's record calls for. Every log line inside carries the job's
/// `job_id` and `batch_id` (a span), and the stage's duration is measured.
pub async fn run(rt: &Runtime, claimed: Claimed) {
    use tracing::Instrument;
    let stage = stage_name(&claimed.claim.record);
    let batch_id = match &claimed.claim.record {
        Ok(r) => r.batch_id().unwrap_or("").to_string(),
        Err(_) => String::new(),
    };
    let span = tracing::info_span!("job", job_id = %claimed.claim.job_id, batch_id = %batch_id);
    let started = std::time::Instant::now();
    if stage == "announce" {
        super::announce::run(rt, claimed).instrument(span).await;
    } else {
        run_stage(rt, claimed).instrument(span).await;
    }
    crate::metrics::stage(stage, started.elapsed().as_secs_f64());
}

/// Sends a record to the dead set with the reason, under the claim's lease.
async fn poisoned(rt: &Runtime, job_id: &str, token: &str, reason: String) {
    warn!(job_id = %job_id, reason = %reason, "Poisoned job sent to the dead set.");
    let owner = crate::queue::Owner { job_id, token };
    let tx = Transition::to(JobState::Dead, After::Done).set(Field::Error, reason);
    if let Err(e) = rt
        .queue
        .apply(owner, &rt.leases.nonce(token), &tx, None)
        .await
    {
        warn!(job_id = %job_id, error = %e, "Could not send the poisoned job to the dead set.");
    }
}

async fn run_stage(rt: &Runtime, claimed: Claimed) {
    let Claimed { claim, mut lease } = claimed;
    let rec = match claim.record.clone() {
        Ok(r) => r,
        Err(bad) => {
            poisoned(rt, &claim.job_id, &claim.token, bad.reason).await;
            lease.settle();
            return;
        }
    };
    let mut step = Step {
        rt,
        job_id: &claim.job_id,
        token: &claim.token,
        rec,
        slot: None,
    };
    let payload = match parse_payload(&step.rec) {
        Ok(p) => p,
        Err(reason) => {
            poisoned(rt, &claim.job_id, &claim.token, reason).await;
            lease.settle();
            return;
        }
    };
    let shared = match rt.batch_shared(&payload.batch_id).await {
        Ok(s) => s,
        Err(reason) => {
            warn!(job_id = %claim.job_id, reason = %reason, "Job's batch unreadable; sent to the dead set.");
            step.go(Transition::to(JobState::Dead, After::Done).set(Field::Error, reason))
                .await;
            lease.settle();
            return;
        }
    };
    step.slot = Some(rt.admission.slot_ctx(shared.provider));
    match step.rec.state {
        JobState::Queued => submit::submit(&step, &payload, &shared).await,
        JobState::Submitting => {
            // A worker died or lost its lease mid-POST: the provider may have the job.
            // The attempt on record is the one looked up.
            let client_id = crate::job::client_id(&claim.job_id, step.rec.submit_id.as_deref());
            let reason = "submit outcome unknown: the worker stopped during the POST";
            submit::resolve_unknown(&step, &payload, &client_id, shared.provider, reason).await;
        }
        JobState::Polling => poll::poll(&step, &payload, shared.provider).await,
        JobState::Finishing => finish::finish(&step, &payload).await,
        other => {
            let reason = format!("a {other} job was claimed; terminal jobs are never run");
            step.go(Transition::to(JobState::Dead, After::Done).set(Field::Error, reason))
                .await;
        }
    }
    lease.settle();
}
