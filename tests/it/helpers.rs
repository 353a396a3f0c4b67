//! Test helpers: one private `redis-server` per test binary (or `REDIS_URL`), a unique
//! namespace and output directory per test, the simulator on a free port, and ways to
//! drive workers step by step or as real processes of the built binary. Both kinds of
//! worker get their settings from one [`TestSettings`] description ([`test_settings`]).

use restyle::config::testing::TestSettings;
use restyle::config::{PollSettings, Settings};
use restyle::localredis::LocalRedis;
use restyle::model::{ModelKind, ProviderName, ValidatedBatch};
use restyle::queue::{BatchInfo, Queue, RetryMode};
use restyle::sim::{self, Knobs, SimHandle};
use restyle::worker::{self, Runtime, Stepped};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const API_KEY: &str = "sk-test-7f3a9c1e5b2d4680";

/// Scales heavy tests: `RESTYLE_TEST_SCALE=10` for a full run.
pub fn scale() -> usize {
    std::env::var("RESTYLE_TEST_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The Redis every test shares: `REDIS_URL`, or a private server for this test binary.
pub fn redis_url() -> String {
    static PRIVATE: OnceLock<(LocalRedis, tempfile::TempDir)> = OnceLock::new();
    if let Ok(url) = std::env::var("REDIS_URL") {
        return url;
    }
    let (r, _) = PRIVATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = LocalRedis::start(dir.path(), false).expect("start private redis-server");
        (r, dir)
    });
    r.url()
}

pub fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        restyle::telemetry::init(restyle::telemetry::LogFormat::Pretty, "debug");
    }
}

/// The pause between two checks of a condition that a loop awaits with a deadline.
pub async fn poll_interval() {
    let poll_every = Duration::from_millis(20);
    tokio::time::sleep(poll_every).await;
}

/// One test's world: namespace, output dir, simulator, settings pointing at both.
#[derive(Debug)]
pub struct TestApp {
    /// The in-process settings, from [`TestApp::test`]; tests may change them further.
    pub settings: Settings,
    /// The description `settings` came from; [`TestApp::cmd`] gives child processes it.
    pub test: TestSettings,
    pub sim: SimHandle,
    pub out: tempfile::TempDir,
    pub queue: Queue,
}

/// A poll schedule fast enough for tests (the simulator is time-scaled to match).
pub fn fast_poll() -> PollSettings {
    PollSettings {
        first_delay: Duration::from_millis(100),
        max_interval: Duration::from_millis(300),
        deadline: Duration::from_secs(20),
    }
}

/// Knobs for a fast, well-behaved simulator: 2–3 s generations at a tenth of the time.
pub fn fast_knobs() -> Knobs {
    Knobs {
        api_keys: vec![API_KEY.to_string()],
        time_scale: 0.1,
        latency_min: Duration::from_secs(2),
        latency_max: Duration::from_secs(3),
        ..Knobs::default()
    }
}

/// The settings every test starts from: its Redis namespace, the simulator as aimlapi,
/// outputs in `out`, fast timers, and no admission limits unless a test is about them.
pub fn test_settings(redis_url: &str, namespace: &str, sim_url: &str, out: &Path) -> TestSettings {
    TestSettings::new()
        .redis(redis_url, namespace)
        .provider_at(ProviderName::Aimlapi, sim_url, API_KEY)
        .poll(fast_poll())
        .output(out)
        .set("queue.idle_poll", Duration::from_millis(20))
        .set("retry.base_delay", Duration::from_millis(20))
        .set("retry.max_delay", Duration::from_millis(200))
        .every_provider("rate_limit", 0.0)
        .every_provider("max_in_flight", 0u32)
        // A 429 without Retry-After cools the fleet down briefly in tests.
        .every_provider("cooldown", Duration::from_millis(200))
}

impl TestApp {
    pub async fn new(knobs: Knobs) -> TestApp {
        Self::with_redis(knobs, &redis_url()).await
    }

    /// A test world on a Redis of its own (crash and restart tests).
    pub async fn with_redis(knobs: Knobs, url: &str) -> TestApp {
        init_logs();
        let sim = sim::spawn("127.0.0.1:0".parse().unwrap(), knobs)
            .await
            .expect("simulator starts");
        let out = tempfile::tempdir().expect("tempdir");
        let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
        let test = test_settings(url, &namespace, &sim.base_url(), out.path());
        let settings = test.settings();
        let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::Persistent)
            .await
            .expect("redis reachable");
        TestApp {
            settings,
            test,
            sim,
            out,
            queue,
        }
    }

    /// A worker runtime in this process (for driving stages step by step).
    pub fn runtime(&self) -> Runtime {
        let ups = restyle::upstream::build_all(&self.settings).expect("providers");
        Runtime::new(self.queue.clone(), self.settings.clone(), ups)
    }

    /// A validated edit batch with these prompts.
    pub fn batch(&self, batch_id: &str, prompts: &[String]) -> ValidatedBatch {
        ValidatedBatch {
            shared: restyle::model::BatchShared {
                v: restyle::model::PAYLOAD_VERSION,
                batch_id: batch_id.to_string(),
                provider: ProviderName::Aimlapi,
                model: ModelKind::Edit,
                video: "https://media.example.com/clip.mp4".into(),
                image_list: vec![],
                keep_audio: false,
                aspect_ratio: None,
                duration: None,
                elements: vec![],
                clip_seconds: None,
                max_cost: None,
                on_done: None,
                media: Default::default(),
                tier: None,
                source: None,
            },
            prompts: prompts.to_vec(),
        }
    }

    pub async fn enqueue(&self, batch_id: &str, prompts: &[String]) -> u64 {
        let b = self.batch(batch_id, prompts);
        restyle::producer::enqueue(&self.queue, &b)
            .await
            .expect("enqueue")
            .added
    }

    pub async fn info(&self, batch_id: &str) -> BatchInfo {
        self.queue
            .batch(batch_id)
            .await
            .expect("redis")
            .expect("batch exists")
    }

    /// Runs stages in this process until the batch is finished (or the deadline).
    pub async fn drive(&self, rt: &Runtime, batch_id: &str, deadline: Duration) -> BatchInfo {
        let end = Instant::now() + deadline;
        loop {
            match worker::step(rt).await.expect("step") {
                Stepped::Processed => continue,
                Stepped::Empty => {
                    let info = self.info(batch_id).await;
                    if info.is_finished() {
                        return info;
                    }
                    assert!(
                        Instant::now() < end,
                        "batch {batch_id} not finished in {deadline:?}: {:?}",
                        info.counts
                    );
                    // Parked jobs fall due on the clock; look again shortly.
                    poll_interval().await;
                }
            }
        }
    }

    /// Polls until the batch is finished, with a deadline (workers run elsewhere).
    pub async fn wait_finished(&self, batch_id: &str, deadline: Duration) -> BatchInfo {
        let end = Instant::now() + deadline;
        loop {
            let info = self.info(batch_id).await;
            if info.is_finished() {
                return info;
            }
            assert!(
                Instant::now() < end,
                "batch {batch_id} not finished in {deadline:?}: {:?}",
                info.counts
            );
            poll_interval().await;
        }
    }

    /// The built binary with this test's settings (Redis namespace, simulator, output dir,
    /// timers) and nothing inherited that could change them; run from an empty directory
    /// so only built-in settings apply beneath them.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_restyle"));
        c.current_dir(self.out.path()).env_remove("RUST_LOG");
        self.test.apply(&mut c);
        c
    }

    /// Starts `restyle worker` as a child process, logging to `log`.
    pub fn spawn_worker(&self, concurrency: usize, log: &Path) -> WorkerProc {
        let f = std::fs::File::create(log).expect("log file");
        let child = self
            .cmd()
            .args(["worker", "--concurrency", &concurrency.to_string()])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn worker");
        WorkerProc { child }
    }

    /// A job's record, which must exist and parse.
    pub async fn record(&self, job_id: &str) -> restyle::job::JobRecord {
        self.queue
            .job(job_id)
            .await
            .expect("redis")
            .expect("the job exists")
            .expect("a readable record")
    }

    /// Runs the built binary with `args` (see [`TestApp::cmd`]); it must exit 0.
    pub fn run_ok(&self, args: &[&str]) -> std::process::Output {
        let out = self.cmd().args(args).output().expect("restyle runs");
        assert!(
            out.status.success(),
            "restyle {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn results_path(&self, batch_id: &str) -> PathBuf {
        self.out.path().join(batch_id).join("results.jsonl")
    }
}

/// A worker process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct WorkerProc {
    pub child: Child,
}

impl WorkerProc {
    /// SIGTERM, then wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait worker")
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` distinct prompts.
pub fn prompts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("Variant {i}: the same shot as a watercolour, palette {i}"))
        .collect()
}
