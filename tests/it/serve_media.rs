//! The console's media beside the review: the source clip stored with a batch (sent from
//! Redis, or linked when it is an https URL), and with an object store the outputs'
//! presigned redirects (the store's origin in the page's CSP) and the kept download
//! streamed from the bucket (moto's S3 server, see `store`). Real Redis, real HTTP.

use crate::helpers::*;
use crate::serve::{browser, call, page, sign_in, start, OPERATOR, READER};
use crate::serve_review::{put_mark, sha, unzip};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn the_source_clip_stored_with_the_batch_is_shown_beside_the_variants() {
    use base64::Engine;
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let clip: Vec<u8> = (0..=255u8).cycle().take(50_000).collect();
    let mut b = app.batch("withsource", &prompts(1));
    b.shared.video = format!(
        "data:video/mp4;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&clip)
    );
    restyle::producer::enqueue(&app.queue, &b).await.unwrap();
    app.enqueue("byurl", &prompts(1)).await;
    let reader = sign_in(&base, READER).await;
    let (_, html) = page(&base, "/console/batches/withsource", &reader).await;
    assert!(
        html.contains("src=\"/console/batches/withsource/source\""),
        "{html}"
    );
    let res = browser()
        .get(format!("{base}/console/batches/withsource/source"))
        .header("cookie", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "video/mp4");
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    assert_eq!(
        sha(&res.bytes().await.unwrap()),
        sha(&clip),
        "the stored clip"
    );
    // Byte ranges, so the player can seek in the source as in the variants.
    let url = format!("{base}/console/batches/withsource/source");
    let ranged = |range: &'static str| crate::serve::get_range(&url, &reader, range);
    let (status, range, part) = ranged("bytes=1000-1999").await;
    assert_eq!(
        (status, range.as_deref()),
        (206, Some("bytes 1000-1999/50000"))
    );
    assert_eq!(part, clip[1000..2000]);
    let (status, _, tail) = ranged("bytes=49990-").await;
    assert_eq!(status, 206);
    assert_eq!(tail, clip[49_990..]);
    let (status, range, _) = ranged("bytes=60000-").await;
    assert_eq!((status, range.as_deref()), (416, Some("bytes */50000")));
    // Several ranges at once are answered with the whole clip (as RFC 9110 allows).
    let (status, _, whole) = ranged("bytes=0-9,20-29").await;
    assert_eq!((status, whole.len()), (200, clip.len()));
    let signed_out = browser()
        .get(format!("{base}/console/batches/withsource/source"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 401);
    // A clip named by URL is linked, not fetched.
    let (_, html) = page(&base, "/console/batches/byurl", &reader).await;
    assert!(
        html.contains("href=\"https://media.example.com/clip.mp4\""),
        "{html}"
    );
    let (status, _) = page(&base, "/console/batches/byurl/source", &reader).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn with_an_object_store_outputs_redirect_to_presigned_links_and_kept_zip_streams_them() {
    let (app, _bucket) = crate::store::store_app(fast_knobs()).await;
    let store = crate::store::store_of(&app);
    let base = crate::serve::start_full(&app, app.settings.clone(), Some(store.clone())).await;
    app.enqueue("instore", &prompts(3)).await;
    let rt = app.runtime();
    app.drive(&rt, "instore", Duration::from_secs(60)).await;
    let job = |i: u32| restyle::job::job_id("instore", i);
    for i in [0, 2] {
        let (status, _) = call(
            reqwest::Method::PUT,
            &put_mark(&base, "instore", &job(i)),
            Some(OPERATOR),
            Some(&json!({ "mark": "keep" })),
        )
        .await;
        assert_eq!(status, 200);
    }
    let op = sign_in(&base, OPERATOR).await;
    let res = browser()
        .get(format!("{base}/console/batches/instore"))
        .header("cookie", &op)
        .send()
        .await
        .unwrap();
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let moto = crate::store::Moto::shared().endpoint();
    assert!(
        csp.contains(&format!("media-src 'self' {moto};")),
        "the store's origin may serve media: {csp}"
    );
    let res = browser()
        .get(format!(
            "{base}/console/batches/instore/jobs/{}/output",
            job(0)
        ))
        .header("cookie", &op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 307);
    let link = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(link.starts_with(&moto), "{link}");
    let Some(Ok(rec)) = app.queue.job(&job(0)).await.unwrap() else {
        panic!("record");
    };
    let fetched = crate::store::Moto::shared()
        .client()
        .get(&link)
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200, "the presigned link works");
    assert_eq!(Some(sha(&fetched.bytes().await.unwrap())), rec.sha256);

    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/batches/instore/kept.zip"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let entries = unzip(res.bytes().await.unwrap().to_vec()).await;
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    let want = [format!("{}.mp4", job(0)), format!("{}.mp4", job(2))];
    assert_eq!(names, [want[0].as_str(), want[1].as_str(), "manifest.json"]);
    for (i, name) in [(0, &want[0]), (2, &want[1])] {
        let Some(Ok(rec)) = app.queue.job(&job(i)).await.unwrap() else {
            panic!("record");
        };
        let in_bucket = store
            .get(&rec.file.unwrap(), 1 << 30)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sha(&entries[name]), sha(&in_bucket), "{name}");
        assert_eq!(Some(sha(&entries[name])), rec.sha256);
    }
}
