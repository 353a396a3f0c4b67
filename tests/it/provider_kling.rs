//! Kling's official API against the simulator over real HTTP: JWT auth, edit and reference
//! wire shapes, `task_status_msg` failures, a bad token pausing the provider, 1303 as a
//! cool-down, and ambiguous or crashed submits resolved through `external_task_id`
//! without a second paid task.

use crate::helpers::*;
use restyle::job::{Field, JobState, Transition};
use restyle::model::{job_id, GenerationRequest, ModelKind, ProviderName, ValidatedBatch};
use restyle::queue::{After, Queue, RetryMode};
use restyle::sim::{Knobs, ProviderCounters};
use restyle::sink::jsonl::read_all;
use restyle::upstream::providers::kling::Kling;
use restyle::upstream::{ErrorClass, Lookup, Upstream};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const AK: &str = "ak-test";
const SK: &str = "sk-test";

fn knobs() -> Knobs {
    Knobs {
        api_keys: vec![format!("{AK}:{SK}")],
        ..fast_knobs()
    }
}

/// A test world whose Kling provider points at the simulator, signing with `secret`.
async fn kling_app(knobs: Knobs, secret: &str) -> TestApp {
    let mut app = TestApp::new(knobs).await;
    sign_with(&mut app, secret);
    app
}

fn sign_with(app: &mut TestApp, secret: &str) {
    let base = url::Url::parse(&app.sim.base_url()).unwrap();
    let p = app
        .settings
        .providers
        .get_mut(&ProviderName::Kling)
        .unwrap();
    p.base_url = base;
    p.access_key = Some(SecretString::from(AK));
    p.secret_key = Some(SecretString::from(secret.to_string()));
    p.limits.cooldown = Duration::from_millis(100);
}

fn client(app: &TestApp) -> Kling {
    Kling::new(&app.settings.providers[&ProviderName::Kling]).unwrap()
}

/// A Kling batch with one reference image; reference adds 9:16 and 5 s.
fn kling_batch(app: &TestApp, id: &str, model: ModelKind, prompts: &[String]) -> ValidatedBatch {
    let mut b = app.batch(id, prompts);
    let s = &mut b.shared;
    s.provider = ProviderName::Kling;
    s.model = model;
    s.image_list = vec!["https://media.example.com/look.png".into()];
    s.keep_audio = true;
    if model == ModelKind::Reference {
        s.aspect_ratio = Some("9:16".into());
        s.duration = Some(5);
    }
    b
}

async fn enqueue(app: &TestApp, b: &ValidatedBatch) {
    restyle::producer::enqueue(&app.queue, b)
        .await
        .expect("enqueue");
}

fn counters(app: &TestApp) -> ProviderCounters {
    let stats = app.sim.stats();
    stats.by_provider.get("kling").cloned().unwrap_or_default()
}

/// Every succeeded job's file is the simulator's output for its numeric task id.
fn assert_outputs(app: &TestApp, batch: &str, n: usize) {
    let lines = read_all(&app.results_path(batch)).unwrap();
    assert_eq!(lines.len(), n);
    for l in lines.iter().filter(|l| l.state == "succeeded") {
        let id = l.upstream_id.as_deref().unwrap();
        assert!(id.bytes().all(|b| b.is_ascii_digit()), "task id {id}");
        let want = hex::encode(Sha256::digest(
            app.sim.output_of(id).expect("a completed generation"),
        ));
        assert_eq!(l.sha256.as_deref(), Some(want.as_str()));
    }
}

#[tokio::test]
async fn edit_and_reference_batches_succeed() {
    let app = kling_app(knobs(), SK).await;
    let rt = app.runtime();
    let mut ps = prompts(3);
    ps[0] = "Dress the dancer in the coat from @Image1, keep the choreography".into();
    enqueue(&app, &kling_batch(&app, "kedit", ModelKind::Edit, &ps)).await;
    let reference = kling_batch(&app, "kref", ModelKind::Reference, &prompts(2));
    enqueue(&app, &reference).await;
    let info = app.drive(&rt, "kedit", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 3, "{:?}", info.counts);
    // The sim refuses a numeric duration, a missing aspect ratio on `feature`, and
    // `<<<image_N>>>` naming no image: success means the wire shape was right.
    let info = app.drive(&rt, "kref", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 2, "{:?}", info.counts);
    assert_outputs(&app, "kedit", 3);
    assert_outputs(&app, "kref", 2);
    let c = counters(&app);
    assert_eq!((c.submissions_total, c.duplicate_submissions), (5, 0));
    assert_eq!(c.validation_errors_total, 0);
}

#[tokio::test]
async fn prompt_references_reach_the_wire_translated() {
    let app = kling_app(knobs(), SK).await;
    let up = client(&app);
    let b = kling_batch(&app, "kwire", ModelKind::Edit, &prompts(1));
    let mut req = GenerationRequest::new(
        &b.shared,
        job_id("kwire", 0),
        "the coat from @Image1".into(),
    );
    let id = up.submit(&req).await.expect("one image, @Image1");
    assert!(matches!(
        up.poll(&id).await,
        Ok(restyle::upstream::PollStatus::Pending { .. })
    ));
    // A duplicate external_task_id is answered 1201; the client finds the existing task.
    assert_eq!(up.submit(&req).await.unwrap(), id);
    assert_eq!(up.lookup(&req.client_id).await.unwrap(), Lookup::Found(id));
    // @Image2 becomes <<<image_2>>>, which names no image: a job error at create.
    req.client_id = job_id("kwire", 1);
    req.prompt = "the coat from @Image2".into();
    let err = up.submit(&req).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Job, "{err:?}");
    assert!(err.message.contains("<<<image_2>>>"), "{}", err.message);
    assert_eq!(up.lookup(&req.client_id).await.unwrap(), Lookup::NotFound);
    // Inline elements never leave the client.
    req.elements = vec![restyle::model::Element {
        frontal_image_url: "https://media.example.com/f.png".into(),
        reference_image_urls: vec!["https://media.example.com/r.png".into()],
    }];
    let err = up.submit(&req).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Job);
    assert!(err.message.contains("pre-registered element ids"));
    let c = counters(&app);
    assert_eq!((c.submissions_total, c.duplicate_submissions), (1, 0));
}

#[tokio::test]
async fn failed_task_reports_its_status_message() {
    let app = kling_app(
        Knobs {
            fail_prompts_containing: Some("FAILME".into()),
            ..knobs()
        },
        SK,
    )
    .await;
    let rt = app.runtime();
    let ps = vec!["fine".to_string(), "FAILME please".to_string()];
    enqueue(&app, &kling_batch(&app, "kfail", ModelKind::Edit, &ps)).await;
    let info = app.drive(&rt, "kfail", Duration::from_secs(30)).await;
    assert_eq!(
        (
            info.count(JobState::Succeeded),
            info.count(JobState::Failed)
        ),
        (1, 1)
    );
    let lines = read_all(&app.results_path("kfail")).unwrap();
    let failed = lines.iter().find(|l| l.state == "failed").unwrap();
    let e = failed.error.as_deref().unwrap_or("");
    assert!(
        e.contains("Content rejected by upstream safety system"),
        "{e}"
    );
    assert!(failed.upstream_id.is_some());
}

#[tokio::test]
async fn a_wrongly_signed_token_pauses_the_provider() {
    let mut app = kling_app(knobs(), "not-the-secret").await;
    app.settings.retry.account_pause = Duration::from_secs(60);
    let rt = app.runtime();
    enqueue(
        &app,
        &kling_batch(&app, "kjwt", ModelKind::Edit, &prompts(3)),
    )
    .await;
    let mut paused = None;
    for _ in 0..20 {
        restyle::worker::step(&rt).await.unwrap();
        paused = app.queue.provider_pause("kling").await.unwrap();
        if paused.is_some() {
            break;
        }
    }
    let pause = paused.expect("provider paused after a 401");
    assert!(
        pause.message.contains("HTTP 401 code 1002"),
        "{}",
        pause.message
    );
    assert_eq!(app.info("kjwt").await.count(JobState::Queued), 3);
    assert!(app.sim.stats().unauthorized_total >= 1);
    assert_eq!(counters(&app).submissions_total, 0);
    // The operator fixes the secret and resumes: every job goes through.
    sign_with(&mut app, SK);
    let rt = app.runtime();
    app.queue.resume_provider("kling").await.unwrap();
    let info = app.drive(&rt, "kjwt", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 3, "{:?}", info.counts);
}

#[tokio::test]
async fn concurrency_1303_is_a_cool_down_and_every_job_succeeds() {
    let app = kling_app(
        Knobs {
            max_in_flight: Some(2),
            ..knobs()
        },
        SK,
    )
    .await;
    let rt = app.runtime(); // the runner's own cap is off
    enqueue(
        &app,
        &kling_batch(&app, "kcap", ModelKind::Edit, &prompts(6)),
    )
    .await;
    let info = app.drive(&rt, "kcap", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 6, "{:?}", info.counts);
    let s = app.sim.stats();
    assert!(s.concurrency_limited_total > 0, "the cap was hit: {s:?}");
    assert!(s.peak_in_flight_by_key_max <= 2);
    let c = counters(&app);
    assert_eq!((c.submissions_total, c.duplicate_submissions), (6, 0));
}

#[tokio::test]
async fn lost_submit_responses_are_resolved_by_external_task_id() {
    let n = 8;
    let app = kling_app(
        Knobs {
            submit_lost_response_rate: 0.5,
            seed: Some(4),
            ..knobs()
        },
        SK,
    )
    .await;
    let rt = app.runtime();
    enqueue(
        &app,
        &kling_batch(&app, "klost", ModelKind::Edit, &prompts(n)),
    )
    .await;
    let info = app.drive(&rt, "klost", Duration::from_secs(60)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    assert_eq!(info.count(JobState::SubmitUnknown), 0);
    let c = counters(&app);
    assert!(c.server_errors_total > 0, "responses were lost: {c:?}");
    assert_eq!(c.submissions_total, n as u64, "one task per job");
    assert_eq!(c.duplicate_submissions, 0);
    assert_outputs(&app, "klost", n);
}

#[tokio::test]
async fn a_job_redelivered_mid_submit_finds_its_task() {
    let app = kling_app(knobs(), SK).await;
    let b = kling_batch(&app, "kcrash", ModelKind::Edit, &prompts(2));
    enqueue(&app, &b).await;
    // A worker with a short lease claims both jobs, marks them `submitting`, POSTs only
    // the first, and dies.
    let mut qs = app.settings.queue.clone();
    qs.lease = Duration::from_millis(300);
    let dead = Queue::connect(&app.settings.redis, &qs, RetryMode::Persistent)
        .await
        .unwrap();
    let claims = dead.claim("dead-worker", 2).await.unwrap();
    assert_eq!(claims.len(), 2);
    for (i, c) in claims.iter().enumerate() {
        let tx = Transition::to(JobState::Submitting, After::Keep)
            .set(Field::Provider, "kling")
            .set(Field::Model, "edit");
        let nonce = format!("crash-{i}");
        dead.apply(c.owner(), &nonce, &tx, None).await.unwrap();
    }
    let first = job_id("kcrash", 0);
    let req = GenerationRequest::new(&b.shared, first.clone(), b.prompts[0].clone());
    let task = client(&app).submit(&req).await.unwrap();
    // The leases run out; the sweep hands both jobs back in state `submitting`.
    let end = Instant::now() + Duration::from_secs(10);
    let mut recovered = 0;
    while recovered < 2 {
        recovered += app.queue.sweep().await.unwrap();
        assert!(Instant::now() < end, "leases never expired");
        poll_interval().await;
    }
    let rt = app.runtime();
    let info = app.drive(&rt, "kcrash", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 2, "{:?}", info.counts);
    let rec = app.queue.job(&first).await.unwrap().unwrap().unwrap();
    assert_eq!(
        rec.upstream_id.as_deref(),
        Some(task.as_str()),
        "found by lookup"
    );
    let c = counters(&app);
    assert_eq!((c.submissions_total, c.duplicate_submissions), (2, 0));
    assert_outputs(&app, "kcrash", 2);
}

#[tokio::test]
async fn the_sample_batch_file_runs_end_to_end() {
    let app = kling_app(knobs(), SK).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/kling.toml");
    let b = restyle::batch::load_file(&path, &app.settings.limits).expect("jobs/kling.toml");
    assert_eq!(b.shared.provider, ProviderName::Kling);
    enqueue(&app, &b).await;
    let rt = app.runtime();
    let info = app
        .drive(&rt, &b.shared.batch_id, Duration::from_secs(30))
        .await;
    assert_eq!(
        info.count(JobState::Succeeded),
        b.prompts.len() as u64,
        "{:?}",
        info.counts
    );
    assert_outputs(&app, &b.shared.batch_id, b.prompts.len());
}

/// Issue 11 item 13: `retry` of a job whose Kling task failed must create a new task. The
/// `external_task_id` is per submit attempt (recorded before the POST), so the retried
/// submit neither collides with the failed task nor re-attaches to it.
#[tokio::test]
async fn a_retried_job_gets_a_new_task_not_the_failed_one() {
    let failing = Knobs {
        fail_prompts_containing: Some("FAILME".into()),
        ..knobs()
    };
    let app = kling_app(failing, SK).await;
    let rt = app.runtime();
    let ps = vec!["FAILME at first".to_string()];
    enqueue(&app, &kling_batch(&app, "kretry", ModelKind::Edit, &ps)).await;
    let info = app.drive(&rt, "kretry", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Failed), 1, "{:?}", info.counts);
    let first = app
        .queue
        .job(&job_id("kretry", 0))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The provider recovers; the operator retries the failed job.
    app.sim.set_knobs(knobs());
    let n = restyle::ops::retry(&app.queue, &info, &[JobState::Failed])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let info = app.drive(&rt, "kretry", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1, "{:?}", info.counts);
    let again = app
        .queue
        .job(&job_id("kretry", 0))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_ne!(
        again.upstream_id, first.upstream_id,
        "a new task, not the failed one"
    );
    let c = counters(&app);
    assert_eq!(c.submissions_total, 2, "one task per attempt");
    assert_eq!(c.duplicate_submissions, 0);
}

/// The simulator's task as Kling's query answers it (a JWT of our own, raw HTTP).
async fn sim_task(app: &TestApp, task_id: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwt = restyle::upstream::providers::kling::mint_jwt(AK, SK, now);
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/videos/omni-video/{task_id}",
            app.sim.base_url()
        ))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], 0, "{v}");
    v["data"].clone()
}

/// The units each succeeded job's task was billed (`final_unit_deduction`).
async fn billed_units(app: &TestApp, batch: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for l in read_all(&app.results_path(batch)).unwrap().iter().take(n) {
        assert_eq!(l.state, "succeeded", "{l:?}");
        let task = sim_task(app, l.upstream_id.as_deref().unwrap()).await;
        out.push(
            task["final_unit_deduction"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    out
}

/// `mode` is always sent, from `providers.kling.mode`: the default is Kling's own (`pro`,
/// 5 units for 5 s); `std` is billed at the simulator's 3/4 (3.75).
#[tokio::test]
async fn the_configured_mode_is_sent_and_billed() {
    let mut app = kling_app(knobs(), SK).await;
    let rt = app.runtime();
    enqueue(
        &app,
        &kling_batch(&app, "kpro", ModelKind::Edit, &prompts(2)),
    )
    .await;
    let info = app.drive(&rt, "kpro", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 2, "{:?}", info.counts);
    assert_eq!(billed_units(&app, "kpro", 2).await, ["5", "5"]);

    // Through the real loader, as a worker reads RESTYLE__PROVIDERS__KLING__MODE=std.
    let std_mode = app
        .test
        .clone()
        .set("providers.kling.mode", "std")
        .settings();
    let mode = std_mode.provider(ProviderName::Kling).mode;
    assert_eq!(mode, Some(restyle::config::KlingMode::Std));
    app.settings
        .providers
        .get_mut(&ProviderName::Kling)
        .unwrap()
        .mode = mode;
    let rt = app.runtime();
    let ps: Vec<String> = (0..2).map(|i| format!("standard {i}")).collect();
    enqueue(&app, &kling_batch(&app, "kstd", ModelKind::Edit, &ps)).await;
    let info = app.drive(&rt, "kstd", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 2, "{:?}", info.counts);
    assert_eq!(billed_units(&app, "kstd", 2).await, ["3.75", "3.75"]);
    assert_eq!(counters(&app).validation_errors_total, 0);
}

/// A local image becomes a `data:` URI at enqueue; Kling takes raw Base64 only (the
/// simulator refuses a `data:` prefix with 1201, as Kling documents it wrong), so the
/// client sends the payload alone and the job succeeds.
#[tokio::test]
async fn a_local_image_goes_to_kling_as_raw_base64() {
    use base64::Engine;
    let app = kling_app(knobs(), SK).await;
    let rt = app.runtime();
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\x2c\0\0\x01\x2c\x08\x02\0\0\0";
    let b64 = base64::engine::general_purpose::STANDARD.encode(png);
    let mut b = kling_batch(&app, "kb64", ModelKind::Edit, &prompts(1));
    b.shared.image_list = vec![format!("data:image/png;base64,{b64}")];
    enqueue(&app, &b).await;
    let info = app.drive(&rt, "kb64", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1, "{:?}", info.counts);
    let c = counters(&app);
    assert_eq!(c.validation_errors_total, 0, "no 1201 for the image: {c:?}");
    assert_eq!((c.submissions_total, c.duplicate_submissions), (1, 0));
}
