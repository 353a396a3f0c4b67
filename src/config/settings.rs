//! The validated settings types every command reads, and the small edits tests and the
//! demo make to them. `Serialize` on these types is the `check-config` view (see
//! `effective`): secrets serialize as a redaction marker, durations in humantime form,
//! and the few fields `check-config` never showed are skipped.

use super::effective::{
    display, duration, entries, opt_url, path, price, redacted_url, secret, url, webhook_url,
};
use crate::model::ProviderName;
use crate::money::Usd;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Validated settings for every command.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub redis: RedisSettings,
    pub queue: QueueSettings,
    pub worker: WorkerSettings,
    pub poll: PollSettings,
    pub learned_poll: LearnedPoll,
    pub retry: RetrySettings,
    pub output: OutputSettings,
    #[serde(serialize_with = "BatchLimitsView::serialize")]
    pub limits: crate::batch::BatchLimits,
    pub providers: BTreeMap<ProviderName, ProviderSettings>,
    /// `[hooks.<name>]`: what a batch's `on_done` may name.
    pub hooks: BTreeMap<String, HookSettings>,
    pub egress: EgressSettings,
    /// `[push]`: push completion and the receiver (`restyle receive`).
    pub push: PushSettings,
    /// `[serve]`: the API tokens of `restyle serve`.
    pub serve: super::serve::ServeSettings,
}

/// `[push]`: where providers are told to report completion (fal's `fal_webhook`, Kling's
/// `callback_url`), the secret behind Kling's per-job callback tokens, and the bounds of
/// the receiver ([`crate::push`]). Push only moves a job's next poll to now.
#[derive(Debug, Clone, Serialize)]
pub struct PushSettings {
    /// `https://…` (or `http://` on a loopback host); `None` = push off.
    #[serde(serialize_with = "opt_url")]
    pub public_url: Option<url::Url>,
    /// Set whenever `public_url` is (validation); shown only as set or unset.
    #[serde(serialize_with = "secret")]
    pub secret: Option<SecretString>,
    /// A request body larger than this is refused (413) before anything reads it.
    pub max_body_bytes: u64,
    /// Connections the receiver serves at once; more wait in the listen backlog.
    pub max_concurrency: usize,
    /// A request (headers and body) that takes longer is cut off.
    #[serde(serialize_with = "duration")]
    pub request_timeout: Duration,
    /// fal: a webhook whose signed timestamp is further than this from now is refused.
    #[serde(serialize_with = "duration")]
    pub timestamp_tolerance: Duration,
    /// fal: how long fetched signing keys are used before they are fetched again.
    #[serde(serialize_with = "duration")]
    pub jwks_ttl: Duration,
}

impl PushSettings {
    /// Whether providers are told to push (a public URL and a secret are set).
    pub fn enabled(&self) -> bool {
        self.public_url.is_some() && self.secret.is_some()
    }
}

/// `[egress]`: exceptions to the egress policy of downloads and webhooks
/// ([`crate::egress`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EgressSettings {
    /// Hosts, `host:port`s and networks that may be reached even where they are loopback,
    /// private, link-local or metadata addresses.
    #[serde(serialize_with = "entries")]
    pub allow: Vec<crate::egress::AllowEntry>,
}

/// How `[limits]` shows in `check-config` (the type itself belongs to `batch`).
#[derive(Serialize)]
#[serde(remote = "crate::batch::BatchLimits")]
struct BatchLimitsView {
    max_video_bytes: u64,
    max_batch_file_bytes: u64,
    max_prompt_file_bytes: u64,
}

/// A hook a batch may name in `on_done` (`[hooks.<name>]`): defined by whoever runs the
/// workers, never by a batch file. Run by the `batch_done` job (`worker::announce`).
#[derive(Debug, Clone, Serialize)]
pub struct HookSettings {
    #[serde(flatten)]
    pub action: HookAction,
    /// Worker environment variables passed through to a command, by name; the command's
    /// environment is these plus `RESTYLE_BATCH_ID` and `RESTYLE_IDEMPOTENCY_KEY`, nothing else.
    pub env: Vec<String>,
    /// How long the command (killed after it, with its process group) or the POST may take.
    #[serde(serialize_with = "duration")]
    pub timeout: Duration,
}

/// What a hook does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookAction {
    /// A program (absolute path) and its arguments, run directly: no shell, no PATH lookup.
    /// The summary JSON is its stdin.
    Command(Vec<String>),
    /// POST of the summary with an `Idempotency-Key`. Webhook URLs often carry a token
    /// (Slack's do), so the URL is a secret: `check-config` shows its host only.
    Webhook(#[serde(serialize_with = "webhook_url")] SecretString),
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisSettings {
    /// May hold a password: only [`RedisSettings::redacted_url`] is ever printed.
    #[serde(serialize_with = "redacted_url")]
    pub url: SecretString,
    pub namespace: String,
    #[serde(serialize_with = "duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "duration")]
    pub response_timeout: Duration,
    #[serde(skip)]
    pub cluster: bool,
    #[serde(skip)]
    pub tls_ca_file: Option<PathBuf>,
    /// How long a durable transition (rule 7) waits for `WAITAOF` / `WAIT` before the
    /// stage treats it as not durable (no POST; the job retries).
    #[serde(serialize_with = "duration")]
    pub durable_timeout: Duration,
    /// A worker refuses to start (and `check-config` fails) where Redis gives no
    /// durability guarantee (`queue::Durability::None`).
    pub require_durable: bool,
}

impl RedisSettings {
    /// The URL with any password replaced by `***`, safe for logs and errors.
    pub fn redacted_url(&self) -> String {
        super::redact_url(self.url.expose_secret())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueSettings {
    /// How long a claim stays valid without renewal.
    #[serde(serialize_with = "duration")]
    pub lease: Duration,
    /// Period of the one renewal timer per worker process (also the sweep period).
    #[serde(serialize_with = "duration")]
    pub renew_every: Duration,
    /// How long an idle fetcher waits before asking Redis again.
    #[serde(serialize_with = "duration")]
    pub idle_poll: Duration,
    pub promote_chunk: u32,
    pub sweep_chunk: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerSettings {
    pub concurrency: usize,
    #[serde(serialize_with = "duration")]
    pub shutdown_grace: Duration,
}

/// Poll schedule: first delay, exponential growth with full jitter, capped, deadline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PollSettings {
    #[serde(serialize_with = "duration")]
    pub first_delay: Duration,
    #[serde(serialize_with = "duration")]
    pub max_interval: Duration,
    #[serde(serialize_with = "duration")]
    pub deadline: Duration,
}

/// `[learned_poll]`: whether polls are placed by the completion times seen
/// ([`crate::upstream::learned`]) once a distribution has `min_samples` of them; before
/// that, and when off, the [`PollSettings`] schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LearnedPoll {
    pub enabled: bool,
    pub min_samples: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetrySettings {
    pub max_attempts: u32,
    #[serde(serialize_with = "duration")]
    pub base_delay: Duration,
    #[serde(serialize_with = "duration")]
    pub max_delay: Duration,
    /// How long jobs wait after an account error (401, out of credits) before trying again.
    #[serde(serialize_with = "duration")]
    pub account_pause: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputSettings {
    #[serde(serialize_with = "path")]
    pub dir: PathBuf,
    pub max_download_bytes: u64,
    /// Plain-http output URLs and webhooks are refused unless this is set (the local
    /// simulator).
    pub allow_http: bool,
    /// A download's connection (DNS, TCP, TLS) gives up after this long.
    #[serde(serialize_with = "duration")]
    pub connect_timeout: Duration,
    /// No byte for this long fails the download attempt (a transient error).
    #[serde(serialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Where results go (`dir` or object storage); never holds credentials.
    pub store: StoreLocation,
    /// An S3-compatible endpoint set in settings (`AWS_ENDPOINT_URL` otherwise).
    #[serde(serialize_with = "opt_url")]
    pub store_endpoint: Option<url::Url>,
    /// Extra CA certificates (PEM) for the store's TLS.
    #[serde(serialize_with = "opt_path")]
    pub store_ca_file: Option<PathBuf>,
    /// Contact-sheet links in the store: zero for relative links, else presigned URLs
    /// valid this long.
    #[serde(serialize_with = "duration")]
    pub link_ttl: Duration,
    /// A finished batch's records expire from Redis this long after it finished (its
    /// results durable in the sink); zero keeps them.
    #[serde(serialize_with = "duration")]
    pub retention: Duration,
}

/// Where results are written: a local directory (`output.dir`) or an object store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// Files under `output.dir` (the default).
    Local,
    /// `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`.
    Object(url::Url),
}

impl serde::Serialize for StoreLocation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StoreLocation::Local => s.serialize_str("(output.dir)"),
            StoreLocation::Object(u) => s.serialize_str(&super::redact_url(u.as_str())),
        }
    }
}

fn opt_path<S: serde::Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.display().to_string()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderSettings {
    /// Never carries credentials (refused at load); shown through `redact_url` all the same.
    #[serde(serialize_with = "url")]
    pub base_url: url::Url,
    #[serde(serialize_with = "secret")]
    pub api_key: Option<SecretString>,
    /// Kling only: JWT issuer and signing secret.
    #[serde(serialize_with = "secret")]
    pub access_key: Option<SecretString>,
    #[serde(serialize_with = "secret")]
    pub secret_key: Option<SecretString>,
    #[serde(serialize_with = "duration")]
    pub request_timeout: Duration,
    pub poll: PollSettings,
    /// `[providers.<name>.learned_poll]`, unset keys following `[learned_poll]`.
    pub learned_poll: LearnedPoll,
    /// Where the provider's storage takes uploads of local media (fal); `None` for a
    /// provider without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSettings>,
    /// Shown at the provider's level, as the settings file has them.
    #[serde(flatten)]
    pub limits: ProviderLimits,
    #[serde(rename = "price_per_second")]
    pub prices: Prices,
    /// fal only (`None` elsewhere): send `X-Fal-No-Retry: 1` with each submit, which turns
    /// off fal's own unbilled retries of a failed runner. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_retry: Option<bool>,
    /// Kling only (`None` elsewhere): the `mode` every task is created with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<KlingMode>,
    /// fal only (`None` elsewhere): the JWKS the receiver verifies webhooks against.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_url")]
    pub webhook_jwks_url: Option<url::Url>,
    /// Where this provider is told to push completion, for its client: derived from
    /// `[push]` when the clients are built (`upstream::build_all`), never a setting.
    #[serde(skip)]
    pub push: Option<crate::push::Callbacks>,
}

/// Kling's `mode` (Omni-Video create): `std` is 720p and "cost-effective", `pro` 1080p
/// and Kling's default. The price per second differs: set `price_per_second` to the
/// configured mode's price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KlingMode {
    Std,
    Pro,
}

impl KlingMode {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            KlingMode::Std => "std",
            KlingMode::Pro => "pro",
        }
    }

    /// Reads the wire word.
    pub fn parse(s: &str) -> Option<KlingMode> {
        match s {
            "std" => Some(KlingMode::Std),
            "pro" => Some(KlingMode::Pro),
            _ => None,
        }
    }
}

/// `[providers.<name>.storage]`: the hosts a provider's storage upload goes to (and the
/// only ones its credential is sent to for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageSettings {
    /// Upload tokens (fal: `https://rest.fal.ai`).
    #[serde(serialize_with = "display")]
    pub rest_url: url::Url,
    /// Uploads (fal: `https://v3.fal.media`).
    #[serde(serialize_with = "display")]
    pub cdn_url: url::Url,
}

/// Admission limits for one provider account, shared by every worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderLimits {
    /// Requests per second; 0 = no limit.
    #[serde(serialize_with = "display")]
    pub rate_limit: f64,
    pub rate_burst: u32,
    #[serde(skip)]
    pub count_submit: bool,
    #[serde(skip)]
    pub count_poll: bool,
    /// Generations in flight; 0 = no cap.
    pub max_in_flight: u32,
    /// Enforce the rate in Redis for the whole fleet (false: per process only).
    #[serde(rename = "global_limiter")]
    pub global: bool,
    /// Fleet-wide pause after a 429 that carries no Retry-After.
    #[serde(serialize_with = "duration")]
    pub cooldown: Duration,
}

/// USD per second of output video, per model; `None` = unknown, never invented.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Prices {
    #[serde(serialize_with = "price")]
    pub edit: Option<Usd>,
    #[serde(serialize_with = "price")]
    pub reference: Option<Usd>,
    /// The standard tier's prices, where a provider sells two tiers (`edit` and
    /// `reference` are then the pro tier's).
    #[serde(serialize_with = "price")]
    pub standard_edit: Option<Usd>,
    #[serde(serialize_with = "price")]
    pub standard_reference: Option<Usd>,
}

impl Prices {
    pub fn for_model(&self, m: crate::model::ModelKind) -> Option<Usd> {
        match m {
            crate::model::ModelKind::Edit => self.edit,
            crate::model::ModelKind::Reference => self.reference,
        }
    }

    /// The price of `m` in `tier` (`None` or pro: `edit`/`reference`).
    pub fn for_tier(
        &self,
        m: crate::model::ModelKind,
        tier: Option<crate::model::Tier>,
    ) -> Option<Usd> {
        match (tier, m) {
            (Some(crate::model::Tier::Standard), crate::model::ModelKind::Edit) => {
                self.standard_edit
            }
            (Some(crate::model::Tier::Standard), crate::model::ModelKind::Reference) => {
                self.standard_reference
            }
            _ => self.for_model(m),
        }
    }
}

impl Settings {
    /// The provider's settings; every known provider has an entry after validation.
    pub fn provider(&self, name: ProviderName) -> &ProviderSettings {
        &self.providers[&name]
    }

    /// Points one provider at a base URL (the simulator in tests and the demo).
    pub fn point_provider_at(&mut self, name: ProviderName, base_url: &str, key: &str) {
        let p = self.providers.get_mut(&name).expect("known provider");
        p.base_url = url::Url::parse(base_url).expect("valid base url");
        p.api_key = Some(SecretString::from(key.to_string()));
        if let Some(s) = &mut p.storage {
            s.rest_url = p.base_url.clone();
            s.cdn_url = p.base_url.clone();
        }
    }

    /// Sets the poll schedule for every provider.
    pub fn set_poll(&mut self, poll: PollSettings) {
        self.poll = poll;
        for p in self.providers.values_mut() {
            p.poll = poll;
        }
    }
}
