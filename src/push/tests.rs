//! Unit tests of the push pieces that need no server: tokens, URLs, fal's signed message,
//! timestamps, JWKS parsing and signature checks.

use super::fal::{parse_jwks, Refusal, Signed};
use super::*;
use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use std::time::Duration;

fn secret() -> SecretString {
    SecretString::from("push-secret-0123456789abcdef".to_string())
}

#[test]
fn kling_tokens_are_per_job_and_namespace_and_checked() {
    let s = secret();
    let t = kling_token(&s, "ns1", "b1.00000");
    assert_eq!(t.len(), 64);
    assert!(kling_token_ok(&s, "ns1", "b1.00000", &t));
    assert!(!kling_token_ok(&s, "ns1", "b1.00001", &t), "another job");
    assert!(
        !kling_token_ok(&s, "ns2", "b1.00000", &t),
        "another namespace"
    );
    let other = SecretString::from("another-secret-0123456789".to_string());
    assert!(
        !kling_token_ok(&other, "ns1", "b1.00000", &t),
        "another secret"
    );
    assert!(!kling_token_ok(&s, "ns1", "b1.00000", &t[..62]));
    assert!(!kling_token_ok(&s, "ns1", "b1.00000", ""));
    assert!(!kling_token_ok(&s, "ns1", "b1.00000", "zz"));
}

#[test]
fn callback_urls_name_the_job_under_the_public_url() {
    let mut settings = crate::config::Settings::builtin();
    assert!(
        Callbacks::from_settings(&settings).is_none(),
        "push off by default"
    );
    settings.push.public_url = Some(url::Url::parse("https://push.example.com/base/").unwrap());
    settings.push.secret = Some(secret());
    let c = Callbacks::from_settings(&settings).unwrap();
    assert_eq!(
        c.fal_webhook("b1.00002").as_str(),
        "https://push.example.com/base/push/fal/b1.00002"
    );
    let k = c.kling_callback("b1.00002");
    let token = kling_token(&secret(), &settings.redis.namespace, "b1.00002");
    assert_eq!(
        k.as_str(),
        format!("https://push.example.com/base/push/kling/b1.00002/{token}")
    );
    assert!(!format!("{c:?}").contains("push-secret"), "{c:?}");
}

fn signed_headers(key: &SigningKey, body: &[u8], ts: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-fal-webhook-request-id", "req-1".parse().unwrap());
    h.insert("x-fal-webhook-user-id", "user-9".parse().unwrap());
    h.insert("x-fal-webhook-timestamp", ts.to_string().parse().unwrap());
    let msg = format!(
        "req-1\nuser-9\n{ts}\n{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body))
    );
    let sig = key.sign(msg.as_bytes());
    h.insert(
        "x-fal-webhook-signature",
        hex::encode(sig.to_bytes()).parse().unwrap(),
    );
    h
}

fn jwks_of(key: &SigningKey) -> Vec<u8> {
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
    serde_json::to_vec(&serde_json::json!({"keys": [
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {"kty": "OKP", "crv": "Ed25519", "x": "not base64 !"},
        {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"},
    ]}))
    .unwrap()
}

#[test]
fn a_signature_is_good_for_its_key_body_and_headers_only() {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let keys = parse_jwks(&jwks_of(&key));
    assert_eq!(keys.len(), 1, "only the Ed25519 key that parses");
    let body = br#"{"request_id":"req-1","status":"OK"}"#;
    let h = signed_headers(&key, body, 1_700_000_000);
    let s = Signed::from_headers(&h).unwrap();
    assert!(s.verified_by(&keys, body));
    assert!(!s.verified_by(&keys, br#"{"request_id":"req-1","status":"ERROR"}"#));
    let other = parse_jwks(&jwks_of(&SigningKey::from_bytes(&[8u8; 32])));
    assert!(!s.verified_by(&other, body), "a wrong key");
    let mut changed = h.clone();
    changed.insert("x-fal-webhook-user-id", "user-8".parse().unwrap());
    assert!(!Signed::from_headers(&changed)
        .unwrap()
        .verified_by(&keys, body));
    assert!(parse_jwks(b"not json").is_empty());
}

#[test]
fn timestamps_outside_the_tolerance_are_stale_either_way() {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let s = Signed::from_headers(&signed_headers(&key, b"{}", 1_000_000)).unwrap();
    let tol = Duration::from_secs(300);
    assert!(s.fresh(1_000_000, tol));
    assert!(s.fresh(1_000_300, tol));
    assert!(!s.fresh(1_000_301, tol));
    assert!(!s.fresh(999_699, tol), "from the future");
}

#[test]
fn malformed_headers_are_refused_before_any_key_is_used() {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let good = signed_headers(&key, b"{}", 1);
    for (name, bad) in [
        ("x-fal-webhook-signature", "abcd".to_string()),
        ("x-fal-webhook-signature", "zz".repeat(64)),
        ("x-fal-webhook-timestamp", "12a".to_string()),
        ("x-fal-webhook-request-id", "r".repeat(300)),
    ] {
        let mut h = good.clone();
        h.insert(name, bad.parse().unwrap());
        assert_eq!(Signed::from_headers(&h), Err(Refusal::Malformed), "{name}");
    }
    let mut h = good.clone();
    h.remove("x-fal-webhook-user-id");
    assert_eq!(Signed::from_headers(&h), Err(Refusal::Malformed));
    assert_eq!(Refusal::BadSignature.status().as_u16(), 401);
    assert_eq!(Refusal::StaleTimestamp.status().as_u16(), 401);
    assert_eq!(Refusal::WrongToken.status().as_u16(), 401);
}
