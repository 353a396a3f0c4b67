//! What each provider documents about the source clip and reference images it accepts:
//! container, duration, pixel size, frame rate and bytes, per model and tier. Each
//! provider's registry entry names one of these tables; the enqueue-time probe
//! (`batch::probe`) holds a clip to it. A bound that a provider does not document is
//! `None` (or an empty list): not checked, never invented. Sources: docs/providers.md,
//! "Source limits".

/// What a provider's model accepts as its source clip and reference images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Whose documentation the limits are (for messages: `fal's`).
    pub documented_by: &'static str,
    /// Containers accepted (`mp4`, `mov`); empty = not documented.
    pub containers: &'static [&'static str],
    /// Shortest and longest clip, in milliseconds.
    pub min_duration_ms: Option<u32>,
    pub max_duration_ms: Option<u32>,
    /// Smallest and largest width and height, each side, in pixels.
    pub min_side: Option<u32>,
    pub max_side: Option<u32>,
    /// Largest shorter side (`1080p`: the height of a landscape clip, the width of a
    /// portrait one).
    pub max_short_side: Option<u32>,
    /// Lowest and highest frame rate, frames per second.
    pub min_fps: Option<u32>,
    pub max_fps: Option<u32>,
    /// Largest clip, bytes.
    pub max_bytes: Option<u64>,
    /// Reference images (and elements' images).
    pub image: ImageLimits,
}

/// What a provider accepts as a reference image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Formats accepted (`png`, `jpeg`, `webp`, `gif`); empty = not documented.
    pub formats: &'static [&'static str],
    /// Smallest width and height, pixels.
    pub min_side: Option<u32>,
    /// Aspect ratio (width / height) bounds, in thousandths (400 = 0.40).
    pub min_aspect_milli: Option<u32>,
    pub max_aspect_milli: Option<u32>,
    /// Largest image, bytes.
    pub max_bytes: Option<u64>,
}

/// Decimal megabytes, as fal and Kling write them ("200.0MB", "10MB").
const MB: u64 = 1_000_000;

const NO_IMAGE_LIMITS: ImageLimits = ImageLimits {
    formats: &[],
    min_side: None,
    min_aspect_milli: None,
    max_aspect_milli: None,
    max_bytes: None,
};

/// A provider that documents none of these limits: nothing is checked.
pub const UNDOCUMENTED: SourceLimits = SourceLimits {
    documented_by: "",
    containers: &[],
    min_duration_ms: None,
    max_duration_ms: None,
    min_side: None,
    max_side: None,
    max_short_side: None,
    min_fps: None,
    max_fps: None,
    max_bytes: None,
    image: NO_IMAGE_LIMITS,
};

/// fal's Kling O1 video-to-video endpoints (edit and reference, standard and pro): the
/// `video_url` field's schema ("Only .mp4/.mov formats supported … Max file size: 200.0MB,
/// Min width: 720px, Min height: 720px, Max width: 2160px, Max height: 2160px, Min
/// duration: 3.0s, Max duration: 10.05s, Min FPS: 24.0, Max FPS: 60.0"); images: the
/// element and image fields ("Max file size: 10.0MB, Min width: 300px, Min height: 300px,
/// Min aspect ratio: 0.40, Max aspect ratio: 2.50").
pub const FAL: SourceLimits = SourceLimits {
    documented_by: "fal",
    containers: &["mp4", "mov"],
    min_duration_ms: Some(3_000),
    max_duration_ms: Some(10_050),
    min_side: Some(720),
    max_side: Some(2160),
    max_short_side: None,
    min_fps: Some(24),
    max_fps: Some(60),
    max_bytes: Some(200 * MB),
    image: ImageLimits {
        formats: &[],
        min_side: Some(300),
        min_aspect_milli: Some(400),
        max_aspect_milli: Some(2500),
        max_bytes: Some(10 * MB),
    },
};

/// Kling's Omni-Video `video_list` (copy of the official page): "MP4/MOV", at least 3 s
/// and at most 10 s for O1, 720–2160 px, 24–60 fps, at most 200 MB; `image_list`:
/// jpg/jpeg/png, at most 10 MB, at least 300 px, aspect 1:2.5 to 2.5:1.
pub const KLING: SourceLimits = SourceLimits {
    documented_by: "Kling",
    containers: &["mp4", "mov"],
    min_duration_ms: Some(3_000),
    max_duration_ms: Some(10_000),
    min_side: Some(720),
    max_side: Some(2160),
    max_short_side: None,
    min_fps: Some(24),
    max_fps: Some(60),
    max_bytes: Some(200 * MB),
    image: ImageLimits {
        formats: &["png", "jpeg"],
        min_side: Some(300),
        min_aspect_milli: Some(400),
        max_aspect_milli: Some(2500),
        max_bytes: Some(10 * MB),
    },
};

/// Oxen's Kling O1 edit (seed 001 of the research notes, `reference/upstream-apis.md` §8):
/// 3–10 s inputs up to 1080p. Containers, frame rates, bytes and images: not documented.
pub const OXEN: SourceLimits = SourceLimits {
    documented_by: "Oxen",
    min_duration_ms: Some(3_000),
    max_duration_ms: Some(10_000),
    max_short_side: Some(1080),
    ..UNDOCUMENTED
};
