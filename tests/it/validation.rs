//! Invalid batches: a clear error naming file, variant, field and limit; exit code 2;
//! nothing enqueued.

use crate::helpers::*;
use redis::AsyncCommands;

async fn assert_nothing_enqueued(app: &TestApp) {
    let mut c = app.queue.connection();
    let pattern = format!(
        "{}*",
        app.queue
            .keys()
            .prefix()
            .replace('{', "\\{")
            .replace('}', "\\}")
    );
    let keys: Vec<String> = c.keys(pattern).await.unwrap();
    assert!(keys.is_empty(), "nothing may be enqueued, found {keys:?}");
}

fn enqueue_file(app: &TestApp, body: &str) -> (Option<i32>, String) {
    let path = app.out.path().join("bad.toml");
    std::fs::write(&path, body).unwrap();
    let out = app.cmd().args(["enqueue", "bad.toml"]).output().unwrap();
    assert!(
        out.stdout.is_empty(),
        "no batch id on stdout for an invalid batch"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn each_rule_rejects_with_field_and_limit() {
    let app = TestApp::new(fast_knobs()).await;
    let long = "x".repeat(2501);
    let cases: Vec<(String, &[&str])> = vec![
        (
            format!("video = \"https://v.example/a.mp4\"\n[[variants]]\nprompt = \"ok\"\n[[variants]]\nprompt = \"{long}\"\n"),
            &["bad.toml", "variant 2", "prompt", "2500"],
        ),
        (
            "video = \"https://v.example/a.mp4\"\n[[variants]]\nprompt = \"  \"\n".into(),
            &["prompt", "variant 1"],
        ),
        (
            "video = \"http://v.example/a.mp4\"\n[[variants]]\nprompt = \"p\"\n".into(),
            &["video", "https"],
        ),
        (
            "video = \"https://v.example/a.mp4\"\nimages = [\"https://i/1.png\",\"https://i/2.png\",\"https://i/3.png\",\"https://i/4.png\",\"https://i/5.png\"]\nmodel = \"reference\"\n[[variants]]\nprompt = \"p\"\n".into(),
            &["images", "4"],
        ),
        (
            "video = \"https://v.example/a.mp4\"\nmodel = \"klingai/other\"\n[[variants]]\nprompt = \"p\"\n".into(),
            &["model"],
        ),
        (
            "video = \"https://v.example/a.mp4\"\nmodel = \"edit\"\naspect_ratio = \"16:9\"\n[[variants]]\nprompt = \"p\"\n".into(),
            &["aspect_ratio", "edit"],
        ),
        (
            "video = \"https://v.example/a.mp4\"\nmodel = \"reference\"\nduration = 7\n[[variants]]\nprompt = \"p\"\n".into(),
            &["duration", "5"],
        ),
        (
            "video = \"https://v.example/a.mp4\"\ncolour = \"red\"\n[[variants]]\nprompt = \"p\"\n".into(),
            &["colour"],
        ),
        (
            "video = \"./missing.mp4\"\n[[variants]]\nprompt = \"p\"\n".into(),
            &["video"],
        ),
    ];
    for (body, needles) in cases {
        let (code, err) = enqueue_file(&app, &body);
        assert_eq!(code, Some(2), "exit 2 for {needles:?}: {err}");
        for n in needles {
            assert!(
                err.contains(n),
                "error for {needles:?} should mention {n:?}: {err}"
            );
        }
    }
    assert_nothing_enqueued(&app).await;
}

#[tokio::test]
async fn oversized_local_video_is_refused_before_enqueue() {
    let app = TestApp::new(fast_knobs()).await;
    std::fs::write(app.out.path().join("clip.mp4"), vec![0u8; 4096]).unwrap();
    let out = app
        .cmd()
        .env("RESTYLE__LIMITS__MAX_VIDEO_BYTES", "1024")
        .args(["enqueue", "--video", "./clip.mp4", "--prompt", "p"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("video") && err.contains("1024"), "{err}");
    assert_nothing_enqueued(&app).await;
}

#[tokio::test]
async fn local_video_and_csv_prompts_are_enqueued() {
    let app = TestApp::new(fast_knobs()).await;
    std::fs::write(
        app.out.path().join("clip.mp4"),
        crate::clips::Clip::OK.bytes(),
    )
    .unwrap();
    std::fs::write(
        app.out.path().join("p.csv"),
        "name,prompt\na,first look\nb,second look\n",
    )
    .unwrap();
    let out = app
        .cmd()
        .args([
            "enqueue",
            "--video",
            "./clip.mp4",
            "--prompts-file",
            "p.csv",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let info = app.info(&id).await;
    assert_eq!(info.total, 2);
    // The clip is stored beside the spec (issue 13), which names it with its type.
    assert!(
        info.spec_json.contains(r#""video":"media:"#),
        "{}",
        info.spec_json
    );
    assert!(info.spec_json.contains(r#""mime":"video/mp4""#));
}

/// An edited batch file is a new batch, not a conflict with the one enqueued before it:
/// its derived id covers `max_cost` and `clip_seconds` too.
#[tokio::test]
async fn editing_budget_or_clip_length_enqueues_a_new_batch() {
    let app = TestApp::new(fast_knobs()).await;
    let path = app.out.path().join("b.toml");
    let mut ids = Vec::new();
    for extra in [
        "",
        "max_cost = 25.0",
        "max_cost = 30.0",
        "clip_seconds = 8.5",
    ] {
        let body =
            format!("video = \"https://v.example/a.mp4\"\n{extra}\n[[variants]]\nprompt = \"p\"\n");
        std::fs::write(&path, body).unwrap();
        let out = app.cmd().args(["enqueue", "b.toml"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {err}");
        assert!(err.contains("enqueued 1 jobs"), "{extra:?}: {err}");
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    for (i, id) in ids.iter().enumerate() {
        assert!(!ids[..i].contains(id), "{id} enqueued twice: {ids:?}");
        assert_eq!(app.info(id).await.total, 1);
    }
}
