//! The worker's Prometheus endpoint and health probes, scraped from a real process.

use crate::helpers::*;
use restyle::localredis::{free_port, LocalRedis};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Parses Prometheus text exposition: `name{labels} value` lines (comments skipped).
/// Panics on a malformed line, so the test fails when the format is wrong.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels in {line:?}");
        }
        out.insert(series.to_string(), value);
    }
    out
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_jobs_finish_and_readyz_follows_redis() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = LocalRedis::start(dir.path(), true).unwrap();
    let app = TestApp::with_redis(fast_knobs(), &redis.url()).await;
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let f = std::fs::File::create(app.out.path().join("m.log")).unwrap();
    let w = WorkerProc {
        child: app
            .cmd()
            .args([
                "worker",
                "--concurrency",
                "8",
                "--metrics-listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stderr(f)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    };
    let end = Instant::now() + Duration::from_secs(20);
    while get(&format!("{base}/readyz")).await.0 != 200 {
        assert!(Instant::now() < end, "worker never became ready");
        poll_interval().await;
    }
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);

    let n = 12;
    app.enqueue("metered", &prompts(n)).await;
    app.wait_finished("metered", Duration::from_secs(60)).await;
    let (code, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    let m = parse(&text);
    let ok = m
        .get(r#"restyle_job_transitions_total{state="succeeded"}"#)
        .copied()
        .unwrap_or(0.0);
    assert_eq!(ok, n as f64, "{text}");
    assert!(m
        .keys()
        .any(|k| k.starts_with("restyle_stage_duration_seconds_bucket")));
    assert!(
        m.keys()
            .any(|k| k.starts_with("restyle_upstream_requests_total")
                && k.contains(r#"outcome="ok""#))
    );
    assert!(
        m.keys().all(|k| k.starts_with("restyle_")),
        "every name prefixed"
    );
    assert!(!text.contains("metered."), "no job or batch id in labels");

    redis.stop();
    let end = Instant::now() + Duration::from_secs(20);
    while get(&format!("{base}/readyz")).await.0 != 503 {
        assert!(Instant::now() < end, "readyz stayed ready with Redis down");
        poll_interval().await;
    }
    assert_eq!(
        get(&format!("{base}/healthz")).await.0,
        200,
        "alive while Redis is down"
    );
    redis.restart().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while get(&format!("{base}/readyz")).await.0 != 200 {
        assert!(Instant::now() < end, "readyz did not recover with Redis");
        poll_interval().await;
    }
    assert!(w.terminate().success());
}
