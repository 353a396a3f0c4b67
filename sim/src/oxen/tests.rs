//! Tests of the simulated Oxen queue and SSE stream over real HTTP.

use crate::{spawn, Knobs, SimHandle};
use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "oxen-test-key";

fn knobs() -> Knobs {
    Knobs {
        // 300 ms in all, the first 30 ms of it queued.
        latency_min: Duration::from_secs(3),
        latency_max: Duration::from_secs(3),
        time_scale: 0.1,
        seed: Some(3),
        ..Knobs::default()
    }
}

async fn start(knobs: Knobs) -> SimHandle {
    spawn("127.0.0.1:0".parse().unwrap(), knobs).await.unwrap()
}

fn body(prompt: &str) -> Value {
    json!({
        "model": super::MODEL,
        "prompt": prompt,
        "input_video": "https://example.com/in.mp4",
        "num_generations": 1,
    })
}

async fn enqueue(sim: &SimHandle, body: &Value) -> reqwest::Response {
    Client::new()
        .post(format!("{}/api/ai/queue", sim.base_url()))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn enqueue_ok(sim: &SimHandle, body: &Value) -> String {
    let resp = enqueue(sim, body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["generations"][0]["status"], "queued", "{v}");
    v["generations"][0]["generation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn row(sim: &SimHandle, id: &str) -> (StatusCode, Value) {
    let resp = Client::new()
        .get(format!("{}/api/ai/queue/{id}", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// Polls until the row's status is terminal.
async fn settled(sim: &SimHandle, id: &str) -> Value {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v) = row(sim, id).await;
        assert_eq!(code, StatusCode::OK, "{v}");
        if !matches!(v["status"].as_str(), Some("queued" | "processing")) {
            return v;
        }
        assert!(Instant::now() < end, "not settled: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn enqueue_poll_and_download_follow_the_documented_shapes() {
    let sim = start(knobs()).await;
    let id = enqueue_ok(&sim, &body("a watercolour")).await;
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let (_, first) = row(&sim, &id).await;
    assert!(matches!(
        first["status"].as_str(),
        Some("queued" | "processing")
    ));
    assert_eq!(first["result_url"], Value::Null);
    assert_eq!(first["keep_audio"], json!(true), "Oxen's default applies");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let enq = first["enqueued_at"].as_u64().expect("Unix seconds");
    assert!(enq <= now && enq + 5 >= now, "{enq} vs {now}");
    let done = settled(&sim, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["model_name"], super::MODEL);
    assert_eq!(done["media_type"], "video");
    assert!(done["completed_at"].as_u64().unwrap() >= enq);
    assert!(done["started_at"].as_u64().is_some());
    let url = done["result_url"].as_str().unwrap();
    let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), sim.output_of(&id).unwrap().as_slice());
    let list = |q: &'static str| {
        Client::new()
            .get(format!("{}/api/ai/queue{q}", sim.base_url()))
            .bearer_auth(KEY)
            .send()
    };
    let active: Value = list("").await.unwrap().json().await.unwrap();
    assert_eq!(active["count"], 0, "only active rows by default: {active}");
    let all: Value = list("?status=succeeded")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["generations"][0]["generation_id"], json!(id), "{all}");
    let s = sim.stats();
    let c = &s.by_provider["oxen"];
    assert_eq!((c.submissions_total, c.duplicate_submissions), (1, 0));
    assert!(c.polls_total >= 2);
}

#[tokio::test]
async fn parameter_errors_surface_late_and_schema_errors_early() {
    let sim = start(knobs()).await;
    let mut many = body("too many refs");
    many["input_image"] = json!(["https://x/1.png", "https://x/2.png", "https://x/3.png"]);
    many["elements"] = json!([{"frontal_image_url": "https://x/f.png"},
                              {"frontal_image_url": "https://x/g.png"}]);
    let id = enqueue_ok(&sim, &many).await;
    let v = settled(&sim, &id).await;
    assert_eq!(v["status"], "failed");
    let msg = v["error_message"].as_str().unwrap();
    assert!(msg.contains("must not exceed 4"), "{msg}");
    let mut no_video = body("no video");
    no_video.as_object_mut().unwrap().remove("input_video");
    let id = enqueue_ok(&sim, &no_video).await;
    let msg = settled(&sim, &id).await["error_message"].clone();
    assert!(msg.as_str().unwrap().contains("input_video"), "{msg}");

    let resp = Client::new()
        .post(format!("{}/api/ai/queue", sim.base_url()))
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let mut bad = body("x");
    bad["model"] = json!("klingai/video-o1-video-to-video-reference");
    let resp = enqueue(&sim, &bad).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "Model not found: klingai/video-o1-video-to-video-reference"
    );
    let mut five = body("x");
    five["num_generations"] = json!(5);
    let resp = enqueue(&sim, &five).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status_message"], "invalid_params");

    let (code, v) = row(&sim, "00000000-0000-0000-0000-000000000000").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["type"], "resource_not_found");
    let resp = Client::new()
        .get(format!("{}/api/ai/queue/{id}", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn no_credits_is_refused_at_enqueue() {
    let sim = start(Knobs {
        no_credits: true,
        ..knobs()
    })
    .await;
    let resp = enqueue(&sim, &body("x")).await;
    assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
    let text = resp.text().await.unwrap();
    assert!(text.contains("Insufficient credits"), "{text}");
    assert_eq!(sim.stats().submissions_total, 0);
}

/// Reads the SSE stream until `done` holds for the text so far (or `within` passes).
async fn read_sse(
    resp: reqwest::Response,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let end = tokio::time::Instant::now() + within;
    while !done(&text) {
        match tokio::time::timeout_at(end, stream.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    text
}

async fn subscribe(sim: &SimHandle) -> reqwest::Response {
    let resp = Client::new()
        .get(format!("{}/api/events", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

#[tokio::test]
async fn sse_reports_successes_and_failures_but_not_cancels() {
    let sim = start(Knobs {
        fail_prompts_containing: Some("FAIL".into()),
        ..knobs()
    })
    .await;
    let events = subscribe(&sim).await;
    let cancelled = enqueue_ok(&sim, &body("cancel me")).await;
    let ok = enqueue_ok(&sim, &body("fine")).await;
    let bad = enqueue_ok(&sim, &body("FAIL this")).await;
    let resp = Client::new()
        .delete(format!("{}/api/ai/queue/{cancelled}", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"status": "success", "generation_id": cancelled}));
    let text = read_sse(events, Duration::from_secs(5), |t| {
        t.contains(&ok) && t.contains(&bad)
    })
    .await;
    assert!(
        text.contains("event: media_generation_completed\n"),
        "{text}"
    );
    let datas: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let of = |id: &str| datas.iter().find(|d| d["generation_id"] == id).cloned();
    let okev = of(&ok).expect("success event");
    assert_eq!(okev["status"], "succeeded");
    assert!(okev["url"].as_str().unwrap().contains("/sim/files/"));
    let badev = of(&bad).expect("failure event");
    assert_eq!(badev["status"], "failed");
    assert!(badev["error"].as_str().is_some());
    assert!(of(&cancelled).is_none(), "no event for a cancel: {text}");
    assert_eq!(settled(&sim, &cancelled).await["status"], "cancelled");
    let c = sim.stats().by_provider["oxen"].clone();
    assert_eq!(
        (c.cancels_total, c.events_sent, c.events_dropped),
        (1, 2, 0)
    );
}

#[tokio::test]
async fn sse_drops_events_by_knob_and_never_replays() {
    let sim = start(knobs()).await;
    // Finished before anyone listened: never sent.
    let early = enqueue_ok(&sim, &body("early")).await;
    assert_eq!(settled(&sim, &early).await["status"], "succeeded");
    let events = subscribe(&sim).await;
    let mut k = sim.knobs();
    k.drop_events_rate = 1.0;
    sim.set_knobs(k);
    let id = enqueue_ok(&sim, &body("late")).await;
    assert_eq!(settled(&sim, &id).await["status"], "succeeded");
    let end = Instant::now() + Duration::from_secs(5);
    while sim.stats().by_provider["oxen"].events_dropped == 0 {
        assert!(Instant::now() < end, "the event was never due");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The tick that dropped it would have sent it: a short look is enough.
    let text = read_sse(events, Duration::from_millis(300), |t| t.contains("data:")).await;
    assert!(!text.contains("data:"), "{text}");
    let c = sim.stats().by_provider["oxen"].clone();
    assert_eq!((c.events_sent, c.events_dropped), (0, 1));
}

#[tokio::test]
async fn with_oxen_result_auth_the_result_url_needs_the_owners_key() {
    let sim = start(Knobs {
        oxen_result_auth: true,
        ..knobs()
    })
    .await;
    let id = enqueue_ok(&sim, &body("keyed")).await;
    let v = settled(&sim, &id).await;
    let url = v["result_url"].as_str().expect("succeeded").to_owned();
    let get = |key: Option<&str>| {
        let rb = Client::new().get(&url);
        match key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
        .send()
    };
    let bare = get(None).await.unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let v: Value = bare.json().await.unwrap();
    assert_eq!(v["error"]["type"], "unauthenticated", "{v}");
    assert_eq!(
        get(Some("someone-else")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let ok = get(Some(KEY)).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.bytes().await.unwrap(), sim.output_of(&id).unwrap());
    let s = sim.stats();
    assert_eq!(s.downloads_with_authorization, 2, "{s:?}");
    assert_eq!(s.by_provider["oxen"].unauthorized_total, 2);
    assert_eq!(s.downloads_total, 1);

    // Off (the default): served to anyone, and a keyless download is not counted as keyed.
    let open = start(knobs()).await;
    let id = enqueue_ok(&open, &body("open")).await;
    let v = settled(&open, &id).await;
    let resp = Client::new()
        .get(v["result_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(open.stats().downloads_with_authorization, 0);
}
