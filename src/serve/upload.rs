//! Uploads: `POST /api/v1/uploads` takes a clip or image as the raw request body (its
//! `Content-Type` says which), streamed to `<output.dir>/uploads/` under its SHA-256 and
//! never held whole in memory, refused (413) one byte past `limits.max_video_bytes`
//! (images: the smaller of that and 10 MiB, as for local files). A batch names an upload
//! as `upload:<sha256>.<ext>`; only names of that shape, of a file that exists, map to a
//! path, so no path from a request reaches the filesystem. At enqueue the file is read,
//! checked and stored like any local file of `restyle enqueue` (in Redis, or the object
//! store when one is configured).

use super::error::ApiError;
use super::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Largest image upload (as for local image files).
const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

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

fn dir(st: &AppState) -> PathBuf {
    st.settings.output.dir.join("uploads")
}

/// The path an `upload:<sha256>.<ext>` reference names, when it has that shape and the
/// file exists; `None` when the value is no upload reference at all.
pub fn resolve(st: &AppState, field: &str, value: &str) -> Result<Option<String>, ApiError> {
    let Some(name) = value.strip_prefix("upload:") else {
        return Ok(None);
    };
    let shaped = name.split_once('.').is_some_and(|(hash, ext)| {
        hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && TYPES.iter().any(|(_, e, _)| *e == ext)
    });
    if !shaped {
        return Err(ApiError::invalid(
            field,
            "an upload reference is upload:<sha256>.<ext>, as POST /api/v1/uploads returns it",
        ));
    }
    let path = dir(st).join(name);
    if !path.is_file() {
        return Err(ApiError::invalid(field, "no such upload"));
    }
    Ok(Some(path.to_string_lossy().into_owned()))
}

pub async fn upload(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let Some(&(_, ext, video)) = TYPES.iter().find(|(m, _, _)| *m == mime) else {
        let known: Vec<&str> = TYPES.iter().map(|(m, _, _)| *m).collect();
        return Err(ApiError::invalid(
            "content-type",
            format!("must be one of {}", known.join(", ")),
        ));
    };
    let cap = if video {
        st.settings.limits.max_video_bytes
    } else {
        st.settings.limits.max_video_bytes.min(MAX_IMAGE_BYTES)
    };
    let setting = "limits.max_video_bytes";
    let dir = dir(&st);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::Internal(format!("creating {}: {e}", dir.display())))?;
    let partial = dir.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
    let written = receive(body, &partial, cap).await;
    let (sha, n) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(match e {
                Received::TooLarge => ApiError::TooLarge {
                    field: "body".into(),
                    message: format!("at most {cap} bytes ({setting})"),
                },
                Received::Empty => ApiError::invalid("body", "the upload is empty"),
                Received::Failed(why) => ApiError::Internal(why),
            });
        }
    };
    let name = format!("{sha}.{ext}");
    tokio::fs::rename(&partial, dir.join(&name))
        .await
        .map_err(|e| ApiError::Internal(format!("storing the upload: {e}")))?;
    tracing::info!(upload = %name, bytes = n, "Upload stored.");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "upload": format!("upload:{name}"), "bytes": n, "sha256": sha })),
    ))
}

enum Received {
    TooLarge,
    Empty,
    Failed(String),
}

/// Streams the body into `path`, hashing it; stops one chunk past `cap`.
async fn receive(body: Body, path: &PathBuf, cap: u64) -> Result<(String, u64), Received> {
    let io = |e: std::io::Error| Received::Failed(format!("writing the upload: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hash = Sha256::new();
    let mut n: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Received::Failed(format!("reading the upload: {e}")))?;
        n += chunk.len() as u64;
        if n > cap {
            return Err(Received::TooLarge);
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
