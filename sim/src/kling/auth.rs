//! Kling's request authentication, as Kling documents it: every request carries
//! `Authorization: Bearer <JWT>`, an HS256 token whose `iss` is the access key, signed with
//! that key's secret, valid from `nbf` until `exp` (Unix seconds). The `api_keys` knob
//! lists accepted keys as `"AK:SK"`; the signature is checked with `jsonwebtoken`, the
//! time window here against the caller's clock (no leeway) so it can be tested. 401 codes:
//! 1000 unknown access key, 1001 no credential, 1002 malformed or badly signed token,
//! 1003 not yet valid, 1004 expired.

use axum::http::{header, HeaderMap};
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Why a request's credential was refused: Kling's code and message.
pub(super) type Denied = (i64, &'static str);

const INVALID: Denied = (1002, "Authorization is invalid");

/// The claims Kling's tokens carry.
#[derive(Debug, Deserialize)]
struct Claims {
    /// The access key.
    iss: String,
    /// Expiry, Unix seconds.
    exp: u64,
    /// Start of validity, Unix seconds; absent means valid from the start.
    #[serde(default)]
    nbf: Option<u64>,
}

/// The access key of a valid token at `now` (Unix seconds), or the 401 code and message.
/// With `keys` empty any well-formed, time-valid HS256 token passes unsigned
/// (ASSUMPTION); otherwise its issuer must be listed as `"AK:SK"` and its signature must
/// verify with that SK.
pub(super) fn verify(keys: &[String], headers: &HeaderMap, now: u64) -> Result<String, Denied> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or((1001, "Authorization is empty"))?;
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err(INVALID),
    };
    let head = jsonwebtoken::decode_header(token).map_err(|_| INVALID)?;
    if head.alg != Algorithm::HS256 {
        return Err(INVALID);
    }
    // Read unverified first: the issuer names the secret to verify with.
    let claims: Claims =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| INVALID)?;
    if claims.iss.is_empty() {
        return Err(INVALID);
    }
    if !keys.is_empty() {
        let secret = keys
            .iter()
            .find_map(|k| k.split_once(':').filter(|(ak, _)| *ak == claims.iss))
            .map(|(_, sk)| sk)
            .ok_or((1000, "Authentication failed"))?;
        check_signature(token, &claims.iss, secret)?;
    }
    if claims.nbf.unwrap_or(0) > now {
        return Err((1003, "Authorization is not yet valid"));
    }
    if claims.exp <= now {
        return Err((1004, "Authorization has expired"));
    }
    Ok(claims.iss)
}

/// Verifies the token's HS256 signature with `secret` and that `iss` is `access_key`.
/// The time claims are left to [`verify`], which checks them against its own clock.
fn check_signature(token: &str, access_key: &str, secret: &str) -> Result<(), Denied> {
    ensure_crypto_provider();
    // An empty secret is no key at all: nothing verifies with it.
    let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|_| INVALID)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[access_key]);
    validation.set_required_spec_claims(&["iss", "exp"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    // Kling's tokens carry no audience; one that does is not refused for it.
    validation.validate_aud = false;
    jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map(drop)
        .map_err(|_| INVALID)
}

/// Makes sure `jsonwebtoken` has a crypto backend. It picks one by itself only when
/// exactly one of its backend features is enabled; another crate in the same build may
/// enable the other, and then this crate's is installed (unless the process chose one).
pub(super) fn ensure_crypto_provider() {
    if CryptoProvider::try_get_default().is_none() {
        // An `Err` means another thread installed one first: any backend does HS256.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use axum::http::HeaderValue;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// A token as Kling documents minting one: valid from 5 s before `now` for 30 minutes.
    fn mint(access_key: &str, secret_key: &str, now: u64) -> String {
        let claims = json!({"iss": access_key, "exp": now + 1800, "nbf": now - 5});
        sign(&Header::new(Algorithm::HS256), &claims, secret_key)
    }

    fn sign(head: &Header, claims: &serde_json::Value, secret_key: &str) -> String {
        ensure_crypto_provider();
        let key = EncodingKey::from_secret(secret_key.as_bytes()).unwrap();
        jsonwebtoken::encode(head, claims, &key).unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        h.insert(header::AUTHORIZATION, v);
        h
    }

    #[test]
    fn tokens_are_checked_for_signature_issuer_and_time() {
        let keys = vec!["ak:sk".to_owned(), "plain-key".to_owned()];
        let now = 1_000_000;
        let auth = |token: &str, keys: &[String]| verify(keys, &bearer(token), now);
        assert_eq!(auth(&mint("ak", "sk", now), &keys), Ok("ak".into()));
        assert_eq!(auth(&mint("ak", "wrong", now), &keys).unwrap_err().0, 1002);
        assert_eq!(auth(&mint("other", "sk", now), &keys).unwrap_err().0, 1000);
        assert_eq!(
            auth(&mint("ak", "sk", now - 1800), &keys).unwrap_err().0,
            1004
        );
        assert_eq!(
            auth(&mint("ak", "sk", now + 60), &keys).unwrap_err().0,
            1003
        );
        assert_eq!(auth("not-a-jwt", &keys).unwrap_err().0, 1002);
        let empty = verify(&keys, &HeaderMap::new(), now).unwrap_err();
        assert_eq!(empty.0, 1001);
        // No keys configured: any well-formed token, unsigned, but still within its time.
        assert_eq!(auth(&mint("anyone", "x", now), &[]), Ok("anyone".into()));
        assert_eq!(
            auth(&mint("anyone", "x", now - 1800), &[]).unwrap_err().0,
            1004
        );
    }

    #[test]
    fn tokens_need_hs256_an_issuer_and_an_expiry() {
        let keys = vec!["ak:sk".to_owned()];
        let now = 1_000_000;
        let auth = |token: &str| verify(&keys, &bearer(token), now).map_err(|e| e.0);
        let hs512 = Header::new(Algorithm::HS512);
        let claims = json!({"iss": "ak", "exp": now + 1800});
        assert_eq!(auth(&sign(&hs512, &claims, "sk")), Err(1002));
        let hs256 = Header::new(Algorithm::HS256);
        // `nbf` is optional; `exp` and a non-empty `iss` are not.
        assert_eq!(auth(&sign(&hs256, &claims, "sk")), Ok("ak".into()));
        let no_exp = json!({"iss": "ak", "nbf": now});
        assert_eq!(auth(&sign(&hs256, &no_exp, "sk")), Err(1002));
        let blank = json!({"iss": "", "exp": now + 1800});
        assert_eq!(auth(&sign(&hs256, &blank, "sk")), Err(1002));
        // Expired at exactly `exp`.
        let edge = json!({"iss": "ak", "exp": now});
        assert_eq!(auth(&sign(&hs256, &edge, "sk")), Err(1004));
        // Another scheme than Bearer is malformed, not missing.
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        assert_eq!(verify(&keys, &basic, now).unwrap_err().0, 1002);
    }
}
