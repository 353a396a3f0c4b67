//! Oxen.ai wire mapping: enqueue with `POST {base}/ai/queue`, poll `GET
//! {base}/ai/queue/{id}` (queued/processing/succeeded/failed/cancelled, output at
//! `result_url`, reason in `error_message`), cancel with `DELETE`, and completion events
//! from the SSE stream `GET {base}/events` (`media_generation_completed`). Only the edit
//! model exists on Oxen.
//!
//! A `result_url` download carries the Bearer key when the URL's origin (scheme, host and
//! port) is the configured `base_url`'s, and never otherwise: `result_url` is a
//! repository API path (`https://hub.oxen.ai/api/repos/...`) and Oxen's repositories need
//! a key, but whether the download does is UNCONFIRMED (docs/providers.md, "Oxen —
//! client"); the SSE event's `url` is documented as presigned, on another host.
//!
//! This file owns the client and the calls; [`wire`] maps bodies, rows and errors,
//! [`events`] keeps the event stream.

mod events;

#[cfg(test)]
mod tests;
mod wire;

pub use events::COMPLETED_EVENT;
pub use wire::{error_message, request_body, EDIT_MODEL};

use crate::config::ProviderSettings;
use crate::model::{GenerationRequest, ModelKind, ProviderName};
use crate::upstream::{ErrorClass, PollStatus, Upstream, UpstreamError};
use futures::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};
use wire::{http_error, poll_status, Enqueued, Row};

/// Client for one Oxen.ai account.
#[derive(Clone)]
pub struct Oxen {
    http: reqwest::Client,
    /// No total timeout: the event stream stays open (idle is watched instead).
    sse: reqwest::Client,
    /// The API root, e.g. `https://hub.oxen.ai/api` (its origin is `base_url`'s).
    base: url::Url,
    key: Option<SecretString>,
}

impl std::fmt::Debug for Oxen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oxen")
            .field("base", &crate::config::redact_url(self.base.as_str()))
            .finish_non_exhaustive()
    }
}

impl Oxen {
    pub fn new(p: &ProviderSettings) -> Result<Self, UpstreamError> {
        Ok(Oxen {
            http: crate::upstream::http_client(p, true)?,
            // The SSE stream stays open: no overall request timeout.
            sse: crate::upstream::http_client(p, false)?,
            base: api_root(&p.base_url),
            key: p.api_key.clone(),
        })
    }

    /// The secrets an answer must never echo into an error.
    fn secrets(&self) -> Vec<&SecretString> {
        self.key.iter().collect()
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, UpstreamError> {
        match &self.key {
            Some(k) => Ok(rb.bearer_auth(k.expose_secret())),
            None => Err(UpstreamError::new(
                ErrorClass::Account,
                "no API key for oxen: set RESTYLE__PROVIDERS__OXEN__API_KEY or OXEN_API_KEY",
            )),
        }
    }

    /// The API root plus path segments, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<url::Url, UpstreamError> {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .map_err(|()| {
                UpstreamError::new(ErrorClass::Account, "oxen: base_url cannot take a path")
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(u)
    }

    /// `{api}/ai/queue/{id}`.
    fn row_url(&self, id: &str) -> Result<url::Url, UpstreamError> {
        self.url(&["ai", "queue", id])
    }
}

/// The API root from the configured base URL. Oxen's is `https://hub.oxen.ai/api`; a base
/// given without a path (`https://hub.oxen.ai`, a simulator root) gets the `/api` prefix.
/// A trailing slash is dropped.
fn api_root(base: &url::Url) -> url::Url {
    let mut u = base.clone();
    let bare = base.path().trim_matches('/').is_empty();
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.pop_if_empty();
        if bare {
            segs.push("api");
        }
    }
    u
}

#[async_trait::async_trait]
impl Upstream for Oxen {
    fn name(&self) -> ProviderName {
        ProviderName::Oxen
    }

    async fn submit(&self, req: &GenerationRequest) -> Result<String, UpstreamError> {
        if req.model == ModelKind::Reference {
            return Err(UpstreamError::new(
                ErrorClass::Job,
                "oxen: Kling O1 video-to-video reference is not offered on Oxen.ai \
                 (only the edit model); use another provider",
            ));
        }
        let body = crate::upstream::body::JsonBody::for_request(&request_body(req), req)?;
        let rb = self.http.post(self.url(&["ai", "queue"])?);
        let rb = crate::upstream::body::json(rb, body);
        let resp =
            self.auth(rb)?.send().await.map_err(|e| {
                crate::upstream::transport_error(ProviderName::Oxen, e, true, "submit")
            })?;
        if !resp.status().is_success() {
            return Err(http_error(&self.secrets(), resp, true, "submit").await);
        }
        // The enqueue was accepted: a body we cannot read leaves the outcome unknown.
        let q: Enqueued =
            crate::upstream::read_json(resp, ErrorClass::Ambiguous, "oxen submit").await?;
        match q
            .generations
            .into_iter()
            .next()
            .and_then(|g| g.generation_id)
        {
            Some(id) if !id.is_empty() => Ok(id),
            _ => Err(UpstreamError::new(
                ErrorClass::Ambiguous,
                "oxen submit: response has no generation_id",
            )),
        }
    }

    async fn poll(&self, upstream_id: &str) -> Result<PollStatus, UpstreamError> {
        let rb = self.http.get(self.row_url(upstream_id)?);
        let resp =
            self.auth(rb)?.send().await.map_err(|e| {
                crate::upstream::transport_error(ProviderName::Oxen, e, false, "poll")
            })?;
        if !resp.status().is_success() {
            return Err(http_error(&self.secrets(), resp, false, "poll").await);
        }
        let row: Row = crate::upstream::read_json(resp, ErrorClass::Retryable, "oxen poll").await?;
        Ok(match poll_status(row) {
            PollStatus::Failed { reason } => PollStatus::Failed {
                reason: crate::upstream::sanitize(&reason, &self.secrets()),
            },
            other => other,
        })
    }

    /// `DELETE /ai/queue/{id}`: cancels a queued or running generation (a no-op upstream
    /// when it already finished).
    async fn cancel(&self, upstream_id: &str) -> Result<bool, UpstreamError> {
        let rb = self.http.delete(self.row_url(upstream_id)?);
        let resp = self.auth(rb)?.send().await.map_err(|e| {
            crate::upstream::transport_error(ProviderName::Oxen, e, false, "cancel")
        })?;
        if !resp.status().is_success() {
            return Err(http_error(&self.secrets(), resp, false, "cancel").await);
        }
        Ok(true)
    }

    /// The Bearer key for an output on Oxen's own origin; nothing for any other.
    fn download_auth(&self, url: &url::Url) -> Option<reqwest::header::HeaderValue> {
        if url.origin() != self.base.origin() || !url.origin().is_tuple() {
            return None;
        }
        let key = self.key.as_ref()?;
        let mut v =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    fn events(&self) -> Option<BoxStream<'static, String>> {
        let key = self.key.clone()?;
        let url = match self.url(&["events"]) {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(error = %e, "Oxen event stream: no URL; polling only.");
                return None;
            }
        };
        Some(events::completed_ids(self.sse.clone(), url, key))
    }
}

/// This provider's entry in the [registry](crate::upstream::registry).
pub const PROVIDER: crate::upstream::registry::Provider = crate::upstream::registry::Provider {
    name: ProviderName::Oxen,
    credentials: crate::upstream::registry::Credentials::Bearer {
        env: "OXEN_API_KEY",
    },
    models: crate::upstream::registry::Models {
        edit: Ok(crate::upstream::registry::ModelLimits {
            max_element_refs: 3,
            source: crate::upstream::registry::source_limits::OXEN,
            ..crate::upstream::registry::ModelLimits::BASE
        }),
        reference: Err("Oxen offers no Kling O1 video-to-video reference model \
                        (only kling-video-o1-video-to-video-edit); use another provider"),
    },
    storage: None,
    build: |p| crate::upstream::registry::boxed(Oxen::new(p)),
};
