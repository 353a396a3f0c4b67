//! Push completion: providers that can report a finished generation (fal webhooks, Kling
//! callbacks) are told where, and `restyle receive` ([`receiver`]) turns an authentic
//! report into one thing only: the job's next poll moves to now ([`crate::queue::Queue::poke`]).
//! Polling stays the source of truth; what a push body claims (status, result URL) is
//! never used, so a lost, late, forged-but-refused or duplicated push changes nothing but
//! the detection delay.
//!
//! - this file: [`Callbacks`], the per-job URLs a client sends (fal's `fal_webhook`,
//!   Kling's `callback_url`), and the Kling callback token (HMAC-SHA256 of the namespace
//!   and job id under `push.secret`: Kling documents no signature, so the URL itself is
//!   the credential, unguessable and different for every job).
//! - `fal`: fal's webhook signature (Ed25519 over request id, user id, timestamp and the
//!   body's SHA-256, keys from fal's JWKS, cached) — docs/providers.md, "Push".
//! - [`receiver`]: the receiver's routes, bounds and metrics; `serve`: its HTTP/1 server.

mod fal;
pub mod receiver;
mod serve;

pub use fal::{FalVerifier, Refusal, FAL_JWKS_URL};
pub use receiver::Receiver;
pub use serve::serve;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Where a provider's client tells the provider to push, for one namespace. Holds the
/// push secret: its `Debug` shows the URL only.
#[derive(Clone)]
pub struct Callbacks {
    public_url: url::Url,
    secret: SecretString,
    namespace: String,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("public_url", &self.public_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Callbacks {
    /// The callbacks the settings describe, when push is on.
    pub fn from_settings(s: &crate::config::Settings) -> Option<Callbacks> {
        let (Some(public_url), Some(secret)) = (&s.push.public_url, &s.push.secret) else {
            return None;
        };
        Some(Callbacks {
            public_url: public_url.clone(),
            secret: secret.clone(),
            namespace: s.redis.namespace.clone(),
        })
    }

    /// `<public_url>/push/<segments…>`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> url::Url {
        let mut u = self.public_url.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty().push("push").extend(segments);
        }
        u
    }

    /// fal's `fal_webhook` for a job: `<public_url>/push/fal/<job_id>`. The signature
    /// authenticates it; the path names the job.
    pub fn fal_webhook(&self, job_id: &str) -> url::Url {
        self.url(&["fal", job_id])
    }

    /// Kling's `callback_url` for a job: `<public_url>/push/kling/<job_id>/<token>`.
    pub fn kling_callback(&self, job_id: &str) -> url::Url {
        let token = kling_token(&self.secret, &self.namespace, job_id);
        self.url(&["kling", job_id, &token])
    }
}

fn token_mac(secret: &SecretString, namespace: &str, job_id: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("restyle push v1\nkling\n{namespace}\n{job_id}").as_bytes());
    mac
}

/// The Kling callback token of a job: 64 hex characters (HMAC-SHA256).
pub fn kling_token(secret: &SecretString, namespace: &str, job_id: &str) -> String {
    hex::encode(token_mac(secret, namespace, job_id).finalize().into_bytes())
}

/// Whether `token` is the job's Kling callback token (compared in constant time).
pub fn kling_token_ok(secret: &SecretString, namespace: &str, job_id: &str, token: &str) -> bool {
    match hex::decode(token) {
        Ok(bytes) if bytes.len() == 32 => token_mac(secret, namespace, job_id)
            .verify_slice(&bytes)
            .is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
