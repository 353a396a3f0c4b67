//! Secrets never leak: the API key and a Redis password appear in no log line, record,
//! result or error, whatever happens (success, upstream failure, 401).

use crate::helpers::*;
use redis::AsyncCommands;
use restyle::sim::Knobs;
use std::time::{Duration, Instant};

async fn dump_namespace(app: &TestApp) -> String {
    let mut c = app.queue.connection();
    let pattern = format!(
        "{}*",
        app.queue
            .keys()
            .prefix()
            .replace('{', "\\{")
            .replace('}', "\\}")
    );
    let keys: Vec<String> = c.keys(pattern).await.unwrap();
    assert!(!keys.is_empty());
    let mut all = String::new();
    for k in keys {
        let t: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        let v: Vec<String> = match t.as_str() {
            "hash" => c.hgetall(&k).await.unwrap(),
            "list" => c.lrange(&k, 0, -1).await.unwrap(),
            "zset" => c.zrange(&k, 0, -1).await.unwrap(),
            _ => vec![],
        };
        all.push_str(&k);
        all.push_str(&v.join("\n"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_appears_in_no_log_record_result_or_error() {
    let app = TestApp::new(Knobs {
        fail_prompts_containing: Some("FAILME".into()),
        ..fast_knobs()
    })
    .await;
    let log = app.out.path().join("worker.log");
    let w = app.spawn_worker(4, &log);
    let ps = vec!["fine".to_string(), "FAILME now".to_string()];
    app.enqueue("sec1", &ps).await;
    app.wait_finished("sec1", Duration::from_secs(30)).await;

    // Now the provider rejects our key: a 401 pauses the provider, with its message.
    let mut k = app.sim.knobs();
    k.api_keys = vec!["some-other-key".into()];
    app.sim.set_knobs(k);
    app.enqueue("sec2", &prompts(1)).await;
    let end = Instant::now() + Duration::from_secs(30);
    while app.queue.provider_pause("aimlapi").await.unwrap().is_none() {
        assert!(Instant::now() < end, "no pause recorded after a 401");
        poll_interval().await;
    }
    assert!(w.terminate().success());

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("Submitted."), "the worker logged its work");
    assert!(logs.contains("401"), "the 401 was logged");
    assert!(!logs.contains(API_KEY), "API key in worker logs");
    let records = dump_namespace(&app).await;
    assert!(records.contains("Content rejected"), "records hold errors");
    assert!(!records.contains(API_KEY), "API key in Redis records");
    let results = std::fs::read_to_string(app.results_path("sec1")).unwrap();
    assert!(!results.contains(API_KEY), "API key in results");
    let st = app
        .cmd()
        .args(["status", "sec2", "--json"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&st.stdout).to_string() + &String::from_utf8_lossy(&st.stderr);
    assert!(
        text.contains("PAUSED") || text.contains("paused_providers"),
        "{text}"
    );
    assert!(!text.contains(API_KEY), "API key in status output");
}

#[tokio::test]
async fn redis_password_is_redacted_in_errors() {
    let app = TestApp::new(fast_knobs()).await;
    let port = restyle::localredis::free_port().unwrap();
    let out = app
        .cmd()
        .env(
            "REDIS_URL",
            format!("redis://ops:Pa55w0rd-zebra@127.0.0.1:{port}"),
        )
        .args(["status", "whatever"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains("Pa55w0rd-zebra"), "password leaked: {err}");
}

/// `restyle worker` with a metrics listener and extra variables, logging to `log`;
/// returns it and the listener's base URL.
fn worker_with(app: &TestApp, log: &std::path::Path, env: &[(&str, &str)]) -> (WorkerProc, String) {
    let port = restyle::localredis::free_port().unwrap();
    let child = app
        .cmd()
        .args(["worker", "--concurrency", "4"])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    (WorkerProc { child }, format!("http://127.0.0.1:{port}"))
}

/// `/readyz` once it answers 200: its body.
async fn ready_body(base: &str) -> String {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status().as_u16() == 200 {
                return r.text().await.unwrap();
            }
        }
        assert!(Instant::now() < end, "{base}/readyz never ready");
        poll_interval().await;
    }
}

/// A worker without a provider's key has that provider disabled, and says so (log,
/// `/readyz`, `check-config`). A job for it waits queued with the reason on its record:
/// no fleet-wide pause (which once stopped that provider for every worker, keyed or not),
/// no attempt used, nothing sent. A worker that has the key then runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_a_key_is_disabled_on_that_worker_not_paused_for_the_fleet() {
    let mut app = TestApp::new(fast_knobs()).await;
    app.test = app
        .test
        .clone()
        .set("providers.fal.base_url", app.sim.base_url().as_str());
    let log_a = app.out.path().join("worker-a.log");
    let (a, base_a) = worker_with(&app, &log_a, &[]);
    let ready = ready_body(&base_a).await;

    let mut fal = app.batch("nokey-fal", &prompts(1));
    fal.shared.provider = restyle::model::ProviderName::Fal;
    restyle::producer::enqueue(&app.queue, &fal).await.unwrap();
    app.enqueue("nokey-aiml", &prompts(1)).await;
    app.wait_finished("nokey-aiml", Duration::from_secs(30))
        .await;
    let id = restyle::model::job_id("nokey-fal", 0);
    let end = Instant::now() + Duration::from_secs(20);
    let rec = loop {
        let rec = app.queue.job(&id).await.unwrap().unwrap().unwrap();
        if rec.error.as_deref().is_some_and(|e| !e.is_empty()) {
            break rec;
        }
        assert!(
            Instant::now() < end,
            "the fal job never said why it waits: {rec:?}"
        );
        poll_interval().await;
    };
    assert!(
        app.queue.provider_pause("fal").await.unwrap().is_none(),
        "a missing key paused fal for the whole fleet: {:?}",
        rec.error
    );
    let why = rec.error.clone().unwrap();
    assert_eq!(rec.state, restyle::job::JobState::Queued, "{why}");
    assert_eq!(rec.attempts, 0, "{why}");
    assert!(why.contains("FAL_KEY") && why.contains("waiting"), "{why}");
    assert_eq!(
        app.sim
            .stats()
            .by_provider
            .get("fal")
            .map_or(0, |c| c.submissions_total),
        0
    );

    assert!(
        ready.contains("provider fal: disabled") && ready.contains("FAL_KEY"),
        "{ready}"
    );
    assert!(ready.contains("provider aimlapi: enabled"), "{ready}");
    let log = std::fs::read_to_string(&log_a).unwrap();
    assert!(log.contains("disabled") && log.contains("FAL_KEY"), "{log}");
    let cc = app.cmd().arg("check-config").output().unwrap();
    let err = String::from_utf8_lossy(&cc.stderr);
    assert_eq!(cc.status.code(), Some(0), "{err}");
    assert!(
        err.contains("provider fal: disabled") && err.contains("FAL_KEY"),
        "{err}"
    );

    // A worker with the key takes the job the next time it falls due.
    let log_b = app.out.path().join("worker-b.log");
    let (b, _) = worker_with(&app, &log_b, &[("FAL_KEY", API_KEY)]);
    let info = app
        .wait_finished("nokey-fal", Duration::from_secs(30))
        .await;
    assert_eq!(
        info.count(restyle::job::JobState::Succeeded),
        1,
        "{:?}",
        info.counts
    );
    assert!(app.queue.provider_pause("fal").await.unwrap().is_none());
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}
