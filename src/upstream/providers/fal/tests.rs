//! Unit tests of the fal mapping: bodies, handles, error classes and answers.

use super::*;
use crate::model::Element;

fn base() -> url::Url {
    url::Url::parse("https://queue.fal.run").unwrap()
}

#[test]
fn classes_follow_the_submit_rules() {
    assert_eq!(classify(500, true), ErrorClass::Ambiguous);
    assert_eq!(classify(504, true), ErrorClass::Ambiguous);
    assert_eq!(classify(503, true), ErrorClass::Retryable);
    assert_eq!(classify(429, true), ErrorClass::RATE_LIMITED);
    assert_eq!(classify(504, false), ErrorClass::Retryable);
    assert_eq!(classify(422, true), ErrorClass::Job);
    assert_eq!(classify(404, false), ErrorClass::Job);
    assert_eq!(classify(401, false), ErrorClass::Account);
    assert_eq!(classify(403, true), ErrorClass::Account);
}

#[test]
fn bodies_use_fal_names_and_a_string_duration() {
    let mut req = GenerationRequest {
        job_id: "b.00000".into(),
        client_id: "b.00000".into(),
        model: ModelKind::Edit,
        prompt: "p".into(),
        video: "https://x/v.mp4".into(),
        image_list: vec!["https://x/i.png".into()],
        keep_audio: false,
        aspect_ratio: Some("9:16".into()),
        duration: Some(5),
        elements: vec![Element {
            frontal_image_url: "https://x/f.png".into(),
            reference_image_urls: vec!["https://x/r.png".into()],
        }],
    };
    let b = request_body(&req);
    assert_eq!(b["keep_audio"], json!(false));
    assert_eq!(b["image_urls"], json!(["https://x/i.png"]));
    assert_eq!(
        b["elements"][0]["reference_image_urls"],
        json!(["https://x/r.png"])
    );
    assert!(b.get("duration").is_none() && b.get("aspect_ratio").is_none());
    assert!(b.get("image_list").is_none() && b.get("model").is_none());
    req.model = ModelKind::Reference;
    let b = request_body(&req);
    assert_eq!(b["duration"], json!("5"));
    assert_eq!(b["aspect_ratio"], json!("9:16"));
}

#[test]
fn handles_round_trip_and_keep_the_key_on_our_host() {
    let r = "https://queue.fal.run/fal-ai/kling-video/requests/abc";
    let urls = [format!("{r}/status"), r.to_string(), format!("{r}/cancel")];
    let h = Handle::new(&base(), "abc", urls.each_ref().map(|u| Some(u.as_str())));
    assert_eq!(h.status_url, urls[0]);
    let back = Handle::decode(&base(), &h.encode()).unwrap();
    assert_eq!(back, h);
    assert_eq!(
        Handle::decode(&base(), "abc").unwrap(),
        h,
        "bare ids build the same URLs"
    );
    let piped = format!("{r}/status?x=a|b");
    let h2 = Handle::new(&base(), "abc", [Some(piped.as_str()), None, None]);
    assert_eq!(h2.status_url, format!("{r}/status?x=a%7Cb"));
    assert_eq!(Handle::decode(&base(), &h2.encode()).unwrap(), h2);
    let evil = Handle::new(&base(), "abc", [Some("https://evil.example/x"), None, None]);
    assert_eq!(evil.status_url, urls[0]);
    assert!(Handle::decode(&base(), "a|b").is_err());
}

#[test]
fn detail_messages_read_both_shapes() {
    let list = r#"{"detail":[{"loc":["body","video_url"],"msg":"Bad clip","type":"x"}]}"#;
    assert_eq!(detail_message(list), "video_url: Bad clip");
    assert_eq!(
        detail_message(r#"{"detail":"Request not found"}"#),
        "Request not found"
    );
    assert_eq!(
        detail_message(r#"{"status":"ALREADY_COMPLETED"}"#),
        "ALREADY_COMPLETED"
    );
    assert_eq!(detail_message("Gateway Timeout"), "Gateway Timeout");
}
