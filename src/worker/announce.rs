//! The `batch_done` job: queued by the transition that finishes a batch with `on_done`,
//! it delivers the batch summary to the webhook and/or command, with retries and an
//! idempotency key (delivery is at-least-once; the job makes it once per completion).

use super::Runtime;
use crate::job::{After, Field, JobKind, JobState, Transition};
use crate::money::Usd;
use crate::queue::backend::Claimed;
use crate::upstream::schedule::retry_delay;
use serde::Serialize;
use std::collections::BTreeMap;
use tracing::{info, warn};

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
        Err(reason) => {
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

async fn deliver(rt: &Runtime, batch_id: &str, key: &str, completion: u64) -> Result<(), String> {
    let shared = rt.batch_shared(batch_id).await?;
    let Some(on_done) = shared.on_done.clone() else {
        return Ok(());
    };
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
    if let Some(url) = &on_done.webhook {
        let resp = rt
            .egress
            .post(url)
            .map_err(|e| format!("webhook: {e}"))?
            .header("Idempotency-Key", key)
            .header("Content-Type", "application/json")
            .timeout(std::time::Duration::from_secs(30))
            .body(body.clone())
            .send()
            .await
            .map_err(|e| format!("webhook: {}", crate::egress::explain(e)))?;
        if !resp.status().is_success() {
            return Err(format!("webhook answered HTTP {}", resp.status().as_u16()));
        }
    }
    if let Some(cmd) = &on_done.command {
        run_command(cmd, batch_id, key, &body).await?;
    }
    Ok(())
}

async fn run_command(cmd: &str, batch_id: &str, key: &str, body: &[u8]) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("RESTYLE_BATCH_ID", batch_id)
        .env("RESTYLE_IDEMPOTENCY_KEY", key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("command: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body).await;
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(300), child.wait())
        .await
        .map_err(|_| "command: still running after 300 s".to_string())?
        .map_err(|e| format!("command: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("command exited with {status}"))
    }
}
