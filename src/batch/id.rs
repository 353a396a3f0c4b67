//! Batch ids: the rule a given id must follow, and the id derived from a spec's content
//! when none is given (so the same spec always gets the same id).

use crate::model::{BatchShared, ModelKind, ProviderName};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Longest batch id; leaves room for the `.NNNNN` job suffix in a 128-char client id.
pub const MAX_BATCH_ID_LEN: usize = 64;
/// Hex digits of the content hash in a derived batch id.
const DERIVED_HASH_HEX: usize = 10;

/// Checks a batch id: 1–64 characters from `[A-Za-z0-9_-]`, starting with a letter or
/// digit. Returns the reason when it is not valid.
pub fn validate_batch_id(id: &str) -> Result<(), String> {
    let len = id.chars().count();
    if len == 0 || len > MAX_BATCH_ID_LEN {
        return Err(format!(
            "must be 1–{MAX_BATCH_ID_LEN} characters, got {len}"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "may only contain A-Z, a-z, 0-9, '-' and '_', found {bad:?}"
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or a digit".to_owned());
    }
    Ok(())
}

/// What a derived batch id hashes: every shared option except the id, plus the prompts.
/// Field order is fixed by the struct, so the JSON is canonical. Options added later are
/// left out when unset, so a batch that sets none of them keeps the id it had.
#[derive(Serialize)]
struct IdInput<'a, D: Serialize> {
    v: u32,
    provider: ProviderName,
    model: ModelKind,
    video: &'a str,
    image_list: &'a [String],
    keep_audio: bool,
    aspect_ratio: Option<&'a str>,
    duration: Option<u32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    elements: &'a [crate::model::Element],
    #[serde(skip_serializing_if = "Option::is_none")]
    clip_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_cost: Option<crate::money::Usd>,
    /// The batch's `on_done` as it is stored, whatever its shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    on_done: Option<&'a D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<crate::model::Tier>,
    prompts: &'a [String],
}

/// `<slug>-<first 10 hex digits of sha256(canonical JSON)>`.
pub(super) fn derive_batch_id(slug: &str, shared: &BatchShared, prompts: &[String]) -> String {
    let input = IdInput {
        v: shared.v,
        provider: shared.provider,
        model: shared.model,
        video: &shared.video,
        image_list: &shared.image_list,
        keep_audio: shared.keep_audio,
        aspect_ratio: shared.aspect_ratio.as_deref(),
        duration: shared.duration,
        elements: &shared.elements,
        clip_seconds: shared.clip_seconds,
        max_cost: shared.max_cost,
        on_done: shared.on_done.as_ref(),
        tier: shared.tier,
        prompts,
    };
    let json = serde_json::to_vec(&input).expect("batch options serialize to JSON");
    let digest = hex::encode(Sha256::digest(&json));
    format!("{slug}-{}", &digest[..DERIVED_HASH_HEX])
}

/// The file stem made safe for a batch id: runs of other characters become one `-`, it
/// starts with a letter or digit, and leaves room for the hash suffix. `batch` if empty.
pub(super) fn slug_from_stem(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut slug = String::new();
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let max = MAX_BATCH_ID_LEN - 1 - DERIVED_HASH_HEX;
    let slug: String = slug.chars().take(max).collect();
    let slug = slug.trim_end_matches(['-', '_']);
    if slug.is_empty() {
        "batch".to_owned()
    } else {
        slug.to_owned()
    }
}
