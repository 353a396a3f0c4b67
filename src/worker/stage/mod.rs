//! The stages submit → poll → finish, one file each. Each runs one upstream interaction
//! for one claimed job and ends with exactly one transition that parks the job or
//! finishes it; the record decides which stage runs, so a redelivered job resumes where
//! it was. This module dispatches a claim to its stage.

mod finish;
mod poll;
mod publish;
mod step;
mod submit;

pub use publish::SheetClock;

use crate::job::{After, Field, JobKind, JobRecord, JobState, Transition};
use crate::model::{JobPayload, PAYLOAD_VERSION};
use crate::queue::backend::Claimed;
use crate::worker::Runtime;
use step::Step;
use tracing::warn;

/// The job's payload, which must be of this worker's version and name the very job its
/// record is (the batch and index its id says; the record's id and batch were checked
/// against the id rules when it was read): paths and keys are built from it.
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
    if rec.batch.as_deref() != Some(p.batch_id.as_str())
        || crate::job::job_id(&p.batch_id, p.index) != rec.job_id
    {
        return Err(format!(
            "payload names job {:.80?} of batch {:.80?}, not this one",
            crate::job::job_id(&p.batch_id, p.index),
            p.batch_id
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

/// Sends a record to the dead set with the reason, under the claim's lease (leaving the
/// counters of a batch that does not count it alone, see [`crate::job::BadRecord::counted`]).
async fn poisoned(rt: &Runtime, job_id: &str, token: &str, reason: String, counted: bool) {
    warn!(job_id = %job_id, reason = %reason, "Poisoned job sent to the dead set.");
    let res = rt
        .queue
        .dead_letter(job_id.as_bytes(), token.as_bytes(), &reason, counted)
        .await;
    match res {
        Ok(true) => crate::metrics::transition(JobState::Dead),
        Ok(false) => {
            warn!(job_id = %job_id, "Lease lost; leaving the poisoned job to its new owner.")
        }
        Err(e) => {
            warn!(job_id = %job_id, error = %e, "Could not send the poisoned job to the dead set.")
        }
    }
}

async fn run_stage(rt: &Runtime, claimed: Claimed) {
    let Claimed { claim, mut lease } = claimed;
    let rec = match claim.record.clone() {
        Ok(r) => r,
        Err(bad) => {
            poisoned(rt, &claim.job_id, &claim.token, bad.reason, bad.counted).await;
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
            poisoned(rt, &claim.job_id, &claim.token, reason, true).await;
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
    let key = crate::queue::LatencyKey::new(shared.provider, shared.model, shared.duration);
    // Submit, resolve and poll talk to the provider: without its credentials here the job
    // waits for a worker that has them (finishing only downloads, and goes on).
    let talks = matches!(
        step.rec.state,
        JobState::Queued | JobState::Submitting | JobState::Polling
    );
    if talks && !rt.upstreams.contains_key(&shared.provider) {
        step.wait_for_credentials(shared.provider).await;
        lease.settle();
        return;
    }
    match step.rec.state {
        JobState::Queued => submit::submit(&step, &payload, &shared).await,
        JobState::Submitting => {
            // A worker died or lost its lease mid-POST: the provider may have the job.
            // The attempt on record is the one looked up.
            let client_id = crate::job::client_id(&claim.job_id, step.rec.submit_id.as_deref());
            let reason = "submit outcome unknown: the worker stopped during the POST";
            let p = shared.provider;
            submit::resolve_unknown(&step, &payload, &client_id, p, &key, reason).await;
        }
        JobState::Polling => poll::poll(&step, &payload, shared.provider, &key).await,
        JobState::Finishing => finish::finish(&step, &payload, shared.provider).await,
        other => {
            let reason = format!("a {other} job was claimed; terminal jobs are never run");
            step.go(Transition::to(JobState::Dead, After::Done).set(Field::Error, reason))
                .await;
        }
    }
    lease.settle();
}
