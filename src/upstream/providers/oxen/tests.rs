//! Unit tests of the Oxen mapping: bodies, classes, envelopes, rows, the event stream.

use super::events::{completed_id, completed_ids};
use super::wire::{classify, RowStatus};
use super::*;
use crate::model::Element;
use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use serde_json::json;

fn req() -> GenerationRequest {
    GenerationRequest {
        job_id: "b.00001".into(),
        client_id: "b.00001".into(),
        model: ModelKind::Edit,
        prompt: "p @Element1".into(),
        video: "https://x/v.mp4".into(),
        image_list: vec!["https://x/i.png".into()],
        keep_audio: false,
        aspect_ratio: Some("16:9".into()),
        duration: Some(5),
        tier: None,
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

/// The chunks an event stream's body may arrive in, parsed as the client parses them.
async fn parse(chunks: &[&'static [u8]]) -> Vec<(String, String)> {
    let body = futures::stream::iter(chunks.iter().map(Ok::<_, std::convert::Infallible>));
    body.eventsource()
        .map(|ev| {
            let Event { event, data, .. } = ev.expect("parsed");
            (event, data)
        })
        .collect()
        .await
}

#[tokio::test]
async fn sse_parser_handles_split_chunks_comments_and_line_endings() {
    let got = parse(&[
        b": keep-alive\n\nevent: media_generation_com",
        b"pleted\r\ndata: {\"generation_id\":\"a\"}\r",
        b"\n\r\ndata: one\ndata:two\n\nevent: other\rdata: x\r\r",
        // A lone CR may yet be followed by LF: the blank line counts once more bytes come.
        b": keep-alive\n",
    ])
    .await;
    let ev = |e: &str, d: &str| (e.to_owned(), d.to_owned());
    assert_eq!(
        got,
        vec![
            ev(COMPLETED_EVENT, r#"{"generation_id":"a"}"#),
            ev("message", "one\ntwo"),
            ev("other", "x"),
        ]
    );
    assert_eq!(completed_id(&got[0].1).as_deref(), Some("a"));
    assert_eq!(completed_id(r#"{"generation_id":""}"#), None);
}

/// A server that refuses the first connect, then sends one completion per connection and
/// hangs up: the stream reconnects by itself and yields each id.
#[tokio::test]
async fn the_event_stream_reconnects_after_a_refusal_and_an_eof() {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    let hits = Arc::new(AtomicU32::new(0));
    let served = hits.clone();
    let app = axum::Router::new().route(
        "/api/events",
        axum::routing::get(move |headers: HeaderMap| {
            let n = served.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                assert_eq!(auth, Some("Bearer k"));
                if n == 1 {
                    let body = r#"{"error":{"message":"busy"}}"#;
                    return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
                }
                let body = format!(
                    ": keep-alive\n\nevent: other\ndata: {{}}\n\n\
                     event: {COMPLETED_EVENT}\ndata: {{\"generation_id\":\"g{n}\"}}\n\n"
                );
                ([("content-type", "text/event-stream")], body).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = url::Url::parse(&format!("http://{addr}/api/events")).unwrap();
    let ids = completed_ids(reqwest::Client::new(), url, "k".to_owned().into());
    let got = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        ids.take(2).collect::<Vec<String>>(),
    )
    .await
    .expect("two ids within the backoff");
    assert_eq!(got, vec!["g2".to_owned(), "g3".to_owned()]);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    server.abort();
}

#[test]
fn base_without_a_path_gets_the_api_prefix() {
    let u = |s: &str| url::Url::parse(s).unwrap();
    assert_eq!(
        api_root(&u("https://hub.oxen.ai/api")).as_str(),
        "https://hub.oxen.ai/api"
    );
    assert_eq!(
        api_root(&u("https://hub.oxen.ai/api/")).as_str(),
        "https://hub.oxen.ai/api"
    );
    assert_eq!(
        api_root(&u("http://127.0.0.1:9")).as_str(),
        "http://127.0.0.1:9/api"
    );
}

#[test]
fn ids_are_percent_encoded_as_one_path_segment() {
    let ox = Oxen {
        http: reqwest::Client::new(),
        sse: reqwest::Client::new(),
        base: api_root(&url::Url::parse("https://hub.oxen.ai/api/").unwrap()),
        key: None,
    };
    assert_eq!(
        ox.row_url("3f2a-9c").unwrap().as_str(),
        "https://hub.oxen.ai/api/ai/queue/3f2a-9c"
    );
    assert_eq!(
        ox.row_url("a b/c?d#e").unwrap().as_str(),
        "https://hub.oxen.ai/api/ai/queue/a%20b%2Fc%3Fd%23e"
    );
    assert_eq!(
        ox.url(&["events"]).unwrap().as_str(),
        "https://hub.oxen.ai/api/events"
    );
}

#[test]
fn the_key_goes_only_to_oxens_own_origin() {
    let mut s = crate::config::Settings::builtin();
    s.point_provider_at(ProviderName::Oxen, "https://hub.oxen.ai/api", "ox-key");
    let oxen = Oxen::new(s.provider(ProviderName::Oxen)).unwrap();
    let auth = |u: &str| oxen.download_auth(&url::Url::parse(u).unwrap());
    let v = auth("https://hub.oxen.ai/api/repos/me/r/file/main/out.mp4").expect("own origin");
    assert_eq!(v.to_str().unwrap(), "Bearer ox-key");
    assert!(v.is_sensitive(), "kept out of debug output");
    // Any path on the origin; the explicit default port is the same origin.
    assert!(auth("https://hub.oxen.ai:443/elsewhere").is_some());
    for other in [
        "http://hub.oxen.ai/api/repos/x",       // another scheme
        "https://hub.oxen.ai:8443/api/repos/x", // another port
        "https://cdn.hub.oxen.ai/api/repos/x",  // another host
        "https://hub.oxen.ai.evil.example/api", // a look-alike
        "https://oxen-results.s3.amazonaws.com/presigned?X-Amz-Signature=1",
    ] {
        assert!(auth(other).is_none(), "{other}");
    }
    // No key configured: nothing to send.
    s.providers.get_mut(&ProviderName::Oxen).unwrap().api_key = None;
    let keyless = Oxen::new(s.provider(ProviderName::Oxen)).unwrap();
    let own = url::Url::parse("https://hub.oxen.ai/api/x").unwrap();
    assert!(keyless.download_auth(&own).is_none());
}
