//! Console sessions: signing in with an API token makes a session (a random id in an
//! `HttpOnly`, `SameSite=Strict` cookie) that carries the token's name and role and a
//! CSRF token every form must send back. Sessions live in this process's memory, expire
//! after [`SESSION_TTL`], and are bounded in number ([`MAX_SESSIONS`]); the token itself
//! is not kept.

use crate::config::Role;
use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
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
    created: Instant,
}

/// The sessions of this process.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// A new session; returns its id (the cookie's value).
    pub fn create(&self, name: &str, role: Role) -> String {
        let id = random_hex();
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                name: name.to_owned(),
                role,
                csrf: random_hex(),
                created: Instant::now(),
            },
        );
        id
    }

    /// The live session the request's cookie names.
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let map = self.map.lock().expect("sessions lock");
        map.get(&id)
            .filter(|s| s.created.elapsed() < SESSION_TTL)
            .cloned()
    }

    /// Ends the request's session.
    pub fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.map.lock().expect("sessions lock").remove(&id);
        }
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
