//! The providers' own clients are the judge of the simulator: the official Python clients
//! (fal-client, aimlapi-sdk-python; pinned in tests/clients/requirements.txt) run real
//! flows against the simulator, as real processes over real HTTP, through the scripts in
//! tests/clients/, and must come back with the output URL. Nothing in them is patched but
//! the address (fal-client's URL constants: see `point_at_sim` in fal_flow.py).
//!
//! The clients live in a private virtualenv: `RESTYLE_PY_CLIENTS` names an existing one,
//! otherwise tests/clients/setup-venv.sh makes `<target>/py-clients` once (`.ci/run` does
//! it before the tests), under a file lock so parallel tests and binaries do not race.

use crate::helpers::{fast_knobs, API_KEY};
use restyle::sim::{self, Knobs, SimHandle};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The virtualenv's python: `RESTYLE_PY_CLIENTS`, or `<target>/py-clients` made once.
pub(crate) fn python() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = match std::env::var_os("RESTYLE_PY_CLIENTS") {
            Some(dir) => PathBuf::from(dir),
            None => {
                // CARGO_TARGET_TMPDIR is <target>/tmp.
                let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("..");
                let dir = target.join("py-clients");
                let lock_path = target.join("py-clients.lock");
                let lock = std::fs::File::create(&lock_path).expect("venv lock file");
                lock.lock().expect("venv lock");
                let out = std::process::Command::new("bash")
                    .arg(clients_dir().join("setup-venv.sh"))
                    .arg(&dir)
                    .output()
                    .expect("run setup-venv.sh");
                drop(lock);
                assert!(
                    out.status.success(),
                    "setup-venv.sh failed (python3 -m venv and pip must work):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                dir
            }
        };
        let python = dir.join("bin/python");
        assert!(python.exists(), "no virtualenv at {}", dir.display());
        python
    })
    .clone()
}

/// Runs `script args…` with the virtualenv's python and `env`; every stdout line is one
/// JSON object. Fails the test, with the client's stderr, unless it exits 0.
async fn run(script: &str, args: &[&str], env: &[(&str, String)]) -> Vec<Value> {
    let python = tokio::task::spawn_blocking(python).await.expect("venv");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(clients_dir().join(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the client finished within 180 s")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}\nstdout:\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn start(knobs: Knobs) -> SimHandle {
    sim::spawn("127.0.0.1:0".parse().unwrap(), knobs)
        .await
        .expect("simulator starts")
}

fn fal_env(sim: &SimHandle) -> Vec<(&'static str, String)> {
    vec![("SIM", sim.base_url()), ("FAL_KEY", API_KEY.to_string())]
}

fn checks<'a>(lines: &'a [Value], check: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["check"] == check).collect()
}

/// The URL a client returned is the simulator's output of `id`, byte for byte.
async fn assert_output(sim: &SimHandle, url: &str, id: &str) {
    let prefix = format!("{}/sim/files/", sim.base_url());
    assert!(url.starts_with(&prefix) && url.ends_with(".mp4"), "{url}");
    let got = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        got.as_ref(),
        sim.output_of(id)
            .expect("a completed generation")
            .as_slice(),
        "{url}"
    );
}

#[tokio::test]
async fn fal_client_submit_status_result_and_subscribe_on_every_endpoint() {
    let sim = start(fast_knobs()).await;
    let lines = run("fal_flow.py", &["queue"], &fal_env(&sim)).await;
    let queued = checks(&lines, "queue");
    let endpoints: Vec<&str> = queued
        .iter()
        .map(|l| l["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(
        endpoints,
        [
            "fal-ai/kling-video/o1/video-to-video/edit",
            "fal-ai/kling-video/o1/video-to-video/reference",
            "fal-ai/kling-video/o1/standard/video-to-video/edit",
            "fal-ai/kling-video/o1/standard/video-to-video/reference",
        ]
    );
    let subscribed = checks(&lines, "subscribe");
    assert_eq!(subscribed.len(), 2, "{lines:?}");
    for l in queued.iter().chain(&subscribed) {
        let id = l["request_id"].as_str().unwrap();
        assert_output(&sim, l["url"].as_str().unwrap(), id).await;
    }
    let fal = &sim.stats().by_provider["fal"];
    assert_eq!(fal.submissions_total, 6, "{fal:?}");
    assert_eq!(fal.duplicate_submissions, 0, "{fal:?}");
    assert_eq!(fal.validation_errors_total, 0, "{fal:?}");
    // Four handles fetched twice (get, then result by app id), two subscriptions once.
    assert_eq!(fal.results_total, 10, "{fal:?}");
}

#[tokio::test]
async fn fal_client_reads_failed_requests_and_the_no_retry_header() {
    let sim = start(Knobs {
        fail_prompts_containing: Some("FAILME".into()),
        fal_runner_failure_rate: 1.0,
        ..fast_knobs()
    })
    .await;
    let lines = run("fal_flow.py", &["errors"], &fal_env(&sim)).await;
    let model = checks(&lines, "model_error")[0];
    assert_eq!(model["status_error_type"], "content_policy_violation");
    assert_eq!(model["http"], 422);
    assert!(model["message"]
        .as_str()
        .unwrap()
        .contains("Content rejected"));
    let retried = checks(&lines, "retried")[0];
    let id = retried["request_id"].as_str().unwrap();
    assert_output(&sim, retried["url"].as_str().unwrap(), id).await;
    let no_retry = checks(&lines, "no_retry")[0];
    assert_eq!(no_retry["status_error_type"], "runner_disconnected");
    assert!(no_retry["status_error"].is_string());
    assert_eq!(no_retry["http"], 503);
    assert_eq!(no_retry["error_type"], "runner_disconnected");
    let fal = &sim.stats().by_provider["fal"];
    assert_eq!(fal.submissions_total, 3, "{fal:?}");
    // The first two submits had no X-Fal-No-Retry: fal retried each runner failure.
    assert_eq!(fal.runner_retries, 2, "{fal:?}");
}

#[tokio::test]
async fn fal_client_uploads_a_clip_and_a_job_runs_on_its_url() {
    let sim = start(fast_knobs()).await;
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    // A clip inside fal's source limits (the simulator holds uploads to them, as fal does).
    let bytes = std::fs::read(crate::clips::asset_path("ok.mp4")).unwrap();
    std::fs::write(&clip, &bytes).unwrap();
    let path = clip.to_str().unwrap();
    let lines = run("fal_flow.py", &["upload", path], &fal_env(&sim)).await;
    let up = checks(&lines, "uploaded")[0];
    for key in ["cdn_url", "storage_url"] {
        let url = up[key].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/files/", sim.base_url())),
            "{url}"
        );
        let served = reqwest::get(url).await.unwrap().bytes().await.unwrap();
        assert_eq!(served.as_ref(), bytes.as_slice(), "{key}");
    }
    let job = checks(&lines, "upload_job")[0];
    let id = job["request_id"].as_str().unwrap();
    assert_output(&sim, job["url"].as_str().unwrap(), id).await;
    let fal = &sim.stats().by_provider["fal"];
    assert_eq!(
        (fal.uploads_total, fal.submissions_total),
        (2, 1),
        "{fal:?}"
    );
}

#[tokio::test]
async fn aimlapi_sdk_generates_with_polling_edit_and_reference() {
    let sim = start(fast_knobs()).await;
    let env = [
        ("AIML_API_BASE", format!("{}/v1", sim.base_url())),
        ("AIML_API_KEY", API_KEY.to_string()),
    ];
    let lines = run("aimlapi_flow.py", &[], &env).await;
    for check in ["edit", "reference"] {
        let l = checks(&lines, check)[0];
        let id = l["id"].as_str().unwrap();
        assert_output(&sim, l["url"].as_str().unwrap(), id).await;
    }
    let b = checks(&lines, "bytes")[0];
    let want = sim
        .output_of(b["id"].as_str().unwrap())
        .expect("a completed generation");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&want));
    assert_eq!(b["sha256"], sha.as_str());
    let a = &sim.stats().by_provider["aimlapi"];
    assert_eq!(a.submissions_total, 3, "{a:?}");
    assert_eq!(
        a.validation_errors_total, 0,
        "negative_prompt, seed, … accepted"
    );
    // Two checked here, one the SDK made itself (return_bytes).
    assert_eq!(sim.stats().downloads_total, 3);
}
