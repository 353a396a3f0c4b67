//! Unit tests of what settings never show: URL redaction, credentials refused in a
//! base_url, errors that never quote a value, environment values read as written.

use super::*;
/// Every place a URL is shown goes through `redact_url`: user and password, secret query
/// parameters (`?pass=`, `?key=`…) and fragments never show, whatever the scheme.
#[test]
fn redact_url_hides_every_credential_form() {
    let cases = [
        ("redis://ops:Pa55w0rd@h:6379/0", "redis://***:***@h:6379/0"),
        ("redis://:Pa55w0rd@h:6379", "redis://:***@h:6379"),
        ("redis://Pa55w0rd@h:6379", "redis://***@h:6379"),
        ("rediss://ops:Pa55w0rd@h:6380", "rediss://***:***@h:6380"),
        ("redis://ops:p%40ss%2Fw0rd@h", "redis://***:***@h"),
        (
            "unix:///run/redis.sock?db=2&pass=Pa55w0rd",
            "unix:///run/redis.sock?db=2&pass=***",
        ),
        (
            "redis+unix:///run/redis.sock?password=Pa55w0rd&user=ops&protocol=resp3",
            "redis+unix:///run/redis.sock?password=***&user=***&protocol=resp3",
        ),
        (
            "https://u:Tok3n@api.example.com/v1?key=K3y&api_key=K3y&token=T0k#Fr4g",
            "https://***:***@api.example.com/v1?key=***&api_key=***&token=***#***",
        ),
        (
            "https://api.example.com/v1?Pa55w0rd",
            "https://api.example.com/v1?***",
        ),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("https://api.aimlapi.com/", "https://api.aimlapi.com/"),
        ("redis://ops:Pa55w0rd@h:99999", "<unparseable url>"),
    ];
    for (raw, want) in cases {
        assert_eq!(redact_url(raw), want, "{raw}");
    }
}

/// Credentials in a provider's base_url are refused at load, the error naming the key and
/// never the URL; a Unix-socket Redis URL in either spelling is accepted.
#[test]
fn base_url_credentials_are_refused_without_echoing_them() {
    for bad in [
        "https://u:Tok3n-9931@api.example.com",
        "https://Tok3n-9931@api.example.com",
        "https://api.example.com/?key=Tok3n-9931",
        "https://api.example.com/v1?token=Tok3n-9931",
        "https://api.example.com/#Tok3n-9931",
        "https//Tok3n-9931",
    ] {
        let e = load::from_vars(vars(&[("RESTYLE__PROVIDERS__FAL__BASE_URL", bad)]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("settings: providers.fal.base_url: "), "{e}");
        assert!(!e.contains("Tok3n"), "{bad}: {e}");
    }
    for ok in [
        "unix:///run/redis.sock?pass=x",
        "redis+unix:///run/redis.sock",
    ] {
        let s = load::from_vars(vars(&[("REDIS_URL", ok)])).unwrap();
        assert_eq!(s.redis.url.expose_secret(), ok);
    }
}

/// A settings error names the key and what was expected, never the value: the value
/// of a mistyped variable may be a secret (`RESTYLE__REDIS=redis://u:pw@h` once printed
/// the password).
#[test]
fn settings_errors_never_echo_values() {
    const V: &str = "Pw-echo-5521";
    let url = format!("redis://u:{V}@h");
    let cases: Vec<(&str, String, &str)> = vec![
        ("RESTYLE__REDIS", url.clone(), "redis"),
        ("RESTYLE__REDIS__URL__X", url.clone(), "redis.url"),
        (
            "RESTYLE__WORKER__CONCURRENCY",
            V.into(),
            "worker.concurrency",
        ),
        (
            "RESTYLE__WORKER__CONCURRENCY",
            format!("-{V}"),
            "worker.concurrency",
        ),
        (
            "RESTYLE__WORKER__SHUTDOWN_GRACE",
            V.into(),
            "worker.shutdown_grace",
        ),
        (
            "RESTYLE__WORKER__SHUTDOWN_GRACE",
            format!("5{V}"),
            "worker.shutdown_grace",
        ),
        ("RESTYLE__OUTPUT__ALLOW_HTTP", V.into(), "output.allow_http"),
        (
            "RESTYLE__PROVIDERS__FAL__RATE_LIMIT",
            V.into(),
            "providers.fal.rate_limit",
        ),
        (
            "RESTYLE__PROVIDERS__FAL__RATE_COUNTS",
            V.into(),
            "providers.fal.rate_counts",
        ),
        (
            "RESTYLE__PROVIDERS__FAL__PRICE_PER_SECOND__EDIT",
            V.into(),
            "providers.fal.price_per_second.edit",
        ),
        ("RESTYLE__PROVIDERS__FAL", V.into(), "providers.fal"),
    ];
    let mut wrong = Vec::new();
    for (var, value, key) in cases {
        let e = load::from_vars(vars(&[(var, value.as_str())]))
            .unwrap_err()
            .to_string();
        if e.contains("Pw-echo") || !e.contains(key) {
            wrong.push(format!("{var} (want the key {key}, no value): {e}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let e = load::from_vars(vars(&[("RESTYLE__REDIS", url.as_str())])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "settings: redis: invalid type: string, expected a table of settings"
    );
}

/// Environment values arrive as written: a key that looks like a number (`0012345`), a
/// bool or a float stays that exact string, and so does a namespace; numeric, boolean,
/// list and duration settings still read from the environment.
#[test]
fn env_values_arrive_as_written() {
    let s = load::from_vars(vars(&[
        ("RESTYLE__PROVIDERS__AIMLAPI__API_KEY", "0012345"),
        (
            "RESTYLE__PROVIDERS__OXEN__API_KEY",
            "12345678901234567890123",
        ),
        ("RESTYLE__PROVIDERS__KLING__ACCESS_KEY", "1e5"),
        ("RESTYLE__PROVIDERS__KLING__SECRET_KEY", "TRUE"),
        ("FAL_KEY", "00777"),
        ("RESTYLE__REDIS__NAMESPACE", "0012"),
        ("RESTYLE__WORKER__CONCURRENCY", "12"),
        ("RESTYLE__OUTPUT__ALLOW_HTTP", "true"),
        ("RESTYLE__OUTPUT__MAX_DOWNLOAD_BYTES", "1048576"),
        ("RESTYLE__QUEUE__LEASE", "20s"),
        ("RESTYLE__PROVIDERS__FAL__RATE_LIMIT", "0.5"),
        ("RESTYLE__PROVIDERS__FAL__MAX_IN_FLIGHT", "3"),
        ("RESTYLE__PROVIDERS__FAL__PRICE_PER_SECOND__EDIT", "0.084"),
        ("RESTYLE__PROVIDERS__FAL__RATE_COUNTS", "submit"),
        ("RESTYLE__PROVIDERS__KLING__RATE_COUNTS", "submit,poll"),
        ("RESTYLE__PROVIDERS__OXEN__RATE_COUNTS", ""),
    ]))
    .unwrap();
    let key = |k: &Option<SecretString>| k.as_ref().unwrap().expose_secret().to_string();
    assert_eq!(key(&s.provider(ProviderName::Aimlapi).api_key), "0012345");
    assert_eq!(
        key(&s.provider(ProviderName::Oxen).api_key),
        "12345678901234567890123"
    );
    assert_eq!(key(&s.provider(ProviderName::Kling).access_key), "1e5");
    assert_eq!(key(&s.provider(ProviderName::Kling).secret_key), "TRUE");
    assert_eq!(key(&s.provider(ProviderName::Fal).api_key), "00777");
    assert_eq!(s.redis.namespace, "0012");
    assert_eq!(s.worker.concurrency, 12);
    assert!(s.output.allow_http);
    assert_eq!(s.output.max_download_bytes, 1_048_576);
    assert_eq!(s.queue.lease, Duration::from_secs(20));
    let fal = s.provider(ProviderName::Fal);
    assert_eq!(fal.limits.rate_limit, 0.5);
    assert_eq!(fal.limits.max_in_flight, 3);
    assert_eq!(fal.prices.edit, crate::money::Usd::from_f64(0.084));
    assert!(fal.limits.count_submit && !fal.limits.count_poll);
    let kling = &s.provider(ProviderName::Kling).limits;
    assert!(kling.count_submit && kling.count_poll);
    let oxen = &s.provider(ProviderName::Oxen).limits;
    assert!(!oxen.count_submit && !oxen.count_poll);
}
