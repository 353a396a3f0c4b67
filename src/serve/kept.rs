//! One download of a batch's kept variants: `GET /console/batches/<id>/kept.zip` and
//! `GET /api/v1/batches/<id>/kept.zip`, a zip of the outputs marked *keep* (each
//! `<job>.mp4`, stored as it is: an mp4 does not compress) and `manifest.json` (per file:
//! job id, prompt, file name, bytes, SHA-256). Bounded before a byte is sent: at most
//! [`MAX_KEPT_FILES`] files and [`MAX_KEPT_BYTES`] in all (413 naming the limit).
//!
//! The archive is written as it is sent (async_zip's stream writer into a pipe that feeds
//! the response body), each output read from the output directory or the object store as
//! it goes, so nothing is held whole in memory. Entries carry their CRC and sizes in a
//! data descriptor after the data (the way a zip is streamed); unzip, 7-Zip, the
//! platforms' archive tools and any reader of the central directory open it. An output
//! that cannot be read midway aborts the response rather than ending a truncated archive
//! quietly.

use super::error::ApiError;
use super::outputs::{output_of, Output};
use super::AppState;
use crate::queue::Mark;
use async_zip::base::write::ZipFileWriter;
use async_zip::{Compression, ZipEntryBuilder};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::sync::Arc;
use tokio_util::compat::TokioAsyncReadCompatExt;

/// The most files one download holds.
pub const MAX_KEPT_FILES: usize = 1000;
/// The most output bytes one download holds.
pub const MAX_KEPT_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// The pipe between the zip writer and the response body.
const PIPE_BYTES: usize = 256 * 1024;

/// One file of the archive, as the manifest lists it.
#[derive(Debug, Clone, Serialize)]
pub struct KeptFile {
    pub job_id: String,
    pub prompt: String,
    /// Its name in the archive.
    pub file: String,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    #[serde(skip)]
    output: Output,
    /// When the job finished (epoch ms): the entry's date.
    #[serde(skip)]
    finished_at: u64,
}

/// What the archive holds, worked out (and bounded) before it is sent.
async fn plan(st: &AppState, id: &str) -> Result<Vec<KeptFile>, ApiError> {
    let info = super::api::info(st, id).await?;
    let marks = st.queue.marks(id).await?;
    let kept: Vec<String> = marks
        .into_iter()
        .filter(|(_, m)| *m == Mark::Keep)
        .map(|(job, _)| job)
        .collect();
    if kept.len() > MAX_KEPT_FILES {
        return Err(ApiError::TooLarge {
            field: "marks".into(),
            message: format!(
                "{} variants are kept; one download holds at most {MAX_KEPT_FILES}",
                kept.len()
            ),
        });
    }
    let mut files = Vec::new();
    let mut total = 0u64;
    for job in kept {
        let Ok(rec) = super::outputs::job_of(st, &info, &job).await else {
            continue;
        };
        // Kept but without an output (failed after a retry, say): not in the archive.
        let Some(output) = output_of(st, &rec) else {
            continue;
        };
        total = total.saturating_add(rec.bytes.unwrap_or(0));
        if total > MAX_KEPT_BYTES {
            return Err(ApiError::TooLarge {
                field: "marks".into(),
                message: format!("the kept outputs are over {MAX_KEPT_BYTES} bytes in all"),
            });
        }
        let line = crate::sink::ResultLine::from_stored(&rec, id, 0);
        files.push(KeptFile {
            file: format!("{}.mp4", rec.job_id),
            job_id: rec.job_id.clone(),
            prompt: line.prompt,
            bytes: rec.bytes,
            sha256: rec.sha256.clone(),
            finished_at: rec.finished_at.unwrap_or(0),
            output,
        });
    }
    Ok(files)
}

type ZipError = Box<dyn std::error::Error + Send + Sync>;

/// A zip entry's date (UTC) from epoch milliseconds; zip's 1980 floor when out of range.
fn zip_date(ms: u64) -> async_zip::ZipDateTime {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    // `YYYY-MM-DDTHH:MM:SSZ`
    let text = humantime::format_rfc3339_seconds(t).to_string();
    let num = |r: std::ops::Range<usize>| text.get(r).and_then(|x| x.parse::<u32>().ok());
    let b = async_zip::ZipDateTimeBuilder::new();
    match (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) {
        (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) if (1980..2108).contains(&y) => b
            .year(y as i32)
            .month(mo)
            .day(d)
            .hour(h)
            .minute(mi)
            .second(s)
            .build(),
        _ => b.year(1980).month(1).day(1).build(),
    }
}

/// Writes the archive into `w`.
async fn write_zip(
    st: Arc<AppState>,
    id: String,
    files: Vec<KeptFile>,
    w: tokio::io::DuplexStream,
) -> Result<(), ZipError> {
    let mut zip = ZipFileWriter::with_tokio(w);
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "batch_id": id,
        "files": files,
    }))?;
    let now = crate::queue::now_ms();
    let entry = ZipEntryBuilder::new("manifest.json".to_string().into(), Compression::Stored)
        .last_modification_date(zip_date(now));
    zip.write_entry_whole(entry, &manifest).await?;
    for f in &files {
        let entry = ZipEntryBuilder::new(f.file.clone().into(), Compression::Stored)
            .last_modification_date(zip_date(f.finished_at));
        let mut ew = zip.write_entry_stream(entry).await?;
        match &f.output {
            Output::Local(path) => {
                let file = tokio::fs::File::open(path).await?;
                futures::io::copy(&mut file.compat(), &mut ew).await?;
            }
            Output::Store(rel) => {
                let store = st.store.as_ref().ok_or("no results store")?;
                let (_, body) = store
                    .get_stream(rel)
                    .await?
                    .ok_or_else(|| format!("{rel} is not in the results store"))?;
                let mut reader = body
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .into_async_read();
                futures::io::copy(&mut reader, &mut ew).await?;
            }
        }
        ew.close().await?;
    }
    let mut w = zip.close().await?.into_inner();
    tokio::io::AsyncWriteExt::shutdown(&mut w).await?;
    Ok(())
}

/// The streamed archive, or the error found before sending.
async fn respond(st: Arc<AppState>, id: String) -> Result<Response, ApiError> {
    let files = plan(&st, &id).await?;
    let (w, r) = tokio::io::duplex(PIPE_BYTES);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let batch = id.clone();
    tokio::spawn(async move {
        let res = write_zip(st, batch.clone(), files, w).await;
        if let Err(e) = &res {
            tracing::warn!(batch_id = %batch, error = %e, "The kept download failed midway.");
        }
        let _ = done_tx.send(res.is_ok());
    });
    // After the pipe's end: an error item when the writer failed, so the connection is
    // cut instead of a short archive ending as if whole.
    let tail = futures::stream::once(async move {
        match done_rx.await {
            Ok(true) => None,
            _ => Some(Err(std::io::Error::other(
                "the archive could not be completed",
            ))),
        }
    })
    .filter_map(futures::future::ready);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(r).chain(tail));
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}-kept.zip\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

/// `GET /api/v1/batches/<id>/kept.zip` (any token).
pub async fn api(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    respond(st, id)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /console/batches/<id>/kept.zip` (signed in).
pub async fn console(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = super::console::session_or_401(&st, &headers).await {
        return e.into_response();
    }
    respond(st, id)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_dates_follow_the_finish_time() {
        // 2026-12-01T17:45:48Z
        let d = zip_date(1_796_147_148_000);
        let got = (
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
        );
        assert_eq!(got, (2026, 12, 1, 17, 45, 48));
        assert_eq!(zip_date(0).year(), 1980, "before zip's epoch");
    }
}
