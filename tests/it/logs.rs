//! Logs for machines: `--log-format json` gives one JSON object per line; every line
//! about a job carries `job_id` and `batch_id`; one INFO line per state change.

use crate::helpers::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_job_and_batch_ids() {
    let app = TestApp::new(fast_knobs()).await;
    let log = app.out.path().join("json.log");
    let f = std::fs::File::create(&log).unwrap();
    let w = WorkerProc {
        child: app
            .cmd()
            .args(["--log-format", "json", "worker", "--concurrency", "4"])
            .env("RUST_LOG", "info")
            .stderr(f)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    };
    app.enqueue("logged", &prompts(3)).await;
    app.wait_finished("logged", Duration::from_secs(30)).await;
    assert!(w.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let mut changes = 0;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let msg = v["message"].as_str().unwrap_or_default();
        if msg == "Job state changed." {
            changes += 1;
            assert_eq!(v["level"], "INFO", "{line}");
        }
        // Any line inside a job's stage names the job and its batch (event or span fields).
        if v.get("span").is_some() || v["job_id"].is_string() {
            let job = v["job_id"].as_str().or(v["span"]["job_id"].as_str());
            let batch = v["batch_id"].as_str().or(v["span"]["batch_id"].as_str());
            assert!(job.is_some_and(|j| j.starts_with("logged.")), "{line}");
            assert_eq!(batch, Some("logged"), "{line}");
        }
        assert!(!line.contains(API_KEY), "secret in a log line");
    }
    // queued → submitting → polling → finishing → succeeded: 4 changes per job.
    assert_eq!(changes, 3 * 4, "{text}");
}
