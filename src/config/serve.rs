//! `[serve]`: the API tokens `restyle serve` accepts, and its bounds on uploads and on
//! failed sign-ins. Each token entry names a token, gives its role and the SHA-256 of the
//! token (hex); the token itself is never in settings. The hashes are checked here (64 hex
//! digits, distinct names); `check-config` shows each token's name and role, never its hash.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

/// `[[serve.tokens]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) name: String,
    pub(super) role: String,
    pub(super) sha256: String,
}

/// `[serve]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServe {
    pub(super) tokens: Vec<RawToken>,
    #[serde(with = "humantime_serde")]
    pub(super) upload_ttl: Duration,
    pub(super) max_uploads: usize,
    pub(super) max_upload_bytes: u64,
    pub(super) auth_failures_per_minute: u32,
}

impl Default for RawServe {
    fn default() -> Self {
        let d = ServeSettings::default();
        RawServe {
            tokens: Vec::new(),
            upload_ttl: d.upload_ttl,
            max_uploads: d.max_uploads,
            max_upload_bytes: d.max_upload_bytes,
            auth_failures_per_minute: d.auth_failures_per_minute,
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only: lists, status, results, the OpenAPI document.
    Read,
    /// Reads and acts: create, cancel, retry, budget.
    Operator,
}

/// One accepted token: its name (for logs), role and SHA-256 digest.
#[derive(Clone, Serialize)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    /// The digest of the token; shown as set, never as its value.
    #[serde(serialize_with = "hidden")]
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn hidden<S: Serializer>(_: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("*** (set)")
}

/// Validated `[serve]`.
#[derive(Debug, Clone, Serialize)]
pub struct ServeSettings {
    /// Empty: `restyle serve` makes one operator token at start.
    pub tokens: Vec<ApiToken>,
    /// An upload (`<output.dir>/uploads/`) not used by a batch for this long is removed
    /// (a batch keeps its own copy of what it used).
    #[serde(serialize_with = "super::effective::duration")]
    pub upload_ttl: Duration,
    /// Most files the uploads directory holds; past it a new upload is refused (507).
    pub max_uploads: usize,
    /// Most bytes the uploads directory holds; past it a new upload is refused (507).
    pub max_upload_bytes: u64,
    /// Failed sign-ins and bad bearer tokens one client address may send per minute
    /// (that many at once, then one per `60 s / n`); past it, 429 with `Retry-After`.
    pub auth_failures_per_minute: u32,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            tokens: Vec::new(),
            upload_ttl: Duration::from_secs(24 * 3600),
            max_uploads: 1000,
            max_upload_bytes: 20 * 1024 * 1024 * 1024,
            auth_failures_per_minute: 10,
        }
    }
}

/// Most tokens `[serve]` may list.
const MAX_TOKENS: usize = 1000;

pub(super) fn validate(raw: RawServe) -> Result<ServeSettings, ConfigError> {
    if raw.tokens.len() > MAX_TOKENS {
        return Err(invalid(
            "serve.tokens",
            format!("at most {MAX_TOKENS} entries"),
        ));
    }
    let mut tokens: Vec<ApiToken> = Vec::with_capacity(raw.tokens.len());
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let key = |f: &str| format!("serve.tokens[{i}].{f}");
        let name = t.name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            return Err(invalid(
                &key("name"),
                "must be 1–64 characters of letters, digits, - _ . @",
            ));
        }
        if tokens.iter().any(|o| o.name == name) {
            return Err(invalid(&key("name"), format!("{name:?} is listed twice")));
        }
        let role = match t.role.as_str() {
            "read" => Role::Read,
            "operator" => Role::Operator,
            _ => return Err(invalid(&key("role"), "must be read or operator")),
        };
        let mut sha256 = [0u8; 32];
        let hex_ok = t.sha256.len() == 64 && hex::decode_to_slice(&t.sha256, &mut sha256).is_ok();
        if !hex_ok {
            // The value is not quoted: it may be a token pasted by mistake.
            return Err(invalid(
                &key("sha256"),
                "must be the token's SHA-256 as 64 hex digits (restyle serve --hash-token)",
            ));
        }
        tokens.push(ApiToken {
            name: name.to_owned(),
            role,
            sha256,
        });
    }
    if raw.upload_ttl < Duration::from_secs(1) || raw.upload_ttl > Duration::from_secs(30 * 86400) {
        return Err(invalid("serve.upload_ttl", "must be from 1s to 30days"));
    }
    if !(1..=1_000_000).contains(&raw.max_uploads) {
        return Err(invalid("serve.max_uploads", "must be from 1 to 1000000"));
    }
    if raw.max_upload_bytes < 1024 * 1024 {
        return Err(invalid(
            "serve.max_upload_bytes",
            "must be at least 1048576 (1 MiB)",
        ));
    }
    if !(1..=10_000).contains(&raw.auth_failures_per_minute) {
        return Err(invalid(
            "serve.auth_failures_per_minute",
            "must be from 1 to 10000",
        ));
    }
    Ok(ServeSettings {
        tokens,
        upload_ttl: raw.upload_ttl,
        max_uploads: raw.max_uploads,
        max_upload_bytes: raw.max_upload_bytes,
        auth_failures_per_minute: raw.auth_failures_per_minute,
    })
}
