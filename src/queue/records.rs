//! Typed views of the job record and batch hashes as stored in Redis.

use serde::Serialize;
use std::collections::BTreeMap;

/// Every state a job can be in; the order is the order `status` prints them.
pub const STATES: &[&str] = &[
    "queued",
    "submitting",
    "polling",
    "finishing",
    "succeeded",
    "failed",
    "timed_out",
    "dead",
    "cancelled",
    "submit_unknown",
];

/// States a job never leaves on its own.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "succeeded" | "failed" | "timed_out" | "dead" | "cancelled" | "submit_unknown"
    )
}

/// A job record (the Redis hash), with typed accessors for the fields the worker uses.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub job_id: String,
    pub fields: BTreeMap<String, String>,
}

impl JobRecord {
    pub fn from_pairs(job_id: &str, pairs: Vec<String>) -> Self {
        let mut fields = BTreeMap::new();
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            fields.insert(k, v);
        }
        JobRecord {
            job_id: job_id.to_string(),
            fields,
        }
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }

    pub fn state(&self) -> &str {
        self.get("state").unwrap_or("")
    }

    pub fn num(&self, k: &str) -> u64 {
        self.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// A batch hash: its spec, total, per-state counters and finish time.
#[derive(Debug, Clone, Serialize)]
pub struct BatchInfo {
    pub batch_id: String,
    pub total: u64,
    pub done: u64,
    pub created_at: u64,
    pub finished_at: Option<u64>,
    /// Counts keyed by state name (every state present, zero when none).
    pub counts: BTreeMap<String, u64>,
    /// Budget in USD, when the batch has one.
    pub max_cost: Option<f64>,
    /// Estimated cost reserved by submitted jobs (released when a job fails upstream).
    pub cost_committed: f64,
    /// How many times the batch has finished (and been announced, with `on_done`).
    pub completions: u64,
    #[serde(skip)]
    pub spec_json: String,
}

impl BatchInfo {
    pub fn from_pairs(batch_id: &str, pairs: Vec<String>) -> Self {
        let rec = JobRecord::from_pairs(batch_id, pairs);
        let mut counts: BTreeMap<String, u64> = STATES.iter().map(|s| (s.to_string(), 0)).collect();
        for (k, v) in &rec.fields {
            if let Some(state) = k.strip_prefix("n:") {
                counts.insert(state.to_string(), v.parse().unwrap_or(0));
            }
        }
        BatchInfo {
            batch_id: batch_id.to_string(),
            total: rec.num("total"),
            done: rec.num("done"),
            created_at: rec.num("created_at"),
            finished_at: rec.get("finished_at").and_then(|v| v.parse().ok()),
            counts,
            max_cost: rec.get("max_cost").and_then(|v| v.parse().ok()),
            cost_committed: rec
                .get("cost_committed")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            completions: rec.num("completions"),
            spec_json: rec.get("spec").unwrap_or_default().to_string(),
        }
    }

    /// True once every job is in a terminal state.
    pub fn is_finished(&self) -> bool {
        self.total > 0 && self.done >= self.total
    }
}
