//! A batch's media as the console shows them: a job's output
//! (`/console/batches/<batch>/jobs/<job>/output`) and the batch's source clip
//! (`/console/batches/<batch>/source`). Nothing of a path comes from the request: the
//! batch and job ids are checked against the id rules and against each other (the job
//! must be one of that batch's), and the file is the one the job's record names, accepted
//! only when it is exactly the name the workers make for that job ([`relative_path`] in
//! the output directory, [`store_name`] in the store). A local file is streamed, byte
//! ranges included (a player seeking); an
//! object in the store is answered with a redirect to a presigned link (the batch page's
//! CSP allows the store's origin for media). A source stored in Redis is sent from there;
//! one named by an https URL is linked, not fetched.

use super::error::ApiError;
use super::AppState;
use crate::job::{parse_job_id, JobIdParts, JobRecord, JobState};
use crate::queue::BatchInfo;
use crate::sink::download::{relative_path, store_name};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tower_http::services::ServeFile;

/// How long a presigned link the console hands out is valid (`output.link_ttl` when set).
pub const CONSOLE_LINK_TTL: Duration = Duration::from_secs(3600);
/// The largest source clip sent from Redis to a browser.
pub const MAX_SOURCE_SERVED: u64 = 256 * 1024 * 1024;

/// Where a job's output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A file under the output directory.
    Local(PathBuf),
    /// An object in the results store (its name under the prefix).
    Store(String),
}

/// The job `job_id` of the batch `info`, checked: an id the rules make, of this batch,
/// with an index the batch has, and a record naming the batch.
pub(super) async fn job_of(
    st: &AppState,
    info: &BatchInfo,
    job_id: &str,
) -> Result<JobRecord, ApiError> {
    let not_ours = || ApiError::missing("job_id", format!("no job {job_id:.80?} in this batch"));
    match parse_job_id(job_id) {
        Ok(JobIdParts::Variant { batch, index })
            if batch == info.batch_id && u64::from(index) < info.total => {}
        _ => return Err(not_ours()),
    }
    let loaded = st.queue.jobs(&[job_id.to_owned()]).await?;
    match loaded.into_iter().next() {
        Some(Ok(rec)) if rec.batch.as_deref() == Some(info.batch_id.as_str()) => Ok(rec),
        _ => Err(not_ours()),
    }
}

/// Where the output of a succeeded job is, from its record alone: `None` when it has
/// none, or names a file that is not the one the workers make for it.
pub(super) fn output_of(st: &AppState, rec: &JobRecord) -> Option<Output> {
    if rec.state != JobState::Succeeded {
        return None;
    }
    let batch = rec.batch.as_deref()?;
    let file = rec.file.as_deref()?;
    if st.store.is_some() {
        let claim = file
            .strip_prefix(&format!("{batch}/{}.d", rec.job_id))?
            .strip_suffix(".mp4")?;
        let n: u64 = claim.parse().ok()?;
        return (file == store_name(batch, &rec.job_id, n)).then(|| Output::Store(file.into()));
    }
    (file == relative_path(batch, &rec.job_id))
        .then(|| Output::Local(st.settings.output.dir.join(file)))
}

/// The link lifetime for the console: `output.link_ttl` when set, else an hour.
fn link_ttl(st: &AppState) -> Duration {
    let t = st.settings.output.link_ttl;
    if t.is_zero() {
        CONSOLE_LINK_TTL
    } else {
        t
    }
}

/// The origin (`https://host[:port]`) presigned links of the store point at, for the CSP.
pub(super) async fn store_origin(st: &AppState) -> Option<String> {
    let store = st.store.as_ref()?;
    let url = store.signed_url("origin-probe", link_ttl(st)).await.ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Sends `out`: the file streamed (the byte ranges and conditions of `request` honoured),
/// or a redirect to a presigned link to the object.
async fn send(
    st: &AppState,
    out: Output,
    name: &str,
    request: &HeaderMap,
) -> Result<Response, ApiError> {
    match out {
        Output::Store(rel) => {
            let store = st
                .store
                .as_ref()
                .ok_or_else(|| ApiError::missing("job_id", "no store"))?;
            let url = store
                .signed_url(&rel, link_ttl(st))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(Redirect::temporary(url.as_str()).into_response())
        }
        Output::Local(path) => {
            let gone =
                || ApiError::missing("job_id", "the output file is not in the output directory");
            let meta = tokio::fs::symlink_metadata(&path)
                .await
                .map_err(|_| gone())?;
            if !meta.is_file() {
                return Err(gone());
            }
            // Ranges and conditional requests (a player seeking) by tower-http's file
            // service; the path is ours, checked above.
            let mut req = axum::http::Request::new(Body::empty());
            for name in [
                header::RANGE,
                header::IF_RANGE,
                header::IF_MODIFIED_SINCE,
                header::IF_UNMODIFIED_SINCE,
            ] {
                if let Some(v) = request.get(&name) {
                    req.headers_mut().insert(name, v.clone());
                }
            }
            let Ok(res) = ServeFile::new(&path).oneshot(req).await;
            let mut res = res.map(Body::new);
            if res.status() == StatusCode::NOT_FOUND {
                return Err(gone());
            }
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=300"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}.mp4\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(res)
        }
    }
}

/// `GET /console/batches/<batch>/jobs/<job>/output`: signed-in sessions only.
pub async fn output(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
) -> Response {
    if let Err(e) = super::console::session_or_401(&st, &headers).await {
        return e.into_response();
    }
    let found = async {
        let info = super::api::info(&st, &id).await?;
        let rec = job_of(&st, &info, &job).await?;
        let out = output_of(&st, &rec)
            .ok_or_else(|| ApiError::missing("job_id", "this job has no output"))?;
        send(&st, out, &rec.job_id, &headers).await
    };
    found.await.unwrap_or_else(IntoResponse::into_response)
}

/// How the batch page can show the source clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceView {
    /// Through [`source`] (in Redis or the store).
    Served,
    /// An https URL: linked.
    Link(String),
    /// Not shown (an inline data URI, an unreadable spec).
    None,
}

/// Where the batch's source clip is.
enum Source {
    Redis {
        sha: String,
        bytes: u64,
        mime: String,
    },
    Store(String),
    Url(String),
}

fn source_of(info: &BatchInfo) -> Option<Source> {
    let spec: crate::model::BatchShared = serde_json::from_str(&info.spec_json).ok()?;
    if let Some(sha) = spec.video.strip_prefix("media:") {
        let entry = spec.media.get(sha)?;
        if let Some(obj) = &entry.object {
            // Only a name the producer makes: `<batch>/source/<file>`.
            let file = obj.strip_prefix(&format!("{}/source/", info.batch_id))?;
            let plain = |c: char| c.is_ascii_alphanumeric() || c == '.';
            let ok = !file.is_empty() && !file.starts_with('.') && file.chars().all(plain);
            return ok.then(|| Source::Store(obj.clone()));
        }
        let sha_ok = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
        return sha_ok.then(|| Source::Redis {
            sha: sha.to_owned(),
            bytes: entry.bytes,
            mime: entry.mime.clone(),
        });
    }
    spec.video
        .starts_with("https://")
        .then(|| Source::Url(spec.video.clone()))
}

/// How the page shows the batch's source clip.
pub(super) fn source_view(st: &AppState, info: &BatchInfo) -> SourceView {
    match source_of(info) {
        Some(Source::Redis { bytes, .. }) if bytes <= MAX_SOURCE_SERVED => SourceView::Served,
        Some(Source::Store(_)) if st.store.is_some() => SourceView::Served,
        Some(Source::Url(u)) => SourceView::Link(u),
        _ => SourceView::None,
    }
}

/// `GET /console/batches/<batch>/source`: the source clip, signed-in sessions only.
pub async fn source(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = super::console::session_or_401(&st, &headers).await {
        return e.into_response();
    }
    let found = async {
        let info = super::api::info(&st, &id).await?;
        let none = || ApiError::missing("video", "the source clip cannot be shown here");
        match source_of(&info).ok_or_else(none)? {
            Source::Store(rel) if st.store.is_some() => {
                send(&st, Output::Store(rel), "source", &headers).await
            }
            Source::Redis { sha, bytes, mime } if bytes <= MAX_SOURCE_SERVED => {
                let data = st
                    .queue
                    .get_media(&id, &sha, bytes)
                    .await?
                    .ok_or_else(none)?;
                let simple = |c: char| c.is_ascii_alphanumeric() || "/.+-".contains(c);
                let mime = if mime.starts_with("video/") && mime.chars().all(simple) {
                    mime
                } else {
                    "application/octet-stream".to_owned()
                };
                let mut res = ranged(&headers, data);
                if let Ok(v) = HeaderValue::from_str(&mime) {
                    res.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                res.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, max-age=300"),
                );
                Ok(res)
            }
            _ => Err(none()),
        }
    };
    found.await.unwrap_or_else(IntoResponse::into_response)
}

/// A clip held in memory, as the request's `Range` asks: one satisfiable range is a 206
/// with that part; a range past the end a 416; no range, a malformed one (ignored, as RFC
/// 9110 allows), several at once or an empty clip the whole clip.
fn ranged(request: &HeaderMap, data: bytes::Bytes) -> Response {
    let len = data.len() as u64;
    let asked = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| http_range_header::parse_range_header(v).ok())
        .filter(|_| len > 0);
    let mut res = match asked.map(|r| r.validate(len)) {
        Some(Ok(ranges)) if ranges.len() == 1 => {
            let (from, to) = (*ranges[0].start(), *ranges[0].end());
            let part = data.slice(from as usize..=to as usize);
            let mut res = (StatusCode::PARTIAL_CONTENT, part).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {from}-{to}/{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            res
        }
        Some(Err(_)) => {
            let mut res = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            res
        }
        _ => (StatusCode::OK, data).into_response(),
    };
    res.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    res
}
