//! Faults beyond kill -9 (issue 11): skewed worker clocks, lost leases, lost Redis
//! writes, outages and operator races. Real worker processes against a real Redis and the
//! simulator; each test asserts nothing was paid twice and every job ended or is held
//! with a reason.

use crate::helpers::*;
use restyle::job::JobState;
use restyle::sim::Knobs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `restyle worker` under `faketime` (Debian's libfaketime): its wall clock is `offset`
/// (e.g. `+60s`) away from every other process's, its monotonic clock runs true.
fn skewed_worker(app: &TestApp, name: &str, offset: &str) -> WorkerProc {
    let base = app.cmd();
    let mut cmd = Command::new("faketime");
    cmd.arg("-f").arg(offset).arg(base.get_program());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Some(dir) = base.get_current_dir() {
        cmd.current_dir(dir);
    }
    let log = std::fs::File::create(app.out.path().join(format!("{name}.log"))).unwrap();
    let child = cmd
        .args(["worker", "--concurrency", "16"])
        .env("RESTYLE__QUEUE__LEASE", "2s")
        .env("RESTYLE__QUEUE__RENEW_EVERY", "400ms")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("faketime runs (apt-get install faketime)");
    WorkerProc { child }
}

/// Item 3: one worker's wall clock a minute fast, another's a minute slow. Leases, parks,
/// slots and deadlines all use the Redis server's clock, so neither sweeps the other's
/// live leases nor times jobs out early: every job succeeds, each paid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_skewed_clocks_agree_on_leases_and_deadlines() {
    let n = 60 * scale();
    let app = TestApp::new(Knobs {
        latency_min: Duration::from_secs(3),
        latency_max: Duration::from_secs(6),
        time_scale: 0.2,
        ..fast_knobs()
    })
    .await;
    app.enqueue("skew", &prompts(n)).await;
    let _fast = skewed_worker(&app, "fast", "+60s");
    let _slow = skewed_worker(&app, "slow", "-60s");
    let info = app.wait_finished("skew", Duration::from_secs(120)).await;
    let stats = app.sim.stats();
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    assert_eq!(stats.duplicate_submissions, 0, "nothing paid twice");
    assert_eq!(stats.submissions_total, n as u64);
}

/// Item 5: the last wait ends at the deadline; the job is polled once more there, and a
/// generation that completed in time is kept, not thrown away as `timed_out`.
#[tokio::test]
async fn a_generation_done_before_the_deadline_is_fetched_at_the_deadline() {
    let app = TestApp::new(Knobs {
        latency_min: Duration::from_secs(14),
        latency_max: Duration::from_secs(18),
        time_scale: 0.1,
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    // One poll before the generation is done; the next wait runs into the deadline.
    rt.settings.set_poll(restyle::config::PollSettings {
        first_delay: Duration::from_millis(1200),
        max_interval: Duration::from_secs(10),
        deadline: Duration::from_millis(2000),
    });
    let n = 20 * scale();
    app.enqueue("edge", &prompts(n)).await;
    let info = app.drive(&rt, "edge", Duration::from_secs(30)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    assert_eq!(app.sim.stats().submissions_total, n as u64);
}

/// `kill -STOP` / `kill -CONT` a process.
fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig}");
}

fn short_lease_worker(app: &TestApp, name: &str, concurrency: usize) -> WorkerProc {
    let log = std::fs::File::create(app.out.path().join(format!("{name}.log"))).unwrap();
    let child = app
        .cmd()
        .args(["worker", "--concurrency", &concurrency.to_string()])
        .env("RESTYLE__QUEUE__LEASE", "2s")
        .env("RESTYLE__QUEUE__RENEW_EVERY", "400ms")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    WorkerProc { child }
}

/// Item 2: a worker paused (SIGSTOP) with its POSTs in flight loses every lease; the jobs
/// are given up as `submit_unknown` by another worker. When it resumes and the answers
/// arrive, the upstream ids are recorded anyway (fenced by the submit, not the lease):
/// the generations that were paid for are polled and kept, none is bought again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_still_records_the_ids_of_its_posts() {
    let n = 16 * scale();
    let app = TestApp::new(Knobs {
        submit_response_delay: Duration::from_millis(1500),
        ..fast_knobs()
    })
    .await;
    app.enqueue("paused", &prompts(n)).await;
    // Every POST in flight at once when the worker is paused.
    let a = short_lease_worker(&app, "a", n);
    let end = Instant::now() + Duration::from_secs(15);
    while app.sim.stats().submissions_total < n as u64 {
        assert!(Instant::now() < end, "worker a never submitted everything");
        poll_interval().await;
    }
    signal(&a.child, "-STOP");
    // Another worker sweeps the lapsed leases and, with no lookup on aimlapi, holds the
    // jobs as submit_unknown.
    let _b = short_lease_worker(&app, "b", 16);
    let info = app.wait_finished("paused", Duration::from_secs(30)).await;
    assert_eq!(
        info.count(JobState::SubmitUnknown),
        n as u64,
        "{:?}",
        info.counts
    );
    signal(&a.child, "-CONT");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let info = app.info("paused").await;
        if info.count(JobState::Succeeded) == n as u64 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the paid generations were not kept: {:?}",
            info.counts
        );
        poll_interval().await;
    }
    let stats = app.sim.stats();
    assert_eq!(stats.submissions_total, n as u64, "nothing bought twice");
    assert_eq!(stats.duplicate_submissions, 0);
    drop(a);
}

/// Item 7: `cancel` while the POSTs are out. The generations exist and are paid for, so
/// the cancelled records keep their ids and their budget reservations, `cancel` says they
/// were being submitted, and `retry --state cancelled` polls those generations instead of
/// buying five more — the 5 USD budget is never passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_racing_submit_keeps_ids_and_budget() {
    let n = 5;
    let app = TestApp::new(Knobs {
        submit_response_delay: Duration::from_millis(1500),
        ..fast_knobs()
    })
    .await;
    let mut b = app.batch("race", &prompts(n));
    b.shared.clip_seconds = Some(10.0);
    b.shared.max_cost = restyle::money::Usd::parse("5");
    restyle::producer::enqueue(&app.queue, &b).await.unwrap();
    // USD 0.1 per second of a 10 s clip: 1 USD a job, the budget exactly five.
    let priced = |c: &mut Command| {
        c.env("RESTYLE__PROVIDERS__AIMLAPI__PRICE_PER_SECOND__EDIT", "0.1");
    };
    let log = std::fs::File::create(app.out.path().join("w.log")).unwrap();
    let mut cmd = app.cmd();
    priced(&mut cmd);
    let _w = WorkerProc {
        child: cmd
            .args(["worker", "--concurrency", "8"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    };
    let end = Instant::now() + Duration::from_secs(15);
    while app.sim.stats().submissions_total < n as u64 {
        assert!(
            Instant::now() < end,
            "the worker never submitted everything"
        );
        poll_interval().await;
    }
    let out = app.cmd().args(["cancel", "race"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.contains("5 jobs were being submitted"), "{said}");
    // The answers arrive: every cancelled record gets its generation's id.
    let ids: Vec<String> = (0..n as u32)
        .map(|i| restyle::job::job_id("race", i))
        .collect();
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let recs = app.queue.jobs(&ids).await.unwrap();
        if recs.iter().flatten().all(|r| r.upstream_id.is_some()) {
            break;
        }
        assert!(
            Instant::now() < end,
            "ids of the cancelled POSTs never recorded"
        );
        poll_interval().await;
    }
    let info = app.info("race").await;
    assert_eq!(
        info.count(JobState::Cancelled),
        n as u64,
        "{:?}",
        info.counts
    );
    assert_eq!(
        info.cost_committed,
        restyle::money::Usd::parse("5").unwrap()
    );
    let out = app
        .cmd()
        .args(["retry", "race", "--state", "cancelled"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let info = app.wait_finished("race", Duration::from_secs(30)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    assert_eq!(
        app.sim.stats().submissions_total,
        n as u64,
        "nothing bought twice"
    );
    assert!(info.cost_committed <= restyle::money::Usd::parse("5").unwrap());
}

/// Item 15: a replay was recognised by the record's `last_tx` alone, so a retried
/// transition that keeps the lease (a `submitting` mark whose reply was lost) answered ok
/// to a worker whose lease had lapsed and been taken since. It must say the lease is lost
/// and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_lease_keeping_transition_after_the_lease_changed_hands_is_lost() {
    use restyle::job::{After, Transition};
    use restyle::queue::{Queue, RetryMode, Transitioned};
    let app = TestApp::new(fast_knobs()).await;
    let settings = app
        .test
        .clone()
        .set("queue.lease", Duration::from_millis(300))
        .set("queue.renew_every", Duration::from_millis(100))
        .settings();
    let q = Queue::connect(&settings.redis, &settings.queue, RetryMode::Persistent)
        .await
        .unwrap();
    app.enqueue("replay", &prompts(1)).await;
    let claim = q.claim("w1", 1).await.unwrap().remove(0);
    let nonce = format!("{}/1", claim.token);
    let mark = Transition::to(JobState::Submitting, After::Keep);
    let first = q.apply(claim.owner(), &nonce, &mark, None).await.unwrap();
    assert!(matches!(first, Transitioned::Ok { .. }), "{first:?}");
    // The lease lapses; a sweep takes the job from this worker.
    let end = Instant::now() + Duration::from_secs(10);
    while q.sweep().await.unwrap() == 0 {
        assert!(Instant::now() < end, "the lease was never swept");
        poll_interval().await;
    }
    let swept = app.record(&claim.job_id).await;
    let replay = q.apply(claim.owner(), &nonce, &mark, None).await.unwrap();
    assert!(
        matches!(replay, Transitioned::Lost { .. }),
        "a replay after the lease changed hands: {replay:?}"
    );
    let after = app.record(&claim.job_id).await;
    assert_eq!(after.state, swept.state, "the replay changed nothing");
    // The job is another worker's to take, not held by the old lease again.
    let next = q.claim("w2", 1).await.unwrap();
    assert_eq!(next.len(), 1, "the swept job is claimable");
    assert_eq!(next[0].job_id, claim.job_id);
    assert_ne!(next[0].token, claim.token);
}
