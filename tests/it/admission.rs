//! Fleet-wide admission with real worker processes: one request rate and one in-flight
//! cap for all workers together, 429 cool-downs, account pauses, and a negative control.

use crate::helpers::*;
use restyle::job::JobState;
use restyle::sim::{Knobs, RequestKind};
use std::process::Command;
use std::time::{Duration, Instant};

/// The fleet's limit, set a fifth below the provider's as an operator would: a request the
/// limiter admitted can still reach the provider late (a loaded machine delays it by a
/// scheduler slice), and the margin lets the provider's bucket refill before a bunch.
const RATE: u64 = 16;
const BURST: u64 = 2;
/// The provider's own limit and bucket.
const PROVIDER_RATE: u64 = 20;
const PROVIDER_BURST: u32 = 4;
const CAP: u64 = 10;

fn limited(app: &TestApp, cmd: &mut Command, global: bool) {
    let _ = app;
    cmd.env("RESTYLE__PROVIDERS__AIMLAPI__RATE_LIMIT", RATE.to_string())
        .env("RESTYLE__PROVIDERS__AIMLAPI__RATE_BURST", BURST.to_string())
        .env(
            "RESTYLE__PROVIDERS__AIMLAPI__MAX_IN_FLIGHT",
            CAP.to_string(),
        )
        .env(
            "RESTYLE__PROVIDERS__AIMLAPI__GLOBAL_LIMITER",
            global.to_string(),
        )
        .env("RESTYLE__POLL__FIRST_DELAY", "150ms")
        .env("RESTYLE__POLL__MAX_INTERVAL", "300ms");
}

fn spawn_limited(app: &TestApp, name: &str, global: bool) -> WorkerProc {
    let f = std::fs::File::create(app.out.path().join(format!("{name}.log"))).unwrap();
    let mut cmd = app.cmd();
    limited(app, &mut cmd, global);
    let child = cmd
        .args(["worker", "--concurrency", "16"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    WorkerProc { child }
}

fn provider_limited_knobs() -> Knobs {
    Knobs {
        latency_min: Duration::from_secs(3),
        latency_max: Duration::from_secs(5),
        time_scale: 0.1,
        rate_limit: Some(PROVIDER_RATE as f64),
        rate_burst: Some(PROVIDER_BURST),
        max_in_flight: Some(CAP as u32),
        ..fast_knobs()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_share_one_rate_and_one_cap() {
    // Generations long enough that the cap binds as well as the rate.
    let app = TestApp::new(Knobs {
        latency_min: Duration::from_secs(8),
        latency_max: Duration::from_secs(12),
        ..provider_limited_knobs()
    })
    .await;
    let n = 200;
    app.enqueue("fleet", &prompts(n)).await;
    let workers: Vec<_> = (0..4)
        .map(|i| spawn_limited(&app, &format!("g{i}"), true))
        .collect();
    // What `status` shows as the fleet's req/s, watched while the batch runs.
    let (mut shown, end) = (Vec::new(), Instant::now() + Duration::from_secs(240));
    let info = loop {
        let info = app.info("fleet").await;
        if info.is_finished() {
            break info;
        }
        assert!(Instant::now() < end, "not finished: {:?}", info.counts);
        shown.push(
            app.queue
                .provider_view("aimlapi")
                .await
                .unwrap()
                .rate_last_second,
        );
        poll_interval().await;
    };
    drop(workers);
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    let most = shown.iter().copied().max().unwrap_or(0);
    assert!(
        most > 0 && most <= PROVIDER_RATE,
        "the fleet's req/s as shown peaked at {most} (limit {RATE} + {BURST})"
    );
    let s = app.sim.stats();
    let worst = s.requests_per_second.values().copied().max().unwrap_or(0);
    eprintln!(
        "fleet: jobs={n} requests={} 429s={} peak_in_flight={} worst_second={worst}",
        s.requests_per_second.values().sum::<u64>(),
        s.rate_limited_total,
        s.peak_in_flight
    );
    assert_eq!(s.rate_limited_total, 0, "the provider never had to say 429");
    assert!(
        s.peak_in_flight <= CAP,
        "peak in flight {} > {CAP}",
        s.peak_in_flight
    );
    assert!(
        worst <= PROVIDER_RATE,
        "a second carried {worst} requests > the provider's {PROVIDER_RATE} (fleet: {RATE} + {BURST})"
    );
    assert_eq!(s.duplicate_submissions, 0);
    let v = app.queue.provider_view("aimlapi").await.unwrap();
    assert_eq!(v.in_flight, 0, "every slot was given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_local_limiters_alone_draw_429s() {
    let app = TestApp::new(provider_limited_knobs()).await;
    app.enqueue("local", &prompts(200)).await;
    let workers: Vec<_> = (0..4)
        .map(|i| spawn_limited(&app, &format!("l{i}"), false))
        .collect();
    let end = Instant::now() + Duration::from_secs(60);
    while app.sim.stats().rate_limited_total == 0 {
        assert!(
            Instant::now() < end,
            "four local limiters of {RATE}/s never exceeded the provider's {PROVIDER_RATE}/s"
        );
        poll_interval().await;
    }
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_gives_its_slots_back() {
    let app = TestApp::new(provider_limited_knobs()).await;
    let n = 60;
    app.enqueue("slots", &prompts(n)).await;
    let mut w1 = spawn_limited(&app, "s1", true);
    let end = Instant::now() + Duration::from_secs(30);
    while app.queue.provider_view("aimlapi").await.unwrap().in_flight < CAP {
        assert!(Instant::now() < end, "slots never filled");
        poll_interval().await;
    }
    let _ = w1.child.kill(); // SIGKILL while holding every slot
    let _ = w1.child.wait();
    let w2 = spawn_limited(&app, "s2", true);
    let info = app.wait_finished("slots", Duration::from_secs(120)).await;
    drop(w2);
    let unknown = info.count(JobState::SubmitUnknown);
    assert_eq!(
        info.count(JobState::Succeeded) + unknown,
        n as u64,
        "{:?}",
        info.counts
    );
    let s = app.sim.stats();
    assert!(s.peak_in_flight <= CAP);
    assert_eq!(s.rate_limited_total, 0);
    assert_eq!(
        app.queue.provider_view("aimlapi").await.unwrap().in_flight,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_with_retry_after_pauses_the_whole_fleet() {
    let app = TestApp::new(Knobs {
        submit_429_rate: 1.0,
        poll_429_rate: 1.0,
        retry_after_secs: Some(2),
        ..fast_knobs()
    })
    .await;
    app.enqueue("storm", &prompts(20)).await;
    let w1 = app.spawn_worker(8, &app.out.path().join("st1.log"));
    let w2 = app.spawn_worker(8, &app.out.path().join("st2.log"));
    let end = Instant::now() + Duration::from_secs(30);
    let t0 = loop {
        if let Some(first) = app.sim.requests().iter().find(|r| r.status == 429) {
            break first.at_ms;
        }
        assert!(Instant::now() < end, "no 429 was served");
        poll_interval().await;
    };
    // The storm is over for the provider; the fleet must still wait out Retry-After.
    let mut k = app.sim.knobs();
    k.submit_429_rate = 0.0;
    k.poll_429_rate = 0.0;
    app.sim.set_knobs(k);
    app.wait_finished("storm", Duration::from_secs(60)).await;
    drop((w1, w2));
    let log = app.sim.requests();
    // Requests already on the wire when the first 429 was served may land just after it.
    let early: Vec<_> = log
        .iter()
        .filter(|r| r.at_ms > t0 + 500 && r.at_ms < t0 + 1900)
        .collect();
    assert!(
        early.is_empty(),
        "requests reached the provider during the cool-down: {early:?}"
    );
    assert!(log.iter().any(|r| r.at_ms >= t0 + 1900 && r.status == 200));
    assert!(log.iter().any(|r| r.kind == RequestKind::Submit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_credits_waits_for_resume_then_completes() {
    let app = TestApp::new(Knobs {
        no_credits: true,
        ..fast_knobs()
    })
    .await;
    let n = 10;
    app.enqueue("credits", &prompts(n)).await;
    let f = std::fs::File::create(app.out.path().join("c1.log")).unwrap();
    let mut cmd = app.cmd();
    cmd.env("RESTYLE__RETRY__ACCOUNT_PAUSE", "10m");
    let w = WorkerProc {
        child: cmd
            .args(["worker", "--concurrency", "4"])
            .stderr(f)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    };
    let end = Instant::now() + Duration::from_secs(30);
    while app
        .queue
        .provider_view("aimlapi")
        .await
        .unwrap()
        .waiting_for_resume
        < n as u64
    {
        assert!(Instant::now() < end, "jobs did not all wait for the pause");
        poll_interval().await;
    }
    let st = app.cmd().args(["status", "credits"]).output().unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("PAUSED"), "{text}");
    assert!(text.contains("run out of credits"), "{text}");
    assert!(text.contains("restyle resume aimlapi"), "{text}");
    let info = app.info("credits").await;
    assert_eq!(
        info.count(JobState::Queued),
        n as u64,
        "jobs wait, no retries burned: {:?}",
        info.counts
    );

    let mut k = app.sim.knobs();
    k.no_credits = false;
    app.sim.set_knobs(k);
    let out = app.cmd().args(["resume", "aimlapi"]).output().unwrap();
    assert!(out.status.success());
    let info = app.wait_finished("credits", Duration::from_secs(30)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    assert_eq!(app.sim.stats().submissions_total, n as u64);
    drop(w);
}

/// The req/s `status` shows is the fleet's: each worker's admitted requests, added to one
/// counter per second once the second is over (they were an `INCR` in every gate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workers_requests_count_in_the_fleets_rate() {
    let app = TestApp::new(fast_knobs()).await;
    let (a, b) = (app.runtime(), app.runtime());
    for (rt, n) in [(&a, 7), (&b, 5)] {
        for _ in 0..n {
            let gate = rt
                .admission
                .poll_gate(restyle::model::ProviderName::Aimlapi)
                .await
                .unwrap();
            assert_eq!(gate, restyle::admission::Gate::Go);
        }
    }
    // Stopping flushes what is left, the current second included.
    let stopped = tokio_util::sync::CancellationToken::new();
    stopped.cancel();
    a.admission.report_rates(stopped.clone()).await;
    b.admission.report_rates(stopped).await;
    let mut c = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = format!("{}rate:aimlapi:", app.queue.keys().prefix());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .unwrap();
    let mut total = 0;
    for k in &keys {
        let n: u64 = redis::cmd("GET").arg(k).query_async(&mut c).await.unwrap();
        let ttl: i64 = redis::cmd("PTTL").arg(k).query_async(&mut c).await.unwrap();
        assert!((1..=5000).contains(&ttl), "{k} kept {ttl} ms");
        total += n;
    }
    assert_eq!(total, 12, "every admitted request counted once: {keys:?}");
    // The reader shows a finished second once every worker has added its count.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = app
            .queue
            .provider_view("aimlapi")
            .await
            .unwrap()
            .rate_last_second;
        if shown > 0 {
            assert!(shown <= 12, "{shown}");
            break;
        }
        assert!(
            Instant::now() < end,
            "no second of the fleet's rate was shown"
        );
        poll_interval().await;
    }
}
