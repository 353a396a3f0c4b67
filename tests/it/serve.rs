//! `restyle serve`: the HTTP API over real Redis and the simulator, reached with real HTTP
//! (reqwest). Most tests run the app in this process on a loopback port with known
//! tokens; the generated-token test runs the built binary.

use crate::helpers::*;
use restyle::config::{ApiToken, Role};
use restyle::serve::{auth, router, AppState};
use serde_json::{json, Value};
use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const OPERATOR: &str = "op-token-4d1f9a2c7e";
pub(crate) const READER: &str = "read-token-8b3e6f0a1d";

pub(crate) fn entry(name: &str, token: &str, role: Role) -> ApiToken {
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(auth::hash_token(token), &mut sha256).unwrap();
    ApiToken {
        name: name.into(),
        role,
        sha256,
    }
}

/// The app in this process, on a free loopback port; returns its base URL.
pub(crate) async fn start(app: &TestApp) -> String {
    start_with(app, app.settings.clone()).await
}

pub(crate) async fn start_with(app: &TestApp, settings: restyle::config::Settings) -> String {
    start_state(app, settings, None).await.0
}

/// [`start_with`], with results in `store` (an object store) instead of the directory.
pub(crate) async fn start_full(
    app: &TestApp,
    settings: restyle::config::Settings,
    store: Option<Arc<restyle::sink::store::ObjectSink>>,
) -> String {
    start_state(app, settings, store).await.0
}

/// [`start_full`], also returning the state (and running the uploads sweeper, as
/// `restyle serve` does). The server knows each client's address, as `serve`'s does.
pub(crate) async fn start_state(
    app: &TestApp,
    settings: restyle::config::Settings,
    store: Option<Arc<restyle::sink::store::ObjectSink>>,
) -> (String, Arc<AppState>) {
    let state = Arc::new(AppState::new(
        settings,
        app.queue.clone(),
        restyle::upstream::build_all(&app.settings).expect("providers"),
        store,
        vec![
            entry("ops", OPERATOR, Role::Operator),
            entry("viewer", READER, Role::Read),
        ],
    ));
    (serve_state(state.clone()).await, state)
}

/// Serves `state` on a free loopback port (another console process, in effect); returns
/// its base URL.
pub(crate) async fn serve_state(state: Arc<AppState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let sweeper = restyle::serve::upload::spawn_sweeper(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
        sweeper.abort();
    });
    format!("http://{addr}")
}

pub(crate) fn batch_body(prompts: &[String]) -> Value {
    json!({
        "video": "https://media.example.com/clip.mp4",
        "prompts": prompts,
        "skip_probe": true,
    })
}

pub(crate) async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub(crate) async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    call(reqwest::Method::GET, url, token, None).await
}

pub(crate) async fn post(url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    call(reqwest::Method::POST, url, token, Some(body)).await
}

#[tokio::test]
async fn api_calls_without_a_valid_token_get_401_and_health_is_open() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let batches = format!("{base}/api/v1/batches");
    for token in [None, Some("not-a-token"), Some("")] {
        let (status, body) = get(&batches, token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("token"));
    }
    let (status, _) = post(&batches, Some("wrong"), &batch_body(&prompts(1))).await;
    assert_eq!(status, 401);
    let (status, _) = get(&format!("{base}/api/v1/openapi.json"), None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&format!("{base}/healthz"), None).await;
    assert_eq!(status, 200);
    assert_eq!(app.queue.list_batches(0, 10).await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_read_only_token_reads_but_gets_403_on_every_mutating_call() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    app.enqueue("existing", &prompts(1)).await;
    let batches = format!("{base}/api/v1/batches");
    let (status, body) = post(&batches, Some(READER), &batch_body(&prompts(2))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("read-only"));
    for action in ["cancel", "retry", "budget"] {
        let url = format!("{batches}/existing/{action}");
        let (status, _) = post(&url, Some(READER), &json!({ "max_cost": 1 })).await;
        assert_eq!(status, 403, "{action}");
    }
    let (status, body) = get(&batches, Some(READER)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["existing"], "the refused create added nothing");
    let info = app.info("existing").await;
    assert_eq!(info.count(restyle::job::JobState::Cancelled), 0);
    let resume = format!("{base}/api/v1/providers/aimlapi/resume");
    assert_eq!(post(&resume, Some(READER), &json!({})).await.0, 403);
    let (status, view) = get(&format!("{base}/api/v1/providers"), Some(READER)).await;
    assert_eq!(status, 200);
    assert!(view["providers"]["aimlapi"]["in_flight"].is_u64(), "{view}");
    assert!(view["queue"]["ready"].is_u64(), "{view}");
    let (status, dead) = get(&format!("{base}/api/v1/dead"), Some(READER)).await;
    assert_eq!(
        (status, dead["jobs"].as_array().map(Vec::len)),
        (200, Some(0))
    );
}

#[tokio::test]
async fn create_status_results_round_trip_against_the_simulator() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let batches = format!("{base}/api/v1/batches");
    let body = batch_body(&prompts(3));
    let (status, created) = post(&batches, Some(OPERATOR), &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["added"], 3);
    let id = created["batch_id"].as_str().unwrap().to_owned();
    // The same batch again: the same derived id, nothing added.
    let (status, again) = post(&batches, Some(OPERATOR), &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["batch_id"], id.as_str());
    assert_eq!(again["added"], 0);
    assert_eq!(app.info(&id).await.total, 3);

    app.drive(&app.runtime(), &id, Duration::from_secs(30))
        .await;
    let (status, st) = get(&format!("{batches}/{id}"), Some(READER)).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["finished"], true);
    assert_eq!(st["counts"]["succeeded"], 3, "{st}");
    // The same data as `restyle status --json`.
    let out = app.cmd().args(["status", &id, "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "batch_id", "total", "done", "finished", "counts", "failures",
    ] {
        assert_eq!(st[k], cli[k], "{k}");
    }
    let (status, res) = get(&format!("{batches}/{id}/results"), Some(READER)).await;
    assert_eq!(status, 200);
    let lines = res["results"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["state"] == "succeeded"), "{res}");
    assert_eq!(lines[1]["prompt"], prompts(3)[1].as_str());
}

#[tokio::test]
async fn an_invalid_batch_gets_400_naming_field_and_limit_and_enqueues_nothing() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let batches = format!("{base}/api/v1/batches");
    let long = vec!["x".repeat(2501)];
    let cases = [
        (batch_body(&long), "prompt", "2500"),
        (
            json!({ "video": "./clip.mp4", "prompts": ["a"], "skip_probe": true }),
            "video",
            "https",
        ),
        (
            json!({ "video": "file:///etc/passwd", "prompts": ["a"] }),
            "video",
            "https",
        ),
        (
            json!({ "video": "https://media.example.com/c.mp4", "prompts": ["a"],
                    "images": ["/etc/hosts"] }),
            "images[0]",
            "https",
        ),
        (
            json!({ "video": "https://media.example.com/c.mp4", "prompts": ["a"], "colour": 1 }),
            "body",
            "colour",
        ),
    ];
    for (body, field, says) in cases {
        let (status, err) = post(&batches, Some(OPERATOR), &body).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{field}: {message}");
    }
    assert_eq!(app.queue.list_batches(0, 10).await.unwrap(), vec![]);
}

#[tokio::test]
async fn every_documented_path_is_routed_and_operator_actions_work() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    app.enqueue("docs", &prompts(2)).await;
    let (status, doc) = get(&format!("{base}/api/v1/openapi.json"), Some(READER)).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 11, "{paths:?}");
    let mut seen = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let path_here = path
                .replace("{batch_id}", "docs")
                .replace("{job_id}", "docs.00000")
                .replace("{provider}", "aimlapi");
            let url = format!("{base}{path_here}");
            let m: reqwest::Method = method.to_uppercase().parse().unwrap();
            let body = if path.ends_with("budget") {
                json!({ "max_cost": 5 })
            } else {
                json!({ "mark": "keep" })
            };
            let with_body = (m == reqwest::Method::POST && path.ends_with("budget"))
                || m == reqwest::Method::PUT;
            let body = with_body.then_some(&body);
            let (status, answer) = call(m.clone(), &url, Some(OPERATOR), body).await;
            assert!(
                status != 404 && status != 405,
                "{method} {path}: {status} {answer}"
            );
            seen.push(format!("{method} {path} {status}"));
        }
    }
    let info = app.info("docs").await;
    assert_eq!(info.count(restyle::job::JobState::Cancelled), 2, "{seen:?}");
    assert_eq!(info.max_cost.map(|u| u.to_string()), Some("$5.00".into()));
}

#[tokio::test]
async fn serve_prints_a_generated_token_once_and_never_logs_it() {
    let app = TestApp::new(fast_knobs()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = app
        .cmd()
        .args(["--log-format", "json", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let end = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    let token = loop {
        let line = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .expect("serve prints its token");
        lines.push(line.clone());
        if let Some((_, t)) = line.split_once("(shown once): ") {
            break t.trim().to_owned();
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < end, "serve did not answer");
        poll_interval().await;
    }
    let batches = format!("{base}/api/v1/batches");
    assert_eq!(get(&batches, None).await.0, 401);
    let (status, created) = post(&batches, Some(&token), &batch_body(&prompts(1))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(get(&batches, Some(&token)).await.0, 200);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let with_token: Vec<&String> = lines.iter().filter(|l| l.contains(&token)).collect();
    assert_eq!(with_token.len(), 1, "{with_token:?}");
    assert!(
        !with_token[0].starts_with('{'),
        "the token went through the logs"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Batch enqueued over the API.")),
        "logs were captured: {lines:?}"
    );
}

#[tokio::test]
async fn hash_token_gives_the_digest_that_serve_accepts_from_settings() {
    let app = TestApp::new(fast_knobs()).await;
    let token = "team-token-5e7a1c9b3f";
    let mut child = app
        .cmd()
        .args(["serve", "--hash-token"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{token}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(digest, auth::hash_token(token));
    assert_eq!(digest.len(), 64);

    let cfg = app.out.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("default.toml"),
        format!("[[serve.tokens]]\nname = \"team\"\nrole = \"read\"\nsha256 = \"{digest}\"\n"),
    )
    .unwrap();
    let shown = app.cmd().arg("check-config").output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.contains("\"name\":\"team\""), "{shown}");
    assert!(!shown.contains(&digest), "{shown}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = app
        .cmd()
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(30);
    while !matches!(reqwest::get(format!("{base}/healthz")).await, Ok(r) if r.status() == 200) {
        assert!(Instant::now() < end, "serve did not answer");
        poll_interval().await;
    }
    let batches = format!("{base}/api/v1/batches");
    assert_eq!(get(&batches, Some(token)).await.0, 200);
    assert_eq!(
        get(&batches, Some(&digest)).await.0,
        401,
        "the digest is no token"
    );
    assert_eq!(
        post(&batches, Some(token), &batch_body(&prompts(1)))
            .await
            .0,
        403
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let out = serve.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("shown once"),
        "configured tokens: none generated: {err}"
    );
}

pub(crate) async fn upload(base: &str, token: &str, mime: &str, bytes: Vec<u8>) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/uploads"))
        .bearer_auth(token)
        .header("content-type", mime)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_uploaded_clip_makes_a_batch_that_runs_and_is_the_same_batch_again() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let clip = crate::clips::Clip::OK.bytes();
    let (status, up) = upload(&base, READER, "video/mp4", clip.clone()).await;
    assert_eq!(status, 403, "{up}");
    let (status, up) = upload(&base, OPERATOR, "video/mp4", clip.clone()).await;
    assert_eq!(status, 201, "{up}");
    let reference = up["upload"].as_str().unwrap().to_owned();
    assert_eq!(up["bytes"], clip.len());
    let stored = app
        .out
        .path()
        .join("uploads")
        .join(reference.trim_start_matches("upload:"));
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        clip,
        "streamed to the output dir whole"
    );

    let batches = format!("{base}/api/v1/batches");
    let body = json!({ "video": reference, "prompts": prompts(2) });
    let (status, created) = post(&batches, Some(OPERATOR), &body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["batch_id"].as_str().unwrap().to_owned();
    let (status, again) = post(&batches, Some(OPERATOR), &body).await;
    assert_eq!(
        (status, again["batch_id"].as_str()),
        (200, Some(id.as_str()))
    );
    let info = app
        .drive(&app.runtime(), &id, Duration::from_secs(30))
        .await;
    assert_eq!(info.count(restyle::job::JobState::Succeeded), 2);
    let (_, st) = get(&format!("{batches}/{id}"), Some(READER)).await;
    assert_eq!(
        st["source"]["width"], 1280,
        "the probe read the uploaded clip: {st}"
    );
}

#[tokio::test]
async fn oversized_or_mistyped_uploads_and_bad_references_are_refused() {
    let app = TestApp::new(fast_knobs()).await;
    let mut settings = app.settings.clone();
    settings.limits.max_video_bytes = 4096;
    let base = start_with(&app, settings).await;
    let (status, err) = upload(&base, OPERATOR, "video/mp4", vec![0u8; 64 * 1024]).await;
    assert_eq!(status, 413, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("4096"),
        "{err}"
    );
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limits.max_video_bytes"));
    let left: Vec<_> = std::fs::read_dir(app.out.path().join("uploads"))
        .unwrap()
        .collect();
    assert!(
        left.is_empty(),
        "nothing kept of a refused upload: {left:?}"
    );
    let (status, err) = upload(&base, OPERATOR, "text/html", b"<html>".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["field"], "content-type");
    let batches = format!("{base}/api/v1/batches");
    for (video, says) in [
        ("upload:../../etc/passwd", "upload:<sha256>"),
        (&*format!("upload:{}.mp4", "a".repeat(64)), "no such upload"),
    ] {
        let body = json!({ "video": video, "prompts": ["a"] });
        let (status, err) = post(&batches, Some(OPERATOR), &body).await;
        assert_eq!(status, 400, "{video}: {err}");
        assert_eq!(err["error"]["field"], "video");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(says),
            "{err}"
        );
    }
    assert_eq!(app.queue.list_batches(0, 10).await.unwrap(), vec![]);
}

/// A client that shows redirects instead of following them.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in to the console; returns the session cookie (`name=value`).
/// Console sessions were in the serving process's memory: one console replica only, and
/// a restart signed everyone out. Now they are in Redis, so a sign-in at one console is
/// good at another on the same Redis; the id is stored only as its SHA-256; signing out
/// anywhere ends it everywhere; and a console whose tokens no longer include the one
/// signed in with (or demote it) refuses (or demotes) the session.
#[tokio::test]
async fn a_session_is_good_at_every_console_until_it_or_its_token_ends() {
    let app = TestApp::new(fast_knobs()).await;
    let (a, b) = (start(&app).await, start(&app).await);
    let cookie = sign_in(&a, OPERATOR).await;
    let (status, body) = page(&b, "/console/batches", &cookie).await;
    assert_eq!(status, 200);
    assert!(body.contains("signed in as ops (operator)"), "{body}");

    // Redis holds the id's digest, never the id.
    let id = cookie.split_once('=').unwrap().1.to_owned();
    let mut c = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = app.queue.keys().prefix().to_owned();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(keys.iter().all(|k| !k.contains(&id)), "{keys:?}");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()));
    let key = format!("{prefix}session:{digest}");
    assert!(keys.contains(&key), "{keys:?}");
    let fields: Vec<String> = redis::cmd("HVALS")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(fields
        .iter()
        .all(|f| !f.contains(&id) && !f.contains(OPERATOR)));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 12 * 3600 * 1000, "{ttl}");

    // A console with the token demoted shows a read-only session; one without it, none.
    let tokens = |t: Vec<ApiToken>| {
        Arc::new(AppState::new(
            app.settings.clone(),
            app.queue.clone(),
            restyle::upstream::build_all(&app.settings).unwrap(),
            None,
            t,
        ))
    };
    let demoted = serve_state(tokens(vec![entry("ops", OPERATOR, Role::Read)])).await;
    let (status, body) = page(&demoted, "/console/batches", &cookie).await;
    assert_eq!(status, 200);
    assert!(body.contains("signed in as ops (read)"), "{body}");
    assert_eq!(page(&demoted, "/console/new", &cookie).await.0, 403);
    let without = serve_state(tokens(vec![entry("viewer", READER, Role::Read)])).await;
    let res = browser()
        .get(format!("{without}/console/batches"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "to the sign-in page");

    // Signing out at b ends the session at a too.
    let (_, body) = page(&b, "/console/batches", &cookie).await;
    let csrf = csrf_of(&body);
    let out = browser()
        .post(format!("{b}/console/signout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let res = browser()
        .get(format!("{a}/console/batches"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed out everywhere");
    let left: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// Behind the TLS-terminating proxy the deployment files assume, the session cookie is
/// `Secure` (it was never, so a browser would send it over plain http too); on plain http
/// it is not, or no browser would keep it.
#[tokio::test]
async fn the_session_cookie_is_secure_when_the_proxy_says_https() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let cookie = |proto: Option<&'static str>| {
        let base = base.clone();
        async move {
            let mut req = browser()
                .post(format!("{base}/console/signin"))
                .form(&[("token", READER)]);
            if let Some(p) = proto {
                req = req.header("x-forwarded-proto", p);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 303);
            res.headers()["set-cookie"].to_str().unwrap().to_owned()
        }
    };
    let tls = cookie(Some("https")).await;
    assert!(
        tls.contains("; Secure;") && tls.contains("HttpOnly"),
        "{tls}"
    );
    for plain in [cookie(None).await, cookie(Some("http")).await] {
        assert!(!plain.contains("Secure"), "{plain}");
    }
}

pub(crate) async fn sign_in(base: &str, token: &str) -> String {
    let res = browser()
        .post(format!("{base}/console/signin"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

/// A signed-in GET of `url` for the byte `range`: status, `Content-Range` and body.
pub(crate) async fn get_range(
    url: &str,
    cookie: &str,
    range: &str,
) -> (u16, Option<String>, Vec<u8>) {
    let res = browser()
        .get(url)
        .header("cookie", cookie)
        .header("range", range)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let content_range = res
        .headers()
        .get("content-range")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, content_range, res.bytes().await.unwrap().to_vec())
}

pub(crate) async fn page(base: &str, path: &str, cookie: &str) -> (u16, String) {
    let res = browser()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

pub(crate) async fn submit(base: &str, path: &str, cookie: &str, csrf: &str) -> u16 {
    browser()
        .post(format!("{base}{path}"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub(crate) fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test]
async fn console_signs_in_with_a_token_lists_batches_and_cancels_with_csrf() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let ps = prompts(2);
    app.enqueue("console-batch", &ps).await;

    let res = browser()
        .get(format!("{base}/console/batches"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed out: sent to sign in");
    assert_eq!(res.headers()["location"], "/console/signin");
    let res = browser()
        .get(format!("{base}/console/signin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let res = browser()
        .post(format!("{base}/console/signin"))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("set-cookie").is_none());

    let reader = sign_in(&base, READER).await;
    let (status, list) = page(&base, "/console/batches", &reader).await;
    assert_eq!(status, 200);
    assert!(list.contains("/console/batches/console-batch"), "{list}");
    let (status, html) = page(&base, "/console/batches/console-batch", &reader).await;
    assert_eq!(status, 200);
    assert!(html.contains(&ps[1]), "the variants are listed: {html}");
    assert!(
        !html.contains("Cancel batch"),
        "no operator buttons for a read token"
    );
    let csrf = csrf_of(&html);
    assert_eq!(
        submit(
            &base,
            "/console/batches/console-batch/cancel",
            &reader,
            &csrf
        )
        .await,
        403
    );

    let op = sign_in(&base, OPERATOR).await;
    let (_, html) = page(&base, "/console/batches/console-batch", &op).await;
    assert!(html.contains("Cancel batch"));
    let csrf = csrf_of(&html);
    let cancel = "/console/batches/console-batch/cancel";
    assert_eq!(submit(&base, cancel, &op, "").await, 403, "no CSRF token");
    assert_eq!(
        submit(&base, cancel, &op, &"0".repeat(64)).await,
        403,
        "a wrong one"
    );
    assert_eq!(
        app.info("console-batch")
            .await
            .count(restyle::job::JobState::Cancelled),
        0
    );
    assert_eq!(submit(&base, cancel, &op, &csrf).await, 303);
    assert_eq!(
        app.info("console-batch")
            .await
            .count(restyle::job::JobState::Cancelled),
        2
    );

    assert_eq!(submit(&base, "/console/signout", &op, &csrf).await, 303);
    assert_eq!(
        page(&base, "/console/batches", &op).await.0,
        303,
        "the session ended"
    );
    assert_eq!(
        page(&base, "/console/batches", &reader).await.0,
        200,
        "others stay"
    );
}

#[tokio::test]
async fn operator_page_shows_a_provider_pause_and_resumes_it() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let until = app.queue.now_ms() + 3_600_000;
    app.queue
        .set_provider_pause("aimlapi", "insufficient credits on the account", until)
        .await
        .unwrap();
    let reader = sign_in(&base, READER).await;
    let (status, html) = page(&base, "/console/operator", &reader).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("insufficient credits on the account"),
        "{html}"
    );
    assert!(html.contains("Ready") && html.contains("Dead jobs"));
    assert!(!html.contains(">Resume<"), "no resume for a read token");
    let csrf = csrf_of(&html);
    let resume = "/console/providers/aimlapi/resume";
    assert_eq!(submit(&base, resume, &reader, &csrf).await, 403);

    let op = sign_in(&base, OPERATOR).await;
    let (_, html) = page(&base, "/console/operator", &op).await;
    assert!(html.contains(">Resume<"), "{html}");
    let csrf = csrf_of(&html);
    assert_eq!(submit(&base, resume, &op, "").await, 403);
    assert!(app.queue.provider_pause("aimlapi").await.unwrap().is_some());
    assert_eq!(submit(&base, resume, &op, &csrf).await, 303);
    assert!(app.queue.provider_pause("aimlapi").await.unwrap().is_none());
    let (_, html) = page(&base, "/console/operator", &op).await;
    assert!(!html.contains("insufficient credits"));
}

#[tokio::test]
async fn the_batch_page_follows_progress_by_server_sent_events_until_finished() {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    app.enqueue("live", &prompts(2)).await;
    let op = sign_in(&base, OPERATOR).await;
    let res = browser()
        .get(format!("{base}/console/batches/live"))
        .header("cookie", &op)
        .send()
        .await
        .unwrap();
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = res.text().await.unwrap();
    let at = html.find("<script nonce=\"").expect("the live script") + 15;
    let nonce = &html[at..at + 32];
    assert!(
        csp.contains(&format!("script-src 'nonce-{nonce}'")),
        "{csp}"
    );
    assert!(html.contains("id=\"count-succeeded\""), "{html}");
    let signed_out = browser()
        .get(format!("{base}/console/batches/live/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 401);

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
    let first: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(
        (first["finished"].as_bool(), first["total"].as_u64()),
        (Some(false), Some(2))
    );
    let rt = app.runtime();
    let follow = async {
        let mut seen = vec![first];
        while let Some(e) = events.next().await {
            let e = e.unwrap();
            if e.event == "progress" {
                seen.push(serde_json::from_str::<Value>(&e.data).unwrap());
            }
        }
        seen
    };
    let (seen, _) = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join(follow, app.drive(&rt, "live", Duration::from_secs(30))),
    )
    .await
    .expect("the stream ends once the batch is finished");
    let last = seen.last().unwrap();
    assert_eq!(last["finished"], true, "{seen:?}");
    assert_eq!(last["counts"]["succeeded"], 2);
    assert!(seen.len() >= 2, "updates arrived while it ran");
}

#[tokio::test]
async fn an_oversized_create_body_gets_413_in_json_and_enqueues_nothing() {
    let app = TestApp::new(fast_knobs()).await;
    let base = start(&app).await;
    let many: Vec<String> = (0..2500)
        .map(|i| format!("{i} {}", "y".repeat(2000)))
        .collect();
    let (status, err) = post(
        &format!("{base}/api/v1/batches"),
        Some(OPERATOR),
        &batch_body(&many),
    )
    .await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["field"], "body");
    let limit = restyle::serve::MAX_BODY_BYTES.to_string();
    assert!(
        err["error"]["message"].as_str().unwrap().contains(&limit),
        "{err}"
    );
    assert_eq!(app.queue.list_batches(0, 10).await.unwrap(), vec![]);
}
