//! Oxen.ai wire mapping: enqueue with `POST {base}/ai/queue` (one generation, `keep_audio`
//! always explicit since Oxen defaults it to true), poll `GET {base}/ai/queue/{id}`
//! (queued/processing/succeeded/failed/cancelled, output at `result_url`, reason in
//! `error_message`), cancel with `DELETE`, and completion events from the SSE stream
//! `GET {base}/events` (`media_generation_completed`). Only the edit model exists on Oxen.

use crate::config::ProviderSettings;
use crate::model::{GenerationRequest, ModelKind, ProviderName};
use crate::upstream::{retry_after, ErrorClass, PollStatus, Upstream, UpstreamError};
use futures::stream::BoxStream;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;

/// Oxen's id of the Kling O1 video-to-video edit model (there is no O1 v2v reference).
pub const EDIT_MODEL: &str = "kling-video-o1-video-to-video-edit";
/// The SSE event type of a finished generation.
pub const COMPLETED_EVENT: &str = "media_generation_completed";
/// Oxen sends `: keep-alive` every 15 s; a stream silent for this long is dead.
const EVENTS_IDLE: Duration = Duration::from_secs(45);

/// Client for one Oxen.ai account.
#[derive(Clone)]
pub struct Oxen {
    http: reqwest::Client,
    /// No total timeout: the event stream stays open (idle is watched instead).
    sse: reqwest::Client,
    /// The API root, e.g. `https://hub.oxen.ai/api`, without a trailing slash.
    base: String,
    key: Option<SecretString>,
}

impl std::fmt::Debug for Oxen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oxen")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Enqueued {
    #[serde(default)]
    generations: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Row {
    generation_id: Option<String>,
    status: Option<String>,
    result_url: Option<String>,
    error_message: Option<String>,
}

impl Oxen {
    pub fn new(p: &ProviderSettings) -> Result<Self, UpstreamError> {
        Ok(Oxen {
            http: crate::upstream::http_client(p, true)?,
            // The SSE stream stays open: no overall request timeout.
            sse: crate::upstream::http_client(p, false)?,
            base: api_root(&p.base_url),
            key: p.api_key.clone(),
        })
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, UpstreamError> {
        match &self.key {
            Some(k) => Ok(rb.bearer_auth(k.expose_secret())),
            None => Err(UpstreamError::new(
                ErrorClass::Account,
                "no API key for oxen: set RESTYLE__PROVIDERS__OXEN__API_KEY or OXEN_API_KEY",
            )),
        }
    }

    fn row_url(&self, id: &str) -> String {
        let mut u = format!("{}/ai/queue/", self.base);
        u.extend(url::form_urlencoded::byte_serialize(id.as_bytes()));
        u
    }
}

/// The API root from the configured base URL. Oxen's is `https://hub.oxen.ai/api`; a base
/// given without a path (`https://hub.oxen.ai`, a simulator root) gets the `/api` prefix.
fn api_root(base: &url::Url) -> String {
    let s = base.as_str().trim_end_matches('/');
    if base.path().trim_matches('/').is_empty() {
        format!("{s}/api")
    } else {
        s.to_owned()
    }
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
fn classify(status: u16, message: &str, submit: bool) -> ErrorClass {
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

async fn http_error(resp: reqwest::Response, submit: bool, what: &str) -> UpstreamError {
    let status = resp.status().as_u16();
    let ra = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let msg = error_message(&body);
    UpstreamError {
        class: classify(status, &msg, submit).with_retry_after(ra),
        message: format!("oxen {what}: HTTP {status}: {msg}"),
        status: Some(status),
        retry_after: ra,
    }
}

/// A queue row's `status`, as Oxen documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum RowStatus {
    Queued,
    Processing,
    Succeeded,
    Failed,
    Cancelled,
}

/// Maps a queue row to a poll outcome.
fn poll_status(row: Row) -> PollStatus {
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

#[async_trait::async_trait]
impl Upstream for Oxen {
    fn name(&self) -> ProviderName {
        ProviderName::Oxen
    }

    async fn submit(&self, req: &GenerationRequest) -> Result<String, UpstreamError> {
        if req.model == ModelKind::Reference {
            return Err(UpstreamError::new(
                ErrorClass::Job,
                "oxen: Kling O1 video-to-video reference is not offered on Oxen.ai \
                 (only the edit model); use another provider",
            ));
        }
        let rb = self
            .http
            .post(format!("{}/ai/queue", self.base))
            .json(&request_body(req));
        let resp =
            self.auth(rb)?.send().await.map_err(|e| {
                crate::upstream::transport_error(ProviderName::Oxen, e, true, "submit")
            })?;
        if !resp.status().is_success() {
            return Err(http_error(resp, true, "submit").await);
        }
        // The enqueue was accepted: a body we cannot read leaves the outcome unknown.
        let q: Enqueued = resp.json().await.map_err(|e| {
            UpstreamError::new(
                ErrorClass::Ambiguous,
                format!("oxen submit: unreadable response: {}", e.without_url()),
            )
        })?;
        match q
            .generations
            .into_iter()
            .next()
            .and_then(|g| g.generation_id)
        {
            Some(id) if !id.is_empty() => Ok(id),
            _ => Err(UpstreamError::new(
                ErrorClass::Ambiguous,
                "oxen submit: response has no generation_id",
            )),
        }
    }

    async fn poll(&self, upstream_id: &str) -> Result<PollStatus, UpstreamError> {
        let rb = self.http.get(self.row_url(upstream_id));
        let resp =
            self.auth(rb)?.send().await.map_err(|e| {
                crate::upstream::transport_error(ProviderName::Oxen, e, false, "poll")
            })?;
        if !resp.status().is_success() {
            return Err(http_error(resp, false, "poll").await);
        }
        let row: Row = resp.json().await.map_err(|e| {
            UpstreamError::new(
                ErrorClass::Retryable,
                format!("oxen poll: unreadable response: {}", e.without_url()),
            )
        })?;
        Ok(poll_status(row))
    }

    /// `DELETE /ai/queue/{id}`: cancels a queued or running generation (a no-op upstream
    /// when it already finished).
    async fn cancel(&self, upstream_id: &str) -> Result<bool, UpstreamError> {
        let rb = self.http.delete(self.row_url(upstream_id));
        let resp = self.auth(rb)?.send().await.map_err(|e| {
            crate::upstream::transport_error(ProviderName::Oxen, e, false, "cancel")
        })?;
        if !resp.status().is_success() {
            return Err(http_error(resp, false, "cancel").await);
        }
        Ok(true)
    }

    fn events(&self) -> Option<BoxStream<'static, String>> {
        let key = self.key.clone()?;
        let url = format!("{}/events", self.base);
        Some(sse_ids(self.sse.clone(), url, key))
    }
}

/// An SSE connection being read.
struct Conn {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    parser: SseParser,
}

/// The generation ids of `media_generation_completed` events, forever: reconnects with
/// backoff (200 ms doubling to 30 s) after an error, a rejection, an idle stream or EOF.
fn sse_ids(http: reqwest::Client, url: String, key: SecretString) -> BoxStream<'static, String> {
    struct St {
        http: reqwest::Client,
        url: String,
        key: SecretString,
        conn: Option<Conn>,
        ready: VecDeque<String>,
        failures: u32,
    }
    let st = St {
        http,
        url,
        key,
        conn: None,
        ready: VecDeque::new(),
        failures: 0,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(id) = st.ready.pop_front() {
                return Some((id, st));
            }
            let Some(conn) = st.conn.as_mut() else {
                if st.failures > 0 {
                    let exp = st.failures.min(8) - 1;
                    let wait =
                        (Duration::from_millis(200) * 2u32.pow(exp)).min(Duration::from_secs(30));
                    tokio::time::sleep(wait).await;
                }
                let attempt = connect(&st.http, &st.url, &st.key);
                match tokio::time::timeout(EVENTS_IDLE, attempt).await {
                    Ok(Ok(conn)) => st.conn = Some(conn),
                    Ok(Err(e)) => {
                        st.failures += 1;
                        tracing::warn!(error = %e, failures = st.failures,
                            "Oxen event stream: could not connect; retrying.");
                    }
                    Err(_) => {
                        st.failures += 1;
                        tracing::warn!(
                            failures = st.failures,
                            "Oxen event stream: no answer to the connect; retrying."
                        );
                    }
                }
                continue;
            };
            match tokio::time::timeout(EVENTS_IDLE, conn.body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    st.failures = 0;
                    for ev in conn.parser.feed(&chunk) {
                        if ev.event == COMPLETED_EVENT {
                            match completed_id(&ev.data) {
                                Some(id) => st.ready.push_back(id),
                                None => tracing::warn!(
                                    "Oxen event stream: completion event without generation_id."
                                ),
                            }
                        }
                    }
                }
                other => {
                    let why = match other {
                        Ok(Some(Err(e))) => format!("read error: {}", e.without_url()),
                        Ok(None) => "closed by the server".to_owned(),
                        _ => format!("silent for {}s", EVENTS_IDLE.as_secs()),
                    };
                    st.failures += 1;
                    st.conn = None;
                    tracing::info!(reason = %why, "Oxen event stream lost; reconnecting.");
                }
            }
        }
    })
    .boxed()
}

async fn connect(http: &reqwest::Client, url: &str, key: &SecretString) -> Result<Conn, String> {
    let resp = http
        .get(url)
        .bearer_auth(key.expose_secret())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", error_message(&body)));
    }
    Ok(Conn {
        body: resp.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed(),
        parser: SseParser::default(),
    })
}

/// The `generation_id` in a completion event's data.
fn completed_id(data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    let id = v.get("generation_id")?.as_str()?;
    (!id.is_empty()).then(|| id.to_owned())
}

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the event had no `event:` line.
    pub event: String,
    pub data: String,
}

/// An incremental `text/event-stream` parser: lines end in LF, CRLF or CR; `:` starts a
/// comment; `data:` lines join with LF; a blank line dispatches.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte fed was a CR (a following LF belongs to it).
    after_cr: bool,
    event: String,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.line_done(&String::from_utf8_lossy(&line)) {
                        out.push(ev);
                    }
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    fn line_done(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take();
            let event = std::mem::take(&mut self.event);
            return data.map(|data| SseEvent {
                event: if event.is_empty() {
                    "message".to_owned()
                } else {
                    event
                },
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_owned(),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Element;

    fn req() -> GenerationRequest {
        GenerationRequest {
            job_id: "b.00001".into(),
            model: ModelKind::Edit,
            prompt: "p @Element1".into(),
            video: "https://x/v.mp4".into(),
            image_list: vec!["https://x/i.png".into()],
            keep_audio: false,
            aspect_ratio: Some("16:9".into()),
            duration: Some(5),
            elements: vec![Element {
                frontal_image_url: "https://x/f.png".into(),
                reference_image_urls: vec!["https://x/r.png".into()],
            }],
        }
    }

    #[test]
    fn body_is_one_edit_generation_with_explicit_audio() {
        let b = request_body(&req());
        assert_eq!(b["model"], json!(EDIT_MODEL));
        assert_eq!(b["keep_audio"], json!(false));
        assert_eq!(b["num_generations"], json!(1));
        assert_eq!(b["input_video"], json!("https://x/v.mp4"));
        assert_eq!(b["input_image"], json!(["https://x/i.png"]));
        assert_eq!(
            b["elements"][0]["reference_image_urls"][0],
            "https://x/r.png"
        );
        assert!(b.get("aspect_ratio").is_none() && b.get("duration").is_none());
        let mut bare = req();
        bare.image_list.clear();
        bare.elements.clear();
        let b = request_body(&bare);
        assert!(b.get("input_image").is_none() && b.get("elements").is_none());
    }

    #[test]
    fn errors_are_classified_where_they_arise() {
        assert_eq!(classify(401, "x", false), ErrorClass::Account);
        assert_eq!(classify(402, "x", true), ErrorClass::Account);
        assert_eq!(
            classify(400, "Insufficient credits", true),
            ErrorClass::Account
        );
        assert_eq!(classify(429, "x", true), ErrorClass::RATE_LIMITED);
        assert_eq!(classify(503, "x", true), ErrorClass::Retryable);
        assert_eq!(classify(500, "x", true), ErrorClass::Ambiguous);
        assert_eq!(classify(504, "x", true), ErrorClass::Ambiguous);
        assert_eq!(classify(502, "x", false), ErrorClass::Retryable);
        for s in [400, 404, 422] {
            assert_eq!(classify(s, "x", true), ErrorClass::Job);
        }
    }

    #[test]
    fn both_error_envelopes_are_read() {
        let typed = r#"{"error":{"type":"invalid_params","title":"Invalid params",
            "detail":"num_generations must be an integer between 1 and 4"},
            "status":"error","status_message":"invalid_params"}"#;
        assert_eq!(
            error_message(typed),
            "Invalid params: num_generations must be an integer between 1 and 4"
        );
        let short = r#"{"error":{"message":"Model not found: bad-model-name"}}"#;
        assert_eq!(error_message(short), "Model not found: bad-model-name");
        assert_eq!(error_message("Bad Gateway"), "Bad Gateway");
    }

    #[test]
    fn statuses_map_to_outcomes() {
        // Rows as they come off the wire.
        let r = |status: RowStatus, url: Option<&str>, err: Option<&str>| -> Row {
            serde_json::from_value(serde_json::json!({
                "generation_id": "g",
                "status": status,
                "result_url": url,
                "error_message": err,
            }))
            .unwrap()
        };
        assert!(matches!(
            poll_status(r(RowStatus::Queued, None, None)),
            PollStatus::Pending { .. }
        ));
        assert!(matches!(
            poll_status(r(RowStatus::Processing, None, None)),
            PollStatus::Pending { .. }
        ));
        assert_eq!(
            poll_status(r(RowStatus::Succeeded, Some("https://o/v.mp4"), None)),
            PollStatus::Succeeded {
                url: "https://o/v.mp4".into()
            }
        );
        assert_eq!(
            poll_status(r(RowStatus::Failed, None, Some("Insufficient credits"))),
            PollStatus::Failed {
                reason: "Insufficient credits".into()
            }
        );
        assert_eq!(
            poll_status(r(RowStatus::Cancelled, None, None)),
            PollStatus::Failed {
                reason: "cancelled upstream".into()
            }
        );
    }

    #[test]
    fn sse_parser_handles_split_chunks_comments_and_line_endings() {
        let mut p = SseParser::default();
        let mut got = p.feed(b": keep-alive\n\nevent: media_generation_com");
        assert!(got.is_empty());
        got.extend(p.feed(b"pleted\r\ndata: {\"generation_id\":\"a\"}\r"));
        got.extend(p.feed(b"\n\r\ndata: one\ndata:two\n\nevent: other\rdata: x\r\r"));
        assert_eq!(
            got,
            vec![
                SseEvent {
                    event: COMPLETED_EVENT.into(),
                    data: r#"{"generation_id":"a"}"#.into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "one\ntwo".into()
                },
                SseEvent {
                    event: "other".into(),
                    data: "x".into()
                },
            ]
        );
        assert_eq!(completed_id(&got[0].data).as_deref(), Some("a"));
    }

    #[test]
    fn base_without_a_path_gets_the_api_prefix() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            api_root(&u("https://hub.oxen.ai/api")),
            "https://hub.oxen.ai/api"
        );
        assert_eq!(
            api_root(&u("https://hub.oxen.ai/api/")),
            "https://hub.oxen.ai/api"
        );
        assert_eq!(api_root(&u("http://127.0.0.1:9")), "http://127.0.0.1:9/api");
    }
}

/// Oxen's [registry](crate::upstream::registry) entry: a bearer key, the edit model only.
#[allow(clippy::items_after_test_module)] // each provider file ends with its entry
pub const PROVIDER: crate::upstream::registry::Provider = crate::upstream::registry::Provider {
    name: ProviderName::Oxen,
    credentials: crate::upstream::registry::Credentials::Bearer {
        env: "OXEN_API_KEY",
    },
    models: crate::upstream::registry::Models {
        edit: Ok(crate::upstream::registry::ModelLimits {
            max_element_refs: 3,
            ..crate::upstream::registry::ModelLimits::BASE
        }),
        reference: Err("Oxen offers no Kling O1 video-to-video reference model \
                        (only kling-video-o1-video-to-video-edit); use another provider"),
    },
    build: |p| crate::upstream::registry::boxed(Oxen::new(p)),
};
