//! The `batch_done` job: queued by the transition that finishes a batch with `on_done`,
//! it delivers the batch summary to the hook the batch names, with retries and an
//! idempotency key (delivery is at-least-once; the job makes it once per completion).
//! The hook is looked up in this worker's own settings (`[hooks.<name>]`); a name they
//! do not define, or an `on_done` stored in the old table form (a command or webhook
//! chosen by the batch), makes the job `dead` with the reason at once: nothing is run,
//! and no retry could change that. Commands run boxed (`hook`).

use super::Runtime;
use crate::config::{HookAction, HookSettings};
use crate::job::{After, Field, JobKind, JobState, Transition};
use crate::model::OnDone;
use crate::money::Usd;
use crate::queue::backend::Claimed;
use crate::upstream::schedule::retry_delay;
use secrecy::ExposeSecret;
use serde::Serialize;
use std::collections::BTreeMap;
use tracing::{debug, info, warn};

/// What a webhook receives and a command reads on stdin.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    pub batch_id: String,
    /// 1 for the first time the batch finished; more after retries finish it again.
    pub completion: u64,
    /// Same for every delivery of this completion: receivers deduplicate on it.
    pub idempotency_key: String,
    pub total: u64,
    pub counts: BTreeMap<JobState, u64>,
    pub finished_at: Option<u64>,
    /// Estimated cost committed by the batch's jobs (USD; 0 when no price is known).
    pub estimated_cost: Usd,
    /// Where the results and contact sheet are (on the machine of the worker that wrote them).
    pub results_file: String,
    pub report_file: String,
}

/// Runs a claimed `batch_done` job to the end.
pub async fn run(rt: &Runtime, claimed: Claimed) {
    let Claimed { claim, mut lease } = claimed;
    let id = claim.job_id.clone();
    let Ok(rec) = &claim.record else {
        // Never routed here: the stage dispatcher sends unreadable records to the dead set.
        lease.settle();
        return;
    };
    let (batch_id, completion) = match &rec.kind {
        JobKind::BatchDone {
            of_batch,
            completion,
        } => (of_batch.clone(), *completion),
        JobKind::Variant => (String::new(), 0),
    };
    let outcome = deliver(rt, &batch_id, &id, completion).await;
    let tx = match outcome {
        Ok(()) => {
            info!(batch_id = %batch_id, job_id = %id, "Batch completion announced.");
            Transition::to(JobState::Succeeded, After::Done)
        }
        Err(Undelivered::Refused(reason)) => {
            warn!(batch_id = %batch_id, reason = %reason, "Batch announcement refused.");
            Transition::to(JobState::Dead, After::Done).set(Field::Error, reason)
        }
        Err(Undelivered::Failed(reason)) => {
            let attempt = rec.attempts + 1;
            if attempt >= rt.settings.retry.max_attempts.max(5) {
                warn!(batch_id = %batch_id, reason = %reason, "Batch announcement gave up.");
                let why = format!("announcement failed {attempt} times: {reason}");
                Transition::to(JobState::Dead, After::Done).set(Field::Error, why)
            } else {
                let wait = retry_delay(&rt.settings.retry, attempt, None, rand::random());
                warn!(batch_id = %batch_id, reason = %reason, attempt, "Batch announcement failed; retrying.");
                let at = rt.queue.now_ms() + wait.as_millis() as u64;
                Transition::to(JobState::Queued, After::ParkUntil(at))
                    .set(Field::Attempts, attempt.to_string())
                    .set(Field::Error, reason)
            }
        }
    };
    let nonce = rt.leases.nonce(&claim.token);
    if let Err(e) = rt.queue.apply(claim.owner(), &nonce, &tx, None).await {
        warn!(job_id = %id, error = %e, "Transition failed; the lease will expire and the job be redelivered.");
    }
    lease.settle();
}

/// Why an announcement was not delivered.
#[derive(Debug, thiserror::Error)]
enum Undelivered {
    /// Worth another attempt (the receiver was down, the command failed).
    #[error("{0}")]
    Failed(String),
    /// Never deliverable by this worker: the job is dead at once.
    #[error("{0}")]
    Refused(String),
}

impl From<String> for Undelivered {
    fn from(reason: String) -> Self {
        Undelivered::Failed(reason)
    }
}

/// The hook `on_done` names, from this worker's settings.
fn hook<'s>(rt: &'s Runtime, on_done: &OnDone) -> Result<(&'s str, &'s HookSettings), Undelivered> {
    let name = match on_done {
        OnDone::Hook(name) => name,
        OnDone::Legacy(_) => {
            return Err(Undelivered::Refused(
                "on_done gives a command or webhook (stored by a version before named hooks); \
                 a batch never chooses what runs: not run. Name a hook defined in the \
                 workers' settings ([hooks.<name>]) instead"
                    .into(),
            ))
        }
    };
    rt.settings
        .hooks
        .get_key_value(name)
        .map(|(k, h)| (k.as_str(), h))
        .ok_or_else(|| {
            let defined: Vec<&str> = rt.settings.hooks.keys().map(String::as_str).collect();
            Undelivered::Refused(format!(
                "on_done names hook {name:?}, which this worker's settings do not define \
                 (defined: {}); not run",
                if defined.is_empty() {
                    "none".to_string()
                } else {
                    defined.join(", ")
                }
            ))
        })
}

async fn deliver(
    rt: &Runtime,
    batch_id: &str,
    key: &str,
    completion: u64,
) -> Result<(), Undelivered> {
    let shared = rt.batch_shared(batch_id).await?;
    let Some(on_done) = shared.on_done.as_ref() else {
        return Ok(());
    };
    let (name, hook) = hook(rt, on_done)?;
    let info = rt
        .queue
        .batch(batch_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("batch {batch_id} has no record"))?;
    let report = crate::report::write(&rt.queue, &rt.settings, batch_id)
        .await
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let summary = BatchSummary {
        batch_id: batch_id.to_string(),
        completion,
        idempotency_key: key.to_string(),
        total: info.total,
        counts: info.counts.clone(),
        finished_at: info.finished_at,
        estimated_cost: info.cost_committed,
        results_file: rt.jsonl.path(batch_id).display().to_string(),
        report_file: report,
    };
    let body = serde_json::to_vec(&summary).map_err(|e| e.to_string())?;
    match &hook.action {
        HookAction::Webhook(url) => {
            let resp = rt
                .egress
                .post(url.expose_secret())
                .map_err(|e| format!("hook {name}: webhook: {e}"))?
                .header("Idempotency-Key", key)
                .header("Content-Type", "application/json")
                .timeout(hook.timeout)
                .body(body)
                .send()
                .await
                .map_err(|e| format!("hook {name}: webhook: {}", crate::egress::explain(e)))?;
            if !resp.status().is_success() {
                let code = resp.status().as_u16();
                return Err(format!("hook {name}: webhook answered HTTP {code}").into());
            }
        }
        HookAction::Command(argv) => {
            let vars = super::hook::environment(hook, batch_id, key);
            let ran = super::hook::run(argv, &vars, &body, hook.timeout)
                .await
                .map_err(|e| format!("hook {name}: {e}"))?;
            debug!(
                hook = name,
                stdout_bytes = ran.stdout_bytes,
                stderr_bytes = ran.stderr_bytes,
                "Hook command succeeded."
            );
        }
    }
    Ok(())
}
