//! Unit tests of the contact sheet: escaping, links, cards and the cost line.

use super::*;

fn rec(id: &str, fields: &[(&str, &str)]) -> Loaded {
    JobRecord::from_pairs(
        id,
        fields
            .iter()
            .flat_map(|(k, v)| [k.to_string(), v.to_string()])
            .collect(),
    )
}

fn payload(i: u32, prompt: &str) -> String {
    serde_json::json!({"v": 1, "batch_id": "b", "index": i, "prompt": prompt}).to_string()
}

#[test]
fn escapes_every_special_character() {
    // Hostile text in every place a record reaches the page: the batch id (so the job ids,
    // the title and the `id` attributes), a prompt, a reason, an upstream id and an
    // unreadable record's reason.
    let hostile = r#"<script>alert("x")</script> & 'q'"#;
    let info = BatchInfo::from_pairs(hostile, vec!["total".into(), "3".into()]);
    let ids = crate::ops::job_ids(&info);
    let records = vec![
        rec(
            &ids[0],
            &[
                ("state", JobState::Failed.as_str()),
                ("payload", &payload(0, hostile)),
                ("error", hostile),
                ("upstream_id", hostile),
            ],
        ),
        rec(&ids[1], &[("state", hostile)]),
    ];
    let html = render(&info, &records, 0);
    let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'q'";
    // Title, heading, three card ids and `job` rows, the prompt, the reason, the upstream
    // id and the unreadable record's reason (which names its job).
    assert_eq!(html.matches(escaped).count(), 12, "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("alert(\"x\")"), "no raw quote from a record");
    // `'` is left as it is: every attribute the template writes is double-quoted.
    assert!(html.contains("id=\"job-&lt;script&gt;"), "{html}");
}

#[test]
fn relative_urls_cannot_escape_the_folder() {
    assert_eq!(relative_url("b.00001.mp4"), "./b.00001.mp4");
    assert_eq!(relative_url("a:b c.mp4"), "./a%3Ab%20c.mp4");
    assert_eq!(relative_url("../x\"<"), "./..%2Fx%22%3C");
    assert_eq!(relative_url("50%?#é~_-"), "./50%25%3F%23%C3%A9~_-");
}

#[test]
fn one_card_per_variant_with_players_reasons_and_states() {
    let info = BatchInfo::from_pairs("b", vec!["total".into(), "4".into()]);
    let hostile = r#"<script>alert("x")</script> & "quotes""#;
    let records = vec![
        rec(
            "b.00000",
            &[
                ("state", JobState::Succeeded.as_str()),
                ("payload", &payload(0, hostile)),
                ("file", "b/b.00000.mp4"),
                ("provider", "aimlapi"),
                ("upstream_id", "gen-1"),
                ("submitted_at", "1000"),
                ("finished_at", "13340"),
                ("estimated_cost", "0.42"),
            ],
        ),
        rec(
            "b.00001",
            &[
                ("state", JobState::Failed.as_str()),
                ("payload", &payload(1, "plain")),
                ("error", "Content <rejected>"),
            ],
        ),
        rec(
            "b.00002",
            &[
                ("state", JobState::Polling.as_str()),
                ("payload", &payload(2, "p")),
            ],
        ),
    ];
    let html = render(&info, &records, 0);
    assert_eq!(html.matches("<article class=\"card").count(), 4);
    assert_eq!(html.matches("<video").count(), 1);
    assert!(html.contains("src=\"./b.00000.mp4\""));
    assert!(!html.contains("<script>alert"));
    assert!(
        html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;")
    );
    assert!(html.contains("Content &lt;rejected&gt;"));
    assert!(html.contains("12.3 s") && html.contains("$0.42"));
    assert!(
        html.contains("class=\"card s-missing"),
        "the record-less job still has a card"
    );
    assert!(html.contains("Cost so far: <b>$0.42</b>"));
    assert!(html.contains("#only-failed:target"));
}

#[test]
fn unknown_costs_are_counted_not_invented() {
    let info = BatchInfo::from_pairs("b", vec!["total".into(), "2".into()]);
    let records = vec![
        rec(
            "b.00000",
            &[
                ("state", JobState::Succeeded.as_str()),
                ("estimated_cost", "1.5"),
            ],
        ),
        rec("b.00001", &[("state", JobState::Succeeded.as_str())]),
    ];
    let html = render(&info, &records, 0);
    assert!(html.contains("$1.50 + 1 job of unknown cost"), "{html}");
    assert!(html.contains("<dt>cost</dt><dd>unknown</dd>"));
}
