//! Secrets of the console and API never leak: `restyle serve` runs as a real process
//! with two API tokens configured (by digest), provider keys and the push secret planted
//! in its environment and debug logs on. The test signs in (a console session cookie: a
//! credential too), fails a sign-in and API calls with a planted wrong token, starts a
//! batch a real worker finishes, and fetches every page and API answer. Then it searches
//! all of it — the pages and JSON, serve's logs, a dump of the namespace, every file
//! written — for each secret in its obvious encodings. A token's digest in settings is
//! not secret (it is what settings hold), so it is not searched for.

use super::secrets::{dump_namespace, encodings, files_under};
use crate::helpers::*;
use restyle::serve::auth;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const OPERATOR: &str = "op-planted-6a2c9e1f7b3d";
const READER: &str = "rd-planted-0d4b8f2a6c1e";
const WRONG: &str = "wrong-planted-5e7c3a9b1d";
const FAL: &str = "fal-planted-serve-3b7d";
const KLING_SK: &str = "sk-planted-serve-8e2a";
const PUSH: &str = "push-planted-serve-4c6e8a0b";

struct Serve {
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that keeps cookies away from redirects: the test handles Set-Cookie itself.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn no_token_session_or_key_shows_in_any_page_log_record_or_file() {
    let app = TestApp::new(fast_knobs()).await;
    let cfg = app.out.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("default.toml"),
        format!(
            "[[serve.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n\n\
             [[serve.tokens]]\nname = \"viewer\"\nrole = \"read\"\nsha256 = \"{}\"\n",
            auth::hash_token(OPERATOR),
            auth::hash_token(READER)
        ),
    )
    .unwrap();
    let port = restyle::localredis::free_port().expect("a free port");
    let log_path = app.out.path().join("serve.log");
    let serve = Serve {
        child: app
            .cmd()
            .args(["--log-format", "json", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "debug")
            .env("FAL_KEY", FAL)
            .env("RESTYLE__PROVIDERS__KLING__SECRET_KEY", KLING_SK)
            .env("KLING_ACCESS_KEY", "ak-not-secret-here")
            .env("RESTYLE__PUSH__SECRET", PUSH)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    };
    let base = format!("http://127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(30);
    while !matches!(reqwest::get(format!("{base}/healthz")).await, Ok(r) if r.status() == 200) {
        assert!(Instant::now() < end, "serve did not answer");
        poll_interval().await;
    }
    let http = client();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut keep = |label: &str, status: u16, headers: String, body: String| {
        seen.push((format!("{label} ({status})"), format!("{headers}\n{body}")));
        status
    };
    macro_rules! fetch {
        ($label:expr, $req:expr) => {{
            let res = $req.send().await.expect("request");
            let status = res.status().as_u16();
            let headers = format!("{:?}", res.headers());
            let body = res.text().await.unwrap();
            keep($label, status, headers, body.clone());
            (status, body)
        }};
    }
    let api = format!("{base}/api/v1");

    // The API: a wrong token, a read token where operator is needed, then real work.
    let (s, _) = fetch!(
        "api wrong token",
        http.get(format!("{api}/batches")).bearer_auth(WRONG)
    );
    assert_eq!(s, 401);
    let body = serde_json::json!({
        "batch_id": "leak-check",
        "video": "https://media.example.com/clip.mp4",
        "prompts": ["a watercolour city", "neon rain"],
        "skip_probe": true,
    });
    let (s, _) = fetch!(
        "api create as reader",
        http.post(format!("{api}/batches"))
            .bearer_auth(READER)
            .json(&body)
    );
    assert_eq!(s, 403);
    let (s, created) = fetch!(
        "api create",
        http.post(format!("{api}/batches"))
            .bearer_auth(OPERATOR)
            .json(&body)
    );
    assert_eq!(s, 201, "{created}");
    let worker = app.spawn_worker(4, &app.out.path().join("worker.log"));
    app.wait_finished("leak-check", Duration::from_secs(60))
        .await;

    // The console: a failed sign-in (the page must not echo the token back), a real one.
    let (s, _) = fetch!(
        "console wrong sign-in",
        http.post(format!("{base}/console/signin"))
            .form(&[("token", WRONG)])
    );
    assert!(s == 401 || s == 403, "wrong sign-in answered {s}");
    let res = http
        .post(format!("{base}/console/signin"))
        .form(&[("token", OPERATOR)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303, "sign-in redirects");
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next().map(str::to_owned))
        .expect("a session cookie");
    let session_id = cookie.split_once('=').unwrap().1.to_owned();
    assert_eq!(session_id.len(), 64, "{cookie}");

    for (label, path) in [
        ("api list", "/api/v1/batches"),
        ("api status", "/api/v1/batches/leak-check"),
        ("api results", "/api/v1/batches/leak-check/results"),
        ("api providers", "/api/v1/providers"),
        ("api dead", "/api/v1/dead"),
        ("api openapi", "/api/v1/openapi.json"),
    ] {
        let (s, _) = fetch!(
            label,
            http.get(format!("{base}{path}")).bearer_auth(OPERATOR)
        );
        assert_eq!(s, 200, "{label}");
    }
    for (label, path) in [
        ("console batches", "/console/batches"),
        ("console batch", "/console/batches/leak-check"),
        ("console new", "/console/new"),
        ("console operator", "/console/operator"),
    ] {
        let (s, page) = fetch!(
            label,
            http.get(format!("{base}{path}")).header("cookie", &cookie)
        );
        assert_eq!(s, 200, "{label}: {page}");
    }
    let (s, _) = fetch!(
        "console sign-in page",
        http.get(format!("{base}/console/signin"))
    );
    assert_eq!(s, 200);

    // Stop both, then gather everything written.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status();
    assert!(worker.terminate().success());
    let mut everything = seen;
    everything.push(("namespace dump".into(), dump_namespace(&app).await));
    let cfg_file = cfg.join("default.toml").display().to_string();
    let mut files = Vec::new();
    files_under(app.out.path(), &mut files);
    everything.extend(files.into_iter().filter(|(p, _)| *p != cfg_file));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("Batch enqueued over the API."),
        "serve's logs were captured: {log}"
    );

    let secrets = [
        ("operator token", OPERATOR),
        ("read token", READER),
        ("wrong token", WRONG),
        ("console session id", session_id.as_str()),
        ("fal key", FAL),
        ("kling secret key", KLING_SK),
        ("push secret", PUSH),
    ];
    let mut leaks = Vec::new();
    for (what, secret) in secrets {
        for enc in encodings(secret) {
            for (label, text) in &everything {
                if text.contains(&enc) {
                    leaks.push(format!("{what} in {label}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "leaked: {leaks:#?}");
}
