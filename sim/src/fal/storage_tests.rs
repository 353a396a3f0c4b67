//! fal's storage API over real HTTP, the three ways the official client uploads (CDN v3,
//! multipart, initiate + signed PUT), files used as a model's `video_url`, and request
//! bodies of the sizes the providers document (axum's default 2 MB refused them).

use crate::tests::{fast_knobs, start};
use crate::SimHandle;
use reqwest::{Client, Response};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "Key fal-test";

async fn cdn_token(sim: &SimHandle) -> String {
    let url = format!(
        "{}/storage/auth/token?storage_type=fal-cdn-v3",
        sim.base_url()
    );
    let resp = Client::new()
        .post(url)
        .header("Authorization", KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["base_url"], sim.base_url());
    assert!(v["expires_at"].as_str().unwrap().ends_with("+00:00"), "{v}");
    v["token"].as_str().unwrap().to_owned()
}

async fn send(req: reqwest::RequestBuilder) -> Response {
    req.send().await.unwrap()
}

async fn fetch(url: &str) -> Vec<u8> {
    let resp = send(Client::new().get(url)).await;
    assert_eq!(resp.status(), 200, "{url} is public");
    resp.bytes().await.unwrap().to_vec()
}

/// Submits an edit of `video` and waits for COMPLETED; returns that status and the result.
async fn edit_of(sim: &SimHandle, video: &str) -> (Value, Response) {
    let url = format!(
        "{}/fal-ai/kling-video/o1/video-to-video/edit",
        sim.base_url()
    );
    let body = json!({"prompt": "p", "video_url": video});
    let resp = send(
        Client::new()
            .post(url)
            .header("Authorization", KEY)
            .json(&body),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let q: Value = resp.json().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status_url = q["status_url"].as_str().unwrap();
        let get = Client::new().get(status_url).header("Authorization", KEY);
        let v: Value = send(get).await.json().await.unwrap();
        if v["status"] == "COMPLETED" {
            let get = Client::new()
                .get(q["response_url"].as_str().unwrap())
                .header("Authorization", KEY);
            return (v, send(get).await);
        }
        assert!(Instant::now() < deadline, "never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_uploaded_file_is_served_and_usable_as_video_url() {
    let sim = start(fast_knobs()).await;
    let token = cdn_token(&sim).await;
    // A clip inside fal's source limits: the model reads an uploaded clip's headers.
    let asset = |name: &str| {
        let path = format!("{}/../tests/assets/{name}", env!("CARGO_MANIFEST_DIR"));
        axum::body::Bytes::from(std::fs::read(path).unwrap())
    };
    let bytes = asset("ok.mp4");
    let upload = |auth: String| {
        Client::new()
            .post(format!("{}/files/upload", sim.base_url()))
            .header("Authorization", auth)
            .header("Content-Type", "video/mp4")
            .header("X-Fal-File-Name", "in put.mp4")
            .body(bytes.clone())
    };
    assert_eq!(send(upload("Bearer forged".into())).await.status(), 401);
    let resp = send(upload(format!("Bearer {token}"))).await;
    assert_eq!(resp.status(), 200);
    let access: Value = resp.json().await.unwrap();
    let url = access["access_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/files/", sim.base_url())),
        "{url}"
    );
    assert!(url.ends_with("/in_put.mp4"), "{url}");
    assert_eq!(fetch(url).await, bytes);

    let (done, result) = edit_of(&sim, url).await;
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(result.status(), 200);
    // A file of this storage that was never uploaded cannot be fetched by the model.
    let missing = format!("{}/files/0123456789ab/gone.mp4", sim.base_url());
    let (done, result) = edit_of(&sim, &missing).await;
    assert_eq!(done["error_type"], "file_download_error", "{done}");
    assert_eq!(result.status(), 422);
    assert_eq!(sim.stats().by_provider["fal"].uploads_total, 1);
}

/// An uploaded clip outside fal's `video_url` bounds fails the request with fal's model
/// error: 422 `{"detail": [{loc, msg, type, url, ctx}]}` at the result.
#[tokio::test]
async fn an_uploaded_clip_outside_the_bounds_fails_with_fals_model_error() {
    let sim = start(fast_knobs()).await;
    let token = cdn_token(&sim).await;
    let path = format!("{}/../tests/assets/short.mp4", env!("CARGO_MANIFEST_DIR"));
    let resp = send(
        Client::new()
            .post(format!("{}/files/upload", sim.base_url()))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "video/mp4")
            .body(std::fs::read(path).unwrap()),
    )
    .await;
    let access: Value = resp.json().await.unwrap();
    let (done, result) = edit_of(&sim, access["access_url"].as_str().unwrap()).await;
    assert_eq!(done["error_type"], "video_duration_too_short", "{done}");
    assert_eq!(result.status(), 422);
    let body: Value = result.json().await.unwrap();
    let d = &body["detail"][0];
    assert_eq!(d["loc"], json!(["body", "video_url"]));
    assert_eq!(d["ctx"]["min_duration"], 3.0);
    assert_eq!(d["ctx"]["provided_duration"], 2.0);
}

#[tokio::test]
async fn multipart_and_signed_put_uploads() {
    let sim = start(fast_knobs()).await;
    let auth = format!("Bearer {}", cdn_token(&sim).await);
    let create = Client::new()
        .post(format!("{}/files/upload/multipart", sim.base_url()))
        .header("Authorization", &auth)
        .header("Content-Type", "video/mp4")
        .header("X-Fal-File-Name", "big.mp4");
    let m: Value = send(create).await.json().await.unwrap();
    let (access, id) = (
        m["access_url"].as_str().unwrap(),
        m["uploadId"].as_str().unwrap(),
    );
    let mut parts = Vec::new();
    for (n, chunk) in [(1, b"first-".to_vec()), (2, b"second".to_vec())] {
        let put = Client::new()
            .put(format!("{access}/multipart/{id}/{n}"))
            .header("Authorization", &auth)
            .body(chunk);
        let resp = send(put).await;
        assert_eq!(resp.status(), 200);
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        parts.push(json!({"partNumber": n, "etag": etag}));
    }
    parts.reverse();
    let done = Client::new()
        .post(format!("{access}/multipart/{id}/complete"))
        .header("Authorization", &auth)
        .json(&json!({ "parts": parts }));
    assert_eq!(send(done).await.status(), 200);
    assert_eq!(fetch(access).await, b"first-second");

    let init = Client::new()
        .post(format!(
            "{}/storage/upload/initiate?storage_type=gcs",
            sim.base_url()
        ))
        .header("Authorization", KEY)
        .json(&json!({"file_name": "b.mp4", "content_type": "video/mp4"}));
    let i: Value = send(init).await.json().await.unwrap();
    let put = |body: &'static [u8]| {
        Client::new()
            .put(i["upload_url"].as_str().unwrap())
            .header("Content-Type", "video/mp4")
            .body(body)
    };
    assert_eq!(send(put(b"via gcs")).await.status(), 200);
    assert_eq!(
        send(put(b"again")).await.status(),
        403,
        "a ticket is single use"
    );
    let file_url = i["file_url"].as_str().unwrap();
    let served = send(Client::new().get(file_url)).await;
    assert_eq!(served.headers()["content-type"], "video/mp4");
    assert_eq!(served.bytes().await.unwrap().as_ref(), b"via gcs");
    assert_eq!(sim.stats().by_provider["fal"].uploads_total, 2);
}

#[tokio::test]
async fn a_50_mib_clip_as_a_data_uri_is_a_body_aimlapi_and_fal_take() {
    let sim = start(fast_knobs()).await;
    let uri = format!(
        "data:video/mp4;base64,{}",
        "A".repeat(50 * 1024 * 1024 / 3 * 4)
    );
    let aimlapi = json!({"model": "klingai/video-o1-video-to-video-edit", "prompt": "p",
                         "video_url": uri});
    let resp = send(
        Client::new()
            .post(format!("{}/v2/video/generations", sim.base_url()))
            .bearer_auth("k")
            .json(&aimlapi),
    )
    .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let fal = json!({"prompt": "p", "video_url": uri});
    let url = format!(
        "{}/fal-ai/kling-video/o1/video-to-video/edit",
        sim.base_url()
    );
    let resp = send(
        Client::new()
            .post(url)
            .header("Authorization", KEY)
            .json(&fal),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(sim.stats().submissions_total, 2);
}
