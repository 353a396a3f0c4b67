//! The console's review: the contact sheet of a batch run against the simulator, keep and
//! reject marks (API and forms, CSRF and roles), the one download of the kept outputs
//! (unzipped with the crate that wrote it and compared by SHA-256 with the files), the
//! output route's checks, the live events' ETA and cost, and the state filters. Real
//! Redis, real HTTP; the app runs in this process on a loopback port.

use crate::helpers::*;
use crate::serve::{browser, call, csrf_of, get, page, sign_in, start, OPERATOR, READER};
use restyle::job::JobState;
use restyle::sim::Knobs;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(crate) fn put_mark(base: &str, batch: &str, job: &str) -> String {
    format!("{base}/api/v1/batches/{batch}/marks/{job}")
}

/// Posts a keep/reject form of the sheet; returns the status.
async fn mark_form(
    base: &str,
    cookie: &str,
    csrf: &str,
    batch: &str,
    job: &str,
    mark: &str,
) -> u16 {
    browser()
        .post(format!("{base}/console/batches/{batch}/marks/{job}"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf), ("mark", mark)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The figures of a sheet: job id → (state, mark) (`data-mark` absent: "").
fn figures(html: &str) -> BTreeMap<String, (String, String)> {
    let attr = |tag: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        tag.find(&key)
            .map(|at| {
                let rest = &tag[at + key.len()..];
                rest[..rest.find('"').unwrap()].to_owned()
            })
            .unwrap_or_default()
    };
    html.split("<figure class=\"variant\"")
        .skip(1)
        .map(|f| {
            let tag = &f[..f.find('>').unwrap()];
            (
                attr(tag, "data-job"),
                (attr(tag, "data-state"), attr(tag, "data-mark")),
            )
        })
        .collect()
}

/// The entries of a zip (name → bytes), read with async_zip through its central directory
/// (the `read` reader, deprecated for the newer `read1`, which 0.0.19 leaves half-done).
#[allow(deprecated)]
pub(crate) async fn unzip(bytes: Vec<u8>) -> BTreeMap<String, Vec<u8>> {
    use futures::AsyncReadExt;
    let mut zip = async_zip::base::read::seek::ZipFileReader::new(futures::io::Cursor::new(bytes))
        .await
        .expect("a readable zip");
    let mut out = BTreeMap::new();
    for i in 0..zip.file().entries().len() {
        let name = zip.file().entries()[i]
            .filename()
            .as_str()
            .unwrap()
            .to_owned();
        let mut r = zip.reader_with_entry(i).await.unwrap();
        let mut data = Vec::new();
        r.read_to_end(&mut data).await.unwrap();
        out.insert(name, data);
    }
    out
}

pub(crate) fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[tokio::test]
async fn a_finished_batch_is_reviewed_marked_and_its_kept_outputs_downloaded() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let ps = prompts(4);
    app.enqueue("review", &ps).await;
    app.enqueue("other", &prompts(1)).await;
    let rt = app.runtime();
    app.drive(&rt, "review", Duration::from_secs(60)).await;
    app.drive(&rt, "other", Duration::from_secs(60)).await;
    let job = |i: u32| restyle::job::job_id("review", i);

    // The sheet: every variant with its video, prompt and state; finished; the controls.
    let op = sign_in(&base, OPERATOR).await;
    let res = browser()
        .get(format!("{base}/console/batches/review"))
        .header("cookie", &op)
        .send()
        .await
        .unwrap();
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("media-src 'self'"), "{csp}");
    let html = res.text().await.unwrap();
    let figs = figures(&html);
    assert_eq!(figs.len(), 4, "{html}");
    assert!(figs
        .values()
        .all(|(s, m)| s == JobState::Succeeded.as_str() && m.is_empty()));
    for (i, p) in ps.iter().enumerate() {
        let src = format!(
            "src=\"/console/batches/review/jobs/{}/output\"",
            job(i as u32)
        );
        assert!(html.contains(&src), "{src}");
        assert!(html.contains(p.as_str()));
    }
    assert!(
        html.contains("id=\"batch-state\" data-finished=\"true\""),
        "{html}"
    );
    for el in [
        "id=\"download-kept\"",
        "id=\"cancel\"",
        "id=\"retry\"",
        "id=\"source\"",
    ] {
        assert!(html.contains(el), "{el}");
    }
    assert!(html.contains("href=\"/console/batches/review/kept.zip\" download=\"review-kept.zip\""));
    let csrf = csrf_of(&html);

    // Marks over the API: an operator writes, a reader reads, bad ones name the field.
    let (status, body) = call(
        reqwest::Method::PUT,
        &put_mark(&base, "review", &job(0)),
        Some(OPERATOR),
        Some(&json!({ "mark": "keep" })),
    )
    .await;
    assert_eq!(
        (status, body["mark"].as_str()),
        (200, Some("keep")),
        "{body}"
    );
    let (status, _) = call(
        reqwest::Method::PUT,
        &put_mark(&base, "review", &job(3)),
        Some(READER),
        Some(&json!({ "mark": "keep" })),
    )
    .await;
    assert_eq!(status, 403, "a read-only token cannot mark");
    let (status, body) = call(
        reqwest::Method::PUT,
        &put_mark(&base, "review", &job(3)),
        Some(OPERATOR),
        Some(&json!({ "mark": "maybe" })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("mark")),
        "{body}"
    );
    for bad in ["review.00099", "other.00000", "nonsense"] {
        let (status, body) = call(
            reqwest::Method::PUT,
            &put_mark(&base, "review", bad),
            Some(OPERATOR),
            Some(&json!({ "mark": "keep" })),
        )
        .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (404, Some("job_id")),
            "{bad}: {body}"
        );
    }
    let (status, _) = call(
        reqwest::Method::PUT,
        &put_mark(&base, "review", &job(3)),
        None,
        Some(&json!({ "mark": "keep" })),
    )
    .await;
    assert_eq!(status, 401);

    // Marks from the sheet's forms: CSRF and the operator role are required.
    assert_eq!(
        mark_form(&base, &op, "", "review", &job(1), "keep").await,
        403,
        "no CSRF token"
    );
    let reader = sign_in(&base, READER).await;
    let (_, rhtml) = page(&base, "/console/batches/review", &reader).await;
    assert!(
        !rhtml.contains("name=\"mark\""),
        "no mark buttons for a read token"
    );
    let rcsrf = csrf_of(&rhtml);
    assert_eq!(
        mark_form(&base, &reader, &rcsrf, "review", &job(1), "keep").await,
        403
    );
    assert_eq!(
        mark_form(&base, &op, &csrf, "review", &job(1), "keep").await,
        303
    );
    assert_eq!(
        mark_form(&base, &op, &csrf, "review", &job(3), "keep").await,
        303
    );
    // The page's script posts the same form asking for JSON.
    let res = browser()
        .post(format!("{base}/console/batches/review/marks/{}", job(2)))
        .header("cookie", &op)
        .header("accept", "application/json")
        .form(&[("csrf", csrf.as_str()), ("mark", "reject")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["mark"], "reject");
    // And clears one.
    let (status, _) = call(
        reqwest::Method::PUT,
        &put_mark(&base, "review", &job(3)),
        Some(OPERATOR),
        Some(&json!({ "mark": "none" })),
    )
    .await;
    assert_eq!(status, 200);

    let (status, marks) = get(&format!("{base}/api/v1/batches/review/marks"), Some(READER)).await;
    assert_eq!(status, 200);
    assert_eq!(
        marks["marks"],
        json!({ job(0): "keep", job(1): "keep", job(2): "reject" }),
        "{marks}"
    );
    let (_, html) = page(&base, "/console/batches/review", &op).await;
    let figs = figures(&html);
    let shown: Vec<&str> = (0..4).map(|i| figs[&job(i)].1.as_str()).collect();
    assert_eq!(
        shown,
        ["keep", "keep", "reject", ""],
        "server-rendered marks"
    );

    // One download of the kept ones: exactly their outputs, byte for byte, and a manifest.
    let res = browser()
        .get(format!("{base}/console/batches/review/kept.zip"))
        .header("cookie", &op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/zip");
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("filename=\"review-kept.zip\""));
    let entries = unzip(res.bytes().await.unwrap().to_vec()).await;
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    let want = [format!("{}.mp4", job(0)), format!("{}.mp4", job(1))];
    assert_eq!(names, ["manifest.json", want[0].as_str(), want[1].as_str()]);
    for i in 0..2 {
        let Some(Ok(rec)) = app.queue.job(&job(i)).await.unwrap() else {
            panic!("record of {}", job(i));
        };
        let on_disk = std::fs::read(app.settings.output.dir.join(rec.file.unwrap())).unwrap();
        let zipped = &entries[&want[i as usize]];
        assert_eq!(sha(zipped), sha(&on_disk), "{}", want[i as usize]);
        assert_eq!(Some(sha(zipped)), rec.sha256);
    }
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[1]["job_id"], job(1));
    assert_eq!(files[1]["prompt"], ps[1].as_str());
    assert_eq!(files[1]["file"], want[1].as_str());

    // The API's download, for any token; none without one.
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/batches/review/kept.zip"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let again = unzip(res.bytes().await.unwrap().to_vec()).await;
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        entries.keys().collect::<Vec<_>>()
    );
    let (status, _) = get(&format!("{base}/api/v1/batches/review/kept.zip"), None).await;
    assert_eq!(status, 401);
    let signed_out = browser()
        .get(format!("{base}/console/batches/review/kept.zip"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 401);

    // The batch's purge takes its marks with it.
    app.queue.purge_batch("review").await.unwrap();
    assert!(app.queue.marks("review").await.unwrap().is_empty());
    assert_eq!(
        app.queue
            .set_mark("review", &job(0), Some(restyle::queue::Mark::Keep))
            .await
            .unwrap(),
        restyle::queue::MarkSet::NoBatch
    );
    assert!(
        app.queue.marks("review").await.unwrap().is_empty(),
        "nothing written for a gone batch"
    );
}

#[tokio::test]
async fn the_output_route_needs_a_session_and_serves_only_the_batch_s_own_outputs() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    app.enqueue("mine", &prompts(1)).await;
    app.enqueue("theirs", &prompts(1)).await;
    let rt = app.runtime();
    app.drive(&rt, "mine", Duration::from_secs(60)).await;
    app.drive(&rt, "theirs", Duration::from_secs(60)).await;
    let reader = sign_in(&base, READER).await;
    let fetch = |path: String, cookie: Option<String>| {
        let base = base.clone();
        async move {
            let mut req = browser().get(format!("{base}{path}"));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.bytes().await.unwrap().to_vec())
        }
    };
    let own = "/console/batches/mine/jobs/mine.00000/output".to_owned();
    let (status, bytes) = fetch(own.clone(), Some(reader.clone())).await;
    assert_eq!(status, 200);
    let Some(Ok(rec)) = app.queue.job("mine.00000").await.unwrap() else {
        panic!("record");
    };
    assert_eq!(Some(sha(&bytes)), rec.sha256, "the job's own output");
    assert_eq!(fetch(own.clone(), None).await.0, 401, "needs a session");
    for path in [
        "/console/batches/mine/jobs/theirs.00000/output",
        "/console/batches/mine/jobs/mine.00007/output",
        "/console/batches/mine/jobs/..%2F..%2Fetc%2Fpasswd/output",
        "/console/batches/nobatch/jobs/nobatch.00000/output",
    ] {
        assert_eq!(
            fetch(path.to_owned(), Some(reader.clone())).await.0,
            404,
            "{path}"
        );
    }
    // A record naming another file is not followed: only the name the workers make.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}job:mine.00000", app.queue.keys().prefix());
    let _: () = redis::AsyncCommands::hset(&mut c, &key, "file", "theirs/theirs.00000.mp4")
        .await
        .unwrap();
    assert_eq!(fetch(own, Some(reader)).await.0, 404);
}

/// A mark is about one output: `retry` gives the job a new run, and its old mark (here a
/// *keep* set while it had failed) went with it into `kept.zip`'s choice. Now the retried
/// job's mark is dropped; the other jobs' marks stay.
#[tokio::test]
async fn a_retried_job_loses_the_mark_of_its_old_output() {
    use restyle::queue::Mark;
    let app = TestApp::new(Knobs {
        fail_prompts_containing: Some("FAIL".into()),
        ..fast_knobs()
    })
    .await;
    let ps = vec!["a red fox".to_owned(), "a blue whale FAIL".to_owned()];
    app.enqueue("remark", &ps).await;
    let rt = app.runtime();
    let info = app.drive(&rt, "remark", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Failed), 1, "{:?}", info.counts);
    let (ok, failed) = ("remark.00000", "remark.00001");
    for job in [ok, failed] {
        app.queue
            .set_mark("remark", job, Some(Mark::Keep))
            .await
            .unwrap();
    }
    app.run_ok(&["retry", "remark", "--state", "failed"]);
    let marks = app.queue.marks("remark").await.unwrap();
    assert_eq!(marks.get(ok), Some(&Mark::Keep), "{marks:?}");
    assert_eq!(marks.get(failed), None, "{marks:?}");
}

/// The one download's bounds, reached: more kept variants than an archive holds (1000),
/// and kept outputs whose recorded sizes add up past 8 GiB. Each is refused with 413
/// naming the limit before a byte of zip is sent.
#[tokio::test]
async fn kept_zip_refuses_more_files_or_bytes_than_one_download_holds() {
    use restyle::queue::Mark;
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let n = 1001;
    app.enqueue("many", &prompts(n)).await;
    for i in 0..n as u32 {
        let job = restyle::model::job_id("many", i);
        app.queue
            .set_mark("many", &job, Some(Mark::Keep))
            .await
            .unwrap();
    }
    let (status, body) = get(
        &format!("{base}/api/v1/batches/many/kept.zip"),
        Some(READER),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["field"], "marks");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1001") && message.contains("1000"),
        "{message}"
    );

    // Two real outputs whose records (planted) say 5 GiB each.
    app.enqueue("huge", &prompts(2)).await;
    let rt = app.runtime();
    app.drive(&rt, "huge", Duration::from_secs(60)).await;
    let mut c = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for i in 0..2 {
        let job = restyle::model::job_id("huge", i);
        app.queue
            .set_mark("huge", &job, Some(Mark::Keep))
            .await
            .unwrap();
        let key = format!("{}job:{job}", app.queue.keys().prefix());
        let _: () = redis::AsyncCommands::hset(&mut c, &key, "bytes", 5u64 << 30)
            .await
            .unwrap();
    }
    let (status, body) = get(
        &format!("{base}/api/v1/batches/huge/kept.zip"),
        Some(READER),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&(8u64 << 30).to_string()), "{message}");
}

/// A reviewer scrubbing through a variant: the browser asks for byte ranges, and the
/// route sent the whole file with a 200 each time (no `Accept-Ranges`), so seeking in a
/// local output did not work.
#[tokio::test]
async fn an_output_answers_range_requests_so_the_player_can_seek() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    app.enqueue("seek", &prompts(1)).await;
    let rt = app.runtime();
    app.drive(&rt, "seek", Duration::from_secs(60)).await;
    let reader = sign_in(&base, READER).await;
    let url = format!("{base}/console/batches/seek/jobs/seek.00000/output");
    let whole = browser()
        .get(&url)
        .header("cookie", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    let h = whole.headers().clone();
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(h["cache-control"], "private, max-age=300");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline"));
    let bytes = whole.bytes().await.unwrap().to_vec();
    assert!(bytes.len() > 200, "a real clip");
    let len = bytes.len();
    let ranged = |range: String| {
        let (url, reader) = (url.clone(), reader.clone());
        async move { crate::serve::get_range(&url, &reader, &range).await }
    };
    let (status, range, part) = ranged("bytes=100-199".into()).await;
    assert_eq!(status, 206);
    assert_eq!(range, Some(format!("bytes 100-199/{len}")));
    assert_eq!(part, bytes[100..200]);
    let (status, _, tail) = ranged("bytes=-50".into()).await;
    assert_eq!(status, 206);
    assert_eq!(tail, bytes[len - 50..]);
    let (status, range, _) = ranged(format!("bytes={}-", len + 10)).await;
    assert_eq!(status, 416, "a range past the end");
    assert_eq!(range, Some(format!("bytes */{len}")));
    // Ranges do not loosen the checks: still only with a session.
    let res = browser()
        .get(&url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

/// Steps the worker until `done` jobs of the batch are terminal (with a deadline).
async fn drive_until_done(app: &TestApp, rt: &restyle::worker::Runtime, batch: &str, done: u64) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let restyle::worker::Stepped::Processed = restyle::worker::step(rt).await.unwrap() {
            continue;
        }
        let info = app.info(batch).await;
        if info.done >= done {
            return;
        }
        assert!(Instant::now() < end, "{batch}: {:?}", info.counts);
        poll_interval().await;
    }
}

#[tokio::test]
async fn live_events_carry_eta_cost_pauses_and_variants_and_filters_show_one_state() {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let app = TestApp::new(Knobs {
        fail_prompts_containing: Some("FAIL".into()),
        stuck_prompts_containing: Some("STUCK".into()),
        ..fast_knobs()
    })
    .await;
    let base = start(&app).await;
    let ps = vec![
        "a red fox in the snow".to_owned(),
        "a blue whale FAIL".to_owned(),
        "a green forest".to_owned(),
        "a STUCK generation".to_owned(),
    ];
    app.enqueue("live", &ps).await;
    let rt = app.runtime();
    drive_until_done(&app, &rt, "live", 3).await;
    let until = app.queue.now_ms() + 3_600_000;
    app.queue
        .set_provider_pause("aimlapi", "out of credits on the account", until)
        .await
        .unwrap();

    let op = sign_in(&base, OPERATOR).await;
    let res = browser()
        .get(format!("{base}/console/batches/live/events"))
        .header("cookie", &op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut events = res.bytes_stream().eventsource();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first.event, "progress");
    let d: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(
        (d["done"].as_u64(), d["finished"].as_bool()),
        (Some(3), Some(false)),
        "{d}"
    );
    assert!(
        d["eta_seconds"].is_u64(),
        "an ETA from the finished jobs: {d}"
    );
    assert_ne!(d["eta"], "—");
    for k in ["spent", "reserved", "budget", "text", "unpriced_jobs"] {
        assert!(d["cost"].get(k).is_some(), "cost.{k}: {d}");
    }
    assert!(d["cost"]["text"].as_str().unwrap().contains("reserved"));
    let paused: Vec<&Value> = d["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["provider"] == "aimlapi")
        .collect();
    assert_eq!(paused.len(), 1, "{d}");
    assert_eq!(paused[0]["paused"], "out of credits on the account");
    assert!(d["provider_lines"][0].as_str().unwrap().contains("paused"));
    let vs = d["variants"].as_array().unwrap();
    assert_eq!(vs.len(), 4, "every variant in the first event");
    let by_job = |job: &str| vs.iter().find(|v| v["job"] == job).unwrap().clone();
    let ok = by_job("live.00000");
    assert_eq!(ok["state"], JobState::Succeeded.as_str());
    assert_eq!(ok["output"], "/console/batches/live/jobs/live.00000/output");
    let failed = by_job("live.00001");
    assert!(
        failed["output"].is_null() && !failed["error"].as_str().unwrap().is_empty(),
        "{failed}"
    );

    // The page: each filter shows only its state; the sheet shows the same ETA field.
    let (_, all) = page(&base, "/console/batches/live", &op).await;
    assert_eq!(figures(&all).len(), 4);
    assert!(all.contains("id=\"batch-state\" data-finished=\"false\""));
    assert!(
        all.contains("out of credits on the account"),
        "the pause on the page"
    );
    for (state, want) in [(JobState::Succeeded, 2), (JobState::Failed, 1)] {
        let (status, html) = page(
            &base,
            &format!("/console/batches/live?state={}", state.as_str()),
            &op,
        )
        .await;
        assert_eq!(status, 200);
        let figs = figures(&html);
        assert_eq!(figs.len(), want, "{state:?}: {figs:?}");
        assert!(figs.values().all(|(s, _)| s == state.as_str()), "{figs:?}");
        assert!(html.contains(&format!(
            "class=\"filter on\" data-state=\"{}\"",
            state.as_str()
        )));
    }
    let (status, _) = page(&base, "/console/batches/live?state=bogus", &op).await;
    assert_eq!(status, 400);

    // Cancelling the stuck one finishes the batch: the stream says so (no ETA) and ends.
    let (status, _) = call(
        reqwest::Method::POST,
        &format!("{base}/api/v1/batches/live/cancel"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if e.event == "progress" {
                seen.push(serde_json::from_str::<Value>(&e.data).unwrap());
            }
        }
        seen
    })
    .await
    .expect("the stream ends once the batch is finished");
    let last = rest.last().expect("an update after the cancel");
    assert_eq!(last["finished"], true);
    assert!(last["eta_seconds"].is_null());
    let changed: Vec<&Value> = rest
        .iter()
        .flat_map(|e| e["variants"].as_array().unwrap())
        .collect();
    assert!(
        changed
            .iter()
            .any(|v| v["job"] == "live.00003" && v["state"] == JobState::Cancelled.as_str()),
        "the changed variant is sent: {changed:?}"
    );
    assert!(
        !changed.iter().any(|v| v["job"] == "live.00000"),
        "unchanged ones are not sent again"
    );
}
