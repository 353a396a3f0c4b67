//! `restyle check-config`: valid settings pass and print redacted values; an unknown key
//! or a bad duration fails naming the key; a secret set in the environment never shows.

use crate::helpers::*;

fn check(app: &TestApp, file: Option<&str>) -> (Option<i32>, String, String) {
    let dir = app.out.path().join("cfg");
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(text) = file {
        std::fs::write(dir.join("production.toml"), text).unwrap();
    }
    let out = app
        .cmd()
        .args(["--config-dir", "cfg", "--env", "production", "check-config"])
        .env("REDIS_URL", "redis://ops:Sup3r-S3cret-pw@127.0.0.1:6390")
        .env("FAL_KEY", "fal-key-should-not-show-31337")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn valid_settings_pass_with_secrets_redacted() {
    let app = TestApp::new(fast_knobs()).await;
    let (code, out, err) = check(&app, Some("[worker]\nconcurrency = 12\n"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("worker.concurrency = 12"), "{out}");
    assert!(
        out.contains("redis.url = redis://***:***@127.0.0.1:6390"),
        "{out}"
    );
    assert!(out.contains("providers.fal.api_key = *** (set)"), "{out}");
    for text in [&out, &err] {
        assert!(!text.contains("Sup3r-S3cret-pw"), "Redis password leaked");
        assert!(
            !text.contains("fal-key-should-not-show-31337"),
            "API key leaked"
        );
        assert!(!text.contains(API_KEY), "API key leaked");
    }
}

#[tokio::test]
async fn unknown_key_and_bad_duration_fail_naming_the_key() {
    let app = TestApp::new(fast_knobs()).await;
    let (code, _, err) = check(&app, Some("[redis]\ncolour = \"red\"\n"));
    assert_eq!(code, Some(2));
    assert!(err.contains("colour") && err.contains("redis"), "{err}");
    let (code, _, err) = check(&app, Some("[worker]\nshutdown_grace = \"soon\"\n"));
    assert_eq!(code, Some(2));
    assert!(err.contains("worker.shutdown_grace"), "{err}");
    let (code, _, err) = check(
        &app,
        Some("[queue]\nlease = \"2s\"\nrenew_every = \"2s\"\n"),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("queue.renew_every"), "{err}");
    assert!(!err.contains("Sup3r-S3cret-pw"));
}

#[tokio::test]
async fn a_missing_env_file_is_an_error() {
    let app = TestApp::new(fast_knobs()).await;
    std::fs::create_dir_all(app.out.path().join("cfg")).unwrap();
    let _ = std::fs::remove_file(app.out.path().join("cfg/production.toml"));
    let (code, _, err) = check(&app, None);
    assert_eq!(code, Some(2));
    assert!(err.contains("production.toml"), "{err}");
}

/// A settings error names the file or key and what was expected, never the value: an
/// unquoted key in a file, a Redis URL where a table belongs, a number that is not one, a
/// variable that is not Unicode. (Each of these once printed the value.)
#[tokio::test]
async fn settings_errors_never_quote_the_value() {
    use std::os::unix::ffi::OsStrExt;
    let app = TestApp::new(fast_knobs()).await;
    let (code, _, err) = check(&app, Some("[providers.fal]\napi_key = Pw-unquoted-7781\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("production.toml") && err.contains("line 2"),
        "{err}"
    );
    assert!(
        !err.contains("Pw-unquoted"),
        "the file's line was quoted: {err}"
    );

    let bad_utf8 = std::ffi::OsStr::from_bytes(b"\xffPw-raw-8080");
    let env: [(&str, &std::ffi::OsStr); 3] = [
        ("RESTYLE__REDIS", "redis://u:Pw-env-4242@h".as_ref()),
        (
            "RESTYLE__PROVIDERS__AIMLAPI__RATE_LIMIT",
            "Pw-num-1313".as_ref(),
        ),
        ("RESTYLE__WORKER__CONCURRENCY", bad_utf8),
    ];
    for (var, value) in env {
        let out = app
            .cmd()
            .arg("check-config")
            .env(var, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(!err.contains("Pw-"), "{var}: the value was quoted: {err}");
        let named = var
            .trim_start_matches("RESTYLE__")
            .to_lowercase()
            .replace("__", ".");
        assert!(err.contains(&named), "{var}: the key is not named: {err}");
    }
}

/// `check-config` says which Redis version it found, the one `INFO server` gives, and
/// the oldest the queue runs on (the claim uses `LMPOP`, Redis 7.0).
#[tokio::test]
async fn the_redis_version_is_shown() {
    let app = TestApp::new(fast_knobs()).await;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut app.queue.connection())
        .await
        .unwrap();
    let found = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .expect("INFO server has redis_version")
        .trim()
        .to_string();
    let out = app.cmd().arg("check-config").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "redis version: {found} (restyle needs 7.0.0 or newer)"
        )),
        "{err}"
    );
}
