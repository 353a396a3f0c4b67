//! Redis outages against real worker processes (issue 11): a Redis down for longer than
//! the lease must not send live workers' jobs to `submit_unknown`, and a SIGTERM while
//! Redis is down must still end the worker within its grace period.

use crate::helpers::*;
use restyle::job::{job_id, JobState};
use restyle::localredis::LocalRedis;
use restyle::model::ProviderName;
use restyle::sim::Knobs;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LEASE: Duration = Duration::from_secs(2);

/// A TCP relay in front of the simulator that holds each chunk a client sends for
/// `delay` before passing it on (answers flow back at once): every provider call takes
/// that long, so stages are caught mid-POST by an outage. Returns the relay's address.
async fn slow_link(to: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(to).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let upstream = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from_client.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown().await;
                };
                let downstream = async {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                    let _ = to_client.shutdown().await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
    addr
}

/// A test world on a Redis of its own (kept in an AOF, so a restart keeps the jobs),
/// whose child workers reach the simulator through a [`slow_link`] and run with a short
/// lease and the given shutdown grace.
async fn outage_app(redis: &LocalRedis, link_delay: Duration, grace: Duration) -> TestApp {
    let knobs = Knobs {
        latency_min: Duration::from_secs(2),
        latency_max: Duration::from_secs(3),
        time_scale: 0.1,
        ..fast_knobs()
    };
    let mut app = TestApp::with_redis(knobs, &redis.url()).await;
    let link = slow_link(app.sim.addr(), link_delay).await;
    app.test = app
        .test
        .clone()
        .provider_at(ProviderName::Aimlapi, &format!("http://{link}"), API_KEY)
        .set("queue.lease", LEASE)
        .set("queue.renew_every", Duration::from_millis(400))
        .set("worker.shutdown_grace", grace);
    app
}

fn spawn(app: &TestApp, name: &str, concurrency: usize) -> WorkerProc {
    app.spawn_worker(concurrency, &app.out.path().join(format!("{name}.log")))
}

/// A worker process that reaches Redis at `redis_url` (a relay) instead.
fn spawn_via(app: &TestApp, name: &str, concurrency: usize, redis_url: &str) -> WorkerProc {
    let log = std::fs::File::create(app.out.path().join(format!("{name}.log"))).unwrap();
    let child = app
        .cmd()
        .env("REDIS_URL", redis_url)
        .args(["worker", "--concurrency", &concurrency.to_string()])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    WorkerProc { child }
}

/// Polls until each of `workers` workers has at least `k` jobs of the batch in
/// `submitting` (their POST under way), as the job records say.
async fn until_submitting(app: &TestApp, batch: &str, n: usize, workers: usize, k: usize) {
    let mut c = app.queue.connection();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let mut by_worker = std::collections::HashMap::<String, usize>::new();
        for i in 0..n {
            let key = format!(
                "{}job:{}",
                app.queue.keys().prefix(),
                job_id(batch, i as u32)
            );
            let (state, worker): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&key)
                .arg("state")
                .arg("worker")
                .query_async(&mut c)
                .await
                .unwrap();
            if let (Some(JobState::Submitting), Some(w)) =
                (state.as_deref().and_then(JobState::parse), worker)
            {
                *by_worker.entry(w).or_default() += 1;
            }
        }
        if by_worker.values().filter(|&&m| m >= k).count() >= workers {
            return;
        }
        if Instant::now() >= end {
            let info = app.info(batch).await;
            panic!(
                "not every worker is mid-POST: {by_worker:?} {:?}",
                info.counts
            );
        }
        poll_interval().await;
    }
}

/// Keeps Redis down for `down`, checking all the while that no worker exits.
async fn outage(redis: &mut LocalRedis, down: Duration, workers: &mut [&mut WorkerProc]) {
    redis.stop(); // SIGTERM: Redis writes its AOF out and exits
    let until = Instant::now() + down;
    while Instant::now() < until {
        for w in workers.iter_mut() {
            let st = w.child.try_wait().unwrap();
            assert!(st.is_none(), "a worker exited with Redis down: {st:?}");
        }
        poll_interval().await;
    }
    redis.restart().unwrap();
}

async fn lease_recoveries(app: &TestApp) -> u64 {
    let mut c = app.queue.connection();
    let n: Option<u64> =
        redis::AsyncCommands::hget(&mut c, app.queue.keys().stats(), "lease_recoveries")
            .await
            .unwrap();
    n.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_longer_than_the_lease_sends_no_live_workers_job_to_submit_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = LocalRedis::start(dir.path(), true).unwrap();
    let app = outage_app(&redis, Duration::from_millis(600), Duration::from_secs(5)).await;
    let n = 24 * scale();
    app.enqueue("down", &prompts(n)).await;
    // Two live workers, one of them further from Redis (a relay adds latency to what it
    // sends): after the outage its renewals land a few hundred milliseconds after the
    // other worker is back, as on a real fleet, where workers reconnect at their own pace.
    let far = slow_link(
        ([127, 0, 0, 1], redis.port()).into(),
        Duration::from_millis(150),
    )
    .await;
    let mut w1 = spawn_via(&app, "d1", 8, &format!("redis://{far}"));
    until_submitting(&app, "down", n, 1, 2).await;
    let mut w2 = spawn(&app, "d2", 8);
    until_submitting(&app, "down", n, 2, 2).await;
    // Longer than the lease: every lease the workers hold has expired when Redis is back.
    outage(&mut redis, LEASE * 5 / 2, &mut [&mut w1, &mut w2]).await;
    let info = app
        .wait_finished("down", Duration::from_secs(60) * scale() as u32)
        .await;
    let stats = app.sim.stats();
    let recovered = lease_recoveries(&app).await;
    eprintln!(
        "outage: jobs={n} counts={:?} lease_recoveries={recovered} submissions={} duplicates={}",
        info.counts, stats.submissions_total, stats.duplicate_submissions
    );
    assert_eq!(
        info.count(JobState::SubmitUnknown),
        0,
        "no live worker's POST was declared unknown: {:?}",
        info.counts
    );
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    assert_eq!(stats.duplicate_submissions, 0, "nothing paid twice");
    assert_eq!(stats.submissions_total, n as u64, "each job paid once");
    assert_eq!(recovered, 0, "no lease of a live worker was swept");
    assert!(w1.terminate().success());
    assert!(w2.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_redis_down_exits_zero_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = LocalRedis::start(dir.path(), true).unwrap();
    let grace = Duration::from_secs(2);
    let app = outage_app(&redis, Duration::from_millis(600), grace).await;
    let n = 16 * scale();
    app.enqueue("stop", &prompts(n)).await;
    let mut w1 = spawn(&app, "s1", 8);
    until_submitting(&app, "stop", n, 1, 2).await;
    redis.stop();
    let asked = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &w1.child.id().to_string()])
        .status();
    // The grace period, then a bounded hand-back (see restyle::shutdown), and slack for
    // a loaded machine.
    let limit = grace + restyle::shutdown::HANDBACK + Duration::from_secs(2);
    let status = loop {
        if let Some(st) = w1.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            asked.elapsed() < limit,
            "worker still running {:?} after SIGTERM with Redis down (grace {grace:?})",
            asked.elapsed()
        );
        poll_interval().await;
    };
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "exit 0 on SIGTERM: {status:?}");
    // What it could not hand back comes back when its leases expire.
    redis.restart().unwrap();
    let w2 = spawn(&app, "s2", 8);
    let info = app
        .wait_finished("stop", Duration::from_secs(60) * scale() as u32)
        .await;
    let stats = app.sim.stats();
    let unknown = info.count(JobState::SubmitUnknown);
    eprintln!(
        "sigterm-redis-down: jobs={n} exit_after_ms={} counts={:?} submissions={} duplicates={}",
        took.as_millis(),
        info.counts,
        stats.submissions_total,
        stats.duplicate_submissions
    );
    assert_eq!(stats.duplicate_submissions, 0, "nothing paid twice");
    assert!(stats.submissions_total <= n as u64, "no job paid twice");
    // A POST answered while Redis was down has no recorded upstream id (the stage was
    // cut off before it could record it): unknown, never re-POSTed. Every other job
    // succeeds.
    assert_eq!(
        info.count(JobState::Succeeded) + unknown,
        n as u64,
        "{:?}",
        info.counts
    );
    drop(w2);
}
