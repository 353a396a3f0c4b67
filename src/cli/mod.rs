//! The command line: the clap definitions (every subcommand, flag and `--help` text) and
//! the mapping from typed errors to exit codes (0 ok, 1 failure, 2 invalid input, 3 Redis
//! unavailable, 4 not found, 5 finished with failed jobs). Running a parsed command is
//! [`run`]'s (in `run.rs`).

mod run;
pub(crate) mod serve;
pub(crate) mod store;
mod values;

pub use run::run;

use crate::batch::BatchError;
use crate::config::ConfigError;
use crate::job::{state_parser, JobState};
use crate::money::Usd;
use crate::queue::QueueError;
use crate::telemetry::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
    // `hide_env_values`: `--help` names a variable, never shows its value.
    /// Log format: pretty for people, json for machines. Filter with RUST_LOG.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "pretty",
        env = "RESTYLE_LOG_FORMAT",
        hide_env_values = true
    )]
    pub log_format: LogFormat,
    /// Settings environment: layers config/<env>.toml over config/default.toml.
    #[arg(long, global = true, env = "RESTYLE_ENV", hide_env_values = true)]
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
    Enqueue(Box<EnqueueArgs>),
    /// Run a worker until SIGTERM/SIGINT. Run as many as you like, on any machines.
    Worker {
        /// Stages run at once (each is one HTTP call; waiting jobs hold no slot).
        #[arg(long, allow_negative_numbers = true, value_parser = values::at_least_one)]
        concurrency: Option<usize>,
        /// Serve Prometheus /metrics, /healthz and /readyz on this address.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Receive push completions (fal webhooks, Kling callbacks) and move the job's next
    /// poll to now. Run it where providers can reach it, at `push.public_url`.
    ///
    /// It holds no provider key, only Redis; workers keep no inbound ports. A fal webhook
    /// is accepted only with a valid fal signature (Ed25519, keys from
    /// providers.fal.webhook_jwks_url, timestamp within push.timestamp_tolerance) for the
    /// job's own request; a Kling callback only with the job's token (derived from
    /// RESTYLE__PUSH__SECRET). Anything else is refused, 401, and counted in
    /// restyle_push_refused_total. Polling stays the source of truth: a push never
    /// decides an outcome, so a lost push costs only time.
    ///
    /// Routes: POST /push/fal/<job>, POST /push/kling/<job>/<token>, GET /healthz.
    ///
    /// Example (behind TLS termination for https://push.example.com):
    ///   RESTYLE__PUSH__PUBLIC_URL=https://push.example.com RESTYLE__PUSH__SECRET=... \
    ///     restyle receive --listen 0.0.0.0:8090 --metrics-listen 127.0.0.1:9465
    #[command(verbatim_doc_comment)]
    Receive {
        /// Address to listen on for pushes.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Serve Prometheus /metrics, /healthz and /readyz on this (private) address.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Serve the HTTP API: create, list, follow, cancel and retry batches over JSON.
    ///
    /// Routes are under /api/v1 (the OpenAPI document at /api/v1/openapi.json); GET
    /// /healthz is open. Every API call needs `Authorization: Bearer <token>`: tokens are
    /// `[[serve.tokens]]` entries in settings (name, role read or operator, and the
    /// token's SHA-256, never the token). With none configured, serve makes an operator
    /// token at start and prints it once on stderr. A batch is validated exactly as
    /// `restyle enqueue` validates one given by flags; media must be https URLs.
    ///
    /// Examples:
    ///   restyle serve                                  # 127.0.0.1:8080, a token printed once
    ///   printf %s "$TOKEN" | restyle serve --hash-token  # the sha256 for [[serve.tokens]]
    ///   curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/v1/batches
    ///
    /// Listen on loopback (the default) or behind TLS termination: tokens are bearer
    /// secrets.
    #[command(verbatim_doc_comment)]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Read a token on stdin, print its SHA-256 (for `[[serve.tokens]]`) and exit.
        #[arg(long)]
        hash_token: bool,
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
        /// After the batch, keep the simulator and workers running and serve the web
        /// console on this address (e.g. 127.0.0.1:8080) until Ctrl-C: review the
        /// variants, mark them, download the kept ones, start new batches from the form.
        #[arg(long, value_name = "ADDR")]
        console: Option<std::net::SocketAddr>,
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
    #[arg(long, value_parser = values::provider())]
    pub provider: Option<String>,
    /// Model: edit or reference.
    #[arg(long, value_parser = values::model())]
    pub model: Option<String>,
    /// Reference image (https or data URI); up to 4.
    #[arg(long = "image")]
    pub images: Vec<String>,
    /// Keep the source audio (sent explicitly either way).
    #[arg(long)]
    pub keep_audio: Option<bool>,
    /// Reference model only: 16:9, 9:16 or 1:1 (auto too on fal).
    #[arg(long, value_parser = values::aspect_ratio())]
    pub aspect_ratio: Option<String>,
    /// Reference model only: seconds, 5 or 10 on aimlapi, 3 to 10 on fal and kling.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, value_parser = values::duration)]
    pub duration: Option<u32>,
    /// Batch id; derived from the content when omitted.
    #[arg(long)]
    pub batch_id: Option<String>,
    /// Budget in USD: no submission that would pass it (needs prices in settings).
    #[arg(long, value_name = "USD", allow_negative_numbers = true, value_parser = values::usd)]
    pub max_cost: Option<f64>,
    /// Length of the source clip in seconds (what an edit's cost follows).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, value_parser = values::seconds)]
    pub clip_seconds: Option<f64>,
    /// Hook told once when the batch finishes: a name from the settings' [hooks.<name>].
    #[arg(long, value_name = "HOOK")]
    pub on_done: Option<String>,
    /// Price tier where the provider sells two: standard (cheaper, 720p) or pro (the
    /// default). fal and kling only.
    #[arg(long, value_parser = ["standard", "pro"])]
    pub tier: Option<String>,
    /// Enqueue without probing the source clip and images against the provider's limits
    /// (duration, size, frame rate, container, bytes). Works with a batch file too.
    #[arg(long)]
    pub skip_probe: bool,
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
            CliError::Queue(
                QueueError::BatchConflict(_)
                | QueueError::BadId(_)
                | QueueError::RedisTooOld { .. },
            ) => 2,
            CliError::Queue(QueueError::NoBatch(_)) => 4,
            CliError::NotFound(_) => 4,
            CliError::Failures(_) => 5,
            _ => 1,
        })
    }
}
