//! Tests for batch specs: one per validation rule, plus the shipped job files. This file
//! has the shared helpers and the option rules (model, provider, aspect ratio, duration,
//! elements, unknown keys); media, prompts and batch ids have a file each.

mod ids;
mod media;
mod on_done;
mod prompts;
mod tier;

use super::*;
use tempfile::TempDir;

const VIDEO: &str = "https://cdn.example.com/clip.mp4";

/// Writes `files` into a fresh directory and loads `batch.toml` from it.
fn load_in_dir(
    toml: &str,
    files: &[(&str, &[u8])],
    limits: &BatchLimits,
) -> (TempDir, Result<ValidatedBatch, BatchError>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let path = dir.path().join("batch.toml");
    std::fs::write(&path, toml).unwrap();
    let result = load_file(&path, limits);
    (dir, result)
}

fn load(toml: &str) -> Result<ValidatedBatch, BatchError> {
    load_in_dir(toml, &[], &BatchLimits::default()).1
}

fn load_err(toml: &str) -> BatchError {
    load(toml).expect_err("spec should be rejected")
}

fn flags(prompts: &[&str]) -> BatchFlags {
    BatchFlags {
        video: Some(VIDEO.to_owned()),
        prompts: prompts.iter().map(|p| (*p).to_owned()).collect(),
        ..BatchFlags::default()
    }
}

fn flags_err(f: &BatchFlags) -> BatchError {
    from_flags(f, &BatchLimits::default()).expect_err("flags should be rejected")
}

#[test]
fn minimal_file_gets_defaults() {
    let batch = load(&format!(
        "video = \"{VIDEO}\"\n[[variants]]\nprompt = \"  make it snow \"\n"
    ))
    .unwrap();
    let s = &batch.shared;
    assert_eq!(s.v, PAYLOAD_VERSION);
    assert_eq!(s.provider, ProviderName::Aimlapi);
    assert_eq!(s.model, ModelKind::Edit);
    assert_eq!(s.video, VIDEO);
    assert!(s.image_list.is_empty());
    assert!(!s.keep_audio);
    assert_eq!((s.aspect_ratio.as_deref(), s.duration), (None, None));
    assert_eq!(batch.prompts, vec!["make it snow".to_owned()]);
    assert!(s.batch_id.starts_with("batch-"), "{}", s.batch_id);
    validate_batch_id(&s.batch_id).unwrap();
}

#[test]
fn aspect_ratio_and_duration_are_rejected_on_edit() {
    let mut f = flags(&["p"]);
    f.aspect_ratio = Some("16:9".into());
    let e = flags_err(&f);
    assert_eq!(e.field, "aspect_ratio");
    assert!(e.message.contains("not accepted by the edit model"), "{e}");

    let mut f = flags(&["p"]);
    f.duration = Some(5);
    let e = flags_err(&f);
    assert_eq!(e.field, "duration");
    assert!(e.message.contains("not accepted by the edit model"), "{e}");
}

#[test]
fn reference_checks_duration_and_aspect_ratio_enums() {
    let mut f = flags(&["p"]);
    f.model = Some("klingai/video-o1-video-to-video-reference".into());
    f.duration = Some(7);
    let e = flags_err(&f);
    assert_eq!(e.field, "duration");
    assert!(
        e.message.contains("5, 10") && e.message.contains('7'),
        "{e}"
    );

    f.duration = Some(10);
    f.aspect_ratio = Some("4:3".into());
    assert_eq!(flags_err(&f).field, "aspect_ratio");

    f.aspect_ratio = Some("9:16".into());
    let s = from_flags(&f, &BatchLimits::default()).unwrap().shared;
    assert_eq!(
        (s.model, s.aspect_ratio.as_deref(), s.duration),
        (ModelKind::Reference, Some("9:16"), Some(10))
    );
}

#[test]
fn duration_must_be_an_integer_in_toml() {
    let e = load_err(&format!(
        "model = \"reference\"\nduration = \"5\"\nvideo = \"{VIDEO}\"\n[[variants]]\nprompt = \"p\"\n"
    ));
    assert_eq!(e.field, "duration");
    assert!(e.message.contains("integer"), "{e}");
}

#[test]
fn unknown_model_is_rejected() {
    let mut f = flags(&["p"]);
    f.model = Some("klingai/video-o1-image-to-video".into());
    let e = flags_err(&f);
    assert_eq!(e.field, "model");
    assert!(
        e.message.contains("edit") && e.message.contains("reference"),
        "{e}"
    );
}

#[test]
fn unknown_provider_lists_known_ones() {
    let mut f = flags(&["p"]);
    f.provider = Some("replicate".into());
    let e = flags_err(&f);
    assert_eq!(e.field, "provider");
    assert!(
        e.message.contains("replicate") && e.message.contains("aimlapi"),
        "{e}"
    );
}

#[test]
fn unknown_keys_are_named() {
    let e = load_err(&format!(
        "video = \"{VIDEO}\"\ncolour = \"red\"\n[[variants]]\nprompt = \"p\"\n"
    ));
    assert_eq!((e.field.as_str(), e.variant), ("colour", None));
    assert!(e.to_string().contains("colour: unknown key"), "{e}");

    let e = load_err(&format!(
        "video = \"{VIDEO}\"\n[[variants]]\nprompt = \"p\"\n[[variants]]\npromt = \"typo\"\n"
    ));
    assert_eq!((e.field.as_str(), e.variant), ("promt", Some(2)));
}

#[test]
fn invalid_toml_reports_the_line() {
    let e = load_err("video = \"x\"\nmodel = \n");
    assert!(e.message.contains("line 2"), "{e}");
    assert!(!e.to_string().contains(": : "), "{e}");
}

#[test]
fn shipped_demo_batch_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/demo.toml");
    let batch = load_file(&path, &BatchLimits::default()).unwrap();
    assert_eq!(batch.shared.batch_id, "demo");
    assert_eq!(batch.shared.model, ModelKind::Edit);
    assert_eq!(batch.prompts.len(), 8);
}

#[test]
fn shipped_spring_campaign_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/spring-campaign.toml");
    let batch = load_file(&path, &BatchLimits::default()).unwrap();
    let s = &batch.shared;
    assert_eq!(s.model, ModelKind::Reference);
    assert_eq!(s.image_list.len(), 2);
    assert_eq!(
        (s.aspect_ratio.as_deref(), s.duration, s.keep_audio),
        (Some("9:16"), Some(5), true)
    );
    assert_eq!(batch.prompts.len(), 20);
    assert!(batch.prompts[0].starts_with("Opening hero shot"));
    assert!(!batch.prompts[0].contains('\n'));
}

#[test]
fn provider_table_rules_apply() {
    // Oxen has no reference model.
    let mut f = flags(&["p"]);
    f.provider = Some("oxen".into());
    f.model = Some("reference".into());
    let e = flags_err(&f);
    assert_eq!(e.field, "model");
    assert!(e.message.contains("Oxen offers no"), "{e}");
    // fal's reference takes 3..10 s; aimlapi's only 5 or 10.
    let mut f = flags(&["p"]);
    f.provider = Some("fal".into());
    f.model = Some("reference".into());
    f.duration = Some(7);
    assert!(from_flags(&f, &BatchLimits::default()).is_ok());
    f.provider = Some("aimlapi".into());
    assert_eq!(flags_err(&f).field, "duration");
}

#[test]
fn elements_count_with_images_and_kling_takes_none_inline() {
    let dir = tempfile::tempdir().unwrap();
    let body = |provider: &str, images: usize| {
        let imgs: Vec<String> = (0..images)
            .map(|i| format!("\"https://i.example/{i}.png\""))
            .collect();
        format!(
            "provider = \"{provider}\"\nvideo = \"https://v.example/a.mp4\"\nimages = [{}]\n\
             [[elements]]\nfrontal_image = \"https://i.example/f.png\"\n\
             reference_images = [\"https://i.example/r.png\"]\n\
             [[variants]]\nprompt = \"@Element1 waves\"\n",
            imgs.join(",")
        )
    };
    let path = dir.path().join("b.toml");
    std::fs::write(&path, body("aimlapi", 3)).unwrap();
    let ok = load_file(&path, &BatchLimits::default()).unwrap();
    assert_eq!(ok.shared.elements.len(), 1);
    std::fs::write(&path, body("aimlapi", 4)).unwrap();
    let e = load_file(&path, &BatchLimits::default()).unwrap_err();
    assert_eq!(e.field, "elements");
    assert!(e.message.contains("at most 4"), "{e}");
    std::fs::write(&path, body("kling", 1)).unwrap();
    let e = load_file(&path, &BatchLimits::default()).unwrap_err();
    assert!(e.message.contains("pre-registered"), "{e}");
}
