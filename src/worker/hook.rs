//! Running a hook's command (`[hooks.<name>] command = [...]`) for the `batch_done` job.
//!
//! The command is what the settings say, never what a batch says, and it runs in a box:
//! - argv only: the program (an absolute path, checked at load) is executed directly,
//!   no shell parses anything;
//! - a cleared environment: only the hook's `env` allowlist (taken from the worker's
//!   environment by name; names that are not set are skipped) plus `RESTYLE_BATCH_ID` and
//!   `RESTYLE_IDEMPOTENCY_KEY`: no API key, no Redis URL, no settings variable;
//! - stdin is the summary JSON; stdout is read and discarded, stderr is read keeping only
//!   its last [`STDERR_TAIL`] bytes (for the failure reason, from its first whole line,
//!   sanitized, the allowlisted values redacted): neither is buffered whole;
//! - its own process group, killed whole (SIGKILL) when the hook's timeout passes or the
//!   stage is dropped (shutdown), so nothing it started outlives it.

use crate::config::HookSettings;
use secrecy::SecretString;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Bytes of stderr kept for the failure reason: its end, where the last words are (less
/// than the 2 KiB a reason may have, so sanitizing does not cut them off again).
pub const STDERR_TAIL: usize = 1024;

/// How long output is still read after the command exits (a child it left behind may
/// hold the pipes open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// Why a hook's command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("still running after {}; killed", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("exited with {status}{}", stderr_suffix(.stderr))]
    Exit { status: ExitStatus, stderr: String },
    #[error("waiting for the command: {0}")]
    Wait(std::io::Error),
}

fn stderr_suffix(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; stderr: {s}")
    }
}

/// What a command that ran wrote, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ran {
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

/// The environment a hook's command gets: its allowlisted variables that the worker has,
/// then the batch's own (which win over an allowlisted variable of the same name).
pub fn environment(hook: &HookSettings, batch_id: &str, key: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = hook
        .env
        .iter()
        .filter_map(|name| Some((name.clone(), std::env::var(name).ok()?)))
        .collect();
    vars.push(("RESTYLE_BATCH_ID".into(), batch_id.into()));
    vars.push(("RESTYLE_IDEMPOTENCY_KEY".into(), key.into()));
    vars
}

/// Runs `argv` with exactly `vars` as its environment and `stdin` on its stdin, within
/// `timeout`. Fails on a non-zero exit, with the tail of stderr (control characters
/// removed, the values of `vars` redacted).
pub async fn run(
    argv: &[String],
    vars: &[(String, String)],
    stdin: &[u8],
    timeout: Duration,
) -> Result<Ran, HookError> {
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let mut child = tokio::process::Command::new(program)
        .args(&argv[1.min(argv.len())..])
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| HookError::Spawn {
            program: program.to_string(),
            source,
        })?;
    let mut group = Group(
        child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
    );
    let input = child.stdin.take();
    let out = tokio::spawn(drain(child.stdout.take(), 0));
    let err = tokio::spawn(drain(child.stderr.take(), STDERR_TAIL));
    let feed = async move {
        if let Some(mut pipe) = input {
            // A command that does not read its stdin closes it: not a failure.
            let _ = pipe.write_all(stdin).await;
        }
    };
    let waited = tokio::time::timeout(timeout, async {
        let ((), status) = tokio::join!(feed, child.wait());
        status
    })
    .await;
    let status = match waited {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(HookError::Wait(e)),
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            out.abort();
            err.abort();
            return Err(HookError::Timeout(timeout));
        }
    };
    // Exited and reaped: its process group id may be reused from here on.
    group.0 = None;
    let (stdout_bytes, _) = finish(out).await;
    let (stderr_bytes, tail) = finish(err).await;
    if status.success() {
        return Ok(Ran {
            stdout_bytes,
            stderr_bytes,
        });
    }
    let secrets: Vec<SecretString> = vars
        .iter()
        .filter(|(k, _)| !k.starts_with("RESTYLE_"))
        .map(|(_, v)| SecretString::from(v.clone()))
        .collect();
    let secrets: Vec<&SecretString> = secrets.iter().collect();
    let mut text = String::from_utf8_lossy(&tail).into_owned();
    if stderr_bytes > tail.len() as u64 {
        // Cut: drop the partial first line (it may hold the end of a redactable value).
        let whole = text.split_once('\n').map_or("", |(_, rest)| rest);
        text = format!("…{whole}");
    }
    Err(HookError::Exit {
        status,
        stderr: crate::upstream::sanitize(text.trim(), &secrets),
    })
}

/// The command's process group, killed when a run ends before the command did.
struct Group(Option<rustix::process::Pid>);

impl Group {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a pipe to its end, counting bytes and keeping the last `keep` of them.
async fn drain(pipe: Option<impl AsyncRead + Unpin>, keep: usize) -> (u64, Vec<u8>) {
    let Some(mut pipe) = pipe else {
        return (0, Vec::new());
    };
    let mut buf = vec![0u8; 8192];
    let mut tail = Vec::with_capacity(keep);
    let mut total = 0u64;
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n as u64;
        if keep > 0 {
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > keep {
                tail.drain(..tail.len() - keep);
            }
        }
    }
    (total, tail)
}

/// A drain's result, waiting at most [`DRAIN_AFTER_EXIT`] (then what it had is lost).
async fn finish(task: tokio::task::JoinHandle<(u64, Vec<u8>)>) -> (u64, Vec<u8>) {
    let abort = task.abort_handle();
    match tokio::time::timeout(DRAIN_AFTER_EXIT, task).await {
        Ok(Ok(got)) => got,
        _ => {
            abort.abort();
            (0, Vec::new())
        }
    }
}

#[cfg(test)]
mod tests;
