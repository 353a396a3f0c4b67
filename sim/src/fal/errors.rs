//! fal's two failure shapes and its own retries.
//!
//! - **Model errors** (the model refused the input): HTTP 422 with `{"detail": [{loc, msg,
//!   type, url?, input?}]}` and the `X-Fal-Retryable` header fal's docs call required
//!   (fal docs, "Model Errors", `fal.ai/docs/documentation/model-apis/errors`).
//! - **Request errors** (infrastructure: timeouts, runner failures): a flat
//!   `{"detail": "<text>", "error_type": "<type>"}` at the type's typical status, with the
//!   same type in `X-Fal-Error-Type` (fal docs, "Request Error Types",
//!   `…/model-apis/request-errors`; the table below is that page's).
//!
//! A failed queue request is `COMPLETED` at the status endpoint with `error` and
//! `error_type` (the docs: "`error_type` is also available in queue status responses for
//! failed requests"; fal-client 1.0.3 reads both into `Completed`), and its result fetch
//! answers the failure. fal retries a queued request whose runner fails (503, 504,
//! connection errors) up to 10 times unless it was submitted with `X-Fal-No-Retry` set to
//! `1`, `true` or `yes` (fal docs, "Reliability", `docs.fal.ai/model-apis/model-endpoints/
//! reliability`); the knobs `fal_runner_failure_rate` and `fal_request_error_rate` model
//! that, with the type `fal_request_error_type`.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::gate::Protocol;
use crate::state::Inner;

/// fal's documented request error types: type, typical HTTP status, the simulator's text.
const REQUEST_ERRORS: &[(&str, u16, &str)] = &[
    ("request_timeout", 504, "Request timed out"),
    ("startup_timeout", 504, "Runner did not start in time"),
    (
        "runner_scheduling_failure",
        503,
        "No runner could be allocated",
    ),
    (
        "runner_connection_timeout",
        503,
        "Connection to the runner timed out",
    ),
    (
        "runner_disconnected",
        503,
        "Runner disconnected unexpectedly",
    ),
    (
        "runner_connection_refused",
        503,
        "Runner refused the connection",
    ),
    (
        "runner_connection_error",
        503,
        "Connection to the runner failed",
    ),
    (
        "runner_incomplete_response",
        502,
        "Runner sent an incomplete response",
    ),
    (
        "runner_server_error",
        500,
        "Runner failed with a server error",
    ),
    ("client_disconnected", 499, "Client disconnected"),
    ("client_cancelled", 499, "Client cancelled the request"),
    ("bad_request", 400, "Bad request"),
    ("internal_error", 500, "Internal error"),
];

/// The typical status and text of a documented request error type.
pub(crate) fn request_error(kind: &str) -> Option<(StatusCode, &'static str)> {
    REQUEST_ERRORS
        .iter()
        .find(|(t, _, _)| *t == kind)
        .and_then(|(_, code, text)| Some((StatusCode::from_u16(*code).ok()?, *text)))
}

/// Whether a submit turned fal's own retries off (`X-Fal-No-Retry: 1|true|yes`).
pub(super) fn no_retry(headers: &HeaderMap) -> bool {
    headers
        .get("x-fal-no-retry")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| ["1", "true", "yes"].contains(&v.trim().to_ascii_lowercase().as_str()))
}

/// The request error body of the type `kind` (a known one: the knob is checked).
fn request_error_body(kind: &str) -> Value {
    let text = request_error(kind).map_or("Request failed", |(_, text)| text);
    json!({"detail": text, "error_type": kind})
}

/// Decides, as a request is accepted, whether it ends as a request error: always by
/// `fal_request_error_rate`; by a transient runner failure (`fal_runner_failure_rate`)
/// only when the submit said `X-Fal-No-Retry`, else fal retries it (counted) and it runs.
pub(super) fn decide(inner: &mut Inner, no_retry: bool) -> Option<Value> {
    let kind = inner.knobs.fal_request_error_type.clone();
    let exhausted = inner.knobs.fal_request_error_rate;
    if inner.chance(exhausted) {
        return Some(request_error_body(&kind));
    }
    let transient = inner.knobs.fal_runner_failure_rate;
    if !inner.chance(transient) {
        return None;
    }
    if no_retry {
        return Some(request_error_body(&kind));
    }
    inner.counters(super::Fal::NAME).runner_retries += 1;
    None
}

/// A failure body in fal's terms: a request error (flat `detail` + `error_type`) or a
/// model error (the `detail` list).
fn is_request_error(body: &Value) -> bool {
    body["detail"].is_string() && body["error_type"].is_string()
}

/// What a COMPLETED status says of a failed request: `error` (text) and `error_type`.
/// For a model error these are its first item's `msg` and `type` (ASSUMPTION: fal
/// documents the status fields for request errors only).
pub(super) fn status_fields(body: &Value) -> (Value, Value) {
    if is_request_error(body) {
        return (body["detail"].clone(), body["error_type"].clone());
    }
    let items = super::schema::fal_detail(body);
    (items[0]["msg"].clone(), items[0]["type"].clone())
}

/// The result fetch of a failed request: the request error at its type's status with
/// `X-Fal-Error-Type`, or the model error as a 422 with `X-Fal-Retryable: false` (the
/// simulator's model errors, content policy and input checks, do not pass on a retry).
pub(super) fn failure_response(body: &Value) -> Response {
    if is_request_error(body) {
        let kind = body["error_type"].as_str().unwrap_or("internal_error");
        let status = request_error(kind).map_or(StatusCode::INTERNAL_SERVER_ERROR, |(s, _)| s);
        let mut resp = (status, Json(body.clone())).into_response();
        if let Ok(v) = HeaderValue::from_str(kind) {
            resp.headers_mut().insert("x-fal-error-type", v);
        }
        return resp;
    }
    let items = super::schema::fal_detail(body);
    let mut resp = super::detail(StatusCode::UNPROCESSABLE_ENTITY, items);
    resp.headers_mut()
        .insert("x-fal-retryable", HeaderValue::from_static("false"));
    resp
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn request_error_types_and_the_no_retry_header() {
        assert_eq!(
            request_error("request_timeout").map(|(s, _)| s.as_u16()),
            Some(504)
        );
        assert_eq!(
            request_error("client_cancelled").map(|(s, _)| s.as_u16()),
            Some(499)
        );
        assert!(request_error("nope").is_none());
        for (value, off) in [("1", true), ("TRUE", true), ("yes", true), ("0", false)] {
            let mut h = HeaderMap::new();
            h.insert("x-fal-no-retry", HeaderValue::from_static(value));
            assert_eq!(no_retry(&h), off, "{value}");
        }
        assert!(!no_retry(&HeaderMap::new()));
        let body = request_error_body("runner_disconnected");
        assert_eq!(status_fields(&body).1, "runner_disconnected");
        let resp = failure_response(&body);
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["x-fal-error-type"], "runner_disconnected");
    }
}
