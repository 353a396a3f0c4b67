//! Kling's two endpoints, behind the gate: the create (validated body, then under one
//! lock the `external_task_id` check, the per-key concurrency cap and the creation) and
//! the query by task id or `external_task_id` (not metered: Kling has no QPS limit on
//! queries).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use std::time::Instant;

use super::state::Task;
use super::validate::{validate, Valid};
use super::{now_ms, refuse, succeed, Kling};
use crate::gate::{self, Call, Fault, Protocol};
use crate::media::{base_url, output_url};
use crate::state::{Inner, SimState, View};

/// `POST /v1/videos/omni-video`.
pub(super) async fn submit(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gate::serve_tagged::<Kling, _>(
        &state,
        &headers,
        Call::SUBMIT,
        gate::Tag::default(),
        || {
            validate(&body)
                .map_err(|(code, msg)| Box::new(refuse(StatusCode::BAD_REQUEST, code, &msg, None)))
        },
        |key, (valid, external), tag| {
            let std = valid.units_per_second < 1.0;
            tag.mode = Some(if std { "std" } else { "pro" }.to_owned());
            create(&state, &headers, key, valid, external)
        },
    )
}

fn create(
    state: &SimState,
    headers: &HeaderMap,
    key: &str,
    new: Valid,
    external: Option<String>,
) -> Response {
    let mut inner = state.lock();
    let now = Instant::now();
    if let Some(ext) = &external {
        if inner.kling.has_external(key, ext) {
            inner.count_invalid(Kling::NAME);
            let msg = format!("external_task_id {ext:?} already exists");
            return refuse(StatusCode::BAD_REQUEST, 1201, &msg, None);
        }
    }
    let retry_after = inner.knobs.retry_after_secs;
    if inner
        .knobs
        .max_in_flight
        .is_some_and(|cap| inner.limits.in_flight(key, now) >= u64::from(cap))
    {
        let too_many = StatusCode::TOO_MANY_REQUESTS;
        inner.count_refused(Kling::NAME, too_many);
        inner.stats.concurrency_limited_total += 1;
        let msg = "parallel task over resource pack limit";
        return refuse(too_many, 1303, msg, retry_after);
    }
    let task_id = loop {
        let n = inner.new_uuid().as_u128() % 900_000_000_000_000_000 + 100_000_000_000_000_000;
        if !inner.kling.contains(&n.to_string()) {
            break n.to_string();
        }
    };
    // Without an external id, the prompt and the video are the dedupe key.
    let dedupe = external
        .clone()
        .unwrap_or_else(|| format!("{}\u{0}{}", new.generation.prompt, new.video));
    inner.create_as(
        Kling::NAME,
        task_id.clone(),
        &new.generation,
        Some(key),
        Some(&dedupe),
        now,
    );
    let created_ms = now_ms();
    let seconds = new.generation.duration.unwrap_or(5);
    let units = f64::from(seconds) * new.units_per_second;
    let task = Task {
        key: key.to_owned(),
        external_task_id: external.clone(),
        created_ms,
        created: now,
        seconds,
        // "5", "3.75": a decimal string, as Kling's examples give it.
        units: format!("{}", (units * 100.0).round() / 100.0),
    };
    inner.kling.insert(task_id.clone(), task);
    if let Some(url) = new.callback_url.clone() {
        let host = crate::media::base_url(state, headers);
        tokio::spawn(super::callback::watch(
            state.clone(),
            task_id.clone(),
            url,
            host,
        ));
    }
    let lost_rate = inner.knobs.submit_lost_response_rate;
    let lost = inner.chance(lost_rate);
    tracing::debug!(task_id = %task_id, external_task_id = ?external, lost, "sim: kling task created");
    if lost {
        let status = StatusCode::GATEWAY_TIMEOUT;
        inner.count_refused(Kling::NAME, status);
        return Kling::refuse(Fault::Server(status));
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
pub(super) async fn query(
    State(state): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    gate::serve::<Kling, _>(
        &state,
        &headers,
        Call::POLL.unmetered(),
        || Ok(()),
        |key, ()| {
            let host = base_url(&state, &headers);
            task_status(&state, key, &id, &host)
        },
    )
}

/// The caller's task as a query answers it.
fn task_status(state: &SimState, key: &str, id: &str, host: &str) -> Response {
    let mut inner = state.lock();
    let task_id = inner.kling.resolve(key, id);
    if let Some(t) = &task_id {
        inner.note_poll(t, Instant::now());
    }
    match task_id.and_then(|t| task_data(&mut inner, &t, host)) {
        Some(data) => succeed(data),
        // ASSUMPTION: an unknown task is 404 with code 1203 ("resource not found").
        None => refuse(StatusCode::NOT_FOUND, 1203, "task not found", None),
    }
}

/// A task as Kling's query `data` (and a callback's body) gives it, as of now.
pub(super) fn task_data(inner: &mut Inner, task_id: &str, host: &str) -> Option<Value> {
    let view = inner.view(task_id, Instant::now())?;
    let task = inner.kling.task(task_id)?;
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
            data["updated_at"] = json!(ended);
            data["final_unit_deduction"] = json!(task.units);
            data["task_result"] = json!({"videos": [{
                "id": format!("{task_id}-0"), "url": output_url(host, task_id),
                "watermark_url": "", "duration": format!("{}.0", task.seconds),
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
    Some(data)
}

/// The shared core's failure body as one line (`message`, or the first `detail` msg).
fn failure_reason(err: &Value) -> String {
    err.get("message")
        .or_else(|| err.pointer("/detail/0/msg"))
        .and_then(Value::as_str)
        .map_or_else(|| err.to_string(), str::to_owned)
}
