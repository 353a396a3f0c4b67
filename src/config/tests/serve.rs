//! Unit tests of `[serve]`: token entries are accepted with a SHA-256 hex digest and a
//! role, refused naming the key (never quoting the value) otherwise, and neither
//! `check-config` nor `Debug` shows a digest.

use super::*;

const HASH: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn load_toml(text: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.toml"), text).unwrap();
    Settings::load(&LoadOptions {
        dir: Some(dir.path().to_path_buf()),
        env: None,
        file: None,
    })
}

#[test]
fn tokens_load_with_roles_and_never_show_their_digest() {
    let s = load_toml(&format!(
        "[[serve.tokens]]\nname = \"ci\"\nrole = \"read\"\nsha256 = \"{HASH}\"\n\
         [[serve.tokens]]\nname = \"ops\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
        HASH.to_uppercase()
    ))
    .unwrap();
    assert_eq!(s.serve.tokens.len(), 2);
    assert_eq!(s.serve.tokens[0].role, Role::Read);
    assert_eq!(s.serve.tokens[1].role, Role::Operator);
    assert_eq!(hex::encode(s.serve.tokens[1].sha256), HASH);
    let shown: String = s
        .effective()
        .into_iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    assert!(shown.contains("\"name\":\"ci\""), "{shown}");
    assert!(!shown.to_lowercase().contains(HASH), "{shown}");
    assert!(
        !format!("{s:?}").contains("186, 120"),
        "digest bytes in Debug"
    );
    assert!(Settings::builtin().serve.tokens.is_empty());
}

#[test]
fn bad_token_entries_are_refused_naming_the_key() {
    let pasted = "rst_this-is-a-token-pasted-by-mistake";
    for (entry, key) in [
        (
            format!("name = \"ci\"\nrole = \"read\"\nsha256 = \"{pasted}\""),
            "serve.tokens[0].sha256",
        ),
        (
            format!("name = \"ci\"\nrole = \"admin\"\nsha256 = \"{HASH}\""),
            "serve.tokens[0].role",
        ),
        (
            format!("name = \"\"\nrole = \"read\"\nsha256 = \"{HASH}\""),
            "serve.tokens[0].name",
        ),
    ] {
        let err = load_toml(&format!("[[serve.tokens]]\n{entry}\n")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(key), "{text}");
        assert!(!text.contains(pasted), "{text}");
    }
    let twice = format!(
        "[[serve.tokens]]\nname = \"a\"\nrole = \"read\"\nsha256 = \"{HASH}\"\n\
         [[serve.tokens]]\nname = \"a\"\nrole = \"read\"\nsha256 = \"{HASH}\"\n"
    );
    assert!(load_toml(&twice)
        .unwrap_err()
        .to_string()
        .contains("serve.tokens[1].name"));
    let unknown = "[[serve.tokens]]\nname = \"a\"\nrole = \"read\"\ntoken = \"x\"\n";
    assert!(load_toml(unknown).is_err());
}

#[test]
fn upload_and_sign_in_bounds_load_and_out_of_range_ones_name_the_key() {
    let d = Settings::builtin().serve;
    assert_eq!(d.upload_ttl, std::time::Duration::from_secs(24 * 3600));
    assert_eq!((d.max_uploads, d.auth_failures_per_minute), (1000, 10));
    assert_eq!(d.max_upload_bytes, 20 * 1024 * 1024 * 1024);
    let s = load_toml(
        "[serve]\nupload_ttl = \"90s\"\nmax_uploads = 5\nmax_upload_bytes = 2097152\n\
         auth_failures_per_minute = 3\n",
    )
    .unwrap();
    assert_eq!(s.serve.upload_ttl, std::time::Duration::from_secs(90));
    assert_eq!(
        (s.serve.max_uploads, s.serve.auth_failures_per_minute),
        (5, 3)
    );
    for (line, key) in [
        ("upload_ttl = \"0s\"", "serve.upload_ttl"),
        ("max_uploads = 0", "serve.max_uploads"),
        ("max_upload_bytes = 10", "serve.max_upload_bytes"),
        (
            "auth_failures_per_minute = 0",
            "serve.auth_failures_per_minute",
        ),
    ] {
        let e = load_toml(&format!("[serve]\n{line}\n")).unwrap_err();
        assert!(e.to_string().contains(key), "{line}: {e}");
    }
}
