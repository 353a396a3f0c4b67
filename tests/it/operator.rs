//! Operator commands through the binary: reconcile ambiguous submits, cancel, retry,
//! the dead set, and purging a finished batch.

use crate::helpers::*;
use redis::AsyncCommands;
use restyle::job::JobState;
use restyle::sim::Knobs;
use restyle::sink::jsonl::read_all;
use std::time::Duration;

#[tokio::test]
async fn ambiguous_submits_end_unknown_and_reconcile_settles_them() {
    let app = TestApp::new(Knobs {
        submit_lost_response_rate: 0.4,
        seed: Some(3),
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    let n = 12;
    app.enqueue("amb", &prompts(n)).await;
    let info = app.drive(&rt, "amb", Duration::from_secs(30)).await;
    let unknown = info.count(JobState::SubmitUnknown);
    assert!(
        unknown >= 1,
        "the knob produced ambiguous submits: {:?}",
        info.counts
    );
    assert_eq!(info.count(JobState::Succeeded) + unknown, n as u64);
    let s = app.sim.stats();
    assert_eq!(
        s.submissions_total, n as u64,
        "each job POSTed once; unknown ones never again"
    );
    assert_eq!(s.duplicate_submissions, 0);

    // Without a flag: list only.
    let out = app.cmd().args(["reconcile", "amb"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count() as u64,
        unknown
    );
    assert_eq!(
        app.info("amb").await.count(JobState::SubmitUnknown),
        unknown
    );

    // --resubmit: the operator accepts a possible second generation.
    let mut k = app.sim.knobs();
    k.submit_lost_response_rate = 0.0;
    app.sim.set_knobs(k);
    let out = app
        .cmd()
        .args(["reconcile", "amb", "--resubmit"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = app.info("amb").await;
    assert!(!info.is_finished());
    assert_eq!(info.count(JobState::Queued), unknown);
    let info = app.drive(&rt, "amb", Duration::from_secs(30)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    assert_eq!(
        app.sim.stats().duplicate_submissions,
        unknown,
        "resubmits are the only duplicates"
    );
}

#[tokio::test]
async fn reconcile_fail_marks_unknown_jobs_failed() {
    let app = TestApp::new(Knobs {
        submit_lost_response_rate: 1.0,
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    app.enqueue("ambf", &prompts(3)).await;
    app.drive(&rt, "ambf", Duration::from_secs(30)).await;
    let out = app
        .cmd()
        .args(["reconcile", "ambf", "--fail"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let info = app.info("ambf").await;
    assert_eq!(info.count(JobState::Failed), 3, "{:?}", info.counts);
    assert!(info.is_finished());
    let st = app.cmd().args(["status", "ambf"]).output().unwrap();
    assert!(String::from_utf8_lossy(&st.stdout).contains("reconcile --fail"));
}

#[tokio::test]
async fn cancel_stops_pending_jobs_from_being_submitted() {
    let app = TestApp::new(Knobs {
        stuck_prompts_containing: Some("Variant".into()),
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    app.enqueue("cx", &prompts(6)).await;
    // Submit two jobs, leave four pending.
    restyle::worker::step(&rt).await.unwrap();
    restyle::worker::step(&rt).await.unwrap();
    assert_eq!(app.sim.stats().submissions_total, 2);
    let out = app.cmd().args(["cancel", "cx"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = app.info("cx").await;
    assert_eq!(info.count(JobState::Cancelled), 6, "{:?}", info.counts);
    assert!(info.is_finished());
    // Nothing left to run: no further submission or poll.
    let polls = app.sim.stats().polls_total;
    for _ in 0..10 {
        assert_eq!(
            restyle::worker::step(&rt).await.unwrap(),
            restyle::worker::Stepped::Empty
        );
    }
    let s = app.sim.stats();
    assert_eq!(s.submissions_total, 2);
    assert_eq!(s.polls_total, polls);
}

#[tokio::test]
async fn retry_requeues_failed_jobs_and_leaves_succeeded_ones() {
    let app = TestApp::new(Knobs {
        fail_prompts_containing: Some("Variant 1:".into()),
        ..fast_knobs()
    })
    .await;
    let rt = app.runtime();
    app.enqueue("rt", &prompts(3)).await;
    let info = app.drive(&rt, "rt", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Failed), 1);
    let mut k = app.sim.knobs();
    k.fail_prompts_containing = None;
    app.sim.set_knobs(k);
    let out = app
        .cmd()
        .args(["retry", "rt", "--state", "failed"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("requeued 1 jobs"));
    let info = app.drive(&rt, "rt", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 3, "{:?}", info.counts);
    let s = app.sim.stats();
    assert_eq!(
        s.submissions_total, 4,
        "only the failed job was submitted again"
    );
}

#[tokio::test]
async fn garbage_pushed_into_the_queue_goes_dead_and_the_worker_goes_on() {
    let app = TestApp::new(fast_knobs()).await;
    let rt = app.runtime();
    let mut c = app.queue.connection();
    let _: () = c
        .rpush(app.queue.keys().ready(), "\u{1}garbage{{not a job}}")
        .await
        .unwrap();
    app.enqueue("after", &prompts(1)).await;
    let info = app.drive(&rt, "after", Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 1);
    let out = app.cmd().args(["dead", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = v.as_array().unwrap();
    assert_eq!(d.len(), 1);
    assert!(d[0]["reason"].as_str().unwrap().contains("no job record"));
}

#[tokio::test]
async fn purge_forgets_a_finished_batch_and_refuses_a_running_one() {
    let app = TestApp::new(fast_knobs()).await;
    let rt = app.runtime();
    app.enqueue("old", &prompts(3)).await;
    app.drive(&rt, "old", Duration::from_secs(30)).await;
    app.enqueue("busy", &prompts(2)).await;
    let out = app.cmd().args(["purge", "busy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a running batch is not purged");
    assert!(app.queue.batch("busy").await.unwrap().is_some());

    let out = app.cmd().args(["purge", "old"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 job records removed"));
    assert!(app.queue.batch("old").await.unwrap().is_none());
    let ids: Vec<String> = (0..3).map(|i| restyle::model::job_id("old", i)).collect();
    assert!(app.queue.jobs(&ids).await.unwrap().is_empty());
    let mut c = app.queue.connection();
    let index: std::collections::HashMap<String, String> = c
        .hgetall(format!("{}upstreams:aimlapi", app.queue.keys().prefix()))
        .await
        .unwrap();
    assert!(
        index.values().all(|job| !job.starts_with("old.")),
        "{index:?}"
    );
    // The results on disk stay.
    assert_eq!(read_all(&app.results_path("old")).unwrap().len(), 3);
    let out = app.cmd().args(["status", "old"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
}

/// Issue 11 item 14: a finished batch whose completion announcement is still being
/// delivered is not purged (the webhook would never be told).
#[tokio::test]
async fn purge_waits_for_a_pending_completion_announcement() {
    let app = TestApp::new(fast_knobs()).await;
    let mut rt = app.runtime();
    // A receiver that is down: the announcement is retried, not delivered.
    let hooked = app
        .test
        .clone()
        .set("hooks.told.webhook", "http://127.0.0.1:9/hook");
    rt.settings = hooked.settings();
    let mut b = app.batch("told", &prompts(2));
    b.shared.on_done = Some(restyle::model::OnDone::Hook("told".into()));
    restyle::producer::enqueue(&app.queue, &b).await.unwrap();
    app.drive(&rt, "told", Duration::from_secs(30)).await;
    let announcement = app.queue.job("done:told:1").await.unwrap();
    let state = announcement.expect("announcement queued").unwrap().state;
    assert!(!state.is_terminal(), "still being delivered: {state}");
    let out = app.cmd().args(["purge", "told"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "refused while announcing");
    assert!(String::from_utf8_lossy(&out.stderr).contains("announcement"));
    assert!(app.queue.batch("told").await.unwrap().is_some());
    assert!(app.queue.job("done:told:1").await.unwrap().is_some());
}
