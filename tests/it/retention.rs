//! A bounded Redis: a finished batch's records expire `output.retention` after it finished
//! (the server's clock decides when; the test only polls the pass until it acts), leaving
//! a tombstone that `status` reads; an unfinished batch never expires, not even one that
//! was finished and scheduled and then retried; old dead-set entries without a record go.

use crate::helpers::*;
use redis::AsyncCommands;
use restyle::job::JobState;
use restyle::sim::Knobs;
use std::time::{Duration, Instant};

const RETENTION: Duration = Duration::from_millis(300);

async fn retention_app(knobs: Knobs) -> TestApp {
    let mut app = TestApp::new(knobs).await;
    app.test = app.test.clone().set("output.retention", RETENTION);
    app.settings = app.test.settings();
    app
}

async fn job_keys(app: &TestApp, batch: &str) -> Vec<String> {
    let mut c = app.queue.connection();
    let pattern = format!("{}job:{batch}*", app.queue.keys().prefix());
    redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// Runs retention passes until `until` holds for what one returned, with a deadline.
async fn pass_until(
    app: &TestApp,
    what: &str,
    until: impl Fn(&restyle::queue::retention::Expired) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let e = app.queue.expire_due(RETENTION).await.unwrap();
        if until(&e) {
            return;
        }
        assert!(Instant::now() < end, "{what}: not within 20 s");
        poll_interval().await;
    }
}

#[tokio::test]
async fn a_finished_batch_expires_and_an_unfinished_one_never_does() {
    let knobs = Knobs {
        fail_prompts_containing: Some("REFUSE".into()),
        ..fast_knobs()
    };
    let app = retention_app(knobs).await;
    let rt = app.runtime();
    app.enqueue("expires", &prompts(2)).await;
    app.drive(&rt, "expires", Duration::from_secs(60)).await;
    // Enqueued after the drive, and never run.
    app.enqueue("pending", &prompts(2)).await;
    assert!(!job_keys(&app, "expires").await.is_empty());

    // A batch not finished is never scheduled.
    assert!(!app
        .queue
        .schedule_retention("pending", RETENTION, "x")
        .await
        .unwrap());

    pass_until(&app, "the finished batch expires", |e| {
        e.batches.contains(&"expires".to_string())
    })
    .await;
    assert!(app.queue.batch("expires").await.unwrap().is_none());
    assert!(
        job_keys(&app, "expires").await.is_empty(),
        "job records gone"
    );
    let t = app
        .queue
        .tombstone("expires")
        .await
        .unwrap()
        .expect("tombstone");
    assert_eq!(t.total, 2);
    assert!(t.counts.contains("succeeded=2"), "{t:?}");
    let out = app.cmd().args(["status", "expires"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("expired from Redis"), "{said}");
    let dir = app.out.path().join("expires").display().to_string();
    assert!(said.contains(&dir), "says where the results are: {said}");
    // Its results file is where it was.
    assert!(app.results_path("expires").exists());

    // The unfinished batch is all there, after passes that expired another.
    let info = app.info("pending").await;
    assert_eq!(info.count(JobState::Queued), 2);
    assert_eq!(job_keys(&app, "pending").await.len(), 2);
}

#[tokio::test]
async fn a_batch_retried_after_it_finished_is_kept_until_it_finishes_again() {
    let knobs = Knobs {
        fail_prompts_containing: Some("REFUSE".into()),
        ..fast_knobs()
    };
    let app = retention_app(knobs).await;
    let rt = app.runtime();
    let mut ps = prompts(2);
    ps.push("REFUSE this one".into());
    app.enqueue("retried", &ps).await;
    let info = app.drive(&rt, "retried", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Failed), 1, "{:?}", info.counts);
    // Scheduled at its finish; retried before the pass: it is not finished any more.
    let n = restyle::ops::retry(&app.queue, &info, &[JobState::Failed])
        .await
        .unwrap();
    assert_eq!(n, 1);
    pass_until(&app, "the pass sees it unfinished", |e| {
        e.unfinished.contains(&"retried".to_string())
    })
    .await;
    assert!(app.queue.batch("retried").await.unwrap().is_some());
    assert_eq!(job_keys(&app, "retried").await.len(), 3);
    assert!(app.queue.tombstone("retried").await.unwrap().is_none());

    // It finishes again (the refusal lifted): scheduled again, then it expires.
    let mut k = app.sim.knobs();
    k.fail_prompts_containing = None;
    app.sim.set_knobs(k);
    app.drive(&rt, "retried", Duration::from_secs(60)).await;
    pass_until(&app, "it expires after finishing again", |e| {
        e.batches.contains(&"retried".to_string())
    })
    .await;
    assert!(job_keys(&app, "retried").await.is_empty());
}

#[tokio::test]
async fn old_dead_entries_without_records_are_dropped_and_retention_zero_keeps_all() {
    let app = retention_app(fast_knobs()).await;
    let mut c = app.queue.connection();
    let dead = app.queue.keys().dead();
    let orphans = app.queue.keys().orphans();
    let _: () = c.zadd(&dead, "garbage\u{1}id", 1).await.unwrap();
    let _: () = c
        .hset(&orphans, "garbage\u{1}id", "not a job id")
        .await
        .unwrap();
    // Retention zero: nothing is touched.
    let e = app.queue.expire_due(Duration::ZERO).await.unwrap();
    assert_eq!(e.dead_dropped, 0);
    let kept: Option<f64> = c.zscore(&dead, "garbage\u{1}id").await.unwrap();
    assert!(kept.is_some());
    let e = app.queue.expire_due(RETENTION).await.unwrap();
    assert_eq!(e.dead_dropped, 1);
    let gone: Option<f64> = c.zscore(&dead, "garbage\u{1}id").await.unwrap();
    assert!(gone.is_none());
    let reason: Option<String> = c.hget(&orphans, "garbage\u{1}id").await.unwrap();
    assert!(reason.is_none());
}

/// A batch finished by an operator (`restyle cancel`: no stage reported the finish) is
/// scheduled by the command, and expires like any other.
#[tokio::test]
async fn a_batch_an_operator_cancelled_expires_too() {
    let app = retention_app(fast_knobs()).await;
    app.enqueue("cancelled", &prompts(3)).await;
    let out = app.cmd().args(["cancel", "cancelled"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(app.info("cancelled").await.is_finished());
    pass_until(&app, "the cancelled batch expires", |e| {
        e.batches.contains(&"cancelled".to_string())
    })
    .await;
    let t = app
        .queue
        .tombstone("cancelled")
        .await
        .unwrap()
        .expect("tombstone");
    assert!(t.counts.contains("cancelled=3"), "{t:?}");
}
