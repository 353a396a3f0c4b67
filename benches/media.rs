//! Media benchmark (issue 13): `cargo bench --bench media`.
//!
//! One local clip of `MEDIA_MIB` MiB (50, the documented `limits.max_video_bytes`) ×
//! `MEDIA_JOBS` prompts (32), per provider case (`aimlapi`, `fal`; a positional argument
//! filters), each on a Redis of its own (a private `redis-server`, so its peak figures are
//! the case's), with the simulator in this process and one `restyle worker` process at
//! concurrency `MEDIA_CONCURRENCY` (the job count). The batch is enqueued by `restyle
//! enqueue --video <clip>` (a process too). `MEDIA_BIN` runs another build's binary for
//! both (an earlier version, for a side-by-side run; then `MEDIA_MIB`/`MEDIA_JOBS` small).
//!
//! One JSON line per case on stdout (progress on stderr): Redis `used_memory_peak`, its
//! process's peak RSS (`VmHWM`) and the bytes it sent (`total_net_output_bytes`), the
//! worker's RSS at start and peak (`VmHWM`), bytes the provider received per job (the
//! simulator's `request_bytes_total` / jobs), uploads, the batch hash's size, and times.
//! BENCHMARKS.md ("Large media") says what each counts.

use anyhow::{bail, Context as _};
use restyle::config::testing::TestSettings;
use restyle::config::PollSettings;
use restyle::localredis::LocalRedis;
use restyle::model::ProviderName;
use restyle::sim::Knobs;
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const SIM_KEY: &str = "sk-media-5b1e0c9a7f3d";
const MIB: u64 = 1024 * 1024;
/// Each generation takes `LATENCY` of wall time (the simulator's time scaled).
const TIME_SCALE: f64 = 0.01;
const LATENCY: Duration = Duration::from_secs(2);
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// The first bytes of an MP4 file: an `ftyp` box.
const MP4_HEAD: &[u8] = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime builds");
    // The simulator parses every body it gets (tens of MB each): on a runtime of its own,
    // so the bench's Redis reads are never starved by it.
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime builds");
    if let Err(e) = rt.block_on(run(sim_rt.handle().clone())) {
        eprintln!("media bench failed: {e:#}");
        std::process::exit(1);
    }
}

struct Params {
    sim_rt: tokio::runtime::Handle,
    mib: u64,
    jobs: usize,
    concurrency: usize,
    bin: PathBuf,
    deadline: Duration,
}

async fn run(sim_rt: tokio::runtime::Handle) -> anyhow::Result<()> {
    let p = Params {
        sim_rt,
        mib: common::env_positive("MEDIA_MIB", 50)?,
        jobs: common::env_positive("MEDIA_JOBS", 32)?,
        // 0: as many as there are jobs.
        concurrency: match std::env::var("MEDIA_CONCURRENCY") {
            Ok(_) => common::env_positive("MEDIA_CONCURRENCY", 1usize)?,
            Err(_) => 0,
        },
        bin: std::env::var_os("MEDIA_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_restyle"))),
        deadline: Duration::from_secs(common::env_positive("MEDIA_DEADLINE_S", 600)?),
    };
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let dir = tempfile::tempdir()?;
    let clip = write_clip(dir.path(), (p.mib * MIB) as usize)?;
    for provider in [ProviderName::Aimlapi, ProviderName::Fal] {
        if filter
            .as_deref()
            .is_some_and(|f| !provider.as_str().contains(f))
        {
            continue;
        }
        eprintln!("media: {provider}, {} MiB × {} jobs", p.mib, p.jobs);
        let line = case(&p, provider, &clip).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

/// An MP4 head and pseudo-random bytes (incompressible, like a real clip).
fn write_clip(dir: &Path, len: usize) -> anyhow::Result<PathBuf> {
    let mut bytes = MP4_HEAD.to_vec();
    bytes.reserve(len);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    let path = dir.join("clip.mp4");
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// A field of `/proc/<pid>/status` in MB (`VmRSS:`, `VmHWM:`).
fn proc_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} for {pid}"))?;
    Ok((kib / 1024.0 * 10.0).round() / 10.0)
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / MIB as f64 * 10.0).round() / 10.0
}

/// One `INFO` field as a number.
async fn info(c: &mut redis::aio::MultiplexedConnection, field: &str) -> anyhow::Result<u64> {
    let text: String = redis::cmd("INFO").query_async(c).await?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {field} in INFO"))
}

/// A child of the bench, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn case(p: &Params, provider: ProviderName, clip: &Path) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let redis = LocalRedis::start(&dir.path().join("redis"), false)?;
    let knobs = Knobs {
        api_keys: vec![SIM_KEY.to_string()],
        time_scale: TIME_SCALE,
        latency_min: LATENCY.div_f64(TIME_SCALE),
        latency_max: LATENCY.div_f64(TIME_SCALE),
        ..Knobs::default()
    };
    let listen = "127.0.0.1:0".parse()?;
    let sim = p.sim_rt.spawn(restyle::sim::spawn(listen, knobs)).await??;
    let base = TestSettings::new().redis(&redis.url(), "bench-media");
    let base = if std::env::var_os("MEDIA_BIN").is_some() {
        // Another build may know no `storage` section: queue address and key only.
        base.set(
            &format!("providers.{provider}.base_url"),
            sim.base_url().as_str(),
        )
        .set(&format!("providers.{provider}.api_key"), SIM_KEY)
    } else {
        base.provider_at(provider, &sim.base_url(), SIM_KEY)
    };
    let settings = base
        .output(dir.path())
        .poll(PollSettings {
            first_delay: LATENCY,
            max_interval: Duration::from_millis(500),
            deadline: Duration::from_secs(600),
        })
        .set("queue.idle_poll", Duration::from_millis(20))
        .every_provider("rate_limit", 0.0)
        .every_provider("max_in_flight", 0u32);
    let no_timeout = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection_with_config(&no_timeout)
        .await?;
    let redis_pid = u32::try_from(info(&mut conn, "process_id").await?)?;
    let command = |args: &[&str]| {
        let mut c = Command::new(&p.bin);
        settings.apply(&mut c);
        c.current_dir(dir.path()).env_remove("RUST_LOG").args(args);
        c
    };

    // The worker first, waiting for it to run.
    let concurrency = if p.concurrency == 0 {
        p.jobs
    } else {
        p.concurrency
    };
    let log = dir.path().join("worker.log");
    let mut worker = command(&["worker", "--concurrency", &concurrency.to_string()]);
    worker
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let worker = Proc(worker.spawn().context("spawn worker")?);
    let until = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)?.contains("Worker started.") {
        if Instant::now() > until {
            bail!("worker did not start: {}", std::fs::read_to_string(&log)?);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wpid = worker.0.id();
    let worker_start = proc_mb(wpid, "VmRSS:")?;

    // The enqueue, timed.
    let batch = format!("media-{provider}");
    let prompts: Vec<String> = (0..p.jobs)
        .map(|i| format!("Variant {i}: the same shot as a watercolour, palette {i}"))
        .collect();
    let mut args = vec![
        "enqueue",
        "--batch-id",
        &batch,
        "--provider",
        provider.as_str(),
    ];
    let clip_arg = clip.display().to_string();
    // The clip is an MP4 head and random bytes (no moov): not a clip the enqueue-time
    // probe reads, and the probe is not what this measures.
    args.extend(["--video", &clip_arg, "--skip-probe"]);
    for q in &prompts {
        args.extend(["--prompt", q]);
    }
    let sent_before = info(&mut conn, "total_net_output_bytes").await?;
    let started = Instant::now();
    let out = command(&args).output().context("run enqueue")?;
    let enqueue_s = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("enqueue failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let bkey = format!("{{restyle:bench-media}}:batch:{batch}");
    let hash_bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&bkey)
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut conn)
        .await?;

    // Until every job is terminal (the batch hash's counters only: no spec read).
    let finished = loop {
        let (total, done): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(&bkey)
            .arg("total")
            .arg("done")
            .query_async(&mut conn)
            .await?;
        if total.is_some() && total == done {
            break true;
        }
        if started.elapsed() > p.deadline {
            break false;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    };
    let batch_s = started.elapsed().as_secs_f64();
    let worker_peak = proc_mb(wpid, "VmHWM:")?;
    let succeeded: Option<u64> = redis::cmd("HGET")
        .arg(&bkey)
        .arg("n:succeeded")
        .query_async(&mut conn)
        .await?;
    let sent = info(&mut conn, "total_net_output_bytes").await? - sent_before;
    let c = sim
        .stats()
        .by_provider
        .get(provider.as_str())
        .cloned()
        .unwrap_or_default();
    let jobs = p.jobs as u64;
    let line = json!({
        "case": provider.as_str(),
        "video_mib": p.mib,
        "jobs": p.jobs,
        "concurrency": concurrency,
        "finished": finished,
        "succeeded": succeeded.unwrap_or(0),
        "redis_used_memory_peak_mb": mb(info(&mut conn, "used_memory_peak").await?),
        "redis_peak_rss_mb": proc_mb(redis_pid, "VmHWM:")?,
        "redis_sent_mb": mb(sent),
        "batch_hash_bytes": hash_bytes.unwrap_or(0),
        "worker_rss_start_mb": worker_start,
        "worker_peak_rss_mb": worker_peak,
        "upstream_bytes_per_job": c.request_bytes_total / jobs,
        "upstream_mb_total": mb(c.request_bytes_total),
        "uploads": c.uploads_total,
        "submissions": c.submissions_total,
        "enqueue_s": (enqueue_s * 1000.0).round() / 1000.0,
        "batch_s": (batch_s * 1000.0).round() / 1000.0,
        "bin": p.bin.display().to_string(),
    });
    drop(worker);
    sim.shutdown();
    if !finished {
        eprintln!("media: {provider} not finished within {:?}", p.deadline);
    }
    Ok(line.to_string())
}
