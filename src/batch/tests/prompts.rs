//! Prompts: lengths, inline variants, CSV and text prompts files, the variant count.

use super::*;
use std::io::Write;

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
