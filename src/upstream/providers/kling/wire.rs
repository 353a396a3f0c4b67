//! What Kling's Omni-Video endpoints read and answer: the prompt's reference syntax, the
//! task body (`external_task_id` = our job id, `mode` always explicit, images as a URL or
//! raw Base64), and a task's `data` as a poll outcome.

use crate::config::KlingMode;
use crate::model::{GenerationRequest, ModelKind};
use crate::upstream::{ErrorClass, PollStatus, UpstreamError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};
use std::borrow::Cow;

pub(super) const MODEL_NAME: &str = "kling-video-o1";

/// Rewrites the batch spec's `@Image1`, `@Element2`, `@Video1` (any case) into Kling's
/// `<<<image_1>>>`, `<<<element_2>>>`, `<<<video_1>>>`. Anything else is left as written.
pub fn translate_prompt(prompt: &str) -> String {
    let mut out = String::with_capacity(prompt.len() + 16);
    let mut rest = prompt;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match reference_at(after) {
            Some((kind, n, used)) => {
                out.push_str(&format!("<<<{kind}_{n}>>>"));
                rest = &after[used..];
            }
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A reference word, its number and the bytes it spans, at the start of `s`.
fn reference_at(s: &str) -> Option<(&'static str, u32, usize)> {
    ["image", "element", "video"].into_iter().find_map(|kind| {
        let word = s.get(..kind.len())?;
        if !word.eq_ignore_ascii_case(kind) {
            return None;
        }
        let digits = s[kind.len()..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let end = kind.len() + digits;
        let n: u32 = s[kind.len()..end].parse().ok()?;
        let glued = s[end..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        (!glued).then_some((kind, n, end))
    })
}

/// An `image_url` as Kling takes it: a URL or raw Base64 as given, a `data:` URI (what a
/// local file becomes, `src/batch/media.rs`) as its payload in canonical Base64. Kling:
/// "do not add any prefixes to the Base64-encoded string, such as data:image/png;base64"
/// (General Information, image fields; known through a copy, docs/providers.md).
fn image_field(image: &str, at: usize) -> Result<Cow<'_, str>, UpstreamError> {
    if !image
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("data:"))
    {
        return Ok(Cow::Borrowed(image));
    }
    let bytes = data_url::DataUrl::process(image)
        .ok()
        .and_then(|d| d.decode_to_vec().ok())
        .map(|(bytes, _)| bytes)
        .ok_or_else(|| {
            UpstreamError::new(
                ErrorClass::Job,
                format!("kling: image_list[{at}] is a data: URI that cannot be decoded"),
            )
        })?;
    Ok(Cow::Owned(BASE64.encode(bytes)))
}

/// The JSON body for one task, created in `mode`. Kling's element library takes
/// registered ids only, so a request with inline elements is refused before anything is
/// sent.
pub fn request_body(req: &GenerationRequest, mode: KlingMode) -> Result<Value, UpstreamError> {
    if !req.elements.is_empty() {
        return Err(UpstreamError::new(
            ErrorClass::Job,
            "Kling needs pre-registered element ids; inline elements are not supported",
        ));
    }
    let refer_type = match req.model {
        ModelKind::Edit => "base",
        ModelKind::Reference => "feature",
    };
    let mut body = json!({
        "model_name": MODEL_NAME,
        "prompt": translate_prompt(&req.prompt),
        "video_list": [{
            "video_url": req.video,
            "refer_type": refer_type,
            "keep_original_sound": if req.keep_audio { "yes" } else { "no" },
        }],
        // Generated sound must be off with a video; the clip's own is `keep_original_sound`.
        "sound": "off",
        // Always explicit: Kling's default is `pro` (1080p, dearer).
        "mode": mode.as_str(),
        "external_task_id": req.client_id,
    });
    if !req.image_list.is_empty() {
        let images = req
            .image_list
            .iter()
            .enumerate()
            .map(|(i, m)| match m.as_url() {
                // A URL as written; a data: URI an older spec holds, as raw Base64.
                Some(u) => Ok(json!({ "image_url": image_field(u, i)? })),
                // A stored payload: its raw Base64, spliced in when the body is assembled.
                None => Ok(json!({ "image_url": m.raw_base64() })),
            })
            .collect::<Result<Vec<Value>, UpstreamError>>()?;
        body["image_list"] = json!(images);
    }
    if req.model == ModelKind::Reference {
        // Required for a `feature` video; Kling documents no default (ASSUMPTION: 16:9).
        body["aspect_ratio"] = json!(req.aspect_ratio.as_deref().unwrap_or("16:9"));
        if let Some(d) = req.duration {
            body["duration"] = json!(d.to_string());
        }
    }
    Ok(body)
}

/// A task's `task_status`, as Kling documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum TaskStatus {
    Submitted,
    Processing,
    Succeed,
    Failed,
}

/// A queried task's `data` as a poll outcome: the output at
/// `task_result.videos[0].url`, the reason in `task_status_msg`.
pub(super) fn poll_status(data: &Value) -> PollStatus {
    let status = data
        .get("task_status")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match crate::upstream::wire_status::<TaskStatus>(&status) {
        Some(TaskStatus::Succeed) => match data
            .pointer("/task_result/videos/0/url")
            .and_then(Value::as_str)
        {
            Some(url) => PollStatus::Succeeded {
                url: url.to_string(),
            },
            None => PollStatus::Failed {
                reason: "kling: task succeeded without task_result.videos[0].url".into(),
            },
        },
        Some(TaskStatus::Failed) => PollStatus::Failed {
            reason: match data.get("task_status_msg").and_then(Value::as_str) {
                Some(m) if !m.is_empty() => format!("kling: {m}"),
                _ => "kling: task failed without a reason".to_string(),
            },
        },
        Some(TaskStatus::Submitted | TaskStatus::Processing) => PollStatus::Pending { status },
        None => {
            tracing::warn!(
                upstream_status = status.as_str(),
                "Unknown kling task status, still waiting."
            );
            PollStatus::Pending { status }
        }
    }
}
