//! A clip's metadata from its `ftyp` and `moov` boxes, read by Mozilla's `mp4parse` (the
//! parser Firefox uses on untrusted media: fallible allocations, fuzzed): the video
//! track's sample-entry (or track-header) size, its media duration and timescale, its
//! frame count from the time-to-sample table, its codec, and whether an audio track
//! exists. Nothing is decoded. Absurd values (a zero timescale, zero frames, durations
//! past a day) are refused as malformed rather than turned into a number.

use super::{ProbeError, SourceProbe};
use mp4parse::{SampleEntry, TrackType};

/// Longest media duration believed (a day); past it the timescale is taken to be wrong.
const MAX_BELIEVED_SECS: f64 = 86_400.0;

/// The metadata of a clip whose `ftyp` (if any) and `moov` boxes these are.
pub fn read(ftyp: Option<&[u8]>, moov: &[u8]) -> Result<SourceProbe, ProbeError> {
    let container = container_of(ftyp);
    let mut bytes = Vec::with_capacity(ftyp.map_or(0, <[u8]>::len) + moov.len());
    bytes.extend_from_slice(ftyp.unwrap_or_default());
    bytes.extend_from_slice(moov);
    let ctx = mp4parse::read_mp4(&mut std::io::Cursor::new(bytes))
        .map_err(|e| ProbeError::Malformed(format!("the moov box does not parse: {e:?}")))?;
    let video = ctx
        .tracks
        .iter()
        .find(|t| t.track_type == TrackType::Video)
        .ok_or_else(|| ProbeError::Malformed("the clip has no video track".into()))?;
    let audio = ctx.tracks.iter().any(|t| t.track_type == TrackType::Audio);
    let entry = video.stsd.as_ref().and_then(|s| {
        s.descriptions.iter().find_map(|d| match d {
            SampleEntry::Video(v) => Some(v),
            _ => None,
        })
    });
    let (width, height) = match (entry, &video.tkhd) {
        (Some(v), _) if v.width > 0 && v.height > 0 => (u32::from(v.width), u32::from(v.height)),
        (_, Some(t)) => (t.width >> 16, t.height >> 16),
        _ => (0, 0),
    };
    if width == 0 || height == 0 {
        return Err(ProbeError::Malformed(
            "the video track gives no width and height".into(),
        ));
    }
    let codec = entry.map_or_else(
        || "unknown".to_owned(),
        |v| format!("{:?}", v.codec_type).to_ascii_lowercase(),
    );
    let timescale = video.timescale.map_or(0, |t| t.0);
    let duration = video.duration.map_or(0, |d| d.0);
    if timescale == 0 {
        return Err(ProbeError::Malformed(
            "the video track's timescale is 0".into(),
        ));
    }
    let duration_secs = duration as f64 / timescale as f64;
    if !(duration_secs > 0.0 && duration_secs <= MAX_BELIEVED_SECS) {
        return Err(ProbeError::Malformed(format!(
            "the video track's duration ({duration} units at {timescale}/s) is not believable"
        )));
    }
    let frames: u64 = video.stts.as_ref().map_or(0, |s| {
        s.samples
            .iter()
            .fold(0u64, |n, e| n.saturating_add(u64::from(e.sample_count)))
    });
    if frames == 0 {
        return Err(ProbeError::Malformed(
            "the video track has no frames (its time-to-sample table is empty)".into(),
        ));
    }
    let fps = frames as f64 / duration_secs;
    Ok(SourceProbe {
        container: container.to_owned(),
        duration_secs: round3(duration_secs),
        width,
        height,
        fps: round3(fps),
        codec,
        audio,
        bytes: None,
    })
}

/// `mov` for a QuickTime file (major brand `qt  `, or no `ftyp` at all), else `mp4`.
fn container_of(ftyp: Option<&[u8]>) -> &'static str {
    match ftyp.and_then(|b| b.get(8..12)) {
        Some(b"qt  ") | None => "mov",
        Some(_) => "mp4",
    }
}

/// Three decimals: what messages and records show, and what limits compare.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
