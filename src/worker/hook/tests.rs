//! The hook box with real processes: environment, stdin, bounded output, timeout.

use super::*;
use std::time::Instant;

fn sh(script: &str, arg: &std::path::Path) -> Vec<String> {
    ["/bin/sh", "-c", script, "sh", arg.to_str().unwrap()]
        .map(String::from)
        .to_vec()
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const LONG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_command_gets_exactly_the_given_environment_and_the_summary_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    let argv = sh("/usr/bin/env > \"$1\"; /bin/cat > \"$1.in\"", &env_file);
    let given = vars(&[("HOOK_TOKEN", "t-1"), ("RESTYLE_BATCH_ID", "b1")]);
    run(&argv, &given, b"{\"batch_id\":\"b1\"}", LONG)
        .await
        .unwrap();
    let env = std::fs::read_to_string(&env_file).unwrap();
    let mut names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    names.sort();
    // PWD is the shell's own; nothing of this test process's environment is there.
    assert_eq!(names, ["HOOK_TOKEN", "PWD", "RESTYLE_BATCH_ID"], "{env}");
    let stdin = std::fs::read_to_string(dir.path().join("env.in")).unwrap();
    assert_eq!(stdin, "{\"batch_id\":\"b1\"}");
}

#[test]
fn the_allowlist_takes_set_variables_by_name_and_the_batch_ones_win() {
    let hook = HookSettings {
        action: crate::config::HookAction::Command(vec!["/bin/true".into()]),
        env: vec![
            "PATH".into(),
            "RESTYLE_TEST_SURELY_UNSET_7".into(),
            "RESTYLE_BATCH_ID".into(),
        ],
        timeout: LONG,
    };
    let got = environment(&hook, "b9", "done:b9:1");
    let path = std::env::var("PATH").unwrap();
    assert_eq!(
        got,
        vars(&[
            ("PATH", &path),
            ("RESTYLE_BATCH_ID", "b9"),
            ("RESTYLE_IDEMPOTENCY_KEY", "done:b9:1"),
        ])
    );
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let argv = sh("/bin/sleep 60 & echo $! > \"$1\"; wait", &pid_file);
    let started = Instant::now();
    let e = run(&argv, &[], b"", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(e, HookError::Timeout(_)), "{e}");
    assert!(e.to_string().contains("killed"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The background sleep was in the command's process group: it is gone too.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        // Gone, or a zombie that nobody reaped yet (state Z): not running either way.
        let alive = std::fs::read_to_string(&stat)
            .map(|s| s.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')))
            .unwrap_or(false);
        if !alive {
            break;
        }
        assert!(Instant::now() < end, "sleep {pid} outlived the hook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn output_is_counted_not_kept_and_a_failure_gives_the_stderr_tail_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let script = "/usr/bin/head -c 20000000 /dev/zero; /usr/bin/head -c 100000 /dev/zero | \
                  /usr/bin/tr '\\0' x >&2; echo >&2; echo \"last words with $TOKEN\" >&2; exit 3";
    let argv = sh(script, dir.path());
    let given = vars(&[("TOKEN", "tok-secret-123")]);
    let e = run(&argv, &given, b"", LONG).await.unwrap_err();
    let HookError::Exit { status, stderr } = &e else {
        panic!("{e}");
    };
    assert_eq!(status.code(), Some(3));
    // The end of 100 kB of stderr, from its first whole line; the value redacted.
    assert_eq!(stderr, "…last words with [redacted]");
    assert!(!e.to_string().contains("tok-secret-123"), "{e}");

    let ok = sh(
        "/usr/bin/head -c 20000000 /dev/zero; echo oops >&2",
        dir.path(),
    );
    let ran = run(&ok, &[], b"", LONG).await.unwrap();
    assert_eq!(ran.stdout_bytes, 20_000_000);
    assert_eq!(ran.stderr_bytes, 5);
}

#[tokio::test]
async fn a_failure_names_the_last_words_of_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let argv = sh("echo \"no such channel $TOKEN\" >&2; exit 4", dir.path());
    let given = vars(&[("TOKEN", "tok-secret-123")]);
    let e = run(&argv, &given, b"", LONG).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("no such channel [redacted]"), "{text}");
    assert!(text.contains("exit status: 4"), "{text}");
}

#[tokio::test]
async fn a_program_that_cannot_start_says_which() {
    let argv = vec!["/nonexistent/restyle-hook".to_string()];
    let e = run(&argv, &[], b"", LONG).await.unwrap_err();
    assert!(matches!(e, HookError::Spawn { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/restyle-hook"), "{e}");
}
