//! Admission control shared by every worker: a fleet-wide request rate (GCRA in Redis,
//! with `governor` smoothing each process in front), a fleet-wide cool-down after 429s,
//! and the in-flight cap (slots held from submit until terminal; scripts in `queue`).

use crate::config::{ProviderLimits, Settings};
use crate::model::ProviderName;
use crate::queue::{Queue, QueueError, SlotCtx};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// Which kind of call a request is, for the per-provider `rate_counts` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Submit,
    Poll,
}

/// The limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send the request now.
    Go,
    /// Not for a while (a cool-down): park the job instead of holding a worker slot.
    Later(Duration),
}

/// Waits up to this long inside a stage; longer waits park the job.
const MAX_INLINE_WAIT: Duration = Duration::from_millis(1500);

struct Limiter {
    limits: ProviderLimits,
    local: Option<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Admission for every provider, for one worker process.
#[derive(Debug)]
pub struct Admission {
    queue: Queue,
    limiters: HashMap<ProviderName, Limiter>,
    slot_ttl_ms: u64,
}

impl Admission {
    pub fn new(queue: Queue, settings: &Settings) -> Self {
        let limiters = settings
            .providers
            .iter()
            .map(|(name, p)| {
                let l = &p.limits;
                let local = (l.rate_limit > 0.0).then(|| {
                    let period = Duration::from_secs_f64(1.0 / l.rate_limit);
                    let burst = NonZeroU32::new(l.rate_burst).unwrap_or(NonZeroU32::MIN);
                    let quota = Quota::with_period(period)
                        .expect("positive period")
                        .allow_burst(burst);
                    RateLimiter::direct(quota)
                });
                (
                    *name,
                    Limiter {
                        limits: l.clone(),
                        local,
                    },
                )
            })
            .collect();
        // A slot outlives its job's next due time by two leases plus a renewal, so only
        // a job nobody has touched for that long loses it.
        let q = &settings.queue;
        let slot_ttl_ms = (q.lease * 2 + q.renew_every).as_millis() as u64;
        Admission {
            queue,
            limiters,
            slot_ttl_ms,
        }
    }

    fn limits(&self, p: ProviderName) -> Option<&Limiter> {
        self.limiters.get(&p)
    }

    /// The slot context transitions of this provider's jobs carry.
    pub fn slot_ctx(&self, p: ProviderName) -> SlotCtx {
        SlotCtx {
            provider: p.to_string(),
            cap: self.limits(p).map_or(0, |l| l.limits.max_in_flight),
            ttl_ms: self.slot_ttl_ms,
        }
    }

    /// Waits for the right to send one request of this kind to the provider.
    pub async fn request(&self, p: ProviderName, call: Call) -> Result<Admit, QueueError> {
        let Some(l) = self.limits(p) else {
            return Ok(Admit::Go);
        };
        let counted = match call {
            Call::Submit => l.limits.count_submit,
            Call::Poll => l.limits.count_poll,
        };
        let (interval, tolerance) = if counted && l.limits.rate_limit > 0.0 {
            let t = 1000.0 / l.limits.rate_limit;
            (t, t * f64::from(l.limits.rate_burst.saturating_sub(1)))
        } else {
            (0.0, 0.0)
        };
        if counted {
            if let Some(local) = &l.local {
                // Smooths this process's own bursts so Redis is asked at most at the rate.
                local.until_ready().await;
            }
        }
        if !l.limits.global {
            return Ok(Admit::Go);
        }
        loop {
            // The cool-down applies to every call; the rate only to counted ones.
            let wait = self.queue.admit(p.as_str(), interval, tolerance).await?;
            if wait == 0 {
                return Ok(Admit::Go);
            }
            let wait = Duration::from_millis(wait);
            if wait > MAX_INLINE_WAIT {
                return Ok(Admit::Later(wait));
            }
            crate::metrics::limiter_wait(p, wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
    }

    /// A 429 from the provider: the whole fleet pauses that provider. Returns the pause.
    pub async fn rate_limited(
        &self,
        p: ProviderName,
        retry_after: Option<Duration>,
    ) -> Result<Duration, QueueError> {
        let d = retry_after
            .filter(|d| !d.is_zero())
            .or_else(|| self.limits(p).map(|l| l.limits.cooldown))
            .unwrap_or(Duration::from_secs(5));
        self.queue
            .cooldown(p.as_str(), d.as_millis() as u64)
            .await?;
        tracing::warn!(provider = %p, cooldown_ms = d.as_millis() as u64,
            "Provider answered 429: fleet-wide cool-down.");
        Ok(d)
    }

    /// Takes the job's in-flight slot; false when the provider is at its cap.
    pub async fn slot(&self, p: ProviderName, job_id: &str) -> Result<bool, QueueError> {
        let cap = self.limits(p).map_or(0, |l| l.limits.max_in_flight);
        if cap == 0 {
            return Ok(true);
        }
        self.queue
            .slot(p.as_str(), job_id, cap, self.slot_ttl_ms)
            .await
    }
}
