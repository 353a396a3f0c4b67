//! fal.ai queue wire mapping: `POST {base}/fal-ai/kling-video/o1/video-to-video/{edit,
//! reference}` (`Authorization: Key …`; `X-Fal-No-Retry: 1` only with
//! `providers.fal.no_retry`, since it turns fal's own retries off; `?fal_webhook=` with
//! `[push]`, see [`crate::push`]) returns a `request_id`
//! and the status, result and cancel URLs, all four kept in the upstream id. A poll is
//! `GET status_url` (202 `IN_QUEUE`/`IN_PROGRESS`, 200 `COMPLETED`, with `error` and
//! `error_type` when the request failed) and, once completed, `GET response_url` at once
//! (fal keeps results about an hour): `{"video":{"url"}}` is success; a model error, a
//! request error or a result gone after the retention window is the job's failure, and
//! only what says nothing about the request is retried ([`errors`]). Cancel is `PUT
//! cancel_url`.

mod errors;

use crate::config::ProviderSettings;
use crate::model::{GenerationRequest, ModelKind, ProviderName};
use crate::upstream::{retry_after, ErrorClass, PollStatus, Upstream, UpstreamError};
use errors::{http_error, result_error, ResultAnswer, StatusError};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

pub use errors::detail_message;

/// Client for one fal.ai account.
pub struct Fal {
    http: reqwest::Client,
    base: url::Url,
    key: Option<SecretString>,
    /// `providers.fal.no_retry`: send `X-Fal-No-Retry: 1` with each submit.
    no_retry: bool,
    /// fal's storage, where local media are uploaded once per batch (`upload`).
    upload: upload::Uploads,
    /// With `[push]`: each submit carries `fal_webhook=<public_url>/push/fal/<job>`.
    push: Option<crate::push::Callbacks>,
}

impl std::fmt::Debug for Fal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fal")
            .field("base", &crate::config::redact_url(self.base.as_str()))
            .finish_non_exhaustive()
    }
}

/// The submit answer (the in-queue status).
#[derive(Debug, Deserialize)]
struct Queued {
    request_id: Option<String>,
    status_url: Option<String>,
    response_url: Option<String>,
    cancel_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Status {
    status: Option<String>,
    /// Set on a COMPLETED request that failed (with `error_type`).
    error: Option<Value>,
    error_type: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Output {
    video: Option<File>,
}

#[derive(Debug, Deserialize)]
struct File {
    url: Option<String>,
}

/// The endpoint id of a model: the pro tier's (fal's unmarked endpoints, the default) or
/// the standard tier's (`…/o1/standard/…`).
pub fn model_path(model: ModelKind, tier: Option<crate::model::Tier>) -> &'static str {
    use crate::model::Tier::Standard;
    match (model, tier) {
        (ModelKind::Edit, Some(Standard)) => "fal-ai/kling-video/o1/standard/video-to-video/edit",
        (ModelKind::Reference, Some(Standard)) => {
            "fal-ai/kling-video/o1/standard/video-to-video/reference"
        }
        (ModelKind::Edit, _) => "fal-ai/kling-video/o1/video-to-video/edit",
        (ModelKind::Reference, _) => "fal-ai/kling-video/o1/video-to-video/reference",
    }
}

/// The `OmniV2VEditInput` / `OmniV2VReferenceInput` body. `keep_audio` is always explicit;
/// the reference `duration` is fal's string enum ("5").
pub fn request_body(req: &GenerationRequest) -> Value {
    let mut body = json!({
        "prompt": req.prompt,
        "video_url": req.video,
        "keep_audio": req.keep_audio,
    });
    if !req.image_list.is_empty() {
        body["image_urls"] = json!(req.image_list);
    }
    if !req.elements.is_empty() {
        let elements: Vec<Value> = req
            .elements
            .iter()
            .map(|e| {
                json!({
                    "frontal_image_url": e.frontal_image_url,
                    "reference_image_urls": e.reference_image_urls,
                })
            })
            .collect();
        body["elements"] = json!(elements);
    }
    if req.model == ModelKind::Reference {
        if let Some(ar) = &req.aspect_ratio {
            body["aspect_ratio"] = json!(ar);
        }
        if let Some(d) = req.duration {
            body["duration"] = json!(d.to_string());
        }
    }
    body
}

/// What a URL kept in a [`Handle`] must escape: the separator `|`, which URLs may carry
/// as is. (A parsed URL holds no control or non-ASCII bytes, and its `%` escapes stay.)
const HANDLE_SEPARATOR: &AsciiSet = &CONTROLS.add(b'|');

/// Where one request is polled, fetched and cancelled. Stored as the upstream id:
/// `request_id|status_url|response_url|cancel_url` (a bare request id also works).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle {
    pub request_id: String,
    pub status_url: String,
    pub response_url: String,
    pub cancel_url: String,
}

impl Handle {
    /// Uses the returned URLs when they are on the configured host (the key is only ever
    /// sent there); builds `{base}/fal-ai/kling-video/requests/{id}…` otherwise.
    fn new(base: &url::Url, id: &str, urls: [Option<&str>; 3]) -> Handle {
        let built = |suffix: &str| {
            let mut u = base.clone();
            if let Ok(mut segs) = u.path_segments_mut() {
                segs.pop_if_empty()
                    .extend(["fal-ai", "kling-video", "requests", id]);
                if !suffix.is_empty() {
                    segs.push(suffix);
                }
            }
            u.to_string()
        };
        let pick =
            |given: Option<&str>, suffix: &str| match given.and_then(|g| url::Url::parse(g).ok()) {
                Some(u) if u.origin() == base.origin() => {
                    utf8_percent_encode(u.as_str(), HANDLE_SEPARATOR).to_string()
                }
                Some(u) => {
                    tracing::warn!(
                        host = u.host_str().unwrap_or(""),
                        "fal returned a URL on another host; using the configured base"
                    );
                    built(suffix)
                }
                None => built(suffix),
            };
        Handle {
            request_id: id.to_string(),
            status_url: pick(urls[0], "status"),
            response_url: pick(urls[1], ""),
            cancel_url: pick(urls[2], "cancel"),
        }
    }

    pub fn encode(&self) -> String {
        [
            &self.request_id,
            &self.status_url,
            &self.response_url,
            &self.cancel_url,
        ]
        .map(String::as_str)
        .join("|")
    }

    /// Reads an upstream id written by [`Handle::encode`], or a bare request id.
    pub fn decode(base: &url::Url, upstream_id: &str) -> Result<Handle, UpstreamError> {
        let parts: Vec<&str> = upstream_id.split('|').collect();
        match parts.as_slice() {
            [id] if !id.is_empty() => Ok(Handle::new(base, id, [None; 3])),
            [id, s, r, c] if !id.is_empty() => {
                Ok(Handle::new(base, id, [Some(s), Some(r), Some(c)]))
            }
            _ => Err(UpstreamError::new(
                ErrorClass::Job,
                format!("fal: unreadable upstream id {upstream_id:?}"),
            )),
        }
    }
}

impl Fal {
    pub fn new(p: &ProviderSettings) -> Result<Self, UpstreamError> {
        let http = crate::upstream::http_client(p, true)?;
        Ok(Fal {
            http,
            base: p.base_url.clone(),
            key: p.api_key.clone(),
            no_retry: p.no_retry.unwrap_or(false),
            upload: upload::Uploads::new(p),
            push: p.push.clone(),
        })
    }

    /// The secrets an answer must never echo into an error.
    fn secrets(&self) -> Vec<&SecretString> {
        self.key.iter().collect()
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let no_key = || {
            UpstreamError::new(
                ErrorClass::Account,
                "no API key for fal: set RESTYLE__PROVIDERS__FAL__API_KEY or FAL_KEY",
            )
        };
        let key = self.key.as_ref().ok_or_else(no_key)?;
        let mut v =
            HeaderValue::from_str(&format!("Key {}", key.expose_secret())).map_err(|_| {
                UpstreamError::new(
                    ErrorClass::Account,
                    "fal API key is not a valid header value",
                )
            })?;
        v.set_sensitive(true);
        Ok(rb.header(AUTHORIZATION, v))
    }

    /// `GET response_url` right after COMPLETED: the model's answer decides the outcome;
    /// `completed` is what the status said of a failure ([`errors::result_error`]).
    async fn result(
        &self,
        h: &Handle,
        completed: &StatusError,
    ) -> Result<PollStatus, UpstreamError> {
        let sent = self.auth(self.http.get(&h.response_url))?.send().await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) if completed.failed() => {
                let fetch = crate::upstream::transport_error(ProviderName::Fal, e, false, "result");
                return Ok(completed.failure(&fetch.message, &self.secrets()));
            }
            Err(e) => {
                return Err(crate::upstream::transport_error(
                    ProviderName::Fal,
                    e,
                    false,
                    "result",
                ))
            }
        };
        if resp.status().is_success() {
            let out: Output =
                crate::upstream::read_json(resp, ErrorClass::Retryable, "fal result").await?;
            return Ok(match out.video.and_then(|v| v.url) {
                Some(url) => PollStatus::Succeeded { url },
                None if completed.failed() => completed.failure("no video.url", &self.secrets()),
                None => PollStatus::Failed {
                    reason: "fal: result has no video.url".to_string(),
                },
            });
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut answer = ResultAnswer {
            status: resp.status().as_u16(),
            error_type_header: header("x-fal-error-type"),
            user_timeout: header("x-fal-request-timeout-type").as_deref() == Some("user"),
            retry_after: retry_after(resp.headers()),
            body: String::new(),
        };
        answer.body = crate::upstream::error_body(resp).await;
        result_error(&answer, completed, &self.secrets())
    }
}

#[async_trait::async_trait]
impl Upstream for Fal {
    fn name(&self) -> ProviderName {
        ProviderName::Fal
    }

    async fn submit(&self, req: &GenerationRequest) -> Result<String, UpstreamError> {
        let mut url = url::Url::parse(&format!(
            "{}/{}",
            self.base.as_str().trim_end_matches('/'),
            model_path(req.model, req.tier)
        ))
        .map_err(|e| UpstreamError::new(ErrorClass::Account, format!("fal: base_url: {e}")))?;
        if let Some(push) = &self.push {
            // fal-client and fal-js send the webhook as this query parameter.
            let hook = push.fal_webhook(&req.job_id);
            url.query_pairs_mut()
                .append_pair("fal_webhook", hook.as_str());
        }
        let body = crate::upstream::body::JsonBody::for_request(&request_body(req), req)?;
        let mut rb = self.http.post(url);
        if self.no_retry {
            rb = rb.header("X-Fal-No-Retry", "1");
        }
        let rb = crate::upstream::body::json(rb, body);
        let resp =
            self.auth(rb)?.send().await.map_err(|e| {
                crate::upstream::transport_error(ProviderName::Fal, e, true, "submit")
            })?;
        if !resp.status().is_success() {
            return Err(http_error(&self.secrets(), resp, true, "submit").await);
        }
        // Accepted: from here on a body we cannot use leaves the outcome unknown.
        let q: Queued =
            crate::upstream::read_json(resp, ErrorClass::Ambiguous, "fal submit").await?;
        let id = q
            .request_id
            .filter(|id| !id.is_empty() && !id.contains('|'))
            .ok_or_else(|| {
                UpstreamError::new(
                    ErrorClass::Ambiguous,
                    "fal submit: response has no request_id",
                )
            })?;
        let urls = [&q.status_url, &q.response_url, &q.cancel_url].map(|u| u.as_deref());
        Ok(Handle::new(&self.base, &id, urls).encode())
    }

    async fn poll(&self, upstream_id: &str) -> Result<PollStatus, UpstreamError> {
        let h = Handle::decode(&self.base, upstream_id)?;
        let resp = self
            .auth(self.http.get(&h.status_url))?
            .send()
            .await
            .map_err(|e| crate::upstream::transport_error(ProviderName::Fal, e, false, "status"))?;
        if !resp.status().is_success() {
            return Err(http_error(&self.secrets(), resp, false, "status").await);
        }
        let st: Status =
            crate::upstream::read_json(resp, ErrorClass::Retryable, "fal status").await?;
        let status = st.status.unwrap_or_default();
        match status.as_str() {
            "COMPLETED" => {
                let completed = StatusError::from_fields(st.error.as_ref(), st.error_type.as_ref());
                self.result(&h, &completed).await
            }
            "IN_QUEUE" | "IN_PROGRESS" => Ok(PollStatus::Pending { status }),
            other => {
                tracing::warn!(
                    upstream_status = other,
                    "Unknown fal status, still waiting."
                );
                Ok(PollStatus::Pending { status })
            }
        }
    }

    /// Local media go to fal's storage once per batch; jobs send the URL (`upload`).
    fn uploads(&self) -> bool {
        self.upload.enabled()
    }

    async fn upload(&self, blob: &crate::media::Blob) -> Result<String, UpstreamError> {
        self.upload_blob(blob).await
    }

    /// `Ok(true)`: removed from the queue, or the runner was signalled (best effort: a
    /// running generation may still complete and be billed). `Ok(false)`: already done.
    async fn cancel(&self, upstream_id: &str) -> Result<bool, UpstreamError> {
        let h = Handle::decode(&self.base, upstream_id)?;
        let resp = self
            .auth(self.http.put(&h.cancel_url))?
            .send()
            .await
            .map_err(|e| crate::upstream::transport_error(ProviderName::Fal, e, false, "cancel"))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(true);
        }
        if matches!(status, 400 | 404 | 409 | 410) {
            let body = crate::upstream::error_body(resp).await;
            let answer = crate::upstream::sanitize(&detail_message(&body), &self.secrets());
            tracing::debug!(status, %answer, "fal cancel: nothing to cancel");
            return Ok(false);
        }
        Err(http_error(&self.secrets(), resp, false, "cancel").await)
    }
}

/// This provider's entry in the [registry](crate::upstream::registry).
pub const PROVIDER: crate::upstream::registry::Provider = crate::upstream::registry::Provider {
    name: ProviderName::Fal,
    credentials: crate::upstream::registry::Credentials::KeyHeader { env: "FAL_KEY" },
    models: crate::upstream::registry::Models {
        edit: Ok(crate::upstream::registry::ModelLimits {
            max_element_refs: 3,
            tiers: crate::upstream::registry::ModelLimits::TWO_TIERS,
            source: crate::upstream::registry::source_limits::FAL,
            ..crate::upstream::registry::ModelLimits::BASE
        }),
        reference: Ok(crate::upstream::registry::ModelLimits {
            max_element_refs: 3,
            aspect_ratios: &["16:9", "9:16", "1:1", "auto"],
            durations: &[3, 4, 5, 6, 7, 8, 9, 10],
            tiers: crate::upstream::registry::ModelLimits::TWO_TIERS,
            source: crate::upstream::registry::source_limits::FAL,
            ..crate::upstream::registry::ModelLimits::BASE
        }),
    },
    storage: Some(upload::STORAGE),
    build: |p| crate::upstream::registry::boxed(Fal::new(p)),
};

#[cfg(test)]
mod tests;
mod upload;
