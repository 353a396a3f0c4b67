//! Tests of the simulator over real HTTP (reqwest against a spawned server).

use super::*;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

pub(super) const EDIT: &str = "klingai/video-o1-video-to-video-edit";
const REFERENCE: &str = "klingai/video-o1-video-to-video-reference";
const KEY: &str = "test-key";

pub(super) fn fast_knobs() -> Knobs {
    Knobs {
        // 1.5 s in all, the first 150 ms of it queued.
        latency_min: Duration::from_secs(30),
        latency_max: Duration::from_secs(30),
        time_scale: 0.05,
        seed: Some(7),
        ..Knobs::default()
    }
}

pub(super) async fn start(knobs: Knobs) -> SimHandle {
    spawn("127.0.0.1:0".parse().unwrap(), knobs).await.unwrap()
}

pub(super) fn edit_body(prompt: &str) -> Value {
    json!({
        "model": EDIT,
        "prompt": prompt,
        "video_url": "https://example.com/in.mp4",
        "keep_audio": false,
    })
}

pub(super) async fn submit(
    sim: &SimHandle,
    body: &Value,
    client_id: Option<&str>,
) -> reqwest::Response {
    submit_as(sim, KEY, body, client_id).await
}

pub(super) async fn submit_as(
    sim: &SimHandle,
    key: &str,
    body: &Value,
    client_id: Option<&str>,
) -> reqwest::Response {
    let mut req = Client::new()
        .post(format!("{}/v2/video/generations", sim.base_url()))
        .bearer_auth(key)
        .json(body);
    if let Some(cid) = client_id {
        req = req.header("X-Client-Request-Id", cid);
    }
    req.send().await.unwrap()
}

pub(super) async fn submit_ok(sim: &SimHandle, body: &Value) -> String {
    let resp = submit(sim, body, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    v["id"].as_str().unwrap().to_owned()
}

pub(super) async fn poll(sim: &SimHandle, id: &str) -> reqwest::Response {
    poll_as(sim, KEY, id).await
}

pub(super) async fn poll_as(sim: &SimHandle, key: &str, id: &str) -> reqwest::Response {
    Client::new()
        .get(format!("{}/v2/video/generations", sim.base_url()))
        .query(&[("generation_id", id)])
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// Polls until the status is terminal; returns every status seen and the last body.
pub(super) async fn poll_until_terminal(sim: &SimHandle, id: &str) -> (Vec<String>, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let resp = poll(sim, id).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        let status = v["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "completed" || status == "error" {
            return (seen, v);
        }
        assert!(
            Instant::now() < deadline,
            "no terminal status, saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) async fn error_message(resp: reqwest::Response, code: &str) -> String {
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["statusCode"], code, "{v}");
    assert!(
        v["requestId"].is_string() && v["timestamp"].is_string(),
        "{v}"
    );
    assert_eq!(v["path"], "/v2/video/generations");
    v["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn lifecycle_poll_and_download() {
    let sim = start(fast_knobs()).await;
    let resp = submit(&sim, &edit_body("make it snow"), Some("batch.00001")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let inference = resp.headers()["x-inference-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(resp.headers()["x-client-request-id"], "batch.00001");
    let v: Value = resp.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(inference, id);
    assert!(
        id.contains(':') && id.contains('/') && id.ends_with(EDIT),
        "{id}"
    );

    let (seen, last) = poll_until_terminal(&sim, &id).await;
    assert_eq!(seen, ["queued", "generating", "completed"]);
    assert_eq!(last["id"], id.as_str());
    assert!(last["error"].is_null());
    assert!(last["meta"]["usage"]["credits_used"].as_u64().unwrap() > 0);
    let url = last["video"]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/sim/files/", sim.base_url())),
        "{url}"
    );
    assert!(url.ends_with(".mp4"));

    let dl = reqwest::get(url).await.unwrap();
    assert_eq!(dl.status(), StatusCode::OK);
    assert_eq!(dl.headers()["content-type"], "video/mp4");
    let bytes = dl.bytes().await.unwrap();
    assert_eq!(
        Sha256::digest(&bytes),
        Sha256::digest(sim.output_of(&id).unwrap())
    );

    let ranged = Client::new()
        .get(url)
        .header("Range", "bytes=4-7")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&ranged.bytes().await.unwrap()[..], b"ftyp");

    let stats = sim.stats();
    assert_eq!(stats.submissions_total, 1);
    assert_eq!(stats.downloads_total, 1);
    assert_eq!(stats.generations_completed, 1);
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.peak_in_flight, 1);
    assert!(stats.polls_total >= 3);
    sim.shutdown();
}

#[tokio::test]
async fn schema_violations_are_400_and_create_nothing() {
    let sim = start(fast_knobs()).await;
    let long = edit_body(&"x".repeat(2501));
    let msg = error_message(submit(&sim, &long, None).await, "400").await;
    assert!(msg.starts_with("Body validation error!\n"), "{msg}");
    assert!(msg.contains("prompt"), "{msg}");
    submit_ok(&sim, &edit_body(&"x".repeat(2500))).await;

    let mut reference = edit_body("ref");
    reference["model"] = json!(REFERENCE);
    reference["duration"] = json!("5");
    let msg = error_message(submit(&sim, &reference, None).await, "400").await;
    assert!(
        msg.contains("duration: Expected number, received string"),
        "{msg}"
    );
    reference["duration"] = json!(10);
    reference["aspect_ratio"] = json!("9:16");
    submit_ok(&sim, &reference).await;

    // A key the schema does not name is ignored (`aimlapi_strict_keys` refuses it).
    let mut edit = edit_body("edit");
    edit["aspect_ratio"] = json!("16:9");
    submit_ok(&sim, &edit).await;

    let mut bad = edit_body("x");
    bad["video_url"] = json!("http://example.com/in.mp4");
    bad["image_list"] = json!([]);
    bad["model"] = json!(EDIT);
    let msg = error_message(submit(&sim, &bad, None).await, "400").await;
    assert!(
        msg.contains("video_url") && msg.contains("image_list"),
        "{msg}"
    );

    let msg = error_message(
        submit(&sim, &json!({"model": "klingai/x"}), None).await,
        "400",
    );
    assert!(msg.await.contains("Invalid enum value"));

    let stats = sim.stats();
    assert_eq!(stats.validation_errors_total, 4);
    assert_eq!(stats.submissions_total, 3);
}

#[tokio::test]
async fn auth_is_required() {
    let knobs = Knobs {
        api_keys: vec![KEY.to_owned()],
        ..fast_knobs()
    };
    let sim = start(knobs).await;
    let url = format!("{}/v2/video/generations", sim.base_url());
    let none = Client::new()
        .post(&url)
        .json(&edit_body("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(error_message(none, "401").await.contains("valid API key"));
    let wrong = Client::new()
        .post(&url)
        .bearer_auth("other")
        .json(&edit_body("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let poll = Client::new()
        .get(&url)
        .query(&[("generation_id", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), StatusCode::UNAUTHORIZED);
    submit_ok(&sim, &edit_body("a")).await;
    assert_eq!(sim.stats().unauthorized_total, 3);
}

#[tokio::test]
async fn duplicate_client_ids_are_counted_not_deduplicated() {
    let sim = start(fast_knobs()).await;
    let a = submit(&sim, &edit_body("a"), Some("b.00001")).await;
    let b = submit(&sim, &edit_body("a"), Some("b.00001")).await;
    let c = submit(&sim, &edit_body("a"), Some("b.00002")).await;
    let bad = submit(&sim, &edit_body("a"), Some("no spaces allowed")).await;
    assert!(bad.headers().get("x-client-request-id").is_none());
    let ids: Vec<Value> = futures::future::join_all([a, b, c, bad].map(|r| r.json()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_ne!(ids[0]["id"], ids[1]["id"]);
    let stats = sim.stats();
    assert_eq!(stats.submissions_total, 4);
    assert_eq!(stats.duplicate_submissions, 1);
    assert_eq!(stats.submissions_by_client_id_max, 2);
    assert_eq!(stats.in_flight, 4);
    assert_eq!(stats.peak_in_flight, 4);
}

#[tokio::test]
async fn rate_limits_and_server_errors() {
    let sim = start(Knobs {
        submit_429_rate: 1.0,
        retry_after_secs: Some(7),
        ..fast_knobs()
    })
    .await;
    let resp = submit(&sim, &edit_body("a"), None).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(error_message(resp, "429").await, "Too Many Requests");

    sim.set_knobs(Knobs {
        submit_5xx_rate: 1.0,
        ..fast_knobs()
    });
    let resp = submit(&sim, &edit_body("a"), None).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_message(resp, "503").await, "Service unavailable");
    assert_eq!(sim.stats().submissions_total, 0);

    sim.set_knobs(fast_knobs());
    let id = submit_ok(&sim, &edit_body("a")).await;
    sim.set_knobs(Knobs {
        poll_429_rate: 1.0,
        ..fast_knobs()
    });
    let resp = poll(&sim, &id).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_none());
    sim.set_knobs(Knobs {
        poll_5xx_rate: 1.0,
        ..fast_knobs()
    });
    let status = poll(&sim, &id).await.status();
    assert!([500, 502, 503].contains(&status.as_u16()), "{status}");

    sim.set_knobs(Knobs {
        submit_lost_response_rate: 1.0,
        ..fast_knobs()
    });
    let resp = submit(&sim, &edit_body("a"), None).await;
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let stats = sim.stats();
    assert_eq!(stats.submissions_total, 2);
    assert_eq!(stats.rate_limited_total, 2);
    assert_eq!(stats.server_errors_total, 3);
}

#[tokio::test]
async fn failures_stuck_jobs_and_expiry() {
    let sim = start(Knobs {
        fail_prompts_containing: Some("FAIL".into()),
        stuck_prompts_containing: Some("STUCK".into()),
        output_ttl: Some(Duration::from_millis(300)),
        ..fast_knobs()
    })
    .await;
    let fail_a = submit_ok(&sim, &edit_body("please FAIL")).await;
    let fail_b = submit_ok(&sim, &edit_body("FAIL again")).await;
    let stuck = submit_ok(&sim, &edit_body("STUCK forever")).await;
    let mut late = edit_body("too many refs");
    late["image_list"] = json!([
        "https://e.com/1.png",
        "https://e.com/2.png",
        "data:image/png;base64,AA=="
    ]);
    late["elements"] = json!([{"frontal_image_url": "https://e.com/f.png",
                               "reference_image_urls": ["https://e.com/r.png"]},
                              {"frontal_image_url": "https://e.com/g.png",
                               "reference_image_urls": ["https://e.com/s.png"]}]);
    let late = submit_ok(&sim, &late).await;
    let ok = submit_ok(&sim, &edit_body("fine")).await;

    let (_, a) = poll_until_terminal(&sim, &fail_a).await;
    let (_, b) = poll_until_terminal(&sim, &fail_b).await;
    let (_, l) = poll_until_terminal(&sim, &late).await;
    let (_, done) = poll_until_terminal(&sim, &ok).await;
    assert_eq!(a["status"], "error");
    assert!(a["video"].is_null());
    assert!(
        a["error"]["message"].as_str().unwrap().contains("safety"),
        "{a}"
    );
    assert!(
        b["error"]["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("safety"),
        "{b}"
    );
    assert_eq!(l["status"], "error");
    assert_eq!(l["error"]["detail"][0]["loc"][1], "image_list");

    let s: Value = poll(&sim, &stuck).await.json().await.unwrap();
    assert_eq!(s["status"], "generating");
    let stats = sim.stats();
    assert_eq!(stats.generations_failed, 3);
    assert_eq!(stats.generations_completed, 1);
    assert_eq!(stats.in_flight, 1);

    let url = done["video"]["url"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = reqwest::get(&url).await.unwrap().status();
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(Instant::now() < deadline, "output URL never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let unknown = poll(&sim, "00000000-0000-4000-8000-000000000000:klingai/x").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.headers().get("x-inference-id").is_some());
    let malformed = poll(&sim, "nonsense").await;
    assert_eq!(malformed.status(), StatusCode::NOT_FOUND);
    assert!(malformed.headers().get("x-inference-id").is_none());
}

#[tokio::test]
async fn control_endpoints_over_http() {
    let sim = start(fast_knobs()).await;
    let client = Client::new();
    let url = format!("{}/sim/knobs", sim.base_url());
    let resp = client
        .put(&url)
        .json(&json!({"poll_429_rate": 0.5, "latency_min": "1s", "output_ttl": "2m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let k = sim.knobs();
    assert_eq!(k.poll_429_rate, 0.5);
    assert_eq!(k.latency_min, Duration::from_secs(1));
    assert_eq!(k.latency_max, Duration::from_secs(240));
    assert_eq!(k.output_ttl, Some(Duration::from_secs(120)));
    let got: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["latency_min"], "1s");

    let bad = client
        .put(&url)
        .json(&json!({"nope": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad = client
        .put(&url)
        .json(&json!({"error_rate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let stats: SimStats = client
        .get(format!("{}/sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.submissions_total, 0);
}

#[test]
fn seeded_rates_are_reproducible() {
    let outcomes = || {
        let state = SimState::new(Knobs {
            seed: Some(42),
            error_rate: 0.5,
            ..Knobs::default()
        });
        let new = state::NewGeneration {
            model: crate::model::Model::Edit,
            prompt: "p".into(),
            refs: 0,
            duration: None,
            fail: None,
        };
        let mut inner = state.lock();
        (0..20)
            .map(|_| inner.create(&new, None, None, Instant::now()))
            .collect::<Vec<_>>()
    };
    assert_eq!(outcomes(), outcomes());
}

#[test]
fn cancel_stops_a_generation_and_frees_its_key_slot() {
    let state = SimState::new(Knobs {
        latency_min: Duration::from_secs(100),
        latency_max: Duration::from_secs(100),
        ..Knobs::default()
    });
    let mut inner = state.lock();
    let now = Instant::now();
    let new = super::state::NewGeneration {
        model: crate::model::Model::Edit,
        prompt: "p".into(),
        refs: 0,
        duration: None,
        fail: None,
    };
    let id = inner.create_as("oxen", "g1".into(), &new, Some("k"), Some("p"), now);
    assert_eq!(inner.limits.in_flight("k", now), 1);
    assert!(matches!(
        inner.cancel(&id, false, now),
        Some(super::state::View::Cancelled)
    ));
    assert_eq!(inner.limits.in_flight("k", now), 0);
    assert!(matches!(
        inner.view(&id, now),
        Some(super::state::View::Cancelled)
    ));
    assert_eq!(inner.counters("oxen").submissions_total, 1);
    inner.create_as("oxen", "g2".into(), &new, Some("k"), Some("p"), now);
    assert_eq!(inner.counters("oxen").duplicate_submissions, 1);
}

#[tokio::test]
async fn request_bytes_are_counted_per_protocol_as_they_arrive() {
    let sim = start(Knobs {
        api_keys: vec![KEY.into()],
        ..fast_knobs()
    })
    .await;
    let body = edit_body("bytes");
    let len = serde_json::to_vec(&body).unwrap().len() as u64;
    assert_eq!(submit(&sim, &body, None).await.status(), StatusCode::OK);
    // A refused request's body counts too; a chunked one as well as a sized one.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"{\"x\"".to_vec()), Ok(b":1}".to_vec())];
    let r = Client::new()
        .post(format!("{}/v2/video/generations", sim.base_url()))
        .bearer_auth(KEY)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let c = &sim.stats().by_provider["aimlapi"];
    assert_eq!(c.request_bytes_total, len + 7);
    assert!(!sim.stats().by_provider.contains_key("fal"));
}

/// Downloads the output of a completed generation of `prompt`; returns it and its id.
async fn output_of_prompt(sim: &SimHandle, prompt: &str) -> (Vec<u8>, String) {
    let id = submit_ok(sim, &edit_body(prompt)).await;
    let (_, last) = poll_until_terminal(sim, &id).await;
    assert_eq!(last["status"], "completed", "{last}");
    let url = last["video"]["url"].as_str().unwrap();
    let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    (bytes.to_vec(), id)
}

#[tokio::test]
async fn outputs_differ_by_prompt_and_the_same_prompt_gets_the_same_clip() {
    let sim = start(fast_knobs()).await;
    let (a, b) = ("a neon city at night", "snow falling");
    assert_ne!(clip_for(a), clip_for(b), "two prompts of different clips");
    let (first, id1) = output_of_prompt(&sim, a).await;
    let (again, id2) = output_of_prompt(&sim, a).await;
    let (other, id3) = output_of_prompt(&sim, b).await;
    // Each output is its clip followed by a `free` box of 8 bytes and the id.
    let clip = |bytes: &[u8], id: &str| bytes[..bytes.len() - 8 - id.len()].to_vec();
    assert_eq!(
        clip(&first, &id1),
        clip(&again, &id2),
        "same prompt, same clip"
    );
    assert_ne!(
        clip(&first, &id1),
        clip(&other, &id3),
        "other prompt, other clip"
    );
    assert_ne!(first, again, "still a distinct file per generation");
    for (bytes, id) in [(&first, &id1), (&other, &id3)] {
        let probed = crate::probe::read(bytes).expect("a playable MP4");
        assert!(
            (3.0..=5.0).contains(&probed.seconds),
            "{id}: {} s",
            probed.seconds
        );
        assert_eq!((probed.width, probed.height), (320, 180));
    }
}
