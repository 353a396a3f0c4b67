//! Oxen's queue endpoints: enqueue (the gate, then the credit check, the per-key
//! concurrency cap and `num_generations` creations), poll a row, cancel, and list the
//! caller's rows. Cancel and list check only the credential: they are neither metered
//! nor logged.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use super::params::late_check;
use super::state::{observe_owned, row, OxenGen};
use super::{events, invalid, not_found, unix_secs, Oxen, MODEL};
use crate::gate::{self, Call, Fault, Protocol};
use crate::media::base_url;
use crate::model::Model;
use crate::state::{NewGeneration, SimState, View};

/// Params echoed on a poll (the input video is not: it may be a large data URI).
const ECHOED: &[&str] = &[
    "input_image",
    "elements",
    "response_format",
    "target_namespace",
];

/// An enqueue body that passed the checks made at enqueue.
#[derive(Debug)]
struct Enqueue {
    /// `num_generations`.
    n: u64,
    prompt: String,
    /// Image and element references.
    refs: usize,
    /// The parameter error the generations will fail with when they run.
    late_error: Option<String>,
    /// The same prompt on the same video is the same job (Oxen has no client key).
    dedupe: String,
    echo: Map<String, Value>,
}

/// The checks Oxen makes at enqueue: a JSON object, its model and `num_generations`.
fn check(body: &[u8]) -> Result<Enqueue, Box<Response>> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(invalid("The request body must be a JSON object"));
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.as_str(),
        _ => return Err(invalid("model is required")),
    };
    if model != MODEL {
        // ASSUMPTION: "Model not found" is a 404 in the short envelope.
        let body = json!({"error": {"message": format!("Model not found: {model}")}});
        return Err(Box::new(
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response(),
        ));
    }
    let n = match obj.get("num_generations") {
        None => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=4).contains(n))
            .ok_or_else(|| invalid("num_generations must be an integer between 1 and 4"))?,
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
    Ok(Enqueue {
        n,
        prompt: prompt.to_owned(),
        refs,
        late_error,
        dedupe,
        echo,
    })
}

/// `POST /api/ai/queue`.
pub(super) async fn submit(
    State(state): State<SimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gate::serve::<Oxen, _>(
        &state,
        &headers,
        Call::SUBMIT_CREDITS_LATER,
        || check(&body),
        |key, enqueue| enqueue_checked(&state, key, enqueue),
    )
}

/// Under one lock: the credit check, the per-key concurrency cap (all `n` generations
/// must fit), the creations, and perhaps a lost response.
fn enqueue_checked(state: &SimState, key: &str, e: Enqueue) -> Response {
    let mut inner = state.lock();
    if inner.knobs.no_credits {
        let retry_after = inner.knobs.retry_after_secs;
        return Oxen::refuse(Fault::NoCredits { retry_after });
    }
    let now = Instant::now();
    let cap = inner.knobs.max_in_flight.map(u64::from);
    if cap.is_some_and(|cap| inner.limits.in_flight(key, now) + e.n > cap) {
        inner.count_refused(Oxen::NAME, StatusCode::TOO_MANY_REQUESTS);
        inner.stats.concurrency_limited_total += 1;
        let retry_after = inner.knobs.retry_after_secs;
        return Oxen::refuse(Fault::TooManyRequests { retry_after });
    }
    let new = NewGeneration {
        model: Model::Edit,
        prompt: e.prompt.clone(),
        // A late parameter error must end `failed`: the core fails any generation with
        // more than 4 references, which gives it a failing fate (the message is ours).
        refs: if e.late_error.is_some() {
            e.refs.max(5)
        } else {
            e.refs
        },
        duration: None,
        fail: None,
    };
    let enqueued_at = unix_secs(SystemTime::now());
    let mut out = Vec::new();
    for _ in 0..e.n {
        let id = inner.new_uuid().to_string();
        let id = inner.create_as(Oxen::NAME, id, &new, Some(key), Some(&e.dedupe), now);
        let gen = OxenGen {
            key: key.to_owned(),
            prompt: e.prompt.clone(),
            echo: e.echo.clone(),
            enqueued_at,
            started_at: None,
            completed_at: None,
            late_error: e.late_error.clone(),
        };
        inner.oxen.gens.insert(id.clone(), gen);
        inner.oxen.events.open(&id);
        out.push(json!({"generation_id": id, "status": "queued"}));
    }
    let lost_rate = inner.knobs.submit_lost_response_rate;
    if inner.chance(lost_rate) {
        let status = StatusCode::GATEWAY_TIMEOUT;
        inner.count_refused(Oxen::NAME, status);
        return Oxen::refuse(Fault::Server(status));
    }
    drop(inner);
    tracing::debug!(generations = ?out, "sim: oxen generation enqueued");
    axum::Json(json!({ "generations": out })).into_response()
}

/// `GET /api/ai/queue/{id}`: the caller's row, 404 for another user's.
pub(super) async fn poll(
    State(state): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    gate::serve::<Oxen, _>(
        &state,
        &headers,
        Call::POLL,
        || Ok(()),
        |key, ()| {
            let base = base_url(&state, &headers);
            let found = {
                let mut inner = state.lock();
                let found = observe_owned(&mut inner, &id, key);
                if found.is_some() {
                    inner.note_poll(&id, Instant::now());
                }
                found
            };
            match found {
                Some((view, g)) => axum::Json(row(&id, &view, &g, &base)).into_response(),
                None => not_found(),
            }
        },
    )
}

/// `DELETE /api/ai/queue/{id}`: cancels a queued or running generation (a no-op on a
/// terminal one). A cancelled generation sends no SSE event.
pub(super) async fn cancel(
    State(state): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let key = match gate::authenticate::<Oxen>(&state, &headers) {
        Ok(key) => key,
        Err(resp) => return *resp,
    };
    let mut inner = state.lock();
    if observe_owned(&mut inner, &id, &key).is_none() {
        return not_found();
    }
    inner.counters(Oxen::NAME).cancels_total += 1;
    if let Some(View::Cancelled) = inner.cancel(&id, true, Instant::now()) {
        // Settles it in the journal as cancelled: no event will ever be sent for it.
        events::observe(&mut inner, &id, Instant::now(), SystemTime::now());
    }
    drop(inner);
    axum::Json(json!({"status": "success", "generation_id": id})).into_response()
}

/// `GET /api/ai/queue?status=&model=`: the caller's rows; without `status` only active
/// (`queued`/`processing`) ones. The reconciliation path for an ambiguous enqueue.
pub(super) async fn list(
    State(state): State<SimState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let key = match gate::authenticate::<Oxen>(&state, &headers) {
        Ok(key) => key,
        Err(resp) => return *resp,
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
