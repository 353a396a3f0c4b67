//! The console's new-batch form (`/console/new`) spoken to as a browser does, in real
//! `multipart/form-data` over HTTP to a real `serve` on real Redis: a clip upload with
//! prompts, a prompts CSV, reference images, the limits (an oversized clip names
//! `video_file` and its limit, nothing enqueued), CSRF and roles. Also `serve`'s limit on
//! failed tokens per client address and its uploads directory's expiry and bounds.

use crate::clips::Clip;
use crate::helpers::*;
use crate::serve::{
    browser, csrf_of, get, page, sign_in, start, start_state, start_with, upload, OPERATOR, READER,
};
use reqwest::multipart::{Form, Part};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// A 400x300 PNG's signature and header (all the probe and the sniffer read).
fn png(width: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend(width.to_be_bytes());
    png.extend(300u32.to_be_bytes());
    png.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
    png
}

fn file(bytes: Vec<u8>, name: &str, mime: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap()
}

/// Posts the form; returns the status, the `Location` and the page.
async fn post_form(base: &str, cookie: &str, form: Form) -> (u16, Option<String>, String) {
    let res = browser()
        .post(format!("{base}/console/new"))
        .header("cookie", cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location, res.text().await.unwrap())
}

/// Signs in as the operator; returns the cookie and the form's CSRF token.
async fn operator_form(base: &str) -> (String, String) {
    let op = sign_in(base, OPERATOR).await;
    let (status, html) = page(base, "/console/new", &op).await;
    assert_eq!(status, 200);
    (op.clone(), csrf_of(&html))
}

/// The batch's shared spec as stored in Redis.
async fn spec(app: &TestApp, id: &str) -> restyle::model::BatchShared {
    serde_json::from_str(&app.info(id).await.spec_json).expect("the batch's spec")
}

/// The bytes of a batch's stored payload (`media:<sha256>`), read back from Redis.
async fn media_bytes(app: &TestApp, id: &str, source: &str) -> Vec<u8> {
    let sha = source
        .strip_prefix(restyle::media::REF_PREFIX)
        .unwrap_or_else(|| panic!("a stored payload: {source:.80}"));
    let len = spec(app, id).await.media[sha].bytes;
    let bytes = app
        .queue
        .get_media(id, sha, len)
        .await
        .unwrap()
        .expect("the payload is in Redis");
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        sha
    );
    bytes.to_vec()
}

/// Files in the uploads directory (none when it does not exist).
fn uploads(app: &TestApp) -> Vec<String> {
    match std::fs::read_dir(app.out.path().join("uploads")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn after_batch(location: &str) -> &str {
    location
        .strip_prefix("/console/batches/")
        .expect("sent to the batch page")
}

#[tokio::test]
async fn a_clip_upload_and_prompt_lines_start_a_batch_whose_source_is_that_clip() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let (op, csrf) = operator_form(&base).await;
    let (_, html) = page(&base, "/console/new", &op).await;
    for needle in [
        "id=\"new-batch\"",
        "enctype=\"multipart/form-data\"",
        "name=\"video_file\"",
        "name=\"prompts_csv\"",
        "name=\"images\" multiple",
        "select name=\"aspect_ratio\"",
        "button id=\"start\" type=\"submit\"",
    ] {
        assert!(html.contains(needle), "{needle}: {html}");
    }
    let form_at = html.find("id=\"new-batch\"").unwrap();
    let first_input = html[form_at..].find("<input").unwrap() + form_at;
    assert!(
        html[first_input..].starts_with("<input type=\"hidden\" name=\"csrf\""),
        "the CSRF field comes first"
    );

    let clip = Clip::OK.bytes();
    let form = Form::new()
        .text("csrf", csrf)
        .part("video_file", file(clip.clone(), "clip.mp4", "video/mp4"))
        .text("video", "")
        .text("prompts", "neon night\n\n  autumn  \n")
        .part(
            "prompts_csv",
            file(Vec::new(), "", "application/octet-stream"),
        )
        .part("images", file(Vec::new(), "", "application/octet-stream"))
        .text("provider", "aimlapi")
        .text("model", "edit")
        .text("duration", "")
        .text("aspect_ratio", "")
        .text("max_cost", "");
    let (status, location, html) = post_form(&base, &op, form).await;
    assert_eq!(status, 303, "{html}");
    let location = location.unwrap();
    let id = after_batch(&location).to_owned();
    let shared = spec(&app, &id).await;
    assert_eq!(
        media_bytes(&app, &id, &shared.video).await,
        clip,
        "the batch's source is the uploaded clip"
    );
    assert!(
        shared.image_list.is_empty(),
        "empty file inputs add nothing"
    );
    let info = app
        .drive(&app.runtime(), &id, Duration::from_secs(30))
        .await;
    assert_eq!(info.count(restyle::job::JobState::Succeeded), 2);
    let (status, st) = get(&format!("{base}/api/v1/batches/{id}"), Some(READER)).await;
    assert_eq!(status, 200);
    assert_eq!(st["source"]["width"], 1280, "the probe read the clip: {st}");
    let (status, html) = page(&base, &location, &op).await;
    assert_eq!(status, 200);
    assert!(html.contains("neon night") && html.contains("autumn"));
}

#[tokio::test]
async fn prompts_from_a_csv_and_reference_images_reach_the_batch() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let (op, csrf) = operator_form(&base).await;
    let csv = "id,prompt,notes\n1,neon night,x\n2,\"autumn, warm light\",y\n3,,skipped\n4,snow,z\n";
    let (a, b) = (png(400), png(640));
    let form = Form::new()
        .text("csrf", csrf.clone())
        .text("video", "https://media.example.com/clip.mp4")
        .text("prompts", "first from the textarea")
        .part("prompts_csv", file(csv.into(), "prompts.csv", "text/csv"))
        .part("images", file(a.clone(), "a.png", "image/png"))
        .part(
            "images",
            file(b.clone(), "b.png", "application/octet-stream"),
        )
        .text("provider", "aimlapi")
        .text("model", "edit")
        .text("skip_probe", "on");
    let (status, location, html) = post_form(&base, &op, form).await;
    assert_eq!(status, 303, "{html}");
    let id = after_batch(location.as_deref().unwrap()).to_owned();
    assert_eq!(app.info(&id).await.total, 4);
    let lines = crate::serve::get(&format!("{base}/api/v1/batches/{id}/results"), Some(READER))
        .await
        .1;
    let prompts: Vec<&str> = lines["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(
        prompts,
        [
            "first from the textarea",
            "neon night",
            "autumn, warm light",
            "snow"
        ]
    );
    let mut images = Vec::new();
    for source in spec(&app, &id).await.image_list {
        images.push(media_bytes(&app, &id, &source).await);
    }
    assert_eq!(images, [a.clone(), b], "both images, in order");

    // A CSV of several columns and no `prompt` header is refused naming the field.
    let form = Form::new()
        .text("csrf", csrf.clone())
        .text("video", "https://media.example.com/clip.mp4")
        .part(
            "prompts_csv",
            file("a,b\nc,d\n".into(), "p.csv", "text/csv"),
        )
        .text("skip_probe", "on");
    let (status, _, html) = post_form(&base, &op, form).await;
    assert_eq!(status, 422);
    assert!(html.contains("prompts_csv: row 1: 2 columns"), "{html}");
    // Five images: the fifth is refused naming the field and the limit.
    let mut form = Form::new()
        .text("csrf", csrf)
        .text("video", "https://media.example.com/clip.mp4")
        .text("prompts", "p");
    for i in 0..5 {
        form = form.part("images", file(a.clone(), &format!("{i}.png"), "image/png"));
    }
    let (status, _, html) = post_form(&base, &op, form).await;
    assert_eq!(status, 422);
    assert!(
        html.contains("images: at most 4 reference images"),
        "{html}"
    );
    assert_eq!(app.queue.list_batches(0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_oversized_clip_names_video_file_and_the_limit_and_enqueues_nothing() {
    let app = TestApp::new(fast_knobs()).await;
    let mut settings = app.settings.clone();
    settings.limits.max_video_bytes = 4096;
    let base = start_with(&app, settings).await;
    let (op, csrf) = operator_form(&base).await;
    let form = Form::new()
        .text("csrf", csrf)
        .part(
            "video_file",
            file(vec![7u8; 256 * 1024], "big.mp4", "video/mp4"),
        )
        .text("prompts", "kept prompt one\nkept prompt two");
    let (status, _, html) = post_form(&base, &op, form).await;
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("class=\"err\" data-field=\"video_file\""),
        "{html}"
    );
    assert!(
        html.contains("video_file: at most 4096 bytes (limits.max_video_bytes)"),
        "{html}"
    );
    assert!(
        html.contains("kept prompt one\nkept prompt two"),
        "values kept"
    );
    assert_eq!(app.queue.list_batches(0, 10).await.unwrap(), vec![]);
    assert_eq!(uploads(&app), Vec::<String>::new(), "nothing kept of it");
}

#[tokio::test]
async fn an_invalid_batch_shows_the_form_again_with_the_field_and_the_uploaded_clip_kept() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let (op, csrf) = operator_form(&base).await;
    let too_long = "x".repeat(2501);
    let form = Form::new()
        .text("csrf", csrf.clone())
        .part(
            "video_file",
            file(Clip::OK.bytes(), "clip.mov", "video/mp4"),
        )
        .text("prompts", format!("fine\n{too_long}\n"))
        .text("max_cost", "12");
    let (status, _, html) = post_form(&base, &op, form).await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("data-field=\"prompt"), "{html}");
    assert!(html.contains("2500"), "{html}");
    let stored = uploads(&app);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        html.contains(&format!(
            "name=\"video\" size=\"80\" value=\"upload:{}\"",
            stored[0]
        )),
        "the uploaded clip is offered again by reference: {html}"
    );
    assert!(html.contains("value=\"12\""), "values kept");
    assert_eq!(app.queue.list_batches(0, 10).await.unwrap(), vec![]);

    // Both a clip and a URL, and neither: each names video_file.
    let both = Form::new()
        .text("csrf", csrf.clone())
        .part("video_file", file(Clip::OK.bytes(), "c.mp4", "video/mp4"))
        .text("video", "https://media.example.com/clip.mp4")
        .text("prompts", "a");
    let neither = Form::new().text("csrf", csrf.clone()).text("prompts", "a");
    for form in [both, neither] {
        let (status, _, html) = post_form(&base, &op, form).await;
        assert_eq!(status, 422);
        assert!(html.contains("data-field=\"video_file\""), "{html}");
    }
    // A text file as the clip: refused by its type, naming the field.
    let form = Form::new()
        .text("csrf", csrf)
        .part(
            "video_file",
            file(b"<html>".to_vec(), "x.html", "text/html"),
        )
        .text("prompts", "a");
    let (status, _, html) = post_form(&base, &op, form).await;
    assert_eq!(status, 422);
    assert!(
        html.contains("video_file: must be one of video/mp4"),
        "{html}"
    );
    assert_eq!(app.queue.list_batches(0, 10).await.unwrap(), vec![]);
}

#[tokio::test]
async fn the_form_needs_its_csrf_token_first_and_an_operator_session() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let (op, csrf) = operator_form(&base).await;
    let clip = || file(Clip::OK.bytes(), "clip.mp4", "video/mp4");
    let cases = [
        (
            "no CSRF token",
            Form::new().part("video_file", clip()).text("prompts", "a"),
        ),
        (
            "a wrong one",
            Form::new()
                .text("csrf", "0".repeat(64))
                .part("video_file", clip())
                .text("prompts", "a"),
        ),
        (
            "the right one after the file",
            Form::new()
                .part("video_file", clip())
                .text("csrf", csrf.clone())
                .text("prompts", "a"),
        ),
        (
            "none with a URL",
            Form::new()
                .text("video", "https://media.example.com/clip.mp4")
                .text("prompts", "a"),
        ),
    ];
    for (what, form) in cases {
        let (status, _, html) = post_form(&base, &op, form).await;
        assert_eq!(status, 403, "{what}: {html}");
        assert!(html.contains("CSRF"), "{what}: {html}");
    }
    assert_eq!(
        uploads(&app),
        Vec::<String>::new(),
        "no file bytes accepted"
    );

    let reader = sign_in(&base, READER).await;
    assert_eq!(page(&base, "/console/new", &reader).await.0, 403);
    let (_, html) = page(&base, "/console/batches", &reader).await;
    let form = Form::new()
        .text("csrf", csrf_of(&html))
        .part("video_file", clip())
        .text("prompts", "a");
    let (status, _, html) = post_form(&base, &reader, form).await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("operator"), "{html}");
    let signed_out = browser()
        .post(format!("{base}/console/new"))
        .multipart(Form::new().text("prompts", "a"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303, "signed out: sent to sign in");
    assert_eq!(uploads(&app), Vec::<String>::new());
    assert_eq!(app.queue.list_batches(0, 10).await.unwrap(), vec![]);
}

/// A client whose connections come from `ip` (any 127/8 address is this machine).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn sign_in_from(client: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    client
        .post(format!("{base}/console/signin"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn failed_tokens_are_limited_per_client_address_and_other_clients_still_get_in() {
    let app = TestApp::new(fast_knobs()).await;
    let mut settings = app.settings.clone();
    settings.serve.auth_failures_per_minute = 3;
    let base = start_with(&app, settings).await;

    let guesser = client_from("127.0.0.2");
    for i in 0..3 {
        let res = sign_in_from(&guesser, &base, &format!("guess-{i}")).await;
        assert_eq!(res.status(), 401, "failure {i} is within the limit");
    }
    let res = sign_in_from(&guesser, &base, "guess-3").await;
    assert_eq!(res.status(), 429);
    let wait = retry_after(&res);
    assert!(
        (1..=20).contains(&wait),
        "one cell back in 60 s / 3: {wait}"
    );
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Too many failed sign-ins"));
    let res = sign_in_from(&guesser, &base, OPERATOR).await;
    assert_eq!(
        res.status(),
        429,
        "locked out: not even a good token is looked at"
    );
    assert!(res.headers().get("set-cookie").is_none());

    let other = client_from("127.0.0.1");
    let res = sign_in_from(&other, &base, OPERATOR).await;
    assert_eq!(res.status(), 303, "another address signs in");

    // Bad bearer tokens on the API count the same way, per address.
    let api = client_from("127.0.0.3");
    let batches = format!("{base}/api/v1/batches");
    let call = |token: &'static str| api.get(&batches).bearer_auth(token).send();
    for _ in 0..3 {
        assert_eq!(call("wrong").await.unwrap().status(), 401);
    }
    let res = call("wrong").await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(retry_after(&res) >= 1);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many failed tokens"),
        "{body}"
    );
    assert_eq!(call(READER).await.unwrap().status(), 429);
    let res = other
        .get(&batches)
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the good token works from another address"
    );
    let res = client_from("127.0.0.4").get(&batches).send().await.unwrap();
    assert_eq!(
        res.status(),
        401,
        "no token at all is not counted as a guess"
    );
}

/// Waits until `path` is gone, with a deadline.
async fn gone(path: &Path, within: Duration) {
    let end = Instant::now() + within;
    while path.exists() {
        assert!(Instant::now() < end, "{} still there", path.display());
        poll_interval().await;
    }
}

#[tokio::test]
async fn unused_uploads_expire_after_the_setting() {
    let app = TestApp::new(fast_knobs()).await;
    let mut settings = app.settings.clone();
    settings.serve.upload_ttl = Duration::from_millis(400);
    let (base, _state) = start_state(&app, settings, None).await;
    let dir = app.out.path().join("uploads");
    let (status, up) = upload(&base, OPERATOR, "video/mp4", vec![1u8; 2048]).await;
    assert_eq!(status, 201, "{up}");
    let first = dir.join(up["upload"].as_str().unwrap().trim_start_matches("upload:"));
    assert!(first.is_file());
    gone(&first, Duration::from_secs(20)).await;
    // A batch naming it now is refused: it is gone, not half there.
    let body = serde_json::json!({ "video": up["upload"], "prompts": ["a"] });
    let (status, err) =
        crate::serve::post(&format!("{base}/api/v1/batches"), Some(OPERATOR), &body).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no such upload"));
}

#[tokio::test]
async fn the_uploads_directory_is_bounded_in_files_and_bytes() {
    let app = TestApp::new(fast_knobs()).await;
    let mut settings = app.settings.clone();
    settings.serve.max_uploads = 2;
    let base = start_with(&app, settings).await;
    for i in 0..2u8 {
        let (status, up) = upload(&base, OPERATOR, "video/mp4", vec![i + 2; 2048]).await;
        assert_eq!(status, 201, "{up}");
    }
    let (status, full) = upload(&base, OPERATOR, "video/mp4", vec![9u8; 2048]).await;
    assert_eq!(status, 507, "{full}");
    assert_eq!(full["error"]["field"], "body");
    let message = full["error"]["message"].as_str().unwrap();
    assert!(message.contains("(2, serve.max_uploads)"), "{message}");
    assert_eq!(uploads(&app).len(), 2);
    // The form's clip is held to the same bound, naming its field.
    let (op, csrf) = operator_form(&base).await;
    let form = Form::new()
        .text("csrf", csrf)
        .part(
            "video_file",
            file(Clip::OK.bytes(), "clip.mp4", "video/mp4"),
        )
        .text("prompts", "a");
    let (status, _, html) = post_form(&base, &op, form).await;
    assert_eq!(status, 507);
    assert!(
        html.contains("video_file: the uploads directory holds its most files"),
        "{html}"
    );

    // Bytes: a directory bound of 3000 bytes holds one 2048-byte upload, not two.
    let app = TestApp::new(fast_knobs()).await;
    let mut settings = app.settings.clone();
    settings.serve.max_upload_bytes = 3000;
    let base = start_with(&app, settings).await;
    let (status, _) = upload(&base, OPERATOR, "video/mp4", vec![5u8; 2048]).await;
    assert_eq!(status, 201);
    let (status, full) = upload(&base, OPERATOR, "video/mp4", vec![6u8; 2048]).await;
    assert_eq!(status, 507, "{full}");
    let message = full["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("(3000, serve.max_upload_bytes)"),
        "{message}"
    );
    assert_eq!(uploads(&app).len(), 1, "nothing kept of the refused one");
}
