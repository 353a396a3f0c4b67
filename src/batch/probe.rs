//! The enqueue-time probe: what a batch's source clip and reference images are, read
//! from their headers before anything is enqueued, and held to what the batch's provider
//! and model accept (the registry's [`SourceLimits`]), so a clip the provider would
//! refuse is refused once at enqueue, not once per variant minutes later.
//!
//! - a data URI (what a local file becomes): decoded in memory (already capped by
//!   `limits.max_video_bytes`), its top-level boxes walked (`boxes`) and its `moov` read
//!   by `mp4parse` (`mp4`); WebM is not probed (no parser here), but its container is
//!   still held to the provider's list.
//! - an https URL: range requests under the egress policy (`fetch`); a server that
//!   refuses ranges, or cannot be reached, leaves the clip unprobed with a note.
//! - images given as data URIs: format and pixel size from their headers (`imagesize`).
//!
//! A breach is a [`BatchError`] naming the field, the measured value and the limit
//! (`check`); the probe's reading is recorded with the batch ([`SourceProbe`]).
//!
//! Why `mp4parse` (Mozilla's, 0.17): it is what Firefox parses untrusted MP4 with, so it
//! is fuzzed and allocates fallibly (a hostile `stsd` count or `stts` length is an error,
//! not an abort), reads QuickTime's `qt  ` files, and needs no decoder or binary. The
//! `mp4` crate (alfg) was last released in 2023 and sizes its buffers from box headers;
//! `re_mp4` (Rerun's fork of it) is built for demuxing samples, more than a header probe
//! needs.

mod boxes;
mod check;
mod fetch;
mod mp4;
#[cfg(test)]
mod tests;

use super::BatchError;
use crate::config::Settings;
use crate::model::ValidatedBatch;
use crate::upstream::registry::SourceLimits;
use data_url::DataUrl;
use serde::{Deserialize, Serialize};

pub use check::secs as number;

/// What the probe read from a source clip's container headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceProbe {
    /// `mp4` or `mov` (from the `ftyp` major brand).
    pub container: String,
    /// Seconds, from the video track's media duration and timescale.
    pub duration_secs: f64,
    /// Pixels, from the video sample entry (or the track header).
    pub width: u32,
    pub height: u32,
    /// Frames per second: frames in the time-to-sample table over the duration.
    pub fps: f64,
    /// The video codec (`h264`, `av1`, `vp9`, …; `unknown` when the parser names none).
    pub codec: String,
    /// Whether the clip has an audio track.
    pub audio: bool,
    /// The clip's size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl SourceProbe {
    /// `6.5 s, 1280x720, 30 fps, h264, audio` for status lines and the contact sheet.
    pub fn summary(&self) -> String {
        format!(
            "{} s, {}x{}, {} fps, {} {}, {}",
            number(self.duration_secs),
            self.width,
            self.height,
            number(self.fps),
            self.container,
            self.codec,
            if self.audio { "audio" } else { "no audio" }
        )
    }
}

/// What the probe read from a reference image's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageProbe {
    /// `png`, `jpeg`, `webp` or `gif`.
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Why a clip's headers could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Malformed(String),
}

/// Probes the batch's media and holds them to its provider's limits; records the clip's
/// reading in the batch. Returns the notes to show the producer (what was not probed and
/// why). `skip`: nothing is read or checked (`--skip-probe`), and the note says so.
pub async fn preflight(
    batch: &mut ValidatedBatch,
    settings: &Settings,
    source_name: &str,
    skip: bool,
) -> Result<Vec<String>, BatchError> {
    let shared = &batch.shared;
    let err = |field: &str, message: String| BatchError {
        source_name: source_name.to_owned(),
        variant: None,
        field: field.to_owned(),
        message,
    };
    let mut notes = Vec::new();
    if skip {
        notes.push(format!(
            "--skip-probe: the source clip and images were not checked against {}'s limits",
            shared.provider
        ));
        return Ok(notes);
    }
    let table = super::table::limits(shared.provider, shared.model).map_err(|m| err("model", m))?;
    let limits = table.source;
    let model = format!("{} model", shared.model);
    let video = &shared.video;
    let probe = if video.contains("://") {
        let url = url::Url::parse(video).map_err(|e| err("video", e.to_string()))?;
        let egress = crate::egress::Egress::from_settings(settings);
        match fetch::fetch(&egress, &url).await {
            Ok((ftyp, moov, total)) => {
                let mut p = mp4::read(ftyp.as_deref(), &moov).map_err(|e| bad_clip(&err, e))?;
                p.bytes = Some(total);
                Some(p)
            }
            Err(fetch::Remote::Bad(e)) => return Err(bad_clip(&err, e)),
            Err(fetch::Remote::Skip(why)) => {
                notes.push(format!("the source clip was not probed: {why}"));
                None
            }
        }
    } else if let Some(bytes) = decode(video) {
        probe_local(bytes, &limits, &model, &mut notes).map_err(|r| match r {
            Local::Bad(e) => bad_clip(&err, e),
            Local::Refused(r) => err(&r.field, r.message),
        })?
    } else {
        None
    };
    if let Some(p) = &probe {
        check::video(p, &limits, &model).map_err(|r| err(&r.field, r.message))?;
    }
    images(batch, &limits, &err)?;
    batch.shared.source = probe;
    Ok(notes)
}

enum Local {
    Bad(ProbeError),
    Refused(check::Refusal),
}

/// A clip held in memory: WebM only has its container checked; ISO BMFF is read.
fn probe_local(
    bytes: Vec<u8>,
    limits: &SourceLimits,
    model: &str,
    notes: &mut Vec<String>,
) -> Result<Option<SourceProbe>, Local> {
    if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        if !limits.containers.is_empty() && !limits.containers.contains(&"webm") {
            return Err(Local::Refused(check::Refusal {
                field: "video".into(),
                message: format!(
                    "container webm is not accepted by {}'s {model}, which takes {} \
                     (--skip-probe enqueues it unchecked if you know better)",
                    limits.documented_by,
                    limits.containers.join(", ")
                ),
            }));
        }
        notes.push(
            "the source clip is WebM: its duration, size and frame rate were not probed".into(),
        );
        return Ok(None);
    }
    let total = bytes.len() as u64;
    let (ftyp, moov) = match boxes::walk(&boxes::Sparse::whole(bytes), total).map_err(Local::Bad)? {
        boxes::Walk::Found { ftyp, moov } => (ftyp, moov),
        boxes::Walk::Need { start, .. } => {
            return Err(Local::Bad(ProbeError::Malformed(format!(
                "a box header at offset {start} is cut off by the end of the file"
            ))))
        }
    };
    let mut p = mp4::read(ftyp.as_deref(), &moov).map_err(Local::Bad)?;
    p.bytes = Some(total);
    Ok(Some(p))
}

/// Every reference image held as a data URI, read and checked; URLs are not fetched.
fn images(
    batch: &ValidatedBatch,
    limits: &SourceLimits,
    err: &dyn Fn(&str, String) -> BatchError,
) -> Result<(), BatchError> {
    let shared = &batch.shared;
    let l = &limits.image;
    let bounded = !l.formats.is_empty()
        || l.min_side.is_some()
        || l.min_aspect_milli.is_some()
        || l.max_aspect_milli.is_some()
        || l.max_bytes.is_some();
    if !bounded {
        // The provider documents nothing to hold an image to.
        return Ok(());
    }
    let mut named: Vec<(&str, String, &String)> = shared
        .image_list
        .iter()
        .enumerate()
        .map(|(i, s)| ("images", format!("image {}", i + 1), s))
        .collect();
    for (i, e) in shared.elements.iter().enumerate() {
        named.push((
            "elements",
            format!("element {} frontal_image", i + 1),
            &e.frontal_image_url,
        ));
        for (j, r) in e.reference_image_urls.iter().enumerate() {
            named.push((
                "elements",
                format!("element {} reference image {}", i + 1, j + 1),
                r,
            ));
        }
    }
    for (field, which, source) in named {
        let Some(bytes) = decode(source) else {
            continue;
        };
        let p = image(&bytes)
            .ok_or_else(|| err(field, format!("{which}: its header gives no pixel size")))?;
        check::image(&p, &limits.image, limits.documented_by, field, &which)
            .map_err(|r| err(&r.field, r.message))?;
    }
    Ok(())
}

/// An image's format and pixel size from its header.
pub fn image(bytes: &[u8]) -> Option<ImageProbe> {
    let format = match imagesize::image_type(bytes).ok()? {
        imagesize::ImageType::Png => "png",
        imagesize::ImageType::Jpeg => "jpeg",
        imagesize::ImageType::Webp => "webp",
        imagesize::ImageType::Gif => "gif",
        _ => return None,
    };
    let size = imagesize::blob_size(bytes).ok()?;
    Some(ImageProbe {
        format: format.to_owned(),
        width: u32::try_from(size.width).ok()?,
        height: u32::try_from(size.height).ok()?,
        bytes: bytes.len() as u64,
    })
}

/// A data URI's payload (`None` for anything else).
fn decode(source: &str) -> Option<Vec<u8>> {
    if !source.get(..5)?.eq_ignore_ascii_case("data:") {
        return None;
    }
    DataUrl::process(source)
        .ok()?
        .decode_to_vec()
        .ok()
        .map(|(b, _)| b)
}

fn bad_clip(err: &dyn Fn(&str, String) -> BatchError, e: ProbeError) -> BatchError {
    err(
        "video",
        format!(
            "cannot read the clip's MP4/QuickTime metadata: {e} (--skip-probe enqueues it \
             unchecked if you know better)"
        ),
    )
}
