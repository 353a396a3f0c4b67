//! Media sources: https URLs, data URIs (parsed by `data-url`), local files, images;
//! content sniffed, characters checked, local files confined to the batch's directory.

use super::*;

/// The first bytes of an MP4 file: an `ftyp` box with brand `mp42`.
const MP4: &[u8] = b"\x00\x00\x00\x18ftypmp42";
const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>x()</script></svg>";

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
        ..BatchLimits::default()
    };
    let e = from_flags(&f, &limits).unwrap_err();
    assert!(e.message.contains("100 bytes"), "{e}");
}

#[test]
fn local_video_over_limit_names_the_limit() {
    let limits = BatchLimits {
        max_video_bytes: 1000,
        ..BatchLimits::default()
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
    std::fs::write(dir.path().join("clips/Clip.MP4"), MP4).unwrap();
    let path = dir.path().join("batch.toml");
    std::fs::write(&path, toml).unwrap();
    let batch = load_file(&path, &BatchLimits::default()).unwrap();
    assert_eq!(batch.shared.video, "data:video/mp4;base64,AAAAGGZ0eXBtcDQy");

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
fn data_uri_errors_name_the_expected_shape_and_the_limit() {
    let mut f = flags(&["p"]);
    let shape = "expected data:video/<subtype>;base64,<payload>";
    for (bad, says) in [
        ("data:video/mp4,AAAA", "not base64"),
        ("data:image/png;base64,AAAA", "got media type \"image/png\""),
        ("data:video;base64,AAAA", "got media type \"video\""),
        ("data:video/mp4;base64,AAAA#t=1", "#fragment"),
        ("data:video/mp4;base64", "comma"),
    ] {
        f.video = Some(bad.to_owned());
        let e = flags_err(&f);
        assert_eq!(e.field, "video", "{bad}");
        assert!(
            e.message.contains(shape) && e.message.contains(says),
            "{bad}: {e}"
        );
    }
    f.video = Some("data:video/mp4;base64,AA*A".to_owned());
    let e = flags_err(&f);
    assert!(e.message.contains("not valid base64"), "{e}");
    // The decoded size, exactly, against the limit.
    f.video = Some(format!("data:video/mp4;base64,{}", "A".repeat(400)));
    let limits = BatchLimits {
        max_video_bytes: 100,
        ..BatchLimits::default()
    };
    let e = from_flags(&f, &limits).unwrap_err();
    assert!(
        e.message
            .contains("data URI payload is 300 bytes, over the limit of 100 bytes"),
        "{e}"
    );
    f.images = vec!["data:image/png;base64,".to_owned()];
    f.video = Some(VIDEO.to_owned());
    let e = flags_err(&f);
    assert_eq!(e.field, "images");
    assert!(
        e.message.contains("image 1: data URI has an empty payload"),
        "{e}"
    );
}

#[test]
fn data_uris_are_read_as_browsers_read_them_and_sent_as_given() {
    let mut f = flags(&["p"]);
    for ok in [
        "DATA:Video/MP4;base64,AAAAGGZ0eXBtcDQy",
        "data:video/mp4;codecs=avc1;BASE64,AAAAGGZ0eXBtcDQyAA==",
        "data:video/mp4;base64,AAAAGGZ0eXBtcDQyAA",
    ] {
        f.video = Some(ok.to_owned());
        let batch = from_flags(&f, &BatchLimits::default()).unwrap();
        assert_eq!(batch.shared.video, ok);
    }
}

#[test]
fn content_is_sniffed_for_files_and_data_uris() {
    let mut f = flags(&["p"]);
    // Text as a video, SVG as an image: by data URI and by local file.
    f.video = Some(format!("data:video/mp4;base64,{}", b64(b"not a video")));
    let e = flags_err(&f);
    assert_eq!(e.field, "video");
    assert!(
        e.message.contains("does not hold MP4/QuickTime") && e.message.ends_with("text"),
        "{e}"
    );
    f.video = Some(VIDEO.to_owned());
    for (uri, says) in [
        (
            format!("data:image/svg+xml;base64,{}", b64(SVG.as_bytes())),
            "\"image/svg+xml\" is not accepted",
        ),
        (
            format!("data:image/png;base64,{}", b64(SVG.as_bytes())),
            "looks like markup",
        ),
        (
            format!("data:image/png;base64,{}", b64(b"\xff\xd8\xff\xe0")),
            "holds a JPEG image, but its media type \"image/png\" says a PNG image",
        ),
    ] {
        f.images = vec![uri];
        let e = flags_err(&f);
        assert_eq!(e.field, "images");
        assert!(
            e.message.starts_with("image 1: ") && e.message.contains(says),
            "{e}"
        );
    }
    let toml = "video = \"clip.webm\"\nimages = [\"logo.png\"]\n[[variants]]\nprompt = \"p\"\n";
    let (_dir, result) = load_in_dir(
        toml,
        &[("clip.webm", MP4), ("logo.png", SVG.as_bytes())],
        &BatchLimits::default(),
    );
    let e = result.unwrap_err();
    assert!(
        e.message
            .contains("holds MP4/QuickTime video, but its .webm name says WebM/Matroska video"),
        "{e}"
    );
    let toml = "video = \"clip.mp4\"\nimages = [\"logo.png\"]\n[[variants]]\nprompt = \"p\"\n";
    let (_dir, result) = load_in_dir(
        toml,
        &[("clip.mp4", MP4), ("logo.png", SVG.as_bytes())],
        &BatchLimits::default(),
    );
    let e = result.unwrap_err();
    assert_eq!(e.field, "images");
    assert!(
        e.message
            .contains("does not hold a PNG, JPEG, WebP or GIF image: it looks like markup"),
        "{e}"
    );
    // What is accepted: each format under each of its names.
    let toml = "video = \"clip.webm\"\nimages = [\"a.gif\", \"b.JPG\", \"c.webp\"]\n[[variants]]\nprompt = \"p\"\n";
    let files: &[(&str, &[u8])] = &[
        ("clip.webm", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81"),
        ("a.gif", b"GIF89a\x01\x00"),
        ("b.JPG", b"\xff\xd8\xff\xe0\x00\x10JFIF"),
        ("c.webp", b"RIFF\x24\x00\x00\x00WEBPVP8 "),
    ];
    let (_dir, result) = load_in_dir(toml, files, &BatchLimits::default());
    let s = result.unwrap().shared;
    assert!(s.video.starts_with("data:video/webm;base64,"));
    let mimes: Vec<&str> = s
        .image_list
        .iter()
        .map(|i| i.split(';').next().unwrap())
        .collect();
    assert_eq!(
        mimes,
        ["data:image/gif", "data:image/jpeg", "data:image/webp"]
    );
}

#[test]
fn urls_and_paths_hold_no_whitespace_or_controls() {
    let mut f = flags(&["p"]);
    for (video, says) in [
        (
            "https://v.example/a b.mp4",
            "URL contains a space at character 20; percent-encode it (%20)",
        ),
        (
            "https://v.example/a\u{a0}b.mp4",
            "U+00A0 (whitespace) at character 20; percent-encode it (%C2%A0)",
        ),
        (
            "https://v.example/a.mp4\r\nX-Evil: 1",
            "contains U+000D (CR, a control character) at character 24",
        ),
        (
            "https://v.example/\ta.mp4",
            "U+0009 (TAB, a control character)",
        ),
        (
            "data:video/mp4;base64,AAAA GGZ0eXBtcDQy",
            "data URI contains a space",
        ),
        ("./clip\u{1b}[2J.mp4", "U+001B (ESC, a control character)"),
    ] {
        f.video = Some(video.to_owned());
        let e = flags_err(&f);
        assert_eq!(e.field, "video", "{video:?}");
        assert!(e.message.contains(says), "{video:?}: {e}");
    }
    // Spaces around a source are trimmed; a path may hold spaces.
    f.video = Some(format!("  {VIDEO} "));
    assert_eq!(
        from_flags(&f, &BatchLimits::default())
            .unwrap()
            .shared
            .video,
        VIDEO
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("my clip.mp4"), MP4).unwrap();
    f.video = Some(dir.path().join("my clip.mp4").display().to_string());
    assert!(from_flags(&f, &BatchLimits::default()).is_ok());
}

#[test]
fn a_batch_file_names_only_local_files_in_its_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("batch");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(root.path().join("outside.mp4"), MP4).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd.mp4")).unwrap();
    let path = dir.join("b.toml");
    for video in [
        "../outside.mp4",
        "passwd.mp4",
        &root.path().join("outside.mp4").display().to_string(),
    ] {
        std::fs::write(
            &path,
            format!("video = {video:?}\n[[variants]]\nprompt = \"p\"\n"),
        )
        .unwrap();
        let e = load_file(&path, &BatchLimits::default()).unwrap_err();
        assert_eq!(e.field, "video");
        assert!(
            e.message.contains("outside the batch file's directory"),
            "{e}"
        );
    }
    // On the command line the same files are the producer's own choice; content rules hold.
    let mut f = flags(&["p"]);
    f.video = Some(root.path().join("outside.mp4").display().to_string());
    assert!(from_flags(&f, &BatchLimits::default()).is_ok());
    f.video = Some(dir.join("passwd.mp4").display().to_string());
    assert!(flags_err(&f).message.contains("it looks like text"));
}

#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.mp4");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut f = flags(&["p"]);
    for (video, kind) in [
        (fifo.display().to_string(), "a FIFO"),
        ("/dev/zero".into(), "a character device"),
    ] {
        f.video = Some(video);
        let e = flags_err(&f);
        assert!(
            e.message
                .contains(&format!("is not a regular file: it is {kind}")),
            "{e}"
        );
    }
    let mut f = flags(&["p"]);
    f.prompts_file = Some(fifo.with_extension("csv"));
    assert!(std::process::Command::new("mkfifo")
        .arg(fifo.with_extension("csv"))
        .status()
        .unwrap()
        .success());
    assert!(flags_err(&f).message.contains("it is a FIFO"));
    // The batch file itself.
    let e = load_file(&fifo, &BatchLimits::default()).unwrap_err();
    assert!(e.message.contains("it is a FIFO"), "{e}");
}
