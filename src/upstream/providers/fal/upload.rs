//! fal's storage upload, as its official client does it (fal-client 1.0.3, `upload` /
//! `upload_file` on the CDN v3 repository; research notes §1.3, `docs/providers.md`):
//!
//! 1. a token: `POST {rest_url}/storage/auth/token?storage_type=fal-cdn-v3` with the API
//!    key (`Authorization: Key …`) and `{}` → `{token, token_type, base_url, expires_at}`;
//! 2. up to [`MULTIPART_OVER`] bytes, one `POST {cdn_url}/files/upload` of the raw bytes
//!    (`Authorization: <token_type> <token>`, the payload's `Content-Type`,
//!    `X-Fal-File-Name`) → `{access_url}`;
//! 3. above it, multipart: `POST {cdn_url}/files/upload/multipart` (the client posts to
//!    the token's `base_url`; restyle to its configured host) → `{access_url,
//!    uploadId}`, `PUT {access_url}/multipart/{uploadId}/{n}` of [`PART_BYTES`] slices
//!    (each answered with an `ETag`), `POST {access_url}/multipart/{uploadId}/complete`
//!    with `{"parts": [{partNumber, etag}]}` → `{access_url}`.
//!
//! The key and the token go only to the configured hosts (`[providers.fal.storage]`,
//! fal's documented `rest.fal.ai` and `v3.fal.media` by default): a multipart
//! `access_url` on another origin is refused. The returned `access_url` is what jobs send
//! as `video_url` (fal's CDN files are public). The client's fallback (`storage/upload/
//! initiate` and a signed PUT to a third-party host) is not used. The payload is sent
//! from its shared bytes (no copy); the request may take `request_timeout` plus a second
//! per MiB.

use super::{detail_message, Fal};
use crate::media::Blob;
use crate::model::ProviderName;
use crate::upstream::registry::StorageDefaults;
use crate::upstream::{retry_after, ErrorClass, UpstreamError};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// fal's storage hosts, as fal-client 1.0.3 names them (`REST_URL`, `CDN_URL`).
pub(super) const STORAGE: StorageDefaults = StorageDefaults {
    rest_url: "https://rest.fal.ai",
    cdn_url: "https://v3.fal.media",
};

const MIB: usize = 1024 * 1024;
/// Files above this go in parts (fal-client's `MULTIPART_THRESHOLD`).
pub(super) const MULTIPART_OVER: usize = 100 * MIB;
/// One part (fal-client's chunk size).
pub(super) const PART_BYTES: usize = 10 * MIB;

/// What the client keeps for uploads: the storage hosts and the limits.
#[derive(Debug, Clone)]
pub(super) struct Uploads {
    /// `None`: no storage configured (local media then go inside each body).
    storage: Option<crate::config::StorageSettings>,
    request_timeout: Duration,
    multipart_over: usize,
    part_bytes: usize,
}

impl Uploads {
    pub(super) fn new(p: &crate::config::ProviderSettings) -> Uploads {
        Uploads {
            storage: p.storage.clone(),
            request_timeout: p.request_timeout,
            multipart_over: MULTIPART_OVER,
            part_bytes: PART_BYTES,
        }
    }

    /// Whether uploads are possible (a storage is configured).
    pub(super) fn enabled(&self) -> bool {
        self.storage.is_some()
    }
}

#[derive(Debug, Deserialize)]
struct Token {
    token: String,
    token_type: String,
}

#[derive(Debug, Deserialize)]
struct Stored {
    access_url: Option<String>,
    #[serde(rename = "uploadId")]
    upload_id: Option<String>,
}

/// What a storage call's failure means for the job: nothing was generated, so it is
/// retried unless fal refused the key (account) or the file (job).
fn class(status: u16) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::Account,
        429 => ErrorClass::RATE_LIMITED,
        408 | 500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Job,
    }
}

impl Fal {
    /// Uploads one payload to fal's storage; returns its `access_url`.
    pub(super) async fn upload_blob(&self, blob: &Blob) -> Result<String, UpstreamError> {
        let token = self.storage_token().await?;
        let auth = HeaderValue::from_str(&format!("{} {}", token.token_type, token.token))
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| {
                UpstreamError::new(ErrorClass::Retryable, "fal storage: unusable token")
            })?;
        let url = if blob.len() > self.upload.multipart_over {
            self.upload_parts(&auth, blob).await?
        } else {
            let rb = self.http.post(self.storage_url(false, "files/upload"));
            let rb = self.payload(rb, &auth, blob, blob.bytes().clone());
            let rb = rb.header("X-Fal-File-Name", blob.file_name());
            self.storage_answer(rb, "upload").await?.access_url
        };
        let url = url.filter(|u| usable(u)).ok_or_else(|| {
            UpstreamError::new(ErrorClass::Retryable, "fal storage: no usable access_url")
        })?;
        Ok(url)
    }

    /// `{rest_url or cdn_url}/{path}`.
    fn storage_url(&self, rest: bool, path: &str) -> String {
        let s = self
            .upload
            .storage
            .as_ref()
            .map(|s| if rest { &s.rest_url } else { &s.cdn_url });
        let base = s.map_or("", |u| u.as_str());
        format!("{}/{path}", base.trim_end_matches('/'))
    }

    async fn storage_token(&self) -> Result<Token, UpstreamError> {
        let url = self.storage_url(true, "storage/auth/token?storage_type=fal-cdn-v3");
        let rb = self.auth(self.http.post(url).json(&json!({})))?;
        let resp = rb.send().await.map_err(|e| storage_transport(e, "token"))?;
        if !resp.status().is_success() {
            return Err(self.storage_error(resp, "token").await);
        }
        crate::upstream::read_json(resp, ErrorClass::Retryable, "fal storage token").await
    }

    /// A request carrying `bytes` of `blob` with the token, its type and a timeout that
    /// grows with the size.
    fn payload(
        &self,
        rb: reqwest::RequestBuilder,
        auth: &HeaderValue,
        blob: &Blob,
        bytes: bytes::Bytes,
    ) -> reqwest::RequestBuilder {
        let allowance = Duration::from_secs((bytes.len() / MIB) as u64);
        rb.header(AUTHORIZATION, auth.clone())
            .header(CONTENT_TYPE, blob.mime())
            .timeout(self.upload.request_timeout + allowance)
            .body(bytes)
    }

    async fn upload_parts(
        &self,
        auth: &HeaderValue,
        blob: &Blob,
    ) -> Result<Option<String>, UpstreamError> {
        let start = self
            .http
            .post(self.storage_url(false, "files/upload/multipart"))
            .header(AUTHORIZATION, auth.clone())
            .header(CONTENT_TYPE, blob.mime())
            .header("X-Fal-File-Name", blob.file_name());
        let started = self.storage_answer(start, "multipart").await?;
        let (Some(access), Some(id)) = (started.access_url, started.upload_id) else {
            return Err(UpstreamError::new(
                ErrorClass::Retryable,
                "fal storage multipart: no access_url or uploadId",
            ));
        };
        // The token goes only to the configured CDN.
        let cdn = self.storage_url(false, "");
        let same_origin = url::Url::parse(&access)
            .ok()
            .zip(url::Url::parse(&cdn).ok())
            .is_some_and(|(a, c)| a.origin() == c.origin());
        if !same_origin {
            return Err(UpstreamError::new(
                ErrorClass::Retryable,
                "fal storage multipart: the upload is on another host than storage.cdn_url",
            ));
        }
        let access = access.trim_end_matches('/');
        let mut parts = Vec::new();
        let bytes = blob.bytes();
        for (i, offset) in (0..bytes.len()).step_by(self.upload.part_bytes).enumerate() {
            let n = i + 1;
            let slice = bytes.slice(offset..(offset + self.upload.part_bytes).min(bytes.len()));
            let rb = self.http.put(format!("{access}/multipart/{id}/{n}"));
            let resp = self.payload(rb, auth, blob, slice).send().await;
            let resp = resp.map_err(|e| storage_transport(e, "part"))?;
            if !resp.status().is_success() {
                return Err(self.storage_error(resp, "part").await);
            }
            let etag = resp.headers().get(ETAG).and_then(|v| v.to_str().ok());
            let etag = etag.ok_or_else(|| {
                UpstreamError::new(ErrorClass::Retryable, "fal storage part: no ETag")
            })?;
            parts.push(json!({"partNumber": n, "etag": etag}));
        }
        let done = self
            .http
            .post(format!("{access}/multipart/{id}/complete"))
            .header(AUTHORIZATION, auth.clone())
            .json(&json!({ "parts": parts }));
        let url = self.storage_answer(done, "complete").await?.access_url;
        Ok(url.or_else(|| Some(access.to_owned())))
    }

    async fn storage_answer(
        &self,
        rb: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Stored, UpstreamError> {
        let resp = rb.send().await.map_err(|e| storage_transport(e, what))?;
        if !resp.status().is_success() {
            return Err(self.storage_error(resp, what).await);
        }
        crate::upstream::read_json(resp, ErrorClass::Retryable, &format!("fal storage {what}"))
            .await
    }

    async fn storage_error(&self, resp: reqwest::Response, what: &str) -> UpstreamError {
        let status = resp.status().as_u16();
        let ra = retry_after(resp.headers());
        let body = crate::upstream::error_body(resp).await;
        UpstreamError::answer(
            class(status).with_retry_after(ra),
            &format!(
                "fal storage {what}: HTTP {status}: {}",
                detail_message(&body)
            ),
            Some(status),
            ra,
            &self.secrets(),
        )
    }
}

/// A storage call that got no answer: nothing was generated, so it is retried.
fn storage_transport(e: reqwest::Error, what: &str) -> UpstreamError {
    let what = format!("storage {what}");
    crate::upstream::transport_error(ProviderName::Fal, e, false, &what)
}

/// An `access_url` a job can send: an http(s) URL with a host and no whitespace.
fn usable(u: &str) -> bool {
    !u.contains(char::is_whitespace)
        && url::Url::parse(u)
            .is_ok_and(|p| matches!(p.scheme(), "https" | "http") && p.host_str().is_some())
}

#[cfg(test)]
mod tests;
