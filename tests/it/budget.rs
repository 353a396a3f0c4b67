//! Cost and budget, and the batch-done announcement: one per completion (one idempotency
//! key), even with workers SIGKILLed around the batch's last job.

use crate::helpers::*;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use restyle::job::JobState;
use restyle::model::{ModelKind, OnDone};
use restyle::money::Usd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test]
async fn budget_for_three_of_ten_submits_three_and_waits_for_more() {
    let app = TestApp::new(fast_knobs()).await;
    let mut rt = app.runtime();
    let prices = &mut rt
        .settings
        .providers
        .get_mut(&restyle::model::ProviderName::Aimlapi)
        .unwrap()
        .prices;
    prices.edit = Usd::parse("0.1"); // USD per second; a 10 s clip → 1.00 per job
    let mut b = app.batch("budget", &prompts(10));
    b.shared.model = ModelKind::Edit;
    b.shared.clip_seconds = Some(10.0);
    b.shared.max_cost = Usd::parse("3");
    restyle::producer::enqueue(&app.queue, &b).await.unwrap();

    let end = Instant::now() + Duration::from_secs(30);
    loop {
        restyle::worker::step(&rt).await.unwrap();
        let info = app.info("budget").await;
        let waiting = app.queue.budget_waiting("budget").await.unwrap();
        if info.count(JobState::Succeeded) == 3 && waiting == 7 {
            break;
        }
        assert!(
            Instant::now() < end,
            "{:?}, {waiting} waiting for budget",
            info.counts
        );
    }
    assert_eq!(
        app.sim.stats().submissions_total,
        3,
        "no submission passes the budget"
    );
    let info = app.info("budget").await;
    assert_eq!(info.count(JobState::Queued), 7);
    assert!(
        info.cost_committed == Usd::parse("3").unwrap(),
        "{}",
        info.cost_committed
    );
    let rec = app
        .queue
        .job(&restyle::model::job_id("budget", 9))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rec.wait_reason.as_deref(), Some("budget"));

    let out = app
        .cmd()
        .args(["budget", "budget", "--max", "10"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = app.drive(&rt, "budget", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 10, "{:?}", info.counts);
    assert_eq!(app.sim.stats().submissions_total, 10);
    let lines = restyle::sink::jsonl::read_all(&app.results_path("budget")).unwrap();
    assert!(lines.iter().all(|l| l.estimated_cost == Usd::parse("1")));
}

type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Default::default();
    async fn hook(State(got): State<Received>, headers: HeaderMap, body: String) -> &'static str {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let v = serde_json::from_str(&body).unwrap_or_default();
        got.lock().unwrap().push((key, v));
        "ok"
    }
    let app = axum::Router::new()
        .route("/done", post(hook))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/done"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_done_webhook_arrives_once_despite_kill_9_around_the_last_job() {
    let app = TestApp::new(fast_knobs()).await;
    let (url, got) = receiver().await;
    let n = 30;
    let mut b = app.batch("hooked", &prompts(n));
    // The batch names the hook; the workers' settings say where it posts.
    b.shared.on_done = Some(OnDone::Hook("hooked".into()));
    restyle::producer::enqueue(&app.queue, &b).await.unwrap();
    let spawn = |name: &str| {
        let f = std::fs::File::create(app.out.path().join(format!("{name}.log"))).unwrap();
        let mut cmd = app.cmd();
        // The receiver is on loopback: the egress policy allows its port only.
        let receiver = url.trim_start_matches("http://").trim_end_matches("/done");
        cmd.env("RESTYLE__EGRESS__ALLOW", receiver)
            .env("RESTYLE__HOOKS__HOOKED__WEBHOOK", &url)
            .env("RESTYLE__QUEUE__LEASE", "2s")
            .env("RESTYLE__QUEUE__RENEW_EVERY", "400ms");
        WorkerProc {
            child: cmd
                .args(["worker", "--concurrency", "8"])
                .stderr(f)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        }
    };
    let mut w1 = spawn("h1");
    let mut w2 = spawn("h2");
    let end = Instant::now() + Duration::from_secs(60);
    while app.info("hooked").await.done < n as u64 - 3 {
        assert!(Instant::now() < end, "no progress");
        poll_interval().await;
    }
    // Kill both around the last jobs; fresh workers finish the batch.
    let _ = w1.child.kill();
    let _ = w1.child.wait();
    w1 = spawn("h3");
    let _ = w2.child.kill();
    let _ = w2.child.wait();
    w2 = spawn("h4");
    let info = app.wait_finished("hooked", Duration::from_secs(60)).await;
    assert_eq!(info.completions, 1);
    // The announcement job ends succeeded: after that nothing can send again.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let rec = app.queue.job("done:hooked:1").await.unwrap();
        if rec
            .as_ref()
            .is_some_and(|r| r.as_ref().is_ok_and(|r| r.state == "succeeded"))
        {
            break;
        }
        assert!(Instant::now() < end, "announcement not delivered: {rec:?}");
        poll_interval().await;
    }
    drop((w1, w2));
    let got = got.lock().unwrap().clone();
    // Delivery is at-least-once (a worker killed between the POST and recording it sends
    // again); every delivery carries the same idempotency key, so the receiver acts once.
    let keys: std::collections::BTreeSet<_> = got.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys.len(), 1, "one completion announced: {got:?}");
    assert!(!got.is_empty() && got.len() <= 2, "{got:?}");
    let (key, summary) = &got[0];
    assert_eq!(key, "done:hooked:1");
    assert_eq!(summary["batch_id"], "hooked");
    assert_eq!(summary["total"], n as u64);
    assert_eq!(summary["counts"]["succeeded"], n as u64);
}
