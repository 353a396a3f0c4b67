//! Poison that reaches the queue's readers: a claim that fails every time (the worker
//! backs off, then recovers), a batch whose total is huge or garbage (seen: `report`
//! aborted on a 2.4 GB allocation), and a damaged results file.

use super::*;
use futures::StreamExt;
use redis::AsyncCommands;
use restyle::sink::jsonl::read_all;

/// How long claims are counted while every claim fails.
const WINDOW: Duration = Duration::from_secs(8);
/// The most claims a backing-off worker may send in [`WINDOW`] (one that does not back
/// off sends one per `idle_poll`, 20 ms: hundreds).
const MOST_CLAIMS: usize = 20;

/// The server timestamp (seconds) of a MONITOR line.
fn stamp(line: &str) -> f64 {
    line.split(' ')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0)
}

/// Repeated claim errors back off: the ready list of the wrong type makes every claim
/// fail. The claims the worker sends (seen through MONITOR, by the claim script's hash
/// and the namespace) over a window are bounded; once the list is back, jobs run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_claim_errors_back_off_and_work_resumes_when_they_stop() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let k = w.app.queue.keys();
    let mut c = w.conn();
    let aside = w.key("ready-aside");
    let _: () = c.rename(k.ready(), &aside).await.unwrap();
    let _: () = c.set(k.ready(), "not a list").await.unwrap();

    let client = redis::Client::open(redis_url()).unwrap();
    let mut lines = client
        .get_async_monitor()
        .await
        .unwrap()
        .into_on_message::<String>();
    let sha = restyle::queue::Scripts::new().claim.get_hash().to_string();
    let claim_of_ours = |l: &str| {
        l.contains(&format!("\"EVALSHA\" \"{sha}\"")) && l.contains(&format!("\"{}\"", k.prefix()))
    };
    let marker = format!("{}window-marker", k.prefix());
    let (_worker, log) = w.worker("w");

    let end = Instant::now() + deadline();
    let mut first: Option<f64> = None;
    let mut claims = 0usize;
    loop {
        assert!(
            Instant::now() < end,
            "no full window of claims seen ({claims} so far)\n{}",
            tail(&log)
        );
        let line = match tokio::time::timeout(Duration::from_millis(500), lines.next()).await {
            Ok(Some(l)) => l,
            Ok(None) => panic!("MONITOR ended"),
            Err(_) => {
                // Quiet: a marker of our own brings a line with the server's time now.
                let _: String = redis::cmd("ECHO")
                    .arg(&marker)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                continue;
            }
        };
        let t = stamp(&line);
        if let Some(t0) = first {
            if t >= t0 + WINDOW.as_secs_f64() {
                break;
            }
        }
        if claim_of_ours(&line) {
            first.get_or_insert(t);
            claims += 1;
        }
    }
    drop(lines);
    eprintln!("claims sent in {WINDOW:?} of failures: {claims}");
    assert!(claims >= 2, "the worker keeps trying: {claims} claims");
    assert!(
        claims <= MOST_CLAIMS,
        "{claims} claims in {WINDOW:?} of failures: no backoff\n{}",
        tail(&log)
    );
    // The ready list comes back: the worker claims again and the batch runs.
    let _: () = c.del(k.ready()).await.unwrap();
    let _: () = c.rename(&aside, k.ready()).await.unwrap();
    w.verdict(&log, &ids, &[]).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("Claim failed")),
        "the failures were reported\n{}",
        tail(&log)
    );
}

/// Runs `restyle <args>` with its address space capped (`ulimit -v`), so an allocation
/// sized by a corrupt count fails instead of swapping.
async fn run_capped(w: &World, args: &[&str]) -> std::process::Output {
    const CAP_KIB: u64 = 1024 * 1024;
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {CAP_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_restyle"))
        .args(args)
        .current_dir(w.root())
        .env_remove("RUST_LOG")
        .env("MALLOC_ARENA_MAX", "2");
    w.app.test.apply(&mut cmd);
    tokio::task::spawn_blocking(move || run_bounded(cmd))
        .await
        .unwrap()
}

/// Seen: `restyle report` aborted on a 2.4 GB allocation sized by a corrupt batch total.
/// With `total` = 10^12, then garbage, `report`, `results` (JSONL and CSV) and `status`
/// finish in a capped address space, list the batch's four jobs, and status says the
/// batch record is damaged instead of showing the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_huge_or_garbage_total_is_read_in_bounded_memory() {
    let w = World::new().await;
    w.healthy().await;
    let rt = w.app.runtime();
    w.app.drive(&rt, HEALTHY, deadline()).await;
    let mut c = w.conn();
    for total in ["1000000000000", "lots"] {
        let _: () = c
            .hset(w.app.queue.keys().batch(HEALTHY), "total", total)
            .await
            .unwrap();
        let ok = |args: &[&str], out: &std::process::Output| {
            assert!(
                out.status.success(),
                "total {total}: restyle {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let args = ["report", HEALTHY];
        let page = ok(&args, &run_capped(&w, &args).await);
        let html = std::fs::read_to_string(page.trim()).unwrap();
        assert_eq!(
            html.matches("<article class=\"card ").count(),
            4,
            "total {total}"
        );
        let args = ["results", HEALTHY];
        let jsonl = ok(&args, &run_capped(&w, &args).await);
        assert_eq!(jsonl.lines().count(), 4, "total {total}: {jsonl}");
        let args = ["results", HEALTHY, "--format", "csv"];
        let csv = ok(&args, &run_capped(&w, &args).await);
        assert_eq!(csv.lines().count(), 5, "total {total}: header and 4 rows");
        let args = ["status", HEALTHY];
        let status = ok(&args, &run_capped(&w, &args).await);
        assert!(status.contains("damaged"), "total {total}: {status}");
        assert!(
            !status.contains(&format!("/{total}")),
            "total {total} is not shown as the batch's size: {status}"
        );
        let args = ["status", HEALTHY, "--json"];
        let json = ok(&args, &run_capped(&w, &args).await);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v["damaged"].is_string(), "total {total}: {json}");
    }
    w.assert_nothing_outside();
}

/// A results file (the sink's index of what it wrote) with lines that are not UTF-8, not
/// JSON, far too long, or only look like a line of a job: every job still gets its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_results_file_does_not_stop_or_hide_results() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let path = w.out.join(HEALTHY).join("results.jsonl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut garbage: Vec<u8> = b"\xff\xfe not text\n[1, 2\n".to_vec();
    garbage.extend_from_slice(format!("{{\"job_id\":\"{}\",\"outcome\":99}}\n", ids[1]).as_bytes());
    garbage.extend(std::iter::repeat_n(b'a', 3 << 20));
    garbage.push(b'\n');
    std::fs::write(&path, &garbage).unwrap();
    let (_worker, log) = w.worker("w");
    w.verdict(&log, &ids, &[]).await;
    let lines = read_all(&path).expect("the results file is readable");
    for id in &ids {
        let line = lines.iter().find(|l| &l.job_id == id);
        assert!(
            line.is_some_and(|l| l.state == JobState::Succeeded),
            "{id} has its line: {lines:?}"
        );
    }
}
