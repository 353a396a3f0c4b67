//! Secrets never leak. One test plants every form at once — provider keys (one of them
//! numeric-looking), Kling's access and secret key, a Redis ACL user and password in
//! `redis://user:pw@`, the default user's password in `unix://…?pass=`, credentials in a
//! provider base_url, a key in a settings file and in mistyped variables — runs batches on
//! three providers through real workers (JSON and pretty logs), a 401, the operator
//! commands and failing ones, then searches everything written (logs, a dump of the
//! namespace, results, contact sheets, check-config, status, metrics, errors, `--help`)
//! for each secret and its obvious encodings. Also: a worker without a provider's key has
//! that provider disabled, not paused for the fleet.

use crate::helpers::*;
use base64::Engine;
use redis::AsyncCommands;
use restyle::job::JobState;
use restyle::localredis::{free_port, LocalRedis};
use restyle::sim::Knobs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Looks like a number: with `try_parsing` it became 12345678901234 and the provider
/// answered 401.
const AIML_KEY: &str = "0012345678901234";
const FAL_KEY: &str = "fal-planted-6d1e0b7a";
const OXEN_KEY: &str = "ox-planted-3f9c2a11";
const KLING_AK: &str = "ak-planted-5c1d2e3f";
const KLING_SK: &str = "sk-planted-9a8b7c6d";
const REDIS_USER: &str = "user-planted-7e21";
const REDIS_ACL_PW: &str = "acl-planted-4e5f6a7b";
const REDIS_PASS: &str = "req-planted-8c9d0e1f";
const BASE_USER: &str = "bu-planted-1a2b";
const BASE_PW: &str = "bp-planted-3c4d";
const BASE_KEY: &str = "bk-planted-5e6f";
const WRONG_PW: &str = "wrong-planted-0f0e";
const PUSH_SECRET: &str = "push-planted-2b4d6f80";

const SECRETS: [(&str, &str); 13] = [
    ("aimlapi key", AIML_KEY),
    ("fal key", FAL_KEY),
    ("oxen key", OXEN_KEY),
    ("kling access key", KLING_AK),
    ("kling secret key", KLING_SK),
    ("redis ACL user", REDIS_USER),
    ("redis ACL password", REDIS_ACL_PW),
    ("redis ?pass=", REDIS_PASS),
    ("base_url user", BASE_USER),
    ("base_url password", BASE_PW),
    ("base_url ?key=", BASE_KEY),
    ("a wrong redis password", WRONG_PW),
    ("push secret", PUSH_SECRET),
];

/// The secret as written and in its obvious encodings: percent-encoded, hex, and base64
/// (standard and URL-safe) at each of the three byte alignments it can have inside a
/// longer encoded text (a JWT payload, a basic-auth header), keeping only the characters
/// that do not depend on the neighbouring bytes.
pub(super) fn encodings(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string(), hex::encode(secret)];
    let pct: String = secret
        .bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    out.push(pct);
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for engine in engines {
        for shift in 0..3usize {
            let bytes: Vec<u8> = std::iter::repeat_n(b'x', shift)
                .chain(secret.bytes())
                .collect();
            let enc = engine.encode(&bytes);
            let first = (shift * 8).div_ceil(6);
            let last = bytes.len() * 8 / 6;
            out.push(enc[first..last].to_string());
        }
    }
    out
}

/// Every key of the test's namespace with its values, whatever the type.
pub(super) async fn dump_namespace(app: &TestApp) -> String {
    let mut c = app.queue.connection();
    let pattern = format!(
        "{}*",
        app.queue
            .keys()
            .prefix()
            .replace('{', "\\{")
            .replace('}', "\\}")
    );
    let keys: Vec<String> = c.keys(pattern).await.unwrap();
    assert!(!keys.is_empty());
    let mut all = String::new();
    for k in keys {
        let t: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        let v: Vec<String> = match t.as_str() {
            "hash" => c.hgetall(&k).await.unwrap(),
            "list" => c.lrange(&k, 0, -1).await.unwrap(),
            "zset" => c.zrange(&k, 0, -1).await.unwrap(),
            "set" => c.smembers(&k).await.unwrap(),
            "string" => vec![c.get(&k).await.unwrap()],
            other => vec![format!("(type {other})")],
        };
        all.push_str(&k);
        all.push('\n');
        all.push_str(&v.join("\n"));
        all.push('\n');
    }
    all
}

/// Every file under `dir`, as text (lossy: videos too), by path.
pub(super) fn files_under(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            let bytes = std::fs::read(&p).unwrap();
            out.push((
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into(),
            ));
        }
    }
}

/// The built binary with this test's settings and every secret planted in the
/// environment, in the variables operators use.
fn planted(app: &TestApp, redis_url: &str) -> Command {
    let mut c = app.cmd();
    c.env_remove("AIMLAPI_API_KEY")
        .env("RESTYLE__PROVIDERS__AIMLAPI__API_KEY", AIML_KEY)
        .env("FAL_KEY", FAL_KEY)
        .env("OXEN_API_KEY", OXEN_KEY)
        .env("KLING_ACCESS_KEY", KLING_AK)
        .env("RESTYLE__PROVIDERS__KLING__SECRET_KEY", KLING_SK)
        .env("RESTYLE__PUSH__SECRET", PUSH_SECRET)
        .env("REDIS_URL", redis_url)
        .env("RUST_LOG", "debug");
    c
}

/// Runs a command to its end (killed, and the test failed, if it runs for a minute: a
/// refused setting that stopped being refused would start a worker), keeping what it
/// printed under `label`.
fn run(c: &mut Command, label: &str, arts: &mut Vec<(String, String)>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = c
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{label}: still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    arts.push((label.to_string(), text));
    out
}

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// The search finds a secret inside the encodings it might hide in: a JWT's payload at
/// any offset, a basic-auth header, a percent-encoded query.
#[test]
fn the_search_sees_through_obvious_encodings() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let found = |secret: &str, text: &str| encodings(secret).iter().any(|e| text.contains(e));
    for pad in ["", "a", "ab"] {
        let jwt_payload = b64url.encode(format!("{{\"iss\":\"{pad}{KLING_AK}\",\"exp\":1}}"));
        assert!(found(KLING_AK, &jwt_payload), "{pad:?}");
        let basic = b64.encode(format!("{pad}{REDIS_USER}:{REDIS_ACL_PW}"));
        assert!(
            found(REDIS_ACL_PW, &basic) && found(REDIS_USER, &basic),
            "{pad:?}"
        );
    }
    assert!(found("p@ss w0rd", "?pass=p%40ss%20w0rd&db=1"));
    assert!(!found(KLING_AK, &b64.encode(KLING_SK)));
}

/// Every secret form at once, through every path that writes something (see the module
/// doc); none of them, in any obvious encoding, in anything written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_form_shows_anywhere() {
    let rdir = tempfile::tempdir().unwrap();
    let sock = std::fs::canonicalize(rdir.path())
        .unwrap()
        .join("redis.sock");
    let acl_password = format!(">{REDIS_ACL_PW}");
    let extra: Vec<String> = [
        "--requirepass",
        REDIS_PASS,
        "--user",
        REDIS_USER,
        "on",
        &acl_password,
        "~*",
        "&*",
        "+@all",
        "--unixsocket",
        sock.to_str().unwrap(),
        "--unixsocketperm",
        "700",
    ]
    .map(String::from)
    .to_vec();
    let redis = LocalRedis::start_with(rdir.path(), false, &extra).unwrap();
    let acl_url = format!(
        "redis://{REDIS_USER}:{REDIS_ACL_PW}@127.0.0.1:{}",
        redis.port()
    );
    let unix_url = format!("unix://{}?pass={REDIS_PASS}", sock.display());
    let knobs = Knobs {
        api_keys: vec![
            AIML_KEY.into(),
            FAL_KEY.into(),
            format!("{KLING_AK}:{KLING_SK}"),
        ],
        fail_prompts_containing: Some("FAILME".into()),
        ..fast_knobs()
    };
    let mut app = TestApp::with_redis(knobs, &acl_url).await;
    let sim = app.sim.base_url();
    app.test = app
        .test
        .clone()
        .set("providers.fal.base_url", sim.as_str())
        .set("providers.kling.base_url", sim.as_str());
    let mut arts: Vec<(String, String)> = Vec::new();

    // Two workers: JSON logs on the ACL URL, pretty logs on the Unix socket with ?pass=.
    let logs = [
        app.out.path().join("worker-json.log"),
        app.out.path().join("worker-pretty.log"),
    ];
    let mut workers = Vec::new();
    let mut bases = Vec::new();
    for (i, (fmt, url)) in [("json", &acl_url), ("pretty", &unix_url)]
        .into_iter()
        .enumerate()
    {
        let port = free_port().unwrap();
        let child = planted(&app, url)
            .args(["--log-format", fmt, "worker", "--concurrency", "4"])
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&logs[i]).unwrap())
            .spawn()
            .unwrap();
        workers.push(WorkerProc { child });
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    for b in &bases {
        ready_body(b).await;
    }

    // Batches on three providers, enqueued by the CLI (both log formats).
    let batches: [(&str, &str, &[&str], &[&str]); 3] = [
        ("sec-aiml", "aimlapi", &["fine", "FAILME now"], &[]),
        ("sec-fal", "fal", &["fal fine"], &[]),
        (
            "sec-kling",
            "kling",
            &["kling fine"],
            &["--image", "https://media.example.com/look.png"],
        ),
    ];
    for (i, (id, provider, prompts, extra)) in batches.iter().enumerate() {
        let mut c = planted(&app, &unix_url);
        let fmt = if i % 2 == 0 { "json" } else { "pretty" };
        c.args(["--log-format", fmt, "enqueue", "--batch-id", id])
            .args(["--provider", provider])
            .args(["--video", "https://media.example.com/clip.mp4"])
            .args(*extra);
        for p in *prompts {
            c.args(["--prompt", p]);
        }
        let out = run(&mut c, &format!("enqueue {id}"), &mut arts);
        assert!(out.status.success(), "{:?}", arts.last());
    }
    let aiml = app.wait_finished("sec-aiml", Duration::from_secs(60)).await;
    assert_eq!(aiml.count(JobState::Succeeded), 1, "{:?}", aiml.counts);
    assert_eq!(aiml.count(JobState::Failed), 1, "{:?}", aiml.counts);
    for id in ["sec-fal", "sec-kling"] {
        let info = app.wait_finished(id, Duration::from_secs(60)).await;
        assert_eq!(
            info.count(JobState::Succeeded),
            1,
            "{id}: {:?}",
            info.counts
        );
    }
    for (i, b) in bases.iter().enumerate() {
        let metrics = get_text(&format!("{b}/metrics")).await;
        assert!(
            metrics.contains("restyle_upstream_requests_total"),
            "{metrics}"
        );
        arts.push((format!("worker {i} /metrics"), metrics));
        arts.push((
            format!("worker {i} /readyz"),
            get_text(&format!("{b}/readyz")).await,
        ));
    }

    // The provider now refuses the aimlapi key: a 401 pauses it, with its message.
    let mut k = app.sim.knobs();
    k.api_keys.retain(|key| key != AIML_KEY);
    app.sim.set_knobs(k);
    let mut c = planted(&app, &acl_url);
    c.args(["enqueue", "--batch-id", "sec-401", "--prompt", "after 401"])
        .args(["--video", "https://media.example.com/clip.mp4"]);
    assert!(run(&mut c, "enqueue sec-401", &mut arts).status.success());
    let end = Instant::now() + Duration::from_secs(30);
    while app.queue.provider_pause("aimlapi").await.unwrap().is_none() {
        assert!(Instant::now() < end, "no pause recorded after a 401");
        poll_interval().await;
    }
    for w in workers {
        assert!(w.terminate().success());
    }
    let json_log = std::fs::read_to_string(&logs[0]).unwrap();
    let pretty_log = std::fs::read_to_string(&logs[1]).unwrap();
    let both = format!("{json_log}{pretty_log}");
    assert!(
        both.contains("Submitted.") && both.contains("401"),
        "{both}"
    );
    assert!(json_log.starts_with('{'), "{json_log}");

    // Operator commands, over the Unix socket and over the ACL URL.
    let ok: [(&str, &[&str]); 9] = [
        ("unix", &["status", "sec-aiml"]),
        (
            "acl",
            &["--log-format", "json", "status", "sec-401", "--json"],
        ),
        ("unix", &["results", "sec-aiml"]),
        ("acl", &["results", "sec-kling", "--format", "csv"]),
        ("unix", &["report", "sec-aiml"]),
        ("acl", &["report", "sec-kling"]),
        ("unix", &["dead", "--json"]),
        ("unix", &["check-config"]),
        ("acl", &["--log-format", "json", "check-config"]),
    ];
    for (via, args) in ok {
        let url = if via == "unix" { &unix_url } else { &acl_url };
        let label = format!("{} ({via})", args.join(" "));
        let out = run(planted(&app, url).args(args), &label, &mut arts);
        assert!(out.status.success(), "{label}: {:?}", arts.last());
    }
    // `--help` never shows a variable's value, even one that holds a secret.
    for args in [
        &["--help"][..],
        &["worker", "--help"],
        &["check-config", "--help"],
    ] {
        let mut c = planted(&app, &unix_url);
        c.env("RESTYLE_ENV", REDIS_PASS).args(args);
        assert!(run(&mut c, &args.join(" "), &mut arts).status.success());
    }

    // Commands that fail: every error is shown, none with a secret.
    let base_with_credentials =
        format!("http://{BASE_USER}:{BASE_PW}@127.0.0.1:1/v1?key={BASE_KEY}&token={BASE_KEY}");
    let wrong_unix = format!("unix://{}?pass={WRONG_PW}", sock.display());
    let wrong_acl = format!("redis://{REDIS_USER}:{WRONG_PW}@127.0.0.1:{}", redis.port());
    let gone = format!(
        "redis://{REDIS_USER}:{REDIS_ACL_PW}@127.0.0.1:{}",
        free_port().unwrap()
    );
    let base_var = "RESTYLE__PROVIDERS__FAL__BASE_URL";
    /// A command that must fail: its REDIS_URL (`None`: unset), an extra variable, exit code.
    struct Failing<'a> {
        redis_url: Option<&'a str>,
        var: Option<(&'a str, &'a str)>,
        args: &'a [&'a str],
        code: i32,
    }
    let fails = |redis_url, var, args, code| Failing {
        redis_url,
        var,
        args,
        code,
    };
    let failing = [
        // A Redis URL where the [redis] table belongs (it once printed the password).
        fails(
            None,
            Some(("RESTYLE__REDIS", &acl_url)),
            &["check-config"],
            2,
        ),
        fails(
            Some(&unix_url),
            Some((base_var, &base_with_credentials)),
            &["check-config"],
            2,
        ),
        fails(
            Some(&unix_url),
            Some((base_var, &base_with_credentials)),
            &["worker"],
            2,
        ),
        fails(Some(&wrong_unix), None, &["status", "sec-aiml"], 3),
        fails(Some(&wrong_acl), None, &["status", "sec-aiml"], 3),
        fails(Some(&gone), None, &["status", "sec-aiml"], 3),
    ];
    for (i, f) in failing.into_iter().enumerate() {
        let label = format!("failing command {i}: {}", f.args.join(" "));
        let mut c = planted(&app, f.redis_url.unwrap_or_default());
        if f.redis_url.is_none() {
            c.env_remove("REDIS_URL");
        }
        c.envs(f.var).args(f.args);
        let out = run(&mut c, &label, &mut arts);
        assert_eq!(
            out.status.code(),
            Some(f.code),
            "{label}: {:?}",
            arts.last()
        );
    }
    // A key written unquoted in a settings file, and a variable that is not Unicode.
    let cfg = tempfile::tempdir().unwrap();
    std::fs::write(
        cfg.path().join("production.toml"),
        format!("[providers.oxen]\napi_key = {OXEN_KEY}\n"),
    )
    .unwrap();
    let mut c = planted(&app, &unix_url);
    c.arg("--config-dir")
        .arg(cfg.path())
        .args(["--env", "production", "check-config"]);
    assert_eq!(
        run(&mut c, "unquoted key in a file", &mut arts)
            .status
            .code(),
        Some(2)
    );
    let not_unicode: Vec<u8> = [b"\xff".as_slice(), REDIS_PASS.as_bytes()].concat();
    let mut c = planted(&app, &unix_url);
    c.env(
        "RESTYLE__WORKER__CONCURRENCY",
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&not_unicode),
    )
    .arg("check-config");
    assert_eq!(
        run(&mut c, "non-Unicode variable", &mut arts).status.code(),
        Some(2)
    );

    // Everything written: the namespace in Redis, and every file of the run.
    let records = dump_namespace(&app).await;
    assert!(records.contains("Content rejected"), "records hold errors");
    arts.push(("redis namespace".into(), records));
    files_under(app.out.path(), &mut arts);
    for want in ["results.jsonl", "index.html", "worker-json.log", ".mp4"] {
        assert!(
            arts.iter().any(|(l, _)| l.contains(want)),
            "no {want} written"
        );
    }
    let mut leaks = Vec::new();
    for (name, secret) in SECRETS {
        for enc in encodings(secret) {
            for (label, text) in &arts {
                if text.contains(&enc) {
                    leaks.push(format!("{name} ({enc}) in {label}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));

    // What the commands said, so the search above searched something real.
    let shown = |label: &str| {
        let found = arts.iter().find(|(l, _)| l.as_str() == label);
        found.map(|(_, t)| t.clone()).unwrap()
    };
    let cc = shown("check-config (unix)");
    for key in [
        "aimlapi.api_key",
        "fal.api_key",
        "kling.access_key",
        "kling.secret_key",
    ] {
        assert!(cc.contains(&format!("providers.{key} = *** (set)")), "{cc}");
    }
    assert!(
        cc.contains(&format!("redis.url = unix://{}?pass=***", sock.display())),
        "{cc}"
    );
    let cc = shown("--log-format json check-config (acl)");
    assert!(
        cc.contains("redis.url = redis://***:***@127.0.0.1:"),
        "{cc}"
    );
    let st = shown("--log-format json status sec-401 --json (acl)");
    assert!(
        st.contains("paused_providers") && st.contains("401"),
        "{st}"
    );
}

#[tokio::test]
async fn redis_password_is_redacted_in_errors() {
    let app = TestApp::new(fast_knobs()).await;
    let port = restyle::localredis::free_port().unwrap();
    let out = app
        .cmd()
        .env(
            "REDIS_URL",
            format!("redis://ops:Pa55w0rd-zebra@127.0.0.1:{port}"),
        )
        .args(["status", "whatever"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains("Pa55w0rd-zebra"), "password leaked: {err}");
}

/// `restyle worker` with a metrics listener and extra variables, logging to `log`;
/// returns it and the listener's base URL.
fn worker_with(app: &TestApp, log: &std::path::Path, env: &[(&str, &str)]) -> (WorkerProc, String) {
    let port = restyle::localredis::free_port().unwrap();
    let child = app
        .cmd()
        .args(["worker", "--concurrency", "4"])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    (WorkerProc { child }, format!("http://127.0.0.1:{port}"))
}

/// `/readyz` once it answers 200: its body.
async fn ready_body(base: &str) -> String {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status().as_u16() == 200 {
                return r.text().await.unwrap();
            }
        }
        assert!(Instant::now() < end, "{base}/readyz never ready");
        poll_interval().await;
    }
}

/// A worker without a provider's key has that provider disabled, and says so (log,
/// `/readyz`, `check-config`). A job for it waits queued with the reason on its record:
/// no fleet-wide pause (which once stopped that provider for every worker, keyed or not),
/// no attempt used, nothing sent. A worker that has the key then runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_a_key_is_disabled_on_that_worker_not_paused_for_the_fleet() {
    let mut app = TestApp::new(fast_knobs()).await;
    app.test = app
        .test
        .clone()
        .set("providers.fal.base_url", app.sim.base_url().as_str());
    let log_a = app.out.path().join("worker-a.log");
    let (a, base_a) = worker_with(&app, &log_a, &[]);
    let ready = ready_body(&base_a).await;

    let mut fal = app.batch("nokey-fal", &prompts(1));
    fal.shared.provider = restyle::model::ProviderName::Fal;
    restyle::producer::enqueue(&app.queue, &fal).await.unwrap();
    app.enqueue("nokey-aiml", &prompts(1)).await;
    app.wait_finished("nokey-aiml", Duration::from_secs(30))
        .await;
    let id = restyle::model::job_id("nokey-fal", 0);
    let end = Instant::now() + Duration::from_secs(20);
    let rec = loop {
        let rec = app.queue.job(&id).await.unwrap().unwrap().unwrap();
        if rec.error.as_deref().is_some_and(|e| !e.is_empty()) {
            break rec;
        }
        assert!(
            Instant::now() < end,
            "the fal job never said why it waits: {rec:?}"
        );
        poll_interval().await;
    };
    assert!(
        app.queue.provider_pause("fal").await.unwrap().is_none(),
        "a missing key paused fal for the whole fleet: {:?}",
        rec.error
    );
    let why = rec.error.clone().unwrap();
    assert_eq!(rec.state, restyle::job::JobState::Queued, "{why}");
    assert_eq!(rec.attempts, 0, "{why}");
    assert!(why.contains("FAL_KEY") && why.contains("waiting"), "{why}");
    assert_eq!(
        app.sim
            .stats()
            .by_provider
            .get("fal")
            .map_or(0, |c| c.submissions_total),
        0
    );

    assert!(
        ready.contains("provider fal: disabled") && ready.contains("FAL_KEY"),
        "{ready}"
    );
    assert!(ready.contains("provider aimlapi: enabled"), "{ready}");
    let log = std::fs::read_to_string(&log_a).unwrap();
    assert!(log.contains("disabled") && log.contains("FAL_KEY"), "{log}");
    let cc = app.cmd().arg("check-config").output().unwrap();
    let err = String::from_utf8_lossy(&cc.stderr);
    assert_eq!(cc.status.code(), Some(0), "{err}");
    assert!(
        err.contains("provider fal: disabled") && err.contains("FAL_KEY"),
        "{err}"
    );

    // A worker with the key takes the job the next time it falls due.
    let log_b = app.out.path().join("worker-b.log");
    let (b, _) = worker_with(&app, &log_b, &[("FAL_KEY", API_KEY)]);
    let info = app
        .wait_finished("nokey-fal", Duration::from_secs(30))
        .await;
    assert_eq!(
        info.count(restyle::job::JobState::Succeeded),
        1,
        "{:?}",
        info.counts
    );
    assert!(app.queue.provider_pause("fal").await.unwrap().is_none());
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

const STORE_KEY_ID: &str = "AKIDPLANTEDSTORE7Q2W";
const STORE_SECRET: &str = "store-secret-planted-9x8c7v6b5n4m3l2k1j0h";
const STORE_TOKEN: &str = "store-session-token-planted-5t4r3e2w1q";

/// Store credentials never show: planted in the variables of AWS's chain (key id, secret
/// key, session token), a batch with a local clip goes through `enqueue` (uploaded to the
/// store), a worker with debug logs in JSON, `results`, `report`, `status`, `check-config`
/// (which names the store by its URL) and one that refuses a store URL with credentials in
/// it; then everything printed, logged, kept in Redis and written to the bucket is searched
/// for each credential in its obvious encodings.
#[tokio::test]
async fn store_credentials_appear_in_no_output() {
    use crate::store::{objects, store_app, store_of};
    let (app, bucket) = store_app(fast_knobs()).await;
    let plant = |c: &mut Command| {
        c.env("AWS_ACCESS_KEY_ID", STORE_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", STORE_SECRET)
            .env("AWS_SESSION_TOKEN", STORE_TOKEN)
            .env("RUST_LOG", "debug");
    };
    let mut arts = Vec::new();
    let clip = app.out.path().join("clip.mp4");
    let bytes = crate::clips::padded(20_000);
    std::fs::write(&clip, &bytes).unwrap();
    let mut c = app.cmd();
    plant(&mut c);
    c.args(["--log-format", "json", "enqueue", "--batch-id", "secstore"])
        .arg("--video")
        .arg(&clip)
        .args(["--prompt", "one", "--prompt", "two"]);
    assert!(
        run(&mut c, "enqueue", &mut arts).status.success(),
        "{arts:?}"
    );

    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("worker-json.log");
    let mut w = app.cmd();
    plant(&mut w);
    w.args(["--log-format", "json", "worker", "--concurrency", "2"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let worker = WorkerProc {
        child: w.spawn().unwrap(),
    };
    let info = app.wait_finished("secstore", Duration::from_secs(60)).await;
    assert_eq!(info.count(JobState::Succeeded), 2, "{:?}", info.counts);
    for args in [
        &["results", "secstore"][..],
        &["report", "secstore"],
        &["status", "secstore"],
        &["check-config"],
    ] {
        let mut c = app.cmd();
        plant(&mut c);
        run(c.args(args), &args.join(" "), &mut arts);
    }
    let mut bad = app.cmd();
    plant(&mut bad);
    bad.env(
        "RESTYLE__OUTPUT__STORE",
        format!("s3://{STORE_KEY_ID}:{STORE_SECRET}@{bucket}/runs"),
    )
    .arg("check-config");
    let refused = run(&mut bad, "credentials in output.store", &mut arts);
    assert!(
        !refused.status.success(),
        "a store URL with credentials is refused"
    );
    drop(worker);
    arts.push(("worker log".into(), std::fs::read_to_string(&log).unwrap()));
    arts.push(("redis namespace".into(), dump_namespace(&app).await));
    let store = store_of(&app);
    let listed = objects(&app, "").await;
    assert!(
        listed.iter().any(|(k, _)| k.ends_with("index.html")),
        "{listed:?}"
    );
    for (name, _) in &listed {
        let body = store.get(name, 1 << 26).await.unwrap().unwrap_or_default();
        arts.push((format!("s3 {name}"), String::from_utf8_lossy(&body).into()));
    }
    let cc = arts.iter().find(|(l, _)| l == "check-config").unwrap();
    assert!(
        cc.1.contains(&format!("output.store = s3://{bucket}/runs")),
        "{}",
        cc.1
    );
    let mut leaks = Vec::new();
    for (name, secret) in [
        ("store key id", STORE_KEY_ID),
        ("store secret", STORE_SECRET),
        ("store session token", STORE_TOKEN),
    ] {
        for enc in encodings(secret) {
            for (label, text) in &arts {
                if text.contains(&enc) {
                    leaks.push(format!("{name} ({enc}) in {label}"));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "store credentials leaked:\n{}",
        leaks.join("\n")
    );
}
