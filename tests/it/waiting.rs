//! Wait lists and slots under operator moves and long waits (issue 11, items 9–11),
//! driven step by step in this process against a real Redis and the simulator.

use crate::helpers::*;
use redis::AsyncCommands;
use restyle::job::JobState;
use restyle::sim::Knobs;
use restyle::worker::{self, Runtime, Stepped};
use std::time::{Duration, Instant};

/// Generations long enough that the slot holders stay in flight while the test acts.
fn slow_knobs() -> Knobs {
    Knobs {
        latency_min: Duration::from_secs(3),
        latency_max: Duration::from_secs(4),
        time_scale: 0.5,
        ..fast_knobs()
    }
}

fn capped(app: &TestApp, cap: u32) -> Runtime {
    let mut rt = app.runtime();
    rt.settings
        .providers
        .get_mut(&restyle::model::ProviderName::Aimlapi)
        .unwrap()
        .limits
        .max_in_flight = cap;
    Runtime::new(app.queue.clone(), rt.settings.clone(), rt.upstreams.clone())
}

/// Runs stages until nothing is ready.
async fn settle(rt: &Runtime) {
    while worker::step(rt).await.unwrap() == Stepped::Processed {}
}

/// Makes every parked job due now (as if each safety net had fired).
async fn fire_safety_nets(app: &TestApp) {
    let mut c = app.queue.connection();
    let parked = format!("{}parked", app.queue.keys().prefix());
    let ids: Vec<String> = c.zrange(&parked, 0, -1).await.unwrap();
    for id in ids {
        let _: () = c.zadd(&parked, &id, 0).await.unwrap();
    }
}

async fn list_len(app: &TestApp, list: &str) -> u64 {
    let mut c = app.queue.connection();
    c.llen(format!("{}{list}", app.queue.keys().prefix()))
        .await
        .unwrap()
}

/// Item 10: each time a waiting job's safety net fires it waits again; it must not be
/// pushed onto the wait list again while its entry is still there.
#[tokio::test]
async fn the_wait_list_holds_each_waiting_job_once() {
    let app = TestApp::new(slow_knobs()).await;
    let rt = capped(&app, 1);
    let n = 20 * scale();
    app.enqueue("waits", &prompts(n)).await;
    settle(&rt).await;
    for _ in 0..5 {
        fire_safety_nets(&app).await;
        settle(&rt).await;
    }
    let len = list_len(&app, "waiting:aimlapi").await;
    assert!(len < n as u64, "{len} entries for {} waiting jobs", n - 1);
}

/// Item 9: cancelled jobs leave their wait-list entries behind; a freed slot must go to a
/// job that still waits, not to a cancelled one.
#[tokio::test]
async fn a_cancelled_batch_does_not_swallow_the_next_batchs_wake_ups() {
    let app = TestApp::new(slow_knobs()).await;
    let rt = capped(&app, 2);
    app.enqueue("first", &prompts(10)).await;
    settle(&rt).await;
    assert_eq!(
        list_len(&app, "waiting:aimlapi").await,
        8,
        "8 wait at cap 2"
    );
    // Cancel every job of the first batch but the two in flight, then queue a second.
    let info = app.info("first").await;
    let waiting: Vec<String> = restyle::ops::job_ids(&info)[2..].to_vec();
    app.queue
        .admin_move(&waiting, &[JobState::Queued], JobState::Cancelled, "test")
        .await
        .unwrap();
    app.enqueue("second", &prompts(4)).await;
    settle(&rt).await;
    // The two in flight finish and free their slots; the second batch gets them at once,
    // long before any 30 s safety net.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        settle(&rt).await;
        let info = app.info("second").await;
        if info.is_finished() {
            assert_eq!(info.count(JobState::Succeeded), 4, "{:?}", info.counts);
            break;
        }
        assert!(
            Instant::now() < end,
            "second batch starved: {:?}",
            info.counts
        );
        poll_interval().await;
    }
}

/// Item 11: a slot whose expiry passed while its job still holds it (a paused worker, a
/// long stall) is not handed to another job: the cap holds.
#[tokio::test]
async fn an_expired_slot_of_a_live_generation_is_not_reclaimed() {
    let app = TestApp::new(slow_knobs()).await;
    let rt = capped(&app, 2);
    app.enqueue("cap", &prompts(3)).await;
    settle(&rt).await;
    let v = app.queue.provider_view("aimlapi").await.unwrap();
    assert_eq!((v.in_flight, v.waiting_for_slot), (2, 1));
    // Both slot holders' expiries pass (their worker stalled past the slot's life).
    let mut c = app.queue.connection();
    let slots = format!("{}slots:aimlapi", app.queue.keys().prefix());
    let holders: Vec<String> = c.zrange(&slots, 0, -1).await.unwrap();
    for h in &holders {
        let _: () = c.zadd(&slots, h, 1).await.unwrap();
    }
    // The waiting job's safety net fires before either holder is polled again.
    let waiter = restyle::job::job_id("cap", 2);
    assert!(!holders.contains(&waiter));
    let parked = format!("{}parked", app.queue.keys().prefix());
    let _: () = c.zadd(&parked, &waiter, 0).await.unwrap();
    assert_eq!(worker::step(&rt).await.unwrap(), Stepped::Processed);
    let held: Vec<String> = c.zrange(&slots, 0, -1).await.unwrap();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(app.sim.stats().peak_in_flight <= 2, "cap exceeded upstream");
    let info = app.drive(&rt, "cap", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 3);
    assert!(app.sim.stats().peak_in_flight <= 2, "cap exceeded upstream");
}
