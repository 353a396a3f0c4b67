//! The assembled body is the JSON a data URI would have given, byte for byte, and its
//! payload is the batch's shared text, not a copy.

use super::*;
use crate::media::Media;
use futures::task::noop_waker;
use http_body::Body as _;
use serde_json::json;

fn blob(len: usize, mime: &str) -> Arc<Blob> {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    Arc::new(Blob::new(mime, Bytes::from(bytes)).unwrap())
}

#[test]
fn markers_become_the_payloads_and_nothing_else_changes() {
    let video = blob(FRAME * 3 + 5, "video/mp4");
    let image = blob(1000, "image/png");
    let v = Media::Inline(video.clone());
    let i = Media::Inline(image.clone());
    // A producer's text that looks like a marker (without this process's nonce) stays text.
    let fake = format!("\"restyle-media-0123456789abcdef-{}-d\"", video.sha256());
    let body = json!({"prompt": fake, "video_url": v, "images": [i, i.raw_base64()],
                      "url": Media::from("https://x/y.png"), "n": 1});
    let data_uri = |b: &Blob| {
        format!(
            "{}{}",
            b.data_uri_prefix(),
            std::str::from_utf8(b.base64()).unwrap()
        )
    };
    let expected = serde_json::to_vec(&json!({"prompt": fake, "video_url": data_uri(&video),
        "images": [data_uri(&image), std::str::from_utf8(image.base64()).unwrap()],
        "url": "https://x/y.png", "n": 1}))
    .unwrap();
    let b = JsonBody::new(&body, &[&video, &image]).unwrap();
    assert_eq!(b.len(), expected.len() as u64);
    assert_eq!(b.to_vec(), expected);
    // The video's base64 is the blob's own buffer, referenced.
    let shared = video.base64().as_ptr();
    assert!(b.pieces.iter().any(|p| p.as_ptr() == shared));

    // Streamed: frames of at most FRAME bytes, the exact length known all along.
    let mut b = b;
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut streamed = Vec::new();
    while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut b).poll_frame(&mut cx) {
        let data = frame.into_data().unwrap();
        assert!(data.len() <= FRAME);
        streamed.extend_from_slice(&data);
        assert_eq!(
            b.size_hint().exact(),
            Some((expected.len() - streamed.len()) as u64)
        );
    }
    assert!(b.is_end_stream());
    assert_eq!(streamed, expected);
}

#[test]
fn a_marker_without_its_payload_is_refused() {
    let video = blob(10, "video/mp4");
    let body = json!({"video_url": Media::Inline(video)});
    let e = JsonBody::new(&body, &[]).unwrap_err();
    assert_eq!(e.class, ErrorClass::Job);
    assert!(e.message.contains("no payload"), "{}", e.message);
    let plain = JsonBody::new(&json!({"a": "b"}), &[]).unwrap();
    assert_eq!(plain.to_vec(), br#"{"a":"b"}"#);
}
