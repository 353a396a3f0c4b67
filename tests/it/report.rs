//! The results people look at, through the built binary on batches run to completion
//! here: the contact sheet (also opened in a real headless Chromium), `watch` and its exit
//! codes, and the JSONL/CSV exports.

use crate::helpers::*;
use restyle::job::JobState;
use restyle::queue::BatchInfo;
use restyle::sim::Knobs;
use restyle::sink::jsonl::read_all;
use restyle::sink::ResultLine;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const HOSTILE: &str = r#"<script>alert("x")</script> & "quotes""#;
const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;";
const REASON: &str = "Content rejected by upstream safety system";

async fn app() -> TestApp {
    TestApp::new(Knobs {
        fail_prompts_containing: Some("FAILME".into()),
        ..fast_knobs()
    })
    .await
}

/// Five variants, one with a hostile prompt and one the simulator rejects, run to the end.
async fn finished_batch(app: &TestApp, batch_id: &str) -> BatchInfo {
    let prompts: Vec<String> = [
        "A calm sea at dawn, oil paint",
        HOSTILE,
        "Neon city in the rain",
        "FAILME: the simulator rejects this one",
        "Autumn forest, watercolour",
    ]
    .map(String::from)
    .to_vec();
    app.enqueue(batch_id, &prompts).await;
    let info = app
        .drive(&app.runtime(), batch_id, Duration::from_secs(60))
        .await;
    assert_eq!(info.count(JobState::Succeeded), 4, "{:?}", info.counts);
    assert_eq!(info.count(JobState::Failed), 1, "{:?}", info.counts);
    info
}

fn run(app: &TestApp, args: &[&str]) -> Output {
    app.cmd().args(args).output().expect("run restyle")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `restyle report <batch>`: the path it printed and the page.
fn report(app: &TestApp, batch_id: &str) -> (PathBuf, String) {
    let out = run(app, &["report", batch_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(stdout(&out).trim());
    assert_eq!(path, app.out.path().join(batch_id).join("index.html"));
    let html = std::fs::read_to_string(&path).expect("index.html written");
    (path, html)
}

/// Every value of `attr="…"` in the page.
fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').expect("closed attribute")]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_sheet_has_one_card_per_variant_escapes_text_and_stays_local() {
    let app = app().await;
    finished_batch(&app, "sheet").await;
    let (path, html) = report(&app, "sheet");

    assert_eq!(html.matches("<article class=\"card ").count(), 5);
    assert_eq!(html.matches("<video").count(), 4);
    assert!(html.contains(ESCAPED), "hostile prompt shown as text");
    assert!(!html.contains("<script"), "no script element at all");
    let failed: Vec<&str> = html
        .split("<article ")
        .skip(1)
        .filter(|c| c.contains("s-failed"))
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains(REASON), "{}", failed[0]);
    assert!(!failed[0].contains("<video"));

    // Self-contained: every src/href stays on disk, next to the page.
    let dir = path.parent().unwrap();
    let srcs = attr_values(&html, "src");
    assert_eq!(srcs.len(), 4);
    for v in srcs.iter().chain(&attr_values(&html, "href")) {
        let lower = v.to_ascii_lowercase();
        assert!(
            !lower.starts_with("http:") && !lower.starts_with("https:") && !v.starts_with("//"),
            "remote reference {v}"
        );
    }
    assert!(!html.contains("@import") && !html.contains("url("));
    for src in srcs {
        let file = dir.join(src.trim_start_matches("./"));
        assert!(file.is_file(), "video {src} is next to the page");
    }

    // Writing it again replaces it whole and leaves no temp file behind.
    report(&app, "sheet");
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

/// Debian's Chromium, when installed: `/usr/bin/chromium` or `chromium` on PATH.
fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|c| c.is_file())
}

/// Waits for a child with a deadline (killing it past the deadline).
async fn wait_child(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in {deadline:?}");
        }
        poll_interval().await;
    }
}

/// Runs headless Chromium on a page; returns what it printed on stdout.
async fn headless(bin: &Path, work: &Path, extra: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out_path = work.join(format!("chromium-{}.out", uuid::Uuid::new_v4().simple()));
    let err_path = out_path.with_extension("err");
    let mut child = std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start chromium");
    let status = wait_child(&mut child, Duration::from_secs(120), "chromium").await;
    assert!(
        status.success(),
        "chromium {extra:?} failed: {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    std::fs::read_to_string(&out_path).unwrap()
}

/// A screenshot of `url` at 1200×900; returns the PNG's bytes.
async fn screenshot(bin: &Path, work: &Path, url: &str, name: &str) -> Vec<u8> {
    let png = work.join(name);
    let args = [
        format!("--screenshot={}", png.display()),
        "--window-size=1200,900".to_string(),
    ];
    headless(bin, work, &args, url).await;
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_sheet_renders_in_a_real_browser() {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs chromium (.ci/run); it is missing"
        );
        eprintln!("SKIP contact_sheet_renders_in_a_real_browser: chromium is not installed");
        return;
    };
    let app = app().await;
    let info = finished_batch(&app, "browser").await;
    let (path, _) = report(&app, "browser");
    let url = format!("file://{}", path.display());
    let work = tempfile::tempdir().unwrap();

    let dom = headless(&bin, work.path(), &["--dump-dom".to_string()], &url).await;
    assert_eq!(
        dom.matches("<video").count() as u64,
        info.count(JobState::Succeeded),
        "one player per succeeded variant in the parsed page"
    );
    assert_eq!(dom.matches("<article").count(), 5);
    assert!(
        dom.contains(r#"&lt;script&gt;alert("x")&lt;/script&gt; &amp; "quotes""#),
        "the browser parsed the hostile prompt as text"
    );
    assert!(!dom.contains("<script"), "no script element in the DOM");

    // Not blank: compared with an empty page rendered the same way.
    let blank = work.path().join("blank.html");
    std::fs::write(&blank, "<!doctype html><html><body></body></html>").unwrap();
    let empty = screenshot(
        &bin,
        work.path(),
        &format!("file://{}", blank.display()),
        "blank.png",
    )
    .await;
    let sheet = screenshot(&bin, work.path(), &url, "sheet.png").await;
    assert!(sheet.len() > 5 * 1024, "{} bytes", sheet.len());
    assert!(
        sheet.len() > empty.len(),
        "the sheet draws more than a blank page"
    );
    assert_ne!(sheet, empty);
    // The state filter changes what is drawn (only the failed card is left).
    let filtered = screenshot(
        &bin,
        work.path(),
        &format!("{url}#only-failed"),
        "failed.png",
    )
    .await;
    assert_ne!(filtered, sheet, "the failed-only filter hides cards");
    if let Ok(keep) = std::env::var("RESTYLE_KEEP_SCREENSHOTS") {
        for name in ["sheet.png", "failed.png"] {
            let _ = std::fs::copy(work.path().join(name), Path::new(&keep).join(name));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_batch_live_and_exits_0_when_nothing_failed() {
    let app = app().await;
    app.enqueue("live", &prompts(4)).await;
    let log = app.out.path().join("watch.out");
    let mut watch = app
        .cmd()
        .args(["watch", "live", "--every", "1"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watch");
    // Its first plain line comes at once; only then do the jobs run.
    let end = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(Instant::now() < end, "watch printed nothing");
        poll_interval().await;
    }
    let info = app
        .drive(&app.runtime(), "live", Duration::from_secs(60))
        .await;
    assert_eq!(info.count(JobState::Succeeded), 4);
    let status = wait_child(&mut watch, Duration::from_secs(30), "watch").await;
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("batch live: 0/4 done · queued 4"),
        "{text}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("batch live finished")
            && last.contains(": 4/4 done · succeeded 4 · cost "),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exits_5_when_jobs_failed_unless_failures_are_allowed() {
    let app = app().await;
    finished_batch(&app, "wfail").await;
    let out = run(&app, &["watch", "wfail"]);
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().count(),
        1,
        "a finished batch: only the final line"
    );
    assert!(text.contains("5/5 done · succeeded 4 · failed 1"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("restyle status wfail"));
    let allowed = run(&app, &["watch", "wfail", "--allow-failures"]);
    assert_eq!(allowed.status.code(), Some(0));
    assert!(stdout(&allowed).contains("failed 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_export_csv_and_filtered_jsonl_match_the_results_file() {
    let app = app().await;
    finished_batch(&app, "export").await;
    let written = read_all(&app.results_path("export")).unwrap();
    assert_eq!(written.len(), 5);
    // Times come from the record (set by the terminal transition), not the line's clock.
    let same = |a: &ResultLine, b: &ResultLine| {
        let norm = |l: &ResultLine| ResultLine {
            finished_at: 0,
            upstream_seconds: None,
            ..l.clone()
        };
        assert_eq!(norm(a), norm(b));
    };

    let csv_out = run(&app, &["results", "export", "--format", "csv"]);
    assert!(csv_out.status.success());
    let mut rdr = csv::Reader::from_reader(csv_out.stdout.as_slice());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "job_id");
    assert!(header.contains(&"estimated_cost".to_string()));
    let rows: Vec<ResultLine> = rdr.deserialize().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 5, "a header and one row per job");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.index as usize, i, "in index order");
        let line = written.iter().find(|l| l.job_id == row.job_id).unwrap();
        same(row, line);
        assert!(row.finished_at > 0 && row.upstream_seconds.is_some());
    }
    assert!(String::from_utf8_lossy(&csv_out.stderr).contains("5 jobs exported"));

    let failed = run(
        &app,
        &[
            "results", "export", "--format", "jsonl", "--state", "failed",
        ],
    );
    assert!(failed.status.success());
    let lines: Vec<ResultLine> = stdout(&failed)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a result line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].state, "failed");
    assert!(lines[0].error.as_deref().unwrap().contains(REASON));
    same(
        &lines[0],
        written.iter().find(|l| l.state == "failed").unwrap(),
    );

    let none = run(
        &app,
        &["results", "export", "--format", "csv", "--state", "dead"],
    );
    assert!(none.status.success());
    assert_eq!(stdout(&none).lines().count(), 1, "only the header");
}
