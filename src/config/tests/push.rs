//! Unit tests of `[push]` and `providers.fal.webhook_jwks_url`: what is accepted, what is
//! refused (naming the key, never the value), and that the secret never shows.

use super::*;

const SECRET: &str = "Push-S3cret-1f9a77c2d4";

fn push(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load::from_vars(vars(pairs))
}

#[test]
fn push_is_off_by_default_and_on_with_a_url_and_a_secret() {
    let s = Settings::builtin();
    assert!(!s.push.enabled());
    assert_eq!(
        s.provider(ProviderName::Fal)
            .webhook_jwks_url
            .as_ref()
            .map(|u| u.as_str()),
        Some(crate::push::FAL_JWKS_URL)
    );
    let on = push(&[
        ("RESTYLE__PUSH__PUBLIC_URL", "https://push.example.com"),
        ("RESTYLE__PUSH__SECRET", SECRET),
    ])
    .unwrap();
    assert!(on.push.enabled());
    let shown: Vec<String> = on
        .effective()
        .into_iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    assert!(
        shown.contains(&"push.secret = *** (set)".to_string()),
        "{shown:?}"
    );
    assert!(shown.contains(&"push.public_url = https://push.example.com/".to_string()));
    assert!(!shown.join("\n").contains(SECRET));
    assert!(!format!("{on:?}").contains(SECRET));
    let local = push(&[
        ("RESTYLE__PUSH__PUBLIC_URL", "http://127.0.0.1:8090"),
        ("RESTYLE__PUSH__SECRET", SECRET),
    ]);
    assert!(local.is_ok(), "http on loopback, for local runs");
}

#[test]
fn push_settings_are_refused_naming_the_key_never_the_value() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("RESTYLE__PUSH__PUBLIC_URL", "https://push.example.com")],
            "push.secret",
        ),
        (
            &[
                ("RESTYLE__PUSH__PUBLIC_URL", "http://push.example.com"),
                ("RESTYLE__PUSH__SECRET", SECRET),
            ],
            "push.public_url",
        ),
        (
            &[
                (
                    "RESTYLE__PUSH__PUBLIC_URL",
                    "https://u:Push-S3cret-1f9a77c2d4@h.example",
                ),
                ("RESTYLE__PUSH__SECRET", SECRET),
            ],
            "push.public_url",
        ),
        (&[("RESTYLE__PUSH__SECRET", "Push-S3c")], "push.secret"),
        (
            &[("RESTYLE__PUSH__MAX_CONCURRENCY", "0")],
            "push.max_concurrency",
        ),
        (
            &[(
                "RESTYLE__PROVIDERS__KLING__WEBHOOK_JWKS_URL",
                "https://k.example/jwks",
            )],
            "providers.kling.webhook_jwks_url",
        ),
    ];
    for (pairs, key) in cases {
        let e = push(pairs).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("settings: {key}: ")),
            "{pairs:?}: {e}"
        );
        assert!(!e.contains("S3c"), "{e}");
    }
}
