//! The Kling official protocol (Omni-Video): HS256 JWT auth (401 codes 1000–1004),
//! `POST /v1/videos/omni-video` with validation at create (400 code 1201) and
//! `external_task_id` unique per account (a duplicate is 400/1201, ASSUMPTION),
//! `GET /v1/videos/omni-video/{task_id | external_task_id}`, the `code`/`message`/
//! `request_id`/`data` envelope with millisecond timestamps, and the overloaded 429
//! (1302 rate, 1303 concurrency, 1102 resource pack depleted). `api_keys` entries are
//! `"AK:SK"`; the per-key rate gate counts creates only (queries have no QPS limit).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::limits::RequestKind;
use super::media::token_for;
use super::state::{Inner, NewGeneration, SimState, View};
use crate::model::ModelKind;
use crate::upstream::providers::kling::hmac_sha256;

const TASKS_PATH: &str = "/v1/videos/omni-video";
const MODEL_NAME: &str = "kling-video-o1";
const MAX_PROMPT: usize = 2500;
const RATIOS: &[&str] = &["16:9", "9:16", "1:1"];

/// One task as Kling knows it, beside the shared generation of the same id.
#[derive(Debug)]
struct Task {
    /// The access key (JWT issuer) it belongs to.
    key: String,
    external_task_id: Option<String>,
    created_ms: u64,
    created: Instant,
    /// Billed seconds, reported as `final_unit_deduction`.
    seconds: u32,
}

/// Per-protocol state kept inside the simulator's one lock.
#[derive(Debug, Default)]
pub(crate) struct KlingState {
    tasks: HashMap<String, Task>,
    /// `(access key, external_task_id)` → task id.
    by_external: HashMap<(String, String), String>,
}

/// The kling routes.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route(TASKS_PATH, post(submit))
        .route("/v1/videos/omni-video/{id}", get(query))
}

fn now_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The error envelope with its HTTP status; a 429 carries `Retry-After` when the knob says.
fn refuse(status: StatusCode, code: i64, message: &str, retry_after: Option<u64>) -> Response {
    let body = json!({"code": code, "message": message,
                      "request_id": uuid::Uuid::new_v4().to_string()});
    let mut r = (status, axum::Json(body)).into_response();
    if let (StatusCode::TOO_MANY_REQUESTS, Some(secs)) = (status, retry_after) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn succeed(data: Value) -> Response {
    let body = json!({"code": 0, "message": "SUCCEED",
                      "request_id": uuid::Uuid::new_v4().to_string(), "data": data});
    axum::Json(body).into_response()
}

/// Bumps counters both globally and under `kling`.
macro_rules! tally {
    ($inner:expr, $($field:ident),+) => {{
        let inner: &mut Inner = &mut $inner;
        $(inner.stats.$field += 1; inner.counters("kling").$field += 1;)+
    }};
}

/// The access key of a valid token, or the 401 code and message. With `api_keys` empty
/// any well-formed, time-valid token passes unsigned (ASSUMPTION); otherwise the issuer
/// must be listed as `"AK:SK"` and the signature must verify with that SK.
fn authorize(
    keys: &[String],
    headers: &HeaderMap,
    now: u64,
) -> Result<String, (i64, &'static str)> {
    const INVALID: (i64, &str) = (1002, "Authorization is invalid");
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or((1001, "Authorization is empty"))?;
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err(INVALID),
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [head, claims, sig] = parts[..] else {
        return Err(INVALID);
    };
    let decode = |s: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
    };
    let (head_v, claims_v) = decode(head).zip(decode(claims)).ok_or(INVALID)?;
    if head_v.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(INVALID);
    }
    let iss = claims_v
        .get("iss")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(INVALID)?;
    let exp = claims_v.get("exp").and_then(Value::as_u64).ok_or(INVALID)?;
    let nbf = claims_v.get("nbf").and_then(Value::as_u64).unwrap_or(0);
    if !keys.is_empty() {
        let secret = keys
            .iter()
            .find_map(|k| k.split_once(':').filter(|(ak, _)| *ak == iss))
            .map(|(_, sk)| sk)
            .ok_or((1000, "Authentication failed"))?;
        let want = hmac_sha256(secret.as_bytes(), format!("{head}.{claims}").as_bytes());
        let got = URL_SAFE_NO_PAD.decode(sig).map_err(|_| INVALID)?;
        let same = got.len() == want.len()
            && got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Err(INVALID);
        }
    }
    if nbf > now {
        return Err((1003, "Authorization is not yet valid"));
    }
    if exp <= now {
        return Err((1004, "Authorization has expired"));
    }
    Ok(iss.to_owned())
}

/// The caller's access key, or the 401 answer (counted).
fn authenticate(state: &SimState, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let keys = state.lock().knobs.api_keys.clone();
    authorize(&keys, headers, now_ms() / 1000).map_err(|(code, msg)| {
        tally!(state.lock(), unauthorized_total);
        Box::new(refuse(StatusCode::UNAUTHORIZED, code, msg, None))
    })
}

/// `POST /v1/videos/omni-video`.
async fn submit(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let arrival = SystemTime::now();
    let key = match authenticate(&state, &headers) {
        Ok(key) => key,
        Err(resp) => return *resp,
    };
    let resp = submit_authorized(&state, &key, &body);
    state.record_request(arrival, RequestKind::Submit, resp.status().as_u16());
    resp
}

/// Order: per-key rate limit, injected 429/503/1102, validation, then (under one lock)
/// the `external_task_id` check, the per-key concurrency cap and creation.
fn submit_authorized(state: &SimState, key: &str, body: &[u8]) -> Response {
    let too_many = StatusCode::TOO_MANY_REQUESTS;
    let k = {
        let mut inner = state.lock();
        let k = inner.knobs.clone();
        if !inner.limits.take_token(key, Instant::now(), &k) || inner.chance(k.submit_429_rate) {
            tally!(inner, rate_limited_total);
            return refuse(too_many, 1302, "request rate too high", k.retry_after_secs);
        }
        if inner.chance(k.submit_5xx_rate) {
            tally!(inner, server_errors_total);
            let msg = "service temporarily unavailable";
            return refuse(StatusCode::SERVICE_UNAVAILABLE, 5001, msg, None);
        }
        if k.no_credits {
            tally!(inner, rate_limited_total);
            let msg = "resource pack depleted or expired";
            return refuse(too_many, 1102, msg, k.retry_after_secs);
        }
        k
    };
    // Outside the lock: a body may carry a large data URI.
    let validated = validate(body);
    let mut inner = state.lock();
    let (new, external) = match validated {
        Ok(v) => v,
        Err((code, msg)) => {
            tally!(inner, validation_errors_total);
            return refuse(StatusCode::BAD_REQUEST, code, &msg, None);
        }
    };
    let now = Instant::now();
    if let Some(ext) = &external {
        if inner
            .kling
            .by_external
            .contains_key(&(key.to_owned(), ext.clone()))
        {
            tally!(inner, validation_errors_total);
            let msg = format!("external_task_id {ext:?} already exists");
            return refuse(StatusCode::BAD_REQUEST, 1201, &msg, None);
        }
    }
    if k.max_in_flight
        .is_some_and(|cap| inner.limits.in_flight(key, now) >= u64::from(cap))
    {
        tally!(inner, rate_limited_total);
        inner.stats.concurrency_limited_total += 1;
        let msg = "parallel task over resource pack limit";
        return refuse(too_many, 1303, msg, k.retry_after_secs);
    }
    let task_id = loop {
        let n = inner.new_uuid().as_u128() % 900_000_000_000_000_000 + 100_000_000_000_000_000;
        if !inner.kling.tasks.contains_key(&n.to_string()) {
            break n.to_string();
        }
    };
    // Without an external id, the prompt and the video are the dedupe key.
    let dedupe = external
        .clone()
        .unwrap_or_else(|| format!("{}\u{0}{}", new.generation.prompt, new.video));
    inner.create_as(
        "kling",
        task_id.clone(),
        &new.generation,
        Some(key),
        Some(&dedupe),
        now,
    );
    let created_ms = now_ms();
    let seconds = new.generation.duration.unwrap_or(5);
    if let Some(ext) = &external {
        let pair = (key.to_owned(), ext.clone());
        inner.kling.by_external.insert(pair, task_id.clone());
    }
    let task = Task {
        key: key.to_owned(),
        external_task_id: external.clone(),
        created_ms,
        created: now,
        seconds,
    };
    inner.kling.tasks.insert(task_id.clone(), task);
    let lost = inner.chance(k.submit_lost_response_rate);
    tracing::debug!(task_id = %task_id, external_task_id = ?external, lost, "sim: kling task created");
    if lost {
        tally!(inner, server_errors_total);
        return refuse(
            StatusCode::GATEWAY_TIMEOUT,
            5002,
            "server backlog timeout",
            None,
        );
    }
    succeed(json!({
        "task_id": task_id,
        "task_info": {"external_task_id": external},
        "task_status": "submitted",
        "created_at": created_ms,
        "updated_at": created_ms,
    }))
}

/// `GET /v1/videos/omni-video/{id}`: `id` is a task id or an `external_task_id`.
async fn query(
    State(state): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let arrival = SystemTime::now();
    let key = match authenticate(&state, &headers) {
        Ok(key) => key,
        Err(resp) => return *resp,
    };
    let host = base_url(&state, &headers);
    let resp = query_authorized(&state, &key, &id, &host);
    state.record_request(arrival, RequestKind::Poll, resp.status().as_u16());
    resp
}

/// Queries have no QPS limit on Kling, so only the injected 429/5xx knobs apply.
fn query_authorized(state: &SimState, key: &str, id: &str, host: &str) -> Response {
    let mut inner = state.lock();
    tally!(inner, polls_total);
    let k = inner.knobs.clone();
    if inner.chance(k.poll_429_rate) {
        tally!(inner, rate_limited_total);
        let status = StatusCode::TOO_MANY_REQUESTS;
        return refuse(status, 1302, "request rate too high", k.retry_after_secs);
    }
    if inner.chance(k.poll_5xx_rate) {
        tally!(inner, server_errors_total);
        let (status, code, msg) = [
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                5000,
                "server internal error",
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                5001,
                "service temporarily unavailable",
            ),
        ][inner.pick(2)];
        return refuse(status, code, msg, None);
    }
    let kling = &inner.kling;
    let task_id = match kling.tasks.get(id) {
        Some(t) if t.key == key => Some(id.to_owned()),
        _ => kling
            .by_external
            .get(&(key.to_owned(), id.to_owned()))
            .cloned(),
    };
    let view = task_id
        .as_deref()
        .and_then(|t| inner.view(t, Instant::now()));
    let (Some(task_id), Some(view)) = (task_id, view) else {
        // ASSUMPTION: an unknown task is 404 with code 1203 ("resource not found").
        return refuse(StatusCode::NOT_FOUND, 1203, "task not found", None);
    };
    let task = &inner.kling.tasks[&task_id];
    let now = now_ms();
    let mut data = json!({
        "task_id": task_id,
        "task_status_msg": "",
        "task_info": {"external_task_id": task.external_task_id},
        "watermark_info": {"enabled": false},
        "created_at": task.created_ms,
        "updated_at": now,
    });
    let status = match view {
        View::Queued => {
            data["updated_at"] = json!(task.created_ms);
            "submitted"
        }
        View::Generating => "processing",
        View::Completed { at, .. } => {
            let ended =
                task.created_ms + at.saturating_duration_since(task.created).as_millis() as u64;
            let url = format!("{host}/sim/files/{}.mp4", token_for(&task_id));
            data["updated_at"] = json!(ended);
            data["final_unit_deduction"] = json!(task.seconds.to_string());
            data["task_result"] = json!({"videos": [{
                "id": format!("{task_id}-0"), "url": url, "watermark_url": "",
                "duration": format!("{}.0", task.seconds),
            }]});
            "succeed"
        }
        View::Failed(err) => {
            data["task_status_msg"] = json!(failure_reason(&err));
            "failed"
        }
        View::Cancelled => {
            data["task_status_msg"] = json!("task cancelled");
            "failed"
        }
    };
    data["task_status"] = json!(status);
    succeed(data)
}

/// The shared core's failure body as one line (`message`, or the first `detail` msg).
fn failure_reason(err: &Value) -> String {
    err.get("message")
        .or_else(|| err.pointer("/detail/0/msg"))
        .and_then(Value::as_str)
        .map_or_else(|| err.to_string(), str::to_owned)
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

/// A valid create body: the generation and its video URL.
#[derive(Debug)]
struct Valid {
    generation: NewGeneration,
    video: String,
}

/// The create body's fields this simulator reads; types are checked by serde.
#[derive(Debug, Deserialize)]
struct Create {
    model_name: Option<String>,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    image_list: Vec<Image>,
    #[serde(default)]
    element_list: Vec<ElementRef>,
    #[serde(default)]
    video_list: Vec<Video>,
    sound: Option<String>,
    mode: Option<String>,
    aspect_ratio: Option<String>,
    /// A string "3"…"10" (a number is a type error).
    duration: Option<String>,
    external_task_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Image {
    image_url: String,
    #[serde(rename = "type")]
    frame: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ElementRef {
    #[allow(dead_code)] // only its type is checked: a registered element id
    element_id: u64,
}

#[derive(Debug, Deserialize)]
struct Video {
    video_url: String,
    refer_type: Option<String>,
    keep_original_sound: Option<String>,
}

/// Validates a create body as Kling does, at create: `Err` is (code, message).
fn validate(body: &[u8]) -> Result<(Valid, Option<String>), (i64, String)> {
    let c: Create =
        serde_json::from_slice(body).map_err(|e| (1201, format!("invalid params: {e}")))?;
    let mut errs: Vec<String> = Vec::new();
    let video = c.video_list.first();
    let enums: [(&str, Option<&String>, &[&str]); 5] = [
        ("model_name", c.model_name.as_ref(), &[MODEL_NAME]),
        ("mode", c.mode.as_ref(), &["std", "pro"]),
        ("sound", c.sound.as_ref(), &["off"]), // "on" is refused with a video
        (
            "refer_type",
            video.and_then(|v| v.refer_type.as_ref()),
            &["base", "feature"],
        ),
        (
            "keep_original_sound",
            video.and_then(|v| v.keep_original_sound.as_ref()),
            &["yes", "no"],
        ),
    ];
    for (field, value, allowed) in enums {
        if value.is_some_and(|v| !allowed.contains(&v.as_str())) {
            errs.push(format!("{field}: one of {allowed:?}, got {value:?}"));
        }
    }
    let chars = c.prompt.chars().count();
    if !(1..=MAX_PROMPT).contains(&chars) {
        errs.push(format!("prompt: 1–{MAX_PROMPT} characters, got {chars}"));
    }
    let [video] = &c.video_list[..] else {
        let n = c.video_list.len();
        errs.push(format!(
            "video_list: one video (this simulator models video-to-video), got {n}"
        ));
        return Err((1201, errs.join("; ")));
    };
    let model = match video.refer_type.as_deref() {
        Some("feature") => ModelKind::Reference,
        _ => ModelKind::Edit,
    };
    if video.video_url.is_empty() || c.image_list.iter().any(|i| i.image_url.is_empty()) {
        errs.push("video_url and image_url must not be empty".into());
    }
    if model == ModelKind::Edit && c.image_list.iter().any(|i| i.frame.is_some()) {
        errs.push("image_list.type: first/end frames cannot be set with a base video".into());
    }
    let refs = c.image_list.len() + c.element_list.len();
    if refs > 4 {
        errs.push(format!(
            "image_list + element_list: at most 4 with a video, got {refs}"
        ));
    }
    let counts = [
        ("image", c.image_list.len()),
        ("element", c.element_list.len()),
        ("video", 1),
    ];
    check_references(&c.prompt, counts, &mut errs);
    let duration = match (model, &c.aspect_ratio) {
        (ModelKind::Edit, Some(_)) => {
            errs.push("aspect_ratio: not supported when editing a video (refer_type base)".into());
            None
        }
        // The output follows the input clip; `duration` is ignored.
        (ModelKind::Edit, None) => None,
        (ModelKind::Reference, ar) => {
            if !ar.as_deref().is_some_and(|ar| RATIOS.contains(&ar)) {
                errs.push(format!(
                    "aspect_ratio: one of {RATIOS:?} with a feature video, got {ar:?}"
                ));
            }
            let d = c.duration.as_deref().unwrap_or("5");
            let d = d.parse::<u32>().ok().filter(|d| (3..=10).contains(d));
            if d.is_none() {
                errs.push(format!("duration: \"3\"…\"10\", got {:?}", c.duration));
            }
            d
        }
    };
    if c.external_task_id.as_deref() == Some("") {
        errs.push("external_task_id: must not be empty".into());
    }
    if !errs.is_empty() {
        return Err((1201, errs.join("; ")));
    }
    let generation = NewGeneration {
        model,
        prompt: c.prompt,
        refs,
        duration,
    };
    let video = video.video_url.clone();
    Ok((Valid { generation, video }, c.external_task_id))
}

/// Every `<<<kind_N>>>` in the prompt must name an item that exists (N from 1).
fn check_references(prompt: &str, counts: [(&str, usize); 3], errs: &mut Vec<String>) {
    for chunk in prompt.split("<<<").skip(1) {
        let Some((inner, _)) = chunk.split_once(">>>") else {
            continue;
        };
        let Some((kind, n)) = inner.rsplit_once('_') else {
            errs.push(format!("prompt: unknown reference <<<{inner}>>>"));
            continue;
        };
        let have = counts.iter().find(|(k, _)| *k == kind).map(|(_, c)| *c);
        match (have, n.parse::<usize>()) {
            (Some(have), Ok(n)) if (1..=have).contains(&n) => {}
            _ => errs.push(format!(
                "prompt: <<<{inner}>>> refers to no {kind} in the request"
            )),
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::upstream::providers::kling::mint_jwt;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        h.insert(header::AUTHORIZATION, v);
        h
    }

    #[test]
    fn tokens_are_checked_for_signature_issuer_and_time() {
        let keys = vec!["ak:sk".to_owned(), "plain-key".to_owned()];
        let now = 1_000_000;
        let auth = |token: &str, keys: &[String]| authorize(keys, &bearer(token), now);
        assert_eq!(auth(&mint_jwt("ak", "sk", now), &keys), Ok("ak".into()));
        assert_eq!(
            auth(&mint_jwt("ak", "wrong", now), &keys).unwrap_err().0,
            1002
        );
        assert_eq!(
            auth(&mint_jwt("other", "sk", now), &keys).unwrap_err().0,
            1000
        );
        assert_eq!(
            auth(&mint_jwt("ak", "sk", now - 1800), &keys)
                .unwrap_err()
                .0,
            1004
        );
        assert_eq!(
            auth(&mint_jwt("ak", "sk", now + 60), &keys).unwrap_err().0,
            1003
        );
        assert_eq!(auth("not-a-jwt", &keys).unwrap_err().0, 1002);
        let empty = authorize(&keys, &HeaderMap::new(), now).unwrap_err();
        assert_eq!(empty.0, 1001);
        // No keys configured: any well-formed token, unsigned, but still within its time.
        assert_eq!(
            auth(&mint_jwt("anyone", "x", now), &[]),
            Ok("anyone".into())
        );
        assert_eq!(
            auth(&mint_jwt("anyone", "x", now - 1800), &[])
                .unwrap_err()
                .0,
            1004
        );
    }

    fn body(refer: &str, extra: Value) -> Vec<u8> {
        let mut b = json!({
            "model_name": "kling-video-o1", "prompt": "like <<<image_1>>>",
            "image_list": [{"image_url": "https://x/i.png"}],
            "video_list": [{"video_url": "https://x/v.mp4", "refer_type": refer,
                            "keep_original_sound": "no"}],
            "external_task_id": "b.00000",
        });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string().into_bytes()
    }

    #[test]
    fn create_bodies_are_validated_as_kling_does() {
        let (ok, ext) = validate(&body("base", json!({"duration": "7"}))).unwrap();
        assert_eq!(ext.as_deref(), Some("b.00000"));
        assert_eq!(
            (ok.generation.model, ok.generation.duration),
            (ModelKind::Edit, None)
        );
        let feature = json!({"aspect_ratio": "9:16", "duration": "10"});
        let (ok, _) = validate(&body("feature", feature)).unwrap();
        assert_eq!(ok.generation.duration, Some(10));
        let err = |b: Vec<u8>| validate(&b).unwrap_err();
        let number = err(body(
            "feature",
            json!({"aspect_ratio": "1:1", "duration": 5}),
        ));
        assert_eq!(number.0, 1201);
        assert!(number.1.contains("expected a string"), "{}", number.1);
        assert!(err(body("base", json!({"aspect_ratio": "1:1"})))
            .1
            .contains("aspect_ratio"));
        assert!(err(body("feature", json!({}))).1.contains("aspect_ratio"));
        let dangling = err(body(
            "base",
            json!({"prompt": "<<<image_2>>> and <<<element_1>>>"}),
        ));
        assert!(dangling.1.contains("<<<image_2>>>") && dangling.1.contains("<<<element_1>>>"));
        let five = json!({"element_list": [{"element_id": 1}, {"element_id": 2},
                                           {"element_id": 3}, {"element_id": 4}]});
        assert!(err(body("base", five)).1.contains("at most 4"));
        assert!(err(body("base", json!({"sound": "on"})))
            .1
            .contains("sound"));
        assert!(err(body("base", json!({"prompt": "x".repeat(2501)})))
            .1
            .contains("prompt"));
        assert_eq!(validate(b"{nope").unwrap_err().0, 1201);
    }
}
