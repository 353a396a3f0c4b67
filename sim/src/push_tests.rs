//! The simulator's pushes over real HTTP, checked as a receiver would: a fal webhook goes
//! to the submit's `fal_webhook`, signed by the key of `/.well-known/jwks.json` over fal's
//! message, and `push_wrong_key` signs with another; Kling posts the task object to the
//! create's `callback_url` on `processing` and on the terminal status; dropped pushes are
//! never sent.

use crate::tests::{fast_knobs, start};
use crate::Knobs;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use reqwest::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver that records every POST to `/hook`; its URL.
async fn capture() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |h: HeaderMap, b: axum::body::Bytes| {
            let s = s2.clone();
            async move {
                s.lock().unwrap().push((h, b.to_vec()));
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

async fn wait_for(seen: &Seen, n: usize) -> Vec<(HeaderMap, Vec<u8>)> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let got = seen.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < end, "only {} pushes", got.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verifies(key: &VerifyingKey, h: &HeaderMap, body: &[u8]) -> bool {
    let get = |n: &str| h[n].to_str().unwrap().to_owned();
    let msg = format!(
        "{}\n{}\n{}\n{}",
        get("x-fal-webhook-request-id"),
        get("x-fal-webhook-user-id"),
        get("x-fal-webhook-timestamp"),
        hex::encode(Sha256::digest(body))
    );
    let sig: [u8; 64] = hex::decode(get("x-fal-webhook-signature"))
        .unwrap()
        .try_into()
        .unwrap();
    key.verify_strict(msg.as_bytes(), &Signature::from_bytes(&sig))
        .is_ok()
}

#[tokio::test]
async fn fal_webhooks_are_signed_by_the_published_key_and_sent_where_asked() {
    let sim = start(fast_knobs()).await;
    let (hook, seen) = capture().await;
    let submit = |prompt: &str| {
        Client::new()
            .post(format!(
                "{}/fal-ai/kling-video/o1/video-to-video/edit",
                sim.base_url()
            ))
            .query(&[("fal_webhook", hook.as_str())])
            .header("Authorization", "Key fal-test")
            .json(&json!({"prompt": prompt, "video_url": "https://example.com/in.mp4"}))
            .send()
    };
    let q: Value = submit("one").await.unwrap().json().await.unwrap();
    let jwks: Value = Client::new()
        .get(format!("{}/.well-known/jwks.json", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    let x = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
    let got = wait_for(&seen, 1).await;
    let (h, body) = &got[0];
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["request_id"], q["request_id"]);
    assert_eq!(v["status"], "OK");
    assert!(v["payload"]["video"]["url"].is_string(), "{v}");
    assert_eq!(
        h["x-fal-webhook-request-id"],
        q["request_id"].as_str().unwrap()
    );
    assert!(verifies(&key, h, body), "signed by the published key");
    assert!(!verifies(&key, h, b"{}"), "over the body");
    sim.set_knobs(Knobs {
        push_wrong_key: true,
        ..fast_knobs()
    });
    submit("two").await.unwrap();
    let got = wait_for(&seen, 2).await;
    assert!(!verifies(&key, &got[1].0, &got[1].1), "push_wrong_key");
    // The sender counts a delivery once the receiver's answer is back, which can be just
    // after the receiver recorded the body: poll the counters with a deadline.
    let end = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = sim.push_stats();
        if s.delivered >= 2 || Instant::now() > end {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((s.sent, s.delivered, s.wrong_key), (2, 2, 1), "{s:?}");
}

#[tokio::test]
async fn dropped_pushes_are_never_sent() {
    let sim = start(Knobs {
        push_drop_rate: 1.0,
        ..fast_knobs()
    })
    .await;
    let url = format!(
        "{}/fal-ai/kling-video/o1/video-to-video/edit",
        sim.base_url()
    );
    Client::new()
        .post(url)
        .query(&[("fal_webhook", "http://127.0.0.1:9/hook")])
        .header("Authorization", "Key fal-test")
        .json(&json!({"prompt": "p", "video_url": "https://example.com/in.mp4"}))
        .send()
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while sim.push_stats().dropped == 0 {
        assert!(Instant::now() < end, "{:?}", sim.push_stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sim.push_stats().sent, 0);
    let bad = Knobs {
        push_duplicate_rate: 1.5,
        ..Knobs::default()
    };
    assert!(bad.check().unwrap_err().contains("push_duplicate_rate"));
}
