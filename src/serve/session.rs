//! Console sessions: signing in with an API token makes a session (a random id in an
//! `HttpOnly`, `SameSite=Strict` cookie) that carries the token's name and role and a
//! CSRF token every form must send back. Sessions live in Redis under the id's SHA-256
//! (`queue::sessions`), so every console process behind one address serves the same
//! sign-ins and a restart signs nobody out. They expire [`SESSION_TTL`] after sign-in and
//! are bounded in number ([`MAX_SESSIONS`]). A session holds only while its token does:
//! each request looks the token's name up in this process's tokens and takes the role from
//! there, so removing or demoting a token ends or demotes its sessions. The token itself is
//! never kept.

use crate::config::{ApiToken, Role};
use crate::queue::{Queue, QueueError, StoredSession};
use axum::http::{header, HeaderMap};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "restyle_session";
/// How long a session lasts from sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions held at once; the oldest goes first beyond it.
pub const MAX_SESSIONS: usize = 10_000;

/// One signed-in console user.
#[derive(Debug, Clone)]
pub struct Session {
    /// The name of the token entry signed in with.
    pub name: String,
    pub role: Role,
    /// Sent back in every form's hidden `csrf` field.
    pub csrf: String,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A new session for the token entry `name`; returns its id (the cookie's value). Stored
/// under the id's SHA-256 ([`super::auth::hash_token`]), never the id.
pub async fn create(queue: &Queue, name: &str) -> Result<String, QueueError> {
    let id = random_hex();
    let stored = StoredSession {
        name: name.to_owned(),
        csrf: random_hex(),
    };
    let ttl = SESSION_TTL.as_millis() as u64;
    queue
        .session_create(&super::auth::hash_token(&id), &stored, ttl, MAX_SESSIONS)
        .await?;
    Ok(id)
}

/// The live session the request's cookie names, while its token is one of `tokens`
/// (with that token's role now).
pub async fn get(
    queue: &Queue,
    tokens: &[ApiToken],
    headers: &HeaderMap,
) -> Result<Option<Session>, QueueError> {
    let Some(id) = cookie(headers) else {
        return Ok(None);
    };
    let Some(stored) = queue.session(&super::auth::hash_token(&id)).await? else {
        return Ok(None);
    };
    let Some(token) = tokens.iter().find(|t| t.name == stored.name) else {
        return Ok(None);
    };
    Ok(Some(Session {
        name: stored.name,
        role: token.role,
        csrf: stored.csrf,
    }))
}

/// Ends the request's session.
pub async fn remove(queue: &Queue, headers: &HeaderMap) -> Result<(), QueueError> {
    match cookie(headers) {
        Some(id) => queue.session_remove(&super::auth::hash_token(&id)).await,
        None => Ok(()),
    }
}

impl Session {
    /// Whether a form's `csrf` field is this session's (constant time).
    pub fn csrf_ok(&self, sent: &str) -> bool {
        self.csrf.len() == sent.len() && bool::from(self.csrf.as_bytes().ct_eq(sent.as_bytes()))
    }
}

/// The session id of the request's `Cookie` header (64 hex digits, or nothing).
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the request reached the TLS-terminating proxy in front of the console over
/// https (`X-Forwarded-Proto: https`, or `proto=https` in `Forwarded`). It only decides
/// whether the cookie is also `Secure`, which can make it stricter, never looser, so a
/// client claiming it does not weaken anything.
pub fn behind_tls(headers: &HeaderMap) -> bool {
    let says_https = |name: &str, matches: &dyn Fn(&str) -> bool| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| matches(&v.to_ascii_lowercase()))
    };
    says_https("x-forwarded-proto", &|v| {
        v.split(',').next().map(str::trim) == Some("https")
    }) || says_https("forwarded", &|v| {
        v.split([';', ','])
            .any(|kv| kv.trim().replace('"', "") == "proto=https")
    })
}

fn attributes(secure: bool) -> &'static str {
    if secure {
        "HttpOnly; Secure; SameSite=Strict; Path=/console"
    } else {
        "HttpOnly; SameSite=Strict; Path=/console"
    }
}

/// The `Set-Cookie` value of a new session (`Secure` when served over https).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; {}; Max-Age={}",
        attributes(secure),
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that ends one.
pub fn clear_cookie(secure: bool) -> String {
    format!("{COOKIE}=; {}; Max-Age=0", attributes(secure))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn the_cookie_is_secure_exactly_when_the_proxy_says_https() {
        assert!(behind_tls(&with("x-forwarded-proto", "https")));
        assert!(behind_tls(&with("x-forwarded-proto", "HTTPS, http")));
        assert!(behind_tls(&with("forwarded", "for=1.2.3.4;proto=https")));
        assert!(behind_tls(&with("forwarded", "proto=\"https\";by=x")));
        assert!(!behind_tls(&HeaderMap::new()));
        assert!(!behind_tls(&with("x-forwarded-proto", "http")));
        assert!(!behind_tls(&with("x-forwarded-proto", "http, https")));
        assert!(!behind_tls(&with("forwarded", "proto=http")));
        assert!(set_cookie("a", true).contains("; Secure;"));
        assert!(!set_cookie("a", false).contains("Secure"));
        assert!(clear_cookie(true).contains("; Secure;"));
    }
}
