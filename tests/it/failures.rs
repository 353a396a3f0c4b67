//! Upstream failures, driven stage by stage in this process against the simulator:
//! retried errors, terminal job errors, the deadline, account pauses, poisoned payloads.

use crate::helpers::*;
use redis::AsyncCommands;
use restyle::job::JobState;
use restyle::sim::Knobs;
use restyle::sink::jsonl::read_all;
use std::time::Duration;

#[tokio::test]
async fn poll_5xx_and_429_are_retried_and_jobs_succeed() {
    let app = TestApp::new(Knobs {
        poll_5xx_rate: 0.3,
        poll_429_rate: 0.2,
        seed: Some(7),
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    rt.settings.retry.max_attempts = 30;
    app.enqueue("flaky", &prompts(6)).await;
    let info = app.drive(&rt, "flaky", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 6, "{:?}", info.counts);
    let s = app.sim.stats();
    assert!(
        s.server_errors_total > 0,
        "the test must have met 5xx: {s:?}"
    );
    assert!(
        s.rate_limited_total > 0,
        "the test must have met 429: {s:?}"
    );
    assert_eq!(s.duplicate_submissions, 0);
    assert_eq!(read_all(&app.results_path("flaky")).unwrap().len(), 6);
}

#[tokio::test]
async fn submit_503_is_retried_without_a_second_generation() {
    let app = TestApp::new(Knobs {
        submit_5xx_rate: 0.5,
        seed: Some(11),
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    rt.settings.retry.max_attempts = 30;
    app.enqueue("s503", &prompts(6)).await;
    let info = app.drive(&rt, "s503", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 6, "{:?}", info.counts);
    let s = app.sim.stats();
    assert!(s.server_errors_total > 0, "{s:?}");
    assert_eq!(s.submissions_total, 6);
    assert_eq!(s.duplicate_submissions, 0);
}

#[tokio::test]
async fn upstream_error_fails_the_job_with_its_message() {
    let app = TestApp::new(Knobs {
        fail_prompts_containing: Some("FAILME".into()),
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    let ps = vec![
        "fine one".to_string(),
        "FAILME please".to_string(),
        "FAILME again".to_string(),
    ];
    app.enqueue("errs", &ps).await;
    let info = app.drive(&rt, "errs", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1);
    assert_eq!(info.count(JobState::Failed), 2);
    let lines = read_all(&app.results_path("errs")).unwrap();
    let failed: Vec<_> = lines.iter().filter(|l| l.state == "failed").collect();
    assert_eq!(failed.len(), 2);
    for l in failed {
        let e = l.error.as_deref().unwrap_or("");
        assert!(
            e.contains("Content rejected by upstream safety system"),
            "{e}"
        );
        assert!(l.upstream_id.is_some());
    }
}

#[tokio::test]
async fn stuck_job_times_out_at_the_deadline_keeping_its_upstream_id() {
    let app = TestApp::new(Knobs {
        stuck_prompts_containing: Some("STUCK".into()),
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    let mut poll = fast_poll();
    poll.deadline = Duration::from_millis(1500);
    rt.settings.set_poll(poll);
    app.enqueue(
        "stuck",
        &["STUCK forever".to_string(), "normal".to_string()],
    )
    .await;
    let info = app.drive(&rt, "stuck", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::TimedOut), 1, "{:?}", info.counts);
    assert_eq!(info.count(JobState::Succeeded), 1);
    let rec = app
        .queue
        .job(&restyle::model::job_id("stuck", 0))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, "timed_out");
    assert!(rec.upstream_id.is_some_and(|u| !u.is_empty()));
    let waited = rec.finished_at.unwrap_or(0) - rec.submitted_at.unwrap_or(0);
    assert!(
        waited >= 1500,
        "timed out only after the deadline ({waited} ms)"
    );
    assert!(rec.error.unwrap().contains("deadline"));
}

#[tokio::test]
async fn out_of_credits_pauses_the_provider_without_burning_retries() {
    let app = TestApp::new(Knobs {
        no_credits: true,
        ..fast_knobs()
    })
    .await;
    let mut rt = app.runtime();
    rt.settings.retry.account_pause = Duration::from_millis(300);
    rt.settings.retry.max_attempts = 2;
    app.enqueue("broke", &prompts(3)).await;
    // Step until the pause is recorded.
    let mut paused = None;
    for _ in 0..20 {
        restyle::worker::step(&rt).await.unwrap();
        paused = app.queue.provider_pause("aimlapi").await.unwrap();
        if paused.is_some() {
            break;
        }
    }
    let pause = paused.expect("provider paused after an account error");
    assert!(
        pause.message.contains("run out of credits"),
        "{}",
        pause.message
    );
    let info = app.info("broke").await;
    assert_eq!(
        info.count(JobState::Queued),
        3,
        "jobs wait: {:?}",
        info.counts
    );
    // Credits come back: the batch completes; no job used up its retries.
    let mut k = app.sim.knobs();
    k.no_credits = false;
    app.sim.set_knobs(k);
    let info = app.drive(&rt, "broke", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 3, "{:?}", info.counts);
}

#[tokio::test]
async fn poisoned_payload_goes_to_the_dead_set_and_the_worker_carries_on() {
    let app = TestApp::new(fast_knobs()).await;
    let rt = app.runtime();
    app.enqueue("poison", &prompts(3)).await;
    let bad = restyle::model::job_id("poison", 1);
    let mut c = app.queue.connection();
    let _: () = c
        .hset(app.queue.keys().job(&bad), "payload", "{not json")
        .await
        .unwrap();
    let other = restyle::model::job_id("poison", 2);
    let _: () = c
        .hset(
            app.queue.keys().job(&other),
            "payload",
            r#"{"v":99,"batch_id":"poison","index":2,"prompt":"x"}"#,
        )
        .await
        .unwrap();
    let info = app.drive(&rt, "poison", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Dead), 2, "{:?}", info.counts);
    assert_eq!(info.count(JobState::Succeeded), 1);
    let dead = app.queue.dead(10).await.unwrap();
    assert_eq!(dead.len(), 2);
    let r1 = app.queue.job(&bad).await.unwrap().unwrap().unwrap();
    assert!(r1.error.unwrap().contains("unparseable payload"));
    let r2 = app.queue.job(&other).await.unwrap().unwrap().unwrap();
    assert!(r2.error.unwrap().contains("unknown payload version 99"));
}
