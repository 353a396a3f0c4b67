//! A worker of this version drains what the previous version wrote: job and batch
//! records in the old wire format, written here field by field as that version's
//! scripts did (float money accumulated by HINCRBYFLOAT, costs as "{:.4}" strings).

use crate::helpers::*;
use redis::AsyncCommands;
use restyle::job::JobState;
use restyle::money::Usd;
use std::time::Duration;

#[tokio::test]
async fn records_written_in_the_previous_format_are_drained() {
    let app = TestApp::new(fast_knobs()).await;
    let mut rt = app.runtime();
    rt.settings
        .providers
        .get_mut(&restyle::model::ProviderName::Aimlapi)
        .unwrap()
        .prices
        .edit = Usd::parse("0.1");
    let p = app.queue.keys().prefix().to_string();
    let bid = "legacy";
    // The spec exactly as the previous version serialized it (max_cost a float).
    let spec = r#"{"v":1,"batch_id":"legacy","provider":"aimlapi","model":"edit","video":"https://media.example.com/clip.mp4","image_list":[],"keep_audio":false,"aspect_ratio":null,"duration":null,"elements":[],"clip_seconds":10.0,"max_cost":3.0,"on_done":null}"#;
    let mut c = app.queue.connection();
    let bkey = format!("{p}batch:{bid}");
    let _: () = redis::cmd("HSET")
        .arg(&bkey)
        .arg(&[
            ("digest", "d0"),
            ("spec", spec),
            ("total", "3"),
            ("created_at", "1700000000000"),
            ("done", "0"),
            ("max_cost", "3"),
            // One job reserved its cost before the upgrade, summed as a float.
            ("cost_committed", "1.0000000000000002"),
            ("n:queued", "3"),
        ])
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = c
        .zadd(format!("{p}batches"), bid, 1_700_000_000_000u64)
        .await
        .unwrap();
    for i in 0..3u32 {
        let id = restyle::job::job_id(bid, i);
        let payload = format!(r#"{{"v":1,"batch_id":"{bid}","index":{i},"prompt":"p{i}"}}"#);
        let mut fields = vec![
            ("state".to_string(), JobState::Queued.as_str().to_string()),
            ("payload".into(), payload),
            ("batch".into(), bid.into()),
            ("attempts".into(), "0".into()),
            ("created_at".into(), "1700000000000".into()),
        ];
        if i == 0 {
            // Released after its reservation (say, a retry): the old float reservation.
            fields.push(("cost_reserved".into(), "1".into()));
            fields.push(("estimated_cost".into(), "1.0000".into()));
            fields.push(("claims".into(), "1".into()));
        }
        let _: () = redis::cmd("HSET")
            .arg(format!("{p}job:{id}"))
            .arg(&fields)
            .query_async(&mut c)
            .await
            .unwrap();
        let _: () = c.rpush(format!("{p}ready"), &id).await.unwrap();
    }
    let info = app.drive(&rt, bid, Duration::from_secs(30)).await;
    assert_eq!(info.count(JobState::Succeeded), 3, "{:?}", info.counts);
    assert_eq!(app.sim.stats().submissions_total, 3);
    // Exact money: the float residue of the old sum is gone, not carried along.
    assert_eq!(info.cost_committed, Usd::parse("3").unwrap());
    let lines = restyle::sink::jsonl::read_all(&app.results_path(bid)).unwrap();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.estimated_cost == Usd::parse("1")));
}
