//! The Oxen.ai async queue: `POST /api/ai/queue` (enqueue; only the model,
//! `num_generations`, auth and credits are checked there), `GET /api/ai/queue` (list),
//! `GET`/`DELETE /api/ai/queue/{id}` (poll, cancel), the SSE stream `GET /api/events`, and
//! Oxen's error envelopes. Model parameters are validated only when the generation runs
//! (→ `failed` + `error_message`).
//!
//! This file: the routes, the envelopes and Oxen at the gate. The handlers are in
//! `routes`, the run-time parameter check in `params`, Oxen's own bookkeeping of its
//! generations (owner, echoed params, timestamps, rows) in `state`, the event stream in
//! `events`. With the `oxen_result_auth` knob an Oxen generation's output file needs its
//! owner's Bearer key ([`download_denied`], called by the output route).

mod events;
mod params;
mod routes;
mod state;
#[cfg(test)]
mod tests;

pub(crate) use state::OxenState;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::gate::{self, Fault, Protocol};
use crate::model::OXEN_EDIT as MODEL;
use crate::state::{Inner, SimState};

const QUEUE_PATH: &str = "/api/ai/queue";

/// The oxen routes.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route(QUEUE_PATH, post(routes::submit).get(routes::list))
        .route(
            "/api/ai/queue/{id}",
            get(routes::poll).delete(routes::cancel),
        )
        .route("/api/events", get(events::subscribe))
}

/// The Oxen protocol at the gate: Bearer keys, answers in Oxen's typed envelope.
#[derive(Debug)]
struct Oxen;

impl Protocol for Oxen {
    const NAME: &'static str = "oxen";
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
        envelope(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Unauthenticated",
            "A valid API key is required: Authorization: Bearer <key>",
        )
    }

    fn refuse(fault: Fault) -> Response {
        match fault {
            // ASSUMPTION: Oxen documents no video rate limits; a 429 uses the typed envelope.
            Fault::TooManyRequests { retry_after } => gate::retry_after(
                envelope(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Too Many Requests",
                    "Too many requests, please slow down",
                ),
                retry_after,
            ),
            Fault::Server(status) => {
                let title = status.canonical_reason().unwrap_or("Server error");
                envelope(status, "unknown_error", title, "An unknown error occurred")
            }
            // ASSUMPTION: the enqueue credit check answers 402 with Oxen's message.
            Fault::NoCredits { .. } => envelope(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_credits",
                "Insufficient credits",
                "Insufficient credits",
            ),
        }
    }
}

/// The output route's answer to a download of `id` that lacks its owner's key, when the
/// `oxen_result_auth` knob is on and `id` is an Oxen generation (counted as a 401 of
/// Oxen's); `None` lets the download through. ASSUMPTION (research O1): Oxen's
/// `result_url` is a repository API path and Oxen's repositories want a key; its docs
/// show no download of it.
pub(crate) fn download_denied(
    inner: &mut Inner,
    id: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    if !inner.knobs.oxen_result_auth {
        return None;
    }
    let owner = inner.oxen.gens.get(id)?.key.clone();
    if gate::credential(headers, "bearer") == Some(owner.as_str()) {
        return None;
    }
    inner.count_unauthorized(Oxen::NAME);
    Some(Oxen::unauthorized(()))
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

/// Oxen's 400 for a body refused at enqueue.
fn invalid(detail: &str) -> Box<Response> {
    Box::new(envelope(
        StatusCode::BAD_REQUEST,
        "invalid_params",
        "Invalid params",
        detail,
    ))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Unix seconds of `at`, given that `now` is `now_sys`.
fn unix_of(at: Instant, now: Instant, now_sys: SystemTime) -> u64 {
    unix_secs(now_sys).saturating_sub(now.saturating_duration_since(at).as_secs())
}
