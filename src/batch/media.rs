//! Media sources for a batch: the video and the reference images. Checks https URLs and
//! data URIs, and turns local files into data URIs under a size cap.

use super::{BatchLimits, Origin};
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use std::path::Path;
use url::{Host, Url};

/// Reference images larger than this are refused whatever the video limit (Kling's cap).
const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// Standard alphabet; encodes with padding, decodes with or without it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
fn check_data_uri(source: &str, kind: Kind, max: u64) -> Result<(), String> {
    let top = kind.mime_top();
    let shape = || format!("expected data:{top}/<subtype>;base64,<payload>");
    let (header, payload) = source.split_once(',').ok_or_else(shape)?;
    let mime = header
        .get("data:".len()..)
        .and_then(|rest| strip_suffix_ignore_case(rest, ";base64"))
        .ok_or_else(shape)?;
    let subtype = mime
        .split_once('/')
        .filter(|(t, _)| t.eq_ignore_ascii_case(top))
        .map(|(_, sub)| sub)
        .ok_or_else(|| format!("{}, got media type {mime:?}", shape()))?;
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c);
    if subtype.is_empty() || !subtype.chars().all(token_char) {
        return Err(format!("{}, got media type {mime:?}", shape()));
    }
    if payload.is_empty() {
        return Err("data URI has an empty payload".to_owned());
    }
    // Refuse an oversized payload before decoding it.
    let estimate = (payload.len() as u64 / 4) * 3;
    if estimate > max + 3 {
        return Err(too_large("data URI payload", estimate, max));
    }
    let bytes = BASE64
        .decode(payload)
        .map_err(|e| format!("data URI payload is not valid base64: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(too_large("data URI payload", bytes.len() as u64, max));
    }
    Ok(())
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
