//! Batch ids: the rule for a given id, derivation from the content, the file-stem slug.

use super::*;

#[test]
fn invalid_batch_ids_are_rejected() {
    for bad in ["", "-lead", "has space", "dot.ted", &"a".repeat(65)] {
        assert!(validate_batch_id(bad).is_err(), "{bad:?}");
    }
    for ok in ["a", "spring-campaign-2026", "x_1", &"a".repeat(64)] {
        validate_batch_id(ok).unwrap();
    }
    let mut f = flags(&["p"]);
    f.batch_id = Some("no/slash".into());
    assert_eq!(flags_err(&f).field, "batch_id");
}

#[test]
fn derived_batch_id_is_stable_and_content_addressed() {
    let spec = |prompt: &str| format!("video = \"{VIDEO}\"\n[[variants]]\nprompt = \"{prompt}\"\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Spring Promo!.toml");
    let id_of = |text: String| {
        std::fs::write(&path, text).unwrap();
        let limits = BatchLimits {
            hooks: vec!["notify-a".into(), "notify-b".into()],
            ..BatchLimits::default()
        };
        load_file(&path, &limits).unwrap().shared.batch_id
    };
    let first = id_of(spec("make it snow"));
    assert_eq!(first, id_of(spec("make it snow")));
    assert!(first.starts_with("Spring-Promo-"), "{first}");
    assert_eq!(first.len(), "Spring-Promo-".len() + 10);
    validate_batch_id(&first).unwrap();
    assert_ne!(first, id_of(spec("make it rain")));

    let from_cli = from_flags(&flags(&["make it snow"]), &BatchLimits::default()).unwrap();
    assert_eq!(
        from_cli.shared.batch_id,
        format!("batch-{}", &first["Spring-Promo-".len()..])
    );
}

#[test]
fn slug_is_sanitized() {
    assert_eq!(
        slug_from_stem(Path::new("jobs/_-weird name.toml")),
        "weird-name"
    );
    assert_eq!(slug_from_stem(Path::new("...toml")), "batch");
    assert_eq!(
        slug_from_stem(Path::new(&format!("{}.toml", "a".repeat(80)))).len(),
        53
    );
}

#[test]
fn derived_id_of_a_batch_without_the_newer_options_is_unchanged() {
    // The id this spec had before clip_seconds, max_cost and on_done were hashed.
    let b = from_flags(&flags(&["make it snow"]), &BatchLimits::default()).unwrap();
    assert_eq!(b.shared.batch_id, "batch-95573ab126");
}

#[test]
fn editing_clip_seconds_max_cost_or_on_done_changes_the_derived_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    let id_of = |extra: &str| {
        let body = format!("video = \"{VIDEO}\"\n{extra}\n[[variants]]\nprompt = \"p\"\n");
        std::fs::write(&path, body).unwrap();
        let limits = BatchLimits {
            hooks: vec!["notify-a".into(), "notify-b".into()],
            ..BatchLimits::default()
        };
        load_file(&path, &limits).unwrap().shared.batch_id
    };
    let edits = [
        "",
        "clip_seconds = 8.5",
        "clip_seconds = 9",
        "max_cost = 25.0",
        "max_cost = 30",
        "on_done = \"notify-a\"",
        "on_done = \"notify-b\"",
    ];
    let ids: Vec<String> = edits.iter().map(|e| id_of(e)).collect();
    for (i, a) in ids.iter().enumerate() {
        assert_eq!(*a, id_of(edits[i]), "stable for {:?}", edits[i]);
        for (j, b) in ids.iter().enumerate().skip(i + 1) {
            assert_ne!(a, b, "{:?} and {:?} share an id", edits[i], edits[j]);
        }
    }
}
