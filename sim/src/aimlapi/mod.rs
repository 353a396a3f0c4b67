//! The aimlapi video protocol: `POST`/`GET /v2/video/generations` with Bearer auth, the
//! gateway's error envelope, the correlation headers (`X-Client-Request-Id`,
//! `x-inference-id`) and its answers to the gate's refusals (403 no credits, 429, 5xx).
//! aimlapi has no protocol state of its own: its generations are the shared core's.
//! The handlers are in `routes`, the submit body's schema in `validate`.

mod routes;
mod validate;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::gate::{self, Fault, Protocol};
use crate::state::SimState;

const GENERATIONS_PATH: &str = "/v2/video/generations";

const MSG_401: &str = "This request requires a valid API key. You can create a new API key \
                       on the Billing page: https://aimlapi.com/app/keys";
const MSG_403: &str = "You've run out of credits. Please top up your balance or update your \
                       payment method to continue: https://aimlapi.com/app/billing/";

/// The aimlapi routes.
pub(crate) fn routes() -> Router<SimState> {
    Router::new().route(GENERATIONS_PATH, get(routes::poll).post(routes::submit))
}

/// The aimlapi protocol at the gate: Bearer keys, answers in the error envelope.
#[derive(Debug)]
struct Aimlapi;

impl Protocol for Aimlapi {
    const NAME: &'static str = "aimlapi";
    const POLL_5XX: &'static [StatusCode] = &[
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
    ];
    type Denied = ();

    fn authenticate(api_keys: &[String], headers: &HeaderMap) -> Result<String, ()> {
        let key = gate::credential(headers, "bearer").ok_or(())?;
        gate::plain_key(api_keys, key).ok_or(())
    }

    fn unauthorized((): ()) -> Response {
        envelope(StatusCode::UNAUTHORIZED, MSG_401, GENERATIONS_PATH)
    }

    fn refuse(fault: Fault) -> Response {
        match fault {
            Fault::TooManyRequests { retry_after } => gate::retry_after(
                envelope(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too Many Requests",
                    GENERATIONS_PATH,
                ),
                retry_after,
            ),
            Fault::Server(status) => envelope(status, server_message(status), GENERATIONS_PATH),
            Fault::NoCredits { .. } => envelope(StatusCode::FORBIDDEN, MSG_403, GENERATIONS_PATH),
        }
    }
}

/// aimlapi's error envelope (`statusCode` is a string, as in the docs' example).
pub(crate) fn envelope(status: StatusCode, message: &str, path: &str) -> Response {
    let body = json!({
        "message": message,
        "path": path,
        "requestId": uuid::Uuid::new_v4().to_string(),
        "statusCode": status.as_u16().to_string(),
        "timestamp": iso8601(SystemTime::now()),
    });
    (status, axum::Json(body)).into_response()
}

fn server_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        502 => "Bad Gateway",
        503 => "Service unavailable",
        504 => "Generation timeout",
        _ => "Internal server error",
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01, counting in 400-year eras from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The `X-Client-Request-Id` if valid (1–128 of `[A-Za-z0-9._:-]`); invalid ones are dropped.
fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("x-client-request-id")?.to_str().ok()?;
    let ok = (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    ok.then(|| v.to_owned())
}

/// Adds the correlation headers: the generation's id, the client's request id.
fn with_headers(
    mut resp: Response,
    inference_id: Option<&str>,
    client_id: Option<&str>,
) -> Response {
    let h = resp.headers_mut();
    if let Some(v) = inference_id.and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert("x-inference-id", v);
    }
    if let Some(v) = client_id.and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert("x-client-request-id", v);
    }
    resp
}

#[cfg(test)]
mod unit {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_iso8601_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_741_677_207_813);
        assert_eq!(iso8601(t), "2025-03-11T07:13:27.813Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn client_ids_follow_the_documented_charset() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-client-request-id",
            HeaderValue::from_static("batch_1.00001:a-b"),
        );
        assert_eq!(client_request_id(&h).as_deref(), Some("batch_1.00001:a-b"));
        h.insert("x-client-request-id", HeaderValue::from_static("has space"));
        assert_eq!(client_request_id(&h), None);
        let long = "a".repeat(129);
        h.insert("x-client-request-id", HeaderValue::from_str(&long).unwrap());
        assert_eq!(client_request_id(&h), None);
    }
}
