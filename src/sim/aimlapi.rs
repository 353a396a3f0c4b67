//! The aimlapi video protocol: `POST`/`GET /v2/video/generations`, Bearer auth, the
//! error envelope, correlation headers, per-key rate/concurrency limits and the injected
//! 403/429/5xx failures.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::limits::RequestKind;
use super::media::token_for;
use super::state::{SimState, View};
use super::validate::validate;

pub(crate) const GENERATIONS_PATH: &str = "/v2/video/generations";

const MSG_401: &str = "This request requires a valid API key. You can create a new API key \
                       on the Billing page: https://aimlapi.com/app/keys";
const MSG_403: &str = "You've run out of credits. Please top up your balance or update your \
                       payment method to continue: https://aimlapi.com/app/billing/";

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

/// The request's Bearer key when it is accepted, `None` when the request is unauthorized.
fn api_key(state: &SimState, headers: &HeaderMap) -> Option<String> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| !key.is_empty())?;
    let keys = &state.lock().knobs.api_keys;
    (keys.is_empty() || keys.iter().any(|k| k == key)).then(|| key.to_owned())
}

/// The key's token bucket: a 429 response when it has no token left.
fn rate_gate(state: &SimState, key: &str) -> Option<Response> {
    let retry_after = {
        let mut guard = state.lock();
        let inner = &mut *guard;
        if inner.limits.take_token(key, Instant::now(), &inner.knobs) {
            return None;
        }
        inner.stats.rate_limited_total += 1;
        inner.knobs.retry_after_secs
    };
    tracing::debug!("sim: request over the per-key rate limit");
    Some(injected_response(
        Injected::TooMany(retry_after),
        GENERATIONS_PATH,
    ))
}

/// A failure injected before the request is handled, as the gateway would answer it.
enum Injected {
    TooMany(Option<u64>),
    Server(StatusCode),
    NoCredits,
}

fn injected_response(inj: Injected, path: &str) -> Response {
    match inj {
        Injected::TooMany(retry_after) => {
            let mut r = envelope(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", path);
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
        Injected::Server(status) => envelope(status, server_message(status), path),
        Injected::NoCredits => envelope(StatusCode::FORBIDDEN, MSG_403, path),
    }
}

fn server_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        502 => "Bad Gateway",
        503 => "Service unavailable",
        504 => "Generation timeout",
        _ => "Internal server error",
    }
}

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

fn unauthorized(state: &SimState) -> Response {
    state.count(|s| s.unauthorized_total += 1);
    envelope(StatusCode::UNAUTHORIZED, MSG_401, GENERATIONS_PATH)
}

/// `POST /v2/video/generations`.
pub(crate) async fn submit(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrival = SystemTime::now();
    let client_id = client_request_id(&headers);
    let cid = client_id.as_deref();
    let Some(key) = api_key(&state, &headers) else {
        return with_headers(unauthorized(&state), None, cid);
    };
    let resp = submit_authorized(&state, &key, cid, &body);
    state.record_request(arrival, RequestKind::Submit, resp.status().as_u16());
    resp
}

/// Order: per-key rate limit, injected 429/503/403, body validation, then (under one lock,
/// so concurrent submits cannot overshoot) the per-key in-flight cap and creation.
fn submit_authorized(state: &SimState, key: &str, cid: Option<&str>, body: &[u8]) -> Response {
    if let Some(resp) = rate_gate(state, key) {
        return with_headers(resp, None, cid);
    }
    let injected = {
        let mut inner = state.lock();
        let k = inner.knobs.clone();
        if inner.chance(k.submit_429_rate) {
            inner.stats.rate_limited_total += 1;
            Some(Injected::TooMany(k.retry_after_secs))
        } else if inner.chance(k.submit_5xx_rate) {
            inner.stats.server_errors_total += 1;
            Some(Injected::Server(StatusCode::SERVICE_UNAVAILABLE))
        } else if k.no_credits {
            inner.stats.forbidden_total += 1;
            Some(Injected::NoCredits)
        } else {
            None
        }
    };
    if let Some(inj) = injected {
        return with_headers(injected_response(inj, GENERATIONS_PATH), None, cid);
    }

    let new = match validate(body) {
        Ok(new) => new,
        Err(lines) => {
            state.count(|s| s.validation_errors_total += 1);
            let msg = format!("Body validation error!\n{}", lines.join("\n"));
            let resp = envelope(StatusCode::BAD_REQUEST, &msg, GENERATIONS_PATH);
            return with_headers(resp, None, cid);
        }
    };

    let created = {
        let mut inner = state.lock();
        let now = Instant::now();
        let cap = inner.knobs.max_in_flight.map(u64::from);
        if cap.is_some_and(|cap| inner.limits.in_flight(key, now) >= cap) {
            inner.stats.rate_limited_total += 1;
            inner.stats.concurrency_limited_total += 1;
            Err(inner.knobs.retry_after_secs)
        } else {
            let id = inner.create(&new, Some(key), cid, now);
            let rate = inner.knobs.submit_lost_response_rate;
            let lost = inner.chance(rate);
            if lost {
                inner.stats.server_errors_total += 1;
            }
            Ok((id, lost))
        }
    };
    let (id, lost) = match created {
        Ok(created) => created,
        Err(retry_after) => {
            tracing::debug!("sim: submit over the per-key concurrency limit");
            let resp = injected_response(Injected::TooMany(retry_after), GENERATIONS_PATH);
            return with_headers(resp, None, cid);
        }
    };
    tracing::debug!(generation_id = %id, client_request_id = ?cid, lost, "sim: generation created");
    let resp = if lost {
        injected_response(
            Injected::Server(StatusCode::GATEWAY_TIMEOUT),
            GENERATIONS_PATH,
        )
    } else {
        let mut r = axum::Json(json!({"id": id, "status": "queued"})).into_response();
        r.headers_mut()
            .insert("x-aimlapi-credits-used", HeaderValue::from_static("0"));
        r.headers_mut()
            .insert("x-aimlapi-usd-spent", HeaderValue::from_static("0"));
        r
    };
    with_headers(resp, Some(&id), cid)
}

/// `GET /v2/video/generations?generation_id=<id>`.
pub(crate) async fn poll(
    State(state): State<SimState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let arrival = SystemTime::now();
    let client_id = client_request_id(&headers);
    let cid = client_id.as_deref();
    let Some(key) = api_key(&state, &headers) else {
        return with_headers(unauthorized(&state), None, cid);
    };
    state.count(|s| s.polls_total += 1);
    let resp = poll_authorized(&state, &key, cid, query.as_deref(), &headers);
    state.record_request(arrival, RequestKind::Poll, resp.status().as_u16());
    resp
}

/// Order: per-key rate limit, injected 429/5xx, query validation, then the lookup.
fn poll_authorized(
    state: &SimState,
    key: &str,
    cid: Option<&str>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    if let Some(resp) = rate_gate(state, key) {
        return with_headers(resp, None, cid);
    }
    let injected = {
        let mut inner = state.lock();
        let k = inner.knobs.clone();
        if inner.chance(k.poll_429_rate) {
            inner.stats.rate_limited_total += 1;
            Some(Injected::TooMany(k.retry_after_secs))
        } else if inner.chance(k.poll_5xx_rate) {
            inner.stats.server_errors_total += 1;
            let status = [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
            ][inner.pick(3)];
            Some(Injected::Server(status))
        } else {
            None
        }
    };
    if let Some(inj) = injected {
        return with_headers(injected_response(inj, GENERATIONS_PATH), None, cid);
    }

    let id = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "generation_id")
            .map(|(_, v)| v.into_owned())
    });
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        state.count(|s| s.validation_errors_total += 1);
        let msg = "Query validation error!\ngeneration_id: Required";
        return with_headers(
            envelope(StatusCode::BAD_REQUEST, msg, GENERATIONS_PATH),
            None,
            cid,
        );
    };
    // A malformed id (not `<uuid>:<model>`) gets no x-inference-id header.
    let well_formed = id
        .split_once(':')
        .is_some_and(|(u, m)| uuid::Uuid::parse_str(u).is_ok() && !m.is_empty());
    let header_id = well_formed.then_some(id.as_str());

    let view = state.lock().view(&id, Instant::now());
    let Some(view) = view else {
        let resp = envelope(
            StatusCode::NOT_FOUND,
            "Generation not found",
            GENERATIONS_PATH,
        );
        return with_headers(resp, header_id, cid);
    };
    let (status, video, error, credits) = match view {
        View::Queued => ("queued", Value::Null, Value::Null, 0),
        View::Generating => ("generating", Value::Null, Value::Null, 0),
        View::Completed { credits, .. } => {
            let url = format!(
                "{}/sim/files/{}.mp4",
                base_url(state, headers),
                token_for(&id)
            );
            ("completed", json!({ "url": url }), Value::Null, credits)
        }
        View::Failed(err) => ("error", Value::Null, err, 0),
        // aimlapi has no cancel; a cancelled generation can only come from elsewhere.
        View::Cancelled => ("error", Value::Null, json!({"message": "cancelled"}), 0),
    };
    let body = json!({
        "id": id,
        "status": status,
        "video": video,
        "error": error,
        "meta": {"usage": {"credits_used": credits}},
    });
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert("x-aimlapi-credits-used", HeaderValue::from_static("0"));
    resp.headers_mut()
        .insert("x-aimlapi-usd-spent", HeaderValue::from_static("0"));
    with_headers(resp, header_id, cid)
}

/// `http://<Host>` as the client addressed us, so output URLs work for any bind address.
fn base_url(state: &SimState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .or_else(|| state.lock().bound.map(|a| a.to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    format!("http://{host}")
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
