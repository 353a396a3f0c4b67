//! AI/ML API wire mapping: `POST /v2/video/generations`, `GET /v2/video/generations?
//! generation_id=` (id percent-encoded), statuses queued/generating/completed/error, output
//! at `video.url`, errors as `{name,message}` or fal-style `{detail:[…]}`.

use crate::config::ProviderSettings;
use crate::model::{GenerationRequest, ModelKind, ProviderName};
use crate::upstream::{retry_after, ErrorClass, PollStatus, Upstream, UpstreamError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

/// Client for one aimlapi account.
pub struct Aimlapi {
    http: reqwest::Client,
    base: url::Url,
    key: Option<SecretString>,
}

impl std::fmt::Debug for Aimlapi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aimlapi")
            .field("base", &crate::config::redact_url(self.base.as_str()))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Generation {
    id: Option<String>,
    status: Option<String>,
    video: Option<VideoRef>,
    error: Option<Value>,
}

/// A generation's `status`, as aimlapi documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum GenerationStatus {
    Queued,
    Generating,
    Completed,
    Error,
    Failed,
}

#[derive(Debug, Deserialize)]
struct VideoRef {
    url: Option<String>,
}

impl Aimlapi {
    pub fn new(p: &ProviderSettings) -> Result<Self, UpstreamError> {
        let http = crate::upstream::http_client(p, true)?;
        Ok(Aimlapi {
            http,
            base: p.base_url.clone(),
            key: p.api_key.clone(),
        })
    }

    fn url(&self) -> String {
        format!(
            "{}/v2/video/generations",
            self.base.as_str().trim_end_matches('/')
        )
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, UpstreamError> {
        match &self.key {
            Some(k) => Ok(rb.bearer_auth(k.expose_secret())),
            None => Err(UpstreamError::new(
                ErrorClass::Account,
                "no API key for aimlapi: set RESTYLE__PROVIDERS__AIMLAPI__API_KEY or AIMLAPI_API_KEY",
            )),
        }
    }
}

/// The JSON body for one generation. `keep_audio` is always explicit.
pub fn request_body(req: &GenerationRequest) -> Value {
    let mut body = json!({
        "model": req.model.aimlapi_id(),
        "prompt": req.prompt,
        "video_url": req.video,
        "keep_audio": req.keep_audio,
    });
    if !req.image_list.is_empty() {
        body["image_list"] = json!(req.image_list);
    }
    if !req.elements.is_empty() {
        body["elements"] = json!(req.elements);
    }
    if req.model == ModelKind::Reference {
        if let Some(ar) = &req.aspect_ratio {
            body["aspect_ratio"] = json!(ar);
        }
        if let Some(d) = req.duration {
            body["duration"] = json!(d);
        }
    }
    body
}

/// Pulls a readable message out of either documented error shape, or the envelope.
pub fn error_message(v: &Value) -> String {
    if let Some(m) = v.get("message").and_then(Value::as_str) {
        let name = v.get("name").and_then(Value::as_str);
        return match name {
            Some(n) if !n.is_empty() => format!("{n}: {m}"),
            _ => m.to_string(),
        };
    }
    if let Some(items) = v.get("detail").and_then(Value::as_array) {
        let msgs: Vec<String> = items
            .iter()
            .map(|d| {
                let msg = d.get("msg").and_then(Value::as_str).unwrap_or("error");
                match d.get("loc").and_then(Value::as_array) {
                    Some(loc) => {
                        let path: Vec<String> = loc
                            .iter()
                            .map(|p| p.as_str().map_or(p.to_string(), str::to_string))
                            .collect();
                        format!("{}: {msg}", path.join("."))
                    }
                    None => msg.to_string(),
                }
            })
            .collect();
        return msgs.join("; ");
    }
    if let Some(s) = v.as_str() {
        return s.to_string();
    }
    v.to_string()
}

/// Classifies an HTTP error response. Submits are stricter: a 5xx other than 503 may
/// have been accepted behind the gateway, so it is ambiguous.
fn classify(status: u16, body: &str, submit: bool) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::Account,
        429 => ErrorClass::RATE_LIMITED,
        503 => ErrorClass::Retryable,
        500..=599 if submit => ErrorClass::Ambiguous,
        500..=599 => ErrorClass::Retryable,
        400..=499 => ErrorClass::Job,
        _ if body.is_empty() => ErrorClass::Retryable,
        _ => ErrorClass::Job,
    }
}

impl Aimlapi {
    /// The secrets an answer must never echo into an error.
    fn secrets(&self) -> Vec<&SecretString> {
        self.key.iter().collect()
    }

    async fn http_error(&self, resp: reqwest::Response, submit: bool, what: &str) -> UpstreamError {
        let status = resp.status().as_u16();
        let ra = retry_after(resp.headers());
        let body = crate::upstream::error_body(resp).await;
        let msg = serde_json::from_str::<Value>(&body)
            .map(|v| error_message(&v))
            .unwrap_or_else(|_| body.chars().take(300).collect());
        UpstreamError::answer(
            classify(status, &body, submit).with_retry_after(ra),
            &format!("aimlapi {what}: HTTP {status}: {msg}"),
            Some(status),
            ra,
            &self.secrets(),
        )
    }
}

#[async_trait::async_trait]
impl Upstream for Aimlapi {
    fn name(&self) -> ProviderName {
        ProviderName::Aimlapi
    }

    async fn submit(&self, req: &GenerationRequest) -> Result<String, UpstreamError> {
        let body = crate::upstream::body::JsonBody::for_request(&request_body(req), req)?;
        let rb = self
            .http
            .post(self.url())
            .header("X-Client-Request-Id", &req.job_id);
        let rb = crate::upstream::body::json(rb, body);
        let resp = self.auth(rb)?.send().await.map_err(|e| {
            crate::upstream::transport_error(ProviderName::Aimlapi, e, true, "submit")
        })?;
        if !resp.status().is_success() {
            return Err(self.http_error(resp, true, "submit").await);
        }
        // The POST was accepted: a body we cannot read leaves the outcome unknown.
        let g: Generation =
            crate::upstream::read_json(resp, ErrorClass::Ambiguous, "aimlapi submit").await?;
        match g.id {
            Some(id) if !id.is_empty() => Ok(id),
            _ => Err(UpstreamError::new(
                ErrorClass::Ambiguous,
                "aimlapi submit: response has no generation id",
            )),
        }
    }

    async fn poll(&self, upstream_id: &str) -> Result<PollStatus, UpstreamError> {
        let rb = self
            .http
            .get(self.url())
            .query(&[("generation_id", upstream_id)]);
        let resp = self.auth(rb)?.send().await.map_err(|e| {
            crate::upstream::transport_error(ProviderName::Aimlapi, e, false, "poll")
        })?;
        if !resp.status().is_success() {
            return Err(self.http_error(resp, false, "poll").await);
        }
        let g: Generation =
            crate::upstream::read_json(resp, ErrorClass::Retryable, "aimlapi poll").await?;
        let status = g.status.unwrap_or_default();
        Ok(
            match crate::upstream::wire_status::<GenerationStatus>(&status) {
                Some(GenerationStatus::Completed) => match g.video.and_then(|v| v.url) {
                    Some(url) => PollStatus::Succeeded { url },
                    None => PollStatus::Failed {
                        reason: "aimlapi: completed without video.url".to_string(),
                    },
                },
                Some(GenerationStatus::Error | GenerationStatus::Failed) => PollStatus::Failed {
                    reason: crate::upstream::sanitize(
                        &g.error.as_ref().map(error_message).unwrap_or_else(|| {
                            format!("aimlapi: generation ended with status {status}")
                        }),
                        &self.secrets(),
                    ),
                },
                Some(GenerationStatus::Queued | GenerationStatus::Generating) => {
                    PollStatus::Pending { status }
                }
                None => {
                    tracing::warn!(
                        upstream_status = status.as_str(),
                        "Unknown aimlapi status, still waiting."
                    );
                    PollStatus::Pending { status }
                }
            },
        )
    }
}

/// This provider's entry in the [registry](crate::upstream::registry).
pub const PROVIDER: crate::upstream::registry::Provider = crate::upstream::registry::Provider {
    name: ProviderName::Aimlapi,
    credentials: crate::upstream::registry::Credentials::Bearer {
        env: "AIMLAPI_API_KEY",
    },
    models: crate::upstream::registry::Models {
        edit: Ok(crate::upstream::registry::ModelLimits::BASE),
        reference: Ok(crate::upstream::registry::ModelLimits {
            aspect_ratios: &["16:9", "9:16", "1:1"],
            durations: &[5, 10],
            ..crate::upstream::registry::ModelLimits::BASE
        }),
    },
    storage: None,
    build: |p| crate::upstream::registry::boxed(Aimlapi::new(p)),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_are_read() {
        let a = json!({"name": "ContentError", "message": "Content rejected"});
        assert_eq!(error_message(&a), "ContentError: Content rejected");
        let b = json!({"detail": [{"loc": ["body", "image_url"], "msg": "Could not detect face",
                                   "type": "face_detection_error"}]});
        assert_eq!(error_message(&b), "body.image_url: Could not detect face");
    }

    #[test]
    fn submit_5xx_is_ambiguous_but_poll_5xx_retryable() {
        assert_eq!(classify(500, "{}", true), ErrorClass::Ambiguous);
        assert_eq!(classify(503, "{}", true), ErrorClass::Retryable);
        assert_eq!(classify(429, "{}", true), ErrorClass::RATE_LIMITED);
        assert_eq!(classify(502, "{}", false), ErrorClass::Retryable);
        assert_eq!(classify(400, "{}", true), ErrorClass::Job);
        assert_eq!(classify(401, "{}", false), ErrorClass::Account);
        assert_eq!(classify(403, "{}", true), ErrorClass::Account);
    }

    #[test]
    fn edit_body_has_no_reference_fields_and_explicit_audio() {
        let req = GenerationRequest {
            job_id: "b.00001".into(),
            client_id: "b.00001".into(),
            model: ModelKind::Edit,
            prompt: "p".into(),
            video: "https://x/v.mp4".into(),
            image_list: vec![],
            keep_audio: false,
            aspect_ratio: Some("16:9".into()),
            duration: Some(5),
            tier: None,
            elements: vec![],
        };
        let b = request_body(&req);
        assert_eq!(b["keep_audio"], json!(false));
        assert!(b.get("aspect_ratio").is_none());
        assert!(b.get("duration").is_none());
        let mut r2 = req.clone();
        r2.model = ModelKind::Reference;
        let b2 = request_body(&r2);
        assert_eq!(b2["duration"], json!(5));
        assert_eq!(b2["aspect_ratio"], json!("16:9"));
    }
}
