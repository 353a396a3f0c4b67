//! Batch specs: a TOML file or CLI flags in, a [`ValidatedBatch`] out. Owns the public
//! entry points, the error type and the shared-option rules; the TOML front end is
//! `spec.rs`, prompts `prompts.rs`, media sources `media.rs`, batch ids `id.rs` and the
//! per-provider limits `table.rs`. Batch files, prompt files and flags come from
//! producers and are untrusted: local files are read by `local.rs` (regular files, size
//! caps from [`BatchLimits`], inside the batch file's directory), media content is
//! sniffed by `sniff.rs`, and `text.rs` says which characters text may not hold.

mod id;
mod limits;
mod local;
mod media;
pub mod probe;
mod prompts;
mod sniff;
mod spec;
pub mod table;
#[cfg(test)]
mod tests;
mod text;

pub use id::{validate_batch_id, MAX_BATCH_ID_LEN};
pub use limits::BatchLimits;
pub use probe::{ImageProbe, SourceProbe};

use crate::model::{BatchShared, ModelKind, ProviderName, ValidatedBatch, PAYLOAD_VERSION};
use id::{derive_batch_id, slug_from_stem};
use std::path::{Path, PathBuf};

/// Most variants (prompts) in one batch.
pub const MAX_VARIANTS: usize = 10_000;

const DEFAULT_PROVIDER: &str = "aimlapi";
const DEFAULT_MODEL: &str = "edit";

/// The same batch as a TOML file, given through CLI flags. Relative paths are resolved
/// against the current directory.
#[derive(Debug, Clone, Default)]
pub struct BatchFlags {
    pub batch_id: Option<String>,
    /// An https URL, a `data:video/…;base64,…` URI, or a local path.
    pub video: Option<String>,
    pub prompts: Vec<String>,
    pub prompts_file: Option<PathBuf>,
    /// Default `aimlapi`.
    pub provider: Option<String>,
    /// Default `edit`.
    pub model: Option<String>,
    pub images: Vec<String>,
    /// Default `false`.
    pub keep_audio: Option<bool>,
    pub aspect_ratio: Option<String>,
    pub duration: Option<u32>,
    /// Budget in USD: no submission that would pass it.
    pub max_cost: Option<f64>,
    /// Source clip length in seconds (for the cost of edits).
    pub clip_seconds: Option<f64>,
    /// The hook (defined in settings) told once when the batch finishes.
    pub on_done: Option<String>,
    /// `standard` or `pro`, where the provider sells both.
    pub tier: Option<String>,
}

/// Why a batch spec was rejected: where, which variant (1-based, in final prompt order),
/// which field, and what rule it broke.
///
/// Renders as `jobs/x.toml: variant 3: prompt: must be 1–2500 characters, got 2612`.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {}{}{message}", variant_prefix(.variant), field_prefix(.field))]
pub struct BatchError {
    /// The batch file's path, or `command line`.
    pub source_name: String,
    /// 1-based position of the variant in the batch's prompt list, when one is at fault.
    pub variant: Option<usize>,
    /// The key (or flag) at fault; empty when the whole file is.
    pub field: String,
    pub message: String,
}

fn variant_prefix(variant: &Option<usize>) -> String {
    variant
        .map(|n| format!("variant {n}: "))
        .unwrap_or_default()
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// Where a spec came from: names errors and anchors relative paths.
#[derive(Debug)]
struct Origin {
    source_name: String,
    /// Directory relative paths are resolved against (empty = current directory).
    base_dir: PathBuf,
    /// Where the local files it names may be.
    place: local::Place,
    /// Readable prefix of a derived batch id.
    slug: String,
}

impl Origin {
    fn err(&self, field: &str, message: impl Into<String>) -> BatchError {
        BatchError {
            source_name: self.source_name.clone(),
            variant: None,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn variant_err(&self, variant: usize, field: &str, message: impl Into<String>) -> BatchError {
        BatchError {
            variant: Some(variant),
            ..self.err(field, message)
        }
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// A spec as written, before any rule is applied. Both front ends produce one.
#[derive(Debug, Default)]
struct RawSpec {
    batch_id: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    video: Option<String>,
    images: Vec<String>,
    keep_audio: Option<bool>,
    aspect_ratio: Option<String>,
    duration: Option<i64>,
    prompts_file: Option<PathBuf>,
    /// Inline prompts (`[[variants]]` or `--prompt`), before the prompts file's.
    prompts: Vec<String>,
    elements: Vec<RawElement>,
    max_cost: Option<f64>,
    clip_seconds: Option<f64>,
    /// The name of a hook the settings define.
    on_done: Option<String>,
    tier: Option<String>,
}

/// An `[[elements]]` entry as written.
#[derive(Debug, Default)]
struct RawElement {
    frontal_image: String,
    reference_images: Vec<String>,
}

/// Loads and validates a TOML batch file. Relative paths inside it (video, images,
/// prompts file) are resolved against the file's directory, and every local file it
/// names must be inside that directory once symlinks are resolved.
///
/// The file format is documented at the top of `jobs/spring-campaign.toml`. Rules:
///
/// - the batch file and its prompts file are regular UTF-8 files of at most
///   `limits.max_batch_file_bytes` and `limits.max_prompt_file_bytes`.
/// - `provider` known ([`ProviderName::parse`], default `aimlapi`); `model` is `edit`
///   (default) or `reference`, or a full model id.
/// - the provider offers the model, and `aspect_ratio`, `duration`, `images` and
///   `elements` are within what that provider's model takes ([`table`]).
/// - `video` is required: an https URL, a `data:video/…;base64,…` URI or a local
///   .mp4/.mov/.webm file (sent as a data URI); `images` at most 4. Content is sniffed:
///   MP4/QuickTime or WebM/Matroska video, PNG/JPEG/WebP/GIF images. No control
///   character in any source, no whitespace in a URL or data URI.
/// - prompts: inline `[[variants]]` first, then `prompts_file`; 1 to 10 000 of them, each
///   1 to 2500 characters after trimming, with no control character but tab and line
///   breaks and no bidi control; a CSV's quotes balanced.
/// - `batch_id` given and valid, or derived from the content (so the same spec always
///   gets the same id and enqueueing it twice creates nothing new).
pub fn load_file(path: &Path, limits: &BatchLimits) -> Result<ValidatedBatch, BatchError> {
    let mut origin = Origin {
        source_name: path.display().to_string(),
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        place: local::Place::CommandLine,
        slug: slug_from_stem(path),
    };
    let cap = local::Cap {
        bytes: limits.max_batch_file_bytes,
        setting: "limits.max_batch_file_bytes",
    };
    let bytes = local::read(path, &local::Place::CommandLine, cap).map_err(|e| match e {
        local::ReadError::Open { source, .. } => {
            origin.err("", format!("cannot read the batch file: {source}"))
        }
        other => origin.err("", other.to_string()),
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|e| origin.err("", format!("not UTF-8 text: {}", e.utf8_error())))?;
    let dir = local::batch_dir(path).map_err(|e| origin.err("", e.to_string()))?;
    origin.place = local::Place::Within(dir);
    let raw = spec::parse(&text, &origin)?;
    build(raw, &origin, limits)
}

/// Validates a batch given through CLI flags (same rules as a batch file).
pub fn from_flags(flags: &BatchFlags, limits: &BatchLimits) -> Result<ValidatedBatch, BatchError> {
    let origin = Origin {
        source_name: "command line".to_owned(),
        base_dir: PathBuf::new(),
        place: local::Place::CommandLine,
        slug: "batch".to_owned(),
    };
    let raw = RawSpec {
        batch_id: flags.batch_id.clone(),
        provider: flags.provider.clone(),
        model: flags.model.clone(),
        video: flags.video.clone(),
        images: flags.images.clone(),
        keep_audio: flags.keep_audio,
        aspect_ratio: flags.aspect_ratio.clone(),
        duration: flags.duration.map(i64::from),
        prompts_file: flags.prompts_file.clone(),
        prompts: flags.prompts.clone(),
        elements: Vec::new(),
        max_cost: flags.max_cost,
        clip_seconds: flags.clip_seconds,
        on_done: flags.on_done.clone(),
        tier: flags.tier.clone(),
    };
    build(raw, &origin, limits)
}

/// Applies every rule to a raw spec and assembles the validated batch.
fn build(
    raw: RawSpec,
    origin: &Origin,
    limits: &BatchLimits,
) -> Result<ValidatedBatch, BatchError> {
    if let Some(id) = &raw.batch_id {
        validate_batch_id(id).map_err(|m| origin.err("batch_id", m))?;
    }

    let provider_name = raw.provider.as_deref().unwrap_or(DEFAULT_PROVIDER);
    let provider = ProviderName::parse(provider_name).ok_or_else(|| {
        let known: Vec<&str> = ProviderName::ALL.iter().map(|p| p.as_str()).collect();
        origin.err(
            "provider",
            format!(
                "unknown provider {provider_name:?}; known providers: {}",
                known.join(", ")
            ),
        )
    })?;

    let model_name = raw.model.as_deref().unwrap_or(DEFAULT_MODEL);
    let model = ModelKind::parse(model_name).ok_or_else(|| {
        origin.err(
            "model",
            format!(
                "unknown model {model_name:?}; expected edit, reference, {} or {}",
                ModelKind::Edit.aimlapi_id(),
                ModelKind::Reference.aimlapi_id()
            ),
        )
    })?;

    let table = table::limits(provider, model).map_err(|m| origin.err("model", m))?;
    let aspect_ratio = check_aspect_ratio(raw.aspect_ratio, model, &table, origin)?;
    let duration = check_duration(raw.duration, model, &table, origin)?;
    let tier = table::check_tier(raw.tier.as_deref(), provider, &table)
        .map_err(|m| origin.err("tier", m))?;

    let prompts = prompts::collect(raw.prompts, raw.prompts_file.as_deref(), origin, limits)?;

    let video = raw.video.ok_or_else(|| {
        origin.err(
            "video",
            "required: an https URL, a data:video URI or a local file",
        )
    })?;
    // With a store, a local file (or data URI) is uploaded there and sent by URL.
    if !table.inline_video && !media::is_url(&video) && !limits.store_uploads {
        // Refused before anything is read.
        return Err(origin.err("video", url_only(provider, model)));
    }
    let video = media::resolve(&video, media::Kind::Video, origin, limits)
        .map_err(|m| origin.err("video", m))?;

    if raw.images.len() > table.max_refs {
        return Err(origin.err(
            "images",
            format!(
                "at most {} images are accepted with a video, got {}",
                table.max_refs,
                raw.images.len()
            ),
        ));
    }
    if raw.images.len() + raw.elements.len() > table.max_refs {
        return Err(origin.err(
            "elements",
            format!(
                "images + elements must be at most {} with a video, got {} + {}",
                table.max_refs,
                raw.images.len(),
                raw.elements.len()
            ),
        ));
    }
    if !raw.elements.is_empty() && !table.inline_elements {
        return Err(origin.err(
            "elements",
            format!("{provider} takes only pre-registered element ids, not inline elements"),
        ));
    }
    let image_list = raw
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            media::resolve(image, media::Kind::Image, origin, limits)
                .map_err(|m| origin.err("images", format!("image {}: {m}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let elements = raw
        .elements
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let n = i + 1;
            let field = |m: String| origin.err("elements", format!("element {n}: {m}"));
            if e.reference_images.is_empty() || e.reference_images.len() > table.max_element_refs {
                return Err(field(format!(
                    "needs 1–{} reference images, got {}",
                    table.max_element_refs,
                    e.reference_images.len()
                )));
            }
            let frontal = media::resolve(&e.frontal_image, media::Kind::Image, origin, limits)
                .map_err(|m| field(format!("frontal_image: {m}")))?;
            let refs = e
                .reference_images
                .iter()
                .map(|r| media::resolve(r, media::Kind::Image, origin, limits))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| field(format!("reference_images: {m}")))?;
            Ok(crate::model::Element {
                frontal_image_url: frontal,
                reference_image_urls: refs,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    for (field, v) in [
        ("max_cost", raw.max_cost),
        ("clip_seconds", raw.clip_seconds),
    ] {
        if v.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
            return Err(origin.err(field, "must be a number ≥ 0"));
        }
    }
    let on_done = match raw.on_done {
        Some(name) => Some(check_on_done(name, limits, origin)?),
        None => None,
    };

    let mut shared = BatchShared {
        v: PAYLOAD_VERSION,
        batch_id: String::new(),
        provider,
        model,
        video,
        image_list,
        keep_audio: raw.keep_audio.unwrap_or(false),
        aspect_ratio,
        duration,
        elements,
        clip_seconds: raw.clip_seconds,
        max_cost: raw.max_cost.and_then(crate::money::Usd::from_f64),
        on_done,
        media: Default::default(),
        tier,
        source: None,
    };
    shared.batch_id = match raw.batch_id {
        Some(id) => id,
        None => derive_batch_id(&origin.slug, &shared, &prompts),
    };
    Ok(ValidatedBatch { shared, prompts })
}

/// Why a local file or data URI is no video for `provider`, and what to give instead.
fn url_only(provider: ProviderName, model: ModelKind) -> String {
    let takers: Vec<&str> = ProviderName::ALL
        .iter()
        .filter(|p| table::limits(**p, model).is_ok_and(|l| l.inline_video))
        .map(|p| p.as_str())
        .collect();
    format!(
        "{provider} takes the video by https URL only, not a local file or data URI: upload \
         the clip somewhere and give its https URL, or use a provider that accepts uploads \
         ({})",
        takers.join(", ")
    )
}

/// `on_done` names a hook the enqueuer's settings define (producers and workers share
/// settings); the worker looks the name up again in its own.
fn check_on_done(
    name: String,
    limits: &BatchLimits,
    origin: &Origin,
) -> Result<crate::model::OnDone, BatchError> {
    if limits.hooks.contains(&name) {
        return Ok(crate::model::OnDone::Hook(name));
    }
    let defined = if limits.hooks.is_empty() {
        "the settings define none; hooks are defined in the workers' settings as \
         [hooks.<name>] (docs/operations.md, Hooks)"
            .to_owned()
    } else {
        format!("defined hooks: {}", limits.hooks.join(", "))
    };
    Err(origin.err(
        "on_done",
        format!("no hook named {name:?} in the settings; {defined}"),
    ))
}

fn check_aspect_ratio(
    value: Option<String>,
    model: ModelKind,
    table: &table::ModelLimits,
    origin: &Origin,
) -> Result<Option<String>, BatchError> {
    let Some(value) = value else { return Ok(None) };
    if table.aspect_ratios.is_empty() {
        return Err(origin.err(
            "aspect_ratio",
            format!("not accepted by the {model} model (the output follows the input clip)"),
        ));
    }
    if !table.aspect_ratios.contains(&value.as_str()) {
        return Err(origin.err(
            "aspect_ratio",
            format!(
                "must be one of {}, got {value:?}",
                table.aspect_ratios.join(", ")
            ),
        ));
    }
    Ok(Some(value))
}

fn check_duration(
    value: Option<i64>,
    model: ModelKind,
    table: &table::ModelLimits,
    origin: &Origin,
) -> Result<Option<u32>, BatchError> {
    let Some(value) = value else { return Ok(None) };
    if table.durations.is_empty() {
        return Err(origin.err(
            "duration",
            format!("not accepted by the {model} model (the output follows the input clip)"),
        ));
    }
    match u32::try_from(value) {
        Ok(secs) if table.durations.contains(&secs) => Ok(Some(secs)),
        _ => {
            let allowed: Vec<String> = table.durations.iter().map(u32::to_string).collect();
            Err(origin.err(
                "duration",
                format!(
                    "must be one of {} (seconds, an integer), got {value}",
                    allowed.join(", ")
                ),
            ))
        }
    }
}
