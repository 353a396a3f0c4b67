//! Output media: the bytes of each generation's MP4, the URLs every protocol hands out for
//! them, and the CDN-like route serving them (`/sim/files/{token}.mp4`, byte ranges, 403
//! after the output TTL, and on request a redirect elsewhere or a body that stalls). It
//! counts downloads that carry an `Authorization` header, and with `oxen_result_auth`
//! serves an Oxen generation's file only with its owner's Bearer key.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::time::Instant;

use crate::state::{SimState, View};

/// Real, playable 4 s 320x180 H.264 MP4s, each visibly different (colour, pattern and a
/// numbered caption), made once with ffmpeg (the commands are in `assets/README.md`).
/// A generation's output is one of them, chosen by its prompt.
const CLIPS: [&[u8]; 6] = [
    include_bytes!("../assets/variant-1.mp4"),
    include_bytes!("../assets/variant-2.mp4"),
    include_bytes!("../assets/variant-3.mp4"),
    include_bytes!("../assets/variant-4.mp4"),
    include_bytes!("../assets/variant-5.mp4"),
    include_bytes!("../assets/variant-6.mp4"),
];

/// Which sample clip a prompt's output is: the first eight bytes of the prompt's SHA-256,
/// modulo the number of clips, so the same prompt always looks the same and different
/// prompts mostly look different.
pub fn clip_for(prompt: &str) -> usize {
    let digest = Sha256::digest(prompt.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % CLIPS.len() as u64) as usize
}

/// The exact bytes served as the output of `generation_id` whose prompt chose `clip`
/// ([`clip_for`]): that sample MP4 followed by a `free` box holding the id, so every
/// output differs and still plays.
pub fn output_bytes(clip: usize, generation_id: &str) -> Vec<u8> {
    let sample = CLIPS[clip % CLIPS.len()];
    let id = generation_id.as_bytes();
    let size = u32::try_from(8 + id.len()).expect("generation id fits an MP4 box");
    let mut out = Vec::with_capacity(sample.len() + 8 + id.len());
    out.extend_from_slice(sample);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(b"free");
    out.extend_from_slice(id);
    out
}

/// The URL-safe file token for a generation id.
fn token_for(generation_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(generation_id)
}

/// `http://<Host>` as the client addressed us (else the bound address), so that output
/// URLs work whatever address the simulator is reached at.
pub(crate) fn base_url(state: &SimState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .or_else(|| state.lock().bound.map(|a| a.to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    format!("http://{host}")
}

/// The URL of a generation's output under `base` (see [`base_url`]).
pub(crate) fn output_url(base: &str, generation_id: &str) -> String {
    format!("{base}/sim/files/{}.mp4", token_for(generation_id))
}

fn id_from_token(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    String::from_utf8(bytes).ok()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// `GET /sim/files/{token}.mp4`.
pub(crate) async fn download(
    State(state): State<SimState>,
    method: Method,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = file.strip_suffix(".mp4").and_then(id_from_token) else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    let now = Instant::now();
    let (expired, redirect, stall, clip) = {
        let mut inner = state.lock();
        if headers.contains_key(header::AUTHORIZATION) {
            inner.stats.downloads_with_authorization += 1;
        }
        if let Some(denied) = crate::oxen::download_denied(&mut inner, &id, &headers) {
            return denied;
        }
        let ttl = inner.knobs.output_ttl;
        let redirect = inner.knobs.output_redirect.clone();
        let stall = inner.knobs.output_stall_after;
        match inner.view(&id, now) {
            Some(View::Completed { at, clip, .. }) => {
                let expired = ttl.is_some_and(|ttl| now >= at + ttl);
                if expired {
                    inner.stats.forbidden_total += 1;
                }
                (expired, redirect, stall, clip)
            }
            _ => return plain(StatusCode::NOT_FOUND, "Not Found"),
        }
    };
    if expired {
        return plain(StatusCode::FORBIDDEN, "AccessDenied: Request has expired");
    }
    if let Some(to) = redirect.and_then(|to| HeaderValue::from_str(&to).ok()) {
        return (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    }

    let body = output_bytes(clip, &id);
    if let Some(sent) = stall {
        return stalled(body, sent);
    }
    let total = body.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, total));
    let mut resp = match range {
        None | Some(Range::Ignored) => {
            if method == Method::GET {
                state.count(|s| s.downloads_total += 1);
            }
            (StatusCode::OK, body).into_response()
        }
        Some(Range::Unsatisfiable) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        Some(Range::Bytes(start, end)) => {
            let mut r = (StatusCode::PARTIAL_CONTENT, body[start..=end].to_vec()).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp
}

/// The whole file announced (`Content-Length`), its first `sent` bytes sent, then nothing
/// more: the connection stays open until the client gives up.
fn stalled(body: Vec<u8>, sent: u64) -> Response {
    let total = body.len();
    let head = body[..usize::try_from(sent).unwrap_or(total).min(total)].to_vec();
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(head))])
        .chain(futures::stream::pending());
    let mut resp = Response::new(Body::from_stream(chunks));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    resp
}

#[derive(Debug, PartialEq)]
enum Range {
    /// Not a single byte range we understand: serve the whole file.
    Ignored,
    Unsatisfiable,
    /// Inclusive bounds.
    Bytes(usize, usize),
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range against `total` bytes.
fn parse_range(value: &str, total: usize) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Ignored;
    };
    if spec.contains(',') {
        return Range::Ignored;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Ignored;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<usize>().ok();
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Range::Ignored,
        (true, false) => match parse(b) {
            Some(0) => return Range::Unsatisfiable,
            Some(n) => (total.saturating_sub(n), total.saturating_sub(1)),
            None => return Range::Ignored,
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return Range::Ignored;
            };
            let end = if b.is_empty() {
                Some(usize::MAX)
            } else {
                parse(b)
            };
            let Some(end) = end else {
                return Range::Ignored;
            };
            if end < start {
                return Range::Ignored;
            }
            (start, end.min(total.saturating_sub(1)))
        }
    };
    if total == 0 || start >= total {
        Range::Unsatisfiable
    } else {
        Range::Bytes(start, end)
    }
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::Bytes(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range::Bytes(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range::Bytes(90, 99));
        assert_eq!(parse_range("bytes=50-500", 100), Range::Bytes(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Ignored);
        assert_eq!(parse_range("items=0-1", 100), Range::Ignored);
    }

    #[test]
    fn outputs_are_unique_mp4s() {
        let a = output_bytes(2, "a:klingai/video-o1-video-to-video-edit");
        let b = output_bytes(2, "b:klingai/video-o1-video-to-video-edit");
        assert_ne!(a, b);
        assert_eq!(&a[4..8], b"ftyp");
        let tail = &a[CLIPS[2].len()..];
        assert_eq!(
            u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize,
            tail.len()
        );
        assert_eq!(&tail[4..8], b"free");
        assert_eq!(id_from_token(&token_for("x:y/z")).as_deref(), Some("x:y/z"));
    }

    #[test]
    fn the_clips_are_distinct_small_mp4s_and_prompts_spread_over_them() {
        for (i, c) in CLIPS.iter().enumerate() {
            assert_eq!(&c[4..8], b"ftyp", "clip {i}");
            assert!(c.len() <= 60 * 1024, "clip {i}: {} bytes", c.len());
            for d in &CLIPS[i + 1..] {
                assert_ne!(c, d);
            }
        }
        assert_eq!(clip_for("neon night"), clip_for("neon night"));
        let used: std::collections::HashSet<usize> =
            (0..64).map(|i| clip_for(&format!("prompt {i}"))).collect();
        assert_eq!(used.len(), CLIPS.len(), "64 prompts reach every clip");
    }
}
