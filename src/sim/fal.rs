//! The fal.ai queue protocol: `POST /fal-ai/kling-video/o1/[standard/]video-to-video/{edit,
//! reference}` with `Authorization: Key …`, answered with a `request_id` and status, result
//! and cancel URLs under `/fal-ai/kling-video/requests/{id}` (no model sub-path). Status is
//! HTTP 202 while `IN_QUEUE`/`IN_PROGRESS` and 200 once `COMPLETED`, success or failure;
//! the result fetch decides (`{"video":{…}}` or 422 `{"detail":[…]}`), and may answer 504
//! for a finished job (`result_504_rate`). Cancel is best effort. Over `max_in_flight` a
//! request is never rejected: it waits `IN_QUEUE` and reaches the shared core (so the
//! counters) only when its key has a free slot. Schema errors are 422 at submit.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::time::{Instant, SystemTime};

use super::limits::RequestKind;
use super::media::{output_bytes, token_for};
use super::state::{Inner, NewGeneration, View};
use super::SimState;
use crate::model::ModelKind;

const PROVIDER: &str = "fal";
/// The `owner/app` prefix of every status, result and cancel URL.
const REQUESTS: &str = "/fal-ai/kling-video/requests";
const DURATIONS: &[&str] = &["3", "4", "5", "6", "7", "8", "9", "10"];
const ASPECT_RATIOS: &[&str] = &["auto", "16:9", "9:16", "1:1"];

/// Per-protocol state kept inside the simulator's one lock.
#[derive(Debug, Default)]
pub(crate) struct FalState {
    requests: HashMap<String, FalRequest>,
    /// Held requests (over their key's `max_in_flight`), oldest first.
    waiting: VecDeque<String>,
}

#[derive(Debug)]
struct FalRequest {
    key: String,
    /// While held in fal's queue: the generation to create and its dedupe key.
    held: Option<(NewGeneration, String)>,
    /// Cancelled while held: it never reached a runner.
    removed: bool,
}

/// Where a request stands, as the status endpoint reports it.
enum Phase {
    Queued(usize),
    Running,
    Done(Option<View>),
}

/// The fal routes.
pub(crate) fn routes() -> Router<SimState> {
    let mut r = Router::new();
    for (tier, model) in [
        ("", ModelKind::Edit),
        ("", ModelKind::Reference),
        ("standard/", ModelKind::Edit),
        ("standard/", ModelKind::Reference),
    ] {
        let path = format!("/fal-ai/kling-video/o1/{tier}video-to-video/{model}");
        r = r.route(
            &path,
            post(move |s: State<SimState>, h: HeaderMap, b: Bytes| submit(s, h, b, model)),
        );
    }
    r.route(&format!("{REQUESTS}/{{id}}/status"), get(status))
        .route(&format!("{REQUESTS}/{{id}}"), get(result))
        .route(&format!("{REQUESTS}/{{id}}/cancel"), put(cancel))
}

fn detail(status: StatusCode, detail: Value) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

/// The `Key` credential when accepted; a Bearer token or an unknown key is refused.
fn api_key(state: &SimState, headers: &HeaderMap) -> Option<String> {
    let key = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("key"))
        .map(|(_, key)| key.trim().to_owned())
        .filter(|key| !key.is_empty())?;
    let keys = &state.lock().knobs.api_keys;
    (keys.is_empty() || keys.contains(&key)).then_some(key)
}

fn unauthorized(state: &SimState) -> Response {
    let mut inner = state.lock();
    inner.stats.unauthorized_total += 1;
    inner.counters(PROVIDER).unauthorized_total += 1;
    // ASSUMPTION: fal's exact 401 wording is not in the reference.
    let msg = "Authentication is required to access this application.";
    detail(StatusCode::UNAUTHORIZED, json!(msg))
}

/// The per-key rate limit, then the injected 429 and 5xx (503 at submit).
fn injected(inner: &mut Inner, key: &str, p429: f64, p5xx: f64, submit: bool) -> Option<Response> {
    let limited = !inner.limits.take_token(key, Instant::now(), &inner.knobs);
    if limited || inner.chance(p429) {
        inner.stats.rate_limited_total += 1;
        inner.counters(PROVIDER).rate_limited_total += 1;
        let mut r = detail(StatusCode::TOO_MANY_REQUESTS, json!("Too many requests"));
        if let Some(secs) = inner.knobs.retry_after_secs {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return Some(r);
    }
    if inner.chance(p5xx) {
        let status = if submit {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
            ][inner.pick(3)]
        };
        return Some(server_error(inner, status));
    }
    None
}

fn server_error(inner: &mut Inner, status: StatusCode) -> Response {
    inner.stats.server_errors_total += 1;
    inner.counters(PROVIDER).server_errors_total += 1;
    detail(
        status,
        json!(status.canonical_reason().unwrap_or("Server error")),
    )
}

/// Hands held requests to runners, oldest first, while their key is under `max_in_flight`.
fn promote(inner: &mut Inner, now: Instant) {
    let cap = inner.knobs.max_in_flight.map(u64::from);
    let mut rest = VecDeque::new();
    for id in std::mem::take(&mut inner.fal.waiting) {
        let Some(req) = inner.fal.requests.get(&id) else {
            continue;
        };
        let key = req.key.clone();
        if cap.is_some_and(|cap| inner.limits.in_flight(&key, now) >= cap) {
            rest.push_back(id);
            continue;
        }
        let held = inner.fal.requests.get_mut(&id).and_then(|r| r.held.take());
        if let Some((new, dedupe)) = held {
            inner.create_as(PROVIDER, id, &new, Some(&key), Some(&dedupe), now);
        }
    }
    inner.fal.waiting = rest;
}

/// The request's phase as of `now`, or `None` for an unknown id.
fn phase(inner: &mut Inner, id: &str, now: Instant) -> Option<Phase> {
    promote(inner, now);
    let req = inner.fal.requests.get(id)?;
    if req.removed {
        return Some(Phase::Done(None));
    }
    if req.held.is_some() {
        return Some(Phase::Queued(position(&inner.fal, id)));
    }
    Some(match inner.view(id, now)? {
        View::Queued => Phase::Queued(0),
        View::Generating => Phase::Running,
        done => Phase::Done(Some(done)),
    })
}

/// A held request's place in its key's line (1 = next to run).
fn position(fal: &FalState, id: &str) -> usize {
    let key = fal.requests.get(id).map(|r| r.key.as_str());
    let ahead = fal
        .waiting
        .iter()
        .take_while(|w| w.as_str() != id)
        .filter(|w| fal.requests.get(*w).map(|r| r.key.as_str()) == key)
        .count();
    ahead + 1
}

/// `http://<Host>` as the client addressed us.
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

fn urls(base: &str, id: &str) -> Value {
    let r = format!("{base}{REQUESTS}/{id}");
    json!({
        "request_id": id,
        "response_url": r,
        "status_url": format!("{r}/status"),
        "cancel_url": format!("{r}/cancel"),
    })
}

async fn submit(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
    model: ModelKind,
) -> Response {
    let arrival = SystemTime::now();
    let Some(key) = api_key(&state, &headers) else {
        return unauthorized(&state);
    };
    let resp = submit_authorized(&state, &key, &headers, &body, model);
    state.record_request(arrival, RequestKind::Submit, resp.status().as_u16());
    resp
}

fn submit_authorized(
    state: &SimState,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
    model: ModelKind,
) -> Response {
    {
        let mut guard = state.lock();
        let inner = &mut *guard;
        let (p429, p5xx) = (inner.knobs.submit_429_rate, inner.knobs.submit_5xx_rate);
        if let Some(resp) = injected(inner, key, p429, p5xx, true) {
            return resp;
        }
        if inner.knobs.no_credits {
            inner.stats.forbidden_total += 1;
            let msg = "User is locked. Reason: Exhausted balance. Top up your balance at \
                       fal.ai/dashboard/billing.";
            return detail(StatusCode::FORBIDDEN, json!(msg));
        }
    }
    let (new, video) = match check(body, model) {
        Ok(ok) => ok,
        Err(issues) => {
            let mut inner = state.lock();
            inner.stats.validation_errors_total += 1;
            inner.counters(PROVIDER).validation_errors_total += 1;
            return detail(StatusCode::UNPROCESSABLE_ENTITY, Value::Array(issues));
        }
    };
    let base = base_url(state, headers);
    let mut guard = state.lock();
    let inner = &mut *guard;
    let now = Instant::now();
    promote(inner, now);
    let id = inner.new_uuid().to_string();
    // fal has no client key: the same prompt on the same video is the same job.
    let dedupe = format!("{}\u{0}{}\u{0}{video}", model, new.prompt);
    let cap = inner.knobs.max_in_flight.map(u64::from);
    let key_waits = inner
        .fal
        .waiting
        .iter()
        .any(|w| inner.fal.requests.get(w).is_some_and(|r| r.key == key));
    let hold = key_waits || cap.is_some_and(|cap| inner.limits.in_flight(key, now) >= cap);
    let held = if hold {
        inner.fal.waiting.push_back(id.clone());
        Some((new, dedupe))
    } else {
        inner.create_as(PROVIDER, id.clone(), &new, Some(key), Some(&dedupe), now);
        None
    };
    inner.fal.requests.insert(
        id.clone(),
        FalRequest {
            key: key.to_owned(),
            held,
            removed: false,
        },
    );
    let position = if hold { position(&inner.fal, &id) } else { 0 };
    tracing::debug!(request_id = %id, held = hold, "sim: fal request accepted");
    let lost_rate = inner.knobs.submit_lost_response_rate;
    if inner.chance(lost_rate) {
        return server_error(inner, StatusCode::GATEWAY_TIMEOUT);
    }
    let mut body = urls(&base, &id);
    body["status"] = json!("IN_QUEUE");
    body["queue_position"] = json!(position);
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-fal-request-id", v);
    }
    resp
}

/// `GET {status_url}[?logs=1]`: 202 while queued or running, 200 once COMPLETED.
async fn status(
    State(state): State<SimState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let arrival = SystemTime::now();
    let Some(key) = api_key(&state, &headers) else {
        return unauthorized(&state);
    };
    let base = base_url(&state, &headers);
    let resp = {
        let mut guard = state.lock();
        let inner = &mut *guard;
        inner.stats.polls_total += 1;
        inner.counters(PROVIDER).polls_total += 1;
        let (p429, p5xx) = (inner.knobs.poll_429_rate, inner.knobs.poll_5xx_rate);
        match injected(inner, &key, p429, p5xx, false) {
            Some(resp) => resp,
            None => status_body(inner, &id, &base, query.as_deref()),
        }
    };
    state.record_request(arrival, RequestKind::Poll, resp.status().as_u16());
    resp
}

fn status_body(inner: &mut Inner, id: &str, base: &str, query: Option<&str>) -> Response {
    let Some(phase) = phase(inner, id, Instant::now()) else {
        return detail(StatusCode::NOT_FOUND, json!("Request not found"));
    };
    let logs = query.is_some_and(|q| q.split('&').any(|p| p == "logs=1" || p == "logs=true"));
    let mut body = urls(base, id);
    let (code, word, line) = match phase {
        Phase::Queued(position) => {
            body["queue_position"] = json!(position);
            (StatusCode::ACCEPTED, "IN_QUEUE", None)
        }
        Phase::Running => (
            StatusCode::ACCEPTED,
            "IN_PROGRESS",
            Some("Generating video"),
        ),
        Phase::Done(_) => (StatusCode::OK, "COMPLETED", Some("Request finished")),
    };
    body["status"] = json!(word);
    if logs {
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        body["logs"] = json!(line
            .map(|m| vec![
                json!({"message": m, "level": "INFO", "source": "USER", "timestamp": ts})
            ])
            .unwrap_or_default());
    }
    (code, Json(body)).into_response()
}

/// `GET {response_url}`: the model's own answer once COMPLETED.
async fn result(
    State(state): State<SimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let arrival = SystemTime::now();
    let Some(key) = api_key(&state, &headers) else {
        return unauthorized(&state);
    };
    let base = base_url(&state, &headers);
    let resp = {
        let mut guard = state.lock();
        let inner = &mut *guard;
        inner.counters(PROVIDER).results_total += 1;
        let (p429, p5xx) = (inner.knobs.poll_429_rate, inner.knobs.poll_5xx_rate);
        match injected(inner, &key, p429, p5xx, false) {
            Some(resp) => resp,
            None => result_body(inner, &id, &base),
        }
    };
    state.record_request(arrival, RequestKind::Poll, resp.status().as_u16());
    resp
}

fn result_body(inner: &mut Inner, id: &str, base: &str) -> Response {
    let view = match phase(inner, id, Instant::now()) {
        None => return detail(StatusCode::NOT_FOUND, json!("Request not found")),
        // ASSUMPTION: fal answers 400 for a result asked for too early.
        Some(Phase::Queued(_) | Phase::Running) => {
            return detail(
                StatusCode::BAD_REQUEST,
                json!("Request is still in progress"),
            )
        }
        Some(Phase::Done(view)) => view,
    };
    match view {
        Some(View::Completed { .. }) => {
            let rate = inner.knobs.result_504_rate;
            if inner.chance(rate) {
                return server_error(inner, StatusCode::GATEWAY_TIMEOUT);
            }
            let video = json!({
                "url": format!("{base}/sim/files/{}.mp4", token_for(id)),
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": output_bytes(id).len(),
            });
            Json(json!({ "video": video })).into_response()
        }
        Some(View::Failed(body)) => detail(StatusCode::UNPROCESSABLE_ENTITY, fal_detail(&body)),
        // ASSUMPTION: a cancelled request's result is a 400 with a plain-string detail.
        _ => detail(StatusCode::BAD_REQUEST, json!("Request was cancelled")),
    }
}

/// The core's failure body in fal's `detail` list shape, with fal's field names.
fn fal_detail(body: &Value) -> Value {
    if let Some(items) = body.get("detail").and_then(Value::as_array) {
        let mut items = items.clone();
        for loc in items.iter_mut().filter_map(|i| i.get_mut("loc")) {
            if let Some(arr) = loc.as_array_mut() {
                for part in arr.iter_mut().filter(|p| *p == "image_list") {
                    *part = json!("image_urls");
                }
            }
        }
        return Value::Array(items);
    }
    let msg = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("Generation failed");
    json!([{"loc": ["body", "prompt"], "msg": msg, "type": "content_policy_violation"}])
}

/// `PUT {cancel_url}`: removes a queued request; a running one is only signalled (the
/// Kling app keeps going, ASSUMPTION), so it may still complete.
async fn cancel(
    State(state): State<SimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let arrival = SystemTime::now();
    let Some(key) = api_key(&state, &headers) else {
        return unauthorized(&state);
    };
    let resp = {
        let mut guard = state.lock();
        let inner = &mut *guard;
        inner.counters(PROVIDER).cancels_total += 1;
        match injected(inner, &key, 0.0, 0.0, false) {
            Some(resp) => resp,
            None => cancel_body(inner, &id),
        }
    };
    state.record_request(arrival, RequestKind::Poll, resp.status().as_u16());
    resp
}

fn cancel_body(inner: &mut Inner, id: &str) -> Response {
    let now = Instant::now();
    let answer =
        |code: StatusCode, word: &str| (code, Json(json!({"status": word}))).into_response();
    let requested = || answer(StatusCode::ACCEPTED, "CANCELLATION_REQUESTED");
    match phase(inner, id, now) {
        None => answer(StatusCode::NOT_FOUND, "NOT_FOUND"),
        Some(Phase::Done(None)) => requested(),
        Some(Phase::Queued(_)) if inner.fal.requests.get(id).is_some_and(|r| r.held.is_some()) => {
            inner.fal.waiting.retain(|w| w != id);
            if let Some(r) = inner.fal.requests.get_mut(id) {
                r.held = None;
                r.removed = true;
            }
            requested()
        }
        Some(_) => match inner.cancel(id, false, now) {
            Some(View::Cancelled | View::Generating) => requested(),
            _ => answer(StatusCode::BAD_REQUEST, "ALREADY_COMPLETED"),
        },
    }
}

fn issue(loc: &[Value], msg: &str, kind: &str) -> Value {
    let mut full = vec![json!("body")];
    full.extend_from_slice(loc);
    json!({"loc": full, "msg": msg, "type": kind})
}

/// Checks a submit body against `OmniV2VEditInput` / `OmniV2VReferenceInput` (pydantic
/// style: unknown keys ignored). Returns the generation and its `video_url`.
fn check(body: &[u8], model: ModelKind) -> Result<(NewGeneration, String), Vec<Value>> {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => {
            return Err(vec![issue(
                &[],
                "Input should be a valid dictionary",
                "dict_type",
            )])
        }
        Err(_) => return Err(vec![issue(&[], "JSON decode error", "json_invalid")]),
    };
    let mut errs = Vec::new();
    let string = |field: &str, errs: &mut Vec<Value>| match obj.get(field) {
        Some(Value::String(s)) => s.clone(),
        None => {
            errs.push(issue(&[json!(field)], "Field required", "missing"));
            String::new()
        }
        Some(_) => {
            errs.push(issue(
                &[json!(field)],
                "Input should be a valid string",
                "string_type",
            ));
            String::new()
        }
    };
    let prompt = string("prompt", &mut errs);
    let video = string("video_url", &mut errs);
    let images = strings(obj.get("image_urls"), &[json!("image_urls")], &mut errs);
    let elements = match obj.get("elements") {
        None => 0,
        Some(Value::Array(items)) => {
            for (i, el) in items.iter().enumerate() {
                check_element(el, i, &mut errs);
            }
            items.len()
        }
        Some(_) => {
            errs.push(issue(
                &[json!("elements")],
                "Input should be a valid list",
                "list_type",
            ));
            0
        }
    };
    if obj.get("keep_audio").is_some_and(|v| !v.is_boolean()) {
        let msg = "Input should be a valid boolean";
        errs.push(issue(&[json!("keep_audio")], msg, "bool_type"));
    }
    let mut duration = None;
    if model == ModelKind::Reference {
        let mut literal = |field: &str, allowed: &[&str]| {
            let v = obj.get(field)?;
            match v.as_str().filter(|s| allowed.contains(s)) {
                Some(s) => Some(s.to_owned()),
                None => {
                    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
                    let (last, head) = quoted.split_last().expect("non-empty");
                    let msg = format!("Input should be {} or {last}", head.join(", "));
                    errs.push(issue(&[json!(field)], &msg, "literal_error"));
                    None
                }
            }
        };
        literal("aspect_ratio", ASPECT_RATIOS);
        duration = literal("duration", DURATIONS).and_then(|d| d.parse().ok());
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let refs = images + elements;
    Ok((
        NewGeneration {
            model,
            prompt,
            refs,
            duration,
        },
        video,
    ))
}

/// An optional list of strings; returns its length.
fn strings(v: Option<&Value>, loc: &[Value], errs: &mut Vec<Value>) -> usize {
    match v {
        None => 0,
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    let mut at = loc.to_vec();
                    at.push(json!(i));
                    errs.push(issue(&at, "Input should be a valid string", "string_type"));
                }
            }
            items.len()
        }
        Some(_) => {
            errs.push(issue(loc, "Input should be a valid list", "list_type"));
            0
        }
    }
}

/// One `OmniVideoElementInput`: a frontal image and 1–3 reference images.
fn check_element(el: &Value, i: usize, errs: &mut Vec<Value>) {
    let at = |field: &str| vec![json!("elements"), json!(i), json!(field)];
    let Some(obj) = el.as_object() else {
        let msg = "Input should be a valid dictionary or instance of OmniVideoElementInput";
        errs.push(issue(&[json!("elements"), json!(i)], msg, "model_type"));
        return;
    };
    match obj.get("frontal_image_url") {
        Some(Value::String(_)) => {}
        None => errs.push(issue(&at("frontal_image_url"), "Field required", "missing")),
        Some(_) => {
            let msg = "Input should be a valid string";
            errs.push(issue(&at("frontal_image_url"), msg, "string_type"));
        }
    }
    let refs_at = at("reference_image_urls");
    let refs = obj.get("reference_image_urls");
    let n = strings(refs, &refs_at, errs);
    if refs.is_none() {
        errs.push(issue(&refs_at, "Field required", "missing"));
    } else if refs.is_some_and(|r| r.is_array()) && n == 0 {
        let msg = "List should have at least 1 item after validation, not 0";
        errs.push(issue(&refs_at, msg, "too_short"));
    } else if n > 3 {
        let msg = format!("List should have at most 3 items after validation, not {n}");
        errs.push(issue(&refs_at, &msg, "too_long"));
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn schema_is_checked_pydantic_style() {
        let ok = bytes(json!({"prompt": "p", "video_url": "u", "duration": "5",
            "aspect_ratio": "auto", "image_urls": ["a"], "keep_audio": true,
            "elements": [{"frontal_image_url": "f", "reference_image_urls": ["r"]}]}));
        let (new, video) = check(&ok, ModelKind::Reference).unwrap();
        assert_eq!((new.duration, new.refs, video.as_str()), (Some(5), 2, "u"));
        let bad = bytes(json!({"video_url": 1, "duration": 5, "keep_audio": "no",
            "elements": [{"frontal_image_url": "f", "reference_image_urls": ["1", "2", "3", "4"]}]}));
        let errs = check(&bad, ModelKind::Reference).unwrap_err();
        let kinds: Vec<&str> = errs.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "missing",
                "string_type",
                "too_long",
                "bool_type",
                "literal_error"
            ]
        );
        assert_eq!(errs[4]["loc"], json!(["body", "duration"]));
        // Reference-only fields are unknown keys to the edit model: ignored.
        let edit = bytes(json!({"prompt": "p", "video_url": "u", "duration": 5}));
        assert_eq!(check(&edit, ModelKind::Edit).unwrap().0.duration, None);
    }

    #[test]
    fn core_failures_become_fal_detail_lists() {
        let msg = json!({"name": "ContentPolicyViolation", "message": "rejected"});
        assert_eq!(fal_detail(&msg)[0]["msg"], "rejected");
        let list = json!({"detail": [{"loc": ["body", "image_list"], "msg": "too many"}]});
        assert_eq!(fal_detail(&list)[0]["loc"], json!(["body", "image_urls"]));
    }
}
