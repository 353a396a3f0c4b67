//! Holds what the probe measured to what the provider's model accepts
//! ([`SourceLimits`]): each bound that is documented, in a fixed order, the first one
//! broken named with its field, the measured value and the limit.

use super::{ImageProbe, SourceProbe};
use crate::upstream::registry::{ImageLimits, SourceLimits};

/// A bound broken: the field (`video`, `images`) and what to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub message: String,
}

const HINT: &str = "(--skip-probe enqueues it unchecked if you know better)";

/// The first bound of `limits` the clip breaks.
pub fn video(p: &SourceProbe, limits: &SourceLimits, model: &str) -> Result<(), Refusal> {
    let who = format!("{}'s {model}", limits.documented_by);
    let refuse = |what: String| {
        Err(Refusal {
            field: "video".into(),
            message: format!("{what} {HINT}"),
        })
    };
    if !limits.containers.is_empty() && !limits.containers.contains(&p.container.as_str()) {
        return refuse(format!(
            "container {} is not accepted by {who}, which takes {}",
            p.container,
            limits.containers.join(", ")
        ));
    }
    let ms = (p.duration_secs * 1000.0).round();
    if let Some(min) = limits.min_duration_ms.filter(|m| ms < f64::from(*m)) {
        return refuse(format!(
            "duration {} s is below {who} minimum of {} s",
            secs(p.duration_secs),
            secs(f64::from(min) / 1000.0)
        ));
    }
    if let Some(max) = limits.max_duration_ms.filter(|m| ms > f64::from(*m)) {
        return refuse(format!(
            "duration {} s is above {who} maximum of {} s",
            secs(p.duration_secs),
            secs(f64::from(max) / 1000.0)
        ));
    }
    for (side, v) in [("width", p.width), ("height", p.height)] {
        if let Some(min) = limits.min_side.filter(|m| v < *m) {
            return refuse(format!("{side} {v} px is below {who} minimum of {min} px"));
        }
        if let Some(max) = limits.max_side.filter(|m| v > *m) {
            return refuse(format!("{side} {v} px is above {who} maximum of {max} px"));
        }
    }
    let short = p.width.min(p.height);
    if let Some(max) = limits.max_short_side.filter(|m| short > *m) {
        return refuse(format!(
            "resolution {}x{} is above {who} maximum of {max}p (shorter side {short} px)",
            p.width, p.height
        ));
    }
    if let Some(min) = limits.min_fps.filter(|m| p.fps < f64::from(*m)) {
        return refuse(format!(
            "frame rate {} fps is below {who} minimum of {min} fps",
            secs(p.fps)
        ));
    }
    if let Some(max) = limits.max_fps.filter(|m| p.fps > f64::from(*m)) {
        return refuse(format!(
            "frame rate {} fps is above {who} maximum of {max} fps",
            secs(p.fps)
        ));
    }
    if let (Some(max), Some(n)) = (limits.max_bytes, p.bytes) {
        if n > max {
            return refuse(format!(
                "size {n} bytes is above {who} maximum of {max} bytes"
            ));
        }
    }
    Ok(())
}

/// The first bound of `limits` image `which` (`image 2`, `element 1 frontal_image`) breaks.
pub fn image(
    p: &ImageProbe,
    limits: &ImageLimits,
    documented_by: &str,
    field: &str,
    which: &str,
) -> Result<(), Refusal> {
    let refuse = |what: String| {
        Err(Refusal {
            field: field.into(),
            message: format!("{which}: {what} {HINT}"),
        })
    };
    let who = format!("{documented_by}'s");
    if !limits.formats.is_empty() && !limits.formats.contains(&p.format.as_str()) {
        return refuse(format!(
            "format {} is not accepted by {who} model, which takes {}",
            p.format,
            limits.formats.join(", ")
        ));
    }
    for (side, v) in [("width", p.width), ("height", p.height)] {
        if let Some(min) = limits.min_side.filter(|m| v < *m) {
            return refuse(format!("{side} {v} px is below {who} minimum of {min} px"));
        }
    }
    let aspect = u64::from(p.width) * 1000 / u64::from(p.height.max(1));
    if let Some(min) = limits.min_aspect_milli.filter(|m| aspect < u64::from(*m)) {
        return refuse(format!(
            "aspect ratio {} is below {who} minimum of {}",
            ratio(aspect),
            ratio(u64::from(min))
        ));
    }
    if let Some(max) = limits.max_aspect_milli.filter(|m| aspect > u64::from(*m)) {
        return refuse(format!(
            "aspect ratio {} is above {who} maximum of {}",
            ratio(aspect),
            ratio(u64::from(max))
        ));
    }
    if let Some(max) = limits.max_bytes.filter(|m| p.bytes > *m) {
        return refuse(format!(
            "size {} bytes is above {who} maximum of {max} bytes",
            p.bytes
        ));
    }
    Ok(())
}

/// A measured or limit number with up to three decimals, trailing zeros dropped
/// (`3`, `10.05`, `2.5`).
pub fn secs(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

fn ratio(milli: u64) -> String {
    secs(milli as f64 / 1000.0)
}
