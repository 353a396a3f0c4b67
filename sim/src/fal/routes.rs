//! fal's endpoints, each behind the gate: the submit (schema, then held or created), the
//! status (202 `IN_QUEUE`/`IN_PROGRESS`, 200 `COMPLETED`; `logs` always present, `null`
//! unless asked for), the result fetch (the model's answer, or the request's failure, for
//! `fal_result_retention` after completion) and the best-effort cancel. Status and result
//! answers carry `x-fal-request-id`, as fal's do (the JS client reads it as
//! `Result.requestId`; the Python client's retry heuristic tells fal's own 5xx from an
//! ingress's by it).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::{Instant, SystemTime};

use super::errors::{decide, failure_response, no_retry, status_fields};
use super::schema::check;
use super::state::{accept, is_held, phase, withdraw, Phase};
use super::storage::Storage;
use super::{detail, urls, Fal};
use crate::gate::{self, Call, Fault, Protocol};
use crate::media::{base_url, output_bytes, output_url};
use crate::model::Model;
use crate::state::{Inner, SimState, View};

/// `POST /fal-ai/kling-video/o1/[standard/]video-to-video/{edit,reference}`.
pub(super) async fn submit(
    State(state): State<SimState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
    model: Model,
    path: String,
) -> Response {
    let hook = super::webhook::requested(query.as_deref());
    let tag = gate::Tag {
        path: Some(path),
        mode: None,
    };
    gate::serve_tagged::<Fal, _>(
        &state,
        &headers,
        Call::SUBMIT,
        tag,
        || {
            check(&body, model).map_err(|issues| {
                Box::new(detail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Value::Array(issues),
                ))
            })
        },
        |key, (mut new, video), _| {
            let base = base_url(&state, &headers);
            // The clip fal's runner would download: a data URI here, read outside the lock.
            let mut seen = crate::probe::data_uri(&video).and_then(|b| crate::probe::read(&b));
            // fal has no client key: the same prompt on the same video is the same job.
            let dedupe = format!("{}\u{0}{}\u{0}{video}", model.fal_endpoint(), new.prompt);
            let mut guard = state.lock();
            let inner = &mut *guard;
            let missing =
                Storage::refers_here(&base, &video) && !inner.fal.storage.has(&base, &video);
            if missing {
                new.fail = Some(download_error(&video));
            } else if let Some(file) = inner.fal.storage.file(&base, &video) {
                seen = crate::probe::read(file);
            }
            if new.fail.is_none() {
                new.fail = seen.and_then(|clip| crate::probe::fal_refusal(&clip, &video));
            }
            let no_retry = no_retry(&headers);
            if no_retry {
                inner.counters(Fal::NAME).no_retry_submits += 1;
            }
            if new.fail.is_none() {
                new.fail = decide(inner, no_retry);
            }
            let (id, position) = accept(inner, key, new, dedupe, Instant::now());
            if let Some(url) = hook.clone() {
                // fal has the request (even if its answer is lost below): it will call.
                inner.push.watch_fal(&id);
                let watch = super::webhook::watch(state.clone(), id.clone(), url, base.clone());
                tokio::spawn(watch);
            }
            let lost_rate = inner.knobs.submit_lost_response_rate;
            if inner.chance(lost_rate) {
                return server_error(inner, StatusCode::GATEWAY_TIMEOUT);
            }
            let mut body = urls(&base, &id);
            body["status"] = json!("IN_QUEUE");
            body["queue_position"] = json!(position);
            with_request_id(Json(body).into_response(), &id)
        },
    )
}

/// The model error of a `video_url` fal could not fetch (a type of fal's "Model Errors").
fn download_error(url: &str) -> Value {
    json!({"detail": [{
        "loc": ["body", "video_url"],
        "msg": "Failed to download the file. Please check that the URL is accessible.",
        "type": "file_download_error",
        "input": url,
    }]})
}

/// Adds `x-fal-request-id`.
fn with_request_id(mut resp: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-fal-request-id", v);
    }
    resp
}

/// Whether the status query asks for logs (`logs=1` from the JS client, `logs=true` from
/// the Python one).
fn wants_logs(query: Option<&str>) -> bool {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k == "logs" && (v == "1" || v.eq_ignore_ascii_case("true")))
}

/// A server error after the gate (a lost response, a result fetch timing out), counted.
fn server_error(inner: &mut Inner, status: StatusCode) -> Response {
    inner.count_refused(Fal::NAME, status);
    Fal::refuse(Fault::Server(status))
}

/// `GET {status_url}[?logs=1]`: 202 while queued or running, 200 once COMPLETED.
pub(super) async fn status(
    State(state): State<SimState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    gate::serve::<Fal, _>(
        &state,
        &headers,
        Call::POLL,
        || Ok(()),
        |_key, ()| {
            let base = base_url(&state, &headers);
            status_body(&mut state.lock(), &id, &base, query.as_deref())
        },
    )
}

fn status_body(inner: &mut Inner, id: &str, base: &str, query: Option<&str>) -> Response {
    let now = Instant::now();
    let Some(phase) = phase(inner, id, now) else {
        return detail(StatusCode::NOT_FOUND, json!("Request not found"));
    };
    inner.note_poll(id, now);
    let mut body = urls(base, id);
    let (code, word, line) = match &phase {
        Phase::Queued(position) => {
            body["queue_position"] = json!(position);
            (StatusCode::ACCEPTED, "IN_QUEUE", None)
        }
        Phase::Running => (
            StatusCode::ACCEPTED,
            "IN_PROGRESS",
            Some("Generating video"),
        ),
        Phase::Done(view) => {
            let end = inner.end_of(id);
            inner.push.saw_completed(id, end, now);
            if let Some(View::Failed(failure)) = view {
                let (error, error_type) = status_fields(failure);
                body["error"] = error;
                body["error_type"] = error_type;
            }
            (StatusCode::OK, "COMPLETED", Some("Request finished"))
        }
    };
    if matches!(phase, Phase::Done(_)) {
        // fal: "metrics.inference_time: seconds the runner spent (only when COMPLETED)".
        let ran = inner.end_of(id).zip(inner.start_of(id));
        let secs = ran.map_or(0.0, |(end, start)| {
            end.saturating_duration_since(start).as_secs_f64()
        });
        body["metrics"] = json!({ "inference_time": secs });
    }
    body["status"] = json!(word);
    // fal-client 1.0.3 reads `logs` unconditionally for IN_PROGRESS and COMPLETED
    // (`_parse_status`); its `InProgress`/`Completed` docs and fal's queue page say the
    // list is there "when logs are enabled", so it is `null` otherwise.
    body["logs"] = if wants_logs(query) {
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        json!(line
            .map(|m| vec![
                json!({"message": m, "level": "INFO", "source": "USER", "timestamp": ts})
            ])
            .unwrap_or_default())
    } else {
        Value::Null
    };
    with_request_id((code, Json(body)).into_response(), id)
}

/// `GET {response_url}`: the model's own answer once COMPLETED.
pub(super) async fn result(
    State(state): State<SimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    gate::serve::<Fal, _>(
        &state,
        &headers,
        Call::RESULT,
        || Ok(()),
        |_key, ()| {
            let base = base_url(&state, &headers);
            let resp = result_body(&mut state.lock(), &id, &base);
            with_request_id(resp, &id)
        },
    )
}

fn result_body(inner: &mut Inner, id: &str, base: &str) -> Response {
    let now = Instant::now();
    let view = match phase(inner, id, now) {
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
    // fal keeps a result 1 hour after completion (fal docs, "Get request result"). What
    // it answers later is not documented: ASSUMPTION, a 404 like an unknown request.
    let retention = inner
        .knobs
        .fal_result_retention
        .mul_f64(inner.knobs.time_scale);
    if inner.end_of(id).is_some_and(|end| now >= end + retention) {
        return detail(StatusCode::NOT_FOUND, json!("Request not found"));
    }
    match view {
        Some(View::Completed { clip, .. }) => {
            let rate = inner.knobs.result_504_rate;
            if inner.chance(rate) {
                return server_error(inner, StatusCode::GATEWAY_TIMEOUT);
            }
            let video = json!({
                "url": output_url(base, id),
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": output_bytes(clip, id).len(),
            });
            Json(json!({ "video": video })).into_response()
        }
        Some(View::Failed(body)) => failure_response(&body),
        // ASSUMPTION: a cancelled request's result is a 400 with a plain-string detail.
        _ => detail(StatusCode::BAD_REQUEST, json!("Request was cancelled")),
    }
}

/// `PUT {cancel_url}`: removes a queued request; a running one is only signalled (the
/// Kling app keeps going, ASSUMPTION), so it may still complete.
pub(super) async fn cancel(
    State(state): State<SimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    gate::serve::<Fal, _>(
        &state,
        &headers,
        Call::CANCEL,
        || Ok(()),
        |_key, ()| cancel_body(&mut state.lock(), &id),
    )
}

fn cancel_body(inner: &mut Inner, id: &str) -> Response {
    let now = Instant::now();
    let answer =
        |code: StatusCode, word: &str| (code, Json(json!({"status": word}))).into_response();
    let requested = || answer(StatusCode::ACCEPTED, "CANCELLATION_REQUESTED");
    match phase(inner, id, now) {
        None => answer(StatusCode::NOT_FOUND, "NOT_FOUND"),
        Some(Phase::Done(None)) => requested(),
        Some(Phase::Queued(_)) if is_held(&inner.fal, id) => {
            withdraw(&mut inner.fal, id);
            requested()
        }
        Some(_) => match inner.cancel(id, false, now) {
            Some(View::Cancelled | View::Generating) => requested(),
            _ => answer(StatusCode::BAD_REQUEST, "ALREADY_COMPLETED"),
        },
    }
}
