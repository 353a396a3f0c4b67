//! Crash-proofing with real processes: SIGKILLed workers, a Redis restart, SIGTERM.
//! Nothing lost, nothing paid twice.

use crate::helpers::*;
use restyle::job::JobState;
use restyle::localredis::LocalRedis;
use restyle::sim::Knobs;
use restyle::sink::download::sha256_file;
use restyle::sink::jsonl::read_all;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Checks the end state of a batch: every job terminal with one result line, files
/// matching what the simulator served, no duplicate submission. Returns the lines.
async fn assert_nothing_lost(
    app: &TestApp,
    batch: &str,
    n: usize,
) -> Vec<restyle::sink::ResultLine> {
    let info = app.info(batch).await;
    assert!(info.is_finished(), "{:?}", info.counts);
    let lines = read_all(&app.results_path(batch)).unwrap();
    let ids: HashSet<_> = lines.iter().map(|l| l.job_id.clone()).collect();
    assert_eq!(ids.len(), lines.len(), "exactly one result line per job");
    assert_eq!(lines.len(), n, "a result line for every job");
    for l in lines.iter().filter(|l| l.state == "succeeded") {
        let served = app
            .sim
            .output_of(l.upstream_id.as_ref().unwrap())
            .expect("a completed generation");
        let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&served));
        assert_eq!(l.sha256.as_deref(), Some(want.as_str()));
        let f = app.out.path().join(l.file.as_ref().unwrap());
        assert_eq!(sha256_file(&f).unwrap(), want, "file {f:?} matches");
    }
    assert_eq!(
        app.sim.stats().duplicate_submissions,
        0,
        "nothing paid twice"
    );
    lines
}

fn crash_env(cmd: &mut std::process::Command) {
    cmd.env("RESTYLE__QUEUE__LEASE", "2s")
        .env("RESTYLE__QUEUE__RENEW_EVERY", "400ms")
        .env("RESTYLE__WORKER__SHUTDOWN_GRACE", "5s");
}

fn spawn(app: &TestApp, name: &str, concurrency: usize) -> WorkerProc {
    let log = app.out.path().join(format!("{name}.log"));
    let f = std::fs::File::create(log).unwrap();
    let mut cmd = app.cmd();
    crash_env(&mut cmd);
    let child = cmd
        .args(["worker", "--concurrency", &concurrency.to_string()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    WorkerProc { child }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_workers_until_the_batch_ends() {
    let n = 300 * scale();
    let app = TestApp::new(Knobs {
        latency_min: Duration::from_secs(2),
        latency_max: Duration::from_secs(6),
        time_scale: 0.2,
        poll_5xx_rate: 0.1,
        submit_5xx_rate: 0.1,
        ..fast_knobs()
    })
    .await;
    let ps: Vec<String> = (0..n).map(|i| format!("chaos variant {i}")).collect();
    app.enqueue("chaos", &ps).await;
    let mut workers: Vec<WorkerProc> = (0..4).map(|i| spawn(&app, &format!("w{i}"), 16)).collect();
    let mut kills = 0usize;
    let mut next_kill_at = n as u64 / 20;
    let end = Instant::now() + Duration::from_secs(240);
    loop {
        let info = app.info("chaos").await;
        if info.is_finished() {
            break;
        }
        assert!(
            Instant::now() < end,
            "chaos batch did not finish: {:?}",
            info.counts
        );
        // Kill a worker each time another 5% of the batch is done, and start a new one.
        if info.done >= next_kill_at {
            let victim = kills % workers.len();
            let _ = workers[victim].child.kill(); // SIGKILL
            let _ = workers[victim].child.wait();
            workers[victim] = spawn(&app, &format!("w{victim}-{kills}"), 16);
            kills += 1;
            next_kill_at = info.done + n as u64 / 20;
        }
        poll_interval().await;
    }
    drop(workers);
    let lines = assert_nothing_lost(&app, "chaos", n).await;
    let recs = app
        .queue
        .jobs(&lines.iter().map(|l| l.job_id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let redeliveries: u64 = recs
        .iter()
        .map(|r| r.as_ref().expect("readable record").redeliveries)
        .sum();
    let unknown = lines.iter().filter(|l| l.state == "submit_unknown").count();
    let ok = lines.iter().filter(|l| l.state == "succeeded").count();
    let stats = app.sim.stats();
    eprintln!(
        "chaos: jobs={n} kills={kills} redeliveries={redeliveries} succeeded={ok} submit_unknown={unknown} \
         duplicates={} lost=0 submissions={}",
        stats.duplicate_submissions, stats.submissions_total
    );
    assert!(kills >= 5, "the test killed workers ({kills})");
    assert!(stats.submissions_by_client_id_max <= 1);
    // A job is never submitted twice: at most one generation per job.
    assert!(stats.submissions_total <= n as u64);
    // Only a worker killed mid-POST leaves a job unknown; everything else succeeds.
    assert_eq!(ok + unknown, n, "no job failed for any other reason");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_batch_loses_nothing_and_no_worker_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = LocalRedis::start(dir.path(), true).unwrap();
    let app = TestApp::with_redis(
        Knobs {
            latency_min: Duration::from_secs(2),
            latency_max: Duration::from_secs(4),
            time_scale: 0.2,
            ..fast_knobs()
        },
        &redis.url(),
    )
    .await;
    let n = 60;
    app.enqueue("rr", &prompts(n)).await;
    let mut w1 = spawn(&app, "r1", 8);
    let mut w2 = spawn(&app, "r2", 8);
    let end = Instant::now() + Duration::from_secs(60);
    while app.info("rr").await.done < 10 {
        assert!(Instant::now() < end, "batch made no progress");
        poll_interval().await;
    }
    let stopped = Instant::now();
    redis.stop(); // SIGTERM: Redis flushes its AOF
                  // While Redis is down, the workers stay up, retrying.
    let down_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < down_until {
        assert!(
            w1.child.try_wait().unwrap().is_none(),
            "worker 1 died with Redis down"
        );
        assert!(
            w2.child.try_wait().unwrap().is_none(),
            "worker 2 died with Redis down"
        );
        poll_interval().await;
    }
    redis.restart().unwrap();
    let downtime = stopped.elapsed();
    let info = app.wait_finished("rr", Duration::from_secs(120)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    assert!(
        w1.child.try_wait().unwrap().is_none(),
        "no worker restarted"
    );
    assert!(
        w2.child.try_wait().unwrap().is_none(),
        "no worker restarted"
    );
    assert_nothing_lost(&app, "rr", n).await;
    let s = app.sim.stats();
    eprintln!(
        "redis-restart: jobs={n} downtime_ms={} succeeded={} duplicates={} lost=0 workers_restarted=0",
        downtime.as_millis(),
        info.count(JobState::Succeeded),
        s.duplicate_submissions
    );
    assert!(w1.terminate().success());
    assert!(w2.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_within_grace_and_another_worker_finishes() {
    let app = TestApp::new(Knobs {
        latency_min: Duration::from_secs(2),
        latency_max: Duration::from_secs(4),
        time_scale: 0.2,
        ..fast_knobs()
    })
    .await;
    let n = 40;
    app.enqueue("term", &prompts(n)).await;
    let w1 = spawn(&app, "t1", 8);
    let end = Instant::now() + Duration::from_secs(60);
    while app.info("term").await.done < 5 {
        assert!(Instant::now() < end, "no progress");
        poll_interval().await;
    }
    let asked = Instant::now();
    let status = w1.terminate();
    assert!(status.success(), "exit 0 on SIGTERM: {status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(5 + 10),
        "exited within the grace period"
    );
    let info = app.info("term").await;
    assert!(
        !info.is_finished(),
        "the batch was still running at the stop"
    );
    let w2 = spawn(&app, "t2", 8);
    app.wait_finished("term", Duration::from_secs(60)).await;
    let lines = assert_nothing_lost(&app, "term", n).await;
    assert!(lines.iter().all(|l| l.state == "succeeded"));
    drop(w2);
}
