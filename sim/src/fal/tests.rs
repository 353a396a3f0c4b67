//! fal's queue over real HTTP: what the official clients read from a status (`logs`
//! always, `error`/`error_type` of a failed request, `x-fal-request-id`), the two failure
//! shapes at the result fetch, fal's own retries and `X-Fal-No-Retry`, and the result
//! retention window.

use crate::tests::{fast_knobs, start};
use crate::{Knobs, SimHandle};
use reqwest::{Client, Response};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "Key fal-test";
const EDIT: &str = "fal-ai/kling-video/o1/video-to-video/edit";

async fn submit_with(sim: &SimHandle, prompt: &str, no_retry: bool) -> Value {
    let mut req = Client::new()
        .post(format!("{}/{EDIT}", sim.base_url()))
        .header("Authorization", KEY)
        .json(&json!({"prompt": prompt, "video_url": "https://example.com/in.mp4"}));
    if no_retry {
        req = req.header("X-Fal-No-Retry", "1");
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn get(url: &str) -> Response {
    Client::new()
        .get(url)
        .header("Authorization", KEY)
        .send()
        .await
        .unwrap()
}

/// Polls `status_url` (no logs) until COMPLETED; returns that body and its headers' id.
async fn until_completed(q: &Value) -> (Value, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = get(&format!("{}?logs=false", q["status_url"].as_str().unwrap())).await;
        let id = resp.headers()["x-fal-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let v: Value = resp.json().await.unwrap();
        assert!(v.get("logs").is_some(), "logs always present: {v}");
        if v["status"] == "COMPLETED" {
            return (v, id);
        }
        assert!(Instant::now() < deadline, "never completed: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn status_always_carries_logs_and_every_answer_the_request_id() {
    let sim = start(fast_knobs()).await;
    let q = submit_with(&sim, "fine", false).await;
    let id = q["request_id"].as_str().unwrap();
    let status_url = q["status_url"].as_str().unwrap();
    let with_logs = get(&format!("{status_url}?logs=1")).await;
    assert_eq!(with_logs.headers()["x-fal-request-id"], id);
    let v: Value = with_logs.json().await.unwrap();
    assert!(v["logs"].is_array(), "{v}");
    let (done, header_id) = until_completed(&q).await;
    assert_eq!(header_id, id);
    assert_eq!(done["logs"], Value::Null, "not asked for: {done}");
    assert!(done.get("error").is_none(), "{done}");
    assert!(done["metrics"]["inference_time"].as_f64().unwrap() > 0.0);
    let asked: Value = get(&format!("{status_url}?logs=true"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(asked["logs"][0]["message"], "Request finished", "{asked}");
    let result = get(q["response_url"].as_str().unwrap()).await;
    assert_eq!(result.status(), 200);
    assert_eq!(result.headers()["x-fal-request-id"], id);
}

#[tokio::test]
async fn a_model_error_is_completed_with_error_then_a_422_detail_list() {
    let sim = start(Knobs {
        fail_prompts_containing: Some("FAILME".into()),
        ..fast_knobs()
    })
    .await;
    let q = submit_with(&sim, "FAILME", false).await;
    let (done, _) = until_completed(&q).await;
    assert_eq!(done["error"], "Content rejected by upstream safety system");
    assert_eq!(done["error_type"], "content_policy_violation");
    let result = get(q["response_url"].as_str().unwrap()).await;
    assert_eq!(result.status(), 422);
    assert_eq!(result.headers()["x-fal-retryable"], "false");
    assert!(result.headers().get("x-fal-error-type").is_none());
    let v: Value = result.json().await.unwrap();
    assert_eq!(v["detail"][0]["type"], "content_policy_violation", "{v}");
}

#[tokio::test]
async fn runner_failures_are_retried_by_fal_unless_the_submit_said_no_retry() {
    let sim = start(Knobs {
        fal_runner_failure_rate: 1.0,
        ..fast_knobs()
    })
    .await;
    let retried = submit_with(&sim, "retried", false).await;
    let failed = submit_with(&sim, "not retried", true).await;
    let (done, _) = until_completed(&retried).await;
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(
        get(retried["response_url"].as_str().unwrap())
            .await
            .status(),
        200
    );
    let (done, _) = until_completed(&failed).await;
    assert_eq!(done["error_type"], "runner_disconnected", "{done}");
    assert!(done["error"].is_string());
    let result = get(failed["response_url"].as_str().unwrap()).await;
    assert_eq!(result.status(), 503);
    assert_eq!(result.headers()["x-fal-error-type"], "runner_disconnected");
    assert!(result.headers().contains_key("x-fal-request-id"));
    let v: Value = result.json().await.unwrap();
    assert!(v["detail"].is_string(), "a flat request error: {v}");
    assert_eq!(v["error_type"], "runner_disconnected");
    assert_eq!(sim.stats().by_provider["fal"].runner_retries, 1);
    assert_eq!(sim.stats().by_provider["fal"].no_retry_submits, 1);

    // Retries spent: the request error whatever the header says.
    sim.set_knobs(Knobs {
        fal_request_error_rate: 1.0,
        fal_request_error_type: "request_timeout".into(),
        ..fast_knobs()
    });
    let q = submit_with(&sim, "timed out", false).await;
    let (done, _) = until_completed(&q).await;
    assert_eq!(done["error_type"], "request_timeout");
    let result = get(q["response_url"].as_str().unwrap()).await;
    assert_eq!(result.status(), 504);
    assert_eq!(result.headers()["x-fal-error-type"], "request_timeout");
}

#[tokio::test]
async fn a_result_expires_after_the_retention_window() {
    // 1.5 s generations; results kept 20 s x 0.05 = 1 s after completion.
    let sim = start(Knobs {
        fal_result_retention: Duration::from_secs(20),
        ..fast_knobs()
    })
    .await;
    let q = submit_with(&sim, "kept a while", false).await;
    until_completed(&q).await;
    let response_url = q["response_url"].as_str().unwrap();
    assert_eq!(get(response_url).await.status(), 200, "within the window");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = get(response_url).await;
        if resp.status() == 404 {
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["detail"], "Request not found");
            break;
        }
        assert_eq!(resp.status(), 200);
        assert!(Instant::now() < deadline, "the result never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (done, _) = until_completed(&q).await;
    assert_eq!(
        done["status"], "COMPLETED",
        "the status outlives the result"
    );
}

#[test]
fn request_error_knobs_are_checked() {
    let bad = Knobs {
        fal_request_error_type: "runner_sneezed".into(),
        ..Knobs::default()
    };
    assert!(bad.check().unwrap_err().contains("fal_request_error_type"));
    let rate = Knobs {
        fal_runner_failure_rate: 2.0,
        ..Knobs::default()
    };
    assert!(rate.check().is_err());
    assert!(Knobs::default().check().is_ok());
}
