//! Media sources: https URLs, data URIs (parsed by `data-url`), local files, images.

use super::*;

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
        "DATA:Video/MP4;base64,aGVsbG8=",
        "data:video/mp4;codecs=avc1;BASE64,aGVsbG8=",
        "data:video/mp4;base64,aGVsbG8",
    ] {
        f.video = Some(ok.to_owned());
        let batch = from_flags(&f, &BatchLimits::default()).unwrap();
        assert_eq!(batch.shared.video, ok);
    }
}
