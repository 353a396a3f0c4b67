//! Results sinks: the JSONL file per batch and the download directory, or an object store
//! ([`store`]: outputs, one result object per job, the JSONL and contact sheet regenerated
//! by [`sheet`]). Redis is the third sink, and the truth, and lives in [`crate::queue`].
//!
//! The file has one line per job *outcome*: each terminal state a job reaches gets a number
//! ([`ResultLine::outcome`], the record's `outcome` field), and a retried job's new outcome
//! is a new line with a higher number. Readers take each job's highest ([`jsonl::read_all`]).
//!
//! How a stage ends a job (`Step::terminal`): in its process's turn at the file (the
//! file's lock, a bounded wait, held by one writer for the stages finishing together:
//! [`jsonl::Turn`]) it makes a transition under its lease that takes the job's next outcome number (the fence:
//! a stage that lost its lease writes nothing), appends the line, and only then makes the
//! terminal transition. So a job is never terminal in Redis without its line in the file,
//! and `done == total` means every line is written. A crash after the line and before the
//! terminal transition leaves a line for an outcome Redis never recorded; the job is
//! redelivered and its real outcome, with the next number, supersedes it. A lock that
//! cannot be had in time parks the job to finish again later. Outcomes no stage writes (an
//! operator's cancel) are written by whoever next renders the batch (`restyle report`).

pub mod download;
pub mod jsonl;
pub mod sheet;
pub mod store;

use crate::job::{JobRecord, JobState};
use crate::model::JobPayload;
use crate::money::Usd;
use serde::{Deserialize, Serialize};

/// A failure writing a result.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("download refused: {0}")]
    Refused(String),
    /// The output URL answered 403/404: it expired; poll again for a fresh one.
    #[error("output URL expired or gone (HTTP {0})")]
    Expired(u16),
    #[error("download failed: {0}")]
    Transient(String),
    /// Someone else held the results file's lock for longer than the sink waits.
    #[error("{path}: locked by another process for {waited_ms} ms")]
    Locked { path: String, waited_ms: u64 },
}

impl SinkError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SinkError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The result of one job, as written to the JSONL file and exported by `results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    pub job_id: String,
    pub batch_id: String,
    pub index: u32,
    pub prompt: String,
    pub provider: String,
    pub model: String,
    pub state: JobState,
    /// Which outcome of the job this is (see the module doc); 0 on lines written before
    /// outcomes were numbered.
    #[serde(default)]
    pub outcome: u64,
    pub upstream_id: Option<String>,
    pub output_url: Option<String>,
    /// Path of the downloaded file, relative to the output directory.
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    /// Number of times a worker claimed this job (stages run, including redeliveries).
    pub claims: u64,
    pub submitted_at: Option<u64>,
    pub finished_at: u64,
    /// Seconds from submit to the terminal state.
    pub upstream_seconds: Option<f64>,
    /// Unknown until prices are configured: never invented.
    pub estimated_cost: Option<Usd>,
    pub error: Option<String>,
}

impl ResultLine {
    /// The result line of a job from its record (in its terminal state), finished `now`.
    pub fn from_record(rec: &JobRecord, p: &JobPayload, now: u64) -> ResultLine {
        let submitted = rec.submitted_at;
        ResultLine {
            job_id: rec.job_id.clone(),
            batch_id: p.batch_id.clone(),
            index: p.index,
            prompt: p.prompt.clone(),
            provider: rec.provider.map(|p| p.to_string()).unwrap_or_default(),
            model: rec.model.map(|m| m.to_string()).unwrap_or_default(),
            state: rec.state,
            outcome: rec.outcome,
            upstream_id: rec.upstream_id.clone(),
            output_url: rec.output_url.clone(),
            file: rec.file.clone(),
            sha256: rec.sha256.clone(),
            bytes: rec.bytes,
            claims: rec.claims,
            submitted_at: submitted,
            finished_at: now,
            upstream_seconds: submitted.map(|t| now.saturating_sub(t) as f64 / 1000.0),
            estimated_cost: rec.estimated_cost,
            error: rec.error.clone(),
        }
    }

    /// A job's line from its record as stored (for the export and for lines written from
    /// Redis). A job that is not terminal has `finished_at` 0 and no `upstream_seconds`;
    /// `fallback_index` stands in when the payload is unreadable.
    pub fn from_stored(rec: &JobRecord, batch_id: &str, fallback_index: u32) -> ResultLine {
        let payload = rec
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str::<JobPayload>(p).ok())
            .unwrap_or_else(|| JobPayload {
                v: 0,
                batch_id: batch_id.to_string(),
                index: fallback_index,
                prompt: String::new(),
            });
        let finished = rec.finished_at.filter(|_| rec.state.is_terminal());
        let mut line = ResultLine::from_record(rec, &payload, finished.unwrap_or(0));
        if finished.is_none() {
            line.finished_at = 0;
            line.upstream_seconds = None;
        }
        line
    }
}
