//! A worker process's media for the batches it submits. A batch's payloads are read from
//! Redis at most once per process (in bounded chunks, `Queue::get_media`), checked
//! against their digests, and held as shared [`Blob`]s whose base64 text is made once:
//! every request of the batch carries handles to them. Concurrent first submits of a
//! batch wait for the one read in progress instead of reading again.
//!
//! Where the provider takes uploads (fal's storage), a payload is not sent in bodies at
//! all: the URL its storage gave is recorded with the batch in Redis (first one kept), so
//! a payload is uploaded once per batch (two processes racing may both upload; both then
//! use the URL recorded first), and a process that finds the URL recorded never reads
//! the payload.
//!
//! With a results store, a payload the producer uploaded there is sent as a presigned
//! URL ([`source_link_ttl`]), signed afresh when half its life is gone.
//!
//! Bounded: at most [`MAX_BATCHES`] batches, and the least recently used are dropped
//! while what they hold passes [`MAX_HELD_BYTES`] (the most recent one always stays).

use crate::media::{BatchMedia, Blob, Media, Source};
use crate::model::BatchShared;
use crate::queue::QueueError;
use crate::upstream::{Upstream, UpstreamError};
use crate::worker::Runtime;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Batches whose media a process keeps.
pub const MAX_BATCHES: usize = 8;
/// What the kept batches' payloads may hold together (bytes and base64 text).
pub const MAX_HELD_BYTES: u64 = 512 * 1024 * 1024;

/// Why a batch's media could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Redis could not be read: later.
    #[error("batch media: {0}")]
    Queue(#[from] QueueError),
    /// The batch's media are gone or not what was stored: its jobs cannot run.
    #[error("batch media: {0}")]
    Broken(String),
    /// The provider's storage failed or refused the upload.
    #[error("{0}")]
    Upload(UpstreamError),
}

/// A batch's media and when they were made (presigned links age).
type Cell = Arc<OnceCell<(Arc<BatchMedia>, std::time::Instant)>>;

/// The kept batches, least recently used first.
#[derive(Debug, Default)]
pub struct MediaCache {
    entries: Mutex<VecDeque<(String, Cell)>>,
}

impl MediaCache {
    /// The batch's cell (made when new), now the most recently used.
    fn cell(&self, batch_id: &str) -> Cell {
        let mut e = self.entries.lock().expect("media cache");
        let cell = match e.iter().position(|(b, _)| b == batch_id) {
            Some(i) => e.remove(i).map(|(_, c)| c).unwrap_or_default(),
            None => Cell::default(),
        };
        e.push_back((batch_id.to_owned(), cell.clone()));
        while e.len() > MAX_BATCHES {
            e.pop_front();
        }
        cell
    }

    /// Drops the least recently used batches while the kept ones hold too much.
    fn trim(&self) {
        let mut e = self.entries.lock().expect("media cache");
        let held = |c: &Cell| c.get().map_or(0, |m| m.0.held_bytes());
        let mut total: u64 = e.iter().map(|(_, c)| held(c)).sum();
        while total > MAX_HELD_BYTES && e.len() > 1 {
            if let Some((_, c)) = e.pop_front() {
                total -= held(&c);
            }
        }
    }

    /// Drops the batch's entry (its media are made again on next use).
    fn forget(&self, batch_id: &str) {
        let mut e = self.entries.lock().expect("media cache");
        e.retain(|(b, _)| b != batch_id);
    }

    /// Ids of the batches kept, least recently used first.
    pub fn batches(&self) -> Vec<String> {
        let e = self.entries.lock().expect("media cache");
        e.iter().map(|(b, _)| b.clone()).collect()
    }
}

/// The batch's media as its requests to `up` carry them: read (or uploaded) on first use
/// in this process, then shared.
pub async fn batch_media(
    rt: &Runtime,
    up: &dyn Upstream,
    batch_id: &str,
    shared: &BatchShared,
) -> Result<Arc<BatchMedia>, MediaError> {
    let made = || async {
        Ok::<_, MediaError>((
            load(rt, up, batch_id, shared).await?,
            std::time::Instant::now(),
        ))
    };
    let cell = rt.media.cell(batch_id);
    let (mut media, at) = cell.get_or_try_init(made).await?.clone();
    let signed = shared.media.values().any(|e| e.object.is_some());
    if signed && at.elapsed() > source_link_ttl(&rt.settings) / 2 {
        // Its presigned links are half way through their life: sign afresh.
        rt.media.forget(batch_id);
        let cell = rt.media.cell(batch_id);
        media = cell.get_or_try_init(made).await?.0.clone();
    }
    rt.media.trim();
    Ok(media)
}

async fn load(
    rt: &Runtime,
    up: &dyn Upstream,
    batch_id: &str,
    shared: &BatchShared,
) -> Result<Arc<BatchMedia>, MediaError> {
    let mut resolved: HashMap<String, Media> = HashMap::new();
    for source in shared.media_sources() {
        if resolved.contains_key(source) {
            continue;
        }
        let media = match Source::of(source) {
            Source::Url(_) => continue,
            Source::Stored(sha) if in_store(shared, sha).is_some() => {
                Media::Url(presigned(rt, shared, sha).await?.into())
            }
            Source::Stored(sha) if up.uploads() => {
                let url =
                    uploaded(rt, up, batch_id, sha, || stored(rt, batch_id, shared, sha)).await?;
                Media::Url(url.into())
            }
            Source::Stored(sha) => Media::Inline(stored(rt, batch_id, shared, sha).await?),
            // A spec of an earlier version holds the payload itself.
            Source::Inline(uri) => match Blob::from_data_uri(uri) {
                Ok(blob) if up.uploads() => {
                    let blob = Arc::new(blob);
                    let sha = blob.sha256().to_owned();
                    let url =
                        uploaded(rt, up, batch_id, &sha, || async { Ok(blob.clone()) }).await?;
                    Media::Url(url.into())
                }
                Ok(blob) => Media::Inline(Arc::new(blob)),
                Err(_) => continue,
            },
        };
        resolved.insert(source.clone(), media);
    }
    let media = BatchMedia::from_spec(shared, &resolved);
    // The base64 text every body shares, made now and off the async threads.
    let blobs: Vec<Arc<Blob>> = media.blobs().into_iter().cloned().collect();
    if !blobs.is_empty() {
        let made = tokio::task::spawn_blocking(move || {
            for b in &blobs {
                b.base64();
            }
        });
        made.await
            .map_err(|e| MediaError::Broken(format!("encoding failed: {e}")))?;
    }
    Ok(Arc::new(media))
}

/// A payload stored beside the spec, read back and checked against its digest.
async fn stored(
    rt: &Runtime,
    batch_id: &str,
    shared: &BatchShared,
    sha: &str,
) -> Result<Arc<Blob>, MediaError> {
    let entry = shared.media.get(sha).ok_or_else(|| {
        MediaError::Broken(format!(
            "the spec names media {sha} but lists no such payload"
        ))
    })?;
    let bytes = rt
        .queue
        .get_media(batch_id, sha, entry.bytes)
        .await?
        .ok_or_else(|| {
            MediaError::Broken(format!(
                "media {sha} ({} bytes) of batch {batch_id} is missing from Redis",
                entry.bytes
            ))
        })?;
    let (sha, mime) = (sha.to_owned(), entry.mime.clone());
    let checked = tokio::task::spawn_blocking(move || Blob::verified(&sha, &mime, bytes));
    match checked.await {
        Ok(Ok(blob)) => Ok(Arc::new(blob)),
        Ok(Err(e)) => Err(MediaError::Broken(e.to_string())),
        Err(e) => Err(MediaError::Broken(format!("digest check failed: {e}"))),
    }
}

/// The URL the provider's storage gave the payload `sha` of the batch: recorded already,
/// or uploaded now (the payload got from `blob`) and recorded, the first one kept.
async fn uploaded<F, Fut>(
    rt: &Runtime,
    up: &dyn Upstream,
    batch_id: &str,
    sha: &str,
    blob: F,
) -> Result<String, MediaError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Arc<Blob>, MediaError>>,
{
    let provider = up.name();
    if let Some(url) = rt
        .queue
        .upload_url(batch_id, provider.as_str(), sha)
        .await?
    {
        return Ok(url);
    }
    let blob = blob().await?;
    let url = up.upload(&blob).await.map_err(MediaError::Upload)?;
    let recorded = rt
        .queue
        .record_upload(batch_id, provider.as_str(), sha, &url)
        .await?
        .ok_or_else(|| MediaError::Broken(format!("batch {batch_id} is gone (purged)")))?;
    if recorded == url {
        tracing::info!(batch_id, provider = %provider, sha256 = sha, bytes = blob.len(),
            "Uploaded the batch's media once; its jobs send the URL.");
    } else {
        tracing::info!(batch_id, provider = %provider, sha256 = sha,
            "Another worker's upload was recorded first; using its URL (this upload is unused).");
    }
    Ok(recorded)
}

/// The store object the producer uploaded payload `sha` to, if it did.
fn in_store<'a>(shared: &'a BatchShared, sha: &str) -> Option<&'a str> {
    shared.media.get(sha).and_then(|e| e.object.as_deref())
}

/// A presigned URL to a payload in the store, valid for [`source_link_ttl`].
async fn presigned(rt: &Runtime, shared: &BatchShared, sha: &str) -> Result<String, MediaError> {
    let rel = in_store(shared, sha).unwrap_or_default();
    // A name the producer made: `<batch>/source/<file>`; anything else is refused.
    let expected = format!("{}/source/", shared.batch_id);
    let file = rel.strip_prefix(&expected).unwrap_or_default();
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '.';
    if file.is_empty() || !file.chars().all(plain) || file.starts_with('.') {
        return Err(MediaError::Broken(format!(
            "the spec names store object {rel:.120?} for media {sha}, not one the producer makes"
        )));
    }
    let Some(store) = &rt.store else {
        return Err(MediaError::Broken(format!(
            "media {sha} of batch {} is in the results store ({rel}), but this worker has no \
             output.store set",
            shared.batch_id
        )));
    };
    let ttl = source_link_ttl(&rt.settings);
    let url = store
        .signed_url(rel, ttl)
        .await
        .map_err(|e| MediaError::Broken(e.to_string()))?;
    Ok(url.to_string())
}

/// How long a source link lives: long enough for the slowest provider's deadline over
/// every attempt and the longest retry waits between them, plus an hour; at most the
/// seven days a presigned URL may live. A process refreshes its links at half of it.
pub fn source_link_ttl(s: &crate::config::Settings) -> std::time::Duration {
    let deadline = s
        .providers
        .values()
        .map(|p| p.poll.deadline)
        .chain([s.poll.deadline])
        .max()
        .unwrap_or_default();
    let attempts = s.retry.max_attempts.max(1);
    let need = (deadline + s.retry.max_delay) * attempts + std::time::Duration::from_secs(3600);
    need.min(crate::config::store::MAX_LINK_TTL)
}
