//! Results sinks: the JSONL file per batch (one line per terminal job, never two) and the
//! download directory. Redis is the third sink and lives in [`crate::queue`].

pub mod download;
pub mod jsonl;

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
}
