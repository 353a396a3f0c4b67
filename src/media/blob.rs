//! A media payload held in memory once per batch and process: its bytes, MIME type and
//! SHA-256, and its base64 text, built at most once and shared by every request body.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Why a payload could not become a [`Blob`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("media type {0:?} is not a plain type/subtype")]
    Mime(String),
    #[error("not a base64 data URI: {0}")]
    DataUri(String),
    #[error("media {expected} holds {len} bytes with SHA-256 {found}: not what was stored")]
    Digest {
        expected: String,
        found: String,
        len: usize,
    },
}

/// One media payload (a video or an image). Cheap to share: the bytes are reference
/// counted, and so is the base64 text once made.
pub struct Blob {
    sha256: String,
    mime: String,
    bytes: Bytes,
    base64: OnceLock<Bytes>,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("sha256", &self.sha256)
            .field("mime", &self.mime)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// A MIME type that goes into a data URI and a JSON string as it is: `type/subtype` of
/// lowercase letters, digits and `.+-` (what `batch` accepts for media: `video/mp4`,
/// `image/png`, `video/x-matroska`, …).
pub fn plain_mime(mime: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    };
    matches!(mime.split_once('/'), Some((t, s)) if ok(t) && ok(s))
}

impl Blob {
    /// A payload and its MIME type; the digest is computed here.
    pub fn new(mime: &str, bytes: Bytes) -> Result<Blob, BlobError> {
        if !plain_mime(mime) {
            return Err(BlobError::Mime(mime.to_owned()));
        }
        Ok(Blob {
            sha256: hex::encode(Sha256::digest(&bytes)),
            mime: mime.to_owned(),
            bytes,
            base64: OnceLock::new(),
        })
    }

    /// A payload read back from storage: its digest must be the one it was stored under.
    pub fn verified(sha256: &str, mime: &str, bytes: Bytes) -> Result<Blob, BlobError> {
        let blob = Blob::new(mime, bytes)?;
        if blob.sha256 != sha256 {
            return Err(BlobError::Digest {
                expected: sha256.to_owned(),
                found: blob.sha256,
                len: blob.bytes.len(),
            });
        }
        Ok(blob)
    }

    /// The payload of a `data:<type/subtype>;base64,<payload>` URI (as `batch` accepts
    /// them: no parameters, base64 as browsers read it).
    pub fn from_data_uri(uri: &str) -> Result<Blob, BlobError> {
        let bad = |why: &str| BlobError::DataUri(why.to_owned());
        let rest = uri
            .get(..5)
            .filter(|h| h.eq_ignore_ascii_case("data:"))
            .map(|_| &uri[5..])
            .ok_or_else(|| bad("no data: prefix"))?;
        let (header, _) = rest.split_once(',').ok_or_else(|| bad("no comma"))?;
        // The base64 marker as the Fetch algorithm reads it (any case, spaces before it).
        let header = header.trim().to_ascii_lowercase();
        let mime = header
            .strip_suffix("base64")
            .map(|m| m.trim_end_matches(' '))
            .and_then(|m| m.strip_suffix(';'))
            .ok_or_else(|| bad("not ;base64"))?
            .trim()
            .to_owned();
        let url = data_url::DataUrl::process(uri).map_err(|e| bad(&e.to_string()))?;
        let (bytes, _) = url.decode_to_vec().map_err(|e| bad(&format!("{e:?}")))?;
        Blob::new(&mime, Bytes::from(bytes))
    }

    /// Hex SHA-256 of the bytes: the payload's name in storage and in uploads.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn mime(&self) -> &str {
        &self.mime
    }

    /// The payload (a shared handle, no copy).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The payload's standard base64 text, made on first use and shared afterwards.
    pub fn base64(&self) -> &Bytes {
        self.base64
            .get_or_init(|| Bytes::from(BASE64.encode(&self.bytes)))
    }

    /// What comes before the base64 text in the payload's data URI.
    pub fn data_uri_prefix(&self) -> String {
        format!("data:{};base64,", self.mime)
    }

    /// Bytes this blob holds in memory now (the payload, and its base64 text once made).
    pub fn held_bytes(&self) -> u64 {
        let b64 = self.base64.get().map_or(0, Bytes::len);
        (self.bytes.len() + b64) as u64
    }

    /// A file name for uploads: the digest's start and an extension for the type.
    pub fn file_name(&self) -> String {
        let sub = self.mime.split_once('/').map_or("bin", |(_, s)| s);
        let ext = match sub {
            "quicktime" => "mov",
            "x-matroska" => "mkv",
            "jpeg" => "jpg",
            other => other,
        };
        format!("{}.{ext}", &self.sha256[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_uri_decodes_and_its_digest_is_checked() {
        let b = Blob::from_data_uri("data:video/mp4;base64,AAAAGGZ0eXBtcDQy").unwrap();
        assert_eq!(b.mime(), "video/mp4");
        assert_eq!(&b.bytes()[4..8], b"ftyp");
        assert_eq!(b.base64().as_ref(), b"AAAAGGZ0eXBtcDQy");
        assert_eq!(b.held_bytes(), 12 + 16);
        let again = Blob::verified(b.sha256(), "video/mp4", b.bytes().clone()).unwrap();
        assert_eq!(again.sha256(), b.sha256());
        let e = Blob::verified(b.sha256(), "video/mp4", Bytes::from_static(b"x")).unwrap_err();
        assert!(matches!(e, BlobError::Digest { len: 1, .. }), "{e}");
        assert_eq!(b.file_name(), format!("{}.mp4", &b.sha256()[..16]));
    }

    #[test]
    fn only_plain_media_types_are_kept() {
        for ok in ["video/mp4", "video/x-matroska", "image/svg+xml"] {
            assert!(plain_mime(ok), "{ok}");
        }
        for bad in [
            "video",
            "video/",
            "Video/MP4",
            "video/mp4;codecs=x",
            "video/\"x",
        ] {
            assert!(!plain_mime(bad), "{bad}");
        }
        assert!(Blob::from_data_uri("data:video/mp4;codecs=a;base64,AAAA").is_err());
        assert!(Blob::from_data_uri("data:video/mp4,AAAA").is_err());
    }
}
