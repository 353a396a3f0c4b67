//! Blocking claims (issue 14, part 3): an idle worker waits on Redis instead of asking
//! again and again, and whatever makes work ready wakes it. Each test runs a real worker
//! (`worker::run`) in this process with `queue.idle_poll` set far beyond the test's
//! deadline, so only a wake-up can explain a pickup. Commands are counted on a Redis of
//! the test's own (`INFO commandstats`), so no other test adds to them.

use crate::helpers::*;
use restyle::job::{job_id, JobState};
use restyle::localredis::LocalRedis;
use restyle::sim::Knobs;
use restyle::worker::Runtime;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Far beyond any deadline here: a pickup within a test is never the idle safety net.
const NEVER: Duration = Duration::from_secs(3600);

/// A world on a Redis of its own, whose worker runtime idles for `NEVER` between looks.
async fn idle_app(redis: &LocalRedis, knobs: Knobs) -> TestApp {
    let mut app = TestApp::with_redis(knobs, &redis.url()).await;
    app.test = app.test.clone().set("queue.idle_poll", NEVER);
    app.settings = app.test.settings();
    app.queue.settings = app.settings.queue.clone();
    app
}

fn runtime(app: &TestApp) -> Arc<Runtime> {
    let ups = restyle::upstream::build_all(&app.settings).expect("providers");
    Arc::new(Runtime::new(app.queue.clone(), app.settings.clone(), ups))
}

/// Starts the worker; returns its stop token and task.
fn start(rt: Arc<Runtime>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        restyle::worker::run(rt, s).await.expect("worker runs");
    });
    (stop, task)
}

/// Polls until `n` workers are listed idle (blocked on the wake-up key).
async fn until_idle(app: &TestApp, n: u64) {
    let mut c = app.queue.connection();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let idle: u64 = redis::AsyncCommands::zcard(&mut c, app.queue.keys().idle())
            .await
            .unwrap();
        if idle == n {
            return;
        }
        assert!(Instant::now() < end, "{idle} workers idle, not {n}");
        poll_interval().await;
    }
}

/// Calls per command name since the server started (`INFO commandstats`).
async fn commandstats(app: &TestApp) -> HashMap<String, u64> {
    let mut c = app.queue.connection();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

/// Commands executed between two snapshots, less the snapshots' own `INFO`.
fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .filter(|(k, _)| k.as_str() != "info")
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn state_of(app: &TestApp, id: &str) -> Option<JobState> {
    let mut c = app.queue.connection();
    let s: Option<String> = redis::AsyncCommands::hget(&mut c, app.queue.keys().job(id), "state")
        .await
        .unwrap();
    s.and_then(|s| JobState::parse(&s))
}

async fn until_state(app: &TestApp, id: &str, want: JobState, within: Duration) {
    let end = Instant::now() + within;
    loop {
        let st = state_of(app, id).await;
        if st == Some(want) {
            return;
        }
        assert!(Instant::now() < end, "{id} is {st:?}, not {want:?}");
        poll_interval().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_sends_no_claims() {
    let dir = tempfile::tempdir().unwrap();
    let redis = LocalRedis::start(dir.path(), false).unwrap();
    let mut app = idle_app(&redis, fast_knobs()).await;
    // The shipped settings (tests elsewhere idle-poll every 20 ms).
    let builtin = restyle::config::Settings::builtin().queue;
    app.test = app.test.clone().set("queue.idle_poll", builtin.idle_poll);
    app.settings = app.test.settings();
    app.queue.settings = app.settings.queue.clone();
    let (stop, task) = start(runtime(&app));
    until_idle(&app, 1).await;
    let before = commandstats(&app).await;
    // An observation window: what an idle worker sends in it is the measurement (the
    // claim loop of before sent a claim every idle_poll, 20 ms in tests: ~100 in 2 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = delta(&before, &commandstats(&app).await);
    let total: u64 = sent.values().sum();
    let scripts =
        sent.get("evalsha").copied().unwrap_or(0) + sent.get("eval").copied().unwrap_or(0);
    eprintln!("idle worker, 2 s: {total} commands {sent:?}");
    // A claim pops with LMPOP (counted inside the script); the lease timer (every 3 s)
    // and the Redis clock sync may each run once in the window, a script call apiece.
    assert_eq!(
        sent.get("lmpop").copied().unwrap_or(0),
        0,
        "an idle worker claimed: {sent:?}"
    );
    assert!(scripts <= 2, "an idle worker claimed or swept: {sent:?}");
    assert!(
        total <= 10,
        "an idle worker sent {total} commands in 2 s: {sent:?}"
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_due_work_wakes_an_idle_worker() {
    let dir = tempfile::tempdir().unwrap();
    let redis = LocalRedis::start(dir.path(), false).unwrap();
    let app = idle_app(&redis, fast_knobs()).await;
    let (stop, task) = start(runtime(&app));
    until_idle(&app, 1).await;
    // Enqueued while the worker blocks: it is submitted, parked for its first poll
    // (100 ms, while the worker is idle again), polled when due and finished.
    app.enqueue("woken", &prompts(3)).await;
    let info = app.wait_finished("woken", Duration::from_secs(20)).await;
    assert_eq!(info.count(JobState::Succeeded), 3, "{:?}", info.counts);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poked_job_is_polled_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = LocalRedis::start(dir.path(), false).unwrap();
    // Generations done at once: the first poll after the poke finds the job completed.
    let knobs = Knobs {
        latency_min: Duration::ZERO,
        latency_max: Duration::ZERO,
        ..fast_knobs()
    };
    let mut app = idle_app(&redis, knobs).await;
    // The first poll an hour after the submit: only the poke can bring it forward.
    let mut poll = fast_poll();
    poll.first_delay = NEVER;
    poll.max_interval = NEVER;
    poll.deadline = NEVER * 2;
    app.test = app.test.clone().poll(poll);
    app.settings = app.test.settings();
    let (stop, task) = start(runtime(&app));
    app.enqueue("poked", &prompts(1)).await;
    let id = job_id("poked", 0);
    until_state(&app, &id, JobState::Polling, Duration::from_secs(10)).await;
    until_idle(&app, 1).await;
    let rec = app
        .queue
        .job(&id)
        .await
        .unwrap()
        .unwrap()
        .expect("readable record");
    let upstream = rec.upstream_id.expect("submitted");
    assert!(
        app.queue.poke("aimlapi", &upstream).await.unwrap(),
        "the job was parked"
    );
    until_state(&app, &id, JobState::Succeeded, Duration::from_secs(10)).await;
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_slot_wakes_the_job_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let redis = LocalRedis::start(dir.path(), false).unwrap();
    let mut app = idle_app(&redis, fast_knobs()).await;
    // One generation at a time: the others wait for the slot (their safety net fires
    // after 30 s, past the deadline below), so each hand-over is a wake-up.
    app.test = app.test.clone().every_provider("max_in_flight", 1u32);
    app.settings = app.test.settings();
    let (stop, task) = start(runtime(&app));
    until_idle(&app, 1).await;
    app.enqueue("slots", &prompts(4)).await;
    let info = app.wait_finished("slots", Duration::from_secs(20)).await;
    assert_eq!(info.count(JobState::Succeeded), 4, "{:?}", info.counts);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_share_a_burst_and_stop_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let redis = LocalRedis::start(dir.path(), false).unwrap();
    let app = idle_app(&redis, fast_knobs()).await;
    let workers: Vec<_> = (0..3).map(|_| start(runtime(&app))).collect();
    until_idle(&app, 3).await;
    let n = 200;
    app.enqueue("burst", &prompts(n)).await;
    let info = app.wait_finished("burst", Duration::from_secs(30)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    // Each worker blocks in Redis again; stopping does not wait for the block to end.
    until_idle(&app, 3).await;
    let t0 = Instant::now();
    for (stop, _) in &workers {
        stop.cancel();
    }
    for (_, task) in workers {
        task.await.unwrap();
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        t0.elapsed()
    );
    let mut c = app.queue.connection();
    let tokens: u64 = redis::AsyncCommands::llen(&mut c, app.queue.keys().wake())
        .await
        .unwrap();
    assert!(
        tokens <= 3,
        "the wake list holds {tokens} tokens for 3 workers"
    );
}
