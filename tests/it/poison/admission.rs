//! Poisoned admission state: garbage in the provider's cool-down, rate-limiter, slot,
//! wait-list and pause keys, and in a batch's counters. Seen: a garbage limiter key
//! stopped all submissions. Each is repaired (treated as absent and overwritten) with a
//! warning that names the key, and the provider keeps submitting.

use super::*;
use redis::AsyncCommands;

/// Runs the healthy batch next to the damage; every job succeeds, the worker warned about
/// each damaged key by name, and none of them is garbage any more.
async fn repaired(
    w: &World,
    ids: &[String],
    damaged: &[&str],
    fixed: impl AsyncFn(&World) -> bool,
) {
    let (_worker, log) = w.worker("w");
    w.verdict(&log, ids, &[]).await;
    // Some repairs come after the jobs' own (a worker adds its request counts to the
    // fleet's once their second is over): the warning is waited for, with a deadline.
    let end = Instant::now() + Duration::from_secs(15);
    for key in damaged {
        loop {
            let text = std::fs::read_to_string(&log).unwrap();
            if text
                .lines()
                .any(|l| l.contains("WARN") && l.contains("repaired") && l.contains(key))
            {
                break;
            }
            assert!(
                Instant::now() < end,
                "a warning names {key}\n{}",
                tail(&log)
            );
            poll_interval().await;
        }
    }
    assert!(fixed(w).await, "the damaged keys were overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_cool_down_key_is_repaired_and_submissions_go_on() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let mut c = w.conn();
    // The cool-down is the `cooldown` field of the provider's `pause:` hash.
    let _: () = c
        .hset(w.key("pause:aimlapi"), "cooldown", "soon")
        .await
        .unwrap();
    repaired(&w, &ids, &["pause:aimlapi"], async |w: &World| {
        let v: Option<String> = w
            .conn()
            .hget(w.key("pause:aimlapi"), "cooldown")
            .await
            .unwrap();
        v.is_none_or(|v| v.parse::<f64>().is_ok())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_rate_limiter_keys_is_repaired_and_submissions_go_on() {
    let w = World::with(|t| t.set("providers.aimlapi.rate_limit", 50.0)).await;
    let ids = w.healthy().await;
    let mut c = w.conn();
    let _: () = c.set(w.key("gcra:aimlapi"), "later").await.unwrap();
    // The per-second admission counters of the next minutes, all garbage.
    let now_s = restyle::queue::now_ms() / 1000;
    for s in now_s.saturating_sub(5)..now_s + 300 {
        let _: () = c
            .set_ex(w.key(&format!("rate:aimlapi:{s}")), "x", 600)
            .await
            .unwrap();
    }
    repaired(
        &w,
        &ids,
        &["gcra:aimlapi", "rate:aimlapi:"],
        async |w: &World| {
            let v: Option<String> = w.conn().get(w.key("gcra:aimlapi")).await.unwrap();
            v.is_none_or(|v| v.parse::<f64>().is_ok())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_and_wait_keys_of_the_wrong_type_are_repaired_and_submissions_go_on() {
    let w = World::with(|t| t.set("providers.aimlapi.max_in_flight", 2u32)).await;
    let ids = w.healthy().await;
    let mut c = w.conn();
    let _: () = c.set(w.key("slots:aimlapi"), "full").await.unwrap();
    let _: () = c.set(w.key("waiting:aimlapi"), "nobody").await.unwrap();
    repaired(&w, &ids, &["slots:aimlapi"], async |w: &World| {
        let t: String = redis::cmd("TYPE")
            .arg(w.key("slots:aimlapi"))
            .query_async(&mut w.conn())
            .await
            .unwrap();
        t != "string"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_with_a_garbage_end_is_repaired_and_submissions_go_on() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let mut c = w.conn();
    let pause = [("message", "out of credits"), ("until", "tomorrow")];
    let _: () = c
        .hset_multiple(w.key("pause:aimlapi"), &pause)
        .await
        .unwrap();
    repaired(&w, &ids, &["pause:aimlapi"], async |w: &World| {
        let v: Option<String> = w
            .conn()
            .hget(w.key("pause:aimlapi"), "until")
            .await
            .unwrap();
        v.is_none_or(|v| v.parse::<u64>().is_ok())
    })
    .await;
    let out = w.run(&["status", HEALTHY]).await;
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counters of the batch hash that are not numbers: every transition of the batch's jobs
/// increments them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_counters_that_are_not_numbers_are_repaired_and_jobs_finish() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let mut c = w.conn();
    let damage = [("n:queued", "x"), ("done", "y"), ("n:succeeded", "z")];
    let key = w.app.queue.keys().batch(HEALTHY);
    let _: () = c.hset_multiple(&key, &damage).await.unwrap();
    repaired(&w, &ids, &["batch:heal"], async |w: &World| {
        let done: Option<String> = w
            .conn()
            .hget(w.app.queue.keys().batch(HEALTHY), "done")
            .await
            .unwrap();
        done.is_some_and(|d| d.parse::<u64>().is_ok())
    })
    .await;
}

/// The index from upstream ids to jobs of the wrong type: recording an upstream id writes
/// it in the step that parks the submitted job, which failed, losing the id of a paid
/// generation (the job would end `submit_unknown`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_index_of_the_wrong_type_is_repaired_and_no_id_is_lost() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let mut c = w.conn();
    let _: () = c.set(w.key("upstreams:aimlapi"), "lost").await.unwrap();
    repaired(&w, &ids, &["upstreams:aimlapi"], async |w: &World| {
        let n: u64 = w.conn().hlen(w.key("upstreams:aimlapi")).await.unwrap();
        n == u64::from(HEALTHY_JOBS)
    })
    .await;
    assert_eq!(
        w.app.sim.stats().submissions_total,
        u64::from(HEALTHY_JOBS),
        "one paid generation per job"
    );
}
