//! Oxen's completion events: the SSE stream `GET {api}/events`, parsed by
//! `eventsource-stream`, read for the `generation_id` of `media_generation_completed`
//! events. This file owns the connection's life: reconnects with backoff, a watchdog on
//! silence (Oxen's `: keep-alive` comments count as life), and the ids it yields.

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::stream::BoxStream;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The SSE event type of a finished generation.
pub const COMPLETED_EVENT: &str = "media_generation_completed";
/// Oxen sends `: keep-alive` every 15 s; a stream silent for this long is dead.
const EVENTS_IDLE: Duration = Duration::from_secs(45);
/// Reconnect backoff: 200 ms, doubling up to 30 s.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a connection's bytes stopped.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("read error: {0}")]
    Read(String),
    #[error("silent for {}s", EVENTS_IDLE.as_secs())]
    Silent,
}

/// One open event stream.
struct Conn {
    events: BoxStream<'static, Result<Event, EventStreamError<Lost>>>,
    /// Set when any bytes arrived (keep-alives included): the connection worked, so the
    /// backoff starts over when it is lost.
    heard: Arc<AtomicBool>,
}

/// The generation ids of `media_generation_completed` events, forever: reconnects with
/// backoff (200 ms doubling to 30 s) after an error, a rejection, an idle stream or EOF.
pub(super) fn completed_ids(
    http: reqwest::Client,
    url: url::Url,
    key: SecretString,
) -> BoxStream<'static, String> {
    struct St {
        http: reqwest::Client,
        url: url::Url,
        key: SecretString,
        conn: Option<Conn>,
        failures: u32,
    }
    let st = St {
        http,
        url,
        key,
        conn: None,
        failures: 0,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            let Some(conn) = st.conn.as_mut() else {
                if st.failures > 0 {
                    tokio::time::sleep(backoff(st.failures)).await;
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
            let why = match conn.events.next().await {
                Some(Ok(ev)) => {
                    if ev.event == COMPLETED_EVENT {
                        match completed_id(&ev.data) {
                            Some(id) => return Some((id, st)),
                            None => tracing::warn!(
                                "Oxen event stream: completion event without generation_id."
                            ),
                        }
                    }
                    continue;
                }
                Some(Err(EventStreamError::Transport(lost))) => lost.to_string(),
                Some(Err(e)) => format!("unreadable stream: {e}"),
                None => "closed by the server".to_owned(),
            };
            if conn.heard.load(Ordering::Relaxed) {
                st.failures = 0;
            }
            st.failures += 1;
            st.conn = None;
            tracing::info!(reason = %why, "Oxen event stream lost; reconnecting.");
        }
    })
    .boxed()
}

/// The wait before the next connect after `failures` failures in a row.
fn backoff(failures: u32) -> Duration {
    let exp = failures.clamp(1, 8) - 1;
    (BACKOFF_FIRST * 2u32.pow(exp)).min(BACKOFF_MAX)
}

/// Opens the stream; a refusal is an error with Oxen's message.
async fn connect(
    http: &reqwest::Client,
    url: &url::Url,
    key: &SecretString,
) -> Result<Conn, String> {
    let resp = http
        .get(url.clone())
        .bearer_auth(key.expose_secret())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let body = crate::upstream::error_body(resp).await;
        let msg = format!("HTTP {status}: {}", super::error_message(&body));
        return Err(crate::upstream::sanitize(&msg, &[key]));
    }
    let heard = Arc::new(AtomicBool::new(false));
    let events = watched(resp.bytes_stream(), heard.clone())
        .eventsource()
        .boxed();
    Ok(Conn { events, heard })
}

/// The body's chunks until it fails or stays silent for [`EVENTS_IDLE`]; `heard` is set
/// on every chunk.
fn watched<S, B>(
    body: S,
    heard: Arc<AtomicBool>,
) -> impl futures::Stream<Item = Result<B, Lost>> + Send + 'static
where
    S: futures::Stream<Item = reqwest::Result<B>> + Send + 'static,
    B: Send + 'static,
{
    futures::stream::unfold(Some(body.boxed()), move |body| {
        let heard = heard.clone();
        async move {
            let mut body = body?;
            match tokio::time::timeout(EVENTS_IDLE, body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    heard.store(true, Ordering::Relaxed);
                    Some((Ok(chunk), Some(body)))
                }
                Ok(Some(Err(e))) => Some((Err(Lost::Read(e.without_url().to_string())), None)),
                Ok(None) => None,
                Err(_) => Some((Err(Lost::Silent), None)),
            }
        }
    })
}

/// The `generation_id` in a completion event's data.
pub(super) fn completed_id(data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    let id = v.get("generation_id")?.as_str()?;
    (!id.is_empty()).then(|| id.to_owned())
}
