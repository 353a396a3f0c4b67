//! Hostile upstream answers (issue 12): a tiny HTTP server in the test plays aimlapi and
//! answers with a huge `Retry-After`, huge bodies, ANSI escapes and the API key echoed.

use crate::helpers::*;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use restyle::job::JobState;
use restyle::model::ProviderName;
use restyle::sink::jsonl::read_all;
use restyle::worker;
use std::time::Duration;

/// What the hostile server answers.
#[derive(Clone, Copy)]
enum Hostile {
    /// 429 with `Retry-After: 9999999999` to every submit.
    RetryForever,
    /// 400 to submits with a body this big: the key and ANSI escapes, then padding.
    Reject400(usize),
    /// Submits succeed; every poll is a 200 of this many bytes.
    HugePoll(usize),
    /// Submits succeed; every poll is a 503 with `Retry-After: 9999999999`.
    PollRetryForever,
    /// Submits succeed; the poll says the generation failed, echoing the key in ANSI.
    PollFailedEcho,
    /// Submits are answered 200 with a body this big: the POST may well have been taken.
    HugeSubmit(usize),
}

/// Submits the hostile server has received.
static SUBMITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn hostile(mode: Hostile) -> String {
    let submit = move || async move {
        if matches!(mode, Hostile::HugeSubmit(_)) {
            SUBMITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        match mode {
            Hostile::HugeSubmit(n) => (
                StatusCode::OK,
                HeaderMap::new(),
                format!("{{\"id\": \"gen-1\", \"pad\": \"{}\"}}", "s".repeat(n)),
            ),
            Hostile::RetryForever => {
                let mut h = HeaderMap::new();
                h.insert("retry-after", "9999999999".parse().unwrap());
                (StatusCode::TOO_MANY_REQUESTS, h, "slow down".to_string())
            }
            Hostile::Reject400(n) => {
                let head = format!(
                    "{{\"message\": \"\\u001b[31mbad key {API_KEY}\\r\\n\\u0000\\u001b[0m "
                );
                let pad = n.saturating_sub(head.len() + 2);
                let body = format!("{head}{}\"}}", "x".repeat(pad));
                (StatusCode::BAD_REQUEST, HeaderMap::new(), body)
            }
            Hostile::HugePoll(_) | Hostile::PollRetryForever | Hostile::PollFailedEcho => (
                StatusCode::OK,
                HeaderMap::new(),
                r#"{"id": "gen-1", "status": "queued"}"#.to_string(),
            ),
        }
    };
    let poll = move || async move {
        let mut h = HeaderMap::new();
        match mode {
            Hostile::HugePoll(n) => (
                StatusCode::OK,
                h,
                format!("{{\"id\": \"gen-1\", \"pad\": \"{}\"}}", "y".repeat(n)),
            ),
            Hostile::PollRetryForever => {
                h.insert("retry-after", "9999999999".parse().unwrap());
                (StatusCode::SERVICE_UNAVAILABLE, h, "busy".to_string())
            }
            Hostile::PollFailedEcho => {
                let msg = format!("\\u001b[1mno\\r\\u0007 {API_KEY} {}", "z".repeat(100_000));
                let body = serde_json::json!({"id": "gen-1", "status": "error"});
                let body = body
                    .to_string()
                    .replace('}', &format!(", \"error\": {{\"message\": \"{msg}\"}}}}"));
                (StatusCode::OK, h, body)
            }
            _ => (StatusCode::OK, h, "{}".to_string()),
        }
    };
    let app = Router::new().route("/v2/video/generations", post(submit).get(poll));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}")
}

async fn app_at(mode: Hostile) -> TestApp {
    let mut app = TestApp::new(fast_knobs()).await;
    let base = hostile(mode).await;
    app.settings
        .point_provider_at(ProviderName::Aimlapi, &base, API_KEY);
    app
}

fn assert_clean(e: &str) {
    assert!(
        e.len() <= 2048 + 32,
        "error text over the cap: {} bytes",
        e.len()
    );
    assert!(!e.chars().any(char::is_control), "control chars in {e:?}");
    assert!(!e.contains(API_KEY), "the key leaked: {e}");
}

#[tokio::test]
async fn hostile_retry_after_is_capped_for_the_fleet_and_the_job() {
    let app = app_at(Hostile::RetryForever).await;
    let rt = app.runtime();
    app.enqueue("ra", &prompts(1)).await;
    worker::step(&rt).await.expect("step");
    let v = app.queue.provider_view("aimlapi").await.unwrap();
    assert!(v.cooldown_ms > 0, "the 429 cooled the fleet down");
    assert!(
        v.cooldown_ms <= 300_000,
        "cool-down capped at 5 minutes, got {} ms",
        v.cooldown_ms
    );
}

#[tokio::test]
async fn hostile_error_text_is_truncated_stripped_and_redacted() {
    let app = app_at(Hostile::Reject400(200_000)).await;
    let rt = app.runtime();
    app.enqueue("e400", &prompts(1)).await;
    let info = app.drive(&rt, "e400", Duration::from_secs(20)).await;
    assert_eq!(info.count(JobState::Failed), 1, "{:?}", info.counts);
    let lines = read_all(&app.results_path("e400")).unwrap();
    let e = lines[0].error.as_deref().unwrap_or("");
    assert!(e.contains("bad key [redacted]"), "{e}");
    assert_clean(e);
}

#[tokio::test]
async fn hostile_huge_error_body_is_not_read_past_the_limit() {
    let app = app_at(Hostile::Reject400(20 << 20)).await;
    let rt = app.runtime();
    app.enqueue("e20m", &prompts(1)).await;
    let info = app.drive(&rt, "e20m", Duration::from_secs(20)).await;
    assert_eq!(info.count(JobState::Failed), 1, "{:?}", info.counts);
    let lines = read_all(&app.results_path("e20m")).unwrap();
    let e = lines[0].error.as_deref().unwrap_or("");
    assert!(e.contains("limit"), "{e}");
    assert_clean(e);
}

#[tokio::test]
async fn hostile_huge_poll_body_is_retried_then_the_job_dies_with_the_limit() {
    let app = app_at(Hostile::HugePoll(50 << 20)).await;
    let mut rt = app.runtime();
    rt.settings.retry.max_attempts = 2;
    app.enqueue("p50m", &prompts(1)).await;
    let info = app.drive(&rt, "p50m", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Dead), 1, "{:?}", info.counts);
    let lines = read_all(&app.results_path("p50m")).unwrap();
    let e = lines[0].error.as_deref().unwrap_or("");
    assert!(e.contains("limit"), "{e}");
    assert_clean(e);
}

#[tokio::test]
async fn hostile_retry_after_on_a_poll_is_capped_at_max_delay() {
    let app = app_at(Hostile::PollRetryForever).await;
    let mut rt = app.runtime();
    rt.settings.retry.max_attempts = 3;
    app.enqueue("p503", &prompts(1)).await;
    // Uncapped, the first retry would park the job for 317 years.
    let info = app.drive(&rt, "p503", Duration::from_secs(15)).await;
    assert_eq!(info.count(JobState::Dead), 1, "{:?}", info.counts);
    let lines = read_all(&app.results_path("p503")).unwrap();
    assert_clean(lines[0].error.as_deref().unwrap_or(""));
}

#[tokio::test]
async fn hostile_failure_reason_is_sanitized() {
    let app = app_at(Hostile::PollFailedEcho).await;
    let rt = app.runtime();
    app.enqueue("pfail", &prompts(1)).await;
    let info = app.drive(&rt, "pfail", Duration::from_secs(20)).await;
    assert_eq!(info.count(JobState::Failed), 1, "{:?}", info.counts);
    let lines = read_all(&app.results_path("pfail")).unwrap();
    let e = lines[0].error.as_deref().unwrap_or("");
    assert!(e.contains("[redacted] zzz"), "{e}");
    assert_clean(e);
}

#[tokio::test]
async fn hostile_huge_submit_answer_is_ambiguous_and_never_posted_again() {
    // Only this test uses HugeSubmit, so the counter is its own.
    let app = app_at(Hostile::HugeSubmit(50 << 20)).await;
    let rt = app.runtime();
    app.enqueue("s50m", &prompts(1)).await;
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let id = restyle::job::job_id("s50m", 0);
    let rec = loop {
        worker::step(&rt).await.expect("step");
        let rec = app.queue.job(&id).await.unwrap().unwrap().unwrap();
        if rec.state == JobState::SubmitUnknown || rec.state.is_terminal() {
            break rec;
        }
        assert!(std::time::Instant::now() < end, "still {:?}", rec.state);
        poll_interval().await;
    };
    // The answer could not be read, so whether the POST was taken is unknown: held for
    // reconcile, never POSTed a second time.
    assert_eq!(rec.state, JobState::SubmitUnknown, "{rec:?}");
    let e = rec.error.as_deref().unwrap_or("");
    assert!(e.contains("limit"), "{e}");
    assert_clean(e);
    for _ in 0..5 {
        worker::step(&rt).await.expect("step");
    }
    assert_eq!(SUBMITS.load(std::sync::atomic::Ordering::SeqCst), 1);
}
