//! Pushes the simulator sends: fal webhooks (to the submit's `fal_webhook`, signed as fal
//! documents: Ed25519 over `request_id \n user_id \n timestamp \n hex(sha256(body))`, hex
//! in `X-Fal-Webhook-Signature`, the key published at `GET /.well-known/jwks.json`) and
//! Kling callbacks (to the task's `callback_url`, unsigned: Kling documents no signature).
//! A push goes only to the URL the client gave.
//!
//! Knobs: `push_drop_rate` (never sent), `push_delay` (waited before each, times
//! `time_scale`), `push_duplicate_rate` (sent twice), `push_wrong_key` (fal: signed with a
//! key the JWKS does not hold), `push_clock_skew` (fal: the signed timestamp is this far
//! in the past). Counters at `GET /sim/push` ([`PushStats`]), with the detection delay of
//! pushed fal requests: the first status poll that saw COMPLETED minus the completion.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::state::SimState;

/// The `kid` of the simulator's signing key in its JWKS.
const KID: &str = "restyle-sim-1";
/// The user id fal's webhooks carry (`X-Fal-Webhook-User-Id`).
pub(crate) const USER_ID: &str = "sim-user";
/// Detection delays kept (oldest dropped).
const MAX_DETECTIONS: usize = 100_000;

/// What the pushes did, as `GET /sim/push` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PushStats {
    /// POSTs made (a duplicate counts twice).
    pub sent: u64,
    /// Answered 2xx.
    pub delivered: u64,
    /// Answered 401.
    pub unauthorized: u64,
    /// Answered anything else that is not 2xx.
    pub refused: u64,
    /// Never answered (connection refused, timeout).
    pub failed: u64,
    /// Not sent (`push_drop_rate`).
    pub dropped: u64,
    /// Sent twice (`push_duplicate_rate`).
    pub duplicated: u64,
    /// fal pushes signed with the wrong key (`push_wrong_key`).
    pub wrong_key: u64,
    /// For each pushed fal request polled after it completed: ms from its completion to
    /// the first status poll that answered COMPLETED.
    pub fal_detection_ms: Vec<u64>,
}

/// The push bookkeeping inside the simulator's lock.
#[derive(Debug)]
pub(crate) struct PushState {
    key: SigningKey,
    wrong: SigningKey,
    client: reqwest::Client,
    pub(crate) stats: PushStats,
    /// Pushed fal requests not yet seen COMPLETED by a poll, with their completion.
    watching: HashMap<String, Option<Instant>>,
    seen: HashSet<String>,
}

impl Default for PushState {
    fn default() -> Self {
        let seed = || SigningKey::from_bytes(&rand::rng().random::<[u8; 32]>());
        PushState {
            key: seed(),
            wrong: seed(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an http client builds"),
            stats: PushStats::default(),
            watching: HashMap::new(),
            seen: HashSet::new(),
        }
    }
}

impl PushState {
    /// A fal request whose completion will be pushed; its detection delay is measured.
    pub(crate) fn watch_fal(&mut self, id: &str) {
        self.watching.insert(id.to_owned(), None);
    }

    /// A status poll answered COMPLETED for `id`, which completed at `end`.
    pub(crate) fn saw_completed(&mut self, id: &str, end: Option<Instant>, now: Instant) {
        if self.watching.remove(id).is_none() || !self.seen.insert(id.to_owned()) {
            return;
        }
        if let Some(end) = end {
            if self.stats.fal_detection_ms.len() >= MAX_DETECTIONS {
                self.stats.fal_detection_ms.remove(0);
            }
            let ms = now.saturating_duration_since(end).as_millis() as u64;
            self.stats.fal_detection_ms.push(ms);
        }
    }
}

/// `GET /.well-known/jwks.json` (the path of fal's own JWKS) and `GET /sim/push`.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/sim/push", get(stats))
}

async fn jwks(State(state): State<SimState>) -> Json<Value> {
    let x = URL_SAFE_NO_PAD.encode(state.lock().push.key.verifying_key().to_bytes());
    Json(json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "x": x, "kid": KID, "use": "sig", "alg": "EdDSA",
    }]}))
}

async fn stats(State(state): State<SimState>) -> Json<PushStats> {
    Json(state.lock().push.stats.clone())
}

/// A push ready to go: where, the body, and (fal) the request id it is signed for.
#[derive(Debug)]
pub(crate) struct Push {
    pub url: String,
    pub body: Value,
    pub fal_request_id: Option<String>,
}

/// Sends one push as the knobs say: maybe dropped, after the delay, once or twice.
pub(crate) async fn deliver(state: SimState, push: Push) {
    let (drop, delay, twice) = {
        let mut inner = state.lock();
        let k = inner.knobs.clone();
        let drop = inner.chance(k.push_drop_rate);
        let twice = !drop && inner.chance(k.push_duplicate_rate);
        let scale = if k.time_scale.is_finite() {
            k.time_scale.max(0.0)
        } else {
            0.0
        };
        if drop {
            inner.push.stats.dropped += 1;
        }
        if twice {
            inner.push.stats.duplicated += 1;
        }
        (drop, k.push_delay.mul_f64(scale), twice)
    };
    if drop {
        tracing::debug!("sim: push dropped");
        return;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let body = serde_json::to_vec(&push.body).unwrap_or_default();
    for _ in 0..if twice { 2 } else { 1 } {
        post(&state, &push, &body).await;
    }
}

async fn post(state: &SimState, push: &Push, body: &[u8]) {
    let rb = {
        let mut inner = state.lock();
        let (skew, wrong) = (inner.knobs.push_clock_skew, inner.knobs.push_wrong_key);
        let p = &mut inner.push;
        p.stats.sent += 1;
        let mut rb = p
            .client
            .post(&push.url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(request_id) = &push.fal_request_id {
            let ts = SystemTime::now()
                .checked_sub(skew)
                .unwrap_or(UNIX_EPOCH)
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .to_string();
            let message = format!(
                "{request_id}\n{USER_ID}\n{ts}\n{}",
                hex::encode(Sha256::digest(body))
            );
            if wrong {
                p.stats.wrong_key += 1;
            }
            let key = if wrong { &p.wrong } else { &p.key };
            let signature = hex::encode(key.sign(message.as_bytes()).to_bytes());
            rb = rb
                .header("x-fal-webhook-request-id", request_id)
                .header("x-fal-webhook-user-id", USER_ID)
                .header("x-fal-webhook-timestamp", ts)
                .header("x-fal-webhook-signature", signature);
        }
        rb
    };
    let outcome = rb.send().await;
    let mut inner = state.lock();
    let s = &mut inner.push.stats;
    match outcome {
        Ok(r) if r.status().is_success() => s.delivered += 1,
        Ok(r) if r.status().as_u16() == 401 => s.unauthorized += 1,
        Ok(_) => s.refused += 1,
        Err(e) => {
            tracing::debug!(error = %e, "sim: push not delivered");
            s.failed += 1;
        }
    }
}

/// Whether a client-given push URL is one the simulator will call (http or https).
pub(crate) fn usable(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

/// How long a watcher waits before looking at a generation again: until `end` when
/// known, at most 50 ms, at least 2 ms.
pub(crate) fn next_look(end: Option<Instant>, now: Instant) -> Duration {
    let until = end.map_or(Duration::from_millis(50), |e| {
        e.saturating_duration_since(now)
    });
    until.clamp(Duration::from_millis(2), Duration::from_millis(50))
}
