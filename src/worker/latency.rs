//! The learned poll schedule in a worker: which wait the poll and submit stages park a
//! job for (the learned placement once its distribution has enough completions, the
//! configured schedule before that and when turned off), each process's cache of the
//! distributions (read from Redis at most once per [`REFRESH`] per key, so polls cost no
//! extra Redis reads), and recording a detected completion as a sample.

use crate::config::ProviderSettings;
use crate::job::JobRecord;
use crate::model::ProviderName;
use crate::queue::{LatencyKey, Queue};
use crate::upstream::learned::{self, Bounds, Dist, Sample};
use crate::upstream::schedule::poll_delay;
use crate::worker::Runtime;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::debug;

/// The longest a cached distribution is used before it is read again (shorter when the
/// provider's `poll.first_delay` is: time-scaled tests and demos).
pub const REFRESH: Duration = Duration::from_secs(5);

/// The distributions this process has read, each with when it was read.
#[derive(Debug, Default)]
pub struct LatencyCache {
    map: Mutex<HashMap<LatencyKey, (Instant, Arc<Dist>)>>,
}

impl LatencyCache {
    /// The key's distribution, read again when older than `refresh`. One caller reads;
    /// the others meanwhile use what was cached (empty at first). A failed read keeps it.
    pub async fn dist(&self, queue: &Queue, key: &LatencyKey, refresh: Duration) -> Arc<Dist> {
        let stale = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            match map.get_mut(key) {
                Some((at, d)) if now.duration_since(*at) < refresh => return d.clone(),
                Some((at, d)) => {
                    *at = now;
                    d.clone()
                }
                None => {
                    map.insert(key.clone(), (now, Arc::default()));
                    Arc::default()
                }
            }
        };
        match queue.latency_samples(key).await {
            Ok(samples) => {
                let d = Arc::new(Dist::new(samples));
                let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
                map.insert(key.clone(), (Instant::now(), d.clone()));
                d
            }
            Err(e) => {
                debug!(error = %e, key = %key.name(), "Completion times unreadable; using the cached ones.");
                stale
            }
        }
    }
}

/// The rate budget and the longest gap, from the provider's settings: the fleet's
/// `rate_limit` shared by up to `max_in_flight` jobs (one when uncapped), and never
/// below an eighth of `poll.first_delay`.
fn bounds(p: &ProviderSettings) -> Bounds {
    let floor = p.poll.first_delay.as_secs_f64() / 8.0;
    Bounds {
        min_gap: learned::min_gap(
            p.limits.rate_limit,
            p.limits.count_poll,
            p.limits.max_in_flight,
            floor,
        ),
        max_gap: p.poll.max_interval.as_secs_f64(),
    }
}

/// The wait before poll number `polls` (0 = the first, after the submit) of a job
/// `elapsed` after its submit.
pub async fn poll_wait(
    rt: &Runtime,
    provider: ProviderName,
    key: &LatencyKey,
    elapsed: Duration,
    polls: u32,
) -> Duration {
    let p = rt.settings.provider(provider);
    let configured = poll_delay(&p.poll, polls, rand::random());
    if !p.learned_poll.enabled {
        return configured;
    }
    let refresh = REFRESH.min(p.poll.first_delay);
    let d = rt.latency.dist(&rt.queue, key, refresh).await;
    if d.len() < p.learned_poll.min_samples as usize {
        return configured;
    }
    learned::next_wait(&d, elapsed.as_secs_f64(), &bounds(p), rand::random())
}

/// The sample a poll that saw the job done at `now_ms` makes: after the last poll that
/// saw it running (or the submit) and no later than now. `None` without a submit time.
pub fn sample(rec: &JobRecord, now_ms: u64) -> Option<Sample> {
    let submitted = rec.submitted_at?;
    let hi_ms = now_ms.checked_sub(submitted)?;
    // A last poll from before this submit (an earlier attempt) says nothing.
    let lo_ms = rec
        .last_poll_at
        .filter(|t| *t >= submitted)
        .map_or(0, |t| t - submitted)
        .min(hi_ms);
    (hi_ms <= learned::MAX_SAMPLE_MS).then_some(Sample { lo_ms, hi_ms })
}

/// Records a detected completion (best effort: a failure is logged and forgotten).
pub async fn record(rt: &Runtime, provider: ProviderName, key: &LatencyKey, rec: &JobRecord) {
    if !rt.settings.provider(provider).learned_poll.enabled {
        return;
    }
    let Some(s) = sample(rec, rt.queue.now_ms()) else {
        return;
    };
    if let Err(e) = rt.queue.record_latency(key, s).await {
        debug!(error = %e, "Completion time not recorded.");
    }
}
