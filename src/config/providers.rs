//! Validation of `[providers.<name>]`: every section names a registered provider, every
//! registered provider has a section, and each section's URL, admission limits, poll
//! overrides (unset keys follow `[poll]`), prices and provider-specific settings (fal's
//! `no_retry`, Kling's `mode`: each refused on any other provider) are checked, failures
//! naming the key.

use super::raw::{RawPollOverride, RawPrices, RawProvider, RawStorage};
use super::StorageSettings;
use super::{invalid, positive, ConfigError};
use super::{KlingMode, LearnedPoll, PollSettings, Prices, ProviderLimits, ProviderSettings};
use crate::model::ProviderName;
use crate::money::Usd;
use crate::upstream::registry;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;

/// Validates every provider section against the registry.
pub(super) fn validate(
    raw: BTreeMap<String, RawProvider>,
    poll: PollSettings,
    learned_poll: LearnedPoll,
) -> Result<BTreeMap<ProviderName, ProviderSettings>, ConfigError> {
    let mut providers = BTreeMap::new();
    for (name, p) in raw {
        let Some(entry) = registry::find(&name) else {
            return Err(invalid(
                &format!("providers.{name}"),
                format!("unknown provider (known: {})", registry::known()),
            ));
        };
        providers.insert(entry.name, provider(entry, p, poll, learned_poll)?);
    }
    for entry in registry::PROVIDERS {
        if !providers.contains_key(&entry.name) {
            return Err(invalid(&format!("providers.{}", entry.name), "missing"));
        }
    }
    Ok(providers)
}

fn provider(
    entry: &registry::Provider,
    p: RawProvider,
    poll: PollSettings,
    learned_poll: LearnedPoll,
) -> Result<ProviderSettings, ConfigError> {
    let name = entry.name;
    let key = |k: &str| format!("providers.{name}.{k}");
    let base_url = base_url(&key("base_url"), &p.base_url)?;
    let storage = storage(entry, &key, p.storage.as_ref())?;
    let limits = limits(&key, &p)?;
    let prices = prices(&key, &p.price_per_second)?;
    let (no_retry, mode) = specific(name, &key, &p)?;
    let webhook_jwks_url = jwks_url(name, &key, p.webhook_jwks_url.as_deref())?;
    Ok(ProviderSettings {
        no_retry,
        mode,
        webhook_jwks_url,
        push: None,
        base_url,
        api_key: nonempty(p.api_key),
        access_key: nonempty(p.access_key),
        secret_key: nonempty(p.secret_key),
        request_timeout: positive(&key("request_timeout"), p.request_timeout)?,
        poll: poll_override(&p.poll, poll),
        learned_poll: learned(
            &key("learned_poll"),
            p.learned_poll.enabled.unwrap_or(learned_poll.enabled),
            p.learned_poll
                .min_samples
                .unwrap_or(learned_poll.min_samples),
        )?,
        storage,
        limits,
        prices,
    })
}

/// A provider's base URL: it parses, and carries no credentials. A key in the URL
/// (`user:password@`, `?key=`, a fragment) would show wherever the URL does and is not
/// what any provider reads, so it is refused, the error naming the key and never the
/// URL (`url`'s parse errors name the problem, not the text).
fn base_url(key: &str, raw: &str) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(raw).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
    if !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
    {
        return Err(invalid(
            key,
            "must not carry credentials or parameters (user:password@, ?query, #fragment): \
             keys go in the provider's key settings (RESTYLE__PROVIDERS__<NAME>__API_KEY or \
             its own variable)",
        ));
    }
    Ok(u)
}

/// The settings only one provider has: fal's `no_retry` (default false) and Kling's
/// `mode` (default `pro`, Kling's own), each refused on any other provider.
fn specific(
    name: ProviderName,
    key: &dyn Fn(&str) -> String,
    p: &RawProvider,
) -> Result<(Option<bool>, Option<KlingMode>), ConfigError> {
    let no_retry = match (name, p.no_retry) {
        (ProviderName::Fal, v) => Some(v.unwrap_or(false)),
        (_, None) => None,
        (_, Some(_)) => {
            return Err(invalid(
                &key("no_retry"),
                "only fal has this setting (providers.fal.no_retry)",
            ))
        }
    };
    let mode = match (name, p.mode.as_deref()) {
        (ProviderName::Kling, None) => Some(KlingMode::Pro),
        (ProviderName::Kling, Some(m)) => Some(KlingMode::parse(m).ok_or_else(|| {
            invalid(
                &key("mode"),
                format!(
                    "must be \"std\" (720p, cheaper) or \"pro\" (1080p, Kling's default), \
                     got {m:?}"
                ),
            )
        })?),
        (_, None) => None,
        (_, Some(_)) => {
            return Err(invalid(
                &key("mode"),
                "only Kling has a mode (providers.kling.mode)",
            ))
        }
    };
    Ok((no_retry, mode))
}

/// `[providers.<name>.storage]`: only for a provider with a storage, each URL its
/// documented host unless set.
fn storage(
    entry: &registry::Provider,
    key: &dyn Fn(&str) -> String,
    raw: Option<&RawStorage>,
) -> Result<Option<StorageSettings>, ConfigError> {
    let Some(defaults) = entry.storage else {
        return match raw {
            Some(_) => Err(invalid(
                &key("storage"),
                format!("{} has no storage upload; remove the section", entry.name),
            )),
            None => Ok(None),
        };
    };
    let url = |k: &str, given: Option<&String>, default: &str| {
        let text = given.map_or(default, String::as_str);
        let u = url::Url::parse(text).map_err(|e| invalid(&key(k), e.to_string()))?;
        match u.scheme() {
            "https" | "http" if u.host_str().is_some() => Ok(u),
            _ => Err(invalid(&key(k), "must be an http(s) URL with a host")),
        }
    };
    let raw = raw.map_or((None, None), |r| (r.rest_url.as_ref(), r.cdn_url.as_ref()));
    Ok(Some(StorageSettings {
        rest_url: url("storage.rest_url", raw.0, defaults.rest_url)?,
        cdn_url: url("storage.cdn_url", raw.1, defaults.cdn_url)?,
    }))
}

/// An empty secret is as good as none.
fn nonempty(k: Option<SecretString>) -> Option<SecretString> {
    k.filter(|k| !k.expose_secret().is_empty())
}

fn limits(key: &dyn Fn(&str) -> String, p: &RawProvider) -> Result<ProviderLimits, ConfigError> {
    if !(p.rate_limit >= 0.0 && p.rate_limit.is_finite()) {
        return Err(invalid(
            &key("rate_limit"),
            "must be a number ≥ 0 (0 = no limit)",
        ));
    }
    if p.rate_burst == 0 {
        return Err(invalid(&key("rate_burst"), "must be at least 1"));
    }
    if let Some(i) = p
        .rate_counts
        .iter()
        .position(|c| c != "submit" && c != "poll")
    {
        // Settings errors never quote a value.
        return Err(invalid(
            &key("rate_counts"),
            format!("entry {} is not a known call (known: submit, poll)", i + 1),
        ));
    }
    Ok(ProviderLimits {
        rate_limit: p.rate_limit,
        rate_burst: p.rate_burst,
        count_submit: p.rate_counts.iter().any(|c| c == "submit"),
        count_poll: p.rate_counts.iter().any(|c| c == "poll"),
        max_in_flight: p.max_in_flight,
        global: p.global_limiter,
        cooldown: positive(&key("cooldown"), p.cooldown)?,
    })
}

fn prices(key: &dyn Fn(&str) -> String, p: &RawPrices) -> Result<Prices, ConfigError> {
    for (m, v) in [
        ("edit", p.edit),
        ("reference", p.reference),
        ("standard_edit", p.standard_edit),
        ("standard_reference", p.standard_reference),
    ] {
        if v.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
            return Err(invalid(
                &key(&format!("price_per_second.{m}")),
                "must be a number ≥ 0",
            ));
        }
    }
    Ok(Prices {
        edit: p.edit.and_then(Usd::from_f64),
        reference: p.reference.and_then(Usd::from_f64),
        standard_edit: p.standard_edit.and_then(Usd::from_f64),
        standard_reference: p.standard_reference.and_then(Usd::from_f64),
    })
}

fn poll_override(o: &RawPollOverride, poll: PollSettings) -> PollSettings {
    PollSettings {
        first_delay: o.first_delay.unwrap_or(poll.first_delay),
        max_interval: o.max_interval.unwrap_or(poll.max_interval),
        deadline: o.deadline.unwrap_or(poll.deadline),
    }
}

/// fal's `webhook_jwks_url` (default fal's published JWKS), refused on any other provider.
fn jwks_url(
    name: ProviderName,
    key: &dyn Fn(&str) -> String,
    given: Option<&str>,
) -> Result<Option<url::Url>, ConfigError> {
    let k = key("webhook_jwks_url");
    match (name, given) {
        (ProviderName::Fal, given) => {
            let text = given.unwrap_or(crate::push::FAL_JWKS_URL);
            let u = base_url(&k, text)?;
            match u.scheme() {
                "https" | "http" if u.host_str().is_some() => Ok(Some(u)),
                _ => Err(invalid(&k, "must be an http(s) URL with a host")),
            }
        }
        (_, None) => Ok(None),
        (_, Some(_)) => Err(invalid(
            &k,
            "only fal signs webhooks with published keys (providers.fal.webhook_jwks_url)",
        )),
    }
}

/// A `learned_poll` section: `min_samples` within 1 ..= the ring's size.
pub(super) fn learned(
    section: &str,
    enabled: bool,
    min_samples: u32,
) -> Result<LearnedPoll, ConfigError> {
    let max = crate::upstream::learned::MAX_SAMPLES as u32;
    if !(1..=max).contains(&min_samples) {
        return Err(invalid(
            &format!("{section}.min_samples"),
            format!("must be within 1..={max} (the completions each distribution keeps)"),
        ));
    }
    Ok(LearnedPoll {
        enabled,
        min_samples,
    })
}
