//! What the batch page shows and its live events carry, gathered in one place: counts per
//! state, the ETA, the cost (spent by succeeded jobs, reserved by submitted ones, against
//! the budget), the providers' pauses and cool-downs, and each variant (state, prompt,
//! output, failure reason, cost, review mark).
//!
//! The ETA comes from the batch's own finished jobs: the jobs finished per second since
//! the batch's first submit, applied to the jobs left; none finished yet (or nothing
//! left) gives no ETA, shown as "—".

use super::AppState;
use crate::cost::CostTally;
use crate::job::JobState;
use crate::money::Usd;
use crate::queue::{BatchInfo, Mark, QueueError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Job records read per round trip.
const CHUNK: usize = 500;

/// One variant as the contact sheet shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub job_id: String,
    pub index: u32,
    pub prompt: String,
    pub state: JobState,
    /// Why it ended without an output (terminal states but `succeeded`).
    pub error: Option<String>,
    pub cost: Option<Usd>,
    /// It succeeded with an output the console can serve.
    pub output: bool,
    pub mark: Option<Mark>,
}

impl Variant {
    /// The link to its output in the console.
    pub fn output_url(&self, batch_id: &str) -> Option<String> {
        self.output
            .then(|| format!("/console/batches/{batch_id}/jobs/{}/output", self.job_id))
    }

    pub fn to_json(&self, batch_id: &str) -> Value {
        json!({
            "job": self.job_id,
            "index": self.index,
            "prompt": self.prompt,
            "state": self.state.as_str(),
            "error": self.error,
            "cost": self.cost.map(Usd::display),
            "output": self.output_url(batch_id),
            "mark": self.mark.map(Mark::as_str),
        })
    }
}

/// A provider that is paused or cooling down, as one line.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderNote {
    pub provider: String,
    pub paused: Option<String>,
    pub until_ms: Option<u64>,
    pub cooldown_ms: u64,
}

impl ProviderNote {
    pub fn text(&self, now_ms: u64) -> String {
        match &self.paused {
            Some(msg) => {
                let left = self.until_ms.map(|u| u.saturating_sub(now_ms)).unwrap_or(0);
                let left = crate::status::short_duration(Duration::from_millis(left));
                format!("{}: paused for {left} ({msg})", self.provider)
            }
            None => format!("{}: cooling down {} ms", self.provider, self.cooldown_ms),
        }
    }
}

/// Everything the page and the events show about a batch at one moment.
#[derive(Debug, Clone)]
pub struct Progress {
    pub info: BatchInfo,
    pub variants: Vec<Variant>,
    pub eta: Option<Duration>,
    pub spent: CostTally,
    pub providers: Vec<ProviderNote>,
    pub now_ms: u64,
}

impl Progress {
    pub fn finished(&self) -> bool {
        self.info.is_finished()
    }

    /// `2m05s`, or `—` when there is no estimate.
    pub fn eta_text(&self) -> String {
        match self.eta {
            Some(_) if self.finished() => "—".into(),
            Some(d) => crate::status::short_duration(d),
            None => "—".into(),
        }
    }

    /// `$0.42 spent · $0.10 reserved · budget $5.00`.
    pub fn cost_text(&self) -> String {
        let budget = match self.info.max_cost {
            Some(b) => format!("budget {}", b.display()),
            None => "no budget".into(),
        };
        format!(
            "{} spent · {} reserved · {budget}",
            self.spent,
            self.info.cost_committed.display()
        )
    }

    pub fn provider_lines(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.text(self.now_ms)).collect()
    }

    /// The live event's data: the figures, and the variants given (the changed ones).
    pub fn to_json(&self, variants: &[&Variant]) -> Value {
        let id = &self.info.batch_id;
        json!({
            "done": self.info.done,
            "total": self.info.total,
            "finished": self.finished(),
            "counts": self.info.counts,
            "eta_seconds": self.eta.filter(|_| !self.finished()).map(|d| d.as_secs()),
            "eta": self.eta_text(),
            "cost": {
                "spent": self.spent.known,
                "unpriced_jobs": self.spent.unknown_jobs,
                "reserved": self.info.cost_committed,
                "budget": self.info.max_cost,
                "text": self.cost_text(),
            },
            "providers": self.providers.iter().map(|p| json!({
                "provider": p.provider,
                "paused": p.paused,
                "until_ms": p.until_ms,
                "cooldown_ms": p.cooldown_ms,
            })).collect::<Vec<_>>(),
            "provider_lines": self.provider_lines(),
            "variants": variants.iter().map(|v| v.to_json(id)).collect::<Vec<_>>(),
        })
    }
}

/// The ETA from finished jobs: (jobs left) / (jobs finished per second since the first
/// submit). `None` before any job finished or when nothing is left.
pub fn eta(left: u64, finished: &[(u64, u64)]) -> Option<Duration> {
    if left == 0 || finished.is_empty() {
        return None;
    }
    let start = finished.iter().map(|(s, _)| *s).min()?;
    let end = finished.iter().map(|(_, e)| *e).max()?;
    let span_ms = end.saturating_sub(start).max(1) as f64;
    let per_ms = finished.len() as f64 / span_ms;
    Some(Duration::from_millis((left as f64 / per_ms).round() as u64))
}

/// Gathers the batch's progress from its records, marks and the providers' state.
pub async fn gather(st: &AppState, info: BatchInfo) -> Result<Progress, QueueError> {
    let marks = st.queue.marks(&info.batch_id).await?;
    let mut variants = Vec::new();
    let mut spent = CostTally::default();
    let mut finished = Vec::new();
    let mut index = 0u32;
    for ids in crate::ops::job_id_chunks(&info, CHUNK) {
        for loaded in st.queue.jobs(&ids).await? {
            let i = index;
            index = index.saturating_add(1);
            let Ok(rec) = loaded else { continue };
            let line = crate::sink::ResultLine::from_stored(&rec, &info.batch_id, i);
            spent.add_if_succeeded(&rec);
            if rec.state.is_terminal() {
                if let Some(end) = rec.finished_at {
                    let start = rec.submitted_at.or(rec.created_at).unwrap_or(end);
                    finished.push((start.min(end), end));
                }
            }
            let output = super::outputs::output_of(st, &rec).is_some();
            let failed = rec.state.is_terminal() && rec.state != JobState::Succeeded;
            variants.push(Variant {
                mark: marks.get(&rec.job_id).copied(),
                job_id: rec.job_id,
                index: line.index,
                prompt: line.prompt,
                state: rec.state,
                error: if failed { rec.error } else { None },
                cost: rec.estimated_cost,
                output,
            });
        }
    }
    let (_, statuses) = crate::status::provider_statuses(&st.queue, &st.settings).await?;
    let now_ms = st.queue.now_ms();
    let mut providers = Vec::new();
    for (name, p) in statuses {
        if p.paused.is_none() && p.cooldown_ms == 0 {
            continue;
        }
        let until_ms = match p.paused {
            Some(_) => st.queue.provider_pause(&name).await?.map(|x| x.until),
            None => None,
        };
        providers.push(ProviderNote {
            provider: name,
            paused: p.paused,
            until_ms,
            cooldown_ms: p.cooldown_ms,
        });
    }
    let left = info.total.saturating_sub(info.done);
    Ok(Progress {
        eta: eta(left, &finished),
        info,
        variants,
        spent,
        providers,
        now_ms,
    })
}

/// The variants whose shown fields changed since `seen` (job id → what was sent), which
/// it then records.
pub fn changed<'a>(p: &'a Progress, seen: &mut BTreeMap<String, Variant>) -> Vec<&'a Variant> {
    let mut out = Vec::new();
    for v in &p.variants {
        if seen.get(&v.job_id) != Some(v) {
            seen.insert(v.job_id.clone(), v.clone());
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_what_is_left_at_the_batch_s_own_pace() {
        assert_eq!(eta(5, &[]), None, "nothing finished yet");
        assert_eq!(eta(0, &[(0, 1000)]), None, "nothing left");
        // Two jobs in 2 s: 1 job/s; 3 left: 3 s.
        let done = [(1000, 2000), (1500, 3000)];
        assert_eq!(eta(3, &done), Some(Duration::from_millis(3000)));
    }
}
