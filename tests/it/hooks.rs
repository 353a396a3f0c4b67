//! Issue 12 "Hostile world": a batch file never chooses a program to run on a worker.
//! `on_done` names a hook that the settings define; a hook's command runs with a cleared
//! environment plus its allowlist. Real Redis, real `restyle` processes, real commands.

use crate::helpers::*;
use restyle::config::testing::TestSettings;
use restyle::job::{JobRecord, JobState};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A one-variant batch file with this `on_done` line.
fn batch_file(dir: &Path, batch_id: &str, on_done: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{batch_id}.toml"));
    let text = format!(
        "batch_id = \"{batch_id}\"\nvideo = \"https://media.example.com/clip.mp4\"\n\
         {on_done}\n\n[[variants]]\nprompt = \"the same shot in autumn colours\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `restyle enqueue <file>` with the test's settings plus `extra`.
fn enqueue(app: &TestApp, extra: &TestSettings, file: &Path) -> std::process::Output {
    let mut cmd = app.cmd();
    cmd.envs(extra.env()).arg("enqueue").arg(file);
    cmd.output().unwrap()
}

/// A hook that appends its whole environment to `dump` (argv, no shell parsing of a
/// batch's text: the dump path is an argument).
fn dump_hook(dump: &Path) -> TestSettings {
    let argv = format!(
        "/bin/sh,-c,/usr/bin/env >> \"$1\",sh,{}",
        dump.to_str().unwrap()
    );
    TestSettings::new()
        .set("hooks.dump.command", argv.as_str())
        .set("hooks.dump.env", "HOOK_TOKEN")
}

/// Waits for the announcement job to reach a terminal state.
async fn terminal_announcement(app: &TestApp, job_id: &str, deadline: Duration) -> JobRecord {
    let end = Instant::now() + deadline;
    loop {
        if let Some(Ok(rec)) = app.queue.job(job_id).await.unwrap() {
            if rec.state.is_terminal() {
                return rec;
            }
        }
        assert!(
            Instant::now() < end,
            "{job_id} not terminal in {deadline:?}"
        );
        poll_interval().await;
    }
}

#[tokio::test]
async fn a_batch_file_that_gives_a_command_or_webhook_is_refused_at_enqueue() {
    let app = TestApp::new(fast_knobs()).await;
    let planted = app.out.path().join("planted");
    for (id, on_done) in [
        ("evil-cmd", "on_done = { command = \"env > $OUT\" }"),
        (
            "evil-hook",
            "on_done = { webhook = \"https://attacker.example.com/x\" }",
        ),
        ("evil-table", "[on_done]\ncommand = \"env > $OUT\""),
    ] {
        let file = batch_file(app.out.path(), id, on_done);
        let out = {
            let mut cmd = app.cmd();
            cmd.env("OUT", &planted).arg("enqueue").arg(&file);
            cmd.output().unwrap()
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{id}: {err}");
        assert!(err.contains("on_done"), "{id}: {err}");
        assert!(err.contains("workers' settings"), "{id}: {err}");
        assert!(
            app.queue.batch(id).await.unwrap().is_none(),
            "{id} enqueued"
        );
    }
    assert!(!planted.exists());
}

#[tokio::test]
async fn an_on_done_name_the_settings_do_not_define_is_refused_at_enqueue() {
    let app = TestApp::new(fast_knobs()).await;
    let file = batch_file(app.out.path(), "unnamed", "on_done = \"nope\"");
    let defined = dump_hook(&app.out.path().join("dump"))
        .set("hooks.notify-ops.webhook", "https://hooks.example.com/ops");
    let out = enqueue(&app, &defined, &file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("on_done") && err.contains("\"nope\""), "{err}");
    assert!(
        err.contains("dump, notify-ops"),
        "names the defined hooks: {err}"
    );
    // With no hooks at all, it says where hooks are defined.
    let out = enqueue(&app, &TestSettings::new(), &file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("[hooks.<name>]"), "{err}");
    assert!(app.queue.batch("unnamed").await.unwrap().is_none());
}

/// The reproduction of issue 12: `env` run by a batch's hook dumped the API key and the
/// Redis password. Now the hook sees its allowlist and the two RESTYLE_* variables only.
#[tokio::test]
async fn a_hook_command_sees_only_its_allowlist_and_the_batch_variables() {
    let app = TestApp::new(fast_knobs()).await;
    let dump = app.out.path().join("env.dump");
    let hook = dump_hook(&dump);
    let file = batch_file(app.out.path(), "envdump", "on_done = \"dump\"");
    let out = enqueue(&app, &hook, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let log = std::fs::File::create(app.out.path().join("worker.log")).unwrap();
    let mut cmd = app.cmd();
    cmd.envs(hook.env())
        .env("HOOK_TOKEN", "allowed-token-31")
        .env("REDIS_PASSWORD", "planted-redis-pw-77")
        .env("WORKER_ONLY_SECRET", "planted-worker-secret-58")
        .args(["worker", "--concurrency", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let worker = WorkerProc {
        child: cmd.spawn().unwrap(),
    };
    let rec = terminal_announcement(&app, "done:envdump:1", Duration::from_secs(60)).await;
    assert_eq!(rec.state, JobState::Succeeded, "{:?}", rec.error);
    let end = Instant::now() + Duration::from_secs(10);
    while !dump.exists() {
        assert!(Instant::now() < end, "the hook never ran");
        poll_interval().await;
    }
    drop(worker);

    let text = std::fs::read_to_string(&dump).unwrap();
    let vars: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let names: BTreeSet<&str> = vars.iter().map(|(k, _)| *k).collect();
    assert!(vars.contains(&("HOOK_TOKEN", "allowed-token-31")), "{text}");
    assert!(vars.contains(&("RESTYLE_BATCH_ID", "envdump")), "{text}");
    assert!(
        vars.contains(&("RESTYLE_IDEMPOTENCY_KEY", "done:envdump:1")),
        "{text}"
    );
    assert_eq!(
        vars.iter()
            .filter(|(k, _)| *k == "RESTYLE_BATCH_ID")
            .count(),
        1,
        "the hook ran once: {text}"
    );
    // Nothing else from the worker's environment; the shell sets PWD itself.
    let expected = [
        "HOOK_TOKEN",
        "PWD",
        "RESTYLE_BATCH_ID",
        "RESTYLE_IDEMPOTENCY_KEY",
    ];
    let extra: Vec<&&str> = names.iter().filter(|n| !expected.contains(n)).collect();
    assert!(extra.is_empty(), "leaked {extra:?}: {text}");
    for secret in [
        API_KEY,
        "planted-redis-pw-77",
        "planted-worker-secret-58",
        &redis_url(),
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[tokio::test]
async fn a_hook_name_the_worker_does_not_define_makes_the_announcement_dead() {
    let app = TestApp::new(fast_knobs()).await;
    // The producer's settings define the hook; this worker's do not.
    let producer =
        TestSettings::new().set("hooks.elsewhere.webhook", "https://hooks.example.com/x");
    let file = batch_file(app.out.path(), "orphan", "on_done = \"elsewhere\"");
    let out = enqueue(&app, &producer, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let worker = app.spawn_worker(4, &app.out.path().join("worker.log"));
    let rec = terminal_announcement(&app, "done:orphan:1", Duration::from_secs(60)).await;
    drop(worker);
    assert_eq!(rec.state, JobState::Dead, "{:?}", rec.error);
    let why = rec.error.unwrap_or_default();
    assert!(why.contains("\"elsewhere\""), "{why}");
    assert_eq!(rec.attempts, 0, "dead at once, not retried: {why}");
    assert_eq!(app.info("orphan").await.count(JobState::Succeeded), 1);
}

/// A batch stored by the previous version with `on_done = { command = … }` finishes
/// under this worker: the command is not run and the announcement is dead with a reason.
#[tokio::test]
async fn an_old_record_with_a_command_does_not_run_it() {
    let app = TestApp::new(fast_knobs()).await;
    let rt = app.runtime();
    let marker = app.out.path().join("ran");
    let spec = serde_json::json!({
        "v": 1, "batch_id": "legacy-hook", "provider": "aimlapi", "model": "edit",
        "video": "https://media.example.com/clip.mp4", "image_list": [], "keep_audio": false,
        "aspect_ratio": null, "duration": null, "elements": [], "clip_seconds": null,
        "max_cost": null, "on_done": {"webhook": null, "command": format!("touch {}", marker.display())},
    });
    let payload = r#"{"v":1,"batch_id":"legacy-hook","index":0,"prompt":"p0"}"#;
    let jobs = vec![(restyle::job::job_id("legacy-hook", 0), payload.to_string())];
    let extras = restyle::queue::BatchExtras {
        max_cost: None,
        on_done: true,
        ..Default::default()
    };
    app.queue
        .enqueue_batch("legacy-hook", &spec.to_string(), "d0", &extras, &jobs)
        .await
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let rec = loop {
        restyle::worker::step(&rt).await.unwrap();
        if let Some(Ok(rec)) = app.queue.job("done:legacy-hook:1").await.unwrap() {
            if rec.state.is_terminal() {
                break rec;
            }
        }
        assert!(Instant::now() < end, "announcement not terminal");
        poll_interval().await;
    };
    assert_eq!(rec.state, JobState::Dead, "{:?}", rec.error);
    let why = rec.error.unwrap_or_default();
    assert!(why.contains("on_done") && why.contains("settings"), "{why}");
    assert!(!marker.exists(), "the stored command ran");
}
