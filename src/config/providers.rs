//! Validation of `[providers.<name>]`: every section names a registered provider, every
//! registered provider has a section, and each section's URL, admission limits, poll
//! overrides (unset keys follow `[poll]`) and prices are checked, failures naming the key.

use super::raw::{RawPollOverride, RawPrices, RawProvider, RawStorage};
use super::{invalid, positive, ConfigError};
use super::{PollSettings, Prices, ProviderLimits, ProviderSettings, StorageSettings};
use crate::model::ProviderName;
use crate::money::Usd;
use crate::upstream::registry;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;

/// Validates every provider section against the registry.
pub(super) fn validate(
    raw: BTreeMap<String, RawProvider>,
    poll: PollSettings,
) -> Result<BTreeMap<ProviderName, ProviderSettings>, ConfigError> {
    let mut providers = BTreeMap::new();
    for (name, p) in raw {
        let Some(entry) = registry::find(&name) else {
            return Err(invalid(
                &format!("providers.{name}"),
                format!("unknown provider (known: {})", registry::known()),
            ));
        };
        providers.insert(entry.name, provider(entry, &name, p, poll)?);
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
    name: &str,
    p: RawProvider,
    poll: PollSettings,
) -> Result<ProviderSettings, ConfigError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let base_url =
        url::Url::parse(&p.base_url).map_err(|e| invalid(&key("base_url"), e.to_string()))?;
    let storage = storage(entry, &key, p.storage.as_ref())?;
    let limits = limits(&key, &p)?;
    let prices = prices(&key, &p.price_per_second)?;
    Ok(ProviderSettings {
        base_url,
        api_key: nonempty(p.api_key),
        access_key: nonempty(p.access_key),
        secret_key: nonempty(p.secret_key),
        request_timeout: positive(&key("request_timeout"), p.request_timeout)?,
        poll: poll_override(&p.poll, poll),
        storage,
        limits,
        prices,
    })
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
    if let Some(c) = p
        .rate_counts
        .iter()
        .find(|c| *c != "submit" && *c != "poll")
    {
        return Err(invalid(
            &key("rate_counts"),
            format!("unknown call {c:?} (known: submit, poll)"),
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
    for (m, v) in [("edit", p.edit), ("reference", p.reference)] {
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
    })
}

fn poll_override(o: &RawPollOverride, poll: PollSettings) -> PollSettings {
    PollSettings {
        first_delay: o.first_delay.unwrap_or(poll.first_delay),
        max_interval: o.max_interval.unwrap_or(poll.max_interval),
        deadline: o.deadline.unwrap_or(poll.deadline),
    }
}
