//! The command line: clap definitions, dispatch, and the mapping from typed errors to
//! exit codes (0 ok, 1 failure, 2 invalid input, 3 Redis unavailable, 4 not found,
//! 5 finished with failed jobs).
#![allow(clippy::print_stdout)]

use crate::batch::{self, BatchError, BatchFlags};
use crate::config::{ConfigError, LoadOptions, Settings};
use crate::job::{state_parser, JobState};
use crate::money::Usd;
use crate::queue::{Queue, QueueError, RetryMode};
use crate::telemetry::LogFormat;
use crate::{ops, producer, sim, status, upstream, worker};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// restyle: turn one source video into many styled variants with hosted Kling O1
/// video-to-video models, durably.
///
/// Producers enqueue batches into Redis; any number of workers submit them upstream,
/// poll until done (parked in Redis between polls), download the outputs and write one
/// result line per job to out/<batch>/results.jsonl.
///
/// Start with `restyle demo`: a private Redis, the simulator and two workers on this
/// machine, no account needed.
#[derive(Debug, Parser)]
#[command(name = "restyle", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// Log format: pretty for people, json for machines. Filter with RUST_LOG.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "pretty",
        env = "RESTYLE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Settings environment: layers config/<env>.toml over config/default.toml.
    #[arg(long, global = true, env = "RESTYLE_ENV")]
    pub env: Option<String>,
    /// Directory holding the settings files.
    #[arg(long, global = true, default_value = "config")]
    pub config_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a batch and enqueue its jobs. Prints the batch id alone on stdout.
    ///
    /// Either a batch file (see jobs/spring-campaign.toml) or flags. Enqueueing the same
    /// batch twice adds nothing. Nothing is enqueued unless every variant is valid.
    ///
    /// Examples:
    ///   restyle enqueue jobs/spring-campaign.toml
    ///   restyle enqueue --video https://cdn.example.com/clip.mp4 --prompt "neon night" --prompt "autumn"
    ///   restyle enqueue --video ./clip.mp4 --prompts-file prompts.csv
    #[command(verbatim_doc_comment)]
    Enqueue(EnqueueArgs),
    /// Run a worker until SIGTERM/SIGINT. Run as many as you like, on any machines.
    Worker {
        /// Stages run at once (each is one HTTP call; waiting jobs hold no slot).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Serve Prometheus /metrics, /healthz and /readyz on this address.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Show a batch: counts per state, done/total, failures with reasons.
    Status {
        batch_id: String,
        /// JSON for scripts; counts under `counts`, keyed by state.
        #[arg(long)]
        json: bool,
    },
    /// Follow a batch live: progress per state, rate, ETA, cost, provider pauses.
    ///
    /// Exits 0 when every job is terminal and none failed; 5 when some failed (0 with
    /// --allow-failures). Without a terminal it prints one plain line every few seconds.
    Watch {
        batch_id: String,
        /// Exit 0 even when jobs failed.
        #[arg(long)]
        allow_failures: bool,
        /// Seconds between plain lines when not on a terminal.
        #[arg(long, default_value_t = 5)]
        every: u64,
    },
    /// Write the batch's contact sheet (out/<batch>/index.html): one card per variant.
    Report { batch_id: String },
    /// Export a batch's results to stdout.
    Results {
        batch_id: String,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: crate::export::Format,
        /// Only jobs in these states (repeatable).
        #[arg(long = "state", value_enum)]
        states: Vec<JobState>,
    },
    /// Cancel a batch: pending jobs are never submitted; running ones are marked
    /// cancelled and cancelled upstream where the provider can.
    Cancel { batch_id: String },
    /// Requeue a batch's failed, dead or timed-out jobs (succeeded ones are never touched).
    ///
    /// A requeued job is submitted again: a new paid generation.
    Retry {
        batch_id: String,
        /// Which states to requeue (repeatable).
        #[arg(long = "state", value_parser = state_parser(&JobState::RETRYABLE))]
        states: Vec<JobState>,
    },
    /// Settle jobs whose submit outcome is unknown (`submit_unknown`).
    ///
    /// Without a flag it lists them. The provider may have accepted those POSTs: check its
    /// dashboard or usage logs first.
    Reconcile {
        batch_id: String,
        /// Submit them again, accepting that the provider may run (and bill) them twice.
        #[arg(long, conflicts_with = "fail")]
        resubmit: bool,
        /// Mark them failed.
        #[arg(long)]
        fail: bool,
    },
    /// Set a batch's budget (USD); jobs that waited for budget try again at once.
    Budget {
        batch_id: String,
        #[arg(long = "max")]
        max_cost: Usd,
    },
    /// Lift a provider's account pause (after a 401 or out-of-credits) for every worker;
    /// the jobs that waited for it go back to the queue at once.
    Resume {
        /// Provider name, e.g. aimlapi.
        provider: String,
    },
    /// Forget a finished batch in Redis (job records, counters, indexes) to free memory.
    /// Its results file, videos and contact sheet on disk stay. Refused (exit 2) while
    /// any job of the batch is not terminal.
    Purge { batch_id: String },
    /// List dead jobs (retries used up, poisoned payloads) with their reasons.
    Dead {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Load and validate the layered settings; print the effective values, secrets
    /// redacted. Exits 2 naming the key and the reason when something is wrong (unknown
    /// keys included). Use it before a deploy (systemd ExecStartPre, CI).
    CheckConfig,
    /// Run the provider simulator (aimlapi protocol) for local runs and tests.
    Sim {
        #[arg(long, default_value = "127.0.0.1:8089")]
        listen: SocketAddr,
        /// Multiplies generation latency: 0.01 turns a 200 s generation into 2 s.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// JSON file of knobs (failure rates, latency, keys); see `GET /sim/knobs`.
        #[arg(long)]
        knobs: Option<PathBuf>,
        /// Requests per second allowed per API key (429 beyond), as the provider does.
        #[arg(long)]
        rate_limit: Option<f64>,
        /// Generations in flight allowed per API key (429 beyond).
        #[arg(long)]
        max_in_flight: Option<u32>,
    },
    /// Run the whole pipeline on this machine: private Redis, simulator, workers, results.
    Demo {
        /// Batch file to run.
        #[arg(long, default_value = "jobs/demo.toml")]
        batch: PathBuf,
        /// Simulator time scale.
        #[arg(long, default_value_t = 0.01)]
        time_scale: f64,
    },
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Batch file (TOML). Flags below are for batches given on the command line.
    pub file: Option<PathBuf>,
    /// Source video: https URL, data:video/… URI, or a local file (sent as a data URI).
    #[arg(long)]
    pub video: Option<String>,
    /// A prompt; repeat for more variants.
    #[arg(long = "prompt")]
    pub prompts: Vec<String>,
    /// Prompts from a file: CSV with a `prompt` column, or text with one per line.
    #[arg(long)]
    pub prompts_file: Option<PathBuf>,
    /// Provider (aimlapi).
    #[arg(long)]
    pub provider: Option<String>,
    /// Model: edit or reference.
    #[arg(long)]
    pub model: Option<String>,
    /// Reference image (https or data URI); up to 4.
    #[arg(long = "image")]
    pub images: Vec<String>,
    /// Keep the source audio (sent explicitly either way).
    #[arg(long)]
    pub keep_audio: Option<bool>,
    /// Reference model only: 16:9, 9:16 or 1:1.
    #[arg(long)]
    pub aspect_ratio: Option<String>,
    /// Reference model only: 5 or 10 seconds.
    #[arg(long)]
    pub duration: Option<u32>,
    /// Batch id; derived from the content when omitted.
    #[arg(long)]
    pub batch_id: Option<String>,
    /// Budget in USD: no submission that would pass it (needs prices in settings).
    #[arg(long)]
    pub max_cost: Option<f64>,
    /// Length of the source clip in seconds (what an edit's cost follows).
    #[arg(long)]
    pub clip_seconds: Option<f64>,
    /// Webhook told once when the batch finishes (POST of the summary).
    #[arg(long)]
    pub webhook: Option<String>,
}

/// Every failure a command can end with, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    /// The command worked, and found failed jobs (`watch`).
    #[error("{0}")]
    Failures(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Batch(_) | CliError::Config(_) | CliError::Usage(_) => 2,
            CliError::Queue(QueueError::Unavailable { .. }) => 3,
            CliError::Queue(QueueError::BatchConflict(_)) => 2,
            CliError::Queue(QueueError::NoBatch(_)) => 4,
            CliError::NotFound(_) => 4,
            CliError::Failures(_) => 5,
            _ => 1,
        })
    }
}

fn load_settings(cli: &Cli) -> Result<Settings, CliError> {
    Ok(Settings::load(&LoadOptions {
        dir: Some(cli.config_dir.clone()),
        env: cli.env.clone(),
        file: None,
    })?)
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Enqueue(args) => enqueue(&cli, args).await,
        Command::Worker {
            concurrency,
            metrics_listen,
        } => {
            let mut settings = load_settings(&cli)?;
            if let Some(c) = concurrency {
                if *c == 0 {
                    return Err(CliError::Usage("--concurrency must be at least 1".into()));
                }
                settings.worker.concurrency = *c;
            }
            run_worker(settings, *metrics_listen).await
        }
        Command::Status { batch_id, json } => {
            let settings = load_settings(&cli)?;
            let queue =
                Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
            let info = queue
                .batch(batch_id)
                .await?
                .ok_or_else(|| CliError::NotFound(format!("no batch {batch_id}")))?;
            let s = status::gather(&queue, &settings, info).await?;
            if *json {
                status::print_json(&s);
            } else {
                status::print_table(&s);
            }
            Ok(())
        }
        Command::Watch {
            batch_id,
            allow_failures,
            every,
        } => {
            let (settings, queue, _) = open_batch(&cli, batch_id).await?;
            let opts = status::WatchOptions {
                plain_every: std::time::Duration::from_secs((*every).max(1)),
                tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            match status::watch(&queue, &settings, batch_id, &opts).await? {
                status::WatchEnd::FinishedWithFailures if !allow_failures => Err(
                    CliError::Failures(format!("batch {batch_id} finished with failures")),
                ),
                _ => Ok(()),
            }
        }
        Command::Report { batch_id } => {
            let (settings, queue, _) = open_batch(&cli, batch_id).await?;
            let path = crate::report::write(&queue, &settings, batch_id).await?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Results {
            batch_id,
            format,
            states,
        } => {
            let (_, queue, _) = open_batch(&cli, batch_id).await?;
            let mut out = std::io::stdout();
            let n = crate::export::write(&queue, batch_id, *format, states, &mut out).await?;
            eprintln!("{n} jobs exported");
            Ok(())
        }
        Command::Cancel { batch_id } => {
            let (settings, queue, info) = open_batch(&cli, batch_id).await?;
            let ups = upstream::build_all(&settings).map_err(|e| CliError::Other(e.into()))?;
            let r = ops::cancel(&queue, &ups, &info).await?;
            eprintln!(
                "cancelled {} jobs ({} cancelled upstream, {} left running upstream: the provider has no cancel)",
                r.cancelled, r.cancelled_upstream, r.left_running_upstream
            );
            Ok(())
        }
        Command::Retry { batch_id, states } => {
            let (_, queue, info) = open_batch(&cli, batch_id).await?;
            let states: Vec<JobState> = if states.is_empty() {
                JobState::RETRY_DEFAULT.to_vec()
            } else {
                states.clone()
            };
            let n = ops::retry(&queue, &info, &states).await?;
            let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            eprintln!("requeued {n} jobs ({})", names.join(", "));
            Ok(())
        }
        Command::Reconcile {
            batch_id,
            resubmit,
            fail,
        } => {
            let (_, queue, info) = open_batch(&cli, batch_id).await?;
            let how = match (resubmit, fail) {
                (true, _) => ops::Reconcile::Resubmit,
                (_, true) => ops::Reconcile::Fail,
                _ => ops::Reconcile::List,
            };
            let ids = ops::reconcile(&queue, &info, how).await?;
            for id in &ids {
                println!("{id}");
            }
            let verb = match how {
                ops::Reconcile::List => "submit outcome unknown (use --resubmit or --fail)",
                ops::Reconcile::Resubmit => "requeued for a new submit",
                ops::Reconcile::Fail => "marked failed",
            };
            eprintln!("{} jobs {verb}", ids.len());
            Ok(())
        }
        Command::Budget { batch_id, max_cost } => {
            let (_, queue, info) = open_batch(&cli, batch_id).await?;
            let n = queue.set_budget(batch_id, *max_cost).await?;
            eprintln!(
                "batch {batch_id}: budget {max_cost} (committed so far {}); {n} waiting jobs back in the queue",
                info.cost_committed
            );
            Ok(())
        }
        Command::Resume { provider } => {
            let p = crate::model::ProviderName::parse(provider)
                .ok_or_else(|| CliError::Usage(format!("unknown provider {provider:?}")))?;
            let settings = load_settings(&cli)?;
            let queue =
                Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
            let n = queue.resume_provider(p.as_str()).await?;
            eprintln!("provider {p} resumed; {n} waiting jobs back in the queue");
            Ok(())
        }
        Command::Purge { batch_id } => {
            let (_, queue, _) = open_batch(&cli, batch_id).await?;
            match queue.purge_batch(batch_id).await? {
                Some(n) => {
                    eprintln!("batch {batch_id}: {n} job records removed from Redis");
                    Ok(())
                }
                None => Err(CliError::Usage(format!(
                    "batch {batch_id} is not finished; cancel it first or wait"
                ))),
            }
        }
        Command::Dead { limit, json } => {
            let settings = load_settings(&cli)?;
            let queue =
                Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
            let dead = ops::dead(&queue, *limit).await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&dead).expect("serializes")
                );
            } else {
                for d in &dead {
                    println!("{}\t{}", d.job_id, d.reason);
                }
                eprintln!("{} dead jobs shown", dead.len());
            }
            Ok(())
        }
        Command::CheckConfig => {
            let settings = load_settings(&cli)?;
            for (k, v) in settings.effective() {
                println!("{k} = {v}");
            }
            eprintln!("settings are valid");
            Ok(())
        }
        Command::Sim {
            listen,
            time_scale,
            knobs,
            rate_limit,
            max_in_flight,
        } => {
            let mut k = match knobs {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
                    serde_json::from_str(&text)
                        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
                }
                None => sim::Knobs::default(),
            };
            k.time_scale = *time_scale;
            if rate_limit.is_some() {
                k.rate_limit = *rate_limit;
            }
            if max_in_flight.is_some() {
                k.max_in_flight = *max_in_flight;
            }
            k.check().map_err(CliError::Usage)?;
            sim::serve(*listen, k)
                .await
                .map_err(|e| CliError::Other(anyhow::anyhow!("simulator on {listen}: {e}")))
        }
        Command::Demo { batch, time_scale } => {
            let settings = load_settings(&cli)?;
            crate::demo::run(settings, batch, *time_scale).await
        }
    }
}

async fn open_batch(
    cli: &Cli,
    batch_id: &str,
) -> Result<(Settings, Queue, crate::queue::BatchInfo), CliError> {
    let settings = load_settings(cli)?;
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
    let info = queue
        .batch(batch_id)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("no batch {batch_id}")))?;
    Ok((settings, queue, info))
}

async fn enqueue(cli: &Cli, args: &EnqueueArgs) -> Result<(), CliError> {
    let settings = load_settings(cli)?;
    let batch = match &args.file {
        Some(path) => {
            if args.video.is_some() || !args.prompts.is_empty() || args.prompts_file.is_some() {
                return Err(CliError::Usage(
                    "give either a batch file or --video/--prompt flags, not both".into(),
                ));
            }
            batch::load_file(path, &settings.limits)?
        }
        None => batch::from_flags(
            &BatchFlags {
                batch_id: args.batch_id.clone(),
                video: args.video.clone(),
                prompts: args.prompts.clone(),
                prompts_file: args.prompts_file.clone(),
                provider: args.provider.clone(),
                model: args.model.clone(),
                images: args.images.clone(),
                keep_audio: args.keep_audio,
                aspect_ratio: args.aspect_ratio.clone(),
                duration: args.duration,
                max_cost: args.max_cost,
                clip_seconds: args.clip_seconds,
                webhook: args.webhook.clone(),
            },
            &settings.limits,
        )?,
    };
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
    let done = producer::enqueue(&queue, &batch).await?;
    if done.added == 0 {
        eprintln!(
            "batch {} was already enqueued ({} jobs); nothing added",
            done.batch_id, done.total
        );
    } else {
        eprintln!("enqueued {} jobs in batch {}", done.added, done.batch_id);
    }
    println!("{}", done.batch_id);
    Ok(())
}

async fn run_worker(settings: Settings, metrics: Option<SocketAddr>) -> Result<(), CliError> {
    let cell: crate::metrics::QueueCell = Default::default();
    let health = Arc::new(crate::metrics::Health::default());
    if let Some(addr) = metrics {
        // Listening first: /healthz answers (and /readyz says why not) while Redis is down.
        crate::metrics::serve(addr, cell.clone(), health.clone())
            .await
            .map_err(|e| CliError::Other(anyhow::anyhow!("metrics listener on {addr}: {e}")))?;
    }
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::Persistent).await?;
    let _ = cell.set(queue.clone());
    let ups = upstream::build_all(&settings).map_err(|e| CliError::Other(e.into()))?;
    let mut runtime = worker::Runtime::new(queue, settings, ups);
    runtime.health = health;
    let rt = Arc::new(runtime);
    let stop = tokio_util::sync::CancellationToken::new();
    let s2 = stop.clone();
    tokio::spawn(async move {
        crate::shutdown::signal().await;
        tracing::info!("Signal received; stopping.");
        s2.cancel();
    });
    worker::run(rt, stop).await?;
    Ok(())
}
