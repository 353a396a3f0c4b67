//! The probe of a clip given by URL: HTTP range requests through the egress policy
//! ([`Egress`]), never the whole file. The first request asks for the head
//! ([`HEAD_BYTES`]); the box walk then says where the `moov` is (at the end, after the
//! media data, in many phone and editor exports) and one more range fetches it. At most
//! [`MAX_REQUESTS`] requests, [`MAX_FETCHED`] bytes and [`TIMEOUT`] each. A server that
//! answers without ranges (200 instead of 206), an unreachable one or one the policy
//! refuses is not an error: the clip is enqueued unprobed, with the reason as a note.

use super::boxes::{self, Sparse, Walk};
use super::ProbeError;
use crate::egress::Egress;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use std::time::Duration;
use url::Url;

/// Bytes asked for first.
pub const HEAD_BYTES: u64 = 64 * 1024;
/// Requests made at most per clip.
pub const MAX_REQUESTS: usize = 4;
/// Bytes fetched at most per clip (a capped `moov` and the head).
pub const MAX_FETCHED: u64 = boxes::MAX_MOOV_BYTES + 2 * HEAD_BYTES;
/// Each request's deadline, body included.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Why a remote clip was not probed (enqueued anyway, with this as the note), or why it
/// was refused (its headers are malformed).
#[derive(Debug)]
pub enum Remote {
    Skip(String),
    Bad(ProbeError),
}

/// The `ftyp` and `moov` of the clip at `url`, and its size in bytes.
pub async fn fetch(egress: &Egress, url: &Url) -> Result<(Option<Vec<u8>>, Vec<u8>, u64), Remote> {
    let (head, total) = range(egress, url, 0, HEAD_BYTES, None).await?;
    let mut fetched = head.len() as u64;
    let mut have = Sparse::default();
    have.add(0, head);
    for _ in 1..MAX_REQUESTS {
        match boxes::walk(&have, total).map_err(Remote::Bad)? {
            Walk::Found { ftyp, moov } => return Ok((ftyp, moov, total)),
            Walk::Need { start, len } => {
                let len = len
                    .min(total - start)
                    .min(MAX_FETCHED.saturating_sub(fetched));
                if len == 0 {
                    break;
                }
                let (bytes, _) = range(egress, url, start, len, Some(total)).await?;
                fetched += bytes.len() as u64;
                have.add(start, bytes);
            }
        }
    }
    Err(Remote::Skip(format!(
        "its metadata was not found within {MAX_REQUESTS} range requests of at most \
         {MAX_FETCHED} bytes"
    )))
}

/// `len` bytes at `start` (fewer at the end of the file), and the file's size from
/// `Content-Range`.
async fn range(
    egress: &Egress,
    url: &Url,
    start: u64,
    len: u64,
    total: Option<u64>,
) -> Result<(Vec<u8>, u64), Remote> {
    let end = start + len.max(1) - 1;
    let req = egress
        .get(url)
        .map_err(|e| Remote::Skip(format!("the egress policy refuses it: {e}")))?
        .header(RANGE, format!("bytes={start}-{end}"))
        .timeout(TIMEOUT);
    let mut resp = req
        .send()
        .await
        .map_err(|e| Remote::Skip(format!("the request failed: {}", crate::egress::explain(e))))?;
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {}
        StatusCode::OK => {
            return Err(Remote::Skip(
                "the server does not answer range requests (HTTP 200 to a Range request)".into(),
            ))
        }
        s => {
            return Err(Remote::Skip(format!(
                "the server answered HTTP {}",
                s.as_u16()
            )))
        }
    }
    let size = resp
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(content_range_total)
        .ok_or_else(|| Remote::Skip("the server's Content-Range gives no file size".into()))?;
    if total.is_some_and(|t| t != size) {
        return Err(Remote::Skip(
            "the file changed size between requests".into(),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        Remote::Skip(format!(
            "the download failed: {}",
            crate::egress::explain(e)
        ))
    })? {
        if body.len() as u64 + chunk.len() as u64 > len {
            return Err(Remote::Skip(format!(
                "the server sent more than the {len} bytes asked for"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, size))
}

/// The size in `bytes 0-99/1234`; `None` for `*` or anything else.
fn content_range_total(v: &str) -> Option<u64> {
    let (_, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    total.trim().parse().ok()
}

#[cfg(test)]
#[test]
fn content_range_totals() {
    assert_eq!(content_range_total("bytes 0-99/1234"), Some(1234));
    assert_eq!(content_range_total("bytes 0-99/*"), None);
    assert_eq!(content_range_total("items 0-1/2"), None);
}
