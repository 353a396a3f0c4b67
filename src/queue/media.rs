//! A batch's media in Redis: each payload (a video, an image) stored once per batch as a
//! string of its own, `media:<batch>:<sha256>`, beside the batch hash, whose spec names
//! it as `media:<sha256>` and whose `media` field lists the digests (what `purge` deletes).
//! Payloads are written and read in chunks of [`MEDIA_CHUNK`], so no command or reply
//! carries more than that, whatever the size of the video. The URLs a provider's storage
//! gave them are fields of the batch hash (`upload:<provider>:<sha256>`), first one kept.

use super::{Keys, Queue, QueueError};
use crate::media::Blob;
use bytes::{Bytes, BytesMut};

/// The most bytes one media command sends or one reply returns.
pub const MEDIA_CHUNK: usize = 4 * 1024 * 1024;

/// The longest payload that is stored or read back (Redis's own limit on a string).
pub const MAX_MEDIA_BYTES: u64 = 512 * 1024 * 1024;

/// How long a partly written payload survives a producer that died writing it.
const PARTIAL_TTL_MS: u64 = 3_600_000;

impl Queue {
    /// Stores one payload of a batch under its digest, once: `false` when it was there
    /// already (same name, same content). Written to a key of its own in chunks, then
    /// renamed, so a reader never sees part of it.
    pub async fn put_media(&self, batch_id: &str, blob: &Blob) -> Result<bool, QueueError> {
        let len = blob.len();
        if len as u64 > MAX_MEDIA_BYTES {
            return Err(QueueError::Redis(format!(
                "a payload of {len} bytes is over the {MAX_MEDIA_BYTES}-byte limit of a Redis string"
            )));
        }
        let key = self.keys.media(batch_id, blob.sha256());
        let have: usize = self
            .retry(|mut c| {
                let key = key.clone();
                async move { redis::cmd("STRLEN").arg(key).query_async(&mut c).await }
            })
            .await?;
        if have == len || len == 0 {
            return Ok(false);
        }
        let writer = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let part = self.keys.media_partial(batch_id, blob.sha256(), writer);
        let part = part.as_str();
        // Allocated whole at once (no regrowth while written); gone if abandoned.
        self.retry(|mut c| async move {
            redis::pipe()
                .cmd("SETRANGE")
                .arg(part)
                .arg(len - 1)
                .arg(&b"\0"[..])
                .ignore()
                .cmd("PEXPIRE")
                .arg(part)
                .arg(PARTIAL_TTL_MS)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await?;
        for (i, chunk) in blob.bytes().chunks(MEDIA_CHUNK).enumerate() {
            let offset = i * MEDIA_CHUNK;
            self.retry(|mut c| async move {
                redis::cmd("SETRANGE")
                    .arg(part)
                    .arg(offset)
                    .arg(chunk)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        }
        let a = args![key.as_str(), part, len];
        match self.eval::<i64>(&self.scripts.media_commit, &a).await? {
            -1 => Err(QueueError::Redis(format!(
                "payload {} of batch {batch_id} was cut short while written (expired?)",
                blob.sha256()
            ))),
            n => Ok(n == 1),
        }
    }

    /// Reads one payload of a batch back, `len` bytes in chunks; `None` when it is missing
    /// or shorter. The caller checks its digest.
    pub async fn get_media(
        &self,
        batch_id: &str,
        sha256: &str,
        len: u64,
    ) -> Result<Option<Bytes>, QueueError> {
        if len > MAX_MEDIA_BYTES {
            return Ok(None);
        }
        let key = self.keys.media(batch_id, sha256);
        let key = key.as_str();
        let len = len as usize;
        let mut buf = BytesMut::with_capacity(len);
        while buf.len() < len {
            let start = buf.len();
            let end = (start + MEDIA_CHUNK).min(len) - 1;
            let part: Vec<u8> = self
                .retry(|mut c| async move {
                    redis::cmd("GETRANGE")
                        .arg(key)
                        .arg(start)
                        .arg(end)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            if part.is_empty() {
                return Ok(None);
            }
            buf.extend_from_slice(&part[..part.len().min(len - start)]);
        }
        Ok(Some(buf.freeze()))
    }

    /// The digests of the payloads a batch stored (its hash's `media` field).
    pub async fn batch_media(&self, batch_id: &str) -> Result<Vec<String>, QueueError> {
        let v = self.batch_field(batch_id, "media").await?;
        Ok(v.unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// The digest a batch was enqueued with (`None`: no such batch).
    pub async fn batch_digest(&self, batch_id: &str) -> Result<Option<String>, QueueError> {
        self.batch_field(batch_id, "digest").await
    }

    async fn batch_field(&self, batch_id: &str, field: &str) -> Result<Option<String>, QueueError> {
        let key = self.keys.batch(batch_id);
        let key = key.as_str();
        self.retry(|mut c| async move {
            redis::cmd("HGET")
                .arg(key)
                .arg(field)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// Deletes payloads of a batch (a producer's, after its batch id turned out taken).
    pub async fn drop_media(&self, batch_id: &str, digests: &[String]) -> Result<(), QueueError> {
        if digests.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = digests
            .iter()
            .map(|d| self.keys.media(batch_id, d))
            .collect();
        let keys = &keys;
        self.retry(
            |mut c| async move { redis::cmd("DEL").arg(keys).query_async::<()>(&mut c).await },
        )
        .await
    }

    /// The URL `provider`'s storage gave a payload of the batch, if one is recorded.
    pub async fn upload_url(
        &self,
        batch_id: &str,
        provider: &str,
        sha256: &str,
    ) -> Result<Option<String>, QueueError> {
        self.batch_field(batch_id, &Keys::upload_field(provider, sha256))
            .await
    }

    /// Records an upload's URL with the batch unless one is recorded already, and returns
    /// the one recorded: of workers racing to upload the same payload, all use the first
    /// URL (the others' uploads are wasted, and harmless). `None`: the batch is gone.
    pub async fn record_upload(
        &self,
        batch_id: &str,
        provider: &str,
        sha256: &str,
        url: &str,
    ) -> Result<Option<String>, QueueError> {
        let bkey = self.keys.batch(batch_id);
        let field = Keys::upload_field(provider, sha256);
        let a = args![bkey.as_str(), field.as_str(), url];
        self.eval(&self.scripts.record_upload, &a).await
    }
}
