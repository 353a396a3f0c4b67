//! Loading and layering: built-in defaults < `config/default.toml` < `config/<env>.toml`
//! < an extra file < `RESTYLE__…` env vars < `REDIS_URL` and the providers' own credential
//! variables (from the registry; each only when its `RESTYLE__` twin is unset). The layers
//! deserialize into the raw structs, then `validate` turns them into [`Settings`].
//! Environment values stay the strings they are: secrets and names that look like numbers
//! arrive as written.

use super::raw::Raw;
use super::{invalid, ConfigError, Settings};
use crate::upstream::registry;
use std::collections::HashMap;
use std::path::PathBuf;

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
const BUILTIN: &str = include_str!("../../config/default.toml");

type Builder = config::ConfigBuilder<config::builder::DefaultState>;

/// The environment the env layers read: the process's, or a given set of variables
/// (test settings, which must not see the process's).
#[derive(Debug)]
pub(super) enum Env {
    Process,
    Vars(HashMap<String, String>),
}

impl Env {
    fn var(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(name).ok(),
            Env::Vars(m) => m.get(name).cloned(),
        }
    }

    fn names(&self) -> Vec<String> {
        match self {
            Env::Process => std::env::vars_os()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect(),
            Env::Vars(m) => m.keys().cloned().collect(),
        }
    }
}

/// The list-valued hook keys set through env vars, with their variables:
/// `RESTYLE__HOOKS__<NAME>__COMMAND` and `…__ENV` are comma-separated lists (hook names are
/// dynamic, so they are found by name; a command's argv must arrive as a list, since a
/// single string is refused as a shell line).
fn hook_list_keys(env: &Env) -> Vec<(String, String)> {
    let lists = ["__COMMAND", "__ENV"];
    env.names()
        .into_iter()
        .filter(|n| n.starts_with("RESTYLE__HOOKS__") && lists.iter().any(|l| n.ends_with(l)))
        .map(|n| (n["RESTYLE__".len()..].replace("__", ".").to_lowercase(), n))
        .collect()
}

impl Settings {
    /// Loads the layers and validates them.
    pub fn load(opts: &LoadOptions) -> Result<Settings, ConfigError> {
        let b = file_layers(opts, &Env::Process)?;
        finish(env_layers(b, &Env::Process)?)
    }

    /// Settings for tests and the demo: the built-in defaults with no files or env vars.
    pub fn builtin() -> Settings {
        finish(builtin_layer()).expect("built-in settings are valid")
    }
}

/// The built-in defaults overlaid with exactly these variables (no files, nothing from
/// the process environment): what a `restyle` process run from an empty directory with
/// this environment loads.
pub(super) fn from_vars(vars: HashMap<String, String>) -> Result<Settings, ConfigError> {
    finish(env_layers(builtin_layer(), &Env::Vars(vars))?)
}

fn builtin_layer() -> Builder {
    config::Config::builder().add_source(config::File::from_str(BUILTIN, config::FileFormat::Toml))
}

fn file_layers(opts: &LoadOptions, env: &Env) -> Result<Builder, ConfigError> {
    let dir = opts.dir.clone().unwrap_or_else(|| PathBuf::from("config"));
    let name = opts.env.clone().or_else(|| env.var("RESTYLE_ENV"));
    let mut b =
        builtin_layer().add_source(config::File::from(dir.join("default.toml")).required(false));
    if let Some(name) = &name {
        let p = dir.join(format!("{name}.toml"));
        if !p.exists() {
            return Err(invalid("env", format!("no settings file {}", p.display())));
        }
        b = b.add_source(config::File::from(p));
    }
    if let Some(f) = &opts.file {
        b = b.add_source(config::File::from(f.as_path()));
    }
    Ok(b)
}

fn env_layers(b: Builder, env: &Env) -> Result<Builder, ConfigError> {
    // Every value is read as the string it is (no `try_parsing`, which made the key
    // `0012345` the number 12345 and the namespace `0012` the namespace `12`): numbers,
    // bools and durations are parsed by the field that wants them, and a list field reads
    // `a,b` through `raw::list`.
    let mut vars = config::Environment::with_prefix("RESTYLE")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(false);
    if let Env::Vars(m) = env {
        vars = vars.source(Some(
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ));
    }
    let mut b = b.add_source(vars);
    for (key, var) in hook_list_keys(env) {
        if let Some(v) = env.var(&var) {
            let items: Vec<String> = v
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect();
            b = b.set_override(&key, items).map_err(super::scrub::scrub)?;
        }
    }
    if let Some(url) = env.var("REDIS_URL") {
        b = set(b, "redis.url", url)?;
    }
    // The providers' own conventional variables, when the RESTYLE__ one is unset.
    for p in registry::PROVIDERS {
        for (field, var) in p.credentials.env_vars() {
            let key = format!("providers.{}.{field}", p.name);
            if let (Some(v), None) = (env.var(var), env.var(&env_name(&key))) {
                b = set(b, &key, v)?;
            }
        }
    }
    Ok(b)
}

/// The `RESTYLE__…` variable of a settings key (`poll.deadline` → `RESTYLE__POLL__DEADLINE`).
pub(super) fn env_name(key: &str) -> String {
    format!("RESTYLE__{}", key.replace('.', "__").to_uppercase())
}

fn set(b: Builder, key: &str, value: String) -> Result<Builder, ConfigError> {
    b.set_override(key, value).map_err(super::scrub::scrub)
}

fn finish(b: Builder) -> Result<Settings, ConfigError> {
    let raw: Raw = b
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(super::scrub::scrub)?;
    raw.validate()
}
