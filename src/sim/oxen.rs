//! The Oxen.ai async queue in the simulator: `POST /api/ai/queue` (enqueue; only the model,
//! `num_generations`, auth and credits are checked there), `GET /api/ai/queue` (list),
//! `GET`/`DELETE /api/ai/queue/{id}` (poll, cancel), Oxen's error envelopes, and model
//! parameters validated only when the generation runs (→ `failed` + `error_message`).
//! The SSE stream `GET /api/events` lives in `oxen_events.rs`.

#[path = "oxen_events.rs"]
mod events;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::limits::RequestKind;
use super::media::token_for;
use super::state::{Inner, NewGeneration, SimState, View};
use crate::model::ModelKind;

/// The only Kling O1 video-to-video model Oxen hosts (there is no O1 v2v reference model).
pub(crate) const MODEL: &str = "kling-video-o1-video-to-video-edit";
const PROVIDER: &str = "oxen";
const QUEUE_PATH: &str = "/api/ai/queue";
/// Params echoed on a poll (the input video is not: it may be a large data URI).
const ECHOED: &[&str] = &[
    "input_image",
    "elements",
    "response_format",
    "target_namespace",
];

/// Per-protocol state kept inside the simulator's one lock.
#[derive(Debug, Default)]
pub(crate) struct OxenState {
    gens: HashMap<String, OxenGen>,
    /// Unsettled generations and the completion events for SSE subscribers.
    events: events::Journal,
}

/// What Oxen keeps of one generation beyond the shared core's schedule and fate.
#[derive(Debug, Clone)]
struct OxenGen {
    /// The API key (user) it belongs to; other users get 404.
    key: String,
    prompt: String,
    /// Echoed request params, with Oxen's defaults applied.
    echo: Map<String, Value>,
    enqueued_at: u64,
    /// Unix seconds when first seen running / terminal.
    started_at: Option<u64>,
    completed_at: Option<u64>,
    /// A model-parameter error found when the job "runs": the generation fails with it.
    late_error: Option<String>,
}

/// The oxen routes.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route(QUEUE_PATH, post(submit).get(list))
        .route("/api/ai/queue/{id}", get(poll).delete(cancel))
        .route("/api/events", get(events::subscribe))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Unix seconds of `at`, given that `now` is `now_sys`.
fn unix_of(at: Instant, now: Instant, now_sys: SystemTime) -> u64 {
    unix_secs(now_sys).saturating_sub(now.saturating_duration_since(at).as_secs())
}

/// Oxen's typed error envelope.
fn envelope(status: StatusCode, kind: &str, title: &str, detail: &str) -> Response {
    let body = json!({
        "error": {"type": kind, "title": title, "detail": detail},
        "status": "error",
        "status_message": kind,
    });
    (status, axum::Json(body)).into_response()
}

fn not_found() -> Response {
    let body = json!({
        "error": {"type": "resource_not_found",
                  "title": "The requested resource could not be found"},
        "status": "error",
        "status_message": "resource_not_found",
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn invalid(detail: &str) -> Response {
    envelope(
        StatusCode::BAD_REQUEST,
        "invalid_params",
        "Invalid params",
        detail,
    )
}

/// ASSUMPTION: Oxen documents no video rate limits; a 429 uses the typed envelope.
fn too_many(retry_after: Option<u64>) -> Response {
    let mut r = envelope(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too Many Requests",
        "Too many requests, please slow down",
    );
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn server_error(status: StatusCode) -> Response {
    let title = status.canonical_reason().unwrap_or("Server error");
    envelope(status, "unknown_error", title, "An unknown error occurred")
}

/// The request's Bearer key when accepted (any non-empty key when `api_keys` is empty);
/// `None` (counted) when the request is unauthorized.
fn authorize(state: &SimState, headers: &HeaderMap) -> Option<String> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().to_owned())
        .filter(|key| !key.is_empty());
    let mut inner = state.lock();
    let keys = &inner.knobs.api_keys;
    match key {
        Some(k) if keys.is_empty() || keys.contains(&k) => Some(k),
        _ => {
            inner.stats.unauthorized_total += 1;
            inner.counters(PROVIDER).unauthorized_total += 1;
            None
        }
    }
}

/// Oxen's 401.
fn unauthorized() -> Response {
    envelope(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Unauthenticated",
        "A valid API key is required: Authorization: Bearer <key>",
    )
}

/// A submit's injected 5xx: refused at the gateway, so nothing was created.
const SUBMIT_5XX: &[StatusCode] = &[StatusCode::SERVICE_UNAVAILABLE];
/// A poll's injected 5xx.
const POLL_5XX: &[StatusCode] = &[
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
];

/// The per-key token bucket, then the injected 429 and 5xx rates; `None` = go ahead.
fn gate(
    state: &SimState,
    key: &str,
    rate_429: f64,
    rate_5xx: f64,
    statuses: &[StatusCode],
) -> Option<Response> {
    let mut guard = state.lock();
    let inner = &mut *guard;
    let retry_after = inner.knobs.retry_after_secs;
    let limited = !inner.limits.take_token(key, Instant::now(), &inner.knobs);
    if limited || inner.chance(rate_429) {
        inner.stats.rate_limited_total += 1;
        inner.counters(PROVIDER).rate_limited_total += 1;
        return Some(too_many(retry_after));
    }
    if inner.chance(rate_5xx) {
        inner.stats.server_errors_total += 1;
        inner.counters(PROVIDER).server_errors_total += 1;
        let status = statuses[inner.pick(statuses.len())];
        return Some(server_error(status));
    }
    None
}

fn count_validation(state: &SimState) {
    let mut inner = state.lock();
    inner.stats.validation_errors_total += 1;
    inner.counters(PROVIDER).validation_errors_total += 1;
}

/// `POST /api/ai/queue`.
async fn submit(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let arrival = SystemTime::now();
    let Some(key) = authorize(&state, &headers) else {
        return unauthorized();
    };
    let resp = submit_authorized(&state, &key, &body);
    state.record_request(arrival, RequestKind::Submit, resp.status().as_u16());
    resp
}

fn submit_authorized(state: &SimState, key: &str, body: &[u8]) -> Response {
    let (r429, r5xx) = {
        let k = &state.lock().knobs;
        (k.submit_429_rate, k.submit_5xx_rate)
    };
    if let Some(resp) = gate(state, key, r429, r5xx, SUBMIT_5XX) {
        return resp;
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        count_validation(state);
        return invalid("The request body must be a JSON object");
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.as_str(),
        _ => {
            count_validation(state);
            return invalid("model is required");
        }
    };
    if model != MODEL {
        // ASSUMPTION: "Model not found" is a 404 in the short envelope.
        count_validation(state);
        let body = json!({"error": {"message": format!("Model not found: {model}")}});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    let n = match obj.get("num_generations") {
        None => 1,
        Some(v) => match v.as_u64().filter(|n| (1..=4).contains(n)) {
            Some(n) => n,
            None => {
                count_validation(state);
                return invalid("num_generations must be an integer between 1 and 4");
            }
        },
    };
    let (refs, late_error) = late_check(&obj);
    let prompt = obj.get("prompt").and_then(Value::as_str).unwrap_or("");
    let video = obj.get("input_video").and_then(Value::as_str).unwrap_or("");
    let dedupe = hex::encode(Sha256::digest(format!("{prompt}\u{0}{video}")));
    let mut echo: Map<String, Value> = ECHOED
        .iter()
        .filter_map(|k| obj.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let keep_audio = obj.get("keep_audio").cloned().unwrap_or(Value::Bool(true));
    echo.insert("keep_audio".into(), keep_audio);

    let mut inner = state.lock();
    if inner.knobs.no_credits {
        // ASSUMPTION: the enqueue credit check answers 402 with Oxen's message.
        return envelope(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_credits",
            "Insufficient credits",
            "Insufficient credits",
        );
    }
    let now = Instant::now();
    let cap = inner.knobs.max_in_flight.map(u64::from);
    if cap.is_some_and(|cap| inner.limits.in_flight(key, now) + n > cap) {
        inner.stats.rate_limited_total += 1;
        inner.stats.concurrency_limited_total += 1;
        inner.counters(PROVIDER).rate_limited_total += 1;
        let retry_after = inner.knobs.retry_after_secs;
        return too_many(retry_after);
    }
    let new = NewGeneration {
        model: ModelKind::Edit,
        prompt: prompt.to_owned(),
        // A late parameter error must end `failed`: the core fails any generation with
        // more than 4 references, which gives it a failing fate (the message is ours).
        refs: if late_error.is_some() {
            refs.max(5)
        } else {
            refs
        },
        duration: None,
    };
    let enqueued_at = unix_secs(SystemTime::now());
    let mut out = Vec::new();
    for _ in 0..n {
        let id = inner.new_uuid().to_string();
        let id = inner.create_as(PROVIDER, id, &new, Some(key), Some(&dedupe), now);
        let gen = OxenGen {
            key: key.to_owned(),
            prompt: prompt.to_owned(),
            echo: echo.clone(),
            enqueued_at,
            started_at: None,
            completed_at: None,
            late_error: late_error.clone(),
        };
        inner.oxen.gens.insert(id.clone(), gen);
        inner.oxen.events.open(&id);
        out.push(json!({"generation_id": id, "status": "queued"}));
    }
    let lost_rate = inner.knobs.submit_lost_response_rate;
    if inner.chance(lost_rate) {
        inner.stats.server_errors_total += 1;
        inner.counters(PROVIDER).server_errors_total += 1;
        return server_error(StatusCode::GATEWAY_TIMEOUT);
    }
    drop(inner);
    tracing::debug!(generations = ?out, "sim: oxen generation enqueued");
    axum::Json(json!({ "generations": out })).into_response()
}

/// Model parameters as the job would check them when it runs: the number of image +
/// element references, and the `error_message` the generation will fail with, if any.
/// ASSUMPTION: the message follows the sync endpoint's documented form.
fn late_check(obj: &Map<String, Value>) -> (usize, Option<String>) {
    let mut errs = Vec::new();
    let is_url = |v: &Value, media: &str| {
        v.as_str().is_some_and(|s| {
            s.starts_with("https://")
                || s.starts_with("http://")
                || s.starts_with(&format!("data:{media}/"))
        })
    };
    match obj.get("prompt").and_then(Value::as_str) {
        Some(p) if !p.trim().is_empty() => {}
        _ => errs.push("prompt: field required".to_owned()),
    }
    match obj.get("input_video") {
        None | Some(Value::Null) => errs.push("input_video: field required".to_owned()),
        Some(v) if !is_url(v, "video") => errs.push("input_video: invalid video URL".to_owned()),
        Some(_) => {}
    }
    let list = |k: &str| obj.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    if let Some(v) = obj.get("input_image") {
        match v.as_array() {
            Some(items) if items.iter().all(|i| is_url(i, "image")) => {}
            _ => errs.push("input_image: must be a list of image URLs".to_owned()),
        }
    }
    if let Some(v) = obj.get("elements") {
        match v.as_array() {
            Some(items) => {
                for (i, e) in items.iter().enumerate() {
                    if !e
                        .get("frontal_image_url")
                        .is_some_and(|u| is_url(u, "image"))
                    {
                        errs.push(format!("elements.{i}.frontal_image_url: field required"));
                    }
                    let refs = e.get("reference_image_urls");
                    let ok = match refs {
                        None | Some(Value::Null) => true,
                        Some(Value::Array(r)) => {
                            r.len() <= 3 && r.iter().all(|u| is_url(u, "image"))
                        }
                        Some(_) => false,
                    };
                    if !ok {
                        errs.push(format!(
                            "elements.{i}.reference_image_urls: at most 3 image URLs"
                        ));
                    }
                }
            }
            None => errs.push("elements: must be a list".to_owned()),
        }
    }
    let refs = list("input_image") + list("elements");
    if refs > 4 {
        errs.push(
            "The total number of images and elements must not exceed 4 when a video is \
             provided"
                .to_owned(),
        );
    }
    if obj.get("keep_audio").is_some_and(|v| !v.is_boolean()) {
        errs.push("keep_audio: value is not a valid boolean".to_owned());
    }
    if let Some(f) = obj.get("response_format") {
        if !matches!(f.as_str(), Some("url" | "b64_json")) {
            errs.push("response_format: must be 'url' or 'b64_json'".to_owned());
        }
    }
    let msg = (!errs.is_empty()).then(|| {
        format!(
            "Getting model response error: 422 - Value error, {}",
            errs.join("; ")
        )
    });
    (refs, msg)
}

/// A readable message from the core's failure body (`{name,message}` or `{detail:[…]}`).
fn core_message(v: &Value) -> String {
    if let Some(m) = v.get("message").and_then(Value::as_str) {
        return m.to_owned();
    }
    let msgs: Vec<&str> = v
        .get("detail")
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(|i| i.get("msg")?.as_str()).collect())
        .unwrap_or_default();
    if msgs.is_empty() {
        "Generation failed".to_owned()
    } else {
        msgs.join("; ")
    }
}

/// The `error_message` of a failed generation: its late parameter error, else the core's.
fn failure_message(g: &OxenGen, body: &Value) -> String {
    g.late_error.clone().unwrap_or_else(|| core_message(body))
}

/// The generation's view now (updating its timestamps and the SSE journal), when it
/// exists and belongs to `key`.
fn observe_owned(inner: &mut Inner, id: &str, key: &str) -> Option<(View, OxenGen)> {
    if inner.oxen.gens.get(id).is_none_or(|g| g.key != key) {
        return None;
    }
    let view = events::observe(inner, id, Instant::now(), SystemTime::now())?;
    Some((view, inner.oxen.gens.get(id)?.clone()))
}

/// The queue row as `GET /api/ai/queue/{id}` returns it.
fn row(id: &str, view: &View, g: &OxenGen, base: &str) -> Value {
    let (status, result_url, error) = match view {
        View::Queued => ("queued", None, None),
        View::Generating => ("processing", None, None),
        View::Cancelled => ("cancelled", None, None),
        View::Completed { .. } => ("succeeded", Some(output_url(base, id)), None),
        View::Failed(body) => ("failed", None, Some(failure_message(g, body))),
    };
    let mut v = json!({
        "generation_id": id,
        "model_name": MODEL,
        "prompt": g.prompt,
        "media_type": "video",
        "status": status,
        "result_url": result_url,
        "error_message": error,
        "enqueued_at": g.enqueued_at,
        "started_at": g.started_at,
        "completed_at": g.completed_at,
    });
    if let Value::Object(m) = &mut v {
        m.extend(g.echo.clone());
    }
    v
}

fn output_url(base: &str, id: &str) -> String {
    format!("{base}/sim/files/{}.mp4", token_for(id))
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

/// `GET /api/ai/queue/{id}`.
async fn poll(
    State(state): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let arrival = SystemTime::now();
    let Some(key) = authorize(&state, &headers) else {
        return unauthorized();
    };
    let (r429, r5xx) = {
        let mut inner = state.lock();
        inner.stats.polls_total += 1;
        inner.counters(PROVIDER).polls_total += 1;
        (inner.knobs.poll_429_rate, inner.knobs.poll_5xx_rate)
    };
    let resp = match gate(&state, &key, r429, r5xx, POLL_5XX) {
        Some(r) => r,
        None => {
            let base = base_url(&state, &headers);
            let found = observe_owned(&mut state.lock(), &id, &key);
            match found {
                Some((view, g)) => axum::Json(row(&id, &view, &g, &base)).into_response(),
                None => not_found(),
            }
        }
    };
    state.record_request(arrival, RequestKind::Poll, resp.status().as_u16());
    resp
}

/// `DELETE /api/ai/queue/{id}`: cancels a queued or running generation (a no-op on a
/// terminal one). A cancelled generation sends no SSE event.
async fn cancel(
    State(state): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(key) = authorize(&state, &headers) else {
        return unauthorized();
    };
    let mut inner = state.lock();
    if observe_owned(&mut inner, &id, &key).is_none() {
        return not_found();
    }
    inner.counters(PROVIDER).cancels_total += 1;
    if let Some(View::Cancelled) = inner.cancel(&id, true, Instant::now()) {
        // Settles it in the journal as cancelled: no event will ever be sent for it.
        events::observe(&mut inner, &id, Instant::now(), SystemTime::now());
    }
    drop(inner);
    axum::Json(json!({"status": "success", "generation_id": id})).into_response()
}

/// `GET /api/ai/queue?status=&model=`: the caller's rows; without `status` only active
/// (`queued`/`processing`) ones. The reconciliation path for an ambiguous enqueue.
async fn list(
    State(state): State<SimState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(key) = authorize(&state, &headers) else {
        return unauthorized();
    };
    let base = base_url(&state, &headers);
    let wanted: Vec<&str> = match q.get("status").filter(|s| !s.is_empty()) {
        Some(s) => s.split(',').map(str::trim).collect(),
        None => vec!["queued", "processing"],
    };
    let model_ok = q.get("model").is_none_or(|m| m.is_empty() || m == MODEL);
    let mut inner = state.lock();
    let mut ids: Vec<(u64, String)> = inner
        .oxen
        .gens
        .iter()
        .filter(|(_, g)| model_ok && g.key == key)
        .map(|(id, g)| (g.enqueued_at, id.clone()))
        .collect();
    ids.sort();
    let mut rows = Vec::new();
    for (_, id) in ids {
        if let Some((view, g)) = observe_owned(&mut inner, &id, &key) {
            let r = row(&id, &view, &g, &base);
            if r["status"].as_str().is_some_and(|s| wanted.contains(&s)) {
                rows.push(r);
            }
        }
    }
    drop(inner);
    axum::Json(json!({"count": rows.len(), "generations": rows})).into_response()
}

#[cfg(test)]
#[path = "oxen_tests.rs"]
mod tests;
