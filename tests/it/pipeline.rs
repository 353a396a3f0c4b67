//! The whole pipeline through the real binary: enqueue, two worker processes, results.

use crate::helpers::*;
use restyle::job::JobState;
use restyle::sink::download::sha256_file;
use restyle::sink::jsonl::read_all;
use std::collections::HashSet;
use std::time::Duration;

const SPEC: &str = r#"
batch_id = "pipe20"
model = "edit"
video = "https://media.example.com/clip.mp4"
keep_audio = false
prompts_file = "prompts.txt"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_prompts_through_two_worker_processes() {
    let app = TestApp::new(fast_knobs()).await;
    let dir = app.out.path();
    std::fs::write(dir.join("batch.toml"), SPEC).unwrap();
    std::fs::write(dir.join("prompts.txt"), prompts(20).join("\n")).unwrap();

    let out = app.cmd().args(["enqueue", "batch.toml"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pipe20");

    // Enqueueing the same batch again adds nothing and says so.
    let again = app.cmd().args(["enqueue", "batch.toml"]).output().unwrap();
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "pipe20");
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing added"));
    assert_eq!(app.info("pipe20").await.total, 20);
    let (ready, _, _) = app.queue.depth().await.unwrap();
    assert_eq!(ready, 20, "the second enqueue must not push jobs again");

    let w1 = app.spawn_worker(8, &dir.join("w1.log"));
    let w2 = app.spawn_worker(8, &dir.join("w2.log"));
    let info = app.wait_finished("pipe20", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 20, "{:?}", info.counts);
    assert!(w1.terminate().success(), "worker 1 exits 0 on SIGTERM");
    assert!(w2.terminate().success(), "worker 2 exits 0 on SIGTERM");

    let lines = read_all(&app.results_path("pipe20")).unwrap();
    assert_eq!(lines.len(), 20);
    let ids: HashSet<_> = lines.iter().map(|l| l.job_id.clone()).collect();
    assert_eq!(ids.len(), 20, "one line per job");
    for l in &lines {
        assert_eq!(l.state, "succeeded");
        let file = dir.join(l.file.as_ref().expect("file"));
        let served = app
            .sim
            .output_of(l.upstream_id.as_ref().expect("upstream id"))
            .expect("a completed generation");
        assert_eq!(
            l.sha256.as_deref().unwrap(),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&served))
        );
        assert_eq!(sha256_file(&file).unwrap(), l.sha256.clone().unwrap());
        assert_eq!(l.bytes, Some(served.len() as u64));
    }
    let stats = app.sim.stats();
    assert_eq!(stats.duplicate_submissions, 0);
    assert_eq!(stats.submissions_total, 20);

    let st = app
        .cmd()
        .args(["status", "pipe20", "--json"])
        .output()
        .unwrap();
    assert!(st.status.success());
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["counts"]["succeeded"], 20);
    assert_eq!(v["total"], 20);
    assert_eq!(v["finished"], true);
    let ok_in_jsonl = lines.iter().filter(|l| l.state == "succeeded").count();
    assert_eq!(
        v["counts"]["succeeded"].as_u64().unwrap() as usize,
        ok_in_jsonl
    );
}

#[tokio::test]
async fn status_of_an_unknown_batch_exits_4() {
    let app = TestApp::new(fast_knobs()).await;
    let out = app.cmd().args(["status", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no batch nope"));
}

#[tokio::test]
async fn producer_fails_fast_when_redis_is_down() {
    let app = TestApp::new(fast_knobs()).await;
    let dead_port = restyle::localredis::free_port().unwrap();
    let out = app
        .cmd()
        .env("REDIS_URL", format!("redis://127.0.0.1:{dead_port}"))
        .args([
            "enqueue",
            "--video",
            "https://x.example/v.mp4",
            "--prompt",
            "hello",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach Redis"), "{err}");
}
