//! The seam to the providers: the [`Upstream`] trait, error classes decided where errors
//! arise, and the poll/retry schedule. Each provider is one file of wire mapping, ending
//! with its entry in the [`registry`].

pub mod body;
pub mod providers;
pub mod registry;
pub mod learned;
pub mod schedule;

use crate::config::Settings;
use crate::model::{GenerationRequest, ProviderName};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How the runner must treat a failed upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The provider refused the call for its rate limit (HTTP 429, Kling's 1302/1303): it
    /// certainly did not accept it. The whole fleet cools down; no attempt is used.
    RateLimited { retry_after: Option<Duration> },
    /// Safe to try again later. For a submit this means the provider certainly did not
    /// accept the request (connection refused, 503 from the gateway).
    Retryable,
    /// A submit whose outcome is unknown (timeout or reset after the body was sent, 5xx
    /// from behind the gateway): never re-POST blindly.
    Ambiguous,
    /// Terminal for this job (validation, content rejection, unknown generation).
    Job,
    /// Terminal for the account (bad key, out of credits): pause the provider.
    Account,
}

impl ErrorClass {
    /// Rate limited, with no `Retry-After` known yet.
    pub const RATE_LIMITED: ErrorClass = ErrorClass::RateLimited { retry_after: None };

    /// Fills in the provider's `Retry-After` on a rate-limit class.
    pub fn with_retry_after(self, ra: Option<Duration>) -> ErrorClass {
        match self {
            ErrorClass::RateLimited { retry_after } => ErrorClass::RateLimited {
                retry_after: retry_after.or(ra),
            },
            other => other,
        }
    }
}

/// A failed upstream call. `message` never holds credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub class: ErrorClass,
    pub message: String,
    /// HTTP status when there was a response.
    pub status: Option<u16>,
    /// `Retry-After` when the provider sent one.
    pub retry_after: Option<Duration>,
}

impl UpstreamError {
    /// An error with a message of ours (sanitized all the same: it may quote an answer).
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        UpstreamError {
            class,
            message: sanitize(&message.into(), &[]),
            status: None,
            retry_after: None,
        }
    }

    /// An error built from a provider's answer: the text is [sanitized](sanitize) with
    /// the provider's `secrets` scrubbed, so nothing downstream sees the raw text.
    pub fn answer(
        class: ErrorClass,
        message: &str,
        status: Option<u16>,
        retry_after: Option<Duration>,
        secrets: &[&SecretString],
    ) -> Self {
        UpstreamError {
            class,
            message: sanitize(message, secrets),
            status,
            retry_after,
        }
    }
}

/// The most of a provider's answer (submit, poll, lookup, error) that is read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest error text kept, in bytes (before the truncation marker).
pub const MAX_ERROR_BYTES: usize = 2048;

/// What marks a truncated error text.
pub const TRUNCATED: &str = " …[truncated]";

/// A provider's text made safe to store, log and show: `secrets` replaced with
/// `[redacted]`, control characters (ANSI escapes, CR, LF, NUL, tabs…) removed or turned
/// into a space, and the result cut to [`MAX_ERROR_BYTES`] at a char boundary with
/// [`TRUNCATED`] after it.
pub fn sanitize(text: &str, secrets: &[&SecretString]) -> String {
    let mut s = text.to_string();
    for k in secrets {
        let k = k.expose_secret();
        if !k.is_empty() {
            s = s.replace(k, "[redacted]");
        }
    }
    let mut out = String::with_capacity(s.len().min(MAX_ERROR_BYTES + TRUNCATED.len()));
    let mut chars = s.chars().peekable();
    let mut cut = false;
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI (`ESC [ … final`) and other escapes: drop the sequence.
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&n) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        let c = match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => continue,
            c => c,
        };
        if out.len() + c.len_utf8() > MAX_ERROR_BYTES {
            cut = true;
            break;
        }
        out.push(c);
    }
    if cut {
        out.push_str(TRUNCATED);
    }
    out
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("response body over the {0}-byte limit, not read")]
    TooLarge(usize),
    #[error("response body unreadable: {0}")]
    Transport(reqwest::Error),
}

/// Reads a response body, at most `limit` bytes: stops (and fails) as soon as the
/// announced length or the bytes received pass it, so a huge answer is never read whole.
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Transport(e.without_url()))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Reads a successful answer's JSON body within [`MAX_BODY_BYTES`]. Any failure is an
/// error of `class`: retryable for a poll; for a submit, ambiguous (the POST may have been
/// accepted).
pub async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    class: ErrorClass,
    what: &str,
) -> Result<T, UpstreamError> {
    let body = read_limited(resp, MAX_BODY_BYTES)
        .await
        .map_err(|e| UpstreamError::new(class, format!("{what}: {e}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| UpstreamError::new(class, format!("{what}: unreadable response: {e}")))
}

/// Reads an error answer's body within [`MAX_BODY_BYTES`] as text (best effort: a body
/// that cannot be read is replaced by why).
pub async fn error_body(resp: reqwest::Response) -> String {
    match read_limited(resp, MAX_BODY_BYTES).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("({e})"),
    }
}

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollStatus {
    /// Still queued or running; `status` is the provider's own word for it.
    Pending { status: String },
    /// Done; the output is at `url` (download it now: provider URLs expire).
    Succeeded { url: String },
    /// The generation failed upstream, with the provider's reason.
    Failed { reason: String },
}

/// One provider's protocol. Implementations hold only wire mapping; the worker decides
/// what to do with each outcome.
#[async_trait::async_trait]
pub trait Upstream: Send + Sync + std::fmt::Debug {
    fn name(&self) -> ProviderName;

    /// Submits one generation; returns the provider's generation id.
    async fn submit(&self, req: &GenerationRequest) -> Result<String, UpstreamError>;

    /// Asks where a generation stands. Errors are never [`ErrorClass::Ambiguous`].
    async fn poll(&self, upstream_id: &str) -> Result<PollStatus, UpstreamError>;

    /// Cancels a generation where the provider can. `Ok(false)`: no cancel on this provider.
    async fn cancel(&self, _upstream_id: &str) -> Result<bool, UpstreamError> {
        Ok(false)
    }

    /// Finds the generation submitted under our client id (one per submit attempt, see
    /// [`crate::job::client_id`]), where the provider can look one up by a client key
    /// (Kling's `external_task_id`). Resolves ambiguous submits.
    async fn lookup(&self, _client_id: &str) -> Result<Lookup, UpstreamError> {
        Ok(Lookup::Unsupported)
    }

    /// The `Authorization` header an output download of `url` carries, if any. Only for a
    /// URL on the provider's own `base_url` origin (scheme, host and port), so a key never
    /// goes to another host; the egress client never carries it across a redirect to
    /// another origin ([`crate::egress`]). `None` (the default): downloads carry no key.
    fn download_auth(&self, _url: &url::Url) -> Option<reqwest::header::HeaderValue> {
        None
    }

    /// Completion events (the upstream ids of generations that just finished), where the
    /// provider pushes them (Oxen SSE). The stream reconnects by itself and ends only when
    /// dropped. Events trigger an immediate poll; polling stays the source of truth.
    fn events(&self) -> Option<futures::stream::BoxStream<'static, String>> {
        None
    }

    /// Whether local media go to this provider by upload (its storage, once per batch)
    /// rather than inside each request body. See [`Upstream::upload`].
    fn uploads(&self) -> bool {
        false
    }

    /// Uploads one payload to the provider's storage and returns the URL its requests
    /// then name. Called at most once per batch and process for each payload; the worker
    /// records the URL with the batch, so retries and other workers reuse it.
    async fn upload(&self, _blob: &crate::media::Blob) -> Result<String, UpstreamError> {
        Err(UpstreamError::new(
            ErrorClass::Job,
            format!("{} takes no uploads", self.name()),
        ))
    }
}

/// What a lookup by our job id found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The provider cannot look generations up by a client key.
    Unsupported,
    /// The provider has a generation for this job: its upstream id.
    Found(String),
    /// The provider certainly has no generation for this job: submitting is safe.
    NotFound,
}

/// Every configured provider, by name.
pub type Upstreams = HashMap<ProviderName, Arc<dyn Upstream>>;

/// Builds a client for every registered provider that has settings and credentials. A
/// provider without its credentials is disabled on this worker ([`availability`] says
/// why): its jobs wait for a worker that has them, and nothing pauses it for the fleet.
pub fn build_all(settings: &Settings) -> Result<Upstreams, UpstreamError> {
    let mut out: Upstreams = HashMap::new();
    for entry in registry::PROVIDERS {
        if let Some(p) = settings.providers.get(&entry.name) {
            if entry.missing_credentials(p).is_none() {
                // Where the provider is told to push completion, when `[push]` is on.
                let mut p = p.clone();
                p.push = crate::push::Callbacks::from_settings(settings);
                out.insert(entry.name, (entry.build)(&p)?);
            }
        }
    }
    Ok(out)
}

/// Every registered provider and whether these settings let a worker use it: `Err` says
/// which credentials are missing and which variables give them (never a value).
pub fn availability(settings: &Settings) -> Vec<(ProviderName, Result<(), String>)> {
    let check = |entry: &registry::Provider| match settings.providers.get(&entry.name) {
        None => Err("no settings".to_string()),
        Some(p) => entry.missing_credentials(p).map_or(Ok(()), Err),
    };
    let all = registry::PROVIDERS.iter().map(|e| (e.name, check(e)));
    all.collect()
}

/// What the worker, `/readyz` and `check-config` say of one provider's availability.
pub fn describe_availability(name: ProviderName, a: &Result<(), String>) -> String {
    match a {
        Ok(()) => format!("provider {name}: enabled"),
        Err(why) => {
            format!("provider {name}: disabled: {why}; its jobs wait for a worker that has them")
        }
    }
}

/// The HTTP client a provider talks through: the provider's request timeout (`None`:
/// none, for long-lived streams), a connect timeout of at most 10 s, our user agent.
pub fn http_client(
    p: &crate::config::ProviderSettings,
    request_timeout: bool,
) -> Result<reqwest::Client, UpstreamError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(p.request_timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("restyle/", env!("CARGO_PKG_VERSION")));
    if request_timeout {
        b = b.timeout(p.request_timeout);
    }
    b.build()
        .map_err(|e| UpstreamError::new(ErrorClass::Account, format!("http client: {e}")))
}

/// Classifies a failed HTTP call that got no response. A request that never connected
/// certainly did not reach the provider (retryable); any later failure of a POST leaves
/// its outcome unknown (ambiguous); a GET is always safe to retry.
pub fn transport_error(
    provider: ProviderName,
    e: reqwest::Error,
    submit: bool,
    what: &str,
) -> UpstreamError {
    let class = if e.is_connect() || !submit {
        ErrorClass::Retryable
    } else {
        ErrorClass::Ambiguous
    };
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    UpstreamError::new(
        class,
        format!("{provider} {what}: {kind}: {}", e.without_url()),
    )
}

/// Reads a provider's status word into its typed status enum (`None`: a word this build
/// does not know, which callers treat as still running and log).
pub fn wire_status<T: serde::de::DeserializeOwned>(word: &str) -> Option<T> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        word.into_deserializer();
    T::deserialize(d).ok()
}

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_controls_and_secrets() {
        let key = SecretString::from("sk-secret-123".to_string());
        let s = sanitize(
            "\u{1b}[31mbad\u{1b}[0m key sk-secret-123\r\n\0end\u{7}",
            &[&key],
        );
        assert_eq!(s, "bad key [redacted]  end");
    }

    #[test]
    fn sanitize_truncates_at_a_char_boundary() {
        let long = "é".repeat(10_000);
        let s = sanitize(&long, &[]);
        assert!(s.ends_with(TRUNCATED));
        assert!(s.len() <= MAX_ERROR_BYTES + TRUNCATED.len());
        assert_eq!(sanitize("short", &[]), "short");
    }
}
