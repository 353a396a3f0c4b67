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
