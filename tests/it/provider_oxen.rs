//! Oxen.ai end to end against the simulator's Oxen queue over real HTTP: the batch file,
//! a parameter error that only surfaces when the generation runs, cancelling (operator and
//! deadline), retried transient errors, the credits pause, and the SSE trap: a completion event must move the
//! poll up (and lost events must still be caught by polling).

use crate::helpers::*;
use restyle::config::PollSettings;
use restyle::job::JobState;
use restyle::model::{Element, GenerationRequest, ModelKind, ProviderName, ValidatedBatch};
use restyle::sim::{Knobs, ProviderCounters};
use restyle::sink::download::sha256_file;
use restyle::sink::jsonl::read_all;
use restyle::upstream::providers::oxen::Oxen;
use restyle::upstream::{ErrorClass, PollStatus, Upstream};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

async fn oxen_app(knobs: Knobs) -> TestApp {
    let mut app = TestApp::new(knobs).await;
    // The sim root: the client adds Oxen's `/api` prefix to a base without a path.
    let base = app.sim.base_url();
    app.settings
        .point_provider_at(ProviderName::Oxen, &base, API_KEY);
    app
}

fn oxen_batch(app: &TestApp, id: &str, prompts: &[String]) -> ValidatedBatch {
    let mut b = app.batch(id, prompts);
    b.shared.provider = ProviderName::Oxen;
    b
}

async fn enqueue(app: &TestApp, b: &ValidatedBatch) {
    restyle::producer::enqueue(&app.queue, b)
        .await
        .expect("enqueue");
}

fn counters(app: &TestApp) -> ProviderCounters {
    app.sim
        .stats()
        .by_provider
        .get("oxen")
        .cloned()
        .unwrap_or_default()
}

fn client(app: &TestApp) -> Oxen {
    Oxen::new(app.settings.provider(ProviderName::Oxen)).expect("client")
}

/// The simulator's queue row for a generation, as Oxen returns it.
async fn sim_row(app: &TestApp, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/api/ai/queue/{id}", app.sim.base_url()))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

#[tokio::test]
async fn the_batch_file_succeeds_with_the_served_bytes_and_audio_sent_explicitly() {
    let app = oxen_app(fast_knobs()).await;
    let rt = app.runtime();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/oxen.toml");
    let batch = restyle::batch::load_file(&path, &app.settings.limits).expect("valid batch");
    assert_eq!(batch.shared.provider, ProviderName::Oxen);
    assert!(!batch.shared.keep_audio && !batch.shared.elements.is_empty());
    let id = batch.shared.batch_id.clone();
    let n = batch.prompts.len();
    enqueue(&app, &batch).await;
    let info = app.drive(&rt, &id, Duration::from_secs(30)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    let lines = read_all(&app.results_path(&id)).unwrap();
    assert_eq!(lines.len(), n);
    for l in &lines {
        let up = l.upstream_id.as_deref().expect("upstream id");
        assert!(uuid::Uuid::parse_str(up).is_ok(), "a bare uuid: {up}");
        let want = sha256_hex(&app.sim.output_of(up).expect("a completed generation"));
        assert_eq!(l.sha256.as_deref(), Some(want.as_str()));
        let file = app.out.path().join(l.file.as_deref().unwrap());
        assert_eq!(sha256_file(&file).unwrap(), want);
    }
    // Oxen's default is keep_audio = true: the row shows what we sent.
    let row = sim_row(&app, lines[0].upstream_id.as_deref().unwrap()).await;
    assert_eq!(row["keep_audio"], Value::Bool(false), "{row}");
    assert_eq!(row["input_image"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        row["elements"][0]["reference_image_urls"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let c = counters(&app);
    assert_eq!(c.submissions_total, n as u64, "{c:?}");
    assert_eq!(c.duplicate_submissions, 0);
    assert_eq!(c.validation_errors_total, 0);
}

#[tokio::test]
async fn too_many_references_fail_late_with_oxens_error_message() {
    let app = oxen_app(fast_knobs()).await;
    let rt = app.runtime();
    // Pre-flight would refuse this; the upstream must still end it as a job failure.
    let mut b = oxen_batch(&app, "ox-late", &prompts(1));
    b.shared.image_list = (1..=3)
        .map(|i| format!("https://media.example.com/{i}.png"))
        .collect();
    b.shared.elements = (1..=2)
        .map(|i| Element {
            frontal_image_url: format!("https://media.example.com/e{i}.png"),
            reference_image_urls: vec![format!("https://media.example.com/e{i}-side.png")],
        })
        .collect();
    enqueue(&app, &b).await;
    let info = app.drive(&rt, "ox-late", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Failed), 1, "{:?}", info.counts);
    let line = &read_all(&app.results_path("ox-late")).unwrap()[0];
    let err = line.error.as_deref().unwrap_or("");
    assert!(err.contains("must not exceed 4"), "{err}");
    assert!(
        line.upstream_id.is_some(),
        "accepted at enqueue, failed when run"
    );
    let c = counters(&app);
    assert_eq!((c.submissions_total, c.validation_errors_total), (1, 0));
}

#[tokio::test]
async fn the_reference_model_is_refused_without_a_request() {
    let app = oxen_app(fast_knobs()).await;
    let mut b = oxen_batch(&app, "ox-ref", &prompts(1));
    b.shared.model = ModelKind::Reference;
    let req = GenerationRequest::new(&b.shared, "ox-ref.00000".into(), "p".into());
    let err = client(&app).submit(&req).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Job);
    assert!(err.message.contains("reference"), "{}", err.message);
    assert_eq!(counters(&app).submissions_total, 0);
}

#[tokio::test]
async fn cancel_reaches_oxen_from_the_operator_and_at_the_deadline() {
    let app = oxen_app(Knobs {
        stuck_prompts_containing: Some("STUCK".into()),
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    let mut poll = fast_poll();
    poll.deadline = Duration::from_millis(1500);
    rt.settings.set_poll(poll);
    // The deadline: the worker cancels the stuck generation upstream.
    enqueue(&app, &oxen_batch(&app, "ox-dl", &["STUCK".to_string()])).await;
    let info = app.drive(&rt, "ox-dl", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::TimedOut), 1, "{:?}", info.counts);
    let up = read_all(&app.results_path("ox-dl")).unwrap()[0]
        .upstream_id
        .clone()
        .unwrap();
    assert_eq!(sim_row(&app, &up).await["status"], "cancelled");
    assert_eq!(counters(&app).cancels_total, 1);

    // The operator: `restyle cancel` while the job is parked between polls.
    enqueue(
        &app,
        &oxen_batch(&app, "ox-op", &["STUCK again".to_string()]),
    )
    .await;
    let job = restyle::model::job_id("ox-op", 0);
    let end = Instant::now() + Duration::from_secs(10);
    let up = loop {
        restyle::worker::step(&rt).await.unwrap();
        let rec = app.queue.job(&job).await.unwrap().unwrap().unwrap();
        if let Some(up) = rec.upstream_id.filter(|u| !u.is_empty()) {
            break up;
        }
        assert!(Instant::now() < end, "never submitted");
        poll_interval().await;
    };
    let info = app.info("ox-op").await;
    let done = restyle::ops::cancel(&app.queue, &rt.upstreams, &info)
        .await
        .unwrap();
    assert_eq!(
        (done.cancelled, done.cancelled_upstream),
        (1, 1),
        "{done:?}"
    );
    assert_eq!(sim_row(&app, &up).await["status"], "cancelled");
    assert_eq!(
        client(&app).poll(&up).await.unwrap(),
        PollStatus::Failed {
            reason: "cancelled upstream".into()
        }
    );
    assert_eq!(counters(&app).cancels_total, 2);
}

#[tokio::test]
async fn transient_errors_are_retried_without_a_second_generation() {
    let app = oxen_app(Knobs {
        poll_5xx_rate: 0.3,
        poll_429_rate: 0.2,
        submit_5xx_rate: 0.3,
        seed: Some(5),
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    rt.settings.retry.max_attempts = 30;
    enqueue(&app, &oxen_batch(&app, "ox-flaky", &prompts(6))).await;
    let info = app.drive(&rt, "ox-flaky", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 6, "{:?}", info.counts);
    let c = counters(&app);
    assert!(c.server_errors_total > 0, "met 5xx: {c:?}");
    assert!(c.rate_limited_total > 0, "met 429: {c:?}");
    assert_eq!((c.submissions_total, c.duplicate_submissions), (6, 0));
}

#[tokio::test]
async fn insufficient_credits_pauses_oxen_until_credits_return() {
    let app = oxen_app(Knobs {
        no_credits: true,
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    rt.settings.retry.account_pause = Duration::from_millis(300);
    rt.settings.retry.max_attempts = 2;
    enqueue(&app, &oxen_batch(&app, "ox-broke", &prompts(2))).await;
    let end = Instant::now() + Duration::from_secs(10);
    let pause = loop {
        restyle::worker::step(&rt).await.unwrap();
        if let Some(p) = app.queue.provider_pause("oxen").await.unwrap() {
            break p;
        }
        assert!(Instant::now() < end, "never paused");
        poll_interval().await;
    };
    assert!(
        pause.message.contains("Insufficient credits"),
        "{}",
        pause.message
    );
    assert_eq!(app.info("ox-broke").await.count(JobState::Queued), 2);
    let mut k = app.sim.knobs();
    k.no_credits = false;
    app.sim.set_knobs(k);
    let info = app.drive(&rt, "ox-broke", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 2, "{:?}", info.counts);
}

/// Runs a real worker (with its SSE listener) in this process until the batch finishes.
async fn run_worker_until_finished(
    app: &TestApp,
    poll: PollSettings,
    batch: &ValidatedBatch,
    within: Duration,
) -> Duration {
    let mut rt = app.runtime();
    rt.settings.set_poll(poll);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(restyle::worker::run(Arc::new(rt), stop.clone()));
    let started = Instant::now();
    enqueue(app, batch).await;
    let info = app.wait_finished(&batch.shared.batch_id, within).await;
    let took = started.elapsed();
    stop.cancel();
    worker.await.expect("worker task").expect("worker");
    let n = batch.prompts.len() as u64;
    assert_eq!(info.count(JobState::Succeeded), n, "{:?}", info.counts);
    took
}

/// Latency 500 ms; polls only every 30 s. Only the SSE event can finish the batch fast.
#[tokio::test]
async fn a_completion_event_moves_the_poll_up() {
    let app = oxen_app(Knobs {
        latency_min: Duration::from_secs(5),
        latency_max: Duration::from_secs(5),
        ..fast_knobs()
    })
    .await;
    let slow = PollSettings {
        first_delay: Duration::from_secs(30),
        max_interval: Duration::from_secs(30),
        deadline: Duration::from_secs(120),
    };
    let batch = oxen_batch(&app, "ox-sse", &prompts(3));
    let took = run_worker_until_finished(&app, slow, &batch, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(10), "{took:?}");
    let c = counters(&app);
    assert_eq!(c.events_sent, 3, "{c:?}");
    assert_eq!(
        c.polls_total, 3,
        "one poll each, right after its event: {c:?}"
    );
}

/// Every event lost: polling alone still finishes the batch, just on its own schedule.
#[tokio::test]
async fn lost_events_are_caught_by_polling() {
    let app = oxen_app(Knobs {
        drop_events_rate: 1.0,
        latency_min: Duration::from_secs(3),
        latency_max: Duration::from_secs(3),
        ..fast_knobs()
    })
    .await;
    let poll = PollSettings {
        first_delay: Duration::from_millis(800),
        max_interval: Duration::from_millis(800),
        deadline: Duration::from_secs(30),
    };
    let batch = oxen_batch(&app, "ox-nosse", &prompts(3));
    run_worker_until_finished(&app, poll, &batch, Duration::from_secs(20)).await;
    let c = counters(&app);
    assert_eq!(c.events_sent, 0, "{c:?}");
    assert_eq!(c.events_dropped, 3, "{c:?}");
}

/// Oxen may want its key on a `result_url` download (research O1: unconfirmed; the
/// simulator's `oxen_result_auth` wants it). The client sends it because the URL is on
/// Oxen's own `base_url` origin, and the job succeeds with the served bytes.
#[tokio::test]
async fn the_key_goes_with_a_download_from_oxens_own_origin() {
    let app = oxen_app(Knobs {
        oxen_result_auth: true,
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    enqueue(&app, &oxen_batch(&app, "ox-keyed", &prompts(2))).await;
    let info = app.drive(&rt, "ox-keyed", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 2, "{:?}", info.counts);
    for l in read_all(&app.results_path("ox-keyed")).unwrap() {
        let up = l.upstream_id.as_deref().unwrap();
        let want = sha256_hex(&app.sim.output_of(up).expect("a completed generation"));
        assert_eq!(l.sha256.as_deref(), Some(want.as_str()));
    }
    let s = app.sim.stats();
    assert_eq!(s.downloads_with_authorization, 2, "{s:?}");
    assert_eq!(s.by_provider["oxen"].unauthorized_total, 0, "{s:?}");
}

/// Where a request went and whether it carried an `Authorization` header.
#[derive(Default)]
struct Seen {
    requests: usize,
    with_authorization: usize,
}

/// A CDN on another origin (another port of 127.0.0.1) that serves any path and notes
/// whether each request carried `Authorization`.
async fn other_origin() -> (String, Arc<std::sync::Mutex<Seen>>) {
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let noted = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let noted = noted.clone();
        async move {
            let mut s = noted.lock().unwrap();
            s.requests += 1;
            if headers.contains_key(axum::http::header::AUTHORIZATION) {
                s.with_authorization += 1;
            }
            b"redirected bytes".to_vec()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// Oxen's link redirects to another origin: the key went to Oxen's origin only and is
/// not carried across the redirect.
#[tokio::test]
async fn the_key_never_follows_a_redirect_to_another_origin() {
    let (cdn, seen) = other_origin().await;
    let app = oxen_app(Knobs {
        oxen_result_auth: true,
        output_redirect: Some(format!("{cdn}/signed/output.mp4")),
        ..fast_knobs()
    })
    .await;
    let settings = app
        .test
        .clone()
        .provider_at(ProviderName::Oxen, &app.sim.base_url(), API_KEY)
        .set("egress.allow", cdn.trim_start_matches("http://"))
        .settings();
    let ups = restyle::upstream::build_all(&settings).expect("providers");
    let rt = restyle::worker::Runtime::new(app.queue.clone(), settings, ups);
    enqueue(&app, &oxen_batch(&app, "ox-hop", &prompts(1))).await;
    let info = app.drive(&rt, "ox-hop", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1, "{:?}", info.counts);
    let line = read_all(&app.results_path("ox-hop")).unwrap().remove(0);
    assert_eq!(
        line.sha256.as_deref(),
        Some(sha256_hex(b"redirected bytes").as_str())
    );
    let s = app.sim.stats();
    assert_eq!(
        s.downloads_with_authorization, 1,
        "the key went to Oxen: {s:?}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.requests, 1);
    assert_eq!(seen.with_authorization, 0, "the key crossed the redirect");
}
