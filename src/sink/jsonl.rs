//! Appends result lines to `<out>/<batch>/results.jsonl`: one line per job outcome (see
//! the [module doc](super) for the outcome numbers and the order of a stage's steps).
//!
//! Appends are idempotent per (job, outcome) across processes: under the file's exclusive
//! lock the sink reads what others appended since, and skips a line whose job already has
//! that outcome or a newer one. The lock is awaited for a bounded time ([`LOCK_WAIT`] unless
//! set) and then given up with [`SinkError::Locked`]: a holder that never lets go (a stuck
//! NFS client, an operator's `flock`) costs a stage that long, never the stage itself.
//! Within one process the stages of a batch take the lock together, a group at a time
//! ([`group`]): one writer locks, lets each stage make its fence, appends the lines offered
//! with one fsync and lets go.
//!
//! The file is read back as bytes, a line at a time and at most [`MAX_LINE`] of it held: a
//! line that is not UTF-8, not a whole result line, or far too long (a damaged or foreign
//! file) is skipped, never an error that stops every stage of the batch, and never counts
//! as a job's outcome written.

mod group;

pub use group::{Turn, FENCE_WAIT};

use super::{ResultLine, SinkError};
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a writer waits for the results file's lock by default. An append holds it for
/// a read of what is new and one fsync: milliseconds.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The most of one line the sink holds when reading a file back. A result line is a few KiB
/// (error texts are cut to 2 KiB where they arise); a longer one is skipped unread.
pub const MAX_LINE: usize = 1 << 20;

/// What this process has read of one batch's file: up to where, and each job's newest
/// outcome.
#[derive(Debug, Default)]
struct Seen {
    offset: u64,
    newest: HashMap<String, u64>,
    /// The file ends in a torn line (a crash mid-write) at `offset`.
    torn: bool,
}

/// The JSONL sink for every batch under one output directory.
#[derive(Debug)]
pub struct JsonlSink {
    dir: PathBuf,
    lock_wait: Duration,
    seen: Mutex<HashMap<String, Seen>>,
    /// The stages of each batch waiting for this process's writer ([`group`]).
    backlogs: group::Backlogs,
}

/// A batch's results file, locked by this process until dropped.
#[derive(Debug)]
pub struct Locked {
    sink: Arc<JsonlSink>,
    batch_id: String,
    path: PathBuf,
    file: File,
}

impl JsonlSink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JsonlSink {
            dir: dir.into(),
            lock_wait: LOCK_WAIT,
            seen: Mutex::new(HashMap::new()),
            backlogs: group::Backlogs::default(),
        }
    }

    /// The same sink, waiting at most `wait` for the file's lock.
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Where a batch's results file lives.
    pub fn path(&self, batch_id: &str) -> PathBuf {
        self.dir.join(batch_id).join("results.jsonl")
    }

    /// Opens the batch's file (creating it) and takes its exclusive lock, waiting at most
    /// the sink's lock wait. Blocking: call it from `spawn_blocking`.
    pub fn lock(self: &Arc<Self>, batch_id: &str) -> Result<Locked, SinkError> {
        let path = self.path(batch_id);
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| SinkError::io(parent, e))?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| SinkError::io(&path, e))?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(SinkError::io(&path, e)),
            }
            let waited = started.elapsed();
            if waited >= self.lock_wait {
                return Err(SinkError::Locked {
                    path: path.display().to_string(),
                    waited_ms: waited.as_millis() as u64,
                });
            }
            std::thread::sleep(pause.min(self.lock_wait - waited));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Ok(Locked {
            sink: self.clone(),
            batch_id: batch_id.to_string(),
            path,
            file,
        })
    }

    /// Appends the line unless its job already has this outcome or a newer one. Returns
    /// whether it was written. Blocking: call it from `spawn_blocking`.
    pub fn append(self: &Arc<Self>, line: &ResultLine) -> Result<bool, SinkError> {
        Ok(self
            .lock(&line.batch_id)?
            .append(std::slice::from_ref(line))?
            == 1)
    }
}

impl Locked {
    /// Appends the lines (all of this batch) whose job has no line of that outcome or a
    /// newer one yet, with one fsync. Returns how many were written.
    pub fn append(&mut self, lines: &[ResultLine]) -> Result<usize, SinkError> {
        Ok(self.append_each(lines)?.into_iter().filter(|w| *w).count())
    }

    /// [`Locked::append`], saying of each line whether it was written.
    pub fn append_each(&mut self, lines: &[ResultLine]) -> Result<Vec<bool>, SinkError> {
        let sink = self.sink.clone();
        let mut seen_all = sink.seen.lock().expect("jsonl index");
        let seen = seen_all.entry(self.batch_id.clone()).or_default();
        self.catch_up(seen)?;
        let mut text = String::new();
        let mut added: HashMap<&str, u64> = HashMap::new();
        let mut each = Vec::with_capacity(lines.len());
        for line in lines {
            debug_assert_eq!(line.batch_id, self.batch_id);
            let id = line.job_id.as_str();
            let have = seen.newest.get(id).copied().max(added.get(id).copied());
            let new = have.is_none_or(|n| n < line.outcome);
            each.push(new);
            if !new {
                continue;
            }
            text.push_str(&serde_json::to_string(line).expect("result line serializes"));
            text.push('\n');
            added.insert(id, line.outcome);
        }
        if added.is_empty() {
            return Ok(each);
        }
        if seen.torn {
            text.insert(0, '\n'); // end the torn line so ours stands alone
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| SinkError::io(&self.path, e))?;
        seen.offset += text.len() as u64;
        seen.torn = false;
        for (id, n) in &added {
            seen.newest.insert(id.to_string(), *n);
        }
        Ok(each)
    }

    /// Reads what was appended since this process last looked.
    fn catch_up(&mut self, seen: &mut Seen) -> Result<(), SinkError> {
        let path = &self.path;
        let len = self
            .file
            .metadata()
            .map_err(|e| SinkError::io(path, e))?
            .len();
        if len < seen.offset {
            *seen = Seen::default(); // truncated or replaced: read it all again
        }
        if len == seen.offset {
            return Ok(());
        }
        seen.torn = false;
        self.file
            .seek(SeekFrom::Start(seen.offset))
            .map_err(|e| SinkError::io(path, e))?;
        let mut reader = BufReader::new(&mut self.file);
        let mut buf = Vec::new();
        loop {
            let (n, ended) =
                next_line(&mut reader, &mut buf).map_err(|e| SinkError::io(path, e))?;
            if n == 0 {
                return Ok(());
            }
            seen.offset += n as u64;
            if !ended {
                seen.torn = true; // the next append ends it first
                return Ok(());
            }
            if let Some(k) = parse_line(&buf) {
                let e = seen.newest.entry(k.job_id).or_insert(k.outcome);
                *e = (*e).max(k.outcome);
            }
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Reads the next line of `r` into `buf`: returns the bytes it took and whether it ended
/// with a newline (a torn last line does not). At most [`MAX_LINE`] bytes are kept: a
/// longer line is consumed whole and left empty in `buf`.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    buf.clear();
    let (mut taken, mut over) = (0, false);
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok((taken, false));
        }
        let (n, ended) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !over && buf.len() + n <= MAX_LINE {
            buf.extend_from_slice(&chunk[..n]);
        } else {
            over = true;
            buf.clear();
        }
        r.consume(n);
        taken += n;
        if ended {
            return Ok((taken, true));
        }
    }
}

/// A whole line read back as a result line; `None` for anything else (not UTF-8, not
/// JSON, a line that only looks like one, or one too long to hold).
fn parse_line(bytes: &[u8]) -> Option<ResultLine> {
    serde_json::from_str(std::str::from_utf8(bytes).ok()?).ok()
}

/// Every line of a results file as written, in file order, superseded ones included (for
/// audits and tests). Lines that do not parse (a torn write, damage) are left out.
pub fn read_lines(path: &Path) -> Result<Vec<ResultLine>, SinkError> {
    let f = File::open(path).map_err(|e| SinkError::io(path, e))?;
    let mut reader = BufReader::new(f);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        let (n, _) = next_line(&mut reader, &mut buf).map_err(|e| SinkError::io(path, e))?;
        if n == 0 {
            return Ok(out);
        }
        out.extend(parse_line(&buf));
    }
}

/// Each job's newest line (its highest outcome; of equals, the later), in the order those
/// lines appear in the file: what the file says about every job now.
pub fn read_all(path: &Path) -> Result<Vec<ResultLine>, SinkError> {
    let lines = read_lines(path)?;
    let mut newest: HashMap<&str, usize> = HashMap::new();
    for (i, l) in lines.iter().enumerate() {
        let keep = newest
            .get(l.job_id.as_str())
            .is_none_or(|&j| lines[j].outcome <= l.outcome);
        if keep {
            newest.insert(&l.job_id, i);
        }
    }
    let mut keep: Vec<usize> = newest.into_values().collect();
    keep.sort_unstable();
    let mut lines: Vec<Option<ResultLine>> = lines.into_iter().map(Some).collect();
    Ok(keep.into_iter().filter_map(|i| lines[i].take()).collect())
}

#[cfg(test)]
mod tests;
