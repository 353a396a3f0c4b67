//! What the push receiver reads of a job before it pokes it: the provider, the recorded
//! upstream id and the state, in one `HMGET`, and whether the job is parked and when due.
//! The poke itself is [`Queue::poke`] (`POKE`), which moves only a parked job, only earlier.

use super::{Queue, QueueError};
use crate::job::JobState;

/// A job as the receiver sees it. Fields are read as bytes and kept only when UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    pub provider: Option<String>,
    /// `None` until the submit's answer is recorded.
    pub upstream_id: Option<String>,
    /// `None` for a state this build does not know (a damaged record).
    pub state: Option<JobState>,
}

impl Queue {
    /// The job's provider, upstream id and state; `None` when there is no such job.
    pub async fn push_target(&self, job_id: &str) -> Result<Option<PushTarget>, QueueError> {
        let key = self.keys.job(job_id);
        let fields: Vec<Option<Vec<u8>>> = self
            .retry(|mut c| {
                let key = key.clone();
                async move {
                    let r: redis::RedisResult<Vec<Option<Vec<u8>>>> = redis::cmd("HMGET")
                        .arg(key)
                        .arg("provider")
                        .arg("upstream_id")
                        .arg("state")
                        .query_async(&mut c)
                        .await;
                    match r {
                        // A job key of the wrong type is no job for a push.
                        Err(e) if !super::transient(&e) => Ok(Vec::new()),
                        other => other,
                    }
                }
            })
            .await?;
        let text = |i: usize| -> Option<String> {
            let bytes = fields.get(i)?.clone()?;
            String::from_utf8(bytes).ok()
        };
        let state_text = text(2);
        if state_text.is_none() && text(0).is_none() {
            return Ok(None);
        }
        Ok(Some(PushTarget {
            provider: text(0),
            upstream_id: text(1),
            state: state_text.as_deref().and_then(JobState::parse),
        }))
    }

    /// When the job is parked, the time (Redis clock, ms) it is due; `None` otherwise.
    pub async fn parked_due(&self, job_id: &str) -> Result<Option<u64>, QueueError> {
        let key = self.keys.parked();
        let id = job_id.to_string();
        let score: Option<f64> = self
            .retry(|mut c| {
                let (key, id) = (key.clone(), id.clone());
                async move {
                    redis::cmd("ZSCORE")
                        .arg(key)
                        .arg(id)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Ok(score.map(|s| s.max(0.0) as u64))
    }
}
