//! Downloads an output into `<out>/<batch>/<job>.mp4` through the egress client (https
//! only unless allowed; no loopback, private or metadata address unless allowed, checked
//! after DNS and on every redirect hop), with the provider's key only where it says so
//! (its own origin, never across a redirect to another), size capped, a transient failure when no byte
//! comes for `output.idle_timeout`, streamed through sha256 into a temp file, fsynced and
//! renamed into place; or, with an object store, streamed into it ([`download_to_store`]).

use super::SinkError;
use crate::config::OutputSettings;
use crate::egress::{self, Egress};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Path relative to the output directory.
    pub relative: String,
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// The file name for a job's output. Built from validated ids only, never from a URL.
pub fn relative_path(batch_id: &str, job_id: &str) -> String {
    format!("{batch_id}/{job_id}.mp4")
}

/// Downloads `url` to the job's file, with `auth` as its `Authorization` header when the
/// provider gives one for this URL ([`crate::upstream::Upstream::download_auth`]; a
/// redirect to another origin drops it). An egress refusal is [`SinkError::Refused`].
pub async fn download(
    egress: &Egress,
    out: &OutputSettings,
    url: &str,
    auth: Option<reqwest::header::HeaderValue>,
    batch_id: &str,
    job_id: &str,
) -> Result<Downloaded, SinkError> {
    let resp = fetch(egress, out, url, auth).await?;
    let relative = relative_path(batch_id, job_id);
    let path = out.dir.join(&relative);
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| SinkError::io(dir, e))?;
    let tmp = dir.join(format!(".{job_id}.{}.part", uuid::Uuid::new_v4().simple()));
    let res = write_stream(resp, &tmp, out.max_download_bytes, out.idle_timeout).await;
    let (sha256, bytes) = match res {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| SinkError::io(&path, e))?;
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await; // make the rename durable
    }
    Ok(Downloaded {
        relative,
        path,
        sha256,
        bytes,
    })
}

/// The store's name for a job's output on its `claim`-th delivery (see
/// [`super::store`]): built from validated ids only.
pub fn store_name(batch_id: &str, job_id: &str, claim: u64) -> String {
    format!("{batch_id}/{job_id}.d{claim}.mp4")
}

/// Downloads `url` straight into the object store as `rel` (streamed, never on disk).
pub async fn download_to_store(
    egress: &Egress,
    out: &OutputSettings,
    store: &super::store::ObjectSink,
    url: &str,
    auth: Option<reqwest::header::HeaderValue>,
    rel: &str,
) -> Result<(String, u64), SinkError> {
    let resp = fetch(egress, out, url, auth).await?;
    let body = body(resp, out.idle_timeout);
    store
        .upload(rel, "video/mp4", out.max_download_bytes, Box::pin(body))
        .await
}

/// Sends the GET and checks its answer's head: expired links, errors, a declared length
/// over the cap.
async fn fetch(
    egress: &Egress,
    out: &OutputSettings,
    url: &str,
    auth: Option<reqwest::header::HeaderValue>,
) -> Result<reqwest::Response, SinkError> {
    let parsed = url::Url::parse(url).map_err(|e| SinkError::Refused(format!("bad URL: {e}")))?;
    let mut req = egress
        .get(&parsed)
        .map_err(|r| SinkError::Refused(r.to_string()))?;
    if let Some(v) = auth {
        req = req.header(reqwest::header::AUTHORIZATION, v);
    }
    // Connecting has its own limit; after it, the answer's head is awaited like any byte.
    let wait = out.connect_timeout + out.idle_timeout;
    let resp = match tokio::time::timeout(wait, req.send()).await {
        Err(_) => return Err(idle(out.idle_timeout)),
        Ok(Err(e)) => return Err(request_error(e)),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status().as_u16();
    if status == 403 || status == 404 || status == 410 {
        return Err(SinkError::Expired(status));
    }
    if !resp.status().is_success() {
        return Err(SinkError::Transient(format!("HTTP {status}")));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > out.max_download_bytes)
    {
        return Err(SinkError::Refused(format!(
            "output larger than output.max_download_bytes ({})",
            out.max_download_bytes
        )));
    }
    Ok(resp)
}

/// The answer's body as chunks, a transient error when no byte comes for `idle_limit`.
fn body(
    resp: reqwest::Response,
    idle_limit: Duration,
) -> impl futures::Stream<Item = Result<bytes::Bytes, SinkError>> {
    let stream = resp.bytes_stream();
    futures::stream::unfold(Some(Box::pin(stream)), move |st| async move {
        let mut stream = st?;
        match tokio::time::timeout(idle_limit, stream.next()).await {
            Err(_) => Some((Err(idle(idle_limit)), None)),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some((Err(request_error(e)), None)),
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
        }
    })
}

/// A request that failed: refused by the egress policy (permanent), or transient.
fn request_error(e: reqwest::Error) -> SinkError {
    if let Some(r) = egress::refusal(&e) {
        return SinkError::Refused(r.to_string());
    }
    SinkError::Transient(egress::explain(e))
}

fn idle(limit: Duration) -> SinkError {
    SinkError::Transient(format!(
        "no byte received for {} (output.idle_timeout)",
        humantime::format_duration(limit)
    ))
}

async fn write_stream(
    resp: reqwest::Response,
    tmp: &Path,
    cap: u64,
    idle_limit: Duration,
) -> Result<(String, u64), SinkError> {
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| SinkError::io(tmp, e))?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut stream = Box::pin(body(resp, idle_limit));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        if bytes > cap {
            return Err(SinkError::Refused(format!(
                "output larger than output.max_download_bytes ({cap})"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| SinkError::io(tmp, e))?;
    }
    file.sync_all().await.map_err(|e| SinkError::io(tmp, e))?;
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// sha256 of a file on disk, hex (for checks and tests).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let data = std::fs::read(path)?;
    Ok(hex::encode(Sha256::digest(&data)))
}
