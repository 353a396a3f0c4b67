//! Tests for batch specs: one per validation rule, plus the shipped job files.

use super::*;
use std::io::Write;
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
fn prompt_too_long_names_variant_and_limit() {
    let long = "x".repeat(2501);
    let e = load_err(&format!(
        "video = \"{VIDEO}\"\n[[variants]]\nprompt = \"ok\"\n[[variants]]\nprompt = \"{long}\"\n"
    ));
    assert_eq!(e.variant, Some(2));
    assert_eq!(e.field, "prompt");
    let shown = e.to_string();
    assert!(shown.contains("variant 2: prompt: "), "{shown}");
    assert!(shown.contains("2500") && shown.contains("2501"), "{shown}");
    assert!(shown.starts_with(&e.source_name), "{shown}");
}

#[test]
fn prompt_length_counts_characters_not_bytes() {
    let accented = "é".repeat(2500);
    assert!(from_flags(&flags(&[&accented]), &BatchLimits::default()).is_ok());
}

#[test]
fn empty_or_blank_prompt_is_rejected() {
    for prompt in ["", "   \t "] {
        let e = flags_err(&flags(&["fine", prompt]));
        assert_eq!((e.variant, e.field.as_str()), (Some(2), "prompt"));
        assert!(e.message.contains("got 0"), "{e}");
        assert_eq!(e.source_name, "command line");
    }
}

#[test]
fn no_prompts_is_rejected() {
    let e = load_err(&format!("video = \"{VIDEO}\"\n"));
    assert_eq!(e.field, "variants");
}

#[test]
fn http_url_is_rejected_but_loopback_is_allowed() {
    let mut f = flags(&["p"]);
    f.video = Some("http://cdn.example.com/clip.mp4".to_owned());
    let e = flags_err(&f);
    assert_eq!(e.field, "video");
    assert!(e.message.contains("https"), "{e}");

    for ok in ["http://127.0.0.1:8080/v.mp4", "http://localhost/v.mp4"] {
        f.video = Some(ok.to_owned());
        assert_eq!(
            from_flags(&f, &BatchLimits::default())
                .unwrap()
                .shared
                .video,
            ok
        );
    }
    for bad in ["ftp://example.com/v.mp4", "https:///v.mp4"] {
        f.video = Some(bad.to_owned());
        assert_eq!(flags_err(&f).field, "video", "{bad}");
    }
}

#[test]
fn bad_data_uri_is_rejected() {
    let mut f = flags(&["p"]);
    for bad in [
        "data:video/mp4;base64,***not base64***",
        "data:image/png;base64,AAAA",
        "data:video/mp4,AAAA",
        "data:video/mp4;base64,",
    ] {
        f.video = Some(bad.to_owned());
        let e = flags_err(&f);
        assert_eq!(e.field, "video", "{bad}");
    }
    f.video = Some("data:video/mp4;base64,AAAAIGZ0eXBpc29t".to_owned());
    assert!(from_flags(&f, &BatchLimits::default()).is_ok());
}

#[test]
fn data_uri_over_limit_is_rejected() {
    let mut f = flags(&["p"]);
    f.video = Some(format!("data:video/mp4;base64,{}", "A".repeat(400)));
    let limits = BatchLimits {
        max_video_bytes: 100,
    };
    let e = from_flags(&f, &limits).unwrap_err();
    assert!(e.message.contains("100 bytes"), "{e}");
}

#[test]
fn local_video_over_limit_names_the_limit() {
    let limits = BatchLimits {
        max_video_bytes: 1000,
    };
    let toml = "video = \"big.mp4\"\n[[variants]]\nprompt = \"p\"\n";
    let (_dir, result) = load_in_dir(toml, &[("big.mp4", &[0u8; 1001])], &limits);
    let e = result.unwrap_err();
    assert_eq!(e.field, "video");
    assert!(
        e.message.contains("1001") && e.message.contains("limit of 1000"),
        "{e}"
    );
}

#[test]
fn local_video_becomes_data_uri() {
    let toml = "video = \"clips/Clip.MP4\"\n[[variants]]\nprompt = \"p\"\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("clips")).unwrap();
    std::fs::write(dir.path().join("clips/Clip.MP4"), b"hello").unwrap();
    let path = dir.path().join("batch.toml");
    std::fs::write(&path, toml).unwrap();
    let batch = load_file(&path, &BatchLimits::default()).unwrap();
    assert_eq!(batch.shared.video, "data:video/mp4;base64,aGVsbG8=");

    let mut f = flags(&["p"]);
    f.video = Some(dir.path().join("clips/Clip.MP4").display().to_string());
    assert_eq!(
        from_flags(&f, &BatchLimits::default())
            .unwrap()
            .shared
            .video,
        batch.shared.video
    );
}

#[test]
fn local_file_with_unknown_extension_or_missing_is_rejected() {
    let toml = "video = \"clip.avi\"\n[[variants]]\nprompt = \"p\"\n";
    let (_dir, result) = load_in_dir(toml, &[("clip.avi", b"data")], &BatchLimits::default());
    assert!(result.unwrap_err().message.contains(".mp4"));
    let e = load_err("video = \"missing.mp4\"\n[[variants]]\nprompt = \"p\"\n");
    assert_eq!(e.field, "video");
}

#[test]
fn missing_video_is_rejected() {
    let e = flags_err(&BatchFlags {
        prompts: vec!["p".into()],
        ..BatchFlags::default()
    });
    assert_eq!(e.field, "video");
    assert!(e.message.contains("required"));
}

#[test]
fn more_than_four_images_is_rejected() {
    let mut f = flags(&["p"]);
    f.images = (1..=5)
        .map(|i| format!("https://cdn.example.com/{i}.png"))
        .collect();
    let e = flags_err(&f);
    assert_eq!(e.field, "images");
    assert!(e.message.contains('4') && e.message.contains('5'), "{e}");
    f.images.pop();
    assert_eq!(
        from_flags(&f, &BatchLimits::default())
            .unwrap()
            .shared
            .image_list
            .len(),
        4
    );
}

#[test]
fn images_must_be_https_or_image_data_uris() {
    let mut f = flags(&["p"]);
    f.images = vec!["data:video/mp4;base64,AAAA".to_owned()];
    assert_eq!(flags_err(&f).field, "images");
    f.images = vec!["data:image/png;base64,iVBORw0KGgo=".to_owned()];
    assert!(from_flags(&f, &BatchLimits::default()).is_ok());
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
fn csv_prompts_file_needs_a_prompt_column() {
    let toml = format!("video = \"{VIDEO}\"\nprompts_file = \"p.csv\"\n");
    let csv = b"name,text\na,first\n";
    let (_dir, result) = load_in_dir(&toml, &[("p.csv", csv)], &BatchLimits::default());
    let e = result.unwrap_err();
    assert_eq!(e.field, "prompts_file");
    assert!(
        e.message.contains("prompt") && e.message.contains("name, text"),
        "{e}"
    );
}

#[test]
fn csv_prompts_follow_inline_variants() {
    let toml = format!(
        "video = \"{VIDEO}\"\nprompts_file = \"p.csv\"\n[[variants]]\nprompt = \"inline\"\n"
    );
    let csv = "\u{feff}name,Prompt\na,\"first, with comma\"\nb,second\n";
    let (_dir, result) = load_in_dir(&toml, &[("p.csv", csv.as_bytes())], &BatchLimits::default());
    assert_eq!(
        result.unwrap().prompts,
        ["inline", "first, with comma", "second"]
    );

    let csv = "name,prompt\na,ok\nb,\n";
    let (_dir, result) = load_in_dir(&toml, &[("p.csv", csv.as_bytes())], &BatchLimits::default());
    let e = result.unwrap_err();
    assert_eq!(e.variant, Some(3));
    assert!(e.message.contains("p.csv line 3"), "{e}");
}

#[test]
fn text_prompts_file_skips_comments_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prompts.txt");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "# spring ideas\n\nfirst prompt\n   # indented comment\n  second prompt  \n"
    )
    .unwrap();
    let mut f = flags(&["from flag"]);
    f.prompts_file = Some(path);
    let batch = from_flags(&f, &BatchLimits::default()).unwrap();
    assert_eq!(
        batch.prompts,
        ["from flag", "first prompt", "second prompt"]
    );
}

#[test]
fn missing_prompts_file_is_reported() {
    let mut f = flags(&[]);
    f.prompts_file = Some("/nonexistent/prompts.txt".into());
    assert_eq!(flags_err(&f).field, "prompts_file");
}

#[test]
fn too_many_variants_is_rejected() {
    let prompts: Vec<String> = (0..=MAX_VARIANTS).map(|i| format!("p{i}")).collect();
    let f = BatchFlags {
        video: Some(VIDEO.into()),
        prompts,
        ..BatchFlags::default()
    };
    let e = flags_err(&f);
    assert_eq!(e.field, "variants");
    assert!(e.message.contains("10000"), "{e}");
}

#[test]
fn derived_batch_id_is_stable_and_content_addressed() {
    let spec = |prompt: &str| format!("video = \"{VIDEO}\"\n[[variants]]\nprompt = \"{prompt}\"\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Spring Promo!.toml");
    let id_of = |text: String| {
        std::fs::write(&path, text).unwrap();
        load_file(&path, &BatchLimits::default())
            .unwrap()
            .shared
            .batch_id
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
