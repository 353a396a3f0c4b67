//! Uploads against the simulator's fal storage (as fal-client speaks it): one request, or
//! parts; the stored file is the payload; a refused key is the account's error.

use super::*;
use crate::config::testing::TestSettings;
use crate::sim::{self, Knobs};
use sha2::{Digest, Sha256};
use std::sync::Arc;

const KEY: &str = "fal-test-key";

async fn fal_at_sim() -> (Fal, sim::SimHandle) {
    let knobs = Knobs {
        api_keys: vec![KEY.into()],
        ..Knobs::default()
    };
    let sim = sim::spawn("127.0.0.1:0".parse().unwrap(), knobs)
        .await
        .unwrap();
    let s = TestSettings::new()
        .provider_at(ProviderName::Fal, &sim.base_url(), KEY)
        .settings();
    let fal = Fal::new(&s.providers[&ProviderName::Fal]).unwrap();
    (fal, sim)
}

fn blob(len: usize) -> Arc<Blob> {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    Arc::new(Blob::new("video/mp4", bytes::Bytes::from(bytes)).unwrap())
}

async fn fetched_sha(url: &str) -> String {
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    hex::encode(Sha256::digest(&body))
}

#[tokio::test]
async fn a_payload_is_uploaded_whole_or_in_parts_and_served_as_it_was() {
    let (mut fal, sim) = fal_at_sim().await;
    assert!(fal.upload.enabled());
    let one = blob(300_000);
    let url = fal.upload_blob(&one).await.unwrap();
    assert!(url.starts_with(&sim.base_url()), "{url}");
    assert!(url.ends_with(".mp4"), "{url}");
    assert_eq!(fetched_sha(&url).await, one.sha256());

    // Over the threshold: parts (small ones here, the protocol is the same).
    fal.upload.multipart_over = 100_000;
    fal.upload.part_bytes = 64 * 1024;
    let big = blob(300_001);
    let url = fal.upload_blob(&big).await.unwrap();
    assert_eq!(fetched_sha(&url).await, big.sha256());
    let c = &sim.stats().by_provider["fal"];
    assert_eq!(c.uploads_total, 2);
    // Each byte went up once (plus the tokens' `{}`, the JSON of the parts list).
    let sent = c.request_bytes_total;
    assert!((600_001..600_001 + 1024).contains(&sent), "{sent}");
}

#[tokio::test]
async fn a_refused_key_is_the_accounts_error() {
    let (_, sim) = fal_at_sim().await;
    let s = TestSettings::new()
        .provider_at(ProviderName::Fal, &sim.base_url(), "wrong-key")
        .settings();
    let fal = Fal::new(&s.providers[&ProviderName::Fal]).unwrap();
    let e = fal.upload_blob(&blob(10)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Account, "{e:?}");
    assert!(
        e.message.contains("fal storage token: HTTP 401"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("wrong-key"));
}

#[test]
fn storage_answers_are_classed_and_urls_checked() {
    assert_eq!(class(401), ErrorClass::Account);
    assert_eq!(class(429), ErrorClass::RATE_LIMITED);
    assert_eq!(class(503), ErrorClass::Retryable);
    assert_eq!(class(413), ErrorClass::Job);
    assert!(usable("https://v3.fal.media/files/x/y.mp4"));
    assert!(!usable("https://v3.fal.media/files/x y.mp4"));
    assert!(!usable("ftp://x/y"));
    assert!(!usable("not a url"));
}
