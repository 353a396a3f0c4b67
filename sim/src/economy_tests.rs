//! The economy counters (`/sim/stats` detection delay and polls per generation) and the
//! latency distribution knobs.

use super::state::{NewGeneration, View};
use super::tests::{edit_body, fast_knobs, poll, start, submit_ok};
use super::*;
use std::time::{Duration, Instant};

fn new_gen() -> NewGeneration {
    NewGeneration {
        model: crate::model::Model::Edit,
        prompt: "p".into(),
        refs: 0,
        duration: None,
        fail: None,
    }
}

/// Polls until the generation is `completed`, counting the polls.
async fn poll_until_done(sim: &SimHandle, id: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut polls = 0;
    loop {
        let v: serde_json::Value = poll(sim, id).await.json().await.unwrap();
        polls += 1;
        if v["status"] == "completed" {
            return polls;
        }
        assert!(Instant::now() < deadline, "not completed: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stats_report_detection_delay_and_polls_per_generation() {
    let sim = start(fast_knobs()).await;
    let before = sim.stats();
    assert_eq!(before.polls_per_generation.count, 0);
    let a = submit_ok(&sim, &edit_body("a")).await;
    let b = submit_ok(&sim, &edit_body("b")).await;
    let end_of = |id: &str| sim.state.lock().end_of(id).expect("a generation");
    let polls_a = poll_until_done(&sim, &a).await;
    let seen_a = Instant::now();
    // b is first polled once it is done (whatever the machine's load made of the time
    // between the two submits): one poll.
    let end_b = end_of(&b);
    // Waits, with a deadline, until b is done (a view is no poll).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        sim.state.lock().view(&b, Instant::now()),
        Some(View::Completed { .. })
    ) {
        assert!(Instant::now() < deadline, "b never completed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let polls_b = poll_until_done(&sim, &b).await;
    let seen_b = Instant::now();
    assert_eq!(polls_b, 1);
    // Polls after the detection count no more.
    poll(&sim, &a).await;
    let s = sim.stats();
    assert_eq!(s.polls_per_generation.count, 2);
    assert_eq!(s.polls_per_generation.max, f64::from(polls_a.max(polls_b)));
    assert!(polls_a >= 2, "a was polled while running");
    let c = &s.by_provider["aimlapi"];
    assert_eq!(c.polls_per_generation, s.polls_per_generation);
    assert_eq!(c.detection_delay_s, s.detection_delay_s);
    // In simulated seconds (÷ time_scale 0.05): each delay is at most the time from the
    // generation's end to when this test had the answer that showed it done.
    let simulated = |real: Duration| real.as_secs_f64() / 0.05;
    let bound_a = simulated(seen_a - end_of(&a));
    let bound_b = simulated(seen_b - end_b);
    let d = &s.detection_delay_s;
    assert!(d.median >= 0.0, "{d:?}");
    assert!(
        d.max <= bound_a.max(bound_b) + 1e-6,
        "{d:?} against {bound_a} and {bound_b}"
    );
}

#[test]
fn a_view_that_is_no_poll_detects_nothing_and_unknown_ids_count_nothing() {
    let state = SimState::new(fast_knobs());
    let id = state
        .lock()
        .create_as("oxen", "g1".into(), &new_gen(), None, None, Instant::now());
    state.lock().note_poll("no-such-id", Instant::now());
    let end = state.lock().end_of(&id).unwrap();
    // The view the SSE stream takes is not a poll.
    assert!(matches!(
        state.lock().view(&id, end),
        Some(View::Completed { .. })
    ));
    assert_eq!(state.stats().polls_per_generation.count, 0);
    state.lock().note_poll(&id, end + Duration::from_millis(50));
    let s = state.stats();
    assert_eq!(s.polls_per_generation.count, 1);
    // 50 ms real at time_scale 0.05 is one simulated second.
    assert!((s.detection_delay_s.max - 1.0).abs() < 1e-6, "{s:?}");
    assert!(s.by_provider.contains_key("oxen"));
}

fn draws(knobs: Knobs, n: usize) -> Vec<f64> {
    let state = SimState::new(knobs);
    let mut inner = state.lock();
    let now = Instant::now();
    let mut v: Vec<f64> = (0..n)
        .map(|i| {
            let id = inner.create_as("fal", format!("g{i}"), &new_gen(), None, None, now);
            (inner.end_of(&id).unwrap() - now).as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

#[test]
fn lognormal_latency_has_its_median_and_a_long_tail() {
    let knobs = Knobs {
        latency_dist: LatencyDist::Lognormal,
        latency_median: Duration::from_secs(200),
        latency_sigma: 0.5,
        seed: Some(3),
        ..Knobs::default()
    };
    let v = draws(knobs, 4000);
    let (median, p90) = (v[2000], v[3600]);
    assert!((median - 200.0).abs() < 15.0, "median {median}");
    // exp(0.5 · 1.2816) · 200 ≈ 379.
    assert!((p90 - 379.0).abs() < 30.0, "p90 {p90}");
    assert!(v[3999] > 600.0, "a long tail: max {}", v[3999]);
    // Time-scaled like the uniform one.
    let scaled = draws(
        Knobs {
            latency_dist: LatencyDist::Lognormal,
            time_scale: 0.01,
            seed: Some(3),
            ..Knobs::default()
        },
        4000,
    );
    assert!((scaled[2000] - median / 100.0).abs() < 1e-6);
}

#[test]
fn latency_knobs_changed_at_runtime_apply_to_new_generations() {
    let state = SimState::new(Knobs {
        seed: Some(1),
        ..Knobs::default()
    });
    let now = Instant::now();
    let early = state
        .lock()
        .create_as("fal", "a".into(), &new_gen(), None, None, now);
    let mut k = state.knobs();
    k.latency_min = Duration::from_secs(400);
    k.latency_max = Duration::from_secs(480);
    state.set_knobs(k);
    let late = state
        .lock()
        .create_as("fal", "b".into(), &new_gen(), None, None, now);
    let took = |id: &str| (state.lock().end_of(id).unwrap() - now).as_secs_f64();
    assert!((200.0..=240.0).contains(&took(&early)));
    assert!((400.0..=480.0).contains(&took(&late)));
}

#[test]
fn latency_sigma_is_checked() {
    for bad in [f64::NAN, -0.1, 6.0] {
        let k = Knobs {
            latency_sigma: bad,
            ..Knobs::default()
        };
        assert!(k.check().unwrap_err().contains("latency_sigma"));
    }
    let k: Knobs = serde_json::from_str(r#"{"latency_dist": "lognormal"}"#).unwrap();
    assert_eq!(k.latency_dist, LatencyDist::Lognormal);
    assert!(serde_json::from_str::<Knobs>(r#"{"latency_dist": "pareto"}"#).is_err());
}

#[tokio::test]
async fn delete_stats_starts_the_counters_and_the_economy_afresh() {
    let sim = start(fast_knobs()).await;
    let a = submit_ok(&sim, &edit_body("a")).await;
    poll_until_done(&sim, &a).await;
    let url = format!("{}/sim/stats", sim.base_url());
    let resp = reqwest::Client::new().delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::NO_CONTENT);
    let s: SimStats = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!((s.submissions_total, s.polls_total), (0, 0));
    assert_eq!(s.polls_per_generation.count, 0);
    let b = submit_ok(&sim, &edit_body("b")).await;
    let polls = poll_until_done(&sim, &b).await;
    let s = sim.stats();
    assert_eq!(s.polls_per_generation.count, 1, "only b");
    assert_eq!(s.polls_per_generation.max, f64::from(polls));
    assert_eq!(s.submissions_total, 1);
}
