//! Layered settings: `config/default.toml` < `config/<env>.toml` < `RESTYLE__…` env vars
//! (plus `REDIS_URL` and `AIMLAPI_API_KEY`). Raw structs deny unknown keys; conversion
//! into [`Settings`] is where every value is validated. Secrets stay in `SecretString`.

use crate::model::ProviderName;
use crate::money::Usd;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A settings problem, naming the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("settings: {0}")]
    Load(String),
    #[error("settings: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    redis: RawRedis,
    queue: RawQueue,
    worker: RawWorker,
    poll: RawPoll,
    retry: RawRetry,
    output: RawOutput,
    limits: RawLimits,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: SecretString,
    namespace: String,
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    response_timeout: Duration,
    /// The URL is a seed node of a Redis Cluster.
    #[serde(default)]
    cluster: bool,
    /// PEM file of the CA that signed the server's certificate (`rediss://` with a
    /// private CA); public CAs need nothing.
    #[serde(default)]
    tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(with = "humantime_serde")]
    lease: Duration,
    #[serde(with = "humantime_serde")]
    renew_every: Duration,
    #[serde(with = "humantime_serde")]
    idle_poll: Duration,
    promote_chunk: u32,
    sweep_chunk: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    concurrency: usize,
    #[serde(with = "humantime_serde")]
    shutdown_grace: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoll {
    #[serde(with = "humantime_serde")]
    first_delay: Duration,
    #[serde(with = "humantime_serde")]
    max_interval: Duration,
    #[serde(with = "humantime_serde")]
    deadline: Duration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPollOverride {
    #[serde(default, with = "humantime_serde")]
    first_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    deadline: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: u32,
    #[serde(with = "humantime_serde")]
    base_delay: Duration,
    #[serde(with = "humantime_serde")]
    max_delay: Duration,
    #[serde(with = "humantime_serde")]
    account_pause: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    dir: PathBuf,
    max_download_bytes: u64,
    allow_http: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_video_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    base_url: String,
    #[serde(default)]
    api_key: Option<SecretString>,
    /// Kling: the access key (JWT issuer) and the secret key that signs it.
    #[serde(default)]
    access_key: Option<SecretString>,
    #[serde(default)]
    secret_key: Option<SecretString>,
    #[serde(with = "humantime_serde")]
    request_timeout: Duration,
    #[serde(default)]
    poll: RawPollOverride,
    /// Requests per second for the whole account, every worker together; 0 = no limit.
    #[serde(default)]
    rate_limit: f64,
    /// Requests that may go at once after a quiet spell.
    #[serde(default = "one")]
    rate_burst: u32,
    /// Which calls the provider counts against the rate: "submit", "poll".
    #[serde(default = "all_calls")]
    rate_counts: Vec<String>,
    /// Generations in flight for the account (submit until terminal); 0 = no cap.
    #[serde(default)]
    max_in_flight: u32,
    /// false: only the per-process limiter (each process alone gets the full rate).
    #[serde(default = "yes")]
    global_limiter: bool,
    /// Fleet-wide pause after a 429 without Retry-After.
    #[serde(default = "five_s", with = "humantime_serde")]
    cooldown: Duration,
    /// USD per output second, per model; unset = unknown (cost shown as unknown).
    #[serde(default)]
    price_per_second: RawPrices,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrices {
    #[serde(default)]
    edit: Option<f64>,
    #[serde(default)]
    reference: Option<f64>,
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
fn all_calls() -> Vec<String> {
    vec!["submit".into(), "poll".into()]
}

/// Validated settings for every command.
#[derive(Debug, Clone)]
pub struct Settings {
    pub redis: RedisSettings,
    pub queue: QueueSettings,
    pub worker: WorkerSettings,
    pub poll: PollSettings,
    pub retry: RetrySettings,
    pub output: OutputSettings,
    pub limits: crate::batch::BatchLimits,
    pub providers: BTreeMap<ProviderName, ProviderSettings>,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// May hold a password: only [`RedisSettings::redacted_url`] is ever printed.
    pub url: SecretString,
    pub namespace: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub cluster: bool,
    pub tls_ca_file: Option<PathBuf>,
}

impl RedisSettings {
    /// The URL with any password replaced by `***`, safe for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }
}

/// Replaces the password (and a lone user token) of a URL with `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            } else if !u.username().is_empty() {
                let _ = u.set_username("***");
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How long a claim stays valid without renewal.
    pub lease: Duration,
    /// Period of the one renewal timer per worker process (also the sweep period).
    pub renew_every: Duration,
    /// How long an idle fetcher waits before asking Redis again.
    pub idle_poll: Duration,
    pub promote_chunk: u32,
    pub sweep_chunk: u32,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub shutdown_grace: Duration,
}

/// Poll schedule: first delay, exponential growth with full jitter, capped, deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSettings {
    pub first_delay: Duration,
    pub max_interval: Duration,
    pub deadline: Duration,
}

#[derive(Debug, Clone)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// How long jobs wait after an account error (401, out of credits) before trying again.
    pub account_pause: Duration,
}

#[derive(Debug, Clone)]
pub struct OutputSettings {
    pub dir: PathBuf,
    pub max_download_bytes: u64,
    /// Plain-http output URLs are refused unless this is set (the local simulator).
    pub allow_http: bool,
}

#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub base_url: url::Url,
    pub api_key: Option<SecretString>,
    /// Kling only: JWT issuer and signing secret.
    pub access_key: Option<SecretString>,
    pub secret_key: Option<SecretString>,
    pub request_timeout: Duration,
    pub poll: PollSettings,
    pub limits: ProviderLimits,
    pub prices: Prices,
}

/// Admission limits for one provider account, shared by every worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderLimits {
    /// Requests per second; 0 = no limit.
    pub rate_limit: f64,
    pub rate_burst: u32,
    pub count_submit: bool,
    pub count_poll: bool,
    /// Generations in flight; 0 = no cap.
    pub max_in_flight: u32,
    /// Enforce the rate in Redis for the whole fleet (false: per process only).
    pub global: bool,
    /// Fleet-wide pause after a 429 that carries no Retry-After.
    pub cooldown: Duration,
}

/// USD per second of output video, per model; `None` = unknown, never invented.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    pub edit: Option<Usd>,
    pub reference: Option<Usd>,
}

impl Prices {
    pub fn for_model(&self, m: crate::model::ModelKind) -> Option<Usd> {
        match m {
            crate::model::ModelKind::Edit => self.edit,
            crate::model::ModelKind::Reference => self.reference,
        }
    }
}

/// Where settings come from, for [`Settings::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Directory holding `default.toml` and `<env>.toml`; `./config` when `None`.
    pub dir: Option<PathBuf>,
    /// Environment name (`RESTYLE_ENV` when `None`); selects `config/<env>.toml`.
    pub env: Option<String>,
    /// An extra file layered last (before env vars).
    pub file: Option<PathBuf>,
}

/// Built-in defaults, so the binary works from any directory; `config/default.toml`
/// mirrors them for operators to read and copy.
const BUILTIN: &str = include_str!("../config/default.toml");

impl Settings {
    /// Loads the layers and validates them.
    pub fn load(opts: &LoadOptions) -> Result<Settings, ConfigError> {
        let dir = opts.dir.clone().unwrap_or_else(|| PathBuf::from("config"));
        let env = opts
            .env
            .clone()
            .or_else(|| std::env::var("RESTYLE_ENV").ok());
        let mut b = config::Config::builder()
            .add_source(config::File::from_str(BUILTIN, config::FileFormat::Toml))
            .add_source(config::File::from(dir.join("default.toml")).required(false));
        if let Some(env) = &env {
            let p = dir.join(format!("{env}.toml"));
            if !p.exists() {
                return Err(invalid("env", format!("no settings file {}", p.display())));
            }
            b = b.add_source(config::File::from(p));
        }
        if let Some(f) = &opts.file {
            b = b.add_source(config::File::from(f.as_path()));
        }
        b = b.add_source(
            config::Environment::with_prefix("RESTYLE")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("providers.aimlapi.rate_counts")
                .with_list_parse_key("providers.oxen.rate_counts")
                .with_list_parse_key("providers.fal.rate_counts")
                .with_list_parse_key("providers.kling.rate_counts")
                .try_parsing(true),
        );
        if let Ok(url) = std::env::var("REDIS_URL") {
            b = b
                .set_override("redis.url", url)
                .map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        // The providers' own conventional variables, when the RESTYLE__ one is unset.
        for (var, key) in [
            ("AIMLAPI_API_KEY", "providers.aimlapi.api_key"),
            ("OXEN_API_KEY", "providers.oxen.api_key"),
            ("FAL_KEY", "providers.fal.api_key"),
            ("KLING_ACCESS_KEY", "providers.kling.access_key"),
            ("KLING_SECRET_KEY", "providers.kling.secret_key"),
        ] {
            let ours = format!("RESTYLE__{}", key.replace('.', "__").to_uppercase());
            if let (Ok(v), Err(_)) = (std::env::var(var), std::env::var(&ours)) {
                b = b
                    .set_override(key, v)
                    .map_err(|e| ConfigError::Load(e.to_string()))?;
            }
        }
        let raw: Raw = b
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        raw.validate()
    }

    /// Settings for tests and the demo: the built-in defaults with no files or env vars.
    pub fn builtin() -> Settings {
        let raw: Raw = config::Config::builder()
            .add_source(config::File::from_str(BUILTIN, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("built-in settings parse");
        raw.validate().expect("built-in settings are valid")
    }

    /// The provider's settings; every known provider has an entry after validation.
    pub fn provider(&self, name: ProviderName) -> &ProviderSettings {
        &self.providers[&name]
    }

    /// Points one provider at a base URL (the simulator in tests and the demo).
    pub fn point_provider_at(&mut self, name: ProviderName, base_url: &str, key: &str) {
        let p = self.providers.get_mut(&name).expect("known provider");
        p.base_url = url::Url::parse(base_url).expect("valid base url");
        p.api_key = Some(SecretString::from(key.to_string()));
    }

    /// Sets the poll schedule for every provider.
    pub fn set_poll(&mut self, poll: PollSettings) {
        self.poll = poll;
        for p in self.providers.values_mut() {
            p.poll = poll;
        }
    }
}

fn secret_state(s: &Option<SecretString>) -> String {
    match s {
        Some(_) => "*** (set)".to_string(),
        None => "(unset)".to_string(),
    }
}

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl Settings {
    /// Every effective value as `key = value`, secrets redacted (for `check-config`).
    pub fn effective(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("redis.url".into(), self.redis.redacted_url()),
            ("redis.namespace".into(), self.redis.namespace.clone()),
            (
                "redis.connect_timeout".into(),
                dur(self.redis.connect_timeout),
            ),
            (
                "redis.response_timeout".into(),
                dur(self.redis.response_timeout),
            ),
            ("queue.lease".into(), dur(self.queue.lease)),
            ("queue.renew_every".into(), dur(self.queue.renew_every)),
            ("queue.idle_poll".into(), dur(self.queue.idle_poll)),
            (
                "queue.promote_chunk".into(),
                self.queue.promote_chunk.to_string(),
            ),
            (
                "queue.sweep_chunk".into(),
                self.queue.sweep_chunk.to_string(),
            ),
            (
                "worker.concurrency".into(),
                self.worker.concurrency.to_string(),
            ),
            (
                "worker.shutdown_grace".into(),
                dur(self.worker.shutdown_grace),
            ),
            ("poll.first_delay".into(), dur(self.poll.first_delay)),
            ("poll.max_interval".into(), dur(self.poll.max_interval)),
            ("poll.deadline".into(), dur(self.poll.deadline)),
            (
                "retry.max_attempts".into(),
                self.retry.max_attempts.to_string(),
            ),
            ("retry.base_delay".into(), dur(self.retry.base_delay)),
            ("retry.max_delay".into(), dur(self.retry.max_delay)),
            ("retry.account_pause".into(), dur(self.retry.account_pause)),
            ("output.dir".into(), self.output.dir.display().to_string()),
            (
                "output.max_download_bytes".into(),
                self.output.max_download_bytes.to_string(),
            ),
            (
                "output.allow_http".into(),
                self.output.allow_http.to_string(),
            ),
            (
                "limits.max_video_bytes".into(),
                self.limits.max_video_bytes.to_string(),
            ),
        ];
        for (name, p) in &self.providers {
            let k = |f: &str| format!("providers.{name}.{f}");
            let l = &p.limits;
            let price = |x: Option<Usd>| x.map_or("(unknown)".to_string(), Usd::to_wire);
            v.extend([
                (k("base_url"), p.base_url.to_string()),
                (k("api_key"), secret_state(&p.api_key)),
                (k("access_key"), secret_state(&p.access_key)),
                (k("secret_key"), secret_state(&p.secret_key)),
                (k("request_timeout"), dur(p.request_timeout)),
                (k("poll.first_delay"), dur(p.poll.first_delay)),
                (k("poll.max_interval"), dur(p.poll.max_interval)),
                (k("poll.deadline"), dur(p.poll.deadline)),
                (k("rate_limit"), l.rate_limit.to_string()),
                (k("rate_burst"), l.rate_burst.to_string()),
                (k("max_in_flight"), l.max_in_flight.to_string()),
                (k("global_limiter"), l.global.to_string()),
                (k("cooldown"), dur(l.cooldown)),
                (k("price_per_second.edit"), price(p.prices.edit)),
                (k("price_per_second.reference"), price(p.prices.reference)),
            ]);
        }
        v
    }
}

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(invalid(key, "must be greater than zero"))
    } else {
        Ok(d)
    }
}

impl Raw {
    fn validate(self) -> Result<Settings, ConfigError> {
        let url = self.redis.url.expose_secret();
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("unix://"))
        {
            return Err(invalid(
                "redis.url",
                "must start with redis://, rediss:// or unix://",
            ));
        }
        let ns = &self.redis.namespace;
        if ns.is_empty()
            || ns.len() > 64
            || !ns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "redis.namespace",
                "must be 1–64 characters of [A-Za-z0-9_-]",
            ));
        }
        let lease = positive("queue.lease", self.queue.lease)?;
        let renew = positive("queue.renew_every", self.queue.renew_every)?;
        if renew * 2 > lease {
            return Err(invalid(
                "queue.renew_every",
                "must be at most half of queue.lease, so one missed renewal loses nothing",
            ));
        }
        if self.worker.concurrency == 0 || self.worker.concurrency > 10_000 {
            return Err(invalid("worker.concurrency", "must be 1–10000"));
        }
        if self.retry.max_attempts == 0 {
            return Err(invalid("retry.max_attempts", "must be at least 1"));
        }
        let poll = PollSettings {
            first_delay: positive("poll.first_delay", self.poll.first_delay)?,
            max_interval: positive("poll.max_interval", self.poll.max_interval)?,
            deadline: positive("poll.deadline", self.poll.deadline)?,
        };
        let mut providers = BTreeMap::new();
        for (name, p) in self.providers {
            let Some(pn) = ProviderName::parse(&name) else {
                return Err(invalid(
                    &format!("providers.{name}"),
                    "unknown provider (known: aimlapi, oxen, fal, kling)",
                ));
            };
            let base_url = url::Url::parse(&p.base_url)
                .map_err(|e| invalid(&format!("providers.{name}.base_url"), e.to_string()))?;
            let nonempty = |k: Option<SecretString>| k.filter(|k| !k.expose_secret().is_empty());
            let api_key = nonempty(p.api_key);
            let access_key = nonempty(p.access_key);
            let secret_key = nonempty(p.secret_key);
            let key = |k: &str| format!("providers.{name}.{k}");
            if !(p.rate_limit >= 0.0 && p.rate_limit.is_finite()) {
                return Err(invalid(
                    &key("rate_limit"),
                    "must be a number ≥ 0 (0 = no limit)",
                ));
            }
            if p.rate_burst == 0 {
                return Err(invalid(&key("rate_burst"), "must be at least 1"));
            }
            for c in &p.rate_counts {
                if c != "submit" && c != "poll" {
                    return Err(invalid(
                        &key("rate_counts"),
                        format!("unknown call {c:?} (known: submit, poll)"),
                    ));
                }
            }
            let limits = ProviderLimits {
                rate_limit: p.rate_limit,
                rate_burst: p.rate_burst,
                count_submit: p.rate_counts.iter().any(|c| c == "submit"),
                count_poll: p.rate_counts.iter().any(|c| c == "poll"),
                max_in_flight: p.max_in_flight,
                global: p.global_limiter,
                cooldown: positive(&key("cooldown"), p.cooldown)?,
            };
            for (m, v) in [
                ("edit", p.price_per_second.edit),
                ("reference", p.price_per_second.reference),
            ] {
                if v.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
                    return Err(invalid(
                        &key(&format!("price_per_second.{m}")),
                        "must be a number ≥ 0",
                    ));
                }
            }
            let prices = Prices {
                edit: p.price_per_second.edit.and_then(Usd::from_f64),
                reference: p.price_per_second.reference.and_then(Usd::from_f64),
            };
            providers.insert(
                pn,
                ProviderSettings {
                    base_url,
                    api_key,
                    access_key,
                    secret_key,
                    request_timeout: positive(
                        &format!("providers.{name}.request_timeout"),
                        p.request_timeout,
                    )?,
                    poll: PollSettings {
                        first_delay: p.poll.first_delay.unwrap_or(poll.first_delay),
                        max_interval: p.poll.max_interval.unwrap_or(poll.max_interval),
                        deadline: p.poll.deadline.unwrap_or(poll.deadline),
                    },
                    limits,
                    prices,
                },
            );
        }
        for pn in ProviderName::ALL {
            if !providers.contains_key(pn) {
                return Err(invalid(&format!("providers.{pn}"), "missing"));
            }
        }
        Ok(Settings {
            redis: RedisSettings {
                url: self.redis.url,
                namespace: self.redis.namespace,
                connect_timeout: positive("redis.connect_timeout", self.redis.connect_timeout)?,
                response_timeout: positive("redis.response_timeout", self.redis.response_timeout)?,
                cluster: self.redis.cluster,
                tls_ca_file: self.redis.tls_ca_file,
            },
            queue: QueueSettings {
                lease,
                renew_every: renew,
                idle_poll: positive("queue.idle_poll", self.queue.idle_poll)?,
                promote_chunk: self.queue.promote_chunk.max(1),
                sweep_chunk: self.queue.sweep_chunk.max(1),
            },
            worker: WorkerSettings {
                concurrency: self.worker.concurrency,
                shutdown_grace: self.worker.shutdown_grace,
            },
            poll,
            retry: RetrySettings {
                max_attempts: self.retry.max_attempts,
                base_delay: positive("retry.base_delay", self.retry.base_delay)?,
                max_delay: positive("retry.max_delay", self.retry.max_delay)?,
                account_pause: positive("retry.account_pause", self.retry.account_pause)?,
            },
            output: OutputSettings {
                dir: self.output.dir,
                max_download_bytes: self.output.max_download_bytes,
                allow_http: self.output.allow_http,
            },
            limits: crate::batch::BatchLimits {
                max_video_bytes: self.limits.max_video_bytes,
            },
            providers,
        })
    }
}

/// Resolves a path from settings against a base directory unless it is absolute.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_settings_are_valid() {
        let s = Settings::builtin();
        assert_eq!(s.poll.deadline, Duration::from_secs(1000));
        assert!(s.providers.contains_key(&ProviderName::Aimlapi));
    }

    #[test]
    fn effective_values_redact_secrets() {
        let mut s = Settings::builtin();
        s.redis.url = SecretString::from("redis://u:hunter2pass@localhost:6379".to_string());
        s.point_provider_at(
            ProviderName::Aimlapi,
            "http://127.0.0.1:1",
            "sk-topsecret-123",
        );
        let all: String = s
            .effective()
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        assert!(
            !all.contains("hunter2pass") && !all.contains("sk-topsecret-123"),
            "{all}"
        );
        assert!(
            all.contains("providers.aimlapi.api_key = *** (set)"),
            "{all}"
        );
        assert!(all.contains("poll.deadline = 16m 40s"), "{all}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut s = Settings::builtin();
        s.redis.url = SecretString::from("redis://u:hunter2pass@localhost:6379".to_string());
        s.point_provider_at(
            ProviderName::Aimlapi,
            "http://127.0.0.1:1",
            "sk-topsecret-123",
        );
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2pass"), "{dbg}");
        assert!(!dbg.contains("sk-topsecret-123"), "{dbg}");
        assert_eq!(s.redis.redacted_url(), "redis://u:***@localhost:6379");
    }
}
