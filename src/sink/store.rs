//! The object-storage results store (`output.store = "s3://…" | "gs://…" | "az://…"`),
//! through the `object_store` crate: S3 and S3-compatible endpoints, Google Cloud Storage
//! and Azure Blob Storage. Credentials come from each cloud's standard chain (the
//! builders' `from_env`: `AWS_*`, `GOOGLE_*`, `AZURE_*` variables, profiles, instance
//! roles); none is ever in settings or batch files, and none is shown (the store is named
//! by its URL, which holds none).
//!
//! Names under the store's prefix, all built from validated ids:
//! - `<batch>/<job>.d<claim>.mp4`: an output, one name per delivery of the job, so a
//!   redelivery overwrites nothing; streamed as a multipart upload that becomes visible
//!   only on completion (an upload cut short leaves no object under the name), its SHA-256
//!   computed on the way and recorded in the job's record and result, its length checked
//!   against the stored object's (on S3 each part also carries its own SHA-256, which the
//!   server verifies on arrival);
//! - `<batch>/results/<job>.json`: the job's result line, one object per job (its newest
//!   outcome);
//! - `<batch>/results.jsonl` and `<batch>/index.html`: regenerated as jobs finish
//!   ([`super::sheet`]);
//! - `<batch>/source/<sha256>.<ext>`: a local source the producer uploaded once.

use super::SinkError;
use crate::config::{OutputSettings, StoreLocation};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::signer::Signer;
use object_store::{Attribute, Attributes, ClientOptions, ObjectStore, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Multipart part size (S3's minimum for every part but the last).
const PART: usize = 5 * 1024 * 1024;
/// Parts in flight at once per upload.
const PARTS_IN_FLIGHT: usize = 2;
/// The most objects one listing returns.
pub const MAX_LISTED: usize = 100_000;
/// Store error text kept (the rest is cut).
const MAX_ERROR: usize = 400;

/// An object store and the prefix results go under.
pub struct ObjectSink {
    store: Arc<dyn ObjectStore>,
    signer: Arc<dyn Signer>,
    prefix: ObjPath,
    /// `s3://bucket/prefix`, as set (it holds no credentials).
    url: String,
}

impl std::fmt::Debug for ObjectSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSink")
            .field("url", &self.url)
            .finish()
    }
}

/// A store operation's failure, as a sink error (transient: the stage tries again).
fn store_error(what: &str, e: object_store::Error) -> SinkError {
    let text: String = e.to_string().chars().take(MAX_ERROR).collect();
    SinkError::Transient(format!("results store, {what}: {text}"))
}

impl ObjectSink {
    /// The store `out` names, or `None` for a local directory. Builds the client only
    /// (nothing is sent): a wrong bucket or credentials show at the first write.
    pub fn from_settings(out: &OutputSettings) -> Result<Option<Arc<ObjectSink>>, SinkError> {
        let StoreLocation::Object(url) = &out.store else {
            return Ok(None);
        };
        let refused = |why: String| SinkError::Refused(format!("output.store: {why}"));
        let mut opts = ClientOptions::new()
            .with_connect_timeout(out.connect_timeout)
            .with_timeout(Duration::from_secs(300));
        if let Some(ca) = &out.store_ca_file {
            let bad = |e: &dyn std::fmt::Display| refused(format!("{}: {e}", ca.display()));
            let pem = std::fs::read(ca).map_err(|e| bad(&e))?;
            let cert = object_store::Certificate::from_pem(&pem).map_err(|e| bad(&e))?;
            opts = opts.with_root_certificate(cert);
        }
        let built = |e: object_store::Error| refused(e.to_string());
        let bucket = url.host_str().unwrap_or_default();
        let (store, signer): (Arc<dyn ObjectStore>, Arc<dyn Signer>) = match url.scheme() {
            "s3" => {
                // Each request's body carries its SHA-256, which S3 checks on arrival.
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                    .with_client_options(opts);
                if let Some(e) = &out.store_endpoint {
                    b = b.with_endpoint(e.as_str().trim_end_matches('/'));
                }
                let s = Arc::new(b.build().map_err(built)?);
                (s.clone(), s)
            }
            "gs" => {
                let b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(opts);
                let s = Arc::new(b.build().map_err(built)?);
                (s.clone(), s)
            }
            _ => {
                let b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(bucket)
                    .with_client_options(opts);
                let s = Arc::new(b.build().map_err(built)?);
                (s.clone(), s)
            }
        };
        let prefix = ObjPath::parse(url.path().trim_matches('/'))
            .map_err(|e| refused(format!("bad prefix: {e}")))?;
        Ok(Some(Arc::new(ObjectSink {
            store,
            signer,
            prefix,
            url: url.as_str().trim_end_matches('/').to_string(),
        })))
    }

    /// The store's URL (`s3://bucket/prefix`), for messages and tombstones.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where `rel` lives, as a URL of the store (`s3://bucket/prefix/<rel>`).
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    /// The object path of `rel` (slash-separated, relative to the prefix).
    pub fn path(&self, rel: &str) -> ObjPath {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |p, part| p.child(part))
    }

    /// Streams `body` into `rel` as one multipart upload, hashing it on the way; at most
    /// `cap` bytes. Visible under `rel` only once complete: on any failure the upload is
    /// aborted, and a process killed mid-way leaves only an incomplete upload (invisible;
    /// a bucket lifecycle rule reaps those). Returns the SHA-256 (hex) and length.
    pub async fn upload<S>(
        &self,
        rel: &str,
        content_type: &str,
        cap: u64,
        body: S,
    ) -> Result<(String, u64), SinkError>
    where
        S: Stream<Item = Result<Bytes, SinkError>> + Unpin,
    {
        let path = self.path(rel);
        let mut attrs = Attributes::new();
        attrs.insert(Attribute::ContentType, content_type.to_string().into());
        let opts = object_store::PutMultipartOptions {
            attributes: attrs,
            ..Default::default()
        };
        let up = self
            .store
            .put_multipart_opts(&path, opts)
            .await
            .map_err(|e| store_error("starting an upload", e))?;
        let mut w = WriteMultipart::new_with_chunk_size(up, PART);
        let res = feed(&mut w, body, cap).await;
        let (sha, bytes) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = w.abort().await;
                return Err(e);
            }
        };
        w.finish()
            .await
            .map_err(|e| store_error("completing an upload", e))?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|e| store_error("checking an upload", e))?;
        if meta.size != bytes {
            return Err(SinkError::Transient(format!(
                "results store holds {} bytes for {rel}, {bytes} were sent",
                meta.size
            )));
        }
        Ok((sha, bytes))
    }

    /// Writes `rel` whole (a result object, a page): one PUT, visible all at once.
    pub async fn put(&self, rel: &str, content_type: &str, data: Bytes) -> Result<(), SinkError> {
        let mut attrs = Attributes::new();
        attrs.insert(Attribute::ContentType, content_type.to_string().into());
        let opts = object_store::PutOptions {
            attributes: attrs,
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(rel), PutPayload::from_bytes(data), opts)
            .await
            .map(|_| ())
            .map_err(|e| store_error(&format!("writing {rel}"), e))
    }

    /// Reads `rel` (at most `cap` bytes); `None` when there is no such object.
    pub async fn get(&self, rel: &str, cap: u64) -> Result<Option<Bytes>, SinkError> {
        let res = match self.store.get(&self.path(rel)).await {
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(&format!("reading {rel}"), e)),
            Ok(r) => r,
        };
        if res.meta.size > cap {
            return Err(SinkError::Refused(format!(
                "{rel} in the results store is {} bytes, over {cap}",
                res.meta.size
            )));
        }
        res.bytes()
            .await
            .map(Some)
            .map_err(|e| store_error(&format!("reading {rel}"), e))
    }

    /// Opens `rel` for streaming: its length and its bytes as they arrive; `None` when
    /// there is no such object.
    pub async fn get_stream(
        &self,
        rel: &str,
    ) -> Result<
        Option<(
            u64,
            futures::stream::BoxStream<'static, Result<Bytes, SinkError>>,
        )>,
        SinkError,
    > {
        let res = match self.store.get(&self.path(rel)).await {
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(&format!("reading {rel}"), e)),
            Ok(r) => r,
        };
        let size = res.meta.size;
        let what = format!("reading {rel}");
        let body = res
            .into_stream()
            .map_err(move |e| store_error(&what, e))
            .boxed();
        Ok(Some((size, body)))
    }

    /// The objects under `rel_dir` (names relative to the prefix), at most [`MAX_LISTED`].
    pub async fn list(&self, rel_dir: &str) -> Result<Vec<(String, u64)>, SinkError> {
        let dir = self.path(rel_dir);
        let strip = format!("{}/", self.prefix);
        let mut out = Vec::new();
        let mut s = self.store.list(Some(&dir));
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| store_error(&format!("listing {rel_dir}"), e))?
        {
            let full = m.location.to_string();
            let rel = if self.prefix.as_ref().is_empty() {
                full
            } else {
                full.strip_prefix(&strip).unwrap_or(&full).to_string()
            };
            out.push((rel, m.size));
            if out.len() >= MAX_LISTED {
                break;
            }
        }
        Ok(out)
    }

    /// A URL anyone holding it can GET `rel` with for `ttl` (presigned; computed locally).
    pub async fn signed_url(&self, rel: &str, ttl: Duration) -> Result<url::Url, SinkError> {
        self.signer
            .signed_url(reqwest::Method::GET, &self.path(rel), ttl)
            .await
            .map_err(|e| store_error(&format!("signing a link to {rel}"), e))
    }
}

/// Feeds the body into the upload, part by part, hashing it; refuses past `cap`.
async fn feed<S>(w: &mut WriteMultipart, mut body: S, cap: u64) -> Result<(String, u64), SinkError>
where
    S: Stream<Item = Result<Bytes, SinkError>> + Unpin,
{
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        if bytes > cap {
            return Err(SinkError::Refused(format!(
                "output larger than output.max_download_bytes ({cap})"
            )));
        }
        hasher.update(&chunk);
        w.wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|e| store_error("uploading a part", e))?;
        w.put(chunk);
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}
