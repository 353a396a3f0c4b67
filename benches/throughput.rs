//! Throughput benchmark: `cargo bench --bench throughput`.
//!
//! Prints one JSON object per line on stdout, one line per case, then a `machine` line;
//! progress goes to stderr. Cases (each in a fresh Redis namespace):
//!
//! - `enqueue`: one `producer::enqueue` of a 100,000-job batch.
//! - `queue_noop_c16`, `queue_noop_c256`: one worker (`worker::run_with`) draining a
//!   backlog with a handler that only makes the terminal transition.
//! - `full_path`: `worker::run` (submit → poll → download → finish) against the in-process
//!   simulator with zero generation latency.
//!
//! `redis_cmds_per_job` is every command Redis executed (client-sent and script-internal)
//! per job; with blocking claims and the group commit the no-op drain needs about 4–5 and
//! the full path about 28 (BENCHMARKS.md, "Full path after the results writer and the rate
//! tally").
//!
//! Sizes: `BENCH_JOBS` (enqueue and no-op cases, default 100,000) and `BENCH_FULL_JOBS`
//! (full path, default 5,000). Redis: `REDIS_URL`, else a private `redis-server`.
//! BENCHMARKS.md says what every number counts.

use anyhow::{anyhow, bail, Context as _};
use restyle::config::testing::TestSettings;
use restyle::config::{PollSettings, Settings, WorkerSettings};
use restyle::job::{JobState, Transition};
use restyle::localredis::LocalRedis;
use restyle::model::ValidatedBatch;
use restyle::queue::backend::{Claimed, LeaseTable};
use restyle::queue::{now_ms, After, Queue, RetryMode};
use restyle::sim::Knobs;
use restyle::worker::{self, Handler, Runtime};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SIM_KEY: &str = "sk-bench-0d1e2f3a4b5c6d7e";
/// How often the bench looks at the batch hash while a worker drains it.
const WATCH_EVERY: Duration = Duration::from_millis(20);
/// A case that takes longer than this is reported as a failure, not waited for.
const CASE_DEADLINE: Duration = Duration::from_secs(900);

mod common;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime builds");
    if let Err(e) = rt.block_on(run_all()) {
        eprintln!("throughput bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    common::env_positive(name, default)
}

/// Where the cases run: the Redis URL, a private server when we started one, and a
/// separate connection used only for `INFO`.
struct Bench {
    url: String,
    private: bool,
    _local: Option<(LocalRedis, tempfile::TempDir)>,
    info: redis::aio::MultiplexedConnection,
    /// What every case starts from: this Redis, fast retry timers.
    base: TestSettings,
}

async fn run_all() -> anyhow::Result<()> {
    // Cargo passes `--bench` to harness-less benches; a filter argument selects cases.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |case: &str| filter.is_empty() || filter.iter().any(|f| case.contains(f));
    let jobs = env_usize("BENCH_JOBS", 100_000)?;
    let full_jobs = env_usize("BENCH_FULL_JOBS", 5_000)?;

    let (url, local) = match std::env::var("REDIS_URL") {
        Ok(u) => (u, None),
        Err(_) => {
            let dir = tempfile::tempdir().context("tempdir for redis-server")?;
            let r = LocalRedis::start(dir.path(), false).context("private redis-server")?;
            (r.url(), Some((r, dir)))
        }
    };
    let client = redis::Client::open(url.as_str()).context("redis url")?;
    let info = client
        .get_multiplexed_async_connection()
        .await
        .context("connect to redis")?;
    let base = TestSettings::new()
        .set("redis.url", url.as_str())
        .set("queue.idle_poll", Duration::from_millis(20))
        .set("retry.base_delay", Duration::from_millis(20))
        .set("retry.max_delay", Duration::from_millis(200));
    let mut b = Bench {
        private: local.is_some(),
        url,
        _local: local,
        info,
        base,
    };
    eprintln!(
        "redis: {} ({}), BENCH_JOBS={jobs}, BENCH_FULL_JOBS={full_jobs}",
        restyle::config::redact_url(&b.url),
        if b.private {
            "private server"
        } else {
            "REDIS_URL"
        }
    );

    if wanted("enqueue") {
        emit(&case_enqueue(&mut b, jobs).await?)?;
    }
    for c in [16usize, 256] {
        let name = format!("queue_noop_c{c}");
        if wanted(&name) {
            emit(&case_noop(&mut b, &name, jobs, c).await?)?;
        }
    }
    if wanted("full_path") {
        emit(&case_full(&mut b, full_jobs).await?)?;
    }
    emit(&machine(&mut b).await)?;
    Ok(())
}

/// Writes one JSON object per line, `case` first and the other keys in the order added
/// (serde_json's map sorts keys, which would bury `case`).
fn emit(fields: &Fields) -> anyhow::Result<()> {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{{{}}}", body.join(","))?;
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Measurements: Redis command counts, process memory.

/// `INFO commandstats` on the bench's own connection.
async fn commandstats(b: &mut Bench) -> anyhow::Result<BTreeMap<String, u64>> {
    common::commandstats(&mut b.info).await
}

/// Commands the case caused: after − before, without the bench's own `INFO` calls and
/// without the `HGETALL`s the bench itself sent to watch the batch (`watch_polls`).
fn command_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    watch_polls: u64,
) -> BTreeMap<String, u64> {
    let mut d = BTreeMap::new();
    for (name, &n) in after {
        if name == "info" {
            continue;
        }
        let mut delta = n.saturating_sub(before.get(name).copied().unwrap_or(0));
        if name == "hgetall" {
            delta = delta.saturating_sub(watch_polls);
        }
        if delta > 0 {
            d.insert(name.clone(), delta);
        }
    }
    d
}

/// Adds the command fields to a case's JSON object.
fn add_commands(obj: &mut Fields, delta: &BTreeMap<String, u64>, jobs: usize) {
    let per = |n: u64| round(n as f64 / jobs as f64, 3);
    let total: u64 = delta.values().sum();
    let scripts =
        delta.get("evalsha").copied().unwrap_or(0) + delta.get("eval").copied().unwrap_or(0);
    obj.insert("redis_cmds_per_job".into(), json!(per(total)));
    obj.insert("evalsha_per_job".into(), json!(per(scripts)));
    let by_cmd: Map<String, Value> = delta
        .iter()
        .map(|(k, &v)| (k.clone(), json!(per(v))))
        .collect();
    obj.insert("cmds_per_job".into(), Value::Object(by_cmd));
}

/// Resets the kernel's peak-RSS mark for this process (Linux ≥ 4.0), so each case's
/// `peak_rss_mb` is its own. Returns false when not possible (then peaks accumulate).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// VmHWM of this process (the bench, which also hosts the worker and the simulator), MB.
fn peak_rss_mb() -> Option<f64> {
    proc_status_mb("VmHWM:")
}

/// VmRSS of this process now, MB.
fn rss_mb() -> Option<f64> {
    proc_status_mb("VmRSS:")
}

fn proc_status_mb(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(round(kb / 1024.0, 1))
}

async fn redis_used_memory_mb(b: &mut Bench) -> Option<f64> {
    let text: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut b.info)
        .await
        .ok()?;
    let bytes: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))?
        .trim()
        .parse()
        .ok()?;
    Some(round(bytes / (1024.0 * 1024.0), 1))
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

// ---------------------------------------------------------------------------------------
// Setup helpers.

fn fresh_namespace(case: &str) -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("bench-{}-{}", case.replace('_', "-"), &tag[..8])
}

async fn connect(settings: &Settings) -> anyhow::Result<Queue> {
    Queue::connect(&settings.redis, &settings.queue, RetryMode::Persistent)
        .await
        .context("connect queue")
}

fn make_batch(batch_id: &str, n: usize) -> ValidatedBatch {
    common::batch(
        batch_id,
        n,
        "https://media.example.com/bench/source.mp4",
        |i| {
            format!(
                "Bench variant {i}: restyle the clip as a linocut print, tone {}",
                i % 97
            )
        },
    )
}

async fn enqueue_untimed(queue: &Queue, batch: &ValidatedBatch) -> anyhow::Result<()> {
    let t = Instant::now();
    let e = restyle::producer::enqueue(queue, batch)
        .await
        .context("enqueue backlog")?;
    if e.added != batch.prompts.len() as u64 {
        bail!(
            "backlog enqueue added {} of {}",
            e.added,
            batch.prompts.len()
        );
    }
    eprintln!(
        "  backlog of {} jobs enqueued in {:.2}s (not timed)",
        e.added,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Deletes every key of a namespace (so a shared `REDIS_URL` is left as it was).
/// Runs after the case's measurements.
async fn drop_namespace(b: &mut Bench, queue: &Queue) -> anyhow::Result<()> {
    common::drop_namespace(&mut b.info, queue.keys().prefix()).await
}

/// Waits until the batch hash says finished. Returns (seconds from `start_ms` to the
/// batch's own `finished_at` stamp, number of HGETALLs this watcher sent).
async fn watch_until_finished(
    queue: &Queue,
    batch_id: &str,
    start: Instant,
    start_ms: u64,
) -> anyhow::Result<(f64, u64)> {
    let mut polls = 0u64;
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let info = queue
            .batch(batch_id)
            .await?
            .ok_or_else(|| anyhow!("batch {batch_id} vanished"))?;
        polls += 1;
        if info.is_finished() {
            let seen = start.elapsed().as_secs_f64();
            // The finishing transition stamps `finished_at` with the worker's clock (this
            // process), so it is exact where the watcher is only within WATCH_EVERY.
            let secs = info
                .finished_at
                .filter(|&f| f >= start_ms)
                .map(|f| (f - start_ms) as f64 / 1000.0)
                .unwrap_or(seen);
            return Ok((secs, polls));
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!(
                "  {:>6.1}s  done {}/{}",
                start.elapsed().as_secs_f64(),
                info.done,
                info.total
            );
        }
        if start.elapsed() > CASE_DEADLINE {
            bail!(
                "batch {batch_id} not finished after {CASE_DEADLINE:?}: {:?}",
                info.counts
            );
        }
    }
}

/// One output line's fields, in output order.
#[derive(Debug, Default)]
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn insert(&mut self, key: String, value: Value) {
        self.0.push((key, value));
    }

    fn iter(&self) -> impl Iterator<Item = &(String, Value)> {
        self.0.iter()
    }
}

fn case_json(case: &str, jobs: usize, seconds: f64) -> Fields {
    let mut m = Fields::default();
    m.insert("case".into(), json!(case));
    m.insert("jobs".into(), json!(jobs));
    m.insert("seconds".into(), json!(round(seconds, 3)));
    m.insert("jobs_per_s".into(), json!(round(jobs as f64 / seconds, 1)));
    m
}

// ---------------------------------------------------------------------------------------
// Cases.

async fn case_enqueue(b: &mut Bench, n: usize) -> anyhow::Result<Fields> {
    eprintln!("enqueue: {n} jobs in one producer::enqueue call");
    let settings = b
        .base
        .clone()
        .set("redis.namespace", fresh_namespace("enqueue"))
        .settings();
    let queue = connect(&settings).await?;
    let batch = make_batch("bench-enqueue", n);
    let rss_reset = reset_peak_rss();
    let rss_start = rss_mb();
    let before = commandstats(b).await?;
    let t = Instant::now();
    let e = restyle::producer::enqueue(&queue, &batch).await?;
    let secs = t.elapsed().as_secs_f64();
    let after = commandstats(b).await?;
    if e.added != n as u64 {
        bail!("enqueue added {} of {n}", e.added);
    }
    let mut obj = case_json("enqueue", n, secs);
    add_commands(&mut obj, &command_delta(&before, &after, 0), n);
    obj.insert("peak_rss_mb".into(), json!(peak_rss_mb()));
    obj.insert("rss_start_mb".into(), json!(rss_start));
    obj.insert("rss_peak_reset".into(), json!(rss_reset));
    obj.insert(
        "redis_used_memory_mb".into(),
        json!(redis_used_memory_mb(b).await),
    );
    drop_namespace(b, &queue).await?;
    eprintln!("  {secs:.2}s");
    Ok(obj)
}

/// A handler that only moves the job to `succeeded` and settles its lease.
fn noop_handler(queue: Queue, table: Arc<LeaseTable>, errors: Arc<AtomicU64>) -> Handler {
    Handler::new(move |Claimed { claim, mut lease }| {
        let (queue, table, errors) = (queue.clone(), table.clone(), errors.clone());
        Box::pin(async move {
            let nonce = table.nonce(&claim.token);
            let tx = Transition::to(JobState::Succeeded, After::Done);
            let done = queue.apply(claim.owner(), &nonce, &tx, None).await;
            match done {
                Ok(_) => lease.settle(),
                // Left unsettled: the lease table hands the job back to the queue.
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    })
}

async fn case_noop(
    b: &mut Bench,
    case: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Fields> {
    eprintln!("{case}: drain {n} no-op jobs, one worker, concurrency {concurrency}");
    let settings = b
        .base
        .clone()
        .set("redis.namespace", fresh_namespace(case))
        .settings();
    let queue = connect(&settings).await?;
    let batch_id = "bench-noop";
    enqueue_untimed(&queue, &make_batch(batch_id, n)).await?;

    let table = Arc::new(LeaseTable::default());
    let errors = Arc::new(AtomicU64::new(0));
    let handler = noop_handler(queue.clone(), table.clone(), errors.clone());
    let ws = WorkerSettings {
        concurrency,
        shutdown_grace: Duration::from_secs(5),
    };
    let stop = CancellationToken::new();
    let rss_reset = reset_peak_rss();
    let rss_start = rss_mb();
    let before = commandstats(b).await?;
    let start = Instant::now();
    let start_ms = now_ms();
    let w = tokio::spawn(worker::run_with(
        queue.clone(),
        format!("bench-{case}"),
        table,
        ws,
        handler,
        stop.clone(),
    ));
    let watched = watch_until_finished(&queue, batch_id, start, start_ms).await;
    let after = commandstats(b).await;
    stop.cancel();
    let stopped = w.await;
    let (secs, polls) = watched?;
    let after = after?;
    stopped
        .context("worker task")?
        .context("worker ended with an error")?;
    let info = queue
        .batch(batch_id)
        .await?
        .ok_or_else(|| anyhow!("batch vanished"))?;
    if info.count(JobState::Succeeded) != n as u64 {
        bail!("{case}: not every job succeeded: {:?}", info.counts);
    }
    let mut obj = case_json(case, n, secs);
    obj.insert("concurrency".into(), json!(concurrency));
    add_commands(&mut obj, &command_delta(&before, &after, polls), n);
    obj.insert("peak_rss_mb".into(), json!(peak_rss_mb()));
    obj.insert("rss_start_mb".into(), json!(rss_start));
    obj.insert("rss_peak_reset".into(), json!(rss_reset));
    obj.insert(
        "transition_errors".into(),
        json!(errors.load(Ordering::Relaxed)),
    );
    obj.insert(
        "redis_used_memory_mb".into(),
        json!(redis_used_memory_mb(b).await),
    );
    drop_namespace(b, &queue).await?;
    eprintln!("  {secs:.2}s, {:.0} jobs/s", n as f64 / secs);
    Ok(obj)
}

async fn case_full(b: &mut Bench, n: usize) -> anyhow::Result<Fields> {
    let concurrency: usize = 256;
    eprintln!(
        "full_path: {n} jobs submit → poll → download → finish against the in-process \
         simulator (zero latency), concurrency {concurrency}"
    );
    let knobs = Knobs {
        api_keys: vec![SIM_KEY.to_string()],
        time_scale: 1.0,
        latency_min: Duration::ZERO,
        latency_max: Duration::ZERO,
        ..Knobs::default()
    };
    let sim = restyle::sim::spawn("127.0.0.1:0".parse()?, knobs)
        .await
        .context("simulator")?;
    // Outputs go to a fresh tempdir (under BENCH_OUT_DIR when set, e.g. a tmpfs to take
    // the disk out of the figure).
    let out = match std::env::var_os("BENCH_OUT_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("output tempdir")?;
    let run = common::sim_settings(
        &b.url,
        &fresh_namespace("full_path"),
        &sim.base_url(),
        SIM_KEY,
        out.path(),
    );
    let settings = b
        .base
        .clone()
        .and(run)
        .poll(PollSettings {
            first_delay: Duration::from_millis(1),
            max_interval: Duration::from_millis(5),
            deadline: Duration::from_secs(600),
        })
        .set("queue.idle_poll", Duration::from_millis(5))
        // The pipeline's own speed: no provider rate limit or in-flight cap in the way (the
        // makespan bench measures those).
        .every_provider("rate_limit", 0.0)
        .every_provider("max_in_flight", 0u32)
        .set("worker.concurrency", concurrency)
        .settings();
    let queue = connect(&settings).await?;
    let batch_id = "bench-full";
    enqueue_untimed(&queue, &make_batch(batch_id, n)).await?;

    let upstreams = restyle::upstream::build_all(&settings).context("providers")?;
    let runtime = Arc::new(Runtime::new(queue.clone(), settings.clone(), upstreams));
    let stop = CancellationToken::new();
    let rss_reset = reset_peak_rss();
    let rss_start = rss_mb();
    let before = commandstats(b).await?;
    let start = Instant::now();
    let start_ms = now_ms();
    let w = tokio::spawn(worker::run(runtime, stop.clone()));
    let watched = watch_until_finished(&queue, batch_id, start, start_ms).await;
    let after = commandstats(b).await;
    stop.cancel();
    let stopped = w.await;
    let (secs, polls) = watched?;
    let after = after?;
    stopped
        .context("worker task")?
        .context("worker ended with an error")?;
    let info = queue
        .batch(batch_id)
        .await?
        .ok_or_else(|| anyhow!("batch vanished"))?;
    let stats = sim.stats();
    sim.shutdown();
    if info.count(JobState::Succeeded) != n as u64 {
        bail!("full_path: not every job succeeded: {:?}", info.counts);
    }
    // Downloaded outputs: everything in the batch's directory except results.jsonl.
    let files = std::fs::read_dir(out.path().join(batch_id))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name() != "results.jsonl")
                .count()
        })
        .unwrap_or(0);
    if files != n {
        bail!("full_path: {files} output files for {n} jobs");
    }
    let per = |x: u64| round(x as f64 / n as f64, 3);
    let mut obj = case_json("full_path", n, secs);
    obj.insert("concurrency".into(), json!(concurrency));
    add_commands(&mut obj, &command_delta(&before, &after, polls), n);
    obj.insert(
        "http_submits_per_job".into(),
        json!(per(stats.submissions_total)),
    );
    obj.insert("http_polls_per_job".into(), json!(per(stats.polls_total)));
    obj.insert(
        "http_downloads_per_job".into(),
        json!(per(stats.downloads_total)),
    );
    obj.insert("output_files".into(), json!(files));
    obj.insert("peak_rss_mb".into(), json!(peak_rss_mb()));
    obj.insert("rss_start_mb".into(), json!(rss_start));
    obj.insert("rss_peak_reset".into(), json!(rss_reset));
    obj.insert(
        "redis_used_memory_mb".into(),
        json!(redis_used_memory_mb(b).await),
    );
    drop_namespace(b, &queue).await?;
    eprintln!("  {secs:.2}s, {:.0} jobs/s", n as f64 / secs);
    Ok(obj)
}

async fn machine(b: &mut Bench) -> Fields {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let redis_version = async {
        let text: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut b.info)
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_string())
    }
    .await;
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string());
    let mut m = Fields::default();
    m.insert("case".into(), json!("machine"));
    m.insert("cpus".into(), json!(cpus));
    m.insert("tokio_worker_threads".into(), json!(cpus));
    m.insert("redis_version".into(), json!(redis_version));
    let redis = if b.private {
        "private redis-server (no persistence)"
    } else {
        "REDIS_URL"
    };
    m.insert("redis".into(), json!(redis));
    m.insert("rustc".into(), json!(rustc));
    m
}
