//! A worker killed (SIGKILL, a real process) while it streams an output into the bucket
//! leaves no object under the output's name: the multipart upload is still incomplete
//! (listed by S3's ListMultipartUploads) and invisible. The redelivered job writes under
//! a name of its own delivery, so nothing the first one did is overwritten.

use super::*;
use restyle::job::JobState;

#[tokio::test]
async fn a_worker_killed_mid_upload_leaves_no_object_under_the_final_name() {
    let knobs = restyle::sim::Knobs {
        // The output's body stops after 1000 bytes and the connection stays open.
        output_stall_after: Some(1000),
        ..fast_knobs()
    };
    let (mut app, bucket) = store_app(knobs).await;
    app.test = app
        .test
        .clone()
        .set("queue.lease", Duration::from_secs(2))
        .set("queue.renew_every", Duration::from_millis(500))
        .set("output.idle_timeout", Duration::from_secs(600));
    app.settings = app.test.settings();
    app.enqueue("killed", &prompts(1)).await;
    let logs = tempfile::tempdir().unwrap();
    let mut worker = app.spawn_worker(1, &logs.path().join("w.log"));
    let moto = Moto::shared();
    let id = restyle::job::job_id("killed", 0);
    let started = format!("runs/killed/{id}.d");
    let (b, n) = (bucket.clone(), started.clone());
    eventually("the upload has started", Duration::from_secs(60), || {
        let (b, n) = (b.clone(), n.clone());
        async move {
            moto.uploads_in_progress(&b)
                .await
                .iter()
                .any(|k| k.starts_with(&n))
        }
    })
    .await;
    let uploads = moto.uploads_in_progress(&bucket).await;
    let name = uploads
        .iter()
        .find(|k| k.starts_with(&started))
        .unwrap()
        .clone();
    worker.child.kill().unwrap(); // SIGKILL
    worker.child.wait().unwrap();

    let listed = objects(&app, "killed").await;
    assert!(
        listed.iter().all(|(k, _)| !k.ends_with(".mp4")),
        "an output object after a killed upload: {listed:?}"
    );
    assert!(
        moto.uploads_in_progress(&bucket).await.contains(&name),
        "the killed upload stays incomplete, invisible"
    );

    // Another worker takes the job back when the lease runs out; it finishes under a name
    // of its own claim.
    let mut k = app.sim.knobs();
    k.output_stall_after = None;
    app.sim.set_knobs(k);
    let again = app.spawn_worker(1, &logs.path().join("w2.log"));
    let info = app.wait_finished("killed", Duration::from_secs(60)).await;
    drop(again);
    assert_eq!(info.count(JobState::Succeeded), 1, "{:?}", info.counts);
    let mp4s: Vec<String> = objects(&app, "killed")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(".mp4"))
        .collect();
    assert_eq!(mp4s.len(), 1, "{mp4s:?}");
    assert_ne!(
        format!("runs/{}", mp4s[0]),
        name,
        "a name of its own delivery"
    );
}
