//! `output.store` and its companions, validated: where results go (a local directory or
//! an object store URL), an S3-compatible endpoint, and the contact sheet's link lifetime.
//! A store URL never carries credentials: those come from each cloud's own chain
//! (environment, profile, instance role), so one written into the setting is refused
//! before anything could echo it.

use super::{invalid, ConfigError, StoreLocation};
use std::path::PathBuf;
use std::time::Duration;

/// The longest a presigned link may live (S3's SigV4 limit; GCS's V4 signatures too).
pub const MAX_LINK_TTL: Duration = Duration::from_secs(7 * 86_400);

/// The output directory and the store: empty keeps `dir`; a path (or `file://`) replaces
/// `dir`; `s3://`, `gs://` or `az://` with a bucket (container) names object storage.
pub(super) fn location(raw: &str, dir: PathBuf) -> Result<(PathBuf, StoreLocation), ConfigError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok((dir, StoreLocation::Local));
    }
    let key = "output.store";
    if raw.chars().any(char::is_control) {
        return Err(invalid(key, "must not hold control characters"));
    }
    let Some((scheme, _)) = raw.split_once("://") else {
        return Ok((PathBuf::from(raw), StoreLocation::Local));
    };
    let Ok(url) = url::Url::parse(raw) else {
        return Err(invalid(
            key,
            "is not a URL (s3://bucket/prefix, gs://…, az://…)",
        ));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            key,
            "must not carry credentials: they come from the cloud's own chain (environment, profile, instance role)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(key, "takes no query or fragment"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "file" => Ok((PathBuf::from(url.path()), StoreLocation::Local)),
        "s3" | "gs" | "az" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid(key, "names no bucket (container)"));
            }
            Ok((dir, StoreLocation::Object(url)))
        }
        other => Err(invalid(
            key,
            format!("scheme {other:.16?} is not one of s3, gs, az, file"),
        )),
    }
}

/// `output.store_endpoint`: an http(s) URL without credentials.
pub(super) fn endpoint(raw: Option<&str>) -> Result<Option<url::Url>, ConfigError> {
    let key = "output.store_endpoint";
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let url = url::Url::parse(raw).map_err(|_| invalid(key, "is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, "must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(invalid(key, "must not carry credentials or a query"));
    }
    Ok(Some(url))
}

/// `output.link_ttl`: zero (relative links) or at most [`MAX_LINK_TTL`].
pub(super) fn link_ttl(d: Duration) -> Result<Duration, ConfigError> {
    if d > MAX_LINK_TTL {
        return Err(invalid(
            "output.link_ttl",
            "must be at most 7 days (the longest a presigned URL lives)",
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_checked() {
        let d = || PathBuf::from("out");
        assert_eq!(location("", d()).unwrap(), (d(), StoreLocation::Local));
        let (dir, s) = location("/srv/results", d()).unwrap();
        assert_eq!(
            (dir, s),
            (PathBuf::from("/srv/results"), StoreLocation::Local)
        );
        let (_, s) = location("s3://bucket/pre/fix", d()).unwrap();
        assert!(matches!(s, StoreLocation::Object(u) if u.as_str() == "s3://bucket/pre/fix"));
        for bad in [
            "s3://AKIA:secret@bucket/p",
            "ftp://x/y",
            "s3:///p",
            "s3://b/p?k=v",
        ] {
            let e = location(bad, d()).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
        assert!(link_ttl(Duration::from_secs(8 * 86_400)).is_err());
        assert!(endpoint(Some("ftp://x")).is_err());
        assert!(endpoint(Some("https://127.0.0.1:9000")).unwrap().is_some());
    }
}
