//! Test settings, for the integration tests and the benchmarks (a normal module so bench
//! targets can use it; nothing in the binary does). One description — settings keys and
//! values — rendered two ways: the [`Settings`] an in-process runtime uses, and the
//! environment a `restyle` child process is started with. Both go through the real loader
//! (the built-in defaults overlaid with that environment, no files), so they cannot drift.
//!
//! ```
//! use restyle::config::testing::TestSettings;
//! use std::time::Duration;
//! let t = TestSettings::new()
//!     .set("redis.namespace", "t1")
//!     .set("queue.idle_poll", Duration::from_millis(20));
//! assert_eq!(t.settings().queue.idle_poll, Duration::from_millis(20));
//! assert!(t.env().contains(&("RESTYLE__QUEUE__IDLE_POLL".into(), "20ms".into())));
//! ```

use super::load::{env_name, from_vars};
use super::{ConfigError, PollSettings, Settings};
use crate::model::ProviderName;
use crate::upstream::registry;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Settings keys (`queue.idle_poll`) and their values in settings syntax, later ones
/// replacing earlier ones; everything else keeps its built-in default.
#[derive(Clone, Default)]
pub struct TestSettings {
    values: Vec<(String, String)>,
}

impl TestSettings {
    /// The built-in defaults, nothing changed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one settings key.
    pub fn set(mut self, key: &str, value: impl SettingValue) -> Self {
        self.values.retain(|(k, _)| k != key);
        self.values.push((key.to_string(), value.setting()));
        self
    }

    /// These settings with `other`'s laid over them.
    pub fn and(mut self, other: TestSettings) -> Self {
        for (k, v) in other.values {
            self = self.set(&k, v);
        }
        self
    }

    /// The value set for a key, in settings syntax.
    pub fn get(&self, key: &str) -> Option<&str> {
        let found = self.values.iter().find(|(k, _)| k == key);
        found.map(|(_, v)| v.as_str())
    }

    /// `redis.url` and `redis.namespace`.
    pub fn redis(self, url: &str, namespace: &str) -> Self {
        self.set("redis.url", url).set("redis.namespace", namespace)
    }

    /// Points one provider at a base URL (the simulator) with an API key.
    /// A provider with a storage upload (fal) has it at the same address.
    pub fn provider_at(self, name: ProviderName, base_url: &str, api_key: &str) -> Self {
        let t = self
            .set(&format!("providers.{name}.base_url"), base_url)
            .set(&format!("providers.{name}.api_key"), api_key);
        match registry::get(name).and_then(|e| e.storage) {
            Some(_) => t
                .set(&format!("providers.{name}.storage.rest_url"), base_url)
                .set(&format!("providers.{name}.storage.cdn_url"), base_url),
            None => t,
        }
    }

    /// The poll schedule of `[poll]` and of every provider.
    pub fn poll(mut self, p: PollSettings) -> Self {
        let sections = registry::PROVIDERS
            .iter()
            .map(|e| format!("providers.{}.poll", e.name));
        for s in std::iter::once("poll".to_string()).chain(sections) {
            self = self
                .set(&format!("{s}.first_delay"), p.first_delay)
                .set(&format!("{s}.max_interval"), p.max_interval)
                .set(&format!("{s}.deadline"), p.deadline);
        }
        self
    }

    /// Sets `providers.<name>.<field>` for every registered provider.
    pub fn every_provider(mut self, field: &str, value: impl SettingValue) -> Self {
        let value = value.setting();
        for e in registry::PROVIDERS {
            self = self.set(&format!("providers.{}.{field}", e.name), value.as_str());
        }
        self
    }

    /// Outputs under `dir`, plain-http output URLs allowed (the simulator serves http).
    pub fn output(self, dir: &Path) -> Self {
        self.set("output.dir", dir).set("output.allow_http", true)
    }

    /// The environment a `restyle` process needs for these settings: `REDIS_URL`, each
    /// credential in its provider's own variable (`AIMLAPI_API_KEY`), the rest as
    /// `RESTYLE__…`.
    pub fn env(&self) -> Vec<(String, String)> {
        let var = |key: &str| {
            if key == "redis.url" {
                return "REDIS_URL".to_string();
            }
            credential_var(key).map_or_else(|| env_name(key), str::to_string)
        };
        let vars = self.values.iter().map(|(k, v)| (var(k), v.clone()));
        vars.collect()
    }

    /// The settings, or why they are invalid.
    pub fn try_settings(&self) -> Result<Settings, ConfigError> {
        from_vars(self.env().into_iter().collect())
    }

    /// The settings (panics, naming the key, when they are invalid).
    pub fn settings(&self) -> Settings {
        self.try_settings()
            .unwrap_or_else(|e| panic!("invalid test settings: {e}"))
    }

    /// Gives a child process exactly these settings: every settings variable it would
    /// inherit (`RESTYLE…`, `REDIS_URL`, provider credentials) removed, [`Self::env`] set.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        for (k, _) in std::env::vars_os() {
            let name = k.to_string_lossy();
            if name.starts_with("RESTYLE") || name == "REDIS_URL" || is_credential_var(&name) {
                cmd.env_remove(&k);
            }
        }
        cmd.envs(self.env())
    }
}

/// The conventional variable of a credential key (`providers.fal.api_key` → `FAL_KEY`).
fn credential_var(key: &str) -> Option<&'static str> {
    registry::PROVIDERS.iter().find_map(|p| {
        let field = key.strip_prefix(&format!("providers.{}.", p.name))?;
        let vars = p.credentials.env_vars();
        vars.into_iter().find(|(f, _)| *f == field).map(|(_, v)| v)
    })
}

fn is_credential_var(name: &str) -> bool {
    registry::PROVIDERS
        .iter()
        .any(|p| p.credentials.env_vars().iter().any(|(_, v)| *v == name))
}

/// Keys and values, with the URLs redacted and credentials hidden.
impl std::fmt::Debug for TestSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.values.iter().map(|(k, v)| {
            let v = match k.as_str() {
                "redis.url" => super::redact_url(v),
                _ if k.ends_with(".base_url") => super::redact_url(v),
                _ if credential_var(k).is_some() || k.ends_with("_key") => "***".into(),
                _ => v.clone(),
            };
            (k, v)
        });
        f.debug_map().entries(shown).finish()
    }
}

/// A value in settings syntax: durations in humantime form (`20ms`), the rest as shown.
pub trait SettingValue {
    fn setting(&self) -> String;
}

impl<T: SettingValue + ?Sized> SettingValue for &T {
    fn setting(&self) -> String {
        (**self).setting()
    }
}

impl SettingValue for Duration {
    fn setting(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

impl SettingValue for Path {
    fn setting(&self) -> String {
        self.display().to_string()
    }
}

impl SettingValue for PathBuf {
    fn setting(&self) -> String {
        self.display().to_string()
    }
}

macro_rules! displayed {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn setting(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
displayed!(str, String, bool, u32, u64, usize, f64);
