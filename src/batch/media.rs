//! Media sources for a batch: the video and the reference images. Checks https URLs (with
//! the `url` crate) and data URIs (parsed and decoded by the `data-url` crate), turns
//! local files (read by `local`) into base64 data URIs, and holds every source's content
//! to the formats its kind accepts (sniffed by `sniff`), whatever its name or declared
//! type says. No source may hold a control character; URLs and data URIs no whitespace.

use super::local::{self, Cap, Place, ReadError};
use super::sniff::{self, Format, HEAD_BYTES};
use super::text::{self, Allow};
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

    /// Local file extensions accepted (lowercase), the MIME type each is sent as, and
    /// the format its content must be.
    fn extensions(self) -> &'static [(&'static str, &'static str, Format)] {
        match self {
            Kind::Video => &[
                ("mp4", "video/mp4", Format::IsoBmff),
                ("mov", "video/quicktime", Format::IsoBmff),
                ("webm", "video/webm", Format::Ebml),
            ],
            Kind::Image => &[
                ("png", "image/png", Format::Png),
                ("jpg", "image/jpeg", Format::Jpeg),
                ("jpeg", "image/jpeg", Format::Jpeg),
                ("webp", "image/webp", Format::WebP),
                ("gif", "image/gif", Format::Gif),
            ],
        }
    }

    /// Data URI media subtypes accepted and the format the payload must be.
    fn subtypes(self) -> &'static [(&'static str, Format)] {
        match self {
            Kind::Video => &[
                ("mp4", Format::IsoBmff),
                ("quicktime", Format::IsoBmff),
                ("webm", Format::Ebml),
                ("x-matroska", Format::Ebml),
            ],
            Kind::Image => &[
                ("png", Format::Png),
                ("jpeg", Format::Jpeg),
                ("webp", Format::WebP),
                ("gif", Format::Gif),
            ],
        }
    }

    /// What content of this kind must be, for messages.
    fn expected(self) -> &'static str {
        match self {
            Kind::Video => "MP4/QuickTime (an ftyp box) or WebM/Matroska (an EBML header) video",
            Kind::Image => "a PNG, JPEG, WebP or GIF image",
        }
    }

    fn cap(self, limits: &BatchLimits) -> Cap {
        let video = Cap {
            bytes: limits.max_video_bytes,
            setting: "limits.max_video_bytes",
        };
        match self {
            Kind::Image if limits.max_video_bytes > MAX_IMAGE_BYTES => Cap {
                bytes: MAX_IMAGE_BYTES,
                setting: "the 10 MiB image limit",
            },
            _ => video,
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
    let source = source.trim_matches(' ');
    if source.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(bad) = text::first_refused(source, Allow::Nothing) {
        return Err(format!(
            "contains {bad}; a URL, data URI or path may hold no control character"
        ));
    }
    if is_url(source) {
        check_url(source)?;
        Ok(source.to_owned())
    } else if has_prefix_ignore_case(source, "data:") {
        check_data_uri(source, kind, kind.cap(limits))?;
        Ok(source.to_owned())
    } else {
        let path = origin.resolve(Path::new(source));
        read_local_file(&path, &origin.place, kind, limits)
    }
}

/// Whether a source is written as a URL (as opposed to a data URI or a local path).
pub(super) fn is_url(source: &str) -> bool {
    source.contains("://")
}

/// No control character or whitespace anywhere in a URL or data URI: what is sent is
/// what was written, and nothing in it can split a header or a line.
fn check_chars(what: &str, source: &str) -> Result<(), String> {
    if let Some(bad) = text::first_refused(source, Allow::Nothing) {
        return Err(format!("{what} contains {bad}"));
    }
    if let Some((ch, at)) = text::first_whitespace(source) {
        let mut buf = [0; 4];
        let encoded: String = ch
            .encode_utf8(&mut buf)
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect();
        return Err(format!(
            "{what} contains {} at character {at}; percent-encode it ({encoded})",
            text::whitespace_name(ch)
        ));
    }
    Ok(())
}

/// https with a host; plain http only to the loopback (the local simulator).
pub(super) fn check_url(source: &str) -> Result<(), String> {
    check_chars("URL", source)?;
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

/// `data:<kind>/<subtype>;base64,<payload>` with a payload that decodes to at most
/// `cap.bytes` bytes and sniffs as the declared subtype.
///
/// The `data-url` crate parses the URI as browsers do (the WHATWG Fetch algorithm): the
/// header, the media type (lowercased, parameters allowed) and the forgiving base64 body.
/// On top of that a media source must declare base64 (the crate accepts percent-encoded
/// text too), carry the right top-level type and an accepted subtype, hold no whitespace
/// (which readers skip or not), have no `#fragment` and a non-empty payload.
fn check_data_uri(source: &str, kind: Kind, cap: Cap) -> Result<(), String> {
    check_chars("data URI", source)?;
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
    let subtype = url.mime_type().subtype.as_str();
    let Some(&(_, format)) = kind.subtypes().iter().find(|(s, _)| *s == subtype) else {
        let known: Vec<String> = kind
            .subtypes()
            .iter()
            .map(|(s, _)| format!("{top}/{s}"))
            .collect();
        return Err(format!(
            "data URI media type {written_mime:?} is not accepted; expected {}",
            known.join(", ")
        ));
    };
    // Count the decoded bytes as they stream by, keeping only the head for sniffing.
    let mut size = 0u64;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let fragment = url
        .decode(|bytes| {
            size += bytes.len() as u64;
            let room = HEAD_BYTES - head.len();
            head.extend_from_slice(&bytes[..room.min(bytes.len())]);
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
    if size > cap.bytes {
        return Err(format!(
            "data URI payload is {size} bytes, over the limit of {} bytes ({})",
            cap.bytes, cap.setting
        ));
    }
    let declared = format!("media type {written_mime:?}");
    check_content("data URI payload", &head, kind, format, &declared)
}

/// `head` (a source's first bytes) must sniff as `format`, the one its name or declared
/// media type (`named`) promises.
fn check_content(
    what: &str,
    head: &[u8],
    kind: Kind,
    format: Format,
    named: &str,
) -> Result<(), String> {
    match sniff::sniff(head) {
        Some(found) if found == format => Ok(()),
        Some(found) if kind.subtypes().iter().any(|(_, f)| *f == found) => Err(format!(
            "{what} holds {}, but its {named} says {}",
            found.name(),
            format.name()
        )),
        _ => Err(format!(
            "{what} does not hold {}: it looks like {}",
            kind.expected(),
            sniff::describe(head)
        )),
    }
}

/// The media type of a data URI header that ends in the base64 marker (`;base64`, spaces
/// allowed before `base64`, as the Fetch algorithm reads it); `None` without the marker.
fn strip_base64_marker(header: &str) -> Option<&str> {
    let rest = strip_suffix_ignore_case(header, "base64")?;
    rest.trim_end_matches(' ').strip_suffix(';')
}

/// Reads a local file of an accepted type and content and returns it as a base64 data
/// URI. `place` says where it may be.
fn read_local_file(
    path: &Path,
    place: &Place,
    kind: Kind,
    limits: &BatchLimits,
) -> Result<String, String> {
    let shown = path.display();
    let bytes = local::read(path, place, kind.cap(limits)).map_err(|e| match e {
        ReadError::Open { source, .. } => format!(
            "{shown:?} is not an https URL or a data:{}/ URI, and not a readable file: {source}",
            kind.mime_top()
        ),
        other => other.to_string(),
    })?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let &(_, mime, format) = kind
        .extensions()
        .iter()
        .find(|(known, _, _)| *known == ext)
        .ok_or_else(|| {
            let known: Vec<&str> = kind.extensions().iter().map(|(e, _, _)| *e).collect();
            format!(
                "{shown:?}: unsupported file type; expected .{}",
                known.join(", .")
            )
        })?;
    if bytes.is_empty() {
        return Err(format!("{shown:?} is empty"));
    }
    let head = &bytes[..bytes.len().min(HEAD_BYTES)];
    check_content(
        &format!("file {shown:?}"),
        head,
        kind,
        format,
        &format!(".{ext} name"),
    )?;
    Ok(format!("data:{mime};base64,{}", BASE64.encode(&bytes)))
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
