//! Layered settings: `config/default.toml` < `config/<env>.toml` < `RESTYLE__…` env vars
//! (plus `REDIS_URL` and each provider's own credential variables, e.g. `AIMLAPI_API_KEY`,
//! named in its [registry](crate::upstream::registry) entry). Raw structs deny unknown
//! keys; conversion into [`Settings`] is where every value is validated. Secrets stay in
//! `SecretString`.
//!
//! - `raw`: the settings file format (serde structs, defaults for optional keys).
//! - `settings`: the validated types every command reads.
//! - `load`: the layers, env overrides included ([`LoadOptions`], [`Settings::load`]).
//! - `validate`, `providers` and `hooks`: raw into validated, one function per section.
//! - `serve`: `[serve]`, the API tokens of `restyle serve` (hashes, roles).
//! - `scrub`: loading errors translated to name the key and never quote a value.
//! - `effective`: the redacted `key = value` view of `check-config`, derived from the
//!   settings types' `Serialize`.
//! - [`testing`]: one description of test settings, as [`Settings`] and as the
//!   environment of a child process (for tests and benchmarks).

mod effective;
mod hooks;
mod load;
mod providers;
mod raw;
mod redact;
mod scrub;
mod serve;
mod settings;
pub mod store;
pub mod testing;
mod validate;

pub use load::LoadOptions;
pub use redact::redact_url;
pub use serve::{ApiToken, Role, ServeSettings};
pub use settings::{
    EgressSettings, HookAction, HookSettings, KlingMode, LearnedPoll, OutputSettings, PollSettings,
    Prices, ProviderLimits, ProviderSettings, PushSettings, QueueSettings, RedisSettings,
    RetrySettings, Settings, StorageSettings, StoreLocation, WorkerSettings,
};

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

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(invalid(key, "must be greater than zero"))
    } else {
        Ok(d)
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
mod tests;
