//! The egress policy (issue 12): an output URL or a webhook that points at loopback, a
//! private or a metadata address is refused — as an IP literal, on a redirect hop, and
//! after DNS — unless it is the provider's own origin or on `egress.allow`; a stalled
//! body fails after `output.idle_timeout`; an output link that keeps failing after a
//! successful poll uses up attempts instead of looping. The simulator plays the provider
//! over real HTTP; a small server in the test plays an internal service with a secret.

use crate::helpers::*;
use axum::Router;
use restyle::config::testing::TestSettings;
use restyle::job::JobState;
use restyle::model::OnDone;
use restyle::sim::Knobs;
use restyle::sink::jsonl::read_all;
use restyle::sink::ResultLine;
use restyle::worker::{self, Runtime, Stepped};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "INTERNAL ONLY: payroll db password is hunter2";

/// A service only the worker's host can reach: it answers every request with the secret
/// and counts them.
struct Internal {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn internal_service() -> Internal {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            SECRET
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Internal {
        base: format!("http://{addr}"),
        hits,
    }
}

/// The simulator with one knob changed from the fast defaults.
fn knobs(f: impl FnOnce(&mut Knobs)) -> Knobs {
    let mut k = fast_knobs();
    f(&mut k);
    k
}

/// An in-process runtime with the test's settings and `extra` laid over them.
fn runtime_with(app: &TestApp, extra: TestSettings) -> Runtime {
    let settings = app.test.clone().and(extra).settings();
    let ups = restyle::upstream::build_all(&settings).expect("providers");
    Runtime::new(app.queue.clone(), settings, ups)
}

/// Runs stages until the batch is finished, failing past `max_stages` stage runs (a hot
/// loop never leaves the queue empty, so a deadline alone would never be checked).
async fn finish_within(app: &TestApp, rt: &Runtime, batch: &str, max_stages: usize) -> usize {
    let end = Instant::now() + Duration::from_secs(30);
    let mut stages = 0;
    loop {
        match worker::step(rt).await.expect("step") {
            Stepped::Processed => {
                stages += 1;
                assert!(
                    stages <= max_stages,
                    "batch {batch} still not finished after {stages} stage runs: {:?}",
                    app.info(batch).await.counts
                );
            }
            Stepped::Empty => {
                let info = app.info(batch).await;
                if info.is_finished() {
                    return stages;
                }
                assert!(
                    Instant::now() < end,
                    "batch {batch} not finished: {:?}",
                    info.counts
                );
                poll_interval().await;
            }
        }
    }
}

/// The one result line of a one-job batch.
fn only_line(app: &TestApp, batch: &str) -> ResultLine {
    let mut lines = read_all(&app.results_path(batch)).expect("results file");
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.pop().unwrap()
}

/// No file under the output directory holds the secret, and no output or partial file
/// of the batch exists.
fn nothing_saved(app: &TestApp, batch: &str) {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(app.out.path(), &mut files);
    for f in &files {
        let text = std::fs::read(f).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        assert!(
            !text.contains("hunter2"),
            "the secret was saved in {}",
            f.display()
        );
    }
    let dir = app.out.path().join(batch);
    let outputs: Vec<_> = files
        .iter()
        .filter(|f| f.starts_with(&dir))
        .filter(|f| f.extension().is_some_and(|x| x == "mp4" || x == "part"))
        .collect();
    assert!(outputs.is_empty(), "output files left: {outputs:?}");
}

#[tokio::test]
async fn egress_an_output_url_to_another_loopback_port_is_refused_and_nothing_saved() {
    let app = TestApp::new(fast_knobs()).await;
    let internal = internal_service().await;
    // The provider (the simulator on 127.0.0.1:SIM, allowed as its base_url origin)
    // answers with a link to another port of the same host.
    app.sim
        .set_knobs(knobs(|k| k.output_base = Some(internal.base.clone())));
    let rt = app.runtime();
    app.enqueue("lit", &prompts(1)).await;
    finish_within(&app, &rt, "lit", 40).await;
    let line = only_line(&app, "lit");
    assert_eq!(line.state, JobState::Failed, "{line:?}");
    let port = internal.base.rsplit(':').next().unwrap();
    let want =
        format!("egress policy refused 127.0.0.1:{port} (loopback); allow it with egress.allow");
    assert_eq!(line.error.as_deref(), Some(want.as_str()));
    assert_eq!(
        internal.hits.load(Ordering::SeqCst),
        0,
        "no request reached the service"
    );
    nothing_saved(&app, "lit");
}

#[tokio::test]
async fn egress_a_redirect_hop_to_an_internal_service_is_refused_on_the_hop() {
    let app = TestApp::new(fast_knobs()).await;
    let internal = internal_service().await;
    // The link is the simulator's own (allowed); it redirects to the internal service.
    let to = format!("{}/admin/secrets", internal.base);
    app.sim.set_knobs(knobs(|k| k.output_redirect = Some(to)));
    let rt = app.runtime();
    app.enqueue("hop", &prompts(1)).await;
    finish_within(&app, &rt, "hop", 40).await;
    let line = only_line(&app, "hop");
    assert_eq!(line.state, JobState::Failed, "{line:?}");
    let e = line.error.as_deref().unwrap_or("");
    assert!(e.starts_with("egress policy refused 127.0.0.1:"), "{e}");
    assert!(
        e.contains("(loopback)") && e.ends_with("(on redirect hop 1)"),
        "{e}"
    );
    assert_eq!(
        internal.hits.load(Ordering::SeqCst),
        0,
        "the hop was not followed"
    );
    nothing_saved(&app, "hop");
}

#[tokio::test]
async fn egress_a_name_resolving_to_loopback_is_refused_after_dns() {
    let app = TestApp::new(fast_knobs()).await;
    // The simulator's own files, but reached as `localhost`: a name, which only the
    // resolver can judge (the sim's origin is 127.0.0.1:SIM, not localhost:SIM).
    let port = app.sim.addr().port();
    app.sim.set_knobs(knobs(|k| {
        k.output_base = Some(format!("http://localhost:{port}"));
    }));
    let rt = app.runtime();
    app.enqueue("dns", &prompts(1)).await;
    finish_within(&app, &rt, "dns", 40).await;
    let line = only_line(&app, "dns");
    assert_eq!(line.state, JobState::Failed, "{line:?}");
    let e = line.error.as_deref().unwrap_or("");
    assert!(
        e.starts_with("egress policy refused localhost (resolves to "),
        "{e}"
    );
    assert!(e.contains("loopback); allow it with egress.allow"), "{e}");
    assert_eq!(app.sim.stats().downloads_total, 0, "nothing was downloaded");
    nothing_saved(&app, "dns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_the_same_name_is_allowed_once_on_egress_allow_in_a_worker_process() {
    let app = TestApp::new(fast_knobs()).await;
    let port = app.sim.addr().port();
    app.sim.set_knobs(knobs(|k| {
        k.output_base = Some(format!("http://localhost:{port}"));
    }));
    app.enqueue("named", &prompts(2)).await;
    let log = app.out.path().join("named.log");
    let child = app
        .cmd()
        .env(
            "RESTYLE__EGRESS__ALLOW",
            format!("localhost:{port},10.9.0.0/16"),
        )
        .args(["worker", "--concurrency", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let w = WorkerProc { child };
    let info = app.wait_finished("named", Duration::from_secs(40)).await;
    assert!(w.terminate().success());
    assert_eq!(
        info.count(JobState::Succeeded),
        2,
        "{:?}\n{}",
        info.counts,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for l in read_all(&app.results_path("named")).unwrap() {
        assert!(l
            .output_url
            .as_deref()
            .unwrap()
            .starts_with("http://localhost:"));
        let served = app
            .sim
            .output_of(l.upstream_id.as_deref().unwrap())
            .expect("a completed generation");
        let file = app.out.path().join(l.file.as_deref().unwrap());
        assert_eq!(std::fs::read(file).unwrap(), served);
    }
    assert_eq!(app.sim.stats().downloads_total, 2);
}

#[tokio::test]
async fn egress_a_stalled_body_is_a_transient_error_after_idle_timeout() {
    let app = TestApp::new(knobs(|k| k.output_stall_after = Some(1000))).await;
    let idle = Duration::from_millis(300);
    let extra = TestSettings::new()
        .set("output.idle_timeout", idle)
        .set("retry.max_attempts", 2u32);
    let rt = runtime_with(&app, extra);
    app.enqueue("stall", &prompts(1)).await;
    let started = Instant::now();
    finish_within(&app, &rt, "stall", 40).await;
    let line = only_line(&app, "stall");
    // Transient: retried once (the attempt limit is 2), then dead with the reason.
    assert_eq!(line.state, JobState::Dead, "{line:?}");
    let e = line.error.as_deref().unwrap_or("");
    assert!(e.contains("retries used up (2)"), "{e}");
    assert!(
        e.contains("no byte received for 300ms (output.idle_timeout)"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.sim.stats().downloads_total, 0, "no download completed");
    nothing_saved(&app, "stall");
}

#[tokio::test]
async fn egress_a_download_404_after_a_successful_poll_uses_up_attempts() {
    let app = TestApp::new(fast_knobs()).await;
    // The provider says the generation succeeded, with a link that answers 404.
    let gone = format!("{}/gone", app.sim.base_url());
    app.sim.set_knobs(knobs(|k| k.output_base = Some(gone)));
    let rt = runtime_with(&app, TestSettings::new().set("retry.max_attempts", 3u32));
    app.enqueue("404", &prompts(1)).await;
    // Submit, a few pending polls, then three rounds of poll + failed download.
    let stages = finish_within(&app, &rt, "404", 40).await;
    let line = only_line(&app, "404");
    assert_eq!(line.state, JobState::Dead, "{line:?}");
    let e = line.error.as_deref().unwrap_or("");
    assert!(
        e.contains("retries used up (3)") && e.contains("HTTP 404"),
        "{e}"
    );
    assert!(line.claims as usize <= stages, "{line:?}");
}

/// Drives a batch whose `on_done` hook is a webhook to `url` until its announcement is
/// terminal, with `allow` as the worker's `egress.allow`.
async fn announce(
    app: &TestApp,
    batch: &str,
    url: String,
    allow: Option<&str>,
) -> restyle::job::JobRecord {
    let mut settings = TestSettings::new().set("hooks.notify.webhook", url.as_str());
    if let Some(allow) = allow {
        settings = settings.set("egress.allow", allow);
    }
    let rt = runtime_with(app, settings);
    let rt = &rt;
    let mut b = app.batch(batch, &prompts(1));
    b.shared.on_done = Some(OnDone::Hook("notify".into()));
    restyle::producer::enqueue(&app.queue, &b).await.unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let id = format!("done:{batch}:1");
    loop {
        if let Some(Ok(rec)) = app.queue.job(&id).await.unwrap() {
            if rec.state.is_terminal() {
                return rec;
            }
        }
        assert!(Instant::now() < end, "announcement of {batch} not terminal");
        if worker::step(rt).await.unwrap() == Stepped::Empty {
            poll_interval().await;
        }
    }
}

#[tokio::test]
async fn egress_webhooks_obey_the_policy() {
    let app = TestApp::new(fast_knobs()).await;
    let internal = internal_service().await;
    // Loopback on a port nobody allowed: refused, never delivered.
    let rec = announce(&app, "hook-lo", format!("{}/hook", internal.base), None).await;
    assert_eq!(rec.state, JobState::Dead, "{rec:?}");
    let e = rec.error.clone().unwrap_or_default();
    assert!(
        e.contains("webhook: egress policy refused 127.0.0.1:"),
        "{e}"
    );
    assert!(e.contains("(loopback); allow it with egress.allow"), "{e}");
    // The metadata service, as an IP literal: refused before any connection.
    let rec = announce(
        &app,
        "hook-md",
        "http://169.254.169.254/latest".into(),
        None,
    )
    .await;
    assert_eq!(rec.state, JobState::Dead, "{rec:?}");
    let e = rec.error.clone().unwrap_or_default();
    assert!(
        e.contains("egress policy refused 169.254.169.254:80 (cloud metadata)"),
        "{e}"
    );
    assert_eq!(internal.hits.load(Ordering::SeqCst), 0);
    // The same receiver once allowed: delivered.
    let addr = internal.base.trim_start_matches("http://").to_string();
    let url = format!("{}/hook", internal.base);
    let rec = announce(&app, "hook-ok", url, Some(addr.as_str())).await;
    assert_eq!(rec.state, JobState::Succeeded, "{rec:?}");
    assert_eq!(internal.hits.load(Ordering::SeqCst), 1);
}
