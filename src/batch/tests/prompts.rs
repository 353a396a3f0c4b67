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

#[test]
fn control_characters_in_prompts_are_refused_naming_the_variant() {
    for (prompt, says) in [
        (
            "bad \u{0} nul",
            "U+0000 (NUL, a control character) at character 5",
        ),
        (
            "\u{1b}[31mred",
            "U+001B (ESC, a control character) at character 1",
        ),
        ("over\rwrite", "U+000D (CR"),
        (
            "invoice \u{202e}fdp.exe",
            "U+202E (RIGHT-TO-LEFT OVERRIDE, a bidi control)",
        ),
        ("c1 \u{9b}31m", "U+009B (a C1 control character)"),
    ] {
        let e = flags_err(&flags(&["fine", prompt]));
        assert_eq!(
            (e.variant, e.field.as_str()),
            (Some(2), "prompt"),
            "{prompt:?}"
        );
        assert!(e.message.contains(says), "{prompt:?}: {e}");
    }
    // Tabs and line breaks (LF or CR LF) are prose.
    let ok = "first line\r\nsecond\tline\nthird";
    assert_eq!(
        from_flags(&flags(&[ok]), &BatchLimits::default())
            .unwrap()
            .prompts,
        [ok]
    );
    // From a file, the line is named.
    let toml = format!("video = \"{VIDEO}\"\nprompts_file = \"p.txt\"\n");
    let (_dir, result) = load_in_dir(
        &toml,
        &[("p.txt", b"# ideas\nfine\nbell \x07 here\n")],
        &BatchLimits::default(),
    );
    let e = result.unwrap_err();
    assert_eq!(e.variant, Some(2));
    assert!(
        e.message.contains("U+0007 (BEL") && e.message.contains("(p.txt line 3)"),
        "{e}"
    );
}

#[test]
fn unbalanced_csv_quotes_are_an_error_with_the_line() {
    let toml = format!("video = \"{VIDEO}\"\nprompts_file = \"p.csv\"\n");
    for (csv, says) in [
        ("name,prompt\na,\"first\nb,second\nc,third\n", "p.csv line 2: unbalanced quote: the quoted field opened on this line never closes"),
        ("name,prompt\na,\"first\nb,second\nc,\"third\"\n", "p.csv line 4: unbalanced quote: text follows the quote that closes the field opened on line 2"),
        ("name,prompt\na,\"ok\" trailing\n", "p.csv line 2: unbalanced quote"),
    ] {
        let (_dir, result) = load_in_dir(&toml, &[("p.csv", csv.as_bytes())], &BatchLimits::default());
        let e = result.unwrap_err();
        assert_eq!(e.field, "prompts_file");
        assert!(e.message.contains(says), "{csv:?}: {e}");
    }
    // Balanced quoting of every kind: commas, doubled quotes, a quoted line break, CRLF.
    let csv =
        "name,prompt\r\na,\"x, y\"\r\nb,\"say \"\"hi\"\"\"\r\nc,\"two\nlines\"\r\nd,5\" tall\r\n";
    let (_dir, result) = load_in_dir(&toml, &[("p.csv", csv.as_bytes())], &BatchLimits::default());
    assert_eq!(
        result.unwrap().prompts,
        ["x, y", "say \"hi\"", "two\nlines", "5\" tall"]
    );
}

#[test]
fn prompt_and_batch_files_are_size_capped_and_must_be_utf8() {
    let limits = BatchLimits {
        max_prompt_file_bytes: 30,
        max_batch_file_bytes: 200,
        ..BatchLimits::default()
    };
    let toml = format!("video = \"{VIDEO}\"\nprompts_file = \"p.txt\"\n");
    let (_dir, result) = load_in_dir(&toml, &[("p.txt", &[b'x'; 31])], &limits);
    let e = result.unwrap_err();
    assert_eq!(e.field, "prompts_file");
    assert!(
        e.message
            .contains("is 31 bytes, over the limit of 30 bytes (limits.max_prompt_file_bytes)"),
        "{e}"
    );
    let (_dir, result) = load_in_dir(&toml, &[("p.txt", b"fine\nnot \xff utf-8\n")], &limits);
    assert!(result
        .unwrap_err()
        .message
        .contains("p.txt line 2: not UTF-8 text"));
    let big = format!("{toml}#{}\n", "x".repeat(200));
    let (_dir, result) = load_in_dir(&big, &[], &limits);
    let e = result.unwrap_err();
    assert_eq!(e.field, "");
    assert!(
        e.message
            .contains("over the limit of 200 bytes (limits.max_batch_file_bytes)"),
        "{e}"
    );
}
