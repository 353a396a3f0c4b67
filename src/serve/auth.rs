//! Access to the API: bearer tokens checked against the SHA-256 digests in `[serve]`, in
//! constant time, and the role each grants. A request without a valid token is refused
//! 401; a read-only token is refused 403 on anything that changes state. Bad tokens count
//! against the client address (`throttle`): past `[serve] auth_failures_per_minute` the
//! address gets 429 with `Retry-After`, whatever token it sends, until its lock-out ends.
//! A request with no `Authorization` header at all is not counted. The token is never
//! logged: only the name of the entry it matched.

use super::error::ApiError;
use super::AppState;
use crate::config::{ApiToken, Role};
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Longest `Authorization` header value looked at.
const MAX_TOKEN_LEN: usize = 512;

/// The SHA-256 of a token, as `[serve] tokens` entries hold it (hex).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random operator token (256 bits, hex, with a recognisable prefix).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("rst_{}", hex::encode(bytes))
}

/// The entry the presented token matches. Every entry is compared, each in constant
/// time, so the time taken says nothing about which digest bytes matched.
pub fn find<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for t in tokens {
        if bool::from(t.sha256.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    found
}

/// The token of an `Authorization: Bearer …` header, when there is one.
fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    if v.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether the method changes state (needs the operator role).
fn mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware in front of every `/api/v1` route.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = super::peer(req.extensions());
    if let Some(wait) = state.throttle.locked_out(ip) {
        return Err(ApiError::Throttled(super::throttle::retry_after_secs(wait)));
    }
    let Some(token) = bearer(&req).and_then(|t| find(&state.tokens, t)) else {
        if req.headers().contains_key(header::AUTHORIZATION) {
            if let Some(wait) = state.throttle.failed(ip) {
                tracing::warn!(%ip, "Too many bad API tokens from one address; locked out.");
                return Err(ApiError::Throttled(super::throttle::retry_after_secs(wait)));
            }
        }
        return Err(ApiError::Unauthorized);
    };
    if mutating(req.method()) && token.role != Role::Operator {
        return Err(ApiError::Forbidden(token.name.clone()));
    }
    tracing::debug!(token = %token.name, method = %req.method(), path = %req.uri().path(), "API request.");
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, token: &str, role: Role) -> ApiToken {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(hash_token(token), &mut sha256).unwrap();
        ApiToken {
            name: name.into(),
            role,
            sha256,
        }
    }

    #[test]
    fn finds_only_the_matching_entry() {
        let tokens = vec![
            entry("ci", "alpha", Role::Read),
            entry("ops", "beta", Role::Operator),
        ];
        assert_eq!(find(&tokens, "beta").map(|t| t.name.as_str()), Some("ops"));
        assert_eq!(find(&tokens, "alpha").map(|t| t.role), Some(Role::Read));
        assert!(find(&tokens, "gamma").is_none());
        assert!(find(&tokens, "").is_none());
    }

    #[test]
    fn hash_is_sha256_hex_and_generated_tokens_differ() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with("rst_") && a.len() == 68);
    }
}
