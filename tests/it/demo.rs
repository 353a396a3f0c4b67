//! `restyle demo`, the README's first command, as a real process: the demo batch runs end
//! to end, and with `--console` the web console then serves its results (sign in with the
//! printed token, the batch listed, every variant's video playable) until SIGTERM.

use crate::helpers::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The line of `lines` that starts with `prefix`, waited for until `end`.
fn line_starting(
    lines: &mpsc::Receiver<String>,
    prefix: &str,
    end: Instant,
    seen: &mut Vec<String>,
) -> String {
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if l.starts_with(prefix) {
                    return l;
                }
            }
            Err(_) => panic!(
                "no line starting {prefix:?}; stdout so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_its_batch_and_serves_the_console_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let batch = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/demo.toml");
    let stderr = dir.path().join("demo.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_restyle"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("REDIS_URL", redis_url())
        .args(["demo", "--batch"])
        .arg(&batch)
        .args(["--console", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("restyle demo starts");
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let child = WorkerProc { child };
    let end = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let succeeded = line_starting(&lines, "  succeeded", end, &mut seen);
    assert!(succeeded.trim_end().ends_with(" 8"), "{succeeded}");
    let sim = line_starting(&lines, "simulator:", end, &mut seen);
    assert!(sim.contains(" 0 duplicate submissions"), "{sim}");
    let console = line_starting(&lines, "console: http://", end, &mut seen);
    let base = console["console: ".len()..]
        .split_once("/console")
        .expect("a console URL")
        .0
        .to_owned();

    // The operator token, printed once on stderr.
    let token = loop {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        if let Some(t) = text.lines().find_map(|l| {
            l.split_once("(shown once): ")
                .map(|(_, t)| t.trim().to_owned())
        }) {
            break t;
        }
        assert!(Instant::now() < end, "no token printed:\n{text}");
        poll_interval().await;
    };
    let cookie = crate::serve::sign_in(&base, &token).await;
    let (status, list) = crate::serve::page(&base, "/console/batches", &cookie).await;
    assert_eq!(status, 200);
    assert!(list.contains("/console/batches/demo"), "{list}");
    let (status, sheet) = crate::serve::page(&base, "/console/batches/demo", &cookie).await;
    assert_eq!(status, 200);
    for i in 0..8 {
        let path = format!("/console/batches/demo/jobs/demo.{i:05}/output");
        assert!(sheet.contains(&path), "variant {i} on the page");
        let res = crate::serve::browser()
            .get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], "video/mp4");
    }

    // SIGTERM stops the console, then the workers and the simulator: exit 0.
    let mut child = child;
    let pid = child.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the demo did not stop on SIGTERM");
        poll_interval().await;
    };
    assert!(status.success(), "{status:?}");
}
