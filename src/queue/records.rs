//! The batch hash as stored in Redis, typed. (Job records are [`crate::job::JobRecord`].)

use crate::job::JobState;
use crate::money::Usd;
use serde::Serialize;
use std::collections::BTreeMap;

/// A batch hash: its spec, total, per-state counters and finish time.
#[derive(Debug, Clone, Serialize)]
pub struct BatchInfo {
    pub batch_id: String,
    /// How many jobs the batch has: its `total` field, confirmed by its records when read
    /// through [`Queue::batch`](super::Queue::batch). When the field cannot be taken at its
    /// word (see `damaged`), the number of job indices its records cover.
    pub total: u64,
    /// Why the batch hash is not taken at its word: a `total` that is not a number, or
    /// that claims far more jobs than have records (seen: 10^12, and a report that
    /// allocated gigabytes for it). Readers go by the records then.
    pub damaged: Option<String>,
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
    /// The batch hash as `HGETALL` returns it, bytes and all: a value that is not UTF-8
    /// reads with replacement characters (and, for the spec, fails to parse later).
    pub fn from_raw(batch_id: &str, pairs: Vec<Vec<u8>>) -> Self {
        let text = |b: Vec<u8>| {
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        Self::from_pairs(batch_id, pairs.into_iter().map(text).collect())
    }

    /// The batch hash from its `[field, value, …]` list, taken at its word but for a
    /// `total` that is not a number (0, and `damaged` says so).
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
        let (total, damaged) = match get("total").map(|t| (t, t.trim().parse::<u64>())) {
            None => (0, None),
            Some((_, Ok(n))) => (n, None),
            Some((t, Err(_))) => (0, Some(format!("field total is not a number: {t:.40?}"))),
        };
        BatchInfo {
            batch_id: batch_id.to_string(),
            total,
            damaged,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_that_is_no_number_is_damaged_not_zero_jobs_taken_at_its_word() {
        let info = BatchInfo::from_pairs("b", vec!["total".into(), "lots".into()]);
        assert_eq!(info.total, 0);
        assert!(info.damaged.as_deref().is_some_and(|d| d.contains("total")));
        assert!(!info.is_finished());
        let info = BatchInfo::from_raw("b", vec![b"total".to_vec(), b"3".to_vec()]);
        assert_eq!((info.total, info.damaged), (3, None));
    }

    #[test]
    fn job_ids_come_a_chunk_at_a_time_and_no_more_than_the_total() {
        let info = BatchInfo::from_pairs("b", vec!["total".into(), "5".into()]);
        let chunks: Vec<Vec<String>> = crate::ops::job_id_chunks(&info, 2).collect();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(chunks[2], ["b.00004"]);
        assert_eq!(crate::ops::job_ids(&info).len(), 5);
    }
}
