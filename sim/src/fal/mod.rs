//! The fal.ai queue protocol: `POST /fal-ai/kling-video/o1/[standard/]video-to-video/{edit,
//! reference}` with `Authorization: Key …`, answered with a `request_id` and status, result
//! and cancel URLs under `/fal-ai/kling-video/requests/{id}` (no model sub-path). Status is
//! HTTP 202 while `IN_QUEUE`/`IN_PROGRESS` and 200 once `COMPLETED`, success or failure;
//! the result fetch decides (`{"video":{…}}` or 422 `{"detail":[…]}`), and may answer 504
//! for a finished job (`result_504_rate`). Cancel is best effort. Over `max_in_flight` a
//! request is never rejected: it waits `IN_QUEUE`. Schema errors are 422 at submit.
//!
//! This file: the routes, the `detail` envelope and fal at the gate. The handlers are in
//! `routes`, the input schemas in `schema`, the failure shapes in `errors`, fal's requests
//! and its queue in `state`, its storage API (uploads the official client makes) in
//! `storage`. A `video_url` in this simulator's storage that holds no file fails the
//! request with the model error `file_download_error`. A submit with `?fal_webhook=<url>`
//! gets fal's signed webhook at that URL once COMPLETED (`webhook`, `crate::push`).

mod errors;
mod routes;
mod schema;
mod state;
mod storage;
#[cfg(test)]
mod storage_tests;
mod webhook;
#[cfg(test)]
mod tests;

pub(crate) use errors::request_error;
pub(crate) use state::FalState;
pub(crate) use storage::routes as storage_routes;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::gate::{self, Fault, Protocol};
use crate::model::Model;
use crate::state::SimState;

/// The `owner/app` prefix of every status, result and cancel URL.
const REQUESTS: &str = "/fal-ai/kling-video/requests";

/// The fal routes.
pub(crate) fn routes() -> Router<SimState> {
    let mut r = Router::new();
    for tier in ["", "standard/"] {
        for model in Model::ALL {
            let path = format!(
                "/fal-ai/kling-video/o1/{tier}video-to-video/{}",
                model.fal_endpoint()
            );
            let at = path.clone();
            let submit = move |s: State<SimState>, h: HeaderMap, q: RawQuery, b: Bytes| {
                routes::submit(s, h, q, b, model, at.clone())
            };
            r = r.route(&path, post(submit));
        }
    }
    r.route(&format!("{REQUESTS}/{{id}}/status"), get(routes::status))
        .route(&format!("{REQUESTS}/{{id}}"), get(routes::result))
        .route(&format!("{REQUESTS}/{{id}}/cancel"), put(routes::cancel))
}

/// The fal protocol at the gate: `Key` credentials, answers as `{"detail": …}`.
#[derive(Debug)]
struct Fal;

impl Protocol for Fal {
    const NAME: &'static str = "fal";
    const POLL_5XX: &'static [StatusCode] = &[
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
    ];
    type Denied = ();

    /// A Bearer token is refused, like an unknown key.
    fn authenticate(api_keys: &[String], headers: &HeaderMap) -> Result<String, ()> {
        let key = gate::credential(headers, "key").ok_or(())?;
        gate::plain_key(api_keys, key).ok_or(())
    }

    fn unauthorized((): ()) -> Response {
        // ASSUMPTION: fal's exact 401 wording is not in the reference.
        let msg = "Authentication is required to access this application.";
        detail(StatusCode::UNAUTHORIZED, json!(msg))
    }

    fn refuse(fault: Fault) -> Response {
        match fault {
            Fault::TooManyRequests { retry_after } => gate::retry_after(
                detail(StatusCode::TOO_MANY_REQUESTS, json!("Too many requests")),
                retry_after,
            ),
            Fault::Server(status) => detail(
                status,
                json!(status.canonical_reason().unwrap_or("Server error")),
            ),
            Fault::NoCredits { .. } => {
                let msg = "User is locked. Reason: Exhausted balance. Top up your balance at \
                           fal.ai/dashboard/billing.";
                detail(StatusCode::FORBIDDEN, json!(msg))
            }
        }
    }
}

fn detail(status: StatusCode, detail: Value) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

/// A request's id and URLs, as the submit and the status endpoint answer them.
fn urls(base: &str, id: &str) -> Value {
    let r = format!("{base}{REQUESTS}/{id}");
    json!({
        "request_id": id,
        "response_url": r,
        "status_url": format!("{r}/status"),
        "cancel_url": format!("{r}/cancel"),
    })
}
