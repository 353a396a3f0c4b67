//! Unit tests of the fal mapping: bodies, handles, error classes and answers.

use super::errors::*;
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
        tier: None,
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

fn answer(status: u16, body: &str) -> ResultAnswer {
    ResultAnswer {
        status,
        body: body.to_string(),
        ..ResultAnswer::default()
    }
}

fn failed_reason(r: Result<PollStatus, UpstreamError>) -> String {
    match r {
        Ok(PollStatus::Failed { reason }) => reason,
        other => panic!("not a job failure: {other:?}"),
    }
}

#[test]
fn request_errors_at_the_result_fail_the_job_whatever_their_status() {
    let ok = StatusError::default();
    let flat =
        r#"{"detail":"Runner disconnected unexpectedly","error_type":"runner_disconnected"}"#;
    let r = failed_reason(result_error(&answer(503, flat), &ok, &[]));
    assert_eq!(
        r,
        "fal: request error runner_disconnected: Runner disconnected unexpectedly (HTTP 503)"
    );
    // The type in the header only (a body fal did not shape) is enough.
    let mut a = answer(504, r#"{"detail":"Request timed out"}"#);
    a.error_type_header = Some("request_timeout".into());
    let r = failed_reason(result_error(&a, &ok, &[]));
    assert!(
        r.contains("request_timeout") && r.contains("HTTP 504"),
        "{r}"
    );
    // A model error stays the job's failure, as before.
    let model =
        r#"{"detail":[{"loc":["body","prompt"],"msg":"Nope","type":"content_policy_violation"}]}"#;
    assert_eq!(
        failed_reason(result_error(&answer(422, model), &ok, &[])),
        "fal: HTTP 422: prompt: Nope"
    );
    // Secrets and control characters never reach the reason.
    let key = SecretString::from("fal-key-123".to_string());
    let leaky = r#"{"detail":"bad key fal-key-123\u001b[31m","error_type":"bad_request"}"#;
    let r = failed_reason(result_error(&answer(400, leaky), &ok, &[&key]));
    assert!(!r.contains("fal-key-123") && !r.contains('\u{1b}'), "{r}");
}

#[test]
fn only_what_says_nothing_about_the_request_is_retried() {
    let ok = StatusError::default();
    for (status, body) in [
        (502, "<html>nginx</html>"),
        (504, r#"{"detail":"Gateway Timeout"}"#),
        (500, ""),
        (408, ""),
    ] {
        let e = result_error(&answer(status, body), &ok, &[]).unwrap_err();
        assert_eq!(e.class, ErrorClass::Retryable, "{status}");
        assert_eq!(e.status, Some(status));
    }
    assert_eq!(
        result_error(&answer(401, ""), &ok, &[]).unwrap_err().class,
        ErrorClass::Account
    );
    let mut limited = answer(429, "");
    limited.retry_after = Some(std::time::Duration::from_secs(3));
    assert_eq!(
        result_error(&limited, &ok, &[]).unwrap_err().class,
        ErrorClass::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(3))
        }
    );
    // A start timeout we set (we set none) is final.
    let mut user = answer(504, "");
    user.user_timeout = true;
    assert!(failed_reason(result_error(&user, &ok, &[])).contains("HTTP 504"));
}

#[test]
fn a_failure_the_status_reported_is_final_even_when_the_fetch_says_nothing() {
    let status = StatusError::from_fields(
        Some(&json!("Runner disconnected unexpectedly")),
        Some(&json!("runner_disconnected")),
    );
    assert!(status.failed());
    let r = failed_reason(result_error(&answer(502, "Bad Gateway"), &status, &[]));
    assert!(
        r.starts_with("fal: request error runner_disconnected: Runner disconnected unexpectedly"),
        "{r}"
    );
    assert!(r.contains("result fetch: HTTP 502"), "{r}");
    let gone = failed_reason(result_error(
        &answer(404, r#"{"detail":"Request not found"}"#),
        &status,
        &[],
    ));
    assert!(
        gone.contains("runner_disconnected") && !gone.contains("expired"),
        "{gone}"
    );
    assert!(!StatusError::from_fields(Some(&Value::Null), Some(&json!(""))).failed());
}

#[test]
fn a_result_gone_after_retention_says_it_expired() {
    let r = failed_reason(result_error(
        &answer(404, r#"{"detail":"Request not found"}"#),
        &StatusError::default(),
        &[],
    ));
    assert!(r.starts_with("fal: result expired:"), "{r}");
    assert!(
        r.contains("HTTP 404: Request not found") && r.contains("1 hour"),
        "{r}"
    );
}
