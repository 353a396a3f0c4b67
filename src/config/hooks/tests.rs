//! `[hooks.<name>]` from a settings file and from env vars, and every refusal naming its key.

use super::super::load::from_vars;
use super::super::{ConfigError, HookAction, LoadOptions, Settings};
use std::collections::HashMap;
use std::time::Duration;

fn with_vars(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    from_vars(vars)
}

fn refused(pairs: &[(&str, &str)]) -> (String, String) {
    match with_vars(pairs) {
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        other => panic!("{pairs:?}: expected a refusal, got {other:?}"),
    }
}

fn from_file(toml: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.toml"), toml).unwrap();
    Settings::load(&LoadOptions {
        dir: Some(dir.path().to_path_buf()),
        ..LoadOptions::default()
    })
}

#[test]
fn hooks_from_a_settings_file() {
    let s = from_file(
        r#"
[hooks.notify-slack]
webhook = "https://hooks.slack.com/services/T0/B0/sekrit-path-token"
timeout = "20s"

[hooks.archive]
command = ["/usr/local/bin/archive", "--to", "s3, eu"]
env = ["AWS_PROFILE", "HOME"]

[hooks.Nightly_Report]
command = ["/usr/bin/true"]
"#,
    )
    .unwrap();
    let archive = &s.hooks["archive"];
    let HookAction::Command(argv) = &archive.action else {
        panic!("{archive:?}");
    };
    assert_eq!(argv, &["/usr/local/bin/archive", "--to", "s3, eu"]);
    assert_eq!(archive.env, ["AWS_PROFILE", "HOME"]);
    assert_eq!(archive.timeout, Duration::from_secs(300), "the default");
    assert_eq!(s.hooks["notify-slack"].timeout, Duration::from_secs(20));
    // Names are kept as written (a batch's on_done must match them exactly).
    assert_eq!(
        s.limits.hooks,
        ["Nightly_Report", "archive", "notify-slack"]
    );

    let shown: HashMap<String, String> = s.effective().into_iter().collect();
    assert_eq!(
        shown["hooks.archive.command"],
        "/usr/local/bin/archive, --to, s3, eu"
    );
    assert_eq!(
        shown["hooks.notify-slack.webhook"],
        "https://hooks.slack.com/***"
    );
    let all = format!("{shown:?} {s:?}");
    assert!(!all.contains("sekrit-path-token"), "{all}");
}

#[test]
fn hooks_from_env_vars_take_comma_separated_lists() {
    let s = with_vars(&[
        ("RESTYLE__HOOKS__DUMP__COMMAND", "/bin/sh,-c,echo hi"),
        ("RESTYLE__HOOKS__DUMP__ENV", "HOOK_TOKEN,LANG"),
        ("RESTYLE__HOOKS__DUMP__TIMEOUT", "2s"),
        (
            "RESTYLE__HOOKS__OPS__WEBHOOK",
            "https://hooks.example.com/ops",
        ),
    ])
    .unwrap();
    let dump = &s.hooks["dump"];
    assert!(matches!(&dump.action, HookAction::Command(a) if a == &["/bin/sh", "-c", "echo hi"]));
    assert_eq!(dump.env, ["HOOK_TOKEN", "LANG"]);
    assert_eq!(dump.timeout, Duration::from_secs(2));
    assert!(matches!(s.hooks["ops"].action, HookAction::Webhook(_)));
    assert!(Settings::builtin().hooks.is_empty(), "none by default");
}

/// Env vars, then the key and a part of the reason the refusal names.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn bad_hooks_are_refused_naming_the_key() {
    let cmd = "RESTYLE__HOOKS__X__COMMAND";
    let cases: &[Case<'_>] = &[
        (&[(cmd, "notify,--now")], "hooks.x.command", "absolute path"),
        (&[(cmd, "")], "hooks.x.command", "absolute path"),
        (
            &[
                (cmd, "/bin/true"),
                ("RESTYLE__HOOKS__X__WEBHOOK", "https://h.example.com"),
            ],
            "hooks.x",
            "not both",
        ),
        (
            &[("RESTYLE__HOOKS__X__TIMEOUT", "5s")],
            "hooks.x",
            "needs command",
        ),
        (
            &[("RESTYLE__HOOKS__X__WEBHOOK", "http://h.example.com/x")],
            "hooks.x.webhook",
            "output.allow_http",
        ),
        (
            &[("RESTYLE__HOOKS__X__WEBHOOK", "ftp://h.example.com/x")],
            "hooks.x.webhook",
            "https",
        ),
        (
            &[("RESTYLE__HOOKS__X__WEBHOOK", "not a url")],
            "hooks.x.webhook",
            "valid URL",
        ),
        (
            &[("RESTYLE__HOOKS__-X__WEBHOOK", "https://h.example.com")],
            "hooks.-x",
            "start with a letter or a digit",
        ),
        (
            &[(cmd, "/bin/true"), ("RESTYLE__HOOKS__X__ENV", "REDIS_URL")],
            "hooks.x.env",
            "never given to a hook",
        ),
        (
            &[
                (cmd, "/bin/true"),
                ("RESTYLE__HOOKS__X__ENV", "PATH,AIMLAPI_API_KEY"),
            ],
            "hooks.x.env",
            "AIMLAPI_API_KEY holds",
        ),
        (
            &[
                (cmd, "/bin/true"),
                ("RESTYLE__HOOKS__X__ENV", "RESTYLE__REDIS__URL"),
            ],
            "hooks.x.env",
            "never given to a hook",
        ),
        (
            &[(cmd, "/bin/true"), ("RESTYLE__HOOKS__X__ENV", "1BAD")],
            "hooks.x.env",
            "not a variable name",
        ),
        (
            &[
                ("RESTYLE__HOOKS__X__WEBHOOK", "https://h.example.com"),
                ("RESTYLE__HOOKS__X__ENV", "HOME"),
            ],
            "hooks.x.env",
            "only a command",
        ),
        (
            &[(cmd, "/bin/true"), ("RESTYLE__HOOKS__X__TIMEOUT", "0s")],
            "hooks.x.timeout",
            "greater than zero",
        ),
    ];
    for (vars, want_key, want_reason) in cases {
        let (key, reason) = refused(vars);
        assert_eq!(&key, want_key, "{vars:?}: {reason}");
        assert!(reason.contains(want_reason), "{vars:?}: {reason}");
    }
    let http = with_vars(&[
        ("RESTYLE__HOOKS__X__WEBHOOK", "http://127.0.0.1:9/x"),
        ("RESTYLE__OUTPUT__ALLOW_HTTP", "true"),
    ]);
    assert!(http.is_ok(), "http with output.allow_http: {http:?}");
}

#[test]
fn a_command_given_as_one_string_or_empty_is_refused_in_a_file() {
    let e = from_file("[hooks.x]\ncommand = \"env > /tmp/out\"\n").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("hooks.x.command") && text.contains("no shell"),
        "{text}"
    );
    let e = from_file("[hooks.x]\ncommand = []\n").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("hooks.x.command") && text.contains("must not be empty"),
        "{text}"
    );
    let e = from_file("[hooks.x]\ncommand = [\"/bin/true\"]\nshell = true\n").unwrap_err();
    assert!(e.to_string().contains("shell"), "{e}");
}
