//! The Kling official protocol (Omni-Video): HS256 JWT auth (401 codes 1000–1004),
//! `POST /v1/videos/omni-video` with validation at create (400 code 1201) and
//! `external_task_id` unique per account (a duplicate is 400/1201, ASSUMPTION),
//! `GET /v1/videos/omni-video/{task_id | external_task_id}`, the `code`/`message`/
//! `request_id`/`data` envelope with millisecond timestamps, and the overloaded 429
//! (1302 rate, 1303 concurrency, 1102 resource pack depleted). `api_keys` entries are
//! `"AK:SK"`; the per-key rate gate counts creates only (queries have no QPS limit).
//!
//! This file: the routes, the envelope and Kling at the gate. The JWT check is in `auth`,
//! the handlers in `routes`, the create body's validation in `validate`, Kling's tasks in
//! `state`.

mod auth;
mod callback;
mod routes;
mod state;
mod validate;

pub(crate) use state::KlingState;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::gate::{self, Fault, Protocol};
use crate::state::SimState;

const TASKS_PATH: &str = "/v1/videos/omni-video";

/// The kling routes.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route(TASKS_PATH, post(routes::submit))
        .route("/v1/videos/omni-video/{id}", get(routes::query))
}

/// The Kling protocol at the gate: JWTs, answers in Kling's envelope.
#[derive(Debug)]
struct Kling;

impl Protocol for Kling {
    const NAME: &'static str = "kling";
    const POLL_5XX: &'static [StatusCode] = &[
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
    ];
    type Denied = auth::Denied;

    fn authenticate(api_keys: &[String], headers: &HeaderMap) -> Result<String, auth::Denied> {
        auth::verify(api_keys, headers, now_ms() / 1000)
    }

    fn unauthorized((code, message): auth::Denied) -> Response {
        refuse(StatusCode::UNAUTHORIZED, code, message, None)
    }

    fn refuse(fault: Fault) -> Response {
        let too_many = StatusCode::TOO_MANY_REQUESTS;
        match fault {
            Fault::TooManyRequests { retry_after } => {
                refuse(too_many, 1302, "request rate too high", retry_after)
            }
            Fault::NoCredits { retry_after } => refuse(
                too_many,
                1102,
                "resource pack depleted or expired",
                retry_after,
            ),
            Fault::Server(status) => {
                let (code, message) = match status {
                    StatusCode::SERVICE_UNAVAILABLE => (5001, "service temporarily unavailable"),
                    StatusCode::GATEWAY_TIMEOUT => (5002, "server backlog timeout"),
                    _ => (5000, "server internal error"),
                };
                refuse(status, code, message, None)
            }
        }
    }
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
    let resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        gate::retry_after(resp, retry_after)
    } else {
        resp
    }
}

fn succeed(data: Value) -> Response {
    let body = json!({"code": 0, "message": "SUCCEED",
                      "request_id": uuid::Uuid::new_v4().to_string(), "data": data});
    axum::Json(body).into_response()
}
