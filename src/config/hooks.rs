//! Validation of `[hooks.<name>]`: the commands and webhooks a batch's `on_done` may name.
//! A batch file only names a hook; what runs, with which environment, is decided here, by
//! whoever runs the workers. Every failure names its key (`hooks.<name>.command`, …).
//!
//! How a command's program is found: `command[0]` must be an absolute path. Hooks run
//! with a cleared environment, so there is no `PATH` to look a bare name up in (an
//! operator who wants the worker's `PATH` in the hook lists it in `env`).

use super::raw::{RawArgv, RawHook};
use super::{invalid, positive, ConfigError, HookAction, HookSettings};
use crate::upstream::registry;
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::path::Path;

/// Validates every hook section; webhooks must be https unless `allow_http`.
pub(super) fn validate(
    raw: BTreeMap<String, RawHook>,
    allow_http: bool,
) -> Result<BTreeMap<String, HookSettings>, ConfigError> {
    raw.into_iter()
        .map(|(name, h)| Ok((name.clone(), hook(&name, h, allow_http)?)))
        .collect()
}

fn hook(name: &str, h: RawHook, allow_http: bool) -> Result<HookSettings, ConfigError> {
    let key = format!("hooks.{name}");
    crate::batch::validate_batch_id(name)
        .map_err(|m| invalid(&key, format!("a hook name (what on_done gives) {m}")))?;
    let action = match (h.command, h.webhook) {
        (Some(_), Some(_)) => return Err(invalid(&key, "give command or webhook, not both")),
        (None, None) => {
            return Err(invalid(
                &key,
                "needs command = [\"/path/to/program\", \"arg\", …] or webhook = \"https://…\"",
            ))
        }
        (Some(argv), None) => HookAction::Command(command(&key, argv)?),
        (None, Some(url)) => {
            webhook(&key, url.expose_secret(), allow_http)?;
            HookAction::Webhook(url)
        }
    };
    if matches!(action, HookAction::Webhook(_)) && !h.env.is_empty() {
        return Err(invalid(
            &format!("{key}.env"),
            "only a command is given environment variables",
        ));
    }
    for var in &h.env {
        env_name(var).map_err(|m| invalid(&format!("{key}.env"), m))?;
    }
    Ok(HookSettings {
        action,
        env: h.env,
        timeout: positive(&format!("{key}.timeout"), h.timeout)?,
    })
}

fn command(key: &str, argv: RawArgv) -> Result<Vec<String>, ConfigError> {
    let key = format!("{key}.command");
    let argv = match argv {
        RawArgv::Argv(argv) => argv,
        RawArgv::Line(line) => {
            return Err(invalid(
                &key,
                format!(
                    "must be an array, the program and its arguments (no shell): \
                     [\"/usr/local/bin/notify\", \"--channel\", \"ops\"], got the string {line:?}"
                ),
            ))
        }
    };
    let Some(program) = argv.first() else {
        return Err(invalid(
            &key,
            "must not be empty: the program's absolute path, then its arguments",
        ));
    };
    if !Path::new(program).is_absolute() {
        return Err(invalid(
            &key,
            format!(
                "the program must be an absolute path (hooks run with a cleared \
                 environment: no PATH lookup), got {program:?}"
            ),
        ));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(invalid(&key, "an argument contains a NUL character"));
    }
    Ok(argv)
}

fn webhook(key: &str, url: &str, allow_http: bool) -> Result<(), ConfigError> {
    let key = format!("{key}.webhook");
    let parsed = url::Url::parse(url).map_err(|_| invalid(&key, "not a valid URL"))?;
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(()),
        "http" if allow_http && parsed.host_str().is_some() => Ok(()),
        "http" => Err(invalid(
            &key,
            "must be https (plain http only with output.allow_http)",
        )),
        _ => Err(invalid(&key, "must be an https URL")),
    }
}

/// A variable name a hook may be given: a plain name that holds none of the worker's
/// settings or secrets (those are exactly what a hook must never see).
fn env_name(var: &str) -> Result<(), String> {
    let plain = var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(format!(
            "{var:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ));
    }
    let credential = registry::PROVIDERS
        .iter()
        .any(|p| p.credentials.env_vars().iter().any(|(_, v)| *v == var));
    if var.starts_with("RESTYLE") || var == "REDIS_URL" || credential {
        return Err(format!(
            "{var} holds the worker's settings or secrets and is never given to a hook \
             (RESTYLE_BATCH_ID and RESTYLE_IDEMPOTENCY_KEY always are)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
