//! Upstream economy benchmark: `cargo bench --bench economy`.
//!
//! How many polls a job costs and how long after its generation completes the runner
//! notices, per poll schedule and latency distribution. Each case runs on a fresh
//! namespace of one private Redis and a fresh simulator (in process, time-scaled by
//! `ECONOMY_SCALE`, 0.02: a 200 s generation takes 4 s), with one `restyle worker`
//! process of the built binary; the default schedule (15 s first, doubling with full
//! jitter, capped at 60 s, deadline 1000 s) is scaled by the same factor. A warm-up batch
//! (`ECONOMY_WARM`, 64 jobs) gives the learned schedule its history; the simulator's
//! counters are then reset (`DELETE /sim/stats`) and the measured batch (`ECONOMY_JOBS`,
//! 256) runs with `ECONOMY_CAP` (32) generations in flight, so its jobs are submitted in
//! waves as a real batch under a cap is. Figures come from the simulator's `/sim/stats`:
//! polls per generation and detection delay (the first poll that saw the generation
//! done minus its completion, in simulated seconds).
//!
//! Prints one JSON line per case on stdout (progress on stderr). `ECONOMY_CASES` (a
//! comma list of case names, e.g. `uniform/learned,lognormal/push`) picks cases. A case
//! is a latency distribution × a configuration ([`Config`]): a name, the provider its
//! jobs use, whether push completion is on, and what it changes in the worker's settings
//! and the simulator's knobs. `push` runs the jobs on fal with webhooks: the simulator
//! signs and sends them to a `restyle receive` process of the built binary on loopback,
//! which moves the job's next poll to now; the detection is still the poll that saw the
//! generation done. BENCHMARKS.md ("Upstream economy") has the figures and the command.

use anyhow::{bail, Context as _};
use restyle::config::testing::TestSettings;
use restyle::config::PollSettings;
use restyle::localredis::LocalRedis;
use restyle::model::ProviderName;
use restyle::queue::{Queue, RetryMode};
use restyle::sim::{Knobs, LatencyDist, SimHandle, Spread};
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const SIM_KEY: &str = "sk-economy-5d1f08a2c7e4";
/// `push.secret` of the push case (the Kling callbacks' HMAC key; fal's are signed).
const PUSH_SECRET: &str = "push-economy-3b9e27c4d1a6f580";
/// How often the bench looks at the batch and the simulator.
const WATCH_EVERY: Duration = Duration::from_millis(20);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime builds");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("economy bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// The run's knobs, from the environment.
#[derive(Debug, Clone)]
struct Params {
    scale: f64,
    jobs: usize,
    warm: usize,
    cap: u32,
    /// `queue.idle_poll` of the worker: it adds up to this (÷ scale) to each detection.
    idle_poll: Duration,
}

impl Params {
    fn from_env() -> anyhow::Result<Params> {
        let scale = std::env::var("ECONOMY_SCALE")
            .ok()
            .map(|v| v.trim().parse::<f64>())
            .transpose()
            .context("ECONOMY_SCALE")?
            .unwrap_or(0.02);
        if !(scale > 0.0 && scale <= 1.0) {
            bail!("ECONOMY_SCALE must be within (0, 1]");
        }
        Ok(Params {
            scale,
            jobs: common::env_positive("ECONOMY_JOBS", 256usize)?,
            warm: common::env_positive("ECONOMY_WARM", 64usize)?,
            cap: common::env_positive("ECONOMY_CAP", 32u32)?,
            idle_poll: Duration::from_millis(common::env_positive("ECONOMY_IDLE_POLL_MS", 5u64)?),
        })
    }

    /// The default schedule, time-scaled.
    fn poll(&self) -> PollSettings {
        PollSettings {
            first_delay: Duration::from_secs(15).mul_f64(self.scale),
            max_interval: Duration::from_secs(60).mul_f64(self.scale),
            deadline: Duration::from_secs(1000).mul_f64(self.scale),
        }
    }
}

/// A latency distribution of the simulator.
#[derive(Debug, Clone, Copy)]
enum Latency {
    /// U(200 s, 240 s): the simulator's default.
    Uniform,
    /// Median 200 s, sigma 0.5: p90 ≈ 380 s, p99 ≈ 640 s.
    Lognormal,
    /// U(200 s, 240 s), doubled to U(400 s, 480 s) once half the measured batch is submitted.
    Shift,
}

impl Latency {
    fn name(self) -> &'static str {
        match self {
            Latency::Uniform => "uniform",
            Latency::Lognormal => "lognormal",
            Latency::Shift => "shift",
        }
    }

    fn knobs(self, k: Knobs) -> Knobs {
        match self {
            Latency::Uniform | Latency::Shift => k,
            Latency::Lognormal => Knobs {
                latency_dist: LatencyDist::Lognormal,
                latency_median: Duration::from_secs(200),
                latency_sigma: 0.5,
                ..k
            },
        }
    }
}

/// A configuration under test: its name, the provider its jobs use, whether push
/// completion is on (a `restyle receive` on loopback, `[push]` pointing at it), and what
/// it changes in the worker's settings and in the simulator's knobs.
struct Config {
    name: &'static str,
    provider: ProviderName,
    push: bool,
    settings: fn(TestSettings) -> TestSettings,
    knobs: fn(Knobs) -> Knobs,
}

/// Every configuration, in the order they run. Add a case here.
fn configs() -> Vec<Config> {
    vec![
        Config {
            name: "default",
            provider: ProviderName::Aimlapi,
            push: false,
            settings: |s| s.set("learned_poll.enabled", false),
            knobs: |k| k,
        },
        Config {
            name: "learned",
            provider: ProviderName::Aimlapi,
            push: false,
            settings: |s| s.set("learned_poll.enabled", true),
            knobs: |k| k,
        },
        // fal with webhooks, every one delivered at once; polling on the default schedule
        // stays the source of truth (a push only moves the next poll to now).
        Config {
            name: "push",
            provider: ProviderName::Fal,
            push: true,
            settings: |s| s.set("learned_poll.enabled", false),
            knobs: |k| Knobs {
                push_drop_rate: 0.0,
                push_duplicate_rate: 0.0,
                push_delay: Duration::ZERO,
                ..k
            },
        },
    ]
}

async fn run() -> anyhow::Result<()> {
    let p = Params::from_env()?;
    let dir = tempfile::tempdir().context("tempdir")?;
    let redis = LocalRedis::start(dir.path(), false).context("private redis-server")?;
    let wanted: Option<Vec<String>> = std::env::var("ECONOMY_CASES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    eprintln!(
        "economy: time_scale {}, {} warm-up + {} measured jobs per case, {} in flight, idle_poll {} ms",
        p.scale,
        p.warm,
        p.jobs,
        p.cap,
        p.idle_poll.as_millis()
    );
    for latency in [Latency::Uniform, Latency::Lognormal, Latency::Shift] {
        for config in configs() {
            let name = format!("{}/{}", latency.name(), config.name);
            if wanted.as_ref().is_some_and(|w| !w.contains(&name)) {
                continue;
            }
            let line = case(&p, &redis.url(), dir.path(), latency, &config, &name).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
    }
    Ok(())
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn spread(s: &Spread) -> Value {
    json!({"mean": r2(s.mean), "median": r2(s.median), "p90": r2(s.p90), "max": r2(s.max)})
}

async fn case(
    p: &Params,
    url: &str,
    root: &Path,
    latency: Latency,
    config: &Config,
    name: &str,
) -> anyhow::Result<Value> {
    let base = Knobs {
        api_keys: vec![SIM_KEY.into()],
        time_scale: p.scale,
        seed: Some(14),
        ..Knobs::default()
    };
    let knobs = (config.knobs)(latency.knobs(base));
    let sim = restyle::sim::spawn("127.0.0.1:0".parse()?, knobs.clone()).await?;
    let namespace = format!("economy-{}", uuid::Uuid::new_v4().simple());
    let dir = root.join(name.replace('/', "-"));
    std::fs::create_dir_all(&dir)?;
    let sim_url = sim.base_url();
    let mut settings = common::sim_settings(url, &namespace, &sim_url, SIM_KEY, &dir)
        .provider_at(config.provider, &sim_url, SIM_KEY)
        .poll(p.poll())
        .set("queue.idle_poll", p.idle_poll)
        .every_provider("rate_limit", 0.0)
        .every_provider("max_in_flight", p.cap);
    let receiver_port = if config.push {
        let port = free_port()?;
        settings = settings
            .set(
                "push.public_url",
                format!("http://127.0.0.1:{port}").as_str(),
            )
            .set("push.secret", PUSH_SECRET)
            .set(
                "providers.fal.webhook_jwks_url",
                format!("{sim_url}/.well-known/jwks.json").as_str(),
            );
        Some(port)
    } else {
        None
    };
    let settings = (config.settings)(settings);
    let s = settings.settings();
    let queue = Queue::connect(&s.redis, &s.queue, RetryMode::Persistent).await?;
    let until = Instant::now() + Duration::from_secs(30);
    let receiver = match receiver_port {
        Some(port) => {
            let listen = format!("127.0.0.1:{port}");
            let mut r = Proc::spawn(
                &settings,
                &dir,
                "receive",
                &["receive", "--listen", &listen],
            )?;
            r.wait_healthy(&format!("http://{listen}/healthz"), until)
                .await?;
            Some(r)
        }
        None => None,
    };
    let mut worker = Proc::spawn(
        &settings,
        &dir,
        "worker",
        &["worker", "--concurrency", "64"],
    )?;
    worker.wait_logged("Worker started.", until)?;
    eprintln!("{name}: warm-up ({} jobs)", p.warm);
    let deadline = Duration::from_secs_f64(4000.0 * p.scale + 60.0);
    let batch = |id: &str, n: usize| {
        let mut b = common::batch(id, n, "https://media.example.com/clip.mp4", |i| {
            format!("Variant {i}: the same shot in palette {i}")
        });
        b.shared.provider = config.provider;
        b
    };
    run_batch(&queue, &sim, &batch("warm", p.warm), deadline, None).await?;
    sim.reset_stats();
    let started = Instant::now();
    eprintln!("{name}: measured batch ({} jobs)", p.jobs);
    let shift = matches!(latency, Latency::Shift).then(|| {
        let mut k = knobs.clone();
        // A seed would restart the simulator's RNG, and with it its generation ids.
        k.seed = None;
        k.latency_min *= 2;
        k.latency_max *= 2;
        (p.jobs as u64 / 2, k)
    });
    run_batch(
        &queue,
        &sim,
        &batch("measured", p.jobs),
        deadline * 4,
        shift,
    )
    .await?;
    let wall = started.elapsed().as_secs_f64();
    let st = sim.stats();
    let pushes = sim.push_stats();
    worker.stop();
    if let Some(r) = receiver {
        r.stop();
    }
    common::drop_namespace(&mut queue.connection(), queue.keys().prefix()).await?;
    sim.shutdown();
    Ok(json!({
        "case": name,
        "latency": latency.name(),
        "config": config.name,
        "provider": config.provider.as_str(),
        "jobs": p.jobs,
        "time_scale": p.scale,
        "polls_per_job": spread(&st.polls_per_generation),
        "detection_delay_s": spread(&st.detection_delay_s),
        "detected": st.polls_per_generation.count,
        "polls_total": st.polls_total,
        "rate_limited": st.rate_limited_total,
        "duplicates": st.duplicate_submissions,
        "pushes_delivered": pushes.delivered,
        "wall_s": r2(wall),
    }))
}

/// A port free on loopback now (for the receiver, which binds it itself).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(l.local_addr()?.port())
}

/// Enqueues the batch and waits until it is finished; with `shift`, replaces the
/// simulator's knobs once that many generations of it were submitted.
async fn run_batch(
    queue: &Queue,
    sim: &SimHandle,
    b: &restyle::model::ValidatedBatch,
    deadline: Duration,
    mut shift: Option<(u64, Knobs)>,
) -> anyhow::Result<()> {
    let batch_id = b.shared.batch_id.as_str();
    restyle::producer::enqueue(queue, b).await?;
    let end = Instant::now() + deadline;
    loop {
        if let Some((at, _)) = &shift {
            if sim.stats().submissions_total >= *at {
                let (_, k) = shift.take().expect("shift");
                sim.set_knobs(k);
            }
        }
        let info = queue.batch(batch_id).await?.context("batch exists")?;
        if info.is_finished() {
            return Ok(());
        }
        if Instant::now() > end {
            bail!(
                "batch {batch_id} not finished in {deadline:?}: {:?}",
                info.counts
            );
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// A `restyle` child (`worker`, `receive`); SIGKILLed if still running when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(
        settings: &TestSettings,
        dir: &Path,
        name: &str,
        args: &[&str],
    ) -> anyhow::Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_restyle"));
        settings.apply(&mut cmd);
        cmd.current_dir(dir)
            .env_remove("RUST_LOG")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f);
        Ok(Proc {
            child: cmd
                .spawn()
                .with_context(|| format!("spawn restyle {name}"))?,
            log,
        })
    }

    /// Fails when the child exited or `until` passed.
    fn check_alive(&mut self, until: Instant, what: &str) -> anyhow::Result<()> {
        let text = || std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(status) = self.child.try_wait()? {
            bail!("{what}: exited early ({status}); log:\n{}", text());
        }
        if Instant::now() > until {
            bail!("{what}: not in time; log:\n{}", text());
        }
        Ok(())
    }

    /// Waits until the child's log contains `line`.
    fn wait_logged(&mut self, line: &str, until: Instant) -> anyhow::Result<()> {
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(line) {
                return Ok(());
            }
            self.check_alive(until, line)?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `url` answers 200.
    async fn wait_healthy(&mut self, url: &str, until: Instant) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            self.check_alive(until, url)?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
