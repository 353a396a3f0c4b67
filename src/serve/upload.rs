//! Uploads: `POST /api/v1/uploads` takes a clip or image as the raw request body (its
//! `Content-Type` says which), and the console's new-batch form takes the same as
//! multipart parts; both go through [`store`], which streams the bytes to
//! `<output.dir>/uploads/` under their SHA-256, never holding them whole in memory, and
//! refuses one byte past `limits.max_video_bytes` (images: the smaller of that and 10 MiB,
//! as for local files), naming the field and the limit. The directory is bounded:
//! `[serve] max_uploads` files and `max_upload_bytes` bytes, past which new uploads are
//! refused (507), and [`sweep`] (run every so often by [`spawn_sweeper`]) removes uploads
//! no batch used for `[serve] upload_ttl`.
//!
//! A batch names an upload as `upload:<sha256>.<ext>`; only names of that shape, of a
//! file that exists, map to a path, so no path from a request reaches the filesystem. At
//! enqueue the file is read, checked and stored like any local file of `restyle enqueue`
//! (in Redis, or the object store when one is configured), so the batch keeps its own
//! copy; using an upload restarts its time to live ([`touch`]).

use super::error::ApiError;
use super::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use futures::{Stream, StreamExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// Largest image upload (as for local image files).
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// The media types accepted, their file extension, and whether each is a video.
const TYPES: &[(&str, &str, bool)] = &[
    ("video/mp4", "mp4", true),
    ("video/quicktime", "mov", true),
    ("video/webm", "webm", true),
    ("image/png", "png", false),
    ("image/jpeg", "jpg", false),
    ("image/webp", "webp", false),
    ("image/gif", "gif", false),
];

/// What an upload must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A clip or an image (the API's raw uploads).
    Any,
    Video,
    Image,
}

/// A stored upload.
#[derive(Debug, Clone)]
pub struct Stored {
    /// `upload:<sha256>.<ext>`, as a batch names it.
    pub reference: String,
    pub bytes: u64,
    pub sha256: String,
}

fn dir(st: &AppState) -> PathBuf {
    st.settings.output.dir.join("uploads")
}

/// The upload file name (`<sha256>.<ext>`) of a reference of the right shape.
fn name_of(value: &str) -> Option<&str> {
    let name = value.strip_prefix("upload:")?;
    let shaped = name.split_once('.').is_some_and(|(hash, ext)| {
        hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && TYPES.iter().any(|(_, e, _)| *e == ext)
    });
    shaped.then_some(name)
}

/// The path an `upload:<sha256>.<ext>` reference names, when it has that shape and the
/// file exists; `None` when the value is no upload reference at all.
pub fn resolve(st: &AppState, field: &str, value: &str) -> Result<Option<String>, ApiError> {
    if !value.starts_with("upload:") {
        return Ok(None);
    }
    let Some(name) = name_of(value) else {
        return Err(ApiError::invalid(
            field,
            "an upload reference is upload:<sha256>.<ext>, as POST /api/v1/uploads returns it",
        ));
    };
    let path = dir(st).join(name);
    if !path.is_file() {
        return Err(ApiError::invalid(field, "no such upload"));
    }
    Ok(Some(path.to_string_lossy().into_owned()))
}

/// Restarts the time to live of the uploads a batch just used (best effort).
pub fn touch(st: &AppState, references: &[&str]) {
    for name in references.iter().filter_map(|r| name_of(r)) {
        let path = dir(st).join(name);
        if let Ok(f) = std::fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
    }
}

/// The media type of a part or body: its `Content-Type` (parameters dropped), or, when
/// that says nothing (`application/octet-stream`, none), its file name's extension.
pub fn media_type(content_type: Option<&str>, file_name: Option<&str>) -> String {
    let ct = content_type
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !ct.is_empty() && ct != "application/octet-stream" {
        return ct;
    }
    let ext = file_name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let ext = if ext == "jpeg" { "jpg".to_owned() } else { ext };
    TYPES
        .iter()
        .find(|(_, e, _)| *e == ext)
        .map(|(m, _, _)| (*m).to_owned())
        .unwrap_or(ct)
}

/// Files and bytes in the uploads directory now (partial files included).
async fn usage(dir: &Path) -> (usize, u64) {
    let (mut files, mut bytes) = (0usize, 0u64);
    if let Ok(mut rd) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(e)) = rd.next_entry().await {
            if let Ok(m) = e.metadata().await {
                if m.is_file() {
                    files += 1;
                    bytes += m.len();
                }
            }
        }
    }
    (files, bytes)
}

/// Streams `body` (the upload of `field`, of media type `mime`) into the uploads
/// directory; refuses a type other than `want`, one byte past the cap, and a full
/// directory. Nothing is kept of a refused upload.
pub async fn store<S, E>(
    st: &AppState,
    field: &str,
    mime: &str,
    want: Want,
    body: S,
) -> Result<Stored, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let accepted = TYPES.iter().filter(|(_, _, video)| match want {
        Want::Any => true,
        Want::Video => *video,
        Want::Image => !*video,
    });
    let Some(&(_, ext, video)) = accepted.clone().find(|(m, _, _)| *m == mime) else {
        let known: Vec<&str> = accepted.map(|(m, _, _)| *m).collect();
        let (field, what) = match want {
            Want::Any => ("content-type", String::new()),
            _ => (field, format!(" (this is {mime:?})")),
        };
        return Err(ApiError::invalid(
            field,
            format!("must be one of {}{what}", known.join(", ")),
        ));
    };
    let cap = if video {
        st.settings.limits.max_video_bytes
    } else {
        st.settings.limits.max_video_bytes.min(MAX_IMAGE_BYTES)
    };
    let dir = dir(st);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::Internal(format!("creating {}: {e}", dir.display())))?;
    let limits = &st.settings.serve;
    let (files, used) = usage(&dir).await;
    if files >= limits.max_uploads {
        return Err(ApiError::Full {
            field: field.to_owned(),
            message: format!(
                "the uploads directory holds its most files ({}, serve.max_uploads); try again \
                 once older uploads expire (serve.upload_ttl)",
                limits.max_uploads
            ),
        });
    }
    let room = limits.max_upload_bytes.saturating_sub(used);
    let partial = dir.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
    let (sha, n) = match receive(body, &partial, cap, room).await {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(match e {
                Received::TooLarge => ApiError::TooLarge {
                    field: field.to_owned(),
                    message: format!("at most {cap} bytes (limits.max_video_bytes)"),
                },
                Received::Full => ApiError::Full {
                    field: field.to_owned(),
                    message: format!(
                        "the uploads directory holds its most bytes ({}, serve.max_upload_bytes); \
                         try again once older uploads expire (serve.upload_ttl)",
                        limits.max_upload_bytes
                    ),
                },
                Received::Empty => ApiError::invalid(field, "the upload is empty"),
                Received::Failed(why) => ApiError::Internal(why),
            });
        }
    };
    let name = format!("{sha}.{ext}");
    tokio::fs::rename(&partial, dir.join(&name))
        .await
        .map_err(|e| ApiError::Internal(format!("storing the upload: {e}")))?;
    tracing::info!(upload = %name, bytes = n, field, "Upload stored.");
    Ok(Stored {
        reference: format!("upload:{name}"),
        bytes: n,
        sha256: sha,
    })
}

/// `POST /api/v1/uploads`.
pub async fn upload(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let mime = media_type(ct.or(Some("none")), None);
    let stored = store(&st, "body", &mime, Want::Any, body.into_data_stream()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "upload": stored.reference, "bytes": stored.bytes, "sha256": stored.sha256 })),
    ))
}

enum Received {
    TooLarge,
    Full,
    Empty,
    Failed(String),
}

/// Streams the body into `path`, hashing it; stops at the chunk that passes `cap` (or
/// the directory's `room`).
async fn receive<S, E>(
    mut body: S,
    path: &Path,
    cap: u64,
    room: u64,
) -> Result<(String, u64), Received>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let io = |e: std::io::Error| Received::Failed(format!("writing the upload: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hash = Sha256::new();
    let mut n: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Received::Failed(format!("reading the upload: {e}")))?;
        n += chunk.len() as u64;
        if n > cap {
            return Err(Received::TooLarge);
        }
        if n > room {
            return Err(Received::Full);
        }
        hash.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    if n == 0 {
        return Err(Received::Empty);
    }
    file.sync_all().await.map_err(io)?;
    Ok((hex::encode(hash.finalize()), n))
}

/// Removes uploads (and partial files) last written or used more than `ttl` ago;
/// returns how many it removed.
pub async fn sweep(dir: &Path, ttl: Duration) -> usize {
    let mut removed = 0;
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else {
        return 0;
    };
    let now = SystemTime::now();
    while let Ok(Some(e)) = rd.next_entry().await {
        let Ok(m) = e.metadata().await else { continue };
        let old = m
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > ttl);
        if m.is_file() && old && tokio::fs::remove_file(e.path()).await.is_ok() {
            removed += 1;
        }
    }
    removed
}

/// How often [`spawn_sweeper`] sweeps: a quarter of the time to live, from 50 ms to 10 min.
pub fn sweep_every(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(600))
}

/// Sweeps the uploads directory every [`sweep_every`] until the task is dropped.
pub fn spawn_sweeper(st: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ttl = st.settings.serve.upload_ttl;
        let mut tick = tokio::time::interval(sweep_every(ttl));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let n = sweep(&dir(&st), ttl).await;
            if n > 0 {
                tracing::info!(removed = n, "Expired uploads removed.");
            }
        }
    })
}
