//! A batch's files in the object store besides its outputs: one result object per job
//! (`<batch>/results/<job>.json`, its newest outcome), and `results.jsonl` and the contact
//! sheet `index.html`, regenerated from the job records in Redis (the truth) as jobs
//! finish, so every machine's results meet in one place without a shared file lock.
//!
//! The sheet's video links are relative (`./<job>.d<n>.mp4`: they work from a public or
//! website bucket and in a downloaded copy of the folder) or, with `output.link_ttl` set,
//! presigned URLs valid that long. Once a batch's records have left Redis
//! ([`crate::queue::retention`]), [`read_results`] reads the result objects instead.

use super::store::ObjectSink;
use super::{ResultLine, SinkError};
use crate::job::JobState;
use crate::queue::{now_ms, Queue};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::time::Duration;

/// The most one result object may hold when read back.
const MAX_RESULT: u64 = 1 << 20;
/// Result objects read at once.
const READS_IN_FLIGHT: usize = 16;
/// Job records read per round trip.
const CHUNK: usize = 500;

/// The name of a job's result object.
pub fn result_name(batch_id: &str, job_id: &str) -> String {
    format!("{batch_id}/results/{job_id}.json")
}

/// Writes the job's result object unless the store holds this outcome or a newer one.
/// Returns whether it wrote.
pub async fn put_result(store: &ObjectSink, line: &ResultLine) -> Result<bool, SinkError> {
    let rel = result_name(&line.batch_id, &line.job_id);
    if let Some(old) = store.get(&rel, MAX_RESULT).await? {
        let old = serde_json::from_slice::<ResultLine>(&old).ok();
        if old.is_some_and(|o| o.outcome >= line.outcome && o.state.is_terminal()) {
            return Ok(false);
        }
    }
    let body = serde_json::to_vec(line).expect("result line serializes");
    store
        .put(&rel, "application/json", Bytes::from(body))
        .await?;
    Ok(true)
}

/// Every result object of the batch, in job index order.
pub async fn read_results(
    store: &ObjectSink,
    batch_id: &str,
) -> Result<Vec<ResultLine>, SinkError> {
    let listed = store.list(&format!("{batch_id}/results")).await?;
    let names = listed
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| n.ends_with(".json"));
    let mut lines: Vec<ResultLine> = futures::stream::iter(names)
        .map(|name| async move { store.get(&name, MAX_RESULT).await })
        .buffer_unordered(READS_IN_FLIGHT)
        .try_filter_map(|got| async move {
            Ok(got.and_then(|b| serde_json::from_slice::<ResultLine>(&b).ok()))
        })
        .try_collect()
        .await?;
    lines.retain(|l| l.batch_id == batch_id);
    lines.sort_by_key(|l| l.index);
    Ok(lines)
}

/// Regenerates the batch's `results.jsonl` and `index.html` in the store from its records.
/// `false` when nothing was written: the batch has no records in Redis, or it finished
/// while this snapshot of it was being made (the finishing stage writes the final one).
pub async fn publish(
    queue: &Queue,
    store: &ObjectSink,
    link_ttl: Duration,
    batch_id: &str,
) -> Result<bool, SinkError> {
    let redis = |e: crate::queue::QueueError| SinkError::Transient(e.to_string());
    let Some(info) = queue.batch(batch_id).await.map_err(redis)? else {
        return Ok(false);
    };
    let mut records = Vec::new();
    for chunk in crate::ops::job_id_chunks(&info, CHUNK) {
        records.extend(queue.jobs(&chunk).await.map_err(redis)?);
    }
    let mut jsonl = Vec::new();
    let mut links = HashMap::new();
    for rec in records.iter().filter_map(|r| r.as_ref().ok()) {
        if !rec.state.is_terminal() {
            continue;
        }
        let index = rec
            .job_id
            .rsplit_once('.')
            .and_then(|(_, i)| i.parse().ok());
        let line = ResultLine::from_stored(rec, batch_id, index.unwrap_or(0));
        serde_json::to_writer(&mut jsonl, &line).expect("result line serializes");
        jsonl.push(b'\n');
        let file = rec
            .file
            .as_deref()
            .filter(|_| rec.state == JobState::Succeeded);
        if let (Some(file), false) = (file, link_ttl.is_zero()) {
            let url = store.signed_url(file, link_ttl).await?;
            links.insert(rec.job_id.clone(), url.to_string());
        }
    }
    let html = crate::report::render_with(&info, &records, now_ms(), &links);
    // A snapshot taken while the batch ran must not land over the final one that the
    // stage finishing the batch writes: look again just before writing.
    if !info.is_finished() {
        let now = queue.batch(batch_id).await.map_err(redis)?;
        if now.is_none_or(|b| b.is_finished()) {
            return Ok(false);
        }
    }
    store
        .put(
            &format!("{batch_id}/results.jsonl"),
            "application/x-ndjson",
            Bytes::from(jsonl),
        )
        .await?;
    store
        .put(
            &format!("{batch_id}/index.html"),
            "text/html; charset=utf-8",
            Bytes::from(html),
        )
        .await?;
    Ok(true)
}
