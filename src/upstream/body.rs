//! Request bodies that carry media without copying them. A provider builds its JSON body
//! as before, with each payload ([`crate::media::Media::Inline`]) serialized as a marker
//! string; [`JsonBody`] serializes the JSON once (small: no media in it), cuts it at the
//! markers and sends the pieces in order: JSON text, the payload's `data:<mime>;base64,`
//! prefix (or nothing, for raw base64), the payload's base64 text (the batch's shared
//! [`bytes::Bytes`], referenced, not copied), JSON text again. What reaches the provider
//! is byte for byte the JSON a data URI in the body would have given; a request holds
//! only its own JSON text, whatever the size of the video.
//!
//! The body's length is known, so it goes with a `Content-Length`, and its frames are at
//! most [`FRAME`] bytes (a transport that buffers a frame whole buffers little).

use super::{ErrorClass, UpstreamError};
use crate::media::{self, Blob, Form};
use crate::model::GenerationRequest;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The largest frame a body yields (slices of the shared text: no copy).
pub const FRAME: usize = 256 * 1024;

/// A JSON request body assembled from shared pieces.
#[derive(Debug, Clone)]
pub struct JsonBody {
    pieces: VecDeque<Bytes>,
    remaining: u64,
}

fn body_error(why: String) -> UpstreamError {
    UpstreamError::new(ErrorClass::Job, format!("request body: {why}"))
}

impl JsonBody {
    /// `value` as JSON with every marker replaced by its payload from `blobs`. A marker
    /// that names no payload of `blobs` is an error (nothing is sent).
    pub fn new<T: serde::Serialize>(
        value: &T,
        blobs: &[&Arc<Blob>],
    ) -> Result<JsonBody, UpstreamError> {
        let text = Bytes::from(serde_json::to_vec(value).map_err(|e| body_error(e.to_string()))?);
        let needle = format!("\"{}", media::marker_prefix());
        let needle = needle.as_bytes();
        let mut pieces = VecDeque::new();
        let mut at = 0;
        while let Some(found) = find(&text[at..], needle) {
            // The marker is a whole JSON string (no character in it is escaped): from
            // after its opening quote to the next quote.
            let open = at + found + 1;
            let close = text[open..]
                .iter()
                .position(|&b| b == b'"')
                .map(|i| open + i)
                .ok_or_else(|| body_error("unterminated media marker".into()))?;
            let marker = std::str::from_utf8(&text[open..close]).unwrap_or_default();
            let (sha, form) = media::parse_marker(marker)
                .ok_or_else(|| body_error(format!("unreadable media marker {marker:?}")))?;
            let blob = blobs
                .iter()
                .find(|b| b.sha256() == sha)
                .ok_or_else(|| body_error(format!("no payload {sha} in the request")))?;
            pieces.push_back(text.slice(at..open));
            if form == Form::DataUri {
                pieces.push_back(Bytes::from(blob.data_uri_prefix()));
            }
            pieces.push_back(blob.base64().clone());
            at = close;
        }
        pieces.push_back(text.slice(at..));
        pieces.retain(|p| !p.is_empty());
        let remaining = pieces.iter().map(|p| p.len() as u64).sum();
        Ok(JsonBody { pieces, remaining })
    }

    /// The body of a provider's JSON for this request (its payloads spliced in).
    pub fn for_request<T: serde::Serialize>(
        value: &T,
        req: &GenerationRequest,
    ) -> Result<JsonBody, UpstreamError> {
        JsonBody::new(value, &req.blobs())
    }

    /// Bytes left to send (all of them before the first frame).
    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The whole body in one buffer (tests; a real request streams it).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.remaining as usize);
        for p in &self.pieces {
            out.extend_from_slice(p);
        }
        out
    }
}

impl From<JsonBody> for reqwest::Body {
    fn from(b: JsonBody) -> reqwest::Body {
        reqwest::Body::wrap(b)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl http_body::Body for JsonBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let Some(front) = this.pieces.front_mut() else {
            return Poll::Ready(None);
        };
        let chunk = if front.len() > FRAME {
            front.split_to(FRAME)
        } else {
            this.pieces.pop_front().unwrap_or_default()
        };
        this.remaining -= chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Sets `body` as a request's JSON body.
pub fn json(rb: reqwest::RequestBuilder, body: JsonBody) -> reqwest::RequestBuilder {
    rb.header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
}

#[cfg(test)]
mod tests;
