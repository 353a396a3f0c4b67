//! The queue's own traps (the ones apalis-redis 1.0 falls into): a 20k backlog due at
//! once, long stages on a full worker, and shutdown with many stages running.

use crate::helpers::*;
use restyle::config::WorkerSettings;
use restyle::job::{JobState, Transition};
use restyle::queue::backend::{Claimed, LeaseTable};
use restyle::queue::{After, Queue};
use restyle::worker::{run_with, Handler};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

type Runs = Arc<Mutex<HashMap<String, u32>>>;

/// Finishes each job at once, counting runs.
fn finishing_handler(q: Queue, table: Arc<LeaseTable>, runs: Runs) -> Handler {
    Handler::new(move |Claimed { claim, mut lease }| {
        let (q, table, runs) = (q.clone(), table.clone(), runs.clone());
        Box::pin(async move {
            *runs
                .lock()
                .unwrap()
                .entry(claim.job_id.clone())
                .or_default() += 1;
            let nonce = table.nonce(&claim.token);
            let tx = Transition::to(JobState::Succeeded, After::Done);
            q.apply(claim.owner(), &nonce, &tx, None)
                .await
                .expect("transition");
            lease.settle();
        })
    })
}

/// Waits for `gate` (if the job's index is even and `finish_evens`), then finishes.
/// Odd jobs (or all, without `finish_evens`) wait for `gate` too, then finish.
fn gated_handler(
    q: Queue,
    table: Arc<LeaseTable>,
    runs: Runs,
    gate: Arc<Notify>,
    odd_forever: bool,
) -> Handler {
    Handler::new(move |Claimed { claim, mut lease }| {
        let (q, table, runs, gate) = (q.clone(), table.clone(), runs.clone(), gate.clone());
        Box::pin(async move {
            *runs
                .lock()
                .unwrap()
                .entry(claim.job_id.clone())
                .or_default() += 1;
            let index: u32 = claim.job_id.rsplit('.').next().unwrap().parse().unwrap();
            gate.notified().await;
            if odd_forever && index % 2 == 1 {
                std::future::pending::<()>().await;
            }
            let nonce = table.nonce(&claim.token);
            let tx = Transition::to(JobState::Succeeded, After::Done);
            q.apply(claim.owner(), &nonce, &tx, None)
                .await
                .expect("transition");
            lease.settle();
        })
    })
}

fn ws(concurrency: usize, grace: Duration) -> WorkerSettings {
    WorkerSettings {
        concurrency,
        shutdown_grace: grace,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_jobs_due_at_once_drain_without_a_worker_dying() {
    let n = 20_000 * scale();
    let app = TestApp::new(fast_knobs()).await;
    let ps: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    assert_eq!(app.enqueue("backlog", &ps).await, n as u64);
    // Move every job from the ready list to the parked set, all due at the same instant.
    let mut c = app.queue.connection();
    let moved: i64 = redis::Script::new(
        r"local ids = redis.call('LRANGE', KEYS[1], 0, -1)
          for _, id in ipairs(ids) do redis.call('ZADD', KEYS[2], ARGV[1], id) end
          redis.call('DEL', KEYS[1]) return #ids",
    )
    .key(app.queue.keys().ready())
    .key(app.queue.keys().parked())
    .arg(restyle::queue::now_ms())
    .invoke_async(&mut c)
    .await
    .unwrap();
    assert_eq!(moved, n as i64);

    let runs: Runs = Default::default();
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for i in 0..2 {
        let table = Arc::new(LeaseTable::default());
        let h = finishing_handler(app.queue.clone(), table.clone(), runs.clone());
        workers.push(tokio::spawn(run_with(
            app.queue.clone(),
            format!("trap-{i}"),
            table,
            ws(64, Duration::from_secs(5)),
            h,
            stop.clone(),
        )));
    }
    let info = app.wait_finished("backlog", Duration::from_secs(300)).await;
    assert_eq!(info.count(JobState::Succeeded), n as u64);
    for w in &workers {
        assert!(!w.is_finished(), "a worker died while draining");
    }
    stop.cancel();
    for w in workers {
        w.await.unwrap().expect("worker ends cleanly");
    }
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), n);
    assert!(runs.values().all(|&r| r == 1), "no job ran twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_keeps_its_leases_alive() {
    let mut app = TestApp::new(fast_knobs()).await;
    app.settings.queue.lease = Duration::from_millis(600);
    app.settings.queue.renew_every = Duration::from_millis(150);
    let queue = Queue::connect(
        &app.settings.redis,
        &app.settings.queue,
        restyle::queue::RetryMode::Persistent,
    )
    .await
    .unwrap();
    app.queue = queue.clone();
    app.enqueue("long", &prompts(6)).await;
    let runs: Runs = Default::default();
    let gate = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let spawn = |name: &str| {
        let table = Arc::new(LeaseTable::default());
        let h = gated_handler(
            queue.clone(),
            table.clone(),
            runs.clone(),
            gate.clone(),
            false,
        );
        (
            table.clone(),
            tokio::spawn(run_with(
                queue.clone(),
                name.into(),
                table,
                ws(4, Duration::from_secs(5)),
                h,
                stop.clone(),
            )),
        )
    };
    let (table_a, a) = spawn("full-a");
    let end = Instant::now() + Duration::from_secs(10);
    while table_a.len() < 4 {
        assert!(Instant::now() < end, "worker A never filled its slots");
        poll_interval().await;
    }
    let t0 = restyle::queue::now_ms();
    let held: Vec<String> = table_a.held().into_iter().map(|(id, _)| id).collect();
    // A competing worker polls for work all the while.
    let (_table_b, b) = spawn("full-b");
    // Wait until A's leases have been renewed well past three lease lengths.
    let mut c = queue.connection();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let mut min_expiry = u64::MAX;
        for id in &held {
            let s: Option<u64> = redis::AsyncCommands::zscore(&mut c, queue.keys().leases(), id)
                .await
                .unwrap();
            min_expiry = min_expiry.min(s.expect("lease still held"));
        }
        if min_expiry > t0 + 3 * 600 {
            break;
        }
        assert!(Instant::now() < end, "leases were not renewed");
        poll_interval().await;
    }
    gate.notify_waiters();
    // Let every remaining stage through as it arrives.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        gate.notify_waiters();
        if app.info("long").await.is_finished() {
            break;
        }
        assert!(Instant::now() < end, "batch did not finish");
        poll_interval().await;
    }
    stop.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 6);
    assert!(
        runs.values().all(|&r| r == 1),
        "a live worker's job ran twice: {runs:?}"
    );
    let recovered: Option<u64> =
        redis::AsyncCommands::hget(&mut c, queue.keys().stats(), "lease_recoveries")
            .await
            .unwrap();
    assert_eq!(
        recovered.unwrap_or(0),
        0,
        "no lease of a live worker was swept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_fifty_stages_running_finishes_or_requeues_them() {
    let app = TestApp::new(fast_knobs()).await;
    app.enqueue("stop50", &prompts(50)).await;
    let runs: Runs = Default::default();
    let gate = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let table = Arc::new(LeaseTable::default());
    let h = gated_handler(
        app.queue.clone(),
        table.clone(),
        runs.clone(),
        gate.clone(),
        true,
    );
    let grace = Duration::from_millis(800);
    let w = tokio::spawn(run_with(
        app.queue.clone(),
        "stopper".into(),
        table.clone(),
        ws(64, grace),
        h,
        stop.clone(),
    ));
    let end = Instant::now() + Duration::from_secs(10);
    while table.len() < 50 {
        assert!(
            Instant::now() < end,
            "stages did not all start: {}",
            table.len()
        );
        poll_interval().await;
    }
    stop.cancel();
    gate.notify_waiters(); // even stages finish within the grace period; odd ones never do
    tokio::time::timeout(grace * 10, w)
        .await
        .expect("worker stops within its grace period (with slack)")
        .unwrap()
        .unwrap();
    let info = app.info("stop50").await;
    assert_eq!(info.count(JobState::Succeeded), 25, "{:?}", info.counts);
    let (ready, parked, leased) = app.queue.depth().await.unwrap();
    assert_eq!(ready, 25, "unfinished stages are back in the queue");
    assert_eq!((parked, leased), (0, 0));
    assert_eq!(info.count(JobState::Queued), 25);
}

#[tokio::test]
async fn a_freed_slot_wakes_a_job_that_still_waits_not_a_stale_entry() {
    use redis::AsyncCommands;
    use restyle::queue::{SlotCtx, WaitList};
    let app = TestApp::new(fast_knobs()).await;
    app.enqueue("wake", &prompts(2)).await;
    let q = &app.queue;
    let slot = SlotCtx {
        provider: "aimlapi".into(),
        cap: 1,
        ttl_ms: 60_000,
    };
    let mut claims = q.claim("t", 2).await.unwrap();
    let b = claims.pop().unwrap();
    let a = claims.pop().unwrap();
    // B holds the only slot; A waits for one.
    let tx = Transition::to(JobState::Submitting, After::Keep);
    q.apply(b.owner(), "b1", &tx, Some(&slot)).await.unwrap();
    let far = restyle::queue::now_ms() + 600_000;
    let wait = After::Wait(WaitList::Slot("aimlapi".into()), far);
    let tx = Transition::to(JobState::Queued, wait);
    q.apply(a.owner(), "a1", &tx, Some(&slot)).await.unwrap();
    // Entries of jobs that no longer wait sit in front of A (a safety net fired, say).
    let mut c = q.connection();
    let list = format!("{}waiting:aimlapi", q.keys().prefix());
    let _: () = c.lpush(&list, &b.job_id).await.unwrap();
    let _: () = c.lpush(&list, "gone.00001").await.unwrap();
    // B finishes: its slot goes to A, the one job still waiting.
    let tx = Transition::to(JobState::Succeeded, After::Done);
    q.apply(b.owner(), "b2", &tx, Some(&slot)).await.unwrap();
    let ready: Vec<String> = c.lrange(q.keys().ready(), 0, -1).await.unwrap();
    assert_eq!(
        ready,
        vec![a.job_id.clone()],
        "the wake-up went to the waiting job"
    );
    let parked: Option<f64> = c.zscore(q.keys().parked(), &a.job_id).await.unwrap();
    assert_eq!(parked, None, "its safety-net entry is gone");
}
