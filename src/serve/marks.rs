//! Review marks over HTTP: `GET /api/v1/batches/<id>/marks`,
//! `PUT /api/v1/batches/<id>/marks/<job>` (`{"mark": "keep" | "reject" | "none"}`) and
//! the contact sheet's keep/reject forms (`POST /console/batches/<id>/marks/<job>`, with
//! the session's CSRF token; answered with JSON when the page's script asks for it, else a
//! redirect back to the page).
//!
//! Setting a mark needs an operator token, as every other write does: a mark decides
//! what the kept download holds, so it is a change to the batch, and a read-only token is
//! for people and dashboards that watch. Reading marks needs any token.

use super::console::{operator_form, problem, CsrfForm};
use super::error::ApiError;
use super::AppState;
use crate::queue::{Mark, MarkSet};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type Shared = State<Arc<AppState>>;

/// `keep`, `reject` or `none` (clears); anything else names the field.
fn parse_mark(s: &str) -> Result<Option<Mark>, ApiError> {
    match s {
        "none" => Ok(None),
        other => Mark::parse(other)
            .map(Some)
            .ok_or_else(|| ApiError::invalid("mark", "must be keep, reject or none")),
    }
}

/// Sets the mark of a job of the batch (both checked).
async fn set(st: &AppState, id: &str, job: &str, mark: Option<Mark>) -> Result<(), ApiError> {
    let info = super::api::info(st, id).await?;
    super::outputs::job_of(st, &info, job).await?;
    match st.queue.set_mark(id, job, mark).await? {
        MarkSet::Done => Ok(()),
        MarkSet::NoBatch => Err(ApiError::NotFound(id.to_owned())),
        MarkSet::NotInBatch => Err(ApiError::missing("job_id", "not a job of this batch")),
    }
}

pub async fn list(State(st): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    super::api::info(&st, &id).await?;
    let marks = st.queue.marks(&id).await?;
    Ok(Json(json!({ "batch_id": id, "marks": marks })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkBody {
    mark: String,
}

pub async fn put(
    State(st): Shared,
    Path((id, job)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: MarkBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let mark = parse_mark(&req.mark)?;
    set(&st, &id, &job, mark).await?;
    tracing::info!(batch_id = %id, job_id = %job, mark = %req.mark, "Variant marked over the API.");
    Ok(Json(
        json!({ "batch_id": id, "job_id": job, "mark": mark.map(Mark::as_str).unwrap_or("none") }),
    ))
}

/// The contact sheet's keep/reject form.
#[derive(Debug, Deserialize)]
pub struct MarkForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub mark: String,
    /// The state filter to return to.
    #[serde(default)]
    pub state: String,
}

pub async fn post_form(
    State(st): Shared,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
    Form(f): Form<MarkForm>,
) -> Response {
    let csrf = CsrfForm {
        csrf: f.csrf.clone(),
    };
    let s = match operator_form(&st, &headers, &csrf).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let done = match parse_mark(&f.mark) {
        Ok(mark) => set(&st, &id, &job, mark).await.map(|_| mark),
        Err(e) => Err(e),
    };
    match done {
        Ok(mark) => {
            tracing::info!(token = %s.name, batch_id = %id, job_id = %job, mark = %f.mark, "Variant marked.");
            let mark = mark.map(Mark::as_str).unwrap_or("none");
            if wants_json {
                return Json(json!({ "job_id": job, "mark": mark })).into_response();
            }
            let filter = crate::job::JobState::parse(&f.state)
                .map(|s| format!("?state={}", s.as_str()))
                .unwrap_or_default();
            Redirect::to(&format!("/console/batches/{id}{filter}#v-{job}")).into_response()
        }
        Err(e) if wants_json => e.into_response(),
        Err(e) => {
            let status = e.status();
            let status = if status == StatusCode::INTERNAL_SERVER_ERROR {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                status
            };
            problem(Some(&s), status, &e.to_string())
        }
    }
}
