//! Push completion end to end: the simulator sends fal webhooks (signed with its own key,
//! its JWKS served at `/.well-known/jwks.json`) and Kling callbacks to the URLs our
//! clients gave; `restyle receive` (in process, and as the built binary) verifies them and
//! moves the job's next poll to now. Jobs poll every hour here, so a job that finishes
//! within the test's deadline was moved by a push; a refused push leaves its job parked.

use crate::helpers::*;
use restyle::config::testing::TestSettings;
use restyle::job::JobState;
use restyle::model::{job_id, ModelKind, ProviderName, ValidatedBatch};
use restyle::sim::{Knobs, PushStats};
use restyle::sink::jsonl::read_all;
use restyle::worker::{self, Stepped};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "push-secret-9d2c41f07be35a68";
const AK: &str = "ak-push";
const SK: &str = "sk-push-5e1f";

/// An hour between polls: only a push can make a job finish within a test.
fn hourly() -> restyle::config::PollSettings {
    restyle::config::PollSettings {
        first_delay: Duration::from_secs(3600),
        max_interval: Duration::from_secs(3600),
        deadline: Duration::from_secs(7200),
    }
}

fn push_knobs() -> Knobs {
    Knobs {
        api_keys: vec![API_KEY.to_string(), format!("{AK}:{SK}")],
        // 0.4–0.5 s: the submit's park is long done when the push arrives.
        latency_min: Duration::from_secs(4),
        latency_max: Duration::from_secs(5),
        ..fast_knobs()
    }
}

/// A test world with fal and Kling on the simulator, `[push]` pointing at a receiver
/// served in this process, and `poll` as every provider's schedule.
struct PushApp {
    app: TestApp,
    receiver: String,
    stop: CancellationToken,
}

impl Drop for PushApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn push_settings(
    app: &TestApp,
    receiver: &str,
    poll: restyle::config::PollSettings,
) -> TestSettings {
    let sim = app.sim.base_url();
    app.test
        .clone()
        .provider_at(ProviderName::Fal, &sim, API_KEY)
        .set("providers.kling.base_url", sim.as_str())
        .set("providers.kling.access_key", AK)
        .set("providers.kling.secret_key", SK)
        .poll(poll)
        .set("push.public_url", receiver)
        .set("push.secret", SECRET)
        .set(
            "providers.fal.webhook_jwks_url",
            format!("{sim}/.well-known/jwks.json").as_str(),
        )
}

async fn push_app(knobs: Knobs, poll: restyle::config::PollSettings) -> PushApp {
    restyle::metrics::install();
    let mut app = TestApp::new(knobs).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}", listener.local_addr().unwrap());
    app.test = push_settings(&app, &receiver, poll);
    app.settings = app.test.settings();
    let rx = std::sync::Arc::new(restyle::push::Receiver::new(
        app.queue.clone(),
        &app.settings,
    ));
    let stop = CancellationToken::new();
    let serve = restyle::push::serve(
        listener,
        rx.router(),
        16,
        Duration::from_secs(5),
        stop.clone(),
    );
    tokio::spawn(serve);
    PushApp {
        app,
        receiver,
        stop,
    }
}

fn batch(app: &TestApp, id: &str, provider: ProviderName, n: usize) -> ValidatedBatch {
    let mut b = app.batch(id, &prompts(n));
    b.shared.provider = provider;
    b.shared.model = ModelKind::Edit;
    b
}

async fn enqueue(app: &TestApp, b: &ValidatedBatch) {
    restyle::producer::enqueue(&app.queue, b)
        .await
        .expect("enqueue");
}

/// Waits (with a deadline) until the simulator's push counters satisfy `done`.
async fn wait_push(app: &TestApp, what: &str, done: impl Fn(&PushStats) -> bool) -> PushStats {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = app.sim.push_stats();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < end, "{what}: {s:?}");
        poll_interval().await;
    }
}

/// Submits every ready job (each parks for an hour).
async fn submit_all(rt: &restyle::worker::Runtime) {
    while worker::step(rt).await.expect("step") == Stepped::Processed {}
}

/// The job's next poll is still about an hour away.
async fn still_parked_far(app: &TestApp, job: &str) {
    let due = app.queue.parked_due(job).await.unwrap().expect("parked");
    let now = app.queue.now_ms();
    assert!(
        due > now + 1_800_000,
        "{job} was moved: due {due}, now {now}"
    );
}

fn metrics_text() -> String {
    restyle::metrics::install().render()
}

fn counter(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test]
async fn a_signed_fal_webhook_makes_an_hourly_polled_job_finish() {
    let w = push_app(push_knobs(), hourly()).await;
    let app = &w.app;
    let rt = app.runtime();
    enqueue(app, &batch(app, "push-fal", ProviderName::Fal, 3)).await;
    let info = app.drive(&rt, "push-fal", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 3, "{:?}", info.counts);
    // The simulator counts an answer once it has read it, maybe after the job finished.
    let s = wait_push(app, "three answered", |s| s.delivered + s.refused >= 3).await;
    assert_eq!(s.delivered, 3, "{s:?}");
    assert_eq!(s.unauthorized, 0, "{s:?}");
    assert_eq!(read_all(&app.results_path("push-fal")).unwrap().len(), 3);
}

#[tokio::test]
async fn fal_webhooks_with_a_wrong_key_or_a_stale_timestamp_are_refused_and_poke_nothing() {
    let w = push_app(push_knobs(), hourly()).await;
    let app = &w.app;
    let rt = app.runtime();
    let before = metrics_text();
    let refused = |t: &str, reason: &str| {
        counter(
            t,
            "restyle_push_refused_total",
            &["provider=\"fal\"", &format!("reason=\"{reason}\"")],
        )
    };
    app.sim.set_knobs(Knobs {
        push_wrong_key: true,
        ..push_knobs()
    });
    enqueue(app, &batch(app, "push-wrong-key", ProviderName::Fal, 1)).await;
    submit_all(&rt).await;
    wait_push(app, "a wrong key refused", |s| s.unauthorized >= 1).await;
    app.sim.set_knobs(Knobs {
        push_clock_skew: Duration::from_secs(600),
        ..push_knobs()
    });
    enqueue(app, &batch(app, "push-stale", ProviderName::Fal, 1)).await;
    submit_all(&rt).await;
    let s = wait_push(app, "a stale timestamp refused", |s| s.unauthorized >= 2).await;
    assert_eq!(s.delivered, 0, "{s:?}");
    assert_eq!(
        worker::step(&rt).await.unwrap(),
        Stepped::Empty,
        "nothing due"
    );
    still_parked_far(app, &job_id("push-wrong-key", 0)).await;
    still_parked_far(app, &job_id("push-stale", 0)).await;
    let after = metrics_text();
    assert!(refused(&after, "bad_signature") > refused(&before, "bad_signature"));
    assert!(refused(&after, "stale_timestamp") > refused(&before, "stale_timestamp"));
}

#[tokio::test]
async fn forged_fal_webhooks_are_refused_before_the_job_is_read() {
    let w = push_app(push_knobs(), hourly()).await;
    let app = &w.app;
    let rt = app.runtime();
    enqueue(app, &batch(app, "push-forged", ProviderName::Fal, 1)).await;
    submit_all(&rt).await;
    let job = job_id("push-forged", 0);
    let url = format!("{}/push/fal/{job}", w.receiver);
    let http = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let body = r#"{"request_id":"x","status":"OK","payload":{}}"#;
    let unsigned = http.post(&url).body(body).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 400, "no signature headers");
    let forged = http
        .post(&url)
        .header("x-fal-webhook-request-id", "x")
        .header("x-fal-webhook-user-id", "u")
        .header("x-fal-webhook-timestamp", now)
        .header("x-fal-webhook-signature", "ab".repeat(64))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let huge = http
        .post(&url)
        .body(vec![b'a'; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    let not_a_job = http
        .post(format!("{}/push/fal/..%2Fetc", w.receiver))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_job.status().as_u16(), 400);
    // The simulator's own, signed webhook still gets through afterwards.
    let info = app.drive(&rt, "push-forged", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1, "{:?}", info.counts);
}

#[tokio::test]
async fn a_dropped_webhook_is_caught_by_polling() {
    let w = push_app(
        Knobs {
            push_drop_rate: 1.0,
            ..push_knobs()
        },
        fast_poll(),
    )
    .await;
    let app = &w.app;
    let rt = app.runtime();
    enqueue(app, &batch(app, "push-dropped", ProviderName::Fal, 3)).await;
    let info = app
        .drive(&rt, "push-dropped", Duration::from_secs(30))
        .await;
    assert_eq!(info.count(JobState::Succeeded), 3, "{:?}", info.counts);
    let s = wait_push(app, "three dropped", |s| s.dropped >= 3).await;
    assert_eq!((s.dropped, s.sent), (3, 0), "{s:?}");
}

#[tokio::test]
async fn duplicate_webhooks_are_harmless() {
    let w = push_app(
        Knobs {
            push_duplicate_rate: 1.0,
            ..push_knobs()
        },
        hourly(),
    )
    .await;
    let app = &w.app;
    let rt = app.runtime();
    enqueue(app, &batch(app, "push-dup", ProviderName::Fal, 3)).await;
    let info = app.drive(&rt, "push-dup", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 3, "{:?}", info.counts);
    let s = wait_push(app, "both copies answered", |s| {
        s.sent == 6 && s.failed == 0
    })
    .await;
    assert_eq!(s.duplicated, 3, "{s:?}");
    assert_eq!(s.unauthorized, 0, "{s:?}");
    let lines = read_all(&app.results_path("push-dup")).unwrap();
    assert_eq!(lines.len(), 3, "one result per job");
    let fal = app.sim.stats().by_provider["fal"].clone();
    assert_eq!(fal.submissions_total, 3, "{fal:?}");
}

#[tokio::test]
async fn kling_callbacks_need_the_jobs_token() {
    let w = push_app(push_knobs(), hourly()).await;
    let app = &w.app;
    let rt = app.runtime();
    let mut b = batch(app, "push-kling", ProviderName::Kling, 2);
    b.shared.keep_audio = true;
    // The sim's callbacks come in 0.4 s; the forged ones below are sent before.
    app.sim.set_knobs(Knobs {
        push_delay: Duration::from_secs(60),
        ..push_knobs()
    });
    enqueue(app, &b).await;
    submit_all(&rt).await;
    let job = job_id("push-kling", 0);
    let http = reqwest::Client::new();
    let body = r#"{"task_id":"1","task_status":"succeed"}"#;
    let wrong = restyle::push::kling_token(
        &secrecy::SecretString::from(SECRET),
        &app.settings.redis.namespace,
        &job_id("push-kling", 1),
    );
    for path in [
        format!("{job}/{wrong}"),
        job.clone(),
        format!("{job}/{}", "0".repeat(64)),
    ] {
        let r = http
            .post(format!("{}/push/kling/{path}", w.receiver))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }
    assert_eq!(worker::step(&rt).await.unwrap(), Stepped::Empty);
    still_parked_far(app, &job).await;
    let t = metrics_text();
    assert!(
        counter(
            &t,
            "restyle_push_refused_total",
            &["provider=\"kling\"", "wrong_token"]
        ) >= 3
    );
    // The simulator's callbacks carry the right token: both jobs finish.
    app.sim.set_knobs(push_knobs());
    let info = app.drive(&rt, "push-kling", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 2, "{:?}", info.counts);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_receiver_process_shows_no_secret_in_logs_or_pages() {
    let app = TestApp::new(push_knobs()).await;
    let (port, mport) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let settings = push_settings(&app, &base, hourly());
    let log = app.out.path().join("receive.log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_restyle"));
    cmd.current_dir(app.out.path()).env_remove("RUST_LOG");
    settings.apply(&mut cmd);
    let child = cmd
        .args(["receive", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let proc = WorkerProc { child };
    let http = reqwest::Client::new();
    let end = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < end, "receiver did not start");
        poll_interval().await;
    }
    let ns = settings.get("redis.namespace").unwrap().to_string();
    let job = job_id("push-secret", 0);
    let token = restyle::push::kling_token(&secrecy::SecretString::from(SECRET), &ns, &job);
    // The right token with its last digit changed (never equal to it, whatever it ends in).
    let last = if token.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &token[..token.len() - 1]);
    let sent = [
        http.post(format!("{base}/push/kling/{job}/{token}"))
            .body("{}"),
        http.post(format!("{base}/push/kling/{job}/{wrong}"))
            .body("{}"),
        http.post(format!("{base}/push/fal/{job}")).body("{}"),
    ];
    let mut pages = String::new();
    for rb in sent {
        let r = rb.send().await.unwrap();
        pages.push_str(&format!("{} {}\n", r.status(), r.text().await.unwrap()));
    }
    for page in ["metrics", "healthz", "readyz"] {
        let r = http
            .get(format!("http://127.0.0.1:{mport}/{page}"))
            .send()
            .await
            .unwrap();
        pages.push_str(&r.text().await.unwrap());
    }
    let help = cmd_output(&["receive", "--help"]);
    assert!(pages.contains("restyle_push_refused_total"), "{pages}");
    assert!(pages.contains("wrong_token"), "{pages}");
    drop(proc);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("Push receiver listening"), "{logs}");
    for (what, text) in [("logs", &logs), ("pages", &pages), ("help", &help)] {
        assert!(!text.contains(SECRET), "{what} show the secret");
        assert!(!text.contains(&token), "{what} show a token");
        assert!(!text.contains(&token[..16]), "{what} show part of a token");
    }
}

fn cmd_output(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_restyle"))
        .args(args)
        .env("RESTYLE__PUSH__SECRET", SECRET)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Detection delay with push on, measured by the simulator (first status poll that saw
/// COMPLETED minus the completion) over real workers in this process. Prints one JSON
/// line; asserts nothing about speed. Run:
/// `cargo test --release --test it push::measure_detection_delay -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
#[allow(clippy::print_stdout)] // the figures are this test's output
async fn measure_detection_delay() {
    let n = 40 * scale();
    for (name, drop) in [("push", 0.0), ("polling only (webhooks dropped)", 1.0)] {
        let knobs = Knobs {
            push_drop_rate: drop,
            time_scale: 0.1,
            latency_min: Duration::from_secs(200),
            latency_max: Duration::from_secs(240),
            ..push_knobs()
        };
        // fal's default schedule, scaled like the simulator (5 s first, 30 s cap → 0.5 s, 3 s).
        let poll = restyle::config::PollSettings {
            first_delay: Duration::from_millis(500),
            max_interval: Duration::from_secs(3),
            deadline: Duration::from_secs(100),
        };
        let w = push_app(knobs, poll).await;
        let app = &w.app;
        let batch_id = format!("measure-{}", if drop > 0.0 { "poll" } else { "push" });
        enqueue(app, &batch(app, &batch_id, ProviderName::Fal, n)).await;
        let rt = std::sync::Arc::new(app.runtime());
        let stop = CancellationToken::new();
        let run = tokio::spawn(restyle::worker::run(rt, stop.clone()));
        let info = app.wait_finished(&batch_id, Duration::from_secs(120)).await;
        stop.cancel();
        let _ = run.await;
        let mut d = app.sim.push_stats().fal_detection_ms;
        d.sort_unstable();
        let q = |p: f64| {
            d.get(((d.len() as f64 - 1.0) * p).round() as usize)
                .copied()
        };
        println!(
            "{}",
            serde_json::json!({
                "case": name, "jobs": n, "succeeded": info.count(JobState::Succeeded),
                "time_scale": 0.1, "latency_s": "20-24 (200-240 before time_scale)",
                "detection_ms": {"median": q(0.5), "p90": q(0.9), "max": d.last()},
            })
        );
    }
}

#[tokio::test]
async fn a_request_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = push_app(push_knobs(), hourly()).await;
    let addr = w.receiver.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /push/fal/b.00000 HTTP/1.1\r\nHost: x\r\nX-Fal-Webhook-")
        .await
        .unwrap();
    // The receiver serves with a 5 s request timeout: it must close the connection.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection stayed open");
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
}
