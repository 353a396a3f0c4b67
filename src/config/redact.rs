//! The one redaction of URLs for display: every Redis URL and provider `base_url` that is
//! printed, logged or put into an error goes through [`redact_url`]. Parsed with the `url`
//! crate (never sliced by hand): the user and the password are masked, every query
//! parameter's value is masked except the few known to be harmless (`db`, `protocol`),
//! and a fragment is masked whole. What cannot be parsed is not shown at all.

/// What stands in for a hidden part.
const MASK: &str = "***";

/// What stands in for a URL that does not parse (its text could be anything).
const UNPARSEABLE: &str = "<unparseable url>";

/// Query parameters whose values are shown: a database number and a protocol version
/// (`redis://h/?protocol=resp3`). Every other value (`pass=`, `password=`, `user=`,
/// `key=`, `token=`, `api_key=`, …) is masked.
const SHOWN_PARAMS: &[&str] = &["db", "protocol"];

/// The URL with its credentials masked: `redis://ops:pw@h:6379` → `redis://***:***@h:6379`,
/// `unix:///s.sock?db=1&pass=pw` → `unix:///s.sock?db=1&pass=***`,
/// `https://h/v1?key=k#t` → `https://h/v1?key=***#***`.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return UNPARSEABLE.to_string();
    };
    if !u.username().is_empty() && u.set_username(MASK).is_err() {
        return UNPARSEABLE.to_string();
    }
    if u.password().is_some() && u.set_password(Some(MASK)).is_err() {
        return UNPARSEABLE.to_string();
    }
    if let Some(q) = u.query() {
        let q = redact_query(q);
        u.set_query(Some(&q));
    }
    if u.fragment().is_some() {
        u.set_fragment(Some(MASK));
    }
    u.to_string()
}

/// Each `name=value` pair with its value masked unless the name is a shown one; a pair
/// without `=`, or whose name is not a plain word, is masked whole.
fn redact_query(q: &str) -> String {
    let plain = |n: &str| {
        !n.is_empty()
            && n.len() <= 32
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let pairs: Vec<String> = q
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SHOWN_PARAMS.contains(&name) => pair.to_string(),
            Some((name, _)) if plain(name) => format!("{name}={MASK}"),
            _ => MASK.to_string(),
        })
        .collect();
    pairs.join("&")
}
