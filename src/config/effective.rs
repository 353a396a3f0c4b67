//! The effective-values view of `check-config`: [`Settings`] serialized (its `Serialize`
//! derive decides what shows and how) and flattened to sorted dotted `key = value` pairs.
//! Also the field serializers that view uses: secrets as a marker that says only whether
//! they are set, durations in humantime form, prices as their wire form.

use super::Settings;
use crate::money::Usd;
use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;
use serde_json::Value;
use std::time::Duration;

impl Settings {
    /// Every effective value as `key = value`, sorted by key, secrets redacted (for
    /// `check-config`).
    pub fn effective(&self) -> Vec<(String, String)> {
        let tree = serde_json::to_value(self).expect("settings serialize to a tree");
        let mut out = Vec::new();
        flatten(String::new(), &tree, &mut out);
        out.sort();
        out
    }
}

/// Appends every leaf under `prefix` as a dotted key and its display form.
fn flatten(prefix: String, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(key, v, out);
            }
        }
        leaf => out.push((prefix, leaf_text(leaf))),
    }
}

fn leaf_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(unset)".to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(leaf_text).collect();
            parts.join(", ")
        }
        other => other.to_string(),
    }
}

/// A secret as `*** (set)` or `(unset)`: its value never leaves the `SecretString`.
pub(super) fn secret<S: Serializer>(s: &Option<SecretString>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(match s {
        Some(_) => "*** (set)",
        None => "(unset)",
    })
}

/// A URL that may hold a password, with the password replaced by `***`.
pub(super) fn redacted_url<S: Serializer>(url: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&super::redact_url(url.expose_secret()))
}

/// A webhook URL as its scheme and host only (`https://hooks.slack.com/***`): the path or
/// query may be the credential.
pub(super) fn webhook_url<S: Serializer>(url: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    let shown = match url::Url::parse(url.expose_secret()) {
        Ok(u) => format!("{}://{}/***", u.scheme(), u.host_str().unwrap_or_default()),
        Err(_) => "<unparseable url>".to_string(),
    };
    ser.serialize_str(&shown)
}

/// A URL that is not a secret, with any credentials in it masked all the same.
pub(super) fn url<S: Serializer>(u: &url::Url, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&super::redact_url(u.as_str()))
}

/// An optional URL (credentials masked), or `(unset)`.
pub(super) fn opt_url<S: Serializer>(u: &Option<url::Url>, ser: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => ser.serialize_str(&super::redact_url(u.as_str())),
        None => ser.serialize_str("(unset)"),
    }
}

/// A duration as humantime prints it (`16m 40s`), the form the settings file takes.
pub(super) fn duration<S: Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_str(&humantime::format_duration(*d))
}

/// A price in its wire form, or `(unknown)`.
pub(super) fn price<S: Serializer>(p: &Option<Usd>, ser: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(usd) => ser.serialize_str(&usd.to_wire()),
        None => ser.serialize_str("(unknown)"),
    }
}

/// A value with a display form (URLs, rates), as that text.
pub(super) fn display<T: std::fmt::Display, S: Serializer>(
    v: &T,
    ser: S,
) -> Result<S::Ok, S::Error> {
    ser.collect_str(v)
}

/// A path as it displays (lossy where it is not UTF-8).
pub(super) fn path<S: Serializer>(p: &std::path::Path, ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_str(&p.display())
}

/// A list shown as one value, its entries comma-separated, or `(none)`.
pub(super) fn entries<T: std::fmt::Display, S: Serializer>(
    items: &[T],
    ser: S,
) -> Result<S::Ok, S::Error> {
    if items.is_empty() {
        return ser.serialize_str("(none)");
    }
    let shown: Vec<String> = items.iter().map(T::to_string).collect();
    ser.serialize_str(&shown.join(", "))
}
