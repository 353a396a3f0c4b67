//! Settings errors without values. The `config` crate's errors quote the offending value
//! (`invalid type: string "redis://u:pw@h", expected struct RawRedis`), TOML parse errors
//! quote the offending line, and a mistyped variable's value may be a secret. Every error
//! from loading is translated here into a [`ConfigError`] that names the key, what was
//! expected and what kind of value was found, and never any value, for any key.

use super::ConfigError;

/// What stands in for a reason that cannot be told without quoting the value.
const WITHHELD: &str = "invalid value (not shown: it may be a secret)";

/// Translates an error of the `config` crate.
pub(super) fn scrub(e: config::ConfigError) -> ConfigError {
    scrub_at(e, None, None)
}

fn scrub_at(e: config::ConfigError, key: Option<String>, origin: Option<String>) -> ConfigError {
    use config::ConfigError as E;
    match e {
        E::At {
            error,
            origin: o,
            key: k,
        } => scrub_at(*error, k.or(key), o.or(origin)),
        E::Type {
            origin: o,
            unexpected,
            expected,
            key: k,
        } => {
            let found = unexpected.to_string();
            let reason = format!(
                "expected {}, found {}",
                expected_text(expected),
                kind(&found)
            );
            invalid(k.or(key), reason, o.or(origin))
        }
        E::Message(m) => match env_var_name(&m) {
            // `config` names the variable as it was read: prefix gone, lowercased.
            Some(var) => ConfigError::Invalid {
                key: var.replace("__", "."),
                reason: format!(
                    "RESTYLE__{} is not valid Unicode (its value is not shown)",
                    var.to_uppercase()
                ),
            },
            None => invalid(key, message(&m), origin),
        },
        E::NotFound(k) => invalid(Some(k), "missing".to_string(), origin),
        E::FileParse { uri, cause } => {
            let file = uri.unwrap_or_else(|| "built-in defaults".to_string());
            ConfigError::Load(format!("{file}: {}", parse_error(&cause.to_string())))
        }
        E::PathParse { .. } => ConfigError::Load("a settings key does not parse".to_string()),
        E::Frozen => ConfigError::Load("settings are frozen".to_string()),
        _ => invalid(key, WITHHELD.to_string(), origin),
    }
}

fn invalid(key: Option<String>, reason: String, origin: Option<String>) -> ConfigError {
    let reason = match origin {
        Some(o) => format!("{reason} (in {o})"),
        None => reason,
    };
    match key {
        Some(key) => ConfigError::Invalid { key, reason },
        None => ConfigError::Load(reason),
    }
}

/// The kind of a value as serde and `config` describe it, without the value:
/// `string "…"` → `string`, ``64-bit integer `5` `` → `64-bit integer`.
fn kind(unexpected: &str) -> &str {
    let end = unexpected
        .find(['"', '`', '\''])
        .unwrap_or(unexpected.len());
    match unexpected[..end].trim() {
        "" => "a value",
        k => k,
    }
}

/// What was expected, in settings words (`struct RawRedis` is a table of settings).
fn expected_text(expected: &str) -> &str {
    if expected.starts_with("struct ") {
        "a table of settings"
    } else {
        expected
    }
}

/// A serde message without the value it quotes. Field names (`unknown field `colour``)
/// are kept; `invalid type: string "…", expected …` keeps the kind and the expectation;
/// anything else is withheld.
fn message(m: &str) -> String {
    const NAMES_ONLY: [&str; 3] = ["unknown field ", "missing field ", "duplicate field "];
    if NAMES_ONLY.iter().any(|p| m.starts_with(p)) {
        return m.to_string();
    }
    // The value comes before the expectation: the last `, expected ` is serde's own.
    let Some(at) = m.rfind(", expected ") else {
        return WITHHELD.to_string();
    };
    let head_end = m.find(['"', '`', '\'']).unwrap_or(at).min(at);
    let head = m[..head_end].trim().trim_end_matches(':');
    let expected = expected_text(&m[at + ", expected ".len()..]);
    format!("{head}, expected {expected}")
}

/// `config`'s error for a variable that is not Unicode names it (then quotes its value).
fn env_var_name(m: &str) -> Option<&str> {
    let rest = m.strip_prefix("env variable \"")?;
    let name = &rest[..rest.find('"')?];
    m.contains("non-Unicode").then_some(name)
}

/// A file's parse error without the quoted line: TOML's first line says where
/// (`TOML parse error at line 3, column 11`); the lines after it quote the file.
fn parse_error(cause: &str) -> String {
    let first = cause.lines().next().unwrap_or_default();
    let digits_and_words = first
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == ',');
    if first.starts_with("TOML parse error at line") && digits_and_words {
        format!("{first} (the line is not shown: it may hold a secret)")
    } else {
        "not valid TOML (details not shown: they may quote a secret)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_names_and_kinds_but_no_value() {
        let cases = [
            (
                "unknown field `colour`, expected one of `url`, `namespace`",
                "unknown field `colour`, expected one of `url`, `namespace`",
            ),
            (
                "invalid type: string \"S3cr3t, expected x\", expected a duration",
                "invalid type: string, expected a duration",
            ),
            (
                "unknown variant `S3cr3t`, expected `submit` or `poll`",
                "unknown variant, expected `submit` or `poll`",
            ),
            (
                "invalid length 3, expected 2 elements",
                "invalid length 3, expected 2 elements",
            ),
            ("S3cr3t is wrong", WITHHELD),
        ];
        for (m, want) in cases {
            assert_eq!(message(m), want, "{m}");
        }
        assert_eq!(kind("64-bit integer `12345`"), "64-bit integer");
        assert_eq!(kind("string \"S3cr3t\""), "string");
        assert_eq!(
            env_var_name("env variable \"restyle__a\" contains non-Unicode data: \"S3\\xff\""),
            Some("restyle__a")
        );
    }

    #[test]
    fn toml_errors_say_where_but_not_what() {
        let toml = "TOML parse error at line 2, column 11\n  |\n2 | api_key = S3cr3t\n  |           ^\ninvalid string\n";
        assert_eq!(
            parse_error(toml),
            "TOML parse error at line 2, column 11 (the line is not shown: it may hold a secret)"
        );
        assert!(!parse_error("S3cr3t at line 1").contains("S3cr3t"));
    }
}
