//! Unit tests of loading, validation and the effective view.

use super::*;
use crate::model::ProviderName;
use secrecy::{ExposeSecret, SecretString};

mod push;
mod secrets;
mod serve;

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
    assert_eq!(s.redis.redacted_url(), "redis://***:***@localhost:6379");
}

/// The keys `check-config` has always printed, and no others.
#[test]
fn effective_keys_are_the_documented_ones() {
    let mut want: Vec<String> = [
        "redis.url",
        "redis.namespace",
        "redis.connect_timeout",
        "redis.response_timeout",
        "redis.durable_timeout",
        "redis.require_durable",
        "queue.lease",
        "queue.renew_every",
        "queue.idle_poll",
        "queue.promote_chunk",
        "queue.sweep_chunk",
        "worker.concurrency",
        "worker.shutdown_grace",
        "poll.first_delay",
        "poll.max_interval",
        "poll.deadline",
        "learned_poll.enabled",
        "learned_poll.min_samples",
        "retry.max_attempts",
        "retry.base_delay",
        "retry.max_delay",
        "retry.account_pause",
        "output.dir",
        "output.max_download_bytes",
        "output.allow_http",
        "output.connect_timeout",
        "output.idle_timeout",
        "output.store",
        "output.store_endpoint",
        "output.store_ca_file",
        "output.link_ttl",
        "output.retention",
        "limits.max_video_bytes",
        "limits.max_batch_file_bytes",
        "limits.max_prompt_file_bytes",
        "egress.allow",
        "push.public_url",
        "push.secret",
        "push.max_body_bytes",
        "push.max_concurrency",
        "push.request_timeout",
        "push.timestamp_tolerance",
        "push.jwks_ttl",
        "serve.tokens",
        "serve.upload_ttl",
        "serve.max_uploads",
        "serve.max_upload_bytes",
        "serve.auth_failures_per_minute",
    ]
    .map(String::from)
    .to_vec();
    for p in ProviderName::ALL {
        for f in [
            "base_url",
            "api_key",
            "access_key",
            "secret_key",
            "request_timeout",
            "poll.first_delay",
            "poll.max_interval",
            "poll.deadline",
            "learned_poll.enabled",
            "learned_poll.min_samples",
            "rate_limit",
            "rate_burst",
            "max_in_flight",
            "global_limiter",
            "cooldown",
            "price_per_second.edit",
            "price_per_second.reference",
            "price_per_second.standard_edit",
            "price_per_second.standard_reference",
        ] {
            want.push(format!("providers.{p}.{f}"));
        }
    }
    // Provider-specific settings, only on their provider.
    want.push("providers.fal.no_retry".into());
    want.push("providers.fal.webhook_jwks_url".into());
    want.push("providers.kling.mode".into());
    want.push("providers.fal.storage.rest_url".into());
    want.push("providers.fal.storage.cdn_url".into());
    want.sort();
    let got: Vec<String> = Settings::builtin()
        .effective()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn effective_values_keep_their_display_forms() {
    let mut s = Settings::builtin();
    let fal = s.providers.get_mut(&ProviderName::Fal).unwrap();
    fal.prices.edit = crate::money::Usd::from_f64(0.084);
    fal.limits.rate_limit = 0.5;
    let all: std::collections::BTreeMap<String, String> = s.effective().into_iter().collect();
    assert_eq!(all["providers.fal.price_per_second.edit"], "0.084");
    assert_eq!(all["providers.fal.price_per_second.reference"], "(unknown)");
    assert_eq!(all["providers.fal.rate_limit"], "0.5");
    assert_eq!(all["providers.aimlapi.rate_limit"], "5");
    assert_eq!(
        all["providers.aimlapi.base_url"],
        "https://api.aimlapi.com/"
    );
    assert_eq!(all["providers.kling.access_key"], "(unset)");
    assert_eq!(all["retry.max_delay"], "2m");
    assert_eq!(all["output.max_download_bytes"], "524288000");
    assert_eq!(all["output.allow_http"], "false");
    assert_eq!(all["providers.fal.no_retry"], "false");
    assert_eq!(all["providers.kling.mode"], "pro");
}

#[test]
fn provider_specific_settings_are_checked_and_belong_to_their_provider() {
    let s = Settings::builtin();
    assert_eq!(s.provider(ProviderName::Fal).no_retry, Some(false));
    assert_eq!(s.provider(ProviderName::Kling).mode, Some(KlingMode::Pro));
    assert_eq!(s.provider(ProviderName::Aimlapi).no_retry, None);
    assert_eq!(s.provider(ProviderName::Oxen).mode, None);
    let s = load::from_vars(vars(&[
        ("RESTYLE__PROVIDERS__KLING__MODE", "std"),
        ("RESTYLE__PROVIDERS__FAL__NO_RETRY", "true"),
    ]))
    .unwrap();
    assert_eq!(s.provider(ProviderName::Kling).mode, Some(KlingMode::Std));
    assert_eq!(s.provider(ProviderName::Fal).no_retry, Some(true));
    let err = |pairs: &[(&str, &str)]| load::from_vars(vars(pairs)).unwrap_err().to_string();
    assert_eq!(
        err(&[("RESTYLE__PROVIDERS__KLING__MODE", "max")]),
        "settings: providers.kling.mode: must be \"std\" (720p, cheaper) or \"pro\" \
         (1080p, Kling's default), got \"max\""
    );
    assert_eq!(
        err(&[("RESTYLE__PROVIDERS__AIMLAPI__MODE", "std")]),
        "settings: providers.aimlapi.mode: only Kling has a mode (providers.kling.mode)"
    );
    assert_eq!(
        err(&[("RESTYLE__PROVIDERS__OXEN__NO_RETRY", "true")]),
        "settings: providers.oxen.no_retry: only fal has this setting (providers.fal.no_retry)"
    );
}

fn vars(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn provider_variables_apply_unless_the_restyle_one_is_set() {
    let s = load::from_vars(vars(&[
        ("FAL_KEY", "from-fal-key"),
        ("KLING_ACCESS_KEY", "ak"),
        ("KLING_SECRET_KEY", "sk"),
        ("AIMLAPI_API_KEY", "conventional"),
        ("RESTYLE__PROVIDERS__AIMLAPI__API_KEY", "ours"),
        ("REDIS_URL", "redis://elsewhere:1"),
        ("RESTYLE__PROVIDERS__KLING__RATE_COUNTS", "submit,poll"),
    ]))
    .unwrap();
    let key = |p: ProviderName, k: fn(&ProviderSettings) -> &Option<SecretString>| {
        k(s.provider(p))
            .as_ref()
            .map(|k| k.expose_secret().to_string())
    };
    assert_eq!(
        key(ProviderName::Fal, |p| &p.api_key).as_deref(),
        Some("from-fal-key")
    );
    assert_eq!(
        key(ProviderName::Aimlapi, |p| &p.api_key).as_deref(),
        Some("ours")
    );
    assert_eq!(
        key(ProviderName::Kling, |p| &p.access_key).as_deref(),
        Some("ak")
    );
    assert_eq!(
        key(ProviderName::Kling, |p| &p.secret_key).as_deref(),
        Some("sk")
    );
    assert_eq!(key(ProviderName::Oxen, |p| &p.api_key), None);
    assert_eq!(s.redis.url.expose_secret(), "redis://elsewhere:1");
    assert!(s.provider(ProviderName::Kling).limits.count_poll);
}

#[test]
fn unknown_and_missing_providers_are_named() {
    let e = load::from_vars(vars(&[
        ("RESTYLE__PROVIDERS__ACME__BASE_URL", "http://x"),
        ("RESTYLE__PROVIDERS__ACME__REQUEST_TIMEOUT", "1s"),
    ]))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "settings: providers.acme: unknown provider (known: aimlapi, oxen, fal, kling)"
    );
}

#[test]
fn test_settings_render_the_same_settings_both_ways() {
    use testing::TestSettings;
    let poll = PollSettings {
        first_delay: Duration::from_millis(100),
        max_interval: Duration::from_millis(300),
        deadline: Duration::from_secs(20),
    };
    let t = TestSettings::new()
        .redis("redis://127.0.0.1:7000", "t123")
        .provider_at(ProviderName::Aimlapi, "http://127.0.0.1:9", "sk-test")
        .poll(poll)
        .output(std::path::Path::new("/tmp/out"))
        .set("queue.idle_poll", Duration::from_millis(20))
        .every_provider("rate_limit", 0.0)
        .every_provider("cooldown", Duration::from_millis(200));
    let env = t.env();
    let has = |k: &str, v: &str| env.contains(&(k.to_string(), v.to_string()));
    assert!(has("REDIS_URL", "redis://127.0.0.1:7000"));
    assert!(has("AIMLAPI_API_KEY", "sk-test"));
    assert!(has("RESTYLE__PROVIDERS__OXEN__POLL__FIRST_DELAY", "100ms"));
    assert!(has("RESTYLE__OUTPUT__ALLOW_HTTP", "true"));
    let s = t.settings();
    assert_eq!(s.redis.namespace, "t123");
    assert_eq!(s.queue.idle_poll, Duration::from_millis(20));
    assert!(s.output.allow_http);
    for p in s.providers.values() {
        assert_eq!(p.poll, poll);
        assert_eq!(p.limits.rate_limit, 0.0);
        assert_eq!(p.limits.cooldown, Duration::from_millis(200));
    }
    let a = s.provider(ProviderName::Aimlapi);
    assert_eq!(a.base_url.as_str(), "http://127.0.0.1:9/");
    assert_eq!(a.api_key.as_ref().unwrap().expose_secret(), "sk-test");
    assert_eq!(
        s.effective(),
        load::from_vars(env.into_iter().collect())
            .unwrap()
            .effective()
    );
    let dbg = format!("{t:?}");
    assert!(!dbg.contains("sk-test") && dbg.contains("t123"), "{dbg}");
}

#[test]
fn invalid_test_settings_name_the_key() {
    let e = testing::TestSettings::new()
        .set("worker.concurrency", 0usize)
        .try_settings()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "settings: worker.concurrency: must be 1–10000"
    );
}

#[test]
fn a_storage_section_is_for_a_provider_with_a_storage_only() {
    let s = Settings::builtin();
    let fal = s.providers[&ProviderName::Fal].storage.clone().unwrap();
    assert_eq!(fal.rest_url.as_str(), "https://rest.fal.ai/");
    assert_eq!(fal.cdn_url.as_str(), "https://v3.fal.media/");
    assert!(s.providers[&ProviderName::Aimlapi].storage.is_none());
    let s = load::from_vars(vars(&[(
        "RESTYLE__PROVIDERS__FAL__STORAGE__CDN_URL",
        "http://127.0.0.1:9/",
    )]))
    .unwrap();
    let fal = s.providers[&ProviderName::Fal].storage.clone().unwrap();
    assert_eq!(fal.cdn_url.as_str(), "http://127.0.0.1:9/");
    assert_eq!(
        fal.rest_url.as_str(),
        "https://rest.fal.ai/",
        "unset: documented"
    );
    let e = load::from_vars(vars(&[(
        "RESTYLE__PROVIDERS__KLING__STORAGE__REST_URL",
        "https://x",
    )]))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("providers.kling.storage") && e.contains("no storage upload"),
        "{e}"
    );
    let e = load::from_vars(vars(&[(
        "RESTYLE__PROVIDERS__FAL__STORAGE__REST_URL",
        "ftp://x",
    )]))
    .unwrap_err()
    .to_string();
    assert!(e.contains("providers.fal.storage.rest_url"), "{e}");
}

#[test]
fn learned_poll_is_on_by_default_overridable_per_provider_and_checked() {
    let s = Settings::builtin();
    let on = crate::config::LearnedPoll {
        enabled: true,
        min_samples: 32,
    };
    assert_eq!(s.learned_poll, on);
    assert_eq!(s.provider(ProviderName::Fal).learned_poll, on);
    let s = load::from_vars(vars(&[
        ("RESTYLE__LEARNED_POLL__MIN_SAMPLES", "64"),
        ("RESTYLE__PROVIDERS__KLING__LEARNED_POLL__ENABLED", "false"),
    ]))
    .unwrap();
    assert_eq!(
        s.provider(ProviderName::Aimlapi).learned_poll.min_samples,
        64
    );
    let kling = s.provider(ProviderName::Kling).learned_poll;
    assert_eq!((kling.enabled, kling.min_samples), (false, 64));
    let err = |pairs: &[(&str, &str)]| load::from_vars(vars(pairs)).unwrap_err().to_string();
    assert_eq!(
        err(&[("RESTYLE__LEARNED_POLL__MIN_SAMPLES", "0")]),
        "settings: learned_poll.min_samples: must be within 1..=256 (the completions each \
         distribution keeps)"
    );
    assert!(
        err(&[("RESTYLE__PROVIDERS__OXEN__LEARNED_POLL__MIN_SAMPLES", "257")])
            .starts_with("settings: providers.oxen.learned_poll.min_samples: must be within")
    );
}
