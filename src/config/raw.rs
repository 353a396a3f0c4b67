//! The settings file format: serde structs mirroring `config/default.toml` key for key,
//! with serde defaults for the optional keys. Unknown keys are refused here
//! (`deny_unknown_fields`); no value is checked here beyond its type (see `validate`).
//! A list field takes [`list`], so that an environment variable can give it as `a,b`.

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) redis: RawRedis,
    pub(super) queue: RawQueue,
    pub(super) worker: RawWorker,
    pub(super) poll: RawPoll,
    #[serde(default)]
    pub(super) learned_poll: RawLearnedPoll,
    pub(super) retry: RawRetry,
    pub(super) output: RawOutput,
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub(super) egress: RawEgress,
    #[serde(default)]
    pub(super) hooks: BTreeMap<String, RawHook>,
    #[serde(default)]
    pub(super) push: RawPush,
    #[serde(default)]
    pub(super) serve: super::serve::RawServe,
}

/// `[push]`: push completion (fal webhooks, Kling callbacks) and its receiver's bounds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPush {
    /// What providers are told to call (`<public_url>/push/...`); unset = push off.
    pub(super) public_url: Option<String>,
    /// Derives the per-job Kling callback tokens; from the environment only.
    pub(super) secret: Option<SecretString>,
    pub(super) max_body_bytes: u64,
    pub(super) max_concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub(super) request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) timestamp_tolerance: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) jwks_ttl: Duration,
}

impl Default for RawPush {
    fn default() -> Self {
        RawPush {
            public_url: None,
            secret: None,
            max_body_bytes: 256 * 1024,
            max_concurrency: 64,
            request_timeout: Duration::from_secs(10),
            timestamp_tolerance: Duration::from_secs(300),
            jwks_ttl: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub(super) url: SecretString,
    pub(super) namespace: String,
    #[serde(with = "humantime_serde")]
    pub(super) connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) response_timeout: Duration,
    /// The URL is a seed node of a Redis Cluster.
    #[serde(default)]
    pub(super) cluster: bool,
    /// PEM file of the CA that signed the server's certificate (`rediss://` with a
    /// private CA); public CAs need nothing.
    #[serde(default)]
    pub(super) tls_ca_file: Option<PathBuf>,
    /// How long a durable transition waits for `WAITAOF` / `WAIT`.
    #[serde(default = "default_durable_timeout", with = "humantime_serde")]
    pub(super) durable_timeout: Duration,
    /// Refuse to run a worker where Redis gives no durability guarantee.
    #[serde(default)]
    pub(super) require_durable: bool,
}

fn default_durable_timeout() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    #[serde(with = "humantime_serde")]
    pub(super) lease: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) renew_every: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) idle_poll: Duration,
    pub(super) promote_chunk: u32,
    pub(super) sweep_chunk: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorker {
    pub(super) concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub(super) shutdown_grace: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoll {
    #[serde(with = "humantime_serde")]
    pub(super) first_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) max_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) deadline: Duration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPollOverride {
    #[serde(default, with = "humantime_serde")]
    pub(super) first_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) max_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) deadline: Option<Duration>,
}

/// `[learned_poll]`: polls placed by the completion times seen (`upstream::learned`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLearnedPoll {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    #[serde(default = "thirty_two")]
    pub(super) min_samples: u32,
}

impl Default for RawLearnedPoll {
    fn default() -> Self {
        RawLearnedPoll {
            enabled: true,
            min_samples: thirty_two(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLearnedOverride {
    #[serde(default)]
    pub(super) enabled: Option<bool>,
    #[serde(default)]
    pub(super) min_samples: Option<u32>,
}

fn thirty_two() -> u32 {
    32
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub(super) max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub(super) base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) max_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) account_pause: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub(super) dir: PathBuf,
    pub(super) max_download_bytes: u64,
    pub(super) allow_http: bool,
    /// A download's connection (DNS, TCP, TLS) gives up after this long.
    #[serde(default = "ten_s", with = "humantime_serde")]
    pub(super) connect_timeout: Duration,
    /// A download that receives no byte for this long fails (and is retried).
    #[serde(default = "thirty_s", with = "humantime_serde")]
    pub(super) idle_timeout: Duration,
    /// Where results go: empty (use `dir`), a local directory, or `s3://`, `gs://`,
    /// `az://` object storage (see `crate::sink::store`).
    #[serde(default)]
    pub(super) store: String,
    /// An S3-compatible endpoint (else `AWS_ENDPOINT_URL`, else AWS itself).
    #[serde(default)]
    pub(super) store_endpoint: Option<String>,
    /// A PEM file of extra CA certificates the store's TLS is checked against.
    #[serde(default)]
    pub(super) store_ca_file: Option<PathBuf>,
    /// Links on the store's contact sheet: `0s` relative, else presigned for this long.
    #[serde(default, with = "humantime_serde")]
    pub(super) link_ttl: Duration,
    /// How long a finished batch's records stay in Redis once its results are durable
    /// in their sink; `0s` keeps them.
    #[serde(default = "fourteen_days", with = "humantime_serde")]
    pub(super) retention: Duration,
}

/// `[egress]`: exceptions to the egress policy (see `crate::egress`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEgress {
    /// Hosts, `host:port`s and CIDR networks outputs and webhooks may reach even where
    /// they are loopback, private, link-local or metadata addresses.
    #[serde(default, deserialize_with = "list")]
    pub(super) allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_video_bytes: u64,
    pub(super) max_batch_file_bytes: u64,
    pub(super) max_prompt_file_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) base_url: String,
    #[serde(default)]
    pub(super) api_key: Option<SecretString>,
    /// Kling: the access key (JWT issuer) and the secret key that signs it.
    #[serde(default)]
    pub(super) access_key: Option<SecretString>,
    #[serde(default)]
    pub(super) secret_key: Option<SecretString>,
    #[serde(with = "humantime_serde")]
    pub(super) request_timeout: Duration,
    #[serde(default)]
    pub(super) poll: RawPollOverride,
    /// Overrides of `[learned_poll]` for this provider; unset keys follow it.
    #[serde(default)]
    pub(super) learned_poll: RawLearnedOverride,
    /// Where the provider's storage takes uploads (fal), when not its documented hosts.
    #[serde(default)]
    pub(super) storage: Option<RawStorage>,
    /// Requests per second for the whole account, every worker together; 0 = no limit.
    #[serde(default)]
    pub(super) rate_limit: f64,
    /// Requests that may go at once after a quiet spell.
    #[serde(default = "one")]
    pub(super) rate_burst: u32,
    /// Which calls the provider counts against the rate: "submit", "poll".
    #[serde(default = "all_calls", deserialize_with = "list")]
    pub(super) rate_counts: Vec<String>,
    /// Generations in flight for the account (submit until terminal); 0 = no cap.
    #[serde(default)]
    pub(super) max_in_flight: u32,
    /// false: only the per-process limiter (each process alone gets the full rate).
    #[serde(default = "yes")]
    pub(super) global_limiter: bool,
    /// Fleet-wide pause after a 429 without Retry-After.
    #[serde(default = "five_s", with = "humantime_serde")]
    pub(super) cooldown: Duration,
    /// USD per output second, per model; unset = unknown (cost shown as unknown).
    #[serde(default)]
    pub(super) price_per_second: RawPrices,
    /// fal only: send `X-Fal-No-Retry: 1` with each submit (fal's own retries off).
    #[serde(default)]
    pub(super) no_retry: Option<bool>,
    /// Kling only: the `mode` every task is created with, `std` or `pro`.
    #[serde(default)]
    pub(super) mode: Option<String>,
    /// fal only: where the receiver reads fal's webhook signing keys (a JWKS).
    #[serde(default)]
    pub(super) webhook_jwks_url: Option<String>,
}

/// `[providers.<name>.storage]`: each key unset keeps the provider's documented host.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    #[serde(default)]
    pub(super) rest_url: Option<String>,
    #[serde(default)]
    pub(super) cdn_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrices {
    #[serde(default)]
    pub(super) edit: Option<f64>,
    #[serde(default)]
    pub(super) reference: Option<f64>,
    /// The standard tier's prices (fal standard endpoints, Kling `std`).
    #[serde(default)]
    pub(super) standard_edit: Option<f64>,
    #[serde(default)]
    pub(super) standard_reference: Option<f64>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn five_s() -> Duration {
    Duration::from_secs(5)
}
fn ten_s() -> Duration {
    Duration::from_secs(10)
}
fn thirty_s() -> Duration {
    Duration::from_secs(30)
}
fn fourteen_days() -> Duration {
    Duration::from_secs(14 * 86_400)
}
fn all_calls() -> Vec<String> {
    vec!["submit".into(), "poll".into()]
}

/// `[hooks.<name>]`: what a batch's `on_done = "<name>"` runs when the batch finishes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    #[serde(default)]
    pub(super) command: Option<RawArgv>,
    #[serde(default)]
    pub(super) webhook: Option<SecretString>,
    /// Names of worker environment variables passed through to the command.
    #[serde(default)]
    pub(super) env: Vec<String>,
    #[serde(default = "five_min", with = "humantime_serde")]
    pub(super) timeout: Duration,
}

/// A command as written: an argv array, or a single string (refused by name: no shell).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawArgv {
    Argv(Vec<String>),
    Line(String),
}

fn five_min() -> Duration {
    Duration::from_secs(300)
}

/// A list of strings: a list in a file, or `a,b` in one string (an environment variable;
/// an empty string is an empty list).
pub(super) fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Items(Vec<String>),
        Joined(String),
    }
    Ok(match List::deserialize(d)? {
        List::Items(items) => items,
        List::Joined(s) if s.trim().is_empty() => Vec::new(),
        List::Joined(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
    })
}
