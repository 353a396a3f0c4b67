//! The push receiver's routes: `POST /push/fal/{job}` (fal's signature, then the signed
//! request must be the job's own) and `POST /push/kling/{job}/{token}` (the job's token),
//! `GET /healthz`. An authentic push of a job that is parked moves its next poll to now;
//! nothing else is done with it. Answers: 200 when accepted (poked, already due, already
//! finished, not a completion, or a job that is gone), 503 with `Retry-After` when the job
//! is not parked yet (its submit or a poll is under way: the provider retries), 401 for a
//! push that fails authentication, 400/404/408/413 for the rest. Each push is counted in
//! `restyle_push_received_total{provider, outcome}`, each refusal also in
//! `restyle_push_refused_total{provider, reason}`. Nothing of a request — path (the Kling
//! token), headers, body — is logged.

use super::fal::{FalVerifier, Refusal};
use crate::config::Settings;
use crate::model::ProviderName;
use crate::queue::{PushTarget, Queue};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

/// What an accepted push led to: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job's next poll moved to now.
    Poked,
    /// The job was due already (a duplicate, or its poll time had come).
    AlreadyDue,
    /// The job is finished; nothing to do.
    Finished,
    /// Not a completion (Kling's `submitted`/`processing`), or no such job.
    Ignored,
    /// The job is not parked (its submit or a poll is under way): 503, try again.
    NotYet,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Poked => "poked",
            Outcome::AlreadyDue => "already_due",
            Outcome::Finished => "finished",
            Outcome::Ignored => "ignored",
            Outcome::NotYet => "not_yet",
        }
    }
}

/// How long a sender is asked to wait before retrying a push of a job not parked yet.
const RETRY_AFTER_SECS: u64 = 5;

/// The receiver: Redis (nothing else of a worker), the namespace and secret behind Kling's
/// tokens, fal's verifier and the request bounds.
#[derive(Debug)]
pub struct Receiver {
    queue: Queue,
    namespace: String,
    secret: Option<SecretString>,
    fal: FalVerifier,
    max_body: usize,
    timeout: Duration,
}

impl Receiver {
    /// A receiver for these settings (`[push]`, `providers.fal.webhook_jwks_url`; the
    /// JWKS is fetched through the egress policy of `[egress]` and `[output]`).
    pub fn new(queue: Queue, settings: &Settings) -> Receiver {
        let p = &settings.push;
        let jwks = settings
            .provider(ProviderName::Fal)
            .webhook_jwks_url
            .clone()
            .unwrap_or_else(|| url::Url::parse(super::FAL_JWKS_URL).expect("valid URL"));
        let egress = crate::egress::Egress::from_settings(settings);
        Receiver {
            queue,
            namespace: settings.redis.namespace.clone(),
            secret: p.secret.clone(),
            fal: FalVerifier::new(jwks, egress, p.jwks_ttl, p.timestamp_tolerance),
            max_body: usize::try_from(p.max_body_bytes).unwrap_or(usize::MAX),
            timeout: p.request_timeout,
        }
    }

    /// The routes, for [`super::serve`] (or any axum server in tests).
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/push/fal/{job}", post(fal))
            .route("/push/kling/{job}/{token}", post(kling))
            .route("/push/kling/{job}", post(kling_without_token))
            .route("/healthz", get(|| async { "ok\n" }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
            .with_state(self)
    }

    /// Runs one push within the request timeout and answers it, counting the outcome.
    async fn answer<F>(&self, provider: ProviderName, work: F) -> Response
    where
        F: std::future::Future<Output = Result<Outcome, Failure>>,
    {
        let result = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Refused(Refusal::Timeout)),
        };
        let p = provider.as_str();
        match result {
            Ok(outcome) => {
                crate::metrics::push_received(p, outcome.as_str());
                tracing::debug!(provider = p, outcome = outcome.as_str(), "Push received.");
                if outcome == Outcome::NotYet {
                    let mut r =
                        (StatusCode::SERVICE_UNAVAILABLE, "not parked yet\n").into_response();
                    r.headers_mut()
                        .insert("retry-after", HeaderValue::from(RETRY_AFTER_SECS));
                    return r;
                }
                (StatusCode::OK, "ok\n").into_response()
            }
            Err(Failure::Refused(why)) => {
                crate::metrics::push_received(p, "refused");
                crate::metrics::push_refused(p, why.as_str());
                tracing::debug!(provider = p, reason = why.as_str(), "Push refused.");
                (why.status(), format!("{}\n", why.as_str())).into_response()
            }
            Err(Failure::Redis(e)) => {
                crate::metrics::push_received(p, "error");
                tracing::warn!(provider = p, error = %e, "Push not acted on: Redis unavailable.");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n").into_response()
            }
        }
    }

    /// The body, refused past `push.max_body_bytes` (a declared length is checked first).
    async fn body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Failure> {
        let declared = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(Failure::Refused(Refusal::TooLarge));
        }
        axum::body::to_bytes(body, self.max_body)
            .await
            .map_err(|_| Failure::Refused(Refusal::TooLarge))
    }

    /// Moves a parked job's next poll to now; says what it found otherwise.
    async fn poke(
        &self,
        provider: ProviderName,
        job: &str,
        target: &PushTarget,
        upstream_id: &str,
    ) -> Result<Outcome, Failure> {
        if target.state.is_some_and(|s| s.is_terminal()) {
            return Ok(Outcome::Finished);
        }
        if self.queue.poke(provider.as_str(), upstream_id).await? {
            return Ok(Outcome::Poked);
        }
        Ok(match self.queue.parked_due(job).await? {
            Some(_) => Outcome::AlreadyDue,
            None => Outcome::NotYet,
        })
    }

    /// The job's record, when it belongs to `provider` and has an upstream id.
    async fn target(
        &self,
        provider: ProviderName,
        job: &str,
    ) -> Result<Result<(PushTarget, String), Outcome>, Failure> {
        let Some(t) = self.queue.push_target(job).await? else {
            return Ok(Err(Outcome::Ignored));
        };
        if t.provider.as_deref() != Some(provider.as_str()) {
            return Err(Failure::Refused(Refusal::WrongRequest));
        }
        if t.state.is_some_and(|s| s.is_terminal()) {
            return Ok(Err(Outcome::Finished));
        }
        match t.upstream_id.clone() {
            Some(up) => Ok(Ok((t, up))),
            None => Ok(Err(Outcome::NotYet)),
        }
    }

    async fn fal_push(
        &self,
        job: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Outcome, Failure> {
        variant_id(job)?;
        let body = self.body(&headers, body).await?;
        let signed = self.fal.verify(&headers, &body).await?;
        let (target, upstream_id) = match self.target(ProviderName::Fal, job).await? {
            Ok(t) => t,
            Err(outcome) => return Ok(outcome),
        };
        // Signed (the header, and the body through its digest): it must be this job's
        // request, so a webhook of one request replayed at another job's path does nothing.
        let ours = upstream_id.split('|').next().unwrap_or_default();
        let in_body = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("request_id")?.as_str().map(str::to_string));
        if signed.request_id != ours && in_body.as_deref() != Some(ours) {
            return Err(Failure::Refused(Refusal::WrongRequest));
        }
        self.poke(ProviderName::Fal, job, &target, &upstream_id)
            .await
    }

    async fn kling_push(
        &self,
        job: &str,
        token: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Outcome, Failure> {
        variant_id(job)?;
        let good = self
            .secret
            .as_ref()
            .is_some_and(|s| super::kling_token_ok(s, &self.namespace, job, token));
        if !good {
            return Err(Failure::Refused(Refusal::WrongToken));
        }
        let body = self.body(&headers, body).await?;
        // Kling calls back on every change: only a possible completion is worth a poll.
        // (Trusting a `processing` to skip one is safe: polling still comes.)
        let status = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("task_status")?.as_str().map(str::to_string));
        if matches!(status.as_deref(), Some("submitted" | "processing")) {
            return Ok(Outcome::Ignored);
        }
        let (target, upstream_id) = match self.target(ProviderName::Kling, job).await? {
            Ok(t) => t,
            Err(outcome) => return Ok(outcome),
        };
        self.poke(ProviderName::Kling, job, &target, &upstream_id)
            .await
    }
}

/// Why a push was not acted on.
#[derive(Debug)]
enum Failure {
    Refused(Refusal),
    Redis(crate::queue::QueueError),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

impl From<crate::queue::QueueError> for Failure {
    fn from(e: crate::queue::QueueError) -> Self {
        Failure::Redis(e)
    }
}

/// A path's job id must be one a batch makes (checked before anything else is read).
fn variant_id(job: &str) -> Result<(), Failure> {
    match crate::job::parse_job_id(job) {
        Ok(crate::job::JobIdParts::Variant { .. }) => Ok(()),
        _ => Err(Failure::Refused(Refusal::Malformed)),
    }
}

async fn fal(State(rx): State<Arc<Receiver>>, Path(job): Path<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let work = rx.fal_push(&job, parts.headers, body);
    rx.answer(ProviderName::Fal, work).await
}

async fn kling(
    State(rx): State<Arc<Receiver>>,
    Path((job, token)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let work = rx.kling_push(&job, &token, parts.headers, body);
    rx.answer(ProviderName::Kling, work).await
}

async fn kling_without_token(State(rx): State<Arc<Receiver>>) -> Response {
    let refused = async { Err(Failure::Refused(Refusal::WrongToken)) };
    rx.answer(ProviderName::Kling, refused).await
}
