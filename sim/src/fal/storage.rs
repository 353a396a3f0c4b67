//! fal's storage, as the official client (fal-client 1.0.3, `upload` / `upload_file`)
//! speaks it, on the simulator's own address (the client's `REST_URL` and `CDN_URL`):
//!
//! - `POST /storage/auth/token?storage_type=fal-cdn-v3` (`Authorization: Key …`) →
//!   `{token, token_type, base_url, expires_at}` (`CDNTokenManager`).
//! - `POST /files/upload` with `Authorization: <token_type> <token>`, the raw bytes and
//!   their `Content-Type` (`X-Fal-File-Name` optional) → `{"access_url"}` (`_upload_v3`).
//! - Multipart, for files over the client's 100 MiB threshold: `POST {base_url}/files/
//!   upload/multipart` → `{access_url, uploadId}`; `PUT {access_url}/multipart/{id}/{n}`
//!   answered with an `ETag`; `POST {access_url}/multipart/{id}/complete` with
//!   `{"parts": [{partNumber, etag}]}` (`MultipartUpload`).
//! - The fallback `POST /storage/upload/initiate?storage_type=…` (`Key` auth, `{file_name,
//!   content_type}`) → `{upload_url, file_url}`, then a `PUT upload_url` of the bytes with
//!   no auth (`_upload_via_storage`).
//!
//! Files are public at `GET /files/{key}/{name}` (fal's CDN: "publicly accessible. No auth
//! needed"). One file is at most [`crate::bodies::UPLOAD_MAX`] (the largest input fal's
//! O1 endpoints take); all files together at most [`STORE_MAX`], the oldest dropped first.
//! Tokens do not expire within a simulator's life (fal's expiry is not documented).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use super::{detail, Fal};
use crate::bodies::UPLOAD_MAX;
use crate::gate::{self, Protocol};
use crate::media::base_url;
use crate::state::{Inner, SimState};

/// All stored files together; the oldest are dropped beyond it.
pub(crate) const STORE_MAX: usize = 1024 * 1024 * 1024;

/// The storage routes (their body limit is set by the caller).
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/storage/auth/token", post(token))
        .route("/storage/upload/initiate", post(initiate))
        .route("/storage/upload/put/{ticket}", put(signed_put))
        .route("/files/upload", post(upload))
        .route("/files/upload/multipart", post(multipart_create))
        .route("/files/{key}/{name}", get(download))
        .route("/files/{key}/{name}/multipart/{id}/{part}", put(part))
        .route(
            "/files/{key}/{name}/multipart/{id}/complete",
            post(complete),
        )
}

/// Files, tokens and uploads in progress, inside the simulator's one lock.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    tokens: HashSet<String>,
    files: HashMap<String, (Bytes, String)>,
    /// Stored paths, oldest first, and their total size.
    order: VecDeque<String>,
    total: usize,
    /// Multipart uploads: id → (path, content type, parts by number).
    multiparts: HashMap<String, (String, String, BTreeMap<u32, Bytes>)>,
    /// Signed PUT tickets of the initiate flow: ticket → (path, content type).
    tickets: HashMap<String, (String, String)>,
}

impl Storage {
    /// Whether `url` names a file of this storage under `base` (the caller's view of us).
    pub(crate) fn refers_here(base: &str, url: &str) -> bool {
        url.strip_prefix(base)
            .is_some_and(|rest| rest.starts_with("/files/"))
    }

    /// Whether `url` (under `base`) is a stored file.
    pub(crate) fn has(&self, base: &str, url: &str) -> bool {
        url.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix("/files/"))
            .is_some_and(|path| self.files.contains_key(path))
    }

    /// The bytes of the stored file `url` (under `base`) names.
    pub(crate) fn file(&self, base: &str, url: &str) -> Option<&Bytes> {
        let path = url.strip_prefix(base)?.strip_prefix("/files/")?;
        self.files.get(path).map(|(b, _)| b)
    }

    fn store(&mut self, path: String, bytes: Bytes, content_type: String) {
        self.total += bytes.len();
        if let Some((old, _)) = self.files.insert(path.clone(), (bytes, content_type)) {
            self.total -= old.len();
            self.order.retain(|p| p != &path);
        }
        self.order.push_back(path);
        while self.total > STORE_MAX && self.order.len() > 1 {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((b, _)) = self.files.remove(&oldest) {
                self.total -= b.len();
            }
        }
    }
}

fn storage(inner: &mut Inner) -> &mut Storage {
    &mut inner.fal.storage
}

/// A fresh path `{key}/{name}` for a file named `name` (made safe for one URL segment).
fn new_path(inner: &mut Inner, name: Option<&str>) -> String {
    let key = inner.new_uuid().simple().to_string()[..12].to_owned();
    let safe: String = name
        .unwrap_or("upload.bin")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let safe = if safe.trim_matches('.').is_empty() {
        "upload.bin".to_owned()
    } else {
        safe
    };
    format!("{key}/{safe}")
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The CDN token of an `Authorization: <type> <token>` header, if this storage issued it.
fn token_ok(state: &SimState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let token = gate::credential(headers, "bearer").map(str::to_owned);
    let mut inner = state.lock();
    if token.is_some_and(|t| storage(&mut inner).tokens.contains(&t)) {
        return Ok(());
    }
    inner.count_unauthorized(Fal::NAME);
    let refused = detail(StatusCode::UNAUTHORIZED, json!("Invalid upload token"));
    Err(Box::new(refused))
}

fn stored(inner: &mut Inner, path: String, bytes: Bytes, ct: String) {
    storage(inner).store(path, bytes, ct);
    inner.counters(Fal::NAME).uploads_total += 1;
}

/// `POST /storage/auth/token?storage_type=fal-cdn-v3`.
async fn token(State(state): State<SimState>, headers: HeaderMap) -> Response {
    if let Err(resp) = gate::authenticate::<Fal>(&state, &headers) {
        return *resp;
    }
    let base = base_url(&state, &headers);
    let mut inner = state.lock();
    let token = inner.new_uuid().simple().to_string();
    storage(&mut inner).tokens.insert(token.clone());
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let rfc = humantime::format_rfc3339_seconds(expires).to_string();
    // An explicit offset: Python's `datetime.fromisoformat` reads it on every version.
    let expires_at = rfc.replace('Z', "+00:00");
    Json(
        json!({"token": token, "token_type": "Bearer", "base_url": base,
                "expires_at": expires_at}),
    )
    .into_response()
}

/// `POST /files/upload`: one file in the body.
async fn upload(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = token_ok(&state, &headers) {
        return *resp;
    }
    let base = base_url(&state, &headers);
    let name = headers.get("x-fal-file-name").and_then(|v| v.to_str().ok());
    let mut inner = state.lock();
    let path = new_path(&mut inner, name);
    stored(&mut inner, path.clone(), body, content_type(&headers));
    Json(json!({"access_url": format!("{base}/files/{path}")})).into_response()
}

/// `POST /files/upload/multipart`: starts a multipart upload.
async fn multipart_create(State(state): State<SimState>, headers: HeaderMap) -> Response {
    if let Err(resp) = token_ok(&state, &headers) {
        return *resp;
    }
    let base = base_url(&state, &headers);
    let name = headers.get("x-fal-file-name").and_then(|v| v.to_str().ok());
    let mut inner = state.lock();
    let path = new_path(&mut inner, name);
    let id = inner.new_uuid().simple().to_string();
    let entry = (path.clone(), content_type(&headers), BTreeMap::new());
    storage(&mut inner).multiparts.insert(id.clone(), entry);
    Json(json!({"access_url": format!("{base}/files/{path}"), "uploadId": id})).into_response()
}

/// `PUT /files/{key}/{name}/multipart/{id}/{part}`: one part; its ETag is its SHA-256.
async fn part(
    State(state): State<SimState>,
    Path((key, name, id, part)): Path<(String, String, String, u32)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = token_ok(&state, &headers) {
        return *resp;
    }
    let etag = format!(
        "\"{}\"",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
    );
    let mut inner = state.lock();
    let Some((path, _, parts)) = storage(&mut inner).multiparts.get_mut(&id) else {
        return detail(StatusCode::NOT_FOUND, json!("Upload not found"));
    };
    if *path != format!("{key}/{name}") {
        return detail(StatusCode::NOT_FOUND, json!("Upload not found"));
    }
    parts.insert(part, body);
    let mut resp = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// `POST /files/{key}/{name}/multipart/{id}/complete`: the listed parts, in number order.
async fn complete(
    State(state): State<SimState>,
    Path((key, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = token_ok(&state, &headers) {
        return *resp;
    }
    let base = base_url(&state, &headers);
    let listed: Vec<(u32, String)> = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["parts"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some((
                p["partNumber"].as_u64()? as u32,
                p["etag"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let mut inner = state.lock();
    let Some((path, ct, parts)) = storage(&mut inner).multiparts.remove(&id) else {
        return detail(StatusCode::NOT_FOUND, json!("Upload not found"));
    };
    if path != format!("{key}/{name}") || listed.is_empty() {
        return detail(StatusCode::BAD_REQUEST, json!("Invalid multipart upload"));
    }
    let mut listed = listed;
    listed.sort_by_key(|(n, _)| *n);
    let mut whole = Vec::new();
    for (n, etag) in &listed {
        let Some(bytes) = parts.get(n) else {
            return detail(StatusCode::BAD_REQUEST, json!(format!("Part {n} missing")));
        };
        let want = format!(
            "\"{}\"",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        );
        if *etag != want || whole.len() + bytes.len() > UPLOAD_MAX {
            return detail(StatusCode::BAD_REQUEST, json!(format!("Part {n} rejected")));
        }
        whole.extend_from_slice(bytes);
    }
    stored(&mut inner, path.clone(), Bytes::from(whole), ct);
    Json(json!({"access_url": format!("{base}/files/{path}")})).into_response()
}

/// `POST /storage/upload/initiate?storage_type=…`: a signed URL to PUT the file to.
async fn initiate(
    State(state): State<SimState>,
    RawQuery(_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = gate::authenticate::<Fal>(&state, &headers) {
        return *resp;
    }
    let base = base_url(&state, &headers);
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ct = req["content_type"]
        .as_str()
        .unwrap_or("application/octet-stream");
    let mut inner = state.lock();
    let path = new_path(&mut inner, req["file_name"].as_str());
    let ticket = inner.new_uuid().simple().to_string();
    let entry = (path.clone(), ct.to_owned());
    storage(&mut inner).tickets.insert(ticket.clone(), entry);
    Json(json!({
        "upload_url": format!("{base}/storage/upload/put/{ticket}"),
        "file_url": format!("{base}/files/{path}"),
    }))
    .into_response()
}

/// `PUT {upload_url}`: the signed URL carries the right to write; no auth header.
async fn signed_put(
    State(state): State<SimState>,
    Path(ticket): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = state.lock();
    let Some((path, ct)) = storage(&mut inner).tickets.remove(&ticket) else {
        return detail(StatusCode::FORBIDDEN, json!("Invalid or used upload URL"));
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or(ct, str::to_owned);
    stored(&mut inner, path, body, ct);
    StatusCode::OK.into_response()
}

/// `GET /files/{key}/{name}`: a stored file, public.
async fn download(
    State(state): State<SimState>,
    Path((key, name)): Path<(String, String)>,
) -> Response {
    let file = storage(&mut state.lock())
        .files
        .get(&format!("{key}/{name}"))
        .cloned();
    match file {
        Some((bytes, ct)) => {
            let ct = HeaderValue::from_str(&ct)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            ([(header::CONTENT_TYPE, ct)], bytes).into_response()
        }
        None => detail(StatusCode::NOT_FOUND, json!("File not found")),
    }
}
