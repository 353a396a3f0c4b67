//! Makespan benchmark: `cargo bench --bench makespan`.
//!
//! How well does the fleet use the provider's in-flight cap? `MAKESPAN_JOBS` jobs (2,000),
//! every generation taking exactly `L` of wall time (`MAKESPAN_L_MS`, 1,000 ms), a cap of
//! `C` generations in flight (`MAKESPAN_CAP`, 20) enforced by the runner
//! (`providers.aimlapi.max_in_flight`) and by the simulator (429 beyond it), and
//! `MAKESPAN_WORKERS` (4) `restyle worker` processes of the built binary sharing one Redis.
//! A perfect fleet keeps `C` generations running all the time and ends after `N·L/C`.
//!
//! Prints one JSON line per batch on stdout (progress on stderr): the headline figures
//! first (`ideal_s`, `measured_s`, `efficiency`, 429s, peak in flight, Redis commands per
//! job, submissions, duplicates), then the settings and diagnostics that say where the time
//! went. One batch by default; `MAKESPAN_BATCHES` runs more, one after the other, on the
//! same fleet and namespace. Other knobs: `MAKESPAN_IDLE_POLL_MS`, `MAKESPAN_CONCURRENCY`
//! (default: the built-in settings), `MAKESPAN_FIRST_DELAY_MS` (`L`),
//! `MAKESPAN_MAX_INTERVAL_MS` (`L/10`), `MAKESPAN_RATE` and `MAKESPAN_BURST` (a request rate
//! for runner and simulator alike; off by default), `MAKESPAN_DUMP_DIR` (keep the raw
//! result lines and request log). BENCHMARKS.md ("Makespan under the in-flight cap") says
//! what every field counts.

use anyhow::{anyhow, bail, Context as _};
use restyle::config::testing::TestSettings;
use restyle::config::{PollSettings, Settings};
use restyle::localredis::LocalRedis;
use restyle::model::ValidatedBatch;
use restyle::queue::{BatchInfo, Queue, RetryMode};
use restyle::sim::{Knobs, RequestKind, RequestLogEntry, SimHandle};
use restyle::sink::ResultLine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SIM_KEY: &str = "sk-makespan-91c4e0b7d2a6";
/// The simulator's latency knobs are given in "provider seconds" and scaled by this:
/// `L` = 1 s of wall time is a 200 s generation at 0.005.
const TIME_SCALE: f64 = 0.005;
/// How often the bench reads the batch hash (to notice the end) and samples the slot set
/// and the wait list; these reads are not counted in `redis_cmds_per_job`.
const WATCH_EVERY: Duration = Duration::from_millis(20);

mod common;
use common::Line;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime builds");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("makespan bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// The case's knobs, from the environment.
#[derive(Debug, Clone)]
struct Params {
    jobs: usize,
    latency: Duration,
    cap: u32,
    workers: usize,
    /// `--concurrency` of each worker process (default: the built-in `worker.concurrency`).
    concurrency: usize,
    /// `queue.idle_poll` of the workers (default: the built-in one).
    idle_poll: Duration,
    /// `poll.first_delay` (default: `L`).
    first_delay: Duration,
    /// `poll.max_interval` (default: `L/10`).
    max_interval: Duration,
    /// Requests per second for runner and simulator alike; 0 = no rate limit anywhere.
    rate: f64,
    /// Burst of that rate, runner and simulator alike (default `2·C`: a cycle's polls and
    /// the submits that follow them come close together).
    burst: u32,
    /// Batches run one after the other on the same fleet and namespace.
    batches: usize,
}

fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    common::env_positive(name, default)
}

fn env_f64(name: &str, default: f64) -> anyhow::Result<f64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| anyhow!("{name}={v:?} is not a number ≥ 0")),
        Err(_) => Ok(default),
    }
}

impl Params {
    fn from_env() -> anyhow::Result<Params> {
        let latency = Duration::from_millis(env_num("MAKESPAN_L_MS", 1000)?);
        let l_ms = latency.as_millis() as u64;
        let cap = u32::try_from(env_num("MAKESPAN_CAP", 20)?).context("MAKESPAN_CAP")?;
        // Unless overridden, the workers run with the shipped defaults for these.
        let builtin = Settings::builtin();
        Ok(Params {
            jobs: env_num("MAKESPAN_JOBS", 2000)? as usize,
            latency,
            cap,
            workers: env_num("MAKESPAN_WORKERS", 4)? as usize,
            concurrency: env_num("MAKESPAN_CONCURRENCY", builtin.worker.concurrency as u64)?
                as usize,
            idle_poll: Duration::from_millis(env_num(
                "MAKESPAN_IDLE_POLL_MS",
                builtin.queue.idle_poll.as_millis() as u64,
            )?),
            first_delay: Duration::from_millis(env_num("MAKESPAN_FIRST_DELAY_MS", l_ms)?),
            max_interval: Duration::from_millis(env_num(
                "MAKESPAN_MAX_INTERVAL_MS",
                (l_ms / 10).max(1),
            )?),
            rate: env_f64("MAKESPAN_RATE", 0.0)?,
            burst: u32::try_from(env_num("MAKESPAN_BURST", 2 * u64::from(cap))?)
                .context("MAKESPAN_BURST")?,
            batches: env_num("MAKESPAN_BATCHES", 1)? as usize,
        })
    }

    fn ideal_s(&self) -> f64 {
        self.jobs as f64 * self.latency.as_secs_f64() / f64::from(self.cap)
    }

    /// Past this the case is reported as a failure instead of being waited for.
    fn deadline(&self) -> Duration {
        Duration::from_secs_f64((self.ideal_s() * 4.0).max(60.0))
    }
}

async fn run() -> anyhow::Result<()> {
    let p = Params::from_env()?;
    let (url, _local) = match std::env::var("REDIS_URL") {
        Ok(u) => (u, None),
        Err(_) => {
            let dir = tempfile::tempdir().context("tempdir for redis-server")?;
            let r = LocalRedis::start(dir.path(), false).context("private redis-server")?;
            (r.url(), Some((r, dir)))
        }
    };
    eprintln!(
        "makespan: {} jobs, L = {} ms, cap {}, {} workers × concurrency {}, idle_poll {} ms, \
         first poll {} ms, max poll interval {} ms, rate {}; ideal {:.1} s; redis {}",
        p.jobs,
        p.latency.as_millis(),
        p.cap,
        p.workers,
        p.concurrency,
        p.idle_poll.as_millis(),
        p.first_delay.as_millis(),
        p.max_interval.as_millis(),
        if p.rate > 0.0 {
            format!("{}/s burst {}", p.rate, p.burst)
        } else {
            "off".into()
        },
        p.ideal_s(),
        restyle::config::redact_url(&url),
    );
    case_makespan(&p, &url).await
}

/// One JSON line on stdout, at once.
fn emit(line: &Line) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Worker processes.

/// A `restyle worker` child; SIGKILLed if still running when dropped.
struct WorkerProc {
    child: Child,
    log: PathBuf,
}

impl WorkerProc {
    fn spawn(p: &Params, env: &WorkerEnv<'_>, index: usize) -> anyhow::Result<WorkerProc> {
        let log = env.dir.join(format!("worker-{index}.log"));
        let f = std::fs::File::create(&log).context("worker log file")?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_restyle"));
        // Nothing from the caller's environment may change the settings under test.
        env.settings.apply(&mut cmd);
        cmd.current_dir(env.dir)
            .env_remove("RUST_LOG")
            .args(["worker", "--concurrency", &p.concurrency.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f);
        let child = cmd.spawn().context("spawn restyle worker")?;
        Ok(WorkerProc { child, log })
    }

    /// Waits until the worker logs that it runs (it is connected and claiming).
    fn wait_started(&mut self, until: Instant) -> anyhow::Result<()> {
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains("Worker started.") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("worker exited early ({status}); log:\n{text}");
            }
            if Instant::now() > until {
                bail!("worker did not start in time; log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then up to 10 s for a clean exit.
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

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Where the workers run and the settings they (and the bench's own queue) use.
struct WorkerEnv<'a> {
    dir: &'a Path,
    settings: &'a TestSettings,
}

/// The fleet's settings: the simulator run of `common`, the poll schedule and idle poll
/// under test, and the in-flight cap and request rate on aimlapi.
fn fleet_settings(
    p: &Params,
    url: &str,
    namespace: &str,
    sim_url: &str,
    dir: &Path,
) -> TestSettings {
    common::sim_settings(url, namespace, sim_url, SIM_KEY, dir)
        .poll(PollSettings {
            first_delay: p.first_delay,
            max_interval: p.max_interval,
            deadline: (p.latency * 20).max(Duration::from_secs(600)),
        })
        .set("queue.idle_poll", p.idle_poll)
        .set("providers.aimlapi.max_in_flight", p.cap)
        .set("providers.aimlapi.rate_limit", p.rate)
        .set("providers.aimlapi.rate_burst", p.burst)
}

// ---------------------------------------------------------------------------------------
// Measurements.

/// Commands executed between the two snapshots, less the bench's own (`INFO`, and per
/// watcher read one `HGETALL`, one `ZCARD` and one `LLEN`).
fn commands_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    watcher_reads: u64,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter_map(|(name, &n)| {
            let mut d = n.saturating_sub(before.get(name).copied().unwrap_or(0));
            if matches!(name.as_str(), "hgetall" | "zcard" | "llen") {
                d = d.saturating_sub(watcher_reads);
            }
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Mean, median, 99th percentile and maximum of a sample, in the sample's unit.
fn summary(mut xs: Vec<i64>) -> Value {
    if xs.is_empty() {
        return Value::Null;
    }
    xs.sort_unstable();
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    let mean = xs.iter().sum::<i64>() as f64 / xs.len() as f64;
    json!({"mean": r3(mean), "p50": at(0.5), "p99": at(0.99), "max": xs[xs.len() - 1]})
}

// ---------------------------------------------------------------------------------------
// The case.

fn batch(batch_id: &str, n: usize) -> ValidatedBatch {
    common::batch(
        batch_id,
        n,
        "https://media.example.com/bench/makespan.mp4",
        |i| format!("Makespan job {i}: the clip redrawn in charcoal, grain {i}"),
    )
}

async fn start_sim(p: &Params) -> anyhow::Result<SimHandle> {
    let provider_latency = p.latency.div_f64(TIME_SCALE);
    let knobs = Knobs {
        api_keys: vec![SIM_KEY.to_string()],
        time_scale: TIME_SCALE,
        latency_min: provider_latency,
        latency_max: provider_latency,
        max_in_flight: Some(p.cap),
        rate_limit: (p.rate > 0.0).then_some(p.rate),
        rate_burst: (p.rate > 0.0).then_some(p.burst),
        ..Knobs::default()
    };
    restyle::sim::spawn("127.0.0.1:0".parse()?, knobs)
        .await
        .context("simulator")
}

/// How a watched batch ended.
enum Watched {
    /// The batch hash says finished.
    Finished(BatchInfo),
    /// Not finished by [`Params::deadline`]: the batch hash at that moment.
    Deadline(BatchInfo),
}

/// What the watcher saw at one tick (it reads the batch hash, and the runner's slot set
/// and wait list in one pipeline, every [`WATCH_EVERY`]).
#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    /// Since the enqueue, ms.
    t_ms: u64,
    done: u64,
    /// Jobs of the batch in state `queued` (not yet submitted).
    queued: u64,
    /// Members of the provider's slot set (`ZCARD slots:aimlapi`).
    slots: u64,
    /// Entries of the provider's wait list (`LLEN waiting:aimlapi`).
    waiting: u64,
}

/// Waits for the batch hash to say finished, or for the deadline, sampling as it goes.
async fn watch(
    f: &mut Fleet<'_>,
    batch_id: &str,
    start: Instant,
    samples: &mut Vec<Sample>,
) -> anyhow::Result<Watched> {
    let prefix = f.queue.keys().prefix().to_string();
    let (slots_key, waiting_key) = (
        format!("{prefix}slots:aimlapi"),
        format!("{prefix}waiting:aimlapi"),
    );
    let mut shown = Instant::now();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let info = f
            .queue
            .batch(batch_id)
            .await?
            .ok_or_else(|| anyhow!("batch hash vanished"))?;
        let (slots, waiting): (u64, u64) = redis::pipe()
            .zcard(&slots_key)
            .llen(&waiting_key)
            .query_async(&mut f.info_conn)
            .await?;
        samples.push(Sample {
            t_ms: start.elapsed().as_millis() as u64,
            done: info.done,
            queued: info.count(restyle::job::JobState::Queued),
            slots,
            waiting,
        });
        if info.is_finished() {
            return Ok(Watched::Finished(info));
        }
        if shown.elapsed() >= Duration::from_secs(5) {
            shown = Instant::now();
            eprintln!(
                "  {:>6.1}s  done {}/{}, slots held {slots}, wait list {waiting}",
                start.elapsed().as_secs_f64(),
                info.done,
                info.total
            );
        }
        if start.elapsed() > f.p.deadline() {
            return Ok(Watched::Deadline(info));
        }
    }
}

fn read_results(path: &Path) -> anyhow::Result<Vec<ResultLine>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).context("result line"))
        .collect()
}

/// Keeps the raw material for a closer look (`MAKESPAN_DUMP_DIR`): the result lines, the
/// simulator's request log and the watcher's samples as JSON lines, and the batch's
/// `created_at`.
fn dump(
    dir: &Path,
    results: &Path,
    requests: &[RequestLogEntry],
    samples: &[Sample],
    created_at: u64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::copy(results, dir.join("results.jsonl"))?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("requests.jsonl"))?);
    for r in requests {
        writeln!(f, "{}", serde_json::to_string(r)?)?;
    }
    f.flush()?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("samples.jsonl"))?);
    for s in samples {
        writeln!(f, "{}", serde_json::to_string(s)?)?;
    }
    f.flush()?;
    std::fs::write(dir.join("created_at"), created_at.to_string())?;
    eprintln!("  raw data in {}", dir.display());
    Ok(())
}

/// Everything one batch needs: the fleet is already running.
struct Fleet<'a> {
    p: &'a Params,
    sim: &'a SimHandle,
    queue: &'a Queue,
    info_conn: redis::aio::MultiplexedConnection,
    out: &'a Path,
}

async fn case_makespan(p: &Params, url: &str) -> anyhow::Result<()> {
    let sim = start_sim(p).await?;
    let out = match std::env::var_os("BENCH_OUT_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("output tempdir")?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let namespace = format!("bench-makespan-{}", &tag[..8]);
    let sim_url = sim.base_url();
    let fleet = fleet_settings(p, url, &namespace, &sim_url, out.path());
    let settings = fleet.settings();
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::Persistent)
        .await
        .context("connect queue")?;
    let info_conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
        .context("connect to redis")?;

    let env = WorkerEnv {
        dir: out.path(),
        settings: &fleet,
    };
    let mut workers = (0..p.workers)
        .map(|i| WorkerProc::spawn(p, &env, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let until = Instant::now() + Duration::from_secs(30);
    for w in &mut workers {
        w.wait_started(until)?;
    }

    let mut fleet = Fleet {
        p,
        sim: &sim,
        queue: &queue,
        info_conn,
        out: out.path(),
    };
    let mut outcome = Ok(());
    for k in 1..=p.batches {
        let batch_id = if p.batches == 1 {
            "makespan".to_string()
        } else {
            format!("makespan-{k}")
        };
        match run_batch(&mut fleet, &batch_id, k).await {
            Ok((line, finished)) => {
                emit(&line)?;
                if !finished {
                    outcome = Err(anyhow!(
                        "batch {batch_id} not finished after {:?}",
                        p.deadline()
                    ));
                    break;
                }
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    for w in workers {
        w.stop();
    }

    // A shared REDIS_URL is left as it was found.
    common::drop_namespace(&mut fleet.info_conn, queue.keys().prefix()).await?;
    sim.shutdown();
    outcome
}

/// Enqueues one batch, waits for it, and measures it.
/// Returns the batch's line, and false when it did not finish by the deadline.
async fn run_batch(f: &mut Fleet<'_>, batch_id: &str, k: usize) -> anyhow::Result<(Line, bool)> {
    let p = f.p;
    let sim_before = f.sim.stats();
    let before = common::commandstats(&mut f.info_conn).await?;
    let start = Instant::now();
    let added = restyle::producer::enqueue(f.queue, &batch(batch_id, p.jobs))
        .await
        .context("enqueue")?
        .added;
    if added != p.jobs as u64 {
        bail!("enqueue added {added} of {} jobs", p.jobs);
    }
    eprintln!(
        "batch {batch_id}: enqueued {} jobs in {:.3}s",
        p.jobs,
        start.elapsed().as_secs_f64()
    );
    let mut samples = Vec::new();
    let info = match watch(f, batch_id, start, &mut samples).await? {
        Watched::Finished(info) => info,
        Watched::Deadline(info) => {
            let waiting = f.queue.provider_view("aimlapi").await?.waiting_for_slot;
            let mut line = Line::default();
            line.add("case", "makespan")
                .add("jobs", p.jobs)
                .add("latency_s", r3(p.latency.as_secs_f64()))
                .add("cap", p.cap)
                .add("workers", p.workers)
                .add("ideal_s", r3(p.ideal_s()))
                .add("measured_s", Value::Null)
                .add("finished", false)
                .add("batch", k)
                .add("elapsed_s", r3(start.elapsed().as_secs_f64()))
                .add("done", info.done)
                .add("idle_poll_ms", p.idle_poll.as_millis() as u64)
                .add("waiting_list_now", waiting);
            return Ok((line, false));
        }
    };
    let after = common::commandstats(&mut f.info_conn).await?;
    let stats = f.sim.stats();
    let cmds = commands_between(&before, &after, samples.len() as u64);
    // Left on the provider's wait list although the batch is over (see BENCHMARKS.md).
    let waiting_after = samples.last().map_or(0, |s| s.waiting);
    // Slots nobody held while jobs of the batch were still waiting to be submitted.
    let free: Vec<u64> = samples
        .iter()
        .filter(|s| s.queued > 0)
        .map(|s| u64::from(p.cap).saturating_sub(s.slots))
        .collect();
    let free_mean = free.iter().sum::<u64>() as f64 / free.len().max(1) as f64;

    let finished_at = info
        .finished_at
        .ok_or_else(|| anyhow!("finished batch without finished_at"))?;
    let measured_s = finished_at.saturating_sub(info.created_at) as f64 / 1000.0;
    let ideal_s = p.ideal_s();
    let succeeded = info.count(restyle::job::JobState::Succeeded);
    if succeeded != p.jobs as u64 {
        eprintln!("  WARNING: not every job succeeded: {:?}", info.counts);
    }
    let requests: Vec<RequestLogEntry> = f
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.at_ms >= info.created_at)
        .collect();

    // Where the time went, from the result lines (runner clock, ms).
    let results_path = f.out.join(batch_id).join("results.jsonl");
    if let Some(dir) = std::env::var_os("MAKESPAN_DUMP_DIR") {
        let dir = Path::new(&dir).join(batch_id);
        dump(&dir, &results_path, &requests, &samples, info.created_at)?;
    }
    let results = read_results(&results_path)?;
    let l_ms = p.latency.as_millis() as i64;
    let mut submits: Vec<i64> = results
        .iter()
        .filter_map(|r| r.submitted_at.map(|t| t as i64))
        .collect();
    let mut ends: Vec<i64> = results.iter().map(|r| r.finished_at as i64).collect();
    let held_after_l: Vec<i64> = results
        .iter()
        .filter_map(|r| {
            r.submitted_at
                .map(|s| r.finished_at as i64 - s as i64 - l_ms)
        })
        .collect();
    submits.sort_unstable();
    ends.sort_unstable();
    // The (k + C)-th submit can only go once the k-th job has given its slot back.
    let handover: Vec<i64> = ends
        .iter()
        .zip(submits.iter().skip(p.cap as usize))
        .map(|(end, next)| next - end)
        .collect();
    let claims: u64 = results.iter().map(|r| r.claims).sum();
    let first_submit_ms = submits
        .first()
        .map(|&s| s - info.created_at as i64)
        .unwrap_or(0);
    let polls = requests
        .iter()
        .filter(|r| r.kind == RequestKind::Poll)
        .count();

    let n = p.jobs as f64;
    let total_cmds: u64 = cmds.values().sum();
    let scripts =
        cmds.get("evalsha").copied().unwrap_or(0) + cmds.get("eval").copied().unwrap_or(0);
    let by_cmd: serde_json::Map<String, Value> = cmds
        .iter()
        .map(|(k, &v)| (k.clone(), json!(r3(v as f64 / n))))
        .collect();
    let delta = |a: u64, b: u64| a.saturating_sub(b);

    let mut line = Line::default();
    line.add("case", "makespan")
        .add("jobs", p.jobs)
        .add("latency_s", r3(p.latency.as_secs_f64()))
        .add("cap", p.cap)
        .add("workers", p.workers)
        .add("ideal_s", r3(ideal_s))
        .add("measured_s", r3(measured_s))
        .add("efficiency", r3(ideal_s / measured_s))
        .add(
            "rate_limited_429s",
            delta(stats.rate_limited_total, sim_before.rate_limited_total),
        )
        .add("peak_in_flight", stats.peak_in_flight)
        .add("redis_cmds_per_job", r3(total_cmds as f64 / n))
        .add(
            "submissions",
            delta(stats.submissions_total, sim_before.submissions_total),
        )
        .add(
            "duplicates",
            delta(
                stats.duplicate_submissions,
                sim_before.duplicate_submissions,
            ),
        );
    if p.batches > 1 {
        line.add("batch", k);
    }
    line.add("succeeded", succeeded)
        .add("rate_limit", p.rate)
        .add(
            "rate_burst",
            if p.rate > 0.0 {
                json!(p.burst)
            } else {
                Value::Null
            },
        )
        .add("concurrency", p.concurrency)
        .add("idle_poll_ms", p.idle_poll.as_millis() as u64)
        .add("first_poll_ms", p.first_delay.as_millis() as u64)
        .add("max_poll_interval_ms", p.max_interval.as_millis() as u64)
        .add("evalsha_per_job", r3(scripts as f64 / n))
        .add("cmds_per_job", Value::Object(by_cmd))
        .add("polls_per_job", r3(polls as f64 / n))
        .add("claims_per_job", r3(claims as f64 / n))
        .add(
            "mean_in_flight",
            r3(n * p.latency.as_secs_f64() / measured_s),
        )
        .add("first_submit_ms", first_submit_ms)
        .add("held_after_l_ms", summary(held_after_l))
        .add("handover_ms", summary(handover))
        .add("free_slots_while_queued", r3(free_mean))
        .add("waiting_list_after", waiting_after);
    eprintln!(
        "  measured {measured_s:.3}s against ideal {ideal_s:.3}s: efficiency {:.3}",
        ideal_s / measured_s
    );
    Ok((line, true))
}
