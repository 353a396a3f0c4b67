//! The simulator's own reading of the media it can see (a data URI in a request body, a
//! file in fal's storage), and each provider's documented source limits, held the way the
//! provider holds them. The clip's whole file goes through Mozilla's `mp4parse` (the
//! `mdat` is skipped, not read into memory twice); the numbers here are typed from the
//! providers' pages independently of any client, so a client whose table is wrong
//! disagrees with this peer in a test.

use base64::Engine;
use mp4parse::TrackType;
use serde_json::{json, Value};

/// What the simulator reads of a clip.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clip {
    /// `mp4`, `mov`, or `webm` (not parsed further).
    pub container: &'static str,
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub bytes: u64,
}

/// A clip's facts, or `None` when it is not a readable MP4/QuickTime or WebM file.
pub(crate) fn read(bytes: &[u8]) -> Option<Clip> {
    let size = bytes.len() as u64;
    if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(Clip {
            container: "webm",
            seconds: 0.0,
            width: 0,
            height: 0,
            fps: 0.0,
            bytes: size,
        });
    }
    let container = match bytes.get(4..12) {
        Some(b) if &b[..4] == b"ftyp" && &b[4..] == b"qt  " => "mov",
        Some(b) if &b[..4] == b"ftyp" => "mp4",
        _ => return None,
    };
    let ctx = mp4parse::read_mp4(&mut std::io::Cursor::new(bytes)).ok()?;
    let track = ctx
        .tracks
        .iter()
        .find(|t| t.track_type == TrackType::Video)?;
    let tkhd = track.tkhd.as_ref()?;
    let scale = track.timescale?.0;
    let units = track.duration?.0;
    if scale == 0 {
        return None;
    }
    let seconds = units as f64 / scale as f64;
    let frames: u64 = track
        .stts
        .as_ref()?
        .samples
        .iter()
        .map(|s| u64::from(s.sample_count))
        .sum();
    let fps = if seconds > 0.0 {
        frames as f64 / seconds
    } else {
        0.0
    };
    Some(Clip {
        container,
        seconds,
        // The track header's display size (16.16 fixed point).
        width: tkhd.width >> 16,
        height: tkhd.height >> 16,
        fps,
        bytes: size,
    })
}

/// The payload of a `data:…;base64,` URI.
pub(crate) fn data_uri(s: &str) -> Option<Vec<u8>> {
    let rest = s.strip_prefix("data:")?;
    let (header, payload) = rest.split_once(',')?;
    if !header.ends_with(";base64") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()
}

/// fal's Kling O1 video-to-video `video_url` bounds: ".mp4/.mov", 3.0–10.05 s, 720–2160 px
/// each side, 24–60 fps, 200 MB (the endpoints' input schema).
const FAL_MIN_S: f64 = 3.0;
const FAL_MAX_S: f64 = 10.05;
const FAL_MIN_PX: u32 = 720;
const FAL_MAX_PX: u32 = 2160;
const FAL_MIN_FPS: f64 = 24.0;
const FAL_MAX_FPS: f64 = 60.0;
const FAL_MAX_BYTES: u64 = 200_000_000;

/// fal's model error for a `video_url` outside the bounds, as `{"detail": [{loc, msg, type,
/// url, ctx}]}` (fal's Errors page; the type names are fal's error types), or `None`.
pub(crate) fn fal_refusal(clip: &Clip, input: &str) -> Option<Value> {
    let err = |kind: &str, msg: String, ctx: Value| {
        let shown: String = input.chars().take(120).collect();
        Some(json!({"detail": [{
            "loc": ["body", "video_url"],
            "msg": msg,
            "type": kind,
            "url": format!("https://docs.fal.ai/errors/#{kind}"),
            "ctx": ctx,
            "input": shown,
        }]}))
    };
    if !matches!(clip.container, "mp4" | "mov") {
        return err(
            "unsupported_video_format",
            "Unsupported video format. Supported formats: mp4, mov".into(),
            json!({"supported_formats": ["mp4", "mov"]}),
        );
    }
    if clip.seconds < FAL_MIN_S {
        return err(
            "video_duration_too_short",
            format!("Video duration is too short. Minimum duration is {FAL_MIN_S} seconds."),
            json!({"min_duration": FAL_MIN_S, "provided_duration": clip.seconds}),
        );
    }
    if clip.seconds > FAL_MAX_S {
        return err(
            "video_duration_too_long",
            format!("Video duration is too long. Maximum duration is {FAL_MAX_S} seconds."),
            json!({"max_duration": FAL_MAX_S, "provided_duration": clip.seconds}),
        );
    }
    if clip.width < FAL_MIN_PX || clip.height < FAL_MIN_PX {
        return err(
            "video_too_small",
            format!("Video is too small. Minimum dimensions are {FAL_MIN_PX}x{FAL_MIN_PX}."),
            json!({"min_width": FAL_MIN_PX, "min_height": FAL_MIN_PX, "width": clip.width, "height": clip.height}),
        );
    }
    if clip.width > FAL_MAX_PX || clip.height > FAL_MAX_PX {
        return err(
            "video_too_large",
            format!("Video is too large. Maximum dimensions are {FAL_MAX_PX}x{FAL_MAX_PX}."),
            json!({"max_width": FAL_MAX_PX, "max_height": FAL_MAX_PX, "width": clip.width, "height": clip.height}),
        );
    }
    if clip.fps < FAL_MIN_FPS || clip.fps > FAL_MAX_FPS {
        return err(
            "video_fps_out_of_range",
            format!("Video frame rate must be between {FAL_MIN_FPS} and {FAL_MAX_FPS} FPS."),
            json!({"min_fps": FAL_MIN_FPS, "max_fps": FAL_MAX_FPS, "provided_fps": clip.fps}),
        );
    }
    if clip.bytes > FAL_MAX_BYTES {
        return err(
            "file_too_large",
            format!("File is too large. Maximum size is {FAL_MAX_BYTES} bytes."),
            json!({"max_size": FAL_MAX_BYTES}),
        );
    }
    None
}

/// Oxen's bounds for the O1 edit's input video: 3–10 s, up to 1080p (seed 001).
const OXEN_MIN_S: f64 = 3.0;
const OXEN_MAX_S: f64 = 10.0;
const OXEN_MAX_P: u32 = 1080;

/// The `error_message` Oxen's job fails with (it validates at run time, not at enqueue),
/// or `None`. The wording is the simulator's: Oxen documents none.
pub(crate) fn oxen_refusal(clip: &Clip) -> Option<String> {
    if !(OXEN_MIN_S..=OXEN_MAX_S).contains(&clip.seconds) {
        return Some(format!(
            "input_video duration {:.2}s is outside 3-10s",
            clip.seconds
        ));
    }
    if clip.width.min(clip.height) > OXEN_MAX_P {
        return Some(format!(
            "input_video resolution {}x{} is above 1080p",
            clip.width, clip.height
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(name: &str) -> Clip {
        let path = format!("{}/../tests/assets/{name}", env!("CARGO_MANIFEST_DIR"));
        read(&std::fs::read(path).expect("asset")).expect("readable")
    }

    fn fal_type(name: &str) -> Option<String> {
        fal_refusal(&clip(name), "x").map(|v| v["detail"][0]["type"].as_str().unwrap().to_owned())
    }

    #[test]
    fn fal_holds_the_shipped_clips_to_its_schema() {
        assert_eq!(fal_type("ok.mp4"), None);
        assert_eq!(fal_type("ok.mov"), None);
        assert_eq!(fal_type("audio.mp4"), None);
        assert_eq!(fal_type("fullhd.mp4"), None);
        assert_eq!(
            fal_type("short.mp4").as_deref(),
            Some("video_duration_too_short")
        );
        assert_eq!(fal_type("small.mp4").as_deref(), Some("video_too_small"));
        assert_eq!(
            fal_type("fast.mp4").as_deref(),
            Some("video_fps_out_of_range")
        );
        assert_eq!(fal_type("qhd.mp4").as_deref(), Some("video_too_large"));
        let c = clip("ok.mov");
        assert_eq!((c.container, c.width, c.height), ("mov", 1280, 720));
        assert!((c.seconds - 5.0).abs() < 1e-9 && (c.fps - 30.0).abs() < 1e-9);
    }

    #[test]
    fn oxen_holds_duration_and_1080p() {
        assert_eq!(oxen_refusal(&clip("fullhd.mp4")), None);
        assert!(oxen_refusal(&clip("short.mp4"))
            .unwrap()
            .contains("outside 3-10s"));
        assert!(oxen_refusal(&clip("qhd.mp4"))
            .unwrap()
            .contains("above 1080p"));
    }

    #[test]
    fn garbage_is_no_clip() {
        assert_eq!(
            read(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"),
            None
        );
        assert_eq!(read(b"not a clip"), None);
        assert_eq!(data_uri("data:video/mp4;base64,AAAA"), Some(vec![0, 0, 0]));
    }
}
