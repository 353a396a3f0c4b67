//! Poisoned job records and ids: bytes that are not UTF-8, fields of the wrong type, a
//! job key that is not a hash, missing fields, queued ids without a record, and ids that
//! would build a path outside the output directory.

use super::*;
use redis::AsyncCommands;

/// The healthy ids but `bad`.
fn others(ids: &[String], bad: &[&str]) -> Vec<String> {
    ids.iter()
        .filter(|i| !bad.contains(&i.as_str()))
        .cloned()
        .collect()
}

/// `restyle status|report|results|dead` on the healthy batch succeed, `dead` lists `id`,
/// and so does `status` when the record still counts in its batch (`in_status`; a key
/// that is not a hash has no state to count).
async fn readers_still_work(w: &World, id: &str, in_status: bool) {
    for args in [
        &["status", HEALTHY][..],
        &["report", HEALTHY],
        &["results", HEALTHY, "--format", "csv"],
        &["dead"],
    ] {
        let out = w.run(args).await;
        assert!(
            out.status.success(),
            "restyle {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if args[0] == "dead" || (args[0] == "status" && in_status) {
            assert!(text.contains(id), "{args:?} lists {id}: {text}");
        }
    }
}

/// The copies of a healthy record under forged ids died without counting in the healthy
/// batch (which would finish it early): it has its four jobs, all succeeded.
async fn assert_forged_uncounted(w: &World) {
    let info = w.app.info(HEALTHY).await;
    assert_eq!(
        (
            info.done,
            info.count(JobState::Dead),
            info.count(JobState::Succeeded)
        ),
        (u64::from(HEALTHY_JOBS), 0, u64::from(HEALTHY_JOBS)),
        "{:?}",
        info.counts
    );
}

/// Seen: one non-UTF-8 payload failed every claim it was part of, looping every lease
/// period and holding the jobs claimed with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_utf8_dies_alone() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let bad = ids[1].clone();
    let mut payload =
        format!(r#"{{"v":1,"batch_id":"{HEALTHY}","index":1,"prompt":"x"#).into_bytes();
    payload.extend_from_slice(b"\xff\xfe\"}");
    hset_raw(&w, bad.as_bytes(), b"payload", &payload).await;
    let (_worker, log) = w.worker("w");
    let healthy = others(&ids, &[&bad]);
    w.verdict(&log, &healthy, &[(bad.as_bytes(), &["payload", "UTF-8"])])
        .await;
    readers_still_work(&w, &bad, true).await;
}

/// A field name and a value that are not UTF-8: the record dies alone and stays readable
/// (as unreadable, with the reason) to status, the contact sheet and the export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_non_utf8_fields_dies_alone_and_readers_go_on() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let bad = ids[2].clone();
    hset_raw(&w, bad.as_bytes(), b"note\xc3\x28", b"x").await;
    hset_raw(&w, bad.as_bytes(), b"upstream_id", b"gen-\xff").await;
    let (_worker, log) = w.worker("w");
    let healthy = others(&ids, &[&bad]);
    w.verdict(&log, &healthy, &[(bad.as_bytes(), &["UTF-8"])])
        .await;
    readers_still_work(&w, &bad, true).await;
}

/// Counts that are not numbers; `claims` is incremented by the claim itself, which failed
/// half-way and lost the jobs it had popped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_fields_of_the_wrong_type_dies_alone() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let (a, b) = (ids[0].clone(), ids[3].clone());
    hset_raw(&w, a.as_bytes(), b"attempts", b"many").await;
    hset_raw(&w, b.as_bytes(), b"claims", b"lots").await;
    let (_worker, log) = w.worker("w");
    let healthy = others(&ids, &[&a, &b]);
    let poisoned: [Poisoned<'_>; 2] = [(a.as_bytes(), &["attempts"]), (b.as_bytes(), &["claims"])];
    w.verdict(&log, &healthy, &poisoned).await;
}

/// A job key holding a string or a list instead of a hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_key_that_is_not_a_hash_dies_alone() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let (a, b) = (ids[1].clone(), ids[2].clone());
    let mut c = w.conn();
    let k = w.app.queue.keys();
    let _: () = c.del(k.job(&a)).await.unwrap();
    let _: () = c.set(k.job(&a), "garbage").await.unwrap();
    let _: () = c.del(k.job(&b)).await.unwrap();
    let _: () = c.rpush(k.job(&b), "garbage").await.unwrap();
    let (_worker, log) = w.worker("w");
    let healthy = others(&ids, &[&a, &b]);
    let poisoned: [Poisoned<'_>; 2] = [
        (a.as_bytes(), &["not a hash"]),
        (b.as_bytes(), &["not a hash"]),
    ];
    w.verdict(&log, &healthy, &poisoned).await;
    readers_still_work(&w, &a, false).await;
}

/// A record without a state, one without a payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_missing_fields_dies_alone() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let (a, b) = (ids[0].clone(), ids[2].clone());
    let mut c = w.conn();
    let k = w.app.queue.keys();
    let _: () = c.hdel(k.job(&a), "state").await.unwrap();
    let _: () = c.hdel(k.job(&b), "payload").await.unwrap();
    let (_worker, log) = w.worker("w");
    let healthy = others(&ids, &[&a, &b]);
    let poisoned: [Poisoned<'_>; 2] = [
        (a.as_bytes(), &["no state"]),
        (b.as_bytes(), &["no payload"]),
    ];
    w.verdict(&log, &healthy, &poisoned).await;
}

/// Ids in the ready list without a record (one not UTF-8), and a record under an id that
/// is not UTF-8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_ids_without_a_readable_record_die_alone() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let ghost = restyle::job::job_id(HEALTHY, 9);
    push_ready(&w, ghost.as_bytes()).await;
    let ghost_bytes: &[u8] = b"\xff\xfeghost.00001";
    push_ready(&w, ghost_bytes).await;
    let twin: &[u8] = b"heal.\xff0003";
    for (f, v) in fields_of(&w, &ids[3]).await {
        hset_raw(&w, twin, &f, &v).await;
    }
    push_ready(&w, twin).await;
    let (_worker, log) = w.worker("w");
    let poisoned: [Poisoned<'_>; 3] = [
        (ghost.as_bytes(), &["no job record"]),
        (ghost_bytes, &["no job record"]),
        (twin, &["UTF-8"]),
    ];
    w.verdict(&log, &ids, &poisoned).await;
    assert_forged_uncounted(&w).await;
    let out = w.run(&["dead"]).await;
    assert!(
        out.status.success(),
        "restyle dead: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seen: files written outside `out/`. A job id and a batch id that climb out of the
/// output directory, in a queued record, in the batch index and in an announcement: each
/// dies before any path is built, and `restyle report` refuses the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_would_leave_the_output_directory_die_before_any_path_is_built() {
    let w = World::new().await;
    let ids = w.healthy().await;
    let mut c = w.conn();
    let k = w.app.queue.keys();
    // A job id with `../` on a copy of a healthy record.
    let climber = "../../x0";
    for (f, v) in fields_of(&w, &ids[3]).await {
        hset_raw(&w, climber.as_bytes(), &f, &v).await;
    }
    push_ready(&w, climber.as_bytes()).await;
    // A whole batch whose id climbs: its hash, its index entry, a job and an announcement.
    let evil = "../../evil";
    let spec: String = c.hget(k.batch(HEALTHY), "spec").await.unwrap();
    let mut spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    spec["batch_id"] = evil.into();
    spec["on_done"] = serde_json::json!({"webhook": "http://127.0.0.1:9/hook"});
    let batch: Vec<(String, String)> = c.hgetall(k.batch(HEALTHY)).await.unwrap();
    for (f, v) in batch {
        let v = if f == "spec" { spec.to_string() } else { v };
        let _: () = c.hset(k.batch(evil), f, v).await.unwrap();
    }
    let _: () = c.hset(k.batch(evil), "total", 1).await.unwrap();
    let _: () = c.zadd(k.batches(), evil, 1).await.unwrap();
    let job = restyle::job::job_id(evil, 0);
    let payload = serde_json::json!({"v": 1, "batch_id": evil, "index": 0, "prompt": "p"});
    let record = [
        ("state", JobState::Queued.as_str().to_string()),
        ("payload", payload.to_string()),
        ("batch", evil.to_string()),
        ("attempts", "0".to_string()),
    ];
    let _: () = c.hset_multiple(k.job(&job), &record).await.unwrap();
    push_ready(&w, job.as_bytes()).await;
    let announce = format!("done:{evil}:1");
    let record = [
        ("state", JobState::Queued.as_str()),
        ("kind", "batch_done"),
        ("of_batch", evil),
        ("completion", "1"),
        ("attempts", "0"),
    ];
    let _: () = c.hset_multiple(k.job(&announce), &record).await.unwrap();
    push_ready(&w, announce.as_bytes()).await;

    let (_worker, log) = w.worker("w");
    let poisoned: [Poisoned<'_>; 3] = [
        (climber.as_bytes(), &["job id"]),
        (job.as_bytes(), &["batch id"]),
        (announce.as_bytes(), &["batch id"]),
    ];
    w.verdict(&log, &ids, &poisoned).await;
    assert_forged_uncounted(&w).await;
    let out = w.run(&["report", evil]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "the report of {evil:?} is refused as bad input"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("batch id"), "{err}");
    w.assert_nothing_outside();
}
