//! Media sources for a batch: the video and the reference images. Checks https URLs (with
//! the `url` crate) and data URIs (parsed and decoded by the `data-url` crate), and turns
//! local files into base64 data URIs under a size cap.

use super::{BatchLimits, Origin};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use data_url::forgiving_base64::DecodeError;
use data_url::DataUrl;
use std::convert::Infallible;
use std::path::Path;
use url::{Host, Url};

/// Reference images larger than this are refused whatever the video limit (Kling's cap).
const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// What a media source must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Video,
    Image,
}

impl Kind {
    /// Top-level MIME type a data URI must carry.
    fn mime_top(self) -> &'static str {
        match self {
            Kind::Video => "video",
            Kind::Image => "image",
        }
    }

    /// Local file extensions accepted (lowercase) and the MIME type each maps to.
    fn extensions(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Video => &[
                ("mp4", "video/mp4"),
                ("mov", "video/quicktime"),
                ("webm", "video/webm"),
            ],
            Kind::Image => &[
                ("png", "image/png"),
                ("jpg", "image/jpeg"),
                ("jpeg", "image/jpeg"),
                ("webp", "image/webp"),
            ],
        }
    }

    fn max_bytes(self, limits: &BatchLimits) -> u64 {
        match self {
            Kind::Video => limits.max_video_bytes,
            Kind::Image => limits.max_video_bytes.min(MAX_IMAGE_BYTES),
        }
    }
}

/// Checks one source and returns what is sent upstream: the URL or data URI as given,
/// or a local file's content as a data URI. The error is the message only.
pub(super) fn resolve(
    source: &str,
    kind: Kind,
    origin: &Origin,
    limits: &BatchLimits,
) -> Result<String, String> {
    let source = source.trim();
    let max = kind.max_bytes(limits);
    if source.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if source.contains("://") {
        check_url(source)?;
        Ok(source.to_owned())
    } else if has_prefix_ignore_case(source, "data:") {
        check_data_uri(source, kind, max)?;
        Ok(source.to_owned())
    } else {
        read_local_file(&origin.resolve(Path::new(source)), kind, max)
    }
}

/// https with a host; plain http only to the loopback (the local simulator).
pub(super) fn check_url(source: &str) -> Result<(), String> {
    let url = Url::parse(source).map_err(|e| format!("invalid URL {source:?}: {e}"))?;
    // The URL parser repairs `https:///x` into host `x`; a spec that wrote no host has none.
    let wrote_host = source
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.starts_with(['/', '?', '#']));
    let host = url
        .host()
        .filter(|h| wrote_host && !matches!(h, Host::Domain(d) if d.is_empty()));
    match (url.scheme(), host) {
        ("https", Some(_)) => Ok(()),
        ("http", Some(host)) if is_loopback(&host) => Ok(()),
        ("https" | "http", None) => Err(format!("URL has no host: {source:?}")),
        ("http", Some(_)) => Err(format!(
            "must be an https URL (plain http is allowed only for localhost and 127.0.0.1), got {source:?}"
        )),
        (scheme, _) => Err(format!(
            "unsupported URL scheme {scheme:?}; use https, a data URI or a local path"
        )),
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// `data:<kind>/<subtype>;base64,<payload>` with a payload that decodes to at most `max`
/// bytes.
///
/// The `data-url` crate parses the URI as browsers do (the WHATWG Fetch algorithm): the
/// header, the media type (lowercased, parameters allowed) and the forgiving base64 body.
/// On top of that a media source must declare base64 (the crate accepts percent-encoded
/// text too), carry the right top-level type, have no `#fragment` and a non-empty payload.
fn check_data_uri(source: &str, kind: Kind, max: u64) -> Result<(), String> {
    let top = kind.mime_top();
    let shape = || format!("expected data:{top}/<subtype>;base64,<payload>");
    let url = DataUrl::process(source).map_err(|e| format!("{}: {e}", shape()))?;
    // The header as written (between `data:` and the first comma), for messages and for
    // the base64 marker, which the crate does not expose.
    let header = source
        .get("data:".len()..)
        .and_then(|rest| rest.split_once(','))
        .map_or("", |(header, _)| header.trim());
    let written_mime = strip_base64_marker(header);
    let Some(written_mime) = written_mime else {
        return Err(format!("{}, got a payload that is not base64", shape()));
    };
    if url.mime_type().type_ != top {
        return Err(format!("{}, got media type {written_mime:?}", shape()));
    }
    // Count the decoded bytes as they stream by: nothing is held in memory.
    let mut size = 0u64;
    let fragment = url
        .decode(|bytes| {
            size += bytes.len() as u64;
            Ok::<(), Infallible>(())
        })
        .map_err(|e| match e {
            DecodeError::InvalidBase64(e) => format!("data URI payload is not valid base64: {e}"),
            DecodeError::WriteError(never) => match never {},
        })?;
    if fragment.is_some() {
        return Err(format!("{}, got a #fragment after the payload", shape()));
    }
    if size == 0 {
        return Err("data URI has an empty payload".to_owned());
    }
    if size > max {
        return Err(too_large("data URI payload", size, max));
    }
    Ok(())
}

/// The media type of a data URI header that ends in the base64 marker (`;base64`, spaces
/// allowed before `base64`, as the Fetch algorithm reads it); `None` without the marker.
fn strip_base64_marker(header: &str) -> Option<&str> {
    let rest = strip_suffix_ignore_case(header, "base64")?;
    rest.trim_end_matches(' ').strip_suffix(';')
}

/// Reads a local file of an accepted type and returns it as a base64 data URI.
fn read_local_file(path: &Path, kind: Kind, max: u64) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "{shown:?} is not an https URL or a data:{}/ URI, and not a readable file: {e}",
            kind.mime_top()
        )
    })?;
    if !meta.is_file() {
        return Err(format!("{shown:?} is not a regular file"));
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mime = kind
        .extensions()
        .iter()
        .find(|(known, _)| *known == ext)
        .map(|(_, mime)| *mime)
        .ok_or_else(|| {
            let known: Vec<&str> = kind.extensions().iter().map(|(e, _)| *e).collect();
            format!(
                "{shown:?}: unsupported file type; expected .{}",
                known.join(", .")
            )
        })?;
    if meta.len() == 0 {
        return Err(format!("{shown:?} is empty"));
    }
    if meta.len() > max {
        return Err(too_large(&format!("file {shown:?}"), meta.len(), max));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown:?}: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(too_large(
            &format!("file {shown:?}"),
            bytes.len() as u64,
            max,
        ));
    }
    Ok(format!("data:{mime};base64,{}", BASE64.encode(&bytes)))
}

fn too_large(what: &str, size: u64, max: u64) -> String {
    format!("{what} is {size} bytes, over the limit of {max} bytes")
}

fn has_prefix_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let (head, tail) = (s.get(..cut)?, s.get(cut..)?);
    tail.eq_ignore_ascii_case(suffix).then_some(head)
}
