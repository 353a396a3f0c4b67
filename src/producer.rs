//! The producer: expands a validated batch into jobs and enqueues them idempotently, in
//! one atomic pipeline per batch.

use crate::model::{job_id, JobPayload, ValidatedBatch, PAYLOAD_VERSION};
use crate::queue::{Queue, QueueError};
use sha2::{Digest, Sha256};

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub batch_id: String,
    pub total: u64,
    /// Jobs created by this call (0 when the batch was enqueued before).
    pub added: u64,
}

/// Enqueues every job of the batch that does not exist yet.
pub async fn enqueue(queue: &Queue, batch: &ValidatedBatch) -> Result<Enqueued, QueueError> {
    let shared = &batch.shared;
    let spec_json = serde_json::to_string(shared).expect("batch spec serializes");
    let jobs: Vec<(String, String)> = batch
        .prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let payload = JobPayload {
                v: PAYLOAD_VERSION,
                batch_id: shared.batch_id.clone(),
                index: i as u32,
                prompt: prompt.clone(),
            };
            (
                job_id(&shared.batch_id, i as u32),
                serde_json::to_string(&payload).expect("payload serializes"),
            )
        })
        .collect();
    let mut h = Sha256::new();
    h.update(spec_json.as_bytes());
    for (_, p) in &jobs {
        h.update(p.as_bytes());
    }
    let digest = hex::encode(h.finalize());
    let extras = crate::queue::BatchExtras {
        max_cost: shared.max_cost,
        on_done: shared.on_done.is_some(),
    };
    let added = queue
        .enqueue_batch(&shared.batch_id, &spec_json, &digest, &extras, &jobs)
        .await?;
    Ok(Enqueued {
        batch_id: shared.batch_id.clone(),
        total: jobs.len() as u64,
        added,
    })
}
