//! The `/api/v1` handlers. Creating a batch runs exactly what `restyle enqueue` runs on a
//! batch given by flags (`batch::from_flags`, the probe, `producer::enqueue_with`), after
//! refusing what a request may not name: local paths (the video and images must be https
//! URLs or uploads, see `upload`) and prompt files. Reads return the data `restyle status --json` and `restyle
//! results` print; cancel, retry and budget call the operator functions in `ops` and
//! `queue`.

use super::error::ApiError;
use super::AppState;
use crate::batch::{self, BatchFlags};
use crate::job::JobState;
use crate::money::Usd;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type Shared = State<Arc<AppState>>;

/// `POST /api/v1/batches`: the fields of `restyle enqueue`'s flags, as JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    pub video: Option<String>,
    #[serde(default)]
    pub prompts: Vec<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    #[serde(default)]
    pub images: Vec<String>,
    pub keep_audio: Option<bool>,
    pub aspect_ratio: Option<String>,
    pub duration: Option<u32>,
    pub batch_id: Option<String>,
    pub max_cost: Option<f64>,
    pub clip_seconds: Option<f64>,
    pub on_done: Option<String>,
    pub tier: Option<String>,
    #[serde(default)]
    pub skip_probe: bool,
}

/// The whole request body, at most [`super::MAX_BODY_BYTES`] (413 naming the limit).
async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, super::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge {
            field: "body".into(),
            message: format!("at most {} bytes", super::MAX_BODY_BYTES),
        })
}

/// A JSON body, or a 400 naming `body` and what serde found wrong.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid("body", e.to_string()))
}

/// A request names media only by https URL: no local path reaches the filesystem.
fn https_only(field: &str, value: &str) -> Result<(), ApiError> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "https" => Ok(()),
        _ => Err(ApiError::invalid(
            field,
            "must be an https URL or upload:<sha256>.<ext> (local paths and data URIs are \
             not accepted over the API)",
        )),
    }
}

/// Validates and enqueues a batch as `restyle enqueue` does one given by flags; returns
/// what was enqueued and the probe's notes.
pub(super) async fn enqueue(
    st: &AppState,
    mut req: CreateBatch,
) -> Result<(crate::producer::Enqueued, Vec<String>), ApiError> {
    let uploads: Vec<String> = req.video.iter().chain(&req.images).cloned().collect();
    if let Some(v) = req.video.as_mut() {
        match super::upload::resolve(st, "video", v)? {
            Some(path) => *v = path,
            None => https_only("video", v)?,
        }
    }
    for (i, img) in req.images.iter_mut().enumerate() {
        let field = format!("images[{i}]");
        match super::upload::resolve(st, &field, img)? {
            Some(path) => *img = path,
            None => https_only(&field, img)?,
        }
    }
    let flags = BatchFlags {
        batch_id: req.batch_id,
        video: req.video,
        prompts: req.prompts,
        prompts_file: None,
        provider: req.provider,
        model: req.model,
        images: req.images,
        keep_audio: req.keep_audio,
        aspect_ratio: req.aspect_ratio,
        duration: req.duration,
        max_cost: req.max_cost,
        clip_seconds: req.clip_seconds,
        on_done: req.on_done,
        tier: req.tier,
    };
    let mut b = batch::from_flags(&flags, &st.settings.limits)?;
    let notes = batch::probe::preflight(&mut b, &st.settings, "request", req.skip_probe).await?;
    let done = crate::producer::enqueue_with(&st.queue, &b, st.store.as_deref()).await?;
    let used: Vec<&str> = uploads.iter().map(String::as_str).collect();
    super::upload::touch(st, &used);
    tracing::info!(batch_id = %done.batch_id, added = done.added, "Batch enqueued over the API.");
    Ok((done, notes))
}

pub async fn create(
    State(st): Shared,
    body: axum::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    let req: CreateBatch = parse(&read_body(body).await?)?;
    let (done, notes) = enqueue(&st, req).await?;
    let status = if done.added == 0 {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({
            "batch_id": done.batch_id,
            "total": done.total,
            "added": done.added,
            "notes": notes,
        })),
    ))
}

#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub offset: usize,
    pub limit: Option<usize>,
}

pub async fn list(State(st): Shared, Query(p): Query<Page>) -> Result<Json<Value>, ApiError> {
    let limit = p.limit.unwrap_or(50).clamp(1, 200);
    let mut out = Vec::new();
    for (id, created_at) in st.queue.list_batches(p.offset, limit).await? {
        // Listed but gone (purged, expired): skipped.
        let Some(info) = st.queue.batch(&id).await? else {
            continue;
        };
        out.push(json!({
            "batch_id": id,
            "created_at_ms": created_at,
            "total": info.total,
            "done": info.done,
            "finished": info.is_finished(),
            "counts": info.counts,
        }));
    }
    Ok(Json(
        json!({ "batches": out, "offset": p.offset, "limit": limit }),
    ))
}

pub(super) async fn info(st: &AppState, id: &str) -> Result<crate::queue::BatchInfo, ApiError> {
    batch::validate_batch_id(id).map_err(|m| ApiError::invalid("batch_id", m))?;
    st.queue
        .batch(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(id.to_owned()))
}

pub async fn status(State(st): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let info = info(&st, &id).await?;
    let s = crate::status::gather(&st.queue, &st.settings, info).await?;
    Ok(Json(
        serde_json::to_value(&s).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

/// A batch's result lines (those of `restyle results`), as JSON values.
pub(super) async fn result_lines(st: &AppState, id: &str) -> Result<Vec<Value>, ApiError> {
    info(st, id).await?;
    let mut buf: Vec<u8> = Vec::new();
    crate::export::write(&st.queue, id, crate::export::Format::Jsonl, &[], &mut buf).await?;
    let lines: Result<Vec<Value>, _> = buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect();
    lines.map_err(|e| ApiError::Internal(e.to_string()))
}

pub async fn results(State(st): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let lines = result_lines(&st, &id).await?;
    Ok(Json(json!({ "batch_id": id, "results": lines })))
}

pub async fn cancel(State(st): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let info = info(&st, &id).await?;
    let r = crate::ops::cancel(&st.queue, &st.upstreams, &info).await?;
    crate::cli::store::schedule_retention(&st.queue, &st.settings, &id).await;
    Ok(Json(json!({ "batch_id": id, "cancel": r })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    #[serde(default)]
    pub states: Vec<JobState>,
}

pub async fn retry(
    State(st): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: RetryBody = if body.is_empty() {
        RetryBody::default()
    } else {
        parse(&body)?
    };
    if let Some(s) = req.states.iter().find(|s| !JobState::RETRYABLE.contains(s)) {
        return Err(ApiError::invalid(
            "states",
            format!("{} cannot be retried", s.as_str()),
        ));
    }
    let states = if req.states.is_empty() {
        JobState::RETRY_DEFAULT.to_vec()
    } else {
        req.states
    };
    let info = info(&st, &id).await?;
    let n = crate::ops::retry(&st.queue, &info, &states).await?;
    Ok(Json(
        json!({ "batch_id": id, "requeued": n, "states": states }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    pub max_cost: Usd,
}

pub async fn budget(
    State(st): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: BudgetBody = parse(&body)?;
    let info = info(&st, &id).await?;
    let n = st.queue.set_budget(&id, req.max_cost).await?;
    Ok(Json(json!({
        "batch_id": id,
        "max_cost": req.max_cost,
        "cost_committed": info.cost_committed,
        "requeued": n,
    })))
}

/// `GET /api/v1/providers`: every provider's admission state (as `restyle status` shows
/// it) and the queue's depth.
pub async fn providers(State(st): Shared) -> Result<Json<Value>, ApiError> {
    let (paused, providers) = crate::status::provider_statuses(&st.queue, &st.settings).await?;
    let (ready, parked, leased) = st.queue.depth().await?;
    Ok(Json(json!({
        "providers": providers,
        "paused_providers": paused,
        "queue": { "ready": ready, "parked": parked, "leased": leased },
    })))
}

#[derive(Debug, Deserialize)]
pub struct DeadQuery {
    pub limit: Option<usize>,
}

/// `GET /api/v1/dead`: the newest dead jobs with their reasons (as `restyle dead --json`).
pub async fn dead(State(st): Shared, Query(q): Query<DeadQuery>) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let dead = crate::ops::dead(&st.queue, limit).await?;
    Ok(Json(json!({ "jobs": dead })))
}

/// `POST /api/v1/providers/<name>/resume`: lifts an account pause (as `restyle resume`).
pub async fn resume(State(st): Shared, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let p = crate::model::ProviderName::parse(&name)
        .ok_or_else(|| ApiError::invalid("provider", "no such provider"))?;
    let n = st.queue.resume_provider(p.as_str()).await?;
    Ok(Json(json!({ "provider": p.as_str(), "requeued": n })))
}
