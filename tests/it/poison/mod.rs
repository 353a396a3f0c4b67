//! The poison corpus (issue 12, "Redis contents are re-validated"): poison written straight
//! into Redis with raw commands, next to healthy jobs that a real worker process claims in
//! the same call. Each case asserts what must hold whatever the poison: the poisoned job
//! alone ends in the dead set with a reason naming the problem, every healthy job
//! succeeds, nothing is written outside the output directory, every id is accounted for in
//! some state index, and the provider keeps submitting.
//!
//! - [`records`]: job records and ids (encodings, types, missing fields, paths);
//! - [`admission`]: limiter, slot, cool-down and pause keys, batch counters;
//! - [`readers`]: claim errors back off; `report`, `results` and `status` on a damaged
//!   batch finish in bounded memory; a damaged results file.

mod admission;
mod readers;
mod records;

use crate::helpers::*;
use redis::AsyncCommands;
use restyle::config::testing::TestSettings;
use restyle::job::JobState;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The healthy batch every case runs next to its poison.
pub const HEALTHY: &str = "heal";
/// Jobs in the healthy batch.
pub const HEALTHY_JOBS: u32 = 4;

/// One case's world: a test app whose output directory sits three levels deep inside
/// `root`, so a path that escapes it by `../../` still lands where the test can see it.
pub struct World {
    pub app: TestApp,
    /// The output directory (`root/deep/er/out`).
    pub out: PathBuf,
    logs: tempfile::TempDir,
}

impl World {
    /// A world with the default test settings.
    pub async fn new() -> World {
        World::with(|t| t).await
    }

    /// A world whose settings `tune` changes.
    pub async fn with(tune: impl FnOnce(TestSettings) -> TestSettings) -> World {
        let mut app = TestApp::new(fast_knobs()).await;
        let out = app.out.path().join("deep").join("er").join("out");
        std::fs::create_dir_all(&out).unwrap();
        app.test = tune(app.test.clone().output(&out));
        app.settings = app.test.settings();
        World {
            app,
            out,
            logs: tempfile::tempdir().unwrap(),
        }
    }

    /// The directory everything of the test may write into.
    pub fn root(&self) -> &Path {
        self.app.out.path()
    }

    pub fn conn(&self) -> restyle::queue::Conn {
        self.app.queue.connection()
    }

    /// A key of this namespace (`{restyle:<ns>}:<name>`).
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.app.queue.keys().prefix())
    }

    /// The healthy batch, enqueued: its job ids.
    pub async fn healthy(&self) -> Vec<String> {
        assert_eq!(
            self.app
                .enqueue(HEALTHY, &prompts(HEALTHY_JOBS as usize))
                .await,
            u64::from(HEALTHY_JOBS)
        );
        (0..HEALTHY_JOBS)
            .map(|i| restyle::job::job_id(HEALTHY, i))
            .collect()
    }

    /// Starts `restyle worker` with room to claim every ready job in one call.
    pub fn worker(&self, name: &str) -> (WorkerProc, PathBuf) {
        let log = self.logs.path().join(format!("{name}.log"));
        (self.app.spawn_worker(16, &log), log)
    }

    /// Polls `cond` until it holds; fails with the worker's log after `deadline`.
    pub async fn until<F, Fut>(&self, what: &str, log: &Path, deadline: Duration, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let end = Instant::now() + deadline;
        while !cond().await {
            assert!(
                Instant::now() < end,
                "{what}: not within {deadline:?}\n--- worker log (tail) ---\n{}",
                tail(log)
            );
            poll_interval().await;
        }
    }

    /// The state a job's record says (`None`: no record, or not readable as text).
    pub async fn state(&self, id: &str) -> Option<String> {
        let mut c = self.conn();
        let v: Option<Vec<u8>> = c
            .hget(self.app.queue.keys().job(id), "state")
            .await
            .ok()
            .flatten();
        v.and_then(|v| String::from_utf8(v).ok())
    }

    /// Members of the dead set, as raw bytes.
    pub async fn dead_ids(&self) -> HashSet<Vec<u8>> {
        let mut c = self.conn();
        let ids: Vec<Vec<u8>> = c.zrange(self.app.queue.keys().dead(), 0, -1).await.unwrap();
        ids.into_iter().collect()
    }

    /// Waits until every healthy job succeeded and every poisoned id is in the dead set.
    pub async fn settled(&self, log: &Path, healthy: &[String], poisoned: &[&[u8]]) {
        self.until(
            "healthy jobs succeed, poison dies",
            log,
            deadline(),
            || async {
                let dead = self.dead_ids().await;
                for id in healthy {
                    if self.state(id).await.as_deref() != Some(JobState::Succeeded.as_str()) {
                        return false;
                    }
                }
                poisoned.iter().all(|p| dead.contains(*p))
            },
        )
        .await;
    }

    /// The reason `restyle dead` gives for a dead id.
    pub async fn dead_reason(&self, id: &str) -> String {
        let dead = restyle::ops::dead(&self.app.queue, 1000)
            .await
            .expect("the dead set is readable");
        dead.into_iter()
            .find(|d| d.job_id == id)
            .unwrap_or_else(|| panic!("{id:?} is not listed as dead"))
            .reason
    }

    /// Asserts that `id` died for a reason that mentions every one of `words`.
    pub async fn assert_died_of(&self, id: &str, words: &[&str]) {
        let reason = self.dead_reason(id).await;
        for w in words {
            assert!(
                reason.contains(w),
                "the reason {id:?} died for names {w:?}: {reason:?}"
            );
        }
    }

    /// Asserts that no file was written anywhere under the root but in the output
    /// directory.
    pub fn assert_nothing_outside(&self) {
        let mut stray = Vec::new();
        walk(self.root(), &self.out, &mut stray);
        assert!(stray.is_empty(), "files outside the output dir: {stray:?}");
    }

    /// Asserts that each id is in some state index: the ready list, the parked, lease or
    /// dead set, or a terminal state on its record.
    pub async fn assert_accounted(&self, ids: &[&[u8]]) {
        let mut c = self.conn();
        let k = self.app.queue.keys();
        let mut indexed: HashSet<Vec<u8>> = self.dead_ids().await;
        let ready: Vec<Vec<u8>> = c.lrange(k.ready(), 0, -1).await.unwrap();
        indexed.extend(ready);
        for set in [k.parked(), k.leases()] {
            let ids: Vec<Vec<u8>> = c.zrange(set, 0, -1).await.unwrap();
            indexed.extend(ids);
        }
        for id in ids {
            if indexed.contains(*id) {
                continue;
            }
            let mut key = k.job("").into_bytes();
            key.extend_from_slice(id);
            let state: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&key)
                .arg("state")
                .query_async(&mut c)
                .await
                .unwrap_or(None);
            let terminal = state
                .and_then(|s| String::from_utf8(s).ok())
                .and_then(|s| JobState::parse(&s))
                .is_some_and(JobState::is_terminal);
            assert!(
                terminal,
                "{} is in no state index",
                String::from_utf8_lossy(id)
            );
        }
    }

    /// The simulator's paid submissions so far.
    pub fn submissions(&self) -> u64 {
        self.app.sim.stats().submissions_total
    }
}

/// How long a case may take to settle on a loaded machine.
pub fn deadline() -> Duration {
    Duration::from_secs(90)
}

/// Every file under `dir` that is not under `allowed`.
fn walk(dir: &Path, allowed: &Path, stray: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.starts_with(allowed) {
            continue;
        }
        if path.is_dir() {
            walk(&path, allowed, stray);
        } else {
            stray.push(path);
        }
    }
}

/// The last lines of a log file.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The record fields of job `id` as stored, for a copy under another id.
pub async fn fields_of(w: &World, id: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = w.conn();
    c.hgetall(w.app.queue.keys().job(id)).await.unwrap()
}

/// Sets one field of a job's hash to raw bytes.
pub async fn hset_raw(w: &World, id: &[u8], field: &[u8], value: &[u8]) {
    let mut key = w.app.queue.keys().job("").into_bytes();
    key.extend_from_slice(id);
    let mut c = w.conn();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg(field)
        .arg(value)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// Pushes a raw id onto the ready list.
pub async fn push_ready(w: &World, id: &[u8]) {
    let mut c = w.conn();
    let _: () = redis::cmd("RPUSH")
        .arg(w.app.queue.keys().ready())
        .arg(id)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// A poisoned id and the words the reason it died for must contain.
pub type Poisoned<'a> = (&'a [u8], &'a [&'a str]);

impl World {
    /// The verdict of a case run by `log`'s worker: every healthy job succeeded, each
    /// poisoned id is dead with its reason, every id is accounted for, nothing was written
    /// outside the output directory, and the provider took a submission per healthy job.
    pub async fn verdict(&self, log: &Path, healthy: &[String], poisoned: &[Poisoned<'_>]) {
        let ids: Vec<&[u8]> = poisoned.iter().map(|(id, _)| *id).collect();
        self.settled(log, healthy, &ids).await;
        for (id, words) in poisoned {
            self.assert_died_of(&String::from_utf8_lossy(id), words)
                .await;
        }
        let mut all: Vec<&[u8]> = healthy.iter().map(|h| h.as_bytes()).collect();
        all.extend(&ids);
        self.assert_accounted(&all).await;
        self.assert_nothing_outside();
        assert!(
            self.submissions() >= healthy.len() as u64,
            "the provider kept submitting"
        );
    }

    /// Runs `restyle <args>` with this world's settings; fails after the deadline.
    pub async fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = self.app.cmd();
        cmd.args(args);
        tokio::task::spawn_blocking(move || run_bounded(cmd))
            .await
            .unwrap()
    }
}

/// Runs a command to its end, killing it after the case deadline.
pub fn run_bounded(mut cmd: std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run restyle");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline()) {
        Ok(out) => out.expect("wait for restyle"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{cmd:?} still running after {:?}", deadline());
        }
    }
}
