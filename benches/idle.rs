//! Idle cost and pickup benchmark: `cargo bench --bench idle`.
//!
//! Two cases, each in a fresh Redis namespace (deleted afterwards):
//!
//! - `idle_workers`: `IDLE_WORKERS` (4) real `restyle worker` processes of the built binary
//!   (built-in settings, the in-process simulator as their provider) against an empty
//!   queue. Once every worker has logged `Worker started.` and `IDLE_SETTLE_S` more
//!   seconds have passed (default: the lease plus one lease-timer tick, 18 s, as a worker
//!   starts sweeping only a lease after it connected), every command Redis executed during
//!   `IDLE_WINDOW_S` (30) seconds is counted (`INFO commandstats` delta, the bench's own
//!   `INFO` excluded): per worker per second, in total and by command.
//! - `pickup`: one idle in-process worker (`worker::run_with` on the real Redis backend,
//!   built-in settings) whose handler stamps the time it is handed a job, then finishes it.
//!   `PICKUP_JOBS` (200) one-job batches are enqueued one at a time with
//!   `producer::enqueue`, each after the previous one has finished and a random pause
//!   (10–110 ms, so the enqueue falls anywhere in the worker's idle cycle). Pickup latency
//!   = handler entry − return of the enqueue call (also − its start), both on this
//!   process's monotonic clock.
//!
//! Prints one JSON line per case on stdout, progress on stderr. Redis: `REDIS_URL`, else a
//! private `redis-server` (a shared server's other clients would be counted too).
//! `IDLE_BIN` runs another build's binary as the idle workers. A positional argument
//! filters the cases. BENCHMARKS.md ("Idle cost and pickup") says what every field counts.

use anyhow::{anyhow, bail, Context as _};
use rand::Rng as _;
use restyle::config::testing::TestSettings;
use restyle::config::Settings;
use restyle::job::{After, JobState, Transition};
use restyle::localredis::LocalRedis;
use restyle::queue::backend::{Claimed, LeaseTable};
use restyle::queue::{Queue, RetryMode};
use restyle::sim::Knobs;
use restyle::worker::{self, Handler};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SIM_KEY: &str = "sk-idle-5b0f3c7e9a21d4";
/// How long a worker process may take to log that it runs.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long one pickup (and the job's finish) may take before the case fails.
const PICKUP_DEADLINE: Duration = Duration::from_secs(30);
/// The pause before each pickup enqueue is drawn from this range (ms): wider than any
/// idle cycle, so the enqueue lands at a uniformly random phase of it.
const PICKUP_GAP_MS: std::ops::Range<u64> = 10..110;

mod common;
use common::Line;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime builds");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("idle bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// The knobs, from the environment.
#[derive(Debug)]
struct Params {
    workers: usize,
    /// `IDLE_SETTLE_S`; unset: a lease period plus one lease-timer tick (see `case_idle`).
    settle: Option<Duration>,
    window: Duration,
    pickups: usize,
    bin: PathBuf,
}

impl Params {
    fn from_env() -> anyhow::Result<Params> {
        Ok(Params {
            workers: common::env_positive("IDLE_WORKERS", 4usize)?,
            settle: std::env::var_os("IDLE_SETTLE_S")
                .map(|_| common::env_positive("IDLE_SETTLE_S", 1.0f64))
                .transpose()?
                .map(Duration::from_secs_f64),
            window: Duration::from_secs_f64(common::env_positive("IDLE_WINDOW_S", 30.0f64)?),
            pickups: common::env_positive("PICKUP_JOBS", 200usize)?,
            bin: std::env::var_os("IDLE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_restyle"))),
        })
    }
}

async fn run() -> anyhow::Result<()> {
    // Cargo passes `--bench` to harness-less benches; a filter argument selects cases.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |case: &str| filter.is_empty() || filter.iter().any(|f| case.contains(f));
    let p = Params::from_env()?;
    let (url, local) = match std::env::var("REDIS_URL") {
        Ok(u) => (u, None),
        Err(_) => {
            let dir = tempfile::tempdir().context("tempdir for redis-server")?;
            let r = LocalRedis::start(dir.path(), false).context("private redis-server")?;
            (r.url(), Some((r, dir)))
        }
    };
    eprintln!(
        "idle: redis {} ({}), {p:?}",
        restyle::config::redact_url(&url),
        if local.is_some() {
            "private server"
        } else {
            "REDIS_URL: its other clients are counted too"
        }
    );
    let client = redis::Client::open(url.as_str()).context("redis url")?;
    let mut info = client
        .get_multiplexed_async_connection()
        .await
        .context("connect to redis")?;
    let knobs = Knobs {
        api_keys: vec![SIM_KEY.to_string()],
        ..Knobs::default()
    };
    let sim = restyle::sim::spawn("127.0.0.1:0".parse()?, knobs)
        .await
        .context("simulator")?;
    let dir = tempfile::tempdir().context("workers' tempdir")?;
    let run_settings = |case: &str| {
        common::sim_settings(
            &url,
            &fresh_namespace(case),
            &sim.base_url(),
            SIM_KEY,
            dir.path(),
        )
    };
    if wanted("idle_workers") {
        let line = case_idle(&p, &run_settings("idle"), dir.path(), &mut info).await?;
        emit(&line)?;
    }
    if wanted("pickup") {
        let line = case_pickup(&p, &run_settings("pickup"), &mut info).await?;
        emit(&line)?;
    }
    sim.shutdown();
    Ok(())
}

/// The workers' effective `queue.*` settings (`check-config`'s view), whatever they are
/// called: the claim path's knobs change with the queue code this bench measures.
fn queue_settings(s: &Settings) -> Value {
    let queue: Map<String, Value> = s
        .effective()
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("queue.")?.to_string(), Value::from(v))))
        .collect();
    Value::Object(queue)
}

fn fresh_namespace(case: &str) -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("bench-{case}-{}", &tag[..8])
}

/// One JSON line on stdout, at once.
fn emit(line: &Line) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// Commands executed between two snapshots, less the bench's own `INFO` calls.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter_map(|(name, &n)| {
            let d = n.saturating_sub(before.get(name).copied().unwrap_or(0));
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Idle workers.

/// A `restyle worker` child; SIGKILLed if still running when dropped.
struct WorkerProc {
    child: Child,
    log: PathBuf,
}

impl WorkerProc {
    fn spawn(
        bin: &Path,
        settings: &TestSettings,
        dir: &Path,
        index: usize,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("idle-worker-{index}.log"));
        let f = std::fs::File::create(&log).context("worker log file")?;
        let mut cmd = Command::new(bin);
        // Nothing from the caller's environment may change the settings under test; run
        // from a tempdir, so no config/ file applies either: the built-in settings.
        settings.apply(&mut cmd);
        cmd.current_dir(dir)
            .env_remove("RUST_LOG")
            .arg("worker")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        Ok(WorkerProc { child, log })
    }

    /// True once the worker logged that it runs (connected, its fetcher claiming).
    fn started(&mut self) -> anyhow::Result<bool> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if text.contains("Worker started.") {
            return Ok(true);
        }
        if let Some(status) = self.child.try_wait()? {
            bail!("worker exited early ({status}); log:\n{text}");
        }
        Ok(false)
    }

    /// SIGTERM (a clean shutdown, as an operator stops it).
    fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

async fn case_idle(
    p: &Params,
    settings: &TestSettings,
    dir: &Path,
    info: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<Line> {
    eprintln!(
        "idle_workers: {} `restyle worker` processes on an empty queue, {:.0} s window",
        p.workers,
        p.window.as_secs_f64()
    );
    let mut procs = (0..p.workers)
        .map(|i| WorkerProc::spawn(&p.bin, settings, dir, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let until = Instant::now() + START_DEADLINE;
    for w in &mut procs {
        while !w.started()? {
            if Instant::now() > until {
                bail!("a worker did not start within {START_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Past the start-up into the steady state: a worker sweeps expired leases only from a
    // lease period after it connected (the sweep gate), then every `renew_every`.
    let q = settings.settings().queue;
    let settle = p.settle.unwrap_or(q.lease + q.renew_every);
    eprintln!("  started; settling for {:.0} s", settle.as_secs_f64());
    tokio::time::sleep(settle).await;
    let cpu_before = redis_cpu_s(info).await?;
    let before = common::commandstats(info).await?;
    let t = Instant::now();
    tokio::time::sleep(p.window).await;
    let after = common::commandstats(info).await?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = redis_cpu_s(info).await? - cpu_before;
    for w in &mut procs {
        if let Some(status) = w.child.try_wait()? {
            bail!("a worker exited during the window ({status})");
        }
    }
    for w in &procs {
        w.terminate();
    }
    let d = delta(&before, &after);
    let per = |n: u64| round(n as f64 / p.workers as f64 / secs, 3);
    let total: u64 = d.values().sum();
    let scripts = d.get("evalsha").copied().unwrap_or(0) + d.get("eval").copied().unwrap_or(0);
    let by_cmd: Map<String, Value> = d.iter().map(|(k, &v)| (k.clone(), json!(per(v)))).collect();
    let mut line = Line::default();
    line.add("case", "idle_workers")
        .add("workers", p.workers)
        .add("worker", "restyle worker processes")
        .add("settle_s", round(settle.as_secs_f64(), 3))
        .add("window_s", round(secs, 3))
        .add("redis_cmds_per_worker_s", per(total))
        .add("evalsha_per_worker_s", per(scripts))
        .add("cmds_per_worker_s", Value::Object(by_cmd))
        .add("redis_cmds_total", total)
        // The whole server's, its own housekeeping (serverCron) included.
        .add("redis_cpu_ms_per_s", round(cpu * 1000.0 / secs, 3))
        .add("queue_settings", queue_settings(&settings.settings()));
    // Wait for the clean exits (SIGKILL after 10 s), then drop the namespace.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until
        && procs
            .iter_mut()
            .any(|w| matches!(w.child.try_wait(), Ok(None)))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(procs);
    let prefix = namespace_prefix(settings).await?;
    common::drop_namespace(info, &prefix).await?;
    eprintln!(
        "  {:.2} commands/s per idle worker ({} in {secs:.1} s)",
        per(total),
        total
    );
    Ok(line)
}

/// Redis' own CPU time so far (`used_cpu_user` + `used_cpu_sys` of `INFO cpu`), seconds.
async fn redis_cpu_s(c: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<f64> {
    let text: String = redis::cmd("INFO").arg("cpu").query_async(c).await?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| anyhow!("INFO cpu has no {name}"))
    };
    Ok(field("used_cpu_user:")? + field("used_cpu_sys:")?)
}

async fn namespace_prefix(settings: &TestSettings) -> anyhow::Result<String> {
    let queue = connect(settings).await?;
    Ok(queue.keys().prefix().to_string())
}

async fn connect(settings: &TestSettings) -> anyhow::Result<Queue> {
    let s = settings.settings();
    Queue::connect(&s.redis, &s.queue, RetryMode::Persistent)
        .await
        .context("connect queue")
}

// ---------------------------------------------------------------------------------------
// Pickup latency.

/// What the pickup handler reports.
enum Seen {
    /// Handed a job (its id) at this instant.
    Picked(String, Instant),
    /// The job's terminal transition is done (false: it failed).
    Finished(bool),
}

/// Stamps the time it is handed a job, then moves the job to `succeeded` and settles.
fn stamping_handler(
    queue: Queue,
    table: Arc<LeaseTable>,
    tx: mpsc::UnboundedSender<Seen>,
) -> Handler {
    Handler::new(move |Claimed { claim, mut lease }| {
        let at = Instant::now();
        let (queue, table, tx) = (queue.clone(), table.clone(), tx.clone());
        Box::pin(async move {
            let _ = tx.send(Seen::Picked(claim.job_id.clone(), at));
            let nonce = table.nonce(&claim.token);
            let done = Transition::to(JobState::Succeeded, After::Done);
            let ok = queue
                .apply(claim.owner(), &nonce, &done, None)
                .await
                .is_ok();
            if ok {
                lease.settle();
            }
            let _ = tx.send(Seen::Finished(ok));
        })
    })
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> anyhow::Result<Seen> {
    tokio::time::timeout(PICKUP_DEADLINE, rx.recv())
        .await
        .map_err(|_| anyhow!("no pickup within {PICKUP_DEADLINE:?}"))?
        .ok_or_else(|| anyhow!("the worker's handler went away"))
}

async fn case_pickup(
    p: &Params,
    settings: &TestSettings,
    info: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<Line> {
    let s = settings.settings();
    eprintln!(
        "pickup: {} single-job enqueues, one idle in-process worker (concurrency {}), {}",
        p.pickups,
        s.worker.concurrency,
        queue_settings(&s)
    );
    let queue = connect(settings).await?;
    let table = Arc::new(LeaseTable::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = stamping_handler(queue.clone(), table.clone(), tx);
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run_with(
        queue.clone(),
        "bench-pickup".into(),
        table,
        s.worker.clone(),
        handler,
        stop.clone(),
    ));
    let measured = pickups(p, &queue, &mut rx).await;
    stop.cancel();
    w.await
        .context("worker task")?
        .context("worker ended with an error")?;
    let m = measured?;
    common::drop_namespace(info, queue.keys().prefix()).await?;
    let (from_return, from_call, enqueue) = (
        Summary::of(m.from_return),
        Summary::of(m.from_call),
        Summary::of(m.enqueue),
    );
    let mut line = Line::default();
    line.add("case", "pickup")
        .add("jobs", p.pickups)
        .add("worker", "in-process worker::run_with, real Redis backend")
        .add("pickup_ms_p50", from_return.at(0.5))
        .add("pickup_ms_p90", from_return.at(0.9))
        .add("pickup_ms_max", from_return.at(1.0))
        .add("pickup_ms_min", from_return.at(0.0))
        .add("pickup_ms_mean", from_return.mean())
        .add("from_call_ms_p50", from_call.at(0.5))
        .add("from_call_ms_p90", from_call.at(0.9))
        .add("from_call_ms_max", from_call.at(1.0))
        .add("enqueue_ms_p50", enqueue.at(0.5))
        .add("enqueue_ms_max", enqueue.at(1.0))
        .add("queue_settings", queue_settings(&s))
        .add("gap_ms", json!([PICKUP_GAP_MS.start, PICKUP_GAP_MS.end]));
    eprintln!(
        "  median {} ms, p90 {} ms, max {} ms",
        from_return.at(0.5),
        from_return.at(0.9),
        from_return.at(1.0)
    );
    Ok(line)
}

/// Per job, in ms: handler entry − enqueue return (signed), handler entry − enqueue call,
/// and the enqueue call's own duration.
#[derive(Debug, Default)]
struct Pickups {
    from_return: Vec<f64>,
    from_call: Vec<f64>,
    enqueue: Vec<f64>,
}

/// A sorted sample, in ms.
struct Summary(Vec<f64>);

impl Summary {
    fn of(mut xs: Vec<f64>) -> Self {
        xs.sort_by(f64::total_cmp);
        Summary(xs)
    }

    /// The `q` quantile (nearest rank), 3 decimals; 0 for an empty sample.
    fn at(&self, q: f64) -> f64 {
        let Some(last) = self.0.len().checked_sub(1) else {
            return 0.0;
        };
        round(self.0[(last as f64 * q).round() as usize], 3)
    }

    fn mean(&self) -> f64 {
        round(self.0.iter().sum::<f64>() / self.0.len().max(1) as f64, 3)
    }
}

/// `b − a` in ms, negative when `b` came first.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if b >= a {
        b.duration_since(a).as_secs_f64() * 1000.0
    } else {
        -(a.duration_since(b).as_secs_f64() * 1000.0)
    }
}

/// Enqueues the jobs one at a time and times each one's pickup.
async fn pickups(
    p: &Params,
    queue: &Queue,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
) -> anyhow::Result<Pickups> {
    let mut out = Pickups::default();
    let mut rng = rand::rng();
    for i in 0..p.pickups {
        // Not waiting for a state: a random phase of the worker's idle cycle.
        tokio::time::sleep(Duration::from_millis(rng.random_range(PICKUP_GAP_MS))).await;
        let batch_id = format!("pickup-{i:04}");
        let batch = common::batch(
            &batch_id,
            1,
            "https://media.example.com/bench/pickup.mp4",
            |_| "Pickup: the clip as a watercolour".to_string(),
        );
        let called = Instant::now();
        let e = restyle::producer::enqueue(queue, &batch)
            .await
            .context("enqueue")?;
        let returned = Instant::now();
        if e.added != 1 {
            bail!("enqueue of {batch_id} added {} jobs", e.added);
        }
        let Seen::Picked(id, at) = next_seen(rx).await? else {
            bail!("a job finished that was not picked up");
        };
        if !id.starts_with(&batch_id) {
            bail!("picked {id} while waiting for {batch_id}");
        }
        // Signed: the worker may be handed the job before this task has been scheduled
        // to read the enqueue's reply (both run on this process's runtime).
        out.from_return.push(signed_ms(returned, at));
        out.from_call.push(signed_ms(called, at));
        out.enqueue.push(signed_ms(called, returned));
        let Seen::Finished(ok) = next_seen(rx).await? else {
            bail!("{id} was picked up twice");
        };
        if !ok {
            bail!("{id}: the terminal transition failed");
        }
        if (i + 1) % 50 == 0 {
            eprintln!("  {} / {}", i + 1, p.pickups);
        }
    }
    Ok(out)
}
