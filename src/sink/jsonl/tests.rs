use super::*;
use crate::job::JobState;

fn line(id: &str, outcome: u64, state: JobState) -> ResultLine {
    ResultLine {
        job_id: id.into(),
        batch_id: "b".into(),
        index: 0,
        prompt: "p".into(),
        provider: "aimlapi".into(),
        model: "edit".into(),
        state,
        outcome,
        upstream_id: None,
        output_url: None,
        file: None,
        sha256: None,
        bytes: None,
        claims: 1,
        submitted_at: None,
        finished_at: 1,
        upstream_seconds: None,
        estimated_cost: None,
        error: None,
    }
}

fn sink(dir: &Path) -> Arc<JsonlSink> {
    Arc::new(JsonlSink::new(dir))
}

#[test]
fn an_outcome_is_written_once_even_from_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (sink(dir.path()), sink(dir.path()));
    assert!(a.append(&line("b.00000", 1, JobState::Failed)).unwrap());
    assert!(!b.append(&line("b.00000", 1, JobState::Failed)).unwrap());
    assert!(b.append(&line("b.00001", 1, JobState::Succeeded)).unwrap());
    assert!(!a.append(&line("b.00001", 1, JobState::Succeeded)).unwrap());
    assert_eq!(read_lines(&a.path("b")).unwrap().len(), 2);
}

#[test]
fn a_newer_outcome_supersedes_and_an_older_one_is_never_appended_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (sink(dir.path()), sink(dir.path()));
    assert!(a.append(&line("b.00000", 1, JobState::Failed)).unwrap());
    assert!(a.append(&line("b.00001", 1, JobState::Succeeded)).unwrap());
    assert!(b.append(&line("b.00000", 3, JobState::Succeeded)).unwrap());
    // A late writer of outcome 2 finds 3 written (by another process) and stays out.
    assert!(!a.append(&line("b.00000", 2, JobState::Cancelled)).unwrap());
    let path = a.path("b");
    assert_eq!(read_lines(&path).unwrap().len(), 3);
    let now = read_all(&path).unwrap();
    let got: Vec<(&str, u64, JobState)> = now
        .iter()
        .map(|l| (l.job_id.as_str(), l.outcome, l.state))
        .collect();
    assert_eq!(
        got,
        [
            ("b.00001", 1, JobState::Succeeded),
            ("b.00000", 3, JobState::Succeeded)
        ]
    );
}

#[test]
fn lines_without_an_outcome_number_read_as_outcome_zero() {
    let dir = tempfile::tempdir().unwrap();
    let a = sink(dir.path());
    let mut old = serde_json::to_value(line("b.00000", 0, JobState::Failed)).unwrap();
    old.as_object_mut().unwrap().remove("outcome");
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    std::fs::write(a.path("b"), format!("{old}\n")).unwrap();
    assert!(!a.append(&line("b.00000", 0, JobState::Failed)).unwrap());
    assert!(a.append(&line("b.00000", 1, JobState::Succeeded)).unwrap());
    let now = read_all(&a.path("b")).unwrap();
    assert_eq!((now.len(), now[0].state), (1, JobState::Succeeded));
}

#[test]
fn a_torn_last_line_does_not_swallow_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = sink(dir.path());
    assert!(a.append(&line("b.00000", 1, JobState::Succeeded)).unwrap());
    let mut f = OpenOptions::new().append(true).open(a.path("b")).unwrap();
    f.write_all(br#"{"job_id":"b.00001","bat"#).unwrap();
    assert!(a.append(&line("b.00001", 1, JobState::Succeeded)).unwrap());
    let b = sink(dir.path());
    assert!(b.append(&line("b.00002", 1, JobState::Succeeded)).unwrap());
    let ids: Vec<String> = read_lines(&a.path("b"))
        .unwrap()
        .into_iter()
        .map(|l| l.job_id)
        .collect();
    assert_eq!(ids, ["b.00000", "b.00001", "b.00002"]);
}

#[test]
fn a_held_lock_is_waited_for_a_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let wait = Duration::from_millis(150);
    let a = Arc::new(JsonlSink::new(dir.path()).with_lock_wait(wait));
    let held = a.lock("b").unwrap();
    let started = Instant::now();
    let err = a
        .append(&line("b.00000", 1, JobState::Succeeded))
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, SinkError::Locked { .. }), "{err}");
    assert!(took >= wait && took < wait * 10, "{took:?}");
    drop(held);
    assert!(a.append(&line("b.00000", 1, JobState::Succeeded)).unwrap());
}

#[test]
fn a_damaged_file_is_read_past_and_never_counts_as_a_written_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let a = sink(dir.path());
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    let mut damage: Vec<u8> = b"\xff\xfe not text\n[1, 2\n".to_vec();
    // Only looks like the line of a job: it does not say that job's outcome 9 is written.
    damage.extend_from_slice(b"{\"job_id\":\"b.00001\",\"outcome\":9}\n");
    damage.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
    damage.push(b'\n');
    std::fs::write(a.path("b"), &damage).unwrap();
    assert!(a.append(&line("b.00001", 1, JobState::Succeeded)).unwrap());
    assert!(a.append(&line("b.00002", 1, JobState::Failed)).unwrap());
    let ids: Vec<String> = read_all(&a.path("b"))
        .unwrap()
        .into_iter()
        .map(|l| l.job_id)
        .collect();
    assert_eq!(ids, ["b.00001", "b.00002"]);
    // Another process reads the same file from the start.
    assert!(!sink(dir.path())
        .append(&line("b.00001", 1, JobState::Succeeded))
        .unwrap());
}

/// Turns: stages that wait together share one lock and one fsync; a stage that passes (or
/// drops its turn) holds nobody up; the same outcome offered twice in a group is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_waiting_together_share_a_turn_and_each_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(JsonlSink::new(dir.path()).with_lock_wait(Duration::from_millis(20)));
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let turn = s.turn("b").await.expect("a turn");
            match i % 4 {
                0 => {
                    turn.pass();
                    None
                }
                1 => {
                    drop(turn);
                    None
                }
                // Jobs 2 and 3 of each four share an id and an outcome: one line of the two.
                _ => {
                    let id = format!("b.{:05}", i / 4);
                    Some(turn.write(line(&id, 1, JobState::Succeeded)).await)
                }
            }
        }));
    }
    let mut written = 0;
    for t in tasks {
        if let Some(answer) = t.await.unwrap() {
            written += usize::from(answer.expect("an answer"));
        }
    }
    assert_eq!(written, 50, "one line per job of the 50 offered twice");
    assert_eq!(read_lines(&s.path("b")).unwrap().len(), 50);
    // The writer ended with its backlog; the next turn starts a new one.
    assert!(s
        .append_in_turn(line("b.09999", 1, JobState::Failed))
        .await
        .unwrap());
}

/// A lock someone else holds past the wait: every stage of the group is told why, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_refuses_the_whole_group_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(JsonlSink::new(dir.path()).with_lock_wait(Duration::from_millis(50)));
    let holder = sink(dir.path()).lock("b").unwrap();
    let (a, b) = tokio::join!(s.turn("b"), s.turn("b"));
    for r in [a, b] {
        let why = r.expect_err("no turn while the lock is held");
        assert!(why.contains("locked by another process"), "{why}");
    }
    drop(holder);
    assert!(s
        .append_in_turn(line("b.00000", 1, JobState::Failed))
        .await
        .unwrap());
}
