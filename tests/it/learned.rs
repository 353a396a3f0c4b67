//! The learned poll schedule: it converges (a real worker against the simulator, polls
//! per generation read from `/sim/stats`), falls back to the configured schedule before
//! there is enough history, keeps the deadline and its last poll, and survives a garbage
//! distribution in Redis.

use crate::helpers::*;
use redis::AsyncCommands;
use restyle::config::PollSettings;
use restyle::job::JobState;
use restyle::model::{ModelKind, ProviderName};
use restyle::queue::LatencyKey;
use restyle::sim::{Knobs, SimStats};
use restyle::upstream::learned::{Sample, MAX_SAMPLES};
use restyle::worker::{self, Runtime, Stepped};
use std::time::Duration;

fn key() -> LatencyKey {
    LatencyKey::new(ProviderName::Aimlapi, ModelKind::Edit, None)
}

/// The default schedule (15 s, doubling, capped at 60 s) at 1/100 of the time, like the
/// simulator: 200–240 s generations take 2.0–2.4 s.
fn scaled_poll(deadline: Duration) -> PollSettings {
    PollSettings {
        first_delay: Duration::from_millis(150),
        max_interval: Duration::from_millis(600),
        deadline,
    }
}

fn knobs(time_scale: f64) -> Knobs {
    Knobs {
        time_scale,
        latency_min: Duration::from_secs(200),
        latency_max: Duration::from_secs(240),
        ..fast_knobs()
    }
}

async fn stats(app: &TestApp) -> SimStats {
    let url = format!("{}/sim/stats", app.sim.base_url());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// A runtime whose settings are the app's with this poll schedule and `min_samples`.
fn runtime(app: &TestApp, poll: PollSettings, min_samples: u32) -> Runtime {
    let mut s = app.settings.clone();
    s.set_poll(poll);
    for p in s.providers.values_mut() {
        p.learned_poll.min_samples = min_samples;
    }
    let ups = restyle::upstream::build_all(&s).expect("providers");
    Runtime::new(app.queue.clone(), s, ups)
}

/// Runs one stage (the submit of the only queued job) and returns the wait it was parked
/// for: its due time minus the transition's own time (`updated_at`, the Redis clock), so
/// a slow step on a loaded machine does not count. The job stays parked (the caller
/// drives it on, or uses [`probe_wait`]).
async fn first_wait(app: &TestApp, rt: &Runtime, batch: &str) -> Duration {
    app.enqueue(batch, &prompts(1)).await;
    assert_eq!(worker::step(rt).await.unwrap(), Stepped::Processed);
    let job = restyle::job::job_id(batch, 0);
    let mut c = app.queue.connection();
    let due: Option<f64> = c.zscore(app.queue.keys().parked(), &job).await.unwrap();
    let at: Option<u64> = c
        .hget(app.queue.keys().job(&job), "updated_at")
        .await
        .unwrap();
    let (Some(due), Some(at)) = (due, at) else {
        panic!("{batch}: the step did not park its job (due {due:?}, updated_at {at:?})");
    };
    Duration::from_millis((due as u64).saturating_sub(at))
}

/// [`first_wait`], then the batch cancelled: its parked job cannot fall due and be what
/// the next step claims instead of the next batch's.
async fn probe_wait(app: &TestApp, rt: &Runtime, batch: &str) -> Duration {
    let w = first_wait(app, rt, batch).await;
    let ups = restyle::upstream::build_all(&app.settings).expect("providers");
    restyle::ops::cancel(&app.queue, &ups, &app.info(batch).await)
        .await
        .unwrap();
    w
}

async fn plant(app: &TestApp, samples: &[Sample]) {
    for s in samples {
        app.queue.record_latency(&key(), *s).await.unwrap();
    }
}

fn around(ms: u64, n: usize) -> Vec<Sample> {
    (0..n as u64)
        .map(|i| Sample {
            lo_ms: ms + i * 10,
            hi_ms: ms + i * 10 + 50,
        })
        .collect()
}

#[tokio::test]
async fn the_schedule_converges_on_a_real_worker() {
    let mut app = TestApp::new(knobs(0.01)).await;
    app.test = app
        .test
        .clone()
        .poll(scaled_poll(Duration::from_secs(10)))
        .set("learned_poll.min_samples", 16u32);
    let dir = tempfile::tempdir().unwrap();
    let _w = app.spawn_worker(16, &dir.path().join("worker.log"));
    let n = 40;
    // Warm-up: no history at the submits, the configured schedule.
    app.enqueue("warm", &prompts(n)).await;
    let info = app.wait_finished("warm", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), n as u64);
    let s1 = stats(&app).await;
    let ring: usize = app
        .queue
        .connection()
        .llen(format!("{}{}", app.queue.keys().prefix(), key().name()))
        .await
        .unwrap();
    assert_eq!(ring, n, "every completion recorded once");
    // Learned from the submit on.
    app.enqueue("learned", &prompts(n)).await;
    let info = app.wait_finished("learned", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), n as u64);
    let s2 = stats(&app).await;
    let warm = s1.polls_total as f64 / s1.polls_per_generation.count as f64;
    let learned = (s2.polls_total - s1.polls_total) as f64
        / (s2.polls_per_generation.count - s1.polls_per_generation.count) as f64;
    assert_eq!(s2.polls_per_generation.count, 2 * n as u64);
    assert!(
        learned < 0.8 * warm,
        "polls per generation: {warm:.2} on the configured schedule, {learned:.2} learned"
    );
    assert_eq!(s2.duplicate_submissions, 0);
}

#[tokio::test]
async fn the_configured_schedule_holds_until_there_is_enough_history() {
    let app = TestApp::new(knobs(0.01)).await;
    let rt = runtime(&app, scaled_poll(Duration::from_secs(10)), 32);
    // 31 completions around 2 s: one short of min_samples.
    plant(&app, &around(2000, 31)).await;
    let w = probe_wait(&app, &rt, "few").await;
    assert!(
        w <= Duration::from_millis(200),
        "the configured 150 ms, got {w:?}"
    );
    // A fresh process (no cached distribution) with the 32nd: placed by the distribution.
    plant(&app, &around(2400, 1)).await;
    let rt = runtime(&app, scaled_poll(Duration::from_secs(10)), 32);
    let w = probe_wait(&app, &rt, "enough").await;
    assert!(
        w >= Duration::from_millis(1900),
        "learned, near 2 s: got {w:?}"
    );
    // Turned off: the configured schedule whatever the history.
    let mut rt = runtime(&app, scaled_poll(Duration::from_secs(10)), 32);
    for p in rt.settings.providers.values_mut() {
        p.learned_poll.enabled = false;
    }
    let w = probe_wait(&app, &rt, "off").await;
    assert!(w <= Duration::from_millis(200), "off: got {w:?}");
}

#[tokio::test]
async fn the_deadline_and_its_last_poll_still_hold() {
    // History says 100 s; the deadline is 1 s; generations take 0.2–0.3 s.
    let app = TestApp::new(fast_knobs()).await;
    plant(&app, &around(100_000, 40)).await;
    let rt = runtime(&app, scaled_poll(Duration::from_secs(1)), 8);
    let w = first_wait(&app, &rt, "late").await;
    assert!(
        w <= Duration::from_millis(1050),
        "parked past the deadline: {w:?}"
    );
    let info = app.drive(&rt, "late", Duration::from_secs(20)).await;
    // The poll at the deadline saw the generation done: it is kept. (Two polls when the
    // worker's estimate of the Redis clock runs a few ms behind the promotion: the first
    // is then just before the deadline, parked until it.)
    assert_eq!(info.count(JobState::Succeeded), 1, "{:?}", info.counts);
    assert!((1..=2).contains(&app.sim.stats().polls_total));
    // A stuck one times out at the deadline, polled there once more.
    let mut k = fast_knobs();
    k.stuck_rate = 1.0;
    app.sim.set_knobs(k);
    let before = app.sim.stats().polls_total;
    app.enqueue("stuck", &prompts(1)).await;
    let info = app.drive(&rt, "stuck", Duration::from_secs(20)).await;
    assert_eq!(info.count(JobState::TimedOut), 1, "{:?}", info.counts);
    assert!((1..=2).contains(&(app.sim.stats().polls_total - before)));
}

#[tokio::test]
async fn a_garbage_distribution_is_bounded_and_ignored() {
    let app = TestApp::new(knobs(0.01)).await;
    let name = format!("{}{}", app.queue.keys().prefix(), key().name());
    let mut c = app.queue.connection();
    // Not a list at all.
    let _: () = c.set(&name, "not a list").await.unwrap();
    assert!(app.queue.latency_samples(&key()).await.unwrap().is_empty());
    let rt = runtime(&app, scaled_poll(Duration::from_secs(10)), 8);
    let w = first_wait(&app, &rt, "wrongtype").await;
    assert!(w <= Duration::from_millis(200), "fallback: {w:?}");
    let info = app.drive(&rt, "wrongtype", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1);
    // The completion replaced it with a ring of one sample.
    assert_eq!(app.queue.latency_samples(&key()).await.unwrap().len(), 1);

    // A huge list of garbage: non-numbers, reversed, negative, past a week, a 1 MiB entry.
    let _: () = c.del(&name).await.unwrap();
    let junk = ["nan:1", "5:4", "-1:3", "1:999999999999", "x", "", "1e3:2e3"];
    for chunk in 0..20 {
        let many: Vec<String> = (0..5000)
            .map(|i| junk[(i + chunk) % junk.len()].into())
            .collect();
        let _: () = c.rpush(&name, many).await.unwrap();
    }
    let _: () = c.lpush(&name, "1".repeat(1 << 20)).await.unwrap();
    for s in around(2000, 5) {
        let _: () = c.lpush(&name, s.encode()).await.unwrap();
    }
    let got = app.queue.latency_samples(&key()).await.unwrap();
    assert_eq!(
        got.len(),
        5,
        "only the valid ones, from the first 256 entries"
    );
    let rt = runtime(&app, scaled_poll(Duration::from_secs(10)), 8);
    let w = first_wait(&app, &rt, "junk").await;
    assert!(
        w <= Duration::from_millis(200),
        "5 < 8 samples: fallback, got {w:?}"
    );
    let info = app.drive(&rt, "junk", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1);
    let len: usize = c.llen(&name).await.unwrap();
    assert_eq!(len, MAX_SAMPLES, "the write trimmed the list to the ring");

    // A degenerate one (every completion at 0 ms) still polls within bounds and finishes.
    let _: () = c.del(&name).await.unwrap();
    plant(&app, &vec![Sample { lo_ms: 0, hi_ms: 0 }; 40]).await;
    let rt = runtime(&app, scaled_poll(Duration::from_secs(10)), 8);
    app.enqueue("zero", &prompts(1)).await;
    let info = app.drive(&rt, "zero", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1);
}

#[tokio::test]
async fn the_ring_stays_bounded_and_reads_the_newest_samples() {
    let app = TestApp::new(fast_knobs()).await;
    let name = format!("{}{}", app.queue.keys().prefix(), key().name());
    let mut c = app.queue.connection();
    // Oldest first: sample i completed at 1000 + i ms.
    let n = 3 * MAX_SAMPLES;
    let mut longest = 0;
    for i in 0..n as u64 {
        let s = Sample {
            lo_ms: 1000 + i,
            hi_ms: 1000 + i,
        };
        app.queue.record_latency(&key(), s).await.unwrap();
        let len: usize = c.llen(&name).await.unwrap();
        longest = longest.max(len);
    }
    // Trimmed back to the cap whenever it runs 32 past it; never longer.
    assert!(
        longest > MAX_SAMPLES,
        "it never ran past the cap: {longest}"
    );
    assert!(longest <= MAX_SAMPLES + 32, "it grew to {longest}");
    let ttl: i64 = c.pttl(&name).await.unwrap();
    assert!(ttl > 0, "the ring has an expiry: {ttl}");
    // Readers get exactly the newest MAX_SAMPLES.
    let got = app.queue.latency_samples(&key()).await.unwrap();
    assert_eq!(got.len(), MAX_SAMPLES);
    let newest = (n - MAX_SAMPLES) as u64;
    let mut seen: Vec<u64> = got.iter().map(|s| s.lo_ms - 1000).collect();
    seen.sort_unstable();
    assert_eq!(seen, (newest..n as u64).collect::<Vec<_>>());
}
