//! aimlapi's two endpoints: the submit (validated body, per-key concurrency cap, creation
//! in the shared core, lost responses) and the poll (the generation's status, its output
//! URL once completed). Both pass the gate first.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::time::Instant;

use super::validate::validate;
use super::{client_request_id, envelope, with_headers, Aimlapi, GENERATIONS_PATH};
use crate::gate::{self, Call, Fault, Protocol};
use crate::media::{base_url, output_url};
use crate::state::{NewGeneration, SimState, View};

/// `POST /v2/video/generations`. After the gate, under one lock (so that concurrent
/// submits cannot overshoot): the per-key in-flight cap, then the creation.
pub(super) async fn submit(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client_id = client_request_id(&headers);
    let cid = client_id.as_deref();
    let knobs = state.knobs();
    let (delay, strict) = (knobs.submit_response_delay, knobs.aimlapi_strict_keys);
    let resp = gate::serve::<Aimlapi, _>(
        &state,
        &headers,
        Call::SUBMIT,
        || {
            validate(&body, strict).map_err(|lines| {
                let msg = format!("Body validation error!\n{}", lines.join("\n"));
                Box::new(envelope(StatusCode::BAD_REQUEST, &msg, GENERATIONS_PATH))
            })
        },
        |key, new| create(&state, key, cid, &new),
    );
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    with_headers(resp, None, cid)
}

fn create(state: &SimState, key: &str, cid: Option<&str>, new: &NewGeneration) -> Response {
    let created = {
        let mut inner = state.lock();
        let now = Instant::now();
        let cap = inner.knobs.max_in_flight.map(u64::from);
        if cap.is_some_and(|cap| inner.limits.in_flight(key, now) >= cap) {
            inner.count_refused(Aimlapi::NAME, StatusCode::TOO_MANY_REQUESTS);
            inner.stats.concurrency_limited_total += 1;
            Err(inner.knobs.retry_after_secs)
        } else {
            let id = inner.create(new, Some(key), cid, now);
            let rate = inner.knobs.submit_lost_response_rate;
            let lost = inner.chance(rate);
            if lost {
                inner.count_refused(Aimlapi::NAME, StatusCode::GATEWAY_TIMEOUT);
            }
            Ok((id, lost))
        }
    };
    let (id, lost) = match created {
        Ok(created) => created,
        Err(retry_after) => {
            tracing::debug!("sim: submit over the per-key concurrency limit");
            return Aimlapi::refuse(Fault::TooManyRequests { retry_after });
        }
    };
    tracing::debug!(generation_id = %id, client_request_id = ?cid, lost, "sim: generation created");
    let resp = if lost {
        Aimlapi::refuse(Fault::Server(StatusCode::GATEWAY_TIMEOUT))
    } else {
        with_usage(axum::Json(json!({"id": id, "status": "queued"})).into_response())
    };
    with_headers(resp, Some(&id), None)
}

/// `GET /v2/video/generations?generation_id=<id>`. The gate's validation step is the
/// query's: `generation_id` is required.
pub(super) async fn poll(
    State(state): State<SimState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let client_id = client_request_id(&headers);
    let resp = gate::serve::<Aimlapi, _>(
        &state,
        &headers,
        Call::POLL,
        || {
            generation_id(query.as_deref()).ok_or_else(|| {
                let msg = "Query validation error!\ngeneration_id: Required";
                Box::new(envelope(StatusCode::BAD_REQUEST, msg, GENERATIONS_PATH))
            })
        },
        |_key, id| status(&state, &headers, &id),
    );
    with_headers(resp, None, client_id.as_deref())
}

/// The non-empty `generation_id` of the query string.
fn generation_id(query: Option<&str>) -> Option<String> {
    let q = query?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "generation_id")
        .map(|(_, v)| v.into_owned())
        .filter(|id| !id.is_empty())
}

/// The generation's status as a poll answers it.
fn status(state: &SimState, headers: &HeaderMap, id: &str) -> Response {
    // A malformed id (not `<uuid>:<model>`) gets no x-inference-id header.
    let well_formed = id
        .split_once(':')
        .is_some_and(|(u, m)| uuid::Uuid::parse_str(u).is_ok() && !m.is_empty());
    let header_id = well_formed.then_some(id);

    let view = {
        let mut inner = state.lock();
        let now = Instant::now();
        let view = inner.view(id, now);
        inner.note_poll(id, now);
        view
    };
    let Some(view) = view else {
        let resp = envelope(
            StatusCode::NOT_FOUND,
            "Generation not found",
            GENERATIONS_PATH,
        );
        return with_headers(resp, header_id, None);
    };
    let (status, video, error, credits) = match view {
        View::Queued => ("queued", Value::Null, Value::Null, 0),
        View::Generating => ("generating", Value::Null, Value::Null, 0),
        View::Completed { credits, .. } => {
            let base = state.knobs().output_base;
            let base = base.unwrap_or_else(|| base_url(state, headers));
            let url = output_url(base.trim_end_matches('/'), id);
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
    with_headers(
        with_usage(axum::Json(body).into_response()),
        header_id,
        None,
    )
}

/// The usage headers of a successful answer (the simulator charges nothing).
fn with_usage(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("x-aimlapi-credits-used", HeaderValue::from_static("0"));
    h.insert("x-aimlapi-usd-spent", HeaderValue::from_static("0"));
    resp
}
