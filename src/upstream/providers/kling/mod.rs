//! Kling official API wire mapping (Omni-Video, `kling-video-o1`): a per-request HS256
//! JWT, `POST /v1/videos/omni-video` with `external_task_id` = our job id and `mode` from
//! `providers.kling.mode` (and `callback_url` with `[push]`, see [`crate::push`]),
//! `GET /v1/videos/omni-video/{task_id | external_task_id}`,
//! statuses submitted/processing/succeed/failed, output at
//! `data.task_result.videos[0].url`.
//!
//! The lookup by `external_task_id` puts it in the path, as the query page's "Request
//! Path Parameters" table does for both ids ("choose one of the two query methods"; known
//! through copies, docs/providers.md "Kling — client"). UNCONFIRMED live: third-party
//! clients of other Kling endpoints use `?external_task_id=` on the collection instead.
//!
//! This file owns the client and the calls; [`token`] mints the JWT, [`wire`] maps
//! prompts, bodies and task states, [`answer`] reads the envelope and classifies errors.

mod answer;

#[cfg(test)]
mod tests;
mod token;
mod wire;

pub use token::mint_jwt;
pub use wire::{request_body, translate_prompt};

use crate::config::{KlingMode, ProviderSettings};
use crate::model::{GenerationRequest, ProviderName};
use crate::upstream::{ErrorClass, Lookup, PollStatus, Upstream, UpstreamError};
use answer::{read_answer, Refused, CODE_INVALID, CODE_NOT_FOUND};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// Client for one Kling account (access key + secret key).
pub struct Kling {
    http: reqwest::Client,
    base: url::Url,
    access_key: Option<SecretString>,
    secret_key: Option<SecretString>,
    /// `providers.kling.mode`, sent with every task.
    mode: KlingMode,
    /// With `[push]`: each task carries `callback_url` (the job's URL with its token).
    push: Option<crate::push::Callbacks>,
}

impl std::fmt::Debug for Kling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kling")
            .field("base", &crate::config::redact_url(self.base.as_str()))
            .finish_non_exhaustive()
    }
}

impl Kling {
    pub fn new(p: &ProviderSettings) -> Result<Self, UpstreamError> {
        let http = crate::upstream::http_client(p, true)?;
        Ok(Kling {
            http,
            base: p.base_url.clone(),
            access_key: p.access_key.clone(),
            secret_key: p.secret_key.clone(),
            mode: p.mode.unwrap_or(KlingMode::Pro),
            push: p.push.clone(),
        })
    }

    /// `…/v1/videos/omni-video`, plus one percent-encoded path segment when given.
    fn url(&self, id: Option<&str>) -> Result<url::Url, UpstreamError> {
        let mut u = self.base.clone();
        {
            let mut segs = u.path_segments_mut().map_err(|()| {
                UpstreamError::new(ErrorClass::Account, "kling: base_url cannot take a path")
            })?;
            segs.pop_if_empty().extend(["v1", "videos", "omni-video"]);
            if let Some(id) = id {
                segs.push(id);
            }
        }
        Ok(u)
    }

    /// Signs a fresh token for this request (cheap, so never cached or stale).
    /// The secrets an answer must never echo into an error.
    fn secrets(&self) -> Vec<&SecretString> {
        self.access_key.iter().chain(&self.secret_key).collect()
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let (Some(ak), Some(sk)) = (&self.access_key, &self.secret_key) else {
            return Err(UpstreamError::new(
                ErrorClass::Account,
                "no access/secret key for kling: set KLING_ACCESS_KEY and KLING_SECRET_KEY \
                 (or RESTYLE__PROVIDERS__KLING__ACCESS_KEY / __SECRET_KEY)",
            ));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let token = token::sign(ak.expose_secret(), sk.expose_secret(), now).map_err(|e| {
            UpstreamError::new(
                ErrorClass::Account,
                format!("kling: cannot sign a token: {e}"),
            )
        })?;
        Ok(rb.bearer_auth(token))
    }

    /// `GET /v1/videos/omni-video/{id}`: the task's `data`.
    async fn query(&self, id: &str, what: &str) -> Result<Value, Refused> {
        let rb = self.http.get(self.url(Some(id))?);
        let resp =
            self.auth(rb)?.send().await.map_err(|e| {
                crate::upstream::transport_error(ProviderName::Kling, e, false, what)
            })?;
        read_answer(resp, false, what, &self.secrets()).await
    }
}

#[async_trait::async_trait]
impl Upstream for Kling {
    fn name(&self) -> ProviderName {
        ProviderName::Kling
    }

    async fn submit(&self, req: &GenerationRequest) -> Result<String, UpstreamError> {
        // The batch's tier chooses the mode; without one, `providers.kling.mode`.
        let mode = match req.tier {
            Some(crate::model::Tier::Standard) => KlingMode::Std,
            Some(crate::model::Tier::Pro) => KlingMode::Pro,
            None => self.mode,
        };
        let mut body = request_body(req, mode)?;
        if let Some(push) = &self.push {
            // Kling calls it on every status change; the URL's token authenticates it.
            body["callback_url"] = Value::from(push.kling_callback(&req.job_id).as_str());
        }
        let body = crate::upstream::body::JsonBody::for_request(&body, req)?;
        let rb = crate::upstream::body::json(self.http.post(self.url(None)?), body);
        let resp = self.auth(rb)?.send().await.map_err(|e| {
            crate::upstream::transport_error(ProviderName::Kling, e, true, "submit")
        })?;
        let data = match read_answer(resp, true, "submit", &self.secrets()).await {
            Ok(data) => data,
            Err(Refused {
                code: Some(CODE_INVALID),
                err: e,
            }) => {
                // Also the answer to a duplicate external_task_id: a task may exist already.
                return match self.lookup(&req.client_id).await {
                    Ok(Lookup::Found(id)) => Ok(id),
                    Ok(_) => Err(e),
                    Err(l) => Err(UpstreamError::new(
                        ErrorClass::Ambiguous,
                        format!("{}; lookup failed: {}", e.message, l.message),
                    )),
                };
            }
            Err(r) => return Err(r.err),
        };
        match data.get("task_id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(UpstreamError::new(
                ErrorClass::Ambiguous,
                "kling submit: response has no data.task_id",
            )),
        }
    }

    async fn poll(&self, upstream_id: &str) -> Result<PollStatus, UpstreamError> {
        let data = self.query(upstream_id, "poll").await.map_err(|r| r.err)?;
        Ok(match wire::poll_status(&data) {
            PollStatus::Failed { reason } => PollStatus::Failed {
                reason: crate::upstream::sanitize(&reason, &self.secrets()),
            },
            other => other,
        })
    }

    async fn lookup(&self, client_id: &str) -> Result<Lookup, UpstreamError> {
        match self.query(client_id, "lookup").await {
            Ok(data) => match data.get("task_id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => Ok(Lookup::Found(id.to_string())),
                _ => Err(UpstreamError::new(
                    ErrorClass::Retryable,
                    "kling lookup: answer has no data.task_id",
                )),
            },
            Err(Refused {
                code: Some(CODE_NOT_FOUND),
                ..
            }) => Ok(Lookup::NotFound),
            Err(r) => Err(r.err),
        }
    }
}

/// This provider's entry in the [registry](crate::upstream::registry).
pub const PROVIDER: crate::upstream::registry::Provider = crate::upstream::registry::Provider {
    name: ProviderName::Kling,
    credentials: crate::upstream::registry::Credentials::AccessSecretJwt {
        access_env: "KLING_ACCESS_KEY",
        secret_env: "KLING_SECRET_KEY",
    },
    models: crate::upstream::registry::Models {
        edit: Ok(crate::upstream::registry::ModelLimits {
            inline_elements: false,
            // `video_url`: "obtained via URL" only.
            inline_video: false,
            tiers: crate::upstream::registry::ModelLimits::TWO_TIERS,
            source: crate::upstream::registry::source_limits::KLING,
            ..crate::upstream::registry::ModelLimits::BASE
        }),
        reference: Ok(crate::upstream::registry::ModelLimits {
            inline_elements: false,
            inline_video: false,
            aspect_ratios: &["16:9", "9:16", "1:1"],
            durations: &[3, 4, 5, 6, 7, 8, 9, 10],
            tiers: crate::upstream::registry::ModelLimits::TWO_TIERS,
            source: crate::upstream::registry::source_limits::KLING,
            ..crate::upstream::registry::ModelLimits::BASE
        }),
    },
    storage: None,
    build: |p| crate::upstream::registry::boxed(Kling::new(p)),
};
