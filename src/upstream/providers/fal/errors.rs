//! fal's error answers and how each is classified (docs/providers.md, "fal — client").
//!
//! fal has two failure shapes (docs: *Model Errors* `fal.ai/docs/documentation/model-apis/
//! errors`, *Request Error Types* `…/model-apis/request-errors`): a **model error**, 422
//! `{"detail": [{loc, msg, type, …}]}`, and a **request error**, a flat `{"detail": "<text>",
//! "error_type": "<type>"}` at the type's typical status (`runner_disconnected` 503,
//! `request_timeout` 504, …) with the type also in `X-Fal-Error-Type`. A failed queue
//! request is `COMPLETED` at the status endpoint with `error` and `error_type` (the request
//! errors page: "also available in queue status responses for failed requests";
//! fal-client 1.0.3 `_parse_status` reads both into `Completed`), and its result fetch
//! answers the failure.
//!
//! Decision: once a request is COMPLETED, a request error at its result is final for the
//! job, whatever its type and 5xx status. COMPLETED is terminal in fal's queue; fal has
//! already retried what it retries (503, 504, connection errors, up to 10 times, unless
//! the submit sent `X-Fal-No-Retry`: *Reliability*, `docs.fal.ai/model-apis/
//! model-endpoints/reliability`), and fetching the result again returns the same answer.
//! fal's type list does not say which types are permanent; the ones that are transient
//! in kind are the ones fal retried. Only what says nothing about the request is retried:
//! a 5xx without `error_type` (a gateway's, or fal's own without a type: the simulator's
//! `result_504_rate`), 408, transport errors, all unless the status already reported the
//! request failed. A 404 while the status says COMPLETED means the result is gone (fal
//! keeps it about an hour, *Get request result*): told apart from a failure in the reason.

use crate::upstream::{retry_after, sanitize, ErrorClass, PollStatus, UpstreamError};
use secrecy::SecretString;
use serde_json::Value;

/// A readable message from a fal error body: `detail` as a list of `{loc,msg,type}` or a
/// string, else the raw text.
pub fn detail_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.chars().take(300).collect();
    };
    match v.get("detail") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|d| {
                let msg = d.get("msg").and_then(Value::as_str).unwrap_or("error");
                let loc: Vec<String> = d
                    .get("loc")
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .filter(|p| p.as_str() != Some("body"))
                            .map(|p| p.as_str().map_or(p.to_string(), str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if loc.is_empty() {
                    msg.to_string()
                } else {
                    format!("{}: {msg}", loc.join("."))
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => v
            .get("status")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_string),
    }
}

/// Classifies an HTTP error of a submit, status or cancel call. A submit 5xx other than
/// 503 may have been accepted behind the gateway, so it is ambiguous; every GET error is
/// retryable unless it is about the job.
pub(super) fn classify(status: u16, submit: bool) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::Account,
        429 => ErrorClass::RATE_LIMITED,
        408 | 503 => ErrorClass::Retryable,
        500..=599 if submit => ErrorClass::Ambiguous,
        500..=599 => ErrorClass::Retryable,
        400..=499 => ErrorClass::Job,
        _ if submit => ErrorClass::Ambiguous,
        _ => ErrorClass::Retryable,
    }
}

/// An error answer of a submit, status or cancel call, read and classified.
pub(super) async fn http_error(
    secrets: &[&SecretString],
    resp: reqwest::Response,
    submit: bool,
    what: &str,
) -> UpstreamError {
    let status = resp.status().as_u16();
    let ra = retry_after(resp.headers());
    let body = crate::upstream::error_body(resp).await;
    UpstreamError::answer(
        classify(status, submit).with_retry_after(ra),
        &format!("fal {what}: HTTP {status}: {}", detail_message(&body)),
        Some(status),
        ra,
        secrets,
    )
}

/// What a COMPLETED status says of a failed request: fal's `error` (text) and
/// `error_type`; both `None` for a request that did not fail (or a fal that said nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct StatusError {
    pub(super) error: Option<String>,
    pub(super) error_type: Option<String>,
}

impl StatusError {
    /// Reads the status answer's `error` and `error_type` (text, or any other JSON value
    /// as written; `null` and empty are absent).
    pub(super) fn from_fields(error: Option<&Value>, error_type: Option<&Value>) -> Self {
        let text = |v: Option<&Value>| match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        StatusError {
            error: text(error),
            error_type: text(error_type),
        }
    }

    /// Whether the status reported the request failed.
    pub(super) fn failed(&self) -> bool {
        self.error.is_some() || self.error_type.is_some()
    }

    /// `fal: request error <type>: <text>` (as much of it as fal gave).
    fn describe(&self) -> String {
        match (&self.error_type, &self.error) {
            (Some(t), Some(e)) => format!("fal: request error {t}: {e}"),
            (Some(t), None) => format!("fal: request error {t}"),
            (None, Some(e)) => format!("fal: request failed: {e}"),
            (None, None) => "fal: request failed".to_string(),
        }
    }

    /// The job's failure as the status reported it, when the result fetch could not say
    /// more (`fetch`: what the fetch got instead).
    pub(super) fn failure(&self, fetch: &str, secrets: &[&SecretString]) -> PollStatus {
        let reason = format!(
            "{} (reported by the status; result fetch: {fetch})",
            self.describe()
        );
        PollStatus::Failed {
            reason: sanitize(&reason, secrets),
        }
    }
}

/// A failed result fetch: its status, the headers that decide it, and its body.
#[derive(Debug, Clone, Default)]
pub(super) struct ResultAnswer {
    pub(super) status: u16,
    /// `X-Fal-Error-Type`.
    pub(super) error_type_header: Option<String>,
    /// `X-Fal-Request-Timeout-Type: user`: a start timeout the caller set (we set none).
    pub(super) user_timeout: bool,
    pub(super) retry_after: Option<std::time::Duration>,
    pub(super) body: String,
}

impl ResultAnswer {
    /// The request error type: the body's flat `error_type`, else `X-Fal-Error-Type`.
    fn error_type(&self) -> Option<String> {
        let from_body = serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                let t = v.get("error_type")?.as_str()?;
                (!t.is_empty()).then(|| t.to_string())
            });
        from_body.or_else(|| self.error_type_header.clone().filter(|t| !t.is_empty()))
    }
}

/// Decides a result fetch that did not succeed, for a request whose status said
/// COMPLETED with `completed` (see the module docs): the job's failure, or an error to
/// retry (the key's or the rate limit's, or a transient one).
pub(super) fn result_error(
    a: &ResultAnswer,
    completed: &StatusError,
    secrets: &[&SecretString],
) -> Result<PollStatus, UpstreamError> {
    let status = a.status;
    let detail = detail_message(&a.body);
    let failed = |reason: String| {
        Ok(PollStatus::Failed {
            reason: sanitize(&reason, secrets),
        })
    };
    let error = |class: ErrorClass| {
        Err(UpstreamError::answer(
            class.with_retry_after(a.retry_after),
            &format!("fal result: HTTP {status}: {detail}"),
            Some(status),
            a.retry_after,
            secrets,
        ))
    };
    match status {
        401 | 403 => return error(ErrorClass::Account),
        429 => return error(ErrorClass::RATE_LIMITED),
        _ => {}
    }
    if let Some(kind) = a.error_type() {
        return failed(format!(
            "fal: request error {kind}: {detail} (HTTP {status})"
        ));
    }
    let fetch = format!("HTTP {status}: {detail}");
    // What says nothing about the request: retried, unless the status said it failed.
    let transient = !(400..500).contains(&status) || status == 408;
    match status {
        404 if completed.failed() => Ok(completed.failure(&fetch, secrets)),
        404 => failed(format!(
            "fal: result expired: the status says COMPLETED but the result fetch answers \
             {fetch}; fal keeps a queue result about 1 hour after completion (6 minutes \
             if 10 KB or more), so it was fetched too late"
        )),
        504 if a.user_timeout => failed(format!("fal: {fetch}")),
        _ if transient && completed.failed() => Ok(completed.failure(&fetch, secrets)),
        _ if transient => error(ErrorClass::Retryable),
        _ => failed(format!("fal: {fetch}")),
    }
}
