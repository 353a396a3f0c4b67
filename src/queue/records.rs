//! The batch hash as stored in Redis, typed. (Job records are [`crate::job::JobRecord`].)

use crate::job::JobState;
use crate::money::Usd;
use serde::Serialize;
use std::collections::BTreeMap;

/// A batch hash: its spec, total, per-state counters and finish time.
#[derive(Debug, Clone, Serialize)]
pub struct BatchInfo {
    pub batch_id: String,
    pub total: u64,
    pub done: u64,
    pub created_at: u64,
    pub finished_at: Option<u64>,
    /// Counts per state (every state present, zero when none).
    pub counts: BTreeMap<JobState, u64>,
    /// Budget, when the batch has one.
    pub max_cost: Option<Usd>,
    /// Estimated cost reserved by submitted jobs (released when a job fails upstream).
    pub cost_committed: Usd,
    /// How many times the batch has finished (and been announced, with `on_done`).
    pub completions: u64,
    #[serde(skip)]
    pub spec_json: String,
}

impl BatchInfo {
    pub fn from_pairs(batch_id: &str, pairs: Vec<String>) -> Self {
        let mut fields = BTreeMap::new();
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            fields.insert(k, v);
        }
        let get = |k: &str| fields.get(k).map(String::as_str);
        let num = |k: &str| get(k).and_then(|v| v.parse().ok()).unwrap_or(0u64);
        let mut counts: BTreeMap<JobState, u64> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        for (k, v) in &fields {
            if let Some(state) = k.strip_prefix("n:").and_then(JobState::parse) {
                counts.insert(state, v.parse().unwrap_or(0));
            }
        }
        BatchInfo {
            batch_id: batch_id.to_string(),
            total: num("total"),
            done: num("done"),
            created_at: num("created_at"),
            finished_at: get("finished_at").and_then(|v| v.parse().ok()),
            counts,
            max_cost: get("max_cost").and_then(Usd::parse),
            cost_committed: get("cost_committed")
                .and_then(Usd::parse)
                .unwrap_or_default(),
            completions: num("completions"),
            spec_json: get("spec").unwrap_or_default().to_string(),
        }
    }

    /// Jobs in `state`.
    pub fn count(&self, state: JobState) -> u64 {
        self.counts.get(&state).copied().unwrap_or(0)
    }

    /// True once every job is in a terminal state.
    pub fn is_finished(&self) -> bool {
        self.total > 0 && self.done >= self.total
    }
}
