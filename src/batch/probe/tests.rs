//! The probe on clips made by the tests' generator (`tests/it/clips.rs`): what it reads,
//! what the limits say of it, and hostile headers refused without a panic or a large
//! allocation.

#[path = "../../../tests/it/clips.rs"]
#[allow(dead_code, unreachable_pub)]
mod clips;

use super::boxes::{self, Sparse, Walk};
use super::{check, mp4, ProbeError, SourceProbe};
use crate::upstream::registry::source_limits::{FAL, KLING, OXEN};
use clips::{boxed, Clip};

fn probe(bytes: Vec<u8>) -> Result<SourceProbe, ProbeError> {
    let total = bytes.len() as u64;
    match boxes::walk(&Sparse::whole(bytes), total)? {
        Walk::Found { ftyp, moov } => mp4::read(ftyp.as_deref(), &moov),
        Walk::Need { start, len } => panic!("needs {len} at {start} of a whole file"),
    }
}

#[test]
fn reads_duration_size_rate_codec_and_audio() {
    let p = probe(Clip::OK.bytes()).unwrap();
    assert_eq!(
        (
            p.container.as_str(),
            p.duration_secs,
            p.width,
            p.height,
            p.fps
        ),
        ("mp4", 5.0, 1280, 720, 30.0)
    );
    assert_eq!((p.codec.as_str(), p.audio), ("h264", false));
    let a = probe(
        Clip {
            audio: true,
            moov_at_end: true,
            ..Clip::OK
        }
        .bytes(),
    )
    .unwrap();
    assert!(a.audio);
    let m = probe(
        Clip {
            mov: true,
            moov_at_end: true,
            ..Clip::OK
        }
        .bytes(),
    )
    .unwrap();
    assert_eq!(m.container, "mov");
    assert_eq!(p.summary(), "5 s, 1280x720, 30 fps, mp4 h264, no audio");
}

#[test]
fn limits_name_the_field_the_value_and_the_bound() {
    let refusal = |c: Clip, l| {
        let p = probe(c.bytes()).unwrap();
        check::video(&p, &l, "edit model").unwrap_err().message
    };
    let ok = Clip::OK;
    let short = refusal(Clip { frames: 60, ..ok }, FAL);
    assert!(
        short.starts_with("duration 2 s is below fal's edit model minimum of 3 s"),
        "{short}"
    );
    let long = refusal(Clip { frames: 302, ..ok }, FAL);
    assert!(
        long.contains("duration 10.067 s is above fal's edit model maximum of 10.05 s"),
        "{long}"
    );
    // 10.03 s: inside fal's 10.05 s, over Kling's 10 s.
    let p = probe(Clip { frames: 301, ..ok }.bytes()).unwrap();
    assert!(check::video(&p, &FAL, "edit model").is_ok());
    assert!(check::video(&p, &KLING, "edit model")
        .unwrap_err()
        .message
        .contains("maximum of 10 s"));
    let small = refusal(
        Clip {
            width: 640,
            height: 360,
            ..ok
        },
        FAL,
    );
    assert!(
        small.starts_with("width 640 px is below fal's edit model minimum of 720 px"),
        "{small}"
    );
    let fast = refusal(
        Clip {
            frames: 600,
            frame_delta: 128,
            ..ok
        },
        FAL,
    );
    assert!(
        fast.starts_with("frame rate 120 fps is above fal's edit model maximum of 60 fps"),
        "{fast}"
    );
    let slow = refusal(
        Clip {
            frames: 75,
            frame_delta: 1024,
            ..ok
        },
        FAL,
    );
    assert!(slow.starts_with("frame rate 15 fps is below"), "{slow}");
    let qhd = refusal(
        Clip {
            width: 2560,
            height: 1440,
            ..ok
        },
        OXEN,
    );
    assert!(
        qhd.starts_with("resolution 2560x1440 is above Oxen's edit model maximum of 1080p"),
        "{qhd}"
    );
    let fullhd = probe(
        Clip {
            width: 1920,
            height: 1080,
            ..ok
        }
        .bytes(),
    )
    .unwrap();
    assert!(check::video(&fullhd, &OXEN, "edit model").is_ok());
    let mut big = probe(ok.bytes()).unwrap();
    big.bytes = Some(200_000_001);
    let m = check::video(&big, &FAL, "edit model").unwrap_err().message;
    assert!(
        m.starts_with("size 200000001 bytes is above fal's edit model maximum of 200000000"),
        "{m}"
    );
}

#[test]
fn a_moov_at_the_end_is_found_through_ranges() {
    let bytes = Clip {
        moov_at_end: true,
        mdat_bytes: 200_000,
        ..Clip::OK
    }
    .bytes();
    let total = bytes.len() as u64;
    let mut have = Sparse::default();
    have.add(0, bytes[..1024].to_vec());
    let Walk::Need { start, len } = boxes::walk(&have, total).unwrap() else {
        panic!("the head alone holds no moov")
    };
    let end = usize::try_from((start + len).min(total)).unwrap();
    have.add(start, bytes[usize::try_from(start).unwrap()..end].to_vec());
    // The moov's header was in that range; its whole box may need one more.
    let found = match boxes::walk(&have, total).unwrap() {
        Walk::Found { ftyp, moov } => (ftyp, moov),
        Walk::Need { start, len } => {
            let (s, e) = (
                usize::try_from(start).unwrap(),
                usize::try_from(start + len).unwrap(),
            );
            have.add(start, bytes[s..e].to_vec());
            match boxes::walk(&have, total).unwrap() {
                Walk::Found { ftyp, moov } => (ftyp, moov),
                other => panic!("{other:?}"),
            }
        }
    };
    let p = mp4::read(found.0.as_deref(), &found.1).unwrap();
    assert_eq!(p.duration_secs, 5.0);
}

#[test]
fn hostile_headers_are_refused() {
    let ftyp = &Clip::OK.bytes()[..32];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // A box claiming 4 GiB in a small file.
        (
            [ftyp, &[0xff, 0xff, 0xff, 0xff], b"moov"].concat(),
            "past the end",
        ),
        // A 64-bit size of 2^63.
        (
            [ftyp, &[0, 0, 0, 1], b"moov", &(1u64 << 63).to_be_bytes()].concat(),
            "past the end",
        ),
        // A size below the header.
        (
            [ftyp, &[0, 0, 0, 4], b"moov"].concat(),
            "below its own header",
        ),
        // No moov at all.
        (ftyp.to_vec(), "no moov"),
        // A moov over the cap (declared; the bytes are not there).
        (
            [
                ftyp,
                &(boxes::MAX_MOOV_BYTES as u32 + 8).to_be_bytes(),
                b"moov",
                &[0u8; 64],
            ]
            .concat(),
            "past the end",
        ),
        // Garbage in the moov.
        (
            [ftyp, &boxed(b"moov", &[0xAB; 64])].concat(),
            "does not parse",
        ),
        // Many empty boxes.
        (
            [ftyp, &boxed(b"free", &[]).repeat(100)].concat(),
            "first 64 top-level boxes",
        ),
    ];
    for (bytes, want) in cases {
        let e = probe(bytes).unwrap_err().to_string();
        assert!(e.contains(want), "{e} (wanted {want})");
    }
    // A moov over the cap whose bytes are all there is refused by size.
    let huge = [
        ftyp,
        &boxed(b"moov", &vec![0u8; boxes::MAX_MOOV_BYTES as usize]),
    ]
    .concat();
    assert!(probe(huge)
        .unwrap_err()
        .to_string()
        .contains("over the probe's limit"));
}

#[test]
fn absurd_timescales_and_no_frames_are_refused() {
    let zero_ts = probe(
        Clip {
            timescale: 0,
            ..Clip::OK
        }
        .bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        zero_ts.contains("timescale") || zero_ts.contains("parse"),
        "{zero_ts}"
    );
    // One unit per second and 4e9 units: over a day.
    let absurd = Clip {
        timescale: 1,
        frames: 2,
        frame_delta: 2_000_000_000,
        ..Clip::OK
    };
    assert!(probe(absurd.bytes())
        .unwrap_err()
        .to_string()
        .contains("not believable"));
    let none = Clip {
        frames: 0,
        ..Clip::OK
    };
    let e = probe(none.bytes()).unwrap_err().to_string();
    assert!(
        e.contains("no frames") || e.contains("not believable"),
        "{e}"
    );
}

#[test]
fn images_give_format_and_size() {
    // A 1x1 PNG's signature and IHDR.
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend(400u32.to_be_bytes());
    png.extend(300u32.to_be_bytes());
    png.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
    let p = super::image(&png).unwrap();
    assert_eq!((p.format.as_str(), p.width, p.height), ("png", 400, 300));
    assert!(check::image(&p, &FAL.image, "fal", "images", "image 1").is_ok());
    let mut narrow = p.clone();
    narrow.width = 100;
    let m = check::image(&narrow, &FAL.image, "fal", "images", "image 1")
        .unwrap_err()
        .message;
    assert!(
        m.starts_with("image 1: width 100 px is below fal's minimum of 300 px"),
        "{m}"
    );
    let wide = super::ImageProbe {
        width: 3000,
        height: 1000,
        ..p.clone()
    };
    let m = check::image(&wide, &FAL.image, "fal", "images", "image 1")
        .unwrap_err()
        .message;
    assert!(
        m.contains("aspect ratio 3 is above fal's maximum of 2.5"),
        "{m}"
    );
    let webp = super::ImageProbe {
        format: "webp".into(),
        ..p
    };
    let m = check::image(&webp, &KLING.image, "Kling", "images", "image 1")
        .unwrap_err()
        .message;
    assert!(
        m.contains("format webp is not accepted by Kling's model, which takes png, jpeg"),
        "{m}"
    );
}
