//! The producer: expands a validated batch into jobs and enqueues them idempotently, in
//! one atomic pipeline per batch. A data URI in the batch (a local file, or one given)
//! is stored once beside the batch (`Queue::put_media`, before the batch exists, so no
//! worker sees a spec naming a payload not there yet) and the spec names it by digest; or,
//! with an object store configured, uploaded to the store once and named there.

use crate::media::{stored_form, Blob};
use crate::model::{job_id, JobPayload, ValidatedBatch, PAYLOAD_VERSION};
use crate::queue::{Queue, QueueError};
use crate::sink::store::ObjectSink;
use crate::sink::SinkError;
use sha2::{Digest, Sha256};

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub batch_id: String,
    pub total: u64,
    /// Jobs created by this call (0 when the batch was enqueued before).
    pub added: u64,
}

/// Feeds what it is given to a SHA-256 (JSON serialized into the hash, not a buffer).
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Enqueues every job of the batch that does not exist yet.
///
/// The batch's digest (what tells "the same batch again" from "another batch under a
/// taken id") is taken over the spec as validated, media inline, as every version took
/// it: a batch enqueued before media were stored is still the same batch.
pub async fn enqueue(queue: &Queue, batch: &ValidatedBatch) -> Result<Enqueued, QueueError> {
    enqueue_with(queue, batch, None).await
}

/// [`enqueue`], with the results store when one is configured: the batch's payloads
/// (local files) are uploaded to it once, the first time the batch is enqueued, instead
/// of into Redis, and the spec names each object (workers send providers presigned URLs).
pub async fn enqueue_with(
    queue: &Queue,
    batch: &ValidatedBatch,
    store: Option<&ObjectSink>,
) -> Result<Enqueued, QueueError> {
    let shared = &batch.shared;
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
    let mut h = HashWriter(Sha256::new());
    // The probe's reading is recorded with the batch but is no part of what it is.
    let unprobed;
    let hashed = if shared.source.is_some() {
        unprobed = crate::model::BatchShared {
            source: None,
            ..shared.clone()
        };
        &unprobed
    } else {
        shared
    };
    serde_json::to_writer(&mut h, hashed).expect("batch spec serializes");
    for (_, p) in &jobs {
        h.0.update(p.as_bytes());
    }
    let digest = hex::encode(h.0.finalize());
    let (mut stored, blobs) = stored_form(shared);
    if store.is_some() {
        for b in &blobs {
            let rel = format!("{}/source/{}", shared.batch_id, b.file_name());
            if let Some(entry) = stored.media.get_mut(b.sha256()) {
                entry.object = Some(rel);
            }
        }
    }
    let digests: Vec<String> = blobs.iter().map(|b| b.sha256().to_owned()).collect();
    let mut written = Vec::new();
    if !blobs.is_empty() {
        match queue.batch_digest(&shared.batch_id).await? {
            Some(d) if d != digest => {
                return Err(QueueError::BatchConflict(shared.batch_id.clone()))
            }
            // Enqueued before: its payloads were stored before it was (or it holds them
            // inline, from an earlier version).
            Some(_) => {}
            None => {
                for b in &blobs {
                    let object = stored.media.get(b.sha256()).and_then(|e| e.object.clone());
                    if let (Some(store), Some(rel)) = (store, object) {
                        upload(store, &rel, b).await?;
                    } else if queue.put_media(&shared.batch_id, b).await? {
                        written.push(b.sha256().to_owned());
                    }
                }
            }
        }
    }
    let spec_json = serde_json::to_string(&stored).expect("batch spec serializes");
    // Payloads in the store are not Redis's to delete.
    let digests: Vec<String> = digests
        .into_iter()
        .filter(|d| stored.media.get(d).is_none_or(|e| e.object.is_none()))
        .collect();
    let extras = crate::queue::BatchExtras {
        max_cost: shared.max_cost,
        on_done: shared.on_done.is_some(),
        media: digests,
    };
    let added = match queue
        .enqueue_batch(&shared.batch_id, &spec_json, &digest, &extras, &jobs)
        .await
    {
        Err(QueueError::BatchConflict(id)) => {
            // Another batch took the id meanwhile: drop what this call stored and that
            // batch does not name.
            let theirs = queue.batch_media(&id).await.unwrap_or_default();
            written.retain(|d| !theirs.contains(d));
            if let Err(e) = queue.drop_media(&id, &written).await {
                tracing::warn!(batch_id = %id, error = %e, "Could not drop the media of a refused batch.");
            }
            return Err(QueueError::BatchConflict(id));
        }
        other => other?,
    };
    Ok(Enqueued {
        batch_id: shared.batch_id.clone(),
        total: jobs.len() as u64,
        added,
    })
}

/// Uploads one payload to the store (streamed in parts; visible once whole), checking
/// what the store took against the payload's digest.
async fn upload(store: &ObjectSink, rel: &str, b: &Blob) -> Result<(), QueueError> {
    let parts: Vec<Result<bytes::Bytes, SinkError>> = (0..b.len())
        .step_by(UPLOAD_PART)
        .map(|at| Ok(b.bytes().slice(at..(at + UPLOAD_PART).min(b.len()))))
        .collect();
    let (sha, _) = store
        .upload(rel, b.mime(), b.len() as u64, futures::stream::iter(parts))
        .await
        .map_err(|e| QueueError::Io(format!("uploading the batch's media to the store: {e}")))?;
    if sha != b.sha256() {
        return Err(QueueError::Io(format!(
            "the store took {rel} with digest {sha}, not {}",
            b.sha256()
        )));
    }
    tracing::info!(object = %store.url_of(rel), bytes = b.len(), "Uploaded the batch's media to the store once.");
    Ok(())
}

/// Bytes per part of a media upload.
const UPLOAD_PART: usize = 8 * 1024 * 1024;
