//! Appends result lines to `<out>/<batch>/results.jsonl`, idempotent by job id across
//! processes: under an exclusive file lock it reads what others appended since, and
//! skips a job that already has its line.

use super::{ResultLine, SinkError};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Seen {
    offset: u64,
    ids: HashSet<String>,
}

/// The JSONL sink for every batch under one output directory.
#[derive(Debug)]
pub struct JsonlSink {
    dir: PathBuf,
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    job_id: String,
}

impl JsonlSink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JsonlSink {
            dir: dir.into(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Where a batch's results file lives.
    pub fn path(&self, batch_id: &str) -> PathBuf {
        self.dir.join(batch_id).join("results.jsonl")
    }

    /// Appends the line unless the job already has one. Returns whether it was written.
    /// Blocking file I/O: call it from `spawn_blocking`.
    pub fn append(&self, line: &ResultLine) -> Result<bool, SinkError> {
        let path = self.path(&line.batch_id);
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| SinkError::io(parent, e))?;
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| SinkError::io(&path, e))?;
        f.lock().map_err(|e| SinkError::io(&path, e))?;
        let res = self.append_locked(&mut f, &path, line);
        let _ = f.unlock();
        res
    }

    fn append_locked(
        &self,
        f: &mut File,
        path: &Path,
        line: &ResultLine,
    ) -> Result<bool, SinkError> {
        let mut seen_all = self.seen.lock().expect("jsonl index");
        let seen = seen_all.entry(line.batch_id.clone()).or_default();
        let len = f.metadata().map_err(|e| SinkError::io(path, e))?.len();
        if len < seen.offset {
            *seen = Seen::default(); // truncated or replaced: read it all again
        }
        if len > seen.offset {
            f.seek(SeekFrom::Start(seen.offset))
                .map_err(|e| SinkError::io(path, e))?;
            let mut reader = BufReader::new(&mut *f);
            let mut buf = String::new();
            loop {
                buf.clear();
                let n = reader
                    .read_line(&mut buf)
                    .map_err(|e| SinkError::io(path, e))?;
                if n == 0 || !buf.ends_with('\n') {
                    break; // a torn last line (crash mid-write) is not counted
                }
                seen.offset += n as u64;
                if let Ok(r) = serde_json::from_str::<IdOnly>(&buf) {
                    seen.ids.insert(r.job_id);
                }
            }
        }
        if seen.ids.contains(&line.job_id) {
            return Ok(false);
        }
        let mut text = serde_json::to_string(line).expect("result line serializes");
        text.push('\n');
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| SinkError::io(path, e))?;
        seen.offset += text.len() as u64;
        seen.ids.insert(line.job_id.clone());
        Ok(true)
    }
}

/// Reads every line of a results file (for `status`, tests and the report).
pub fn read_all(path: &Path) -> Result<Vec<ResultLine>, SinkError> {
    let f = File::open(path).map_err(|e| SinkError::io(path, e))?;
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(|e| SinkError::io(path, e))?;
        if let Ok(r) = serde_json::from_str(&line) {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str) -> ResultLine {
        ResultLine {
            job_id: id.into(),
            batch_id: "b".into(),
            index: 0,
            prompt: "p".into(),
            provider: "aimlapi".into(),
            model: "edit".into(),
            state: crate::job::JobState::Succeeded,
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

    #[test]
    fn second_append_of_a_job_is_skipped_even_from_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let a = JsonlSink::new(dir.path());
        let b = JsonlSink::new(dir.path());
        assert!(a.append(&line("b.00000")).unwrap());
        assert!(!b.append(&line("b.00000")).unwrap());
        assert!(b.append(&line("b.00001")).unwrap());
        assert!(!a.append(&line("b.00001")).unwrap());
        let all = read_all(&a.path("b")).unwrap();
        assert_eq!(all.len(), 2);
    }
}
