//! Oxen's own bookkeeping, beside the shared core's generation of the same id: who owns
//! each generation, the params a poll echoes, the timestamps a row reports, and the
//! journal of completion events; plus the queue row built from them.

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use super::{events, MODEL};
use crate::media::output_url;
use crate::state::{Inner, View};

/// Per-protocol state kept inside the simulator's one lock.
#[derive(Debug, Default)]
pub(crate) struct OxenState {
    pub(super) gens: HashMap<String, OxenGen>,
    /// Unsettled generations and the completion events for SSE subscribers.
    pub(super) events: events::Journal,
}

/// What Oxen keeps of one generation beyond the shared core's schedule and fate.
#[derive(Debug, Clone)]
pub(super) struct OxenGen {
    /// The API key (user) it belongs to; other users get 404.
    pub(super) key: String,
    pub(super) prompt: String,
    /// Echoed request params, with Oxen's defaults applied.
    pub(super) echo: Map<String, Value>,
    pub(super) enqueued_at: u64,
    /// Unix seconds when first seen running / terminal.
    pub(super) started_at: Option<u64>,
    pub(super) completed_at: Option<u64>,
    /// A model-parameter error found when the job "runs": the generation fails with it.
    pub(super) late_error: Option<String>,
}

/// A readable message from the core's failure body (`{name,message}` or `{detail:[…]}`).
fn core_message(v: &Value) -> String {
    if let Some(m) = v.get("message").and_then(Value::as_str) {
        return m.to_owned();
    }
    let msgs: Vec<&str> = v
        .get("detail")
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(|i| i.get("msg")?.as_str()).collect())
        .unwrap_or_default();
    if msgs.is_empty() {
        "Generation failed".to_owned()
    } else {
        msgs.join("; ")
    }
}

/// The `error_message` of a failed generation: its late parameter error, else the core's.
pub(super) fn failure_message(g: &OxenGen, body: &Value) -> String {
    g.late_error.clone().unwrap_or_else(|| core_message(body))
}

/// The generation's view now (updating its timestamps and the SSE journal), when it
/// exists and belongs to `key`.
pub(super) fn observe_owned(inner: &mut Inner, id: &str, key: &str) -> Option<(View, OxenGen)> {
    if inner.oxen.gens.get(id).is_none_or(|g| g.key != key) {
        return None;
    }
    let view = events::observe(inner, id, Instant::now(), SystemTime::now())?;
    Some((view, inner.oxen.gens.get(id)?.clone()))
}

/// The queue row as `GET /api/ai/queue/{id}` returns it.
pub(super) fn row(id: &str, view: &View, g: &OxenGen, base: &str) -> Value {
    let (status, result_url, error) = match view {
        View::Queued => ("queued", None, None),
        View::Generating => ("processing", None, None),
        View::Cancelled => ("cancelled", None, None),
        View::Completed { .. } => ("succeeded", Some(output_url(base, id)), None),
        View::Failed(body) => ("failed", None, Some(failure_message(g, body))),
    };
    let mut v = json!({
        "generation_id": id,
        "model_name": MODEL,
        "prompt": g.prompt,
        "media_type": "video",
        "status": status,
        "result_url": result_url,
        "error_message": error,
        "enqueued_at": g.enqueued_at,
        "started_at": g.started_at,
        "completed_at": g.completed_at,
    });
    if let Value::Object(m) = &mut v {
        m.extend(g.echo.clone());
    }
    v
}
