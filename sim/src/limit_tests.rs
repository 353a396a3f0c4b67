//! Tests of the per-key rate and concurrency limits and the request log, over real HTTP.

use super::tests::{
    edit_body, error_message, fast_knobs, poll, poll_as, poll_until_terminal, start, submit,
    submit_as, submit_ok, EDIT,
};
use super::*;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn rate_limit_is_a_token_bucket_per_key() {
    let sim = start(fast_knobs()).await;
    let id = submit_ok(&sim, &edit_body("a")).await;
    sim.set_knobs(Knobs {
        rate_limit: Some(5.0),
        rate_burst: Some(5),
        retry_after_secs: Some(2),
        ..fast_knobs()
    });
    let (mut accepted, mut limited) = (0u64, 0u64);
    // The bucket refills with wall time, so what it may accept depends on how long the 12
    // polls took (a loaded machine is slow): the burst, plus 5 per second elapsed, plus
    // two for tokens refilled at the edges (as before: 5..=7 when quick).
    let started = std::time::Instant::now();
    for _ in 0..12 {
        let resp = poll(&sim, &id).await;
        match resp.status() {
            StatusCode::OK => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert_eq!(resp.headers()["retry-after"], "2");
                assert_eq!(error_message(resp, "429").await, "Too Many Requests");
            }
            other => panic!("unexpected {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let most = 5 + (elapsed * 5.0).floor() as u64 + 2;
    assert!(
        (5..=most).contains(&accepted),
        "{accepted} accepted in {elapsed:.2} s (at most {most})"
    );
    if most < 12 {
        assert!(limited >= 1, "nothing limited in {elapsed:.2} s");
    }
    let stats = sim.stats();
    assert_eq!(stats.rate_limited_total, limited);
    assert_eq!(stats.concurrency_limited_total, 0);
    assert_eq!(stats.polls_total, 12);
    assert_eq!(stats.requests_per_second.values().sum::<u64>(), 13);
    assert_eq!(
        stats.accepted_per_second.values().sum::<u64>(),
        1 + accepted
    );
    let log = sim.requests();
    assert_eq!(log.len(), 13);
    assert_eq!(
        log.iter().filter(|e| e.status == 429).count() as u64,
        limited
    );
}

#[tokio::test]
async fn each_key_has_its_own_bucket() {
    let knobs = Knobs {
        api_keys: vec!["key-a".into(), "key-b".into()],
        // Burst defaults to ceil(0.5) raised to 1: one request, then one every 2 s.
        rate_limit: Some(0.5),
        ..fast_knobs()
    };
    assert_eq!(knobs.effective_burst(), Some(1));
    let sim = start(knobs).await;
    let missing = "00000000-0000-4000-8000-000000000000:klingai/x";
    assert_eq!(
        poll_as(&sim, "key-a", missing).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        poll_as(&sim, "key-a", missing).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let resp = submit_as(&sim, "key-a", &edit_body("a"), None).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_none());
    let resp = submit_as(&sim, "key-b", &edit_body("b"), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        poll_as(&sim, "key-b", missing).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Unauthorized requests take no token and are not logged.
    assert_eq!(
        poll_as(&sim, "key-c", missing).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let stats = sim.stats();
    assert_eq!(stats.rate_limited_total, 3);
    assert_eq!(stats.submissions_total, 1);
    assert_eq!(stats.unauthorized_total, 1);
    assert_eq!(sim.requests().len(), 5);
}

#[tokio::test]
async fn concurrency_is_capped_per_key() {
    let sim = start(Knobs {
        max_in_flight: Some(2),
        stuck_prompts_containing: Some("STUCK".into()),
        ..fast_knobs()
    })
    .await;
    let a = submit_ok(&sim, &edit_body("a")).await;
    let b = submit_ok(&sim, &edit_body("b")).await;
    let third = submit(&sim, &edit_body("c"), Some("c.1")).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().get("x-inference-id").is_none());
    assert_eq!(third.headers()["x-client-request-id"], "c.1");
    assert_eq!(error_message(third, "429").await, "Too Many Requests");
    for _ in 0..2 {
        let resp = submit_as(&sim, "stuck-key", &edit_body("STUCK"), None).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let stats = sim.stats();
    assert_eq!(stats.submissions_total, 4);
    assert_eq!(stats.concurrency_limited_total, 1);
    assert_eq!(stats.rate_limited_total, 1);
    assert_eq!(stats.peak_in_flight, 4);
    assert_eq!(stats.peak_in_flight_by_key_max, 2);

    poll_until_terminal(&sim, &a).await;
    poll_until_terminal(&sim, &b).await;
    submit_ok(&sim, &edit_body("d")).await;
    // Stuck generations never leave the key's in-flight set.
    let resp = submit_as(&sim, "stuck-key", &edit_body("more"), None).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let stats = sim.stats();
    assert_eq!(stats.submissions_total, 5);
    assert_eq!(stats.concurrency_limited_total, 2);
    assert_eq!(stats.rate_limited_total, 2);
    assert_eq!(stats.in_flight, 3);
    assert_eq!(stats.peak_in_flight_by_key_max, 2);
}

#[tokio::test]
async fn request_log_lists_authorized_api_requests() {
    let sim = start(fast_knobs()).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let id = submit_ok(&sim, &edit_body("a")).await;
    assert_eq!(poll(&sim, &id).await.status(), StatusCode::OK);
    let bad = submit(&sim, &json!({"model": EDIT}), None).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(poll(&sim, "nope").await.status(), StatusCode::NOT_FOUND);
    let anonymous = Client::new()
        .get(format!("{}/v2/video/generations", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    sim.set_knobs(Knobs {
        poll_429_rate: 1.0,
        ..fast_knobs()
    });
    assert_eq!(
        poll(&sim, &id).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let after = before + 60_000;

    let log: Vec<RequestLogEntry> = Client::new()
        .get(format!("{}/sim/requests", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seen: Vec<(RequestKind, u16)> = log.iter().map(|e| (e.kind, e.status)).collect();
    assert_eq!(
        seen,
        [
            (RequestKind::Submit, 200),
            (RequestKind::Poll, 200),
            (RequestKind::Submit, 400),
            (RequestKind::Poll, 404),
            (RequestKind::Poll, 429),
        ]
    );
    assert!(log.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(log.iter().all(|e| (before..after).contains(&e.at_ms)));
    assert_eq!(sim.requests(), log);
    let raw: Value = serde_json::to_value(&log[0]).unwrap();
    assert_eq!(raw["kind"], "submit");
    assert_eq!(raw["status"], 200);

    let stats = sim.stats();
    assert_eq!(stats.requests_per_second.values().sum::<u64>(), 5);
    assert_eq!(stats.accepted_per_second.values().sum::<u64>(), 4);
    let first = *stats.requests_per_second.keys().next().unwrap();
    assert_eq!(first, log[0].at_ms / 1000);
}

#[test]
fn limit_knobs_are_checked() {
    let ok = Knobs {
        rate_limit: Some(2.5),
        max_in_flight: Some(1),
        ..Knobs::default()
    };
    assert!(ok.check().is_ok());
    assert_eq!(ok.effective_burst(), Some(3));
    assert_eq!(Knobs::default().effective_burst(), None);
    for bad in [
        Knobs {
            rate_limit: Some(0.0),
            ..Knobs::default()
        },
        Knobs {
            rate_limit: Some(f64::NAN),
            ..Knobs::default()
        },
        Knobs {
            rate_burst: Some(0),
            ..Knobs::default()
        },
        Knobs {
            max_in_flight: Some(0),
            ..Knobs::default()
        },
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
    let parsed: Knobs =
        serde_json::from_value(json!({"rate_limit": 10, "rate_burst": 20, "max_in_flight": 4}))
            .unwrap();
    assert_eq!(parsed.rate_limit, Some(10.0));
    assert_eq!(parsed.effective_burst(), Some(20));
    assert_eq!(parsed.max_in_flight, Some(4));
}
