//! The shared vocabulary: providers, models, the validated batch and the job payload.
//! Every other module speaks in these types; none of them knows about Redis or HTTP.

use crate::media::{BatchMedia, Media, MediaElement};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of the job payload and batch spec as stored in Redis. A worker that meets a
/// different version sends the job to the dead set instead of guessing. (`on_done`'s old
/// and new forms are told apart by their type: see [`OnDone`].)
pub const PAYLOAD_VERSION: u32 = 1;

/// A hosted provider of Kling O1 models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    /// AI/ML API (`api.aimlapi.com`).
    Aimlapi,
    /// Oxen.ai inference queue (`hub.oxen.ai/api`); edit model only.
    Oxen,
    /// fal.ai queue (`queue.fal.run`).
    Fal,
    /// Kling's own API (`api-singapore.klingai.com`), JWT-authenticated.
    Kling,
}

impl ProviderName {
    /// Every provider this build speaks, in order of priority: the
    /// [registry](crate::upstream::registry)'s list.
    pub const ALL: &'static [ProviderName] = &crate::upstream::registry::NAMES;

    /// The lowercase name used in settings, CLI flags and records.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Aimlapi => "aimlapi",
            ProviderName::Oxen => "oxen",
            ProviderName::Fal => "fal",
            ProviderName::Kling => "kling",
        }
    }

    /// Parses the name used in settings and CLI flags.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which Kling O1 video-to-video model a batch uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// `video-o1-video-to-video-edit`: restyles the clip; output follows the input's shape.
    Edit,
    /// `video-o1-video-to-video-reference`: uses the clip as reference; takes
    /// `aspect_ratio` and `duration`.
    Reference,
}

impl ModelKind {
    /// Short name used in batch files (`edit`, `reference`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Edit => "edit",
            ModelKind::Reference => "reference",
        }
    }

    /// Accepts the short name or any provider's full model id.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "edit" | "klingai/video-o1-video-to-video-edit" => Some(ModelKind::Edit),
            "reference" | "klingai/video-o1-video-to-video-reference" => Some(ModelKind::Reference),
            _ => None,
        }
    }

    /// The model id on aimlapi.
    pub fn aimlapi_id(self) -> &'static str {
        match self {
            ModelKind::Edit => "klingai/video-o1-video-to-video-edit",
            ModelKind::Reference => "klingai/video-o1-video-to-video-reference",
        }
    }
}

/// A provider's price tier of the same model, chosen per batch (`tier`): fal's
/// `kling-video/o1/standard/…` endpoints beside the pro ones, Kling's `mode` `std`/`pro`.
/// Unset, a batch runs on the provider's default (fal: pro; Kling: `providers.kling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The cheaper tier (fal standard, Kling `std`, 720p output).
    Standard,
    /// The dearer tier (fal's unmarked endpoints, Kling `pro`, 1080p output).
    Pro,
}

impl Tier {
    /// The word in batch files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Pro => "pro",
        }
    }

    /// Reads the word in batch files and flags.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "standard" => Some(Tier::Standard),
            "pro" => Some(Tier::Pro),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a batch's jobs share. Stored once per batch in Redis (the video may be a
/// large data URI, so it is never copied into each job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchShared {
    /// Payload version, [`PAYLOAD_VERSION`] when written by this build.
    pub v: u32,
    /// Stable id: given in the spec, or derived from its content.
    pub batch_id: String,
    pub provider: ProviderName,
    pub model: ModelKind,
    /// An `https://` URL or a `data:video/…;base64,…` URI.
    pub video: String,
    /// Reference images (https or data URIs), at most 4 with a video.
    #[serde(default)]
    pub image_list: Vec<String>,
    /// Always sent explicitly: providers disagree on the default.
    pub keep_audio: bool,
    /// Reference model only: `16:9`, `9:16` or `1:1`.
    #[serde(default)]
    pub aspect_ratio: Option<String>,
    /// Reference model only: seconds (each provider's enum; see `batch`).
    #[serde(default)]
    pub duration: Option<u32>,
    /// Elements: a frontal image plus reference images each (images + elements ≤ 4).
    #[serde(default)]
    pub elements: Vec<Element>,
    /// Length of the source clip in seconds, when known: what an edit's output (and its
    /// cost) follows.
    #[serde(default)]
    pub clip_seconds: Option<f64>,
    /// Budget in USD at enqueue (`restyle budget` changes the live one).
    #[serde(default)]
    pub max_cost: Option<crate::money::Usd>,
    /// Told once each time the batch's last job turns terminal: the hook it names.
    #[serde(default)]
    pub on_done: Option<OnDone>,
    /// The payloads stored beside the spec, by SHA-256: what a `media:<sha256>` source
    /// names (see [`crate::media`]). Empty (and left out) when every source is a URL or
    /// an inline data URI. A worker of an earlier version refuses such a spec (an unknown
    /// field) rather than send a reference upstream.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub media: std::collections::BTreeMap<String, crate::media::StoredMedia>,
    /// The price tier chosen for the batch; `None` (left out): the provider's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// What the enqueue-time probe read from the source clip's container headers; `None`
    /// (left out) when it was not probed (`--skip-probe`, a server without ranges, WebM).
    /// Not part of the batch's digest: the same batch probed again is the same batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::batch::SourceProbe>,
}

/// What a batch's `on_done` says. A batch only names a hook; the workers' settings define
/// what it does (`[hooks.<name>]`: a command or a webhook), so a batch file never chooses
/// a program to run on a worker.
///
/// The two forms differ in their JSON type, so a reader needs no version to tell them
/// apart and [`PAYLOAD_VERSION`] stays 1 (a bump would change every derived batch id):
/// a new spec holds a string, which an older worker cannot parse (it runs nothing); an
/// older spec holds a table, which this worker reads and refuses to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OnDone {
    /// The name of a hook in the settings (serialized as the bare string).
    Hook(String),
    /// A command or webhook stored by a version before named hooks. Never run: the
    /// announcement is dead with the reason.
    Legacy(LegacyOnDone),
}

/// The table form of `on_done` that earlier versions stored (kept only to be refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyOnDone {
    #[serde(default)]
    pub webhook: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
}

impl BatchShared {
    /// A batch with only the required options; the rest take their defaults
    /// (no images or elements, `keep_audio` false, provider defaults, no budget or hook).
    pub fn new(batch_id: &str, provider: ProviderName, model: ModelKind, video: &str) -> Self {
        BatchShared {
            v: PAYLOAD_VERSION,
            batch_id: batch_id.to_string(),
            provider,
            model,
            video: video.to_string(),
            image_list: Vec::new(),
            keep_audio: false,
            aspect_ratio: None,
            duration: None,
            elements: Vec::new(),
            clip_seconds: None,
            max_cost: None,
            on_done: None,
            media: Default::default(),
            tier: None,
            source: None,
        }
    }

    /// Every media source of the spec (the video, images, elements' images), in order.
    pub fn media_sources(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.video).chain(&self.image_list).chain(
            self.elements
                .iter()
                .flat_map(|e| std::iter::once(&e.frontal_image_url).chain(&e.reference_image_urls)),
        )
    }

    /// The same sources, to rewrite them (the producer's stored form).
    pub fn media_sources_mut(&mut self) -> impl Iterator<Item = &mut String> {
        std::iter::once(&mut self.video)
            .chain(&mut self.image_list)
            .chain(self.elements.iter_mut().flat_map(|e| {
                std::iter::once(&mut e.frontal_image_url).chain(&mut e.reference_image_urls)
            }))
    }

    /// Seconds of output one job of this batch produces, when known.
    pub fn output_seconds(&self) -> Option<f64> {
        match self.model {
            ModelKind::Reference => Some(f64::from(self.duration.unwrap_or(5))),
            // The probed length is the real one; `clip_seconds` is the producer's word.
            ModelKind::Edit => self
                .source
                .as_ref()
                .map(|s| s.duration_secs)
                .or(self.clip_seconds),
        }
    }
}

/// A character or object the prompt refers to as `@Element1`…: one frontal image and
/// reference images of it. In a spec each image is a source string; in a request, a
/// [`Media`] handle ([`MediaElement`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Element<M = String> {
    pub frontal_image_url: M,
    #[serde(default = "Vec::new")]
    pub reference_image_urls: Vec<M>,
}

/// A validated batch, ready to enqueue: shared options plus one prompt per variant.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedBatch {
    pub shared: BatchShared,
    /// Variant `i` becomes job [`job_id`]`(batch_id, i)`.
    pub prompts: Vec<String>,
}

/// The per-job payload stored in the job record (`payload` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPayload {
    pub v: u32,
    pub batch_id: String,
    pub index: u32,
    pub prompt: String,
}

pub use crate::job::job_id;

/// What one upstream generation is asked to do: the shared options plus one prompt. The
/// media are shared handles ([`Media`]): a request never copies a payload.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// Our job id, sent where a provider takes a correlation id that it does not
    /// deduplicate on (aimlapi `X-Client-Request-Id`).
    pub job_id: String,
    /// This submit attempt's id ([`crate::job::client_id`]), sent where the provider
    /// deduplicates on it (Kling `external_task_id`) and looked up by after an ambiguous
    /// submit: a retried job never collides with an earlier attempt's task.
    pub client_id: String,
    pub model: ModelKind,
    pub prompt: String,
    pub video: Media,
    pub image_list: Vec<Media>,
    pub keep_audio: bool,
    pub aspect_ratio: Option<String>,
    pub duration: Option<u32>,
    /// Prompts refer to them as `@Element1`…; each provider file translates.
    pub elements: Vec<MediaElement>,
    /// The batch's price tier; `None`: the provider's default.
    pub tier: Option<Tier>,
}

impl GenerationRequest {
    /// The request of one submit attempt (see [`crate::job::client_id`]).
    pub fn for_attempt(&self, submit_id: Option<&str>) -> Self {
        GenerationRequest {
            client_id: crate::job::client_id(&self.job_id, submit_id),
            ..self.clone()
        }
    }

    /// The request for one job of a batch, with every source as the spec writes it.
    pub fn new(shared: &BatchShared, job_id: String, prompt: String) -> Self {
        Self::with_media(shared, &BatchMedia::as_given(shared), job_id, prompt)
    }

    /// The request for one job of a batch whose media a worker resolved.
    pub fn with_media(
        shared: &BatchShared,
        media: &BatchMedia,
        job_id: String,
        prompt: String,
    ) -> Self {
        GenerationRequest {
            client_id: job_id.clone(),
            job_id,
            model: shared.model,
            prompt,
            video: media.video.clone(),
            image_list: media.image_list.clone(),
            keep_audio: shared.keep_audio,
            aspect_ratio: shared.aspect_ratio.clone(),
            duration: shared.duration,
            elements: media.elements.clone(),
            tier: shared.tier,
        }
    }

    /// Every payload the request carries, each once (what its body is assembled from).
    pub fn blobs(&self) -> Vec<&std::sync::Arc<crate::media::Blob>> {
        let elements = self
            .elements
            .iter()
            .flat_map(|e| std::iter::once(&e.frontal_image_url).chain(&e.reference_image_urls));
        crate::media::unique_blobs(
            std::iter::once(&self.video)
                .chain(&self.image_list)
                .chain(elements),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_parse_both_ways() {
        for m in [ModelKind::Edit, ModelKind::Reference] {
            assert_eq!(ModelKind::parse(m.as_str()), Some(m));
            assert_eq!(ModelKind::parse(m.aimlapi_id()), Some(m));
        }
        assert_eq!(ModelKind::parse("klingai/other"), None);
    }
}
