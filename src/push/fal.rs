//! fal's webhook signature, as fal documents it (docs/providers.md, "Push — fal"): four
//! headers, `X-Fal-Webhook-Request-Id`, `-User-Id`, `-Timestamp` (Unix seconds) and
//! `-Signature` (hex); the signed message is the first three and the hex SHA-256 of the
//! raw body, joined by `\n`; the algorithm is Ed25519; the public keys are the `x` of each
//! `OKP`/`Ed25519` key of fal's JWKS, and a signature is good if any key verifies it.
//! A timestamp further than `push.timestamp_tolerance` (fal: ±5 minutes) from now is
//! refused before any key is used.
//!
//! Keys are fetched through the egress policy, within a timeout and a size cap, and
//! cached for `push.jwks_ttl`; a signature no cached key verifies makes one early fetch
//! (keys rotate), at most every [`MIN_REFETCH`]. When fal cannot be reached the last keys
//! stay in use; with none at all the push is answered 503 (fal retries deliveries).

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// fal's published webhook signing keys.
pub const FAL_JWKS_URL: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";

/// The soonest a JWKS is fetched again after a signature no cached key verified.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);
/// A JWKS fetch gives up after this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS larger than this is refused (fal's holds a few keys of ~100 bytes).
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Keys kept of one JWKS.
const MAX_KEYS: usize = 16;
/// The longest request id or user id header taken.
const MAX_ID_LEN: usize = 256;

/// Why a push was refused: the `reason` label of `restyle_push_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A header missing, too long or not of its form; a path that names no job.
    Malformed,
    /// fal: the signed timestamp is outside the tolerance.
    StaleTimestamp,
    /// fal: no key of the JWKS verifies the signature (a wrong key included).
    BadSignature,
    /// fal: the signed request is not the one the job's submit created.
    WrongRequest,
    /// Kling: the callback token is not the job's.
    WrongToken,
    /// fal: no signing keys could be had (answered 503: fal retries).
    KeysUnavailable,
    /// The body is over `push.max_body_bytes`.
    TooLarge,
    /// Headers and body took longer than `push.request_timeout`.
    Timeout,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::StaleTimestamp => "stale_timestamp",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongRequest => "wrong_request",
            Refusal::WrongToken => "wrong_token",
            Refusal::KeysUnavailable => "keys_unavailable",
            Refusal::TooLarge => "too_large",
            Refusal::Timeout => "timeout",
        }
    }

    /// The answer: 401 for anything that fails authentication.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Malformed => StatusCode::BAD_REQUEST,
            Refusal::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::StaleTimestamp
            | Refusal::BadSignature
            | Refusal::WrongRequest
            | Refusal::WrongToken => StatusCode::UNAUTHORIZED,
        }
    }
}

/// The signature headers of one webhook, checked for form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub request_id: String,
    pub user_id: String,
    pub timestamp: String,
    pub signature: [u8; 64],
}

fn header<'h>(h: &'h HeaderMap, name: &str, max: usize) -> Result<&'h str, Refusal> {
    let v = h.get(name).ok_or(Refusal::Malformed)?;
    let s = v.to_str().map_err(|_| Refusal::Malformed)?;
    if s.is_empty() || s.len() > max || s.bytes().any(|b| b.is_ascii_control()) {
        return Err(Refusal::Malformed);
    }
    Ok(s)
}

impl Signed {
    /// Reads the four headers: ids of at most 256 printable characters, a timestamp of
    /// digits, a signature of exactly 128 hex digits.
    pub fn from_headers(h: &HeaderMap) -> Result<Signed, Refusal> {
        let request_id = header(h, "x-fal-webhook-request-id", MAX_ID_LEN)?;
        let user_id = header(h, "x-fal-webhook-user-id", MAX_ID_LEN)?;
        let timestamp = header(h, "x-fal-webhook-timestamp", 20)?;
        if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Refusal::Malformed);
        }
        let sig = header(h, "x-fal-webhook-signature", 128)?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(sig, &mut signature).map_err(|_| Refusal::Malformed)?;
        Ok(Signed {
            request_id: request_id.to_string(),
            user_id: user_id.to_string(),
            timestamp: timestamp.to_string(),
            signature,
        })
    }

    /// What fal signs: `request_id \n user_id \n timestamp \n hex(sha256(body))`.
    pub fn message(&self, body: &[u8]) -> Vec<u8> {
        let digest = hex::encode(Sha256::digest(body));
        [
            self.request_id.as_str(),
            &self.user_id,
            &self.timestamp,
            &digest,
        ]
        .join("\n")
        .into_bytes()
    }

    /// Whether the timestamp is within `tolerance` of `now` (Unix seconds), either way.
    pub fn fresh(&self, now: u64, tolerance: Duration) -> bool {
        self.timestamp
            .parse::<u64>()
            .is_ok_and(|t| t.abs_diff(now) <= tolerance.as_secs())
    }

    /// Whether one of `keys` verifies the signature over `body`.
    pub fn verified_by(&self, keys: &[VerifyingKey], body: &[u8]) -> bool {
        let msg = self.message(body);
        let sig = Signature::from_bytes(&self.signature);
        keys.iter().any(|k| k.verify_strict(&msg, &sig).is_ok())
    }
}

/// The Ed25519 keys of a JWKS document; entries of other types (or broken ones) skipped.
pub fn parse_jwks(body: &[u8]) -> Vec<VerifyingKey> {
    #[derive(serde::Deserialize)]
    struct Jwks {
        #[serde(default)]
        keys: Vec<serde_json::Value>,
    }
    let Ok(doc) = serde_json::from_slice::<Jwks>(body) else {
        return Vec::new();
    };
    let key = |k: &serde_json::Value| -> Option<VerifyingKey> {
        let field = |name: &str| k.get(name).and_then(serde_json::Value::as_str);
        if field("kty")? != "OKP" || field("crv").is_some_and(|c| c != "Ed25519") {
            return None;
        }
        let raw = URL_SAFE_NO_PAD
            .decode(field("x")?.trim_end_matches('='))
            .ok()?;
        VerifyingKey::from_bytes(&raw.try_into().ok()?).ok()
    };
    doc.keys.iter().filter_map(key).take(MAX_KEYS).collect()
}

#[derive(Debug)]
struct Cached {
    keys: Vec<VerifyingKey>,
    fetched: Instant,
}

/// fal's verifier: the JWKS address, the egress client it is fetched with, and the cache.
#[derive(Debug)]
pub struct FalVerifier {
    url: url::Url,
    egress: crate::egress::Egress,
    ttl: Duration,
    tolerance: Duration,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl FalVerifier {
    pub fn new(
        url: url::Url,
        egress: crate::egress::Egress,
        ttl: Duration,
        tolerance: Duration,
    ) -> Self {
        FalVerifier {
            url,
            egress,
            ttl,
            tolerance,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Checks a webhook's headers, timestamp and signature; the signed headers when good.
    pub async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Signed, Refusal> {
        let signed = Signed::from_headers(headers)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if !signed.fresh(now, self.tolerance) {
            return Err(Refusal::StaleTimestamp);
        }
        let mut cache = self.cache.lock().await;
        let stale = cache
            .as_ref()
            .is_none_or(|c| c.fetched.elapsed() >= self.ttl);
        if stale {
            self.refresh(&mut cache).await;
        }
        let keys = cache.as_ref().map(|c| c.keys.as_slice()).unwrap_or(&[]);
        if keys.is_empty() {
            return Err(Refusal::KeysUnavailable);
        }
        if signed.verified_by(keys, body) {
            return Ok(signed);
        }
        // Perhaps fal rotated its keys: one early fetch, not more often than MIN_REFETCH.
        if cache
            .as_ref()
            .is_some_and(|c| c.fetched.elapsed() >= MIN_REFETCH)
        {
            self.refresh(&mut cache).await;
            let keys = cache.as_ref().map(|c| c.keys.as_slice()).unwrap_or(&[]);
            if signed.verified_by(keys, body) {
                return Ok(signed);
            }
        }
        Err(Refusal::BadSignature)
    }

    /// Fetches the JWKS; on failure keeps what was cached (its age restarts, so a dead
    /// fal is asked again after `MIN_REFETCH`, not on every push).
    async fn refresh(&self, cache: &mut Option<Cached>) {
        match self.fetch().await {
            Ok(keys) if !keys.is_empty() => {
                tracing::debug!(keys = keys.len(), "fal signing keys fetched.");
                *cache = Some(Cached {
                    keys,
                    fetched: Instant::now(),
                });
            }
            outcome => {
                let why = outcome
                    .err()
                    .unwrap_or_else(|| "no Ed25519 key in it".into());
                tracing::warn!(reason = %why, "Could not fetch fal's webhook signing keys.");
                let keys = cache.take().map(|c| c.keys).unwrap_or_default();
                // Not retried for MIN_REFETCH: pretend the failed fetch was one.
                let fetched = Instant::now()
                    .checked_sub(self.ttl.saturating_sub(MIN_REFETCH))
                    .unwrap_or_else(Instant::now);
                *cache = Some(Cached { keys, fetched });
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<VerifyingKey>, String> {
        let rb = self.egress.get(&self.url).map_err(|r| r.to_string())?;
        let got = tokio::time::timeout(FETCH_TIMEOUT, async {
            let mut resp = rb.send().await.map_err(crate::egress::explain)?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status().as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(crate::egress::explain)? {
                if body.len() + chunk.len() > MAX_JWKS_BYTES {
                    return Err(format!("JWKS over {MAX_JWKS_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        })
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))??;
        Ok(parse_jwks(&got))
    }
}
