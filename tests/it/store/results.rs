//! A batch's results in the bucket: outputs sha256-checked through the S3 API, one result
//! object per job, the JSONL and contact sheet; a local source uploaded once and sent by
//! URL (to Kling, which takes URLs only); two workers on different directories, one store.

use super::*;
use restyle::job::JobState;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_batch_ends_with_every_result_in_the_bucket_sha256_checked() {
    let (app, _bucket) = store_app(fast_knobs()).await;
    let n = 4;
    app.enqueue("inbucket", &prompts(n)).await;
    let rt = app.runtime();
    let info = app.drive(&rt, "inbucket", Duration::from_secs(60)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );

    let store = store_of(&app);
    let listed = objects(&app, "inbucket").await;
    let mp4s: Vec<&(String, u64)> = listed.iter().filter(|(k, _)| k.ends_with(".mp4")).collect();
    assert_eq!(mp4s.len(), n, "one output per job: {listed:?}");
    for i in 0..n as u32 {
        let id = restyle::job::job_id("inbucket", i);
        let Some(Ok(rec)) = app.queue.job(&id).await.unwrap() else {
            panic!("no record of {id}");
        };
        let file = rec.file.clone().expect("file recorded");
        let claim = file
            .strip_prefix(&format!("inbucket/{id}.d"))
            .and_then(|r| r.strip_suffix(".mp4"));
        assert!(
            claim.is_some_and(|c| c.parse::<u64>().is_ok()),
            "{file}: named by job and claim"
        );
        let body = store
            .get(&file, 1 << 30)
            .await
            .unwrap()
            .expect("output in the bucket");
        let sha = hex::encode(Sha256::digest(&body));
        assert_eq!(
            Some(&sha),
            rec.sha256.as_ref(),
            "{file}: the bucket holds what was hashed"
        );
        assert_eq!(rec.bytes, Some(body.len() as u64));
        let result = store
            .get(&format!("inbucket/results/{id}.json"), 1 << 20)
            .await
            .unwrap()
            .expect("one result object per job");
        let line: restyle::sink::ResultLine = serde_json::from_slice(&result).unwrap();
        assert_eq!(
            (line.state, line.sha256.as_ref()),
            (JobState::Succeeded, Some(&sha))
        );
    }
    let results: Vec<_> = listed
        .iter()
        .filter(|(k, _)| k.contains("/results/"))
        .collect();
    assert_eq!(results.len(), n, "{listed:?}");

    // The JSONL and the page, regenerated as jobs finished, complete once the batch is.
    let s = store.clone();
    eventually(
        "results.jsonl lists every job",
        Duration::from_secs(20),
        || {
            let s = s.clone();
            async move {
                let got = s
                    .get("inbucket/results.jsonl", 1 << 20)
                    .await
                    .ok()
                    .flatten();
                got.is_some_and(|b| String::from_utf8_lossy(&b).lines().count() == n)
            }
        },
    )
    .await;
    let page = store
        .get("inbucket/index.html", 1 << 22)
        .await
        .unwrap()
        .unwrap();
    let page = String::from_utf8_lossy(&page);
    let first = restyle::job::job_id("inbucket", 0);
    let Some(Ok(rec)) = app.queue.job(&first).await.unwrap() else {
        panic!("no record");
    };
    let name = rec.file.unwrap().rsplit('/').next().unwrap().to_string();
    assert!(
        page.contains(&format!("src=\"./{name}\"")),
        "relative links that work from the bucket"
    );

    // `restyle results` reads the bucket; nothing landed in the local directory.
    let out = app.cmd().args(["results", "inbucket"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout);
    assert_eq!(lines.lines().count(), n, "{lines}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("s3://"),
        "says where it read from"
    );
    let report = app.cmd().args(["report", "inbucket"]).output().unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let page_url = String::from_utf8_lossy(&report.stdout);
    assert!(
        page_url.trim().ends_with("/runs/inbucket/index.html"),
        "{page_url}"
    );
    let local = files_under(app.out.path());
    assert!(local.is_empty(), "nothing written locally: {local:?}");
}

#[tokio::test]
async fn presigned_links_on_the_sheet_fetch_the_outputs() {
    let (mut app, _bucket) = store_app(fast_knobs()).await;
    app.test = app
        .test
        .clone()
        .set("output.link_ttl", Duration::from_secs(600));
    app.settings = app.test.settings();
    app.enqueue("signed", &prompts(2)).await;
    let rt = app.runtime();
    app.drive(&rt, "signed", Duration::from_secs(60)).await;
    let store = store_of(&app);
    let page = store
        .get("signed/index.html", 1 << 22)
        .await
        .unwrap()
        .unwrap();
    let page = String::from_utf8_lossy(&page).replace("&amp;", "&");
    let link = page
        .split("src=\"")
        .skip(1)
        .filter_map(|s| s.split_once('"').map(|(l, _)| l.to_string()))
        .find(|l| l.contains("X-Amz-Signature"))
        .expect("a presigned video link");
    let body = Moto::shared().client().get(&link).send().await.unwrap();
    assert!(body.status().is_success(), "{link}: {}", body.status());
    let bytes = body.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\x00\x00\x00"), "an MP4 comes back");
}

/// Kling takes videos by URL only: without a store a local clip is refused at enqueue;
/// with one it is uploaded once for the whole batch and every job sends a URL to it.
#[tokio::test]
async fn a_local_clip_is_uploaded_once_and_kling_gets_a_url() {
    const AK: &str = "ak-store";
    const SK: &str = "sk-store";
    let knobs = restyle::sim::Knobs {
        api_keys: vec![API_KEY.to_string(), format!("{AK}:{SK}")],
        ..fast_knobs()
    };
    let (mut app, _bucket) = store_app(knobs).await;
    let sim = app.sim.base_url();
    app.test = app
        .test
        .clone()
        .set("providers.kling.base_url", sim.as_str())
        .set("providers.kling.access_key", AK)
        .set("providers.kling.secret_key", SK);
    app.settings = app.test.settings();
    let clip = app.out.path().join("clip.mp4");
    let bytes = crate::clips::padded(300_000);
    std::fs::write(&clip, &bytes).unwrap();
    let n = 3;
    let enqueue = |store: bool| {
        let mut cmd = app.cmd();
        if !store {
            cmd.env("RESTYLE__OUTPUT__STORE", "");
        }
        cmd.args(["enqueue", "--batch-id", "klocal", "--provider", "kling"])
            .arg("--video")
            .arg(&clip);
        for p in prompts(n) {
            cmd.args(["--prompt", &p]);
        }
        cmd.output().unwrap()
    };
    let refused = enqueue(false);
    assert!(
        !refused.status.success(),
        "kling takes no local file without a store"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("https URL only"));
    for _ in 0..2 {
        let ok = enqueue(true);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
    let rt = app.runtime();
    let info = app.drive(&rt, "klocal", Duration::from_secs(60)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );
    let c = &app.sim.stats().by_provider["kling"];
    assert_eq!(
        (c.submissions_total, c.validation_errors_total),
        (n as u64, 0)
    );
    assert!(
        c.request_bytes_total < 4096 * n as u64,
        "{} bytes sent: the clip went in a body",
        c.request_bytes_total
    );
    // One object for the source (two enqueues, three jobs), the clip's very bytes.
    let sources = objects(&app, "klocal/source").await;
    assert_eq!(sources.len(), 1, "{sources:?}");
    let got = store_of(&app)
        .get(&sources[0].0, 1 << 24)
        .await
        .unwrap()
        .unwrap();
    assert!(got == bytes, "the stored source is the clip");
    // And not in Redis.
    let mut c = app.queue.connection();
    let pattern = format!("{}media:klocal:*", app.queue.keys().prefix());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

/// Two worker processes with their own output directories and one bucket: every result
/// lands in the bucket once, none on either machine's disk; `results` reads it; once the
/// batch's retention is over, `status` says where the results are.
#[tokio::test]
async fn two_workers_on_different_disks_fill_one_bucket_once() {
    let (mut app, bucket) = store_app(fast_knobs()).await;
    app.test = app
        .test
        .clone()
        .set("output.retention", Duration::from_secs(2));
    app.settings = app.test.settings();
    let n = 8;
    let other = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let spawn = |dir: &Path, name: &str| {
        let mut cmd = app.cmd();
        cmd.env("RESTYLE__OUTPUT__DIR", dir)
            .args(["worker", "--concurrency", "4"])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(logs.path().join(name)).unwrap());
        WorkerProc {
            child: cmd.spawn().unwrap(),
        }
    };
    let a = spawn(app.out.path(), "a.log");
    let b = spawn(other.path(), "b.log");
    app.enqueue("twoboxes", &prompts(n)).await;
    let info = app.wait_finished("twoboxes", Duration::from_secs(90)).await;
    assert_eq!(
        info.count(JobState::Succeeded),
        n as u64,
        "{:?}",
        info.counts
    );

    let listed = objects(&app, "twoboxes").await;
    let mp4s = listed.iter().filter(|(k, _)| k.ends_with(".mp4")).count();
    let results = listed
        .iter()
        .filter(|(k, _)| k.contains("/results/"))
        .count();
    assert_eq!((mp4s, results), (n, n), "{listed:?}");
    for dir in [app.out.path(), other.path()] {
        let local = files_under(dir);
        let ours: Vec<_> = local
            .iter()
            .filter(|p| p.starts_with(dir.join("twoboxes")))
            .collect();
        assert!(ours.is_empty(), "nothing on a worker's disk: {ours:?}");
    }
    let out = app.cmd().args(["results", "twoboxes"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n);

    // The workers' retention timer removes the finished batch from Redis.
    let q = app.queue.clone();
    eventually(
        "the batch expires from Redis",
        Duration::from_secs(30),
        || {
            let q = q.clone();
            async move { q.batch("twoboxes").await.unwrap().is_none() }
        },
    )
    .await;
    let st = app.cmd().args(["status", "twoboxes"]).output().unwrap();
    let said = String::from_utf8_lossy(&st.stderr);
    assert!(said.contains("expired"), "{said}");
    assert!(
        said.contains(&format!("s3://{bucket}/runs/twoboxes/")),
        "{said}"
    );
    // Its results still read from the bucket.
    let out = app.cmd().args(["results", "twoboxes"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n);
    drop((a, b));
}
