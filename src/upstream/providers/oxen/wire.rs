//! What Oxen's queue reads and answers: the enqueue body (one generation, `keep_audio`
//! always explicit since Oxen defaults it to true), queue rows as poll outcomes, both
//! error envelopes, and error classification.

use crate::model::GenerationRequest;
use crate::upstream::{retry_after, ErrorClass, PollStatus, UpstreamError};
use serde::Deserialize;
use serde_json::{json, Value};

/// Oxen's id of the Kling O1 video-to-video edit model (there is no O1 v2v reference).
pub const EDIT_MODEL: &str = "kling-video-o1-video-to-video-edit";

/// The enqueue answer.
#[derive(Debug, Deserialize)]
pub(super) struct Enqueued {
    #[serde(default)]
    pub(super) generations: Vec<Row>,
}

/// One queue row.
#[derive(Debug, Deserialize)]
pub(super) struct Row {
    pub(super) generation_id: Option<String>,
    pub(super) status: Option<String>,
    pub(super) result_url: Option<String>,
    pub(super) error_message: Option<String>,
}

/// The enqueue body for one generation. `keep_audio` is always explicit.
pub fn request_body(req: &GenerationRequest) -> Value {
    let mut body = json!({
        "model": EDIT_MODEL,
        "prompt": req.prompt,
        "input_video": req.video,
        "keep_audio": req.keep_audio,
        "num_generations": 1,
    });
    if !req.image_list.is_empty() {
        body["input_image"] = json!(req.image_list);
    }
    if !req.elements.is_empty() {
        body["elements"] = json!(req.elements);
    }
    body
}

/// A readable message from either Oxen error envelope
/// (`{error:{type,title,detail}}` or `{error:{message}}`), or the raw text.
pub fn error_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.chars().take(300).collect();
    };
    let err = v.get("error").unwrap_or(&v);
    if let Some(s) = err.as_str() {
        return s.to_owned();
    }
    let field = |k: &str| err.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (field("message"), field("title"), field("detail")) {
        (Some(m), _, _) => m.to_owned(),
        (None, Some(t), Some(d)) if t != d => format!("{t}: {d}"),
        (None, Some(t), _) => t.to_owned(),
        (None, None, Some(d)) => d.to_owned(),
        _ => v.to_string().chars().take(300).collect(),
    }
}

/// Classifies an HTTP error response. Submits are stricter: a 5xx other than 503 may
/// have been accepted behind the gateway, so it is ambiguous.
pub(super) fn classify(status: u16, message: &str, submit: bool) -> ErrorClass {
    if message
        .to_ascii_lowercase()
        .contains("insufficient credits")
    {
        return ErrorClass::Account;
    }
    match status {
        401..=403 => ErrorClass::Account,
        429 => ErrorClass::RATE_LIMITED,
        503 => ErrorClass::Retryable,
        500..=599 if submit => ErrorClass::Ambiguous,
        500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Job,
    }
}

/// An error response, read and classified.
pub(super) async fn http_error(
    secrets: &[&secrecy::SecretString],
    resp: reqwest::Response,
    submit: bool,
    what: &str,
) -> UpstreamError {
    let status = resp.status().as_u16();
    let ra = retry_after(resp.headers());
    let body = crate::upstream::error_body(resp).await;
    let msg = error_message(&body);
    UpstreamError::answer(
        classify(status, &msg, submit).with_retry_after(ra),
        &format!("oxen {what}: HTTP {status}: {msg}"),
        Some(status),
        ra,
        secrets,
    )
}

/// A queue row's `status`, as Oxen documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RowStatus {
    Queued,
    Processing,
    Succeeded,
    Failed,
    Cancelled,
}

/// Maps a queue row to a poll outcome.
pub(super) fn poll_status(row: Row) -> PollStatus {
    let status = row.status.unwrap_or_default();
    match crate::upstream::wire_status::<RowStatus>(&status) {
        Some(RowStatus::Queued | RowStatus::Processing) => PollStatus::Pending { status },
        Some(RowStatus::Succeeded) => match row.result_url.filter(|u| !u.is_empty()) {
            Some(url) => PollStatus::Succeeded { url },
            None => PollStatus::Failed {
                reason: "oxen: succeeded without a result_url".to_owned(),
            },
        },
        Some(RowStatus::Failed) => PollStatus::Failed {
            reason: row
                .error_message
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "oxen: generation failed (no error_message)".to_owned()),
        },
        Some(RowStatus::Cancelled) => PollStatus::Failed {
            reason: "cancelled upstream".to_owned(),
        },
        None => {
            tracing::warn!(
                upstream_status = status.as_str(),
                "Unknown oxen status, still waiting."
            );
            PollStatus::Pending { status }
        }
    }
}
