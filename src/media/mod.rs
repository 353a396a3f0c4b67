//! Media a batch sends upstream: the video and the reference images, and how each is held
//! from the producer to the wire.
//!
//! - A batch spec (`model::BatchShared`) names each source as a string: an https URL, a
//!   `data:` URI (what `batch` makes of a local file; specs of earlier versions stored
//!   them so), or a [`REF_PREFIX`] reference `media:<sha256>` to a payload stored once
//!   per batch beside the spec (the spec's `media` table gives its length and type).
//!   [`Source::of`] tells them apart; [`stored_form`] is what the producer writes.
//! - A worker holds each payload once per batch as a [`Blob`] (shared bytes, base64 made
//!   at most once), and a request carries [`Media`] handles: a URL, or a blob.
//! - A request body is JSON in which a blob serializes as a marker string that
//!   `upstream::body` replaces, on the wire, by the blob's data URI (or raw base64) taken
//!   from the shared text: no copy of the video per request.

mod blob;

pub use blob::{plain_mime, Blob, BlobError};

use crate::model::BatchShared;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

/// How a spec names a payload stored beside it: `media:<hex sha256>`.
pub const REF_PREFIX: &str = "media:";

/// A stored payload's entry in the spec's `media` table (keyed by its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredMedia {
    /// Length in bytes.
    pub bytes: u64,
    /// `type/subtype`, as the data URI declared it.
    pub mime: String,
    /// Where the producer uploaded it in the results store (a name under the store's
    /// prefix), when one is configured: then the payload is not in Redis, and workers
    /// send providers a presigned URL to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

/// What one source string of a spec is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A URL, sent as written.
    Url(&'a str),
    /// A payload stored beside the spec, by its hex SHA-256.
    Stored(&'a str),
    /// A data URI held in the spec itself (specs written before media were stored).
    Inline(&'a str),
}

impl<'a> Source<'a> {
    pub fn of(s: &'a str) -> Source<'a> {
        if let Some(sha) = s.strip_prefix(REF_PREFIX) {
            return Source::Stored(sha);
        }
        let data = s.get(..5).is_some_and(|h| h.eq_ignore_ascii_case("data:"));
        if data {
            Source::Inline(s)
        } else {
            Source::Url(s)
        }
    }
}

/// Whether `sha` is a hex SHA-256 as this build writes them (64 lowercase hex digits).
pub fn is_sha256(sha: &str) -> bool {
    sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The spec as it is stored, and the payloads to store beside it: every data URI that
/// decodes becomes a `media:<sha256>` reference with its entry in the `media` table (one
/// payload for the same content named twice). A data URI that does not decode (never one
/// `batch` validated) stays inline, as earlier versions sent it.
pub fn stored_form(shared: &BatchShared) -> (BatchShared, Vec<Arc<Blob>>) {
    let mut spec = shared.clone();
    let mut blobs: Vec<Arc<Blob>> = Vec::new();
    for source in spec.media_sources_mut() {
        let Source::Inline(uri) = Source::of(source) else {
            continue;
        };
        let Ok(blob) = Blob::from_data_uri(uri) else {
            continue;
        };
        *source = format!("{REF_PREFIX}{}", blob.sha256());
        if !blobs.iter().any(|b| b.sha256() == blob.sha256()) {
            blobs.push(Arc::new(blob));
        }
    }
    spec.media = blobs
        .iter()
        .map(|b| {
            let entry = StoredMedia {
                bytes: b.len() as u64,
                mime: b.mime().to_owned(),
                object: None,
            };
            (b.sha256().to_owned(), entry)
        })
        .collect::<BTreeMap<_, _>>();
    (spec, blobs)
}

/// One media source of a request: a URL, or a payload held in memory.
#[derive(Clone)]
pub enum Media {
    /// Sent as written (a URL; or any text a spec holds that is not a payload).
    Url(Arc<str>),
    /// Sent as a data URI (or raw base64 where a provider wants that) made from the blob.
    Inline(Arc<Blob>),
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A query may be a presigned URL's signature and credential scope: never shown.
            Media::Url(u) if u.contains('?') => {
                let (head, _) = u.split_once('?').unwrap_or((u, ""));
                let head: String = head.chars().take(100).collect();
                write!(f, "Url({head:?}?…)")
            }
            Media::Url(u) if u.len() > 120 => {
                write!(f, "Url({:?}…)", u.chars().take(100).collect::<String>())
            }
            Media::Url(u) => write!(f, "Url({u:?})"),
            Media::Inline(b) => write!(f, "Inline({b:?})"),
        }
    }
}

impl PartialEq for Media {
    fn eq(&self, other: &Media) -> bool {
        match (self, other) {
            (Media::Url(a), Media::Url(b)) => a == b,
            (Media::Inline(a), Media::Inline(b)) => a.sha256() == b.sha256(),
            _ => false,
        }
    }
}

impl From<&str> for Media {
    fn from(s: &str) -> Media {
        Media::Url(Arc::from(s))
    }
}

impl From<String> for Media {
    fn from(s: String) -> Media {
        Media::Url(Arc::from(s))
    }
}

impl Media {
    /// The URL, when this is one.
    pub fn as_url(&self) -> Option<&str> {
        match self {
            Media::Url(u) => Some(u),
            Media::Inline(_) => None,
        }
    }

    /// The payload, when this is one.
    pub fn blob(&self) -> Option<&Arc<Blob>> {
        match self {
            Media::Url(_) => None,
            Media::Inline(b) => Some(b),
        }
    }

    /// Serializes as the payload's raw base64 (no `data:` prefix) instead of a data URI;
    /// a URL as written.
    pub fn raw_base64(&self) -> RawBase64<'_> {
        RawBase64(self)
    }
}

/// How a payload is spelled in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `data:<mime>;base64,<base64>`.
    DataUri,
    /// `<base64>` alone.
    Base64,
}

/// The start of every marker this process writes: random per process, so no text a
/// producer wrote can pass for one.
pub fn marker_prefix() -> &'static str {
    static PREFIX: LazyLock<String> = LazyLock::new(|| {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        format!("restyle-media-{}-", &nonce[..16])
    });
    &PREFIX
}

/// The string a payload serializes as inside a body, until the body is assembled.
fn marker(blob: &Blob, form: Form) -> String {
    let f = match form {
        Form::DataUri => 'd',
        Form::Base64 => 'b',
    };
    format!("{}{}-{f}", marker_prefix(), blob.sha256())
}

/// Reads a marker (without its quotes): the payload's digest and the form.
pub fn parse_marker(s: &str) -> Option<(&str, Form)> {
    let rest = s.strip_prefix(marker_prefix())?;
    let (sha, f) = rest.split_once('-')?;
    let form = match f {
        "d" => Form::DataUri,
        "b" => Form::Base64,
        _ => return None,
    };
    is_sha256(sha).then_some((sha, form))
}

impl Serialize for Media {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Media::Url(u) => s.serialize_str(u),
            Media::Inline(b) => s.serialize_str(&marker(b, Form::DataUri)),
        }
    }
}

/// A [`Media`] serialized as raw base64 (see [`Media::raw_base64`]).
#[derive(Debug, Clone, Copy)]
pub struct RawBase64<'a>(&'a Media);

impl Serialize for RawBase64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Media::Url(u) => s.serialize_str(u),
            Media::Inline(b) => s.serialize_str(&marker(b, Form::Base64)),
        }
    }
}

/// The payloads among `media`, each once.
pub fn unique_blobs<'a>(media: impl Iterator<Item = &'a Media>) -> Vec<&'a Arc<Blob>> {
    let mut out: Vec<&Arc<Blob>> = Vec::new();
    for b in media.filter_map(Media::blob) {
        if !out.iter().any(|o| o.sha256() == b.sha256()) {
            out.push(b);
        }
    }
    out
}

/// An element of a request: its images as handles.
pub type MediaElement = crate::model::Element<Media>;

/// Every media source of one batch, resolved: what its requests carry.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMedia {
    pub video: Media,
    pub image_list: Vec<Media>,
    pub elements: Vec<MediaElement>,
}

impl BatchMedia {
    /// Each source of the spec as `resolved` maps it, or as written when it has no entry.
    pub fn from_spec(shared: &BatchShared, resolved: &HashMap<String, Media>) -> BatchMedia {
        let get = |s: &String| {
            resolved
                .get(s)
                .cloned()
                .unwrap_or_else(|| s.as_str().into())
        };
        BatchMedia {
            video: get(&shared.video),
            image_list: shared.image_list.iter().map(get).collect(),
            elements: shared
                .elements
                .iter()
                .map(|e| MediaElement {
                    frontal_image_url: get(&e.frontal_image_url),
                    reference_image_urls: e.reference_image_urls.iter().map(get).collect(),
                })
                .collect(),
        }
    }

    /// Every source as written in the spec (a data URI is sent as text).
    pub fn as_given(shared: &BatchShared) -> BatchMedia {
        BatchMedia::from_spec(shared, &HashMap::new())
    }

    /// Every payload, each once.
    pub fn blobs(&self) -> Vec<&Arc<Blob>> {
        let elements = self
            .elements
            .iter()
            .flat_map(|e| std::iter::once(&e.frontal_image_url).chain(&e.reference_image_urls));
        unique_blobs(
            std::iter::once(&self.video)
                .chain(&self.image_list)
                .chain(elements),
        )
    }

    /// Bytes the payloads hold in memory now.
    pub fn held_bytes(&self) -> u64 {
        self.blobs().iter().map(|b| b.held_bytes()).sum()
    }
}

#[cfg(test)]
mod tests;
