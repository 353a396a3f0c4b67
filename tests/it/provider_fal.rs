//! fal.ai end to end against the simulator's fal queue protocol over real HTTP: edit and
//! reference batches, a failure that surfaces at the result fetch, cancelling queued
//! requests, retried 5xx, the 504 after COMPLETED that must never fail a job, excess
//! concurrency waiting IN_QUEUE, and the wire quirks themselves.

use crate::helpers::*;
use restyle::config::testing::TestSettings;
use restyle::job::JobState;
use restyle::model::{Element, GenerationRequest, ModelKind, ProviderName, ValidatedBatch};
use restyle::sim::{Knobs, ProviderCounters};
use restyle::sink::download::sha256_file;
use restyle::sink::jsonl::read_all;
use restyle::sink::ResultLine;
use restyle::upstream::providers::fal::Fal;
use restyle::upstream::{PollStatus, Upstream};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn fal_app(knobs: Knobs) -> TestApp {
    let mut app = TestApp::new(knobs).await;
    let base = app.sim.base_url();
    app.settings
        .point_provider_at(ProviderName::Fal, &base, API_KEY);
    app
}

fn fal_batch(app: &TestApp, id: &str, model: ModelKind, prompts: &[String]) -> ValidatedBatch {
    let mut b = app.batch(id, prompts);
    b.shared.provider = ProviderName::Fal;
    b.shared.model = model;
    b
}

async fn enqueue(app: &TestApp, b: &ValidatedBatch) {
    restyle::producer::enqueue(&app.queue, b)
        .await
        .expect("enqueue");
}

fn fal_counters(app: &TestApp) -> ProviderCounters {
    app.sim
        .stats()
        .by_provider
        .get("fal")
        .cloned()
        .unwrap_or_default()
}

/// The sim names each output after the request id, the first part of our upstream id.
fn request_id(line: &ResultLine) -> String {
    let up = line.upstream_id.as_deref().expect("upstream id recorded");
    up.split('|').next().unwrap().to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// Every line succeeded, and each file holds exactly what the sim served for its request.
fn assert_all_served(app: &TestApp, batch_id: &str, n: usize) -> Vec<ResultLine> {
    let lines = read_all(&app.results_path(batch_id)).unwrap();
    assert_eq!(lines.len(), n);
    for l in &lines {
        assert_eq!(l.state, "succeeded", "{l:?}");
        let want = sha256_hex(
            &app.sim
                .output_of(&request_id(l))
                .expect("a completed generation"),
        );
        assert_eq!(l.sha256.as_deref(), Some(want.as_str()));
        let file = app.out.path().join(l.file.as_deref().unwrap());
        assert_eq!(sha256_file(&file).unwrap(), want);
    }
    lines
}

#[tokio::test]
async fn edit_and_reference_batches_succeed_with_the_served_bytes() {
    let app = fal_app(fast_knobs()).await;
    let rt = app.runtime();
    let mut edit = fal_batch(&app, "fal-edit", ModelKind::Edit, &prompts(3));
    edit.shared.image_list = vec!["https://media.example.com/look.png".into()];
    edit.shared.elements = vec![Element {
        frontal_image_url: "https://media.example.com/hero.png".into(),
        reference_image_urls: vec!["https://media.example.com/hero-side.png".into()],
    }];
    let mut reference = fal_batch(&app, "fal-ref", ModelKind::Reference, &prompts(3));
    reference.shared.duration = Some(5);
    reference.shared.aspect_ratio = Some("9:16".into());
    enqueue(&app, &edit).await;
    enqueue(&app, &reference).await;
    for id in ["fal-edit", "fal-ref"] {
        let info = app.drive(&rt, id, Duration::from_secs(30)).await;
        assert_eq!(
            info.count(JobState::Succeeded),
            3,
            "{id}: {:?}",
            info.counts
        );
        for l in assert_all_served(&app, id, 3) {
            let up = l.upstream_id.unwrap();
            assert!(up.contains("/fal-ai/kling-video/requests/"), "{up}");
            assert!(
                !up.contains("/o1/"),
                "the URLs drop the model sub-path: {up}"
            );
        }
    }
    let c = fal_counters(&app);
    assert_eq!(c.submissions_total, 6, "{c:?}");
    assert_eq!(c.duplicate_submissions, 0);
    assert_eq!(c.validation_errors_total, 0, "string duration, fal names");
    assert!(c.results_total >= 6, "{c:?}");
}

#[tokio::test]
async fn a_failure_at_the_result_fetch_fails_the_job_with_its_detail() {
    let app = fal_app(Knobs {
        fail_prompts_containing: Some("FAILME".into()),
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    let ps = ["fine one", "FAILME please", "FAILME again"].map(String::from);
    enqueue(&app, &fal_batch(&app, "fal-late", ModelKind::Edit, &ps)).await;
    let info = app.drive(&rt, "fal-late", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1, "{:?}", info.counts);
    assert_eq!(info.count(JobState::Failed), 2);
    let lines = read_all(&app.results_path("fal-late")).unwrap();
    for l in lines.iter().filter(|l| l.state == "failed") {
        let e = l.error.as_deref().unwrap_or("");
        assert!(
            e.contains("Content rejected by upstream safety system"),
            "{e}"
        );
        assert!(e.contains("422"), "{e}");
        assert!(l.upstream_id.is_some());
    }
    assert!(fal_counters(&app).results_total >= 3);
}

/// Runs stages until the job is parked between polls (its request accepted by the sim).
async fn step_until_polling(app: &TestApp, rt: &restyle::worker::Runtime, job_id: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        restyle::worker::step(rt).await.unwrap();
        let rec = app.queue.job(job_id).await.unwrap();
        if rec.is_some_and(|r| r.is_ok_and(|r| r.state == "polling")) {
            return;
        }
        assert!(Instant::now() < end, "{job_id} never submitted");
        poll_interval().await;
    }
}

#[tokio::test]
async fn cancel_removes_queued_and_held_requests() {
    // 200 s generations (20 s queued) and one slot per key: the first request sits queued
    // at a runner, the second waits in fal's queue behind it.
    let app = fal_app(Knobs {
        latency_min: Duration::from_secs(200),
        latency_max: Duration::from_secs(200),
        time_scale: 1.0,
        max_in_flight: Some(1),
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    for (batch, prompt) in [("fal-cx-a", "first"), ("fal-cx-b", "second")] {
        let b = fal_batch(&app, batch, ModelKind::Edit, &[prompt.to_string()]);
        enqueue(&app, &b).await;
        step_until_polling(&app, &rt, &restyle::model::job_id(batch, 0)).await;
    }
    let c = fal_counters(&app);
    assert_eq!(c.submissions_total, 1, "the second request is held: {c:?}");
    assert_eq!(c.rate_limited_total, 0, "fal never rejects for concurrency");

    // The held one first (before the slot frees), then the queued one.
    for batch in ["fal-cx-b", "fal-cx-a"] {
        let info = app.info(batch).await;
        let out = restyle::ops::cancel(&app.queue, &rt.upstreams, &info)
            .await
            .unwrap();
        assert_eq!((out.cancelled, out.cancelled_upstream), (1, 1), "{out:?}");
        let info = app.info(batch).await;
        assert_eq!(info.count(JobState::Cancelled), 1, "{:?}", info.counts);
        assert!(info.is_finished());
    }
    let c = fal_counters(&app);
    assert_eq!(c.cancels_total, 2);
    assert_eq!(
        c.submissions_total, 1,
        "the held one never reached a runner"
    );
    // The sim reports both done, and the result fetch says why.
    let fal = &rt.upstreams[&ProviderName::Fal];
    for batch in ["fal-cx-a", "fal-cx-b"] {
        let rec = app.queue.job(&restyle::model::job_id(batch, 0)).await;
        let up = rec.unwrap().unwrap().unwrap().upstream_id.unwrap();
        match fal.poll(&up).await.unwrap() {
            PollStatus::Failed { reason } => assert!(reason.contains("cancelled"), "{reason}"),
            other => panic!("cancelled request reported {other:?}"),
        }
    }
}

#[tokio::test]
async fn poll_5xx_is_retried_and_every_job_succeeds() {
    let app = fal_app(Knobs {
        poll_5xx_rate: 0.3,
        poll_429_rate: 0.1,
        seed: Some(7),
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    rt.settings.retry.max_attempts = 30;
    enqueue(
        &app,
        &fal_batch(&app, "fal-5xx", ModelKind::Edit, &prompts(6)),
    )
    .await;
    let info = app.drive(&rt, "fal-5xx", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 6, "{:?}", info.counts);
    assert_all_served(&app, "fal-5xx", 6);
    let c = fal_counters(&app);
    assert!(c.server_errors_total > 0, "the test met 5xx: {c:?}");
    assert_eq!((c.submissions_total, c.duplicate_submissions), (6, 0));
}

#[tokio::test]
async fn result_504_after_completed_is_retried_and_never_fails_a_job() {
    let n = 10;
    let app = fal_app(Knobs {
        result_504_rate: 0.5,
        seed: Some(5),
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    rt.settings.retry.max_attempts = 30;
    enqueue(
        &app,
        &fal_batch(&app, "fal-504", ModelKind::Edit, &prompts(n)),
    )
    .await;
    let info = app.drive(&rt, "fal-504", Duration::from_secs(60)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    assert_eq!(info.count(JobState::Failed), 0);
    assert_all_served(&app, "fal-504", n);
    let c = fal_counters(&app);
    assert!(
        c.results_total > n as u64,
        "results were fetched again: {c:?}"
    );
    assert!(c.server_errors_total > 0, "{c:?}");
    assert_eq!(
        (c.submissions_total, c.duplicate_submissions),
        (n as u64, 0)
    );
}

#[tokio::test]
async fn excess_concurrency_waits_in_queue_instead_of_429() {
    let app = fal_app(Knobs {
        max_in_flight: Some(2),
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    enqueue(
        &app,
        &fal_batch(&app, "fal-cap", ModelKind::Edit, &prompts(6)),
    )
    .await;
    let info = app.drive(&rt, "fal-cap", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 6, "{:?}", info.counts);
    let s = app.sim.stats();
    assert_eq!(s.rate_limited_total, 0, "{s:?}");
    assert!(s.peak_in_flight_by_key_max <= 2, "{s:?}");
    assert_eq!(s.by_provider["fal"].submissions_total, 6);
}

#[tokio::test]
async fn wire_quirks_key_auth_string_duration_status_codes_and_cancel() {
    let app = fal_app(fast_knobs()).await;
    let base = app.sim.base_url();
    let http = reqwest::Client::new();
    let url = format!("{base}/fal-ai/kling-video/o1/video-to-video/reference");
    let body = json!({"prompt": "p", "video_url": "https://x/v.mp4", "duration": 5});
    let r = http
        .post(&url)
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "Bearer is not fal's scheme");
    let key = format!("Key {API_KEY}");
    let r = http
        .post(&url)
        .header("Authorization", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["detail"][0]["loc"], json!(["body", "duration"]), "{v}");

    let good = json!({"prompt": "p", "video_url": "https://x/v.mp4", "duration": "10",
                      "aspect_ratio": "auto"});
    let r = http
        .post(&url)
        .header("Authorization", &key)
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let q: Value = r.json().await.unwrap();
    let id = q["request_id"].as_str().unwrap();
    let status_url = q["status_url"].as_str().unwrap();
    assert_eq!(
        status_url,
        format!("{base}/fal-ai/kling-video/requests/{id}/status")
    );
    assert_eq!(q["status"], "IN_QUEUE");
    let get = |u: &str| http.get(u).header("Authorization", &key).send();
    let first = get(status_url).await.unwrap();
    assert_eq!(first.status(), 202);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(status_url).await.unwrap();
        let code = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if v["status"] == "COMPLETED" {
            assert_eq!(code, 200);
            break;
        }
        assert_eq!(code, 202, "{v}");
        assert!(Instant::now() < end, "never completed");
        poll_interval().await;
    }
    let out: Value = get(q["response_url"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let video = get(out["video"]["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        video.bytes().await.unwrap(),
        app.sim.output_of(id).expect("a completed generation")
    );
    let put = |u: String| http.put(u).header("Authorization", &key).send();
    let r = put(q["cancel_url"].as_str().unwrap().to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["status"],
        "ALREADY_COMPLETED"
    );
    let unknown = format!("{base}/fal-ai/kling-video/requests/nope/cancel");
    assert_eq!(put(unknown).await.unwrap().status(), 404);

    // The client end to end: submit, poll to success, then cancel is a no-op.
    let fal = Fal::new(&app.settings.providers[&ProviderName::Fal]).unwrap();
    let req = GenerationRequest {
        job_id: "wire.00000".into(),
        client_id: "wire.00000".into(),
        model: ModelKind::Reference,
        prompt: "p".into(),
        video: "https://x/v.mp4".into(),
        image_list: vec![],
        keep_audio: true,
        aspect_ratio: Some("1:1".into()),
        duration: Some(3),
        tier: None,
        elements: vec![],
    };
    let up = fal.submit(&req).await.unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match fal.poll(&up).await.unwrap() {
            PollStatus::Pending { .. } => {}
            PollStatus::Succeeded { url } => {
                assert!(url.ends_with(".mp4"), "{url}");
                break;
            }
            PollStatus::Failed { reason } => panic!("{reason}"),
        }
        assert!(Instant::now() < end, "never succeeded");
        poll_interval().await;
    }
    assert!(!fal.cancel(&up).await.unwrap(), "already completed");
}

/// An in-process runtime whose fal provider points at the simulator, with `extra` laid
/// over the test's settings (through the real loader, as a worker would read them).
fn fal_runtime(app: &TestApp, extra: TestSettings) -> restyle::worker::Runtime {
    let settings = app
        .test
        .clone()
        .provider_at(ProviderName::Fal, &app.sim.base_url(), API_KEY)
        .and(extra)
        .settings();
    let ups = restyle::upstream::build_all(&settings).expect("providers");
    restyle::worker::Runtime::new(app.queue.clone(), settings, ups)
}

/// Every job of the batch, read back.
async fn records(app: &TestApp, batch: &str, n: u32) -> Vec<restyle::job::JobRecord> {
    let mut out = Vec::new();
    for i in 0..n {
        let rec = app.queue.job(&restyle::model::job_id(batch, i)).await;
        out.push(rec.unwrap().unwrap().unwrap());
    }
    out
}

/// fal's request errors (its own retries spent) end the job `failed` with fal's type and
/// text from the first result fetch, whatever their 5xx status: never retried to `dead`.
#[tokio::test]
async fn request_errors_fail_the_job_with_falls_message_within_one_attempt() {
    for (kind, status, text) in [
        (
            "runner_disconnected",
            503,
            "Runner disconnected unexpectedly",
        ),
        ("request_timeout", 504, "Request timed out"),
    ] {
        let n = 3;
        let app = fal_app(Knobs {
            fal_request_error_rate: 1.0,
            fal_request_error_type: kind.into(),
            ..fast_knobs()
        })
        .await;
        let rt = app.runtime();
        let batch = format!("fal-rq-{status}");
        enqueue(&app, &fal_batch(&app, &batch, ModelKind::Edit, &prompts(n))).await;
        let info = app.drive(&rt, &batch, Duration::from_secs(30)).await;
        assert_eq!(
            info.count(JobState::Failed),
            n as u64,
            "{kind}: {:?}",
            info.counts
        );
        for rec in records(&app, &batch, n as u32).await {
            let e = rec.error.as_deref().unwrap_or("");
            assert!(e.contains(kind) && e.contains(text), "{kind}: {e}");
            assert!(e.contains(&format!("HTTP {status}")), "{e}");
            assert!(!e.contains("expired"), "a real failure: {e}");
            assert_eq!(rec.attempts, 0, "no retry: {rec:?}");
        }
        let c = fal_counters(&app);
        assert_eq!(c.results_total, n as u64, "one result fetch per job: {c:?}");
        assert_eq!(c.submissions_total, n as u64);
    }
}

/// Without `providers.fal.no_retry` (the default) the submit leaves fal's own retries on:
/// a runner that fails once is retried by fal and the job succeeds. With it set, the
/// header is sent, fal does not retry, and the job fails with the request error.
#[tokio::test]
async fn fal_retries_runner_failures_itself_unless_no_retry_is_set() {
    let n = 3;
    let app = fal_app(Knobs {
        fal_runner_failure_rate: 1.0,
        ..fast_knobs()
    })
    .await;
    let rt = fal_runtime(&app, TestSettings::new());
    assert_eq!(
        rt.settings.provider(ProviderName::Fal).no_retry,
        Some(false)
    );
    enqueue(
        &app,
        &fal_batch(&app, "fal-rr-on", ModelKind::Edit, &prompts(n)),
    )
    .await;
    let info = app.drive(&rt, "fal-rr-on", Duration::from_secs(30)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    let c = fal_counters(&app);
    assert_eq!(c.no_retry_submits, 0, "no X-Fal-No-Retry by default: {c:?}");
    assert_eq!(
        c.runner_retries, n as u64,
        "fal retried each runner failure"
    );

    let rt = fal_runtime(
        &app,
        TestSettings::new().set("providers.fal.no_retry", true),
    );
    let ps: Vec<String> = (0..n).map(|i| format!("no retry {i}")).collect();
    enqueue(&app, &fal_batch(&app, "fal-rr-off", ModelKind::Edit, &ps)).await;
    let info = app.drive(&rt, "fal-rr-off", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Failed), n as u64, "{:?}", info.counts);
    for rec in records(&app, "fal-rr-off", n as u32).await {
        let e = rec.error.as_deref().unwrap_or("");
        assert!(e.contains("runner_disconnected"), "{e}");
        assert_eq!(rec.attempts, 0);
    }
    let c = fal_counters(&app);
    assert_eq!(c.no_retry_submits, n as u64, "the header was sent: {c:?}");
    assert_eq!(c.runner_retries, n as u64, "fal retried none of these");
}

/// A result fetched after fal's retention window (404 while the status says COMPLETED)
/// fails the job with a reason that says the result expired, not that the model failed.
#[tokio::test]
async fn an_expired_result_is_told_apart_from_a_failure() {
    let app = fal_app(Knobs {
        fal_result_retention: Duration::ZERO,
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    enqueue(
        &app,
        &fal_batch(&app, "fal-gone", ModelKind::Edit, &prompts(1)),
    )
    .await;
    let info = app.drive(&rt, "fal-gone", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Failed), 1, "{:?}", info.counts);
    let rec = records(&app, "fal-gone", 1).await.remove(0);
    let e = rec.error.as_deref().unwrap_or("");
    assert!(
        e.contains("expired") && e.contains("Request not found"),
        "{e}"
    );
    assert!(e.contains("COMPLETED"), "{e}");
    assert_eq!(fal_counters(&app).results_total, 1);
}
