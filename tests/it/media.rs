//! Issue 13, "a 50 MB clip must not take Redis down": a large local video is stored once
//! per batch beside it, read at most once per worker process, and sent upstream without a
//! copy per request. Each test runs on a Redis of its own, so the server-wide counters
//! (`INFO stats`, `INFO memory`) are this test's alone, with the real `restyle enqueue`
//! and `restyle worker` processes against the simulator.
//!
//! Sizes are at CI scale (an 8 MiB clip, 8 prompts); `RESTYLE_TEST_SCALE` multiplies the
//! prompts, and the worker's concurrency with them.

use crate::helpers::*;
use restyle::localredis::LocalRedis;
use restyle::model::ProviderName;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// A clip of 8 MiB and a bit (so no read falls on a chunk boundary).
const VIDEO_BYTES: usize = 8 * MIB + 12_345;

/// One test's world on a Redis of its own.
struct World {
    app: TestApp,
    _redis: LocalRedis,
    _dir: tempfile::TempDir,
}

async fn world(knobs: restyle::sim::Knobs) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = LocalRedis::start(dir.path(), false).expect("private redis-server");
    let app = TestApp::with_redis(knobs, &redis.url()).await;
    World {
        app,
        _redis: redis,
        _dir: dir,
    }
}

/// Writes a clip of `len` bytes ([`crate::clips::padded`]) into `dir`.
fn write_clip(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
    let bytes = crate::clips::padded(len);
    let path = dir.join("clip.mp4");
    std::fs::write(&path, &bytes).expect("write clip");
    (path, bytes)
}

/// `restyle enqueue --video <clip> --prompt …` with this test's settings; asserts exit 0.
fn enqueue_clip(app: &TestApp, provider: ProviderName, batch: &str, clip: &Path, n: usize) {
    let mut cmd = app.cmd();
    cmd.args([
        "enqueue",
        "--batch-id",
        batch,
        "--provider",
        provider.as_str(),
    ])
    .arg("--video")
    .arg(clip);
    for p in prompts(n) {
        cmd.args(["--prompt", &p]);
    }
    let out = cmd.output().expect("run restyle enqueue");
    assert!(
        out.status.success(),
        "enqueue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One `INFO <section>` field, as a number.
async fn info_field(app: &TestApp, section: &str, field: &str) -> u64 {
    let mut c = app.queue.connection();
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut c)
        .await
        .expect("INFO");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
}

/// `MEMORY USAGE` of one key (0 when it does not exist).
async fn memory_usage(app: &TestApp, key: &str) -> u64 {
    let mut c = app.queue.connection();
    let n: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut c)
        .await
        .expect("MEMORY USAGE");
    n.unwrap_or(0)
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} for {pid}"))
}

/// Starts a worker process and waits (deadline 30 s) for its `Worker started.` line.
async fn start_worker(app: &TestApp, concurrency: usize, name: &str) -> WorkerProc {
    let log = app.out.path().join(format!("{name}.log"));
    let w = app.spawn_worker(concurrency, &log);
    let end = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Worker started.")
    {
        assert!(Instant::now() < end, "worker {name} did not start");
        poll_interval().await;
    }
    w
}

#[tokio::test]
async fn a_large_local_clip_is_stored_once_and_read_once_per_worker() {
    let w = world(fast_knobs()).await;
    let app = &w.app;
    let n = 8 * scale();
    let (clip, _) = write_clip(app.out.path(), VIDEO_BYTES);
    enqueue_clip(app, ProviderName::Aimlapi, "big", &clip, n);

    // The batch hash every job's stage, status and watch read stays small.
    let bkey = format!("{}batch:big", app.queue.keys().prefix());
    let hash = memory_usage(app, &bkey).await;
    assert!(hash < 64 * 1024, "batch hash is {hash} bytes");

    let sent_before = info_field(app, "stats", "total_net_output_bytes").await;
    let worker = start_worker(app, n, "w1").await;
    let pid = worker.child.id();
    let rss_start = proc_kib(pid, "VmRSS:");
    let info = app.wait_finished("big", Duration::from_secs(120)).await;
    let hwm = proc_kib(pid, "VmHWM:");
    let sent = info_field(app, "stats", "total_net_output_bytes").await - sent_before;
    drop(worker);
    assert_eq!(info.count(restyle::job::JobState::Succeeded), n as u64);

    let grew = (hwm.saturating_sub(rss_start)) * 1024;
    eprintln!(
        "batch hash {hash} B; Redis sent {sent} B; worker grew {grew} B (from {rss_start} KiB)"
    );
    // Redis sent the clip about once (one worker process), not once per job.
    let clip_len = VIDEO_BYTES as u64;
    assert!(
        sent < clip_len + clip_len / 2,
        "Redis sent {sent} bytes for {n} jobs of a {clip_len}-byte clip"
    );
    // The worker's memory does not grow with concurrency × clip size: the clip, its
    // base64 text once, and a margin.
    assert!(
        grew < 4 * clip_len + 16 * MIB as u64,
        "worker peak grew by {grew} bytes over {rss_start} KiB at concurrency {n}"
    );
    // Each submit carried the clip's data URI and the JSON around it: no more.
    let c = &app.sim.stats().by_provider["aimlapi"];
    assert_eq!(c.submissions_total, n as u64);
    let per_job = c.request_bytes_total / n as u64;
    let b64 = (clip_len).div_ceil(3) * 4;
    assert!(
        (b64..b64 + 2048).contains(&per_job),
        "{per_job} bytes per submit for {b64} bytes of base64"
    );

    // Purged with its batch.
    let mkey = media_keys(app, "big").await;
    assert_eq!(mkey.len(), 1, "one payload stored: {mkey:?}");
    let out = app.cmd().args(["purge", "big"]).output().expect("purge");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(media_keys(app, "big").await.is_empty());
    assert_eq!(memory_usage(app, &bkey).await, 0);
}

/// The batch's stored payloads (and partial ones) in Redis.
async fn media_keys(app: &TestApp, batch: &str) -> Vec<String> {
    use redis::AsyncCommands;
    let mut c = app.queue.connection();
    let prefix = app
        .queue
        .keys()
        .prefix()
        .replace('{', "\\{")
        .replace('}', "\\}");
    c.keys(format!("{prefix}media:{batch}:*"))
        .await
        .expect("KEYS")
}

/// `SETRANGE` calls Redis ran so far (what storing a payload takes).
async fn setranges(app: &TestApp) -> u64 {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut app.queue.connection())
        .await
        .expect("INFO commandstats");
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_setrange:calls="))
        .and_then(|v| v.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_same_clip_is_stored_once_and_another_under_a_taken_id_not_at_all() {
    let w = world(fast_knobs()).await;
    let app = &w.app;
    let (clip, _) = write_clip(app.out.path(), 3 * MIB + 7);
    enqueue_clip(app, ProviderName::Aimlapi, "again", &clip, 2);
    let first = setranges(app).await;
    assert!(first >= 2, "stored in chunks: {first} SETRANGE");
    enqueue_clip(app, ProviderName::Aimlapi, "again", &clip, 2);
    assert_eq!(
        setranges(app).await,
        first,
        "enqueued again: nothing stored"
    );
    assert_eq!(media_keys(app, "again").await.len(), 1);

    // Another clip under the taken id: refused (exit 2), and nothing of it stored.
    let other = app.out.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (clip2, _) = write_clip(&other, 3 * MIB + 8);
    let mut cmd = app.cmd();
    cmd.args(["enqueue", "--batch-id", "again", "--prompt", "p"])
        .arg("--video")
        .arg(&clip2);
    let out = cmd.output().expect("enqueue");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists with different content"),
        "{err}"
    );
    assert_eq!(setranges(app).await, first);
    assert_eq!(media_keys(app, "again").await.len(), 1);
}

/// A spec written before media were stored holds the clip inline: its jobs still run,
/// the clip read from the spec once per process and sent as a data URI.
#[tokio::test]
async fn a_spec_of_an_earlier_version_with_an_inline_clip_still_runs() {
    use base64::Engine;
    let app = TestApp::new(fast_knobs()).await;
    let (_, bytes) = write_clip(app.out.path(), 300_000);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let uri = format!("data:video/mp4;base64,{b64}");
    let spec = serde_json::json!({
        "v": 1, "batch_id": "legacy", "provider": "aimlapi", "model": "edit",
        "video": uri, "image_list": [], "keep_audio": false, "aspect_ratio": null,
        "duration": null, "elements": [], "clip_seconds": null, "max_cost": null,
        "on_done": null,
    });
    let jobs: Vec<(String, String)> = (0..3)
        .map(|i| {
            let p = format!(r#"{{"v":1,"batch_id":"legacy","index":{i},"prompt":"p{i}"}}"#);
            (restyle::job::job_id("legacy", i), p)
        })
        .collect();
    let extras = restyle::queue::BatchExtras::default();
    app.queue
        .enqueue_batch("legacy", &spec.to_string(), "d0", &extras, &jobs)
        .await
        .unwrap();
    let rt = app.runtime();
    let info = app.drive(&rt, "legacy", Duration::from_secs(60)).await;
    assert_eq!(info.count(restyle::job::JobState::Succeeded), 3);
    let c = &app.sim.stats().by_provider["aimlapi"];
    assert_eq!(c.submissions_total, 3);
    let per_job = c.request_bytes_total / 3;
    assert!(
        (uri.len() as u64..uri.len() as u64 + 2048).contains(&per_job),
        "{per_job}"
    );
    assert_eq!(rt.media.batches(), ["legacy"]);
}

/// The test's settings with fal (queue and storage) at the simulator too.
fn with_fal(app: &mut TestApp) {
    app.test = app
        .test
        .clone()
        .provider_at(ProviderName::Fal, &app.sim.base_url(), API_KEY);
    app.settings = app.test.settings();
}

#[tokio::test]
async fn on_fal_a_local_clip_is_uploaded_once_per_batch_and_jobs_send_its_url() {
    use sha2::Digest;
    let mut w = world(fast_knobs()).await;
    with_fal(&mut w.app);
    let app = &w.app;
    let n = 8 * scale();
    let (clip, bytes) = write_clip(app.out.path(), VIDEO_BYTES);
    enqueue_clip(app, ProviderName::Fal, "falbig", &clip, n);

    // One job in this process: the clip is uploaded and its URL recorded with the batch.
    let rt = app.runtime();
    assert_eq!(
        restyle::worker::step(&rt).await.unwrap(),
        restyle::worker::Stepped::Processed
    );
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let url = app.queue.upload_url("falbig", "fal", &sha).await.unwrap();
    let url = url.expect("upload URL recorded");
    let served = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(served.len(), bytes.len());
    assert!(served == bytes, "the stored file is the clip");
    assert_eq!(app.sim.stats().by_provider["fal"].uploads_total, 1);

    // Another process does the rest with the recorded URL: no upload, no read of the clip.
    let sent_before = info_field(app, "stats", "total_net_output_bytes").await;
    let worker = start_worker(app, n, "fal").await;
    let info = app.wait_finished("falbig", Duration::from_secs(120)).await;
    let sent = info_field(app, "stats", "total_net_output_bytes").await - sent_before;
    drop(worker);
    assert_eq!(
        info.count(restyle::job::JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    let c = &app.sim.stats().by_provider["fal"];
    assert_eq!(c.uploads_total, 1);
    assert_eq!(c.submissions_total, n as u64);
    assert!(
        sent < MIB as u64,
        "Redis sent {sent} bytes: the clip was read again"
    );
    // Upstream: the clip once, then a small JSON per job.
    let upstream = c.request_bytes_total;
    let clip_len = VIDEO_BYTES as u64;
    assert!(
        (clip_len..clip_len + 2048 * n as u64).contains(&upstream),
        "{upstream} bytes sent to fal for {n} jobs"
    );
}

#[tokio::test]
async fn racing_uploads_all_use_the_url_recorded_first() {
    let app = TestApp::new(fast_knobs()).await;
    app.enqueue("race", &prompts(1)).await;
    let q = &app.queue;
    let sha = "ab".repeat(32);
    assert_eq!(q.upload_url("race", "fal", &sha).await.unwrap(), None);
    let first = q
        .record_upload("race", "fal", &sha, "https://cdn/1")
        .await
        .unwrap();
    let second = q
        .record_upload("race", "fal", &sha, "https://cdn/2")
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("https://cdn/1"));
    assert_eq!(
        second.as_deref(),
        Some("https://cdn/1"),
        "the loser uses the winner's URL"
    );
    // A batch that is gone is not brought back by a late upload.
    let gone = q
        .record_upload("no-such-batch", "fal", &sha, "https://cdn/3")
        .await
        .unwrap();
    assert_eq!(gone, None);
    assert!(app.queue.batch("no-such-batch").await.unwrap().is_none());
}
